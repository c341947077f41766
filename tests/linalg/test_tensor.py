"""Tests for jaxla.linalg.tensor: TT-SVD, TT rounding, inner products, TT matrices.

References: dense numpy arithmetic (reconstruction errors, inner products, unfoldings and their
singular values), tensorly (``tensor_train`` at given ranks, ``tt_to_tensor``,
``tt_matrix_to_matrix``) and finite differences (``check_grads``).
"""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorly as tl
from hypothesis import given
from hypothesis import strategies as st
from jax.experimental import checkify
from jax.test_util import check_grads
from tensorly.decomposition import tensor_train

from jaxla.linalg.tensor import (
    TT,
    TTMatrix,
    tt_dot,
    tt_matrix,
    tt_matrix_to_dense,
    tt_matvec,
    tt_norm,
    tt_ranks,
    tt_round,
    tt_svd,
    tt_to_full,
)
from tests.helpers import msg

tl.set_backend("numpy")


# --------------------------------------------------------------------------------------------
# helpers (numpy / tensorly references)


def _random_tt(rng, dims, ranks, noise=0.0):
    """A dense tensor of TT ranks <= ``ranks`` plus i.i.d. noise (float64)."""
    rs = [1, *ranks, 1]
    cores = [rng.standard_normal((rs[k], n, rs[k + 1])) for k, n in enumerate(dims)]
    a = tl.tt_to_tensor(cores)
    a = a / np.linalg.norm(a)
    return a + noise * rng.standard_normal(dims) / math.sqrt(a.size)


def _np_full(tt):
    return tl.tt_to_tensor([np.asarray(c, np.float64) for c in tt.cores])


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _unfolding_rank(a, k, delta2):
    """Smallest r >= 1 such that the k-th unfolding of ``a`` is within ``delta`` of rank r."""
    s = np.linalg.svd(a.reshape(math.prod(a.shape[:k]), -1), compute_uv=False)
    tail = np.append(np.cumsum((s**2)[::-1])[::-1], 0.0)
    return max(int(np.argmax(tail <= delta2)), 1)


def _tensorly_error(a, ranks):
    factors = tensor_train(a, rank=list(ranks))
    return _rel(tl.tt_to_tensor(factors), a)


A64 = _random_tt(np.random.default_rng(0), (4, 5, 3, 4), (3, 4, 2), noise=0.05)
SMOOTH = 1.0 / (1.0 + np.add.outer(np.add.outer(np.arange(8.0), np.arange(8.0)),
                                   np.add.outer(np.arange(8.0), np.arange(8.0))))  # (8,8,8,8)


# --------------------------------------------------------------------------------------------
# tt_svd


def test_exact_tt_svd_reconstructs_with_full_ranks_and_orthonormal_cores():
    tt = tt_svd(A64)
    dims = A64.shape
    assert isinstance(tt, TT) and len(tt.cores) == 4
    full_ranks = tuple(
        min(math.prod(dims[:k]), math.prod(dims[k:])) for k in range(len(dims) + 1)
    )
    assert tt_ranks(tt) == full_ranks == (1, 4, 12, 4, 1)
    for k, c in enumerate(tt.cores):
        assert c.shape == (full_ranks[k], dims[k], full_ranks[k + 1]) and c.dtype == jnp.float64
    assert _rel(tt_to_full(tt), A64) < 1e-13
    assert _rel(_np_full(tt), A64) < 1e-13  # tensorly's contraction of the same cores
    for c in tt.cores[:-1]:  # left-orthonormal cores
        q = np.asarray(c).reshape(-1, c.shape[-1])
        np.testing.assert_allclose(q.T @ q, np.eye(c.shape[-1]), atol=1e-12)
    assert float(tt.rel_error) < 1e-13


def _check_eps_bound(a, eps, tt):
    """The guarantee, the reported error, and a bound on the largest rank (numpy references)."""
    err = _rel(_np_full(tt), a)
    assert err <= eps * (1 + 1e-9) + 1e-13
    assert abs(float(tt.rel_error) - err) <= 1e-9 + 1e-6 * err
    # the largest rank is at most the largest of Oseledets' per-cut ranks (the rank search only
    # accepts rank tuples whose largest rank is lower; a single cut's rank may rise)
    delta2 = eps**2 * np.sum(a**2) / (a.ndim - 1)
    assert max(tt_ranks(tt)) <= max(_unfolding_rank(a, k, delta2) for k in range(1, a.ndim))


