"""Attention as pure functions: scaled dot-product attention, its memory-efficient chunked form,
multi-head attention with a key/value cache for decoding, and mask helpers.

Every attention head computes three matrix products and a softmax::

    logits = scale * q @ k.T + bias        (T, S)
    weights = softmax(logits masked)       (T, S), rows sum to 1
    out = weights @ v                      (T, H)

Dimension letters, shared with ``jax.nn.dot_product_attention``::

    B  batch size
    T  query (target) length
    S  key/value (source) length
    N  number of query heads
    K  number of key/value heads (N must be a multiple of K)
    G  queries per key/value head, G = N // K
    H  head dimension

Arrays use the ``(B, T, N, H)`` layout of ``jax.nn.dot_product_attention`` (``(B, S, K, H)`` for
keys and values); the batch axis may be dropped (``(T, N, H)``). ``K == N`` is multi-head
attention, ``1 < K < N`` grouped-query attention (GQA) and ``K == 1`` multi-query attention (MQA):
query head ``n`` uses key/value head ``n // G``.

Conventions followed by every function here:

* Masks are boolean, ``True`` = attend, broadcastable to ``(B, N, T, S)``; a ``bias`` is added to
  the logits and is broadcastable to the same shape. ``is_causal=True`` lets query ``i`` attend
  key ``j`` only when ``j <= i`` (top-left aligned, as in ``jax.nn.dot_product_attention``).
* Logits and the softmax are computed in float32 (float64 for float64 inputs) with matrix products
  at ``precision=HIGHEST``; float16/bfloat16 inputs are upcast and outputs come back in the
  input dtype.
* Masked logits are replaced by a large finite negative number, never ``-inf``. A query row with
  no key to attend (a fully masked row) returns zeros, and its gradient is exactly zero with
  respect to every input (no NaN, eagerly and under ``jax.jit``).

References:
    Vaswani et al., "Attention is all you need", NeurIPS 2017.
    Rabe & Staats, "Self-attention does not need O(n^2) memory", arXiv:2112.05682, 2021.
    Dao, "FlashAttention-2: faster attention with better parallelism and work partitioning",
    arXiv:2307.08691, 2023.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import checkify
from jax.typing import ArrayLike

from jaxla import _checks
from jaxla._checks import shape_of as _shape
from jaxla._lora_weight import dense_product
from jaxla._numerics import matmul

__all__ = [
    "KVCache",
    "causal_mask",
    "chunked_attention",
    "combine_masks",
    "dot_product_attention",
    "init_cache",
    "multi_head_attention",
    "multi_head_attention_init",
    "padding_mask",
    "sliding_window_mask",
]

_MODULE = "jaxla.nn"

# Masked logits: large, finite, and still finite in float32 after subtracting a row maximum.
_NEG = -0.7 * float(np.finfo(np.float32).max)


# --------------------------------------------------------------------------------------------
# shared helpers


def _mT(x: jax.Array) -> jax.Array:
    return jnp.swapaxes(x, -1, -2)


def _check_finite(x: jax.Array, fn: str, name: str) -> None:
    """NaN/Inf raise eagerly; under jit, ``jax.experimental.checkify`` reports them."""
    _checks.check_finite(x, fn, name)
    if not _checks.is_concrete(x):
        checkify.debug_check(
            jnp.all(jnp.isfinite(x)),
            f"{fn}: `{name}` contains NaN or Inf value(s); clean or mask them first",
        )


def _as_mask(mask: Any, fn: str, name: str = "mask") -> jax.Array:
    mask = mask if isinstance(mask, jax.Array) else jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        _checks.fail(
            fn, f"`{name}` must be a boolean array (True = attend), got dtype {mask.dtype}",
            TypeError,
        )
    return mask


def _check_broadcastable(
    x: jax.Array, fn: str, name: str, target: tuple[int, ...], letters: str
) -> jax.Array:
    """Require ``x`` to broadcast to ``target`` and return it with ``len(target)`` axes."""
    shape = _shape(x)
    ok = len(shape) <= len(target) and all(
        d in (1, t) for d, t in zip(shape[::-1], target[::-1], strict=False)
    )
    if not ok:
        _checks.fail(fn, f"`{name}` must be broadcastable to {letters}={target}, got shape {shape}")
    return jnp.reshape(x, (1,) * (len(target) - len(shape)) + shape)


class _Inputs(NamedTuple):
    q: jax.Array  # (B, K, G, T, H), scaled, compute dtype
    k: jax.Array  # (B, K, S, H), compute dtype
    v: jax.Array  # (B, K, S, H), compute dtype
    mask: jax.Array | None  # (Bm, Km, Gm, Tm, Sm) bool, each axis 1 or full
    bias: jax.Array | None  # (Bb, Kb, Gb, Tb, Sb), compute dtype, each axis 1 or full
    dtype: Any  # dtype of the outputs
    batched: bool


def _validate(
    fn: str,
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    mask: ArrayLike | None,
    bias: ArrayLike | None,
    scale: float | None,
) -> tuple[Any, ...]:
    """Check the arguments of an attention function (NaN/Inf eagerly); return them as arrays."""
    q = _checks.as_float_array(q, fn, "q", ndim=(3, 4), doc="(B, T, N, H) or (T, N, H)")
    k = _checks.as_float_array(k, fn, "k")
    v = _checks.as_float_array(v, fn, "v")
    batched = q.ndim == 4
    kv_doc = "(B, S, K, H)" if batched else "(S, K, H)"
    if k.ndim != q.ndim:
        _checks.fail(fn, f"`k` must be {q.ndim}-D {kv_doc} like `q`, got shape {_shape(k)}")
    _checks.check_same_shape(k, v, fn, ("k", "v"))
    B, T, N, H = _shape(q) if batched else (1, *_shape(q))
    Bk, S, K, Hk = _shape(k) if batched else (1, *_shape(k))
    if Bk != B:
        _checks.fail(
            fn, f"`k` must have the batch size B={B} of `q` (axis 0), got shape {_shape(k)}"
        )
    if Hk != H:
        _checks.fail(
            fn, f"`k` must have the head_dim H={H} of `q` (last axis), got shape {_shape(k)}"
        )
    if min(T, S, N, H) < 1:
        _checks.fail(
            fn, f"`q` and `k` must have nonzero sizes, got shapes {_shape(q)} and {_shape(k)}"
        )
    if N % K:
        _checks.fail(
            fn,
            f"`q` must have a number of heads N that is a multiple of the K={K} key/value heads "
            f"of `k` (axis -2), got N={N}",
        )
    for name, x in (("q", q), ("k", k), ("v", v)):
        _check_finite(x, fn, name)
    if scale is None:
        scale = 1.0 / math.sqrt(H)
    else:
        scale = _checks.check_positive(scale, fn, "scale")
    target, letters = ((B, N, T, S), "(B, N, T, S)") if batched else ((N, T, S), "(N, T, S)")
    if mask is not None:
        mask = _as_mask(mask, fn)
        _check_broadcastable(mask, fn, "mask", target, letters)
    if bias is not None:
        bias = _checks.as_float_array(bias, fn, "bias")
        _check_broadcastable(bias, fn, "bias", target, letters)
        _check_finite(bias, fn, "bias")
    return q, k, v, mask, bias, scale


def _layout(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: jax.Array | None,
    bias: jax.Array | None,
    scale: Any,
) -> _Inputs:
    """Bring validated arguments to the head-major layout used by the computations."""
    batched = q.ndim == 4
    q4, k4, v4 = (q, k, v) if batched else (q[None], k[None], v[None])
    B, T, N, H = q4.shape
    K = k4.shape[2]
    G = N // K
    dtype = jnp.result_type(q, k, v)
    cdt = _checks.compute_dtype(dtype)

    def to5(x: jax.Array) -> jax.Array:
        x = jnp.reshape(x, (1,) * (q.ndim - x.ndim) + x.shape)
        x = x if batched else x[None]
        bm, nm, tm, sm = x.shape
        return jnp.reshape(x, (bm, K, G, tm, sm) if nm == N else (bm, 1, 1, tm, sm))

    mask5 = None if mask is None else to5(mask)
    bias5 = None if bias is None else to5(bias).astype(cdt)
    qh = (q4.astype(cdt) * jnp.asarray(scale, cdt)).reshape(B, T, K, G, H)
    qh = jnp.transpose(qh, (0, 2, 3, 1, 4))
    kh = jnp.transpose(k4.astype(cdt), (0, 2, 1, 3))
    vh = jnp.transpose(v4.astype(cdt), (0, 2, 1, 3))
    return _Inputs(qh, kh, vh, mask5, bias5, dtype, batched)


def _causal(q0: Any, t: int, k0: Any, s: int) -> jax.Array:
    """(1, 1, 1, t, s) mask of ``key position <= query position`` for blocks at offsets q0, k0."""
    qpos = q0 + lax.broadcasted_iota(jnp.int32, (t, s), 0)
    kpos = k0 + lax.broadcasted_iota(jnp.int32, (t, s), 1)
    return (kpos <= qpos)[None, None, None]


def _row_valid(mask5: jax.Array | None, is_causal: bool, t: int, s: int) -> jax.Array | None:
    """(Bm, Km, Gm, T or 1): whether a query row has at least one key to attend."""
    if mask5 is None:
        return None  # without a mask every row attends key 0 at least
    valid = mask5 & _causal(0, t, 0, s) if is_causal else mask5
    return jnp.any(valid, axis=-1)


def _finish(inp: _Inputs, out: jax.Array, row_valid: jax.Array | None) -> jax.Array:
    """(B, K, G, T, H) head-major output -> (B, T, N, H) in the output dtype."""
    if row_valid is not None:
        out = jnp.where(row_valid[..., None], out, jnp.zeros((), out.dtype))
    b, kh, g, t, h = out.shape
    out = jnp.transpose(out, (0, 3, 1, 2, 4)).reshape(b, t, kh * g, h).astype(inp.dtype)
    return out if inp.batched else out[0]


# --------------------------------------------------------------------------------------------
# dot_product_attention


def dot_product_attention(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    return_weights: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Scaled dot-product attention, ``softmax(scale * q k^T + bias, masked) v``, per head.

    The reference ("naive") implementation: it forms the full ``(B, N, T, S)`` logits, so memory
    grows as ``T * S``; :func:`chunked_attention` computes the same function in O(T + S) memory.
    Same layout and semantics as ``jax.nn.dot_product_attention``, with these guarantees:
    logits and softmax in float32 (float64 for float64 inputs) at ``precision=HIGHEST``, inputs in
    float16/bfloat16 upcast, and a query row with no key to attend (fully masked) returning zeros
    with an exactly zero gradient (``jax.nn`` returns the mean of ``v`` there). Differentiable in
    forward and reverse mode, to any order.

    Args:
        q: (B, T, N, H) queries, or (T, N, H) without the batch axis.
        k: (B, S, K, H) keys (or (S, K, H)); ``N`` must be a multiple of ``K`` (grouped-query
            attention: query head ``n`` uses key/value head ``n // (N // K)``).
        v: (B, S, K, H) values, the shape of ``k``.
        mask: Boolean, ``True`` = attend, broadcastable to (B, N, T, S) ((N, T, S) unbatched).
        bias: Added to the logits after scaling, broadcastable to (B, N, T, S).
        is_causal: If True, query ``i`` attends key ``j`` only when ``j <= i`` (top-left aligned).
        scale: Multiplies ``q k^T``; default ``1 / sqrt(H)``.
        return_weights: If True, also return the attention weights.

    Returns:
        ``out`` (B, T, N, H) (or (T, N, H)) in the common dtype of ``q``, ``k``, ``v``; with
        ``return_weights=True``, ``(out, weights)`` with ``weights`` (B, N, T, S) (or (N, T, S)),
        rows summing to 1, and rows of zeros where no key could be attended.

    Raises:
        TypeError: non-floating ``q``, ``k``, ``v`` or ``bias``; non-boolean ``mask``.
        ValueError: wrong ranks, ``k``/``v`` shapes that differ or do not match ``q`` (batch,
            head_dim), ``N`` not a multiple of ``K``, ``mask``/``bias`` not broadcastable, or
            NaN/Inf in ``q``, ``k``, ``v``, ``bias`` (eagerly; under ``jit`` through
            ``jax.experimental.checkify``).

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.nn import dot_product_attention
        >>> kq, kk, kv = jax.random.split(jax.random.key(0), 3)
        >>> q = jax.random.normal(kq, (2, 5, 4, 8))  # B=2, T=5, N=4, H=8
        >>> k = jax.random.normal(kk, (2, 7, 2, 8))  # S=7, K=2 key/value heads (GQA)
        >>> v = jax.random.normal(kv, (2, 7, 2, 8))
        >>> out = dot_product_attention(q, k, v, is_causal=True)
        >>> out.shape
        (2, 5, 4, 8)

        A query row that may attend no key gives zeros, and a zero gradient:

        >>> mask = jnp.ones((5, 7), bool).at[2].set(False)
        >>> out, w = dot_product_attention(q, k, v, mask=mask, return_weights=True)
        >>> float(jnp.abs(out[:, 2]).max()), np.round(np.asarray(w[0, 0].sum(-1)), 4).tolist()
        (0.0, [1.0, 1.0, 0.0, 1.0, 1.0])
        >>> g = jax.grad(lambda q: dot_product_attention(q, k, v, mask=mask).sum())(q)
        >>> float(jnp.abs(g[:, 2]).max())
        0.0
    """
    fn = f"{_MODULE}.dot_product_attention"
    is_causal = _checks.check_bool(is_causal, fn, "is_causal")
    return_weights = _checks.check_bool(return_weights, fn, "return_weights")
    args = _validate(fn, q, k, v, mask, bias, scale)
    return _dot_product_attention(*args, is_causal=is_causal, return_weights=return_weights)


