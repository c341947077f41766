"""Krylov eigensolvers: jaxla.linalg.eigsh against scipy.sparse.linalg.eigsh and power iteration.

Cases (float32 data on both sides; references in float64):

- ``eigsh`` on a dense 2000 x 2000 SPD matrix ``X X^T / n`` (``X`` standard Gaussian, a
  Marchenko-Pastur spectrum whose top eigenvalues are close together), top ``k = 5`` and
  ``k = 10``, against ``scipy.sparse.linalg.eigsh(which='LA')`` (ARPACK) on a ``LinearOperator``
  that counts its calls. Both sides stop at the tolerance ``1e-6`` (jaxla: every residual
  ``<= 1e-6 ||A||``; ARPACK: ``<= 1e-6 |lambda|``). Reference: ``numpy.linalg.eigvalsh`` in
  float64.
- ``eigsh`` on a larger sparse operator: the 2-D Anderson model (5-point Laplacian plus a random
  diagonal potential in [0, 4]) on a 150 x 150 grid, n = 22500, top ``k = 10``. jaxla applies it
  matrix-free (a stencil in JAX), scipy as a CSR matrix. Reference: ARPACK in float64 with
  ``tol=1e-12``.
- ``top eigenvalue, gap 0.99``: a dense 2000 x 2000 symmetric matrix with eigenvalues 1, 0.99 and
  2000 - 2 eigenvalues spread uniformly over [0, 0.98] (random eigenvectors). The number of
  matrix-vector products each method needs to reach 1e-3 relative accuracy of the top eigenvalue
  is found by search over the budget (``eigsh(k=1, tol=0, max_matvecs=b)`` and
  ``power_iteration(tol=0, num_iters=b)``), for 10 random start vectors (keys 0-9): both
  counts depend on the start vector's components along the top eigenvectors. The medians are
  compared; the case then times both at the median budgets, and power iteration with
  PyHessian's stopping rule (relative change < 1e-3, at most 100 iterations) as a third side, to
  show what that rule returns.

Matrix-vector product counts are reported in each case's note (and printed while the suite runs).

Acceptance: ``eigsh`` reaches 1e-3 relative accuracy of the top eigenvalue with at most 1/5 of
the matrix-vector products power iteration needs (medians over the start vectors).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
import scipy.sparse.linalg

import jaxla.linalg as L
from benchmarks.harness import Anchor, Case, max_rel_error

SUITE = "krylov"

KEY = jax.random.key(0)
TOL = 1e-6
TARGET = 1e-3  # relative accuracy of the top eigenvalue for the gap case


def _say(message: str) -> None:
    print(f"    [krylov] {message}", file=sys.stderr, flush=True)


class _Counted:
    """A scipy LinearOperator around ``matvec`` that counts the products."""

    def __init__(self, n: int, matvec: Callable[[np.ndarray], np.ndarray], dtype):
        self.count = 0

        def mv(v):
            self.count += 1
            return matvec(np.ravel(v))

        self.op = scipy.sparse.linalg.LinearOperator((n, n), matvec=mv, dtype=dtype)


def _scipy_eigsh(matvec, n: int, k: int, dtype, v0: np.ndarray, tol: float):
    """ARPACK's top-k (algebraically largest) on a counting operator; returns (w, v, count)."""
    op = _Counted(n, matvec, dtype)
    w, v = scipy.sparse.linalg.eigsh(op.op, k=k, which="LA", tol=tol, v0=v0)
    return w, v, op.count


def _eig_accuracy(ref: np.ndarray):
    def acc(out) -> float:
        w = out.eigenvalues if hasattr(out, "eigenvalues") else np.sort(out[0])
        return max_rel_error(np.asarray(w, np.float64), ref)

    return acc


# ---------------------------------------------------------------------------------------------
# Dense SPD, top-k


def _wishart(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, n), dtype=np.float32)
    return (x @ x.T / np.float32(n)).astype(np.float32)


def dense_cases(n: int, ks: tuple[int, ...]) -> Iterator[Case]:
    a = _wishart(n)
    w_all = np.linalg.eigvalsh(a.astype(np.float64))
    v0 = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    for k in ks:
        ref = w_all[-k:]

        def jaxla_eigsh(m, k=k):
            return L.eigsh(KEY, m, None, k, tol=TOL)

        def scipy_side(m, k=k):
            return scipy.sparse.linalg.eigsh(
                scipy.sparse.linalg.aslinearoperator(m), k=k, which="LA", tol=TOL, v0=v0
            )

        res = jax.jit(jaxla_eigsh)(a)
        _, _, sp_count = _scipy_eigsh(lambda v: a @ v, n, k, np.float32, v0, TOL)
        note = (
            f"matrix-vector products: jaxla {int(res.num_matvecs)} "
            f"(converged={bool(res.converged)}, max reported residual "
            f"{float(np.max(res.residual_norms)):.1e}), scipy/ARPACK {sp_count}"
        )
        _say(f"eigsh {n}x{n} k={k}: {note}")
        yield Case(
            name="eigsh",
            size=f"{n}x{n} dense SPD, k={k}",
            label="jaxla.linalg.eigsh",
            fn=jaxla_eigsh,
            args=(a,),
            anchors=[Anchor("scipy.sparse.linalg.eigsh (ARPACK)", scipy_side, (a,))],
            accuracy=_eig_accuracy(ref),
            metric="max relative error of the top-k eigenvalues vs numpy.linalg.eigvalsh (float64)",
            note=note,
        )


