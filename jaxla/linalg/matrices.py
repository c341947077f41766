"""Matrices: linear solves, inverses, pseudo-inverses, least squares, conditioning and rank.

Every function takes a single matrix (2-D, ``a`` of shape (m, n) or (n, n)); for batches of
matrices use ``jax.vmap``. Functions are pure and work under ``jax.jit``, ``jax.vmap`` and (where
differentiable) ``jax.grad``. Outputs keep the floating dtype of the inputs (the promoted dtype of
``a`` and ``b``); float16/bfloat16 inputs are computed in float32 and cast back. Matrix products
run at ``precision=HIGHEST``. Matrix norms live in :func:`jaxla.linalg.norm`.

Value errors: called eagerly, every function raises ``ValueError`` on NaN/Inf input, and
:func:`solve` and :func:`inv` raise on a matrix that is singular to working precision. Under
``jit`` they cannot raise; the singularity check is also expressed with
``jax.experimental.checkify.debug_check``, so ``checkify.checkify(jax.jit(solve))`` reports it.

Rank decisions (:func:`pinv`, :func:`lstsq`, :func:`matrix_rank`, :func:`jaxla.linalg.project`)
follow numpy: singular values ``s_i <= rcond * s_max`` count as zero, with the default
``rcond = max(m, n) * eps(dtype)``.

Dimension letters: ``m`` rows, ``n`` columns, ``k`` right-hand sides.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jax import lax
from jax.experimental import checkify
from jax.typing import ArrayLike

from jaxla import _checks
from jaxla._numerics import eps, matmul, upcast
from jaxla.linalg.vectors import _default_rtol, _scale_rows, _singular_values, _svd_parts, norm

__all__ = [
    "LstsqResult",
    "cond",
    "inv",
    "lstsq",
    "matrix_rank",
    "pinv",
    "solve",
]

_COND_PS = (None, 2, -2, "fro", "nuc", 1, -1, math.inf, -math.inf)


class LstsqResult(NamedTuple):
    """Result of :func:`lstsq` (the fields of ``numpy.linalg.lstsq``, always present)."""

    solution: jax.Array  # (n,) or (n, k): the minimum-norm least-squares solution
    residuals: jax.Array  # (1,) for b (m,), (k,) for b (m, k): squared 2-norms of b - a @ x
    rank: jax.Array  # () int32: number of singular values > rcond * s_max
    singular_values: jax.Array  # (min(m, n),) singular values of a, descending


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _matrix(a: ArrayLike, fn: str, *, square: bool = False) -> jax.Array:
    doc = "(n, n)" if square else "(m, n)"
    a = _checks.as_float_array(a, fn, "a", ndim=2, doc=doc)
    if square:
        _checks.check_square(a, fn, "a")
    if a.shape[0] == 0 or a.shape[1] == 0:
        _checks.fail(fn, f"`a` must have at least one row and one column, got shape {a.shape}")
    return a


def _rhs(b: ArrayLike, m: int, a_shape: tuple[int, ...], fn: str) -> jax.Array:
    b = _checks.as_float_array(b, fn, "b", ndim=(1, 2), doc="(m,) or (m, k)")
    if b.shape[0] != m:
        _checks.fail(
            fn,
            f"`b` must have {m} rows to match `a` of shape {tuple(a_shape)}, "
            f"got shape {tuple(b.shape)}",
        )
    return b


def _rtol(rcond: Any, a: jax.Array) -> jax.Array:
    """The relative cut-off as an array of ``a``'s dtype (numpy's default when None)."""
    if rcond is None:
        return jnp.asarray(_default_rtol(tuple(a.shape), a.dtype), a.dtype)
    return jnp.asarray(rcond, a.dtype)


# --------------------------------------------------------------------------------------------
# LU solves with a singularity check
# --------------------------------------------------------------------------------------------


def _lu_solve(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Solve ``a x = b`` by LU with partial pivoting; returns ``x`` and the LU factor.

    Differentiable in ``a`` and ``b`` by implicit differentiation (``lax.custom_linear_solve``).
    """
    lu, piv = jsl.lu_factor(lax.stop_gradient(a))
    x = lax.custom_linear_solve(
        lambda v: matmul(a, v),
        b,
        solve=lambda _, v: jsl.lu_solve((lu, piv), v),
        transpose_solve=lambda _, v: jsl.lu_solve((lu, piv), v, trans=1),
    )
    return x, lu


