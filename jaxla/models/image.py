"""Image compression by truncated SVD, with the quality and size measures that go with it.

A grayscale image is a matrix ``A`` (H, W); :func:`svd_compress` keeps its top ``k`` singular
triplets, ``A_k = U_k diag(s_k) V_k^T``, which by the Eckart-Young-Mirsky theorem is the closest
rank-``k`` matrix to ``A``: ``||A - A_k||_F = sqrt(sum_{j > k} s_j^2)``. A colour image is
compressed channel by channel. Storing ``U_k``, ``s_k`` and ``V_k`` takes ``k (H + W + 1)``
numbers per channel instead of ``H W`` (:func:`storage_ratio`); :func:`psnr` measures the
quality of the reconstruction.

Dimension letters: ``H`` rows (height), ``W`` columns (width), ``C`` channels, ``k`` the rank.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxla import _checks
from jaxla._numerics import matmul, upcast
from jaxla.linalg.decompositions import svd

__all__ = ["psnr", "storage_ratio", "svd_compress"]

_MODULE = "jaxla.models"


@functools.partial(jax.jit, static_argnames=("clip",))
def _compress(image: jax.Array, rank: jax.Array, clip: bool) -> jax.Array:
    """Rank-``rank`` reconstruction of every channel; ``rank`` is traced (one compilation)."""
    x = upcast(image)
    chans = x[None] if x.ndim == 2 else jnp.moveaxis(x, -1, 0)  # (C, H, W)
    u, s, vt = svd(chans)  # (C, H, p), (C, p), (C, p, W), p = min(H, W), descending
    keep = (jnp.arange(s.shape[-1]) < rank).astype(s.dtype)
    rec = matmul(u * (s * keep[None, :])[:, None, :], vt)  # the top `rank` triplets
    if clip:
        rec = jnp.clip(rec, 0.0, 1.0)
    rec = rec[0] if x.ndim == 2 else jnp.moveaxis(rec, 0, -1)
    return rec.astype(image.dtype)


def svd_compress(image: jax.Array, rank: int, *, clip: bool = True) -> jax.Array:
    """Best rank-``k`` approximation of an image, channel by channel, by truncated SVD.

    Each channel ``A`` (H, W) is replaced by ``U_k diag(s_k) V_k^T``, its top ``k`` singular
    triplets from the thin SVD :func:`jaxla.linalg.svd` (the rank is not compiled in: every rank
    shares one compiled program per image shape). This is the rank-``k`` matrix closest to
    ``A`` in the Frobenius and spectral norms, with ``||A - A_k||_F = sqrt(sum_{j > k} s_j^2)``
    (Eckart-Young). The approximation can leave the valid range of pixel values, so by default
    it is clipped to [0, 1] (images as floats in [0, 1], as :func:`jaxla.datasets.sample_image`
    returns them); for an image in [0, 1] clipping can only reduce the error, because it is the
    projection onto the box of valid images. ``clip=False`` returns the exact low-rank matrix.

    Args:
        image: ``(H, W)`` grayscale or ``(H, W, C)`` multi-channel float image.
        rank: static int ``k``, ``1 <= k <= min(H, W)``.
        clip: clip the result to [0, 1] (static bool).

    Returns:
        Array of the shape and dtype of ``image`` (float16/bfloat16 computed in float32).

    Raises:
        ValueError: ``image`` not 2-D or 3-D, ``rank`` out of range, NaN/Inf in ``image``
            (eagerly).
        TypeError: integer ``image`` (e.g. uint8: divide by 255 first), non-int ``rank``,
            non-bool ``clip``.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.models.image import svd_compress
        >>> img = jnp.outer(jnp.linspace(0.0, 1.0, 6), jnp.linspace(0.2, 1.0, 5))  # rank 1
        >>> bool(np.allclose(svd_compress(img, 1), img, atol=1e-6))
        True
        >>> svd_compress(jnp.stack([img, img, img], axis=-1), 2).shape
        (6, 5, 3)
    """
    fn = f"{_MODULE}.svd_compress"
    x = _checks.as_float_array(image, fn, "image", ndim=(2, 3), doc="(H, W) or (H, W, C)")
    h, w = x.shape[:2]
    rank = _checks.check_int(rank, fn, "rank", min=1, max=min(h, w), max_doc="min(H, W)")
    clip = _checks.check_bool(clip, fn, "clip")
    if x.ndim == 3 and x.shape[2] == 0:
        _checks.fail(fn, f"`image` must have at least one channel, got shape {tuple(x.shape)}")
    _checks.check_finite(x, fn, "image")
    return _compress(x, jnp.asarray(rank, jnp.int32), bool(clip))


@jax.jit
def _psnr(a: jax.Array, b: jax.Array, data_range: Any) -> jax.Array:
    dt = jnp.result_type(a.dtype, b.dtype)
    ac, bc = upcast(a.astype(dt)), upcast(b.astype(dt))
    mse = jnp.mean((ac - bc) ** 2)
    r = jnp.asarray(data_range, ac.dtype)
    return (10 * jnp.log10(r * r / mse)).astype(dt)


def psnr(a: jax.Array, b: jax.Array, *, data_range: float = 1.0) -> jax.Array:
    """Peak signal-to-noise ratio of two images, in decibels.

    ``PSNR = 10 log10(data_range^2 / MSE)`` with ``MSE`` the mean of ``(a - b)^2`` over all
    pixels and channels (as ``skimage.metrics.peak_signal_noise_ratio``). Higher is better; every
    halving of the root-mean-square error adds about 6.02 dB; identical images give ``inf``.

    Args:
        a: float image (any shape, e.g. (H, W) or (H, W, C)).
        b: float image of the same shape.
        data_range: the range of the pixel values (1 for images in [0, 1], 255 for 8-bit
            values); > 0, may be traced.

    Returns:
        A scalar () in the promoted dtype of ``a`` and ``b``.

    Raises:
        ValueError: shapes differ, NaN/Inf inputs (eagerly), ``data_range`` not > 0.
        TypeError: integer inputs.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxla.models.image import psnr
        >>> a = jnp.zeros((4, 4))
        >>> print(round(float(psnr(a, a + 0.1)), 4))
        20.0
    """
    fn = f"{_MODULE}.psnr"
    a = _checks.as_float_array(a, fn, "a")
    b = _checks.as_float_array(b, fn, "b")
    _checks.check_same_shape(a, b, fn, ("a", "b"))
    if a.size == 0:
        _checks.fail(fn, f"`a` must not be empty, got shape {tuple(a.shape)}")
    data_range = _checks.check_positive(data_range, fn, "data_range")
    _checks.check_finite(a, fn, "a")
    _checks.check_finite(b, fn, "b")
    return _psnr(a, b, data_range)


def storage_ratio(shape: Sequence[int], rank: int) -> float:
    """Fraction of the pixel storage that a rank-``k`` SVD of an image takes.

    Each channel keeps ``U_k`` (H, k), ``s_k`` (k,) and ``V_k`` (W, k): ``k (H + W + 1)``
    numbers instead of ``H W``, so the ratio is ``k (H + W + 1) / (H W)`` whatever the number of
    channels. Below 1 the factors are smaller than the image; the break-even rank is
    ``H W / (H + W + 1)``.

    Args:
        shape: the image shape, ``(H, W)`` or ``(H, W, C)`` (positive ints).
        rank: int ``k``, ``1 <= k <= min(H, W)``.

    Returns:
        The ratio as a Python float.

    Raises:
        ValueError: a shape of the wrong length or with non-positive sizes, ``rank`` out of range.
        TypeError: non-int sizes or rank.

    Examples:
        >>> from jaxla.models.image import storage_ratio
        >>> round(storage_ratio((600, 512, 3), 50), 4)
        0.1812
    """
    fn = f"{_MODULE}.storage_ratio"
    if isinstance(shape, str) or not isinstance(shape, Sequence) or len(shape) not in (2, 3):
        _checks.fail(fn, f"`shape` must be (H, W) or (H, W, C), got {shape!r}")
    dims = [_checks.check_int(d, fn, "shape", min=1) for d in shape]
    h, w = dims[:2]
    rank = _checks.check_int(rank, fn, "rank", min=1, max=min(h, w), max_doc="min(H, W)")
    return rank * (h + w + 1) / (h * w)
