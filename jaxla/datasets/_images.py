"""Photographs that ship inside installed packages (see jaxla.datasets).

:func:`sample_image` reads a real photograph from the data files of matplotlib or scikit-learn
(nothing is downloaded) and returns it as a float array in [0, 1], ready for
:func:`jaxla.models.svd_compress` and other image examples. Decoding JPEG files needs Pillow,
which matplotlib depends on.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from jaxla import _checks

__all__ = ["SAMPLE_IMAGES", "sample_image"]

_FN = "jaxla.datasets.sample_image"

SAMPLE_IMAGES: tuple[str, ...] = ("grace_hopper", "china", "flower")
"""Names accepted by :func:`sample_image`.

* ``"grace_hopper"``: portrait of Grace Hopper, 600 x 512 pixels, from matplotlib's sample data
  (``mpl-data/sample_data/grace_hopper.jpg``).
* ``"china"``, ``"flower"``: 427 x 640 photographs from scikit-learn
  (``sklearn.datasets.load_sample_image``).
"""

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B


def _missing(package: str, name: str) -> None:
    _checks.fail(
        _FN,
        f"`name`={name!r} needs the package {package}, which is not installed; "
        f"install it (pip install {package})",
        ImportError,
    )


@functools.cache
def _read(name: str) -> np.ndarray:
    """The decoded image as uint8 (H, W, 3), cached (callers get a converted copy)."""
    if name == "grace_hopper":
        try:
            import matplotlib
        except ImportError:
            _missing("matplotlib", name)
        try:
            from PIL import Image
        except ImportError:
            _missing("Pillow", name)
        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        if not path.is_file():
            _checks.fail(
                _FN, f"`name`={name!r} needs matplotlib's sample data, but {path} is missing",
                FileNotFoundError,
            )
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    try:
        from sklearn.datasets import load_sample_image
    except ImportError:
        _missing("scikit-learn", name)
    try:
        return np.asarray(load_sample_image(f"{name}.jpg"), dtype=np.uint8)
    except ImportError:
        _missing("Pillow", name)


def sample_image(name: str = "grace_hopper", *, gray: bool = False) -> np.ndarray:
    """A real photograph from an installed package, as floats in [0, 1].

    Pixel values are the 8-bit values divided by 255. ``gray=True`` converts to luma with the
    ITU-R BT.601 weights, ``0.299 R + 0.587 G + 0.114 B`` (what Pillow's ``"L"`` mode rounds to
    integers).

    Args:
        name: one of :data:`SAMPLE_IMAGES`: ``"grace_hopper"`` (matplotlib, the default),
            ``"china"`` or ``"flower"`` (scikit-learn).
        gray: return a single-channel image.

    Returns:
        A new float32 numpy array, ``(H, W, 3)`` RGB, or ``(H, W)`` with ``gray=True``, values in
        [0, 1]; ``(600, 512, 3)`` for ``"grace_hopper"``, ``(427, 640, 3)`` for the others.

    Raises:
        ValueError: an unknown ``name``.
        TypeError: a non-bool ``gray``.
        ImportError: the package holding the image (matplotlib or scikit-learn) or Pillow, which
            decodes it, is not installed.

    Examples:
        >>> from jaxla.datasets import sample_image
        >>> img = sample_image()
        >>> img.shape, float(img.min()) >= 0.0, float(img.max()) <= 1.0
        ((600, 512, 3), True, True)
        >>> sample_image(gray=True).shape
        (600, 512)
    """
    _checks.check_option(name, SAMPLE_IMAGES, _FN, "name")
    gray = _checks.check_bool(gray, _FN, "gray")
    rgb = _read(name).astype(np.float64) / 255.0
    if gray:
        rgb = rgb @ np.asarray(_LUMA)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)
