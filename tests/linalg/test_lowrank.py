"""Tests for jaxla.linalg.lowrank: randomized_svd, truncated_svd, low_rank_approx, Eckart-Young.

References are numpy.linalg.svd with scikit-learn's ``svd_flip(u_based_decision=False)`` for the
sign convention, dense numpy norms of the residual for the error estimate, and the expected-error
bounds of Halko, Martinsson & Tropp (2011), Theorem 10.6 and Corollary 10.10.
"""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.experimental import checkify
from jax.test_util import check_grads
from sklearn.utils.extmath import svd_flip

from jaxla.linalg import (
    SVD,
    LinearOperator,
    RandomizedSVD,
    eckart_young_error,
    low_rank_approx,
    randomized_svd,
    truncated_svd,
)

KEY = jax.random.key(0)
RSVD = "jaxla.linalg.randomized_svd"


def _orthogonal(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))[None, :]


def _with_spectrum(rng, m, n, s):
    k = len(s)
    return _orthogonal(rng, m)[:, :k] @ np.diag(s) @ _orthogonal(rng, n)[:, :k].T


def _low_rank_plus_noise(rng, m, n, r=5, noise=1e-3):
    s = np.linspace(3.0, 1.0, r)
    return _with_spectrum(rng, m, n, s) + noise * rng.standard_normal((m, n)) / np.sqrt(m + n)


def _ref_svd(a, k):
    """numpy SVD with scikit-learn's sign convention (largest |.| of each row of vt positive)."""
    u, s, vt = np.linalg.svd(np.asarray(a, np.float64), full_matrices=False)
    u, vt = svd_flip(u, vt, u_based_decision=False)
    return u[:, :k], s[:k], vt[:k]


def _spectral_error(a, res):
    a = np.asarray(a, np.float64)
    approx = (np.asarray(res.u, np.float64) * np.asarray(res.s, np.float64)) @ np.asarray(
        res.vt, np.float64
    )
    return np.linalg.norm(a - approx, 2)


# Shared test matrices: tests reuse the same shapes and options so that the compiled programs
# (cached per static configuration) are shared.
A64 = _low_rank_plus_noise(np.random.default_rng(0), 40, 30)
A32 = A64.astype(np.float32)


def _dense_op(a):
    aj = jnp.asarray(a)
    return LinearOperator(a.shape, aj.dtype, lambda x: aj @ x, lambda y: aj.T @ y)


def _np(tree):
    """Array leaves as numpy (test arithmetic on results should not compile JAX ops)."""
    return jax.tree_util.tree_map(np.asarray, tree)


def _unbatch(out, i):
    return jax.tree_util.tree_map(lambda x: x[i], out)


# --------------------------------------------------------------------------------------------
# randomized_svd: agreement with numpy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["power", "block_krylov"])
def test_randomized_svd_matches_numpy_on_low_rank_plus_noise(dtype, method):
    a = A64.astype(dtype)
    res = _np(randomized_svd(KEY, a, 5, method=method))
    u, s, vt = _ref_svd(a, 5)
    tol = 2e-5 if dtype == np.float32 else 1e-10
    assert isinstance(res, RandomizedSVD)
    for x in (res.u, res.s, res.vt, res.error_estimate):
        assert x.dtype == dtype
    np.testing.assert_allclose(res.s, s, rtol=tol)
    # signs are canonical, so the vectors match the reference directly (gap ratio ~ 1e3)
    np.testing.assert_allclose(res.vt, vt, atol=50 * tol)
    np.testing.assert_allclose(res.u, u, atol=50 * tol)
    true = _spectral_error(a, res)
    assert true / 2 <= float(res.error_estimate) <= 2 * true
    assert bool(res.converged)
    assert int(res.rank) == 5
    # defaults: power q = 4 (rank >= 0.1 min(m, n)), sketch l = 15; block Krylov q = 3 clipped to
    # 1 so that (q + 1) l <= min(m, n) = 30
    q, width = (4, 15) if method == "power" else (1, 30)
    assert int(res.passes) == 2 * q + 2 and int(res.sketch_size) == width


@pytest.mark.parametrize("normalizer", ["lu", "none"])
def test_normalizers_agree(normalizer):
    res = _np(randomized_svd(KEY, A64, 5, normalizer=normalizer))
    np.testing.assert_allclose(res.s, _ref_svd(A64, 5)[1], rtol=1e-10)


