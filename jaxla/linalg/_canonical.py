"""Canonical sign conventions shared by every decomposition in jaxla.

Singular vectors and eigenvectors are defined only up to sign. jaxla fixes the sign so that the
entry of largest absolute value of each *right* singular vector (row of ``vt``) and of each
eigenvector is positive. For SVD this is scikit-learn's ``svd_flip(u, vt, u_based_decision=False)``,
which its PCA uses, so jaxla's PCA components compare directly with scikit-learn's. Ties in
absolute value go to the first index (``argmax``); an all-zero vector keeps its sign.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["flip_columns", "svd_signs", "vector_signs"]


def vector_signs(v: jax.Array, axis: int = -1) -> jax.Array:
    """Signs (+1/-1) that make the largest-magnitude entry along ``axis`` of ``v`` positive."""
    idx = jnp.argmax(jnp.abs(v), axis=axis, keepdims=True)
    s = jnp.sign(jnp.take_along_axis(v, idx, axis=axis))
    s = jnp.where(s == 0, jnp.ones_like(s), s)
    return jnp.squeeze(s, axis=axis)


def svd_signs(u: jax.Array, vt: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Flip ``u`` (..., m, k) and ``vt`` (..., k, n): each row of ``vt`` gets a positive max-|.|."""
    s = vector_signs(vt, axis=-1)  # (..., k)
    return u * s[..., None, :], vt * s[..., :, None]


def flip_columns(v: jax.Array) -> jax.Array:
    """Flip each column of ``v`` (..., n, k) so its largest-magnitude entry is positive."""
    return v * vector_signs(v, axis=-2)[..., None, :]
