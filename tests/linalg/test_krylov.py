"""Tests of jaxla.linalg.krylov against dense references (numpy, scipy).

Matrices are small and shared between tests so that compiled functions are reused: a dense matrix
argument runs through a jitted core that is cached by shape and static configuration.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.experimental import checkify
from jax.flatten_util import ravel_pytree
from jax.test_util import check_grads

from jaxla.linalg import (
    CGResult,
    EigshResult,
    LanczosResult,
    PowerIterationResult,
    SpectralDensity,
    TraceEstimate,
    aslinearoperator,
    conjugate_gradient,
    eigsh,
    hutchinson_trace,
    hutchpp_trace,
    lanczos,
    power_iteration,
    spectral_density,
)

N = 40


def _random_orthogonal(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def _sym(rng, eigenvalues):
    q = _random_orthogonal(rng, len(eigenvalues))
    a = (q * eigenvalues) @ q.T
    return (a + a.T) / 2


_RNG = np.random.default_rng(1234)
# SPD with well separated ends; indefinite with both ends separated; decaying spectrum.
SPD = _sym(_RNG, np.concatenate([[10.0, 8.0, 7.0, 6.5], np.linspace(0.5, 5.0, N - 6), [0.2, 0.1]]))
INDEF = _sym(_RNG, np.concatenate([[-6.0, -5.0, -4.5], np.linspace(-3.0, 3.0, N - 6),
                                   [4.0, 5.5, 7.0]]))
DECAY = _sym(_RNG, 1.0 / np.arange(1, N + 1) ** 2)


def _ref_eigs(a, k, which):
    w, u = np.linalg.eigh(a)
    idx = {"largest": np.arange(len(w) - k, len(w)), "smallest": np.arange(k),
           "both_ends": np.r_[np.arange(k), np.arange(len(w) - k, len(w))]}[which]
    return w[idx], u[:, idx].T


def _canonical_rows(v):
    v = np.asarray(v)
    idx = np.argmax(np.abs(v), axis=-1)
    return v * np.sign(v[np.arange(len(v)), idx])[:, None]


def _true_residuals(a, vals, vecs):
    vals, vecs = np.asarray(vals, np.float64), np.asarray(vecs, np.float64)
    return np.linalg.norm(vecs @ a.T - vals[:, None] * vecs, axis=1)


# ---------------------------------------------------------------------------------------------
# eigsh


@pytest.mark.parametrize("which", ["largest", "smallest", "both_ends"])
@pytest.mark.parametrize("name", ["spd", "indefinite"])
def test_eigsh_matches_numpy(which, name, key):
    a = {"spd": SPD, "indefinite": INDEF}[name]
    res = eigsh(key, jnp.asarray(a), None, 3, which=which, tol=1e-10)
    assert isinstance(res, EigshResult)
    k2 = 6 if which == "both_ends" else 3
    ref_w, ref_v = _ref_eigs(a, 3, which)
    assert res.eigenvalues.shape == (k2,) and res.eigenvectors.shape == (k2, N)
    assert res.residual_norms.shape == (k2,)
    assert res.eigenvalues.dtype == jnp.float64
    np.testing.assert_allclose(res.eigenvalues, ref_w, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(res.eigenvectors, _canonical_rows(ref_v), atol=1e-7)
    # eigenvalues ascending, eigenvectors orthonormal
    assert np.all(np.diff(np.asarray(res.eigenvalues)) > 0)
    v = np.asarray(res.eigenvectors)
    np.testing.assert_allclose(v @ v.T, np.eye(k2), atol=1e-12)
    # reported residuals are the true ones and meet the documented criterion
    true = _true_residuals(a, res.eigenvalues, res.eigenvectors)
    np.testing.assert_allclose(res.residual_norms, true, atol=1e-12)
    norm_a = np.abs(np.linalg.eigvalsh(a)).max()
    assert np.all(true <= 1e-10 * norm_a * 1.001)
    assert bool(res.converged)
    assert 3 <= int(res.num_matvecs) <= 1000


def test_eigsh_float32_accuracy_and_dtype(key):
    a = jnp.asarray(SPD, jnp.float32)
    res = eigsh(key, a, None, 3)
    assert res.eigenvalues.dtype == jnp.float32 and res.eigenvectors.dtype == jnp.float32
    assert res.residual_norms.dtype == jnp.float32
    ref_w, _ = _ref_eigs(np.asarray(a, np.float64), 3, "largest")
    np.testing.assert_allclose(res.eigenvalues, ref_w, rtol=2e-6)
    assert bool(res.converged)
    true = _true_residuals(np.asarray(a, np.float64), res.eigenvalues, res.eigenvectors)
    np.testing.assert_allclose(res.residual_norms, true, atol=2e-5 * 10)


def test_eigsh_on_pytree_matches_flattened_dense_matrix(key):
    params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(5)}
    flat, unravel = ravel_pytree(params)
    n = flat.shape[0]
    a = _sym(np.random.default_rng(5), np.linspace(-2.0, 3.0, n))

    def matvec(tree):
        return unravel(jnp.asarray(a) @ ravel_pytree(tree)[0])

    res = eigsh(key, matvec, params, 2, which="both_ends", tol=1e-10)
    ref_w, ref_v = _ref_eigs(a, 2, "both_ends")
    np.testing.assert_allclose(res.eigenvalues, ref_w, atol=1e-10)
    assert res.eigenvectors["w"].shape == (4, 3, 4) and res.eigenvectors["b"].shape == (4, 5)
    stacked = np.stack([ravel_pytree(jax.tree.map(lambda x, i=i: x[i], res.eigenvectors))[0]
                        for i in range(4)])
    np.testing.assert_allclose(stacked, _canonical_rows(ref_v), atol=1e-7)
    assert bool(res.converged)


def test_eigsh_jit_and_vmap(key):
    a = jnp.asarray(INDEF)
    eager = eigsh(key, a, None, 3)
    # vmap over keys and matrices at once (under jit): a batch of shifted operators
    keys = jax.random.split(key, 3)
    mats = jnp.stack([a, a + 2 * jnp.eye(N), a - jnp.eye(N)])
    batched = jax.jit(jax.vmap(lambda k, m: eigsh(k, m, None, 3)))(keys, mats)
    assert batched.eigenvalues.shape == (3, 3) and batched.eigenvectors.shape == (3, 3, N)
    assert batched.converged.shape == (3,) and bool(jnp.all(batched.converged))
    shifts = np.array([0.0, 2.0, -1.0])[:, None]
    np.testing.assert_allclose(batched.eigenvalues, eager.eigenvalues[None, :] + shifts,
                               rtol=1e-9)


def test_eigsh_invariant_subspaces_repeated_eigenvalues_and_k_equal_to_n(key):
    # identity: every Krylov space of one vector is invariant; six copies of the eigenvalue 1
    res = eigsh(key, jnp.eye(6), None, 6)
    np.testing.assert_allclose(res.eigenvalues, np.ones(6), atol=1e-12)
    v = np.asarray(res.eigenvectors)
    np.testing.assert_allclose(v @ v.T, np.eye(6), atol=1e-10)
    assert bool(res.converged) and np.all(np.isfinite(res.residual_norms))
    # a start vector inside a 2-D eigenspace: fresh directions find the rest of the spectrum
    a = _sym(np.random.default_rng(3), np.arange(1.0, 7.0))
    _, u = np.linalg.eigh(a)
    res = eigsh(key, jnp.asarray(a), None, 6, v0=jnp.asarray(u[:, 1] + u[:, 4]))
    np.testing.assert_allclose(res.eigenvalues, np.arange(1.0, 7.0), atol=1e-10)
    assert bool(res.converged) and int(res.num_matvecs) == 6


def test_eigsh_budget_and_restarts(key):
    # a small basis forces several restarts; the budget is respected when it is too small
    res = eigsh(key, jnp.asarray(SPD), None, 2, basis_size=8, tol=1e-10)
    np.testing.assert_allclose(res.eigenvalues, _ref_eigs(SPD, 2, "largest")[0], rtol=1e-10)
    assert bool(res.converged) and int(res.num_matvecs) > 8
    res = eigsh(key, jnp.asarray(SPD), None, 2, basis_size=8, tol=1e-10, max_matvecs=5)
    assert int(res.num_matvecs) == 5 and not bool(res.converged)
    assert np.all(np.isfinite(res.eigenvalues))


def test_eigsh_errors(key):
    a = jnp.asarray(SPD)
    fn = "jaxla.linalg.eigsh"
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `k`=41 exceeds the dimension n=40")):
        eigsh(key, a, None, 41)
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `k`=21 exceeds half the dimension n // 2 (which='both_ends')=20")):
        eigsh(key, a, None, 21, which="both_ends")
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `which` must be one of 'largest', 'smallest', 'both_ends', got 'LM'")):
        eigsh(key, a, None, 2, which="LM")
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `criterion` must be one of 'residual', 'eigenvalue', got 'gap'")):
        eigsh(key, a, None, 2, criterion="gap")
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `k` must be >= 1, got 0")):
        eigsh(key, a, None, 0)
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `max_matvecs` must be >= 3, got 2")):
        eigsh(key, a, None, 3, max_matvecs=2)
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `basis_size`=41 exceeds the dimension n=40")):
        eigsh(key, a, None, 3, basis_size=41)
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `v0` must have the structure and shapes of `x0_like` (shape (40,)), got "
            "shape (4,)")):
        eigsh(key, a, None, 3, v0=jnp.ones(4))
    # non-square matvec: callable and dense
    b = jnp.ones((5, 4))
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `matvec` must map vectors like `x0_like` (shape (4,)) to the same structure "
            "and shapes (a square operator), got shape (5,)")):
        eigsh(key, lambda v: b @ v, jnp.zeros(4), 1)
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `matvec` must be a square matrix (n, n), got shape (5, 4)")):
        eigsh(key, b, None, 1)
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `x0_like` must be a vector of shape (40,) to match `matvec` of shape "
            "(40, 40), got shape (39,)")):
        eigsh(key, a, jnp.zeros(39), 1)
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `x0_like` must give the structure of the vectors when `matvec` is a "
            "callable, got None")):
        eigsh(key, lambda v: v, None, 1)
    with pytest.raises(TypeError, match=re.escape(
            f"{fn}: `matvec` must be a callable v -> A v, a square matrix (n, n) or a "
            "LinearOperator, got str")):
        eigsh(key, "a", None, 1)
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `matvec` must be a square operator (n, n), got shape (5, 4)")):
        eigsh(key, aslinearoperator(b), None, 1)
    with pytest.raises(TypeError, match=re.escape(
            f"{fn}: `x0_like` must have real floating dtype(s), got dtype int32")):
        eigsh(key, lambda v: v, jnp.zeros(4, jnp.int32), 1)
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `matvec` contains 1 NaN or Inf value(s)")):
        eigsh(key, a.at[0, 0].set(jnp.nan), None, 1)
    # structure mismatch of a pytree operator
    with pytest.raises(ValueError, match="`matvec` must map vectors like `x0_like`"):
        eigsh(key, lambda t: {"w": t["w"]}, {"w": jnp.zeros(3), "b": jnp.zeros(2)}, 1)


def test_eigsh_static_errors_raise_under_jit(key):
    with pytest.raises(ValueError, match="`k`=41 exceeds the dimension n=40"):
        jax.jit(lambda m: eigsh(key, m, None, 41))(jnp.asarray(SPD))
    with pytest.raises(ValueError, match="to the same structure and shapes"):
        jax.jit(lambda v: eigsh(key, lambda x: jnp.concatenate([x, x]), v, 1))(jnp.zeros(3))


def test_non_finite_operator_is_reported(key):
    with pytest.raises(ValueError, match=re.escape(
            "jaxla.linalg.power_iteration: `matvec` must produce finite values, got NaN or Inf "
            "in the eigenpair")):
        power_iteration(key, lambda v: v * jnp.nan, jnp.zeros(5), num_iters=3)
    # under jit: the flag is false and checkify raises the same message
    f = jax.jit(lambda m: power_iteration(key, lambda v: m @ v, jnp.zeros(5), num_iters=3))
    bad = jnp.full((5, 5), jnp.nan)
    assert not bool(f(bad).converged)
    err, _ = checkify.checkify(f)(bad)
    with pytest.raises(checkify.JaxRuntimeError, match=re.escape(
            "jaxla.linalg.power_iteration: `matvec` must produce finite values, got NaN or Inf "
            "in the eigenpair")):
        err.throw()
    err, _ = checkify.checkify(f)(jnp.eye(5))
    err.throw()  # no error on a finite operator


# ---------------------------------------------------------------------------------------------
# power iteration


def test_power_iteration_matches_dominant_eigenpair(key):
    a = jnp.asarray(SPD)
    res = power_iteration(key, a, None, num_iters=500, tol=1e-10)
    assert isinstance(res, PowerIterationResult)
    w, u = np.linalg.eigh(SPD)
    np.testing.assert_allclose(res.eigenvalue, w[-1], rtol=1e-9)
    np.testing.assert_allclose(res.eigenvector, _canonical_rows(u[:, -1:].T)[0], atol=1e-4)
    true = _true_residuals(SPD, res.eigenvalue[None], np.asarray(res.eigenvector)[None])
    np.testing.assert_allclose(res.residual_norm, true[0], rtol=1e-8, atol=1e-14)
    assert bool(res.converged) and 1 <= int(res.num_matvecs) <= 500
    batched = jax.vmap(lambda k: power_iteration(k, a, None, num_iters=500, tol=1e-10))(
        jax.random.split(key, 3))
    assert batched.eigenvector.shape == (3, N) and batched.converged.shape == (3,)
    np.testing.assert_allclose(batched.eigenvalue, np.full(3, w[-1]), rtol=1e-9)


def test_power_iteration_finds_largest_magnitude_negative_eigenvalue(key):
    d = np.diag(np.r_[-5.0, np.linspace(-1.0, 2.0, 9)])
    res = power_iteration(key, jnp.asarray(d), None, num_iters=500, tol=1e-10)
    np.testing.assert_allclose(res.eigenvalue, -5.0, rtol=1e-9)


def test_power_iteration_budget_pytree_and_float32(key):
    params = {"a": jnp.zeros(3, jnp.float32), "b": jnp.zeros((2, 2), jnp.float32)}
    d = {"a": jnp.array([1.0, 2.0, 3.0], jnp.float32), "b": jnp.full((2, 2), 0.5, jnp.float32)}
    res = power_iteration(key, lambda t: jax.tree.map(jnp.multiply, d, t), params, num_iters=3,
                          tol=0.0)
    assert int(res.num_matvecs) == 3 and not bool(res.converged)
    assert res.eigenvector["b"].shape == (2, 2) and res.eigenvalue.dtype == jnp.float32
    res = power_iteration(key, lambda t: jax.tree.map(jnp.multiply, d, t), params,
                          num_iters=200, tol=1e-6)
    assert bool(res.converged)
    np.testing.assert_allclose(res.eigenvalue, 3.0, rtol=1e-5)
    # a small relative change of the eigenvalue leaves an eigenvector error ~ sqrt(tol)
    np.testing.assert_allclose(res.eigenvector["a"], [0.0, 0.0, 1.0], atol=1e-2)
    flat = np.concatenate([np.asarray(res.eigenvector["a"]), np.ravel(res.eigenvector["b"])])
    dflat = np.concatenate([np.asarray(d["a"]), np.ravel(d["b"])])
    true = np.linalg.norm(dflat * flat - float(res.eigenvalue) * flat)
    np.testing.assert_allclose(res.residual_norm, true, rtol=1e-3, atol=1e-6)


def test_linear_operator_input(key):
    op = aslinearoperator(jnp.asarray(SPD))
    res = power_iteration(key, op, None, num_iters=500, tol=1e-10)
    np.testing.assert_allclose(res.eigenvalue, np.linalg.eigvalsh(SPD)[-1], rtol=1e-9)
    assert res.eigenvector.shape == (N,)
    with pytest.raises(ValueError, match=re.escape(
            "jaxla.linalg.power_iteration: `x0_like` must be a vector of shape (40,) to match "
            "`matvec` of shape (40, 40), got shape (3,)")):
        power_iteration(key, op, jnp.zeros(3))


def test_power_iteration_float16_is_computed_in_float32_and_returned_in_float16(key):
    a = jnp.asarray(np.diag(np.linspace(1.0, 2.0, 8)), jnp.float16)
    res = power_iteration(key, a, None, num_iters=500, tol=1e-4)
    assert res.eigenvalue.dtype == jnp.float16 and res.eigenvector.dtype == jnp.float16
    np.testing.assert_allclose(np.asarray(res.eigenvalue, np.float64), 2.0, rtol=1e-3)


def test_power_iteration_errors(key):
    fn = "jaxla.linalg.power_iteration"
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `num_iters` must be >= 1, got 0")):
        power_iteration(key, jnp.eye(3), None, num_iters=0)
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `tol` must be >= 0 and finite")):
        power_iteration(key, jnp.eye(3), None, tol=-1.0)


# ---------------------------------------------------------------------------------------------
# Lanczos


def _tridiag(alphas, betas):
    return np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)


@pytest.mark.parametrize("dtype, tol", [(jnp.float64, 1e-12), (jnp.float32, 2e-5)])
def test_lanczos_relation_orthogonality_and_plain_recurrence(dtype, tol):
    a = jnp.asarray(INDEF, dtype)
    v0 = jnp.asarray(np.random.default_rng(0).standard_normal(N), dtype)
    m = 25
    res = lanczos(a, v0, m)
    assert isinstance(res, LanczosResult)
    assert res.alphas.shape == (m,) and res.betas.shape == (m - 1,)
    assert res.basis.shape == (m, N) and res.remainder.shape == (N,)
    assert res.alphas.dtype == dtype and res.basis.dtype == dtype
    assert int(res.num_matvecs) == m and not bool(res.breakdown)
    q = np.asarray(res.basis, np.float64)
    t = _tridiag(np.asarray(res.alphas, np.float64), np.asarray(res.betas, np.float64))
    a64 = np.asarray(a, np.float64)
    e_m = np.zeros(m)
    e_m[-1] = 1.0
    lhs = a64 @ q.T
    rhs = q.T @ t + np.outer(np.asarray(res.remainder, np.float64), e_m)
    scale = np.abs(np.linalg.eigvalsh(a64)).max()
    assert np.abs(lhs - rhs).max() <= tol * scale
    np.testing.assert_allclose(q @ q.T, np.eye(m), atol=tol)
    np.testing.assert_allclose(q[0], np.asarray(v0) / np.linalg.norm(np.asarray(v0)), atol=tol)
    # the extreme Ritz values approximate the extreme eigenvalues
    ritz = np.linalg.eigvalsh(t)
    w = np.linalg.eigvalsh(a64)
    np.testing.assert_allclose([ritz[0], ritz[-1]], [w[0], w[-1]], rtol=1e-3)
    if dtype == jnp.float64:
        # the plain three-term recurrence agrees until orthogonality is lost
        plain = lanczos(a, v0, m, reortho="none")
        np.testing.assert_allclose(plain.alphas[:6], res.alphas[:6], rtol=1e-8)
        np.testing.assert_allclose(plain.betas[:6], res.betas[:6], rtol=1e-8)
        q_plain = np.asarray(plain.basis)
        assert np.abs(q_plain @ q_plain.T - np.eye(m)).max() > 1e3 * tol


@given(st.lists(st.floats(-5.0, 5.0, allow_nan=False), min_size=36, max_size=36),
       st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=6, max_size=6))
def test_lanczos_basis_is_orthonormal_and_tridiagonalizes(entries, start):
    g = np.asarray(entries).reshape(6, 6)
    a = g + g.T
    v0 = np.asarray(start) + np.array([1.0, 0, 0, 0, 0, 0])  # nonzero
    res = lanczos(jnp.asarray(a), jnp.asarray(v0), 4)
    q = np.asarray(res.basis)
    assert np.all(np.isfinite(q)) and np.all(np.isfinite(res.alphas))
    used = int(res.num_matvecs)
    scale = max(1.0, np.abs(a).max())
    np.testing.assert_allclose(q[:used] @ q[:used].T, np.eye(used), atol=1e-10)
    t = _tridiag(np.asarray(res.alphas), np.asarray(res.betas))
    np.testing.assert_allclose(q @ a @ q.T, t, atol=1e-9 * scale)


def test_lanczos_breakdown_is_clean():
    # 3 distinct eigenvalues: the Krylov space of any vector has dimension 3
    a = jnp.asarray(np.diag(np.repeat([1.0, 2.0, 5.0], 4)))
    res = lanczos(a, jnp.ones(12), 8)
    assert bool(res.breakdown) and int(res.num_matvecs) == 3
    assert np.all(np.isfinite(res.alphas)) and np.all(np.isfinite(res.basis))
    np.testing.assert_allclose(np.linalg.eigvalsh(_tridiag(res.alphas[:3], res.betas[:2])),
                               [1.0, 2.0, 5.0], atol=1e-12)
    np.testing.assert_array_equal(res.alphas[3:], 0.0)
    np.testing.assert_array_equal(res.betas[2:], 0.0)
    np.testing.assert_array_equal(res.basis[3:], 0.0)
    np.testing.assert_allclose(res.remainder, 0.0, atol=1e-12)


def test_lanczos_pytree_jit_vmap_and_grad():
    a = jnp.asarray(_sym(np.random.default_rng(2), np.arange(1.0, 6.0)))

    def matvec(t):
        flat = jnp.concatenate([t["x"], t["y"]])
        out = a @ flat
        return {"x": out[:3], "y": out[3:]}

    v0 = {"x": jnp.ones(3), "y": jnp.arange(2.0)}
    res = lanczos(matvec, v0, 4)
    assert res.basis["x"].shape == (4, 3) and res.basis["y"].shape == (4, 2)
    # jit and vmap over start vectors of the dense operator; the pytree run is the first row
    starts = jnp.stack([jnp.concatenate([v0["x"], v0["y"]]), jnp.ones(5)])
    batched = jax.jit(jax.vmap(lambda v: lanczos(a, v, 4)))(starts)
    assert batched.alphas.shape == (2, 4) and batched.basis.shape == (2, 4, 5)
    np.testing.assert_allclose(batched.alphas[0], res.alphas, rtol=1e-12)
    np.testing.assert_allclose(batched.basis[0, :, :3], res.basis["x"], atol=1e-12)
    t = _tridiag(np.asarray(batched.alphas[1]), np.asarray(batched.betas[1]))
    q = np.asarray(batched.basis[1])
    np.testing.assert_allclose(q @ np.asarray(a) @ q.T, t, atol=1e-12)

    # reverse-mode gradient with respect to the matrix the operator closes over
    v = jnp.asarray(np.random.default_rng(4).standard_normal(5))

    def f(b):
        sym = (b + b.T) / 2
        res = lanczos(lambda x: sym @ x, v, 3)
        return jnp.sum(res.alphas) + jnp.sum(res.betas**2)

    check_grads(jax.jit(f), (a,), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)


def test_lanczos_errors():
    fn = "jaxla.linalg.lanczos"
    a = jnp.eye(4)
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `num_matvecs`=5 exceeds the dimension n=4")):
        lanczos(a, jnp.ones(4), 5)
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `num_matvecs` must be >= 1, got 0")):
        lanczos(a, jnp.ones(4), 0)
    with pytest.raises(TypeError, match=re.escape(f"{fn}: `num_matvecs` must be an int, got 2.5")):
        lanczos(a, jnp.ones(4), 2.5)
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `reortho` must be one of 'full', 'none', got 'partial'")):
        lanczos(a, jnp.ones(4), 2, reortho="partial")
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `v0` must be a nonzero vector, got all zeros")):
        lanczos(a, jnp.zeros(4), 2)
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `v0` contains 1 NaN or Inf value(s)")):
        lanczos(a, jnp.array([1.0, jnp.inf, 0.0, 0.0]), 2)


# ---------------------------------------------------------------------------------------------
# Conjugate gradients

CG_A = SPD + 0.0  # condition number 100


def test_cg_matches_numpy_solve():
    b = np.random.default_rng(0).standard_normal(N)
    res = conjugate_gradient(jnp.asarray(CG_A), jnp.asarray(b), tol=1e-12)
    assert isinstance(res, CGResult)
    np.testing.assert_allclose(res.x, np.linalg.solve(CG_A, b), rtol=1e-9)
    true = np.linalg.norm(b - CG_A @ np.asarray(res.x))
    np.testing.assert_allclose(res.residual_norm, true, rtol=1e-3, atol=1e-13)
    assert res.residual_norm <= 1e-12 * np.linalg.norm(b)
    assert bool(res.converged) and 1 <= int(res.num_iters) <= N + 10


def test_cg_float32_preconditioner_and_initial_guess():
    rng = np.random.default_rng(1)
    scale = np.logspace(0, 3, N)
    a = (CG_A * np.sqrt(scale)[:, None] * np.sqrt(scale)[None, :]).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    ref = np.linalg.solve(a.astype(np.float64), b.astype(np.float64))
    plain = conjugate_gradient(jnp.asarray(a), jnp.asarray(b), tol=1e-5)
    jacobi = jnp.asarray(np.diag(1.0 / np.diag(a)))
    pre = conjugate_gradient(jnp.asarray(a), jnp.asarray(b), tol=1e-5, preconditioner=jacobi)
    assert pre.x.dtype == jnp.float32 and pre.residual_norm.dtype == jnp.float32
    assert bool(pre.converged)
    assert int(pre.num_iters) < int(plain.num_iters)
    np.testing.assert_allclose(pre.x, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())
    # a callable preconditioner gives the same iterates; an exact guess needs no iteration
    pre_fn = conjugate_gradient(jnp.asarray(a), jnp.asarray(b), tol=1e-5,
                                preconditioner=lambda r: jacobi @ r)
    assert int(pre_fn.num_iters) == int(pre.num_iters)
    warm = conjugate_gradient(jnp.asarray(CG_A), jnp.ones(N), x0=jnp.asarray(
        np.linalg.solve(CG_A, np.ones(N))), tol=1e-8)
    assert int(warm.num_iters) == 0 and bool(warm.converged)


def test_cg_pytree_budget_and_indefinite():
    b = {"u": jnp.ones(3), "v": jnp.ones((2, 2))}
    d = {"u": jnp.array([1.0, 2.0, 4.0]), "v": jnp.full((2, 2), 8.0)}
    res = conjugate_gradient(lambda t: jax.tree.map(jnp.multiply, d, t), b, tol=1e-12)
    np.testing.assert_allclose(res.x["u"], [1.0, 0.5, 0.25], rtol=1e-12)
    np.testing.assert_allclose(res.x["v"], np.full((2, 2), 0.125), rtol=1e-12)
    short = conjugate_gradient(jnp.asarray(CG_A), jnp.ones(N), max_iters=2, tol=1e-12)
    assert int(short.num_iters) == 2 and not bool(short.converged)
    indef = conjugate_gradient(jnp.asarray(np.diag([1.0, -1.0])), jnp.ones(2), tol=1e-12)
    assert not bool(indef.converged) and np.all(np.isfinite(indef.x))
    zero = conjugate_gradient(jnp.asarray(CG_A), jnp.zeros(N))
    assert bool(zero.converged) and int(zero.num_iters) == 0
    np.testing.assert_array_equal(zero.x, 0.0)


def test_cg_jit_vmap_and_grad():
    a = jnp.asarray(_sym(np.random.default_rng(6), np.linspace(1.0, 4.0, 5)))
    xs = jax.jit(jax.vmap(lambda r: conjugate_gradient(a, r, tol=1e-12).x))(jnp.eye(5))
    np.testing.assert_allclose(xs, np.linalg.inv(a), rtol=1e-9, atol=1e-12)
    b = jnp.arange(1.0, 6.0)

    def f(m, r):
        sym = (m + m.T) / 2
        return conjugate_gradient(lambda v: sym @ v, r, tol=1e-13).x

    check_grads(jax.jit(f), (a, b), order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


def test_cg_errors():
    fn = "jaxla.linalg.conjugate_gradient"
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `b` contains 1 NaN or Inf value(s)")):
        conjugate_gradient(jnp.eye(2), jnp.array([1.0, jnp.nan]))
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `x0` must have the structure and shapes of `b` (shape (2,)), got shape (3,)")):
        conjugate_gradient(jnp.eye(2), jnp.ones(2), x0=jnp.ones(3))
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `preconditioner` must have shape (2, 2), got shape (3, 3)")):
        conjugate_gradient(jnp.eye(2), jnp.ones(2), preconditioner=jnp.eye(3))
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `b` must be a vector of shape (2,) to match `matvec` of shape (2, 2), got "
            "shape (2, 1)")):
        conjugate_gradient(jnp.eye(2), jnp.ones((2, 1)))
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `max_iters` must be >= 0, got -1")):
        conjugate_gradient(jnp.eye(2), jnp.ones(2), max_iters=-1)


# ---------------------------------------------------------------------------------------------
# Trace estimators

NUM_SEEDS = 200
BUDGET = 30
_ESTIMATORS = {
    "hutchinson-rademacher": functools.partial(hutchinson_trace, distribution="rademacher"),
    "hutchinson-gaussian": functools.partial(hutchinson_trace, distribution="gaussian"),
    "hutchpp-rademacher": functools.partial(hutchpp_trace, distribution="rademacher"),
}


@jax.jit
def _run_estimators(key, a):
    keys = jax.random.split(key, NUM_SEEDS)
    return {name: jax.vmap(lambda k, f=f: f(k, a, None, BUDGET))(keys)
            for name, f in _ESTIMATORS.items()}


@functools.lru_cache
def _estimates_over_seeds(name):
    """Every estimator at the same budget over NUM_SEEDS seeds (one compiled program)."""
    mat = {"indefinite": INDEF, "decaying": DECAY}[name]
    return _run_estimators(jax.random.key(42), jnp.asarray(mat))


@pytest.mark.parametrize("name", ["indefinite", "decaying"])
@pytest.mark.parametrize("method", list(_ESTIMATORS))
def test_trace_estimators_are_unbiased_with_calibrated_std_errors(name, method):
    exact = np.trace({"indefinite": INDEF, "decaying": DECAY}[name])
    est = _estimates_over_seeds(name)[method]
    assert isinstance(est, TraceEstimate)
    assert est.estimate.shape == (NUM_SEEDS,) and est.estimate.dtype == jnp.float64
    np.testing.assert_array_equal(est.num_matvecs, BUDGET)
    values, se = np.asarray(est.estimate), np.asarray(est.std_error)
    # unbiased: the mean over seeds is within 3 standard errors of the exact trace
    assert abs(values.mean() - exact) <= 3 * values.std(ddof=1) / np.sqrt(NUM_SEEDS)
    # the reported standard errors cover the truth about as often as they should
    assert np.mean(np.abs(values - exact) <= 3 * se) >= 0.9
    if method.startswith("hutchinson"):  # std errors match the spread of the estimates
        assert 0.7 <= np.sqrt(np.mean(se**2)) / values.std(ddof=1) <= 1.3


def test_hutchpp_has_lower_variance_than_hutchinson_on_a_decaying_spectrum():
    exact = np.trace(DECAY)
    est = _estimates_over_seeds("decaying")

    def rms_error(name):
        return np.sqrt(np.mean((np.asarray(est[name].estimate) - exact) ** 2))

    assert rms_error("hutchpp-rademacher") < 0.2 * rms_error("hutchinson-rademacher")
    assert rms_error("hutchpp-rademacher") < 0.2 * rms_error("hutchinson-gaussian")


def test_hutchpp_is_exact_for_low_rank_and_float32(key):
    rng = np.random.default_rng(7)
    u = rng.standard_normal((50, 4))
    a = (u @ u.T).astype(np.float32)
    est = hutchpp_trace(key, jnp.asarray(a), None, 18)
    assert est.estimate.dtype == jnp.float32
    np.testing.assert_allclose(est.estimate, np.trace(a.astype(np.float64)), rtol=1e-5)
    assert est.std_error <= 1e-4 * np.trace(a)


def test_trace_estimators_on_pytrees_and_batches(key):
    params = {"a": jnp.zeros(4), "b": jnp.zeros((2, 3))}
    d = {"a": jnp.arange(1.0, 5.0), "b": jnp.full((2, 3), 2.0)}

    def mv(t):
        return jax.tree.map(jnp.multiply, d, t)

    # a diagonal operator: Rademacher probes give the exact trace
    h = hutchinson_trace(key, mv, params, 6, batch_size=4)
    np.testing.assert_allclose(h.estimate, 22.0, rtol=1e-12)
    np.testing.assert_allclose(h.std_error, 0.0, atol=1e-12)
    # Hutch++ with num_matvecs // 3 >= n: the sketch spans the space, the estimate is exact
    hpp = hutchpp_trace(key, mv, params, 30, batch_size=4)
    np.testing.assert_allclose(hpp.estimate, 22.0, rtol=1e-10)


@given(st.lists(st.floats(-10.0, 10.0, allow_nan=False), min_size=8, max_size=8))
def test_hutchinson_is_exact_on_diagonal_matrices(diagonal):
    d = jnp.asarray(diagonal, jnp.float64)
    est = hutchinson_trace(jax.random.key(1), jnp.diag(d), None, 3)
    np.testing.assert_allclose(est.estimate, np.sum(diagonal), atol=1e-9)


def test_trace_estimator_errors(key):
    a = jnp.eye(3)
    with pytest.raises(ValueError, match=re.escape(
            "jaxla.linalg.hutchinson_trace: `num_matvecs` must be >= 2, got 1")):
        hutchinson_trace(key, a, None, 1)
    with pytest.raises(ValueError, match=re.escape(
            "jaxla.linalg.hutchinson_trace: `distribution` must be one of 'rademacher', "
            "'gaussian', got 'uniform'")):
        hutchinson_trace(key, a, None, 4, distribution="uniform")
    with pytest.raises(ValueError, match=re.escape(
            "jaxla.linalg.hutchpp_trace: `num_matvecs` must be >= 4, got 3")):
        hutchpp_trace(key, a, None, 3)
    with pytest.raises(ValueError, match=re.escape(
            "jaxla.linalg.hutchpp_trace: `num_matvecs`=12 exceeds 3 * n + 2")):
        hutchpp_trace(key, a, None, 12)
    with pytest.raises(ValueError, match=re.escape(
            "jaxla.linalg.hutchinson_trace: `batch_size` must be >= 1, got 0")):
        hutchinson_trace(key, a, None, 4, batch_size=0)


# ---------------------------------------------------------------------------------------------
# Spectral density


def test_spectral_density_normalization_moments_and_smoothing(key):
    a = jnp.asarray(INDEF)
    p, m = 30, 15
    sd = spectral_density(key, a, None, num_probes=p, num_matvecs=m)
    assert isinstance(sd, SpectralDensity)
    assert sd.nodes.shape == (p, m) and sd.weights.shape == (p, m)
    assert sd.grid.shape == (256,) and sd.density.shape == (256,)
    assert int(sd.num_matvecs) == p * m
    grid, density = np.asarray(sd.grid), np.asarray(sd.density)
    # integrates to 1, nonnegative, weights are probability vectors, nodes inside the spectrum
    np.testing.assert_allclose(np.trapezoid(density, grid), 1.0, rtol=1e-10)
    assert np.all(density >= 0) and np.all(np.diff(grid) > 0)
    np.testing.assert_allclose(np.sum(sd.weights, axis=1), 1.0, rtol=1e-10)
    w = np.linalg.eigvalsh(INDEF)
    assert np.all(sd.nodes >= w[0] - 1e-9) and np.all(sd.nodes <= w[-1] + 1e-9)
    # first and second moments estimate trace(A) and trace(A^2) (stochastically)
    for power, exact in [(1, np.trace(INDEF)), (2, np.trace(INDEF @ INDEF))]:
        per_probe = N * np.sum(np.asarray(sd.weights) * np.asarray(sd.nodes) ** power, axis=1)
        se = per_probe.std(ddof=1) / np.sqrt(p)
        assert abs(per_probe.mean() - exact) <= 4 * se
    # the extreme nodes are the extreme eigenvalues (Lanczos finds them quickly)
    np.testing.assert_allclose([sd.nodes.min(), sd.nodes.max()], [w[0], w[-1]], rtol=1e-6)
    # the density is the normalized Gaussian smoothing of the quadrature rules (numpy reference)
    sigma = (sd.nodes.max() - sd.nodes.min()) / 100
    z = (grid[:, None, None] - np.asarray(sd.nodes)[None]) / sigma
    ref = np.sum(np.exp(-0.5 * z**2) * np.asarray(sd.weights)[None], axis=(1, 2))
    ref = ref / np.trapezoid(ref, grid)
    np.testing.assert_allclose(density, ref, rtol=1e-8, atol=1e-12)
    # under jit
    jitted = jax.jit(
        lambda k, mat: spectral_density(k, mat, None, num_probes=p, num_matvecs=m))(key, a)
    np.testing.assert_allclose(jitted.density, sd.density, rtol=1e-10, atol=1e-14)


def test_spectral_density_with_full_krylov_space_is_exact(key):
    # with m = n, each probe's nodes are the eigenvalues of A
    a = _sym(np.random.default_rng(9), np.linspace(-1.0, 1.0, 8))
    sd = spectral_density(key, jnp.asarray(a), None, num_probes=2, num_matvecs=8,
                          grid=jnp.linspace(-2.0, 2.0, 401), sigma=0.05)
    np.testing.assert_allclose(sd.nodes, np.tile(np.linspace(-1.0, 1.0, 8), (2, 1)), atol=1e-9)
    np.testing.assert_allclose(sd.grid, np.linspace(-2.0, 2.0, 401), atol=1e-12)
    np.testing.assert_allclose(np.trapezoid(sd.density, sd.grid), 1.0, rtol=1e-10)
    batched = jax.vmap(lambda k: spectral_density(k, jnp.asarray(a), None, num_probes=2,
                                                  num_matvecs=8, grid=64))(
        jax.random.split(key, 3))
    assert batched.nodes.shape == (3, 2, 8) and batched.density.shape == (3, 64)
    np.testing.assert_allclose(np.trapezoid(batched.density, batched.grid, axis=-1), 1.0,
                               rtol=1e-10)


def test_spectral_density_breakdown_pytree_and_float32(key):
    # 3 distinct eigenvalues: Lanczos breaks down after 3 steps
    params = {"a": jnp.zeros(6, jnp.float32), "b": jnp.zeros((2, 3), jnp.float32)}
    d = {"a": jnp.array([1.0, 1.0, 2.0, 2.0, 5.0, 5.0], jnp.float32),
         "b": jnp.full((2, 3), 2.0, jnp.float32)}

    def mv(t):
        return jax.tree.map(jnp.multiply, d, t)

    sd = spectral_density(key, mv, params, num_probes=3, num_matvecs=6, grid=64)
    assert sd.density.dtype == jnp.float32 and sd.grid.shape == (64,)
    assert np.all(np.isfinite(sd.density)) and np.all(np.isfinite(sd.nodes))
    assert int(sd.num_matvecs) == 9  # 3 useful products per probe
    np.testing.assert_allclose(np.trapezoid(sd.density, sd.grid), 1.0, rtol=1e-5)
    # Rademacher probes: n * (first moment) is exact for a diagonal operator
    np.testing.assert_allclose(12 * np.sum(sd.weights * sd.nodes, axis=1), 28.0, rtol=1e-5)


def test_spectral_density_errors(key):
    fn = "jaxla.linalg.spectral_density"
    a = jnp.eye(4)
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `num_matvecs`=5 exceeds the dimension n=4")):
        spectral_density(key, a, None, num_probes=2, num_matvecs=5)
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `num_probes` must be >= 1, got 0")):
        spectral_density(key, a, None, num_probes=0, num_matvecs=2)
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `sigma` must be > 0 and finite")):
        spectral_density(key, a, None, num_probes=2, num_matvecs=2, sigma=0.0)
    with pytest.raises(ValueError, match=re.escape(
            f"{fn}: `grid` must be 1-D (g,), got shape (2, 2)")):
        spectral_density(key, a, None, num_probes=2, num_matvecs=2, grid=jnp.ones((2, 2)))
    with pytest.raises(ValueError, match=re.escape(f"{fn}: `grid` must be >= 2, got 1")):
        spectral_density(key, a, None, num_probes=2, num_matvecs=2, grid=1)


# ---------------------------------------------------------------------------------------------
# Acceptance: top-5 of a 2000 x 2000 SPD matrix in float32


@pytest.mark.slow
def test_acceptance_eigsh_top5_of_2000x2000_spd_float32(key):
    n = 2000
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, n)).astype(np.float32)
    a = (x @ x.T / n).astype(np.float32)
    a64 = a.astype(np.float64)
    w = np.linalg.eigvalsh(a64)[-5:]
    res = eigsh(key, jnp.asarray(a), None, 5)
    assert res.eigenvalues.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(res.eigenvalues, np.float64), w, rtol=1e-4)
    assert bool(res.converged)
    true = _true_residuals(a64, res.eigenvalues, res.eigenvectors)
    assert np.all(true <= 1e-5 * w[-1])
    np.testing.assert_allclose(res.residual_norms, true, atol=1e-5 * w[-1])
