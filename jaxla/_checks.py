"""Input validation shared by every public function of jaxla.

Every helper takes ``fn``, the public name of the calling function (``"jaxla.linalg.svd"``), and the
argument's name, so that every message reads the same way::

    jaxla.linalg.svd: `a` must be 2-D (m, n), got shape (5,)

Static checks (rank, shape, dtype, options, integer sizes) depend only on shapes and Python values,
so they run at trace time and raise under ``jax.jit`` too. Value checks (NaN/Inf) need concrete
numbers: they raise when called eagerly and are skipped on tracers, where the caller reports the
problem through its result (a flag, a status) or through ``jax.experimental.checkify``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "as_float_array",
    "check_bool",
    "check_finite",
    "check_float_dtype",
    "check_int",
    "check_key",
    "check_ndim",
    "check_option",
    "check_positive",
    "check_same_shape",
    "check_square",
    "compute_dtype",
    "fail",
    "is_concrete",
    "shape_of",
]


def fail(fn: str, message: str, exc: type[Exception] = ValueError) -> NoReturn:
    """Raise ``exc`` with the message ``"{fn}: {message}"``."""
    raise exc(f"{fn}: {message}")


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds concrete values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def shape_of(x: Any) -> tuple[int, ...]:
    """``x``'s shape as a tuple of Python ints (for messages and static shape logic)."""
    return tuple(int(d) for d in np.shape(x))





def check_bool(value: Any, fn: str, name: str) -> bool:
    """Require a Python (or numpy) bool; return it as a Python bool."""
    if not isinstance(value, bool | np.bool_):
        fail(fn, f"`{name}` must be a Python bool, got {value!r}", TypeError)
    return bool(value)


def check_key(key: Any, fn: str, name: str = "key") -> None:
    """Require one PRNG key: a typed key (``jax.random.key``) or a raw uint32 (2,) key."""
    ok = False
    if isinstance(key, jax.Array | np.ndarray):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            ok = key.ndim == 0
        else:
            ok = key.dtype == np.uint32 and tuple(key.shape) == (2,)
    if not ok:
        got = "None" if key is None else f"{type(key).__name__} {getattr(key, 'shape', '')}".strip()
        fail(fn, f"`{name}` must be a JAX random key such as jax.random.key(0), got {got}",
             TypeError)


def check_float_dtype(dtype: Any, fn: str, name: str = "dtype") -> jnp.dtype:
    """Require a floating dtype (anything ``jnp.dtype`` accepts); return it."""
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        fail(fn, f"`{name}` must be a floating dtype, got {dtype!r}", TypeError)
    if not jnp.issubdtype(dt, jnp.floating):
        fail(fn, f"`{name}` must be a floating dtype, got {dt}", TypeError)
    return dt


