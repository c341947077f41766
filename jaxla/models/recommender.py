"""Matrix-factorization recommender: alternating least squares and gradient descent.

A ratings matrix ``R`` (m users by n items) is observed on the entries where ``mask`` is set and
approximated by a rank-``r`` model

    ``R_ij ≈ mean + b_i + c_j + u_i · v_j``,

with user factors ``U`` (m, r) (rows ``u_i``), item factors ``V`` (n, r) (rows ``v_j``) and, with
``biases=True``, user biases ``b`` (m,), item biases ``c`` (n,) and a global ``mean`` (the mean of
the observed ratings, held fixed; without biases ``b = c = 0`` and ``mean = 0``). Both fits
minimize the same objective (:func:`mf_objective`)

    ``J = sum_{ij} w_ij (R_ij - Rhat_ij)^2 + reg * (sum_i l_i (|u_i|^2 + b_i^2)
    + sum_j l_j (|v_j|^2 + c_j^2))``

where ``w_ij`` is the mask (1 on observed entries, 0 elsewhere; a floating mask acts as
nonnegative weights) and ``l_i = l_j = 1`` (plain L2), or with ``weighted_reg=True`` the number
of observed ratings of user ``i`` / item ``j`` (the sum of its weights for a weighted mask; the
"weighted-lambda" regularization of ALS-WR, Zhou et al. 2008; at least 1, so that a user or item
without ratings gets zero factors).

* :func:`als` -- alternating least squares. A half-step fixes ``V`` and minimizes ``J`` over every
  user exactly: user ``i`` solves its regularized normal equations
  ``(sum_j w_ij x_j x_j^T + reg l_i I) [u_i; b_i] = sum_j w_ij (R_ij - mean - c_j) x_j`` with
  ``x_j = [v_j; 1]`` (``x_j = v_j`` without biases). The (p, p) Gram matrices of all users
  (``p = r + biases``) come out of one matrix product ``w @ Z`` with ``Z_j`` the upper triangle of
  ``x_j x_j^T``, and all systems are solved in one batched Cholesky factorization and one vmapped
  triangular solve; the second half-step does the same for the items. After each iteration
  (``balance=True``) the factors are rebalanced: ``U -> U A``, ``V -> V A^{-T}`` with the
  invertible (r, r) matrix ``A`` that minimizes the penalty while leaving ``U V^T`` unchanged
  (from QR factorizations of the row-scaled ``U`` and ``V`` and an (r, r) SVD, as in Hastie et
  al. 2015). Plain ALS creeps along this direction, on which the data term is flat, and needs
  hundreds of iterations where the balanced iteration needs tens. Each half-step and each
  rebalancing is an exact block minimization, so ``J`` never increases. The iterations run in
  one ``lax.scan``. Cost per iteration ``2 m n p (p + 1)`` flops for the Gram matrices (dense
  ``mask``: independent of the density) plus ``(m + n) p^3 / 3`` for the factorizations.
* :func:`fit_gd` -- the same objective (divided by the number of observed ratings) minimized by
  any optax optimizer, all steps in one ``lax.scan``. :func:`mf_objective` also accepts a
  parameter dict ``{"user_factors", "item_factors"}``, so :func:`jaxla.train.fit` can drive it
  (checkpoints, callbacks).
* :func:`predict_ratings`, :func:`rmse` and :func:`recommend` (top-N unseen items of a user via
  ``lax.top_k``) apply a fitted :class:`MatrixFactorization`, or a plain ``(user_factors,
  item_factors)`` pair.

Both fits report how they did: the objective and the training RMSE at the start and after every
iteration/step (``objective[0]`` is at the initial factors), the norm of the gradient of ``J`` at
the result relative to its value at the start (``grad_norm``), ``ok`` (every solve succeeded and
everything is finite) and ``converged`` (``ok`` and ``grad_norm <= tol``). Results are
NamedTuples that pass through ``jit`` and ``vmap`` (a batch of problems, or of keys).

Ratings outside the mask are ignored (they may be NaN, as in a pivoted table of ratings). Value
problems: called eagerly, the fits raise ``ValueError`` on NaN/Inf observed ratings and on
normal equations that cannot be solved (``reg=0`` with a user or item that has fewer than ``p``
ratings); under ``jit`` they return ``ok=False`` instead and wrapping the call in
``jax.experimental.checkify.checkify`` raises the same message.

Dimension letters: ``m`` users, ``n`` items, ``r`` rank, ``T`` iterations or steps, ``k`` the
number of recommended items.

References:
    Y. Zhou, D. Wilkinson, R. Schreiber and R. Pan, "Large-scale parallel collaborative filtering
    for the Netflix prize", AAIM 2008. Y. Koren, R. Bell and C. Volinsky, "Matrix factorization
    techniques for recommender systems", IEEE Computer, 2009. T. Hastie, R. Mazumder, J. D. Lee
    and R. Zadeh, "Matrix completion and low-rank SVD via fast alternating least squares",
    JMLR 16, 2015.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import optax
from jax import lax
from jax.experimental import checkify
from jax.typing import ArrayLike

from jaxla import _checks
from jaxla._checks import shape_of as _shape
from jaxla._numerics import matmul

__all__ = [
    "MatrixFactorization",
    "Recommendations",
    "als",
    "fit_gd",
    "mf_objective",
    "predict_ratings",
    "recommend",
    "rmse",
]

_MODULE = "jaxla.models"
_ALS = f"{_MODULE}.als"
_GD = f"{_MODULE}.fit_gd"
_DEFAULT_LR = 0.05
_DEFAULT_OPTIMIZER = optax.adam(_DEFAULT_LR)  # one object: calls with the default share compiles


class MatrixFactorization(NamedTuple):
    """A fitted matrix factorization ``R ≈ mean + b[:, None] + c[None, :] + U @ V.T``.

    Returned by :func:`als` and :func:`fit_gd`. Under ``vmap`` every field gains a leading batch
    axis.
    """

    user_factors: jax.Array  # (m, r) U, one row per user
    item_factors: jax.Array  # (n, r) V, one row per item
    user_bias: jax.Array  # (m,) b: zeros when fitted without biases
    item_bias: jax.Array  # (n,) c: zeros when fitted without biases
    mean: jax.Array  # () global offset: mean observed rating with biases, else 0
    objective: jax.Array  # (T + 1,) J at the initial factors and after each iteration/step
    train_rmse: jax.Array  # (T + 1,) RMSE on the observed (mask) entries, same points
    grad_norm: jax.Array  # () |grad J| at the result / |grad J| at the initial factors
    ok: jax.Array  # () bool, every solve succeeded and the result is finite
    converged: jax.Array  # () bool, ok and grad_norm <= tol


class Recommendations(NamedTuple):
    """Top-``k`` items of one user, best first (see :func:`recommend`)."""

    items: jax.Array  # (k,) int32 item indices, by decreasing score
    scores: jax.Array  # (k,) predicted ratings; -inf marks excluded items used as filler


# ---------------------------------------------------------------------------------------------
# Validation


def _ratings(ratings: ArrayLike, mask: ArrayLike, fn: str) -> tuple[jax.Array, jax.Array]:
    """Validated ``ratings`` (m, n) floating and ``mask`` (m, n) as an array (any real dtype)."""
    ratings = _checks.as_float_array(ratings, fn, "ratings", ndim=2, doc="(n_users, n_items)")
    if 0 in ratings.shape:
        _checks.fail(fn, f"`ratings` must have at least one user and one item, got shape "
                     f"{_shape(ratings)}")
    mask = _mask(mask, fn, "mask")
    _checks.check_same_shape(ratings, mask, fn, ("ratings", "mask"))
    if _checks.is_concrete(ratings) and _checks.is_concrete(mask):
        observed = np.asarray(mask) > 0
        _checks.check_finite(np.asarray(ratings)[observed], fn, "ratings")
    return ratings, mask


def _mask(mask: ArrayLike, fn: str, name: str) -> jax.Array:
    mask = mask if isinstance(mask, jax.Array) else jnp.asarray(mask)
    dt = mask.dtype
    if not (jnp.issubdtype(dt, jnp.bool_) or jnp.issubdtype(dt, jnp.integer)
            or jnp.issubdtype(dt, jnp.floating)):
        _checks.fail(fn, f"`{name}` must be boolean (or 0/1, or nonnegative weights), got dtype "
                     f"{dt}", TypeError)
    if _checks.is_concrete(mask) and not jnp.issubdtype(dt, jnp.bool_):
        arr = np.asarray(mask)
        _checks.check_finite(arr, fn, name)
        if arr.size and arr.min() < 0:
            _checks.fail(fn, f"`{name}` must be boolean (or 0/1, or nonnegative weights), got a "
                         f"negative entry {arr.min().item()!r}")
    return mask


def _model_arrays(model: Any, fn: str, name: str = "model") -> tuple[jax.Array, ...]:
    """``(U, V, b, c, mean)`` from a MatrixFactorization, a mapping or a ``(U, V)`` pair."""
    if isinstance(model, MatrixFactorization):
        parts = (model.user_factors, model.item_factors, model.user_bias, model.item_bias,
                 model.mean)
    elif isinstance(model, Mapping):
        if "user_factors" not in model or "item_factors" not in model:
            _checks.fail(fn, f"`{name}` must have 'user_factors' and 'item_factors' entries, got "
                         f"keys {sorted(map(str, model))}", TypeError)
        parts = tuple(model.get(k) for k in ("user_factors", "item_factors", "user_bias",
                                               "item_bias", "mean"))
    elif isinstance(model, tuple | list) and len(model) == 2:
        parts = (model[0], model[1], None, None, None)
    else:
        _checks.fail(fn, f"`{name}` must be a MatrixFactorization or a (user_factors, "
                     f"item_factors) pair, got {type(model).__name__}", TypeError)
    u = _checks.as_float_array(parts[0], fn, f"{name}.user_factors", ndim=2, doc="(n_users, r)")
    v = _checks.as_float_array(parts[1], fn, f"{name}.item_factors", ndim=2, doc="(n_items, r)")
    if u.shape[1] != v.shape[1]:
        _checks.fail(fn, f"`{name}.user_factors` and `{name}.item_factors` must have the same "
                     f"number of columns (the rank), got shapes {_shape(u)} and {_shape(v)}")
    dtype = jnp.result_type(u, v)
    m, n = u.shape[0], v.shape[0]
    b = (jnp.zeros((m,), dtype) if parts[2] is None
         else _checks.as_float_array(parts[2], fn, f"{name}.user_bias", ndim=1))
    c = (jnp.zeros((n,), dtype) if parts[3] is None
         else _checks.as_float_array(parts[3], fn, f"{name}.item_bias", ndim=1))
    mean = (jnp.zeros((), dtype) if parts[4] is None
            else _checks.as_float_array(parts[4], fn, f"{name}.mean", ndim=0))
    if b.shape != (m,) or c.shape != (n,):
        _checks.fail(fn, f"`{name}.user_bias` and `{name}.item_bias` must have shapes ({m},) and "
                     f"({n},) (one per user and item), got {_shape(b)} and {_shape(c)}")
    return u, v, b, c, mean


def _check_model_fits(u: jax.Array, v: jax.Array, shape: tuple[int, int], fn: str,
                      name: str = "model") -> None:
    m, n = shape
    if u.shape[0] != m or v.shape[0] != n:
        _checks.fail(fn, f"`{name}` must have {m} users and {n} items (the shape of `ratings`), "
                     f"got user_factors {_shape(u)} and item_factors {_shape(v)}")


def _common(ratings, mask, rank, reg, tol, biases, weighted_reg, fn):
    ratings, mask = _ratings(ratings, mask, fn)
    m, n = ratings.shape
    rank = _checks.check_int(rank, fn, "rank", min=1, max=min(m, n),
                             max_doc="min(n_users, n_items)")
    reg = _checks.check_positive(reg, fn, "reg", allow_zero=True)
    tol = _checks.check_positive(tol, fn, "tol", allow_zero=True)
    biases = _checks.check_bool(biases, fn, "biases")
    weighted_reg = _checks.check_bool(weighted_reg, fn, "weighted_reg")
    return ratings, mask, rank, reg, tol, biases, weighted_reg


def _initial(key, init, ratings, mask, rank, biases, fn):
    """Initial ``(U, V, b, c)`` in the computation dtype, from ``init`` or drawn with ``key``."""
    m, n = ratings.shape
    cdt = _checks.compute_dtype(ratings.dtype)
    if init is not None:
        u, v, b, c, _ = _model_arrays(init, fn, "init")
        if u.shape != (m, rank) or v.shape != (n, rank):
            _checks.fail(fn, f"`init` must hold user_factors ({m}, {rank}) and item_factors "
                         f"({n}, {rank}) (n_users, n_items, rank), got {_shape(u)} and "
                         f"{_shape(v)}")
        _checks.check_finite((u, v, b, c), fn, "init")
        if not biases:
            b, c = jnp.zeros_like(b), jnp.zeros_like(c)
        return tuple(x.astype(cdt) for x in (u, v, b, c))
    if key is None:
        _checks.fail(fn, "`key` must be a JAX random key such as jax.random.key(0) when `init` is "
                         "not given, got None", TypeError)
    _checks.check_key(key, fn)
    return _random_init(key, ratings.astype(cdt), _weights(mask, cdt), rank=rank, biases=biases)


# ---------------------------------------------------------------------------------------------
# The objective


def _weights(mask: jax.Array, dtype: Any) -> jax.Array:
    return mask.astype(dtype)


def _prepare(r, w, biases, weighted, reg):
    """Zero-filled ratings, the mean, and the per-user / per-item regularization weights."""
    r = jnp.where(w > 0, r, jnp.zeros_like(r))
    total = jnp.sum(w)
    if biases:
        mean = jnp.sum(w * r) / jnp.maximum(total, jnp.finfo(r.dtype).tiny)
    else:
        mean = jnp.zeros((), r.dtype)
    if weighted:
        lam_u = reg * jnp.maximum(jnp.sum(w, axis=1), 1)
        lam_v = reg * jnp.maximum(jnp.sum(w, axis=0), 1)
    else:
        lam_u = jnp.full((r.shape[0],), reg, r.dtype)
        lam_v = jnp.full((r.shape[1],), reg, r.dtype)
    return r, mean, total, lam_u, lam_v


def _predict_full(u, v, b, c, mean):
    return mean + b[:, None] + c[None, :] + matmul(u, v.T)


def _unpack(params):
    u, v = params["user_factors"], params["item_factors"]
    b = params.get("user_bias", jnp.zeros((u.shape[0],), u.dtype))
    c = params.get("item_bias", jnp.zeros((v.shape[0],), v.dtype))
    return u, v, b, c


_predict_full_jit = jax.jit(_predict_full)


def _objective(params, r, w, mean, lam_u, lam_v, total, *, grad=False):
    """``(J, training RMSE)`` for a dict of factors (and biases); with ``grad``, also dJ/dparams.

    The gradient is written out (``-2 (w * e) V + 2 lam_u U`` and so on), which compiles faster
    than differentiating this function.
    """
    u, v, b, c = _unpack(params)
    e = r - _predict_full(u, v, b, c, mean)
    we = w * e
    sse = jnp.sum(we * e)
    pen = jnp.sum(lam_u * (jnp.sum(u * u, axis=1) + b * b))
    pen = pen + jnp.sum(lam_v * (jnp.sum(v * v, axis=1) + c * c))
    rms = jnp.sqrt(sse / jnp.maximum(total, jnp.finfo(r.dtype).tiny))
    if not grad:
        return sse + pen, rms
    g = {"user_factors": 2 * (lam_u[:, None] * u - matmul(we, v)),
         "item_factors": 2 * (lam_v[:, None] * v - matmul(we.T, u))}
    if "user_bias" in params:
        g["user_bias"] = 2 * (lam_u * b - jnp.sum(we, axis=1))
        g["item_bias"] = 2 * (lam_v * c - jnp.sum(we, axis=0))
    return sse + pen, rms, g


def _params(u, v, b, c, biases):
    p = {"user_factors": u, "item_factors": v}
    if biases:
        p["user_bias"], p["item_bias"] = b, c
    return p


def _tree_norm(tree):
    return jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(tree)))


def _safe_ratio(a, b):
    pos = b > 0
    return jnp.where(pos, a / jnp.where(pos, b, jnp.ones_like(b)),
                     jnp.where(a > 0, jnp.inf, jnp.zeros_like(a)))


@functools.partial(jax.jit, static_argnames=("rank", "biases"))
def _random_init(key, r, w, *, rank, biases):
    """Gaussian factors scaled so that ``U @ V.T`` has the spread of the observed ratings."""
    r, mean, total, _, _ = _prepare(r, w, biases, False, jnp.zeros((), r.dtype))
    d = r - mean
    ms = jnp.sum(w * d * d) / jnp.maximum(total, jnp.finfo(r.dtype).tiny)
    scale = (ms / rank) ** 0.25
    m, n = r.shape
    z = scale * jax.random.normal(key, (m + n, rank), r.dtype)  # one draw: users, then items
    return z[:m], z[m:], jnp.zeros((m,), r.dtype), jnp.zeros((n,), r.dtype)


# ---------------------------------------------------------------------------------------------
# Alternating least squares


def _pair_index(p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper-triangle index pairs of a (p, p) matrix and the (p, p) map into them."""
    iu, ju = np.triu_indices(p)
    idx = np.empty((p, p), dtype=np.int32)
    idx[iu, ju] = np.arange(iu.size)
    idx[ju, iu] = np.arange(iu.size)
    return iu, ju, idx


