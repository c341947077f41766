"""Tests of jaxla.models.image and jaxla.datasets.sample_image against numpy and Pillow.

References: numpy's SVD in float64 (reconstructions and the Eckart-Young error), the PSNR formula
written out in numpy, the image files decoded directly with Pillow / scikit-learn, and the sizes
of the factors counted one by one.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxla.datasets._images as images
import jaxla.models.image as image
from tests.helpers import msg

PIL = pytest.importorskip("PIL.Image")
matplotlib = pytest.importorskip("matplotlib")

COMPRESS = "jaxla.models.svd_compress"
PSNR = "jaxla.models.psnr"
RATIO = "jaxla.models.storage_ratio"
SAMPLE = "jaxla.datasets.sample_image"


@functools.cache
def _photo() -> np.ndarray:
    """The Grace Hopper photograph at 1/8 resolution, (75, 64, 3) float64 in [0, 1]."""
    return images.sample_image()[::8, ::8].astype(np.float64)


def _numpy_compress(img: np.ndarray, k: int, clip: bool) -> np.ndarray:
    chans = img[..., None] if img.ndim == 2 else img
    out = np.empty_like(chans)
    for c in range(chans.shape[-1]):
        u, s, vt = np.linalg.svd(chans[..., c], full_matrices=False)
        out[..., c] = (u[:, :k] * s[:k]) @ vt[:k]
    if clip:
        out = np.clip(out, 0.0, 1.0)
    return out[..., 0] if img.ndim == 2 else out


def _eckart_young(img: np.ndarray, k: int, s: np.ndarray | None = None) -> float:
    """sqrt(sum over channels of the discarded s_j^2): the Frobenius error of the best rank k.

    ``s`` (C, p) are the singular values of the channels when already known.
    """
    if s is None:
        chans = img[..., None] if img.ndim == 2 else img
        s = np.stack([np.linalg.svd(chans[..., c], compute_uv=False)
                      for c in range(chans.shape[-1])])
    return float(np.sqrt(np.sum(s[:, k:] ** 2)))


# ---------------------------------------------------------------------------------------------
# sample_image


def test_sample_image_matches_the_file_decoded_by_pillow():
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with PIL.open(path) as f:
        raw = np.asarray(f.convert("RGB"), np.float64) / 255.0
    img = images.sample_image()
    assert img.shape == (600, 512, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img, raw, atol=1e-7)
    gray = images.sample_image(gray=True)
    assert gray.shape == (600, 512) and gray.dtype == np.float32
    luma = raw[..., 0] * 0.299 + raw[..., 1] * 0.587 + raw[..., 2] * 0.114
    np.testing.assert_allclose(gray, luma, atol=1e-6)
    with PIL.open(path) as f:  # Pillow's own "L" conversion rounds the same weights to 8 bits
        pil_gray = np.asarray(f.convert("L"), np.float64) / 255.0
    assert np.max(np.abs(gray - pil_gray)) <= 1.0 / 255.0 + 1e-6
    assert 0.0 <= gray.min() and gray.max() <= 1.0


def test_sample_image_from_scikit_learn():
    from sklearn.datasets import load_sample_image

    img = images.sample_image("china")
    np.testing.assert_allclose(img, load_sample_image("china.jpg") / 255.0, atol=1e-7)
    assert img.shape == (427, 640, 3)
    img[0, 0, 0] = -1.0  # a fresh copy every call: the cache is not modified
    assert images.sample_image("china")[0, 0, 0] >= 0.0


def test_sample_image_errors():
    with pytest.raises(ValueError, match=msg(
            f"{SAMPLE}: `name` must be one of 'grace_hopper', 'china', 'flower', got 'lena'")):
        images.sample_image("lena")
    with pytest.raises(TypeError, match=msg(f"{SAMPLE}: `gray` must be a Python bool, got 1")):
        images.sample_image(gray=1)


# ---------------------------------------------------------------------------------------------
# svd_compress


@pytest.mark.parametrize(("gray", "clip"), [(True, True), (False, False)])
def test_svd_compress_matches_numpy_svd(gray, clip):
    img = _photo()
    if gray:
        img = img @ np.array([0.299, 0.587, 0.114])
    for k in (1, 7):
        out = image.svd_compress(jnp.asarray(img), k, clip=clip)
        assert out.shape == img.shape and out.dtype == jnp.float64
        np.testing.assert_allclose(out, _numpy_compress(img, k, clip), atol=1e-12)


def test_svd_compress_error_is_eckart_young_and_clipping_only_helps():
    img = _photo()
    s = np.stack([np.linalg.svd(img[..., c], compute_uv=False) for c in range(3)])
    for k in (1, 3, 10, 30, 64):
        exact = np.asarray(image.svd_compress(img, k, clip=False))
        clipped = np.asarray(image.svd_compress(img, k))
        ey = _eckart_young(img, k, s)
        err = np.linalg.norm(exact - img)
        assert abs(err - ey) <= 1e-10 * np.linalg.norm(img)
        assert np.linalg.norm(clipped - img) <= err + 1e-12
        assert clipped.min() >= 0.0 and clipped.max() <= 1.0
    # full rank reproduces the image
    np.testing.assert_allclose(image.svd_compress(img, 64, clip=False), img, atol=1e-12)


def test_svd_compress_float32_accuracy_and_dtypes():
    img = _photo()
    out = image.svd_compress(jnp.asarray(img, jnp.float32), 10)
    assert out.dtype == jnp.float32
    ref = _numpy_compress(img.astype(np.float32).astype(np.float64), 10, True)
    assert np.max(np.abs(np.asarray(out, np.float64) - ref)) < 2e-5
    half = image.svd_compress(jnp.asarray(img[..., 0], jnp.bfloat16), 4)
    assert half.dtype == jnp.bfloat16 and half.shape == (75, 64)


def test_svd_compress_jit_and_vmap():
    img = _photo()[:20, :16]
    f = jax.jit(image.svd_compress, static_argnames=("rank", "clip"))
    np.testing.assert_allclose(f(img, 3), _numpy_compress(img, 3, True), atol=1e-12)
    stack = np.stack([img[..., c] for c in range(3)])  # (3, 20, 16): three grayscale images
    out = jax.vmap(lambda a: image.svd_compress(a, 3, clip=False))(jnp.asarray(stack))
    for c in range(3):
        np.testing.assert_allclose(out[c], _numpy_compress(stack[c], 3, False), atol=1e-12)


@given(
    data=st.lists(st.floats(0.0, 1.0), min_size=48, max_size=48),
    rank=st.integers(1, 6),
)
def test_svd_compress_property_rank_and_error(data, rank):
    img = np.asarray(data).reshape(8, 6)
    out = np.asarray(image.svd_compress(img, rank, clip=False))
    s_out = np.linalg.svd(out, compute_uv=False)
    assert np.all(s_out[rank:] <= 1e-10 * max(1.0, s_out[0]))
    assert abs(np.linalg.norm(out - img) - _eckart_young(img, rank)) <= 1e-10


def test_svd_compress_errors():
    img = jnp.zeros((6, 5, 3))
    with pytest.raises(ValueError, match=msg(
            f"{COMPRESS}: `image` must be 2-D or 3-D (H, W) or (H, W, C), got shape (5,)")):
        image.svd_compress(jnp.zeros(5), 1)
    with pytest.raises(ValueError, match=msg(
            f"{COMPRESS}: `image` must be 2-D or 3-D (H, W) or (H, W, C), got shape (2, 6, 5, 3)")):
        image.svd_compress(jnp.zeros((2, 6, 5, 3)), 1)
    with pytest.raises(ValueError, match=msg(f"{COMPRESS}: `rank` must be >= 1, got 0")):
        image.svd_compress(img, 0)
    with pytest.raises(ValueError, match=msg(f"{COMPRESS}: `rank`=6 exceeds min(H, W)=5")):
        image.svd_compress(img, 6)
    with pytest.raises(TypeError, match=msg(f"{COMPRESS}: `rank` must be an int, got 2.0 (float)")):
        image.svd_compress(img, 2.0)
    with pytest.raises(TypeError, match=f"^{COMPRESS}: `image` must have a real floating dtype"):
        image.svd_compress(np.zeros((6, 5), np.uint8), 1)
    with pytest.raises(TypeError,
                       match=msg(f"{COMPRESS}: `clip` must be a Python bool, got 'yes'")):
        image.svd_compress(img, 1, clip="yes")
    with pytest.raises(ValueError, match=msg(
            f"{COMPRESS}: `image` contains 1 NaN or Inf value(s); clean or mask them first")):
        image.svd_compress(img.at[0, 0, 0].set(jnp.nan), 1)
    with pytest.raises(TypeError, match=f"^{COMPRESS}: `rank` sets a shape and must be a static"):
        jax.jit(image.svd_compress)(img, 2)


# ---------------------------------------------------------------------------------------------
# psnr and storage_ratio


def _numpy_psnr(a, b, data_range=1.0):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return 10.0 * np.log10(data_range**2 / mse)


def test_psnr_matches_the_formula():
    img = _photo()
    rec = _numpy_compress(img, 5, True)
    np.testing.assert_allclose(image.psnr(img, rec), _numpy_psnr(img, rec), rtol=1e-12)
    np.testing.assert_allclose(image.psnr(255 * img, 255 * rec, data_range=255.0),
                               _numpy_psnr(img, rec), rtol=1e-12)
    out32 = image.psnr(jnp.asarray(img, jnp.float32), jnp.asarray(rec, jnp.float32))
    assert out32.dtype == jnp.float32 and out32.shape == ()
    np.testing.assert_allclose(out32, _numpy_psnr(img, rec), rtol=1e-5)
    assert float(image.psnr(img, img)) == np.inf
    # halving the error adds 20 log10(2) dB
    d = np.full((4, 4), 0.1)
    np.testing.assert_allclose(image.psnr(d, 0 * d) + 20 * np.log10(2), image.psnr(d / 2, 0 * d))


def test_psnr_jit_vmap_grad():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(size=(2, 3, 5, 4))
    out = jax.vmap(lambda x, y: image.psnr(x, y))(a, b)
    np.testing.assert_allclose(out, [_numpy_psnr(a[i], b[i]) for i in range(3)], rtol=1e-12)
    np.testing.assert_allclose(jax.jit(image.psnr)(a[0], b[0]), _numpy_psnr(a[0], b[0]))
    check_grads(lambda x, y: image.psnr(x, y, data_range=2.0), (a[0], b[0]), order=1,
                modes=["fwd", "rev"])


def test_psnr_errors():
    with pytest.raises(ValueError, match=msg(
            f"{PSNR}: `a` and `b` must have the same shape, got (2, 3) and (3, 2)")):
        image.psnr(jnp.zeros((2, 3)), jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match=msg(f"{PSNR}: `data_range` must be > 0 and finite, "
                                             "got 0.0")):
        image.psnr(jnp.zeros(3), jnp.ones(3), data_range=0.0)
    with pytest.raises(TypeError, match=f"^{PSNR}: `b` must have a real floating dtype"):
        image.psnr(jnp.zeros(3), jnp.ones(3, jnp.int32))
    with pytest.raises(ValueError, match=msg(
            f"{PSNR}: `b` contains 1 NaN or Inf value(s); clean or mask them first")):
        image.psnr(jnp.zeros(3), jnp.array([0.0, jnp.inf, 1.0]))


def test_storage_ratio_counts_the_factors():
    for shape, k in [((600, 512, 3), 50), ((75, 64), 1), ((10, 30, 4), 10)]:
        h, w = shape[:2]
        c = shape[2] if len(shape) == 3 else 1
        stored = sum(np.prod(p) for p in [(h, k), (k,), (k, w)]) * c
        assert image.storage_ratio(shape, k) == pytest.approx(stored / np.prod(shape), rel=1e-15)
    # the break-even rank H W / (H + W + 1)
    assert image.storage_ratio((600, 512), 276) < 1 < image.storage_ratio((600, 512), 277)


def test_storage_ratio_errors():
    with pytest.raises(ValueError, match=msg(f"{RATIO}: `shape` must be (H, W) or (H, W, C), "
                                             "got (5,)")):
        image.storage_ratio((5,), 1)
    with pytest.raises(ValueError, match=msg(f"{RATIO}: `shape` must be >= 1, got 0")):
        image.storage_ratio((0, 5), 1)
    with pytest.raises(ValueError, match=msg(f"{RATIO}: `rank`=6 exceeds min(H, W)=5")):
        image.storage_ratio((5, 8, 3), 6)
    with pytest.raises(TypeError, match=msg(f"{RATIO}: `rank` must be an int, got 1.5 (float)")):
        image.storage_ratio((5, 8), 1.5)