# ---------------------------------------------------------------------------------------------
# Sparse operator: 2-D Anderson model


def _anderson(side: int, seed: int = 0):
    """(potential (side, side) float32, CSR matrix float32) of L + diag(potential)."""
    pot = np.random.default_rng(seed).uniform(0.0, 4.0, (side, side)).astype(np.float32)
    lap1 = scipy.sparse.diags([-np.ones(side - 1), 2 * np.ones(side), -np.ones(side - 1)],
                              [-1, 0, 1])
    eye = scipy.sparse.identity(side)
    lap = scipy.sparse.kron(lap1, eye) + scipy.sparse.kron(eye, lap1)
    mat = (lap + scipy.sparse.diags(pot.ravel())).astype(np.float32).tocsr()
    return pot, mat


def _stencil(v: jax.Array, pot: jax.Array) -> jax.Array:
    """(L + diag(pot)) v on a square grid with zero (Dirichlet) boundary values."""
    side = pot.shape[0]
    g = jnp.reshape(v, (side, side))
    p = jnp.pad(g, 1)
    out = 4 * g - p[:-2, 1:-1] - p[2:, 1:-1] - p[1:-1, :-2] - p[1:-1, 2:] + pot * g
    return jnp.ravel(out)


def sparse_case(side: int, k: int) -> Case:
    pot, mat = _anderson(side)
    n = side * side
    ref = np.sort(scipy.sparse.linalg.eigsh(mat.astype(np.float64), k=k, which="LA",
                                            tol=1e-12)[0])
    v0 = np.random.default_rng(1).standard_normal(n).astype(np.float32)

    def jaxla_eigsh(p):
        return L.eigsh(KEY, functools.partial(_stencil, pot=p), jnp.zeros(n, p.dtype), k, tol=TOL)

    def scipy_side(m):
        return scipy.sparse.linalg.eigsh(m, k=k, which="LA", tol=TOL, v0=v0)

    res = jax.jit(jaxla_eigsh)(pot)
    _, _, sp_count = _scipy_eigsh(mat.dot, n, k, np.float32, v0, TOL)
    note = (
        f"matrix-vector products: jaxla {int(res.num_matvecs)} (converged="
        f"{bool(res.converged)}, max reported residual {float(np.max(res.residual_norms)):.1e}),"
        f" scipy/ARPACK {sp_count}"
    )
    _say(f"eigsh Anderson {side}x{side} k={k}: {note}")
    return Case(
        name="eigsh (sparse operator)",
        size=f"n={n} (2-D Anderson {side}x{side}), k={k}",
        label="jaxla.linalg.eigsh (stencil matvec)",
        fn=jaxla_eigsh,
        args=(pot,),
        anchors=[Anchor("scipy.sparse.linalg.eigsh (ARPACK, CSR)", scipy_side, (mat,))],
        accuracy=_eig_accuracy(ref),
        metric="max relative error of the top-k eigenvalues vs ARPACK in float64 (tol 1e-12)",
        note=note,
    )


# ---------------------------------------------------------------------------------------------
# Gap 0.99: matrix-vector products to reach 1e-3 relative accuracy


def _gap_matrix(n: int, seed: int = 2) -> np.ndarray:
    lam = np.concatenate([[1.0, 0.99], np.linspace(0.0, 0.98, n - 2)])
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    q = q * np.sign(np.diag(r))
    a = (q * lam) @ q.T
    return ((a + a.T) / 2).astype(np.float32)


def _smallest_budget(error_at: Callable[[int], float], *, monotone: bool, hi: int) -> int | None:
    """Smallest budget b <= hi with error_at(b) <= TARGET.

    Linear scan, or, for a monotone error, doubling then bisection.
    """
    if not monotone:
        for b in range(1, hi + 1):
            if error_at(b) <= TARGET:
                return b
        return None
    lo, b = 0, 16  # error_at(lo) > TARGET by convention at 0
    while error_at(b) > TARGET:
        lo, b = b, 2 * b
        if b > hi:
            return None
    while b - lo > 1:
        mid = (lo + b) // 2
        if error_at(mid) <= TARGET:
            b = mid
        else:
            lo = mid
    return b