def _solve_rows(w, t, x, lam):
    """Minimize ``sum_j w_aj (t_aj - y_a . x_j)^2 + lam_a |y_a|^2`` for every row ``a``.

    ``w``, ``t`` (a, b); ``x`` (b, p); ``lam`` (a,). All (p, p) Gram matrices come from one matrix
    product with the upper triangles of the ``x_j x_j^T``; one batched Cholesky factorization and
    one vmapped triangular solve give every ``y_a``. Returns ``(y (a, p), ok ())``.
    """
    p = x.shape[1]
    iu, ju, idx = _pair_index(p)
    z = x[:, iu] * x[:, ju]  # (b, q): the distinct entries of x_j x_j^T
    gram = matmul(w, z)[:, idx]  # (a, p, p)
    gram = gram + lam[:, None, None] * jnp.eye(p, dtype=x.dtype)[None, :, :]
    rhs = matmul(w * t, x)  # (a, p)
    l = lax.linalg.cholesky(gram, symmetrize_input=False)  # one batched factorization
    ok = jnp.all(jnp.isfinite(l)) & jnp.all(jnp.diagonal(l, axis1=1, axis2=2) > 0)
    y = jax.vmap(lambda li, bi: jsl.cho_solve((li, True), bi))(l, rhs)
    return y, ok