@pytest.mark.parametrize(
    ("shape", "k"), [((30, 12), 1), ((12, 30), 12), ((16, 16), 16)], ids=["tall", "wide", "square"]
)
def test_shapes_dtypes_and_rank_up_to_min_dim(rng, shape, k):
    m, n = shape
    a = rng.standard_normal(shape).astype(np.float32)
    res = _np(randomized_svd(KEY, a, k))
    assert res.u.shape == (m, k) and res.s.shape == (k,) and res.vt.shape == (k, n)
    assert res.u.dtype == res.s.dtype == res.vt.dtype == np.float32
    for field in ("error_estimate", "rank", "sketch_size", "passes", "matvecs", "converged"):
        assert getattr(res, field).shape == ()
    assert res.passes.dtype == np.int32 and res.converged.dtype == np.bool_
    np.testing.assert_allclose(res.u.T @ res.u, np.eye(k), atol=1e-5)
    np.testing.assert_allclose(res.vt @ res.vt.T, np.eye(k), atol=1e-5)
    s = _ref_svd(a, k)[1]
    np.testing.assert_allclose(res.s, s, rtol=1e-4, atol=1e-5)
    if k == min(m, n):  # the sketch spans everything: exact reconstruction, error estimate ~ 0
        np.testing.assert_allclose((res.u * res.s[None, :]) @ res.vt, a, atol=1e-4)
        assert float(res.error_estimate) <= 1e-4 * float(s[0])
    else:
        true = _spectral_error(a, res)
        assert true / 2 <= float(res.error_estimate) <= 2 * true
    # canonical signs: the largest-magnitude entry of each row of vt is positive
    rows = np.asarray(res.vt)
    assert np.all(rows[np.arange(k), np.argmax(np.abs(rows), axis=1)] > 0)


def test_zero_and_rank_one_matrices_are_handled_exactly():
    zero = _np(randomized_svd(KEY, np.zeros((40, 30)), 5))
    assert np.all(zero.s == 0) and float(zero.error_estimate) == 0 and bool(zero.converged)
    assert all(np.all(np.isfinite(x)) for x in zero)
    one = _np(randomized_svd(KEY, np.outer(np.arange(40.0), np.ones(30)), 5))
    np.testing.assert_allclose(one.s, [np.sqrt(30 * np.sum(np.arange(40.0) ** 2)), 0, 0, 0, 0],
                               atol=1e-9)
    assert float(one.error_estimate) <= 1e-12 * one.s[0] and bool(one.converged)


def test_pass_and_matvec_counts():
    res = _np(randomized_svd(KEY, A64, 4, oversamples=4, power_iters=2))  # l = 8, t = 8
    assert int(res.passes) == 6 and int(res.sketch_size) == 8
    assert int(res.matvecs) == 2 * 2 * 8 + 2 * (8 + 8)


def test_low_precision_inputs_are_computed_in_float32():
    res = randomized_svd(KEY, jnp.asarray(A64, jnp.bfloat16), 5)
    assert res.u.dtype == res.s.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(res.s, np.float64), _ref_svd(A64, 5)[1], rtol=2e-2)


# --------------------------------------------------------------------------------------------
# jit, vmap, operators, centring