@jax.jit
def _solve_checked(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``x = a^{-1} b`` in the promoted dtype, the LU pivot ratio and whether ``x`` is finite."""
    dtype = jnp.result_type(a, b)
    x, lu = _lu_solve(upcast(a.astype(dtype)), upcast(b.astype(dtype)))
    pivots = jnp.abs(jnp.diagonal(lu))
    top = jnp.max(pivots)
    ratio = jnp.where(top > 0, jnp.min(pivots) / jnp.where(top > 0, top, 1.0), 0.0)
    return x.astype(dtype), ratio, jnp.all(jnp.isfinite(x))


def _check_nonsingular(ratio: jax.Array, finite: jax.Array, fn: str) -> None:
    """Report a singular ``a`` (eagerly: ValueError; under jit: checkify.debug_check)."""
    tol = eps(upcast(ratio).dtype)
    ok = ratio > tol
    hint = "use jaxla.linalg.lstsq or jaxla.linalg.pinv for singular systems"
    singular_msg = (
        "`a` must be non-singular, got a matrix that is singular to working precision "
        f"(smallest/largest |pivot| of its LU factorisation = {{}} <= eps = {tol:.1e}); {hint}"
    )
    finite_msg = f"`a` must be non-singular, got a solution with NaN/Inf entries; {hint}"
    if _checks.is_concrete(ok):
        if not bool(ok):
            _checks.fail(fn, singular_msg.format(f"{float(ratio):.1e}"))
        if not bool(finite):
            _checks.fail(fn, finite_msg)
        return
    checkify.debug_check(ok, f"{fn}: {singular_msg}", ratio)
    checkify.debug_check(finite, f"{fn}: {finite_msg}")


def solve(a: ArrayLike, b: ArrayLike) -> jax.Array:
    """Solve the square linear system ``a @ x = b``.

    Uses LU with partial pivoting; gradients with respect to ``a`` and ``b`` come from implicit
    differentiation (one extra solve with the same factors).

    Singular matrices: ``a`` counts as singular to working precision when the smallest pivot of
    its LU factorisation is at most ``eps(dtype)`` times the largest (in exact arithmetic this
    ratio is 0 exactly when ``a`` is singular; below ``eps`` the solution is dominated by
    rounding). Called eagerly, a singular ``a`` (or a solution with NaN/Inf entries) raises
    ``ValueError``. Under ``jit`` the result is what the LU gives (typically Inf/NaN or huge
    entries); wrap the call as ``checkify.checkify(jax.jit(solve))`` to get the same message as
    a ``checkify`` error. Use :func:`lstsq` or :func:`pinv` for singular or rectangular systems.

    Args:
      a: square matrix (n, n).
      b: right-hand side (n,) or (n, k).

    Returns:
      ``x`` with ``b``'s shape, (n,) or (n, k), in the promoted dtype. For batches use
      ``jax.vmap``.

    Raises:
      ValueError: non-square ``a``, mismatched ``b``, NaN/Inf input or singular ``a`` (eager).
      TypeError: integer, boolean or complex inputs.

    Examples:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from jaxla.linalg import solve
      >>> a = jnp.array([[3.0, 1.0], [1.0, 2.0]])
      >>> print(np.round(np.asarray(solve(a, jnp.array([9.0, 8.0]))), 3))
      [2. 3.]
    """
    fn = "jaxla.linalg.solve"
    a = _matrix(a, fn, square=True)
    b = _rhs(b, a.shape[0], a.shape, fn)
    _checks.check_finite(a, fn, "a")
    _checks.check_finite(b, fn, "b")
    x, ratio, finite = _solve_checked(a, b)
    _check_nonsingular(ratio, finite, fn)
    return x


def inv(a: ArrayLike) -> jax.Array:
    """Inverse of a square matrix.

    Computed as ``solve(a, I)`` by LU with partial pivoting, with the same singularity check as
    :func:`solve` (eager ``ValueError``; ``checkify`` under ``jit``). Prefer :func:`solve` to
    multiplying by the inverse.

    Args:
      a: square matrix (n, n).

    Returns:
      ``a^{-1}``, shape (n, n), in ``a``'s dtype. For batches use ``jax.vmap``.

    Raises:
      ValueError: non-square ``a``, NaN/Inf input or singular ``a`` (eager).
      TypeError: integer, boolean or complex input.

    Examples:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from jaxla.linalg import inv
      >>> print(np.round(np.asarray(inv(jnp.array([[2.0, 0.0], [0.0, 4.0]]))), 3))
      [[0.5  0.  ]
       [0.   0.25]]
    """
    fn = "jaxla.linalg.inv"
    a = _matrix(a, fn, square=True)
    _checks.check_finite(a, fn, "a")
    x, ratio, finite = _solve_checked(a, jnp.eye(a.shape[0], dtype=a.dtype))
    _check_nonsingular(ratio, finite, fn)
    return x


# --------------------------------------------------------------------------------------------
# SVD-based: pinv, lstsq, cond, matrix_rank
# --------------------------------------------------------------------------------------------


@jax.custom_jvp
def _pinv(a: jax.Array, rtol: jax.Array) -> jax.Array:
    u, _, vt, _, s_inv = _svd_parts(a, rtol)
    return matmul(vt.T * s_inv[None, :], u.T)


@_pinv.defjvp
def _pinv_jvp(primals, tangents):
    # Golub & Pereyra (1973): for constant rank,
    # dP = -P dA P + P P^T dA^T (I - A P) + (I - P A) dA^T P^T P.
    a, rtol = primals
    da, _ = tangents
    p = _pinv(a, rtol)
    s = matmul(matmul(p, p.T), da.T)  # (n, m)
    t = matmul(matmul(da.T, p.T), p)  # (n, m)
    dp = -matmul(p, matmul(da, p)) + s - matmul(matmul(s, a), p) + t - matmul(p, matmul(a, t))
    return p, dp


@jax.custom_jvp
def _lstsq(a: jax.Array, b: jax.Array, rtol: jax.Array) -> jax.Array:
    u, _, vt, _, s_inv = _svd_parts(a, rtol)
    return matmul(vt.T, _scale_rows(s_inv, matmul(u.T, b)))


@_lstsq.defjvp
def _lstsq_jvp(primals, tangents):
    # x = A^+ b; for constant rank
    # dx = A^+ (db - dA x) + A^+ A^+^T dA^T r + (I - A^+ A) dA^T A^+^T x,  r = b - A x.
    a, b, rtol = primals
    da, db, _ = tangents
    u, _, vt, keep, s_inv = _svd_parts(a, rtol)

    def pinv_apply(y):  # A^+ y
        return matmul(vt.T, _scale_rows(s_inv, matmul(u.T, y)))

    def pinv_t_apply(z):  # (A^+)^T z
        return matmul(u, _scale_rows(s_inv, matmul(vt, z)))

    def row_proj(y):  # A^+ A y
        return matmul(vt.T, _scale_rows(keep.astype(y.dtype), matmul(vt, y)))

    x = pinv_apply(b)
    r = b - matmul(a, x)
    q = matmul(da.T, pinv_t_apply(x))
    dx = (
        pinv_apply(db - matmul(da, x))
        + pinv_apply(pinv_t_apply(matmul(da.T, r)))
        + q
        - row_proj(q)
    )
    return x, dx


def pinv(a: ArrayLike, *, rcond: float | ArrayLike | None = None) -> jax.Array:
    """Moore–Penrose pseudo-inverse ``a^+``, matching ``numpy.linalg.pinv(a, rtol=rcond)``.

    Computed from the thin SVD: singular values ``s_i <= rcond * s_max`` are treated as zero.
    The default ``rcond = max(m, n) * eps(dtype)`` is numpy's array-API default
    (``numpy.linalg.pinv(a, rtol=None)``); numpy's legacy default ``rcond=1e-15`` ignores the
    dtype and is not used. The derivative is the constant-rank formula of Golub and Pereyra,
    finite for any ``a`` (including repeated or zero singular values) and exact where the rank
    does not change.

    Args:
      a: matrix (m, n).
      rcond: relative cut-off >= 0 for small singular values (may be traced).

    Returns:
      ``a^+``, shape (n, m), in ``a``'s dtype. It satisfies the Moore–Penrose conditions
      ``a a^+ a = a``, ``a^+ a a^+ = a^+`` and symmetry of ``a a^+`` and ``a^+ a``.
      For batches use ``jax.vmap``.

    Raises:
      ValueError: wrong rank, NaN/Inf input (eager) or a negative ``rcond``.
      TypeError: integer, boolean or complex input.

    Examples:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from jaxla.linalg import pinv
      >>> print(np.round(np.asarray(pinv(jnp.array([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]]))), 3))
      [[1.  0.  0. ]
       [0.  0.  0.5]]
    """
    fn = "jaxla.linalg.pinv"
    a = _matrix(a, fn)
    if rcond is not None:
        rcond = _checks.check_positive(rcond, fn, "rcond", allow_zero=True)
    _checks.check_finite(a, fn, "a")
    return _pinv_impl(a, rcond)


@jax.jit
def _pinv_impl(a: jax.Array, rcond: Any) -> jax.Array:
    ac = upcast(a)
    return _pinv(ac, _rtol(rcond, ac)).astype(a.dtype)


def lstsq(
    a: ArrayLike, b: ArrayLike, *, rcond: float | ArrayLike | None = None
) -> LstsqResult:
    """Minimum-norm least-squares solution of ``a @ x ≈ b``, as ``numpy.linalg.lstsq``.

    Solves over-determined (m > n), under-determined (m < n) and rank-deficient systems alike:
    ``x = a^+ b`` via the thin SVD, minimising ``||b - a x||`` and, among minimisers,
    ``||x||``. Singular values ``s_i <= rcond * s_max`` count as zero (numpy's rule, default
    ``rcond = max(m, n) * eps(dtype)``).

    Differences from numpy: ``residuals`` is always returned (shapes must be static under
    ``jit``) and holds ``||b - a x||^2`` computed from the solution, even where numpy returns an
    empty array (rank < n or m <= n); ``rank`` is an int32 array. Derivatives of ``solution``
    are the constant-rank ones (finite for any ``a``; second derivatives are exact where the
    singular values are distinct and non-zero).

    Args:
      a: matrix (m, n).
      b: right-hand side (m,) or (m, k).
      rcond: relative cut-off >= 0 for small singular values (may be traced).

    Returns:
      :class:`LstsqResult` with ``solution`` (n,) or (n, k), ``residuals`` (1,) or (k,),
      ``rank`` () int32 and ``singular_values`` (min(m, n),); floats in the promoted dtype.
      For batches use ``jax.vmap``.

    Raises:
      ValueError: wrong ranks, mismatched ``b``, NaN/Inf input (eager) or a negative ``rcond``.
      TypeError: integer, boolean or complex inputs.

    Examples:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from jaxla.linalg import lstsq
      >>> a = jnp.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
      >>> res = lstsq(a, jnp.array([1.0, 2.0, 4.0]))
      >>> print(np.round(np.asarray(res.solution), 3), int(res.rank))
      [0.833 1.5  ] 2
      >>> print(np.round(np.asarray(res.residuals), 3))
      [0.167]
    """
    fn = "jaxla.linalg.lstsq"
    a = _matrix(a, fn)
    b = _rhs(b, a.shape[0], a.shape, fn)
    if rcond is not None:
        rcond = _checks.check_positive(rcond, fn, "rcond", allow_zero=True)
    _checks.check_finite(a, fn, "a")
    _checks.check_finite(b, fn, "b")
    return _lstsq_impl(a, b, rcond)


@jax.jit
def _lstsq_impl(a: jax.Array, b: jax.Array, rcond: Any) -> LstsqResult:
    dtype = jnp.result_type(a, b)
    ac, bc = upcast(a.astype(dtype)), upcast(b.astype(dtype))
    rtol = _rtol(rcond, ac)
    x = _lstsq(ac, bc, rtol)
    s = _singular_values(ac)
    r = bc - matmul(ac, x)
    residuals = jnp.sum(r * r, axis=0)
    if b.ndim == 1:
        residuals = residuals[None]
    rank = jnp.sum(s > rtol * s[0]).astype(jnp.int32)
    return LstsqResult(x.astype(dtype), residuals.astype(dtype), rank, s.astype(dtype))


def cond(a: ArrayLike, p: int | float | str | None = None) -> jax.Array:
    """Condition number of a matrix, matching ``numpy.linalg.cond``.

    * ``p`` None or 2: ``s_max / s_min`` from the singular values (any (m, n) shape); ``inf``
      when ``s_min == 0``.
    * ``p = -2``: ``s_min / s_max`` (0 for a singular matrix, ``inf`` for the zero matrix, as
      numpy).
    * ``p`` in ``'fro'``, ``'nuc'``, 1, -1, ``inf``, ``-inf``: ``norm(a, p) * norm(inv(a), p)``
      for square ``a``, with ``inf`` where the inverse does not exist (NaN mapped to ``inf``, as
      numpy).

    Gradients (p None or 2) are ``d(s_max/s_min)`` through the singular values; where the result
    is ``inf`` the gradient is 0.

    Args:
      a: matrix (m, n); square (n, n) unless ``p`` is None, 2 or -2.
      p: order of the norm (static).

    Returns:
      The condition number, shape (), in ``a``'s dtype. For batches use ``jax.vmap``.

    Raises:
      ValueError: wrong rank, a non-square ``a`` where one is needed, NaN/Inf input (eager) or an
        unknown ``p``.
      TypeError: integer, boolean or complex input.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxla.linalg import cond
      >>> a = jnp.array([[2.0, 0.0], [0.0, 0.5]])
      >>> print(round(float(cond(a)), 4), round(float(cond(a, 1)), 4))
      4.0 4.0
      >>> print(float(cond(jnp.array([[1.0, 1.0], [1.0, 1.0]]))))
      inf
    """
    fn = "jaxla.linalg.cond"
    _checks.check_option(p, _COND_PS, fn, "p")
    a = _matrix(a, fn, square=p not in (None, 2, -2))
    _checks.check_finite(a, fn, "a")
    return _cond(a, p)


@functools.partial(jax.jit, static_argnums=(1,))
def _cond(a: jax.Array, p: Any) -> jax.Array:
    ac = upcast(a)
    if p in (None, 2, -2):
        s = _singular_values(ac)
        top, bottom = (s[0], s[-1]) if p != -2 else (s[-1], s[0])
        ok = bottom > 0
        out = jnp.where(ok, top / jnp.where(ok, bottom, jnp.ones_like(bottom)), jnp.inf)
    else:
        a_inv, _ = _lu_solve(ac, jnp.eye(a.shape[0], dtype=ac.dtype))
        out = norm(ac, p) * norm(a_inv, p)
        out = jnp.where(jnp.isnan(out), jnp.inf, out)
    return out.astype(a.dtype)


def matrix_rank(a: ArrayLike, *, tol: float | ArrayLike | None = None) -> jax.Array:
    """Numerical rank: the number of singular values above ``tol``, as numpy.

    The default ``tol = s_max * max(m, n) * eps(dtype)`` is ``numpy.linalg.matrix_rank``'s;
    an explicit ``tol`` is an absolute threshold (singular values ``> tol`` count).

    Args:
      a: matrix (m, n).
      tol: absolute threshold >= 0 (may be traced), or None for the default.

    Returns:
      The rank, shape () int32. For batches use ``jax.vmap``.

    Raises:
      ValueError: wrong rank, NaN/Inf input (eager) or a negative ``tol``.
      TypeError: integer, boolean or complex input.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxla.linalg import matrix_rank
      >>> print(int(matrix_rank(jnp.array([[1.0, 2.0], [2.0, 4.0], [0.0, 0.0]]))))
      1
    """
    fn = "jaxla.linalg.matrix_rank"
    a = _matrix(a, fn)
    if tol is not None:
        tol = _checks.check_positive(tol, fn, "tol", allow_zero=True)
    _checks.check_finite(a, fn, "a")
    return _matrix_rank(a, tol)


@jax.jit
def _matrix_rank(a: jax.Array, tol: Any) -> jax.Array:
    ac = upcast(lax.stop_gradient(a))
    s = jnp.linalg.svd(ac, compute_uv=False)
    if tol is None:
        thresh = s[0] * _default_rtol(tuple(a.shape), ac.dtype)
    else:
        thresh = jnp.asarray(tol, ac.dtype)
    return jnp.sum(s > thresh).astype(jnp.int32)

