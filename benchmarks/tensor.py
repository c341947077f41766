"""Tensor trains: jaxla's TT-SVD and TT-matrix products against tensorly and dense matmuls.

Data: samples of the smooth function ``1 / (1 + x_1 + x_2 + x_3 + x_4)`` on a uniform grid of
``[0, 1]^4`` (``n^4`` entries, float32 on both sides; the float64 tensor is the reference), and
a random ``(d_in, d_out)`` float32 weight for the TT-matrix product.

Cases:

- ``tt_svd_eps``: ``jaxla.linalg.tensor.tt_svd(a, eps=EPS)`` (eager: its ranks depend on the
  data) against tensorly's ``tensor_train`` (numpy backend) given the ranks jaxla chose. Both
  run the same algorithm (d - 1 sequential SVDs), so the accuracy columns agree and the times
  compare the implementations; jaxla's time includes choosing the ranks.
- ``tt_svd_fixed``: ``tt_svd(a, max_rank=RANK)`` jitted, against tensorly at the same ranks.
- ``tt_matvec``: ``x @ W`` with ``W`` a TT matrix of rank ``RANK`` (cores ``(r, m_k, n_k, r')``,
  ``W`` never formed) against the dense product with the same (reconstructed) matrix, in jitted
  JAX and in numpy. Flops are those of the TT sweep.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import jax
import numpy as np

from benchmarks.harness import Anchor, Case, rel_error
from jaxla._numerics import matmul
from jaxla.linalg.tensor import tt_matrix, tt_matrix_to_dense, tt_matvec, tt_ranks, tt_svd

SUITE = "tensor"

EPS = 1e-4
RANK = 8
QUICK_GRID, FULL_GRID = 8, 40
QUICK_DIMS, FULL_DIMS = ((4, 4, 4), (4, 4, 4)), ((8, 8, 16), (8, 8, 16))
QUICK_BATCH, FULL_BATCH = 32, 1024


def smooth(n: int) -> np.ndarray:
    """``1 / (1 + x_1 + ... + x_4)`` on ``linspace(0, 1, n)^4``: (n, n, n, n) float64."""
    x = np.linspace(0.0, 1.0, n)
    return 1.0 / (1.0 + x[:, None, None, None] + x[None, :, None, None]
                  + x[None, None, :, None] + x[None, None, None, :])


def _full(cores) -> np.ndarray:
    import tensorly as tl

    return tl.tt_to_tensor([np.asarray(c, np.float64) for c in cores])


def _tensorly(a: np.ndarray, ranks: tuple[int, ...]):
    import tensorly as tl
    from tensorly.decomposition import tensor_train

    tl.set_backend("numpy")
    return list(tensor_train(a, rank=list(ranks)))


def _matvec_flops(ttm, batch: int) -> float:
    """Flops of the sweep of jaxla.linalg.tensor.tt_matvec (2 per multiply-add)."""
    total, done, rest = 0.0, 1, math.prod(int(c.shape[1]) for c in ttm.cores)
    for c in ttm.cores:
        r, m, n, r2 = (int(v) for v in c.shape)
        rest //= m
        total += 2.0 * batch * done * r * m * rest * n * r2
        done *= n
    return total


def cases(quick: bool) -> Iterator[Case]:
    n = QUICK_GRID if quick else FULL_GRID
    a64 = smooth(n)
    a32 = a64.astype(np.float32)

    def tt_error(out) -> float:
        return rel_error(_full(out.cores if hasattr(out, "cores") else out), a64)

    ranks = tt_ranks(tt_svd(a32, eps=EPS))
    yield Case(
        name="tt_svd_eps",
        size=f"{n}^4",
        label=f"tt_svd(eps={EPS:g})",
        fn=functools.partial(tt_svd, eps=EPS),
        args=(a32,),
        jit=False,
        anchors=[Anchor(f"tensorly tensor_train(rank={ranks})",
                        functools.partial(_tensorly, ranks=ranks), (a32,))],
        accuracy=tt_error,
        metric="relative Frobenius error of the TT vs the float64 tensor",
        info=lambda out: {"ranks": list(tt_ranks(out)) if hasattr(out, "cores") else None},
    )

    fixed = (1, RANK, RANK, RANK, 1)
    yield Case(
        name="tt_svd_fixed",
        size=f"{n}^4",
        label=f"tt_svd(max_rank={RANK})",
        fn=functools.partial(tt_svd, max_rank=RANK),
        args=(a32,),
        anchors=[Anchor(f"tensorly tensor_train(rank={RANK})",
                        functools.partial(_tensorly, ranks=fixed), (a32,))],
        accuracy=tt_error,
        metric="relative Frobenius error of the TT vs the float64 tensor",
    )

    rows, cols = QUICK_DIMS if quick else FULL_DIMS
    batch = QUICK_BATCH if quick else FULL_BATCH
    rng = np.random.default_rng(0)
    w = rng.standard_normal((math.prod(rows), math.prod(cols))).astype(np.float32)
    ttm = tt_matrix(w, rows, cols, max_rank=RANK)
    dense = np.asarray(tt_matrix_to_dense(ttm), np.float32)
    x = rng.standard_normal((batch, math.prod(rows))).astype(np.float32)
    ref = x.astype(np.float64) @ dense.astype(np.float64)
    yield Case(
        name="tt_matvec",
        size=f"{batch}x{math.prod(rows)} @ TT{tuple(rows)}x{tuple(cols)} r={RANK}",
        fn=tt_matvec,
        args=(ttm, x),
        anchors=[
            Anchor("jnp dense x @ W (HIGHEST)", jax.jit(matmul), (x, dense), jit=True),
            Anchor("numpy dense x @ W", np.matmul, (x, dense)),
        ],
        accuracy=lambda out: rel_error(out, ref),
        metric="relative Frobenius error vs float64 x @ W",
        flops=_matvec_flops(ttm, batch),
        note=(f"TT matrix: {sum(int(np.prod(c.shape)) for c in ttm.cores)} parameters against "
              f"{w.size} dense; the dense anchors multiply by the same (reconstructed) matrix."),
    )
