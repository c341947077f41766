"""Tests of jaxla.linalg.vectors against numpy, scipy and scikit-learn references."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.test_util import check_grads
from scipy.spatial.distance import cdist
from sklearn.metrics import pairwise_distances as sk_pairwise_distances
from sklearn.metrics.pairwise import cosine_similarity as sk_cosine_similarity
from sklearn.preprocessing import normalize as sk_normalize

from jaxla.linalg import (
    cosine_similarity,
    dot,
    norm,
    normalize,
    outer,
    pairwise_distances,
    project,
    safe_norm,
)
from tests.helpers import grads2, msg, rel_err

INF = np.inf
VECTOR_ORDS = [None, 1, 2, INF, -INF, 0, 3, 2.5]
MATRIX_ORDS = [None, "fro", "nuc", 1, -1, 2, -2, INF, -INF]


def grads1(f, args):
    """First-order reverse derivative check of jit(f) (float64)."""
    check_grads(jax.jit(f), args, order=1, modes=["rev"])


def f32_pair(rng, *shape):
    """A float32 array and its exact float64 copy (the reference input)."""
    x = rng.standard_normal(shape).astype(np.float32)
    return x, x.astype(np.float64)


# ---------------------------------------------------------------------------------------------
# dot, outer
# ---------------------------------------------------------------------------------------------


def test_dot_and_outer_match_numpy(rng):
    x, y = rng.standard_normal(7), rng.standard_normal(7)
    z = rng.standard_normal(3)
    np.testing.assert_allclose(dot(x, y), np.dot(x, y), rtol=1e-13)
    np.testing.assert_allclose(outer(x, z), np.outer(x, z), rtol=1e-13)
    assert dot(x, y).shape == () and outer(x, z).shape == (7, 3)


def test_dot_and_outer_float32_accuracy_and_dtype(rng):
    x32, x64 = f32_pair(rng, 1000)
    y32, y64 = f32_pair(rng, 1000)
    out = dot(x32, y32)
    assert out.dtype == jnp.float32
    assert abs(float(out) - np.dot(x64, y64)) <= 1e-5 * np.linalg.norm(x64) * np.linalg.norm(y64)
    assert outer(x32[:3], y32[:4]).dtype == jnp.float32
    assert dot(jnp.asarray(x32[:4], jnp.float16), jnp.asarray(y32[:4], jnp.float16)).dtype == (
        jnp.float16
    )


def test_dot_outer_jit_vmap_and_grad(rng):
    xs, ys = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    np.testing.assert_allclose(jax.vmap(dot)(xs, ys), np.sum(xs * ys, axis=1), rtol=1e-13)
    np.testing.assert_allclose(jax.jit(outer)(xs[0], ys[0]), np.outer(xs[0], ys[0]), rtol=1e-13)
    grads1(dot, (xs[0], ys[0]))
    grads1(outer, (xs[0], ys[1]))


def test_dot_outer_errors():
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.dot: `x` and `y` must have the same shape, got (3,) and (4,)"
    )):
        dot(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.dot: `x` must be 1-D (d,), got shape (2, 3)"
    )):
        dot(np.ones((2, 3)), np.ones(3))
    with pytest.raises(TypeError, match=r"^jaxla.linalg.dot: `y` must have a real floating dtype, "
                       r"got integer or boolean dtype int\d+; cast it first"):
        dot(np.ones(3), np.arange(3))
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.outer: `y` must be 1-D (m,), got shape ()"
    )):
        outer(np.ones(3), 1.0)


# ---------------------------------------------------------------------------------------------
# norm, safe_norm
# ---------------------------------------------------------------------------------------------


def test_vector_norms_match_numpy(rng):
    v = rng.standard_normal(6)
    v[2] = 0.0
    for o in VECTOR_ORDS:
        np.testing.assert_allclose(norm(v, o), np.linalg.norm(v, o), rtol=1e-13, err_msg=str(o))
    t = rng.standard_normal((3, 4, 5))
    for o in VECTOR_ORDS:
        for axis, keepdims in ((-2, False), (2, True)):
            np.testing.assert_allclose(
                norm(t, o, axis=axis, keepdims=keepdims),
                np.linalg.norm(t, o, axis=axis, keepdims=keepdims),
                rtol=1e-13,
                err_msg=f"{o} {axis} {keepdims}",
            )
    # axis=None, ord=None flattens any rank
    np.testing.assert_allclose(norm(t), np.linalg.norm(t), rtol=1e-13)
    assert norm(t, keepdims=True).shape == (1, 1, 1)


def test_matrix_norms_match_numpy(rng):
    x = rng.standard_normal((4, 3))
    t = rng.standard_normal((3, 4, 5))
    for o in MATRIX_ORDS:
        np.testing.assert_allclose(norm(x, o), np.linalg.norm(x, o), rtol=1e-12, err_msg=str(o))
        for axis, keepdims in (((2, 0), False), ((-1, -2), True)):
            np.testing.assert_allclose(
                norm(t, o, axis=axis, keepdims=keepdims),
                np.linalg.norm(t, o, axis=axis, keepdims=keepdims),
                rtol=1e-12,
                err_msg=f"{o} {axis} {keepdims}",
            )


def test_norm_float32_accuracy_and_dtypes(rng):
    x32, x64 = f32_pair(rng, 30, 20)
    for o in MATRIX_ORDS:
        out = norm(x32, o)
        assert out.dtype == jnp.float32
        assert rel_err(out, np.linalg.norm(x64, o)) < 1e-5, o
    for o in VECTOR_ORDS:
        out = norm(x32[0], o)
        assert out.dtype == jnp.float32
        assert rel_err(out, np.linalg.norm(x64[0], o)) < 1e-5, o
    assert norm(jnp.asarray(x32, jnp.bfloat16), "nuc").dtype == jnp.bfloat16
    assert safe_norm(x32).dtype == jnp.float32
    # p-norms are scaled by max|x|: no overflow of |x|**p in float32
    big = np.full(4, 1e30, np.float32)
    np.testing.assert_allclose(norm(big, 4), 1e30 * 4 ** 0.25, rtol=1e-6)


def test_norm_gradient_at_zero_is_finite_and_a_subgradient():
    def all_grads(x, ords):
        return {str(o): jax.grad(lambda v, o=o: norm(v, o))(x) for o in ords}

    g = jax.jit(all_grads, static_argnums=1)(jnp.zeros(4), tuple(VECTOR_ORDS))
    for o in VECTOR_ORDS:
        assert np.all(np.isfinite(np.asarray(g[str(o)]))), o
    # documented subgradients: 0 for the Euclidean and p-norms, ones for 1, equal split for inf
    np.testing.assert_array_equal(g["None"], np.zeros(4))
    np.testing.assert_array_equal(g["3"], np.zeros(4))
    np.testing.assert_array_equal(g["1"], np.ones(4))
    np.testing.assert_allclose(g["inf"], np.full(4, 0.25))
    gm = jax.jit(all_grads, static_argnums=1)(jnp.zeros((3, 2)), tuple(MATRIX_ORDS))
    for o in MATRIX_ORDS:
        assert gm[str(o)].shape == (3, 2) and np.all(np.isfinite(np.asarray(gm[str(o)]))), o
    # a subgradient of a norm at 0 has dual norm <= 1: nuc <-> 2, fro <-> fro
    assert np.linalg.norm(np.asarray(gm["nuc"]), 2) <= 1 + 1e-12
    assert np.linalg.norm(np.asarray(gm["2"]), "nuc") <= 1 + 1e-12
    np.testing.assert_array_equal(gm["fro"], np.zeros((3, 2)))


def test_norm_grads_at_generic_points(rng):
    v = rng.standard_normal(5)
    a = rng.standard_normal((4, 3))
    grads2(norm, (v,))
    grads2(lambda m: norm(m, "nuc"), (a,))
    grads1(lambda u: norm(u, 3.0), (v,))
    grads1(lambda m: norm(m, 2), (a,))


@pytest.mark.slow
def test_norm_grads_all_orders_second_order(rng):
    v = rng.standard_normal(5)
    for o in (1, INF, -INF, 3.0, 2.5):
        grads2(lambda u, o=o: norm(u, o), (v,))
    a = rng.standard_normal((4, 3))
    for o in ("fro", 2, -2, 1, -1, INF, -INF):
        grads2(lambda m, o=o: norm(m, o), (a,))


def test_norm_jit_and_vmap(rng):
    a = rng.standard_normal((5, 4, 3))
    f = jax.jit(functools.partial(norm, ord="nuc"))
    np.testing.assert_allclose(jax.vmap(f)(a), np.linalg.norm(a, "nuc", axis=(1, 2)), rtol=1e-12)
    g = jax.jit(norm, static_argnames=("ord", "axis"))
    np.testing.assert_allclose(g(a, 3, axis=1), np.linalg.norm(a, 3, axis=1), rtol=1e-12)


def test_norm_propagates_nan_and_inf_like_numpy():
    assert np.isnan(norm(jnp.array([np.nan, 1.0])))
    assert np.isnan(norm(jnp.array([np.nan, 1.0]), 3))
    assert norm(jnp.array([np.inf, 1.0])) == np.inf
    assert safe_norm(jnp.array([np.inf, 0.0])) == np.inf


def test_norm_errors():
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.norm: `ord` must be one of None, 'fro', 'nuc', 1, -1, 2, -2, inf, -inf, "
        "got 'spectral'"
    )):
        norm(np.ones((2, 2)), "spectral")
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.norm: `ord` must be None, 1, 2, inf, 0, -inf, or a real number >= 1 for "
        "a vector norm, got 'fro'"
    )):
        norm(np.ones(3), "fro")
    with pytest.raises(ValueError, match=r"a real number >= 1 for a vector norm, got 0.5$"):
        norm(np.ones(3), 0.5)
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.norm: `x` must be 1-D or 2-D when `ord` is given and `axis` is None, "
        "got shape (2, 2, 2)"
    )):
        norm(np.ones((2, 2, 2)), 1)
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.norm: `axis` must lie in [-2, 2) for `x` of shape (2, 2), got 2"
    )):
        norm(np.ones((2, 2)), axis=2)
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.norm: `axis` must not repeat an axis, got (0, -2)"
    )):
        norm(np.ones((2, 2)), axis=(0, -2))
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.norm: `axis` must be None, an int or a 2-tuple of ints, got (0, 1, 2)"
    )):
        norm(np.ones((2, 2, 2)), axis=(0, 1, 2))
    with pytest.raises(TypeError, match=msg(
        "jaxla.linalg.norm: `axis` must be None, an int or a tuple of ints, got 'rows'"
    )):
        norm(np.ones((2, 2)), axis="rows")
    with pytest.raises(TypeError, match=r"^jaxla.linalg.norm: `x` must have a real floating"):
        norm(np.ones(3, dtype=bool))


def test_safe_norm_value_eps_and_gradient(rng):
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(safe_norm(x), np.linalg.norm(x), rtol=1e-13)
    np.testing.assert_allclose(
        safe_norm(x, axis=0, keepdims=True), np.linalg.norm(x, axis=0, keepdims=True), rtol=1e-13
    )
    np.testing.assert_allclose(
        safe_norm(x, axis=1, eps=0.5), np.sqrt(np.sum(x**2, axis=1) + 0.25), rtol=1e-13
    )
    z = jnp.zeros(3)
    np.testing.assert_array_equal(jax.grad(safe_norm)(z), np.zeros(3))
    g = jax.grad(lambda v: safe_norm(v, eps=1e-3))(z)
    np.testing.assert_array_equal(g, np.zeros(3))
    grads2(safe_norm, (x,))
    grads1(lambda v: safe_norm(v, eps=0.1), (np.zeros(3),))
    # eps may be traced
    f = jax.jit(lambda v, e: safe_norm(v, eps=e))
    np.testing.assert_allclose(f(np.zeros(2), 2.0), 2.0)
    np.testing.assert_allclose(
        jax.vmap(safe_norm)(x), np.linalg.norm(x, axis=1), rtol=1e-13
    )
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.safe_norm: `eps` must be >= 0 and finite, got -1.0"
    )):
        safe_norm(x, eps=-1.0)


# ---------------------------------------------------------------------------------------------
# cosine_similarity
# ---------------------------------------------------------------------------------------------


def test_cosine_similarity_matches_sklearn(rng):
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
    x[1] = 0.0
    np.testing.assert_allclose(cosine_similarity(x, y), sk_cosine_similarity(x, y), atol=1e-14)
    np.testing.assert_allclose(cosine_similarity(x), sk_cosine_similarity(x), atol=1e-14)
    u, v = x[0], y[0]
    np.testing.assert_allclose(
        cosine_similarity(u, v), u @ v / np.linalg.norm(u) / np.linalg.norm(v), rtol=1e-13
    )
    assert cosine_similarity(u, v).shape == () and cosine_similarity(x).shape == (5, 5)
    assert cosine_similarity(u, np.zeros(3)) == 0.0


def test_cosine_similarity_float32_accuracy_and_scale_invariance(rng):
    x32, x64 = f32_pair(rng, 6, 16)
    y32, y64 = f32_pair(rng, 5, 16)
    ref = sk_cosine_similarity(x64, y64)
    for sx, sy in ((1.0, 1.0), (1e20, 1e-20), (1e-30, 1e30)):
        out = cosine_similarity(x32 * np.float32(sx), y32 * np.float32(sy))
        assert out.dtype == jnp.float32
        assert np.max(np.abs(np.asarray(out, np.float64) - ref)) < 1e-6, (sx, sy)
    same = np.asarray(cosine_similarity(x32))
    assert np.all(np.abs(same) <= 1.0)


def test_cosine_similarity_gradient_at_zero_is_zero(rng):
    z = jnp.zeros(3)
    y = jnp.asarray(rng.standard_normal(3))
    gx, gy = jax.jit(jax.grad(cosine_similarity, argnums=(0, 1)))(z, y)
    np.testing.assert_array_equal(gx, np.zeros(3))
    assert np.all(np.isfinite(np.asarray(gy)))
    gx, gy = jax.jit(jax.grad(cosine_similarity, argnums=(0, 1)))(z, z)
    np.testing.assert_array_equal(gx, np.zeros(3))
    np.testing.assert_array_equal(gy, np.zeros(3))
    x = jnp.asarray(rng.standard_normal((3, 3))).at[1].set(0.0)
    g = jax.jit(jax.grad(lambda a: jnp.sum(cosine_similarity(a, y[None, :]))))(x)
    np.testing.assert_array_equal(g[1], np.zeros(3))
    assert np.all(np.isfinite(np.asarray(g)))


def test_cosine_similarity_grads_jit_vmap(rng):
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    check_grads(jax.jit(cosine_similarity), (x[0], y[0]), order=1, modes=["fwd", "rev"])
    grads1(cosine_similarity, (x, y))
    pairs = jax.vmap(jax.vmap(cosine_similarity, (None, 0)), (0, None))(x, y)
    np.testing.assert_allclose(pairs, jax.jit(cosine_similarity)(x, y), atol=1e-14)


@pytest.mark.slow
def test_second_order_grads_of_similarities_and_distances(rng):
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    grads2(cosine_similarity, (x[0], y[0]))
    grads2(cosine_similarity, (x, y))
    for metric in SCIPY_NAME:
        grads2(lambda a, b, m=metric: pairwise_distances(a, b, metric=m), (x, y))
    grads2(normalize, (x,))
    grads2(lambda a: normalize(a, ord=3, eps=2.0), (x,))
    grads2(lambda a: normalize(a, ord=INF, axis=0), (x,))
    grads2(project, (x[0], y[0]))
    grads2(project, (x[0], y.T))


def test_cosine_similarity_errors():
    fn = "jaxla.linalg.cosine_similarity"
    with pytest.raises(ValueError, match=msg(
        f"{fn}: `y` must have d=3 features (the last axis of `x`, shape (2, 3)), got shape (4, 5)"
    )):
        cosine_similarity(np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match=msg(
        f"{fn}: `y` must be 1-D like `x` (shape (3,)), got shape (2, 3)"
    )):
        cosine_similarity(np.ones(3), np.ones((2, 3)))
    with pytest.raises(ValueError, match=msg(
        f"{fn}: `x` must be 1-D or 2-D (d,) or (n, d), got shape (1, 2, 3)"
    )):
        cosine_similarity(np.ones((1, 2, 3)))
    with pytest.raises(ValueError, match=msg(
        f"{fn}: `y` contains 1 NaN or Inf value(s); clean or mask them first"
    )):
        cosine_similarity(np.ones(2), np.array([1.0, np.inf]))
    with pytest.raises(TypeError, match=rf"^{fn}: `x` must have a real floating dtype"):
        cosine_similarity(np.ones(3, dtype=np.int32))


# ---------------------------------------------------------------------------------------------
# pairwise_distances
# ---------------------------------------------------------------------------------------------

SCIPY_NAME = {"euclidean": "euclidean", "sqeuclidean": "sqeuclidean", "cosine": "cosine",
              "manhattan": "cityblock"}


def test_pairwise_distances_match_scipy_and_sklearn(rng):
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
    for metric, scipy_name in SCIPY_NAME.items():
        out = pairwise_distances(x, y, metric=metric)
        assert out.shape == (5, 4)
        np.testing.assert_allclose(out, cdist(x, y, scipy_name), atol=1e-13, err_msg=metric)
        same = np.asarray(pairwise_distances(x, metric=metric))
        np.testing.assert_allclose(
            same, sk_pairwise_distances(x, metric=metric), atol=1e-13, err_msg=metric
        )
        np.testing.assert_array_equal(np.diag(same), np.zeros(5))
    # a zero row: cosine distance 1 to everything else (scikit-learn's convention)
    x[2] = 0.0
    np.testing.assert_allclose(
        pairwise_distances(x, metric="cosine"), sk_pairwise_distances(x, metric="cosine"),
        atol=1e-13,
    )


def test_pairwise_distances_float32_accuracy_with_offset(rng):
    # centring makes the expansion accurate for data far from the origin
    x32, x64 = f32_pair(rng, 8, 6)
    y32, y64 = f32_pair(rng, 7, 6)
    off = np.float32(1000.0)
    for metric in ("euclidean", "sqeuclidean", "manhattan"):
        out = pairwise_distances(x32 + off, y32 + off, metric=metric)
        assert out.dtype == jnp.float32
        ref = cdist(x64 + 1000.0, y64 + 1000.0, SCIPY_NAME[metric])
        assert rel_err(out, ref) < 2e-5, metric
    out = pairwise_distances(x32, y32, metric="cosine")
    assert rel_err(out, cdist(x64, y64, "cosine")) < 1e-5


def test_pairwise_distances_gradients(rng):
    x, y = rng.standard_normal((3, 2)), rng.standard_normal((4, 2))
    grads1(pairwise_distances, (x, y))
    grads1(lambda a, b: pairwise_distances(a, b, metric="manhattan"), (x, y))
    # zero distance (diagonal, and duplicated points): finite gradients
    dup = np.concatenate([x, x[:1]])
    def all_grads(a):
        out = {}
        for m in SCIPY_NAME:
            out[m] = jax.grad(lambda a, m=m: jnp.sum(pairwise_distances(a, metric=m)))(a)
            out[m + "-xx"] = jax.grad(lambda a, m=m: jnp.sum(pairwise_distances(a, a, metric=m)))(a)
        return out

    for name, g in jax.jit(all_grads)(dup).items():
        assert np.all(np.isfinite(np.asarray(g))), name


def test_pairwise_distances_jit_and_vmap(rng):
    x, y = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 4, 3))
    f = jax.jit(pairwise_distances, static_argnames="metric")
    out = jax.vmap(functools.partial(f, metric="manhattan"))(x, y)
    for i in range(2):
        np.testing.assert_allclose(out[i], cdist(x[i], y[i], "cityblock"), atol=1e-13)


def test_pairwise_distances_errors():
    fn = "jaxla.linalg.pairwise_distances"
    with pytest.raises(ValueError, match=msg(
        f"{fn}: `metric` must be one of 'euclidean', 'sqeuclidean', 'cosine', 'manhattan', "
        "got 'cityblock'"
    )):
        pairwise_distances(np.ones((2, 2)), metric="cityblock")
    with pytest.raises(ValueError, match=msg(f"{fn}: `x` must be 2-D (n, d), got shape (3,)")):
        pairwise_distances(np.ones(3))
    with pytest.raises(ValueError, match=msg(
        f"{fn}: `y` must have d=2 features (the last axis of `x`, shape (3, 2)), got shape (3, 3)"
    )):
        pairwise_distances(np.ones((3, 2)), np.ones((3, 3)))
    with pytest.raises(ValueError, match=msg(
        f"{fn}: `x` contains 1 NaN or Inf value(s); clean or mask them first"
    )):
        pairwise_distances(np.array([[np.nan, 1.0]]))


# ---------------------------------------------------------------------------------------------
# normalize
# ---------------------------------------------------------------------------------------------


def test_normalize_matches_sklearn(rng):
    x = rng.standard_normal((4, 3))
    x[1] = 0.0
    for o, name in ((2, "l2"), (None, "l2"), (1, "l1"), (INF, "max")):
        np.testing.assert_allclose(normalize(x, ord=o), sk_normalize(x, norm=name), rtol=1e-13)
        np.testing.assert_allclose(
            normalize(x, axis=0, ord=o), sk_normalize(x, norm=name, axis=0), rtol=1e-13
        )
    np.testing.assert_allclose(normalize(x, axis=None), x / np.linalg.norm(x), rtol=1e-13)
    v = rng.standard_normal(5)
    np.testing.assert_allclose(normalize(v, ord=3), v / np.linalg.norm(v, 3), rtol=1e-13)


def test_normalize_eps_floor_and_zero_gradient(rng):
    x = np.array([[3.0, 4.0], [0.03, 0.04], [0.0, 0.0]])
    np.testing.assert_allclose(
        normalize(x, eps=0.1), x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 0.1),
        rtol=1e-13,
    )
    g = jax.jit(jax.grad(lambda a: jnp.sum(normalize(a) * jnp.arange(1.0, 3.0)[None, :])))(x)
    np.testing.assert_array_equal(g[2], np.zeros(2))
    assert np.all(np.isfinite(np.asarray(g)))
    y = rng.standard_normal((2, 3))
    grads1(normalize, (y,))


def test_normalize_float32_extremes_jit_vmap(rng):
    x32, x64 = f32_pair(rng, 3, 5)
    for scale in (1.0, 1e-30, 1e30):
        out = normalize(x32 * np.float32(scale))
        assert out.dtype == jnp.float32
        assert rel_err(out, sk_normalize(x64)) < 1e-6, scale
    f = jax.jit(functools.partial(normalize, ord=1))
    np.testing.assert_allclose(jax.vmap(f)(x64), sk_normalize(x64, norm="l1"), rtol=1e-13)


@given(hnp.arrays(np.float64, (4, 3), elements=st.floats(-1e3, 1e3)))
def test_normalize_gives_unit_norm_or_zero(x):
    out = np.asarray(_normalize_jit(x))
    norms = np.linalg.norm(out, axis=1)
    zero = np.all(x == 0, axis=1)
    np.testing.assert_allclose(norms[~zero], 1.0, rtol=1e-12)
    np.testing.assert_array_equal(out[zero], 0.0)


_normalize_jit = jax.jit(normalize)


def test_normalize_errors():
    fn = "jaxla.linalg.normalize"
    with pytest.raises(ValueError, match=msg(
        f"{fn}: `ord` must be None, 1, 2, inf, or a real number >= 1 for a vector norm, got 0"
    )):
        normalize(np.ones(3), ord=0)
    with pytest.raises(TypeError, match=msg(f"{fn}: `axis` must be None or an int, got (0, 1)")):
        normalize(np.ones((2, 2)), axis=(0, 1))
    with pytest.raises(ValueError, match=msg(
        f"{fn}: `x` must have at least 1 dimensions, got shape ()"
    )):
        normalize(1.0)
    with pytest.raises(ValueError, match=msg(
        f"{fn}: `x` contains 1 NaN or Inf value(s); clean or mask them first"
    )):
        normalize(np.array([1.0, np.inf]))


# ---------------------------------------------------------------------------------------------
# project
# ---------------------------------------------------------------------------------------------


def _lstsq_projection(x, a):
    return a @ np.linalg.lstsq(a, x, rcond=None)[0]


def test_project_matches_least_squares(rng):
    x = rng.standard_normal(5)
    v = rng.standard_normal(5)
    np.testing.assert_allclose(project(x, v), (x @ v) / (v @ v) * v, rtol=1e-13)
    np.testing.assert_array_equal(project(x, np.zeros(5)), np.zeros(5))
    a = rng.standard_normal((5, 2))
    np.testing.assert_allclose(project(x, a), _lstsq_projection(x, a), atol=1e-13)
    # rank-deficient basis: the repeated column adds nothing
    a_def = np.concatenate([a, a[:, :1] * 2.0], axis=1)
    np.testing.assert_allclose(project(x, a_def), _lstsq_projection(x, a), atol=1e-13)
    # x already in the span stays put; the residual is orthogonal to the span
    np.testing.assert_allclose(project(a @ [1.0, -2.0], a), a @ [1.0, -2.0], atol=1e-13)
    np.testing.assert_allclose(a.T @ (x - np.asarray(project(x, a))), 0.0, atol=1e-13)


def test_project_float32_jit_vmap(rng):
    x32, x64 = f32_pair(rng, 6)
    a32, a64 = f32_pair(rng, 6, 3)
    out = project(x32, a32)
    assert out.dtype == jnp.float32
    assert rel_err(out, _lstsq_projection(x64, a64)) < 1e-5
    xs = rng.standard_normal((4, 6))
    batched = jax.vmap(jax.jit(project), in_axes=(0, None))(xs, a64)
    for i in range(4):
        np.testing.assert_allclose(batched[i], _lstsq_projection(xs[i], a64), atol=1e-13)


def test_project_gradients(rng):
    x = rng.standard_normal(4)
    a = rng.standard_normal((4, 2))
    check_grads(jax.jit(project), (x, a), order=1, modes=["fwd", "rev"])
    grads1(project, (x, a[:, 0]))
    # orthonormal columns (repeated singular values): finite and equal to the projector's
    q = np.linalg.qr(a)[0]
    jac = jax.jit(jax.jacobian(project, argnums=1))(x, q)
    assert np.all(np.isfinite(np.asarray(jac)))
    direction = rng.standard_normal((4, 2))
    h = 1e-6
    fd = (_lstsq_projection(x, q + h * direction) - _lstsq_projection(x, q - h * direction)) / 2 / h
    np.testing.assert_allclose(np.tensordot(jac, direction, axes=2), fd, atol=1e-7)
    g = jax.jit(jax.grad(lambda v: jnp.sum(project(x, v))))(jnp.zeros(4))
    np.testing.assert_array_equal(g, np.zeros(4))


def test_project_errors():
    fn = "jaxla.linalg.project"
    with pytest.raises(ValueError, match=msg(
        f"{fn}: `onto` must have d=3 rows to match `x` of shape (3,), got shape (4, 2)"
    )):
        project(np.ones(3), np.ones((4, 2)))
    with pytest.raises(ValueError, match=msg(
        f"{fn}: `onto` must have length d=3 to match `x` of shape (3,), got shape (4,)"
    )):
        project(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match=msg(f"{fn}: `x` must be 1-D (d,), got shape (3, 1)")):
        project(np.ones((3, 1)), np.ones(3))
    with pytest.raises(ValueError, match=msg(f"{fn}: `rcond` must be >= 0 and finite, got -1")):
        project(np.ones(3), np.ones((3, 2)), rcond=-1)