def _half_step(w, r, x, c_other, b_self, mean, lam, biases):
    """Solve for one side (rows of ``w``) given the other side's factors ``x`` and biases."""
    t = r - mean - c_other[None, :]
    if biases:
        x = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
    y, ok = _solve_rows(w, t, x, lam)
    if biases:
        return y[:, :-1], y[:, -1], ok
    return y, b_self, ok


def _balance(u, v, lam_u, lam_v, reg):
    """Rescale ``U -> U A``, ``V -> V A^{-T}`` to minimize the penalty at fixed ``U V^T``.

    With ``D_u^{1/2} U = Q_u R_u``, ``D_v^{1/2} V = Q_v R_v`` (D the per-row regularization
    weights) and ``R_u R_v^T = A S B^T``: ``U' = D_u^{-1/2} Q_u A S^{1/2}``,
    ``V' = D_v^{-1/2} Q_v B S^{1/2}``, whose penalty ``2 reg tr(S)`` is the least over all such
    rescalings. Unchanged when ``reg == 0`` (no penalty to minimize).
    """
    keep = reg > 0
    su = jnp.sqrt(jnp.where(keep, lam_u, jnp.ones_like(lam_u)))
    sv = jnp.sqrt(jnp.where(keep, lam_v, jnp.ones_like(lam_v)))
    qu, ru = jnp.linalg.qr(su[:, None] * u)
    qv, rv = jnp.linalg.qr(sv[:, None] * v)
    a, s, bt = jnp.linalg.svd(matmul(ru, rv.T))
    rs = jnp.sqrt(s)[None, :]
    u2 = matmul(qu, a * rs) / su[:, None]
    v2 = matmul(qv, bt.T * rs) / sv[:, None]
    return jnp.where(keep, u2, u), jnp.where(keep, v2, v)