def check_ndim(x: Any, fn: str, name: str, ndim: int | Sequence[int], doc: str = "") -> None:
    """Require ``x.ndim`` to be ``ndim`` (or one of several); ``doc`` names the axes."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    shape = shape_of(x)
    if len(shape) not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        fail(fn, f"`{name}` must be {want}{' ' + doc if doc else ''}, got shape {shape}")


def as_float_array(
    x: Any,
    fn: str,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    doc: str = "",
    min_ndim: int | None = None,
) -> jax.Array:
    """Convert ``x`` to a JAX array and require a floating dtype (and optionally a rank).

    Integer and boolean inputs raise ``TypeError``: jaxla never guesses which float precision a
    user wants. Complex inputs are rejected too (jaxla's linear algebra is real).
    """
    arr = x if isinstance(x, jax.Array) else jnp.asarray(x)
    dtype = jnp.result_type(arr)
    if not jnp.issubdtype(dtype, jnp.floating):
        kind = "complex" if jnp.issubdtype(dtype, jnp.complexfloating) else "integer or boolean"
        fail(
            fn,
            f"`{name}` must have a real floating dtype, got {kind} dtype {dtype}; "
            f"cast it first, e.g. {name}.astype(jnp.float32)",
            TypeError,
        )
    if ndim is not None:
        check_ndim(arr, fn, name, ndim, doc)
    if min_ndim is not None and arr.ndim < min_ndim:
        fail(
            fn,
            f"`{name}` must have at least {min_ndim} dimensions{' ' + doc if doc else ''}, "
            f"got shape {shape_of(arr)}",
        )
    return arr


def check_square(a: Any, fn: str, name: str) -> None:
    """Require the last two axes of ``a`` to be equal."""
    shape = shape_of(a)
    if len(shape) < 2 or shape[-1] != shape[-2]:
        fail(fn, f"`{name}` must be a square matrix (n, n), got shape {shape}")


def check_same_shape(a: Any, b: Any, fn: str, names: tuple[str, str]) -> None:
    """Require ``a`` and ``b`` to have identical shapes."""
    sa, sb = shape_of(a), shape_of(b)
    if sa != sb:
        fail(fn, f"`{names[0]}` and `{names[1]}` must have the same shape, got {sa} and {sb}")


def check_int(
    value: Any,
    fn: str,
    name: str,
    *,
    min: int | None = None,
    max: int | None = None,
    max_doc: str | None = None,
) -> int:
    """Require a static Python integer in ``[min, max]`` and return it as ``int``.

    ``max_doc`` explains where the upper bound comes from, e.g. ``"min(m, n)"``, so the message
    reads ``rank=70 exceeds min(m, n)=64``.
    """
    if isinstance(value, jax.core.Tracer):
        fail(
            fn,
            f"`{name}` sets a shape and must be a static Python int, got a traced value; "
            f"mark it static (jax.jit(..., static_argnames=('{name}',)))",
            TypeError,
        )
    if isinstance(value, bool) or not isinstance(value, numbers.Integral | np.integer):
        if isinstance(value, np.ndarray | jax.Array) and np.ndim(value) == 0 and np.issubdtype(
            np.asarray(value).dtype, np.integer
        ):
            value = int(value)
        else:
            fail(fn, f"`{name}` must be an int, got {value!r} ({type(value).__name__})", TypeError)
    value = int(value)
    if min is not None and value < min:
        fail(fn, f"`{name}` must be >= {min}, got {value}")
    if max is not None and value > max:
        bound = f"{max_doc}={max}" if max_doc else str(max)
        fail(fn, f"`{name}`={value} exceeds {bound}")
    return value


def check_positive(value: Any, fn: str, name: str, *, allow_zero: bool = False) -> float:
    """Require a finite real number > 0 (or >= 0) and return it as ``float``."""
    if isinstance(value, jax.core.Tracer):
        return value  # traced hyper-parameters are allowed; nothing static to check
    try:
        v = float(value)
    except (TypeError, ValueError):
        fail(fn, f"`{name}` must be a real number, got {value!r}", TypeError)
    ok = v >= 0 if allow_zero else v > 0
    if not (ok and math.isfinite(v)):
        fail(fn, f"`{name}` must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")
    return v


def check_option(value: Any, allowed: Iterable[Any], fn: str, name: str) -> Any:
    """Require ``value`` to be one of ``allowed`` (used for string options)."""
    allowed = tuple(allowed)
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        fail(fn, f"`{name}` must be one of {choices}, got {value!r}")
    return value


@jax.jit
def _count_nonfinite(a: jax.Array) -> jax.Array:
    return jnp.sum(~jnp.isfinite(a))


def check_finite(x: Any, fn: str, name: str) -> None:
    """Raise when a concrete ``x`` (array or pytree of arrays) holds NaN or Inf.

    Skipped on tracers: under ``jit`` the caller reports non-finite values through its result.
    An array sharded over several processes is counted on its devices (this process cannot read
    all its values).
    """
    for leaf in jax.tree_util.tree_leaves(x):
        if not is_concrete(leaf):
            return
        dtype = leaf.dtype if hasattr(leaf, "dtype") else np.result_type(leaf)
        if not np.issubdtype(dtype, np.inexact):
            continue
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            bad = int(_count_nonfinite(leaf))
        else:
            arr = np.asarray(leaf)
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        if bad:
            fail(fn, f"`{name}` contains {bad} NaN or Inf value(s); clean or mask them first")


def compute_dtype(dtype: Any) -> jnp.dtype:
    """The dtype jaxla computes in for ``dtype``: float16/bfloat16 are upcast to float32."""
    dtype = jnp.dtype(dtype)
    if jnp.finfo(dtype).bits < 32:
        return jnp.dtype(jnp.float32)
    return dtype