# A few small shapes, so that the compiled SVDs (one per unfolding shape) are shared.
SHAPES = [(3, 4, 5), (2, 2, 2, 3)]  # (d = 2 is checked against Eckart-Young below)


@given(
    shape=st.sampled_from(SHAPES),
    ranks=st.lists(st.integers(1, 4), min_size=3, max_size=3),
    noise=st.sampled_from([0.0, 1e-3, 0.1, 1.0]),
    eps=st.floats(1e-4, 0.9),
    seed=st.integers(0, 2**16),
)
def test_eps_bound_always_holds(shape, ranks, noise, eps, seed):
    a = _random_tt(np.random.default_rng(seed), shape, ranks[: len(shape) - 1], noise)
    _check_eps_bound(a, eps, tt_svd(a, eps=eps))


@pytest.mark.slow
def test_eps_bound_and_ranks_on_a_smooth_tensor():
    ranks = []
    for eps in (1e-1, 1e-3, 1e-6, 1e-10):
        tt = tt_svd(SMOOTH, eps=eps)
        _check_eps_bound(SMOOTH, eps, tt)
        ranks.append(max(tt_ranks(tt)))
    # smooth: the ranks grow like log(1/eps), far below the full ranks (8, 64, 8)
    assert ranks == sorted(ranks) and ranks[0] <= 3 and ranks[-1] <= 10


GRID = 1.0 / (1.0 + sum(np.meshgrid(*[np.linspace(0.0, 1.0, 8)] * 4, indexing="ij")))  # (8,)*4


def _min_uniform_rank(a, eps):
    """The smallest uniform rank with which tensorly's ``tensor_train`` meets ``eps``."""
    return next(r for r in range(1, max(a.shape) ** 2)
                if _tensorly_error(a, [1, *[r] * (a.ndim - 1), 1]) <= eps)


def test_ranks_against_tensorly():
    """jaxla's eps-chosen ranks against tensorly's ``tensor_train``, which takes ranks, not eps.

    tensorly cannot choose ranks for an accuracy, so a fair comparison holds the accuracy fixed
    and asks which ranks reach it:

    1. Same ranks, same accuracy: given jaxla's ranks, tensorly's TT-SVD (the same algorithm)
       is not more accurate than jaxla (the errors agree to rounding).
    2. No larger ranks: every one of jaxla's ranks is at most the smallest uniform rank with
       which tensorly meets ``eps`` (found by trying ranks, as a tensorly user would). Cases
       include ones where the per-cut split of the budget alone gives a larger middle rank
       (``GRID`` at eps = 1e-4 and 1e-10: (3, 4, 3) and (7, 8, 7) against a uniform 3 and 7).
    3. For a matrix (d = 2, a single SVD) jaxla's rank is exactly the smallest rank with which
       tensorly meets ``eps`` (Eckart-Young).
    """
    noisy = _random_tt(np.random.default_rng(7), (5, 4, 6, 3), (3, 5, 2), noise=0.1)
    cases = [(A64, 0.1), (SMOOTH, 1e-6), (GRID, 1e-4), (GRID, 1e-10), (noisy, 0.08)]
    for a, eps in cases:
        tt = tt_svd(a, eps=eps)
        ranks = tt_ranks(tt)
        err = _rel(_np_full(tt), a)
        assert err <= eps
        assert err <= _tensorly_error(a, ranks) * (1 + 1e-9) + 1e-13            # 1.
        assert max(ranks) <= _min_uniform_rank(a, eps), (ranks, eps)          # 2.
    w = A64.reshape(20, 12)                                                    # 3.
    for eps in (0.05, 0.3):
        r = tt_ranks(tt_svd(w, eps=eps))[1]
        assert r == next(r for r in range(1, 13) if _tensorly_error(w, [1, r, 1]) <= eps)