@functools.partial(jax.jit, static_argnames=("iters", "biases", "weighted", "balance"))
def _als_core(r, w, u0, v0, b0, c0, reg, tol, *, iters, biases, weighted, balance):
    r, mean, total, lam_u, lam_v = _prepare(r, w, biases, weighted, reg)
    wt, rt = w.T, r.T
    finite_in = jnp.all(jnp.isfinite(r))

    def obj(u, v, b, c):
        return _objective(_params(u, v, b, c, biases), r, w, mean, lam_u, lam_v, total)

    def body(carry, _):
        u, v, b, c, ok = carry
        u, b, ok_u = _half_step(w, r, v, c, b, mean, lam_u, biases)
        v, c, ok_v = _half_step(wt, rt, u, b, c, mean, lam_v, biases)
        if balance:
            u, v = _balance(u, v, lam_u, lam_v, reg)
        j, rms = obj(u, v, b, c)
        return (u, v, b, c, ok & ok_u & ok_v), (j, rms)

    (u, v, b, c, ok), (js, rmss) = lax.scan(body, (u0, v0, b0, c0, finite_in), None, length=iters)

    def at(factors):  # J, RMSE and |grad J|, mapped over the initial and the final factors
        j, rms, g = _objective(_params(*factors, biases), r, w, mean, lam_u, lam_v, total,
                               grad=True)
        return j, rms, _tree_norm(g)

    ends = jax.tree_util.tree_map(lambda a, z: jnp.stack([a, z]), (u0, v0, b0, c0), (u, v, b, c))
    (j0, _), (rms0, _), (g0, g1) = jax.vmap(at)(ends)
    return _result(u, v, b, c, mean, j0, rms0, js, rmss, g1, g0, ok, tol)


def _result(u, v, b, c, mean, j0, rms0, js, rmss, g1, g0, ok, tol):
    objective = jnp.concatenate([j0[None], js])
    rms = jnp.concatenate([rms0[None], rmss])
    gn = _safe_ratio(g1, g0)
    ok = ok & jnp.all(jnp.isfinite(objective)) & jnp.isfinite(gn)
    for x in (u, v, b, c):
        ok = ok & jnp.all(jnp.isfinite(x))
    return MatrixFactorization(
        user_factors=u, item_factors=v, user_bias=b, item_bias=c, mean=mean,
        objective=objective, train_rmse=rms, grad_norm=gn, ok=ok, converged=ok & (gn <= tol),
    )