@functools.partial(jax.jit, static_argnames=("is_causal", "return_weights"))
def _dot_product_attention(q, k, v, mask, bias, scale, *, is_causal, return_weights):
    inp = _layout(q, k, v, mask, bias, scale)
    B, K, G, T, H = inp.q.shape
    S = inp.k.shape[2]
    logits = matmul(inp.q.reshape(B, K, G * T, H), _mT(inp.k)).reshape(B, K, G, T, S)
    if inp.bias is not None:
        logits = logits + inp.bias
    valid = inp.mask
    if is_causal:
        causal = _causal(0, T, 0, S)
        valid = causal if valid is None else valid & causal
    if valid is not None:
        logits = jnp.where(valid, logits, jnp.asarray(_NEG, logits.dtype))
    weights = jax.nn.softmax(logits, axis=-1)
    out = matmul(weights.reshape(B, K, G * T, S), inp.v).reshape(B, K, G, T, H)
    row_valid = _row_valid(inp.mask, is_causal, T, S)
    out = _finish(inp, out, row_valid)
    if not return_weights:
        return out
    if row_valid is not None:
        weights = jnp.where(row_valid[..., None], weights, jnp.zeros((), weights.dtype))
    weights = weights.reshape(B, K * G, T, S).astype(inp.dtype)
    return out, (weights if inp.batched else weights[0])