C64 = _random_tt(np.random.default_rng(4), (3, 4, 5), (2, 3), noise=0.1)
_capped_jit = jax.jit(lambda a: tt_svd(a, max_rank=2))


def test_max_rank_caps_reports_the_error_and_works_under_jit_and_vmap():
    tt = tt_svd(C64, eps=1e-3, max_rank=2)
    assert tt_ranks(tt) == (1, 2, 2, 1)
    err = _rel(_np_full(tt), C64)
    assert err > 1e-3  # the cap bites: the bound is reported, not met
    np.testing.assert_allclose(float(tt.rel_error), err, rtol=1e-8)
    assert err <= _tensorly_error(C64, tt_ranks(tt)) * (1 + 1e-9)
    jitted = _capped_jit(jnp.asarray(C64))  # max_rank alone: the same TT, under jit
    for c1, c2 in zip(tt.cores, jitted.cores, strict=True):
        np.testing.assert_allclose(c1, c2, atol=1e-12)
    np.testing.assert_allclose(tt.rel_error, jitted.rel_error, rtol=1e-10)
    stack = np.stack([C64, 2.0 * C64[::-1]])
    batched = jax.vmap(lambda a: tt_svd(a, max_rank=2))(stack)
    assert batched.cores[1].shape == (2, 2, 4, 2) and batched.rel_error.shape == (2,)
    for i in range(2):
        ref = tensor_train(stack[i], rank=[1, 2, 2, 1])
        np.testing.assert_allclose(_np_full(TT(tuple(c[i] for c in batched.cores))),
                                   tl.tt_to_tensor(ref), atol=1e-12)


@pytest.mark.slow
def test_tt_svd_gradients_with_fixed_ranks():
    # exact ranks: the reconstruction is the identity map
    check_grads(jax.jit(lambda a: tt_to_full(tt_svd(a))), (C64,), order=1, modes=["fwd", "rev"])
    # truncated at rank 2 (distinct singular values): a smooth map, derivatives exact
    check_grads(jax.jit(lambda a: tt_to_full(tt_svd(a, max_rank=2))), (C64,), order=1,
                modes=["fwd", "rev"])
    g = jax.grad(lambda a: tt_svd(a, max_rank=2).rel_error)(C64)
    assert bool(jnp.all(jnp.isfinite(g)))
    g0 = jax.grad(lambda a: jnp.sum(tt_to_full(tt_svd(a))) + tt_svd(a).rel_error)(C64)
    np.testing.assert_allclose(g0, 1.0, atol=1e-8)  # rel_error = 0 has a finite gradient


@pytest.mark.slow
def test_max_rank_per_cut():
    tt2 = tt_svd(A64, max_rank=(1, 3, 2))
    assert tt_ranks(tt2) == (1, 1, 3, 2, 1)
    np.testing.assert_allclose(float(tt2.rel_error), _rel(_np_full(tt2), A64), rtol=1e-8)
    assert _rel(_np_full(tt2), A64) <= _tensorly_error(A64, tt_ranks(tt2)) * (1 + 1e-9)


SMOOTH3 = 1.0 / (1.0 + np.add.outer(np.add.outer(np.arange(6.0), np.arange(6.0)),
                                    np.arange(6.0)))  # (6, 6, 6)


def test_float32_accuracy_and_dtypes():
    a32 = SMOOTH3.astype(np.float32)
    eps = 1e-4
    tt = tt_svd(a32, eps=eps)
    assert all(c.dtype == jnp.float32 for c in tt.cores) and tt.rel_error.dtype == jnp.float32
    err = _rel(_np_full(tt), SMOOTH3)
    assert err <= eps
    assert abs(float(tt.rel_error) - err) < 1e-6
    delta2 = eps**2 * np.sum(SMOOTH3**2) / 2
    assert tt_ranks(tt) == (1, _unfolding_rank(SMOOTH3, 1, delta2),
                            _unfolding_rank(SMOOTH3, 2, delta2), 1)