def _cast(model: MatrixFactorization, dtype: Any) -> MatrixFactorization:
    return model._replace(**{
        k: getattr(model, k).astype(dtype)
        for k in ("user_factors", "item_factors", "user_bias", "item_bias", "mean", "objective",
                  "train_rmse", "grad_norm")
    })


_SINGULAR = (
    "`reg` must keep every normal equation solvable, got reg={reg} with a singular or "
    "non-finite system (a user or item with fewer observed ratings than unknowns, or non-finite "
    "values); use reg > 0"
)


def _check_enough_ratings(mask, reg, p, biases, rank, fn):
    """With ``reg=0`` every user and item needs at least ``p`` observed ratings (eager check)."""
    if not isinstance(reg, float) or reg != 0 or not _checks.is_concrete(mask):
        return
    counts = np.asarray(mask) > 0
    for axis, who in ((1, "user"), (0, "item")):
        got = counts.sum(axis=axis)
        if got.size and got.min() < p:
            i = int(np.argmin(got))
            what = f"rank {rank}" + (" + 1 bias" if biases else "")
            _checks.fail(fn, f"`mask` must observe at least {p} ratings of every user and item "
                         f"when reg=0 ({what}), got {int(got[i])} for {who} {i}; use reg > 0")


def _report(model: MatrixFactorization, fn: str, message: str) -> None:
    if _checks.is_concrete(model.ok):
        if not bool(np.all(np.asarray(model.ok))):
            _checks.fail(fn, message)
    else:
        checkify.debug_check(jnp.all(model.ok), f"{fn}: {message}")


def als(
    ratings: ArrayLike,
    mask: ArrayLike,
    rank: int,
    *,
    reg: float | ArrayLike = 0.1,
    iters: int = 20,
    key: jax.Array | None = None,
    init: Any = None,
    biases: bool = False,
    weighted_reg: bool = False,
    balance: bool = True,
    tol: float | ArrayLike = 1e-3,
) -> MatrixFactorization:
    """Matrix factorization by alternating least squares (ALS), all half-steps batched.

    Each iteration solves for every user given the items, then for every item given the users,
    each half-step being the exact minimizer of the objective ``J`` of the module docstring over
    one side (regularized least squares per user / item, solved all at once by a batched
    Cholesky factorization), then rebalances the two sides (``balance``): ``J`` is
    non-increasing from one iteration to the next. Works under
    ``jit`` (``rank``, ``iters``, ``biases``, ``weighted_reg``, ``balance`` static; ``reg`` and
    ``tol`` may be traced) and ``vmap`` (a batch of rating matrices, masks or keys).

    Args:
        ratings: (m, n) ratings, one row per user; floating dtype (float16/bfloat16 computed in
            float32). Entries outside ``mask`` are ignored and may hold anything, NaN included.
        mask: (m, n) observed entries: bool, 0/1, or nonnegative weights ``w_ij``.
        rank: ``r``, the number of latent factors (static int, 1 <= r <= min(m, n)).
        reg: Regularization strength ``>= 0`` (``reg=0`` needs every user and item to have at
            least ``r`` ratings, ``r + 1`` with biases).
        iters: Number of ALS iterations (each: a user half-step and an item half-step), >= 1.
        key: PRNG key for the initial factors (Gaussian, scaled so that ``U @ V.T`` has the
            spread of the observed ratings); needed unless ``init`` is given.
        init: Initial factors instead of random ones: a :class:`MatrixFactorization` (a warm
            start; its biases are used with ``biases=True``), a dict or a ``(user_factors,
            item_factors)`` pair of shapes (m, r) and (n, r). Only the item side (factors, and
            item biases with ``biases=True``) matters: the first half-step recomputes the users.
        biases: Fit user and item biases around the mean observed rating.
        weighted_reg: Scale the regularization of each user / item by its number of ratings
            (ALS-WR).
        balance: After each iteration, replace ``(U, V)`` by ``(U A, V A^{-T})`` minimizing the
            penalty at fixed ``U @ V.T`` (module docstring); ``False`` gives plain ALS. No effect
            when ``reg == 0``.
        tol: ``converged`` is set when ``grad_norm <= tol``.

    Returns:
        :class:`MatrixFactorization`: ``user_factors`` (m, r), ``item_factors`` (n, r),
        ``user_bias`` (m,), ``item_bias`` (n,), ``mean`` (), ``objective`` and ``train_rmse``
        (iters + 1,), ``grad_norm`` (), ``ok`` (), ``converged`` (), in the dtype of
        ``ratings``.

    Raises:
        TypeError: integer/boolean ``ratings``; a non-bool ``biases``, ``weighted_reg`` or
            ``balance``; a non-int ``rank``/``iters``; a ``key`` that is not a PRNG key (and no
            ``init``).
        ValueError: ``ratings``/``mask`` not 2-D of the same shape, ``rank`` outside
            [1, min(m, n)], negative ``reg``, ``iters < 1``, a negative ``mask`` entry,
            ``init`` of the wrong shape, NaN/Inf observed ratings (eagerly), and normal equations
            that cannot be solved (eagerly; under ``jit``: ``ok=False``).

    Examples:
        >>> import jax
        >>> from jaxla.datasets import synthetic_ratings
        >>> from jaxla.models.recommender import als, rmse
        >>> data = synthetic_ratings(0, 60, 50, 2, density=0.5, noise=0.1)
        >>> model = als(data.ratings, data.train_mask, 2, reg=0.1, iters=10,
        ...             key=jax.random.key(0))
        >>> model.user_factors.shape, model.item_factors.shape, model.objective.shape
        ((60, 2), (50, 2), (11,))
        >>> bool(model.ok), bool(rmse(model, data.ratings, data.test_mask) < 0.13)
        (True, True)
    """
    fn = _ALS
    ratings, mask, rank, reg, tol, biases, weighted_reg = _common(
        ratings, mask, rank, reg, tol, biases, weighted_reg, fn)
    iters = _checks.check_int(iters, fn, "iters", min=1)
    balance = _checks.check_bool(balance, fn, "balance")
    p = rank + int(biases)
    _check_enough_ratings(mask, reg, p, biases, rank, fn)
    u0, v0, b0, c0 = _initial(key, init, ratings, mask, rank, biases, fn)
    cdt = u0.dtype
    model = _als_core(ratings.astype(cdt), _weights(mask, cdt), u0, v0, b0, c0,
                      jnp.asarray(reg, cdt), jnp.asarray(tol, cdt), iters=iters, biases=biases,
                      weighted=weighted_reg, balance=balance)
    _report(model, fn, _SINGULAR.format(reg=repr(reg) if isinstance(reg, float) else "(traced)"))
    return _cast(model, ratings.dtype)


