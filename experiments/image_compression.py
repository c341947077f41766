"""Image compression by truncated SVD: quality against rank and storage.

A photograph (:func:`jaxla.datasets.sample_image`, Grace Hopper, 600 x 512 RGB from
matplotlib's sample data, at half resolution in quick mode) is compressed channel by channel with
:func:`jaxla.models.svd_compress`:

1. the singular values of each channel (:func:`jaxla.linalg.svd`) and the Eckart-Young
   prediction of the Frobenius error of the rank-``k`` approximation, ``sqrt(sum_{j > k}
   s_j^2)`` over the channels, against the error measured on the reconstruction;
2. PSNR (:func:`jaxla.models.psnr`) against the rank and against the storage ratio
   (:func:`jaxla.models.storage_ratio`, ``k (H + W + 1) / (H W)``) for the colour image and its
   grayscale version, with and without clipping to [0, 1] (clipping never hurts, because it is
   the projection onto the valid images);
3. a grid of reconstructions at a few ranks.

The reconstructions of the sweep reuse one SVD per image; :func:`~jaxla.models.svd_compress` is
checked to give the same image at one rank. Quick mode sweeps 13 ranks of the colour and
grayscale Grace Hopper images at half resolution (300 x 256, every second pixel); full mode uses
the full 600 x 512 images, sweeps every rank up to 50 and every 10th after, and adds
scikit-learn's "china" photograph (427 x 640).

Run it alone with ``python -m experiments.image_compression [--quick | --full] [--out DIR]``.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments._plotting import figure
from jaxla._checks import check_int, check_option
from jaxla._numerics import matmul
from jaxla.datasets._images import sample_image
from jaxla.linalg import svd
from jaxla.models.image import psnr, storage_ratio, svd_compress

__all__ = ["GRID_RANKS", "NAME", "QUICK_RANKS", "TITLE", "full_ranks", "run"]

NAME = "image_compression"
TITLE = "Image compression by truncated SVD: PSNR against rank and storage"
_FN = "experiments.image_compression.run"

QUICK_RANKS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 137, 150, 200, 256)
"""Ranks of the quick sweep (137 is the break-even rank of the 300 x 256 quick image)."""
QUICK_STRIDE = 2
"""Quick mode keeps every second row and column (300 x 256); full mode the whole image."""
GRID_RANKS = (5, 20, 50, 100)
"""Ranks shown in the grid of reconstructions."""
PSNR_TARGET = 30.0
"""A common threshold of acceptable quality (dB): the smallest rank reaching it is reported."""


def full_ranks(p: int) -> tuple[int, ...]:
    """Ranks of the full sweep for ``p = min(H, W)``: 1..50, then every 10th, and ``p``."""
    return tuple(sorted({*range(1, min(50, p) + 1), *range(50, p + 1, 10), p}))


def _check_config(config: dict[str, Any]) -> tuple[str, int]:
    mode = check_option(config.get("mode"), ("quick", "full"), _FN, "config['mode']")
    seed = check_int(config.get("seed"), _FN, "config['seed']", min=0)
    return mode, seed


@functools.partial(jax.jit, static_argnames=("clip",))
def _reconstruct(u: jax.Array, s: jax.Array, vt: jax.Array, k: jax.Array, clip: bool):
    """Channels-last rank-``k`` image from the factors of the (C, H, W) stack (``k`` traced)."""
    keep = (jnp.arange(s.shape[-1]) < k).astype(s.dtype)
    rec = matmul(u * (s * keep[None, :])[:, None, :], vt)
    rec = jnp.clip(rec, 0.0, 1.0) if clip else rec
    return jnp.moveaxis(rec, 0, -1)


def _sweep(img: np.ndarray, ranks: tuple[int, ...]) -> tuple[dict[str, Any], tuple]:
    """PSNR, errors and the Eckart-Young prediction of every rank for one image (H, W[, C])."""
    x = jnp.asarray(img if img.ndim == 3 else img[..., None])  # (H, W, C) float32
    u, s, vt = svd(jnp.moveaxis(x, -1, 0))  # (C, H, p), (C, p), (C, p, W)
    s64 = np.asarray(s, np.float64)
    norm = float(np.linalg.norm(np.asarray(x, np.float64)))
    out: dict[str, list[float]] = {"psnr": [], "psnr_unclipped": [], "error": [],
                                   "error_predicted": [], "error_clipped": []}
    x64 = np.asarray(x, np.float64)
    for k in ranks:
        kk = jnp.asarray(k, jnp.int32)
        rec = _reconstruct(u, s, vt, kk, False)
        rec_c = _reconstruct(u, s, vt, kk, True)
        out["psnr"].append(float(psnr(x, rec_c)))
        out["psnr_unclipped"].append(float(psnr(x, rec)))
        out["error"].append(float(np.linalg.norm(np.asarray(rec, np.float64) - x64)) / norm)
        out["error_clipped"].append(float(np.linalg.norm(np.asarray(rec_c, np.float64) - x64))
                                    / norm)
        out["error_predicted"].append(float(np.sqrt(np.sum(s64[:, k:] ** 2))) / norm)
    out["singular_values"] = s64
    out["ratio"] = [storage_ratio(img.shape, k) for k in ranks]
    return out, (u, s, vt)


def run(config: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Run the experiment; write three PNG figures into ``out_dir``; return its results.

    Args:
        config: ``{"mode": "quick" | "full", "seed": int}`` (nothing here is random).
        out_dir: existing directory for the figures.

    Returns:
        ``{"summary", "metrics", "figures", "tables"}`` as described in :mod:`experiments`.
    """
    out_dir = Path(out_dir)
    mode, _ = _check_config(config)
    step = QUICK_STRIDE if mode == "quick" else 1
    color = np.ascontiguousarray(sample_image("grace_hopper")[::step, ::step])
    h, w = color.shape[:2]
    p = min(h, w)
    gray = np.ascontiguousarray(sample_image("grace_hopper", gray=True)[::step, ::step])
    images = {"Grace Hopper (RGB)": color, "Grace Hopper (gray)": gray}
    if mode == "full":
        images["china (RGB)"] = sample_image("china")
    ranks_of = {}
    results = {}
    factors = {}
    for label, img in images.items():
        q = min(img.shape[:2])
        ranks = QUICK_RANKS if mode == "quick" else full_ranks(q)
        ranks_of[label] = tuple(k for k in ranks if k <= q)
        results[label], factors[label] = _sweep(img, ranks_of[label])
    main = "Grace Hopper (RGB)"
    ranks = ranks_of[main]
    res = results[main]

    # the grid from the sweep's factors; the public function gives the same image
    u, s, vt = factors[main]
    grid = {k: np.asarray(_reconstruct(u, s, vt, jnp.asarray(k, jnp.int32), True))
            for k in GRID_RANKS}
    api_rank = GRID_RANKS[1]
    api_diff = float(np.max(np.abs(np.asarray(svd_compress(color, api_rank)) - grid[api_rank])))

    ey_disc = max(float(np.max(np.abs(np.subtract(r["error"], r["error_predicted"]))))
                  for r in results.values())
    clip_ok = all(c <= e + 1e-6 for r in results.values()
                  for c, e in zip(r["error_clipped"], r["error"], strict=True))
    monotone = all(bool(np.all(np.diff(r["psnr_unclipped"]) >= -1e-3)) for r in results.values())
    break_even = (h * w) // (h + w + 1)

    def first_rank(r: dict[str, Any], rk: tuple[int, ...], target: float) -> int | None:
        hits = [k for k, v in zip(rk, r["psnr"], strict=True) if v >= target]
        return hits[0] if hits else None

    k30 = {label: first_rank(r, ranks_of[label], PSNR_TARGET) for label, r in results.items()}
    k30_main = k30[main]
    ratio30 = storage_ratio(color.shape, k30_main) if k30_main else None

    # ---------------------------------------------------------------- figures
    figures = []
    with figure(out_dir, "psnr_vs_rank.png", ncols=2, size=(11.5, 4.5)) as (_fig, axes):
        ax = axes[0, 0]
        for c, (label, r) in enumerate(results.items()):
            ax.plot(ranks_of[label], r["psnr"], "o-", ms=3, color=f"C{c}",
                    label=f"{label}, clipped")
            ax.plot(ranks_of[label], r["psnr_unclipped"], ":", color=f"C{c}",
                    label=f"{label}, not clipped")
        ax.axhline(PSNR_TARGET, color="k", ls="--", lw=0.8)
        ax.axvline(break_even, color="C3", ls="--", lw=0.8, label=f"break-even rank {break_even}")
        ax.set_xscale("log")
        ax.set_ylim(10, 60)  # full rank: float32 rounding only, far above (see the table)
        ax.set_xlabel("rank $k$")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title("Quality against rank")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        ax = axes[0, 1]
        for c, (label, r) in enumerate(results.items()):
            ax.plot(100 * np.asarray(r["ratio"]), r["psnr"], "o-", ms=3, color=f"C{c}",
                    label=label)
        ax.axvline(100, color="C3", ls="--", lw=0.8, label="as large as the image")
        ax.axhline(PSNR_TARGET, color="k", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_ylim(10, 60)
        ax.set_xlabel("storage of the factors (% of the pixels)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title("Quality against storage")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    figures.append({
        "file": "psnr_vs_rank.png",
        "caption": (
            f"PSNR of the rank-k reconstruction of the {h} x {w} photograph against k and "
            f"against the storage ratio k (H + W + 1) / (H W). {PSNR_TARGET:.0f} dB is first "
            f"reached at rank {k30_main} of the sweep ({100 * ratio30:.1f}% of the pixels) in "
            f"colour. Beyond rank "
            f"{break_even} the factors take more room than the image. Clipping to [0, 1] "
            f"never lowers the PSNR."
            if k30_main else f"PSNR against rank and storage; {PSNR_TARGET:.0f} dB not reached."
        ),
    })

    cols = len(GRID_RANKS) + 1
    with figure(out_dir, "reconstructions.png", ncols=cols, size=(2.6 * cols, 3.9)) as (_f, axes):
        axes[0, 0].imshow(color)
        axes[0, 0].set_title("original", fontsize=9)
        for c, k in enumerate(GRID_RANKS, start=1):
            axes[0, c].imshow(grid[k])
            val = float(psnr(color, grid[k]))
            axes[0, c].set_title(f"k={k}: {val:.1f} dB,\n{100 * storage_ratio(color.shape, k):.1f}%"
                                 " storage", fontsize=9)
        for ax in axes[0]:
            ax.set_xticks([])
            ax.set_yticks([])
    figures.append({
        "file": "reconstructions.png",
        "caption": (
            f"Rank-k reconstructions, k = {', '.join(map(str, GRID_RANKS))}: PSNR and the size of "
            f"the factors relative to the {h * w * 3} pixel values (svd_compress at k = "
            f"{api_rank} gives the same image to {api_diff:.1e})."
        ),
    })

    with figure(out_dir, "spectrum_and_error.png", ncols=2, size=(11.5, 4.3)) as (_f, axes):
        ax = axes[0, 0]
        for c, (name, col) in enumerate(zip("RGB", ("tab:red", "tab:green", "tab:blue"),
                                            strict=True)):
            ax.semilogy(np.arange(1, p + 1), res["singular_values"][c], color=col, lw=1,
                        label=f"{name} channel")
        ax.set_xlabel("index $j$")
        ax.set_ylabel("singular value $s_j$")
        ax.set_title("Singular values of each channel")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        ax = axes[0, 1]
        floor = 1e-7
        ax.semilogy(ranks, np.maximum(res["error_predicted"], floor), "-", color="gray", lw=3,
                    alpha=0.6, label=r"Eckart-Young $\sqrt{\sum_{j>k} s_j^2}$")
        ax.semilogy(ranks, np.maximum(res["error"], floor), "o", ms=4, color="C1",
                    label="measured, not clipped")
        ax.semilogy(ranks, np.maximum(res["error_clipped"], floor), "x", ms=5, color="C0",
                    label="measured, clipped")
        ax.set_xscale("log")
        ax.set_xlabel("rank $k$")
        ax.set_ylabel("relative Frobenius error")
        ax.set_title("Error of the rank-k approximation")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    figures.append({
        "file": "spectrum_and_error.png",
        "caption": (
            f"Left: singular values of the three channels. Right: the relative Frobenius error "
            f"||A - A_k|| / ||A|| equals the Eckart-Young prediction from the discarded singular "
            f"values (largest discrepancy {ey_disc:.1e}, float32; at full rank the prediction is "
            f"0 and the measured error is float32 rounding); clipping lowers it further."
        ),
    })

    # ---------------------------------------------------------------- tables and metrics
    tables = [{
        "title": f"Rank-k compression of the {h} x {w} x 3 photograph",
        "columns": ["k", "storage (% of pixels)", "PSNR clipped (dB)", "PSNR not clipped (dB)",
                    "relative error", "Eckart-Young prediction"],
        "rows": [[k, 100 * res["ratio"][i], res["psnr"][i], res["psnr_unclipped"][i],
                  res["error"][i], res["error_predicted"][i]] for i, k in enumerate(ranks)],
    }]
    metrics = {
        "image_shape": list(color.shape),
        "ranks": list(ranks),
        "psnr_db": res["psnr"],
        "storage_ratio": res["ratio"],
        "break_even_rank": break_even,
        "rank_for_30db": k30,
        "storage_ratio_for_30db": ratio30,
        "psnr_30db_below_break_even": bool(k30_main is not None and k30_main <= break_even),
        "eckart_young_max_discrepancy": ey_disc,
        "eckart_young_holds": bool(ey_disc < 1e-5),
        "clipping_never_hurts": clip_ok,
        "psnr_increases_with_rank": monotone,
        "svd_compress_rank": api_rank,
        "svd_compress_vs_sweep_max_abs_diff": api_diff,
        "svd_compress_matches_sweep": bool(api_diff < 1e-5),
    }
    summary = (
        f"Truncated SVD of the {h} x {w} RGB photograph: rank {k30_main} reaches "
        f"{PSNR_TARGET:.0f} dB PSNR with {100 * ratio30:.1f}% of the storage "
        if k30_main else f"Truncated SVD of the {h} x {w} RGB photograph never reaches 30 dB "
    ) + (
        f"(rank {GRID_RANKS[2]}: {res['psnr'][ranks.index(GRID_RANKS[2])]:.1f} dB with "
        f"{100 * storage_ratio(color.shape, GRID_RANKS[2]):.1f}%); the measured error equals the "
        f"Eckart-Young prediction to {ey_disc:.1e} (relative), and clipping to [0, 1] never "
        f"hurts. Factors beyond rank {break_even} are larger than the image."
    )
    return {"summary": summary, "metrics": metrics, "figures": figures, "tables": tables}


if __name__ == "__main__":
    from experiments.runner import experiment_main

    raise SystemExit(experiment_main(sys.modules[__name__]))