# --------------------------------------------------------------------------------------------
# chunked_attention: online softmax over key chunks, recomputation in the backward pass


class _Config(NamedTuple):
    q_chunk: int
    k_chunk: int
    causal: bool
    k_len: int  # true number of keys; keys at positions >= k_len are padding
    pad_keys: bool  # whether padding keys must be masked by position


def _slice_block(x: jax.Array, i0: Any, j0: Any, qc: int, kc: int) -> jax.Array:
    """Block ``[i0:i0+qc, j0:j0+kc]`` of the last two axes, where those axes are not broadcast."""
    if x.shape[3] > 1:
        x = lax.dynamic_slice_in_dim(x, i0, qc, axis=3)
    if x.shape[4] > 1:
        x = lax.dynamic_slice_in_dim(x, j0, kc, axis=4)
    return x


def _block_logits(
    cfg: _Config, qb: jax.Array, kb: jax.Array, mask: Any, bias: Any, i: Any, j: Any
) -> jax.Array:
    """Masked logits (B, K, G, qc, kc) of query chunk ``i`` against key chunk ``j``."""
    B, K, G, qc, H = qb.shape
    kc = kb.shape[2]
    i0, j0 = i * qc, j * kc
    s = matmul(qb.reshape(B, K, G * qc, H), _mT(kb)).reshape(B, K, G, qc, kc)
    if bias is not None:
        s = s + _slice_block(bias, i0, j0, qc, kc)
    valid = None if mask is None else _slice_block(mask, i0, j0, qc, kc)
    if cfg.causal:
        c = _causal(i0, qc, j0, kc)
        valid = c if valid is None else valid & c
    if cfg.pad_keys:
        kpos = j0 + lax.broadcasted_iota(jnp.int32, (1, kc), 1)
        c = (kpos < cfg.k_len)[None, None, None]
        valid = c if valid is None else valid & c
    if valid is not None:
        s = jnp.where(valid, s, jnp.asarray(_NEG, s.dtype))
    return s


