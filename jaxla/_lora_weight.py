"""The weight of a low-rank-adapted layer, ``W + scale * A B``, kept factored.

:class:`LoRAWeight` lives in this small private module so that both :mod:`jaxla.lora` (which
builds it) and :mod:`jaxla.nn` (whose dense and attention layers consume it) can import it
without importing each other. Users reach it as ``jaxla.lora.LoRAWeight``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxla import _checks
from jaxla._numerics import matmul

__all__ = ["LoRAWeight", "dense_product", "table_rows", "table_slice", "transposed_product"]


class LoRAWeight:
    """A (d_in, d_out) weight ``w`` adapted by ``scale * a @ b``, applied without forming ``a @ b``.

    A pytree node: ``w`` (d_in, d_out), ``a`` (d_in, r), ``b`` (r, d_out) and the optional dropout
    ``key`` are its children (so ``jax.grad``, ``jit``, ``vmap`` and optax see them as leaves);
    ``scale`` and ``dropout_rate`` are static Python floats. ``x @ weight`` computes
    ``x @ w + scale * (dropout(x) @ a) @ b`` at ``precision=HIGHEST``, as do the dense, MLP, GLU and
    attention layers of :mod:`jaxla.nn` when they find a ``LoRAWeight`` where a weight is
    expected. ``shape``, ``ndim`` and ``dtype`` are those of ``w``, so shape checks written for
    plain weights keep working.

    Dropout, when ``dropout_rate > 0`` and a ``key`` is attached, zeroes entries of the input of
    the ``a`` path with probability ``dropout_rate`` and rescales the others by
    ``1 / (1 - dropout_rate)``; the ``w`` path always sees the whole input.

    The constructor does not validate its arguments (it also runs on tracers and placeholders
    inside JAX transformations); :func:`jaxla.lora.apply` builds checked instances.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.lora import LoRAWeight
        >>> w, a, b = jnp.eye(3), jnp.ones((3, 1)), jnp.ones((1, 3))
        >>> lw = LoRAWeight(w, a, b, scale=0.5)
        >>> x = jnp.array([[1.0, 2.0, 3.0]])
        >>> np.asarray(x @ lw).tolist()  # x w + 0.5 (x a) b, without forming a b
        [[4.0, 5.0, 6.0]]
        >>> lw.shape, lw.rank
        ((3, 3), 1)
    """

    __slots__ = ("a", "b", "dropout_rate", "key", "scale", "w")
    __array_ufunc__ = None  # numpy defers ``ndarray @ LoRAWeight`` to __rmatmul__

    def __init__(
        self,
        w: Any,
        a: Any,
        b: Any,
        scale: float = 1.0,
        *,
        key: Any = None,
        dropout_rate: float = 0.0,
    ) -> None:
        self.w = w
        self.a = a
        self.b = b
        self.scale = float(scale)
        self.key = key
        self.dropout_rate = float(dropout_rate)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of ``w``: (d_in, d_out)."""
        return tuple(self.w.shape)

    @property
    def ndim(self) -> int:
        """Number of axes of ``w`` (2)."""
        return len(self.w.shape)

    @property
    def dtype(self) -> Any:
        """Dtype of ``w``."""
        return self.w.dtype

    @property
    def rank(self) -> int:
        """Rank ``r`` of the adapter (columns of ``a``)."""
        return int(self.a.shape[-1])

    def __repr__(self) -> str:
        def desc(x: Any) -> str:
            return f"{getattr(x, 'dtype', type(x).__name__)}{list(getattr(x, 'shape', ()))}"

        drop = f", dropout_rate={self.dropout_rate}" if self.dropout_rate else ""
        return (
            f"LoRAWeight(w={desc(self.w)}, a={desc(self.a)}, b={desc(self.b)}, "
            f"scale={self.scale}{drop})"
        )

    def apply(self, x: Any, cdt: Any = None) -> jax.Array:
        """``x @ w + scale * (dropout(x) @ a) @ b`` in the compute dtype ``cdt``.

        ``cdt`` defaults to the common dtype of ``x`` and ``w`` (float16/bfloat16 upcast to
        float32); the result is left in ``cdt``.
        """
        x = jnp.asarray(x)
        if cdt is None:
            cdt = _checks.compute_dtype(jnp.result_type(x, self.w))
        x = x.astype(cdt)
        y = matmul(x, self.w.astype(cdt))
        xa = x
        if self.key is not None and self.dropout_rate > 0.0:
            keep = 1.0 - self.dropout_rate
            mask = jax.random.bernoulli(self.key, keep, x.shape)
            xa = jnp.where(mask, x / jnp.asarray(keep, cdt), jnp.zeros((), cdt))
        low = matmul(matmul(xa, self.a.astype(cdt)), self.b.astype(cdt))
        return y + jnp.asarray(self.scale, cdt) * low

    def __rmatmul__(self, x: Any) -> jax.Array:
        x = jnp.asarray(x)
        dtype = jnp.result_type(x, self.w)
        return self.apply(x, _checks.compute_dtype(dtype)).astype(dtype)


