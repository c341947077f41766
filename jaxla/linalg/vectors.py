"""Vectors: inner products, norms, similarities, distances, normalisation and projections.

Every function is pure and works under ``jax.jit`` and ``jax.vmap``; string and integer options
(``ord``, ``metric``, ``axis``) are static Python values (mark them static under ``jit``).
Outputs keep the floating dtype of the inputs (the promoted dtype when two arrays are given);
float16/bfloat16 inputs are computed in float32 and cast back. Matrix products run at
``precision=HIGHEST``.

Gradients are finite everywhere, including at the zero vector and the zero matrix, where the norm
is not differentiable: there the gradient is a documented subgradient (see each function).
Euclidean norms use the "double ``where``" construction, so their value is exact (no ``eps``
bias) and their gradient at zero is zero.

Non-finite values: :func:`dot`, :func:`outer`, :func:`norm` and :func:`safe_norm` follow IEEE
arithmetic like numpy (a NaN input gives a NaN result, ``norm`` of a vector holding ``inf`` is
``inf``). :func:`cosine_similarity`, :func:`pairwise_distances`, :func:`normalize` and
:func:`project` would turn ``inf`` into meaningless NaNs, so called eagerly they raise
``ValueError`` on NaN/Inf input (under ``jit`` the values propagate).

Dimension letters: ``d`` features (vector length), ``n`` and ``m`` numbers of vectors,
``k`` columns of a basis.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxla import _checks
from jaxla._numerics import HIGHEST, eps, matmul, upcast

__all__ = [
    "cosine_similarity",
    "dot",
    "norm",
    "normalize",
    "outer",
    "pairwise_distances",
    "project",
    "safe_norm",
]

_MATRIX_ORDS = (None, "fro", "nuc", 1, -1, 2, -2, math.inf, -math.inf)
_METRICS = ("euclidean", "sqeuclidean", "cosine", "manhattan")


# --------------------------------------------------------------------------------------------
# private helpers (shared with jaxla.linalg.matrices)
# --------------------------------------------------------------------------------------------


def _safe_sqrt(s: jax.Array) -> jax.Array:
    """``sqrt(s)`` for ``s >= 0`` with gradient 0 (not inf) where ``s == 0``; NaN propagates."""
    ok = s != 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, s, jnp.ones_like(s))), jnp.zeros_like(s))


def _axes(axis: Any, ndim: int, shape: tuple[int, ...], fn: str) -> tuple[int, ...]:
    """Normalise ``axis`` (None, int or sequence of ints) to sorted non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
        raw = (int(axis),)
    elif isinstance(axis, tuple | list) and all(
        isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axis
    ):
        raw = tuple(int(a) for a in axis)
    else:
        _checks.fail(fn, f"`axis` must be None, an int or a tuple of ints, got {axis!r}", TypeError)
    out = []
    for a in raw:
        if not -ndim <= a < ndim:
            _checks.fail(
                fn, f"`axis` must lie in [-{ndim}, {ndim}) for `x` of shape {shape}, got {axis!r}"
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        _checks.fail(fn, f"`axis` must not repeat an axis, got {axis!r}")
    return tuple(out)


def _vector_ord(ord: Any, fn: str, *, allow_zero_and_min: bool = True) -> float:
    """Validate a vector-norm order and return it as a float (None -> 2)."""
    if ord is None:
        return 2.0
    if isinstance(ord, numbers.Real) and not isinstance(ord, bool):
        p = float(ord)
        if p >= 1 or (allow_zero_and_min and p in (0.0, -math.inf)):
            return p
    extra = "0, -inf, " if allow_zero_and_min else ""
    _checks.fail(
        fn,
        f"`ord` must be None, 1, 2, inf, {extra}or a real number >= 1 for a vector norm, "
        f"got {ord!r}",
    )


def _vector_norm(x: jax.Array, p: float, axes: tuple[int, ...], keepdims: bool) -> jax.Array:
    """The p-norm of ``x`` over ``axes``; finite gradient everywhere."""
    if p == 2:
        return _safe_sqrt(jnp.sum(x * x, axis=axes, keepdims=keepdims))
    if p == 1:
        return jnp.sum(jnp.abs(x), axis=axes, keepdims=keepdims)
    if p == math.inf:
        return jnp.max(jnp.abs(x), axis=axes, keepdims=keepdims)
    if p == -math.inf:
        return jnp.min(jnp.abs(x), axis=axes, keepdims=keepdims)
    if p == 0:
        return jnp.sum(x != 0, axis=axes, keepdims=keepdims).astype(x.dtype)
    # general p >= 1: scale by max|x| so |x|**p neither overflows nor underflows
    m = jnp.max(jnp.abs(x), axis=axes, keepdims=True)
    ok = m != 0  # NaN propagates
    m_safe = jnp.where(ok, m, jnp.ones_like(m))
    s = jnp.sum((jnp.abs(x) / m_safe) ** p, axis=axes, keepdims=True)
    out = jnp.where(ok, m * jnp.where(ok, s, jnp.ones_like(s)) ** (1.0 / p), jnp.zeros_like(m))
    return out if keepdims else jnp.squeeze(out, axis=axes)


def _unit(x: jax.Array, axes: tuple[int, ...], p: float = 2.0, floor: Any = 0.0) -> jax.Array:
    """``x / max(||x||_p, floor)`` over ``axes``; zero vectors give 0 with zero gradient.

    ``x`` is first divided by ``max|x|``, so the result is scale invariant over the whole
    floating range (no overflow or underflow of squares).
    """
    m = jnp.max(jnp.abs(x), axis=axes, keepdims=True)
    ok = m != 0  # NaN propagates
    m_safe = jnp.where(ok, m, jnp.ones_like(m))
    xs = x / m_safe  # max |xs| == 1 where ok
    if p == 2:
        s = jnp.sum(xs * xs, axis=axes, keepdims=True)
        r = jnp.sqrt(jnp.where(ok, s, jnp.ones_like(s)))
    elif p == 1:
        r = jnp.sum(jnp.abs(xs), axis=axes, keepdims=True)
    elif p == math.inf:
        r = jnp.max(jnp.abs(xs), axis=axes, keepdims=True)
    else:
        s = jnp.sum(jnp.abs(xs) ** p, axis=axes, keepdims=True)
        r = jnp.where(ok, s, jnp.ones_like(s)) ** (1.0 / p)
    r = jnp.maximum(r, floor / m_safe)
    den = jnp.where(ok, r, jnp.ones_like(r))
    return jnp.where(ok, xs / den, jnp.zeros_like(xs))


def _scale_rows(v: jax.Array, y: jax.Array) -> jax.Array:
    """``diag(v) @ y`` for ``y`` of shape (r,) or (r, k)."""
    return v * y if y.ndim == 1 else v[:, None] * y


def _svd_parts(a: jax.Array, rtol: jax.Array):
    """Thin SVD of ``a`` (m, n) with the pseudo-inverse cut-off ``s > rtol * s_max`` applied.

    Returns ``u`` (m, r), ``s`` (r,), ``vt`` (r, n), ``keep`` (r,) bool and ``s_inv`` (r,)
    (``1/s`` where kept, 0 elsewhere), with r = min(m, n).
    """
    u, s, vt = jnp.linalg.svd(a, full_matrices=False)
    keep = s > rtol * s[0]
    # ``0 * s`` keeps NaN singular values (from NaN input under jit) visible in the result
    s_inv = jnp.where(keep, 1.0 / jnp.where(keep, s, jnp.ones_like(s)), 0.0 * s)
    return u, s, vt, keep, s_inv


def _default_rtol(shape: tuple[int, ...], dtype: Any) -> float:
    """numpy's default relative cut-off for rank decisions: ``max(m, n) * eps``."""
    return max(shape[-2:]) * eps(dtype)


@jax.custom_jvp
def _singular_values(a: jax.Array) -> jax.Array:
    """Singular values (..., r) of ``a`` (..., m, n), descending, with a finite gradient.

    The derivative is ``ds_i = u_i^T da v_i`` for the singular vectors the SVD returns; where
    singular values repeat (e.g. at the zero matrix) any orthonormal choice of those vectors
    gives a valid subgradient of the unitarily invariant norms built on ``s``.
    """
    return jnp.linalg.svd(a, compute_uv=False)


@_singular_values.defjvp
def _singular_values_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    u, s, vt = jnp.linalg.svd(a, full_matrices=False)
    ds = jnp.sum(u * matmul(da, jnp.swapaxes(vt, -1, -2)), axis=-2)
    return s, ds


@jax.custom_jvp
def _project_columns(x: jax.Array, a: jax.Array, rtol: jax.Array) -> jax.Array:
    """Orthogonal projection of ``x`` (d,) onto the range of ``a`` (d, k), rank by ``rtol``."""
    u, _, _, keep, _ = _svd_parts(a, rtol)
    return matmul(u, jnp.where(keep, matmul(u.T, x), 0.0))


@_project_columns.defjvp
def _project_columns_jvp(primals, tangents):
    # P = A A^+ (constant rank):  dP = (I - P) dA A^+ + (A^+)^T dA^T (I - P)
    x, a, rtol = primals
    dx, da, _ = tangents
    u, _, vt, keep, s_inv = _svd_parts(a, rtol)

    def proj(y):
        return matmul(u, jnp.where(keep, matmul(u.T, y), 0.0))

    p = proj(x)
    w = matmul(vt.T, s_inv * matmul(u.T, x))  # A^+ x
    r = x - p
    z = matmul(da, w)
    dp = proj(dx) + z - proj(z) + matmul(u, s_inv * matmul(vt, matmul(da.T, r)))
    return p, dp


def _pair(x: ArrayLike, y: ArrayLike | None, fn: str, *, two_d_only: bool):
    """Validate ``x`` and optional ``y`` (same rank, same last axis, finite); return both."""
    if two_d_only:
        x = _checks.as_float_array(x, fn, "x", ndim=2, doc="(n, d)")
    else:
        x = _checks.as_float_array(x, fn, "x", ndim=(1, 2), doc="(d,) or (n, d)")
    if y is None:
        _checks.check_finite(x, fn, "x")
        return x, None
    y = _checks.as_float_array(y, fn, "y")
    if y.ndim != x.ndim:
        _checks.fail(
            fn, f"`y` must be {x.ndim}-D like `x` (shape {tuple(x.shape)}), got shape {y.shape}"
        )
    if y.shape[-1] != x.shape[-1]:
        _checks.fail(
            fn,
            f"`y` must have d={x.shape[-1]} features (the last axis of `x`, shape "
            f"{tuple(x.shape)}), got shape {tuple(y.shape)}",
        )
    _checks.check_finite(x, fn, "x")
    _checks.check_finite(y, fn, "y")
    return x, y


def _as(x: jax.Array, dtype: Any) -> jax.Array:
    """``x`` in the computation dtype for output dtype ``dtype``."""
    return upcast(x.astype(dtype))


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def dot(x: ArrayLike, y: ArrayLike) -> jax.Array:
    """Inner product of two vectors, accumulated at ``precision=HIGHEST``.

    Args:
      x: vector (d,).
      y: vector (d,).

    Returns:
      The scalar ``sum_i x_i y_i``, shape (), in the promoted dtype of ``x`` and ``y``.
      For batches of vectors use ``jax.vmap(dot)``.

    Raises:
      ValueError: if ``x`` or ``y`` is not 1-D or their lengths differ.
      TypeError: for integer, boolean or complex inputs.

    Examples:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from jaxla.linalg import dot
      >>> print(round(float(dot(jnp.array([1.0, 2.0, 3.0]), jnp.array([4.0, 5.0, 6.0]))), 4))
      32.0
    """
    fn = "jaxla.linalg.dot"
    x = _checks.as_float_array(x, fn, "x", ndim=1, doc="(d,)")
    y = _checks.as_float_array(y, fn, "y", ndim=1, doc="(d,)")
    _checks.check_same_shape(x, y, fn, ("x", "y"))
    return _dot(x, y)


@jax.jit
def _dot(x: jax.Array, y: jax.Array) -> jax.Array:
    dtype = jnp.result_type(x, y)
    return jnp.dot(_as(x, dtype), _as(y, dtype), precision=HIGHEST).astype(dtype)


def outer(x: ArrayLike, y: ArrayLike) -> jax.Array:
    """Outer product of two vectors.

    Args:
      x: vector (n,).
      y: vector (m,).

    Returns:
      The matrix ``x y^T`` of shape (n, m), entry ``[i, j] = x_i y_j``, in the promoted dtype.

    Raises:
      ValueError: if ``x`` or ``y`` is not 1-D.
      TypeError: for integer, boolean or complex inputs.

    Examples:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from jaxla.linalg import outer
      >>> print(np.asarray(outer(jnp.array([1.0, 2.0]), jnp.array([3.0, 4.0, 5.0]))))
      [[ 3.  4.  5.]
       [ 6.  8. 10.]]
    """
    fn = "jaxla.linalg.outer"
    x = _checks.as_float_array(x, fn, "x", ndim=1, doc="(n,)")
    y = _checks.as_float_array(y, fn, "y", ndim=1, doc="(m,)")
    return _outer(x, y)


@jax.jit
def _outer(x: jax.Array, y: jax.Array) -> jax.Array:
    dtype = jnp.result_type(x, y)
    return (_as(x, dtype)[:, None] * _as(y, dtype)[None, :]).astype(dtype)


def safe_norm(
    x: ArrayLike,
    *,
    axis: int | tuple[int, ...] | None = None,
    keepdims: bool = False,
    eps: float | ArrayLike = 0.0,
) -> jax.Array:
    """Euclidean norm ``sqrt(sum(x**2) + eps**2)`` whose gradient is finite everywhere.

    With the default ``eps=0`` the value equals the Euclidean norm exactly (no bias) and the
    gradient at the zero vector is 0 (a valid subgradient); elsewhere it is ``x / ||x||``.
    With ``eps > 0`` the function is the smooth ``sqrt(||x||^2 + eps^2)`` (never below ``eps``).
    Squares are summed directly (as in ``numpy.linalg.norm``), so for float32 the entries'
    magnitudes must lie roughly within [1e-19, 1e19] to avoid underflow/overflow.

    Args:
      x: array of any shape (...).
      axis: axis or axes to reduce; None (default) reduces all of them.
      keepdims: keep the reduced axes with size 1.
      eps: smoothing constant >= 0 (may be traced).

    Returns:
      The norms: shape (...) with the reduced axes removed (or kept with size 1), in ``x``'s
      dtype.

    Raises:
      ValueError: for a bad ``axis`` or a negative ``eps``.
      TypeError: for integer, boolean or complex ``x``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import numpy as np
      >>> from jaxla.linalg import safe_norm
      >>> print(round(float(safe_norm(jnp.array([3.0, 4.0]))), 4))
      5.0
      >>> print(np.asarray(jax.grad(safe_norm)(jnp.zeros(3))))
      [0. 0. 0.]
    """
    fn = "jaxla.linalg.safe_norm"
    x = _checks.as_float_array(x, fn, "x")
    eps = _checks.check_positive(eps, fn, "eps", allow_zero=True)
    axes = _axes(axis, x.ndim, tuple(x.shape), fn)
    return _safe_norm(x, eps, axes, bool(keepdims))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _safe_norm(x: jax.Array, eps: Any, axes: tuple[int, ...], keepdims: bool) -> jax.Array:
    xc = upcast(x)
    s = jnp.sum(xc * xc, axis=axes, keepdims=keepdims)
    s = s + jnp.asarray(eps, s.dtype) ** 2
    return _safe_sqrt(s).astype(x.dtype)


def norm(
    x: ArrayLike,
    ord: int | float | str | None = None,
    *,
    axis: int | tuple[int, int] | None = None,
    keepdims: bool = False,
) -> jax.Array:
    """Vector or matrix norm, matching ``numpy.linalg.norm``, with finite gradients everywhere.

    Which norm:

    * ``axis=None, ord=None``: the Euclidean (Frobenius) norm of all entries, any shape.
    * ``axis=None`` and 1-D ``x``, or an int ``axis``: a vector norm over that axis.
    * ``axis=None`` and 2-D ``x``, or a 2-tuple ``axis=(row_axis, col_axis)``: a matrix norm.

    Vector ``ord``: None or 2 (Euclidean), 1, ``inf`` (max |x_i|), ``-inf`` (min |x_i|),
    0 (number of non-zeros) or any real ``p >= 1`` (``(sum |x_i|^p)^(1/p)``, computed on
    ``x / max|x|`` so it does not overflow). Orders below 1 other than 0 and ``-inf`` are not
    norms and are rejected (numpy accepts them).

    Matrix ``ord``: None or ``'fro'`` (Frobenius), ``'nuc'`` (sum of singular values),
    1 / -1 (max / min column abs-sum), ``inf`` / ``-inf`` (max / min row abs-sum),
    2 / -2 (largest / smallest singular value).

    Gradients (subgradients where the norm is not differentiable): the Euclidean and Frobenius
    norms and the general p-norms have gradient 0 at zero. ``ord=1`` uses ``d|t|/dt = 1`` at
    ``t = 0``; ``inf`` / ``-inf`` / 2 / -2 split the gradient equally between tied maximisers.
    For 2, -2 and ``'nuc'`` the gradient is built from the singular vectors ``u_i, v_i`` the SVD
    returns (``d s_i = u_i^T dA v_i``): ``'nuc'`` gives ``U V^T`` and 2 the average of
    ``u_i v_i^T`` over the tied largest singular values — valid subgradients, finite also at the
    zero matrix.

    Args:
      x: array; see above for the accepted ranks.
      ord: order of the norm (static).
      axis: None, an int (vector norm) or a 2-tuple of ints (matrix norm), static.
      keepdims: keep the reduced axes with size 1.

    Returns:
      The norm(s), ``x``'s shape with the reduced axes removed (or kept with size 1), in
      ``x``'s dtype. Batches of matrices: pass ``axis=(-2, -1)`` or use ``jax.vmap``.

    Raises:
      ValueError: for an unknown ``ord``, a bad ``axis`` or a rank that does not fit.
      TypeError: for integer, boolean or complex ``x``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from jaxla.linalg import norm
      >>> x = jnp.array([[3.0, 0.0], [0.0, -4.0]])
      >>> print([round(float(norm(x, o)), 4) for o in (None, 2, "nuc", 1)])
      [5.0, 4.0, 7.0, 4.0]
      >>> print(np.asarray(norm(x, 1, axis=1)))
      [3. 4.]
    """
    fn = "jaxla.linalg.norm"
    x = _checks.as_float_array(x, fn, "x")
    shape = tuple(x.shape)
    keepdims = bool(keepdims)
    if axis is None:
        if ord is None:
            return _norm(x, 2.0, tuple(range(x.ndim)), keepdims)
        if x.ndim == 1:
            axes = (0,)
        elif x.ndim == 2:
            axes = (0, 1)
        else:
            _checks.fail(
                fn,
                f"`x` must be 1-D or 2-D when `ord` is given and `axis` is None, got shape {shape}",
            )
    else:
        axes = _axes(axis, x.ndim, shape, fn)
        if len(axes) not in (1, 2):
            _checks.fail(fn, f"`axis` must be None, an int or a 2-tuple of ints, got {axis!r}")
    if len(axes) == 1:
        return _norm(x, _vector_ord(ord, fn), axes, keepdims)
    _checks.check_option(ord, _MATRIX_ORDS, fn, "ord")
    return _norm(x, ord, axes, keepdims, True)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _norm(
    x: jax.Array, ord: Any, axes: tuple[int, ...], keepdims: bool, matrix: bool = False
) -> jax.Array:
    if matrix:
        out = _matrix_norm(upcast(x), ord, axes, keepdims)
    else:
        out = _vector_norm(upcast(x), ord, axes, keepdims)
    return out.astype(x.dtype)


def _matrix_norm(x: jax.Array, ord: Any, axes: tuple[int, int], keepdims: bool) -> jax.Array:
    """Matrix norm of ``x`` over ``axes = (row_axis, col_axis)`` (validated by the caller)."""
    ra, ca = axes
    if ord is None or ord == "fro":
        return _vector_norm(x, 2.0, tuple(sorted(axes)), keepdims)
    if ord in ("nuc", 2, -2):
        s = _singular_values(jnp.moveaxis(x, (ra, ca), (-2, -1)))
        if ord == "nuc":
            out = jnp.sum(s, axis=-1)
        elif ord == 2:
            out = jnp.max(s, axis=-1)
        else:
            out = jnp.min(s, axis=-1)
        if keepdims:
            out = jnp.expand_dims(out, tuple(sorted(axes)))
        return out
    # induced 1- and inf-norms: reduce abs-sums over one axis, then max/min over the other
    sum_axis, pick_axis = (ra, ca) if ord in (1, -1) else (ca, ra)
    sums = jnp.sum(jnp.abs(x), axis=sum_axis, keepdims=True)
    pick = jnp.max if ord > 0 else jnp.min
    out = pick(sums, axis=pick_axis, keepdims=True)
    return out if keepdims else jnp.squeeze(out, axis=axes)


def normalize(
    x: ArrayLike,
    *,
    axis: int | None = -1,
    ord: int | float | None = 2,
    eps: float | ArrayLike = 0.0,
) -> jax.Array:
    """Scale vectors to unit norm: ``x / max(||x||_ord, eps)``; zero vectors stay zero.

    With the default ``eps=0`` non-zero vectors get norm exactly 1 (up to rounding) and zero
    vectors are returned as zeros with zero gradient (as ``sklearn.preprocessing.normalize``).
    With ``eps > 0`` vectors shorter than ``eps`` are divided by ``eps`` instead (as
    ``torch.nn.functional.normalize``). The norm is computed on ``x / max|x|``, so the result
    is scale invariant over the whole floating range.

    Args:
      x: array (..., d, ...) with at least one axis.
      axis: the axis holding the vectors (static); None normalises the whole array as one vector.
      ord: 2 (default, also None), 1, ``inf`` or a real ``p >= 1``.
      eps: floor on the norm, >= 0 (may be traced).

    Returns:
      Array of ``x``'s shape and dtype.

    Raises:
      ValueError: for NaN/Inf in ``x`` (eager calls), an unknown ``ord``, a bad ``axis`` or a
        negative ``eps``.
      TypeError: for integer, boolean or complex ``x``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from jaxla.linalg import normalize
      >>> print(np.round(np.asarray(normalize(jnp.array([[3.0, 4.0], [0.0, 0.0]]))), 3))
      [[0.6 0.8]
       [0.  0. ]]
    """
    fn = "jaxla.linalg.normalize"
    x = _checks.as_float_array(x, fn, "x", min_ndim=1)
    p = _vector_ord(ord, fn, allow_zero_and_min=False)
    eps = _checks.check_positive(eps, fn, "eps", allow_zero=True)
    if axis is not None and (isinstance(axis, bool) or not isinstance(axis, numbers.Integral)):
        _checks.fail(fn, f"`axis` must be None or an int, got {axis!r}", TypeError)
    axes = _axes(axis, x.ndim, tuple(x.shape), fn)
    _checks.check_finite(x, fn, "x")
    return _normalize(x, eps, p, axes)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _normalize(x: jax.Array, eps: Any, p: float, axes: tuple[int, ...]) -> jax.Array:
    xc = upcast(x)
    return _unit(xc, axes, p, jnp.asarray(eps, xc.dtype)).astype(x.dtype)


def cosine_similarity(x: ArrayLike, y: ArrayLike | None = None) -> jax.Array:
    """Cosine similarity ``<x, y> / (||x|| ||y||)`` of two vectors or of all pairs of rows.

    Defined everywhere: where either vector is zero the similarity is 0 and its gradient is 0
    (no ``eps`` is involved, so the value is exact and scale invariant elsewhere). Vectors are
    normalised first (after division by ``max|x|``, so any magnitude works in float32) and the
    unit vectors are multiplied at ``precision=HIGHEST``; results are clipped to [-1, 1].

    Args:
      x: vector (d,) or matrix (n, d) of row vectors.
      y: vector (d,) or matrix (m, d), the same rank as ``x``; None compares ``x`` with itself.

    Returns:
      A scalar () for vectors, else the (n, m) matrix (n, n when ``y`` is None) with entry
      ``[i, j] = cos(x_i, y_j)``, in the promoted dtype (as
      ``sklearn.metrics.pairwise.cosine_similarity``).

    Raises:
      ValueError: for NaN/Inf input (eager calls), wrong ranks or mismatched feature counts.
      TypeError: for integer, boolean or complex inputs.

    Examples:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from jaxla.linalg import cosine_similarity
      >>> print(round(float(cosine_similarity(jnp.array([1.0, 0.0]), jnp.array([1.0, 1.0]))), 4))
      0.7071
      >>> print(round(float(cosine_similarity(jnp.array([1.0, 0.0]), jnp.zeros(2))), 4))
      0.0
    """
    fn = "jaxla.linalg.cosine_similarity"
    x, y = _pair(x, y, fn, two_d_only=False)
    return _cosine_similarity(x, y)


@jax.jit
def _cosine_similarity(x: jax.Array, y: jax.Array | None) -> jax.Array:
    dtype = x.dtype if y is None else jnp.result_type(x, y)
    ux = _unit(_as(x, dtype), (x.ndim - 1,))
    uy = ux if y is None else _unit(_as(y, dtype), (x.ndim - 1,))
    c = jnp.dot(ux, uy, precision=HIGHEST) if x.ndim == 1 else matmul(ux, uy.T)
    return jnp.clip(c, -1.0, 1.0).astype(dtype)


def pairwise_distances(
    x: ArrayLike, y: ArrayLike | None = None, *, metric: str = "euclidean"
) -> jax.Array:
    """Distances between all pairs of rows of ``x`` and ``y``.

    Matches ``scipy.spatial.distance.cdist(x, y, metric)`` and
    ``sklearn.metrics.pairwise_distances``:

    * ``"euclidean"``: ``||x_i - y_j||``; ``"sqeuclidean"``: its square. Computed with the
      expansion ``||x_i||^2 + ||y_j||^2 - 2 <x_i, y_j>`` (one matmul) on data centred on the
      mean of all rows (distances are translation invariant; centring removes the cancellation
      that an offset would cause), clamped at 0. The absolute error of a squared distance is
      about ``eps * (||x_i - c||^2 + ||y_j - c||^2)``, so distances between near-coincident
      points are accurate only to about ``sqrt(eps)`` times the data scale. The gradient at zero
      distance is 0 (a valid subgradient) for ``"euclidean"``.
    * ``"cosine"``: ``1 - cos(x_i, y_j)`` clipped to [0, 2]; a zero vector has distance 1 to
      every vector (as scikit-learn; scipy returns NaN).
    * ``"manhattan"``: ``sum_k |x_ik - y_jk|``, by broadcasting (memory O(n m d)).

    When ``y`` is None the diagonal is exactly 0 (as scikit-learn).

    Args:
      x: matrix (n, d) of row vectors.
      y: matrix (m, d) of row vectors; None uses ``x``.
      metric: one of ``"euclidean"``, ``"sqeuclidean"``, ``"cosine"``, ``"manhattan"`` (static).

    Returns:
      The (n, m) distance matrix (n, n when ``y`` is None) in the promoted dtype.

    Raises:
      ValueError: for NaN/Inf input (eager calls), an unknown metric, wrong ranks or mismatched
        feature counts.
      TypeError: for integer, boolean or complex inputs.

    Examples:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from jaxla.linalg import pairwise_distances
      >>> x = jnp.array([[0.0, 0.0], [3.0, 4.0]])
      >>> print(np.round(np.asarray(pairwise_distances(x)), 3))
      [[0. 5.]
       [5. 0.]]
      >>> print(np.round(np.asarray(pairwise_distances(x, metric="manhattan")), 3))
      [[0. 7.]
       [7. 0.]]
    """
    fn = "jaxla.linalg.pairwise_distances"
    _checks.check_option(metric, _METRICS, fn, "metric")
    x, y = _pair(x, y, fn, two_d_only=True)
    return _pairwise_distances(x, y, metric)


@functools.partial(jax.jit, static_argnums=(2,))
def _pairwise_distances(x: jax.Array, y: jax.Array | None, metric: str) -> jax.Array:
    dtype = x.dtype if y is None else jnp.result_type(x, y)
    xc = _as(x, dtype)
    yc = xc if y is None else _as(y, dtype)
    if metric in ("euclidean", "sqeuclidean"):
        if y is None:
            centre = jnp.mean(xc, axis=0)
        else:
            centre = (jnp.sum(xc, axis=0) + jnp.sum(yc, axis=0)) / (xc.shape[0] + yc.shape[0])
        xs = xc - centre[None, :]
        ys = xs if y is None else yc - centre[None, :]
        sx = jnp.sum(xs * xs, axis=1)
        sy = sx if y is None else jnp.sum(ys * ys, axis=1)
        d = jnp.maximum(sx[:, None] + sy[None, :] - 2.0 * matmul(xs, ys.T), 0.0)
        if metric == "euclidean":
            d = _safe_sqrt(d)
    elif metric == "cosine":
        ux = _unit(xc, (1,))
        uy = ux if y is None else _unit(yc, (1,))
        d = jnp.clip(1.0 - matmul(ux, uy.T), 0.0, 2.0)
    else:
        d = jnp.sum(jnp.abs(xc[:, None, :] - yc[None, :, :]), axis=-1)
    if y is None:
        d = jnp.where(jnp.eye(d.shape[0], dtype=bool), jnp.zeros_like(d), d)
    return d.astype(dtype)


def project(
    x: ArrayLike, onto: ArrayLike, *, rcond: float | ArrayLike | None = None
) -> jax.Array:
    """Orthogonal projection of a vector onto a vector or onto the column space of a matrix.

    * ``onto`` a vector v (d,): ``(<x, v> / <v, v>) v``; a zero ``v`` spans nothing, so the
      projection is 0 (with zero gradient with respect to ``v``).
    * ``onto`` a matrix A (d, k): ``A A^+ x``, the closest point to ``x`` in ``range(A)``.
      The columns need not be independent: the projection uses the left singular vectors of
      ``A`` whose singular values exceed ``rcond * s_max`` (the numerical rank, as
      ``numpy.linalg.matrix_rank``). Derivatives with respect to ``A`` are those of the
      constant-rank projector ``dP = (I - P) dA A^+ + (A^+)^T dA^T (I - P)``, finite also when
      singular values repeat (e.g. orthonormal columns).

    For a batch of vectors use ``jax.vmap(project, in_axes=(0, None))``.

    Args:
      x: vector (d,).
      onto: vector (d,) or matrix (d, k).
      rcond: relative cut-off for the rank of a matrix ``onto``; None means
        ``max(d, k) * eps(dtype)``. Ignored for a vector ``onto``.

    Returns:
      The projection, shape (d,), in the promoted dtype.

    Raises:
      ValueError: for NaN/Inf input (eager calls), wrong ranks, mismatched lengths or a
        negative ``rcond``.
      TypeError: for integer, boolean or complex inputs.

    Examples:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> from jaxla.linalg import project
      >>> x = jnp.array([1.0, 2.0, 3.0])
      >>> print(np.round(np.asarray(project(x, jnp.array([0.0, 0.0, 2.0]))), 3))
      [0. 0. 3.]
      >>> basis = jnp.array([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
      >>> print(np.round(np.asarray(project(x, basis)), 3))
      [1. 2. 0.]
    """
    fn = "jaxla.linalg.project"
    x = _checks.as_float_array(x, fn, "x", ndim=1, doc="(d,)")
    onto = _checks.as_float_array(onto, fn, "onto", ndim=(1, 2), doc="(d,) or (d, k)")
    d = x.shape[0]
    if onto.shape[0] != d:
        what = f"length d={d}" if onto.ndim == 1 else f"d={d} rows"
        _checks.fail(
            fn,
            f"`onto` must have {what} to match `x` of shape {tuple(x.shape)}, "
            f"got shape {tuple(onto.shape)}",
        )
    if rcond is not None:
        rcond = _checks.check_positive(rcond, fn, "rcond", allow_zero=True)
    _checks.check_finite(x, fn, "x")
    _checks.check_finite(onto, fn, "onto")
    return _project(x, onto, rcond)


@jax.jit
def _project(x: jax.Array, onto: jax.Array, rcond: Any) -> jax.Array:
    dtype = jnp.result_type(x, onto)
    xc, oc = _as(x, dtype), _as(onto, dtype)
    if onto.ndim == 1:
        u = _unit(oc, (0,))
        return (jnp.dot(xc, u, precision=HIGHEST) * u).astype(dtype)
    rtol = _default_rtol(tuple(onto.shape), oc.dtype) if rcond is None else rcond
    return _project_columns(xc, oc, jnp.asarray(rtol, oc.dtype)).astype(dtype)