def _split_q(x: jax.Array, n: int) -> jax.Array:
    """(B, K, G, n*c, ...) -> (n, B, K, G, c, ...)."""
    b, kh, g, t = x.shape[:4]
    return jnp.moveaxis(x.reshape(b, kh, g, n, t // n, *x.shape[4:]), 3, 0)


def _merge_q(x: jax.Array) -> jax.Array:
    """(n, B, K, G, c, ...) -> (B, K, G, n*c, ...)."""
    x = jnp.moveaxis(x, 0, 3)
    return x.reshape(*x.shape[:3], x.shape[3] * x.shape[4], *x.shape[5:])


def _split_k(x: jax.Array, n: int) -> jax.Array:
    """(B, K, n*c, H) -> (n, B, K, c, H)."""
    b, kh, s, h = x.shape
    return jnp.moveaxis(x.reshape(b, kh, n, s // n, h), 2, 0)


def _flash_forward(cfg, q, k, v, mask, bias):
    B, K, G, Tp, H = q.shape
    nq, nk = Tp // cfg.q_chunk, k.shape[2] // cfg.k_chunk
    qc = cfg.q_chunk
    ks, vs = _split_k(k, nk), _split_k(v, nk)

    def q_step(_, xs):
        qb, i = xs

        def k_step(carry, ys):
            acc, m, l = carry
            kb, vb, j = ys
            s = _block_logits(cfg, qb, kb, mask, bias, i, j)
            m_new = jnp.maximum(m, jnp.max(s, axis=-1))
            p = jnp.exp(s - m_new[..., None])
            alpha = jnp.exp(m - m_new)
            l = l * alpha + jnp.sum(p, axis=-1)
            pv = matmul(p.reshape(B, K, G * qc, -1), vb).reshape(B, K, G, qc, H)
            return (acc * alpha[..., None] + pv, m_new, l), None

        init = (
            jnp.zeros((B, K, G, qc, H), q.dtype),
            jnp.full((B, K, G, qc), _NEG, q.dtype),
            jnp.zeros((B, K, G, qc), q.dtype),
        )
        (acc, m, l), _ = lax.scan(k_step, init, (ks, vs, jnp.arange(nk)))
        return None, (acc / l[..., None], m + jnp.log(l))

    _, (out, lse) = lax.scan(q_step, None, (_split_q(q, nq), jnp.arange(nq)))
    return _merge_q(out), _merge_q(lse)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flash(cfg, q, k, v, mask, bias):
    return _flash_forward(cfg, q, k, v, mask, bias)[0]


def _flash_fwd(cfg, q, k, v, mask, bias):
    out, lse = _flash_forward(cfg, q, k, v, mask, bias)
    return out, (q, k, v, mask, bias, out, lse)


def _reduce_to(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Sum ``x`` over the axes where ``shape`` broadcasts (size 1), keeping them."""
    axes = tuple(a for a, (d, t) in enumerate(zip(x.shape, shape, strict=True)) if t == 1 != d)
    return jnp.sum(x, axis=axes, keepdims=True) if axes else x


def _flash_bwd(cfg, res, dout):
    q, k, v, mask, bias, out, lse = res
    B, K, G, Tp, H = q.shape
    qc, kc = cfg.q_chunk, cfg.k_chunk
    nq, nk = Tp // qc, k.shape[2] // kc
    delta = jnp.sum(dout * out, axis=-1)  # (B, K, G, Tp): rowsum(dO * O)
    q_xs = (_split_q(q, nq), _split_q(dout, nq), _split_q(lse, nq), _split_q(delta, nq))
    if bias is not None:
        bias_blk = (*bias.shape[:3], qc if bias.shape[3] > 1 else 1, kc if bias.shape[4] > 1 else 1)

    def k_step(dq, xs):
        kb, vb, j = xs

        def q_step(carry, ys):
            dk, dv = carry
            qb, dob, lseb, deltab, i = ys
            s = _block_logits(cfg, qb, kb, mask, bias, i, j)
            p = jnp.exp(s - lseb[..., None])  # (B, K, G, qc, kc)
            p2 = p.reshape(B, K, G * qc, kc)
            do2 = dob.reshape(B, K, G * qc, H)
            dv = dv + matmul(_mT(p2), do2)
            dp = matmul(do2, _mT(vb)).reshape(B, K, G, qc, kc)
            ds = p * (dp - deltab[..., None])
            ds2 = ds.reshape(B, K, G * qc, kc)
            dqb = matmul(ds2, kb).reshape(B, K, G, qc, H)
            dk = dk + matmul(_mT(ds2), qb.reshape(B, K, G * qc, H))
            dbias = None if bias is None else _reduce_to(ds, bias_blk)
            return (dk, dv), (dqb, dbias)

        zeros = jnp.zeros((B, K, kc, H), q.dtype)
        (dk, dv), (dqs, dbias) = lax.scan(q_step, (zeros, zeros), (*q_xs, jnp.arange(nq)))
        if bias is not None and bias.shape[3] == 1:
            dbias = jnp.sum(dbias, axis=0)
        return dq + dqs, (dk, dv, dbias)

    dq0 = jnp.zeros((nq, B, K, G, qc, H), q.dtype)
    dq, (dk, dv, dbias) = lax.scan(k_step, dq0, (_split_k(k, nk), _split_k(v, nk), jnp.arange(nk)))
    dq = _merge_q(dq)
    dk = jnp.moveaxis(dk, 0, 2).reshape(k.shape)
    dv = jnp.moveaxis(dv, 0, 2).reshape(v.shape)
    if bias is not None:
        dbias = _assemble_dbias(dbias, bias.shape)
    return dq, dk, dv, None, dbias


def _assemble_dbias(d: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Blocks of the bias gradient, stacked by the two scans, back to the bias's shape."""
    full_t, full_s = shape[3] > 1, shape[4] > 1
    if not full_s:
        d = jnp.sum(d, axis=0)  # (nq, Bb, Kb, Gb, qc, 1) or (Bb, Kb, Gb, 1, 1)
        return _merge_q(d) if full_t else d
    if full_t:  # (nk, nq, Bb, Kb, Gb, qc, kc)
        d = jnp.transpose(d, (2, 3, 4, 1, 5, 0, 6))
    else:  # (nk, Bb, Kb, Gb, 1, kc)
        d = jnp.moveaxis(d, 0, 4)
    return d.reshape(shape)


_flash.defvjp(_flash_fwd, _flash_bwd)


def _balanced_chunks(n: int, size: int) -> tuple[int, int]:
    """(chunk, count): ``count = ceil(n / size)`` chunks of equal size ``ceil(n / count)``."""
    count = -(-n // min(size, n))
    return -(-n // count), count


def _pad_axis(x: jax.Array, axis: int, to: int, value: Any) -> jax.Array:
    if x.shape[axis] in (1, to):  # broadcast axis, or nothing to pad
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, to - x.shape[axis])
    return jnp.pad(x, widths, constant_values=value)


def chunked_attention(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    query_chunk_size: int = 1024,
    key_chunk_size: int = 4096,
) -> jax.Array:
    """Memory-efficient attention: :func:`dot_product_attention` computed in chunks.

    The queries are processed in chunks of at most ``query_chunk_size`` (a sequential
    ``lax.scan``) and, for each, the keys in chunks of at most ``key_chunk_size`` with an online
    softmax (a running maximum and normalizer, Rabe & Staats 2021), so no ``(T, S)`` array is
    ever formed: besides O((T + S) * H) arrays per head, the forward pass keeps only a few
    ``(B, N, query_chunk, key_chunk)`` blocks alive. The result equals
    :func:`dot_product_attention` up to float rounding (the sums run in a different order).

    The gradient uses a custom VJP that saves only the output and the per-row log-sum-exp
    (O(T) extra memory) and recomputes each block of probabilities in the backward pass
    (FlashAttention-2's backward: one extra ``q k^T`` product per block instead of storing the
    ``(B, N, T, S)`` weights), so the backward pass also needs only O((T + S) * H) memory per
    head plus a few blocks. Reverse mode (``jax.grad``, ``jax.vjp``, also nested) is supported
    with respect to ``q``, ``k``, ``v`` and ``bias``; forward mode (``jax.jvp``, ``jax.jacfwd``,
    ``jax.hessian``) raises JAX's ``TypeError`` for custom-VJP functions (use
    :func:`dot_product_attention` there).

    Sequence lengths need not be multiples of the chunk sizes: the chunks are balanced (``T`` is
    split into ``ceil(T / query_chunk_size)`` chunks of equal size, padded by fewer than that many
    rows) and padded keys are masked out. ``mask`` and ``bias`` may have any shape broadcastable
    to (B, N, T, S); their ``T`` and ``S`` axes are sliced per chunk, so a full-size mask or bias
    costs only its own storage (and a full-size bias gradient, when differentiated).

    Args:
        q: (B, T, N, H) queries, or (T, N, H) without the batch axis.
        k: (B, S, K, H) keys (or (S, K, H)); ``N`` must be a multiple of ``K``.
        v: (B, S, K, H) values, the shape of ``k``.
        mask: Boolean, ``True`` = attend, broadcastable to (B, N, T, S) ((N, T, S) unbatched).
        bias: Added to the logits after scaling, broadcastable to (B, N, T, S).
        is_causal: If True, query ``i`` attends key ``j`` only when ``j <= i`` (top-left aligned).
        scale: Multiplies ``q k^T``; default ``1 / sqrt(H)``.
        query_chunk_size: Largest number of queries per chunk (static int >= 1).
        key_chunk_size: Largest number of keys per chunk (static int >= 1).

    Returns:
        ``out`` (B, T, N, H) (or (T, N, H)) in the common dtype of ``q``, ``k``, ``v``; zeros for
        query rows with no key to attend, with a zero gradient.

    Raises:
        TypeError: non-floating ``q``, ``k``, ``v`` or ``bias``; non-boolean ``mask``;
            non-integer chunk sizes.
        ValueError: as :func:`dot_product_attention`, and chunk sizes below 1.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.nn import chunked_attention, dot_product_attention
        >>> kq, kk, kv = jax.random.split(jax.random.key(0), 3)
        >>> q = jax.random.normal(kq, (1, 10, 2, 8))
        >>> k = jax.random.normal(kk, (1, 13, 2, 8))
        >>> v = jax.random.normal(kv, (1, 13, 2, 8))
        >>> out = chunked_attention(q, k, v, is_causal=True, query_chunk_size=4, key_chunk_size=5)
        >>> ref = dot_product_attention(q, k, v, is_causal=True)
        >>> bool(jnp.allclose(out, ref, atol=2e-6))
        True
        >>> loss = lambda f: lambda q: (f(q, k, v, is_causal=True) ** 2).sum()
        >>> g = jax.grad(loss(chunked_attention))(q)
        >>> bool(jnp.allclose(g, jax.grad(loss(dot_product_attention))(q), atol=1e-5))
        True
    """
    fn = f"{_MODULE}.chunked_attention"
    is_causal = _checks.check_bool(is_causal, fn, "is_causal")
    query_chunk_size = _checks.check_int(query_chunk_size, fn, "query_chunk_size", min=1)
    key_chunk_size = _checks.check_int(key_chunk_size, fn, "key_chunk_size", min=1)
    args = _validate(fn, q, k, v, mask, bias, scale)
    return _chunked_attention(
        *args, is_causal=is_causal, q_chunk=query_chunk_size, k_chunk=key_chunk_size
    )


@functools.partial(jax.jit, static_argnames=("is_causal", "q_chunk", "k_chunk"))
def _chunked_attention(q, k, v, mask, bias, scale, *, is_causal, q_chunk, k_chunk):
    inp = _layout(q, k, v, mask, bias, scale)
    T, S = inp.q.shape[3], inp.k.shape[2]
    qc, nq = _balanced_chunks(T, q_chunk)
    kc, nk = _balanced_chunks(S, k_chunk)
    Tp, Sp = qc * nq, kc * nk
    mask5, bias5 = inp.mask, inp.bias
    qh = _pad_axis(inp.q, 3, Tp, 0)
    kh, vh = _pad_axis(inp.k, 2, Sp, 0), _pad_axis(inp.v, 2, Sp, 0)
    if mask5 is not None:
        mask5 = _pad_axis(_pad_axis(mask5, 3, Tp, False), 4, Sp, False)
    if bias5 is not None:
        bias5 = _pad_axis(_pad_axis(bias5, 3, Tp, 0), 4, Sp, 0)
    pad_keys = Sp > S and (mask5 is None or mask5.shape[4] == 1)
    cfg = _Config(qc, kc, is_causal, S, pad_keys)
    out = _flash(cfg, qh, kh, vh, mask5, bias5)[:, :, :, :T]
    return _finish(inp, out, _row_valid(inp.mask, is_causal, T, S))


# --------------------------------------------------------------------------------------------
# mask helpers


def causal_mask(t: int, s: int | None = None) -> jax.Array:
    """Causal mask: query ``i`` may attend key ``j`` when ``j <= i`` (top-left aligned).

    The convention of ``is_causal=True``. To attend the last ``t`` of ``s`` positions instead
    (bottom-right aligned, as when decoding after a prefix), slice ``causal_mask(s)[..., -t:, :]``.

    Args:
        t: Number of queries (static int >= 1).
        s: Number of keys (static int >= 1); default ``t``.

    Returns:
        (1, 1, t, s) boolean mask, broadcastable to (B, N, T, S).

    Examples:
        >>> import numpy as np
        >>> from jaxla.nn import causal_mask
        >>> np.asarray(causal_mask(3, 4)[0, 0]).astype(int)
        array([[1, 0, 0, 0],
               [1, 1, 0, 0],
               [1, 1, 1, 0]])
    """
    fn = f"{_MODULE}.causal_mask"
    t = _checks.check_int(t, fn, "t", min=1)
    s = t if s is None else _checks.check_int(s, fn, "s", min=1)
    return _causal(0, t, 0, s)[0]


def sliding_window_mask(t: int, window: int, *, causal: bool = True) -> jax.Array:
    """Local attention mask of a sequence of length ``t`` with ``window`` positions per query.

    With ``causal=True`` query ``i`` attends keys ``i - window < j <= i`` (itself and the
    ``window - 1`` previous positions, as in Mistral's sliding-window attention); with
    ``causal=False`` it attends ``|i - j| < window``.

    Args:
        t: Sequence length, queries and keys (static int >= 1).
        window: Window size (static int >= 1); ``window >= t`` with ``causal=True`` is
            :func:`causal_mask`.
        causal: Whether the window looks backwards only.

    Returns:
        (1, 1, t, t) boolean mask, broadcastable to (B, N, T, S).

    Examples:
        >>> import numpy as np
        >>> from jaxla.nn import sliding_window_mask
        >>> np.asarray(sliding_window_mask(4, 2)[0, 0]).astype(int)
        array([[1, 0, 0, 0],
               [1, 1, 0, 0],
               [0, 1, 1, 0],
               [0, 0, 1, 1]])
    """
    fn = f"{_MODULE}.sliding_window_mask"
    t = _checks.check_int(t, fn, "t", min=1)
    window = _checks.check_int(window, fn, "window", min=1)
    causal = _checks.check_bool(causal, fn, "causal")
    i = lax.broadcasted_iota(jnp.int32, (t, t), 0)
    j = lax.broadcasted_iota(jnp.int32, (t, t), 1)
    d = i - j
    m = (d >= 0) & (d < window) if causal else jnp.abs(d) < window
    return m[None, None]


def padding_mask(lengths: ArrayLike, max_len: int) -> jax.Array:
    """Key padding mask from sequence lengths: position ``j`` of example ``b`` is a real token
    when ``j < lengths[b]``.

    Only keys are masked: queries at padded positions still attend the real keys (their outputs
    are meant to be ignored), so no row is fully masked unless a length is 0.

    Args:
        lengths: (B,) integer array of lengths in ``[0, max_len]`` (checked when concrete).
        max_len: Padded sequence length S (static int >= 1).

    Returns:
        (B, 1, 1, max_len) boolean mask, broadcastable to (B, N, T, S).

    Examples:
        >>> import numpy as np
        >>> from jaxla.nn import padding_mask
        >>> np.asarray(padding_mask(np.array([2, 4]), 4)[:, 0, 0]).astype(int)
        array([[1, 1, 0, 0],
               [1, 1, 1, 1]])
    """
    fn = f"{_MODULE}.padding_mask"
    max_len = _checks.check_int(max_len, fn, "max_len", min=1)
    lengths = lengths if isinstance(lengths, jax.Array) else jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        _checks.fail(
            fn, f"`lengths` must be an integer array (B,), got dtype {lengths.dtype}", TypeError
        )
    _checks.check_ndim(lengths, fn, "lengths", 1, "(B,)")
    if _checks.is_concrete(lengths):
        arr = np.asarray(lengths)
        if arr.size and (arr.min() < 0 or arr.max() > max_len):
            _checks.fail(
                fn,
                f"`lengths` must lie in [0, max_len={max_len}], got values in "
                f"[{int(arr.min())}, {int(arr.max())}]",
            )
    pos = jnp.arange(max_len, dtype=lengths.dtype)
    return (pos[None, :] < lengths[:, None])[:, None, None, :]


def combine_masks(*masks: ArrayLike | None) -> jax.Array | None:
    """Logical AND of boolean masks, broadcasting them together (``None`` entries are skipped).

    Args:
        *masks: Boolean masks whose shapes broadcast together (numpy rules, aligned on the
            right), e.g. ``causal_mask(t)`` (1, 1, T, T) and ``padding_mask(lengths, t)``
            (B, 1, 1, T).

    Returns:
        The combined mask, with the broadcast shape of the inputs, or ``None`` when every entry
        is ``None``.

    Examples:
        >>> import numpy as np
        >>> from jaxla.nn import causal_mask, combine_masks, padding_mask
        >>> m = combine_masks(causal_mask(3), padding_mask(np.array([2]), 3), None)
        >>> m.shape
        (1, 1, 3, 3)
        >>> np.asarray(m[0, 0]).astype(int)
        array([[1, 0, 0],
               [1, 1, 0],
               [1, 1, 0]])
    """
    fn = f"{_MODULE}.combine_masks"
    given = [(i, _as_mask(m, fn, f"masks[{i}]")) for i, m in enumerate(masks) if m is not None]
    if not given:
        return None
    shapes = [_shape(m) for _, m in given]
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        _checks.fail(
            fn, f"`masks` must have shapes that broadcast together, got shapes {shapes}"
        )
    out = None
    for _, m in given:
        m = jnp.broadcast_to(m, shape)
        out = m if out is None else out & m
    return out


# --------------------------------------------------------------------------------------------
# multi-head attention layer with a key/value cache


class KVCache(NamedTuple):
    """Keys and values of the positions seen so far, for decoding one step at a time."""

    k: jax.Array  # (B, L, K, H): keys of positions [0, index); zeros after
    v: jax.Array  # (B, L, K, H): values of positions [0, index); zeros after
    index: jax.Array  # (), int32: number of filled positions = position of the next token


def init_cache(
    batch: int, max_len: int, num_kv_heads: int, head_dim: int, dtype: Any = jnp.float32
) -> KVCache:
    """An empty key/value cache for :func:`multi_head_attention`.

    Args:
        batch: Batch size B (static int >= 1).
        max_len: Number of positions L the cache can hold (static int >= 1).
        num_kv_heads: Key/value heads K of the layer.
        head_dim: Head dimension H of the layer.
        dtype: Floating dtype of the stored keys and values.

    Returns:
        ``KVCache(k, v, index)`` with zero ``k``, ``v`` of shape (B, L, K, H) and ``index`` 0
        (int32 scalar). For a per-example layer under ``jax.vmap``, ``vmap`` over the cache too.

    Examples:
        >>> from jaxla.nn import init_cache
        >>> cache = init_cache(2, 16, 2, 8)
        >>> cache.k.shape, int(cache.index)
        ((2, 16, 2, 8), 0)
    """
    fn = f"{_MODULE}.init_cache"
    shape = tuple(
        _checks.check_int(n, fn, name, min=1)
        for n, name in (
            (batch, "batch"), (max_len, "max_len"), (num_kv_heads, "num_kv_heads"),
            (head_dim, "head_dim"),
        )
    )
    dt = _checks.check_float_dtype(dtype, fn)
    return KVCache(jnp.zeros(shape, dt), jnp.zeros(shape, dt), jnp.zeros((), jnp.int32))


def _kv_heads(fn: str, num_heads: int, num_kv_heads: int | None) -> int:
    if num_kv_heads is None:
        return num_heads
    num_kv_heads = _checks.check_int(num_kv_heads, fn, "num_kv_heads", min=1)
    if num_heads % num_kv_heads:
        _checks.fail(
            fn,
            f"`num_kv_heads` must divide `num_heads`={num_heads}, got num_kv_heads={num_kv_heads}",
        )
    return num_kv_heads


def multi_head_attention_init(
    key: jax.Array,
    d_model: int,
    num_heads: int,
    *,
    num_kv_heads: int | None = None,
    head_dim: int | None = None,
    use_bias: bool = False,
    dtype: Any = jnp.float32,
) -> dict[str, dict[str, jax.Array]]:
    """Parameters of a multi-head (or grouped-query) attention layer.

    Projection weights are drawn from a normal truncated to two standard deviations and scaled
    to variance ``1 / d_in`` (LeCun normal, the distribution of
    ``jax.nn.initializers.lecun_normal``); biases start at zero.

    Args:
        key: PRNG key.
        d_model: Model width D: features of the input and of the output (static int >= 1).
        num_heads: Query heads N (static int >= 1).
        num_kv_heads: Key/value heads K, dividing ``num_heads``; default ``num_heads``.
        head_dim: Head dimension H; default ``d_model // num_heads`` (then ``d_model`` must be a
            multiple of ``num_heads``).
        use_bias: Whether the four projections have biases.
        dtype: Floating dtype of the parameters.

    Returns:
        ``{"query": {"w": (D, N*H)}, "key": {"w": (D, K*H)}, "value": {"w": (D, K*H)},
        "out": {"w": (N*H, D)}}``, each with ``"b"`` ((N*H,), (K*H,), (K*H,), (D,)) when
        ``use_bias``. Head ``n`` owns columns ``n*H:(n+1)*H`` of a projection. The layer does not
        store ``num_heads``: pass the same ``num_heads`` and ``num_kv_heads`` to
        :func:`multi_head_attention`.

    Examples:
        >>> import jax
        >>> from jaxla.nn import multi_head_attention_init
        >>> params = multi_head_attention_init(jax.random.key(0), 16, 4, num_kv_heads=2)
        >>> {name: p["w"].shape for name, p in params.items()}
        {'query': (16, 16), 'key': (16, 8), 'value': (16, 8), 'out': (16, 16)}
    """
    fn = f"{_MODULE}.multi_head_attention_init"
    d_model = _checks.check_int(d_model, fn, "d_model", min=1)
    num_heads = _checks.check_int(num_heads, fn, "num_heads", min=1)
    num_kv_heads = _kv_heads(fn, num_heads, num_kv_heads)
    if head_dim is None:
        if d_model % num_heads:
            _checks.fail(
                fn,
                f"`head_dim` must be given when `d_model` is not a multiple of `num_heads`, "
                f"got d_model={d_model} and num_heads={num_heads}",
            )
        head_dim = d_model // num_heads
    head_dim = _checks.check_int(head_dim, fn, "head_dim", min=1)
    use_bias = _checks.check_bool(use_bias, fn, "use_bias")
    dt = _checks.check_float_dtype(dtype, fn)
    params = _mha_init(key, d_model, num_heads * head_dim, num_kv_heads * head_dim, use_bias, dt)
    return {name: params[name] for name in ("query", "key", "value", "out")}


# Standard deviation of a standard normal truncated to [-2, 2].
_TRUNCATED_STD = 0.87962566103423978


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _mha_init(key, d_model, width, kv_width, use_bias, dt):
    shapes = {
        "query": (d_model, width),
        "key": (d_model, kv_width),
        "value": (d_model, kv_width),
        "out": (width, d_model),
    }
    # One draw for the four weight matrices (cheaper to compile than four), rescaled to unit
    # variance, then to variance 1 / d_in per matrix.
    total = sum(a * b for a, b in shapes.values())
    z = jax.random.truncated_normal(key, -2.0, 2.0, (total,), dt) / _TRUNCATED_STD
    params, start = {}, 0
    for name, (d_in, d_out) in shapes.items():
        w = z[start:start + d_in * d_out].reshape(d_in, d_out) * (1.0 / math.sqrt(d_in))
        params[name] = {"w": w.astype(dt)}
        if use_bias:
            params[name]["b"] = jnp.zeros((d_out,), dt)
        start += d_in * d_out
    return params


def _dense(p: dict[str, jax.Array], x: jax.Array, cdt: Any) -> jax.Array:
    y = dense_product(x, p["w"], cdt)  # p["w"] may be a LoRAWeight (applied factored)
    if "b" in p:
        y = y + p["b"].astype(cdt).reshape((1,) * (y.ndim - 1) + (-1,))
    return y


def _check_params(params: Any, fn: str) -> None:
    names = ("query", "key", "value", "out")
    ok = isinstance(params, dict) and all(
        isinstance(params.get(n), dict) and "w" in params[n] for n in names
    )
    if not ok:
        got = list(params) if isinstance(params, dict) else type(params).__name__
        _checks.fail(
            fn,
            "`params` must be a dict with entries 'query', 'key', 'value', 'out', each holding "
            f"'w' (as made by multi_head_attention_init), got {got}",
        )
    for n in names:
        _checks.check_ndim(params[n]["w"], fn, f"params['{n}']['w']", 2, "(d_in, d_out)")


def multi_head_attention(
    params: dict[str, dict[str, jax.Array]],
    x: ArrayLike,
    *,
    num_heads: int,
    num_kv_heads: int | None = None,
    context: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    is_causal: bool = False,
    cache: KVCache | None = None,
    return_weights: bool = False,
    attention_fn: Callable[..., Any] = dot_product_attention,
) -> Any:
    """Multi-head attention layer: project, attend per head, concatenate, project.

    ``y = concat_n(attention(x Wq_n, c Wk_{n//G}, c Wv_{n//G})) Wo`` (plus biases), where the
    keys and values come from ``context`` ``c`` (cross-attention) or from ``x`` itself
    (self-attention). ``num_heads`` (and ``num_kv_heads``) are static and must match the
    parameters: the head dimension is read from the parameter shapes as ``H = (N*H) / N``.

    Decoding with a cache: pass ``cache`` (from :func:`init_cache`) and feed the new tokens
    ``x`` (B, T, D) (one or several per call); their keys and values are written at positions
    ``cache.index .. cache.index + T - 1``, the queries attend the filled positions (with
    ``is_causal=True``, only those up to their own position), and the updated cache is returned.
    Feeding a sequence token by token then gives the same outputs as one causal call on the
    whole sequence. The caller must keep ``cache.index + T <= L`` (checked when the index is
    concrete; under ``jit`` an overflowing write would be clamped by ``lax.dynamic_update_slice``).

    Args:
        params: Parameters from :func:`multi_head_attention_init`.
        x: (B, T, D) inputs, or (T, D) for one example (then ``context`` is (S, D) and the cache
            arrays have no batch axis, e.g. under ``jax.vmap``).
        num_heads: Query heads N (static).
        num_kv_heads: Key/value heads K; default ``num_heads``.
        context: (B, S, D) inputs of the keys and values; default ``x``. Not with ``cache``.
        mask: Boolean, ``True`` = attend, broadcastable to (B, N, T, S), where ``S`` is the
            context length, or the cache length L with a cache.
        is_causal: Causal self-attention (top-left aligned without a cache; by absolute
            position with a cache).
        cache: ``KVCache`` with ``k``, ``v`` (B, L, K, H) and a scalar ``index``.
        return_weights: Also return the attention weights (``attention_fn`` must accept
            ``return_weights=True``, as :func:`dot_product_attention` does).
        attention_fn: ``attention_fn(q, k, v, *, mask, is_causal)`` on (B, T, N, H) queries and
            (B, S, K, H) keys/values, e.g. :func:`dot_product_attention` (default) or
            :func:`chunked_attention` (or a ``functools.partial`` of one, to set chunk sizes).

    Returns:
        ``y`` (B, T, D) in the dtype of ``x``; ``(y, cache)`` when a cache is given, with the
        updated cache; and the weights (B, N, T, S) appended when ``return_weights=True``:
        ``(y, weights)`` or ``(y, cache, weights)``.

    Raises:
        TypeError: non-floating ``x``/``context``, non-boolean ``mask``, non-int head counts.
        ValueError: ``params`` that do not match ``x``, ``num_heads`` or ``num_kv_heads``; a
            ``mask`` not broadcastable; a cache of the wrong shape or without room for ``T``
            positions; ``cache`` with ``context``; NaN/Inf in ``x`` or ``context`` (eagerly).

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.nn import init_cache, multi_head_attention, multi_head_attention_init
        >>> params = multi_head_attention_init(jax.random.key(0), 16, 4, num_kv_heads=2)
        >>> x = jax.random.normal(jax.random.key(1), (2, 5, 16))
        >>> y = multi_head_attention(params, x, num_heads=4, num_kv_heads=2, is_causal=True)
        >>> y.shape
        (2, 5, 16)

        Decoding one token at a time with a cache gives the same outputs:

        >>> cache = init_cache(2, 8, 2, 4)
        >>> steps = []
        >>> for t in range(5):
        ...     y_t, cache = multi_head_attention(
        ...         params, x[:, t:t + 1], num_heads=4, num_kv_heads=2, is_causal=True,
        ...         cache=cache)
        ...     steps.append(y_t)
        >>> bool(jnp.allclose(jnp.concatenate(steps, axis=1), y, atol=1e-5)), int(cache.index)
        (True, 5)
    """
    fn = f"{_MODULE}.multi_head_attention"
    num_heads = _checks.check_int(num_heads, fn, "num_heads", min=1)
    num_kv_heads = _kv_heads(fn, num_heads, num_kv_heads)
    is_causal = _checks.check_bool(is_causal, fn, "is_causal")
    return_weights = _checks.check_bool(return_weights, fn, "return_weights")
    if not callable(attention_fn):
        _checks.fail(fn, f"`attention_fn` must be callable, got {attention_fn!r}", TypeError)
    _check_params(params, fn)
    x = _checks.as_float_array(x, fn, "x", ndim=(2, 3), doc="(B, T, D) or (T, D)")
    batched = x.ndim == 3
    x3 = x if batched else x[None]
    B, T, _ = _shape(x3)
    d_in, width = _shape(params["query"]["w"])
    if x3.shape[-1] != d_in:
        _checks.fail(
            fn,
            f"`x` must have D={d_in} features (last axis) to match params['query']['w'] of "
            f"shape {(d_in, width)}, got shape {_shape(x)}",
        )
    if width % num_heads:
        _checks.fail(
            fn,
            f"`num_heads` must divide the width N*H={width} of params['query']['w'], "
            f"got num_heads={num_heads}",
        )
    N, K, H = num_heads, num_kv_heads, width // num_heads
    if context is None:
        c3 = x3
    else:
        if cache is not None:
            _checks.fail(
                fn, "`cache` must be None when `context` is given (the cache holds "
                "self-attention keys and values), got both"
            )
        context = _checks.as_float_array(
            context, fn, "context", ndim=x.ndim, doc="(B, S, D)" if batched else "(S, D)"
        )
        c3 = context if batched else context[None]
        if c3.shape[0] != B:
            _checks.fail(
                fn,
                f"`context` must have the batch size B={B} of `x` (axis 0), "
                f"got shape {_shape(context)}",
            )
    d_ctx = params["key"]["w"].shape[0]
    for name in ("key", "value"):
        shape = _shape(params[name]["w"])
        if shape != (d_ctx, K * H):
            _checks.fail(
                fn,
                f"`params['{name}']['w']` must have shape (D, K*H)=({d_ctx}, {K * H}) for "
                f"num_kv_heads={K} and head_dim H={H}, got shape {shape}",
            )
    if _shape(params["out"]["w"])[0] != width:
        _checks.fail(
            fn,
            f"`params['out']['w']` must have N*H={width} rows, "
            f"got shape {_shape(params['out']['w'])}",
        )
    if c3.shape[-1] != d_ctx:
        name = "x" if context is None else "context"
        _checks.fail(
            fn,
            f"`{name}` must have D={d_ctx} features (last axis) to match params['key']['w'], "
            f"got shape {_shape(x if context is None else context)}",
        )
    _check_finite(x, fn, "x")
    if context is not None:
        _check_finite(context, fn, "context")

    S = c3.shape[1]
    if cache is not None:
        cache = KVCache(*_check_cache(cache, fn, batched, B, T, K, H))
        S = cache.k.shape[1]
    if mask is not None:
        target, letters = ((B, N, T, S), "(B, N, T, S)") if batched else ((N, T, S), "(N, T, S)")
        mask = _check_broadcastable(_as_mask(mask, fn), fn, "mask", target, letters)
        mask = mask if batched else mask[None]
    y, new_cache, weights = _multi_head_attention(
        params, x3, None if context is None else c3, mask, cache,
        num_heads=N, num_kv_heads=K, is_causal=is_causal, return_weights=return_weights,
        attention_fn=attention_fn,
    )
    if not batched:
        y = y[0]
        weights = None if weights is None else weights[0]
        if new_cache is not None:
            new_cache = KVCache(new_cache.k[0], new_cache.v[0], new_cache.index)
    outs = (y, *(() if cache is None else (new_cache,)), *((weights,) if return_weights else ()))
    return outs[0] if len(outs) == 1 else outs


@functools.partial(
    jax.jit,
    static_argnames=("num_heads", "num_kv_heads", "is_causal", "return_weights", "attention_fn"),
)
def _multi_head_attention(
    params, x, context, mask, cache, *, num_heads, num_kv_heads, is_causal, return_weights,
    attention_fn,
):
    """Batched layer on validated inputs: x (B, T, D), context (B, S, D) or None, mask 4-D."""
    N, K = num_heads, num_kv_heads
    B, T, _ = x.shape
    H = params["query"]["w"].shape[1] // N
    c = x if context is None else context
    S = c.shape[1]
    cdt = _checks.compute_dtype(x.dtype)
    q = _dense(params["query"], x, cdt).reshape(B, T, N, H)
    k = _dense(params["key"], c, cdt).reshape(B, S, K, H)
    v = _dense(params["value"], c, cdt).reshape(B, S, K, H)
    new_cache = None
    causal = is_causal
    if cache is not None:
        ck, cv, index = cache
        L = ck.shape[1]
        index = jnp.asarray(index, jnp.int32)
        zero = jnp.zeros((), jnp.int32)
        ck = lax.dynamic_update_slice(ck, k.astype(ck.dtype), (zero, index, zero, zero))
        cv = lax.dynamic_update_slice(cv, v.astype(cv.dtype), (zero, index, zero, zero))
        k, v = ck.astype(cdt), cv.astype(cdt)
        qpos = index + lax.broadcasted_iota(jnp.int32, (T, L), 0)
        kpos = lax.broadcasted_iota(jnp.int32, (T, L), 1)
        filled = ((kpos <= qpos) if is_causal else (kpos < index + T))[None, None]
        mask = filled if mask is None else filled & mask
        causal = False
        new_cache = KVCache(ck, cv, index + T)
    kwargs: dict[str, Any] = {"mask": mask, "is_causal": causal}
    if return_weights:
        kwargs["return_weights"] = True
    res = attention_fn(q, k, v, **kwargs)
    out, weights = res if return_weights else (res, None)
    y = _dense(params["out"], out.reshape(B, T, N * H), cdt).astype(x.dtype)
    return y, new_cache, weights


def _check_cache(
    cache: Any, fn: str, batched: bool, B: int, T: int, K: int, H: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Validate a cache; return its k, v with a batch axis, and its index."""
    if not (isinstance(cache, tuple) and len(cache) == 3):
        _checks.fail(
            fn,
            f"`cache` must be a KVCache(k, v, index) from init_cache, "
            f"got {type(cache).__name__}",
            TypeError,
        )
    ck, cv, index = cache
    ck = _checks.as_float_array(ck, fn, "cache.k")
    cv = _checks.as_float_array(cv, fn, "cache.v")
    doc = "(B, L, K, H)" if batched else "(L, K, H)"
    _checks.check_ndim(ck, fn, "cache.k", 4 if batched else 3, doc)
    _checks.check_same_shape(ck, cv, fn, ("cache.k", "cache.v"))
    if not batched:
        ck, cv = ck[None], cv[None]
    b, L, kk, hh = _shape(ck)
    if (b, kk, hh) != (B, K, H):
        want = f"(B, L, K, H)=({B}, L, {K}, {H})" if batched else f"(L, K, H)=(L, {K}, {H})"
        got = _shape(cache[0])
        _checks.fail(fn, f"`cache.k` must have shape {want} to match `x` and `params`, got {got}")
    if T > L:
        _checks.fail(fn, f"`x` must have at most L={L} tokens (the cache length), got T={T}")
    if jnp.ndim(index) != 0 or not jnp.issubdtype(jnp.result_type(index), jnp.integer):
        _checks.fail(
            fn, f"`cache.index` must be an integer scalar, got shape {_shape(index)}", TypeError
        )
    if _checks.is_concrete(index) and not 0 <= int(index) <= L - T:
        _checks.fail(
            fn,
            f"`cache` must have room for the T={T} new tokens of `x` (index + T <= L={L}), "
            f"got index={int(index)}",
        )
    return ck, cv, index
