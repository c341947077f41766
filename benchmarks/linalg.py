"""Dense linear algebra: jaxla.linalg against numpy, scipy and scikit-learn, in float32.

Every case uses the same float32 matrices on both sides and measures accuracy against a float64
reference computed with numpy from the same (float32-rounded) data. Thin factorizations are
compared with thin factorizations (``full_matrices=False`` everywhere).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import scipy.linalg
import sklearn.metrics.pairwise

import jaxla.linalg as L
from benchmarks.harness import Anchor, Case, max_abs_error, max_rel_error, rel_error

SUITE = "linalg"

DTYPE = np.float32

NUMPY_IN_FLOAT64 = (
    "numpy.linalg computes float32 input in float64 internally and rounds the result to "
    "float32 (hence its smaller error); jaxla and scipy.linalg run the float32 LAPACK routines"
)


def _gaussian(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape, dtype=DTYPE)


def _first(out):
    """The solution of a ``lstsq`` result: jaxla's ``LstsqResult`` or numpy/scipy's tuple."""
    return out[0]


def svd_case(m: int, n: int, seed: int = 0) -> Case:
    """Thin SVD of a Gaussian (m, n) matrix; accuracy of the singular values."""
    a = _gaussian(np.random.default_rng(seed), m, n)
    s_ref = np.linalg.svd(a.astype(np.float64), compute_uv=False)
    return Case(
        name="svd",
        size=f"{m}x{n}",
        label="jaxla.linalg.svd",
        fn=lambda x: L.svd(x, full_matrices=False),
        args=(a,),
        anchors=[
            Anchor("numpy.linalg.svd", functools.partial(np.linalg.svd, full_matrices=False),
                   (a,)),
            Anchor(
                "scipy.linalg.svd (gesdd)",
                functools.partial(scipy.linalg.svd, full_matrices=False, lapack_driver="gesdd"),
                (a,),
            ),
        ],
        accuracy=lambda out: max_rel_error(out[1], s_ref),
        metric="max relative error of the singular values, max_i |s_i - s_i*| / s_i*",
        note=NUMPY_IN_FLOAT64,
    )


def eigh_case(n: int, seed: int = 0) -> Case:
    """Eigendecomposition of a symmetric Gaussian (n, n) matrix; accuracy of the eigenvalues."""
    g = _gaussian(np.random.default_rng(seed), n, n)
    a = ((g + g.T) / 2).astype(DTYPE)
    w_ref = np.linalg.eigvalsh(a.astype(np.float64))
    scale = float(np.abs(w_ref).max())
    return Case(
        name="eigh",
        size=f"{n}x{n}",
        label="jaxla.linalg.eigh",
        fn=lambda x: L.eigh(x),
        args=(a,),
        anchors=[
            Anchor("numpy.linalg.eigh", np.linalg.eigh, (a,)),
            Anchor("scipy.linalg.eigh", scipy.linalg.eigh, (a,)),
        ],
        accuracy=lambda out: max_rel_error(out[0], w_ref, scale=scale),
        metric="max eigenvalue error relative to the spectral norm, max_i |w_i - w_i*| / max|w*|",
        note=NUMPY_IN_FLOAT64,
    )


def pinv_case(m: int, n: int, seed: int = 0) -> Case:
    """Pseudo-inverse of a Gaussian (m, n) matrix."""
    a = _gaussian(np.random.default_rng(seed), m, n)
    p_ref = np.linalg.pinv(a.astype(np.float64))
    return Case(
        name="pinv",
        size=f"{m}x{n}",
        label="jaxla.linalg.pinv",
        fn=lambda x: L.pinv(x),
        args=(a,),
        anchors=[
            Anchor("numpy.linalg.pinv", np.linalg.pinv, (a,)),
            Anchor("scipy.linalg.pinv", scipy.linalg.pinv, (a,)),
        ],
        accuracy=lambda out: rel_error(out, p_ref),
        metric="relative Frobenius error of the pseudo-inverse, ||P - P*||_F / ||P*||_F",
        note="numpy.linalg.pinv computes its SVD in float64 internally and rounds the factors "
        "to float32; jaxla and scipy.linalg.pinv work in float32",
    )


def lstsq_case(m: int, n: int, k: int, seed: int = 0) -> Case:
    """Least squares for a Gaussian (m, n) matrix and k right-hand sides with noise."""
    rng = np.random.default_rng(seed)
    a = _gaussian(rng, m, n)
    b = (a @ _gaussian(rng, n, k) + 0.1 * _gaussian(rng, m, k)).astype(DTYPE)
    x_ref = np.linalg.lstsq(a.astype(np.float64), b.astype(np.float64), rcond=None)[0]
    return Case(
        name="lstsq",
        size=f"{m}x{n}, {k} rhs",
        label="jaxla.linalg.lstsq",
        fn=lambda x, y: L.lstsq(x, y),
        args=(a, b),
        anchors=[
            Anchor("numpy.linalg.lstsq", functools.partial(np.linalg.lstsq, rcond=None), (a, b)),
            Anchor("scipy.linalg.lstsq (gelsd)", scipy.linalg.lstsq, (a, b)),
        ],
        accuracy=lambda out: rel_error(_first(out), x_ref),
        metric="relative error of the solution, ||x - x*||_F / ||x*||_F",
        note=NUMPY_IN_FLOAT64,
    )


def _normalized_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def numpy_cosine_similarity(x: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity in numpy: normalize the rows, then one matmul."""
    xn = _normalized_rows(x)
    return xn @ xn.T


def cosine_case(n: int, d: int, seed: int = 0) -> Case:
    """Pairwise cosine similarity of n vectors of dimension d with themselves, (n, n) output."""
    x = _gaussian(np.random.default_rng(seed), n, d)
    xn64 = _normalized_rows(x.astype(np.float64))
    ref = xn64 @ xn64.T

    def accuracy(out: np.ndarray) -> float:
        # Row blocks keep the float64 temporaries small for the 10k x 10k output.
        step = 1024
        return max(
            max_abs_error(out[i : i + step], ref[i : i + step]) for i in range(0, n, step)
        )

    return Case(
        name="cosine_similarity",
        size=f"{n}x{d} -> {n}x{n}",
        label="jaxla.linalg.cosine_similarity",
        fn=lambda v: L.cosine_similarity(v),
        args=(x,),
        anchors=[
            Anchor("numpy (normalize rows, matmul)", numpy_cosine_similarity, (x,)),
            Anchor("sklearn.metrics.pairwise.cosine_similarity",
                   sklearn.metrics.pairwise.cosine_similarity, (x,)),
        ],
        accuracy=accuracy,
        metric="max absolute error of the similarities, max_ij |c_ij - c_ij*|",
        flops=2.0 * n * n * d,
    )


def cases(quick: bool = False) -> Iterator[Case]:
    """The linalg cases; each case's data is built only when it runs."""
    if quick:
        yield svd_case(200, 100)
        yield eigh_case(200)
        yield pinv_case(200, 100)
        yield lstsq_case(400, 100, 4)
        yield cosine_case(1000, 64)
        return
    yield svd_case(1000, 500)
    yield svd_case(2000, 1000)
    yield eigh_case(1000)
    yield eigh_case(2000)
    yield pinv_case(1000, 500)
    yield lstsq_case(4000, 500, 10)
    yield cosine_case(10_000, 256)