def test_jit_equals_eager():
    eager = randomized_svd(KEY, A64, 5)
    jitted = jax.jit(lambda key, a: randomized_svd(key, a, 5))(KEY, jnp.asarray(A64))
    for x, y in zip(eager, jitted, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


def test_vmap_over_a_batch_equals_a_loop(rng):
    batch = np.stack([A64, rng.standard_normal((40, 30)), A64[::-1]])
    out = _np(jax.vmap(lambda a: randomized_svd(KEY, a, 5))(jnp.asarray(batch)))
    assert out.u.shape == (3, 40, 5) and out.passes.shape == (3,)
    for i in range(3):
        one = randomized_svd(KEY, batch[i], 5)
        for x, y in zip(_unbatch(out, i), one, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-10)


def test_linear_operator_input_equals_dense_input():
    @jax.jit
    def matrix_free(a):
        op = _dense_op(a)  # built inside jit, closing over the traced matrix
        return [randomized_svd(KEY, op, 5, method=m) for m in ("power", "block_krylov")]

    for method, res in zip(("power", "block_krylov"), matrix_free(A64), strict=True):
        dense = randomized_svd(KEY, A64, 5, method=method)
        for x, y in zip(dense, res, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)


def test_implicit_centering_equals_explicit_centering():
    shift = 5.0 * np.random.default_rng(1).standard_normal(30)
    a = A64 + shift[None, :]
    mean = a.mean(axis=0)
    implicit = _np(randomized_svd(KEY, a, 5, center=mean))
    explicit = _np(randomized_svd(KEY, a - mean[None, :], 5))
    u, s, vt = _ref_svd(a - mean[None, :], 5)
    np.testing.assert_allclose(implicit.s, explicit.s, rtol=1e-10)
    np.testing.assert_allclose(implicit.s, s, rtol=1e-10)
    np.testing.assert_allclose(implicit.vt, explicit.vt, atol=1e-8)
    np.testing.assert_allclose(implicit.vt, vt, atol=1e-8)
    np.testing.assert_allclose(implicit.u, u, atol=1e-8)


def test_implicit_centering_in_float32():
    a = A32 + np.float32(3.0)
    mean = a.mean(axis=0)
    res = randomized_svd(KEY, a, 5, center=mean)
    assert res.s.dtype == np.float32
    ref = _ref_svd(a.astype(np.float64) - mean.astype(np.float64)[None, :], 5)[1]
    np.testing.assert_allclose(res.s, ref, rtol=1e-4)


# --------------------------------------------------------------------------------------------
# error estimate and adaptive mode

SPECTRA = {
    "1/j": lambda j: 1 / (1 + j),
    "1/sqrt(j)": lambda j: (1 + j) ** -0.5,
    "0.8^j": lambda j: 0.8**j,
    "flat": lambda j: 1.0 + 0 * j,
}


@pytest.mark.parametrize(("method", "q"), [("power", 2), ("block_krylov", 1)])
def test_error_estimate_is_within_a_factor_two(method, q):
    rng = np.random.default_rng(2)
    batch = np.stack([_with_spectrum(rng, 80, 60, f(np.arange(60.0))) for f in SPECTRA.values()])
    out = _np(jax.vmap(lambda a: randomized_svd(KEY, a, 8, power_iters=q, method=method))(
        jnp.asarray(batch)
    ))
    for i, name in enumerate(SPECTRA):
        true = _spectral_error(batch[i], _unbatch(out, i))
        est = float(out.error_estimate[i])
        assert true / 2 <= est <= 2 * true, (name, est, true)


def test_adaptive_mode_meets_the_tolerance(rng):
    s = 0.7 ** np.arange(60.0)
    a = _with_spectrum(rng, 90, 60, s)
    tol = 1e-3
    res = _np(randomized_svd(KEY, a, 4, tol=tol, power_iters=1))
    k = int(res.rank)
    assert bool(res.converged)
    assert res.u.shape == (90, 60) and res.s.shape == (60,)
    true = _spectral_error(a, res)
    assert true <= tol * s[0]
    assert true / 2 <= float(res.error_estimate) <= 2 * true
    # the rank found is close to the optimal one: the smallest k with s[k] <= tol * s[0]
    optimal = int(np.argmax(s <= tol * s[0]))
    assert optimal <= k <= optimal + 4
    # Weyl: the singular values of the approximation are within its error of the true ones
    assert np.all(np.abs(np.asarray(res.s) - s) <= true * (1 + 1e-9))
    assert np.all(np.asarray(res.s[k:]) == 0) and np.all(np.asarray(res.u[:, k:]) == 0)
    assert int(res.sketch_size) % 4 == 0 and int(res.passes) == int(res.sketch_size)


def test_adaptive_mode_reports_an_unmet_tolerance():
    res = _np(randomized_svd(KEY, A64, 3, tol=1e-9, max_rank=10))
    assert not bool(res.converged)
    assert int(res.rank) == 10 and int(res.sketch_size) == 10
    assert res.s.shape == (10,)
    true = _spectral_error(A64, res)
    assert true / 2 <= float(res.error_estimate) <= 2 * true


def test_adaptive_mode_under_jit_and_vmap(rng):
    batch = np.stack([_with_spectrum(rng, 30, 20, 0.5 ** np.arange(20.0)) for _ in range(3)])
    f = jax.jit(jax.vmap(lambda a: randomized_svd(KEY, a, 3, tol=1e-3, max_rank=15)))
    out = _np(f(jnp.asarray(batch)))
    assert out.s.shape == (3, 15)
    assert np.all(out.converged)
    for i in range(3):
        one = _unbatch(out, i)
        assert _spectral_error(batch[i], one) <= 1e-3
        assert 10 <= int(one.rank) <= 12  # 0.5**10 < 1e-3 < 0.5**9


# --------------------------------------------------------------------------------------------
# acceptance: HMT expected-error bounds over 20 seeds; the estimate on every seed


def _hmt_bound(s, k, p, q):
    """HMT (2011) Theorem 10.6 (q = 0) and Corollary 10.10 (q power iterations)."""
    e = 2 * q + 1
    tail = np.sqrt(np.sum(s[k:] ** (2 * e)))
    bound = (1 + np.sqrt(k / (p - 1))) * s[k] ** e + math.e * np.sqrt(k + p) / p * tail
    return bound ** (1 / e)


@pytest.mark.parametrize("q", [0, 1])
def test_mean_error_over_20_seeds_respects_the_hmt_bound(q):
    rng = np.random.default_rng(1)
    m, n, k, p = 100, 80, 10, 5
    s = 1 / np.sqrt(1 + np.arange(n))  # slow decay: the tail term of the bound matters
    a = jnp.asarray(_with_spectrum(rng, m, n, s))
    # rank k + p without oversampling returns the whole projection Q Q^T A, Q of k + p columns
    keys = jax.random.split(jax.random.key(7), 20)
    out = _np(jax.vmap(lambda key: randomized_svd(key, a, k + p, oversamples=0, power_iters=q))(
        keys
    ))
    errs = np.array([_spectral_error(a, _unbatch(out, i)) for i in range(20)])
    assert np.all(errs >= s[k + p] * (1 - 1e-9))  # Eckart-Young: no sketch beats the optimum
    assert errs.mean() <= _hmt_bound(s, k, p, q)
    est = np.asarray(out.error_estimate)
    assert np.all(est <= 2 * errs) and np.all(est >= errs / 2), est / errs


# --------------------------------------------------------------------------------------------
# values, NaN


def test_nan_input_raises_eagerly_and_flags_under_jit():
    a = A64.copy()
    a[2, 3] = np.nan
    with pytest.raises(ValueError, match=re.escape(
        f"{RSVD}: `a` contains 1 NaN or Inf value(s); clean or mask them first"
    )):
        randomized_svd(KEY, a, 5)
    f = jax.jit(lambda x: randomized_svd(KEY, x, 5))
    err, res = checkify.checkify(f)(jnp.asarray(a))
    assert not bool(res.converged)
    with pytest.raises(checkify.JaxRuntimeError, match="`a` contains NaN or Inf"):
        err.throw()


# --------------------------------------------------------------------------------------------
# error messages


@pytest.mark.parametrize(
    ("kwargs", "exc", "msg"),
    [
        (dict(rank=0), ValueError, "`rank` must be >= 1, got 0"),
        (dict(rank=9), ValueError, "`rank`=9 exceeds min(m, n)=8"),
        (dict(rank=2.0), TypeError, "`rank` must be an int, got 2.0 (float)"),
        (dict(method="lanczos"), ValueError,
         "`method` must be one of 'power', 'block_krylov', got 'lanczos'"),
        (dict(normalizer="cholesky"), ValueError,
         "`normalizer` must be one of 'qr', 'lu', 'none', got 'cholesky'"),
        (dict(center=np.zeros(10)), ValueError,
         "`center` must have shape (n,)=(8,), got shape (10,)"),
        (dict(oversamples=-1), ValueError, "`oversamples` must be >= 0, got -1"),
        (dict(power_iters=-2), ValueError, "`power_iters` must be >= 0, got -2"),
        (dict(tol=0.0), ValueError, "`tol` must be > 0 and finite, got 0.0"),
        (dict(max_rank=5), ValueError,
         "`max_rank` is only used with `tol` (adaptive mode), got max_rank=5 and tol=None"),
        (dict(tol=1e-3, max_rank=2), ValueError, "`max_rank` must be >= 3, got 2"),
        (dict(key=None), TypeError,
         "`key` must be a JAX random key such as jax.random.key(0), got None"),
    ],
)
def test_randomized_svd_error_messages(kwargs, exc, msg):
    args = dict(key=KEY, a=np.ones((10, 8)), rank=3) | kwargs
    key, a, rank = args.pop("key"), args.pop("a"), args.pop("rank")
    with pytest.raises(exc, match=f"^{re.escape(RSVD + ': ' + msg)}$"):
        randomized_svd(key, a, rank, **args)


def test_randomized_svd_rejects_bad_matrices_and_operators():
    with pytest.raises(ValueError, match=re.escape(
        f"{RSVD}: `a` must be 2-D (m, n), got shape (4,)"
    )):
        randomized_svd(KEY, np.ones(4), 1)
    with pytest.raises(TypeError, match=re.escape(f"{RSVD}: `a` must have a real floating dtype")):
        randomized_svd(KEY, np.ones((4, 3), np.int64), 1)
    bad = LinearOperator((6, 4), jnp.float32, lambda x: x, lambda y: y)
    with pytest.raises(ValueError, match=re.escape(
        f"{RSVD}: `a.matmat` must map an (n, b)=(4, 2) array to (m, b)=(6, 2), got shape (4, 2)"
    )):
        randomized_svd(KEY, bad, 2)
    with pytest.raises(ValueError, match=re.escape(f"{RSVD}: `rank` must be >= 1, got 0")):
        jax.jit(lambda a: randomized_svd(KEY, a, 0))(jnp.ones((4, 3)))


# --------------------------------------------------------------------------------------------
# truncated_svd


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_truncated_svd_matches_numpy(rng, dtype):
    a = rng.standard_normal((7, 5)).astype(dtype)
    res = truncated_svd(a, 3)
    assert isinstance(res, SVD)
    u, s, vt = _ref_svd(a, 3)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert res.u.dtype == res.s.dtype == res.vt.dtype == dtype
    np.testing.assert_allclose(res.s, s, rtol=tol)
    np.testing.assert_allclose(res.u, u, atol=10 * tol)
    np.testing.assert_allclose(res.vt, vt, atol=10 * tol)


def test_truncated_svd_batches_jits_and_differentiates(rng):
    batch = rng.standard_normal((3, 6, 4))
    out = _np(jax.jit(lambda x: truncated_svd(x, 2))(jnp.asarray(batch)))
    assert out.u.shape == (3, 6, 2) and out.s.shape == (3, 2) and out.vt.shape == (3, 2, 4)
    for i in range(3):
        np.testing.assert_allclose(out.s[i], _ref_svd(batch[i], 2)[1], rtol=1e-12)
    # the top-2 singular values and the rank-2 approximation are differentiable (simple spectrum)
    x0 = (jnp.asarray(batch[0]),)
    check_grads(lambda x: jnp.sum(truncated_svd(x, 2).s), x0, order=1, modes=["rev"])
    check_grads(lambda x: low_rank_approx(x, 2), x0, order=1, modes=["rev"])


def test_truncated_svd_errors(rng):
    fn = "jaxla.linalg.truncated_svd"
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `rank`=5 exceeds min(m, n)=4")):
        truncated_svd(np.ones((6, 4)), 5)
    a = np.ones((3, 3))
    a[0, 0] = np.inf
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `a` contains 1 NaN or Inf value(s)")):
        truncated_svd(a, 1)


# --------------------------------------------------------------------------------------------
# low_rank_approx and eckart_young_error


def test_low_rank_approx_exact_is_optimal(rng):
    a = rng.standard_normal((8, 6))
    u, s, vt = _ref_svd(a, 6)
    approx = low_rank_approx(a, 2)
    np.testing.assert_allclose(approx, (u[:, :2] * s[:2]) @ vt[:2], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(a - approx, 2), eckart_young_error(s, 2, ord=2),
                               rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(a - approx), eckart_young_error(s, 2), rtol=1e-12)
    left, right = _np(low_rank_approx(a, 2, factors=True))
    assert left.shape == (8, 2) and right.shape == (2, 6)
    np.testing.assert_allclose(left @ right, approx, atol=1e-12)
    np.testing.assert_allclose(left.T @ left, right @ right.T, atol=1e-12)  # balanced factors


def test_low_rank_approx_randomized():
    a = _low_rank_plus_noise(np.random.default_rng(3), 40, 30, noise=0.0)
    approx = low_rank_approx(a, 5, method="randomized", key=KEY)
    np.testing.assert_allclose(approx, a, atol=1e-10)
    left, right = _np(low_rank_approx(_dense_op(a), 5, method="randomized", key=KEY, factors=True))
    np.testing.assert_allclose(left @ right, a, atol=1e-10)
    f32 = low_rank_approx(a.astype(np.float32), 5)
    assert f32.dtype == np.float32


def test_low_rank_approx_errors(rng):
    fn = "jaxla.linalg.low_rank_approx"
    a = rng.standard_normal((5, 4))
    with pytest.raises(ValueError, match=re.escape(
        f"{fn}: `key` is required for method='randomized', got None"
    )):
        low_rank_approx(a, 2, method="randomized")
    with pytest.raises(ValueError, match=re.escape(
        f"{fn}: `method` must be one of 'exact', 'randomized', got 'svd'"
    )):
        low_rank_approx(a, 2, method="svd")
    aj = jnp.asarray(a)
    op = LinearOperator(a.shape, aj.dtype, lambda x: aj @ x, lambda y: aj.T @ y)
    with pytest.raises(ValueError, match=re.escape(
        f"{fn}: `a` must be a dense (m, n) array for method='exact', got a LinearOperator"
    )):
        low_rank_approx(op, 2)
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `rank` must be >= 1, got 0")):
        low_rank_approx(a, 0)


def test_eckart_young_error_matches_the_residual_norms(rng):
    a = rng.standard_normal((9, 6))
    s = np.linalg.svd(a, compute_uv=False)
    for k in range(7):
        u, sk, vt = np.linalg.svd(a, full_matrices=False)
        resid = a - (u[:, :k] * sk[:k]) @ vt[:k]
        np.testing.assert_allclose(eckart_young_error(s, k), np.linalg.norm(resid), atol=1e-12)
        np.testing.assert_allclose(eckart_young_error(s, k, ord=2),
                                   np.linalg.norm(resid, 2) if k < 6 else 0.0, atol=1e-12)
    batch = eckart_young_error(jnp.asarray(np.stack([s, 2 * s])), 2)
    np.testing.assert_allclose(batch, [eckart_young_error(s, 2), 2 * eckart_young_error(s, 2)])


def test_eckart_young_error_errors():
    fn = "jaxla.linalg.eckart_young_error"
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `rank`=4 exceeds len(s)=3")):
        eckart_young_error(np.ones(3), 4)
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `ord` must be one of 'fro', 2, got 1")):
        eckart_young_error(np.ones(3), 1, ord=1)
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `s` must have at least 1 dimensions")):
        eckart_young_error(np.float64(1.0), 0)


@given(st.lists(st.floats(0.0, 10.0), min_size=1, max_size=8), st.integers(0, 8))
def test_eckart_young_error_properties(values, k):
    s = np.sort(np.asarray(values))[::-1]
    k = min(k, len(s))
    fro = float(eckart_young_error(s, k))
    two = float(eckart_young_error(s, k, ord=2))
    assert two <= fro + 1e-12 <= math.sqrt(len(s) - k) * two + 1e-9
    np.testing.assert_allclose(fro**2 + np.sum(s[:k] ** 2), np.sum(s**2), rtol=1e-9, atol=1e-12)


_rsvd_full = jax.jit(lambda key, a: randomized_svd(key, a, 6, power_iters=1))


@given(st.integers(0, 2**31 - 1))
def test_full_rank_sketch_reconstructs_exactly(seed):
    a = np.random.default_rng(seed).standard_normal((9, 6))
    res = _np(_rsvd_full(jax.random.key(seed), jnp.asarray(a)))
    np.testing.assert_allclose((res.u * res.s[None, :]) @ res.vt, a, atol=1e-10)
    np.testing.assert_allclose(res.u.T @ res.u, np.eye(6), atol=1e-12)
    assert np.all(np.diff(np.asarray(res.s)) <= 0)
