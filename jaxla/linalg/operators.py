"""Matrix-free linear operators: a matrix given by its products with blocks of vectors.

A :class:`LinearOperator` stands for an ``(m, n)`` matrix ``A`` that is never formed: it is known
only through ``matmat(X) = A @ X`` for ``X`` of shape ``(n, b)`` and ``rmatmat(Y) = A.T @ Y`` for
``Y`` of shape ``(m, b)``. Randomized SVD, PCA and curvature code accept such operators wherever
they accept a dense matrix, so a centred data matrix, a product of factors or a Jacobian can be
used without materialising it.

Dimension letters: ``m`` rows, ``n`` columns, ``b`` columns of a block of vectors.

Operators are pytrees with no array leaves: ``shape``, ``dtype`` and the two callables are static
(hashed by identity under ``jax.jit``). Build operators inside the function you jit, closing over
traced arrays, so that their data is not baked into the compiled program as constants.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxla import _checks
from jaxla._numerics import matmul

__all__ = ["LinearOperator", "aslinearoperator", "centered"]


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=[],
    meta_fields=["shape", "dtype", "matmat", "rmatmat"],
)
@dataclasses.dataclass(frozen=True)
class LinearOperator:
    """An ``(m, n)`` matrix ``A`` given by its action on blocks of vectors.

    Attributes:
        shape: ``(m, n)``, static Python ints.
        dtype: the dtype of the matrix entries (products are computed in
            ``jaxla._checks.compute_dtype(dtype)``: float16/bfloat16 are upcast to float32).
        matmat: ``X (n, b) -> A @ X (m, b)``.
        rmatmat: ``Y (m, b) -> A.T @ Y (n, b)``.

    The callables must be pure JAX functions (they are traced). :func:`aslinearoperator`
    checks their output shapes at trace time.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.linalg import LinearOperator
        >>> d = jnp.array([1.0, 2.0, 3.0])
        >>> op = LinearOperator((3, 3), d.dtype, lambda x: d[:, None] * x, lambda y: d[:, None] * y)
        >>> np.round(np.asarray(op.matvec(jnp.ones(3)), np.float64), 3)
        array([1., 2., 3.])
        >>> op.T.shape
        (3, 3)
    """

    shape: tuple[int, int]
    dtype: Any
    matmat: Callable[[jax.Array], jax.Array]
    rmatmat: Callable[[jax.Array], jax.Array]

    @property
    def ndim(self) -> int:
        """Always 2."""
        return 2

    @property
    def T(self) -> LinearOperator:
        """The transposed ``(n, m)`` operator (``matmat`` and ``rmatmat`` swapped)."""
        return LinearOperator((self.shape[1], self.shape[0]), self.dtype, self.rmatmat, self.matmat)

    def matvec(self, x: jax.Array) -> jax.Array:
        """``A @ x`` for a vector ``x`` of shape ``(n,)``; returns shape ``(m,)``."""
        return self.matmat(x[:, None])[:, 0]

    def rmatvec(self, y: jax.Array) -> jax.Array:
        """``A.T @ y`` for a vector ``y`` of shape ``(m,)``; returns shape ``(n,)``."""
        return self.rmatmat(y[:, None])[:, 0]


def _dense_operator(a: jax.Array) -> LinearOperator:
    """The operator of a dense ``(m, n)`` array (products at HIGHEST precision)."""

    def mm(x):
        return matmul(a, x)

    def rmm(y):
        return matmul(a.T, y)

    return LinearOperator(tuple(int(d) for d in a.shape), jnp.dtype(a.dtype), mm, rmm)


def _check_operator(op: LinearOperator, fn: str, name: str) -> LinearOperator:
    """Validate shape, dtype and the output shapes of ``op``'s callables (``jax.eval_shape``)."""
    shape = op.shape
    if (
        not isinstance(shape, tuple | list)
        or len(shape) != 2
        or not all(isinstance(d, int | np.integer) and not isinstance(d, bool) for d in shape)
        or any(int(d) < 0 for d in shape)
    ):
        _checks.fail(fn, f"`{name}.shape` must be a pair of ints (m, n) >= 0, got {shape!r}")
    m, n = (int(d) for d in shape)
    try:
        dtype = jnp.dtype(op.dtype)
    except TypeError:
        _checks.fail(fn, f"`{name}.dtype` must be a floating dtype, got {op.dtype!r}", TypeError)
    if not jnp.issubdtype(dtype, jnp.floating):
        _checks.fail(fn, f"`{name}.dtype` must be a real floating dtype, got {dtype}", TypeError)
    for attr, (rows_in, rows_out), (din, dout) in (
        ("matmat", (n, m), ("n", "m")),
        ("rmatmat", (m, n), ("m", "n")),
    ):
        f = getattr(op, attr)
        if not callable(f):
            _checks.fail(fn, f"`{name}.{attr}` must be callable, got {f!r}", TypeError)
        probe = jax.ShapeDtypeStruct((rows_in, 2), _checks.compute_dtype(dtype))
        out = jax.eval_shape(f, probe)
        out_shape = tuple(getattr(out, "shape", ()))
        if out_shape != (rows_out, 2):
            _checks.fail(
                fn,
                f"`{name}.{attr}` must map an ({din}, b)=({rows_in}, 2) array to "
                f"({dout}, b)=({rows_out}, 2), got shape {out_shape}",
            )
        if not jnp.issubdtype(out.dtype, jnp.floating):
            _checks.fail(
                fn, f"`{name}.{attr}` must return a real floating array, got dtype {out.dtype}",
                TypeError,
            )
    if (m, n) != tuple(shape) or dtype != op.dtype:
        op = LinearOperator((m, n), dtype, op.matmat, op.rmatmat)
    return op


