"""PCA of the 8x8 digits with :mod:`jaxla.pca`, in float32, checked against scikit-learn.

1. The explained-variance spectrum and its cumulative curve, with the number of components that
   ``jaxla.pca.fit(x, 0.90 / 0.95 / 0.99)`` keeps (scikit-learn's variance-fraction rule).
2. The 2-D projection of every image on the first two principal axes, coloured by class.
3. Reconstructions ``inverse_transform(transform(x))`` of one image per class with k components,
   and the mean squared reconstruction error against the prediction from the discarded
   eigenvalues, ``(n - 1) / n * sum_{i > k} explained_variance_i`` per image.
4. float32 robustness: the same images with a constant added to every pixel (a large offset, as
   in raw sensor counts) — jaxla's covariance solver keeps its accuracy, scikit-learn's float32
   ``covariance_eigh`` (which forms ``x.T @ x - n mean mean.T``) loses it.

Every jaxla result is compared with scikit-learn's ``PCA(svd_solver="full")`` on the same data
in float64. A streaming fit (``jaxla.pca.fit_stream`` over chunks of ``CHUNK`` rows) is checked
against the batch fit. Quick mode uses ``QUICK_IMAGES`` images drawn with ``config["seed"]``; full
mode uses all 1797 and more offsets.

Run it alone with ``python -m experiments.pca_digits [--quick | --full] [--out DIR]``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from experiments._plotting import figure
from jaxla import pca
from jaxla._checks import check_int, check_option

__all__ = ["CHUNK", "NAME", "QUICK_IMAGES", "TITLE", "load_data", "run"]

NAME = "pca_digits"
TITLE = "PCA of the digits: spectrum, projection, reconstructions, float32 offsets"
QUICK_IMAGES = 800
"""Number of images used in quick mode (full mode uses all 1797)."""
CHUNK = 256
"""Rows per chunk of the streaming fit."""
RECON_KS = (1, 2, 5, 10, 20, 40)
_FN = "experiments.pca_digits.run"


def _check_config(config: dict[str, Any]) -> tuple[str, int]:
    mode = check_option(config.get("mode"), ("quick", "full"), _FN, "config['mode']")
    seed = check_int(config.get("seed"), _FN, "config['seed']", min=0)
    return mode, seed


def load_data(config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The digits of a run: images ``(n, 64)`` float32 (pixel values 0..16) and labels ``(n,)``."""
    from sklearn.datasets import load_digits

    mode, seed = _check_config(config)
    digits = load_digits()
    x = np.asarray(digits.data, dtype=np.float32)
    y = np.asarray(digits.target, dtype=np.int64)
    if mode == "quick":
        keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:QUICK_IMAGES])
        x, y = x[keep], y[keep]
    return x, y


def _max_rel(a: Any, ref: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.max(np.abs(a - ref) / np.abs(ref)))


def _offset_errors(x: np.ndarray, offsets: list[float], k: int) -> dict[str, list[float]]:
    """Max relative error of the top-k explained variances of ``x + offset`` (float32 data)."""
    from sklearn.decomposition import PCA as SkPCA

    out: dict[str, list[float]] = {
        "jaxla covariance_eigh": [],
        "jaxla svd": [],
        "scikit-learn covariance_eigh": [],
        "scikit-learn full": [],
    }
    for off in offsets:
        x32 = (x + np.float32(off)).astype(np.float32)
        ref = SkPCA(k, svd_solver="full").fit(x32.astype(np.float64)).explained_variance_
        for solver in ("covariance_eigh", "svd"):
            p = pca.fit(jnp.asarray(x32), k, solver=solver)
            out[f"jaxla {solver}"].append(_max_rel(p.explained_variance, ref))
        for solver in ("covariance_eigh", "full"):
            sk = SkPCA(k, svd_solver=solver).fit(x32)
            out[f"scikit-learn {solver}"].append(_max_rel(sk.explained_variance_, ref))
    return out


