"""Numerical building blocks shared by every module: precise matmuls and dtype handling.

jaxla computes linear algebra at full float32 (or wider) precision on every backend: on GPU and
TPU, XLA's default matmul precision for float32 may use bfloat16 or TF32 passes, so every matrix
product that feeds a decomposition, a solve or a statistic goes through :func:`matmul` with
``precision=HIGHEST``. Low-precision inputs (float16, bfloat16) are upcast to float32 for the
computation and results are returned in the input's dtype where that is meaningful.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxla._checks import compute_dtype

__all__ = ["HIGHEST", "eps", "matmul", "upcast"]

HIGHEST = jax.lax.Precision.HIGHEST

matmul = functools.partial(jnp.matmul, precision=HIGHEST)
"""``jnp.matmul`` at ``precision=HIGHEST``."""


def upcast(x: jax.Array) -> jax.Array:
    """Return ``x`` in the dtype jaxla computes in (float16/bfloat16 -> float32)."""
    return x.astype(compute_dtype(x.dtype))


def eps(dtype) -> float:
    """Machine epsilon of ``dtype``."""
    return float(jnp.finfo(dtype).eps)