def _as_operator(a: Any, fn: str, name: str) -> LinearOperator:
    """``a`` (dense 2-D float array or LinearOperator) as a validated LinearOperator."""
    if isinstance(a, LinearOperator):
        return _check_operator(a, fn, name)
    arr = _checks.as_float_array(a, fn, name, ndim=2, doc="(m, n)")
    return _dense_operator(arr)


def _centered_operator(op: LinearOperator, mean: jax.Array) -> LinearOperator:
    """``A - 1 mean^T`` without forming it; ``mean`` has shape ``(n,)``."""

    def mm(x):
        # (A - 1 mean^T) X = A X - 1 (mean^T X)
        return op.matmat(x) - matmul(mean[None, :], x)

    def rmm(y):
        # (A - 1 mean^T)^T Y = A^T Y - mean (1^T Y)
        return op.rmatmat(y) - mean[:, None] * jnp.sum(y, axis=0)[None, :]

    return LinearOperator(op.shape, op.dtype, mm, rmm)


def _check_mean(mean: Any, n: int, dtype: Any, fn: str, name: str) -> jax.Array:
    """Validate a centring vector of shape ``(n,)`` and cast it to the computation dtype."""
    mean = _checks.as_float_array(mean, fn, name, ndim=1, doc="(n,)")
    if mean.shape != (n,):
        _checks.fail(fn, f"`{name}` must have shape (n,)=({n},), got shape {tuple(mean.shape)}")
    return mean.astype(_checks.compute_dtype(dtype))


def aslinearoperator(a: jax.Array | LinearOperator) -> LinearOperator:
    """Return ``a`` as a :class:`LinearOperator`, checking its shapes.

    Args:
        a: a dense ``(m, n)`` float array, or a :class:`LinearOperator`.

    Returns:
        A :class:`LinearOperator` of shape ``(m, n)``. For a dense array, ``matmat`` and
        ``rmatmat`` are ``a @ X`` and ``a.T @ Y`` at ``precision=HIGHEST``; an operator is returned
        unchanged after validation.

    Raises:
        ValueError: ``a`` is not 2-D, or ``matmat``/``rmatmat`` return the wrong shape (checked at
            trace time with ``jax.eval_shape`` on an ``(n, 2)`` / ``(m, 2)`` block).
        TypeError: integer/complex dtype, or non-callable ``matmat``/``rmatmat``.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.linalg import aslinearoperator
        >>> op = aslinearoperator(jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
        >>> op.shape
        (3, 2)
        >>> np.round(np.asarray(op.rmatvec(jnp.ones(3)), np.float64), 3)
        array([ 9., 12.])
    """
    return _as_operator(a, "jaxla.linalg.aslinearoperator", "a")


def centered(op_or_array: jax.Array | LinearOperator, mean: jax.Array) -> LinearOperator:
    """The operator of ``A - 1 mean^T`` (``mean`` subtracted from every row), never formed.

    Implicit centring: ``(A - 1 mean^T) X = A X - 1 (mean^T X)`` and
    ``(A - 1 mean^T)^T Y = A^T Y - mean (1^T Y)``, so a centred ``(m, n)`` data matrix costs no
    extra memory. In finite precision the two terms of each product are formed separately, so when
    ``|mean|`` is much larger than the spread of the rows the result carries an absolute rounding
    error of about ``eps * |mean| * |X|`` (explicit centring has ``eps * |A - 1 mean^T| * |X|``).

    Args:
        op_or_array: a dense ``(m, n)`` float array or an ``(m, n)`` :class:`LinearOperator`.
        mean: shape ``(n,)``, the vector subtracted from every row (cast to the operator's
            computation dtype).

    Returns:
        A :class:`LinearOperator` of shape ``(m, n)``.

    Raises:
        ValueError: ``mean`` does not have shape ``(n,)``, or the operator is invalid.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.linalg import centered
        >>> a = jnp.array([[1.0, 2.0], [3.0, 6.0]])
        >>> op = centered(a, a.mean(axis=0))
        >>> np.round(np.asarray(op.matmat(jnp.eye(2)), np.float64), 3)
        array([[-1., -2.],
               [ 1.,  2.]])
    """
    fn = "jaxla.linalg.centered"
    op = _as_operator(op_or_array, fn, "op_or_array")
    mean = _check_mean(mean, op.shape[1], op.dtype, fn, "mean")
    return _centered_operator(op, mean)
