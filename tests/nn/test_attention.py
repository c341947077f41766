"""Tests of jaxla.nn.attention against jax.nn.dot_product_attention, numpy, finite differences."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import checkify
from jax.test_util import check_grads

from jaxla import nn
from jaxla.nn import (
    KVCache,
    causal_mask,
    chunked_attention,
    combine_masks,
    dot_product_attention,
    init_cache,
    multi_head_attention,
    multi_head_attention_init,
    padding_mask,
    sliding_window_mask,
)

# Small chunks so that every test exercises several chunks and padding (T=5 -> 3 chunks of 2).
chunked = functools.partial(chunked_attention, query_chunk_size=2, key_chunk_size=3)


def _normal(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


@functools.partial(jax.jit, static_argnames="is_causal")
def _reference(q, k, v, mask=None, bias=None, is_causal=False):
    """jax.nn.dot_product_attention (XLA implementation), 4-D mask/bias as it requires."""
    b, t, n, _ = q.shape
    s = k.shape[1]
    if mask is not None:
        mask = jnp.broadcast_to(jnp.asarray(mask), (b, n, t, s))
    if bias is not None:
        bias = jnp.broadcast_to(jnp.asarray(bias), (b, n, t, s))
    return jax.nn.dot_product_attention(
        q, k, v, bias=bias, mask=mask, is_causal=is_causal, implementation="xla"
    )


def _valid_rows(mask, is_causal, shape):
    """(B, N, T) numpy: rows with at least one key to attend (jax.nn averages v elsewhere)."""
    t, s = shape[2:]
    m = np.ones(shape, bool) if mask is None else np.broadcast_to(np.asarray(mask), shape)
    if is_causal:
        m = m & np.tril(np.ones((t, s), bool))
    return m.any(-1)


# (N, K, T, S, mask shape, bias shape, is_causal): MHA, GQA and MQA; every broadcast pattern
# of the bias (its gradient is reduced over broadcast axes chunk by chunk); T < S and T > S.
CASES = {
    "mha": (4, 4, 5, 7, None, None, False),
    "gqa_mask_bias_full": (4, 2, 5, 7, (2, 1, 5, 7), (1, 4, 5, 7), False),
    "mqa_causal_bias_rows": (4, 1, 7, 5, None, (2, 1, 7, 1), True),
    "gqa_causal_mask2d_bias_cols": (4, 2, 5, 7, (5, 7), (2, 4, 1, 7), True),
    "gqa_bias_scalar": (2, 1, 6, 6, (2, 2, 1, 6), (1, 1, 1, 1), False),
}


def _case(name, seed=0, dtype=np.float32):
    n, kh, t, s, mshape, bshape, causal = CASES[name]
    rng = np.random.default_rng(seed)
    q = _normal(rng, (2, t, n, 8), dtype)
    k = _normal(rng, (2, s, kh, 8), dtype)
    v = _normal(rng, (2, s, kh, 8), dtype)
    mask = None
    if mshape is not None:
        mask = rng.random(mshape) > 0.3
        mask[..., 0] = True  # every row keeps a key, so jax.nn is a valid reference
    bias = None if bshape is None else _normal(rng, bshape, dtype)
    return q, k, v, dict(mask=mask, bias=bias, is_causal=causal)


def _grads(f, q, k, v, kw, w):
    """Gradients of sum(w * f(q, k, v, ...)) with respect to q, k, v (and bias when given)."""
    bias = kw["bias"]
    rest = {key: val for key, val in kw.items() if key != "bias"}

    def loss(q, k, v, bias):
        return jnp.sum(w * f(q, k, v, bias=bias, **rest))

    argnums = (0, 1, 2) if bias is None else (0, 1, 2, 3)
    return jax.jit(jax.grad(loss, argnums=argnums))(q, k, v, bias)


# --------------------------------------------------------------------------------------------
# agreement with jax.nn.dot_product_attention


@pytest.mark.parametrize("name", list(CASES))
def test_dot_product_attention_matches_jax_nn(name):
    q, k, v, kw = _case(name)
    out = dot_product_attention(q, k, v, **kw)
    ref = _reference(q, k, v, **kw)
    assert out.shape == q.shape and out.dtype == jnp.float32
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_chunked_attention_matches_reference_forward_and_gradients(name):
    q, k, v, kw = _case(name)
    out = chunked(q, k, v, **kw)
    assert out.shape == q.shape and out.dtype == jnp.float32
    np.testing.assert_allclose(out, _reference(q, k, v, **kw), atol=2e-6, rtol=2e-6)
    np.testing.assert_allclose(out, dot_product_attention(q, k, v, **kw), atol=2e-6, rtol=2e-6)

    w = _normal(np.random.default_rng(1), out.shape)
    got = _grads(chunked, q, k, v, kw, w)
    want = _grads(_reference, q, k, v, kw, w)
    for g, r in zip(got, want, strict=True):
        assert g.dtype == jnp.float32
        np.testing.assert_allclose(g, r, atol=1e-5, rtol=1e-5)


def test_chunked_attention_default_chunks_and_single_chunk():
    q, k, v, kw = _case("gqa_causal_mask2d_bias_cols")
    ref = _reference(q, k, v, **kw)
    np.testing.assert_allclose(chunked_attention(q, k, v, **kw), ref, atol=2e-6, rtol=2e-6)
    one_by_one = chunked_attention(q, k, v, query_chunk_size=1, key_chunk_size=1, **kw)
    np.testing.assert_allclose(one_by_one, ref, atol=2e-6, rtol=2e-6)


@settings(max_examples=6)
@given(
    qc=st.integers(1, 9),
    kc=st.integers(1, 12),
    causal=st.booleans(),
)
def test_chunked_equals_unchunked_for_any_chunk_sizes(qc, kc, causal):
    rng = np.random.default_rng(qc * 100 + kc)
    q, k, v = _normal(rng, (1, 9, 2, 4)), _normal(rng, (1, 11, 1, 4)), _normal(rng, (1, 11, 1, 4))
    out = chunked_attention(q, k, v, is_causal=causal, query_chunk_size=qc, key_chunk_size=kc)
    ref = dot_product_attention(q, k, v, is_causal=causal)
    np.testing.assert_allclose(out, ref, atol=2e-6, rtol=2e-6)


@pytest.mark.parametrize("fn", [dot_product_attention, chunked], ids=["naive", "chunked"])
def test_gradients_match_finite_differences_float64(fn):
    rng = np.random.default_rng(2)
    q, k, v = (_normal(rng, s, np.float64) for s in [(1, 4, 2, 3), (1, 5, 1, 3), (1, 5, 1, 3)])
    bias = _normal(rng, (1, 2, 4, 5), np.float64)
    mask = rng.random((1, 1, 4, 5)) > 0.3
    mask[..., 1, :] = False  # a fully masked row: its derivative is exactly zero
    mask[..., 0, 0] = True

    def f(q, k, v, bias):
        return fn(q, k, v, mask=mask, bias=bias, is_causal=True)

    modes = ("fwd", "rev") if fn is dot_product_attention else ("rev",)
    check_grads(f, (q, k, v, bias), order=1, modes=modes, atol=1e-6, rtol=1e-6)
    assert f(q, k, v, bias).dtype == jnp.float64


@pytest.mark.slow
def test_chunked_attention_reverse_over_reverse_and_no_forward_mode():
    rng = np.random.default_rng(12)
    q, k, v = (_normal(rng, (1, 5, 2, 3), np.float64) for _ in range(3))

    def hess_norm(f):
        inner = jax.grad(lambda q: jnp.sum(f(q, k, v, is_causal=True) ** 2))
        return jax.grad(lambda q: jnp.sum(inner(q) ** 2))(q)

    np.testing.assert_allclose(hess_norm(chunked), hess_norm(dot_product_attention), atol=1e-10)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(lambda q: chunked(q, k, v), (q,), (q,))


@pytest.mark.slow
def test_dot_product_attention_second_order_float64():
    rng = np.random.default_rng(3)
    q, k, v = (_normal(rng, s, np.float64) for s in [(1, 3, 2, 3), (1, 4, 2, 3), (1, 4, 2, 3)])
    check_grads(
        lambda q, k: dot_product_attention(q, k, v, is_causal=True), (q, k), order=2,
        modes=("fwd", "rev"), atol=1e-5, rtol=1e-5,
    )


def test_weights_match_jax_softmax_and_sum_to_one():
    q, k, v, kw = _case("gqa_causal_mask2d_bias_cols")
    _, weights = dot_product_attention(q, k, v, return_weights=True, **kw)
    b, t, n, h = q.shape
    s = k.shape[1]
    assert weights.shape == (b, n, t, s) and weights.dtype == jnp.float32
    # independent float64 computation of softmax(q k^T / sqrt(h) + bias) over the allowed keys
    kk = np.repeat(np.asarray(k, np.float64), n // k.shape[2], axis=2)
    logits = np.einsum("btnh,bsnh->bnts", np.asarray(q, np.float64), kk) / np.sqrt(h)
    logits = logits + kw["bias"]
    allowed = np.broadcast_to(kw["mask"], logits.shape) & np.tril(np.ones((t, s), bool))
    e = np.where(allowed, np.exp(logits - logits.max(-1, keepdims=True)), 0.0)
    np.testing.assert_allclose(weights, e / e.sum(-1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, atol=1e-6)


# --------------------------------------------------------------------------------------------
# fully masked rows


def _masked_rows_problem():
    rng = np.random.default_rng(4)
    q, k, v = _normal(rng, (2, 5, 4, 8)), _normal(rng, (2, 7, 2, 8)), _normal(rng, (2, 7, 2, 8))
    mask = rng.random((2, 4, 5, 7)) > 0.4
    mask[..., 0] = True
    mask[0, :, 2, :] = False  # batch 0, query 2: nothing to attend in any head
    mask[1, 3] = False  # batch 1, head 3: every row fully masked
    bias = _normal(rng, (2, 4, 5, 7))
    return q, k, v, mask, bias


@pytest.mark.parametrize("use_jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("fn", [dot_product_attention, chunked], ids=["naive", "chunked"])
def test_fully_masked_rows_give_zeros_and_zero_gradients(fn, use_jit):
    q, k, v, mask, bias = _masked_rows_problem()
    valid = _valid_rows(mask, False, mask.shape)  # (B, N, T)
    valid_btn = np.transpose(valid, (0, 2, 1))[..., None]  # (B, T, N, 1)
    w = _normal(np.random.default_rng(5), q.shape)

    def loss(q, k, v, bias):
        return jnp.sum(w * fn(q, k, v, mask=mask, bias=bias))

    f = jax.jit(fn) if use_jit else fn
    out = f(q, k, v, mask=mask, bias=bias)
    grad_fn = jax.grad(loss, argnums=(0, 1, 2, 3))
    grads = (jax.jit(grad_fn) if use_jit else grad_fn)(q, k, v, bias)
    assert np.all(np.isfinite(out)) and all(np.all(np.isfinite(g)) for g in grads)
    np.testing.assert_array_equal(np.where(valid_btn, 0.0, out), 0.0)
    np.testing.assert_array_equal(np.where(valid_btn, 0.0, grads[0]), 0.0)  # dq rows
    np.testing.assert_array_equal(np.where(valid[..., None], 0.0, grads[3]), 0.0)  # dbias rows

    # The valid rows agree with jax.nn, and the gradients equal those of jax.nn with the
    # cotangent of the fully masked rows (where jax.nn returns the mean of v) set to zero.
    ref = _reference(q, k, v, mask=mask, bias=bias)
    np.testing.assert_allclose(np.where(valid_btn, out, 0.0), np.where(valid_btn, ref, 0.0),
                               atol=2e-6, rtol=2e-6)
    w_ref = np.where(valid_btn, w, 0.0)
    want = _grads(_reference, q, k, v, dict(mask=mask, bias=bias), w_ref)
    for g, r in zip(grads, want, strict=True):
        np.testing.assert_allclose(g, r, atol=1e-5, rtol=1e-5)


def test_fully_masked_rows_weights_are_zero():
    q, k, v, mask, bias = _masked_rows_problem()
    _, weights = dot_product_attention(q, k, v, mask=mask, bias=bias, return_weights=True)
    valid = _valid_rows(mask, False, mask.shape)
    np.testing.assert_array_equal(np.asarray(weights)[~valid], 0.0)
    np.testing.assert_allclose(np.asarray(weights).sum(-1)[valid], 1.0, atol=1e-6)


# --------------------------------------------------------------------------------------------
# layouts, dtypes, jit and vmap


@pytest.mark.parametrize("fn", [dot_product_attention, chunked], ids=["naive", "chunked"])
def test_unbatched_vmap_and_jit_agree_with_batched(fn):
    q, k, v, kw = _case("gqa_mask_bias_full")
    mask = np.broadcast_to(kw["mask"], (2, 4, 5, 7))
    bias = np.broadcast_to(kw["bias"], (2, 4, 5, 7))
    batched = fn(q, k, v, mask=mask, bias=bias)
    single = fn(q[1], k[1], v[1], mask=mask[1], bias=bias[1])  # (T, N, H) layout
    assert single.shape == q.shape[1:]
    np.testing.assert_allclose(single, batched[1], atol=1e-6, rtol=1e-6)
    mapped = jax.vmap(lambda q, k, v, m, b: fn(q, k, v, mask=m, bias=b))(q, k, v, mask, bias)
    np.testing.assert_allclose(mapped, batched, atol=1e-6, rtol=1e-6)
    jitted = jax.jit(lambda q, k, v: fn(q, k, v, mask=mask, bias=bias, scale=0.5))(q, k, v)
    np.testing.assert_allclose(jitted, _reference(q * np.float32(0.5 * np.sqrt(8)), k, v,
                                                  mask=mask, bias=bias), atol=2e-6, rtol=2e-6)


@pytest.mark.parametrize("fn", [dot_product_attention, chunked], ids=["naive", "chunked"])
def test_bfloat16_inputs_are_upcast_and_output_in_bfloat16(fn):
    q, k, v, kw = _case("gqa_causal_mask2d_bias_cols")
    qb, kb, vb = (jnp.asarray(x, jnp.bfloat16) for x in (q, k, v))
    out = fn(qb, kb, vb, **kw)
    assert out.dtype == jnp.bfloat16
    ref = _reference(*(np.asarray(x, np.float32) for x in (qb, kb, vb)), **kw)
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=2e-2, rtol=2e-2)
    g = jax.grad(lambda q: jnp.sum(fn(q, kb, vb, **kw).astype(jnp.float32)))(qb)
    assert g.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(g, np.float32)))


def test_float32_stays_float32_with_float64_enabled():
    q, k, v, kw = _case("gqa_mask_bias_full")
    bias64 = np.asarray(kw["bias"], np.float64)
    out = dot_product_attention(q, k, v, mask=kw["mask"], bias=bias64)
    assert out.dtype == jnp.float32
    assert chunked(q, k, v, mask=kw["mask"], bias=bias64).dtype == jnp.float32


# --------------------------------------------------------------------------------------------
# mask helpers


def test_mask_helpers_match_numpy():
    np.testing.assert_array_equal(causal_mask(4)[0, 0], np.tril(np.ones((4, 4), bool)))
    np.testing.assert_array_equal(causal_mask(3, 5)[0, 0], np.tril(np.ones((3, 5), bool)))
    assert causal_mask(3, 5).shape == (1, 1, 3, 5)
    i, j = np.arange(6)[:, None], np.arange(6)[None, :]
    np.testing.assert_array_equal(sliding_window_mask(6, 3)[0, 0], (i - j >= 0) & (i - j < 3))
    np.testing.assert_array_equal(
        sliding_window_mask(6, 2, causal=False)[0, 0], np.abs(i - j) < 2
    )
    lengths = np.array([0, 3, 5])
    pm = padding_mask(lengths, 5)
    assert pm.shape == (3, 1, 1, 5)
    np.testing.assert_array_equal(pm[:, 0, 0], np.arange(5)[None, :] < lengths[:, None])
    combined = combine_masks(causal_mask(5), None, pm)
    assert combined.shape == (3, 1, 5, 5)
    np.testing.assert_array_equal(
        combined, np.logical_and(np.asarray(causal_mask(5)), np.asarray(pm))
    )
    assert combine_masks(None, None) is None


def test_masks_drive_attention_like_is_causal():
    q, k, v, _ = _case("mha")
    kk = k[:, :5]
    vv = v[:, :5]
    np.testing.assert_allclose(
        dot_product_attention(q, kk, vv, mask=causal_mask(5)),
        dot_product_attention(q, kk, vv, is_causal=True),
        atol=1e-7,
    )
    lengths = np.array([3, 5])
    keep = np.arange(5)[None, None, None, :] < lengths[:, None, None, None]
    np.testing.assert_allclose(
        dot_product_attention(q, kk, vv, mask=padding_mask(lengths, 5)),
        _reference(q, kk, vv, mask=keep),
        atol=1e-5,
    )


# --------------------------------------------------------------------------------------------
# multi-head attention and the key/value cache


D, N_HEADS, KV_HEADS = 16, 4, 2


@pytest.fixture(scope="module")
def mha_params():
    return multi_head_attention_init(
        jax.random.key(0), D, N_HEADS, num_kv_heads=KV_HEADS, use_bias=True
    )


def test_multi_head_attention_init_names_and_shapes():
    params = multi_head_attention_init(jax.random.key(1), 192, 3, num_kv_heads=1, use_bias=True)
    shapes = jax.tree_util.tree_map(lambda a: a.shape, params)
    assert shapes == {
        "query": {"w": (192, 192), "b": (192,)},
        "key": {"w": (192, 64), "b": (64,)},
        "value": {"w": (192, 64), "b": (64,)},
        "out": {"w": (192, 192), "b": (192,)},
    }
    assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(params))
    np.testing.assert_array_equal(params["out"]["b"], 0.0)
    # LeCun normal: variance 1 / d_in (sample variance of 36864 entries, 3% tolerance)
    assert abs(float(jnp.var(params["query"]["w"])) * 192 - 1.0) < 0.03
    params = multi_head_attention_init(jax.random.key(1), 10, 2, head_dim=8, dtype=jnp.float64)
    assert params["query"]["w"].shape == (10, 16) and params["out"]["w"].shape == (16, 10)
    assert "b" not in params["query"] and params["key"]["w"].dtype == jnp.float64


def _numpy_mha(params, x, context=None, mask=None, causal=False, n=N_HEADS, kh=KV_HEADS):
    """float64 numpy multi-head attention, written independently of jaxla."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    x = np.asarray(x, np.float64)
    c = x if context is None else np.asarray(context, np.float64)
    q = x @ p["query"]["w"] + p["query"]["b"]
    k = c @ p["key"]["w"] + p["key"]["b"]
    v = c @ p["value"]["w"] + p["value"]["b"]
    h = q.shape[-1] // n
    b, t, s = x.shape[0], x.shape[1], c.shape[1]
    heads = []
    for i in range(n):
        j = i // (n // kh)
        qi, ki, vi = q[..., i * h:(i + 1) * h], k[..., j * h:(j + 1) * h], v[..., j * h:(j + 1) * h]
        logits = qi @ np.swapaxes(ki, -1, -2) / np.sqrt(h)
        allowed = np.ones((b, t, s), bool)
        if mask is not None:
            allowed &= np.broadcast_to(np.asarray(mask), (b, n, t, s))[:, i]
        if causal:
            allowed &= np.tril(np.ones((t, s), bool))
        e = np.where(allowed, np.exp(logits - logits.max(-1, keepdims=True)), 0.0)
        heads.append((e / e.sum(-1, keepdims=True)) @ vi)
    return np.concatenate(heads, -1) @ p["out"]["w"] + p["out"]["b"]