def _flatten_with_keys(lw: LoRAWeight):
    children = tuple((jax.tree_util.GetAttrKey(n), getattr(lw, n)) for n in ("w", "a", "b", "key"))
    return children, (lw.scale, lw.dropout_rate)


def _unflatten(aux: tuple[float, float], children: Any) -> LoRAWeight:
    # No validation: optax and tree utilities rebuild nodes with placeholders as children.
    lw = object.__new__(LoRAWeight)
    lw.w, lw.a, lw.b, lw.key = children
    lw.scale, lw.dropout_rate = aux
    return lw


jax.tree_util.register_pytree_with_keys(
    LoRAWeight,
    _flatten_with_keys,
    _unflatten,
    flatten_func=lambda lw: ((lw.w, lw.a, lw.b, lw.key), (lw.scale, lw.dropout_rate)),
)


def dense_product(x: jax.Array, w: Any, cdt: Any) -> jax.Array:
    """``x @ w`` in ``cdt`` at ``precision=HIGHEST``; a :class:`LoRAWeight` is applied factored."""
    if isinstance(w, LoRAWeight):
        return w.apply(x, cdt)
    return matmul(x.astype(cdt), w.astype(cdt))


def _adapted_rows(table: Any, take: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """``take(table)`` for a row selection ``take``; for a :class:`LoRAWeight`,
    ``take(w) + scale * take(a) @ b`` (the selected rows of ``w + scale * a @ b``)."""
    if not isinstance(table, LoRAWeight):
        return take(table)
    cdt = _checks.compute_dtype(jnp.dtype(table.dtype))
    low = matmul(take(table.a).astype(cdt), table.b.astype(cdt))
    return (take(table.w).astype(cdt) + jnp.asarray(table.scale, cdt) * low).astype(table.dtype)


def table_rows(table: Any, tokens: jax.Array) -> jax.Array:
    """``table[tokens]`` (rows, NaN for an out-of-range id), in the dtype of ``table``.

    A :class:`LoRAWeight` table gives ``w[tokens] + scale * a[tokens] @ b``: an embedding lookup
    is the product ``one_hot(tokens) @ table``, so this is the adapted table's lookup without
    forming ``a @ b``. The adapter's dropout does not apply (the input is token ids).
    """
    return _adapted_rows(
        table, lambda t: jnp.take(t, tokens, axis=0, mode="fill", fill_value=jnp.nan))


def table_slice(table: Any, start: Any, size: int) -> jax.Array:
    """Rows ``start .. start + size - 1`` of ``table`` (``lax.dynamic_slice`` semantics: the
    start is clamped so that the rows exist), in the dtype of ``table``; a :class:`LoRAWeight`
    table gives those rows of ``w + scale * a @ b`` without forming ``a @ b``."""
    start = jnp.asarray(start, jnp.int32)
    return _adapted_rows(table, lambda t: jax.lax.dynamic_slice_in_dim(t, start, size, axis=0))


def transposed_product(x: jax.Array, table: Any, cdt: Any) -> jax.Array:
    """``x @ table.T`` in ``cdt`` at ``precision=HIGHEST``; a :class:`LoRAWeight` table gives
    ``x @ w.T + scale * (x @ b.T) @ a.T`` (no dropout), without forming ``a @ b``."""
    x = x.astype(cdt)
    if not isinstance(table, LoRAWeight):
        return matmul(x, table.astype(cdt).T)
    low = matmul(matmul(x, table.b.astype(cdt).T), table.a.astype(cdt).T)
    return matmul(x, table.w.astype(cdt).T) + jnp.asarray(table.scale, cdt) * low
