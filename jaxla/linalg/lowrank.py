"""Low-rank approximation: exact truncated SVD, randomized SVD with an error estimate.

Dimension letters: ``m`` rows and ``n`` columns of ``A``; ``k`` the requested rank; ``l`` the
sketch width (``rank + oversamples``, clipped to ``min(m, n)``).

:func:`randomized_svd` follows Halko, Martinsson & Tropp (2011): it sketches the range of ``A``
with Gaussian test vectors, sharpens the sketch with power iterations (or builds a block Krylov
subspace, Musco & Musco 2015), and takes the SVD of the small projected matrix. It works on dense
arrays and on matrix-free :class:`~jaxla.linalg.LinearOperator` inputs, centres implicitly, and
says how good its answer is: every result carries an a-posteriori estimate of the spectral-norm
error ``||A - U diag(s) Vt||_2`` and the number of passes over ``A``. With ``tol`` it grows the
sketch block by block until the estimate meets the tolerance.

**Row-sharded matrices.** A tall dense ``A`` (m >= n) split by rows over the axes of a
``jax.sharding.Mesh`` (e.g. ``jaxla.distributed.shard_rows``), each piece holding at least ``n``
rows, is decomposed where its rows live, in one ``jax.shard_map`` program:
:func:`truncated_svd` by TSQR (each device factors its rows, the ``n x n`` triangular factors
are gathered and factored again, and the SVD of the final ``R`` gives ``s`` and ``vt``), and
:func:`randomized_svd` with ``A^T Y`` and the Gram matrices of its blocks summed over devices
(``n x b`` and ``b x b`` arrays) and TSQR in place of Householder QR. Only these small factors
cross devices; ``u`` comes back split by rows like ``A``; the results equal the single-device
ones up to rounding. The split is read from a concrete array's sharding, or, under ``jit``, from
the type of an array sharded over ``Explicit`` mesh axes (with ``Auto`` axes a traced array
carries no sharding, and XLA partitions the single-device algorithm instead). With the
``"lu"`` normalizer a row-split block is orthonormalized (same span) instead.

References:
    N. Halko, P.-G. Martinsson, J. A. Tropp. Finding structure with randomness: probabilistic
    algorithms for constructing approximate matrix decompositions. SIAM Review 53(2), 2011.

    C. Musco, C. Musco. Randomized block Krylov methods for stronger and faster approximate
    singular value decomposition. NeurIPS 2015.

    P.-G. Martinsson, S. Voronin. A randomized blocked algorithm for efficiently computing
    rank-revealing factorizations of matrices. SIAM J. Sci. Comput. 38(5), 2016.

    A. Stathopoulos, K. Wu. A block orthogonalization procedure with constant synchronization
    requirements. SIAM J. Sci. Comput. 23(6), 2002 (SVQB).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import checkify
from jax.sharding import NamedSharding, PartitionSpec

from jaxla import _checks
from jaxla._numerics import eps, matmul
from jaxla._sharding import explicit_sharding
from jaxla.linalg import _canonical
from jaxla.linalg.decompositions import SVD, svd
from jaxla.linalg.operators import (
    LinearOperator,
    _as_operator,
    _centered_operator,
    _check_mean,
    _dense_operator,
)

__all__ = [
    "RandomizedSVD",
    "eckart_young_error",
    "low_rank_approx",
    "randomized_svd",
    "truncated_svd",
]

_MODULE = "jaxla.linalg"
_METHODS = ("power", "block_krylov")
_NORMALIZERS = ("qr", "lu", "none")


class RandomizedSVD(NamedTuple):
    """Result of :func:`randomized_svd`: ``A ~ u @ diag(s) @ vt`` and how good it is."""

    u: jax.Array  # (m, k) orthonormal columns (zero columns beyond `rank` in adaptive mode)
    s: jax.Array  # (k,) descending, >= 0 (zeros beyond `rank` in adaptive mode)
    vt: jax.Array  # (k, n) orthonormal rows, canonical signs (zero rows beyond `rank`)
    error_estimate: jax.Array  # () estimate of ||A - u diag(s) vt||_2
    rank: jax.Array  # () int32: number of singular triplets kept (k unless adaptive)
    sketch_size: jax.Array  # () int32: columns of the orthonormal basis the SVD came from
    passes: jax.Array  # () int32: applications of A or A^T (matmat/rmatmat calls)
    matvecs: jax.Array  # () int32: matrix-vector products (columns over all passes)
    converged: jax.Array  # () bool: finite, and the tolerance is met when `tol` is given


# --------------------------------------------------------------------------------------------
# validation helpers


def _check_finite_dense(a: jax.Array, fn: str, name: str) -> None:
    """NaN/Inf: raise eagerly; under jit express the check for ``checkify``."""
    _checks.check_finite(a, fn, name)
    if not _checks.is_concrete(a):
        checkify.debug_check(
            jnp.all(jnp.isfinite(a)),
            f"{fn}: `{name}` contains NaN or Inf value(s); clean or mask them first",
        )


# --------------------------------------------------------------------------------------------
# numerical building blocks (all shapes static)


def _householder(y: jax.Array) -> jax.Array:
    """Orthonormal basis of the columns of ``y`` (m, b) by Householder QR (LAPACK on CPU).

    Backward stable: orthonormal to working precision whatever the conditioning of ``y``; where
    ``y`` is rank deficient it is completed with orthonormal directions.
    """
    q, _ = jnp.linalg.qr(y, mode="reduced")
    return q


# --------------------------------------------------------------------------------------------
# row-distributed operands: the tall (m, b) blocks live split by rows over mesh axes


class _Rows(NamedTuple):
    """Static description of a row split: the rows of ``A`` (and of every (m, b) block) live in
    ``shards`` consecutive pieces over the mesh axes ``axes``. The algorithms then run inside
    ``shard_map`` on the local rows, and only ``b x b`` and ``n x b`` factors cross devices."""

    mesh: Any  # jax.sharding.Mesh (or AbstractMesh under jit with Explicit axes)
    axes: tuple[str, ...]  # mesh axes the rows are split over
    m: int  # global number of rows
    shards: int  # number of row pieces


def _row_split(a: Any) -> _Rows | None:
    """How a 2-D array is split by rows over a mesh (None when it is not, or when unknown).

    Read from a concrete array's sharding, or from the type of a traced one when its mesh axes
    are ``Explicit`` (with ``Auto`` axes a traced array carries no sharding). Columns must be
    whole on every device.
    """
    try:
        sharding = jax.typeof(a).sharding if isinstance(a, jax.core.Tracer) else a.sharding
    except Exception:  # numpy input, abstract values without sharding
        return None
    if not isinstance(sharding, NamedSharding) or np.ndim(a) != 2:
        return None
    spec = (*tuple(sharding.spec), None, None)
    if spec[0] is None or spec[1] is not None:
        return None
    axes = (spec[0],) if isinstance(spec[0], str) else tuple(spec[0])
    shards = math.prod(int(sharding.mesh.shape[ax]) for ax in axes)
    m = int(a.shape[0])
    if shards <= 1 or m % shards:
        return None
    return _Rows(sharding.mesh, axes, m, shards)


def _unshard_explicit(a: Any) -> Any:
    """Replicate an array whose sharding is typed (``Explicit`` axes) but not used by a path.

    jnp's decompositions refuse operands sharded over Explicit axes; Auto axes are left to XLA.
    """
    if isinstance(a, LinearOperator) or explicit_sharding(a) is None:
        return a
    return jax.sharding.reshard(a, PartitionSpec())


def _tdot(a: jax.Array, b: jax.Array, rows: _Rows | None) -> jax.Array:
    """``a^T b`` summed over all rows (``a`` (m, p), ``b`` (m, q) split by rows when ``rows``)."""
    out = matmul(a.T, b)
    return out if rows is None else lax.psum(out, rows.axes)


def _sum_over_rows(a: jax.Array, b: jax.Array, rows: _Rows) -> jax.Array:
    """``a^T b`` (p, q) of ``a`` (m, p) and ``b`` (m, q) split by rows, outside ``shard_map``:
    each device multiplies its rows and the (p, q) products are summed (one all-reduce)."""
    spec = PartitionSpec(rows.axes, None)
    return jax.shard_map(lambda a, b: _tdot(a, b, rows), mesh=rows.mesh, in_specs=(spec, spec),
                         out_specs=PartitionSpec(), check_vma=False)(a, b)


def _first_rows_mean(a: jax.Array, rows: _Rows) -> jax.Array:
    """(n,) mean of the first row of every piece of ``a`` (m, n) split by rows: a cheap point
    near the data (a shift against cancellation) that needs no slicing of the split axis."""
    return jax.shard_map(lambda a: lax.psum(a[0], rows.axes) / rows.shards, mesh=rows.mesh,
                         in_specs=PartitionSpec(rows.axes, None), out_specs=PartitionSpec(),
                         check_vma=False)(a)


def _tsqr_local(y: jax.Array, axes: tuple[str, ...]) -> tuple[jax.Array, jax.Array]:
    """TSQR inside ``shard_map``: ``y`` (m_i, b) is this device's rows of a tall (m, b) matrix.

    Each device factors its rows, ``y_i = Q_i R_i``; the ``b x b`` factors ``R_i`` are gathered
    (the only communication) and the stacked ``(p b, b)`` matrix is factored on every device,
    ``[R_1; ...; R_p] = Q' R``; then ``Q = diag(Q_i) Q'`` keeps this device's rows
    ``Q_i Q'_i``. Signs make ``diag(R) >= 0``. Needs ``m_i >= b``. Returns the local rows of
    ``Q`` (m_i, b) and ``R`` (b, b), the same on every device.
    """
    b = y.shape[1]
    q1, r1 = jnp.linalg.qr(y, mode="reduced")
    stacked = lax.all_gather(r1, axes, tiled=True)  # (p b, b)
    q2, r = jnp.linalg.qr(stacked, mode="reduced")
    d = jnp.where(jnp.diagonal(r) < 0, -1, 1).astype(r.dtype)
    q2 = q2 * d[None, :]
    r = r * d[:, None]
    mine = lax.dynamic_slice_in_dim(q2, lax.axis_index(axes) * b, b, axis=0)
    return matmul(q1, mine), r


def _qr_basis(y: jax.Array, rows: _Rows | None) -> jax.Array:
    """Householder basis of ``y`` (TSQR when ``y`` is split by rows)."""
    return _householder(y) if rows is None else _tsqr_local(y, rows.axes)[0]


def _svqb(y: jax.Array, rounds: int, rows: _Rows | None = None) -> tuple[jax.Array, jax.Array]:
    """Gram-matrix orthonormalization (SVQB, Stathopoulos & Wu 2002); returns ``(q, ok)``.

    Each round factors the small Gram matrix ``q^T q = V diag(w) V^T`` and maps
    ``q <- q V diag(w)^-1/2`` (eigenvalues clamped at ``eps * max(w)``), so the span is kept and
    the work is two matmuls. One round makes a block with ``cond(y) << eps**-0.5`` orthonormal up
    to ``eps * cond(y)^2``, two rounds to working precision; it never breaks down (a
    rank-deficient block keeps small columns). ``ok`` says that ``y`` was well enough conditioned
    (``cond(y)^2 * b * eps < 1/2``) for the result to be an accurate orthonormal basis.
    """
    b = y.shape[1]
    tiny = eps(y.dtype)
    q = y
    ok = jnp.asarray(True)
    for i in range(rounds):
        w, v = jnp.linalg.eigh(_tdot(q, q, rows))
        if i == 0:
            ok = (w[0] > 2 * b * tiny * w[-1]) & jnp.all(jnp.isfinite(w))
        floor = jnp.maximum(tiny * w[-1], jnp.finfo(y.dtype).tiny)  # a zero block stays zero
        q = matmul(q, v / jnp.sqrt(jnp.maximum(w, floor))[None, :])
    return q, ok


def _orth(y: jax.Array, rows: _Rows | None = None) -> jax.Array:
    """Orthonormal basis ``q`` (m, b) of the column span of ``y`` (m, b).

    Two rounds of Gram orthonormalization (matmul-bound, like Cholesky QR2) where ``y`` is well
    conditioned; Householder QR otherwise (ill-conditioned or rank-deficient ``y``), or when
    ``y`` is wide. On tall-skinny blocks Householder QR is memory-bound and slower, more so on a
    busy machine.
    """
    m, b = y.shape if rows is None else (rows.m, y.shape[1])
    if m < 2 * b:
        return _qr_basis(y, rows)
    q, ok = _svqb(y, 2, rows)
    return lax.cond(ok, lambda y: q, lambda y: _qr_basis(y, rows), y)


def _lu_normalize(y: jax.Array) -> jax.Array:
    """``P L`` of the partially pivoted LU of ``y`` (m, b): same column span, well scaled."""
    lu, _, perm = lax.linalg.lu(y)
    b = y.shape[1]
    lower = jnp.tril(lu[:, :b], -1) + jnp.eye(y.shape[0], b, dtype=y.dtype)
    return lower[jnp.argsort(perm)]  # rows of P L: (P L)[perm] = L


def _scale_normalize(y: jax.Array, rows: _Rows | None = None) -> jax.Array:
    """Divide ``y`` by its largest magnitude (prevents overflow; keeps the column span)."""
    scale = jnp.max(jnp.abs(y))
    if rows is not None:
        scale = lax.pmax(scale, rows.axes)
    return y / jnp.where(scale > 0, scale, jnp.ones_like(scale))


def _normalize(y: jax.Array, normalizer: str, rows: _Rows | None = None) -> jax.Array:
    """Re-normalize an intermediate block (its span is all that matters).

    A block split by rows has no pivoted LU: ``"lu"`` then orthonormalizes it (same span).
    """
    m = y.shape[0] if rows is None else rows.m
    if normalizer == "qr" or (normalizer == "lu" and rows is not None):
        return _svqb(y, 1, rows)[0] if m >= 2 * y.shape[1] else _qr_basis(y, rows)
    if normalizer == "lu":
        return _lu_normalize(y)
    return _scale_normalize(y, rows)


def _project_out(basis: jax.Array, y: jax.Array, rows: _Rows | None = None) -> jax.Array:
    """``(I - Q Q^T) y`` twice (classical Gram-Schmidt with one re-orthogonalization)."""
    for _ in range(2):
        y = y - matmul(basis, _tdot(basis, y, rows))
    return y


def _extend_basis(basis: jax.Array, y: jax.Array, rows: _Rows | None = None) -> jax.Array:
    """Orthonormal columns spanning ``y`` (m, b) modulo ``basis`` (m, L), orthogonal to ``basis``.

    Classical Gram-Schmidt twice, then Gram orthonormalization of the block. Where the projected
    block is ill-conditioned or rank deficient, Householder QR completes it with arbitrary unit
    directions, so that case takes a second round of projection and QR to make them orthogonal
    to ``basis`` as well. Zero columns of ``basis`` are allowed.
    """
    y = _project_out(basis, y, rows)

    def slow(y):
        return _qr_basis(_project_out(basis, _qr_basis(y, rows), rows), rows)

    if (y.shape[0] if rows is None else rows.m) < 2 * y.shape[1]:
        return slow(y)
    q, ok = _svqb(y, 2, rows)

    return lax.cond(ok, lambda y: q, slow, y)


def _residual_norm(
    y: jax.Array, y_perp: jax.Array, z: jax.Array, rows: _Rows | None = None
) -> jax.Array:
    """Lower bound on ``||R||_2`` from ``y = A W``, ``y_perp = R W`` (m, t), ``z = R^T y_perp``.

    Returns ``max ||R^T x|| / ||x||`` over ``x`` in the span of ``y_perp``: one step of block
    power iteration on ``R R^T`` started from the residual of ``t`` Gaussian vectors. Directions
    of ``y_perp`` at the rounding level of ``y`` are ignored (the residual is zero there).
    """
    g = _tdot(y_perp, y_perp, rows)
    evals, evecs = jnp.linalg.eigh(g)
    t = g.shape[0]
    tiny = eps(g.dtype)
    yy = jnp.sum(y * y) if rows is None else lax.psum(jnp.sum(y * y), rows.axes)
    thr = jnp.maximum(evals[-1] * (10 * t * tiny), yy * (100 * tiny) ** 2)
    keep = evals > thr
    inv = jnp.where(keep, 1 / jnp.sqrt(jnp.where(keep, evals, jnp.ones_like(evals))), 0.0)
    mm = matmul(z, evecs * inv[None, :])
    top = jnp.linalg.eigvalsh(matmul(mm.T, mm))[-1]
    return jnp.sqrt(jnp.maximum(top, 0.0))


def _estimator_width(b: int) -> int:
    """Number of Gaussian vectors carried for the error estimate: >= 4, b + t a multiple of 8."""
    return 4 + (-(b + 4)) % 8


def _small_svd(bt: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """SVD of ``B = bt.T`` (l, n) given ``bt`` (n, l): ``(u_small (l, l), s (l,), vt (l, n))``."""
    v, s, uht = lax.linalg.svd(bt, full_matrices=False)  # bt = v diag(s) uht: B = uht.T s v.T
    return uht.T, s, v.T


# --------------------------------------------------------------------------------------------
# fixed-rank range finders: return the basis Q (m, L), B^T = A^T Q (n, L) and the estimate


def _finish(op: LinearOperator, q_basis: jax.Array, yw: jax.Array, rows: _Rows | None):
    """Last pass: ``A^T [Q, y_perp]`` gives ``B^T`` and one power step for the error estimate."""
    yw_perp = _project_out(q_basis, yw, rows)
    out = op.rmatmat(jnp.concatenate([q_basis, yw_perp], axis=1))
    width = q_basis.shape[1]
    bt, zw = out[:, :width], out[:, width:]
    return bt, _residual_norm(yw, yw_perp, zw, rows)


def _range_power(op, omega, w, q, normalizer, rows):
    """Subspace iteration: ``Q = orth((A A^T)^q A Omega)`` (HMT Algorithm 4.4)."""
    b = omega.shape[1]

    def body(_, z):
        y = _normalize(op.matmat(z), normalizer, rows)
        return _normalize(op.rmatmat(y), normalizer)

    z = lax.fori_loop(0, q, body, omega) if q > 0 else omega
    yy = op.matmat(jnp.concatenate([z, w], axis=1))
    q_basis = _orth(yy[:, :b], rows)
    return (q_basis, *_finish(op, q_basis, yy[:, b:], rows))


def _range_krylov(op, omega, w, q, normalizer, rows):
    """Block Krylov: ``Q`` spans ``[A Omega, (A A^T) A Omega, ..., (A A^T)^q A Omega]``.

    Block Lanczos-style: each new block ``A z`` is orthogonalized against the blocks before it
    (classical Gram-Schmidt twice) and orthonormalized, so the basis is orthonormal as it grows
    and no QR of the whole ``(m, (q + 1) b)`` stack is needed (Musco & Musco 2015). The loop over
    the ``q + 1`` blocks is unrolled because every block projects against a wider basis.
    """
    b = omega.shape[1]
    blocks = []
    z = omega
    for i in range(q + 1):
        if i < q:
            y = op.matmat(z)
        else:  # last block: the estimator vectors ride along
            yy = op.matmat(jnp.concatenate([z, w], axis=1))
            y = yy[:, :b]
        y = _extend_basis(jnp.concatenate(blocks, axis=1), y, rows) if blocks else _orth(y, rows)
        blocks.append(y)
        if i < q:
            z = _normalize(op.rmatmat(y), normalizer)
    basis = jnp.concatenate(blocks, axis=1)
    return (basis, *_finish(op, basis, yy[:, b:], rows))


# --------------------------------------------------------------------------------------------
# cores (op is in the tall orientation: m >= n)


def _fixed_core(g, op, k, l, q, method, normalizer, dtype, rows=None):
    t = g.shape[1] - l
    omega, w = g[:, :l], g[:, l:]
    if method == "power":
        q_basis, bt, resid = _range_power(op, omega, w, q, normalizer, rows)
        matvecs = 2 * q * l + 2 * (l + t)
    else:
        q_basis, bt, resid = _range_krylov(op, omega, w, q, normalizer, rows)
        matvecs = 2 * q * l + (l + t) + (l * (q + 1) + t)
    width = q_basis.shape[1]
    u_small, s_all, vt_all = _small_svd(bt)
    u = matmul(q_basis, u_small[:, :k])
    s, vt = s_all[:k], vt_all[:k]
    tail = s_all[k] if width > k else jnp.zeros((), dtype)
    err = jnp.sqrt(resid**2 + tail**2)
    info = dict(
        rank=jnp.asarray(k, jnp.int32),
        sketch_size=jnp.asarray(width, jnp.int32),
        passes=jnp.asarray(2 * q + 2, jnp.int32),
        matvecs=jnp.asarray(matvecs, jnp.int32),
    )
    return u, s, vt, err, info


def _adaptive_core(g, op, b, max_rank, q, normalizer, dtype, tol, rows=None):
    """Blocked adaptive range finder (Martinsson & Voronin 2016) with a spectral-norm stop rule."""
    m, n = op.shape
    nb = -(-max_rank // b)
    cap = nb * b
    t = g.shape[1] - cap
    w0 = g[:, cap:]
    cols = jnp.arange(b)
    zero = jnp.zeros((), dtype)

    def cond(state):
        j, _, _, _, resid, nu = state
        return (j < nb) & ((j == 0) | (resid > tol * nu))

    def body(state):
        j, basis, bt, w, _, nu = state
        omega = lax.dynamic_slice_in_dim(g, j * b, b, axis=1)

        def power(_, z):
            y = _normalize(_project_out(basis, op.matmat(z), rows), normalizer, rows)
            return _normalize(op.rmatmat(y), normalizer)

        z = lax.fori_loop(0, q, power, omega) if q > 0 else omega
        yy = op.matmat(jnp.concatenate([z, w], axis=1))
        keep = (j * b + cols) < max_rank
        qj = _extend_basis(basis, yy[:, :b], rows) * keep[None, :].astype(dtype)
        basis = lax.dynamic_update_slice(basis, qj, (jnp.zeros_like(j), j * b))
        yw_perp = _project_out(basis, yy[:, b:], rows)
        out = op.rmatmat(jnp.concatenate([qj, yw_perp], axis=1))
        btj, zw = out[:, :b], out[:, b:]
        bt = lax.dynamic_update_slice(bt, btj, (jnp.zeros_like(j), j * b))
        resid = _residual_norm(yy[:, b:], yw_perp, zw, rows)
        top = jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(matmul(btj.T, btj))[-1], 0.0))
        nu = jnp.where(j == 0, top, nu)
        # keep iterating the estimator's vectors on the shrinking residual (columns rescaled)
        norms = jnp.sqrt(jnp.sum(zw * zw, axis=0))
        w = jnp.where(norms > 0, zw / jnp.where(norms > 0, norms, 1.0)[None, :], w)
        return j + 1, basis, bt, w, resid, nu

    state = (
        jnp.zeros((), jnp.int32),
        jnp.zeros((m, cap), dtype),
        jnp.zeros((n, cap), dtype),
        w0,
        zero,
        zero,
    )
    blocks, basis, bt, _, resid, nu = lax.while_loop(cond, body, state)
    u_small, s_all, vt_all = _small_svd(bt)
    used = jnp.minimum(blocks * b, max_rank)
    s_pad = jnp.concatenate([s_all[:max_rank], jnp.zeros((1,), dtype)])
    # error of the rank-j truncation ~ sqrt(resid^2 + s_j^2); keep the smallest j that meets tol
    errs = jnp.sqrt(resid**2 + s_pad[1:] ** 2)  # errs[j - 1] for rank j = 1..max_rank
    ranks = jnp.arange(1, max_rank + 1)
    ok = (errs <= tol * nu) & (ranks <= used)
    k_eff = jnp.where(jnp.any(ok), jnp.argmax(ok) + 1, used).astype(jnp.int32)
    err = jnp.sqrt(resid**2 + s_pad[k_eff] ** 2)
    mask = (jnp.arange(max_rank) < k_eff).astype(dtype)
    u = matmul(basis, u_small[:, :max_rank]) * mask[None, :]
    s = s_all[:max_rank] * mask
    vt = vt_all[:max_rank] * mask[:, None]
    per_block = 2 * q * b + 2 * (b + t)
    info = dict(
        rank=k_eff,
        sketch_size=used.astype(jnp.int32),
        passes=(blocks * (2 * q + 2)).astype(jnp.int32),
        matvecs=(blocks * per_block).astype(jnp.int32),
        converged_tol=err <= tol * nu,
    )
    return u, s, vt, err, info


def _rsvd_rows(g, a, center, tol, *, k, l, q, method, normalizer, adaptive, max_rank, out_dtype,
               rows):
    """:func:`_rsvd` of a tall dense ``a`` split by rows: one ``shard_map`` program.

    Every device keeps its rows of ``A`` and of the (m, b) blocks; ``A^T Y``, the Gram matrices
    of the blocks and the estimator's norms are summed over devices (``psum`` of n x b and b x b
    arrays) and Householder QR becomes TSQR (``all_gather`` of b x b factors). The small
    factors (``B^T``, the SVD of ``B``, ``s``, ``vt``) are the same on every device.
    """
    dtype = _checks.compute_dtype(a.dtype)
    n = a.shape[1]
    axes = rows.axes
    row_spec = PartitionSpec(axes, None)

    def local(g, a, center, tol):
        a = a.astype(dtype)

        def mm(x):
            out = matmul(a, x)
            return out if center is None else out - matmul(center[None, :], x)

        def rmm(y):
            out = lax.psum(matmul(a.T, y), axes)
            if center is None:
                return out
            return out - center[:, None] * lax.psum(jnp.sum(y, axis=0), axes)[None, :]

        op = LinearOperator((a.shape[0], n), dtype, mm, rmm)
        if adaptive:
            u, s, vt, err, info = _adaptive_core(g, op, k, max_rank, q, normalizer, dtype, tol,
                                                 rows)
            met = info.pop("converged_tol")
        else:
            u, s, vt, err, info = _fixed_core(g, op, k, l, q, method, normalizer, dtype, rows)
            met = jnp.asarray(True)
        u, vt = _canonical.svd_signs(u, vt)
        converged = met & jnp.isfinite(err) & jnp.all(jnp.isfinite(s))
        return RandomizedSVD(u.astype(out_dtype), s.astype(out_dtype), vt.astype(out_dtype),
                             err.astype(out_dtype), converged=converged, **info)

    rep = PartitionSpec()
    out_specs = RandomizedSVD(row_spec, rep, rep, rep, rep, rep, rep, rep, rep)
    # Replication of the small outputs holds by construction (they are computed from psum'd
    # values); it is not inferred, so the static check of shard_map is off.
    return jax.shard_map(local, mesh=rows.mesh, in_specs=(rep, row_spec, rep, rep),
                         out_specs=out_specs, check_vma=False)(g, a, center, tol)


@functools.partial(
    jax.jit,
    static_argnames=("k", "l", "q", "method", "normalizer", "adaptive", "max_rank", "out_dtype",
                     "rows"),
)
def _rsvd(g, a, center, tol, *, k, l, q, method, normalizer, adaptive, max_rank, out_dtype,
          rows=None):
    if rows is not None:
        return _rsvd_rows(g, a, center, tol, k=k, l=l, q=q, method=method,
                          normalizer=normalizer, adaptive=adaptive, max_rank=max_rank,
                          out_dtype=out_dtype, rows=rows)
    op = a if isinstance(a, LinearOperator) else _dense_operator(a)
    dtype = _checks.compute_dtype(op.dtype)
    if center is not None:
        op = _centered_operator(op, center)
    m, n = op.shape
    wide = m < n
    if wide:
        op = op.T
    op = LinearOperator(
        op.shape,
        dtype,
        lambda x, f=op.matmat: f(x).astype(dtype),
        lambda y, f=op.rmatmat: f(y).astype(dtype),
    )
    if adaptive:
        u, s, vt, err, info = _adaptive_core(g, op, k, max_rank, q, normalizer, dtype, tol)
        met = info.pop("converged_tol")
    else:
        u, s, vt, err, info = _fixed_core(g, op, k, l, q, method, normalizer, dtype)
        met = jnp.asarray(True)  # no tolerance to meet
    if wide:
        u, vt = vt.T, u.T
    u, vt = _canonical.svd_signs(u, vt)
    converged = met & jnp.isfinite(err) & jnp.all(jnp.isfinite(s))
    return RandomizedSVD(
        u.astype(out_dtype),
        s.astype(out_dtype),
        vt.astype(out_dtype),
        err.astype(out_dtype),
        converged=converged,
        **info,
    )


_gaussian = jax.jit(jax.random.normal, static_argnames=("shape", "dtype"))


def _gaussian_block(key: jax.Array, rows: int, cols: int, dtype: Any) -> jax.Array:
    """Standard normal ``(rows, cols)`` block, cut from a draw of a rounded-up shape.

    The Gaussian test matrix is drawn by a separately compiled function (its generator dominates
    compile time otherwise), and rounding the drawn shape (rows to a multiple of 64, columns of 8)
    lets problems of nearby sizes share one compiled generator.
    """
    full = _gaussian(key, (-(-rows // 64) * 64, -(-cols // 8) * 8), dtype)
    return lax.slice(full, (0, 0), (rows, cols))


def _default_power_iters(rank: int, min_dim: int, method: str, adaptive: bool) -> int:
    if adaptive:
        return 2
    if method == "block_krylov":
        return 3
    return 7 if rank < 0.1 * min_dim else 4


# --------------------------------------------------------------------------------------------
# public API


def randomized_svd(
    key: jax.Array,
    a: jax.Array | LinearOperator,
    rank: int,
    *,
    oversamples: int = 10,
    power_iters: int | None = None,
    method: str = "power",
    normalizer: str = "qr",
    center: jax.Array | None = None,
    tol: float | None = None,
    max_rank: int | None = None,
) -> RandomizedSVD:
    """Randomized truncated SVD with an a-posteriori error estimate.

    Finds ``A ~ U diag(s) Vt`` of rank ``k = rank`` from a Gaussian sketch of the range of ``A``
    (Halko, Martinsson & Tropp 2011). Let ``l = min(rank + oversamples, min(m, n))``. Wide
    matrices (``m < n``) are handled as ``A^T`` so the sketch is always taken on the shorter side.

    * ``method="power"``: subspace iteration ``Q = orth((A A^T)^q A Omega)`` with ``Omega``
      ``(n, l)`` Gaussian and every product re-normalized by ``normalizer`` (HMT Algorithm 4.4);
      ``2 q + 2`` passes over ``A``, each on ``l`` (plus a few estimator) columns.
    * ``method="block_krylov"``: ``Q`` is an orthonormal basis of the block Krylov space
      ``[A Omega, (A A^T) A Omega, ..., (A A^T)^q A Omega]`` (Musco & Musco 2015), built block by
      block, each block orthogonalized against the previous ones (Gram-Schmidt twice). The same
      ``2 q + 2`` passes give a much better approximation on slowly decaying spectra, for
      ``(q + 1) l`` columns of memory and a last pass on ``(q + 1) l`` columns. ``q`` is clipped
      so that ``(q + 1) l <= min(m, n)``.

    Then ``B = Q^T A`` (the last pass) and the SVD of the small ``B`` give ``U = Q U_B``, ``s``
    and ``Vt``. A tall dense ``a`` split by rows over a mesh (each piece at least ``n`` rows)
    is decomposed where its rows live: only ``n x b`` and ``b x b`` factors cross devices and
    ``u`` stays split by rows (module documentation). Signs are canonical (the
    largest-magnitude entry of each row of ``vt`` is positive). The final basis ``Q`` is
    orthonormal to working precision: two rounds of Gram-matrix orthonormalization (SVQB,
    matmul-bound) where the sketch is well conditioned, Householder QR otherwise.

    **Error estimate.** Write ``R = (I - Q Q^T) A``. The error of the rank-``k`` result satisfies
    ``max(||R||, s_B[k]) <= ||A - U diag(s) Vt||_2 <= sqrt(||R||^2 + s_B[k]^2)`` where ``s_B[k]``
    is the first discarded singular value of ``B``. ``error_estimate = sqrt(r^2 + s_B[k]^2)`` with
    ``r`` a lower bound on ``||R||_2`` obtained from ``t >= 4`` extra Gaussian vectors carried
    along the last two passes (one step of block power iteration on the residual, at almost no
    extra cost). It therefore never exceeds ``sqrt(2)`` times the true error; it underestimates
    only when the residual has a dominant direction that both the sketch and the estimator vectors
    missed. In the tests it is within a factor 2 of the true error.

    **Adaptive mode** (``tol`` given): ``rank`` becomes the block size. The orthonormal basis grows
    by ``rank`` columns at a time (each block with ``power_iters`` power iterations against the
    residual, re-orthogonalized against the basis) until ``r <= tol * nu``, with ``nu`` the
    largest singular value of the first block's projection (an estimate of ``||A||_2``), or until
    ``max_rank`` columns. The result is then truncated to the smallest rank whose estimated error
    meets ``tol * nu``; ``rank`` reports it, and ``u``/``s``/``vt`` have ``max_rank`` slots with
    zeros beyond it (static shapes under ``jit``). ``converged`` says whether the tolerance was
    met. ``oversamples`` and ``method`` are not used in this mode.

    Args:
        key: JAX random key (``jax.random.key(0)``).
        a: ``(m, n)`` float array, or a :class:`~jaxla.linalg.LinearOperator`.
        rank: static int, ``1 <= rank <= min(m, n)``; the block size in adaptive mode.
        oversamples: extra sketch columns (static int >= 0).
        power_iters: power iterations ``q`` (static int >= 0). Default: 7 when
            ``rank < 0.1 min(m, n)``, else 4 for ``"power"`` (scikit-learn's rule); 3 for
            ``"block_krylov"``; 2 per block in adaptive mode.
        method: ``"power"`` or ``"block_krylov"``.
        normalizer: how the intermediate products are re-normalized: ``"qr"`` (orthonormalized:
            one round of Gram-matrix orthonormalization, the matmul-bound equivalent of a thin
            QR; the most accurate), ``"lu"`` (``P L`` of a pivoted LU, as scikit-learn) or
            ``"none"`` (only rescaled by a scalar against overflow, as HMT Algorithm 4.3: the
            singular values below about ``eps**(1 / (2 q + 1)) s[0]`` are lost).
        center: optional ``(n,)`` vector subtracted from every row of ``A``, implicitly (see
            :func:`~jaxla.linalg.centered`).
        tol: optional relative tolerance (> 0) on the spectral-norm error: switches on adaptive
            mode. Without adaptive mode, pass ``tol=None``.
        max_rank: static int, ``rank <= max_rank <= min(m, n)``, the capacity in adaptive mode
            (default ``min(m, n)``). Only valid with ``tol``.

    Returns:
        :class:`RandomizedSVD` with ``u`` (m, k), ``s`` (k,), ``vt`` (k, n) (``k = max_rank`` in
        adaptive mode), ``error_estimate`` (), ``rank``, ``sketch_size``, ``passes``, ``matvecs``
        (int32 scalars) and ``converged`` (bool scalar), in the dtype of ``a``
        (float16/bfloat16 computed in float32).

    Raises:
        ValueError: bad shapes, ``rank`` out of range, wrong ``center`` length, unknown
            ``method``/``normalizer``, ``max_rank`` without ``tol``, NaN/Inf in a dense ``a``
            (eagerly; under ``jit`` ``converged`` is False and ``checkify`` reports it).
        TypeError: missing or invalid ``key``, non-float ``a``, non-int sizes.

    Examples:
        >>> import jax
        >>> import numpy as np
        >>> from jaxla.linalg import randomized_svd
        >>> x = jax.random.normal(jax.random.key(1), (60, 5)) @ jax.random.normal(
        ...     jax.random.key(2), (5, 40))
        >>> res = randomized_svd(jax.random.key(0), x, 5)
        >>> res.u.shape, res.s.shape, res.vt.shape
        ((60, 5), (5,), (5, 40))
        >>> bool(np.allclose(res.s, np.linalg.svd(np.asarray(x))[1][:5], rtol=1e-4))
        True
        >>> print(bool(res.error_estimate < 1e-3 * res.s[0]), int(res.passes))
        True 10

        Adaptive rank: grow the basis in blocks of 2 until the relative error is below 1e-4.

        >>> ad = randomized_svd(jax.random.key(0), x, 2, tol=1e-4)
        >>> print(int(ad.rank), bool(ad.converged), ad.s.shape)
        5 True (40,)
    """
    return _randomized(key, a, rank, oversamples=oversamples, power_iters=power_iters,
                       method=method, normalizer=normalizer, center=center, tol=tol,
                       max_rank=max_rank)


def _randomized(
    key: jax.Array,
    a: jax.Array | LinearOperator,
    rank: int,
    *,
    oversamples: int = 10,
    power_iters: int | None = None,
    method: str = "power",
    normalizer: str = "qr",
    center: jax.Array | None = None,
    tol: float | None = None,
    max_rank: int | None = None,
    rows: _Rows | None = None,
) -> RandomizedSVD:
    """:func:`randomized_svd`, with the row split of ``a`` given (``rows``) or read from it."""
    fn = f"{_MODULE}.randomized_svd"
    _checks.check_key(key, fn)
    if isinstance(a, LinearOperator):
        arr = _as_operator(a, fn, "a")
    else:
        arr = _checks.as_float_array(a, fn, "a", ndim=2, doc="(m, n)")
    m, n = arr.shape
    rank = _checks.check_int(rank, fn, "rank", min=1, max=min(m, n), max_doc="min(m, n)")
    oversamples = _checks.check_int(oversamples, fn, "oversamples", min=0)
    method = _checks.check_option(method, _METHODS, fn, "method")
    normalizer = _checks.check_option(normalizer, _NORMALIZERS, fn, "normalizer")
    if power_iters is None:
        power_iters = _default_power_iters(rank, min(m, n), method, tol is not None)
    power_iters = _checks.check_int(power_iters, fn, "power_iters", min=0)
    if center is not None:
        center = _check_mean(center, n, arr.dtype, fn, "center")
    adaptive = tol is not None
    if adaptive:
        tol = _checks.check_positive(tol, fn, "tol")
        if max_rank is None:
            max_rank = min(m, n)
        max_rank = _checks.check_int(
            max_rank, fn, "max_rank", min=rank, max=min(m, n), max_doc="min(m, n)"
        )
    elif max_rank is not None:
        _checks.fail(
            fn,
            f"`max_rank` is only used with `tol` (adaptive mode), got max_rank={max_rank!r} "
            "and tol=None",
        )
    if not isinstance(arr, LinearOperator):
        _check_finite_dense(arr, fn, "a")
    if center is not None:
        _check_finite_dense(center, fn, "center")
    l = min(rank + oversamples, min(m, n))
    q = power_iters
    if method == "block_krylov" and not adaptive:
        q = max(0, min(q, min(m, n) // l - 1))
    # Gaussian test matrix: columns [0, l) sketch (all blocks in adaptive mode), the rest feed
    # the error estimate.
    width = (-(-max_rank // rank) * rank if adaptive else l)
    width += _estimator_width(rank if adaptive else l)
    g = _gaussian_block(key, min(m, n), width, _checks.compute_dtype(arr.dtype))
    if rows is None and not isinstance(arr, LinearOperator):
        rows = _tall_row_split(arr)
    if rows is None:
        arr = _unshard_explicit(arr)
    return _rsvd(
        g,
        arr,
        center,
        jnp.asarray(tol) if adaptive else None,
        k=rank,
        l=l,
        q=q,
        method=method,
        normalizer=normalizer,
        adaptive=adaptive,
        max_rank=max_rank,
        out_dtype=jnp.dtype(arr.dtype),
        rows=rows,
    )


def truncated_svd(a: jax.Array, rank: int) -> SVD:
    """Exact top-``rank`` singular value decomposition of a dense matrix.

    Computes the thin SVD with :func:`jaxla.linalg.svd` (canonical signs, finite derivatives)
    and keeps the ``rank`` largest singular triplets: ``u @ diag(s) @ vt`` is the best rank-``k``
    approximation of ``a`` in every unitarily invariant norm (Eckart-Young). A tall 2-D ``a``
    split by rows over a mesh (each piece at least ``n`` rows) is decomposed by TSQR followed by
    the SVD of the ``(n, n)`` factor ``R``, so only ``n x n`` factors cross devices and ``u``
    stays split by rows (module documentation); the result is the same up to rounding.

    Args:
        a: ``(..., m, n)`` float array (leading axes are batch axes).
        rank: static int, ``1 <= rank <= min(m, n)``.

    Returns:
        ``SVD(u, s, vt)`` with ``u`` (..., m, k), ``s`` (..., k) descending and ``vt`` (..., k, n),
        ``k = rank``, in the dtype of ``a``; the largest-magnitude entry of each row of ``vt`` is
        positive.

    Raises:
        ValueError: ``a`` with fewer than 2 dimensions, ``rank`` out of range, NaN/Inf (eagerly).
        TypeError: non-float ``a`` or non-int ``rank``.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.linalg import truncated_svd
        >>> a = jnp.array([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
        >>> u, s, vt = truncated_svd(a, 2)
        >>> np.round(np.asarray(s, np.float64), 3), u.shape, vt.shape
        (array([3., 2.]), (3, 2), (2, 3))
    """
    fn = f"{_MODULE}.truncated_svd"
    a = _checks.as_float_array(a, fn, "a", min_ndim=2, doc="(..., m, n)")
    m, n = a.shape[-2:]
    rank = _checks.check_int(rank, fn, "rank", min=1, max=min(m, n), max_doc="min(m, n)")
    _check_finite_dense(a, fn, "a")
    rows = _tall_row_split(a)
    if rows is not None:
        return _tall_svd(a, rank=rank, rows=rows)
    u, s, vt = svd(_unshard_explicit(a))
    return SVD(u[..., :rank], s[..., :rank], vt[..., :rank, :])


def _tall_row_split(a: Any) -> _Rows | None:
    """The row split of a 2-D ``a`` when the distributed (TSQR) path applies to it.

    That is: ``a`` is split by rows over mesh axes and every piece holds at least ``n`` rows
    (each local QR then yields a full ``n x n`` factor).
    """
    rows = _row_split(a)
    if rows is None or rows.m // rows.shards < a.shape[1]:
        return None
    return rows


@functools.partial(jax.jit, static_argnames=("rank", "rows"))
def _tall_svd(a: jax.Array, *, rank: int, rows: _Rows) -> SVD:
    """Top-``rank`` SVD of a tall ``a`` split by rows: TSQR, then the SVD of the (n, n) ``R``.

    ``A = Q R`` and ``R = U_R diag(s) Vt`` give ``A = (Q U_R) diag(s) Vt``: the right factors
    are those of ``R`` (so :func:`jaxla.linalg.svd`'s canonical signs carry over) and ``u`` keeps
    ``a``'s row split. Only the n x n factors ``R_i`` cross devices.
    """
    row_spec = PartitionSpec(rows.axes, None)
    dt = _checks.compute_dtype(a.dtype)

    def local(a):
        q, r = _tsqr_local(a.astype(dt), rows.axes)
        u_r, s, vt = svd(r)
        u = matmul(q, u_r[:, :rank])
        return SVD(u.astype(a.dtype), s[:rank].astype(a.dtype), vt[:rank].astype(a.dtype))

    rep = PartitionSpec()
    return jax.shard_map(local, mesh=rows.mesh, in_specs=row_spec,
                         out_specs=SVD(row_spec, rep, rep), check_vma=False)(a)


def low_rank_approx(
    a: jax.Array | LinearOperator,
    rank: int,
    *,
    method: str = "exact",
    key: jax.Array | None = None,
    factors: bool = False,
    oversamples: int = 10,
    power_iters: int | None = None,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Best rank-``k`` approximation of ``a``, as a matrix or as two balanced factors.

    ``method="exact"`` uses :func:`truncated_svd` (the optimum, Eckart-Young);
    ``method="randomized"`` uses :func:`randomized_svd` (``key`` required; ``a`` may be a
    :class:`~jaxla.linalg.LinearOperator`), whose ``oversamples`` and ``power_iters`` are passed on.

    Args:
        a: ``(m, n)`` float array (or a LinearOperator with ``method="randomized"``).
        rank: static int, ``1 <= rank <= min(m, n)``.
        method: ``"exact"`` or ``"randomized"``.
        key: JAX random key, required for ``method="randomized"``.
        factors: if True return ``(left, right)`` instead of the ``(m, n)`` product.
        oversamples: passed to :func:`randomized_svd`.
        power_iters: passed to :func:`randomized_svd`.

    Returns:
        The ``(m, n)`` approximation ``u diag(s) vt``; with ``factors=True`` the pair
        ``left = u diag(sqrt(s))`` (m, k) and ``right = diag(sqrt(s)) vt`` (k, n), whose product is
        the approximation. Dtype of ``a``.

    Raises:
        ValueError: unknown ``method``, missing ``key`` for ``"randomized"``, an operator with
            ``"exact"``, or the errors of :func:`truncated_svd` / :func:`randomized_svd`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.linalg import low_rank_approx
        >>> a = jnp.array([[3.0, 0.0], [0.0, 1.0]])
        >>> np.round(np.asarray(low_rank_approx(a, 1), np.float64), 3)
        array([[3., 0.],
               [0., 0.]])
        >>> left, right = low_rank_approx(a, 1, factors=True)
        >>> left.shape, right.shape
        ((2, 1), (1, 2))
    """
    fn = f"{_MODULE}.low_rank_approx"
    method = _checks.check_option(method, ("exact", "randomized"), fn, "method")
    if not isinstance(factors, bool | np.bool_):
        _checks.fail(fn, f"`factors` must be a Python bool, got {factors!r}", TypeError)
    if method == "exact":
        if isinstance(a, LinearOperator):
            _checks.fail(
                fn,
                "`a` must be a dense (m, n) array for method='exact', got a LinearOperator; "
                "use method='randomized'",
            )
        a = _checks.as_float_array(a, fn, "a", ndim=2, doc="(m, n)")
        m, n = a.shape
        rank = _checks.check_int(rank, fn, "rank", min=1, max=min(m, n), max_doc="min(m, n)")
        _check_finite_dense(a, fn, "a")
        u, s, vt = svd(a)
        u, s, vt = u[:, :rank], s[:rank], vt[:rank]
        dtype = a.dtype
    else:
        if key is None:
            _checks.fail(fn, "`key` is required for method='randomized', got None")
        res = randomized_svd(key, a, rank, oversamples=oversamples, power_iters=power_iters)
        u, s, vt = res.u, res.s, res.vt
        dtype = u.dtype
    if factors:
        root = jnp.sqrt(s)
        return (u * root[None, :]).astype(dtype), (root[:, None] * vt).astype(dtype)
    return matmul(u * s[None, :], vt).astype(dtype)


def eckart_young_error(s: jax.Array, rank: int, *, ord: str | int = "fro") -> jax.Array:
    """Optimal error of a rank-``k`` approximation, from the singular values.

    By the Eckart-Young-Mirsky theorem, ``min_{rank(X) <= k} ||A - X||`` is ``s[k]`` in the
    spectral norm (``ord=2``) and ``sqrt(sum_{j >= k} s[j]^2)`` in the Frobenius norm
    (``ord="fro"``), with ``s`` the singular values of ``A`` in descending order (0-based index).

    Args:
        s: ``(..., p)`` singular values, descending, >= 0 (leading axes are batch axes).
        rank: static int, ``0 <= rank <= p``; ``rank = p`` gives 0.
        ord: ``"fro"`` or ``2``.

    Returns:
        Array of shape ``(...)``, dtype of ``s``.

    Raises:
        ValueError: ``s`` not at least 1-D, ``rank`` out of range, unknown ``ord``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxla.linalg import eckart_young_error
        >>> s = jnp.array([3.0, 2.0, 1.0])
        >>> print(round(float(eckart_young_error(s, 1)), 4), float(eckart_young_error(s, 1, ord=2)))
        2.2361 2.0
    """
    fn = f"{_MODULE}.eckart_young_error"
    s = _checks.as_float_array(s, fn, "s", min_ndim=1, doc="(..., p)")
    p = s.shape[-1]
    rank = _checks.check_int(rank, fn, "rank", min=0, max=p, max_doc="len(s)")
    if isinstance(ord, bool) or ord not in ("fro", 2):
        _checks.fail(fn, f"`ord` must be one of 'fro', 2, got {ord!r}")
    tail = s[..., rank:]
    if ord == 2:
        return tail[..., 0] if rank < p else jnp.zeros(s.shape[:-1], s.dtype)
    return jnp.sqrt(jnp.sum(tail * tail, axis=-1))