def test_multi_head_attention_matches_numpy(mha_params):
    rng = np.random.default_rng(6)
    x, ctx = _normal(rng, (2, 5, D)), _normal(rng, (2, 7, D))
    mask = rng.random((2, 1, 5, 7)) > 0.3
    mask[..., 0] = True
    y = multi_head_attention(mha_params, x, num_heads=N_HEADS, num_kv_heads=KV_HEADS,
                             context=ctx, mask=mask)
    assert y.shape == (2, 5, D) and y.dtype == jnp.float32
    np.testing.assert_allclose(y, _numpy_mha(mha_params, x, ctx, mask), atol=1e-5, rtol=1e-5)
    y, w = multi_head_attention(mha_params, x, num_heads=N_HEADS, num_kv_heads=KV_HEADS,
                                is_causal=True, return_weights=True)
    np.testing.assert_allclose(y, _numpy_mha(mha_params, x, causal=True), atol=1e-5, rtol=1e-5)
    assert w.shape == (2, N_HEADS, 5, 5)
    np.testing.assert_array_equal(np.triu(np.asarray(w), 1), 0.0)
    yc = multi_head_attention(mha_params, x, num_heads=N_HEADS, num_kv_heads=KV_HEADS,
                              is_causal=True, attention_fn=chunked)
    np.testing.assert_allclose(yc, y, atol=2e-6, rtol=2e-6)


