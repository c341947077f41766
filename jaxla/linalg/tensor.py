"""Tensor trains: TT-SVD with a guaranteed accuracy, TT arithmetic, and TT matrices.

A tensor ``A`` of shape ``(n_1, ..., n_d)`` in tensor-train (TT) format is stored as ``d`` cores
``G_k`` of shape ``(r_{k-1}, n_k, r_k)`` with ``r_0 = r_d = 1``::

    A[i_1, ..., i_d] = G_1[:, i_1, :] @ G_2[:, i_2, :] @ ... @ G_d[:, i_d, :]

``(r_0, ..., r_d)`` are the TT ranks. A TT costs ``sum_k r_{k-1} n_k r_k`` numbers instead of
``prod_k n_k``. A TT matrix stores a ``(d_in, d_out)`` matrix with ``d_in = prod(m_k)`` and
``d_out = prod(n_k)`` as cores ``(r_{k-1}, m_k, n_k, r_k)``::

    W[(i_1, ..., i_d), (j_1, ..., j_d)] = G_1[:, i_1, j_1, :] @ ... @ G_d[:, i_d, j_d, :]

where the row index ``(i_1, ..., i_d)`` is read in row-major order (``i_1`` slowest), as numpy's
``reshape`` does, and likewise the column index.

:func:`tt_svd` (Oseledets 2011, Algorithm 1) factors a dense tensor by ``d - 1`` sequential
truncated SVDs of unfoldings. With ``eps`` the ranks are chosen so that
``||A - B||_F <= eps * ||A||_F`` is guaranteed (the squared error is exactly the sum of the
discarded squared singular values); they then depend on the data, which is why eps mode runs
eagerly (see :func:`tt_svd` for the rule).

Conventions:

* Cores produced by :func:`tt_svd`, :func:`tt_round` and :func:`tt_matrix` are
  *left-orthonormal* except the last: ``G_k.reshape(r_{k-1} * n_k, r_k)`` has orthonormal
  columns for ``k < d`` (for TT matrices, ``G_k.reshape(r_{k-1} * m_k * n_k, r_k)``), and the last
  core carries the norm. Each truncated SVD uses :func:`jaxla.linalg.svd` with its canonical signs,
  so the cores are deterministic.
* Every result carries ``rel_error``, the relative Frobenius error of the truncation that made it,
  computed from the discarded singular values (exact up to rounding, since the discarded parts are
  mutually orthogonal), so no full tensor is ever formed to report it.
* Outputs have the dtype of the input; float16/bfloat16 are computed in float32.
* Matrix products run at ``precision=HIGHEST``.

References:
    I. V. Oseledets. Tensor-train decomposition. SIAM J. Sci. Comput. 33(5):2295-2317, 2011.

    A. Novikov, D. Podoprikhin, A. Osokin, D. Vetrov. Tensorizing neural networks. NeurIPS 2015.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify
from jax.typing import ArrayLike

from jaxla import _checks
from jaxla._numerics import HIGHEST, matmul
from jaxla.linalg.decompositions import qr, svd

__all__ = [
    "TT",
    "TTMatrix",
    "tt_dot",
    "tt_matrix",
    "tt_matrix_to_dense",
    "tt_matvec",
    "tt_norm",
    "tt_ranks",
    "tt_round",
    "tt_svd",
    "tt_to_full",
]

_MODULE = "jaxla.linalg"
_einsum = functools.partial(jnp.einsum, precision=HIGHEST)


class TT(NamedTuple):
    """A tensor ``(n_1, ..., n_d)`` in tensor-train format (a pytree; passes through jit/vmap).

    ``A[i_1, ..., i_d] = cores[0][:, i_1, :] @ ... @ cores[d - 1][:, i_d, :]``.
    """

    cores: tuple[jax.Array, ...]  # d cores; cores[k-1] (r_{k-1}, n_k, r_k), r_0 = r_d = 1
    rel_error: jax.Array | None = None  # () ||A - TT||_F / ||A||_F of the truncation; None: unknown


class TTMatrix(NamedTuple):
    """A ``(d_in, d_out)`` matrix in TT format, ``d_in = prod(m_k)``, ``d_out = prod(n_k)``.

    ``W[(i_1..i_d), (j_1..j_d)] = cores[0][:, i_1, j_1, :] @ ... @ cores[d - 1][:, i_d, j_d, :]``
    with row-major multi-indices (a pytree; passes through jit/vmap).
    """

    cores: tuple[jax.Array, ...]  # d cores; cores[k-1] (r_{k-1}, m_k, n_k, r_k), r_0 = r_d = 1
    rel_error: jax.Array | None = None  # () ||W - TT||_F / ||W||_F of the truncation; None: unknown


# --------------------------------------------------------------------------------------------
# validation helpers


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in np.shape(x))


def _check_dims(dims: Any, fn: str, name: str) -> tuple[int, ...]:
    """A sequence of at least two static ints >= 1."""
    if not isinstance(dims, Sequence) or isinstance(dims, str) or len(dims) < 2:
        _checks.fail(fn, f"`{name}` must be a sequence of at least 2 ints >= 1, got {dims!r}")
    return tuple(_checks.check_int(v, fn, f"{name}[{i}]", min=1) for i, v in enumerate(dims))


def _check_eps(eps: Any, fn: str) -> float | None:
    if eps is None:
        return None
    if isinstance(eps, jax.core.Tracer):
        _checks.fail(
            fn,
            "`eps` sets data-dependent ranks and must be a concrete Python float, got a traced "
            "value",
            TypeError,
        )
    return _checks.check_positive(eps, fn, "eps")


def _check_max_rank(
    max_rank: Any, num: int, fn: str, name: str = "max_rank"
) -> tuple[int | None, ...]:
    """``None``, an int >= 1, or ``num`` ints >= 1 (one per inner rank) -> ``num`` caps."""
    if max_rank is None:
        return (None,) * num
    if isinstance(max_rank, Sequence) and not isinstance(max_rank, str):
        if len(max_rank) != num:
            _checks.fail(
                fn,
                f"`{name}` must be an int or a sequence of d-1={num} ints (one per inner "
                f"rank), got {tuple(max_rank)!r}",
            )
        return tuple(
            _checks.check_int(v, fn, f"{name}[{i}]", min=1) for i, v in enumerate(max_rank)
        )
    return (_checks.check_int(max_rank, fn, name, min=1),) * num


def _cores_of(tt: Any, fn: str, name: str, ndim: int) -> tuple[jax.Array, ...]:
    """The cores of a TT (``ndim=3``) or TT matrix (``ndim=4``), checked to chain."""
    kind, doc = ("TT", "(r, n, r')") if ndim == 3 else ("TTMatrix", "(r, m, n, r')")
    cores = getattr(tt, "cores", None)
    if not isinstance(cores, Sequence) or isinstance(cores, str) or len(cores) == 0:
        _checks.fail(
            fn, f"`{name}` must be a {kind} with a non-empty sequence of cores, "
            f"got {type(tt).__name__}",
            TypeError,
        )
    return _check_core_list(cores, fn, f"{name}.cores", ndim, doc)


def _check_core_list(
    cores: Sequence[Any], fn: str, name: str, ndim: int, doc: str
) -> tuple[jax.Array, ...]:
    out = []
    for k, core in enumerate(cores):
        core = _checks.as_float_array(core, fn, f"{name}[{k}]", ndim=ndim, doc=doc)
        if k == 0 and core.shape[0] != 1:
            _checks.fail(fn, f"`{name}[0]` must have r_0=1 (first axis), got shape {_shape(core)}")
        if k > 0 and core.shape[0] != out[-1].shape[-1]:
            _checks.fail(
                fn,
                f"`{name}[{k}]` must have {out[-1].shape[-1]} rows (first axis) to follow "
                f"{name}[{k - 1}] of shape {_shape(out[-1])}, got shape {_shape(core)}",
            )
        out.append(core)
    if out[-1].shape[-1] != 1:
        _checks.fail(
            fn,
            f"`{name}[{len(out) - 1}]` must have r_d=1 (last axis), got shape {_shape(out[-1])}",
        )
    return tuple(out)


def _common_dtype(cores: Sequence[jax.Array]) -> tuple[Any, Any]:
    """(output dtype, compute dtype) of a list of cores."""
    dt = jnp.result_type(*cores)
    return dt, _checks.compute_dtype(dt)


def _report_nonfinite(x: jax.Array, fn: str, name: str) -> None:
    """Raise eagerly on NaN/Inf; under jit, a checkify check with the same message."""
    _checks.check_finite(x, fn, name)
    if not _checks.is_concrete(x):
        checkify.debug_check(
            jnp.all(jnp.isfinite(x)),
            f"{fn}: `{name}` contains NaN or Inf value(s); clean or mask them first",
        )


# --------------------------------------------------------------------------------------------
# TT-SVD


def _eps_rank(s: np.ndarray, delta2: float) -> int:
    """Smallest r >= 1 with ``sum_{i >= r} s_i^2 <= delta2`` (s in float64)."""
    tail = np.append(np.cumsum((s**2)[::-1])[::-1], 0.0)  # tail[r] = sum_{i >= r} s_i^2
    return max(int(np.argmax(tail <= delta2)), 1)


def _rel(err2: jax.Array, norm2: jax.Array) -> jax.Array:
    """``sqrt(err2 / norm2)`` (0 where either is 0), with finite derivatives everywhere."""
    pos = (err2 > 0) & (norm2 > 0)
    ratio = jnp.where(pos, err2, jnp.ones_like(err2)) / jnp.where(pos, norm2, jnp.ones_like(norm2))
    return jnp.where(pos, jnp.sqrt(ratio), jnp.zeros_like(ratio))


def _cap(r: int, cap: int | None) -> int:
    return r if cap is None else min(r, cap)


# Two ways to run a sweep of truncated SVDs. With static ranks (max_rank alone, or exact) the
# whole sweep is one jitted function. With eps the rank of each step is read off the singular
# values, so the sweep runs eagerly: one jitted SVD per step, the rank chosen in numpy (float64),
# then one jitted cut; each small program is compiled once per shape.


@functools.partial(jax.jit, static_argnames=("rows",))
def _unfolded_svd(x: jax.Array, rows: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    return svd(x.reshape(rows, -1))


@functools.partial(jax.jit, static_argnames=("r", "core_shape"))
def _cut(u, s, vt, r: int, core_shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    return u[:, :r].reshape(core_shape), s[:r, None] * vt[:r]


@functools.partial(jax.jit, static_argnames=("r", "core_shape"))
def _cut_into(u, s, vt, nxt, r: int, core_shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    return u[:, :r].reshape(core_shape), _einsum("ab,bnc->anc", s[:r, None] * vt[:r], nxt)


def _norm2_np(x: jax.Array) -> float:
    return float(np.sum(np.asarray(x, np.float64) ** 2))


def _rel_np(err2: float, norm2: float, dtype: Any) -> jax.Array:
    return jnp.asarray(math.sqrt(err2 / norm2) if norm2 > 0 else 0.0, dtype)


class _EpsSweep:
    """A left-to-right sweep of truncated SVDs whose ranks are chosen for an error budget.

    Shared by the ``eps`` paths of :func:`tt_svd` and :func:`tt_round`. Cut ``k`` factors the
    carried matrix, reshaped to ``(r_{k-1} n_k, -1)``; ``cut(k, u, s, vt, r, r_prev)`` returns
    the core and the next carried matrix. Because the discarded parts are mutually orthogonal,
    the squared error of a whole sweep is the sum of the discarded squared singular values, so
    the error of any rank tuple is known exactly without forming the result. The state after
    each rank prefix is memoized: rank tuples that share a prefix share its SVDs.
    """

    def __init__(self, first: jax.Array, dims: list[int], cut: Any, norm2: float):
        self.dims, self.cut, self.norm2 = dims, cut, norm2
        self._states: dict[tuple[int, ...], tuple[jax.Array, float, tuple[jax.Array, ...]]] = {
            (): (first, 0.0, ())
        }
        self._svds: dict[tuple[int, ...], tuple[jax.Array, ...]] = {}

    def svd(self, prefix: tuple[int, ...]) -> tuple[jax.Array, jax.Array, jax.Array, np.ndarray]:
        """SVD of the matrix carried after ``prefix`` (and its singular values in float64)."""
        if prefix not in self._svds:
            carried = self.state(prefix)[0]
            r_prev = prefix[-1] if prefix else 1
            u, s, vt = _unfolded_svd(carried, rows=r_prev * self.dims[len(prefix)])
            self._svds[prefix] = (u, s, vt, np.asarray(s, np.float64))
        return self._svds[prefix]

    def state(self, ranks: tuple[int, ...]) -> tuple[jax.Array, float, tuple[jax.Array, ...]]:
        """(carried matrix, squared error so far, cores) after cutting at ``ranks``."""
        if ranks not in self._states:
            prefix, r = ranks[:-1], ranks[-1]
            _, err2, cores = self.state(prefix)
            u, s, vt, s64 = self.svd(prefix)
            core, carried = self.cut(len(prefix), u, s, vt, r, prefix[-1] if prefix else 1)
            self._states[ranks] = (carried, err2 + float(np.sum(s64[r:] ** 2)), (*cores, core))
        return self._states[ranks]

    def clamp(self, ranks: tuple[int, ...]) -> tuple[int, ...]:
        """``ranks`` lowered, cut by cut, to the number of singular values available."""
        out: tuple[int, ...] = ()
        for r in ranks:
            out += (min(r, self.svd(out)[3].shape[0]),)
        return out

    def choose(self, eps: float, caps: tuple[int | None, ...]) -> tuple[int, ...]:
        """The ranks for ``||A - B||_F <= eps ||A||_F`` (see :func:`tt_svd`)."""
        budget = eps**2 * self.norm2
        n = len(self.dims)
        ranks: tuple[int, ...] = ()
        for k, cap in enumerate(caps):  # each cut spends at most its share of what is left
            share = max(budget - self.state(ranks)[1], 0.0) / (n - k)
            ranks += (_cap(_eps_rank(self.svd(ranks)[3], share), cap),)
        if self.state(ranks)[1] > budget:  # a max_rank bit: nothing smaller can meet eps
            return ranks
        best = ranks
        for c in range(max(ranks) - 1, 0, -1):  # lower the largest rank while eps still holds
            candidates = (
                self.clamp(tuple(min(r, c) for r in ranks)),
                self.clamp(tuple(_cap(c, cap) for cap in caps)),
            )
            fits = [t for t in candidates if self.state(t)[1] <= budget]
            if not fits:
                break
            best = fits[0]
        return best


@functools.partial(jax.jit, static_argnames=("caps",))
def _tt_svd_fixed(x: jax.Array, caps: tuple[int | None, ...]) -> tuple[list[jax.Array], jax.Array]:
    dims = x.shape
    err2 = jnp.zeros((), x.dtype)
    cores = []
    r_prev, rest = 1, x
    for k, cap in enumerate(caps):
        u, s, vt = svd(rest.reshape(r_prev * dims[k], -1))
        r = _cap(s.shape[0], cap)
        err2 = err2 + jnp.sum(jnp.square(s[r:]))
        cores.append(u[:, :r].reshape(r_prev, dims[k], r))
        rest, r_prev = s[:r, None] * vt[:r], r
    cores.append(rest.reshape(r_prev, dims[-1], 1))
    return cores, _rel(err2, jnp.sum(jnp.square(x)))


def _tt_svd(
    x: jax.Array, eps: float | None, caps: tuple[int | None, ...]
) -> tuple[list[jax.Array], jax.Array]:
    """TT-SVD of ``x`` (already validated and in the compute dtype): (cores, rel_error)."""
    if eps is None:
        return _tt_svd_fixed(x, caps)
    dims = x.shape

    def cut(k, u, s, vt, r, r_prev):
        return _cut(u, s, vt, r=r, core_shape=(r_prev, dims[k], r))

    sweep = _EpsSweep(x, [dims[k] for k in range(len(caps))], cut, _norm2_np(x))
    ranks = sweep.choose(eps, caps)
    carried, err2, cores = sweep.state(ranks)
    cores = [*cores, carried.reshape(ranks[-1], dims[-1], 1)]
    return cores, _rel_np(err2, sweep.norm2, x.dtype)


def _prepare_tensor(x: jax.Array, eps: float | None, fn: str, name: str) -> None:
    if 0 in x.shape:
        _checks.fail(fn, f"`{name}` must not have an empty axis, got shape {_shape(x)}")
    if eps is not None and not _checks.is_concrete(x):
        _checks.fail(
            fn,
            f"`eps` chooses the ranks from the singular values of `{name}`, so `{name}` must be "
            "concrete (call this eagerly, outside jit/vmap/grad, or pass only max_rank), got a "
            "traced value",
            TypeError,
        )
    _report_nonfinite(x, fn, name)


def tt_svd(
    tensor: ArrayLike,
    *,
    eps: float | None = None,
    max_rank: int | Sequence[int] | None = None,
) -> TT:
    """Tensor-train decomposition by sequential truncated SVDs (TT-SVD, Oseledets 2011).

    For ``k = 1, ..., d - 1`` the current unfolding, of shape ``(r_{k-1} n_k, n_{k+1} ... n_d)``,
    is factored by :func:`jaxla.linalg.svd`; its left singular vectors become core ``k`` and the
    product ``diag(s) @ vt`` is carried on. The rank ``r_k`` is

    * with ``eps``: the squared error ``||A - B||_F^2`` of a sweep is exactly the sum of the
      squared singular values it discards (the discarded parts are mutually orthogonal), so
      the ranks are chosen against the budget ``eps^2 ||A||_F^2`` in two steps. First, cut
      ``k`` takes the smallest ``r >= 1`` that discards at most an equal share of what the
      earlier cuts left of the budget, ``(eps^2 ||A||_F^2 - spent) / (d - k)``; a cut that
      spends less than its share passes the rest on, so the threshold never falls below
      Oseledets' ``delta = eps / sqrt(d - 1) * ||A||_F``. Then the largest rank is lowered one
      step at a time (all ranks capped at ``c``, or a uniform ``c``), with the exact error of
      each candidate read off its singular values, while the budget still holds. Either way
      ``||A - B||_F <= eps * ||A||_F`` is **guaranteed** (up to rounding of order the machine
      epsilon of the dtype times ``||A||_F``; choose ``eps`` well above it). The search stops
      at the first ``c`` where neither candidate fits, so the largest rank is at most the
      smallest uniform rank ``R`` that meets ``eps`` (what a tensorly user finds by trying
      ``tensor_train(A, rank=R)``, the same algorithm) whenever the error falls monotonically
      with the uniform rank, as it does for all tensors in the tests and the ``tensor_train``
      experiment. The first SVD is shared by all candidates, so the search costs only
      extra SVDs of the smaller, later unfoldings;
    * then capped by ``max_rank``. A cap that bites can break the ``eps`` bound: the achieved
      error is then *reported* in ``rel_error``, not guaranteed;
    * without ``eps`` and ``max_rank``: the full rank ``min(r_{k-1} n_k, n_{k+1} ... n_d)``, an
      exact decomposition.

    Not jittable with ``eps``: the ranks (hence the shapes of the cores) depend on the singular
    values, which are not known while tracing. Called with a traced ``tensor`` and ``eps`` it
    raises ``TypeError``. With ``max_rank`` alone (or neither) the ranks depend only on shapes,
    and ``tt_svd`` works under ``jax.jit`` and ``jax.vmap`` and is differentiable where the
    kept singular values are simple (it runs the ``d - 1`` SVDs in a Python loop over modes).

    Args:
        tensor: (n_1, ..., n_d) real floating tensor, ``d >= 2``; NaN/Inf raise ``ValueError``
            when called eagerly (under ``jit``: ``jax.experimental.checkify`` reports them).
        eps: Relative Frobenius accuracy ``> 0``, or None.
        max_rank: Cap on the inner ranks ``r_1, ..., r_{d-1}``: an int ``>= 1`` for all of them,
            a sequence of ``d - 1`` ints (one per rank), or None.

    Returns:
        :class:`TT` with ``d`` cores ``(r_{k-1}, n_k, r_k)``, ``r_0 = r_d = 1``, the first
        ``d - 1`` left-orthonormal, in the dtype of ``tensor``; ``rel_error`` () is
        ``||A - B||_F / ||A||_F`` computed from the discarded singular values (0 for a zero
        tensor).

    Raises:
        TypeError: integer, boolean or complex ``tensor``; ``eps`` with a traced ``tensor``; a
            non-int ``max_rank``.
        ValueError: ``tensor`` with fewer than 2 dimensions or an empty axis, ``eps <= 0``,
            ``max_rank < 1``, a ``max_rank`` sequence of the wrong length, NaN/Inf (eagerly).

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.linalg.tensor import tt_svd, tt_to_full, tt_ranks
        >>> g = jnp.linspace(0.0, 1.0, 8)
        >>> a = jnp.sin(g[:, None, None] + g[None, :, None] + g[None, None, :])  # TT ranks 2
        >>> tt = tt_svd(a, eps=1e-4)
        >>> tt_ranks(tt)
        (1, 2, 2, 1)
        >>> err = jnp.linalg.norm(tt_to_full(tt) - a) / jnp.linalg.norm(a)
        >>> bool(err <= 1e-4), bool(tt.rel_error <= 1e-4)
        (True, True)
        >>> tt_ranks(tt_svd(a, max_rank=1))  # capped: see rel_error for the accuracy
        (1, 1, 1, 1)
    """
    fn = f"{_MODULE}.tt_svd"
    eps = _check_eps(eps, fn)
    a = _checks.as_float_array(tensor, fn, "tensor", min_ndim=2, doc="(n_1, ..., n_d)")
    caps = _check_max_rank(max_rank, a.ndim - 1, fn)
    _prepare_tensor(a, eps, fn, "tensor")
    x = a.astype(_checks.compute_dtype(a.dtype))
    cores, rel = _tt_svd(x, eps, caps)
    return TT(tuple(c.astype(a.dtype) for c in cores), rel.astype(a.dtype))


# --------------------------------------------------------------------------------------------
# TT operations


def tt_ranks(tt: TT | TTMatrix) -> tuple[int, ...]:
    """The TT ranks ``(r_0, r_1, ..., r_d)`` (static Python ints; ``r_0 = r_d = 1``).

    Args:
        tt: A :class:`TT` or :class:`TTMatrix`.

    Returns:
        Tuple of ``d + 1`` ints.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxla.linalg.tensor import TT, tt_ranks
        >>> tt_ranks(TT((jnp.ones((1, 4, 3)), jnp.ones((3, 5, 1)))))
        (1, 3, 1)
    """
    fn = f"{_MODULE}.tt_ranks"
    ndim = 4 if isinstance(tt, TTMatrix) else 3
    cores = _cores_of(tt, fn, "tt", ndim)
    return (1, *(int(c.shape[-1]) for c in cores))


def tt_to_full(tt: TT) -> jax.Array:
    """The dense tensor ``(n_1, ..., n_d)`` of a TT (memory ``prod n_k``: for checks and small TTs).

    Args:
        tt: :class:`TT` with cores ``(r_{k-1}, n_k, r_k)``.

    Returns:
        (n_1, ..., n_d) array in the dtype of the cores. Works under jit, vmap and grad.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.linalg.tensor import TT, tt_to_full
        >>> tt = TT((jnp.array([[[1.0], [2.0]]]), jnp.array([[[1.0], [10.0], [100.0]]])))
        >>> np.asarray(tt_to_full(tt)).tolist()  # the outer product of (1, 2) and (1, 10, 100)
        [[1.0, 10.0, 100.0], [2.0, 20.0, 200.0]]
    """
    fn = f"{_MODULE}.tt_to_full"
    cores = _cores_of(tt, fn, "tt", 3)
    dt, cdt = _common_dtype(cores)
    return _full(list(cores), cdt).astype(dt)


@functools.partial(jax.jit, static_argnames=("cdt",))
def _full(cores: list[jax.Array], cdt: Any) -> jax.Array:
    dims = tuple(int(c.shape[1]) for c in cores)
    out = cores[0].astype(cdt).reshape(dims[0], -1)
    for g in cores[1:]:
        r, n, r2 = g.shape
        out = matmul(out, g.astype(cdt).reshape(r, n * r2)).reshape(-1, r2)
    return out.reshape(dims)


@functools.partial(jax.jit, static_argnames=("cdt",))
def _dot(cores_a: Sequence[jax.Array], cores_b: Sequence[jax.Array], cdt: Any) -> jax.Array:
    m = jnp.ones((1, 1), cdt)
    for ga, gb in zip(cores_a, cores_b, strict=True):
        t = _einsum("ab,anc->bnc", m, ga.astype(cdt))
        m = _einsum("bnc,bnd->cd", t, gb.astype(cdt))
    return m[0, 0]


def tt_dot(a: TT, b: TT) -> jax.Array:
    """Inner product ``<A, B> = sum A * B`` of two TTs, without forming either tensor.

    A left-to-right sweep of ``O(d n r^3)`` operations (``r`` the largest rank).

    Args:
        a: :class:`TT` with cores ``(r_{k-1}, n_k, r_k)``.
        b: :class:`TT` with cores ``(s_{k-1}, n_k, s_k)`` (same mode sizes, any ranks).

    Returns:
        () scalar in the common dtype of the cores. Works under jit, vmap and grad.

    Raises:
        ValueError: TTs of different orders or mode sizes.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.linalg.tensor import tt_dot, tt_svd
        >>> x = jnp.arange(24.0).reshape(2, 3, 4)
        >>> y = jnp.cos(x)
        >>> print(round(float(tt_dot(tt_svd(x), tt_svd(y))), 2), round(float(jnp.sum(x * y)), 2))
        -25.61 -25.61
    """
    fn = f"{_MODULE}.tt_dot"
    ca = _cores_of(a, fn, "a", 3)
    cb = _cores_of(b, fn, "b", 3)
    da = tuple(int(c.shape[1]) for c in ca)
    db = tuple(int(c.shape[1]) for c in cb)
    if da != db:
        _checks.fail(fn, f"`a` and `b` must have the same mode sizes, got {da} and {db}")
    dt, cdt = _common_dtype([*ca, *cb])
    return _dot(list(ca), list(cb), cdt).astype(dt)


def tt_norm(tt: TT) -> jax.Array:
    """Frobenius norm ``||A||_F`` of a TT, without forming the tensor.

    Computed as ``sqrt(<A, A>)`` by the sweep of :func:`tt_dot`; its gradient at a zero tensor
    is zero (finite).

    Args:
        tt: :class:`TT` with cores ``(r_{k-1}, n_k, r_k)``.

    Returns:
        () scalar in the dtype of the cores. Works under jit, vmap and grad.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxla.linalg.tensor import tt_norm, tt_svd
        >>> x = jnp.arange(24.0).reshape(2, 3, 4)
        >>> print(round(float(tt_norm(tt_svd(x))), 3), round(float(jnp.linalg.norm(x)), 3))
        65.757 65.757
    """
    fn = f"{_MODULE}.tt_norm"
    cores = _cores_of(tt, fn, "tt", 3)
    dt, cdt = _common_dtype(cores)
    n2 = _dot(list(cores), list(cores), cdt)
    pos = n2 > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, n2, jnp.ones_like(n2))), 0.0).astype(dt)


@jax.jit
def _right_orthogonalize(cores: list[jax.Array]) -> list[jax.Array]:
    """Make cores 2..d right-orthonormal by QR from right to left; the first carries the norm."""
    cores = list(cores)
    for k in range(len(cores) - 1, 0, -1):
        r0, n, r1 = cores[k].shape
        q, r = qr(cores[k].reshape(r0, n * r1).T)  # G_k = r^T q^T
        cores[k] = q.T.reshape(-1, n, r1)
        cores[k - 1] = _einsum("anb,cb->anc", cores[k - 1], r)
    return cores


@functools.partial(jax.jit, static_argnames=("caps",))
def _round_fixed(cores: list[jax.Array], caps: tuple[int | None, ...]):
    cores = _right_orthogonalize(cores)
    norm2 = jnp.sum(jnp.square(cores[0]))
    err2 = jnp.zeros((), cores[0].dtype)
    for k, cap in enumerate(caps):
        r0, n, _ = cores[k].shape
        u, s, vt = svd(cores[k].reshape(r0 * n, -1))
        r = _cap(s.shape[0], cap)
        err2 = err2 + jnp.sum(jnp.square(s[r:]))
        cores[k] = u[:, :r].reshape(r0, n, r)
        cores[k + 1] = _einsum("ab,bnc->anc", s[:r, None] * vt[:r], cores[k + 1])
    return cores, _rel(err2, norm2)


def _round(
    cores: Sequence[jax.Array], eps: float | None, caps: tuple[int | None, ...]
) -> tuple[list[jax.Array], jax.Array]:
    """Right-to-left QR orthogonalization, then left-to-right truncated SVDs (Oseledets, Alg. 2)."""
    if eps is None:
        return _round_fixed(list(cores), caps)
    orth = _right_orthogonalize(list(cores))

    def cut(k, u, s, vt, r, r_prev):
        return _cut_into(u, s, vt, orth[k + 1], r=r, core_shape=(r_prev, orth[k].shape[1], r))

    sweep = _EpsSweep(orth[0], [c.shape[1] for c in orth[:-1]], cut, _norm2_np(orth[0]))
    ranks = sweep.choose(eps, caps)
    carried, err2, out = sweep.state(ranks)
    return [*out, carried], _rel_np(err2, sweep.norm2, orth[0].dtype)


def tt_round(
    tt: TT, *, eps: float | None = None, max_rank: int | Sequence[int] | None = None
) -> TT:
    """Recompress a TT to lower ranks (TT rounding, Oseledets 2011, Algorithm 2).

    The cores are first made right-orthonormal by QR decompositions from right to left, then
    truncated from left to right with the rank rule of :func:`tt_svd` (an error budget
    shared over the cuts, then a search lowering the largest rank), so the result ``B``
    satisfies ``||tt - B||_F <= eps * ||tt||_F`` (guaranteed up to rounding); a
    ``max_rank`` that bites can break the bound, which is then reported in ``rel_error``.
    Costs ``O(d n r^3)``; the full tensor is never formed. Useful after operations that grow
    ranks (sums of TTs) or to compress a TT that has redundant ranks.

    Not jittable with ``eps`` (the ranks depend on singular values, see :func:`tt_svd`); with
    ``max_rank`` alone it works under ``jax.jit`` and ``jax.vmap``.

    Args:
        tt: :class:`TT` with cores ``(r_{k-1}, n_k, r_k)``.
        eps: Relative Frobenius accuracy ``> 0``, or None.
        max_rank: An int ``>= 1``, a sequence of ``d - 1`` ints, or None (see :func:`tt_svd`).

    Returns:
        :class:`TT` with left-orthonormal cores (all but the last) and ``rel_error`` () equal to
        ``||tt - B||_F / ||tt||_F``, in the dtype of the cores.

    Raises:
        TypeError: ``eps`` with traced cores; non-floating cores; a non-int ``max_rank``.
        ValueError: cores that do not chain, ``eps <= 0``, ``max_rank < 1``, NaN/Inf (eagerly).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxla.linalg.tensor import TT, tt_ranks, tt_round, tt_svd
        >>> g = jnp.linspace(0.0, 1.0, 6)
        >>> a = tt_svd(jnp.exp(g[:, None, None] + g[None, :, None] + g[None, None, :]))
        >>> tt_ranks(a)  # exact TT-SVD: full ranks
        (1, 6, 6, 1)
        >>> tt_ranks(tt_round(a, eps=1e-6))  # the tensor is a product: TT ranks 1
        (1, 1, 1, 1)
    """
    fn = f"{_MODULE}.tt_round"
    eps = _check_eps(eps, fn)
    cores = _cores_of(tt, fn, "tt", 3)
    caps = _check_max_rank(max_rank, len(cores) - 1, fn)
    if eps is not None and not all(_checks.is_concrete(c) for c in cores):
        _checks.fail(
            fn,
            "`eps` chooses the ranks from singular values, so `tt` must be concrete (call this "
            "eagerly, outside jit/vmap/grad, or pass only max_rank), got traced cores",
            TypeError,
        )
    for k, c in enumerate(cores):
        _report_nonfinite(c, fn, f"tt.cores[{k}]")
    dt, cdt = _common_dtype(cores)
    if len(cores) == 1:
        return TT((cores[0].astype(dt),), jnp.zeros((), dt))
    out, rel = _round([c.astype(cdt) for c in cores], eps, caps)
    return TT(tuple(c.astype(dt) for c in out), rel.astype(dt))


# --------------------------------------------------------------------------------------------
# TT matrices


def _check_matrix_dims(
    w_shape: tuple[int, ...], row_dims: Any, col_dims: Any, fn: str, what: str
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    rows = _check_dims(row_dims, fn, "row_dims")
    cols = _check_dims(col_dims, fn, "col_dims")
    if len(rows) != len(cols):
        _checks.fail(
            fn,
            f"`row_dims` and `col_dims` must have the same number of factors, got {rows} and "
            f"{cols}",
        )
    for name, dims, size, axis in (("row_dims", rows, w_shape[0], "d_in"),
                                   ("col_dims", cols, w_shape[1], "d_out")):
        if math.prod(dims) != size:
            _checks.fail(
                fn,
                f"`{name}` must multiply to {axis}={size} ({what}), got {dims} with product "
                f"{math.prod(dims)}",
            )
    return rows, cols


def tt_matrix(
    w: ArrayLike,
    row_dims: Sequence[int],
    col_dims: Sequence[int],
    *,
    eps: float | None = None,
    max_rank: int | Sequence[int] | None = None,
) -> TTMatrix:
    """Factor a dense ``(d_in, d_out)`` matrix into a TT matrix by TT-SVD.

    ``w`` is reshaped to ``(m_1, ..., m_d, n_1, ..., n_d)``, its axes interleaved to
    ``(m_1, n_1, ..., m_d, n_d)`` and merged pairwise to ``(m_1 n_1, ..., m_d n_d)``; this
    tensor is factored by :func:`tt_svd` with the same ``eps``/``max_rank`` rule, so with
    ``eps`` (and no binding cap) ``||W - W_tt||_F <= eps * ||W||_F`` is guaranteed (the
    reshapes keep the Frobenius norm). Not jittable with ``eps``; jittable with ``max_rank``
    alone (see :func:`tt_svd`).

    Args:
        w: (d_in, d_out) real floating matrix, e.g. the weight of a dense layer ``y = x @ w``.
        row_dims: ``(m_1, ..., m_d)``, ``d >= 2`` static ints with product ``d_in``.
        col_dims: ``(n_1, ..., n_d)``, as many static ints, with product ``d_out``.
        eps: Relative Frobenius accuracy ``> 0``, or None.
        max_rank: An int ``>= 1``, a sequence of ``d - 1`` ints, or None.

    Returns:
        :class:`TTMatrix` with cores ``(r_{k-1}, m_k, n_k, r_k)`` (the first ``d - 1``
        left-orthonormal) in the dtype of ``w``, and ``rel_error`` () ``= ||W - W_tt||_F /
        ||W||_F``.

    Raises:
        TypeError: non-floating ``w``; ``eps`` with a traced ``w``; non-int dims or ranks.
        ValueError: ``w`` not 2-D; dims with fewer than 2 factors, different numbers of factors
            or products that do not match ``w``; ``eps <= 0``; ``max_rank < 1``; NaN/Inf.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.linalg.tensor import tt_matrix, tt_matrix_to_dense, tt_ranks
        >>> w = jnp.kron(jnp.arange(1.0, 5.0).reshape(2, 2), jnp.ones((3, 4)))  # (6, 8)
        >>> ttm = tt_matrix(w, (2, 3), (2, 4), eps=1e-6)
        >>> tt_ranks(ttm), [c.shape for c in ttm.cores]  # a Kronecker product has TT rank 1
        ((1, 1, 1), [(1, 2, 2, 1), (1, 3, 4, 1)])
        >>> bool(jnp.allclose(tt_matrix_to_dense(ttm), w, atol=1e-5))
        True
    """
    return _tt_matrix(w, row_dims, col_dims, eps, max_rank, f"{_MODULE}.tt_matrix", "w")


def _tt_matrix(
    w: Any, row_dims: Any, col_dims: Any, eps: Any, max_rank: Any, fn: str, name: str
) -> TTMatrix:
    """:func:`tt_matrix` with the error messages of ``fn`` (``name`` is the weight's name)."""
    eps = _check_eps(eps, fn)
    w = _checks.as_float_array(w, fn, name, ndim=2, doc="(d_in, d_out)")
    rows, cols = _check_matrix_dims(_shape(w), row_dims, col_dims, fn, f"the shape of `{name}`")
    caps = _check_max_rank(max_rank, len(rows) - 1, fn)
    _prepare_tensor(w, eps, fn, name)
    x = _interleave(w.astype(_checks.compute_dtype(w.dtype)), rows, cols)
    cores, rel = _tt_svd(x, eps, caps)
    cores = [
        c.reshape(c.shape[0], m, n, c.shape[-1]).astype(w.dtype)
        for c, m, n in zip(cores, rows, cols, strict=True)
    ]
    return TTMatrix(tuple(cores), rel.astype(w.dtype))


@functools.partial(jax.jit, static_argnames=("rows", "cols"))
def _interleave(w: jax.Array, rows: tuple[int, ...], cols: tuple[int, ...]) -> jax.Array:
    """(d_in, d_out) -> (m_1 n_1, ..., m_d n_d)."""
    d = len(rows)
    x = w.reshape(rows + cols)
    x = jnp.transpose(x, [ax for k in range(d) for ax in (k, d + k)])
    return x.reshape(tuple(m * n for m, n in zip(rows, cols, strict=True)))


@functools.partial(jax.jit, static_argnames=("cdt",))
def _matrix_to_dense(cores: Sequence[jax.Array], cdt: Any) -> jax.Array:
    g = cores[0].astype(cdt)
    out = g.reshape(g.shape[1], g.shape[2], g.shape[3])
    for g in cores[1:]:
        mm, nn_, _ = out.shape
        out = _einsum("MNa,amnb->MmNnb", out, g.astype(cdt))
        out = out.reshape(mm * g.shape[1], nn_ * g.shape[2], g.shape[3])
    return out[:, :, 0]


def tt_matrix_to_dense(ttm: TTMatrix) -> jax.Array:
    """The dense ``(d_in, d_out)`` matrix of a TT matrix (for checks; memory ``d_in d_out``).

    Args:
        ttm: :class:`TTMatrix` with cores ``(r_{k-1}, m_k, n_k, r_k)``.

    Returns:
        (d_in, d_out) array, ``d_in = prod m_k``, ``d_out = prod n_k``, in the dtype of the
        cores. Works under jit, vmap and grad.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.linalg.tensor import TTMatrix, tt_matrix_to_dense
        >>> a, b = jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.eye(2)
        >>> ttm = TTMatrix((a.reshape(1, 2, 2, 1), b.reshape(1, 2, 2, 1)))
        >>> bool(np.array_equal(tt_matrix_to_dense(ttm), np.kron(a, b)))  # rank 1: Kronecker
        True
    """
    fn = f"{_MODULE}.tt_matrix_to_dense"
    cores = _cores_of(ttm, fn, "ttm", 4)
    dt, cdt = _common_dtype(cores)
    return _matrix_to_dense(list(cores), cdt).astype(dt)


@functools.partial(jax.jit, static_argnames=("cdt",))
def _matvec(cores: Sequence[jax.Array], x: jax.Array, cdt: Any) -> jax.Array:
    """``x @ W`` for x (B, d_in) in ``cdt``: a sweep over the cores, W never formed."""
    b = x.shape[0]
    done, rest = 1, x.shape[1]
    z = x.astype(cdt).reshape(b, 1, 1, rest)  # (B, N_done, r, M_rest)
    for g in cores:
        r, m, n, r2 = g.shape
        rest //= m
        z = _einsum("bprmq,rmns->bpnsq", z.reshape(b, done, r, m, rest), g.astype(cdt))
        done *= n
        z = z.reshape(b, done, r2, rest)
    return z.reshape(b, done)


def tt_matvec(ttm: TTMatrix, x: ArrayLike) -> jax.Array:
    """Product ``x @ W`` with a TT matrix ``W`` (d_in, d_out), without forming ``W``.

    Contracts the cores one at a time (an einsum sweep at ``precision=HIGHEST``): with ``B``
    rows, about ``2 B sum_k r_{k-1} m_k n_k r_k (prod_{j>k} m_j) (prod_{j<k} n_j)`` flops
    instead of ``2 B d_in d_out``.

    Args:
        ttm: :class:`TTMatrix` with cores ``(r_{k-1}, m_k, n_k, r_k)``.
        x: (..., d_in) inputs, any number of leading batch axes (typically (batch, d_in)).

    Returns:
        (..., d_out) array in the dtype of ``x`` (computed in the common dtype of ``x`` and the
        cores, float16/bfloat16 upcast). Works under jit, vmap and grad.

    Raises:
        TypeError: non-floating ``x`` or cores.
        ValueError: cores that do not chain, or ``x`` whose last axis is not ``d_in``.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.linalg.tensor import tt_matrix, tt_matrix_to_dense, tt_matvec
        >>> w = jax.random.normal(jax.random.key(0), (12, 6))
        >>> ttm = tt_matrix(w, (3, 4), (2, 3), max_rank=2)
        >>> x = jnp.ones((5, 12))
        >>> y = tt_matvec(ttm, x)
        >>> y.shape, bool(jnp.allclose(y, x @ tt_matrix_to_dense(ttm), atol=1e-4))
        ((5, 6), True)
    """
    fn = f"{_MODULE}.tt_matvec"
    cores = _cores_of(ttm, fn, "ttm", 4)
    x = _checks.as_float_array(x, fn, "x", min_ndim=1, doc="(..., d_in)")
    return _apply(cores, x, fn)


def _apply(cores: Sequence[jax.Array], x: jax.Array, fn: str) -> jax.Array:
    """``x @ W`` for x (..., d_in) with checked cores; output in the dtype of ``x``."""
    d_in = math.prod(int(c.shape[1]) for c in cores)
    if x.shape[-1] != d_in:
        _checks.fail(
            fn,
            f"`x` must have d_in={d_in} features (last axis) to match the TT matrix, got shape "
            f"{_shape(x)}",
        )
    cdt = _checks.compute_dtype(jnp.result_type(x, *cores))
    lead = x.shape[:-1]
    y = _matvec(list(cores), x.reshape(-1, d_in), cdt)
    return y.reshape(*lead, y.shape[-1]).astype(x.dtype)