def run(config: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Run the experiment; write four PNG figures into ``out_dir``; return its results.

    Args:
        config: ``{"mode": "quick" | "full", "seed": int}``.
        out_dir: existing directory for the figures.

    Returns:
        ``{"summary", "metrics", "figures", "tables"}`` as described in :mod:`experiments`.
    """
    from sklearn.decomposition import PCA as SkPCA

    out_dir = Path(out_dir)
    mode, _ = _check_config(config)
    x_np, y_np = load_data(config)
    n, d = x_np.shape
    x = jnp.asarray(x_np)
    x64 = x_np.astype(np.float64)

    # ---------------------------------------------------------------- fits
    full = pca.fit(x, d, solver="covariance_eigh")
    ref = SkPCA(d, svd_solver="full").fit(x64)
    ev = np.asarray(full.explained_variance, np.float64)
    ratio = np.asarray(full.explained_variance_ratio, np.float64)
    cum = np.cumsum(ratio)
    k10 = 10
    # float32 eigenvalues carry an absolute error of about eps * largest: measure all of them
    # relative to the largest, and the leading ones relative to themselves
    ev_err = float(np.max(np.abs(ev - ref.explained_variance_)) / ref.explained_variance_[0])
    ev_err_top = _max_rel(ev[:k10], ref.explained_variance_[:k10])
    comp_err = float(np.max(np.abs(np.asarray(full.components[:k10], np.float64)
                                   - ref.components_[:k10])))
    ks_frac = {}
    for frac in (0.90, 0.95, 0.99):
        k_jax = int(pca.fit(x, frac).components.shape[0])
        k_sk = int(SkPCA(frac, svd_solver="full").fit(x64).n_components_)
        ks_frac[frac] = (k_jax, k_sk)
    svd_fit = pca.fit(x, k10, solver="svd")
    stream = pca.fit_stream((x_np[i:i + CHUNK] for i in range(0, n, CHUNK)), d)
    stream_diff = float(np.max(np.abs(np.asarray(stream.explained_variance, np.float64) - ev))
                        / ev[0])

    # 2-D projection
    p2 = pca.fit(x, 2)
    z2 = np.asarray(pca.transform(p2, x), np.float64)
    z2_ref = SkPCA(2, svd_solver="full").fit_transform(x64)
    proj_err = float(np.max(np.abs(z2 - z2_ref)) / np.max(np.abs(z2_ref)))

    # reconstructions with the first k components: zeroing the other coordinates of the full
    # projection keeps one array shape (one compilation) for every k
    z_full = pca.transform(full, x)
    ks_all = np.arange(0, d + 1)

    def reconstruct(k: int, rows: Any = slice(None)) -> np.ndarray:
        keep = (jnp.arange(d) < k).astype(z_full.dtype)[None, :]
        return np.asarray(pca.inverse_transform(full, z_full[rows] * keep), np.float64)

    mse = np.asarray([float(np.mean(np.sum((reconstruct(int(k)) - x64) ** 2, axis=1)))
                      for k in ks_all])
    mse_pred = np.asarray([float((n - 1) / n * ev[k:].sum()) for k in ks_all])
    recon_disc = float(np.max(np.abs(mse - mse_pred)) / mse_pred[0])
    examples = np.asarray([int(np.flatnonzero(y_np == c)[0]) for c in range(10)])
    recon = {k: reconstruct(k, examples) for k in RECON_KS}

    # float32 offsets
    offsets = [0.0, 1e2, 1e3, 1e4] if mode == "quick" else [0.0, 1e1, 1e2, 1e3, 3e3, 1e4, 3e4]
    off_err = _offset_errors(x_np, offsets, k10)

    # ---------------------------------------------------------------- figures
    figures = []
    idx = np.arange(1, d + 1)
    with figure(out_dir, "explained_variance.png", ncols=2, size=(11.5, 4.5)) as (fig, axes):
        ax = axes[0, 0]
        ax.bar(idx, 100 * ratio, color="C0", label="jaxla")
        ax.plot(idx, 100 * ref.explained_variance_ratio_, "k.", ms=3,
                label="scikit-learn (float64)")
        ax.set_xlabel("component $i$")
        ax.set_ylabel("explained variance ratio (%)")
        ax.set_title("Variance explained by each principal component")
        ax.legend()
        ax = axes[0, 1]
        ax.plot(idx, 100 * cum, "o-", ms=3)
        for (frac, (k_jax, _)), color in zip(ks_frac.items(), ("C1", "C2", "C3"), strict=True):
            ax.axhline(100 * frac, color=color, ls="--", lw=1)
            ax.axvline(k_jax, color=color, ls=":", lw=1)
            ax.annotate(f"{100 * frac:.0f}%: k={k_jax}", (k_jax, 100 * frac),
                        textcoords="offset points", xytext=(6, -14), color=color)
        ax.set_xlabel("number of components $k$")
        ax.set_ylabel("cumulative explained variance (%)")
        ax.set_title("Cumulative explained variance")
        ax.grid(True, alpha=0.3)
    figures.append({
        "file": "explained_variance.png",
        "caption": (
            f"Explained variance ratio of the {d} principal components of {n} digit images "
            f"(float32; scikit-learn float64 as dots: the top {k10} agree to {ev_err_top:.1e} "
            f"relative, all {d} to {ev_err:.1e} of the largest). n_components=0.90/0.95/0.99 "
            f"keeps "
            f"{ks_frac[0.9][0]}/{ks_frac[0.95][0]}/{ks_frac[0.99][0]} components, as "
            f"scikit-learn does ({ks_frac[0.9][1]}/{ks_frac[0.95][1]}/{ks_frac[0.99][1]})."
        ),
    })

    with figure(out_dir, "projection.png", size=(7.0, 6.0)) as (fig, axes):
        ax = axes[0, 0]
        for c in range(10):
            sel = y_np == c
            ax.scatter(z2[sel, 0], z2[sel, 1], s=6, alpha=0.7, color=f"C{c}", label=str(c))
            cx, cy = np.median(z2[sel, 0]), np.median(z2[sel, 1])
            ax.text(cx, cy, str(c), fontsize=14, weight="bold", ha="center", va="center",
                    color="black", bbox={"boxstyle": "round", "fc": "white", "alpha": 0.7})
        ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.1f}% of the variance)")
        ax.set_ylabel(f"PC 2 ({100 * ratio[1]:.1f}% of the variance)")
        ax.set_title("Digits projected on the first two principal axes")
        ax.legend(title="class", markerscale=2.5, fontsize=8, ncols=2, loc="best")
    figures.append({
        "file": "projection.png",
        "caption": (
            f"jaxla.pca.transform onto the first two components ({100 * cum[1]:.1f}% of the "
            f"variance), coloured by class; numbers mark class medians. Agreement with "
            f"scikit-learn's projection (signs included): {proj_err:.1e} relative."
        ),
    })

    cols = len(RECON_KS) + 1
    with figure(out_dir, "reconstructions.png", nrows=10, ncols=cols,
                size=(1.1 * cols + 0.6, 11.5)) as (fig, axes):
        for r, i in enumerate(examples):
            images = [x_np[i], *(recon[k][r] for k in RECON_KS)]
            for c, img in enumerate(images):
                ax = axes[r, c]
                ax.imshow(img.reshape(8, 8), cmap="gray_r", vmin=0, vmax=16)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title("original" if c == 0 else f"k={RECON_KS[c - 1]}", fontsize=9)
        fig.suptitle("inverse_transform(transform(x)) with k components")
    figures.append({
        "file": "reconstructions.png",
        "caption": (
            f"One image per class and its reconstruction from k = {', '.join(map(str, RECON_KS))}"
            f" principal components: {ks_frac[0.9][0]} components keep 90% of the variance."
        ),
    })

    with figure(out_dir, "reconstruction_error_and_offsets.png", ncols=2,
                size=(11.5, 4.5)) as (fig, axes):
        ax = axes[0, 0]
        floor = 1e-6 * mse_pred[0]
        ax.semilogy(ks_all, np.maximum(mse_pred, floor), "-", color="gray", lw=3, alpha=0.6,
                    label=r"$\frac{n-1}{n}\sum_{i>k}$ explained_variance$_i$")
        ax.semilogy(ks_all, np.maximum(mse, floor), "o", ms=3, color="C1",
                    label="measured (float32 round trip)")
        ax.set_xlabel("number of components $k$")
        ax.set_ylabel("mean squared reconstruction error per image")
        ax.set_title("Reconstruction error vs the discarded variance")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        ax = axes[0, 1]
        offs = np.asarray(offsets)
        xs = np.where(offs > 0, offs, 1.0)
        styles = {"jaxla covariance_eigh": ("C0", "o-"), "jaxla svd": ("C2", "s-"),
                  "scikit-learn covariance_eigh": ("C3", "x--"), "scikit-learn full": ("C7", "d--")}
        for label, errs in off_err.items():
            color, style = styles[label]
            ax.loglog(xs, np.maximum(errs, 1e-9), style, color=color, label=label, ms=5)
        ax.axhline(1e-3, color="k", ls=":", lw=1)
        ax.set_xlabel("offset added to every pixel (0 plotted at 1)")
        ax.set_ylabel(f"max rel. error of the top-{k10} variances")
        ax.set_title("float32 data with a large common offset")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    figures.append({
        "file": "reconstruction_error_and_offsets.png",
        "caption": (
            f"Left: measured reconstruction error against the prediction from the discarded "
            f"eigenvalues (max discrepancy {recon_disc:.1e} of the total). Right: the same "
            f"float32 images plus a constant offset; error of the top-{k10} explained variances "
            f"against float64. At offset {offsets[-1]:g}: jaxla covariance_eigh "
            f"{off_err['jaxla covariance_eigh'][-1]:.1e}, scikit-learn covariance_eigh "
            f"{off_err['scikit-learn covariance_eigh'][-1]:.1e}."
        ),
    })

    # ---------------------------------------------------------------- tables and metrics
    tables = [
        {
            "title": "Leading principal components (jaxla float32 vs scikit-learn float64)",
            "columns": ["i", "explained variance", "scikit-learn", "ratio (%)", "cumulative (%)",
                        "singular value"],
            "rows": [[i + 1, float(ev[i]), float(ref.explained_variance_[i]),
                      float(100 * ratio[i]), float(100 * cum[i]),
                      float(full.singular_values[i])] for i in range(k10)],
        },
        {
            "title": f"Max relative error of the top-{k10} explained variances, float32 data "
                     "plus an offset",
            "columns": ["offset", *off_err],
            "rows": [[float(o), *(float(v[j]) for v in off_err.values())]
                     for j, o in enumerate(offsets)],
        },
    ]
    metrics = {
        "n_images": n,
        "n_features": d,
        "k_for_90pct": ks_frac[0.9][0],
        "k_for_95pct": ks_frac[0.95][0],
        "k_for_99pct": ks_frac[0.99][0],
        "sklearn_k_for_95pct": ks_frac[0.95][1],
        "explained_variance_top10_max_rel_err_vs_sklearn": ev_err_top,
        "explained_variance_max_err_rel_to_largest_vs_sklearn": ev_err,
        "components_max_abs_err_vs_sklearn_top10": comp_err,
        "svd_solver_max_rel_err_top10": _max_rel(svd_fit.explained_variance,
                                                 ref.explained_variance_[:k10]),
        "residual_covariance_eigh": float(full.residual),
        "stream_vs_batch_max_diff": stream_diff,
        "projection_max_rel_err_vs_sklearn": proj_err,
        "reconstruction_vs_prediction_max_discrepancy": recon_disc,
        "offsets": offsets,
        "offset_errors": off_err,
    }
    worst = offsets[-1]
    summary = (
        f"PCA of {n} digit images (64 pixels) in float32: {ks_frac[0.9][0]} components explain "
        f"90% of the variance and {ks_frac[0.95][0]} explain 95% (scikit-learn picks the same); "
        f"the top {k10} explained variances agree with scikit-learn in float64 to "
        f"{ev_err_top:.1e}, the 2-D "
        f"projection to {proj_err:.1e}, and the streaming fit equals the batch fit to "
        f"{stream_diff:.1e}. With an offset of {worst:g} on every pixel the float32 covariance "
        f"solver stays at {off_err['jaxla covariance_eigh'][-1]:.1e} while scikit-learn's "
        f"float32 covariance_eigh is off by {off_err['scikit-learn covariance_eigh'][-1]:.1e}."
    )
    return {"summary": summary, "metrics": metrics, "figures": figures, "tables": tables}


if __name__ == "__main__":
    from experiments.runner import experiment_main

    raise SystemExit(experiment_main(sys.modules[__name__]))
