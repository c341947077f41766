"""Tests for jaxla.nn.tt: TT dense layers (init, apply, conversion from a dense layer).

References: the dense matrix assembled by tensorly's ``tt_matrix_to_matrix`` from the same
cores, jaxla.nn.dense with that matrix, dense numpy norms, and finite differences.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorly as tl
from jax.test_util import check_grads

from jaxla.nn import dense, dense_init
from jaxla.nn.tt import tt_dense, tt_dense_from_dense, tt_dense_init
from tests.helpers import msg

tl.set_backend("numpy")

ROWS, COLS = (4, 2, 3), (2, 5, 2)  # d_in = 24, d_out = 20
KEY = jax.random.key(0)


def _dense_w(params):
    return tl.tt_matrix_to_matrix([np.asarray(c, np.float64) for c in params["cores"]])


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_init_shapes_dtypes_and_rank_caps():
    p = tt_dense_init(KEY, ROWS, COLS, (3, 4))
    assert [c.shape for c in p["cores"]] == [(1, 4, 2, 3), (3, 2, 5, 4), (4, 3, 2, 1)]
    assert all(c.dtype == jnp.float32 for c in p["cores"]) and p["b"].shape == (20,)
    assert p["b"].dtype == jnp.float32
    np.testing.assert_array_equal(p["b"], 0.0)
    # ranks are capped at what each cut can use: min(8, 60) = 8 and min(80, 6) = 6
    big = tt_dense_init(KEY, ROWS, COLS, 100, use_bias=False, dtype=jnp.float64)
    assert [c.shape for c in big["cores"]] == [(1, 4, 2, 8), (8, 2, 5, 6), (6, 3, 2, 1)]
    assert set(big) == {"cores"} and big["cores"][0].dtype == jnp.float64


@pytest.mark.slow
def test_init_variance_matches_lecun():
    """The implied dense W has entry variance 1 / d_in, as dense_init's default."""
    rows, cols = (4, 4, 4), (4, 4, 4)
    keys = jax.random.split(KEY, 16)
    ws = np.stack([_dense_w(tt_dense_init(k, rows, cols, 4, dtype=jnp.float64)) for k in keys])
    assert abs(ws.var() * 64 - 1.0) < 0.2
    assert abs(ws.mean()) < 0.05


P64 = tt_dense_init(jax.random.key(1), ROWS, COLS, 3, dtype=jnp.float64)
P64 = {**P64, "b": jnp.linspace(-1.0, 1.0, 20)}
X64 = np.random.default_rng(0).standard_normal((6, 24))
_tt_dense_jit = jax.jit(tt_dense)


def test_forward_against_dense():
    w = _dense_w(P64)
    ref = X64 @ w + np.asarray(P64["b"])[None, :]
    np.testing.assert_allclose(tt_dense(P64, X64), ref, atol=1e-12)
    np.testing.assert_allclose(_tt_dense_jit(P64, X64), ref, atol=1e-12)
    np.testing.assert_allclose(jax.vmap(tt_dense, in_axes=(None, 0))(P64, X64), ref, atol=1e-12)
    y3 = tt_dense(P64, X64.reshape(2, 3, 24))
    assert y3.shape == (2, 3, 20)
    np.testing.assert_allclose(y3.reshape(6, 20), ref, atol=1e-12)
    # float32 inputs: float32 outputs, accurate
    y32 = tt_dense(P64, X64.astype(np.float32))
    assert y32.dtype == jnp.float32 and _rel(y32, ref) < 1e-6


@pytest.mark.slow
def test_forward_more_layouts():
    w = _dense_w(P64)
    assert tt_dense(P64, X64[0]).shape == (20,)
    np.testing.assert_allclose(dense({"w": jnp.asarray(w), "b": P64["b"]}, X64),
                               tt_dense(P64, X64), atol=1e-12)
    no_bias = {"cores": P64["cores"]}
    np.testing.assert_allclose(tt_dense(no_bias, X64), X64 @ w, atol=1e-12)
    p32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), P64)
    y = tt_dense(p32, X64.astype(np.float32))
    ref = X64 @ w + np.asarray(P64["b"])[None, :]
    assert y.dtype == jnp.float32 and _rel(y, ref) < 1e-5


@pytest.mark.slow
def test_gradients():
    f = jax.jit(lambda p, x: jnp.sum(jnp.sin(tt_dense(p, x))))
    check_grads(f, (P64, X64[:2]), order=1, modes=["fwd", "rev"])


DP = {"w": jnp.asarray(np.random.default_rng(5).standard_normal((24, 20)) / math.sqrt(24)),
      "b": jnp.arange(20.0)}


def test_from_dense_eps_and_capped():
    w = np.asarray(DP["w"])
    eps = 0.5
    p = tt_dense_from_dense(DP, ROWS, COLS, eps=eps, max_rank=None)
    assert _rel(_dense_w(p), w) <= eps * (1 + 1e-9)
    assert p["b"] is DP["b"]
    capped = jax.jit(lambda d: tt_dense_from_dense(d, ROWS, COLS, max_rank=2))(DP)
    assert [c.shape for c in capped["cores"]] == [(1, 4, 2, 2), (2, 2, 5, 2), (2, 3, 2, 1)]
    # TT-SVD at fixed ranks is tensorly's tensor_train_matrix at those ranks
    ref = tl.decomposition.tensor_train_matrix(w.reshape(ROWS + COLS), rank=[1, 2, 2, 1])
    np.testing.assert_allclose(_dense_w(capped), tl.tt_matrix_to_matrix(ref), atol=1e-10)