@pytest.mark.slow
def test_float32_on_a_larger_tensor_and_bfloat16():
    a32 = SMOOTH.astype(np.float32)
    for eps in (1e-2, 1e-4):
        tt = tt_svd(a32, eps=eps)
        err = _rel(_np_full(tt), SMOOTH)
        assert err <= eps
        assert abs(float(tt.rel_error) - err) < 1e-5
        assert tt_ranks(tt) == tt_ranks(tt_svd(SMOOTH, eps=eps))
    bf = tt_svd(jnp.asarray(A64, jnp.bfloat16), max_rank=3)
    assert all(c.dtype == jnp.bfloat16 for c in bf.cores) and bf.rel_error.dtype == jnp.bfloat16
    assert _rel(_np_full(bf), _np_full(tt_svd(A64, max_rank=3))) < 2e-2


# --------------------------------------------------------------------------------------------
# tt_dot, tt_norm, tt_round


def _stack_sum(a: TT, b: TT) -> TT:
    """The TT of A + B (block cores, ranks add)."""
    ca, cb = [np.asarray(c) for c in a.cores], [np.asarray(c) for c in b.cores]
    d = len(ca)
    out = []
    for k in range(d):
        x, y = ca[k], cb[k]
        if k == 0:
            out.append(np.concatenate([x, y], axis=2))
        elif k == d - 1:
            out.append(np.concatenate([x, y], axis=0))
        else:
            z = np.zeros((x.shape[0] + y.shape[0], x.shape[1], x.shape[2] + y.shape[2]))
            z[: x.shape[0], :, : x.shape[2]] = x
            z[x.shape[0]:, :, x.shape[2]:] = y
            out.append(z)
    return TT(tuple(jnp.asarray(c) for c in out))


B64 = _random_tt(np.random.default_rng(1), (4, 5, 3, 4), (2, 2, 3))
TTA = TT(tuple(jnp.asarray(c) for c in tensor_train(A64, rank=[1, 3, 3, 3, 1])))
TTB = TT(tuple(jnp.asarray(c) for c in tensor_train(B64, rank=[1, 2, 2, 3, 1])))


def test_dot_and_norm_against_dense():
    fa, fb = _np_full(TTA), _np_full(TTB)
    np.testing.assert_allclose(tt_dot(TTA, TTB), np.sum(fa * fb), rtol=1e-12)
    np.testing.assert_allclose(tt_norm(TTB), np.linalg.norm(fb), rtol=1e-12)
    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), TTB, TTB._replace(
        cores=tuple(2.0 * c if k == 0 else c for k, c in enumerate(TTB.cores))))
    np.testing.assert_allclose(jax.jit(jax.vmap(tt_norm))(stacked),
                               [np.linalg.norm(fb), 2 * np.linalg.norm(fb)], rtol=1e-12)
    f32 = TT(tuple(c.astype(jnp.float32) for c in TTB.cores))
    assert tt_norm(f32).dtype == jnp.float32
    np.testing.assert_allclose(tt_norm(f32), np.linalg.norm(fb), rtol=1e-5)


@pytest.mark.slow
def test_dot_norm_and_full_gradients():
    check_grads(lambda a, b: tt_dot(TT(a), TT(b)), (TTA.cores, TTB.cores), order=1,
                modes=["fwd", "rev"])
    check_grads(lambda c: tt_norm(TT(c)), (TTB.cores,), order=1, modes=["fwd", "rev"])
    check_grads(lambda c: tt_to_full(TT(c)), (TTB.cores,), order=1, modes=["rev"])
    zero = TT(tuple(jnp.zeros_like(c) for c in TTB.cores))
    g = jax.grad(lambda c: tt_norm(TT(c)))(zero.cores)
    assert all(bool(jnp.all(x == 0)) for x in g)  # finite: zero at a zero tensor


def test_round_recovers_the_ranks_of_a_sum_within_eps():
    s = _stack_sum(TTA, TTA)  # A + A = 2 A: ranks double, rounding halves them again
    assert tt_ranks(s) == (1, 6, 6, 6, 1)
    r = tt_round(s, eps=1e-8)
    ref = 2 * _np_full(TTA)
    err = _rel(_np_full(r), ref)
    assert err <= 1e-8 and float(r.rel_error) <= 1e-8
    assert tt_ranks(r) == tt_ranks(TTA)
    for c in r.cores[:-1]:
        q = np.asarray(c).reshape(-1, c.shape[-1])
        np.testing.assert_allclose(q.T @ q, np.eye(c.shape[-1]), atol=1e-12)