# ---------------------------------------------------------------------------------------------
# Gradient descent


@functools.partial(jax.jit, static_argnames=("optimizer", "steps", "biases", "weighted"))
def _gd_core(r, w, u0, v0, b0, c0, reg, tol, *, optimizer, steps, biases, weighted):
    r, mean, total, lam_u, lam_v = _prepare(r, w, biases, weighted, reg)
    scale = 1 / jnp.maximum(total, 1)
    finite_in = jnp.all(jnp.isfinite(r))

    def vg(params):  # J, RMSE and the gradient of the minimized J / |mask|
        j, rms, g = _objective(params, r, w, mean, lam_u, lam_v, total, grad=True)
        return j, rms, jax.tree_util.tree_map(lambda x: scale * x, g)

    def body(carry, _):
        params, state = carry
        j, rms, g = vg(params)
        updates, state = optimizer.update(g, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), (j, rms, _tree_norm(g))

    params = _params(u0, v0, b0, c0, biases)
    (params, _), (js, rmss, gns) = lax.scan(body, (params, optimizer.init(params)), None,
                                           length=steps)
    j1, rms1, g = vg(params)
    u, v = params["user_factors"], params["item_factors"]
    b, c = (params["user_bias"], params["item_bias"]) if biases else (b0, c0)
    return _result(u, v, b, c, mean, js[0], rmss[0], jnp.concatenate([js[1:], j1[None]]),
                   jnp.concatenate([rmss[1:], rms1[None]]), _tree_norm(g), gns[0], finite_in, tol)


def fit_gd(
    key: jax.Array | None,
    ratings: ArrayLike,
    mask: ArrayLike,
    rank: int,
    *,
    optimizer: optax.GradientTransformation | None = None,
    reg: float | ArrayLike = 0.1,
    steps: int = 500,
    init: Any = None,
    biases: bool = False,
    weighted_reg: bool = False,
    tol: float | ArrayLike = 1e-3,
) -> MatrixFactorization:
    """Matrix factorization by gradient descent with an optax optimizer on the ALS objective.

    Minimizes ``J / |mask|`` (``J`` of the module docstring divided by the number of observed
    ratings ``sum(mask)``, so learning rates do not depend on the size of the data) from the
    same random initialization as :func:`als`, with ``steps`` full-batch updates of ``optimizer``
    in one ``lax.scan``. The parameters the optimizer sees are the dict ``{"user_factors",
    "item_factors"}`` (plus ``"user_bias"``, ``"item_bias"`` with ``biases=True``), so optax
    masks and schedules address them by name. ``objective`` and ``train_rmse`` report ``J``
    (not divided) and the RMSE at the initial parameters and after every step. Works under
    ``jit`` (``rank``, ``steps``, ``optimizer``, ``biases``, ``weighted_reg`` static) and
    ``vmap``.

    Args:
        key: PRNG key for the initial factors (may be None when ``init`` is given).
        ratings: (m, n) ratings; floating dtype. Entries outside ``mask`` are ignored.
        mask: (m, n) observed entries: bool, 0/1, or nonnegative weights.
        rank: ``r``, the number of latent factors (static int, 1 <= r <= min(m, n)).
        optimizer: Any ``optax.GradientTransformation``; default ``optax.adam(0.05)``.
        reg: Regularization strength ``>= 0``.
        steps: Number of optimizer steps (static int >= 1).
        init: Initial factors (as for :func:`als`) instead of random ones.
        biases: Fit user and item biases around the mean observed rating.
        weighted_reg: Scale each user's / item's regularization by its number of ratings.
        tol: ``converged`` is set when ``grad_norm <= tol``.

    Returns:
        :class:`MatrixFactorization` with ``objective`` and ``train_rmse`` of shape
        (steps + 1,), in the dtype of ``ratings``.

    Raises:
        TypeError: as :func:`als`, and an ``optimizer`` that is not an optax transformation.
        ValueError: as :func:`als` (``steps`` for ``iters``); a non-finite objective (eagerly;
            under ``jit``: ``ok=False``).

    Examples:
        >>> import jax
        >>> import optax
        >>> from jaxla.datasets import synthetic_ratings
        >>> from jaxla.models.recommender import als, fit_gd
        >>> data = synthetic_ratings(0, 60, 50, 2, density=0.5, noise=0.1)
        >>> gd = fit_gd(jax.random.key(0), data.ratings, data.train_mask, 2,
        ...             optimizer=optax.adam(0.05), steps=400)
        >>> ref = als(data.ratings, data.train_mask, 2, reg=0.1, iters=10, key=jax.random.key(0))
        >>> bool(gd.objective[-1] < 1.01 * ref.objective[-1])
        True
    """
    fn = _GD
    ratings, mask, rank, reg, tol, biases, weighted_reg = _common(
        ratings, mask, rank, reg, tol, biases, weighted_reg, fn)
    steps = _checks.check_int(steps, fn, "steps", min=1)
    if optimizer is None:
        optimizer = _DEFAULT_OPTIMIZER
    if not (callable(getattr(optimizer, "init", None))
            and callable(getattr(optimizer, "update", None))):
        _checks.fail(fn, f"`optimizer` must be an optax.GradientTransformation, got "
                     f"{type(optimizer).__name__}", TypeError)
    u0, v0, b0, c0 = _initial(key, init, ratings, mask, rank, biases, fn)
    cdt = u0.dtype
    model = _gd_core(ratings.astype(cdt), _weights(mask, cdt), u0, v0, b0, c0,
                     jnp.asarray(reg, cdt), jnp.asarray(tol, cdt), optimizer=optimizer,
                     steps=steps, biases=biases, weighted=weighted_reg)
    _report(model, fn, "the objective must stay finite, got NaN or Inf during training; "
                       "lower the learning rate")
    return _cast(model, ratings.dtype)


