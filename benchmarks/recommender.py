"""Recommender: one ALS sweep of jaxla.models.als against per-row numpy solves, in float32.

Data: :func:`jaxla.datasets.synthetic_ratings` (rank 32 truth, noise 0.1, all observed entries
used for training) at 10,000 users x 2,000 items with 5% of the entries observed (full run), and
the same initial factors ``(U0, V0)`` for every side. One sweep is a user half-step (every user's
regularized normal equations ``(V_i^T V_i + reg I) u_i = V_i^T r_i`` given ``V0``) followed by an
item half-step given the new users, ``reg = 0.1``.

Sides:

- jaxla: ``jaxla.models.als(ratings, mask, r, iters=1, init=(U0, V0))``, jitted: all Gram
  matrices from one dense matrix product per half-step, one batched Cholesky factorization and a
  vmapped triangular solve, then the balancing of the factors and the diagnostics (objective,
  training RMSE, gradient norms) that every call reports.
- anchor ``numpy per-row solve``: the loop users write, over a CSR / CSC copy of the ratings
  (built once, untimed): for each user ``np.linalg.solve(X.T @ X + reg I, X.T @ r)`` with ``X``
  the rows of ``V`` of the items the user rated; then the same for every item.
- anchor ``numpy batched``: the same algorithm as jaxla in numpy: Gram matrices from ``mask @ Z``
  (upper triangles of the ``v_j v_j^T``), one stacked ``np.linalg.solve``.

Accuracy: the relative error of the predictions ``U V^T`` after the sweep (Frobenius norm over
all entries) against a float64 computation of the same sweep (the batched algorithm in float64).
Balancing leaves ``U V^T`` unchanged, so all sides compare directly.

Flops are those of the dense Gram products and right-hand sides, ``4 m n (q + p)`` with
``q = p (p + 1) / 2``, ``p = r``: the work jaxla does. The per-row loop does about ``density``
of that work.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np

from benchmarks.harness import Anchor, Case, rel_error
from jaxla.datasets import synthetic_ratings
from jaxla.models import recommender as rec

SUITE = "recommender"

REG = 0.1
FULL_SHAPES = ((10_000, 2_000, 0.05, 32),)
QUICK_SHAPES = ((1_000, 200, 0.05, 8),)


def make_problem(m: int, n: int, density: float, rank: int, seed: int = 0):
    """Ratings (m, n) float32, mask (m, n) bool and initial factors U0 (m, r), V0 (n, r)."""
    data = synthetic_ratings(seed, m, n, rank, density=density, noise=0.1, test_fraction=0.0)
    rng = np.random.default_rng(seed + 1)
    scale = rank ** -0.25
    u0 = (scale * rng.standard_normal((m, rank))).astype(np.float32)
    v0 = (scale * rng.standard_normal((n, rank))).astype(np.float32)
    return data.ratings, data.train_mask, u0, v0


def _csr(ratings: np.ndarray, mask: np.ndarray):
    """Row-compressed copy: (indptr (m + 1,), indices (nnz,), values (nnz,))."""
    rows, cols = np.nonzero(mask)
    indptr = np.zeros(mask.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=mask.shape[0]), out=indptr[1:])
    return indptr, cols, ratings[rows, cols]


def _loop_half(indptr, indices, values, x, reg):
    p = x.shape[1]
    eye = reg * np.eye(p, dtype=x.dtype)
    out = np.zeros((len(indptr) - 1, p), dtype=x.dtype)
    for i in range(len(indptr) - 1):
        lo, hi = indptr[i], indptr[i + 1]
        xi = x[indices[lo:hi]]
        out[i] = np.linalg.solve(xi.T @ xi + eye, xi.T @ values[lo:hi])
    return out


def numpy_loop_sweep(users_csr, items_csr, v0, reg=REG):
    """One ALS sweep, one ``np.linalg.solve`` per user and per item. Returns ``(U, V)``."""
    u = _loop_half(*users_csr, v0, reg)
    v = _loop_half(*items_csr, u, reg)
    return u, v


def _batched_half(w, r, x, reg):
    p = x.shape[1]
    iu, ju = np.triu_indices(p)
    idx = np.empty((p, p), dtype=np.int64)
    idx[iu, ju] = np.arange(iu.size)
    idx[ju, iu] = np.arange(iu.size)
    gram = (w @ (x[:, iu] * x[:, ju]))[:, idx] + reg * np.eye(p, dtype=x.dtype)[None, :, :]
    rhs = (w * r) @ x
    return np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]


def numpy_batched_sweep(ratings, weights, v0, reg=REG):
    """One ALS sweep with stacked Gram matrices and one batched ``np.linalg.solve`` per side."""
    u = _batched_half(weights, ratings, v0, reg)
    v = _batched_half(weights.T, ratings.T, u, reg)
    return u, v


def _jaxla_sweep(ratings, mask, u0, v0, *, rank):
    model = rec.als(ratings, mask, rank, reg=REG, iters=1, init=(u0, v0))
    return model.user_factors, model.item_factors


def _product_error(ref_prod: np.ndarray):
    def err(out) -> float:
        u, v = (np.asarray(a, np.float64) for a in out)
        return rel_error(u @ v.T, ref_prod)

    return err


def cases(quick: bool) -> Iterator[Case]:
    for m, n, density, rank in QUICK_SHAPES if quick else FULL_SHAPES:
        ratings, mask, u0, v0 = make_problem(m, n, density, rank)
        weights = mask.astype(np.float32)
        users_csr, items_csr = _csr(ratings, mask), _csr(ratings.T, mask.T)
        u, v = numpy_batched_sweep(ratings.astype(np.float64), mask.astype(np.float64),
                                   v0.astype(np.float64))
        acc = _product_error(u @ v.T)
        q = rank * (rank + 1) // 2
        yield Case(
            name="als_sweep",
            size=f"{m}x{n}, {100 * density:g}% observed, r={rank}",
            label="jaxla.models.als(iters=1)",
            fn=functools.partial(_jaxla_sweep, rank=rank),
            args=(ratings, mask, u0, v0),
            anchors=[
                Anchor("numpy per-row np.linalg.solve (CSR loop)", numpy_loop_sweep,
                       (users_csr, items_csr, v0)),
                Anchor("numpy batched Gram + np.linalg.solve", numpy_batched_sweep,
                       (ratings, weights, v0)),
            ],
            accuracy=acc,
            metric="relative Frobenius error of U V^T after one sweep vs float64",
            flops=4.0 * m * n * (q + rank),
            note=(f"{int(mask.sum())} observed ratings; GFLOP/s count the dense Gram products "
                  "and right-hand sides (4 m n (q + r), q = r (r + 1) / 2); the per-row loop "
                  "does about the density times that work. jaxla's call also balances the "
                  "factors and computes the objective, RMSE and gradient norms it reports."),
        )