@pytest.mark.slow
def test_round_bound_and_fixed_ranks():
    s2 = _stack_sum(TTA, TTB)
    dense = _np_full(TTA) + _np_full(TTB)
    for eps in (1e-3, 0.1, 0.5):
        r = tt_round(s2, eps=eps)
        err = _rel(_np_full(r), dense)
        assert err <= eps * (1 + 1e-9) + 1e-13
        assert abs(float(r.rel_error) - err) <= 1e-9 + 1e-6 * err
        # no uniform rank below the largest of tt_round's meets eps (tensorly on the dense sum)
        assert max(tt_ranks(r)) <= _min_uniform_rank(dense, eps), (tt_ranks(r), eps)
    fixed = jax.jit(lambda t: tt_round(t, max_rank=2))(s2)
    assert tt_ranks(fixed) == (1, 2, 2, 2, 1)
    np.testing.assert_allclose(float(fixed.rel_error), _rel(_np_full(fixed), dense), rtol=1e-8)
    # rounding a TT-SVD to max_rank gives the TT-SVD at that rank
    np.testing.assert_allclose(_np_full(tt_round(tt_svd(A64), max_rank=2)),
                               _np_full(tt_svd(A64, max_rank=2)), atol=1e-10)


# --------------------------------------------------------------------------------------------
# TT matrices

W64 = np.random.default_rng(2).standard_normal((24, 20))
ROWS, COLS = (2, 3, 4), (5, 2, 2)
TTM = TTMatrix(tuple(jnp.asarray(c) for c in tl.decomposition.tensor_train_matrix(
    W64.reshape(ROWS + COLS), rank=[1, 3, 3, 1])))
TTM_DENSE = tl.tt_matrix_to_matrix([np.asarray(c) for c in TTM.cores])
XM = np.random.default_rng(3).standard_normal((7, 24))


def test_tt_matrix_reconstruction_and_eps_bound():
    capped = tt_matrix(W64, ROWS, COLS, max_rank=3)
    assert isinstance(capped, TTMatrix) and tt_ranks(capped) == (1, 3, 3, 1)
    assert [c.shape for c in capped.cores] == [(1, 2, 5, 3), (3, 3, 2, 3), (3, 4, 2, 1)]
    # the same algorithm as tensorly's tensor_train_matrix at these ranks: the same matrix
    dense = tt_matrix_to_dense(capped)
    np.testing.assert_allclose(dense, TTM_DENSE, atol=1e-10)
    np.testing.assert_allclose(float(capped.rel_error), _rel(TTM_DENSE, W64), rtol=1e-8)
    eps = 0.5
    ttm = tt_matrix(W64, ROWS, COLS, eps=eps)
    err = _rel(tl.tt_matrix_to_matrix([np.asarray(c) for c in ttm.cores]), W64)
    assert err <= eps * (1 + 1e-9)
    np.testing.assert_allclose(float(ttm.rel_error), err, rtol=1e-8)


@pytest.mark.slow
def test_tt_matrix_exact():
    full = tt_matrix(W64, ROWS, COLS)
    assert [c.shape[1:3] for c in full.cores] == [(2, 5), (3, 2), (4, 2)]
    np.testing.assert_allclose(tt_matrix_to_dense(full), W64, atol=1e-12)
    np.testing.assert_allclose(
        tl.tt_matrix_to_matrix([np.asarray(c) for c in full.cores]), W64, atol=1e-12
    )
    assert float(full.rel_error) < 1e-12


_matvec_jit = jax.jit(tt_matvec)