# ---------------------------------------------------------------------------------------------
# Using a model


@functools.partial(jax.jit, static_argnames=("weighted",))
def _objective_core(u, v, b, c, mean, ratings, mask, reg, *, weighted):
    out_dtype = jnp.result_type(u, v, ratings)
    dtype = _checks.compute_dtype(out_dtype)
    w = _weights(mask, dtype)
    r, _, total, lam_u, lam_v = _prepare(ratings.astype(dtype), w, False, weighted,
                                         jnp.asarray(reg, dtype))
    params = {"user_factors": u.astype(dtype), "item_factors": v.astype(dtype),
              "user_bias": b.astype(dtype), "item_bias": c.astype(dtype)}
    j, _ = _objective(params, r, w, mean.astype(dtype), lam_u, lam_v, total)
    return j.astype(out_dtype)


@jax.jit
def _predict_pairs(u, v, b, c, mean, users, items):
    return mean + b[users] + c[items] + jnp.sum(u[users] * v[items], axis=1)


@jax.jit
def _rmse_core(u, v, b, c, mean, ratings, mask):
    out_dtype = jnp.result_type(u, v, ratings)
    dtype = _checks.compute_dtype(out_dtype)
    w = _weights(mask, dtype)
    r = jnp.where(w > 0, ratings.astype(dtype), jnp.zeros((), dtype))
    e = r - _predict_full(u, v, b, c, mean).astype(dtype)
    return jnp.sqrt(jnp.sum(w * e * e) / jnp.sum(w)).astype(out_dtype)


@functools.partial(jax.jit, static_argnames=("n",))
def _recommend_core(u, v, b, c, mean, user, exclude, *, n):
    scores = mean + b[user] + c + matmul(v, u[user])
    if exclude is not None:
        scores = jnp.where(exclude > 0, jnp.full_like(scores, -jnp.inf), scores)
    top, idx = lax.top_k(scores, n)
    return Recommendations(items=idx.astype(jnp.int32), scores=top)


def mf_objective(
    model: Any,
    ratings: ArrayLike,
    mask: ArrayLike,
    *,
    reg: float | ArrayLike = 0.1,
    weighted_reg: bool = False,
) -> jax.Array:
    """The objective ``J`` that :func:`als` and :func:`fit_gd` minimize, at ``model``.

    ``J = sum w (R - Rhat)^2 + reg * (sum_i l_i (|u_i|^2 + b_i^2) + sum_j l_j (|v_j|^2 +
    c_j^2))`` (module docstring). Differentiable with respect to every array of ``model``, so a
    parameter dict can be trained with :func:`jaxla.train.fit`.

    Args:
        model: A :class:`MatrixFactorization`, a dict with ``"user_factors"`` (m, r) and
            ``"item_factors"`` (n, r) (optionally ``"user_bias"`` (m,), ``"item_bias"`` (n,),
            ``"mean"`` ()), or a ``(user_factors, item_factors)`` pair.
        ratings: (m, n) ratings; entries outside ``mask`` are ignored.
        mask: (m, n) observed entries: bool, 0/1 or nonnegative weights.
        reg: Regularization strength ``>= 0``.
        weighted_reg: Scale each user's / item's regularization by its number of ratings.

    Returns:
        ``J`` (), in the promoted dtype of the model and ``ratings``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxla.models.recommender import mf_objective
        >>> u = jnp.array([[1.0], [2.0]])
        >>> v = jnp.array([[1.0], [0.5], [-1.0]])
        >>> r = u @ v.T + jnp.array([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
        >>> mask = jnp.ones((2, 3), bool)
        >>> print(round(float(mf_objective((u, v), r, mask, reg=0.0)), 4))
        1.0
        >>> print(round(float(mf_objective((u, v), r, mask, reg=1.0)), 4))
        8.25
    """
    fn = f"{_MODULE}.mf_objective"
    ratings, mask = _ratings(ratings, mask, fn)
    u, v, b, c, mean = _model_arrays(model, fn)
    _check_model_fits(u, v, ratings.shape, fn)
    reg = _checks.check_positive(reg, fn, "reg", allow_zero=True)
    weighted_reg = _checks.check_bool(weighted_reg, fn, "weighted_reg")
    return _objective_core(u, v, b, c, mean, ratings, mask, reg, weighted=weighted_reg)


