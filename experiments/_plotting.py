"""Shared plotting helpers: matplotlib figures rendered with Agg, never shown on a display.

Figures are built with :class:`matplotlib.figure.Figure` directly (no ``pyplot``), so nothing
depends on, or changes, the global backend; ``savefig`` renders PNGs with Agg.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

__all__ = ["STYLE", "figure"]

STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 12,
    "axes.grid": False,
    "grid.alpha": 0.3,
    "savefig.dpi": 110,
    "savefig.facecolor": "white",
}


@contextlib.contextmanager
def figure(
    out_dir: Path,
    filename: str,
    *,
    nrows: int = 1,
    ncols: int = 1,
    size: tuple[float, float] = (7.0, 4.5),
) -> Iterator[tuple[Figure, np.ndarray]]:
    """Yield ``(fig, axes)`` (axes as a 2-D array) and save ``out_dir/filename`` on exit."""
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=size, layout="constrained")
        axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False))
        yield fig, axes
        fig.savefig(Path(out_dir) / filename, format="png")