def test_tt_matvec_against_dense_jit_vmap():
    ref = XM @ TTM_DENSE
    np.testing.assert_allclose(tt_matrix_to_dense(TTM), TTM_DENSE, atol=1e-12)
    np.testing.assert_allclose(tt_matvec(TTM, XM), ref, atol=1e-12)
    np.testing.assert_allclose(_matvec_jit(TTM, XM), ref, atol=1e-12)
    y3 = tt_matvec(TTM, XM.reshape(7, 1, 24))
    assert y3.shape == (7, 1, 20)
    np.testing.assert_allclose(y3[:, 0], ref, atol=1e-12)
    np.testing.assert_allclose(jax.vmap(tt_matvec, in_axes=(None, 0))(TTM, XM), ref, atol=1e-12)
    # float32 inputs stay float32 (the cores are float64) and are accurate
    y32 = tt_matvec(TTM, XM.astype(np.float32))
    assert y32.dtype == jnp.float32
    assert _rel(y32, ref) < 1e-6


@pytest.mark.slow
def test_tt_matvec_gradients_and_float32_cores():
    check_grads(jax.jit(lambda c, v: tt_matvec(TTMatrix(c), v)), (TTM.cores, XM[:2]), order=1,
                modes=["fwd", "rev"])
    check_grads(jax.jit(lambda c: tt_matrix_to_dense(TTMatrix(c))), (TTM.cores,), order=1,
                modes=["rev"])
    ttm32 = TTMatrix(tuple(c.astype(jnp.float32) for c in TTM.cores))
    assert _rel(tt_matvec(ttm32, XM.astype(np.float32)), XM @ TTM_DENSE) < 1e-5


@pytest.mark.slow
def test_tt_matrix_matches_tensorly_at_the_same_ranks():
    from tensorly.decomposition import tensor_train_matrix

    ttm = tt_matrix(W64, ROWS, COLS, eps=0.3)
    ranks = tt_ranks(ttm)
    tens = W64.reshape(ROWS + COLS)
    ref = tensor_train_matrix(tens, rank=list(ranks))
    err_tl = _rel(tl.tt_matrix_to_matrix(ref), W64)
    assert _rel(tt_matrix_to_dense(ttm), W64) <= err_tl * (1 + 1e-9)


# --------------------------------------------------------------------------------------------
# errors

SVD_FN = "jaxla.linalg.tt_svd"


@pytest.mark.parametrize(
    ("kwargs", "exc", "text"),
    [
        ({"eps": 0.0}, ValueError, "`eps` must be > 0 and finite, got 0.0"),
        ({"eps": -1e-3}, ValueError, "`eps` must be > 0 and finite, got -0.001"),
        ({"max_rank": 0}, ValueError, "`max_rank` must be >= 1, got 0"),
        ({"max_rank": 2.5}, TypeError, "`max_rank` must be an int, got 2.5 (float)"),
        ({"max_rank": (2, 2)}, ValueError,
         "`max_rank` must be an int or a sequence of d-1=3 ints (one per inner rank), got (2, 2)"),
        ({"max_rank": (2, 0, 2)}, ValueError, "`max_rank[1]` must be >= 1, got 0"),
    ],
)
def test_tt_svd_option_errors(kwargs, exc, text):
    with pytest.raises(exc, match=msg(f"{SVD_FN}: {text}")):
        tt_svd(A64, **kwargs)


def test_tt_svd_input_errors():
    with pytest.raises(ValueError, match=msg(
            f"{SVD_FN}: `tensor` must have at least 2 dimensions (n_1, ..., n_d), got shape (5,)")):
        tt_svd(np.ones(5))
    with pytest.raises(ValueError, match=msg(
            f"{SVD_FN}: `tensor` must have at least 2 dimensions (n_1, ..., n_d), got shape ()")):
        tt_svd(np.float64(1.0))
    with pytest.raises(TypeError, match=re.escape(
            f"{SVD_FN}: `tensor` must have a real floating dtype, got integer or boolean dtype")):
        tt_svd(np.ones((2, 3), np.int32))
    with pytest.raises(ValueError, match=msg(
            f"{SVD_FN}: `tensor` must not have an empty axis, got shape (2, 0, 3)")):
        tt_svd(np.ones((2, 0, 3)))
    bad = A64.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=msg(
            f"{SVD_FN}: `tensor` contains 1 NaN or Inf value(s); clean or mask them first")):
        tt_svd(bad, eps=0.1)
    with pytest.raises(TypeError, match=msg(
            f"{SVD_FN}: `eps` chooses the ranks from the singular values of `tensor`, so "
            "`tensor` must be concrete (call this eagerly, outside jit/vmap/grad, or pass only "
            "max_rank), got a traced value")):
        jax.jit(lambda a: tt_svd(a, eps=0.1))(A64)
    with pytest.raises(TypeError, match=msg(
            f"{SVD_FN}: `eps` sets data-dependent ranks and must be a concrete Python float, "
            "got a traced value")):
        jax.jit(lambda e: tt_svd(A64, eps=e))(0.1)
    checked = checkify.checkify(jax.jit(lambda a: tt_svd(a, max_rank=1)))
    err, _ = checked(jnp.asarray([[1.0, np.inf], [0.0, 1.0]]))
    with pytest.raises(checkify.JaxRuntimeError, match="`tensor` contains NaN or Inf"):
        err.throw()


