"""Tensor-train dense layers: ``y = x W + b`` with ``W`` stored as a TT matrix.

A TT layer (Novikov et al. 2015, "Tensorizing neural networks") factors the ``(d_in, d_out)``
weight of a dense layer, with ``d_in = m_1 ... m_d`` and ``d_out = n_1 ... n_d``, into ``d``
cores ``(r_{k-1}, m_k, n_k, r_k)`` (``r_0 = r_d = 1``; see :mod:`jaxla.linalg.tensor` for the
index convention). It stores ``sum_k r_{k-1} m_k n_k r_k`` numbers instead of ``d_in d_out``
and applies ``W`` by an einsum sweep over the cores without ever forming it.

Parameters are a dict ``{"cores": [core_1, ..., core_d], "b": (d_out,)}`` (``"b"`` optional),
so the cores are addressed by paths ``cores/0``, ``cores/1``, ... like any jaxla parameter
tree. Build one with :func:`tt_dense_init` (random, for training from scratch) or
:func:`tt_dense_from_dense` (by TT-SVD of a trained :func:`jaxla.nn.dense` layer, for
compression followed by fine-tuning); apply it with :func:`tt_dense`. Everything works under
``jax.jit``, ``jax.vmap`` and ``jax.grad``.

References:
    A. Novikov, D. Podoprikhin, A. Osokin, D. Vetrov. Tensorizing neural networks. NeurIPS 2015.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxla import _checks
from jaxla.linalg import tensor as _tensor

__all__ = ["tt_dense", "tt_dense_from_dense", "tt_dense_init"]

_MODULE = "jaxla.nn"


def _inner_ranks(rank: Any, rows: tuple[int, ...], cols: tuple[int, ...], fn: str) -> list[int]:
    """Inner ranks r_1..r_{d-1}, each capped at the largest useful value for its cut."""
    if rank is None:
        _checks.fail(fn, "`rank` must be an int or a sequence of ints, got None", TypeError)
    caps = _tensor._check_max_rank(rank, len(rows) - 1, fn, "rank")
    sizes = [m * n for m, n in zip(rows, cols, strict=True)]
    return [
        min(cap, math.prod(sizes[:k]), math.prod(sizes[k:]))
        for k, cap in enumerate(caps, start=1)
    ]


def tt_dense_init(
    key: jax.Array,
    row_dims: Sequence[int],
    col_dims: Sequence[int],
    rank: int | Sequence[int],
    *,
    use_bias: bool = True,
    dtype: Any = jnp.float32,
) -> dict[str, Any]:
    """Random parameters of a TT dense layer, scaled like :func:`jaxla.nn.dense_init`.

    The cores are drawn i.i.d. normal with the variance that gives each entry of the implied
    dense ``W`` variance ``1 / d_in`` (LeCun, as ``dense_init``'s default): with ``P`` the
    product of the inner ranks, core entries have variance ``(1 / (d_in P)) ** (1 / d)``. Each
    inner rank ``r_k`` is capped at ``min(prod_{j <= k} m_j n_j, prod_{j > k} m_j n_j)``, the
    largest rank that cut can use.

    Args:
        key: PRNG key.
        row_dims: ``(m_1, ..., m_d)``, ``d >= 2`` static ints, ``d_in = prod(m_k)``.
        col_dims: ``(n_1, ..., n_d)``, as many static ints, ``d_out = prod(n_k)``.
        rank: The TT rank: an int ``>= 1`` for every inner rank, or ``d - 1`` ints.
        use_bias: Whether the layer has a bias ``b`` (zeros).
        dtype: Floating dtype of the parameters.

    Returns:
        ``{"cores": [(r_{k-1}, m_k, n_k, r_k) for k = 1..d], "b": (d_out,)}`` (no ``"b"`` with
        ``use_bias=False``), ``r_0 = r_d = 1``.

    Raises:
        TypeError: a key that is not a PRNG key, non-int dims or ranks, a non-floating dtype.
        ValueError: dims with fewer than 2 factors or different numbers of factors, ranks < 1.

    Examples:
        >>> import jax
        >>> from jaxla.nn.tt import tt_dense_init
        >>> params = tt_dense_init(jax.random.key(0), (4, 4, 4), (8, 8, 4), 3)
        >>> [c.shape for c in params["cores"]], params["b"].shape
        ([(1, 4, 8, 3), (3, 4, 8, 3), (3, 4, 4, 1)], (256,))
    """
    fn = f"{_MODULE}.tt_dense_init"
    _checks.check_key(key, fn)
    rows = _tensor._check_dims(row_dims, fn, "row_dims")
    cols = _tensor._check_dims(col_dims, fn, "col_dims")
    if len(rows) != len(cols):
        _checks.fail(
            fn,
            f"`row_dims` and `col_dims` must have the same number of factors, got {rows} and "
            f"{cols}",
        )
    ranks = [1, *_inner_ranks(rank, rows, cols, fn), 1]
    use_bias = _checks.check_bool(use_bias, fn, "use_bias")
    dt = _checks.check_float_dtype(dtype, fn)
    cdt = _checks.compute_dtype(dt)
    d = len(rows)
    d_in = math.prod(rows)
    std = math.exp(-0.5 * (math.log(d_in) + sum(math.log(r) for r in ranks)) / d)
    shapes = tuple((ranks[k], rows[k], cols[k], ranks[k + 1]) for k in range(d))
    params: dict[str, Any] = {"cores": _draw_cores(key, shapes, std, cdt, dt)}
    if use_bias:
        params["b"] = jnp.zeros((math.prod(cols),), dt)
    return params


@functools.partial(jax.jit, static_argnums=(1, 3, 4))
def _draw_cores(key: jax.Array, shapes: tuple, std: Any, cdt: Any, dt: Any) -> list[jax.Array]:
    """One normal draw for all cores (one random-bits program), split into the core shapes."""
    sizes = [math.prod(s) for s in shapes]
    flat = jax.random.normal(key, (sum(sizes),), cdt) * jnp.asarray(std, cdt)
    offsets = np.cumsum([0, *sizes])
    return [flat[a:b].reshape(s).astype(dt) for a, b, s in zip(offsets[:-1], offsets[1:], shapes,
                                                                strict=True)]


def _params(params: Any, fn: str) -> tuple[tuple[jax.Array, ...], Any]:
    if not isinstance(params, dict) or "cores" not in params:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        _checks.fail(fn, f"`params` must be a dict with an entry 'cores' (a list of TT-matrix "
                         f"cores), got {got}")
    cores = params["cores"]
    if not isinstance(cores, Sequence) or isinstance(cores, str) or len(cores) == 0:
        _checks.fail(
            fn, f"`params['cores']` must be a non-empty list of (r, m, n, r') arrays, got "
            f"{type(cores).__name__}",
            TypeError,
        )
    cores = _tensor._check_core_list(cores, fn, "params['cores']", 4, "(r, m, n, r')")
    b = params.get("b")
    if b is not None:
        d_out = math.prod(int(c.shape[2]) for c in cores)
        _checks.check_ndim(b, fn, "params['b']", 1, "(d_out,)")
        if int(np.shape(b)[0]) != d_out:
            _checks.fail(
                fn,
                f"`params['b']` must have shape (d_out,)=({d_out},) to match the cores, got "
                f"shape {tuple(np.shape(b))}",
            )
    return cores, b


def tt_dense(params: dict[str, Any], x: ArrayLike) -> jax.Array:
    """TT dense layer ``y = x W + b``, ``W`` applied core by core (never formed).

    Equal (up to rounding) to :func:`jaxla.nn.dense` with ``w = tt_matrix_to_dense(cores)``;
    the products run at ``precision=HIGHEST``.

    Args:
        params: ``{"cores": [(r_{k-1}, m_k, n_k, r_k), ...], "b": (d_out,)}`` from
            :func:`tt_dense_init` or :func:`tt_dense_from_dense` (``"b"`` optional).
        x: (..., d_in) inputs, any number of leading batch axes, ``d_in = prod(m_k)``.

    Returns:
        (..., d_out) outputs in the dtype of ``x`` (computed in the common dtype of ``x`` and the
        parameters, float16/bfloat16 upcast to float32).

    Raises:
        TypeError: non-floating ``x`` or cores.
        ValueError: malformed ``params`` (missing ``"cores"``, cores that do not chain, a bias of
            the wrong size) or ``x`` whose last axis is not ``d_in``.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.linalg.tensor import TTMatrix, tt_matrix_to_dense
        >>> from jaxla.nn.tt import tt_dense, tt_dense_init
        >>> params = tt_dense_init(jax.random.key(0), (2, 3), (4, 2), 2)
        >>> x = jnp.ones((5, 6))
        >>> w = tt_matrix_to_dense(TTMatrix(tuple(params["cores"])))
        >>> y = tt_dense(params, x)
        >>> y.shape, bool(jnp.allclose(y, x @ w + params["b"][None, :], atol=1e-5))
        ((5, 8), True)
    """
    fn = f"{_MODULE}.tt_dense"
    cores, b = _params(params, fn)
    x = _checks.as_float_array(x, fn, "x", min_ndim=1, doc="(..., d_in)")
    y = _tensor._apply(cores, x, fn)
    if b is None:
        return y
    cdt = _checks.compute_dtype(jnp.result_type(x, *cores, b))
    bias = b.astype(cdt).reshape((1,) * (y.ndim - 1) + (-1,))
    return (y.astype(cdt) + bias).astype(x.dtype)


def tt_dense_from_dense(
    params_dense: dict[str, Any],
    row_dims: Sequence[int],
    col_dims: Sequence[int],
    *,
    eps: float | None = None,
    max_rank: int | Sequence[int] | None,
) -> dict[str, Any]:
    """Compress a dense layer ``{"w", "b"}`` into a TT layer by TT-SVD of its weight.

    ``params_dense["w"]`` (d_in, d_out) is factored by :func:`jaxla.linalg.tensor.tt_matrix`
    with the same ``eps``/``max_rank`` rule as :func:`jaxla.linalg.tensor.tt_svd`: with ``eps``
    (and no binding cap), ``||W - W_tt||_F <= eps ||W||_F`` is guaranteed; with ``max_rank``
    the ranks are fixed and the achieved error is whatever ``tt_matrix(...).rel_error``
    reports. The bias is kept as is. ``max_rank`` must be given (pass None explicitly for an
    ``eps``-only or exact conversion), because the ranks fix the size of the layer. Jittable
    with ``max_rank`` alone; with ``eps`` it runs eagerly (data-dependent ranks).

    Args:
        params_dense: ``{"w": (d_in, d_out), "b": (d_out,)}`` from :func:`jaxla.nn.dense_init`
            (``"b"`` optional).
        row_dims: ``(m_1, ..., m_d)``, ``d >= 2`` static ints with product ``d_in``.
        col_dims: ``(n_1, ..., n_d)``, as many static ints, with product ``d_out``.
        eps: Relative Frobenius accuracy ``> 0`` of the weight, or None.
        max_rank: Cap on the TT ranks: an int ``>= 1``, ``d - 1`` ints, or None.

    Returns:
        ``{"cores": [(r_{k-1}, m_k, n_k, r_k), ...], "b": (d_out,)}`` for :func:`tt_dense`, in
        the dtype of ``w`` (no ``"b"`` when the dense layer has none).

    Raises:
        TypeError: non-floating ``w``; ``eps`` with a traced ``w``; non-int dims or ranks.
        ValueError: ``params_dense`` without a 2-D ``"w"``; dims that do not multiply to the
            shape of ``w``; ``eps <= 0``; ``max_rank < 1``; NaN/Inf in ``w`` (eagerly).

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.nn import dense, dense_init
        >>> from jaxla.nn.tt import tt_dense, tt_dense_from_dense
        >>> dense_params = dense_init(jax.random.key(0), 16, 8)
        >>> tt_params = tt_dense_from_dense(dense_params, (4, 4), (2, 4), max_rank=None)
        >>> x = jnp.ones((3, 16))  # exact conversion (full ranks): same outputs
        >>> bool(jnp.allclose(tt_dense(tt_params, x), dense(dense_params, x), atol=1e-5))
        True
        >>> [c.shape for c in tt_dense_from_dense(dense_params, (4, 4), (2, 4),
        ...                                       max_rank=2)["cores"]]
        [(1, 4, 2, 2), (2, 4, 4, 1)]
    """
    fn = f"{_MODULE}.tt_dense_from_dense"
    if not isinstance(params_dense, dict) or "w" not in params_dense:
        got = (sorted(params_dense) if isinstance(params_dense, dict)
               else type(params_dense).__name__)
        _checks.fail(
            fn, f"`params_dense` must be a dict with an entry 'w' (d_in, d_out), got {got}"
        )
    w = params_dense["w"]
    ttm = _tensor._tt_matrix(w, row_dims, col_dims, eps, max_rank, fn, "params_dense['w']")
    out: dict[str, Any] = {"cores": list(ttm.cores)}
    b = params_dense.get("b")
    if b is not None:
        _checks.check_ndim(b, fn, "params_dense['b']", 1, "(d_out,)")
        if int(np.shape(b)[0]) != int(np.shape(w)[1]):
            _checks.fail(
                fn,
                f"`params_dense['b']` must have shape (d_out,)=({int(np.shape(w)[1])},) to match "
                f"params_dense['w'] of shape {tuple(np.shape(w))}, got shape "
                f"{tuple(np.shape(b))}",
            )
        out["b"] = b
    return out