def gap_case(n: int, num_starts: int) -> Case:
    a = _gap_matrix(n)
    lam1 = float(np.linalg.eigvalsh(a.astype(np.float64))[-1])
    a_dev = jnp.asarray(a)

    # Both methods start from a random vector: the products they need depend on its components
    # along the top eigenvectors, so the search is repeated for several start vectors (keys) and
    # the medians are compared. Eager calls on a dense matrix reuse one compiled program for
    # every budget.
    b_eig, b_pow = [], []
    for seed in range(num_starts):
        key = jax.random.key(seed)

        def eig_err(b, key=key):
            res = L.eigsh(key, a_dev, None, 1, tol=0.0, max_matvecs=b)
            return abs(float(res.eigenvalues[0]) - lam1) / lam1

        def pow_err(b, key=key):
            res = L.power_iteration(key, a_dev, None, num_iters=b, tol=0.0)
            return abs(float(res.eigenvalue) - lam1) / lam1

        b_eig.append(_smallest_budget(eig_err, monotone=False, hi=400))
        # Rayleigh quotients of power iteration increase monotonically on this PSD matrix
        b_pow.append(_smallest_budget(pow_err, monotone=True, hi=20000))
    if None in b_eig or None in b_pow:
        note = f"a method did not reach {TARGET:g}: eigsh {b_eig}, power iteration {b_pow}"
        b_eig_run, b_pow_run = 400, 20000
    else:
        b_eig_run, b_pow_run = int(np.median(b_eig)), int(np.median(b_pow))
        ratio = float(np.median(b_pow) / np.median(b_eig))
        ratios = np.asarray(b_pow) / np.asarray(b_eig)
        verdict = "PASS" if ratio >= 5 else "FAIL"
        note = (
            f"matrix-vector products to reach {TARGET:g} relative accuracy of the top eigenvalue "
            f"(lambda2/lambda1 = 0.99), median over {num_starts} random start vectors: eigsh "
            f"{np.median(b_eig):g} (range {min(b_eig)}-{max(b_eig)}), power iteration "
            f"{np.median(b_pow):g} (range {min(b_pow)}-{max(b_pow)}); ratio of medians "
            f"{ratio:.1f}x (per start vector {ratios.min():.1f}x-{ratios.max():.1f}x); "
            f"acceptance (median eigsh <= 1/5 of power iteration): {verdict}."
        )
    pyhessian = L.power_iteration(KEY, a_dev, None, num_iters=100, tol=1e-3)
    ph_err = abs(float(pyhessian.eigenvalue) - lam1) / lam1
    note += (
        f" Power iteration with PyHessian's rule (relative change < 1e-3, <= 100 iterations) "
        f"stops after {int(pyhessian.num_matvecs)} products with relative error {ph_err:.1e} "
        f"(reported residual {float(pyhessian.residual_norm):.1e})."
    )
    _say(f"gap 0.99, n={n}: {note}")

    def jaxla_eigsh(m):
        return L.eigsh(KEY, m, None, 1, tol=0.0, max_matvecs=b_eig_run)

    def power(m):
        return L.power_iteration(KEY, m, None, num_iters=b_pow_run, tol=0.0)

    def power_pyhessian(m):
        return L.power_iteration(KEY, m, None, num_iters=100, tol=1e-3)

    def acc_eig(out):
        return abs(float(out.eigenvalues[0]) - lam1) / lam1

    def acc_pow(out):
        return abs(float(out.eigenvalue) - lam1) / lam1

    return Case(
        name="top eigenvalue, gap 0.99",
        size=f"{n}x{n} dense",
        label=f"jaxla.linalg.eigsh ({b_eig_run} products)",
        fn=jaxla_eigsh,
        args=(a,),
        anchors=[
            Anchor(f"jaxla.linalg.power_iteration ({b_pow_run} products)", power, (a,),
                   accuracy=acc_pow, jit=True),
            Anchor("power iteration, PyHessian rule", power_pyhessian, (a,), accuracy=acc_pow,
                   jit=True),
        ],
        accuracy=acc_eig,
        metric="relative error of the top eigenvalue vs numpy.linalg.eigvalsh (float64), for "
        "the first start vector (key 0) at the median budgets",
        note=note,
    )


def cases(quick: bool) -> Iterator[Case]:
    if quick:
        yield from dense_cases(200, (5,))
        yield sparse_case(30, 5)
        yield gap_case(300, 3)
        return
    yield from dense_cases(2000, (5, 10))
    yield sparse_case(150, 10)
    yield gap_case(2000, 10)