def test_tt_matrix_and_tt_errors():
    fn = "jaxla.linalg.tt_matrix"
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `row_dims` must multiply to d_in=24 (the shape of `w`), got (2, 3, 3) with "
            "product 18")):
        tt_matrix(W64, (2, 3, 3), COLS)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `col_dims` must multiply to d_out=20 (the shape of `w`), got (5, 2, 3) with "
            "product 30")):
        tt_matrix(W64, ROWS, (5, 2, 3))
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `row_dims` and `col_dims` must have the same number of factors, got "
            "(2, 3, 4) and (5, 4)")):
        tt_matrix(W64, ROWS, (5, 4))
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `row_dims` must be a sequence of at least 2 ints >= 1, got (24,)")):
        tt_matrix(W64, (24,), (20,))
    with pytest.raises(ValueError, match=msg(f"{fn}: `row_dims[1]` must be >= 1, got 0")):
        tt_matrix(W64, (24, 0), (20, 1))
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `w` must be 2-D (d_in, d_out), got shape (24, 20, 1)")):
        tt_matrix(W64[..., None], ROWS, COLS)
    with pytest.raises(ValueError, match=msg(f"{fn}: `eps` must be > 0 and finite, got 0")):
        tt_matrix(W64, ROWS, COLS, eps=0)
    bad = TT((jnp.ones((1, 2, 3)), jnp.ones((2, 2, 1))))
    with pytest.raises(ValueError, match=msg(
            "jaxla.linalg.tt_to_full: `tt.cores[1]` must have 3 rows (first axis) to follow "
            "tt.cores[0] of shape (1, 2, 3), got shape (2, 2, 1)")):
        tt_to_full(bad)
    with pytest.raises(ValueError, match=msg(
            "jaxla.linalg.tt_norm: `tt.cores[0]` must have r_0=1 (first axis), got shape "
            "(2, 2, 1)")):
        tt_norm(TT((jnp.ones((2, 2, 1)),)))
    with pytest.raises(ValueError, match=msg(
            "jaxla.linalg.tt_dot: `a` and `b` must have the same mode sizes, got (4, 5, 3, 4) "
            "and (4, 5, 4)")):
        tt_dot(TTA, TT((jnp.ones((1, 4, 1)), jnp.ones((1, 5, 1)), jnp.ones((1, 4, 1)))))
    with pytest.raises(ValueError, match=msg(
            "jaxla.linalg.tt_matvec: `x` must have d_in=24 features (last axis) to match the TT "
            "matrix, got shape (3, 20)")):
        tt_matvec(TTM, np.ones((3, 20)))
    with pytest.raises(ValueError, match=msg(
            "jaxla.linalg.tt_matvec: `ttm.cores[0]` must be 4-D (r, m, n, r'), got shape "
            "(1, 2, 3)")):
        tt_matvec(TTMatrix((jnp.ones((1, 2, 3)),)), np.ones((3, 2)))
    with pytest.raises(TypeError, match=msg(
            "jaxla.linalg.tt_ranks: `tt` must be a TT with a non-empty sequence of cores, got "
            "ndarray")):
        tt_ranks(np.ones((2, 2)))
    with pytest.raises(ValueError, match=msg(
            "jaxla.linalg.tt_round: `eps` must be > 0 and finite, got -1.0")):
        tt_round(TTA, eps=-1.0)
