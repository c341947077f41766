"""Principal component analysis: batch, streaming and sharded fits, exact in float32.

``fit`` returns a :class:`PCA` whose fields carry scikit-learn's names and definitions
(``PCA.components_`` is ``PCA.components`` here, and so on), so results compare directly with
``sklearn.decomposition.PCA``:

- ``explained_variance`` uses the ``n - 1`` denominator; ``explained_variance_ratio`` divides by
  the total variance of *all* components; ``singular_values`` are those of the centered data;
  ``noise_variance`` is the mean of the discarded eigenvalues among ``min(n, d)`` (0 when every
  component is kept).
- Signs follow scikit-learn (``svd_flip(u, vt, u_based_decision=False)``): the entry of largest
  magnitude of each component is positive (ties go to the first index).
- ``whiten=True`` divides the projections by ``sqrt(explained_variance)`` (clipped below at the
  dtype's machine epsilon, as scikit-learn does).

Dimension letters: ``n`` samples (rows), ``d`` features (columns), ``k`` components.

Solvers (``solver=``):

- ``"covariance_eigh"``: one pass over the rows in blocks of ``block_size``: each block is
  centered on the running mean (the first block on its own mean) before its Gram matrix is
  accumulated, and the mean and the centered scatter are updated exactly (Chan et al.). No
  centered copy of ``x`` is made, and the cancellation of ``x.T @ x - n mean mean.T`` (what
  scikit-learn's float32 ``covariance_eigh`` computes) is avoided, so data with a large common
  offset keep float32 accuracy. The (d, d) covariance is then diagonalized. Cost ``n d^2`` plus
  ``d^3``: the choice for tall data. As for any covariance method, each eigenvalue carries an
  absolute error of about float epsilon times the largest one.
- ``"svd"``: thin SVD of the centered data. Cost ``n d min(n, d)``; the most accurate for
  components whose variance is tiny next to the largest (no squaring of the condition number).
- ``"randomized"``: ``jaxla.linalg.randomized_svd`` (Halko et al.; ``oversamples`` and
  ``power_iters`` are passed on) of a centered copy of the data (as scikit-learn does: centering
  implicitly inside the products would cancel catastrophically in float32 for data with a large
  offset); needs ``key``. Total variance, ``explained_variance_ratio`` and ``noise_variance`` are
  exact (they come from the data, not from the approximate spectrum), and ``PCA.residual``
  certifies the result, so it is never silently inaccurate.
- ``"auto"``: ``"covariance_eigh"`` when ``n >= 10 d`` and ``d <= 1000``; otherwise
  ``"randomized"`` when a ``key`` is given, ``n_components`` is an int below ``min(n, d) // 4`` and
  ``min(n, d) >= 500``; otherwise ``"svd"``. jaxla never draws random numbers without a key, so
  without one ``"auto"`` always picks an exact solver.

Whitening is stored as data: ``PCA.whiten`` is a boolean scalar and :func:`transform` /
:func:`inverse_transform` apply ``jnp.where(pca.whiten, ...)``. A fitted ``PCA`` is therefore an
ordinary pytree of arrays that passes through ``jit`` and ``vmap`` (a stack of fits, some whitened
and some not, is fine), and ``whiten`` may even be a traced boolean.

Streaming: :class:`PCAStats` holds ``(count, mean, scatter)``; :func:`stats_init`,
:func:`stats_update`, :func:`stats_merge` and :func:`fit_from_stats` are pure and jittable, and
:func:`fit_stream` fits from any iterable of row chunks (data larger than memory). The merge is
exact (Chan, Golub and LeVeque's parallel update), so a streaming fit equals the batch fit up to
rounding.

Sharding: when ``x`` is sharded by rows over a ``jax.sharding.Mesh``, ``"covariance_eigh"``
splits the rows into one group per shard, accumulates each group's statistics where its rows live
and merges the groups' (d, d) statistics: only those (and the (d,) means) cross devices, and the
result equals the single-device fit up to rounding. The number of shards is read from a concrete
array's sharding (``fit`` called outside ``jit``) or from the type of a traced one when the mesh
axes are ``jax.sharding.AxisType.Explicit``; under ``jit`` with ``Auto`` axes pass
``row_groups=<number of row shards>``. :func:`stats_update` (hence :func:`fit_stream`) reduces a
sharded chunk the same way. The ``"svd"`` and ``"randomized"`` solvers of a tall ``x`` whose
shards hold at least ``d`` rows each run where the rows live too (the TSQR and row-split paths
of :mod:`jaxla.linalg.lowrank`: only (d, d) and (d, k) factors cross devices), with the shard
count read the same way (with ``Auto`` axes under ``jit`` XLA partitions the single-device
algorithm instead).

Accuracy certificate: ``PCA.residual`` is ``max_i ||C v_i - ev_i v_i||_2 / ev_0`` over the kept
components ``v_i`` (rows of ``components``) and ``ev = explained_variance``, with ``C`` the
covariance of the training data. For a symmetric ``C`` and unit ``v_i`` this bounds the error:
each ``explained_variance[i]`` lies within ``residual * explained_variance[0]`` of an exact
eigenvalue, and a component is within an angle of about ``residual * ev_0 / gap_i`` of the exact
axis, ``gap_i`` being the distance from ``ev_i`` to the rest of the spectrum. The svd and
randomized solvers evaluate it against the data (one more pass, ``2 n d k`` flops), the
covariance solver against the covariance it accumulated. Exact solvers give about the float
epsilon; a randomized fit with too few power iterations shows a large value instead of failing
silently. (For a variance-fraction ``n_components`` the maximum runs over all ``min(n, d)``
computed components, an upper bound.)

Value problems: called eagerly, :func:`fit` raises on NaN/Inf input (checked for free on the
statistics, the data are scanned only when they are not finite). Under ``jit`` it cannot raise;
``PCA.ok`` is then ``False`` and wrapping the call in ``jax.experimental.checkify.checkify``
raises the same message.

References:
    T. F. Chan, G. H. Golub, R. J. LeVeque, "Updating formulae and a pairwise algorithm for
    computing sample variances", 1979. N. Halko, P.-G. Martinsson, J. A. Tropp, "Finding structure
    with randomness", SIAM Review, 2011.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import checkify

from jaxla import _checks
from jaxla._checks import as_float_array, check_int, check_key, check_option, compute_dtype, fail
from jaxla._numerics import matmul
from jaxla.linalg import eigh, lowrank, svd
from jaxla.linalg._canonical import vector_signs

__all__ = [
    "PCA",
    "SOLVERS",
    "PCAStats",
    "fit",
    "fit_from_stats",
    "fit_stream",
    "fit_transform",
    "inverse_transform",
    "stats_init",
    "stats_merge",
    "stats_update",
    "transform",
]

SOLVERS = ("auto", "covariance_eigh", "svd", "randomized")
"""The values accepted by ``solver=``."""

_FIT = "jaxla.pca.fit"


class PCA(NamedTuple):
    """A fitted principal component analysis (scikit-learn's ``PCA`` attributes, as arrays).

    ``k = components.shape[0]`` components of ``d`` features. Under ``vmap`` every field gains a
    leading batch axis.
    """

    mean: jax.Array  # (d,) per-feature mean of the training data (zeros when center=False)
    components: jax.Array  # (k, d) orthonormal principal axes, by decreasing variance
    explained_variance: jax.Array  # (k,) variance along each axis (n - 1 denominator)
    explained_variance_ratio: jax.Array  # (k,) explained_variance / total variance of all axes
    singular_values: jax.Array  # (k,) singular values of the centered data
    noise_variance: jax.Array  # () mean of the discarded eigenvalues among min(n, d); 0 if none
    n_samples: jax.Array  # () int32, number of training rows
    whiten: jax.Array  # () bool, whether transform whitens (divides by sqrt(explained_variance))
    ok: jax.Array  # () bool, True when every statistic is finite (False for NaN/Inf input)
    residual: jax.Array  # () max_i ||C v_i - ev_i v_i|| / ev_0: accuracy certificate (see fit)


class PCAStats(NamedTuple):
    """Sufficient statistics of a set of rows for PCA: exactly mergeable.

    Works under ``jit`` and ``vmap``; ``count`` is an int32 (exact up to 2**31 - 1 rows).
    """

    count: jax.Array  # () int32, number of rows seen
    mean: jax.Array  # (d,) mean of the rows seen
    scatter: jax.Array  # (d, d) centered scatter sum_i (x_i - mean)(x_i - mean)^T


# ---------------------------------------------------------------------------------------------
# Blocked statistics (the covariance path)


def _default_block(d: int) -> int:
    """Rows per block: about 1 MiB of float32 (cache-sized), at least 1024 rows."""
    return max(1024, (1 << 18) // max(d, 1))


def _gram(y: jax.Array) -> jax.Array:
    """``y^T @ y`` (g, d, d) of a block ``y`` (g, b, d)."""
    if y.shape[0] == 1:  # a plain 2-D product: XLA's CPU dot is faster than the batched one
        return matmul(y[0].T, y[0])[None]
    return matmul(jnp.swapaxes(y, 1, 2), y)


def _chan_merge(na, ma, sa, nb, mb, sb):
    """Merge (count, mean, scatter) of two disjoint row sets; counts are float scalars."""
    n = na + nb
    w = nb / jnp.where(n > 0, n, 1)
    delta = mb - ma
    mean = ma + w * delta
    scatter = sa + sb + (na * w) * (delta[..., :, None] * delta[..., None, :])
    return mean, scatter


def _group_stats(x3: jax.Array, block: int) -> tuple[jax.Array, jax.Array]:
    """Means (g, d) and centered scatters (g, d, d) of each group of rows of ``x3`` (g, m, d).

    One pass over the rows in blocks of ``block``, never making a centered copy of ``x`` (one
    block at a time). The running mean is kept as ``shift + delta``: ``shift`` is the first
    block's mean (fixed), ``delta`` a small correction accumulated exactly, so that rounding the
    mean of data with a large offset never perturbs the statistics. The first block is centered
    on its own mean (computed after subtracting its first row); every later block is centered
    on the running mean, ``y = (block - shift) - delta``, and with ``m_y`` the column means of
    ``y``'s ``b`` rows and ``n_a`` rows seen the update is exact:
    ``delta += b / (n_a + b) m_y``, ``S += y^T y - b^2 / (n_a + b) m_y m_y^T``. Every product is
    then O(spread^2) instead of O(offset^2), so float32 keeps its accuracy.
    """
    _, m, _ = x3.shape
    dt = x3.dtype
    b = min(block, m)
    nb, rest = divmod(m, b)
    first = lax.slice_in_dim(x3, 0, b, axis=1)
    pilot = first[:, 0, :]
    y0 = first - pilot[:, None, :]
    m0 = jnp.mean(y0, axis=1)
    scatter = _gram(y0 - m0[:, None, :])
    shift = pilot + m0
    delta = m0 - (shift - pilot)  # what rounding the shift lost

    def update(delta, scatter, comp, blk, na):
        _, size, d = blk.shape
        y = (blk - shift[:, None, :]) - delta[:, None, :]  # (g, size, d)
        # One product gives the Gram matrix and the column sums: [y 1]^T [y 1]. XLA then
        # materializes the centered block once (plus the transposed copy its dot kernel reads)
        # instead of once more for a separate reduction.
        gram = _gram(jnp.concatenate([y, jnp.ones_like(y[:, :, :1])], axis=2))
        my = gram[:, d, :d] / size
        w = size / (na + size)
        corr = (size * w) * (my[:, :, None] * my[:, None, :])
        # compensated (Kahan) sum of the block scatters: the error stays O(eps) instead of
        # growing with the number of blocks
        term = (gram[:, :d, :d] - corr) - comp
        total = scatter + term
        return delta + w * my, total, (total - scatter) - term

    def body(i, carry):
        blk = lax.dynamic_slice_in_dim(x3, i * b, b, axis=1)
        return update(*carry, blk, (i * b).astype(dt))

    comp = jnp.zeros_like(scatter)
    if nb > 1:
        delta, scatter, comp = lax.fori_loop(1, nb, body, (delta, scatter, comp))
    if rest:
        delta, scatter, comp = update(delta, scatter, comp,
                                      lax.slice_in_dim(x3, nb * b, m, axis=1),
                                      jnp.asarray(nb * b, dt))
    return shift + delta, scatter - comp


def _merge_groups(means: jax.Array, scatters: jax.Array, m: int) -> tuple[jax.Array, jax.Array]:
    """Exact merge of g groups of ``m`` rows each: (d,) mean and (d, d) scatter."""
    if means.shape[0] == 1:
        return means[0], scatters[0]
    # Only reductions over the group axis: it may be sharded (one group per row shard).
    mean = jnp.mean(means, axis=0)
    delta = means - mean[None, :]
    outer = jnp.sum(delta[:, :, None] * delta[:, None, :], axis=0)
    return mean, jnp.sum(scatters, axis=0) + m * outer


def _moments(x: jax.Array, block: int, groups: int) -> tuple[jax.Array, jax.Array]:
    """(d,) mean and (d, d) centered scatter of ``x`` (n, d) in one blocked pass."""
    n, d = x.shape
    x3 = x.reshape(groups, n // groups, d)
    means, scatters = _group_stats(x3, block)
    return _merge_groups(means, scatters, n // groups)


def _row_groups(x: Any) -> int:
    """Number of row shards of ``x`` when it is sharded by rows (1 otherwise)."""
    n = int(x.shape[0])
    try:
        sharding = jax.typeof(x).sharding if isinstance(x, jax.core.Tracer) else x.sharding
        rows = int(sharding.shard_shape(tuple(x.shape))[0])
    except Exception:  # no sharding information (numpy input, abstract mesh...): one group
        return 1
    if rows <= 0 or rows >= n or n % rows:
        return 1
    return n // rows


# ---------------------------------------------------------------------------------------------
# From a spectrum to a PCA


def _residual(cov_v: jax.Array, vt: jax.Array, ev: jax.Array) -> jax.Array:
    """max_i ||C v_i - ev_i v_i|| / ev_0 from ``cov_v`` = C @ vt.T (d, k)."""
    r = cov_v - vt.T * ev[None, :]
    worst = jnp.max(jnp.sqrt(jnp.sum(r * r, axis=0)))
    return worst / jnp.where(ev[0] > 0, ev[0], 1)


def _finish(mean, vt, ev, total_var, n, k, r, whiten, out_dtype, residual, *, noise=None) -> PCA:
    """Build a PCA from ``vt`` (>= k, d) and descending ``ev`` (>= k,) of the centered data.

    ``r`` (int or traced) is min(n, d); ``noise`` overrides the mean of ``ev[k:r]``.
    """
    dt = ev.dtype
    evk = ev[:k]
    comps = vt[:k]
    comps = comps * vector_signs(comps, axis=-1)[:, None]
    nf = jnp.asarray(n, dt)
    if noise is None:
        idx = jnp.arange(ev.shape[0])
        keep = (idx >= k) & (idx < r)
        cnt = jnp.sum(keep)
        noise = jnp.where(cnt > 0, jnp.sum(jnp.where(keep, ev, 0)) / jnp.maximum(cnt, 1), 0)
    ratio = evk / jnp.where(total_var > 0, total_var, 1)
    sv = jnp.sqrt(evk * (nf - 1))
    ok = (
        jnp.all(jnp.isfinite(mean))
        & jnp.all(jnp.isfinite(comps))
        & jnp.all(jnp.isfinite(ev))
        & jnp.isfinite(total_var)
    )
    cast = lambda a: jnp.asarray(a).astype(out_dtype)  # noqa: E731
    return PCA(
        mean=cast(mean),
        components=cast(comps),
        explained_variance=cast(evk),
        explained_variance_ratio=cast(ratio),
        singular_values=cast(sv),
        noise_variance=cast(noise),
        n_samples=jnp.asarray(n, jnp.int32),
        whiten=jnp.asarray(whiten, bool),
        ok=ok,
        residual=cast(residual),
    )


def _eig_desc(cov: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eigenvalues (descending, clipped at 0) and eigenvectors as rows of a symmetric matrix."""
    w, v = eigh(cov)
    return jnp.maximum(w[::-1], 0), v[:, ::-1].T


_NAN_X = f"{_FIT}: `x` contains NaN or Inf value(s); clean or mask them first"
_NAN_STATS = ("jaxla.pca.fit_from_stats: `stats` must be finite, got NaN or Inf statistics "
              "(the rows contained NaN or Inf values)")


def _report_nonfinite(mean: jax.Array, message: str) -> None:
    """Express the NaN/Inf check for ``checkify`` before any decomposition sees the data.

    A NaN or Inf anywhere in a column makes that column's mean non-finite.
    """
    checkify.debug_check(jnp.all(jnp.isfinite(mean)), message)


def _from_scatter(mean, scatter, n, k, whiten, center, out_dtype, message=_NAN_X) -> PCA:
    """PCA from the (d,) mean and the (d, d) centered scatter of ``n`` rows."""
    _report_nonfinite(mean, message)
    d = mean.shape[0]
    dt = scatter.dtype
    nf = jnp.asarray(n, dt)
    if not center:
        scatter = scatter + nf * (mean[:, None] * mean[None, :])
        mean = jnp.zeros_like(mean)
    cov = scatter / (nf - 1)
    ev, vt = _eig_desc(cov)
    res = _residual(matmul(cov, vt[:k].T), vt[:k], ev[:k])
    r = jnp.minimum(n, d)
    return _finish(mean, vt, ev, jnp.sum(ev), n, k, r, whiten, out_dtype, res)


# ---------------------------------------------------------------------------------------------
# Solvers (jitted cores)


@functools.partial(
    jax.jit, static_argnames=("k", "solver", "center", "block", "groups", "oversamples",
                              "power_iters", "rows")
)
def _fit_core(x, key, whiten, *, k, solver, center, block, groups, oversamples, power_iters,
              rows=None):
    out_dtype = x.dtype
    x = x.astype(compute_dtype(x.dtype))
    n, d = x.shape
    r = min(n, d)
    if solver == "covariance_eigh":
        mean, scatter = _moments(x, block, groups)
        return _from_scatter(mean, scatter, n, k, whiten, center, out_dtype)
    if center:
        shift = x[0] if rows is None else lowrank._first_rows_mean(x, rows)
        y = x - shift[None, :]
        m = jnp.mean(y, axis=0)
        c = y - m[None, :]
        mean = shift + m
    else:
        c = x
        mean = jnp.zeros((d,), x.dtype)
    _report_nonfinite(mean if center else jnp.sum(x, axis=0), _NAN_X)
    if solver == "svd":
        if rows is None:
            _, s, vt = svd(c)
        else:  # TSQR: only d x d factors cross devices
            _, s, vt = lowrank._tall_svd(c, rank=r, rows=rows)
        ev = s * s / (n - 1)
        res = _residual(_cov_times(c, vt[:k].T, rows), vt[:k], ev[:k])
        return _finish(mean, vt, ev, jnp.sum(ev), n, k, r, whiten, out_dtype, res)
    return _fit_randomized(c, mean, key, whiten, n, k, oversamples, power_iters, out_dtype, rows)


def _cov_times(c: jax.Array, v: jax.Array, rows: Any = None) -> jax.Array:
    """``c.T @ c @ v / (n - 1)`` (d, k) without forming the covariance."""
    cv = matmul(c, v)
    ctcv = matmul(c.T, cv) if rows is None else lowrank._sum_over_rows(c, cv, rows)
    return ctcv / (c.shape[0] - 1)


def _fit_randomized(c, mean, key, whiten, n, k, oversamples, power_iters, out_dtype, rows=None):
    """Randomized solver on the centered data ``c`` (n, d)."""
    r = min(c.shape)
    res = lowrank._randomized(key, c, k, oversamples=oversamples, power_iters=power_iters,
                              rows=rows)
    s, vt = res.s, res.vt
    ev = s * s / (n - 1)
    total = jnp.sum(c * c) / (n - 1)  # exact total variance, from the data
    if k < r:
        noise = jnp.maximum(total - jnp.sum(ev), 0) / (r - k)
    else:
        noise = jnp.zeros((), ev.dtype)
    resid = _residual(_cov_times(c, vt.T, rows), vt, ev)
    return _finish(mean, vt, ev, total, n, k, r, whiten, out_dtype, resid, noise=noise)


# ---------------------------------------------------------------------------------------------
# Argument handling


def _is_fraction(n_components: Any) -> bool:
    return isinstance(n_components, float | np.floating) and not isinstance(n_components, bool)


def _check_components(n_components: Any, fn: str, n: int, d: int, traced: bool) -> int | float:
    """Validate ``n_components``: an int in [1, min(n, d)] or an eager float in (0, 1)."""
    if _is_fraction(n_components):
        v = float(n_components)
        if not (0.0 < v < 1.0):
            fail(fn, f"`n_components` as a float must be a variance fraction in (0, 1), got {v!r}")
        if traced:
            fail(
                fn,
                "`n_components` as a variance fraction picks k from the data, which needs "
                "concrete values, not traced ones under jit/vmap, got "
                f"{v!r}; fit with an int, or choose k eagerly first (fit outside jit, then "
                "use pca.components.shape[0])",
            )
        return v
    return check_int(n_components, fn, "n_components", min=1, max=min(n, d),
                     max_doc="min(n_samples, n_features)")


def _k_for_fraction(ratio: np.ndarray, fraction: float) -> int:
    """scikit-learn's rule: the smallest k whose cumulative ratio exceeds ``fraction``."""
    cum = np.cumsum(np.asarray(ratio, dtype=np.float64))
    return int(min(np.searchsorted(cum, fraction, side="right") + 1, len(ratio)))


def _truncate(full: PCA, k: int) -> PCA:
    """Keep the first ``k`` components of a fit that kept all ``min(n, d)`` of them."""
    ev = full.explained_variance
    r = ev.shape[0]
    noise = jnp.mean(ev[k:]) if k < r else jnp.zeros((), ev.dtype)
    return full._replace(
        components=full.components[:k],
        explained_variance=ev[:k],
        explained_variance_ratio=full.explained_variance_ratio[:k],
        singular_values=full.singular_values[:k],
        noise_variance=noise.astype(ev.dtype),
    )


def _auto_solver(n: int, d: int, k: int | float, key: Any) -> str:
    if n >= 10 * d and d <= 1000:
        return "covariance_eigh"
    if key is not None and isinstance(k, int) and min(n, d) >= 500 and k < min(n, d) // 4:
        return "randomized"
    return "svd"


def _raise_if_bad(pca: PCA, x: Any, fn: str, name: str) -> None:
    """Eagerly raise the check_finite message when a concrete fit is not finite."""
    if _checks.is_concrete(pca.ok) and not bool(np.all(np.asarray(pca.ok))):
        lowrank._check_finite_dense(x, fn, name)
        fail(
            fn,
            f"`{name}` must have statistics representable in its dtype, got values whose "
            "squares overflow; rescale the data first",
        )


# ---------------------------------------------------------------------------------------------
# Public API


def fit(
    x: jax.Array,
    n_components: int | float,
    *,
    solver: str = "auto",
    whiten: bool | jax.Array = False,
    center: bool = True,
    key: jax.Array | None = None,
    block_size: int | None = None,
    row_groups: int | None = None,
    oversamples: int = 10,
    power_iters: int | None = None,
) -> PCA:
    """Fit a principal component analysis to the rows of ``x``.

    Definitions, signs and solver choice are described in the module docstring: they are
    scikit-learn's (``sklearn.decomposition.PCA``), computed exactly in float32 even for data with
    a large common offset. A row-sharded ``x`` is fitted where its rows live.

    Args:
        x: (n, d) data, one sample per row, n >= 2. Floating dtype; float16/bfloat16 are computed
            in float32. NaN/Inf raise when called eagerly.
        n_components: k, an int in [1, min(n, d)] (static), or a float in (0, 1): the smallest k
            whose cumulative explained variance ratio exceeds it (eager only, not under jit/vmap).
        solver: ``"auto"``, ``"covariance_eigh"``, ``"svd"`` or ``"randomized"``.
        whiten: Whether :func:`transform` whitens (stored as ``PCA.whiten``).
        center: Subtract the mean (``False``: PCA of the uncentered second moment, mean = 0).
        key: PRNG key, required by the randomized solver (and needed for ``"auto"`` to pick it).
        block_size: Rows per block of the covariance solver (default: about 1 MiB of data per
            block, at least 1024 rows).
        row_groups: Groups of consecutive rows whose statistics the covariance solver
            accumulates separately before merging them; must divide n. Default: the number of
            row shards of ``x`` when it is known (see the module docstring), else 1.
        oversamples: Extra random directions of the randomized solver.
        power_iters: Power iterations of the randomized solver (None: its default).

    Returns:
        A :class:`PCA` with ``mean`` (d,), ``components`` (k, d), ``explained_variance``,
        ``explained_variance_ratio`` and ``singular_values`` (k,), ``noise_variance`` (),
        ``n_samples`` (), ``whiten`` (), ``ok`` () and ``residual`` (), in ``x``'s dtype.
        ``ok`` is False when a statistic is not finite (NaN/Inf input under ``jit``);
        ``residual`` bounds the eigenvalue errors relative to the largest (module docstring).

    Raises:
        ValueError: ``x`` not 2-D or with fewer than 2 rows, ``n_components`` out of range, an
            unknown solver, ``solver="randomized"`` without a key, NaN/Inf in ``x`` (eagerly).
        TypeError: integer ``x`` or a non-int, non-float ``n_components``.

    Examples:
        >>> import numpy as np, jax.numpy as jnp
        >>> from jaxla import pca
        >>> x = np.random.default_rng(0).standard_normal((200, 5)) * [5.0, 2.0, 1.0, 0.5, 0.1]
        >>> p = pca.fit(jnp.asarray(x, jnp.float32), 2)
        >>> p.components.shape, p.explained_variance.shape
        ((2, 5), (2,))
        >>> print(np.abs(np.asarray(p.components)).argmax(axis=1).tolist())  # main features
        [0, 1]
        >>> print(np.round(np.asarray(p.explained_variance_ratio, np.float64), 2).tolist())
        [0.81, 0.14]
        >>> pca.fit(jnp.asarray(x, jnp.float32), 0.9).components.shape  # variance fraction
        (2, 5)
    """
    fn = _FIT
    x = as_float_array(x, fn, "x", ndim=2, doc="(n_samples, n_features)")
    n, d = (int(s) for s in x.shape)
    if n < 2:
        fail(fn, f"`x` must have at least 2 samples (rows), got shape {(n, d)}")
    traced = not _checks.is_concrete(x)
    k = _check_components(n_components, fn, n, d, traced)
    check_option(solver, SOLVERS, fn, "solver")
    if solver == "auto":
        solver = _auto_solver(n, d, k, key)
    if key is not None:
        check_key(key, fn)
    if solver == "randomized":
        if key is None:
            fail(fn, "`key` must be a JAX random key such as jax.random.key(0) when "
                 "solver='randomized', got None")
        if isinstance(k, float):
            fail(fn, "`n_components` must be an int with solver='randomized' (a variance "
                 f"fraction needs the whole spectrum; use solver='svd'), got {k!r}")
    block = _default_block(d) if block_size is None else check_int(block_size, fn, "block_size",
                                                                   min=1)
    if row_groups is None:
        groups = _row_groups(x) if solver == "covariance_eigh" else 1
    else:
        groups = check_int(row_groups, fn, "row_groups", min=1, max=n, max_doc="n_samples")
        if n % groups:
            fail(fn, f"`row_groups` must divide n_samples={n}, got {groups}")
    kk = min(n, d) if isinstance(k, float) else k
    if solver != "randomized":
        key = None
    # svd and randomized solvers of a tall x sharded by rows run where the rows live (TSQR)
    rows = lowrank._tall_row_split(x) if solver in ("svd", "randomized") else None
    if rows is None and solver != "covariance_eigh":
        x = lowrank._unshard_explicit(x)
    p = _fit_core(
        x,
        key,
        jnp.asarray(whiten, bool),
        k=kk,
        solver=solver,
        center=bool(center),
        block=block,
        groups=groups,
        oversamples=check_int(oversamples, fn, "oversamples", min=0),
        power_iters=None if power_iters is None else check_int(power_iters, fn, "power_iters",
                                                                min=0),
        rows=rows,
    )
    _raise_if_bad(p, x, fn, "x")
    if isinstance(k, float):
        p = _truncate(p, _k_for_fraction(np.asarray(p.explained_variance_ratio), k))
    return p


def transform(pca: PCA, x: jax.Array) -> jax.Array:
    """Project rows onto the principal axes: ``(x - mean) @ components.T`` (whitened if asked).

    Centering happens before the product, so data with a large offset keep their accuracy.

    Args:
        pca: A fitted :class:`PCA` (d features, k components).
        x: (..., d) rows to project (usually (n, d)).

    Returns:
        (..., k) projections, in ``x``'s dtype; divided by ``sqrt(explained_variance)`` (clipped
        below at machine epsilon) when ``pca.whiten``.

    Examples:
        >>> import numpy as np, jax.numpy as jnp
        >>> from jaxla import pca
        >>> x = jnp.asarray(np.random.default_rng(0).standard_normal((50, 4)), jnp.float32)
        >>> p = pca.fit(x, 2, whiten=True)
        >>> z = pca.transform(p, x)
        >>> z.shape
        (50, 2)
        >>> print(np.round(np.asarray(jnp.var(z, axis=0, ddof=1), np.float64), 3).tolist())
        [1.0, 1.0]
    """
    fn = "jaxla.pca.transform"
    x = as_float_array(x, fn, "x", min_ndim=1, doc="(..., n_features)")
    d = pca.components.shape[-1]
    if x.shape[-1] != d:
        fail(fn, f"`x` must have {d} features (last axis) to match the fitted PCA, "
             f"got shape {tuple(x.shape)}")
    z = _transform(pca, x)
    if _checks.is_concrete(z) and not bool(jnp.all(jnp.isfinite(z))):
        lowrank._check_finite_dense(x, fn, "x")
    return z


@jax.jit
def _transform(pca: PCA, x: jax.Array) -> jax.Array:
    dt = compute_dtype(jnp.result_type(x.dtype, pca.components.dtype))
    lead = (1,) * (x.ndim - 1)
    mean = pca.mean.astype(dt).reshape((*lead, -1))
    z = matmul(x.astype(dt) - mean, pca.components.astype(dt).T)
    scale = jnp.sqrt(pca.explained_variance.astype(dt))
    scale = jnp.maximum(scale, jnp.finfo(dt).eps).reshape((*lead, -1))
    return jnp.where(pca.whiten, z / scale, z).astype(x.dtype)


def inverse_transform(pca: PCA, z: jax.Array) -> jax.Array:
    """Map projections back to feature space: ``z @ components + mean`` (un-whitened if needed).

    Args:
        pca: A fitted :class:`PCA` (d features, k components).
        z: (..., k) projections.

    Returns:
        (..., d) reconstructions, in ``z``'s dtype. With all ``min(n, d)`` components this
        recovers the training rows exactly (up to rounding).

    Examples:
        >>> import numpy as np, jax.numpy as jnp
        >>> from jaxla import pca
        >>> x = jnp.asarray(np.random.default_rng(0).standard_normal((30, 3)), jnp.float32)
        >>> p = pca.fit(x, 3)
        >>> x_back = pca.inverse_transform(p, pca.transform(p, x))
        >>> print(bool(jnp.allclose(x_back, x, atol=1e-5)))
        True
    """
    fn = "jaxla.pca.inverse_transform"
    z = as_float_array(z, fn, "z", min_ndim=1, doc="(..., n_components)")
    k = pca.components.shape[-2]
    if z.shape[-1] != k:
        fail(fn, f"`z` must have {k} components (last axis) to match the fitted PCA, "
             f"got shape {tuple(z.shape)}")
    out = _inverse_transform(pca, z)
    if _checks.is_concrete(out) and not bool(jnp.all(jnp.isfinite(out))):
        lowrank._check_finite_dense(z, fn, "z")
    return out


@jax.jit
def _inverse_transform(pca: PCA, z: jax.Array) -> jax.Array:
    dt = compute_dtype(jnp.result_type(z.dtype, pca.components.dtype))
    lead = (1,) * (z.ndim - 1)
    scale = jnp.sqrt(pca.explained_variance.astype(dt)).reshape((*lead, -1))
    zz = z.astype(dt)
    zz = jnp.where(pca.whiten, zz * scale, zz)
    mean = pca.mean.astype(dt).reshape((*lead, -1))
    return (matmul(zz, pca.components.astype(dt)) + mean).astype(z.dtype)


def fit_transform(
    x: jax.Array, n_components: int | float, **kwargs: Any
) -> tuple[PCA, jax.Array]:
    """Fit a PCA to ``x`` and project ``x`` onto it.

    Args:
        x: (n, d) data.
        n_components: As in :func:`fit`.
        **kwargs: Keyword options of :func:`fit` (``solver``, ``whiten``, ``key``...).

    Returns:
        ``(pca, z)``: the fitted :class:`PCA` and the (n, k) projections ``transform(pca, x)``.

    Examples:
        >>> import numpy as np, jax.numpy as jnp
        >>> from jaxla import pca
        >>> x = jnp.asarray(np.random.default_rng(0).standard_normal((40, 6)), jnp.float32)
        >>> p, z = pca.fit_transform(x, 3)
        >>> z.shape
        (40, 3)
    """
    p = fit(x, n_components, **kwargs)
    return p, transform(p, x)


# ---------------------------------------------------------------------------------------------
# Streaming statistics


def stats_init(n_features: int, dtype: Any = jnp.float32) -> PCAStats:
    """Empty statistics for rows of ``n_features`` features.

    Args:
        n_features: d.
        dtype: Floating dtype the statistics are accumulated in (float16/bfloat16 become float32).

    Returns:
        A :class:`PCAStats` with count 0, mean (d,) and scatter (d, d) zeros.

    Examples:
        >>> from jaxla import pca
        >>> s = pca.stats_init(3)
        >>> int(s.count), s.mean.shape, s.scatter.shape
        (0, (3,), (3, 3))
    """
    fn = "jaxla.pca.stats_init"
    d = check_int(n_features, fn, "n_features", min=1)
    if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
        fail(fn, f"`dtype` must be a floating dtype, got {jnp.dtype(dtype)}", TypeError)
    dt = compute_dtype(dtype)
    return PCAStats(jnp.zeros((), jnp.int32), jnp.zeros((d,), dt), jnp.zeros((d, d), dt))


def _check_stats(stats: Any, fn: str) -> None:
    if not isinstance(stats, PCAStats):
        fail(fn, f"`stats` must be a PCAStats (from jaxla.pca.stats_init), got "
             f"{type(stats).__name__}", TypeError)


@functools.partial(jax.jit, static_argnames=("block", "groups"))
def _update_core(stats: PCAStats, chunk: jax.Array, *, block: int, groups: int = 1) -> PCAStats:
    dt = stats.scatter.dtype
    c = chunk.astype(dt)
    m, _ = c.shape
    mean_b, scatter_b = _moments(c, block, groups)
    mean, scatter = _chan_merge(
        stats.count.astype(dt), stats.mean, stats.scatter, jnp.asarray(m, dt), mean_b, scatter_b
    )
    return PCAStats(stats.count + m, mean, scatter)


def stats_update(
    stats: PCAStats,
    chunk: jax.Array,
    *,
    block_size: int | None = None,
    row_groups: int | None = None,
) -> PCAStats:
    """Add a chunk of rows to the statistics (exact merge; jittable).

    A chunk sharded by rows over a mesh is reduced where its rows live, as in :func:`fit`: each
    shard's (d,) mean and (d, d) scatter are computed locally and merged, so only those cross
    devices; the result equals the unsharded update up to rounding.

    Args:
        stats: Statistics so far, in some dtype (see :func:`stats_init`).
        chunk: (m, d) new rows; computed in ``stats``' dtype.
        block_size: Rows per block inside the chunk (as in :func:`fit`).
        row_groups: Groups of consecutive rows reduced separately, then merged (must divide
            m). Default: the number of row shards of ``chunk`` when it is known (a concrete
            array, or a traced one with ``Explicit`` mesh axes), else 1; under ``jit`` with
            ``Auto`` axes pass the number of row shards.

    Returns:
        The :class:`PCAStats` of all rows seen.

    Examples:
        >>> import numpy as np
        >>> from jaxla import pca
        >>> x = np.random.default_rng(0).standard_normal((100, 3)).astype(np.float32)
        >>> s = pca.stats_update(pca.stats_update(pca.stats_init(3), x[:60]), x[60:])
        >>> print(int(s.count), bool(np.allclose(s.mean, x.mean(0), atol=1e-6)))
        100 True
    """
    fn = "jaxla.pca.stats_update"
    _check_stats(stats, fn)
    chunk = as_float_array(chunk, fn, "chunk", ndim=2, doc="(n_rows, n_features)")
    d = stats.mean.shape[-1]
    if chunk.shape[1] != d:
        fail(fn, f"`chunk` must have {d} features (columns) to match `stats`, "
             f"got shape {tuple(chunk.shape)}")
    if chunk.shape[0] == 0:
        return stats
    block = _default_block(d) if block_size is None else check_int(block_size, fn, "block_size",
                                                                   min=1)
    m = int(chunk.shape[0])
    if row_groups is None:
        groups = _row_groups(chunk)
    else:
        groups = check_int(row_groups, fn, "row_groups", min=1, max=m, max_doc="chunk rows")
        if m % groups:
            fail(fn, f"`row_groups` must divide the chunk's {m} rows, got {groups}")
    return _update_core(stats, chunk, block=block, groups=groups)


def stats_merge(a: PCAStats, b: PCAStats) -> PCAStats:
    """Merge the statistics of two disjoint sets of rows (exact; jittable).

    Args:
        a: Statistics of one set of rows.
        b: Statistics of another set, same d and dtype.

    Returns:
        The :class:`PCAStats` of the union.

    Examples:
        >>> import numpy as np
        >>> from jaxla import pca
        >>> x = np.random.default_rng(0).standard_normal((50, 2)).astype(np.float32)
        >>> s0 = pca.stats_init(2)
        >>> s = pca.stats_merge(pca.stats_update(s0, x[:20]), pca.stats_update(s0, x[20:]))
        >>> print(int(s.count), bool(np.allclose(s.scatter, 49 * np.cov(x.T), atol=1e-4)))
        50 True
    """
    fn = "jaxla.pca.stats_merge"
    _check_stats(a, fn)
    _check_stats(b, fn)
    if a.scatter.shape != b.scatter.shape:
        fail(fn, f"`a` and `b` must have the same number of features, got scatter shapes "
             f"{tuple(a.scatter.shape)} and {tuple(b.scatter.shape)}")
    return _merge_core(a, b)


@jax.jit
def _merge_core(a: PCAStats, b: PCAStats) -> PCAStats:
    dt = jnp.result_type(a.scatter.dtype, b.scatter.dtype)
    mean, scatter = _chan_merge(
        a.count.astype(dt), a.mean.astype(dt), a.scatter.astype(dt),
        b.count.astype(dt), b.mean.astype(dt), b.scatter.astype(dt),
    )
    return PCAStats(a.count + b.count, mean, scatter)


@functools.partial(jax.jit, static_argnames=("k", "center"))
def _from_stats_core(stats: PCAStats, whiten, *, k: int, center: bool) -> PCA:
    return _from_scatter(stats.mean, stats.scatter, stats.count, k, whiten, center,
                         stats.scatter.dtype, _NAN_STATS)


def fit_from_stats(
    stats: PCAStats,
    n_components: int | float,
    *,
    whiten: bool | jax.Array = False,
    center: bool = True,
) -> PCA:
    """Fit a PCA from accumulated statistics (the covariance solver; jittable with an int k).

    Args:
        stats: :class:`PCAStats` of at least 2 rows.
        n_components: An int in [1, min(count, d)], or a float in (0, 1) (eager only).
        whiten: As in :func:`fit`.
        center: As in :func:`fit`.

    Returns:
        The :class:`PCA`, in the statistics' dtype: the same as ``fit(x, n_components,
        solver="covariance_eigh")`` on the rows the statistics were accumulated from.

    Examples:
        >>> import numpy as np
        >>> from jaxla import pca
        >>> x = np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)
        >>> p = pca.fit_from_stats(pca.stats_update(pca.stats_init(4), x), 2)
        >>> q = pca.fit(x, 2, solver="covariance_eigh")
        >>> print(bool(np.allclose(p.components, q.components, atol=1e-5)))
        True
    """
    fn = "jaxla.pca.fit_from_stats"
    _check_stats(stats, fn)
    d = int(stats.mean.shape[-1])
    traced = not _checks.is_concrete(stats.count)
    n = d if traced else int(stats.count)
    if not traced and n < 2:
        fail(fn, f"`stats` must hold at least 2 samples (rows), got count={n}")
    k = _check_components(n_components, fn, n, d, traced)
    kk = min(n, d) if isinstance(k, float) else k
    p = _from_stats_core(stats, jnp.asarray(whiten, bool), k=kk, center=bool(center))
    if not traced and not bool(p.ok):
        raise ValueError(_NAN_STATS)
    if isinstance(k, float):
        p = _truncate(p, _k_for_fraction(np.asarray(p.explained_variance_ratio), k))
    return p


def fit_stream(
    chunks: Iterable[Any],
    n_components: int | float,
    *,
    whiten: bool = False,
    center: bool = True,
    block_size: int | None = None,
) -> PCA:
    """Fit a PCA from an iterable of row chunks (data larger than memory), exactly.

    Each chunk is folded into :class:`PCAStats` with the jitted :func:`stats_update` (chunks of a
    new row count compile once more: keep their size fixed, except possibly the last one), then
    :func:`fit_from_stats` diagonalizes the covariance.

    Args:
        chunks: Iterable of (m_i, d) arrays (numpy arrays, memory maps, JAX arrays...), same d.
        n_components: As in :func:`fit` (a float in (0, 1) is fine: the fit is eager).
        whiten: As in :func:`fit`.
        center: As in :func:`fit`.
        block_size: Rows per block inside each chunk.

    Returns:
        The :class:`PCA`, in the dtype of the first chunk; equal to ``fit(concatenated chunks,
        n_components, solver="covariance_eigh")`` up to rounding.

    Raises:
        ValueError: No chunk, fewer than 2 rows in all, a chunk with another d, NaN/Inf.

    Examples:
        >>> import numpy as np
        >>> from jaxla import pca
        >>> x = np.random.default_rng(0).standard_normal((300, 5)).astype(np.float32)
        >>> p = pca.fit_stream((x[i:i + 100] for i in range(0, 300, 100)), 2)
        >>> q = pca.fit(x, 2)
        >>> print(bool(np.allclose(p.explained_variance, q.explained_variance, rtol=1e-5)))
        True
    """
    fn = "jaxla.pca.fit_stream"
    stats = None
    out_dtype = None
    for i, chunk in enumerate(chunks):
        name = f"chunks[{i}]"
        chunk = as_float_array(chunk, fn, name, ndim=2, doc="(n_rows, n_features)")
        if stats is None:
            out_dtype = chunk.dtype
            stats = stats_init(int(chunk.shape[1]), chunk.dtype)
        d = int(stats.mean.shape[0])
        if chunk.shape[1] != d:
            fail(fn, f"`{name}` must have {d} features (columns) like the first chunk, "
                 f"got shape {tuple(chunk.shape)}")
        if chunk.shape[0] == 0:
            continue
        stats = stats_update(stats, chunk, block_size=block_size)
        finite = jnp.all(jnp.isfinite(stats.mean)) & jnp.all(jnp.isfinite(jnp.diag(stats.scatter)))
        if not bool(finite):
            lowrank._check_finite_dense(chunk, fn, name)
            fail(fn, f"`{name}` must have statistics representable in its dtype, got values "
                 "whose squares overflow; rescale the data first")
    if stats is None:
        fail(fn, "`chunks` must yield at least one chunk of rows, got an empty iterable")
    if int(stats.count) < 2:
        fail(fn, f"`chunks` must hold at least 2 samples (rows) in all, got {int(stats.count)}")
    p = fit_from_stats(stats, n_components, whiten=whiten, center=center)
    return p if p.mean.dtype == out_dtype else jax.tree.map(
        lambda a: a.astype(out_dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, p
    )
