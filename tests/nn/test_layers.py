"""Tests of jaxla.nn.layers against numpy (float64), lax.conv_general_dilated and naive loops."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from jaxla import nn
from jaxla.nn import (
    Layer,
    avg_pool,
    conv2d,
    conv2d_init,
    dense,
    dense_init,
    dropout,
    embedding,
    embedding_attend,
    embedding_init,
    glu,
    glu_init,
    layer_norm,
    layer_norm_init,
    max_pool,
    mlp,
    mlp_init,
    rms_norm,
    rms_norm_init,
    serial,
    swiglu,
    swiglu_init,
)


def _f64(x):
    return np.asarray(x, np.float64)


def _normal(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------------------------
# dense, mlp


def test_dense_matches_numpy_with_leading_axes(rng):
    params = dense_init(jax.random.key(0), 5, 3)
    assert set(params) == {"w", "b"} and params["w"].shape == (5, 3)
    assert params["w"].dtype == jnp.float32 and not np.any(np.asarray(params["b"]))
    params = {"w": params["w"], "b": jnp.asarray(_normal(rng, (3,)))}
    x = _normal(rng, (2, 4, 5))
    y = dense(params, x)
    assert y.shape == (2, 4, 3) and y.dtype == jnp.float32
    np.testing.assert_allclose(y, _f64(x) @ _f64(params["w"]) + _f64(params["b"]),
                               rtol=1e-5, atol=1e-6)
    no_bias = dense_init(jax.random.key(0), 5, 3, use_bias=False)
    assert set(no_bias) == {"w"}
    np.testing.assert_allclose(dense(no_bias, x[0, 0]), _f64(x[0, 0]) @ _f64(no_bias["w"]),
                               rtol=1e-5, atol=1e-6)


def test_dense_dtypes():
    params64 = dense_init(jax.random.key(0), 4, 2, dtype=jnp.float64)
    x32 = jnp.ones((3, 4), jnp.float32)
    assert dense(params64, x32).dtype == jnp.float32  # the dtype of x, also with float64 params
    params16 = dense_init(jax.random.key(0), 4, 2, dtype=jnp.bfloat16)
    y16 = dense(params16, x32.astype(jnp.bfloat16))
    assert y16.dtype == jnp.bfloat16
    np.testing.assert_allclose(_f64(y16), _f64(x32) @ _f64(params16["w"]), rtol=2e-2, atol=2e-2)


def test_mlp_matches_numpy(rng):
    params = mlp_init(jax.random.key(1), [4, 7, 6, 3])
    assert list(params) == ["layers_0", "layers_1", "layers_2"]
    x = _normal(rng, (5, 4))
    h = _f64(x)
    for i in range(3):
        h = h @ _f64(params[f"layers_{i}"]["w"]) + _f64(params[f"layers_{i}"]["b"])
        if i < 2:
            h = np.tanh(h)
    np.testing.assert_allclose(mlp(params, x, activation=jnp.tanh), h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mlp(params, x, activation="tanh"), h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        mlp(params, x, activation="tanh", activate_final=True), np.tanh(h), rtol=1e-5, atol=1e-6
    )
    relu = mlp(params, x)  # default jax.nn.relu
    h = _f64(x)
    for i in range(3):
        h = h @ _f64(params[f"layers_{i}"]["w"]) + _f64(params[f"layers_{i}"]["b"])
        h = np.maximum(h, 0) if i < 2 else h
    np.testing.assert_allclose(relu, h, rtol=1e-5, atol=1e-6)


def test_dense_and_mlp_errors():
    params = dense_init(jax.random.key(0), 5, 3)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.dense: `x` must have 5 features \(last axis\) to match params\['w'\] "
              r"of shape \(5, 3\), got shape \(2, 4\)$",
    ):
        dense(params, jnp.ones((2, 4)))
    with pytest.raises(
        ValueError, match=r"^jaxla.nn.dense: `params` must be a dict with an entry 'w'"
    ):
        dense({"kernel": params["w"]}, jnp.ones((2, 5)))
    with pytest.raises(TypeError, match=r"^jaxla.nn.dense: `x` must have a real floating dtype"):
        dense(params, jnp.ones((2, 5), jnp.int32))
    with pytest.raises(ValueError, match=r"^jaxla.nn.dense: `x` must have 5 features"):
        jax.jit(dense)(params, jnp.ones((2, 4)))  # static problems raise under jit too
    mparams = mlp_init(jax.random.key(0), [4, 3, 2])
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.mlp: `activation` must be one of 'celu', .*'tanh', got 'rleu'$",
    ):
        mlp(mparams, jnp.ones(4), activation="rleu")
    with pytest.raises(TypeError, match=r"^jaxla.nn.mlp: `activation` must be a callable or the"):
        mlp(mparams, jnp.ones(4), activation=3)
    bad = {"layers_0": mparams["layers_0"], "layers_1": dense_init(jax.random.key(0), 5, 2)}
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.mlp: `params\['layers_1'\]\['w'\]` must have 3 rows to follow layers_0 "
              r"of shape \(4, 3\), got shape \(5, 2\)$",
    ):
        mlp(bad, jnp.ones(4))
    with pytest.raises(ValueError, match=r"^jaxla.nn.mlp_init: `sizes` must be a sequence of at "):
        mlp_init(jax.random.key(0), [4])
    with pytest.raises(ValueError, match=r"^jaxla.nn.dense_init: `d_out` must be >= 1, got 0$"):
        dense_init(jax.random.key(0), 3, 0)


# --------------------------------------------------------------------------------------------
# norms


def _layer_norm_ref(x, scale, bias, eps):
    x = _f64(x)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * _f64(scale) + _f64(bias)


def _rms_norm_ref(x, scale, eps):
    x = _f64(x)
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * _f64(scale)


def test_layer_norm_and_rms_norm_match_numpy(rng):
    x = _normal(rng, (3, 4, 6)) * 3 + 5
    scale, bias = _normal(rng, (6,)), _normal(rng, (6,))
    p = {"scale": jnp.asarray(scale), "bias": jnp.asarray(bias)}
    y = layer_norm(p, x)
    assert y.dtype == jnp.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, _layer_norm_ref(x, scale, bias, 1e-5), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        layer_norm(p, x, eps=0.5), _layer_norm_ref(x, scale, bias, 0.5), rtol=1e-5, atol=1e-5
    )
    init = layer_norm_init(None, 6)
    np.testing.assert_allclose(layer_norm(init, x), _layer_norm_ref(x, 1, 0, 1e-5),
                               rtol=1e-5, atol=1e-5)
    assert set(layer_norm_init(None, 6, use_bias=False)) == {"scale"}
    np.testing.assert_allclose(layer_norm({}, x), _layer_norm_ref(x, 1, 0, 1e-5),
                               rtol=1e-5, atol=1e-5)
    r = rms_norm({"scale": jnp.asarray(scale)}, x)
    assert r.dtype == jnp.float32
    np.testing.assert_allclose(r, _rms_norm_ref(x, scale, 1e-6), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        rms_norm(rms_norm_init(None, 6), x, eps=2.0), _rms_norm_ref(x, 1, 2.0), rtol=1e-5
    )


def test_layer_norm_large_mean_float32_accuracy(rng):
    # a mean of 1e4 with unit spread: the two-pass variance stays accurate in float32
    x = (rng.standard_normal((4, 64)) + 1e4).astype(np.float32)
    y = layer_norm({}, x)
    np.testing.assert_allclose(y, _layer_norm_ref(x, 1, 0, 1e-5), atol=2e-3)


def test_norms_bfloat16_statistics_in_float32(rng):
    x16 = jnp.asarray(rng.standard_normal((8, 256)) * 2 + 30, jnp.bfloat16)
    for fn, ref in ((layer_norm, _layer_norm_ref(x16, 1, 0, 1e-5)),
                    (rms_norm, _rms_norm_ref(x16, 1, 1e-6))):
        y = fn({}, x16)
        assert y.dtype == jnp.bfloat16
        # the only error left is the final rounding to bfloat16 (8 significant bits)
        np.testing.assert_allclose(_f64(y), ref, rtol=8e-3, atol=8e-3)


_layer_norm_jit = jax.jit(layer_norm)
_rms_norm_jit = jax.jit(rms_norm)


@settings(deadline=None)
@given(a=st.floats(0.5, 20.0), b=st.floats(-50.0, 50.0), seed=st.integers(0, 2**16))
def test_norm_invariances(a, b, seed):
    """layer_norm(a x + b) = layer_norm(x) and rms_norm(a x) = rms_norm(x) for a > 0."""
    x = np.random.default_rng(seed).standard_normal((3, 16))
    p = {"scale": jnp.linspace(0.5, 2.0, 16), "bias": jnp.linspace(-1.0, 1.0, 16)}
    np.testing.assert_allclose(_layer_norm_jit(p, a * x + b), _layer_norm_jit(p, x),
                               rtol=1e-4, atol=1e-4)
    q = {"scale": p["scale"]}
    np.testing.assert_allclose(_rms_norm_jit(q, a * x), _rms_norm_jit(q, x), rtol=1e-4, atol=1e-4)


def test_norm_constant_rows_and_errors():
    x = jnp.full((2, 4), 3.0, jnp.float32)
    y = layer_norm(layer_norm_init(None, 4), x)
    np.testing.assert_array_equal(y, np.zeros((2, 4)))
    g = jax.grad(lambda x: layer_norm({}, x).sum())(x)
    assert np.all(np.isfinite(g))
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.layer_norm: `params\['scale'\]` must have shape \(d,\)=\(4,\) for `x` "
              r"of shape \(2, 4\), got shape \(3,\)$",
    ):
        layer_norm({"scale": jnp.ones(3)}, x)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.rms_norm: `params` must be a dict with optional entries 'scale', "
              r"got \['bias', 'scale'\]$",
    ):
        rms_norm(layer_norm_init(None, 4), x)
    with pytest.raises(
        ValueError, match=r"^jaxla.nn.rms_norm: `eps` must be > 0 and finite, got 0"
    ):
        rms_norm({}, x, eps=0)


# --------------------------------------------------------------------------------------------
# embedding


def test_embedding_lookup_and_attend(rng):
    params = embedding_init(jax.random.key(0), 11, 4, stddev=0.5)
    table = np.asarray(params["table"])
    assert table.shape == (11, 4)
    tokens = rng.integers(0, 11, (3, 5))
    np.testing.assert_array_equal(embedding(params, tokens), table[tokens])
    x = _normal(rng, (3, 5, 4))
    logits = embedding_attend(params, x)
    assert logits.shape == (3, 5, 11) and logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, _f64(x) @ _f64(table).T, rtol=1e-5, atol=1e-6)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.embedding: `tokens` must hold ids in \[0, vocab_size=11\), "
              r"got values in \[0, 11\]$",
    ):
        embedding(params, np.array([0, 11]))
    with pytest.raises(TypeError, match=r"^jaxla.nn.embedding: `tokens` must be an integer array"):
        embedding(params, np.array([0.0, 1.0]))
    # under jit, ids cannot be checked: out-of-range ids give NaN rows, never another row
    out = jax.jit(embedding)(params, jnp.array([1, 11]))
    np.testing.assert_array_equal(out[0], table[1])
    assert np.all(np.isnan(out[1]))


# --------------------------------------------------------------------------------------------
# dropout


def test_dropout_statistics_and_determinism():
    x = jnp.ones((100_000,), jnp.float32)
    rate = 0.3
    y = dropout(x, rate=rate, key=jax.random.key(0))
    assert y.dtype == jnp.float32
    kept = np.asarray(y) != 0
    n = x.size
    # the number of dropped entries is Binomial(n, rate): within 5 standard deviations
    assert abs((~kept).sum() - rate * n) < 5 * np.sqrt(n * rate * (1 - rate))
    np.testing.assert_allclose(np.asarray(y)[kept], 1 / (1 - rate), rtol=1e-6)
    np.testing.assert_allclose(float(y.mean()), 1.0, atol=5 * np.sqrt(rate / (1 - rate) / n))
    np.testing.assert_array_equal(y, dropout(x, rate=rate, key=jax.random.key(0)))
    assert not np.array_equal(y, dropout(x, rate=rate, key=jax.random.key(1)))
    np.testing.assert_array_equal(dropout(x, rate=rate, deterministic=True), x)
    np.testing.assert_array_equal(dropout(x, rate=0.0), x)
    # traced rate under jit, and bfloat16
    f = jax.jit(lambda x, r, k: dropout(x, rate=r, key=k))
    np.testing.assert_array_equal(f(x, rate, jax.random.key(0)), y)
    y16 = dropout(x.astype(jnp.bfloat16), rate=0.5, key=jax.random.key(0))
    assert y16.dtype == jnp.bfloat16 and set(np.unique(_f64(y16))) == {0.0, 2.0}


def test_dropout_errors():
    x = jnp.ones(4)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.dropout: `key` must be a PRNG key when deterministic=False and "
              r"rate > 0, got None; pass key=\.\.\. or deterministic=True$",
    ):
        dropout(x, rate=0.1)
    with pytest.raises(
        ValueError, match=r"^jaxla.nn.dropout: `rate` must be in \[0, 1\), got 1.0$"
    ):
        dropout(x, rate=1.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"^jaxla.nn.dropout: `rate` must be >= 0 and finite"):
        dropout(x, rate=-0.1, key=jax.random.key(0))
    with pytest.raises(
        TypeError, match=r"^jaxla.nn.dropout: `deterministic` must be a Python bool"
    ):
        dropout(x, rate=0.1, deterministic=None)


# --------------------------------------------------------------------------------------------
# convolution and pooling


def _same_pad(size, k, s, d):
    eff = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def _conv_ref(x, w, b, stride, padding, dilation):
    """Naive loops in float64: y[b, i, j, o] = sum xpad[b, i*s + u*d, j*s + v*d, c] w[u, v, c, o].
    """
    x, w = _f64(x), _f64(w)
    kh, kw = w.shape[:2]
    (sh, sw), (dh, dw) = stride, dilation
    if padding == "SAME":
        padding = (_same_pad(x.shape[1], kh, sh, dh), _same_pad(x.shape[2], kw, sw, dw))
    elif padding == "VALID":
        padding = ((0, 0), (0, 0))
    xp = np.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    ho, wo = (xp.shape[1] - eh) // sh + 1, (xp.shape[2] - ew) // sw + 1
    y = np.zeros((x.shape[0], ho, wo, w.shape[3]))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * sh:i * sh + eh:dh, j * sw:j * sw + ew:dw, :]
            y[:, i, j, :] = np.einsum("bhwc,hwco->bo", patch, w)
    return y + (0 if b is None else _f64(b))


CONV_CASES = [
    ((1, 1), "SAME", (1, 1)),
    ((2, 1), "SAME", (1, 1)),
    ((2, 2), "VALID", (1, 1)),
    ((1, 2), ((1, 0), (2, 1)), (1, 1)),
    ((1, 1), "SAME", (2, 1)),
]


@pytest.mark.parametrize(("stride", "padding", "dilation"), CONV_CASES)
def test_conv2d_matches_lax_and_naive_loops(rng, stride, padding, dilation):
    params = conv2d_init(jax.random.key(0), (3, 2), 3, 4)
    params["b"] = jnp.asarray(_normal(rng, (4,)))
    x = _normal(rng, (2, 7, 6, 3))
    y = conv2d(params, x, stride=stride, padding=padding, dilation=dilation)
    assert y.dtype == jnp.float32
    ref = jax.lax.conv_general_dilated(
        x, params["w"], stride, padding, rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST,
    ) + params["b"][None, None, None, :]
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    naive = _conv_ref(x, params["w"], params["b"], stride, padding, dilation)
    assert y.shape == naive.shape
    np.testing.assert_allclose(y, naive, rtol=1e-5, atol=1e-5)


def test_conv2d_unbatched_int_padding_and_errors(rng):
    params = conv2d_init(jax.random.key(0), 3, 2, 5, use_bias=False)
    assert set(params) == {"w"} and params["w"].shape == (3, 3, 2, 5)
    x = _normal(rng, (6, 6, 2))
    y = conv2d(params, x, padding=1)
    np.testing.assert_allclose(y, _conv_ref(x[None], params["w"], None, (1, 1),
                                            ((1, 1), (1, 1)), (1, 1))[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, conv2d(params, x[None], padding="SAME")[0], rtol=1e-6)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.conv2d: `x` must have 2 features \(last axis\) to match params\['w'\] "
              r"of shape \(3, 3, 2, 5\) \(c_in=2\), got shape \(6, 6, 3\)$",
    ):
        conv2d(params, jnp.ones((6, 6, 3)))
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.conv2d: `padding` must be one of 'SAME', 'VALID', got 'same'$",
    ):
        conv2d(params, x, padding="same")
    with pytest.raises(ValueError, match=r"^jaxla.nn.conv2d: `x` must be 3-D or 4-D"):
        conv2d(params, jnp.ones((6, 2)))
    with pytest.raises(ValueError, match=r"^jaxla.nn.conv2d: `stride\[1\]` must be >= 1, got 0$"):
        conv2d(params, x, stride=(1, 0))
    with pytest.raises(ValueError, match=r"^jaxla.nn.conv2d: `x` must be at least as large as"):
        conv2d(params, jnp.ones((2, 2, 2)), padding="VALID")


def _pool_ref(x, k, s, padding, op):
    x = _f64(x)
    if padding == "SAME":
        padding = (_same_pad(x.shape[1], k[0], s[0], 1), _same_pad(x.shape[2], k[1], s[1], 1))
    elif padding == "VALID":
        padding = ((0, 0), (0, 0))
    xp = np.pad(x, ((0, 0), padding[0], padding[1], (0, 0)), constant_values=np.nan)
    ho, wo = (xp.shape[1] - k[0]) // s[0] + 1, (xp.shape[2] - k[1]) // s[1] + 1
    y = np.zeros((x.shape[0], ho, wo, x.shape[3]))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1], :]
            y[:, i, j, :] = op(patch, axis=(1, 2))  # nan-aware: padding is excluded
    return y


@pytest.mark.parametrize(
    ("window", "stride", "padding"),
    [(2, None, "VALID"), ((3, 2), (2, 1), "SAME"), (3, 2, ((1, 1), (0, 2)))],
)
def test_pools_match_naive_loops(rng, window, stride, padding):
    x = _normal(rng, (2, 7, 6, 3))
    k = (window, window) if isinstance(window, int) else window
    s = k if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    mx = max_pool(x, window, stride=stride, padding=padding)
    av = avg_pool(x, window, stride=stride, padding=padding)
    assert mx.dtype == av.dtype == jnp.float32
    np.testing.assert_allclose(mx, _pool_ref(x, k, s, padding, np.nanmax), rtol=1e-6)
    np.testing.assert_allclose(av, _pool_ref(x, k, s, padding, np.nanmean), rtol=1e-5, atol=1e-6)


def test_pool_errors_and_unbatched():
    x = jnp.arange(16.0, dtype=jnp.float32).reshape(4, 4, 1)
    np.testing.assert_allclose(avg_pool(x, 2, padding="SAME", stride=1)[-1, -1, 0], 15.0)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.max_pool: `padding` must be smaller than the window \(2, 2\) on every "
              r"side, got 2$",
    ):
        max_pool(x, 2, padding=2)
    with pytest.raises(ValueError, match=r"^jaxla.nn.avg_pool: `window` must be an int or a pair"):
        avg_pool(x, (2, 2, 2))


# --------------------------------------------------------------------------------------------
# gated units


def test_glu_and_swiglu_match_numpy(rng):
    params = glu_init(jax.random.key(0), 5, 7, 3)
    assert {k: v["w"].shape for k, v in params.items()} == {
        "gate": (5, 7), "up": (5, 7), "down": (7, 3)}
    assert all("b" not in v for v in params.values())
    assert swiglu_init is glu_init
    x = _normal(rng, (2, 4, 5))
    g, u, d = (_f64(params[n]["w"]) for n in ("gate", "up", "down"))
    xg = _f64(x) @ g
    sig = 1 / (1 + np.exp(-xg))
    np.testing.assert_allclose(glu(params, x), (sig * (_f64(x) @ u)) @ d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(swiglu(params, x), (xg * sig * (_f64(x) @ u)) @ d,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(glu(params, x, activation="silu"), swiglu(params, x), rtol=1e-6)
    biased = glu_init(jax.random.key(0), 5, 7, use_bias=True)
    assert biased["down"]["w"].shape == (7, 5) and biased["down"]["b"].shape == (5,)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.swiglu: `params` must be a dict with entries 'gate', 'up', 'down' "
              r"\(as made by glu_init\), got \['down', 'gate'\]$",
    ):
        swiglu({"gate": params["gate"], "down": params["down"]}, x)


# --------------------------------------------------------------------------------------------
# serial


def test_serial_params_keys_and_composition(rng):
    d1 = functools.partial(dense_init, d_in=4, d_out=6)
    d2 = functools.partial(dense_init, d_in=6, d_out=2)
    init, apply = layer = serial((d1, dense), jax.nn.relu,
                                 functools.partial(dropout, rate=0.5), (d2, dense))
    assert isinstance(layer, Layer)
    key = jax.random.key(3)
    params = init(key)
    assert sorted(params) == ["layers_0", "layers_3"]
    keys = jax.random.split(key, 4)  # split once per layer, like stax.serial
    np.testing.assert_array_equal(params["layers_0"]["w"], d1(keys[0])["w"])
    np.testing.assert_array_equal(params["layers_3"]["w"], d2(keys[3])["w"])
    x = _normal(rng, (3, 4))
    h = np.maximum(_f64(x) @ _f64(params["layers_0"]["w"]) + _f64(params["layers_0"]["b"]), 0)
    ref = h @ _f64(params["layers_3"]["w"]) + _f64(params["layers_3"]["b"])
    np.testing.assert_allclose(apply(params, x, deterministic=True), ref, rtol=1e-5, atol=1e-6)
    # the dropout entry (index 2) receives split(key, 4)[2]
    akey = jax.random.key(9)
    hd = dropout(jax.nn.relu(dense(params["layers_0"], x)), rate=0.5,
                 key=jax.random.split(akey, 4)[2])
    np.testing.assert_allclose(apply(params, x, key=akey), dense(params["layers_3"], hd),
                               rtol=1e-6)
    # nested serial and jit
    outer_init, outer_apply = serial(layer, jnp.tanh)
    outer = outer_init(key)
    assert sorted(outer) == ["layers_0"] and sorted(outer["layers_0"]) == ["layers_0", "layers_3"]
    y = jax.jit(functools.partial(outer_apply, deterministic=True))(outer, x)
    inner = apply(outer["layers_0"], x, deterministic=True)
    np.testing.assert_allclose(y, np.tanh(_f64(inner)), rtol=1e-5, atol=1e-6)


def test_serial_errors():
    init, apply = serial((functools.partial(dense_init, d_in=2, d_out=2), dense), jax.nn.relu)
    params = init(jax.random.key(0))
    with pytest.raises(
        TypeError,
        match=r"^jaxla.nn.serial: `deterministic` must be a keyword taken by one of the layers",
    ):
        apply(params, jnp.ones(2), deterministic=True)
    with pytest.raises(ValueError, match=r"^jaxla.nn.serial: `params` must have the entries "
                                         r"\['layers_0'\] made by init, got \[\]$"):
        apply({}, jnp.ones(2))
    with pytest.raises(TypeError, match=r"^jaxla.nn.serial: `layers\[1\]` must be an \(init, "
                                        r"apply\) pair of callables or a parameter-free callable"):
        serial(jax.nn.relu, (1, 2))
    with pytest.raises(ValueError, match=r"^jaxla.nn.serial: `layers` must hold at least one"):
        serial()


# --------------------------------------------------------------------------------------------
# jit, vmap, gradients


def test_vmap_and_jit_agree_with_batched(rng):
    params = dense_init(jax.random.key(0), 4, 3)
    x = _normal(rng, (5, 4))
    np.testing.assert_allclose(jax.vmap(dense, (None, 0))(params, x), dense(params, x),
                               rtol=1e-6)
    ln = layer_norm_init(None, 4)
    np.testing.assert_allclose(jax.vmap(layer_norm, (None, 0))(ln, x), jax.jit(layer_norm)(ln, x),
                               rtol=1e-6)
    cp = conv2d_init(jax.random.key(0), 2, 4, 2)
    imgs = _normal(rng, (3, 5, 5, 4))
    np.testing.assert_allclose(jax.vmap(conv2d, (None, 0))(cp, imgs), conv2d(cp, imgs),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # heavy; the slow step of CI runs it
def test_gradients_match_finite_differences_float64(rng):
    x = rng.standard_normal((2, 3, 4))
    dp = jax.tree.map(lambda a: a.astype(jnp.float64), dense_init(jax.random.key(0), 4, 3))
    scale, bias = rng.standard_normal(4), rng.standard_normal(4)
    gp = jax.tree.map(lambda a: a.astype(jnp.float64), glu_init(jax.random.key(1), 4, 5))
    cp = jax.tree.map(lambda a: a.astype(jnp.float64), conv2d_init(jax.random.key(2), 2, 4, 2))
    checks = [
        (lambda w, b, x: dense({"w": w, "b": b}, x), (dp["w"], dp["b"], x)),
        (lambda s, b, x: layer_norm({"scale": s, "bias": b}, x), (scale, bias, x)),
        (lambda s, x: rms_norm({"scale": s}, x), (scale, x)),
        (lambda p, x: swiglu(p, x), (gp, x)),
        (lambda p, x: conv2d(p, x, stride=2), (cp, x[..., None].repeat(4, -1)[0])),
        (lambda x: avg_pool(x, 2, padding="SAME"), (x[..., None][0],)),
    ]
    for f, args in checks:
        check_grads(f, args, order=1, modes=("rev",), atol=1e-5, rtol=1e-5)
    check_grads(checks[1][0], checks[1][1], order=2, modes=("rev",), atol=1e-5, rtol=1e-5)


def test_public_names():
    for name in ("dense", "dense_init", "mlp", "layer_norm", "rms_norm", "embedding",
                 "embedding_attend", "dropout", "conv2d", "max_pool", "avg_pool", "glu",
                 "swiglu", "swiglu_init", "serial", "Layer", "ACTIVATIONS"):
        assert name in nn.__all__ and getattr(nn, name) is getattr(nn.layers, name)
