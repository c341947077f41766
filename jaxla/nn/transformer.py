"""Transformers from jaxla's layers: a pre-norm block, an encoder classifier, a decoder LM.

A pre-norm transformer block is two residual branches, each a normalization followed by matrix
products and elementwise functions::

    x = x + attention(norm_1(x))       multi-head (or grouped-query) self-attention
    x = x + ffn(norm_2(x))             MLP  dense -> gelu -> dense,  or SwiGLU

Dimension letters: ``B`` batch, ``T`` sequence length (tokens fed in this call), ``S`` positions
attended (``T``, or the cache length ``L``), ``D`` model width, ``N`` query heads, ``K``
key/value heads, ``V`` vocabulary size, ``C`` classes. Token arrays are ``(B, T)``, or ``(T,)``
for one sequence (e.g. under ``jax.vmap``), and every output then drops its batch axis too.

Conventions shared by the models here:

* Parameters are dicts with stable names: ``"token_embedding"``, ``"position_embedding"``
  (learned positions only), ``"blocks_0"``, ``"blocks_1"``, ..., ``"final_norm"`` and ``"head"``
  (absent in a decoder with tied embeddings). Inside a block: ``"attention_norm"``,
  ``"attention"`` (``"query"``, ``"key"``, ``"value"``, ``"out"``), ``"ffn_norm"`` and ``"ffn"``
  (``"layers_0"``, ``"layers_1"`` for the MLP; ``"gate"``, ``"up"``, ``"down"`` for SwiGLU).
* The architecture is read from the parameters; only ``num_heads`` (static, not derivable from
  the shapes) is passed to the apply functions, as for
  :func:`~jaxla.nn.multi_head_attention`. A norm with a ``"bias"`` is a layer norm, one with
  only a ``"scale"`` an RMS norm; the number of key/value heads is ``K = (K*H) / H``.
* Token embeddings are drawn with standard deviation ``1 / sqrt(D)`` and multiplied by
  ``sqrt(D)`` on input (Vaswani et al.), so inputs have unit scale and tied output logits
  ``h @ table.T`` start at unit scale. Sinusoidal positions follow Vaswani et al.
  (:func:`sinusoidal_positions`); learned positions start as ``N(0, 0.1**2)``.
* Dropout (``dropout_rate``, off by default and with ``deterministic=True``) is applied to the
  embeddings and to each residual branch; it needs an explicit ``key``.

References:
    Vaswani et al., "Attention is all you need", NeurIPS 2017.
    Xiong et al., "On layer normalization in the transformer architecture", ICML 2020.
    Shazeer, "GLU variants improve transformer", arXiv:2002.05202, 2020.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxla import _checks
from jaxla._checks import shape_of as _shape
from jaxla._lora_weight import table_slice
from jaxla.nn import layers as _layers
from jaxla.nn.attention import (
    KVCache,
    dot_product_attention,
    init_cache,
    multi_head_attention,
    padding_mask,
)

__all__ = [
    "decoder_lm",
    "decoder_lm_init",
    "encoder_classifier",
    "encoder_classifier_init",
    "generate",
    "init_decoder_cache",
    "sinusoidal_positions",
    "transformer_block",
    "transformer_block_init",
]

_MODULE = "jaxla.nn"
_FFNS = ("mlp", "swiglu")
_NORMS = ("layer_norm", "rms_norm")
_POSITIONS = ("learned", "sinusoidal")
_POSITION_STD = 0.1
# Standard deviation of a standard normal truncated to [-2, 2].
_TRUNCATED_STD = 0.87962566103423978


def _check_dropout(
    fn: str, key: Any, dropout_rate: Any, deterministic: Any
) -> tuple[bool, Any]:
    """Validate the dropout options; return (active, rate)."""
    deterministic = _checks.check_bool(deterministic, fn, "deterministic")
    if isinstance(dropout_rate, jax.core.Tracer):
        active = not deterministic
    else:
        rate = _checks.check_positive(dropout_rate, fn, "dropout_rate", allow_zero=True)
        if rate >= 1:
            _checks.fail(fn, f"`dropout_rate` must be in [0, 1), got {dropout_rate!r}")
        active = rate > 0 and not deterministic
    if active and key is None:
        _checks.fail(
            fn,
            "`key` must be a PRNG key when deterministic=False and dropout_rate > 0, got None; "
            "pass key=... or deterministic=True",
        )
    return active, dropout_rate


def _dropout(x: jax.Array, rate: Any, key: Any, active: bool) -> jax.Array:
    return _layers.dropout(x, rate=rate, key=key, deterministic=False) if active else x


# --------------------------------------------------------------------------------------------
# positions


def sinusoidal_positions(
    length: int, d_model: int, *, start: int | jax.Array = 0, dtype: Any = jnp.float32
) -> jax.Array:
    """Sinusoidal position encodings of positions ``start, ..., start + length - 1``.

    ``P[p, 2i] = sin(p / 10000**(2i / D))`` and ``P[p, 2i + 1] = cos(p / 10000**(2i / D))``
    (Vaswani et al., 2017); an odd ``D`` ends with a sine column.

    Args:
        length: Number of positions T (static int >= 1).
        d_model: Encoding width D (static int >= 1).
        start: First position (an int, or a traced integer scalar, e.g. a cache index).
        dtype: Floating dtype of the result; angles are computed in float32 (float64 for a
            float64 result).

    Returns:
        (T, D) encodings, entries in [-1, 1].

    Examples:
        >>> import numpy as np
        >>> from jaxla.nn import sinusoidal_positions
        >>> np.round(np.asarray(sinusoidal_positions(2, 4), np.float64), 3).tolist()
        [[0.0, 1.0, 0.0, 1.0], [0.841, 0.54, 0.01, 1.0]]
    """
    fn = f"{_MODULE}.sinusoidal_positions"
    length = _checks.check_int(length, fn, "length", min=1)
    d_model = _checks.check_int(d_model, fn, "d_model", min=1)
    dt = _checks.check_float_dtype(dtype, fn)
    if not isinstance(start, jax.core.Tracer):
        start = _checks.check_int(start, fn, "start", min=0)
    return _sinusoidal(length, d_model, start, dt)


def _sinusoidal(length: int, d_model: int, start: Any, dt: Any) -> jax.Array:
    cdt = _checks.compute_dtype(dt)
    pos = (jnp.asarray(start, jnp.int32) + jnp.arange(length, dtype=jnp.int32)).astype(cdt)
    col = np.arange(d_model)
    freq = jnp.asarray(10000.0 ** (-(2 * (col // 2)) / d_model), cdt)
    angle = pos[:, None] * freq[None, :]
    even = jnp.asarray(col % 2 == 0)[None, :]
    return jnp.where(even, jnp.sin(angle), jnp.cos(angle)).astype(dt)


# --------------------------------------------------------------------------------------------
# the block


def _block_args(fn, d_model, num_heads, num_kv_heads, mlp_ratio, ffn, norm, dtype):
    """Validate the options of a block; return them with the feed-forward hidden width."""
    d_model = _checks.check_int(d_model, fn, "d_model", min=1)
    num_heads = _checks.check_int(num_heads, fn, "num_heads", min=1)
    if d_model % num_heads:
        _checks.fail(
            fn, f"`d_model` must be a multiple of `num_heads`={num_heads}, got d_model={d_model}"
        )
    if num_kv_heads is None:
        num_kv_heads = num_heads
    num_kv_heads = _checks.check_int(num_kv_heads, fn, "num_kv_heads", min=1)
    if num_heads % num_kv_heads:
        _checks.fail(
            fn, f"`num_kv_heads` must divide `num_heads`={num_heads}, "
            f"got num_kv_heads={num_kv_heads}"
        )
    mlp_ratio = _checks.check_positive(mlp_ratio, fn, "mlp_ratio")
    ffn = _checks.check_option(ffn, _FFNS, fn, "ffn")
    norm = _checks.check_option(norm, _NORMS, fn, "norm")
    dt = _checks.check_float_dtype(dtype, fn)
    hidden = max(1, round(mlp_ratio * d_model * (2 / 3 if ffn == "swiglu" else 1)))
    return d_model, num_heads, num_kv_heads, hidden, ffn, norm, dt


def transformer_block_init(
    key: jax.Array,
    d_model: int,
    num_heads: int,
    *,
    num_kv_heads: int | None = None,
    mlp_ratio: float = 4,
    ffn: str = "mlp",
    norm: str = "layer_norm",
    dtype: Any = jnp.float32,
) -> dict[str, Any]:
    """Parameters of a pre-norm transformer block (self-attention, then a feed-forward layer).

    Args:
        key: PRNG key.
        d_model: Model width D (static int >= 1, a multiple of ``num_heads``).
        num_heads: Query heads N; the head dimension is ``D // N``.
        num_kv_heads: Key/value heads K dividing N (grouped-query attention); default N.
        mlp_ratio: Width of the feed-forward layer relative to D (> 0). ``ffn="mlp"`` has
            hidden width ``round(mlp_ratio * D)``; ``ffn="swiglu"`` has
            ``round(2/3 * mlp_ratio * D)``, so that its three matrices hold as many parameters
            as the MLP's two.
        ffn: ``"mlp"`` (dense -> gelu -> dense, with biases) or ``"swiglu"`` (no biases).
        norm: ``"layer_norm"`` (scale and bias) or ``"rms_norm"`` (scale).
        dtype: Floating dtype of the parameters.

    Returns:
        ``{"attention_norm": (D,) norm, "attention": multi_head_attention_init params,
        "ffn_norm": (D,) norm, "ffn": {"layers_0", "layers_1"} or {"gate", "up", "down"}}``.

    Raises:
        TypeError: non-int sizes, a non-floating dtype.
        ValueError: sizes below 1; ``d_model`` not a multiple of ``num_heads``; K not dividing
            N; an unknown ``ffn`` or ``norm``; ``mlp_ratio <= 0``.

    Examples:
        >>> import jax
        >>> from jaxla.nn import transformer_block_init
        >>> params = transformer_block_init(jax.random.key(0), 16, 4, ffn="swiglu")
        >>> sorted(params), sorted(params["ffn"])
        (['attention', 'attention_norm', 'ffn', 'ffn_norm'], ['down', 'gate', 'up'])
    """
    fn = f"{_MODULE}.transformer_block_init"
    args = _block_args(fn, d_model, num_heads, num_kv_heads, mlp_ratio, ffn, norm, dtype)
    return _block_init(key, *args)


def _block_init(key, d_model, num_heads, num_kv_heads, hidden, ffn, norm, dt):
    block = (d_model, num_heads, num_kv_heads, hidden, ffn, norm, dt)
    return _init_params(key, block, 1, None, None, None)["blocks_0"]


def _weight_shapes(block: tuple[Any, ...]) -> list[tuple[tuple[str, str], tuple[int, int]]]:
    """(path, (d_in, d_out)) of every weight matrix of a block."""
    d, N, K, hidden, ffn = block[:5]
    H = d // N
    shapes = [(("attention", "query"), (d, N * H)), (("attention", "key"), (d, K * H)),
              (("attention", "value"), (d, K * H)), (("attention", "out"), (N * H, d))]
    if ffn == "mlp":
        shapes += [(("ffn", "layers_0"), (d, hidden)), (("ffn", "layers_1"), (hidden, d))]
    else:
        shapes += [(("ffn", "gate"), (d, hidden)), (("ffn", "up"), (d, hidden)),
                   (("ffn", "down"), (hidden, d))]
    return shapes


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _init_params(key, block, num_layers, vocab_size, max_len, head_out):
    """Parameters of ``num_layers`` blocks, with embeddings when ``vocab_size`` is given.

    Every weight matrix is LeCun normal (a normal truncated to two standard deviations, rescaled
    to variance ``1 / d_in``, the distribution of ``dense_init``'s and
    ``multi_head_attention_init``'s weights); biases are zero, norms start at scale 1. All
    matrices come from one draw and all embeddings from another: a program with few random
    draws compiles much faster than one with a draw per matrix.
    """
    d_model, dt = block[0], block[-1]
    cdt = _checks.compute_dtype(dt)
    mats = [((f"blocks_{i}", *path), shape) for i in range(num_layers)
            for path, shape in _weight_shapes(block)]
    if head_out is not None:
        mats.append((("head",), (d_model, head_out)))
    k_w, k_e = jax.random.split(key)
    total = sum(a * b for _, (a, b) in mats)
    z = jax.random.truncated_normal(k_w, -2.0, 2.0, (total,), cdt) / _TRUNCATED_STD
    params: dict[str, Any] = {}
    if vocab_size is not None:
        tables = [("token_embedding", (vocab_size, d_model), 1 / math.sqrt(d_model))]
        if max_len is not None:
            tables.append(("position_embedding", (max_len, d_model), _POSITION_STD))
        e = jax.random.normal(k_e, (sum(a * b for _, (a, b), _ in tables),), cdt)
        start = 0
        for name, (a, b), std in tables:
            table = e[start:start + a * b].reshape(a, b) * jnp.asarray(std, cdt)
            params[name] = {"table": table.astype(dt)}
            start += a * b
    for i in range(num_layers):
        params[f"blocks_{i}"] = {
            "attention_norm": _norm_init(block[5], d_model, dt),
            "attention": {},
            "ffn_norm": _norm_init(block[5], d_model, dt),
            "ffn": {},
        }
    start = 0
    for path, (a, b) in mats:
        w = (z[start:start + a * b].reshape(a, b) * jnp.asarray(1 / math.sqrt(a), cdt)).astype(dt)
        start += a * b
        if path == ("head",):
            params["head"] = {"w": w, "b": jnp.zeros((b,), dt)}
            continue
        entry = {"w": w}
        if path[1:] == ("ffn", "layers_0") or path[1:] == ("ffn", "layers_1"):
            entry["b"] = jnp.zeros((b,), dt)
        params[path[0]][path[1]][path[2]] = entry
    if vocab_size is not None:
        params["final_norm"] = _norm_init(block[5], d_model, dt)
    return params


def _norm_init(norm: str, d: int, dt: Any) -> dict[str, jax.Array]:
    if norm == "layer_norm":
        return _layers.layer_norm_init(None, d, dtype=dt)
    return _layers.rms_norm_init(None, d, dtype=dt)


def _apply_norm(params: Any, x: jax.Array) -> jax.Array:
    if "bias" in params:
        return _layers.layer_norm(params, x)
    return _layers.rms_norm(params, x)


def _check_block(params: Any, fn: str, num_heads: int, path: str) -> int:
    """Validate a block's parameter structure; return its number of key/value heads."""
    names = ("attention_norm", "attention", "ffn_norm", "ffn")
    if not isinstance(params, dict) or any(n not in params for n in names):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        _checks.fail(
            fn,
            f"`{path}` must be a dict with entries 'attention_norm', 'attention', 'ffn_norm', "
            f"'ffn' (as made by transformer_block_init), got {got}",
        )
    for n in ("attention_norm", "ffn_norm"):
        p = params[n]
        ok = isinstance(p, dict) and "scale" in p and all(k in ("scale", "bias") for k in p)
        if not ok:
            got = sorted(p) if isinstance(p, dict) else type(p).__name__
            _checks.fail(
                fn, f"`{path}['{n}']` must be a norm with 'scale' (and 'bias' for a layer norm), "
                f"got {got}"
            )
    f = params["ffn"]
    if not (isinstance(f, dict) and ("layers_0" in f or "gate" in f)):
        got = sorted(f) if isinstance(f, dict) else type(f).__name__
        _checks.fail(
            fn, f"`{path}['ffn']` must be MLP ('layers_0', 'layers_1') or SwiGLU ('gate', 'up', "
            f"'down') parameters, got {got}"
        )
    att = params["attention"]
    try:
        width = _shape(att["query"]["w"])[1]
        kv_width = _shape(att["key"]["w"])[1]
    except (KeyError, TypeError, IndexError):
        _checks.fail(
            fn, f"`{path}['attention']` must hold 'query' and 'key' weights "
            "(as made by multi_head_attention_init)"
        )
    if width % num_heads:
        _checks.fail(
            fn, f"`num_heads` must divide the width N*H={width} of {path}['attention']['query'], "
            f"got num_heads={num_heads}"
        )
    head_dim = width // num_heads
    if kv_width % head_dim:
        _checks.fail(
            fn, f"`{path}['attention']['key']['w']` must have a multiple of the head dimension "
            f"H={head_dim} columns for num_heads={num_heads}, got shape {_shape(att['key']['w'])}"
        )
    return kv_width // head_dim


def _block(params, x, key, rate, mask, cache, *, num_heads, num_kv_heads, is_causal, active,
           return_weights, attention_fn):
    """One pre-norm block on validated inputs; returns (y, *cache, *weights)."""
    k1, k2 = (None, None) if key is None else jax.random.split(key)
    h = _apply_norm(params["attention_norm"], x)
    res = multi_head_attention(
        params["attention"], h, num_heads=num_heads, num_kv_heads=num_kv_heads, mask=mask,
        is_causal=is_causal, cache=cache, return_weights=return_weights,
        attention_fn=attention_fn,
    )
    res = res if isinstance(res, tuple) else (res,)
    x = x + _dropout(res[0], rate, k1, active)
    h = _apply_norm(params["ffn_norm"], x)
    if "gate" in params["ffn"]:
        f = _layers.swiglu(params["ffn"], h)
    else:
        f = _layers.mlp(params["ffn"], h, activation=jax.nn.gelu)
    x = x + _dropout(f, rate, k2, active)
    return (x, *res[1:])


_block_jit = jax.jit(
    _block,
    static_argnames=("num_heads", "num_kv_heads", "is_causal", "active", "return_weights",
                     "attention_fn"),
)


def transformer_block(
    params: dict[str, Any],
    x: ArrayLike,
    *,
    num_heads: int,
    mask: ArrayLike | None = None,
    is_causal: bool = False,
    cache: KVCache | None = None,
    key: jax.Array | None = None,
    dropout_rate: float = 0.0,
    deterministic: bool = True,
    return_weights: bool = False,
    attention_fn: Callable[..., Any] = dot_product_attention,
) -> Any:
    """Pre-norm transformer block: ``x + attention(norm(x))``, then ``x + ffn(norm(x))``.

    The feed-forward layer (MLP with gelu, or SwiGLU), the norms (layer or RMS) and the number of
    key/value heads are read from ``params``.

    Args:
        params: Parameters from :func:`transformer_block_init`.
        x: (B, T, D) inputs, or (T, D) for one sequence.
        num_heads: Query heads N (static), as given to :func:`transformer_block_init`.
        mask: Boolean attention mask, ``True`` = attend, broadcastable to (B, N, T, S).
        is_causal: Causal self-attention (by absolute position with a cache).
        cache: A :class:`~jaxla.nn.KVCache` of the block's attention (see
            :func:`~jaxla.nn.multi_head_attention`) to decode step by step.
        key: PRNG key for dropout (needed when ``dropout_rate > 0`` and not deterministic).
        dropout_rate: Dropout probability of the two residual branches, in ``[0, 1)``.
        deterministic: If True (default), no dropout.
        return_weights: Also return the attention weights (B, N, T, S).
        attention_fn: Attention kernel, e.g. :func:`~jaxla.nn.dot_product_attention` (default)
            or :func:`~jaxla.nn.chunked_attention`.

    Returns:
        ``y`` (B, T, D) in the dtype of ``x``; ``(y, cache)`` with a cache; the weights
        appended with ``return_weights=True``: ``(y, weights)`` or ``(y, cache, weights)``.

    Raises:
        TypeError: non-floating ``x``, non-boolean mask or options.
        ValueError: ``params`` that do not match ``x`` or ``num_heads``; a bad cache or mask;
            ``dropout_rate`` outside ``[0, 1)``; a missing ``key`` for dropout; NaN/Inf in ``x``
            (eagerly).

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.nn import transformer_block, transformer_block_init
        >>> params = transformer_block_init(jax.random.key(0), 16, 4, num_kv_heads=2)
        >>> x = jax.random.normal(jax.random.key(1), (2, 5, 16))
        >>> y = transformer_block(params, x, num_heads=4, is_causal=True)
        >>> y.shape
        (2, 5, 16)
    """
    fn = f"{_MODULE}.transformer_block"
    num_heads = _checks.check_int(num_heads, fn, "num_heads", min=1)
    is_causal = _checks.check_bool(is_causal, fn, "is_causal")
    return_weights = _checks.check_bool(return_weights, fn, "return_weights")
    num_kv_heads = _check_block(params, fn, num_heads, "params")
    active, rate = _check_dropout(fn, key, dropout_rate, deterministic)
    x = _checks.as_float_array(x, fn, "x", ndim=(2, 3), doc="(B, T, D) or (T, D)")
    kw = {"num_heads": num_heads, "num_kv_heads": num_kv_heads, "is_causal": is_causal,
          "return_weights": return_weights, "attention_fn": attention_fn}
    _checks.check_finite(x, fn, "x")
    if cache is not None:
        _check_cache_room(cache, x.shape[-2], fn)
    out = _block_jit(params, x, key if active else None, rate, mask, cache, **kw, active=active)
    return out[0] if len(out) == 1 else out


def _check_cache_room(cache: Any, T: int, fn: str, name: str = "cache") -> None:
    """With a concrete index, require room for ``T`` more positions (the jit would clamp)."""
    index = cache[2]
    L = _shape(cache[0])[-3] if np.ndim(cache[0]) >= 3 else None
    if L is not None and _checks.is_concrete(index) and np.ndim(index) == 0:
        if not 0 <= int(index) <= L - T:
            _checks.fail(
                fn,
                f"`{name}` must have room for the T={T} new tokens (index + T <= L={L}), "
                f"got index={int(index)}",
            )


# --------------------------------------------------------------------------------------------
# models


def _model_args(fn, vocab_size, d_model, num_heads, num_layers, max_len, num_kv_heads,
                mlp_ratio, ffn, norm, positions, dtype):
    vocab_size = _checks.check_int(vocab_size, fn, "vocab_size", min=1)
    num_layers = _checks.check_int(num_layers, fn, "num_layers", min=1)
    positions = _checks.check_option(positions, _POSITIONS, fn, "positions")
    if positions == "learned":
        if max_len is None:
            _checks.fail(fn, "`max_len` must be given for positions='learned', got None")
        max_len = _checks.check_int(max_len, fn, "max_len", min=1)
    else:
        max_len = None
    block = _block_args(fn, d_model, num_heads, num_kv_heads, mlp_ratio, ffn, norm, dtype)
    return vocab_size, num_layers, max_len, block


def _check_model(params: Any, fn: str, num_heads: int) -> tuple[int, tuple[int, ...]]:
    """Validate a model's structure; return (number of blocks, key/value heads per block)."""
    names = ("token_embedding", "blocks_0", "final_norm")
    if not isinstance(params, dict) or any(n not in params for n in names):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        _checks.fail(
            fn,
            "`params` must be a dict with entries 'token_embedding', 'blocks_0', ..., "
            f"'final_norm' (as made by the model's init), got {got}",
        )
    table = params["token_embedding"].get("table") if isinstance(
        params["token_embedding"], dict) else None
    if table is None or np.ndim(table) != 2:
        _checks.fail(fn, "`params['token_embedding']` must hold a 2-D 'table' (V, D)")
    n = _layers._num_layers(params, fn, "blocks")
    kv = tuple(_check_block(params[f"blocks_{i}"], fn, num_heads, f"params['blocks_{i}']")
               for i in range(n))
    return n, kv


def _tokens(tokens: Any, params: Any, fn: str) -> jax.Array:
    V = _shape(params["token_embedding"]["table"])[0]
    tokens = _layers._check_tokens(tokens, V, fn)
    _checks.check_ndim(tokens, fn, "tokens", (1, 2), "(B, T) or (T,)")
    if tokens.shape[-1] < 1:
        _checks.fail(fn, f"`tokens` must hold at least one token, got shape {_shape(tokens)}")
    return tokens


def _check_positions(params: Any, T: int, start: Any, fn: str) -> None:
    """Learned positions must cover ``start .. start + T - 1`` (checked when concrete)."""
    if "position_embedding" not in params:
        return
    max_len = _shape(params["position_embedding"]["table"])[0]
    if T > max_len:
        _checks.fail(
            fn, f"`tokens` must have at most max_len={max_len} positions (the learned "
            f"position table), got T={T}"
        )
    if _checks.is_concrete(start) and int(start) + T > max_len:
        _checks.fail(
            fn, f"`cache` must leave positions for the T={T} tokens within the learned "
            f"max_len={max_len}, got index={int(start)}"
        )


def _embed(params: dict[str, Any], tokens: jax.Array, start: Any) -> jax.Array:
    """Scaled token embeddings plus positions ``start .. start + T - 1``: (..., T, D)."""
    d_model = params["token_embedding"]["table"].shape[1]
    T = tokens.shape[-1]
    x = _layers.embedding(params["token_embedding"], tokens)
    x = x * jnp.asarray(math.sqrt(d_model), x.dtype)
    if "position_embedding" in params:
        pos_table = params["position_embedding"]["table"]
        pos = table_slice(pos_table, start, T).astype(x.dtype)  # LoRAWeight: applied factored
    else:
        pos = _sinusoidal(T, d_model, start, x.dtype)
    return x + jnp.reshape(pos, (1,) * (x.ndim - 2) + pos.shape)


def _check_caches(cache: Any, n: int, T: int, fn: str) -> tuple[KVCache, ...]:
    ok = isinstance(cache, tuple | list) and len(cache) == n and all(
        isinstance(c, tuple) and len(c) == 3 for c in cache)
    if not ok:
        got = f"{type(cache).__name__} of length {len(cache)}" if isinstance(
            cache, tuple | list) else type(cache).__name__
        _checks.fail(
            fn,
            f"`cache` must be a tuple of {n} KVCache, one per block (from init_decoder_cache), "
            f"got {got}",
            TypeError,
        )
    caches = tuple(KVCache(*c) for c in cache)
    for i, c in enumerate(caches):
        _check_cache_room(c, T, fn, f"cache[{i}]")
    return caches


def decoder_lm_init(
    key: jax.Array,
    vocab_size: int,
    d_model: int,
    num_heads: int,
    num_layers: int,
    *,
    max_len: int | None = None,
    num_kv_heads: int | None = None,
    mlp_ratio: float = 4,
    ffn: str = "mlp",
    norm: str = "layer_norm",
    positions: str = "learned",
    tie_embeddings: bool = True,
    dtype: Any = jnp.float32,
) -> dict[str, Any]:
    """Parameters of a decoder-only (GPT-style) language model.

    Args:
        key: PRNG key.
        vocab_size: Vocabulary size V (static int >= 1).
        d_model: Model width D (multiple of ``num_heads``).
        num_heads: Query heads N per block.
        num_layers: Number of transformer blocks (>= 1).
        max_len: Longest sequence (positions ``0 .. max_len - 1``); required for learned
            positions, unused for sinusoidal ones.
        num_kv_heads: Key/value heads K per block (grouped-query attention); default N.
        mlp_ratio: Feed-forward width relative to D (see :func:`transformer_block_init`).
        ffn: ``"mlp"`` or ``"swiglu"``.
        norm: ``"layer_norm"`` or ``"rms_norm"``.
        positions: ``"learned"`` (a (max_len, D) table) or ``"sinusoidal"`` (no parameters).
        tie_embeddings: If True, the output logits are ``h @ table.T`` with the token embedding
            table; otherwise a separate ``"head"`` dense layer (D, V) with bias.
        dtype: Floating dtype of the parameters.

    Returns:
        ``{"token_embedding": {"table": (V, D)}, "position_embedding": {"table": (max_len, D)}
        (learned only), "blocks_0": ..., "final_norm": ..., "head": {"w": (D, V), "b": (V,)}
        (untied only)}``.

    Raises:
        TypeError: non-int sizes, a non-floating dtype.
        ValueError: as :func:`transformer_block_init`; unknown ``positions``; learned positions
            without ``max_len``.

    Examples:
        >>> import jax
        >>> from jaxla.nn import decoder_lm_init
        >>> params = decoder_lm_init(jax.random.key(0), 50, 32, 4, 2, max_len=64)
        >>> sorted(params)
        ['blocks_0', 'blocks_1', 'final_norm', 'position_embedding', 'token_embedding']
    """
    fn = f"{_MODULE}.decoder_lm_init"
    tie_embeddings = _checks.check_bool(tie_embeddings, fn, "tie_embeddings")
    vocab_size, num_layers, max_len, block = _model_args(
        fn, vocab_size, d_model, num_heads, num_layers, max_len, num_kv_heads, mlp_ratio, ffn,
        norm, positions, dtype,
    )
    head = None if tie_embeddings else vocab_size
    return _init_params(key, block, num_layers, vocab_size, max_len, head)


def init_decoder_cache(
    params: dict[str, Any],
    batch: int,
    max_len: int,
    *,
    num_heads: int,
    dtype: Any = None,
) -> tuple[KVCache, ...]:
    """Empty key/value caches of a :func:`decoder_lm`, one per block.

    Args:
        params: Parameters from :func:`decoder_lm_init`.
        batch: Batch size B (static int >= 1).
        max_len: Number of positions L the caches hold (static int >= 1); with learned
            positions at most the model's ``max_len``.
        num_heads: Query heads N of the model.
        dtype: dtype of the cached keys and values; default the dtype of the parameters.

    Returns:
        A tuple of ``KVCache(k, v, index)``, one per block, with ``k``, ``v`` (B, L, K, H) zeros
        and ``index`` 0.

    Raises:
        ValueError: ``params`` that are not a decoder's; ``max_len`` beyond the learned positions.

    Examples:
        >>> import jax
        >>> from jaxla.nn import decoder_lm_init, init_decoder_cache
        >>> params = decoder_lm_init(jax.random.key(0), 50, 32, 4, 2, max_len=64, num_kv_heads=2)
        >>> cache = init_decoder_cache(params, 3, 16, num_heads=4)
        >>> len(cache), cache[0].k.shape
        (2, (3, 16, 2, 8))
    """
    fn = f"{_MODULE}.init_decoder_cache"
    num_heads = _checks.check_int(num_heads, fn, "num_heads", min=1)
    n, kv = _check_model(params, fn, num_heads)
    batch = _checks.check_int(batch, fn, "batch", min=1)
    max_len = _checks.check_int(max_len, fn, "max_len", min=1)
    if "position_embedding" in params:
        limit = _shape(params["position_embedding"]["table"])[0]
        if max_len > limit:
            _checks.fail(
                fn, f"`max_len`={max_len} exceeds the learned positions of the model "
                f"max_len={limit}"
            )
    caches = []
    for i in range(n):
        att = params[f"blocks_{i}"]["attention"]
        head_dim = _shape(att["query"]["w"])[1] // num_heads
        dt = att["key"]["w"].dtype if dtype is None else dtype
        caches.append(init_cache(batch, max_len, kv[i], head_dim, dt))
    return tuple(caches)


def _blocks(params, x, key, rate, mask, caches, *, kv, num_heads, is_causal, active,
            return_weights, attention_fn):
    """Run every block; returns (x, new caches, weights)."""
    n = len(kv)
    keys = None if key is None else jax.random.split(key, n)
    new_caches, weights = [], []
    for i in range(n):
        out = _block(
            params[f"blocks_{i}"], x, None if keys is None else keys[i], rate, mask,
            None if caches is None else caches[i], num_heads=num_heads, num_kv_heads=kv[i],
            is_causal=is_causal, active=active, return_weights=return_weights,
            attention_fn=attention_fn,
        )
        x = out[0]
        if caches is not None:
            new_caches.append(out[1])
        if return_weights:
            weights.append(out[-1])
    return x, tuple(new_caches), weights


def _decoder_lm(params, tokens, caches, key, rate, *, kv, num_heads, active, return_weights,
                attention_fn):
    start = 0 if caches is None else caches[0].index
    k_emb, k_blocks = (None, None) if key is None else jax.random.split(key)
    x = _embed(params, tokens, start)
    x = _dropout(x, rate, k_emb, active)
    x, new_caches, weights = _blocks(
        params, x, k_blocks, rate, None, caches, kv=kv, num_heads=num_heads, is_causal=True,
        active=active, return_weights=return_weights, attention_fn=attention_fn,
    )
    h = _apply_norm(params["final_norm"], x)
    if "head" in params:
        logits = _layers.dense(params["head"], h)
    else:
        logits = _layers.embedding_attend(params["token_embedding"], h)
    outs: tuple[Any, ...] = (logits,)
    if caches is not None:
        outs += (new_caches,)
    if return_weights:
        outs += (jnp.stack(weights),)
    return outs


_decoder_lm_jit = jax.jit(
    _decoder_lm,
    static_argnames=("kv", "num_heads", "active", "return_weights", "attention_fn"),
)


def decoder_lm(
    params: dict[str, Any],
    tokens: ArrayLike,
    *,
    num_heads: int,
    cache: tuple[KVCache, ...] | None = None,
    key: jax.Array | None = None,
    dropout_rate: float = 0.0,
    deterministic: bool = True,
    return_weights: bool = False,
    attention_fn: Callable[..., Any] = dot_product_attention,
) -> Any:
    """Decoder-only language model: next-token logits at every position (causal attention).

    ``logits[b, t]`` depends only on ``tokens[b, :t + 1]``. With a ``cache`` (from
    :func:`init_decoder_cache`) the tokens are a continuation: they sit at positions
    ``index .. index + T - 1``, attend everything fed before, and the updated caches are
    returned, so feeding a sequence in pieces (e.g. token by token) gives the logits of one
    call on the whole sequence.

    Args:
        params: Parameters from :func:`decoder_lm_init`.
        tokens: (B, T) integer token ids in ``[0, V)``, or (T,) for one sequence (then the
            caches have no batch axis, e.g. under ``jax.vmap``).
        num_heads: Query heads N (static), as given to :func:`decoder_lm_init`.
        cache: Tuple of ``KVCache``, one per block, from :func:`init_decoder_cache`.
        key: PRNG key for dropout.
        dropout_rate: Dropout probability (embeddings and residual branches), in ``[0, 1)``.
        deterministic: If True (default), no dropout.
        return_weights: Also return the attention weights of every block.
        attention_fn: Attention kernel passed to every block (e.g.
            :func:`~jaxla.nn.chunked_attention` for long sequences without a cache).

    Returns:
        ``logits`` (B, T, V) in the dtype of the parameters; ``(logits, cache)`` with a cache;
        with ``return_weights=True`` the weights, stacked over blocks as
        (num_layers, B, N, T, S), are appended.

    Raises:
        TypeError: non-integer tokens; a malformed cache.
        ValueError: ids outside ``[0, V)`` (eagerly); more tokens than the learned positions or
            the cache hold; ``params`` that do not match ``num_heads``; bad dropout options.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.nn import decoder_lm, decoder_lm_init, init_decoder_cache
        >>> params = decoder_lm_init(jax.random.key(0), 50, 32, 4, 2, max_len=16)
        >>> tokens = jax.random.randint(jax.random.key(1), (2, 6), 0, 50)
        >>> logits = decoder_lm(params, tokens, num_heads=4)
        >>> logits.shape
        (2, 6, 50)

        Feeding the same tokens in two pieces with a cache gives the same logits:

        >>> cache = init_decoder_cache(params, 2, 16, num_heads=4)
        >>> first, cache = decoder_lm(params, tokens[:, :4], num_heads=4, cache=cache)
        >>> second, cache = decoder_lm(params, tokens[:, 4:], num_heads=4, cache=cache)
        >>> bool(jnp.allclose(jnp.concatenate([first, second], axis=1), logits, atol=1e-4))
        True
    """
    fn = f"{_MODULE}.decoder_lm"
    num_heads = _checks.check_int(num_heads, fn, "num_heads", min=1)
    return_weights = _checks.check_bool(return_weights, fn, "return_weights")
    n, kv = _check_model(params, fn, num_heads)
    active, rate = _check_dropout(fn, key, dropout_rate, deterministic)
    tokens = _tokens(tokens, params, fn)
    T = tokens.shape[-1]
    caches = None if cache is None else _check_caches(cache, n, T, fn)
    _check_positions(params, T, 0 if caches is None else caches[0].index, fn)
    key = key if active else None
    kw = {"kv": kv, "num_heads": num_heads, "active": active, "return_weights": return_weights,
          "attention_fn": attention_fn}
    outs = _decoder_lm_jit(params, tokens, caches, key, rate, **kw)
    return outs[0] if len(outs) == 1 else outs


def _sample(key: jax.Array, logits: jax.Array, temperature: Any) -> jax.Array:
    """Next tokens from (..., V) logits: argmax at temperature 0, else a categorical draw."""
    best = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    t = jnp.asarray(temperature, logits.dtype)
    safe = jnp.where(t > 0, t, jnp.ones((), logits.dtype))
    drawn = jax.random.categorical(key, logits / safe, axis=-1).astype(jnp.int32)
    return jnp.where(t > 0, drawn, best)


def generate(
    key: jax.Array,
    params: dict[str, Any],
    prompt: ArrayLike,
    num_tokens: int,
    *,
    num_heads: int,
    temperature: float = 1.0,
) -> jax.Array:
    """Sample a continuation of ``prompt`` from a :func:`decoder_lm`, one token per step.

    The prompt is fed in one call that fills fresh key/value caches; then each of the
    ``num_tokens - 1`` remaining steps (a ``lax.scan``) draws the next token from the last
    logits and feeds it back through the caches, so every step costs one token's forward pass.

    Args:
        key: PRNG key (split once per generated token).
        params: Parameters from :func:`decoder_lm_init`.
        prompt: (B, P) integer token ids (P >= 1), or (P,) for one sequence; all prompts of a
            batch have the same length.
        num_tokens: Number of tokens to generate (static int >= 1). With learned positions
            ``P + num_tokens - 1`` must not exceed the model's ``max_len``.
        num_heads: Query heads N (static).
        temperature: Divides the logits before sampling; 0 gives greedy decoding (argmax).
            May be traced under ``jit``.

    Returns:
        (B, num_tokens) (or (num_tokens,)) int32 generated tokens, without the prompt.

    Raises:
        TypeError: non-integer ``prompt``.
        ValueError: ids outside ``[0, V)`` (eagerly); a continuation longer than the learned
            positions; ``temperature < 0``; ``num_tokens < 1``.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.nn import decoder_lm, decoder_lm_init, generate
        >>> params = decoder_lm_init(jax.random.key(0), 20, 16, 2, 1, max_len=32)
        >>> prompt = jnp.array([[1, 2, 3]])
        >>> out = generate(jax.random.key(1), params, prompt, 5, num_heads=2, temperature=0.0)
        >>> out.shape
        (1, 5)

        Greedy decoding picks the argmax of the full forward pass at every step:

        >>> seq = jnp.concatenate([prompt, out], axis=1)
        >>> logits = decoder_lm(params, seq, num_heads=2)
        >>> bool(jnp.array_equal(logits[:, 2:-1].argmax(-1), out))
        True
    """
    fn = f"{_MODULE}.generate"
    num_heads = _checks.check_int(num_heads, fn, "num_heads", min=1)
    num_tokens = _checks.check_int(num_tokens, fn, "num_tokens", min=1)
    temperature = _checks.check_positive(temperature, fn, "temperature", allow_zero=True)
    _, kv = _check_model(params, fn, num_heads)
    prompt = _tokens(prompt, params, fn)
    P = prompt.shape[-1]
    if "position_embedding" in params:
        limit = _shape(params["position_embedding"]["table"])[0]
        if P + num_tokens - 1 > limit:
            _checks.fail(
                fn,
                f"`num_tokens` must fit the learned positions: prompt length P={P} + "
                f"num_tokens={num_tokens} - 1 exceeds max_len={limit}",
            )
    # the temperature is traced: greedy and sampled decoding share one compiled program
    return _generate(key, params, prompt, temperature, kv=kv, num_heads=num_heads,
                     num_tokens=num_tokens)


@functools.partial(jax.jit, static_argnames=("kv", "num_heads", "num_tokens"))
def _generate(key, params, prompt, temperature, *, kv, num_heads, num_tokens):
    batched = prompt.ndim == 2
    p2 = prompt if batched else prompt[None]
    B, P = p2.shape
    L = P + num_tokens - 1
    caches = tuple(
        init_cache(B, L, kv[i], params[f"blocks_{i}"]["attention"]["query"]["w"].shape[1]
                   // num_heads, params[f"blocks_{i}"]["attention"]["key"]["w"].dtype)
        for i in range(len(kv))
    )
    kw = {"kv": kv, "num_heads": num_heads, "active": False, "return_weights": False,
          "attention_fn": dot_product_attention}
    logits, caches = _decoder_lm(params, p2, caches, None, 0.0, **kw)
    keys = jax.random.split(key, num_tokens)
    first = _sample(keys[0], logits[:, -1], temperature)

    def step(carry, k):
        tok, caches = carry
        logits, caches = _decoder_lm(params, tok[:, None], caches, None, 0.0, **kw)
        nxt = _sample(k, logits[:, -1], temperature)
        return (nxt, caches), nxt

    _, rest = lax.scan(step, (first, caches), keys[1:])
    out = jnp.concatenate([first[:, None], jnp.swapaxes(rest, 0, 1)], axis=1)
    return out if batched else out[0]


def encoder_classifier_init(
    key: jax.Array,
    vocab_size: int,
    num_classes: int,
    d_model: int,
    num_heads: int,
    num_layers: int,
    *,
    max_len: int | None = None,
    num_kv_heads: int | None = None,
    mlp_ratio: float = 4,
    ffn: str = "mlp",
    norm: str = "layer_norm",
    positions: str = "learned",
    dtype: Any = jnp.float32,
) -> dict[str, Any]:
    """Parameters of a transformer encoder that classifies token sequences.

    Args:
        key: PRNG key.
        vocab_size: Vocabulary size V (static int >= 1).
        num_classes: Number of classes C (static int >= 1).
        d_model: Model width D (multiple of ``num_heads``).
        num_heads: Query heads N per block.
        num_layers: Number of transformer blocks (>= 1).
        max_len: Longest sequence; required for learned positions.
        num_kv_heads: Key/value heads K per block; default N.
        mlp_ratio: Feed-forward width relative to D.
        ffn: ``"mlp"`` or ``"swiglu"``.
        norm: ``"layer_norm"`` or ``"rms_norm"``.
        positions: ``"learned"`` or ``"sinusoidal"``.
        dtype: Floating dtype of the parameters.

    Returns:
        ``{"token_embedding", "position_embedding" (learned only), "blocks_0", ...,
        "final_norm", "head": {"w": (D, C), "b": (C,)}}``.

    Raises:
        TypeError, ValueError: as :func:`decoder_lm_init`.

    Examples:
        >>> import jax
        >>> from jaxla.nn import encoder_classifier_init
        >>> params = encoder_classifier_init(jax.random.key(0), 50, 3, 32, 4, 1, max_len=20)
        >>> params["head"]["w"].shape
        (32, 3)
    """
    fn = f"{_MODULE}.encoder_classifier_init"
    num_classes = _checks.check_int(num_classes, fn, "num_classes", min=1)
    vocab_size, num_layers, max_len, block = _model_args(
        fn, vocab_size, d_model, num_heads, num_layers, max_len, num_kv_heads, mlp_ratio, ffn,
        norm, positions, dtype,
    )
    return _init_params(key, block, num_layers, vocab_size, max_len, num_classes)


def _encoder(params, tokens, lengths, key, rate, *, kv, num_heads, active, attention_fn):
    batched = tokens.ndim == 2
    T = tokens.shape[-1]
    mask = valid = None
    if lengths is not None:
        l1 = lengths.reshape(-1)
        mask = padding_mask(l1, T)  # (B or 1, 1, 1, T)
        valid = jnp.arange(T)[None, :] < l1[:, None]  # (B or 1, T)
        if not batched:
            mask, valid = mask[0], valid[0]
    k_emb, k_blocks = (None, None) if key is None else jax.random.split(key)
    x = _embed(params, tokens, 0)
    x = _dropout(x, rate, k_emb, active)
    x, _, _ = _blocks(
        params, x, k_blocks, rate, mask, None, kv=kv, num_heads=num_heads, is_causal=False,
        active=active, return_weights=False, attention_fn=attention_fn,
    )
    h = _apply_norm(params["final_norm"], x)
    cdt = _checks.compute_dtype(h.dtype)
    if valid is None:
        pooled = jnp.mean(h.astype(cdt), axis=-2)
    else:
        w = valid.astype(cdt)
        total = jnp.sum(h.astype(cdt) * w[..., None], axis=-2)
        pooled = total / jnp.maximum(jnp.sum(w, axis=-1, keepdims=True), 1)
    return _layers.dense(params["head"], pooled.astype(h.dtype))


_encoder_jit = jax.jit(
    _encoder, static_argnames=("kv", "num_heads", "active", "attention_fn")
)


def encoder_classifier(
    params: dict[str, Any],
    tokens: ArrayLike,
    *,
    num_heads: int,
    lengths: ArrayLike | None = None,
    key: jax.Array | None = None,
    dropout_rate: float = 0.0,
    deterministic: bool = True,
    attention_fn: Callable[..., Any] = dot_product_attention,
) -> jax.Array:
    """Transformer encoder classifier: embeddings, bidirectional blocks, mean pooling, dense head.

    The final-normalized features are averaged over the real tokens of each sequence (the first
    ``lengths[b]``; padded positions are masked out of attention as keys and out of the mean)
    and mapped to class logits by the ``"head"`` dense layer.

    Args:
        params: Parameters from :func:`encoder_classifier_init`.
        tokens: (B, T) integer token ids, or (T,) for one sequence.
        num_heads: Query heads N (static).
        lengths: (B,) (or scalar for one sequence) numbers of real tokens, in ``[1, T]``;
            default all T.
        key: PRNG key for dropout.
        dropout_rate: Dropout probability in ``[0, 1)``.
        deterministic: If True (default), no dropout.
        attention_fn: Attention kernel passed to every block.

    Returns:
        (B, C) (or (C,)) class logits in the dtype of the parameters.

    Raises:
        TypeError: non-integer tokens or lengths.
        ValueError: ids outside ``[0, V)`` (eagerly); lengths outside ``[1, T]`` (eagerly);
            more tokens than the learned positions; bad dropout options.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.nn import encoder_classifier, encoder_classifier_init
        >>> params = encoder_classifier_init(jax.random.key(0), 50, 3, 32, 4, 1, max_len=20)
        >>> tokens = jax.random.randint(jax.random.key(1), (4, 10), 0, 50)
        >>> lengths = jnp.array([10, 7, 3, 1])
        >>> encoder_classifier(params, tokens, num_heads=4, lengths=lengths).shape
        (4, 3)
    """
    fn = f"{_MODULE}.encoder_classifier"
    num_heads = _checks.check_int(num_heads, fn, "num_heads", min=1)
    _, kv = _check_model(params, fn, num_heads)
    if "head" not in params:
        _checks.fail(fn, f"`params` must have a 'head' dense layer (D, C), got {sorted(params)}")
    active, rate = _check_dropout(fn, key, dropout_rate, deterministic)
    tokens = _tokens(tokens, params, fn)
    T = tokens.shape[-1]
    _check_positions(params, T, 0, fn)
    if lengths is not None:
        lengths = lengths if isinstance(lengths, jax.Array) else jnp.asarray(lengths)
        if not jnp.issubdtype(lengths.dtype, jnp.integer):
            _checks.fail(
                fn, f"`lengths` must be an integer array, got dtype {lengths.dtype}", TypeError
            )
        want = (tokens.shape[0],) if tokens.ndim == 2 else ()
        if _shape(lengths) != want:
            _checks.fail(
                fn, f"`lengths` must have shape {want} for `tokens` of shape {_shape(tokens)}, "
                f"got shape {_shape(lengths)}"
            )
        if _checks.is_concrete(lengths) and lengths.size:
            arr = np.asarray(lengths)
            if arr.min() < 1 or arr.max() > T:
                _checks.fail(
                    fn, f"`lengths` must lie in [1, T={T}], got values in "
                    f"[{int(arr.min())}, {int(arr.max())}]"
                )
    key = key if active else None
    kw = {"kv": kv, "num_heads": num_heads, "active": active, "attention_fn": attention_fn}
    return _encoder_jit(params, tokens, lengths, key, rate, **kw)
