"""Weight initializers: ``init(key, shape, dtype=jnp.float32) -> array``, with explicit keys.

Every initializer here is a plain function of a PRNG key, a static shape and a floating dtype
(no factory to call first), so it can be passed wherever an initializer is expected, e.g.
``dense_init(key, 3, 4, w_init=he_uniform)``; set a hyper-parameter with ``functools.partial``
(``functools.partial(normal, stddev=0.02)``).

Fans (:func:`compute_fans`) follow the layouts of jaxla's layers and of
``jax.nn.initializers``: the last axis is the output axis, the one before it the input axis, and
any leading axes form the receptive field of a convolution::

    dense   (d_in, d_out)               fan_in = d_in,             fan_out = d_out
    conv2d  (kh, kw, c_in, c_out)       fan_in = kh * kw * c_in,   fan_out = kh * kw * c_out

The variance-scaling initializers draw zero-mean values with variance ``scale / n``:

=================  =========================  ==========  ===============================
initializer        n                          scale       distribution
=================  =========================  ==========  ===============================
``glorot_normal``  ``(fan_in + fan_out) / 2``  1           normal truncated to 2 std. dev.
``glorot_uniform`` ``(fan_in + fan_out) / 2``  1           uniform on ``[-a, a]``
``he_normal``      ``fan_in``                 2           normal truncated to 2 std. dev.
``he_uniform``     ``fan_in``                 2           uniform on ``[-a, a]``
``lecun_normal``   ``fan_in``                 1           normal truncated to 2 std. dev.
``lecun_uniform``  ``fan_in``                 1           uniform on ``[-a, a]``
=================  =========================  ==========  ===============================

with ``a = sqrt(3 * scale / n)``; the truncated normals are rescaled so that their variance is
exactly ``scale / n`` (as in ``jax.nn.initializers``, whose initializers of the same names draw
the same numbers from the same key in float32 and float64). float16/bfloat16 weights are drawn
in float32 and rounded.

References:
    Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
    networks", AISTATS 2010.
    He et al., "Delving deep into rectifiers", ICCV 2015.
    LeCun et al., "Efficient BackProp", 1998; Klambauer et al., "Self-normalizing neural
    networks", NeurIPS 2017.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxla import _checks

__all__ = [
    "Initializer",
    "compute_fans",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "ones",
    "zeros",
]

_MODULE = "jaxla.nn"

Initializer = Callable[..., jax.Array]
"""``init(key, shape, dtype=jnp.float32) -> array`` of shape ``shape`` and dtype ``dtype``."""

# Standard deviation of a standard normal truncated to [-2, 2].
_TRUNCATED_STD = 0.87962566103423978


def _check_shape(shape: Any, fn: str, *, min_ndim: int = 0) -> tuple[int, ...]:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, Sequence) or isinstance(shape, str):
        _checks.fail(
            fn, f"`shape` must be a tuple of ints, got {shape!r} ({type(shape).__name__})",
            TypeError,
        )
    dims = tuple(_checks.check_int(d, fn, f"shape[{i}]", min=1) for i, d in enumerate(shape))
    if len(dims) < min_ndim:
        _checks.fail(
            fn,
            f"`shape` must have at least {min_ndim} axes (..., fan_in, fan_out) to define fans, "
            f"got {dims}",
        )
    return dims


def compute_fans(shape: Sequence[int]) -> tuple[int, int]:
    """Fan-in and fan-out of a weight of shape ``(*receptive_field, d_in, d_out)``.

    Args:
        shape: Weight shape with at least 2 axes: ``(d_in, d_out)`` for a dense layer,
            ``(kh, kw, c_in, c_out)`` for a 2-D convolution (HWIO).

    Returns:
        ``(fan_in, fan_out) = (d_in * r, d_out * r)`` with ``r`` the product of the leading
        (receptive-field) axes, 1 for a dense weight.

    Raises:
        TypeError: a shape that is not a tuple of ints.
        ValueError: fewer than 2 axes, or an axis below 1.

    Examples:
        >>> from jaxla.nn import compute_fans
        >>> compute_fans((64, 10)), compute_fans((3, 3, 16, 32))
        ((64, 10), (144, 288))
    """
    dims = _check_shape(shape, f"{_MODULE}.compute_fans", min_ndim=2)
    receptive = math.prod(dims[:-2])
    return dims[-2] * receptive, dims[-1] * receptive


def _variance_scaling(
    name: str, key: Any, shape: Any, dtype: Any, scale: float, mode: str, distribution: str
) -> jax.Array:
    fn = f"{_MODULE}.{name}"
    dims = _check_shape(shape, fn, min_ndim=2)
    dt = _checks.check_float_dtype(dtype, fn)
    receptive = math.prod(dims[:-2])
    fan_in, fan_out = dims[-2] * receptive, dims[-1] * receptive
    n = fan_in if mode == "fan_in" else (fan_in + fan_out) / 2
    return _draw(key, dims, dt, np.asarray(scale / n, _checks.compute_dtype(dt)), distribution)


@functools.partial(jax.jit, static_argnums=(1, 2, 4))
def _draw(key, dims, dt, variance, distribution):
    """Zero-mean draw of variance ``variance``: truncated normal (rescaled) or uniform.

    ``variance`` is traced, so initializers of one distribution share a compiled program per
    shape.
    """
    cdt = _checks.compute_dtype(dt)
    variance = variance.astype(cdt)
    if distribution == "normal":
        std = jnp.sqrt(variance) / jnp.asarray(_TRUNCATED_STD, cdt)
        w = jax.random.truncated_normal(key, -2, 2, dims, cdt) * std
    else:
        w = jax.random.uniform(key, dims, cdt, -1) * jnp.sqrt(3 * variance)
    return w.astype(dt)


def glorot_normal(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """Glorot (Xavier) normal: variance ``2 / (fan_in + fan_out)``, truncated at 2 std. dev.

    Args:
        key: PRNG key.
        shape: ``(*receptive_field, d_in, d_out)``, at least 2 axes (see :func:`compute_fans`).
        dtype: Floating dtype of the result.

    Returns:
        Array of shape ``shape``: zero mean, variance ``2 / (fan_in + fan_out)``, values within
        ``2 / 0.8796`` standard deviations.

    Examples:
        >>> import jax
        >>> from jaxla.nn import glorot_normal
        >>> w = glorot_normal(jax.random.key(0), (300, 200))
        >>> w.shape, round(float(w.var() * (300 + 200) / 2), 1)
        ((300, 200), 1.0)
    """
    return _variance_scaling("glorot_normal", key, shape, dtype, 1.0, "fan_avg", "normal")


def glorot_uniform(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """Glorot (Xavier) uniform on ``[-a, a]``, ``a = sqrt(6 / (fan_in + fan_out))``.

    Args:
        key: PRNG key.
        shape: ``(*receptive_field, d_in, d_out)``, at least 2 axes (see :func:`compute_fans`).
        dtype: Floating dtype of the result.

    Returns:
        Array of shape ``shape``: zero mean, variance ``2 / (fan_in + fan_out)``.

    Examples:
        >>> import jax
        >>> from jaxla.nn import glorot_uniform
        >>> w = glorot_uniform(jax.random.key(0), (3, 3, 16, 32))
        >>> bool(abs(w).max() <= (6 / (144 + 288)) ** 0.5)
        True
    """
    return _variance_scaling("glorot_uniform", key, shape, dtype, 1.0, "fan_avg", "uniform")


def he_normal(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """He (Kaiming) normal for ReLU networks: variance ``2 / fan_in``, truncated at 2 std. dev.

    Args:
        key: PRNG key.
        shape: ``(*receptive_field, d_in, d_out)``, at least 2 axes (see :func:`compute_fans`).
        dtype: Floating dtype of the result.

    Returns:
        Array of shape ``shape``: zero mean, variance ``2 / fan_in``.

    Examples:
        >>> import jax
        >>> from jaxla.nn import he_normal
        >>> w = he_normal(jax.random.key(0), (500, 100))
        >>> round(float(w.var() * 500 / 2), 1)
        1.0
    """
    return _variance_scaling("he_normal", key, shape, dtype, 2.0, "fan_in", "normal")


def he_uniform(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """He (Kaiming) uniform on ``[-a, a]``, ``a = sqrt(6 / fan_in)``.

    Args:
        key: PRNG key.
        shape: ``(*receptive_field, d_in, d_out)``, at least 2 axes (see :func:`compute_fans`).
        dtype: Floating dtype of the result.

    Returns:
        Array of shape ``shape``: zero mean, variance ``2 / fan_in``.

    Examples:
        >>> import jax
        >>> from jaxla.nn import he_uniform
        >>> w = he_uniform(jax.random.key(0), (24, 8))
        >>> bool(abs(w).max() <= 0.5)
        True
    """
    return _variance_scaling("he_uniform", key, shape, dtype, 2.0, "fan_in", "uniform")


def lecun_normal(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """LeCun normal: variance ``1 / fan_in``, truncated at 2 std. dev.

    Args:
        key: PRNG key.
        shape: ``(*receptive_field, d_in, d_out)``, at least 2 axes (see :func:`compute_fans`).
        dtype: Floating dtype of the result.

    Returns:
        Array of shape ``shape``: zero mean, variance ``1 / fan_in``.

    Examples:
        >>> import jax
        >>> from jaxla.nn import lecun_normal
        >>> w = lecun_normal(jax.random.key(0), (400, 250))
        >>> round(float(w.var() * 400), 1)
        1.0
    """
    return _variance_scaling("lecun_normal", key, shape, dtype, 1.0, "fan_in", "normal")


def lecun_uniform(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """LeCun uniform on ``[-a, a]``, ``a = sqrt(3 / fan_in)``.

    Args:
        key: PRNG key.
        shape: ``(*receptive_field, d_in, d_out)``, at least 2 axes (see :func:`compute_fans`).
        dtype: Floating dtype of the result.

    Returns:
        Array of shape ``shape``: zero mean, variance ``1 / fan_in``.

    Examples:
        >>> import jax
        >>> from jaxla.nn import lecun_uniform
        >>> w = lecun_uniform(jax.random.key(0), (12, 5))
        >>> bool(abs(w).max() <= 0.5)
        True
    """
    return _variance_scaling("lecun_uniform", key, shape, dtype, 1.0, "fan_in", "uniform")


def normal(
    key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32, *, stddev: float = 1.0
) -> jax.Array:
    """Zero-mean normal with standard deviation ``stddev`` (not truncated).

    Args:
        key: PRNG key.
        shape: Any shape (a tuple of ints >= 1, or one int).
        dtype: Floating dtype of the result.
        stddev: Standard deviation (> 0); set it with ``functools.partial(normal, stddev=...)``
            to pass it where an initializer is expected.

    Returns:
        Array of shape ``shape`` drawn from ``N(0, stddev**2)``.

    Examples:
        >>> import jax
        >>> from jaxla.nn import normal
        >>> w = normal(jax.random.key(0), (1000, 100), stddev=0.02)
        >>> round(float(w.std()), 3)
        0.02
    """
    fn = f"{_MODULE}.normal"
    dims = _check_shape(shape, fn)
    dt = _checks.check_float_dtype(dtype, fn)
    stddev = _checks.check_positive(stddev, fn, "stddev")
    cdt = _checks.compute_dtype(dt)
    return (jax.random.normal(key, dims, cdt) * jnp.asarray(stddev, cdt)).astype(dt)


def zeros(key: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """Zeros (``key`` is accepted for a uniform signature and ignored; it may be ``None``).

    Args:
        key: Ignored.
        shape: Any shape (a tuple of ints >= 1, or one int).
        dtype: Floating dtype of the result.

    Returns:
        Array of zeros of shape ``shape``.

    Examples:
        >>> from jaxla.nn import zeros
        >>> zeros(None, (2, 3)).sum().item()
        0.0
    """
    fn = f"{_MODULE}.zeros"
    return jnp.zeros(_check_shape(shape, fn), _checks.check_float_dtype(dtype, fn))


def ones(key: Any, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """Ones (``key`` is accepted for a uniform signature and ignored; it may be ``None``).

    Args:
        key: Ignored.
        shape: Any shape (a tuple of ints >= 1, or one int).
        dtype: Floating dtype of the result.

    Returns:
        Array of ones of shape ``shape``.

    Examples:
        >>> from jaxla.nn import ones
        >>> ones(None, 4).sum().item()
        4.0
    """
    fn = f"{_MODULE}.ones"
    return jnp.ones(_check_shape(shape, fn), _checks.check_float_dtype(dtype, fn))