@pytest.mark.parametrize("attention_fn", [dot_product_attention, chunked],
                         ids=["naive", "chunked"])
def test_kv_cache_decoding_equals_full_causal_pass(mha_params, attention_fn):
    rng = np.random.default_rng(7)
    x = _normal(rng, (2, 6, D))
    kw = dict(num_heads=N_HEADS, num_kv_heads=KV_HEADS, is_causal=True, attention_fn=attention_fn)
    full = multi_head_attention(mha_params, x, **kw)

    step = jax.jit(lambda p, x, cache: multi_head_attention(p, x, cache=cache, **kw))
    cache = init_cache(2, 8, KV_HEADS, D // N_HEADS)
    y, cache = multi_head_attention(mha_params, x[:, :3], cache=cache, **kw)  # prefill 3
    outs = [y]
    for t in range(3, 6):  # then one token at a time
        y, cache = step(mha_params, x[:, t:t + 1], cache)
        outs.append(y)
    assert isinstance(cache, KVCache) and int(cache.index) == 6
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, atol=1e-5, rtol=1e-5)
    # the cache holds the projected keys of the 6 positions and zeros after them
    k_full = np.asarray(x) @ np.asarray(mha_params["key"]["w"]) + np.asarray(mha_params["key"]["b"])
    np.testing.assert_allclose(cache.k[:, :6].reshape(2, 6, -1), k_full, atol=1e-5)
    np.testing.assert_array_equal(cache.k[:, 6:], 0.0)


