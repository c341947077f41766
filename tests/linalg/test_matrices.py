"""Tests of jaxla.linalg.matrices against numpy.linalg references."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.experimental import checkify
from jax.test_util import check_grads
from scipy.linalg import hilbert

from jaxla.linalg import LstsqResult, cond, inv, lstsq, matrix_rank, pinv, solve
from tests.helpers import grads2, msg, rel_err

INF = np.inf
SINGULAR = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])


def grads1(f, args):
    """First-order forward and reverse derivative check of jit(f) (float64)."""
    check_grads(jax.jit(f), args, order=1, modes=["fwd", "rev"])


def well_conditioned(rng, n, dtype=np.float64):
    return (rng.standard_normal((n, n)) + 3.0 * np.eye(n)).astype(dtype)


def rank_deficient(rng, m, n, r):
    return rng.standard_normal((m, r)) @ rng.standard_normal((r, n))


# ---------------------------------------------------------------------------------------------
# solve, inv
# ---------------------------------------------------------------------------------------------


def test_solve_and_inv_match_numpy(rng):
    a = well_conditioned(rng, 4)
    b, bk = rng.standard_normal(4), rng.standard_normal((4, 2))
    np.testing.assert_allclose(solve(a, b), np.linalg.solve(a, b), rtol=1e-12)
    np.testing.assert_allclose(solve(a, bk), np.linalg.solve(a, bk), rtol=1e-12)
    np.testing.assert_allclose(inv(a), np.linalg.inv(a), rtol=1e-12, atol=1e-14)
    assert solve(a, b).shape == (4,) and solve(a, bk).shape == (4, 2)


def test_solve_and_inv_float32(rng):
    a32 = well_conditioned(rng, 6, np.float32)
    b32 = rng.standard_normal((6, 2)).astype(np.float32)
    a64, b64 = a32.astype(np.float64), b32.astype(np.float64)
    x = solve(a32, b32)
    assert x.dtype == jnp.float32 and inv(a32).dtype == jnp.float32
    assert rel_err(x, np.linalg.solve(a64, b64)) < 1e-5
    assert rel_err(inv(a32), np.linalg.inv(a64)) < 1e-5
    assert solve(jnp.asarray(a32, jnp.float16), jnp.asarray(b32, jnp.float16)).dtype == jnp.float16
    # mixed dtypes promote
    assert solve(a32, b64).dtype == jnp.float64


def test_solve_and_inv_jit_vmap_grad(rng):
    a = np.stack([well_conditioned(rng, 3) for _ in range(4)])
    b = rng.standard_normal((4, 3, 2))
    out = jax.vmap(jax.jit(solve))(a, b)
    np.testing.assert_allclose(out, np.linalg.solve(a, b), rtol=1e-12)
    np.testing.assert_allclose(jax.vmap(inv)(a), np.linalg.inv(a), rtol=1e-12, atol=1e-14)
    grads2(solve, (a[0], b[0]))
    grads1(solve, (a[0], b[0, :, 0]))


def test_solve_singular_raises_eagerly():
    text = (
        "jaxla.linalg.solve: `a` must be non-singular, got a matrix that is singular to working "
        "precision (smallest/largest |pivot| of its LU factorisation = {} <= eps = {}); use "
        "jaxla.linalg.lstsq or jaxla.linalg.pinv for singular systems"
    )
    with pytest.raises(ValueError, match=msg(text.format("0.0e+00", "2.2e-16"))):
        solve(SINGULAR, np.ones(3))
    with pytest.raises(ValueError, match=msg(text.format("0.0e+00", "1.2e-07"))):
        solve(SINGULAR.astype(np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match=msg(text.format("0.0e+00", "2.2e-16"))):
        solve(np.zeros((2, 2)), np.ones(2))
    # singular to working precision (Hilbert matrix, cond ~ 1e18): numpy returns an inaccurate
    # solution without complaint, jaxla refuses
    with pytest.raises(ValueError, match=r"singular to working precision"):
        solve(hilbert(16), np.ones(16))
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.inv: `a` must be non-singular, got a matrix that is singular to working "
        "precision (smallest/largest |pivot| of its LU factorisation = 0.0e+00 <= eps = 2.2e-16); "
        "use jaxla.linalg.lstsq or jaxla.linalg.pinv for singular systems"
    )):
        inv(SINGULAR)


def test_solve_singular_under_jit_and_checkify(rng):
    f = jax.jit(solve)
    x = np.asarray(f(SINGULAR, np.ones(3)))  # no exception under jit
    assert x.shape == (3,)
    err, _ = jax.jit(checkify.checkify(solve))(SINGULAR, np.ones(3))
    with pytest.raises(checkify.JaxRuntimeError, match=re.escape(
        "jaxla.linalg.solve: `a` must be non-singular, got a matrix that is singular to working "
        "precision"
    )):
        err.throw()
    err, x = checkify.checkify(jax.jit(solve))(well_conditioned(rng, 3), np.ones(3))
    assert err.get() is None
    err, _ = checkify.checkify(jax.jit(inv))(SINGULAR)
    assert "jaxla.linalg.inv: `a` must be non-singular" in err.get()


def test_solve_and_inv_errors():
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.solve: `a` must be a square matrix (n, n), got shape (2, 3)"
    )):
        solve(np.ones((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.solve: `b` must have 2 rows to match `a` of shape (2, 2), got shape (3,)"
    )):
        solve(np.eye(2), np.ones(3))
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.solve: `b` must be 1-D or 2-D (m,) or (m, k), got shape (2, 1, 1)"
    )):
        solve(np.eye(2), np.ones((2, 1, 1)))
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.solve: `a` must be 2-D (n, n), got shape (2,)"
    )):
        solve(np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match=r"^jaxla.linalg.solve: `a` must have a real floating "
                       r"dtype, got integer or boolean dtype int\d+; cast it first"):
        solve(np.eye(2, dtype=int), np.ones(2))
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.solve: `b` contains 1 NaN or Inf value(s); clean or mask them first"
    )):
        solve(np.eye(2), np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.inv: `a` must be a square matrix (n, n), got shape (3, 2)"
    )):
        inv(np.ones((3, 2)))
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.inv: `a` must have at least one row and one column, got shape (0, 0)"
    )):
        inv(np.ones((0, 0)))
    # static errors are raised at trace time under jit too
    with pytest.raises(ValueError, match="must be a square matrix"):
        jax.jit(inv)(np.ones((3, 2)))


# ---------------------------------------------------------------------------------------------
# pinv
# ---------------------------------------------------------------------------------------------

SHAPES = [(6, 3), (3, 6), (4, 4)]


def test_pinv_matches_numpy(rng):
    for m, n in SHAPES:
        a = rng.standard_normal((m, n))
        np.testing.assert_allclose(pinv(a), np.linalg.pinv(a, rtol=None), atol=1e-13)
        d = rank_deficient(rng, m, n, 2)
        out = pinv(d)
        assert out.shape == (n, m)
        np.testing.assert_allclose(out, np.linalg.pinv(d, rtol=None), atol=1e-12)
    np.testing.assert_array_equal(pinv(np.zeros((2, 3))), np.zeros((3, 2)))
    # an explicit cut-off drops the small singular value, as numpy does
    a = np.diag([1.0, 1e-3, 1e-9])
    np.testing.assert_allclose(pinv(a, rcond=1e-6), np.linalg.pinv(a, rtol=1e-6), rtol=1e-13)
    np.testing.assert_allclose(pinv(a, rcond=1e-6), np.diag([1.0, 1e3, 0.0]), rtol=1e-13)


def test_pinv_float32_jit_vmap(rng):
    a32 = rng.standard_normal((8, 4)).astype(np.float32)
    out = pinv(a32)
    assert out.dtype == jnp.float32
    assert rel_err(out, np.linalg.pinv(a32.astype(np.float64))) < 1e-5
    assert pinv(jnp.asarray(a32, jnp.float16)).dtype == jnp.float16
    assert lstsq(jnp.asarray(a32, jnp.bfloat16), a32[:, 0]).solution.dtype == jnp.float32
    batch = rng.standard_normal((3, 5, 2))
    f = jax.jit(pinv)
    np.testing.assert_allclose(jax.vmap(f)(batch), np.linalg.pinv(batch), atol=1e-13)
    # rcond may be traced, also under grad
    g = jax.jit(jax.grad(lambda a, r: jnp.sum(pinv(a, rcond=r))))(batch[0], 1e-8)
    assert np.all(np.isfinite(np.asarray(g)))


def test_pinv_gradients(rng):
    a = rng.standard_normal((4, 3))
    grads1(pinv, (a,))
    # finite at repeated and zero singular values (constant-rank derivative)
    g = jax.jit(jax.jacobian(pinv))(np.zeros((3, 2)))
    assert np.all(np.isfinite(np.asarray(g)))
    g = jax.jit(jax.jacobian(pinv))(np.eye(3))
    np.testing.assert_allclose(np.asarray(g).reshape(9, 9), -np.eye(9), atol=1e-14)


_pinv_jit = jax.jit(pinv)


@given(hnp.arrays(np.float64, (5, 3), elements=st.floats(-10, 10)), st.integers(0, 3))
def test_pinv_moore_penrose_conditions(a, rank):
    # lower the rank by zeroing columns of a random-looking matrix
    a = a.copy()
    a[:, rank:] = 0.0
    p = np.asarray(_pinv_jit(a))
    scale = max(1.0, np.linalg.norm(a, 2)) * max(1.0, np.linalg.norm(p, 2)) ** 2
    tol = 1e-10 * scale
    np.testing.assert_allclose(a @ p @ a, a, atol=tol)
    np.testing.assert_allclose(p @ a @ p, p, atol=tol)
    np.testing.assert_allclose(a @ p, (a @ p).T, atol=tol)
    np.testing.assert_allclose(p @ a, (p @ a).T, atol=tol)


def test_pinv_errors():
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.pinv: `a` must be 2-D (m, n), got shape (2, 2, 2)"
    )):
        pinv(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.pinv: `rcond` must be >= 0 and finite, got -0.1"
    )):
        pinv(np.ones((2, 2)), rcond=-0.1)
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.pinv: `a` contains 1 NaN or Inf value(s); clean or mask them first"
    )):
        pinv(np.array([[1.0, np.inf]]))


# ---------------------------------------------------------------------------------------------
# lstsq
# ---------------------------------------------------------------------------------------------


def _check_lstsq(a, b, res, atol):
    x, resid, rank, s = np.linalg.lstsq(a, b, rcond=None)
    np.testing.assert_allclose(res.solution, x, atol=atol)
    np.testing.assert_allclose(res.singular_values, s, atol=atol)
    assert int(res.rank) == rank
    assert res.residuals.shape == ((1,) if b.ndim == 1 else (b.shape[1],))
    if resid.size:  # numpy reports residuals only for full-rank over-determined systems
        np.testing.assert_allclose(res.residuals, resid, rtol=1e-10, atol=atol)
    direct = np.sum((b - a @ x) ** 2, axis=0)
    np.testing.assert_allclose(res.residuals, np.atleast_1d(direct), atol=atol)


def test_lstsq_matches_numpy(rng):
    for m, n in SHAPES:
        for b in (rng.standard_normal(m), rng.standard_normal((m, 2))):
            a = rng.standard_normal((m, n))
            _check_lstsq(a, b, lstsq(a, b), atol=1e-12)
            d = rank_deficient(rng, m, n, 2)
            res = lstsq(d, b)
            _check_lstsq(d, b, res, atol=1e-11)
            assert int(res.rank) == 2
    zero = lstsq(np.zeros((3, 2)), np.ones(3))
    np.testing.assert_array_equal(zero.solution, np.zeros(2))
    assert int(zero.rank) == 0


def test_lstsq_result_float32_jit_vmap(rng):
    a32 = rng.standard_normal((8, 3)).astype(np.float32)
    b32 = rng.standard_normal(8).astype(np.float32)
    res = lstsq(a32, b32)
    assert isinstance(res, LstsqResult)
    assert res.solution.dtype == jnp.float32 and res.residuals.dtype == jnp.float32
    assert res.singular_values.dtype == jnp.float32 and res.rank.dtype == jnp.int32
    a64, b64 = a32.astype(np.float64), b32.astype(np.float64)
    x, resid, _, s = np.linalg.lstsq(a64, b64, rcond=None)
    assert rel_err(res.solution, x) < 1e-5
    assert rel_err(res.residuals, resid) < 1e-5
    assert rel_err(res.singular_values, s) < 1e-5
    a = rng.standard_normal((3, 5, 2))
    b = rng.standard_normal((3, 5))
    out = jax.vmap(jax.jit(lstsq))(a, b)
    assert out.solution.shape == (3, 2) and out.rank.shape == (3,)
    for i in range(3):
        np.testing.assert_allclose(out.solution[i], np.linalg.lstsq(a[i], b[i])[0], atol=1e-13)


def test_lstsq_gradients(rng):
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    grads1(lambda a, b: lstsq(a, b)[:2], (a, b))
    grads1(lambda a: lstsq(a, b[:, 0]).singular_values, (a,))
    # finite at the identity and for rank-deficient a (constant-rank derivative)
    for a0 in (np.eye(3), rank_deficient(rng, 4, 3, 1)):
        g = jax.jit(jax.grad(lambda m, a0=a0: jnp.sum(lstsq(m, np.ones(a0.shape[0])).solution)))(a0)
        assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.slow
def test_second_order_gradients(rng):
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    grads2(pinv, (a,))
    grads2(pinv, (a.T,))
    grads2(lambda a, b: lstsq(a, b).solution, (a, b))
    grads2(lambda a, b: lstsq(a, b).solution, (a.T, b[:3]))
    grads2(lambda a, b: lstsq(a, b).residuals, (a, b))
    grads2(lambda a: lstsq(a, b).singular_values, (a,))
    grads2(inv, (a[:3],))
    grads2(cond, (a,))
    grads2(lambda a: cond(a, -2), (a,))


_lstsq_jit = jax.jit(lstsq)


@given(hnp.arrays(np.float64, (6, 3), elements=st.floats(-10, 10)),
       hnp.arrays(np.float64, (6,), elements=st.floats(-10, 10)))
def test_lstsq_normal_equations_and_minimum_norm(a, b):
    a = a.copy()
    a[:, 2] = a[:, 0] + a[:, 1]  # always rank-deficient
    res = _lstsq_jit(a, b)
    x = np.asarray(res.solution)
    r = b - a @ x
    scale = max(1.0, np.linalg.norm(a, 2)) * max(1.0, np.linalg.norm(b)) * max(
        1.0, np.linalg.norm(np.linalg.pinv(a), 2)
    )
    # the residual is orthogonal to range(a) (normal equations) ...
    np.testing.assert_allclose(a.T @ r, 0.0, atol=1e-10 * scale)
    # ... and the solution lies in the row space of a (minimum norm)
    row_proj = np.linalg.pinv(a) @ a
    np.testing.assert_allclose(row_proj @ x, x, atol=1e-10 * scale)


def test_lstsq_errors():
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.lstsq: `b` must have 4 rows to match `a` of shape (4, 2), got shape (2,)"
    )):
        lstsq(np.ones((4, 2)), np.ones(2))
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.lstsq: `a` must be 2-D (m, n), got shape (4,)"
    )):
        lstsq(np.ones(4), np.ones(4))
    with pytest.raises(TypeError, match=r"^jaxla.linalg.lstsq: `b` must have a real floating"):
        lstsq(np.ones((4, 2)), np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.lstsq: `rcond` must be >= 0 and finite, got nan"
    )):
        lstsq(np.ones((4, 2)), np.ones(4), rcond=float("nan"))


# ---------------------------------------------------------------------------------------------
# cond, matrix_rank
# ---------------------------------------------------------------------------------------------

COND_PS = [None, 2, -2, "fro", "nuc", 1, -1, INF, -INF]


def test_cond_matches_numpy(rng):
    a = well_conditioned(rng, 4)
    for p in COND_PS:
        np.testing.assert_allclose(cond(a, p), np.linalg.cond(a, p), rtol=1e-12, err_msg=str(p))
    t = rng.standard_normal((5, 3))
    for p in (None, 2, -2):
        np.testing.assert_allclose(cond(t, p), np.linalg.cond(t, p), rtol=1e-12)
        np.testing.assert_allclose(cond(t.T, p), np.linalg.cond(t.T, p), rtol=1e-12)
    # exactly singular: inf, as numpy
    sing = np.array([[1.0, 2.0], [2.0, 4.0]])  # LU has an exact zero pivot
    for p in ("fro", 1, -1, INF):
        assert cond(sing, p) == INF == np.linalg.cond(sing, p), p
    assert cond(np.diag([1.0, 0.0])) == INF == np.linalg.cond(np.diag([1.0, 0.0]))
    assert cond(np.zeros((2, 2))) == INF and cond(np.zeros((2, 2)), -2) == INF
    assert cond(np.array([[1.0, 0.0], [0.0, 0.0]]), -2) == 0.0
    np.testing.assert_allclose(cond(SINGULAR), np.linalg.cond(SINGULAR), rtol=1e-6)


def test_cond_float32_jit_vmap_grad(rng):
    t32 = rng.standard_normal((6, 3)).astype(np.float32)
    out = cond(t32)
    assert out.dtype == jnp.float32
    assert rel_err(out, np.linalg.cond(t32.astype(np.float64))) < 1e-5
    batch = np.stack([well_conditioned(rng, 3) for _ in range(3)])
    f = jax.jit(cond, static_argnames="p")
    np.testing.assert_allclose(jax.vmap(functools.partial(f, p=1))(batch),
                               np.linalg.cond(batch, 1), rtol=1e-12)
    grads1(cond, (t32.astype(np.float64),))
    g = jax.jit(jax.grad(cond))(np.ones((2, 2)))  # singular: value inf, gradient 0
    np.testing.assert_array_equal(g, np.zeros((2, 2)))


def test_matrix_rank_matches_numpy(rng):
    for m, n in SHAPES:
        for r in (0, 1, 2, min(m, n)):
            a = rank_deficient(rng, m, n, r) if r else np.zeros((m, n))
            assert int(matrix_rank(a)) == np.linalg.matrix_rank(a) == r
    a = np.diag([1.0, 1e-3, 1e-9])
    for tol in (1e-12, 1e-6, 1e-2, 2.0):
        assert int(matrix_rank(a, tol=tol)) == np.linalg.matrix_rank(a, tol=tol)
    # float32 default tolerance is relative to float32 eps
    b = np.diag([1.0, 1e-7])
    assert int(matrix_rank(b)) == np.linalg.matrix_rank(b) == 2
    b32 = b.astype(np.float32)
    assert int(matrix_rank(b32)) == np.linalg.matrix_rank(b32) == 1
    out = matrix_rank(a)
    assert out.dtype == jnp.int32 and out.shape == ()
    batch = np.stack([rank_deficient(rng, 4, 3, r) for r in (1, 2, 3)])
    np.testing.assert_array_equal(jax.vmap(jax.jit(matrix_rank))(batch), [1, 2, 3])


def test_cond_and_matrix_rank_errors():
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.cond: `p` must be one of None, 2, -2, 'fro', 'nuc', 1, -1, inf, -inf, "
        "got 'spectral'"
    )):
        cond(np.eye(2), "spectral")
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.cond: `a` must be a square matrix (n, n), got shape (3, 2)"
    )):
        cond(np.ones((3, 2)), "fro")
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.cond: `a` contains 1 NaN or Inf value(s); clean or mask them first"
    )):
        cond(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.matrix_rank: `a` must be 2-D (m, n), got shape (3,)"
    )):
        matrix_rank(np.ones(3))
    with pytest.raises(ValueError, match=msg(
        "jaxla.linalg.matrix_rank: `tol` must be >= 0 and finite, got -1.0"
    )):
        matrix_rank(np.eye(2), tol=-1.0)
    with pytest.raises(TypeError, match=r"^jaxla.linalg.matrix_rank: `a` must have a real "
                       r"floating dtype, got integer or boolean dtype int\d+"):
        matrix_rank(np.eye(2, dtype=np.int32))