@pytest.mark.slow
def test_from_dense_exact_and_float32():
    exact = tt_dense_from_dense(DP, ROWS, COLS, max_rank=None)
    np.testing.assert_allclose(tt_dense(exact, X64), dense(DP, X64), atol=1e-12)
    eager = tt_dense_from_dense(DP, ROWS, COLS, max_rank=2)
    capped = jax.jit(lambda d: tt_dense_from_dense(d, ROWS, COLS, max_rank=2))(DP)
    for a, b in zip(capped["cores"], eager["cores"], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)
    dp32 = dense_init(jax.random.key(2), 24, 20)
    p32 = tt_dense_from_dense(dp32, ROWS, COLS, eps=0.3, max_rank=None)
    assert all(c.dtype == jnp.float32 for c in p32["cores"])
    assert _rel(_dense_w(p32), np.asarray(dp32["w"])) <= 0.3 * 1.0001


@pytest.mark.slow
def test_fine_tuning_reduces_the_loss():
    """A TT layer trained with optax fits a linear map it can represent exactly."""
    target = tt_dense_init(jax.random.key(3), ROWS, COLS, 2, dtype=jnp.float64)
    y = tt_dense(target, X64)
    params = tt_dense_init(jax.random.key(4), ROWS, COLS, 2, dtype=jnp.float64)
    opt = optax.adam(3e-2)

    def loss(p):
        return jnp.mean((tt_dense(p, X64) - y) ** 2)

    @jax.jit
    def train(p):
        def step(carry, _):
            p, s = carry
            g = jax.grad(loss)(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        return jax.lax.scan(step, (p, opt.init(p)), None, length=200)[0][0]

    assert float(loss(train(params))) < 0.05 * float(loss(params))


def test_errors():
    fn = "jaxla.nn.tt_dense_init"
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `row_dims` and `col_dims` must have the same number of factors, got "
            "(4, 2, 3) and (2, 10)")):
        tt_dense_init(KEY, ROWS, (2, 10), 2)
    with pytest.raises(ValueError, match=msg(f"{fn}: `rank` must be >= 1, got 0")):
        tt_dense_init(KEY, ROWS, COLS, 0)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `rank` must be an int or a sequence of d-1=2 ints (one per inner rank), got "
            "(2, 2, 2)")):
        tt_dense_init(KEY, ROWS, COLS, (2, 2, 2))
    with pytest.raises(TypeError, match=msg(
            f"{fn}: `key` must be a JAX random key such as jax.random.key(0), got int")):
        tt_dense_init(0, ROWS, COLS, 2)
    fn = "jaxla.nn.tt_dense"
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `x` must have d_in=24 features (last axis) to match the TT matrix, got shape "
            "(6, 20)")):
        tt_dense(P64, np.ones((6, 20)))
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `params` must be a dict with an entry 'cores' (a list of TT-matrix cores), "
            "got ['b', 'w']")):
        tt_dense({"w": 1.0, "b": 2.0}, X64)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `params['cores'][1]` must have 3 rows (first axis) to follow "
            "params['cores'][0] of shape (1, 4, 2, 3), got shape (2, 2, 5, 3)")):
        tt_dense({"cores": [P64["cores"][0], jnp.ones((2, 2, 5, 3)), P64["cores"][2]]}, X64)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `params['b']` must have shape (d_out,)=(20,) to match the cores, got shape "
            "(24,)")):
        tt_dense({**P64, "b": jnp.ones(24)}, X64)
    with pytest.raises(TypeError, match=msg(
            f"{fn}: `x` must have a real floating dtype, got integer or boolean dtype int32; "
            "cast it first, e.g. x.astype(jnp.float32)")):
        tt_dense(P64, np.ones((6, 24), np.int32))
    fn = "jaxla.nn.tt_dense_from_dense"
    dp = {"w": jnp.ones((24, 20), jnp.float32), "b": jnp.zeros(20, jnp.float32)}
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `row_dims` must multiply to d_in=24 (the shape of `params_dense['w']`), got "
            "(4, 2, 2) with product 16")):
        tt_dense_from_dense(dp, (4, 2, 2), COLS, max_rank=2)
    with pytest.raises(ValueError, match=msg(f"{fn}: `eps` must be > 0 and finite, got 0.0")):
        tt_dense_from_dense(dp, ROWS, COLS, eps=0.0, max_rank=None)
    with pytest.raises(ValueError, match=msg(f"{fn}: `max_rank` must be >= 1, got 0")):
        tt_dense_from_dense(dp, ROWS, COLS, max_rank=0)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `params_dense` must be a dict with an entry 'w' (d_in, d_out), got ['b']")):
        tt_dense_from_dense({"b": dp["b"]}, ROWS, COLS, max_rank=2)
    with pytest.raises(TypeError, match=msg(
            f"{fn}: `eps` chooses the ranks from the singular values of `params_dense['w']`, so "
            "`params_dense['w']` must be concrete (call this eagerly, outside jit/vmap/grad, or "
            "pass only max_rank), got a traced value")):
        jax.jit(lambda d: tt_dense_from_dense(d, ROWS, COLS, eps=0.1, max_rank=None))(dp)