def test_kv_cache_under_vmap_per_example(mha_params):
    rng = np.random.default_rng(8)
    x = _normal(rng, (2, 4, D))
    kw = dict(num_heads=N_HEADS, num_kv_heads=KV_HEADS, is_causal=True)
    full = multi_head_attention(mha_params, x, **kw)

    def decode(x1):  # one example: x1 (T, D), cache arrays (L, K, H)
        cache = jax.tree_util.tree_map(lambda a: a[0] if a.ndim else a,
                                       init_cache(1, 5, KV_HEADS, D // N_HEADS))
        outs = []
        for t in range(x1.shape[0]):
            y, cache = multi_head_attention(mha_params, x1[t:t + 1], cache=cache, **kw)
            outs.append(y)
        return jnp.concatenate(outs, axis=0)

    np.testing.assert_allclose(jax.vmap(decode)(x), full, atol=1e-5, rtol=1e-5)


def test_kv_cache_without_causal_attends_filled_positions_only(mha_params):
    rng = np.random.default_rng(9)
    x = _normal(rng, (1, 3, D))
    cache = init_cache(1, 6, KV_HEADS, D // N_HEADS)
    y, cache = multi_head_attention(mha_params, x, num_heads=N_HEADS, num_kv_heads=KV_HEADS,
                                    cache=cache)
    full = multi_head_attention(mha_params, x, num_heads=N_HEADS, num_kv_heads=KV_HEADS)
    np.testing.assert_allclose(y, full, atol=1e-5, rtol=1e-5)


def test_multi_head_attention_gradient_and_jit(mha_params):
    x = _normal(np.random.default_rng(10), (2, 5, D))
    kw = dict(num_heads=N_HEADS, num_kv_heads=KV_HEADS, is_causal=True)

    def loss(p, f):
        return jnp.sum(multi_head_attention(p, x, attention_fn=f, **kw) ** 2)

    g1 = jax.jit(jax.grad(loss), static_argnums=1)(mha_params, dot_product_attention)
    g2 = jax.grad(loss)(mha_params, chunked)
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2), strict=True):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# errors


def _err(fn, message, end="$"):
    return pytest.raises(ValueError, match="^" + re.escape(f"jaxla.nn.{fn}: {message}") + end)


def test_attention_errors_name_the_argument():
    rng = np.random.default_rng(11)
    q, k, v = _normal(rng, (2, 5, 4, 8)), _normal(rng, (2, 7, 2, 8)), _normal(rng, (2, 7, 2, 8))
    for fn, f in [("dot_product_attention", dot_product_attention),
                  ("chunked_attention", chunked_attention)]:
        with _err(fn, "`k` must have the head_dim H=8 of `q` (last axis), got shape (2, 7, 2, 4)"):
            f(q, k[..., :4], v[..., :4])
        with _err(fn, "`k` and `v` must have the same shape, got (2, 7, 2, 8) and (2, 6, 2, 8)"):
            f(q, k, v[:, :6])
        with _err(fn, "`q` must have a number of heads N that is a multiple of the K=3 key/value "
                      "heads of `k` (axis -2), got N=4"):
            f(q, _normal(rng, (2, 7, 3, 8)), _normal(rng, (2, 7, 3, 8)))
        with _err(fn, "`mask` must be broadcastable to (B, N, T, S)=(2, 4, 5, 7), "
                      "got shape (3, 5, 7)"):
            f(q, k, v, mask=np.ones((3, 5, 7), bool))
        with _err(fn, "`bias` must be broadcastable to (B, N, T, S)=(2, 4, 5, 7), "
                      "got shape (5, 6)"):
            f(q, k, v, bias=np.ones((5, 6), np.float32))
        with _err(fn, "`q` must be 3-D or 4-D (B, T, N, H) or (T, N, H), got shape (5, 64)"):
            f(q.reshape(5, -1), k, v)
        with _err(fn, "`k` must be 4-D (B, S, K, H) like `q`, got shape (7, 2, 8)"):
            f(q, k[0], v[0])
        with _err(fn, "`k` must have the batch size B=2 of `q` (axis 0), got shape (1, 7, 2, 8)"):
            f(q, k[:1], v[:1])
        q_nan = q.copy()
        q_nan[0, 0, 0, 0] = np.nan
        with _err(fn, "`q` contains 1 NaN or Inf value(s); clean or mask them first"):
            f(q_nan, k, v)
        with pytest.raises(TypeError, match=re.escape(
                f"jaxla.nn.{fn}: `mask` must be a boolean array (True = attend), got dtype int32")):
            f(q, k, v, mask=np.ones((5, 7), np.int32))
        with pytest.raises(TypeError, match=re.escape(f"jaxla.nn.{fn}: `q` must have a real")):
            f(q.astype(np.int32), k, v)
    with _err("chunked_attention", "`query_chunk_size` must be >= 1, got 0"):
        chunked_attention(q, k, v, query_chunk_size=0)
    # static checks also raise under jit (where JAX may append a note on its traceback)
    with _err("dot_product_attention", "`k` must have the head_dim H=8 of `q` (last axis), "
                                       "got shape (2, 7, 2, 4)", end="($|\n)"):
        jax.jit(dot_product_attention)(q, k[..., :4], v[..., :4])


def test_nan_inputs_under_jit_are_reported_through_checkify():
    q = np.ones((1, 3, 2, 4), np.float32)
    q_nan = q.copy()
    q_nan[0, 1, 0, 2] = np.inf
    checked = checkify.checkify(jax.jit(dot_product_attention))
    err, _ = checked(q, q, q)
    assert err.get() is None
    err, _ = checked(q, q, q_nan)
    assert err.get().startswith(
        "jaxla.nn.dot_product_attention: `v` contains NaN or Inf value(s); clean or mask them first"
    )


def test_layer_and_helper_errors(mha_params):
    x = np.zeros((2, 5, D), np.float32)
    kw = dict(num_heads=N_HEADS, num_kv_heads=KV_HEADS)
    with _err("multi_head_attention_init", "`num_kv_heads` must divide `num_heads`=4, "
                                           "got num_kv_heads=3"):
        multi_head_attention_init(jax.random.key(0), 16, 4, num_kv_heads=3)
    with _err("multi_head_attention_init", "`head_dim` must be given when `d_model` is not a "
                                           "multiple of `num_heads`, got d_model=10 and "
                                           "num_heads=4"):
        multi_head_attention_init(jax.random.key(0), 10, 4)
    with _err("multi_head_attention", "`num_kv_heads` must divide `num_heads`=4, "
                                      "got num_kv_heads=3"):
        multi_head_attention(mha_params, x, num_heads=4, num_kv_heads=3)
    with _err("multi_head_attention", "`params['key']['w']` must have shape (D, K*H)=(16, 4) "
                                      "for num_kv_heads=1 and head_dim H=4, got shape (16, 8)"):
        multi_head_attention(mha_params, x, num_heads=4, num_kv_heads=1)
    with _err("multi_head_attention", "`num_heads` must divide the width N*H=16 of "
                                      "params['query']['w'], got num_heads=3"):
        multi_head_attention(mha_params, x, num_heads=3, num_kv_heads=1)
    with _err("multi_head_attention", "`x` must have D=16 features (last axis) to match params"
                                      "['query']['w'] of shape (16, 16), got shape (2, 5, 8)"):
        multi_head_attention(mha_params, x[..., :8], **kw)
    with _err("multi_head_attention", "`mask` must be broadcastable to (B, N, T, S)=(2, 4, 5, 5), "
                                      "got shape (5, 6)"):
        multi_head_attention(mha_params, x, mask=np.ones((5, 6), bool), **kw)
    cache = init_cache(2, 4, KV_HEADS, 4)
    with _err("multi_head_attention", "`x` must have at most L=4 tokens (the cache length), "
                                      "got T=5"):
        multi_head_attention(mha_params, x, cache=cache, **kw)
    with _err("multi_head_attention", "`cache` must have room for the T=2 new tokens of `x` "
                                      "(index + T <= L=4), got index=3"):
        multi_head_attention(mha_params, x[:, :2], cache=cache._replace(index=jnp.int32(3)), **kw)
    with _err("multi_head_attention", "`cache.k` must have shape (B, L, K, H)=(2, L, 2, 4) to "
                                      "match `x` and `params`, got (2, 4, 1, 4)"):
        multi_head_attention(mha_params, x[:, :1], cache=init_cache(2, 4, 1, 4), **kw)
    with _err("multi_head_attention", "`cache` must be None when `context` is given (the cache "
                                      "holds self-attention keys and values), got both"):
        multi_head_attention(mha_params, x[:, :1], context=x, cache=cache, **kw)
    with _err("causal_mask", "`t` must be >= 1, got 0"):
        causal_mask(0)
    with _err("sliding_window_mask", "`window` must be >= 1, got 0"):
        sliding_window_mask(4, 0)
    with _err("padding_mask", "`lengths` must lie in [0, max_len=4], got values in [1, 5]"):
        padding_mask(np.array([1, 5]), 4)
    with _err("combine_masks", "`masks` must have shapes that broadcast together, "
                               "got shapes [(2, 3), (4, 3)]"):
        combine_masks(np.ones((2, 3), bool), np.ones((4, 3), bool))
    with pytest.raises(TypeError, match=re.escape(
            "jaxla.nn.padding_mask: `lengths` must be an integer array (B,), got dtype float32")):
        padding_mask(np.array([1.0, 2.0], np.float32), 4)
    with pytest.raises(TypeError, match=re.escape(
            "jaxla.nn.init_cache: `dtype` must be a floating dtype, got int32")):
        init_cache(1, 4, 1, 4, jnp.int32)


def test_public_names():
    assert nn.dot_product_attention is nn.attention.dot_product_attention
    assert set(nn.attention.__all__) <= set(nn.__all__)