def predict_ratings(
    model: Any,
    users: ArrayLike | None = None,
    items: ArrayLike | None = None,
) -> jax.Array:
    """Predicted ratings ``mean + b_i + c_j + u_i · v_j``: the whole matrix, or given pairs.

    Args:
        model: A :class:`MatrixFactorization`, a dict, or a ``(user_factors, item_factors)``
            pair (as :func:`mf_objective`).
        users: Optional (k,) integer user indices; with ``items``, predict only the pairs
            ``(users[t], items[t])``.
        items: Optional (k,) integer item indices (given together with ``users``).

    Returns:
        (m, n) predicted ratings without ``users``/``items``, else (k,); in the model's dtype.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.models.recommender import predict_ratings
        >>> u = jnp.array([[1.0], [2.0]])
        >>> v = jnp.array([[1.0], [0.5], [-1.0]])
        >>> np.round(np.asarray(predict_ratings((u, v)), dtype=float), 3)
        array([[ 1. ,  0.5, -1. ],
               [ 2. ,  1. , -2. ]])
        >>> pairs = predict_ratings((u, v), jnp.array([1, 0]), jnp.array([2, 1]))
        >>> np.round(np.asarray(pairs, dtype=float), 3)
        array([-2. ,  0.5])
    """
    fn = f"{_MODULE}.predict_ratings"
    u, v, b, c, mean = _model_arrays(model, fn)
    if (users is None) != (items is None):
        _checks.fail(fn, f"`users` and `items` must be given together, got "
                     f"{'users' if items is None else 'items'} only")
    if users is None:
        return _predict_full_jit(u, v, b, c, mean)
    users, items = jnp.asarray(users), jnp.asarray(items)
    for name, idx in (("users", users), ("items", items)):
        if not jnp.issubdtype(idx.dtype, jnp.integer):
            _checks.fail(fn, f"`{name}` must hold integer indices, got dtype {idx.dtype}",
                         TypeError)
        _checks.check_ndim(idx, fn, name, 1, "(k,)")
    _checks.check_same_shape(users, items, fn, ("users", "items"))
    return _predict_pairs(u, v, b, c, mean, users, items)


def rmse(model: Any, ratings: ArrayLike, mask: ArrayLike) -> jax.Array:
    """Root mean squared error of the model's predictions on the entries of ``mask``.

    ``sqrt(sum w (R - Rhat)^2 / sum w)`` with ``w`` the mask (weights for a floating mask).

    Args:
        model: A :class:`MatrixFactorization`, a dict, or a ``(user_factors, item_factors)``
            pair.
        ratings: (m, n) ratings; entries outside ``mask`` are ignored.
        mask: (m, n) entries to evaluate (e.g. the held-out test entries), with at least one set.

    Returns:
        () RMSE, in the promoted dtype of the model and ``ratings`` (NaN for an empty mask under
        ``jit``).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxla.models.recommender import rmse
        >>> u, v = jnp.array([[1.0], [2.0]]), jnp.array([[1.0], [0.5]])
        >>> r = jnp.array([[1.0, 0.5], [2.0, 4.0]])
        >>> print(round(float(rmse((u, v), r, jnp.array([[True, True], [True, False]]))), 4))
        0.0
        >>> print(round(float(rmse((u, v), r, jnp.ones((2, 2), bool))), 4))
        1.5
    """
    fn = f"{_MODULE}.rmse"
    ratings, mask = _ratings(ratings, mask, fn)
    u, v, b, c, mean = _model_arrays(model, fn)
    _check_model_fits(u, v, ratings.shape, fn)
    if _checks.is_concrete(mask) and not np.any(np.asarray(mask) > 0):
        _checks.fail(fn, "`mask` must select at least one rating, got an empty mask")
    return _rmse_core(u, v, b, c, mean, ratings, mask)


def recommend(
    model: Any,
    user: int | ArrayLike,
    n: int,
    *,
    exclude_seen: ArrayLike | None = None,
) -> Recommendations:
    """The ``n`` items with the highest predicted rating for ``user``, excluding seen items.

    Scores are the predicted ratings of the user's row (:func:`predict_ratings`); the best ``n``
    come from ``lax.top_k``: in decreasing order of score, ties broken by the lower item index.
    Excluded items get the score ``-inf``, so they are returned only when fewer than ``n`` items
    remain (then last, with score ``-inf``). Works under ``jit`` (``n`` static, ``user`` may be
    traced) and ``vmap`` over users (``jax.vmap(lambda i: recommend(model, i, 10,
    exclude_seen=mask))(users)``).

    Args:
        model: A :class:`MatrixFactorization`, a dict, or a ``(user_factors, item_factors)``
            pair.
        user: Index of the user (an int or an integer scalar array), 0 <= user < m.
        n: Number of items to return (static int, 1 <= n <= number of items).
        exclude_seen: Items not to recommend: the (m, n_items) mask of seen ratings (the row of
            ``user`` is used) or that user's (n_items,) row; entries that are True / > 0 are
            excluded. ``None`` excludes nothing.

    Returns:
        :class:`Recommendations` ``(items (n,) int32, scores (n,))``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxla.models.recommender import recommend
        >>> u = jnp.array([[1.0], [-1.0]])
        >>> v = jnp.array([[3.0], [1.0], [2.0], [0.0]])
        >>> seen = jnp.array([[True, False, False, False], [False, False, False, True]])
        >>> recommend((u, v), 0, 2, exclude_seen=seen).items.tolist()
        [2, 1]
        >>> recommend((u, v), 1, 2, exclude_seen=seen).items.tolist()
        [1, 2]
    """
    fn = f"{_MODULE}.recommend"
    u, v, b, c, mean = _model_arrays(model, fn)
    m, n_items = u.shape[0], v.shape[0]
    n = _checks.check_int(n, fn, "n", min=1, max=n_items, max_doc="the number of items")
    user = jnp.asarray(user)
    if not jnp.issubdtype(user.dtype, jnp.integer) or user.ndim != 0:
        _checks.fail(fn, f"`user` must be an integer index (a scalar), got "
                     f"{'shape ' + str(_shape(user)) if user.ndim else 'dtype ' + str(user.dtype)}",
                     TypeError)
    if _checks.is_concrete(user) and not 0 <= int(user) < m:
        _checks.fail(fn, f"`user` must be in [0, {m - 1}] ({m} users), got {int(user)}")
    ex = None
    if exclude_seen is not None:
        ex = _mask(exclude_seen, fn, "exclude_seen")
        if ex.shape == (m, n_items):
            ex = ex[user]
        elif ex.shape != (n_items,):
            _checks.fail(fn, f"`exclude_seen` must have shape ({m}, {n_items}) (n_users, n_items) "
                         f"or ({n_items},), got {_shape(ex)}")
    return _recommend_core(u, v, b, c, mean, user, ex, n=n)
