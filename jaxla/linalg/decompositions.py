"""Matrix decompositions with canonical forms and safe derivatives: svd, eigh, qr, lu, cholesky.

The free signs of singular vectors, eigenvectors and QR factors are fixed by a documented rule
(see :mod:`jaxla.linalg._canonical`), so the same matrix gives the same factors eagerly, under
``jax.jit`` and under ``jax.vmap``:

* :func:`svd` -- singular values descending; the entry of largest magnitude of each right
  singular vector (row of ``vt``) is positive (scikit-learn's ``svd_flip`` with
  ``u_based_decision=False``).
* :func:`eigh` -- eigenvalues ascending; the entry of largest magnitude of each eigenvector
  (column) is positive.
* :func:`qr` -- ``diag(r) >= 0``.
* :func:`lu` -- ``a = p @ l @ u`` with partial pivoting and unit-lower ``l`` (scipy's form).
* :func:`cholesky` -- lower-triangular ``l`` with a positive diagonal, ``a = l @ l.T``.

Ties in magnitude go to the first index. All functions accept a stack of matrices
``(..., m, n)``; the leading axes are batch axes.

Derivatives. :func:`svd` and :func:`eigh` carry their own ``jax.custom_jvp`` rules. Where the
spectrum is simple (singular values distinct and nonzero, eigenvalues distinct) they give the
exact derivative of the canonical factors, in forward and reverse mode and to any order. Where
singular values or eigenvalues repeat or vanish the factors are not differentiable; there the
rules drop the coupling between (numerically) tied values, and the terms divided by a zero
singular value, instead of dividing by zero, so derivatives stay finite. They remain exact for
functions that do not depend on how a cluster of tied values is split: sums of functions of the
spectrum such as ``jnp.sum(s ** 2)`` or ``jnp.sum(w ** 2)``, the nuclear norm ``jnp.sum(s)`` of
a full-rank matrix, and projectors onto whole clusters (for example onto the top-``r`` singular
subspace when ``s[r - 1] > s[r]``). Two values count as tied when they differ by at most
``eps * N * scale``, with ``eps`` the machine epsilon of the computation dtype, ``N`` the largest
matrix dimension and ``scale`` the largest singular value (largest absolute eigenvalue); a
singular value at most that large counts as zero. :func:`qr`, :func:`lu` and :func:`cholesky`
use JAX's derivative rules.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify
from jax.typing import ArrayLike

from jaxla import _checks
from jaxla._numerics import eps, matmul, upcast
from jaxla.linalg import _canonical

__all__ = ["LU", "QR", "SVD", "Cholesky", "Eigh", "cholesky", "eigh", "lu", "qr", "svd"]

_MODULE = "jaxla.linalg"


class SVD(NamedTuple):
    """Singular value decomposition ``a = u @ diag(s) @ vt`` (k = min(m, n))."""

    u: jax.Array  # (..., m, k); (..., m, m) with full_matrices=True
    s: jax.Array  # (..., k), descending, >= 0
    vt: jax.Array  # (..., k, n); (..., n, n) with full_matrices=True


class Eigh(NamedTuple):
    """Eigendecomposition ``a = eigenvectors @ diag(eigenvalues) @ eigenvectors.T``."""

    eigenvalues: jax.Array  # (..., n), ascending
    eigenvectors: jax.Array  # (..., n, n), column j belongs to eigenvalues[..., j]


class QR(NamedTuple):
    """QR decomposition ``a = q @ r`` with ``diag(r) >= 0`` (k = min(m, n))."""

    q: jax.Array | None  # (..., m, k) "reduced"; (..., m, m) "complete"; None for mode "r"
    r: jax.Array  # (..., k, n) "reduced" and "r"; (..., m, n) "complete"


class LU(NamedTuple):
    """LU decomposition with partial pivoting ``a = p @ l @ u`` (k = min(m, n))."""

    p: jax.Array  # (..., m, m), permutation matrix, in the dtype of `a`
    l: jax.Array  # (..., m, k), unit lower triangular (trapezoidal when m > n)
    u: jax.Array  # (..., k, n), upper triangular (trapezoidal when m < n)


class Cholesky(NamedTuple):
    """Cholesky factor with a success flag, returned by ``cholesky(a, return_info=True)``."""

    l: jax.Array  # (..., n, n), lower triangular with positive diagonal; NaN where not ok
    ok: jax.Array  # (...,), bool: True where `a` was numerically positive definite


# --------------------------------------------------------------------------------------------
# shared helpers


def _mT(x: jax.Array) -> jax.Array:
    return jnp.swapaxes(x, -1, -2)


def _diag(x: jax.Array) -> jax.Array:
    return jnp.diagonal(x, axis1=-2, axis2=-1)


def _lead(x: jax.Array, ndim: int) -> jax.Array:
    """Prepend singleton axes so that ``x`` has ``ndim`` axes (explicit broadcasting)."""
    return jnp.reshape(x, (1,) * (ndim - x.ndim) + x.shape)


def _safe_inverse(x: jax.Array, keep: jax.Array) -> jax.Array:
    """``1 / x`` where ``keep``, else 0, with finite derivatives of every order."""
    return jnp.where(keep, 1 / jnp.where(keep, x, jnp.ones_like(x)), jnp.zeros_like(x))


def _prepare(a: ArrayLike, fn: str, *, square: bool = False) -> jax.Array:
    """Validate a (stack of) matrices and report NaN/Inf: eagerly raise, under jit checkify."""
    a = _checks.as_float_array(a, fn, "a", min_ndim=2, doc="(..., m, n)")
    if square:
        _checks.check_square(a, fn, "a")
    if 0 in a.shape[-2:]:
        _checks.fail(fn, f"`a` must have at least one row and one column, got shape {a.shape}")
    _checks.check_finite(a, fn, "a")
    if not _checks.is_concrete(a):
        checkify.debug_check(
            jnp.all(jnp.isfinite(a)),
            f"{fn}: `a` contains NaN or Inf value(s); clean or mask them first",
        )
    return a


# --------------------------------------------------------------------------------------------
# svd


def _svd_thin_impl(a: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    u, s, vt = jax.lax.linalg.svd(a, full_matrices=False)
    u, vt = _canonical.svd_signs(u, vt)
    return u, s, vt


@jax.custom_jvp
def _svd_thin(a: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    return _svd_thin_impl(a)


@_svd_thin.defjvp
def _svd_thin_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    u, s, vt = _svd_thin(a)  # recursive call: higher derivatives use this rule too
    m, n = a.shape[-2:]
    v = _mT(vt)
    ut = _mT(u)
    ds_mat = matmul(matmul(ut, da), v)  # (..., k, k) = U^T dA V
    ds = _diag(ds_mat)

    # Ties: values within eps * max(m, n) * s_max of each other (or of zero) are treated as equal.
    tol = (eps(a.dtype) * max(m, n)) * s[..., :1]  # (..., 1); s is descending
    s_row, s_col = s[..., None, :], s[..., :, None]  # s_j along rows, s_i along columns
    diff, total = s_row - s_col, s_row + s_col  # (..., k, k)
    inv_diff = _safe_inverse(diff, jnp.abs(diff) > tol[..., None])
    inv_total = _safe_inverse(total, total > tol[..., None])
    sym = (ds_mat + _mT(ds_mat)) / 2
    skew = (ds_mat - _mT(ds_mat)) / 2
    # U^T dU and V^T dV for a simple spectrum: (sym / (s_j - s_i)) +- (skew / (s_j + s_i)).
    omega_u = sym * inv_diff + skew * inv_total
    omega_v = sym * inv_diff - skew * inv_total
    du = matmul(u, omega_u)
    dv = matmul(v, omega_v)

    inv_s = _safe_inverse(s, s > tol)[..., None, :]  # (..., 1, k)
    if m > n:  # component of dU outside span(U): (I - U U^T) dA V S^-1
        dav = matmul(da, v)
        du = du + (dav - matmul(u, matmul(ut, dav))) * inv_s
    if n > m:  # component of dV outside span(V): (I - V V^T) dA^T U S^-1
        datu = matmul(_mT(da), u)
        dv = dv + (datu - matmul(v, matmul(vt, datu))) * inv_s
    return (u, s, vt), (du, ds, _mT(dv))


def _svd_full_impl(a: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    u, s, vt = jax.lax.linalg.svd(a, full_matrices=True)
    k = s.shape[-1]
    signs = _canonical.vector_signs(vt, axis=-1)  # (..., n): every row of vt
    vt = vt * signs[..., :, None]
    u_head = u[..., :, :k] * signs[..., None, :k]
    u_tail = _canonical.flip_columns(u[..., :, k:])  # complement of span(u_head)
    return jnp.concatenate([u_head, u_tail], axis=-1), s, vt


@jax.custom_jvp
def _svd_full(a: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    return _svd_full_impl(a)


@_svd_full.defjvp
def _svd_full_jvp(primals, tangents):
    shape = tuple(primals[0].shape)
    _checks.fail(
        "jaxla.linalg.svd",
        "`full_matrices` must be False to differentiate a non-square `a` (the extra columns of "
        f"u or rows of vt are not unique), got full_matrices=True with `a` of shape {shape}",
    )


_svd_thin_jit = jax.jit(_svd_thin)
_svd_full_jit = jax.jit(_svd_full)


def svd(a: ArrayLike, *, full_matrices: bool = False) -> SVD:
    """Singular value decomposition with canonical signs and finite derivatives.

    Computes ``a = u @ diag(s) @ vt`` with the singular values in descending order and the sign
    of each singular pair fixed so that the entry of largest magnitude of each row of ``vt`` is
    positive (ties go to the first index); ``u`` is flipped with it. This is scikit-learn's
    ``svd_flip(u, vt, u_based_decision=False)``. With ``full_matrices=True`` the extra rows of
    ``vt`` follow the same rule and the extra columns of ``u`` have their own largest-magnitude
    entry positive (they are an orthonormal basis of the complement, which is not unique).

    Derivatives (``jax.grad``, ``jax.jvp``, ``jax.vjp``, any order) use a custom rule: with
    ``dS = u.T @ da @ v``, ``ds = diag(dS)``; the rotations ``u.T @ du`` and ``v.T @ dv`` are
    ``sym(dS)_ij / (s_j - s_i) +- skew(dS)_ij / (s_j + s_i)``; for m > n (m < n) the part of
    ``du`` (``dv``) outside the span of ``u`` (``v``) is ``(I - u u^T) da v / s``
    (``(I - v v^T) da^T u / s``). Each quotient is set to 0 where its denominator is within the
    tie threshold of zero (see the module docstring), so the rule is exact where the singular
    values are distinct and nonzero and stays finite where they repeat or vanish. For a
    non-square ``a`` only ``full_matrices=False`` is differentiable: differentiating
    ``full_matrices=True`` raises ``ValueError``. For a square ``a`` both settings give the same
    factors and derivatives.

    Args:
        a: (..., m, n) real floating matrix or stack of matrices; NaN/Inf raise ``ValueError``
            when called eagerly (under ``jit``: ``jax.experimental.checkify`` reports them).
        full_matrices: If True, return square ``u`` (..., m, m) and ``vt`` (..., n, n).

    Returns:
        ``SVD(u, s, vt)``: ``u`` (..., m, k), ``s`` (..., k) and ``vt`` (..., k, n) with
        ``k = min(m, n)``, in the dtype of ``a`` (float16/bfloat16 are computed in float32).

    Raises:
        TypeError: integer, boolean or complex ``a``, or a non-bool ``full_matrices``.
        ValueError: ``a`` with fewer than 2 dimensions or an empty matrix axis, or NaN/Inf
            values (eagerly).

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.linalg import svd
        >>> a = jnp.array([[1.0, 2.0], [3.0, 4.0]])
        >>> u, s, vt = svd(a)
        >>> np.round(np.asarray(s, dtype=float), 4)
        array([5.465, 0.366])
        >>> bool(np.allclose(u @ jnp.diag(s) @ vt, a, atol=1e-5))
        True
        >>> np.round(np.asarray(vt, dtype=float), 4)  # max-|.| entry of each row positive
        array([[ 0.576 ,  0.8174],
               [ 0.8174, -0.576 ]])

        Gradients stay finite where singular values repeat, as for the identity:

        >>> g = jax.grad(lambda x: jnp.sum(svd(x).u[:, 0]))(jnp.eye(2))
        >>> bool(jnp.all(jnp.isfinite(g)))
        True
    """
    fn = f"{_MODULE}.svd"
    full_matrices = _checks.check_bool(full_matrices, fn, "full_matrices")
    a = _prepare(a, fn)
    x = upcast(a)
    m, n = x.shape[-2:]
    core = _svd_full_jit if (full_matrices and m != n) else _svd_thin_jit
    u, s, vt = core(x)
    return SVD(u.astype(a.dtype), s.astype(a.dtype), vt.astype(a.dtype))


# --------------------------------------------------------------------------------------------
# eigh


def _eigh_impl(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    v, w = jax.lax.linalg.eigh(a, symmetrize_input=False, sort_eigenvalues=True)
    return w, _canonical.flip_columns(v)


@jax.custom_jvp
def _eigh_sym(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    return _eigh_impl(a)


@_eigh_sym.defjvp
def _eigh_sym_jvp(primals, tangents):
    (a,), (da,) = primals, tangents  # both symmetric: symmetrization happens outside
    w, v = _eigh_sym(a)
    n = a.shape[-1]
    vt_da_v = matmul(matmul(_mT(v), da), v)  # (..., n, n)
    dw = _diag(vt_da_v)
    tol = (eps(a.dtype) * n) * jnp.max(jnp.abs(w), axis=-1)[..., None, None]  # (..., 1, 1)
    gap = w[..., None, :] - w[..., :, None]  # (..., n, n): w_j - w_i
    f = _safe_inverse(gap, jnp.abs(gap) > tol)
    dv = matmul(v, f * vt_da_v)
    return (w, v), (dw, dv)


_eigh_sym_jit = jax.jit(_eigh_sym)


def eigh(a: ArrayLike) -> Eigh:
    """Eigendecomposition of a symmetric matrix with canonical signs and finite derivatives.

    The input is symmetrized as ``(a + a.T) / 2`` (both triangles are used), so the result is
    the eigendecomposition of the symmetric part of ``a`` and gradients with respect to ``a`` are
    symmetric, as with ``jnp.linalg.eigh``. Eigenvalues are ascending; each eigenvector (column)
    is flipped so that its entry of largest magnitude is positive (ties go to the first index).

    Derivatives use a custom rule: ``dw = diag(V^T dA V)`` and ``dV = V (F * (V^T dA V))`` with
    ``F_ij = 1 / (w_j - w_i)``, and ``F_ij = 0`` where ``|w_j - w_i| <= eps * n * max|w|``. It is
    exact where the eigenvalues are distinct and finite where they repeat (see the module
    docstring for which functions are then still differentiated exactly).

    Args:
        a: (..., n, n) real floating matrix or stack of matrices; NaN/Inf raise ``ValueError``
            when called eagerly (under ``jit``: ``jax.experimental.checkify`` reports them).

    Returns:
        ``Eigh(eigenvalues, eigenvectors)``: eigenvalues (..., n) ascending and eigenvectors
        (..., n, n) with ``eigenvectors[..., :, j]`` belonging to ``eigenvalues[..., j]``, in the
        dtype of ``a`` (float16/bfloat16 are computed in float32).

    Raises:
        TypeError: integer, boolean or complex ``a``.
        ValueError: ``a`` not a (stack of) nonempty square matrices, or NaN/Inf values (eagerly).

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.linalg import eigh
        >>> w, v = eigh(jnp.array([[2.0, 1.0], [1.0, 3.0]]))
        >>> np.round(np.asarray(w, dtype=float), 4)
        array([1.382, 3.618])
        >>> np.round(np.asarray(v, dtype=float), 4)  # max-|.| entry of each column positive
        array([[ 0.8507,  0.5257],
               [-0.5257,  0.8507]])
        >>> g = jax.grad(lambda x: jnp.sum(eigh(x).eigenvectors ** 3))(jnp.eye(3))
        >>> bool(jnp.all(jnp.isfinite(g)))
        True
    """
    fn = f"{_MODULE}.eigh"
    a = _prepare(a, fn, square=True)
    x = upcast(a)
    x = (x + _mT(x)) / 2
    w, v = _eigh_sym_jit(x)
    return Eigh(w.astype(a.dtype), v.astype(a.dtype))


# --------------------------------------------------------------------------------------------
# qr

_QR_MODES = ("reduced", "complete", "r")


def _pad_ones(d: jax.Array, size: int) -> jax.Array:
    extra = size - d.shape[-1]
    if extra == 0:
        return d
    return jnp.concatenate([d, jnp.ones((*d.shape[:-1], extra), d.dtype)], axis=-1)


def _qr_core(x: jax.Array, mode: str) -> tuple[jax.Array | None, jax.Array]:
    if mode == "r":
        q, r = None, jnp.linalg.qr(x, mode="r")
    else:
        q, r = jnp.linalg.qr(x, mode=mode)
    d = jnp.where(_diag(r) < 0, -1.0, 1.0).astype(r.dtype)  # (..., k)
    r = r * _pad_ones(d, r.shape[-2])[..., :, None]
    if q is not None:
        q = q * _pad_ones(d, q.shape[-1])[..., None, :]
    return q, r


_qr_core_jit = jax.jit(_qr_core, static_argnums=(1,))


def qr(a: ArrayLike, *, mode: str = "reduced") -> QR:
    """QR decomposition ``a = q @ r`` with a nonnegative diagonal of ``r``.

    ``q`` has orthonormal columns and ``r`` is upper triangular (trapezoidal when m < n). The
    signs are fixed so that ``diag(r) >= 0``; where the diagonal of ``r`` is positive (``a`` of
    full column rank, m >= n) this makes the factorization unique. Derivatives are JAX's.

    Args:
        a: (..., m, n) real floating matrix or stack of matrices; NaN/Inf raise ``ValueError``
            when called eagerly (under ``jit``: ``jax.experimental.checkify`` reports them).
        mode: ``"reduced"`` (q (..., m, k), r (..., k, n), k = min(m, n)), ``"complete"``
            (q (..., m, m), r (..., m, n)) or ``"r"`` (``q`` is None, r (..., k, n)).

    Returns:
        ``QR(q, r)`` in the dtype of ``a`` (float16/bfloat16 are computed in float32), with the
        shapes given for ``mode``.

    Raises:
        TypeError: integer, boolean or complex ``a``.
        ValueError: ``a`` with fewer than 2 dimensions or an empty matrix axis, an unknown
            ``mode``, or NaN/Inf values (eagerly).

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.linalg import qr
        >>> a = jnp.array([[3.0, 1.0], [4.0, 2.0], [0.0, 2.0]])
        >>> q, r = qr(a)
        >>> np.round(np.asarray(jnp.diag(r), dtype=float), 4)
        array([5.    , 2.0396])
        >>> bool(np.allclose(q @ r, a, atol=1e-5))
        True
    """
    fn = f"{_MODULE}.qr"
    _checks.check_option(mode, _QR_MODES, fn, "mode")
    a = _prepare(a, fn)
    q, r = _qr_core_jit(upcast(a), mode)
    return QR(None if q is None else q.astype(a.dtype), r.astype(a.dtype))


# --------------------------------------------------------------------------------------------
# lu


def _lu_core(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    m, n = x.shape[-2:]
    k = min(m, n)
    packed, _, perm = jax.lax.linalg.lu(x)
    eye = _lead(jnp.eye(m, k, dtype=x.dtype), x.ndim)
    l = jnp.tril(packed[..., :, :k], -1) + eye
    u = jnp.triu(packed[..., :k, :])
    # Row i of the pivoted matrix is row perm[i] of x: x = p @ l @ u with p[perm[i], i] = 1.
    p = _mT(jax.nn.one_hot(perm, m, dtype=x.dtype))
    return p, l, u


_lu_core_jit = jax.jit(_lu_core)


def lu(a: ArrayLike) -> LU:
    """LU decomposition with partial pivoting, ``a = p @ l @ u`` (scipy.linalg.lu's form).

    Rows are pivoted on the entry of largest magnitude in each column (LAPACK ``getrf``), ``l``
    has a unit diagonal and ``|l| <= 1`` entrywise, and ``u`` is upper triangular. The result
    matches ``scipy.linalg.lu(a)`` up to rounding. Singular matrices are factored too (``u``
    then has a zero on its diagonal). Derivatives are JAX's.

    Args:
        a: (..., m, n) real floating matrix or stack of matrices; NaN/Inf raise ``ValueError``
            when called eagerly (under ``jit``: ``jax.experimental.checkify`` reports them).

    Returns:
        ``LU(p, l, u)``: permutation matrix p (..., m, m), unit lower-triangular l (..., m, k)
        and upper-triangular u (..., k, n), ``k = min(m, n)``, all in the dtype of ``a``
        (float16/bfloat16 are computed in float32).

    Raises:
        TypeError: integer, boolean or complex ``a``.
        ValueError: ``a`` with fewer than 2 dimensions or an empty matrix axis, or NaN/Inf
            values (eagerly).

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.linalg import lu
        >>> p, l, u = lu(jnp.array([[1.0, 2.0], [4.0, 3.0]]))
        >>> np.round(np.asarray(p, dtype=float), 4)
        array([[0., 1.],
               [1., 0.]])
        >>> np.round(np.asarray(l, dtype=float), 4)
        array([[1.  , 0.  ],
               [0.25, 1.  ]])
        >>> np.round(np.asarray(u, dtype=float), 4)
        array([[4.  , 3.  ],
               [0.  , 1.25]])
    """
    fn = f"{_MODULE}.lu"
    a = _prepare(a, fn)
    p, l, u = _lu_core_jit(upcast(a))
    return LU(p.astype(a.dtype), l.astype(a.dtype), u.astype(a.dtype))


# --------------------------------------------------------------------------------------------
# cholesky

_NOT_PD = (
    "`a` is not positive definite: its Cholesky factorization met a pivot that is not "
    "positive (or a NaN); pass return_info=True to get a flag instead"
)


def _cholesky_core(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = (x + _mT(x)) / 2
    l = jnp.tril(jax.lax.linalg.cholesky(x, symmetrize_input=False))
    ok = jnp.all(jnp.isfinite(l), axis=(-2, -1)) & jnp.all(_diag(l) > 0, axis=-1)
    return jnp.where(ok[..., None, None], l, jnp.full_like(l, jnp.nan)), ok


_cholesky_core_jit = jax.jit(_cholesky_core)


def cholesky(a: ArrayLike, *, return_info: bool = False) -> jax.Array | Cholesky:
    """Cholesky factor ``l`` of a symmetric positive definite matrix, ``a = l @ l.T``.

    The input is symmetrized as ``(a + a.T) / 2`` (both triangles are used, as in
    ``jnp.linalg.cholesky``). ``l`` is lower triangular with a positive diagonal, which makes it
    unique. Derivatives are JAX's.

    A matrix that is not (numerically) positive definite is reported, not returned silently:

    * called eagerly, ``cholesky(a)`` raises ``ValueError("jaxla.linalg.cholesky: `a` is not
      positive definite: ...")``;
    * under ``jax.jit`` a Python error is impossible: ``l`` is then all NaN, and the check is
      expressed with ``jax.experimental.checkify.debug_check``, so
      ``err, l = checkify.checkify(jax.jit(cholesky))(a)`` followed by ``err.throw()`` raises the
      same message (``checkify.JaxRuntimeError``);
    * with ``return_info=True`` nothing is raised for such a matrix (eagerly or under
      ``checkify``): the result is ``Cholesky(l, ok)`` and ``ok`` is False where the
      factorization failed.

    NaN/Inf inputs raise ``ValueError`` eagerly in every case (under ``jit``, ``checkify``
    reports them).

    Args:
        a: (..., n, n) real floating symmetric positive definite matrix or stack of matrices.
        return_info: If True, return ``Cholesky(l, ok)`` instead of raising for a matrix that
            is not positive definite.

    Returns:
        ``l`` (..., n, n) in the dtype of ``a`` (float16/bfloat16 are computed in float32); with
        ``return_info=True``, ``Cholesky(l, ok)`` with ``ok`` a bool array of shape (...,).

    Raises:
        TypeError: integer, boolean or complex ``a``, or a non-bool ``return_info``.
        ValueError: ``a`` not a (stack of) nonempty square matrices, NaN/Inf values (eagerly),
            or ``a`` not positive definite (eagerly, unless ``return_info=True``).

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jax.experimental import checkify
        >>> from jaxla.linalg import cholesky
        >>> np.round(np.asarray(cholesky(jnp.array([[4.0, 2.0], [2.0, 3.0]])), dtype=float), 4)
        array([[2.    , 0.    ],
               [1.    , 1.4142]])
        >>> bad = jnp.array([[1.0, 2.0], [2.0, 1.0]])
        >>> bool(cholesky(bad, return_info=True).ok)
        False
        >>> err, _ = checkify.checkify(jax.jit(cholesky))(bad)
        >>> "not positive definite" in err.get()
        True
    """
    fn = f"{_MODULE}.cholesky"
    return_info = _checks.check_bool(return_info, fn, "return_info")
    a = _prepare(a, fn, square=True)
    l, ok = _cholesky_core_jit(upcast(a))
    l = l.astype(a.dtype)
    if return_info:
        return Cholesky(l, ok)
    if _checks.is_concrete(ok):
        if not bool(np.all(np.asarray(ok))):
            _checks.fail(fn, _NOT_PD)
    else:
        checkify.debug_check(jnp.all(ok), f"{fn}: {_NOT_PD}")
    return l
