"""PCA: jaxla.pca's solvers against scikit-learn's PCA, in float32, on tall data.

Shapes (full run): 1,000,000 x 100 and 100,000 x 512, ``k = 10`` components. Each shape is run on
two versions of the same synthetic data (a decaying spectrum: Gaussian scores times a rotated,
geometrically decaying scale, ``SPECTRUM_DECAY`` from the first to the last feature):

- ``centered``: feature means near 0;
- ``offset``: the same data plus a per-feature mean of ``OFFSET`` times the largest feature
  standard deviation, as raw measurements usually have.

Both sides get the same float32 array. Accuracy is the max relative error of the top-k explained
variances against a float64 reference computed from the same float32 data (mean in float64, then
the centered covariance in float64, then ``numpy.linalg.eigvalsh``).

Cases:

- ``pca_fit``: ``jaxla.pca.fit(x, k, solver="covariance_eigh")`` (the jaxla side) against
  scikit-learn's ``PCA(k, svd_solver=...)`` with ``"covariance_eigh"``, ``"randomized"`` and
  ``"full"``, and against jaxla's other solvers (``"svd"``, ``"randomized"``) for reference.
  Flops are counted as ``n d^2`` (the distinct entries of the symmetric Gram matrix, 2 n flops
  each), the work of both covariance solvers.
- ``covariance_stats``: the one-pass statistics alone, ``jaxla.pca.stats_update`` (blocked,
  centered per block, merged exactly) against numpy's ``x.T @ x`` (OpenBLAS ``syrk``, the
  uncentered Gram matrix: the matmul-bound floor), with the scatter error of the uncentered
  formula ``x.T x - n m m^T`` next to it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import numpy as np
from sklearn.decomposition import PCA as SkPCA

from benchmarks.harness import Anchor, Case
from jaxla import pca

SUITE = "pca"

K = 10
OFFSET = 10.0
SPECTRUM_DECAY = 100.0
FULL_SHAPES = ((1_000_000, 100), (100_000, 512))
QUICK_SHAPES = ((20_000, 16), (4_000, 64))


def make_data(n: int, d: int, *, offset: bool, seed: int = 0) -> np.ndarray:
    """(n, d) float32 data with a geometrically decaying spectrum, optionally offset."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    scales = np.geomspace(1.0, 1.0 / SPECTRUM_DECAY, d)
    mix = (scales[:, None] * q.T).astype(np.float32)  # (d, d): rotated, decaying
    x = np.empty((n, d), np.float32)
    step = 65_536
    for i in range(0, n, step):
        z = rng.standard_normal((min(step, n - i), d), dtype=np.float32)
        x[i:i + step] = z @ mix
    if offset:
        x += (OFFSET * rng.uniform(0.5, 1.5, d)).astype(np.float32)[None, :]
    return x


def reference_variances(x: np.ndarray) -> np.ndarray:
    """All explained variances (descending) of float32 ``x``, computed in float64."""
    n, d = x.shape
    mean = np.zeros(d)
    for i in range(0, n, 65_536):
        mean += x[i:i + 65_536].sum(axis=0, dtype=np.float64)
    mean /= n
    cov = np.zeros((d, d))
    for i in range(0, n, 65_536):
        c = x[i:i + 65_536].astype(np.float64) - mean
        cov += c.T @ c
    return np.linalg.eigvalsh(cov / (n - 1))[::-1]


def _ev_error(ev, ref: np.ndarray) -> float:
    ev = np.asarray(ev, np.float64)[:K]
    return float(np.max(np.abs(ev - ref[:K]) / ref[:K]))


def _sk_fit(solver: str, x: np.ndarray) -> np.ndarray:
    return SkPCA(K, svd_solver=solver, random_state=0).fit(x).explained_variance_


def _jaxla_fit(solver: str, x):
    key = jax.random.key(0) if solver == "randomized" else None
    return pca.fit(x, K, solver=solver, key=key).explained_variance


def _stats(x):
    return pca.stats_update(pca.stats_init(x.shape[1]), x).scatter


def _scatter_error(ref_scatter: np.ndarray):
    scale = float(np.max(np.abs(ref_scatter)))

    def err(out) -> float:
        return float(np.max(np.abs(np.asarray(out, np.float64) - ref_scatter)) / scale)

    return err


def _numpy_gram(x: np.ndarray) -> np.ndarray:
    return x.T @ x


def _numpy_scatter_error(x: np.ndarray, ref_scatter: np.ndarray):
    """Error of the uncentered formula x.T x - n m m^T evaluated in float32."""
    n = x.shape[0]
    mean = x.mean(axis=0, dtype=np.float32)
    scale = float(np.max(np.abs(ref_scatter)))

    def err(gram) -> float:
        s = np.asarray(gram, np.float32) - np.float32(n) * np.outer(mean, mean)
        return float(np.max(np.abs(s.astype(np.float64) - ref_scatter)) / scale)

    return err


def cases(quick: bool) -> Iterator[Case]:
    shapes = QUICK_SHAPES if quick else FULL_SHAPES
    for n, d in shapes:
        for offset in (False, True):
            label = "offset" if offset else "centered"
            x = make_data(n, d, offset=offset)
            ref = reference_variances(x)
            acc = functools.partial(_ev_error, ref=ref)
            yield Case(
                name=f"pca_fit ({label})",
                size=f"{n}x{d}, k={K}",
                label='jaxla.pca.fit(solver="covariance_eigh")',
                fn=functools.partial(_jaxla_fit, "covariance_eigh"),
                args=(x,),
                anchors=[
                    Anchor('sklearn PCA(svd_solver="covariance_eigh")',
                           functools.partial(_sk_fit, "covariance_eigh"), (x,)),
                    Anchor('sklearn PCA(svd_solver="randomized")',
                           functools.partial(_sk_fit, "randomized"), (x,)),
                    Anchor('sklearn PCA(svd_solver="full")', functools.partial(_sk_fit, "full"),
                           (x,)),
                    Anchor('jaxla.pca.fit(solver="svd")', functools.partial(_jaxla_fit, "svd"),
                           (x,), jit=True),
                    Anchor('jaxla.pca.fit(solver="randomized")',
                           functools.partial(_jaxla_fit, "randomized"), (x,), jit=True),
                ],
                accuracy=acc,
                metric=f"max relative error of the top-{K} explained variances vs float64",
                flops=float(n) * d * d,
                note=(
                    "GFLOP/s count n d^2 flops, the distinct entries of the symmetric Gram "
                    "matrix (2 n flops each); "
                    + ("feature means of about 10 standard deviations."
                       if offset else "feature means near 0.")
                ),
            )
            if offset:
                continue
            xo = x  # the throughput case: centered data, where the uncentered formula is fine
            mean = xo.mean(axis=0, dtype=np.float64)
            ref_scatter = np.zeros((d, d))
            for i in range(0, n, 65_536):
                c = xo[i:i + 65_536].astype(np.float64) - mean
                ref_scatter += c.T @ c
            yield Case(
                name="covariance_stats",
                size=f"{n}x{d}",
                label="jaxla.pca.stats_update",
                fn=_stats,
                args=(xo,),
                anchors=[
                    Anchor("numpy x.T @ x (OpenBLAS syrk, uncentered)", _numpy_gram, (xo,),
                           accuracy=_numpy_scatter_error(xo, ref_scatter)),
                ],
                accuracy=_scatter_error(ref_scatter),
                metric="max error of the centered scatter matrix / its largest entry, vs float64",
                flops=float(n) * d * d,
                note="GFLOP/s count n d^2 flops (symmetric Gram).",
            )
