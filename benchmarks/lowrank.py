"""Low-rank approximation: jaxla.linalg.randomized_svd against scikit-learn's randomized_svd.

Data: ``sklearn.datasets.make_low_rank_matrix(20000, 2000, effective_rank=50, random_state=0)``
in float32, rank 50: a spectrum whose top singular values are close together and decay slowly,
where randomized solvers lose accuracy. scikit-learn's ``randomized_svd`` runs at its defaults
(``n_oversamples=10``, ``n_iter='auto'`` = 7 here, LU normalizer) with ``random_state=0``;
``torch.svd_lowrank`` is added when torch is importable.

Accuracy is the largest relative error of the 50 singular values against the exact ones of the
same float32-rounded matrix, computed once in float64 (eigenvalues of the float64 Gram matrix
``A^T A``: for these singular values, within 0.6 of the largest, its relative error is ~1e-15).

GFLOP/s counts only the products with ``A`` (``2 m n`` flops per matrix-vector product) of jaxla's
configuration; the same count is shown for the anchors.

Acceptance: jaxla's ``randomized_svd`` at its defaults is at least as accurate as scikit-learn's at
its defaults, in the same run, with a time ratio jaxla/scikit-learn of at most 0.5.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import make_low_rank_matrix
from sklearn.utils.extmath import randomized_svd as sk_randomized_svd

import jaxla.linalg as L
from benchmarks.harness import Anchor, Case

SUITE = "lowrank"

KEY = jax.random.key(0)
METRIC = "largest relative error of the top-k singular values, max_i |s_i - s_i*| / s_i*"


def _data(m: int, n: int, effective_rank: int) -> tuple[np.ndarray, np.ndarray]:
    """The float32 test matrix and the exact singular values of its float32 entries (float64)."""
    a = make_low_rank_matrix(m, n, effective_rank=effective_rank, random_state=0)
    a = a.astype(np.float32)
    a64 = a.astype(np.float64)
    gram = a64.T @ a64 if m >= n else a64 @ a64.T
    s_exact = np.sqrt(np.maximum(np.linalg.eigvalsh(gram)[::-1], 0.0))
    return a, s_exact


def _accuracy(k: int, s_exact: np.ndarray):
    ref = s_exact[:k]
    return lambda out: float(np.max(np.abs(np.asarray(out[1], np.float64) - ref) / ref))


def _rsvd_info(out) -> dict:
    return {
        "error_estimate": float(out.error_estimate),
        "passes": int(out.passes),
        "matvecs": int(out.matvecs),
        "sketch_size": int(out.sketch_size),
    }


def _no_info(out) -> dict:
    return {}


def _anchors(a: np.ndarray, k: int) -> list[Anchor]:
    anchors = [
        Anchor(
            "sklearn randomized_svd (defaults)",
            functools.partial(sk_randomized_svd, n_components=k, random_state=0),
            (a,),
            info=_no_info,
        )
    ]
    try:  # optional anchor: skipped quietly when torch is not installed
        import torch
    except ImportError:
        return anchors

    def torch_lowrank(x):
        u, s, v = torch.svd_lowrank(torch.from_numpy(x), q=k + 10, niter=2)
        return u[:, :k].numpy(), s[:k].numpy(), v[:, :k].T.numpy()

    anchors.append(
        Anchor("torch.svd_lowrank (q=k+10, niter=2)", torch_lowrank, (a,), info=_no_info)
    )
    return anchors


def _rsvd_case(a, s_exact, k, name, label, note, **kwargs) -> Case:
    m, n = a.shape
    fn = functools.partial(_run_rsvd, k=k, kwargs=tuple(sorted(kwargs.items())))
    return Case(
        name=name,
        size=f"{m}x{n}, k={k}",
        label=label,
        fn=fn,
        args=(a,),
        anchors=_anchors(a, k),
        accuracy=_accuracy(k, s_exact),
        metric=METRIC,
        info=_rsvd_info,
        flops=2.0 * m * n * _matvecs(m, n, k, **kwargs),
        note=note,
    )


def _matvecs(m: int, n: int, k: int, **kwargs) -> int:
    """Products with ``A`` of a configuration, read off a run on a zero operator (cheap)."""
    zero = L.LinearOperator(
        (m, n),
        np.float32,
        lambda x: jnp.zeros((m, x.shape[1]), x.dtype),
        lambda y: jnp.zeros((n, y.shape[1]), y.dtype),
    )
    return int(L.randomized_svd(KEY, zero, k, **kwargs).matvecs)


def _run_rsvd(a, *, k, kwargs):
    return L.randomized_svd(KEY, a, k, **dict(kwargs))


def cases(quick: bool = False) -> Iterator[Case]:
    """The low-rank cases; the data is built once, lazily."""
    m, n, r = (2000, 200, 10) if quick else (20_000, 2000, 50)
    a, s_exact = _data(m, n, r)
    k = r
    yield _rsvd_case(
        a, s_exact, k, "randomized_svd", "jaxla randomized_svd (defaults)",
        "defaults: subspace iteration, q=7 (the rule of scikit-learn), QR re-normalization, "
        "2q+2=16 passes over A like scikit-learn's. ACCEPTANCE: at least as accurate as "
        "scikit-learn at its defaults in the same run; target time ratio <= 0.5",
    )
    yield _rsvd_case(
        a, s_exact, k, "randomized_svd krylov", "jaxla randomized_svd (block_krylov, q=3)",
        "block Krylov, q=3: 8 passes over A (7 on 60 columns, the last on 244)",
        method="block_krylov", power_iters=3,
    )
    yield Case(
        name="truncated_svd",
        size=f"{m}x{n}, k={k}",
        label="jaxla truncated_svd (exact)",
        fn=lambda x: L.truncated_svd(x, k),
        args=(a,),
        anchors=[Anchor("scipy.linalg.svd (gesdd), top k", _scipy_top_k(k), (a,))],
        accuracy=_accuracy(k, s_exact),
        metric=METRIC,
    )


def _scipy_top_k(k: int):
    import scipy.linalg

    def top_k(x):
        u, s, vt = scipy.linalg.svd(x, full_matrices=False, lapack_driver="gesdd")
        return u[:, :k], s[:k], vt[:k]

    return top_k
