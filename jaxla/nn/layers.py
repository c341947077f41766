"""Layers as pairs of pure functions, ``xxx_init(key, ...) -> params`` and ``xxx(params, x, ...)``.

Parameters are dicts with stable names (``{"w": (d_in, d_out), "b": (d_out,)}``, nested by layer
name), so a path such as ``params["layers_1"]["w"]`` addresses a leaf for LoRA targeting, optax
masks or per-layer curvature. Every forward pass is a sequence of matrix products (through
``jaxla._numerics.matmul``, at ``precision=HIGHEST``) and elementwise functions.

Conventions followed by every layer here:

* Inputs may carry any leading batch axes: ``dense`` maps ``(..., d_in)`` to ``(..., d_out)``,
  norms normalize the last axis, ``conv2d`` and the pools take ``(B, H, W, C)`` (NHWC) or one
  image ``(H, W, C)``.
* Outputs have the dtype of ``x``. float16/bfloat16 inputs are computed in float32 (statistics
  of the norms too) and rounded at the end; a float32 input stays float32 when float64 is
  enabled and the parameters are float64.
* ``init`` functions take the key first, also when they draw nothing (norms), so that every
  layer fits :func:`serial`. Shape-setting sizes are static Python ints; options are
  keyword-only; string options are validated.
* Values are not inspected: NaN/Inf in ``x`` propagate to the output, as in any IEEE
  arithmetic (:func:`embedding` checks the token ids of a concrete input, since an out-of-range
  id would otherwise give silent garbage).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxla import _checks
from jaxla._checks import shape_of as _shape
from jaxla._lora_weight import dense_product, table_rows, transposed_product
from jaxla._numerics import HIGHEST
from jaxla.nn import initializers as _init

__all__ = [
    "ACTIVATIONS",
    "Layer",
    "avg_pool",
    "conv2d",
    "conv2d_init",
    "dense",
    "dense_init",
    "dropout",
    "embedding",
    "embedding_attend",
    "embedding_init",
    "glu",
    "glu_init",
    "layer_norm",
    "layer_norm_init",
    "max_pool",
    "mlp",
    "mlp_init",
    "rms_norm",
    "rms_norm_init",
    "serial",
    "swiglu",
    "swiglu_init",
]

_MODULE = "jaxla.nn"

ACTIVATIONS: tuple[str, ...] = tuple(
    name
    for name in (
        "celu", "elu", "gelu", "hard_sigmoid", "hard_silu", "hard_swish", "hard_tanh",
        "identity", "leaky_relu", "log_sigmoid", "mish", "relu", "relu6", "selu", "sigmoid",
        "silu", "soft_sign", "softplus", "sparse_plus", "sparse_sigmoid", "squareplus", "swish",
        "tanh",
    )
    if hasattr(jax.nn, name)
)
"""Names accepted where an ``activation`` may be a string: the elementwise ``jax.nn`` functions."""


# --------------------------------------------------------------------------------------------
# shared helpers


def _check_callable(f: Any, fn: str, name: str) -> Callable[..., Any]:
    if not callable(f):
        _checks.fail(fn, f"`{name}` must be callable, got {f!r}", TypeError)
    return f


def _resolve_activation(activation: Any, fn: str) -> Callable[..., Any]:
    """A callable as is, or the ``jax.nn`` function of that name."""
    if isinstance(activation, str):
        _checks.check_option(activation, ACTIVATIONS, fn, "activation")
        return getattr(jax.nn, activation)
    if not callable(activation):
        _checks.fail(
            fn,
            f"`activation` must be a callable or the name of a jax.nn activation, "
            f"got {activation!r}",
            TypeError,
        )
    return activation


def _entry(params: Any, fn: str, name: str, ndim: int, doc: str, *, path: str = "params") -> Any:
    """``params[name]``, required to be an array of rank ``ndim``."""
    if not isinstance(params, dict) or name not in params:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        _checks.fail(fn, f"`{path}` must be a dict with an entry '{name}' {doc}, got {got}")
    value = params[name]
    _checks.check_ndim(value, fn, f"{path}['{name}']", ndim, doc)
    return value


def _compute(x: jax.Array, *others: Any) -> Any:
    """Compute dtype for ``x`` and parameters: their common dtype, float16/bfloat16 upcast."""
    return _checks.compute_dtype(jnp.result_type(x, *others))


def _row(b: jax.Array, ndim: int, cdt: Any) -> jax.Array:
    """A (d,) vector reshaped to broadcast against a rank-``ndim`` array (explicit ranks)."""
    return b.astype(cdt).reshape((1,) * (ndim - 1) + (-1,))


# --------------------------------------------------------------------------------------------
# dense and mlp


def dense_init(
    key: jax.Array,
    d_in: int,
    d_out: int,
    *,
    use_bias: bool = True,
    w_init: _init.Initializer = _init.lecun_normal,
    b_init: _init.Initializer = _init.zeros,
    dtype: Any = jnp.float32,
) -> dict[str, jax.Array]:
    """Parameters of a dense (fully connected) layer ``y = x W + b``.

    Args:
        key: PRNG key.
        d_in: Input features (static int >= 1).
        d_out: Output features (static int >= 1).
        use_bias: Whether the layer has a bias ``b``.
        w_init: Initializer of ``w`` (default :func:`~jaxla.nn.lecun_normal`, variance
            ``1 / d_in``).
        b_init: Initializer of ``b`` (default zeros).
        dtype: Floating dtype of the parameters.

    Returns:
        ``{"w": (d_in, d_out), "b": (d_out,)}`` (no ``"b"`` when ``use_bias=False``).

    Examples:
        >>> import jax
        >>> from jaxla.nn import dense_init
        >>> params = dense_init(jax.random.key(0), 3, 4)
        >>> {name: p.shape for name, p in params.items()}
        {'w': (3, 4), 'b': (4,)}
    """
    fn = f"{_MODULE}.dense_init"
    d_in = _checks.check_int(d_in, fn, "d_in", min=1)
    d_out = _checks.check_int(d_out, fn, "d_out", min=1)
    use_bias = _checks.check_bool(use_bias, fn, "use_bias")
    dt = _checks.check_float_dtype(dtype, fn)
    _check_callable(w_init, fn, "w_init")
    _check_callable(b_init, fn, "b_init")
    kw, kb = jax.random.split(key)
    params = {"w": w_init(kw, (d_in, d_out), dt)}
    if use_bias:
        params["b"] = b_init(kb, (d_out,), dt)
    return params


def _dense_params(params: Any, fn: str, path: str = "params") -> tuple[jax.Array, Any]:
    w = _entry(params, fn, "w", 2, "(d_in, d_out)", path=path)
    b = params.get("b")
    if b is not None:
        _checks.check_ndim(b, fn, f"{path}['b']", 1, "(d_out,)")
        if _shape(b)[0] != _shape(w)[1]:
            _checks.fail(
                fn,
                f"`{path}['b']` must have shape (d_out,)=({_shape(w)[1]},) to match "
                f"{path}['w'] of shape {_shape(w)}, got shape {_shape(b)}",
            )
    return w, b


def _check_features(x: jax.Array, d: int, fn: str, what: str, name: str = "x") -> None:
    if x.shape[-1] != d:
        _checks.fail(
            fn, f"`{name}` must have {d} features (last axis) to match {what}, "
            f"got shape {_shape(x)}"
        )


def _dense(w: jax.Array, b: Any, x: jax.Array, cdt: Any) -> jax.Array:
    """``x W + b`` in ``cdt`` (no checks, no cast back); ``W`` may be a ``LoRAWeight``."""
    y = dense_product(x, w, cdt)
    if b is not None:
        y = y + _row(b, y.ndim, cdt)
    return y


def dense(params: dict[str, jax.Array], x: ArrayLike) -> jax.Array:
    """Dense layer ``y = x W + b``, the product at ``precision=HIGHEST``.

    Args:
        params: ``{"w": (d_in, d_out), "b": (d_out,)}`` from :func:`dense_init` (``"b"``
            optional). ``"w"`` may be a :class:`jaxla.lora.LoRAWeight` (as made by
            :func:`jaxla.lora.apply`): then ``y = x W + scale (x A) B + b`` without forming
            ``A B``; the same holds in :func:`mlp`, :func:`glu`, :func:`swiglu` and
            :func:`~jaxla.nn.multi_head_attention`.
        x: (..., d_in) inputs, any number of leading batch axes.

    Returns:
        (..., d_out) outputs in the dtype of ``x``.

    Raises:
        TypeError: non-floating ``x``.
        ValueError: ``params`` without a 2-D ``"w"``, or ``x`` whose last axis is not ``d_in``.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.nn import dense, dense_init
        >>> params = dense_init(jax.random.key(0), 3, 4)
        >>> x = jnp.ones((2, 5, 3))
        >>> y = dense(params, x)
        >>> y.shape, bool(jnp.allclose(y[1, 2], x[1, 2] @ params["w"] + params["b"], atol=1e-6))
        ((2, 5, 4), True)
    """
    fn = f"{_MODULE}.dense"
    w, b = _dense_params(params, fn)
    x = _checks.as_float_array(x, fn, "x", min_ndim=1, doc="(..., d_in)")
    _check_features(x, _shape(w)[0], fn, f"params['w'] of shape {_shape(w)}")
    return _dense(w, b, x, _compute(x, w)).astype(x.dtype)


def mlp_init(
    key: jax.Array,
    sizes: Sequence[int],
    *,
    use_bias: bool = True,
    w_init: _init.Initializer = _init.lecun_normal,
    dtype: Any = jnp.float32,
) -> dict[str, dict[str, jax.Array]]:
    """Parameters of a multi-layer perceptron with widths ``sizes = (d_in, h_1, ..., d_out)``.

    Args:
        key: PRNG key (split once per layer).
        sizes: At least two widths (static ints >= 1): the input, the hidden layers, the output.
        use_bias: Whether the dense layers have biases.
        w_init: Initializer of the weights (default :func:`~jaxla.nn.lecun_normal`).
        dtype: Floating dtype of the parameters.

    Returns:
        ``{"layers_0": dense params (sizes[0], sizes[1]), "layers_1": ..., ...}``, one
        :func:`dense_init` entry per consecutive pair of widths.

    Examples:
        >>> import jax
        >>> from jaxla.nn import mlp_init
        >>> params = mlp_init(jax.random.key(0), [4, 16, 16, 2])
        >>> {name: p["w"].shape for name, p in params.items()}
        {'layers_0': (4, 16), 'layers_1': (16, 16), 'layers_2': (16, 2)}
    """
    fn = f"{_MODULE}.mlp_init"
    if not isinstance(sizes, Sequence) or isinstance(sizes, str) or len(sizes) < 2:
        _checks.fail(
            fn, f"`sizes` must be a sequence of at least 2 widths (d_in, ..., d_out), "
            f"got {sizes!r}",
        )
    sizes = [_checks.check_int(s, fn, f"sizes[{i}]", min=1) for i, s in enumerate(sizes)]
    use_bias = _checks.check_bool(use_bias, fn, "use_bias")
    dt = _checks.check_float_dtype(dtype, fn)
    _check_callable(w_init, fn, "w_init")
    keys = jax.random.split(key, len(sizes) - 1)
    return {
        f"layers_{i}": dense_init(k, a, b, use_bias=use_bias, w_init=w_init, dtype=dt)
        for i, (k, a, b) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True))
    }


def _num_layers(params: Any, fn: str, prefix: str = "layers") -> int:
    """Number of consecutive entries ``{prefix}_0, {prefix}_1, ...`` of a dict."""
    if not isinstance(params, dict) or f"{prefix}_0" not in params:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        _checks.fail(
            fn, f"`params` must be a dict with entries '{prefix}_0', '{prefix}_1', ..., got {got}"
        )
    n = 0
    while f"{prefix}_{n}" in params:
        n += 1
    return n


def mlp(
    params: dict[str, dict[str, jax.Array]],
    x: ArrayLike,
    *,
    activation: Callable[[jax.Array], jax.Array] | str = jax.nn.relu,
    activate_final: bool = False,
) -> jax.Array:
    """Multi-layer perceptron: dense layers with ``activation`` between them.

    Args:
        params: ``{"layers_0": ..., "layers_1": ...}`` from :func:`mlp_init`.
        x: (..., d_in) inputs, any number of leading batch axes.
        activation: An elementwise function such as ``jax.nn.gelu`` (passed as is), or the name
            of one of :data:`ACTIVATIONS` (``"gelu"`` is ``jax.nn.gelu``).
        activate_final: Also apply ``activation`` after the last layer.

    Returns:
        (..., d_out) outputs in the dtype of ``x``.

    Raises:
        TypeError: non-floating ``x``; an ``activation`` that is neither callable nor a string.
        ValueError: an unknown activation name; ``params`` without ``"layers_0"``; widths that
            do not chain.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.nn import mlp, mlp_init
        >>> params = mlp_init(jax.random.key(0), [4, 8, 2])
        >>> x = jnp.ones(4)
        >>> y = mlp(params, x, activation="gelu")
        >>> h = jax.nn.gelu(x @ params["layers_0"]["w"] + params["layers_0"]["b"])
        >>> bool(jnp.allclose(y, h @ params["layers_1"]["w"] + params["layers_1"]["b"],
        ...                   atol=1e-6))
        True
    """
    fn = f"{_MODULE}.mlp"
    act = _resolve_activation(activation, fn)
    activate_final = _checks.check_bool(activate_final, fn, "activate_final")
    n = _num_layers(params, fn)
    layers = [_dense_params(params[f"layers_{i}"], fn, f"params['layers_{i}']") for i in range(n)]
    x = _checks.as_float_array(x, fn, "x", min_ndim=1, doc="(..., d_in)")
    _check_features(x, _shape(layers[0][0])[0], fn, "params['layers_0']['w']")
    for i in range(1, n):
        prev, cur = _shape(layers[i - 1][0]), _shape(layers[i][0])
        if cur[0] != prev[1]:
            _checks.fail(
                fn,
                f"`params['layers_{i}']['w']` must have {prev[1]} rows to follow layers_{i - 1} "
                f"of shape {prev}, got shape {cur}",
            )
    cdt = _compute(x, *(w for w, _ in layers))
    h = x.astype(cdt)
    for i, (w, b) in enumerate(layers):
        h = _dense(w, b, h, cdt)
        if i < n - 1 or activate_final:
            h = act(h)
    return h.astype(x.dtype)


# --------------------------------------------------------------------------------------------
# normalization


def layer_norm_init(
    key: Any, d: int, *, use_bias: bool = True, dtype: Any = jnp.float32
) -> dict[str, jax.Array]:
    """Parameters of a layer normalization: scale ones, bias zeros.

    Args:
        key: Unused (nothing is random); present so that every layer's init takes a key.
        d: Number of features normalized together (static int >= 1).
        use_bias: Whether the layer has a bias.
        dtype: Floating dtype of the parameters.

    Returns:
        ``{"scale": (d,), "bias": (d,)}`` (no ``"bias"`` when ``use_bias=False``).

    Examples:
        >>> from jaxla.nn import layer_norm_init
        >>> {name: p.shape for name, p in layer_norm_init(None, 8).items()}
        {'scale': (8,), 'bias': (8,)}
    """
    fn = f"{_MODULE}.layer_norm_init"
    d = _checks.check_int(d, fn, "d", min=1)
    use_bias = _checks.check_bool(use_bias, fn, "use_bias")
    dt = _checks.check_float_dtype(dtype, fn)
    params = {"scale": jnp.ones((d,), dt)}
    if use_bias:
        params["bias"] = jnp.zeros((d,), dt)
    return params


def rms_norm_init(key: Any, d: int, *, dtype: Any = jnp.float32) -> dict[str, jax.Array]:
    """Parameters of an RMS normalization: scale ones.

    Args:
        key: Unused (nothing is random); present so that every layer's init takes a key.
        d: Number of features normalized together (static int >= 1).
        dtype: Floating dtype of the parameters.

    Returns:
        ``{"scale": (d,)}``.

    Examples:
        >>> from jaxla.nn import rms_norm_init
        >>> rms_norm_init(None, 8)["scale"].shape
        (8,)
    """
    fn = f"{_MODULE}.rms_norm_init"
    d = _checks.check_int(d, fn, "d", min=1)
    return {"scale": jnp.ones((d,), _checks.check_float_dtype(dtype, fn))}


def _norm_inputs(
    params: Any, x: Any, eps: Any, fn: str, names: tuple[str, ...]
) -> tuple[jax.Array, dict[str, jax.Array], Any]:
    if not isinstance(params, dict) or any(k not in names for k in params):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        allowed = " and ".join(f"'{n}'" for n in names)
        _checks.fail(fn, f"`params` must be a dict with optional entries {allowed}, got {got}")
    x = _checks.as_float_array(x, fn, "x", min_ndim=1, doc="(..., d)")
    d = x.shape[-1]
    for name, p in params.items():
        if _shape(p) != (d,):
            _checks.fail(
                fn,
                f"`params['{name}']` must have shape (d,)=({d},) for `x` of shape {_shape(x)}, "
                f"got shape {_shape(p)}",
            )
    eps = _checks.check_positive(eps, fn, "eps")
    return x, params, eps


def _affine(y: jax.Array, params: dict[str, jax.Array], cdt: Any) -> jax.Array:
    if "scale" in params:
        y = y * _row(params["scale"], y.ndim, cdt)
    if "bias" in params:
        y = y + _row(params["bias"], y.ndim, cdt)
    return y


def layer_norm(params: dict[str, jax.Array], x: ArrayLike, *, eps: float = 1e-5) -> jax.Array:
    """Layer normalization over the last axis: ``(x - mean) / sqrt(var + eps) * scale + bias``.

    The mean and the (biased) variance are computed in float32 for float16/bfloat16 inputs (in
    the input's precision otherwise), the variance in two passes (mean of squared deviations),
    which stays accurate when the mean is large compared to the spread.

    Args:
        params: ``{"scale": (d,), "bias": (d,)}`` from :func:`layer_norm_init`; either entry
            may be absent (no scaling, no shift), ``{}`` normalizes only.
        x: (..., d) inputs.
        eps: Added to the variance (> 0).

    Returns:
        (..., d) in the dtype of ``x``.

    Raises:
        TypeError: non-floating ``x``.
        ValueError: parameters of the wrong shape or with unknown entries; ``eps <= 0``.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.nn import layer_norm, layer_norm_init
        >>> y = layer_norm(layer_norm_init(None, 4), jnp.array([[1.0, 2.0, 3.0, 4.0]]))
        >>> np.round(np.asarray(y, np.float64), 3).tolist()
        [[-1.342, -0.447, 0.447, 1.342]]
    """
    fn = f"{_MODULE}.layer_norm"
    x, params, eps = _norm_inputs(params, x, eps, fn, ("scale", "bias"))
    cdt = _checks.compute_dtype(x.dtype)
    xc = x.astype(cdt)
    mean = jnp.mean(xc, axis=-1, keepdims=True)
    dev = xc - mean
    var = jnp.mean(dev * dev, axis=-1, keepdims=True)
    y = dev * lax.rsqrt(var + jnp.asarray(eps, cdt))
    return _affine(y, params, cdt).astype(x.dtype)


def rms_norm(params: dict[str, jax.Array], x: ArrayLike, *, eps: float = 1e-6) -> jax.Array:
    """RMS normalization over the last axis: ``x / sqrt(mean(x**2) + eps) * scale``.

    The mean square is computed in float32 for float16/bfloat16 inputs (in the input's precision
    otherwise).

    Args:
        params: ``{"scale": (d,)}`` from :func:`rms_norm_init`; ``{}`` normalizes only.
        x: (..., d) inputs.
        eps: Added to the mean square (> 0).

    Returns:
        (..., d) in the dtype of ``x``.

    Raises:
        TypeError: non-floating ``x``.
        ValueError: parameters of the wrong shape or with unknown entries; ``eps <= 0``.

    Reference:
        Zhang & Sennrich, "Root mean square layer normalization", NeurIPS 2019.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.nn import rms_norm, rms_norm_init
        >>> y = rms_norm(rms_norm_init(None, 2), jnp.array([3.0, 4.0]))
        >>> np.round(np.asarray(y, np.float64), 4).tolist()
        [0.8485, 1.1314]
    """
    fn = f"{_MODULE}.rms_norm"
    x, params, eps = _norm_inputs(params, x, eps, fn, ("scale",))
    cdt = _checks.compute_dtype(x.dtype)
    xc = x.astype(cdt)
    ms = jnp.mean(xc * xc, axis=-1, keepdims=True)
    y = xc * lax.rsqrt(ms + jnp.asarray(eps, cdt))
    return _affine(y, params, cdt).astype(x.dtype)


# --------------------------------------------------------------------------------------------
# embedding


def embedding_init(
    key: jax.Array,
    vocab_size: int,
    d_model: int,
    *,
    stddev: float = 1.0,
    dtype: Any = jnp.float32,
) -> dict[str, jax.Array]:
    """Parameters of a token embedding: a ``(V, D)`` table of ``N(0, stddev**2)`` entries.

    Args:
        key: PRNG key.
        vocab_size: Number of tokens V (static int >= 1).
        d_model: Embedding width D (static int >= 1).
        stddev: Standard deviation of the entries (> 0).
        dtype: Floating dtype of the table.

    Returns:
        ``{"table": (V, D)}``; row ``i`` embeds token ``i``.

    Examples:
        >>> import jax
        >>> from jaxla.nn import embedding_init
        >>> embedding_init(jax.random.key(0), 100, 16)["table"].shape
        (100, 16)
    """
    fn = f"{_MODULE}.embedding_init"
    vocab_size = _checks.check_int(vocab_size, fn, "vocab_size", min=1)
    d_model = _checks.check_int(d_model, fn, "d_model", min=1)
    stddev = _checks.check_positive(stddev, fn, "stddev")
    dt = _checks.check_float_dtype(dtype, fn)
    return {"table": _init.normal(key, (vocab_size, d_model), dt, stddev=stddev)}


def _check_tokens(tokens: Any, vocab_size: int, fn: str, name: str = "tokens") -> jax.Array:
    tokens = tokens if isinstance(tokens, jax.Array) else jnp.asarray(tokens)
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        _checks.fail(
            fn, f"`{name}` must be an integer array of token ids, got dtype {tokens.dtype}",
            TypeError,
        )
    if _checks.is_concrete(tokens) and tokens.size:
        arr = np.asarray(tokens)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= vocab_size:
            _checks.fail(
                fn,
                f"`{name}` must hold ids in [0, vocab_size={vocab_size}), "
                f"got values in [{lo}, {hi}]",
            )
    return tokens


def embedding(params: dict[str, jax.Array], tokens: ArrayLike) -> jax.Array:
    """Look up token embeddings: ``table[tokens]``.

    Args:
        params: ``{"table": (V, D)}`` from :func:`embedding_init`. ``"table"`` may be a
            :class:`jaxla.lora.LoRAWeight` (as made by :func:`jaxla.lora.apply`): then the
            rows are ``W[tokens] + scale * A[tokens] B``, the lookup of the adapted table
            ``W + scale * A B`` without forming ``A B`` (the adapter's dropout does not apply:
            the input is token ids).
        tokens: Integer token ids of any shape (...), in ``[0, V)``. Ids are checked when
            ``tokens`` is concrete; under ``jit`` an out-of-range id gives a row of NaN.

    Returns:
        (..., D) embeddings in the dtype of the table.

    Raises:
        TypeError: non-integer ``tokens``.
        ValueError: ``params`` without a 2-D ``"table"``; ids outside ``[0, V)`` (eagerly).

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.nn import embedding, embedding_init
        >>> params = embedding_init(jax.random.key(0), 10, 4)
        >>> e = embedding(params, jnp.array([[1, 2, 3]]))
        >>> e.shape, bool(jnp.array_equal(e[0, 1], params["table"][2]))
        ((1, 3, 4), True)
    """
    fn = f"{_MODULE}.embedding"
    table = _entry(params, fn, "table", 2, "(V, D)")
    tokens = _check_tokens(tokens, _shape(table)[0], fn)
    return table_rows(table, tokens)


def embedding_attend(params: dict[str, jax.Array], x: ArrayLike) -> jax.Array:
    """Logits against every embedding, ``x @ table.T``, for tied input/output embeddings.

    Args:
        params: ``{"table": (V, D)}`` from :func:`embedding_init`. ``"table"`` may be a
            :class:`jaxla.lora.LoRAWeight`: then the logits are
            ``x W.T + scale * (x B.T) A.T``, without forming ``A B`` (no adapter dropout).
        x: (..., D) features.

    Returns:
        (..., V) logits in the dtype of ``x``: entry ``v`` is the dot product of ``x`` with the
        embedding of token ``v``.

    Raises:
        TypeError: non-floating ``x``.
        ValueError: ``x`` whose last axis is not ``D``.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.nn import embedding, embedding_attend, embedding_init
        >>> params = embedding_init(jax.random.key(0), 10, 4)
        >>> logits = embedding_attend(params, embedding(params, jnp.array([7])))
        >>> logits.shape, int(logits.argmax())
        ((1, 10), 7)
    """
    fn = f"{_MODULE}.embedding_attend"
    table = _entry(params, fn, "table", 2, "(V, D)")
    x = _checks.as_float_array(x, fn, "x", min_ndim=1, doc="(..., D)")
    _check_features(x, _shape(table)[1], fn, f"params['table'] of shape {_shape(table)}")
    return transposed_product(x, table, _compute(x, table)).astype(x.dtype)


# --------------------------------------------------------------------------------------------
# dropout


def dropout(
    x: ArrayLike,
    *,
    rate: float,
    key: jax.Array | None = None,
    deterministic: bool = False,
) -> jax.Array:
    """Inverted dropout: zero each entry with probability ``rate``, scale the rest by
    ``1 / (1 - rate)`` so that the expectation is unchanged.

    Args:
        x: Inputs of any shape.
        rate: Drop probability in ``[0, 1)`` (a Python number, or a traced scalar under ``jit``).
        key: PRNG key; required unless ``deterministic`` is True or ``rate`` is 0.
        deterministic: If True, return ``x`` unchanged (evaluation mode).

    Returns:
        Array of the shape and dtype of ``x``.

    Raises:
        TypeError: non-floating ``x``; ``deterministic`` not a bool.
        ValueError: ``rate`` outside ``[0, 1)``; ``key`` missing when needed.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.nn import dropout
        >>> x = jnp.ones((1000,))
        >>> y = dropout(x, rate=0.25, key=jax.random.key(0))
        >>> sorted({round(float(v), 4) for v in y}), abs(float((y == 0).mean()) - 0.25) < 0.05
        ([0.0, 1.3333], True)
        >>> bool(jnp.array_equal(dropout(x, rate=0.25, deterministic=True), x))
        True
    """
    fn = f"{_MODULE}.dropout"
    deterministic = _checks.check_bool(deterministic, fn, "deterministic")
    x = _checks.as_float_array(x, fn, "x")
    if not isinstance(rate, jax.core.Tracer):
        r = _checks.check_positive(rate, fn, "rate", allow_zero=True)
        if r >= 1:
            _checks.fail(fn, f"`rate` must be in [0, 1), got {rate!r}")
        if r == 0:
            return x
    if deterministic:
        return x
    if key is None:
        _checks.fail(
            fn,
            "`key` must be a PRNG key when deterministic=False and rate > 0, got None; "
            "pass key=... or deterministic=True",
        )
    cdt = _checks.compute_dtype(x.dtype)
    keep = 1 - jnp.asarray(rate, cdt)
    mask = jax.random.bernoulli(key, keep, x.shape)
    y = jnp.where(mask, x.astype(cdt) / keep, jnp.zeros((), cdt))
    return y.astype(x.dtype)


# --------------------------------------------------------------------------------------------
# convolution and pooling


def _pair(value: Any, fn: str, name: str) -> tuple[int, int]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            _checks.fail(fn, f"`{name}` must be an int or a pair of ints, got {value!r}")
        return (
            _checks.check_int(value[0], fn, f"{name}[0]", min=1),
            _checks.check_int(value[1], fn, f"{name}[1]", min=1),
        )
    v = _checks.check_int(value, fn, name, min=1)
    return v, v


def _padding(padding: Any, fn: str) -> str | tuple[tuple[int, int], tuple[int, int]]:
    """'SAME', 'VALID', an int, or ((top, bottom), (left, right))."""
    if isinstance(padding, str):
        return _checks.check_option(padding, ("SAME", "VALID"), fn, "padding")
    if isinstance(padding, int | np.integer) and not isinstance(padding, bool):
        p = _checks.check_int(padding, fn, "padding", min=0)
        return ((p, p), (p, p))
    ok = (
        isinstance(padding, Sequence)
        and len(padding) == 2
        and all(isinstance(p, Sequence) and len(p) == 2 for p in padding)
    )
    if not ok:
        _checks.fail(
            fn,
            f"`padding` must be 'SAME', 'VALID', an int or ((top, bottom), (left, right)), "
            f"got {padding!r}",
        )
    return tuple(
        tuple(_checks.check_int(v, fn, f"padding[{i}][{j}]", min=0) for j, v in enumerate(p))
        for i, p in enumerate(padding)
    )


def _image(x: Any, fn: str) -> tuple[jax.Array, bool]:
    x = _checks.as_float_array(x, fn, "x", ndim=(3, 4), doc="(B, H, W, C) or (H, W, C)")
    return (x, True) if x.ndim == 4 else (x[None], False)


def conv2d_init(
    key: jax.Array,
    kernel_size: int | tuple[int, int],
    c_in: int,
    c_out: int,
    *,
    use_bias: bool = True,
    w_init: _init.Initializer = _init.lecun_normal,
    b_init: _init.Initializer = _init.zeros,
    dtype: Any = jnp.float32,
) -> dict[str, jax.Array]:
    """Parameters of a 2-D convolution with an HWIO kernel.

    Args:
        key: PRNG key.
        kernel_size: ``kh`` or ``(kh, kw)`` (static ints >= 1).
        c_in: Input channels (static int >= 1).
        c_out: Output channels (static int >= 1).
        use_bias: Whether the layer has a bias.
        w_init: Initializer of ``w`` (default :func:`~jaxla.nn.lecun_normal`, variance
            ``1 / (kh * kw * c_in)``).
        b_init: Initializer of ``b`` (default zeros).
        dtype: Floating dtype of the parameters.

    Returns:
        ``{"w": (kh, kw, c_in, c_out), "b": (c_out,)}`` (no ``"b"`` when ``use_bias=False``).

    Examples:
        >>> import jax
        >>> from jaxla.nn import conv2d_init
        >>> {n: p.shape for n, p in conv2d_init(jax.random.key(0), 3, 1, 8).items()}
        {'w': (3, 3, 1, 8), 'b': (8,)}
    """
    fn = f"{_MODULE}.conv2d_init"
    kh, kw = _pair(kernel_size, fn, "kernel_size")
    c_in = _checks.check_int(c_in, fn, "c_in", min=1)
    c_out = _checks.check_int(c_out, fn, "c_out", min=1)
    use_bias = _checks.check_bool(use_bias, fn, "use_bias")
    dt = _checks.check_float_dtype(dtype, fn)
    _check_callable(w_init, fn, "w_init")
    _check_callable(b_init, fn, "b_init")
    k1, k2 = jax.random.split(key)
    params = {"w": w_init(k1, (kh, kw, c_in, c_out), dt)}
    if use_bias:
        params["b"] = b_init(k2, (c_out,), dt)
    return params


def conv2d(
    params: dict[str, jax.Array],
    x: ArrayLike,
    *,
    stride: int | tuple[int, int] = 1,
    padding: str | int | tuple[tuple[int, int], tuple[int, int]] = "SAME",
    dilation: int | tuple[int, int] = 1,
) -> jax.Array:
    """2-D convolution (cross-correlation, as in every deep-learning library) of NHWC images.

    ``y[b, i, j, o] = sum_{u, v, c} xpad[b, i*sh + u*dh, j*sw + v*dw, c] w[u, v, c, o] + b[o]``,
    computed by ``lax.conv_general_dilated`` at ``precision=HIGHEST``.

    Args:
        params: ``{"w": (kh, kw, c_in, c_out), "b": (c_out,)}`` from :func:`conv2d_init`.
        x: (B, H, W, c_in) images, or one image (H, W, c_in).
        stride: ``s`` or ``(sh, sw)`` (static ints >= 1).
        padding: ``"SAME"`` (output ``ceil(H / sh)``), ``"VALID"`` (no padding), an int ``p``
            (``p`` zeros on every side) or explicit ``((top, bottom), (left, right))``.
        dilation: Kernel dilation ``d`` or ``(dh, dw)`` (static ints >= 1).

    Returns:
        (B, H', W', c_out) (or (H', W', c_out)) in the dtype of ``x``.

    Raises:
        TypeError: non-floating ``x``.
        ValueError: wrong ranks; ``x`` without ``c_in`` channels; a bad stride, padding or
            dilation; a kernel larger than the padded image.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.nn import conv2d, conv2d_init
        >>> params = conv2d_init(jax.random.key(0), 3, 2, 4)
        >>> x = jnp.ones((1, 8, 8, 2))
        >>> conv2d(params, x).shape, conv2d(params, x, stride=2, padding="VALID").shape
        ((1, 8, 8, 4), (1, 3, 3, 4))
    """
    fn = f"{_MODULE}.conv2d"
    w = _entry(params, fn, "w", 4, "(kh, kw, c_in, c_out)")
    b = params.get("b")
    kh, kw, c_in, c_out = _shape(w)
    if b is not None and _shape(b) != (c_out,):
        _checks.fail(
            fn, f"`params['b']` must have shape (c_out,)=({c_out},), got shape {_shape(b)}"
        )
    strides = _pair(stride, fn, "stride")
    dil = _pair(dilation, fn, "dilation")
    pad = _padding(padding, fn)
    x4, batched = _image(x, fn)
    _check_features(x4 if batched else x4[0], c_in, fn,
                    f"params['w'] of shape {_shape(w)} (c_in={c_in})")
    if not isinstance(pad, str) or pad == "VALID":
        (pt, pb), (pl, pr) = ((0, 0), (0, 0)) if isinstance(pad, str) else pad
        eh, ew = (kh - 1) * dil[0] + 1, (kw - 1) * dil[1] + 1
        if x4.shape[1] + pt + pb < eh or x4.shape[2] + pl + pr < ew:
            _checks.fail(
                fn,
                f"`x` must be at least as large as the (dilated) kernel ({eh}, {ew}) after "
                f"padding {padding!r}, got shape {_shape(x)}",
            )
    cdt = _compute(x4, w)
    y = lax.conv_general_dilated(
        x4.astype(cdt),
        w.astype(cdt),
        window_strides=strides,
        padding=pad,
        rhs_dilation=dil,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=HIGHEST,
    )
    if b is not None:
        y = y + _row(b, 4, cdt)
    y = y.astype(x4.dtype)
    return y if batched else y[0]


def _pool_args(x: Any, window: Any, stride: Any, padding: Any, fn: str) -> tuple[Any, ...]:
    x4, batched = _image(x, fn)
    wh, ww = _pair(window, fn, "window")
    sh, sw = (wh, ww) if stride is None else _pair(stride, fn, "stride")
    pad = _padding(padding, fn)
    if not isinstance(pad, str):
        if max(pad[0]) >= wh or max(pad[1]) >= ww:
            _checks.fail(
                fn, f"`padding` must be smaller than the window {(wh, ww)} on every side, "
                f"got {padding!r}"
            )
        pad = ((0, 0), *pad, (0, 0))
    if pad == "VALID" and (x4.shape[1] < wh or x4.shape[2] < ww):
        _checks.fail(
            fn, f"`x` must be at least as large as the window {(wh, ww)} with 'VALID' padding, "
            f"got shape {_shape(x)}"
        )
    return x4, batched, (1, wh, ww, 1), (1, sh, sw, 1), pad


def max_pool(
    x: ArrayLike,
    window: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] | None = None,
    padding: str | int | tuple[tuple[int, int], tuple[int, int]] = "VALID",
) -> jax.Array:
    """Max pooling of NHWC images over ``window`` spatial positions (padding never wins).

    Args:
        x: (B, H, W, C) images, or one image (H, W, C).
        window: ``k`` or ``(kh, kw)`` (static ints >= 1).
        stride: ``s`` or ``(sh, sw)``; default ``window`` (non-overlapping windows).
        padding: ``"VALID"``, ``"SAME"``, an int or ``((top, bottom), (left, right))``, each
            smaller than the window.

    Returns:
        (B, H', W', C) (or (H', W', C)) in the dtype of ``x``.

    Raises:
        TypeError: non-floating ``x``.
        ValueError: wrong ranks, bad window, stride or padding.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.nn import max_pool
        >>> x = jnp.arange(16.0).reshape(4, 4, 1)
        >>> np.asarray(max_pool(x, 2)[..., 0]).tolist()
        [[5.0, 7.0], [13.0, 15.0]]
    """
    fn = f"{_MODULE}.max_pool"
    x4, batched, dims, strides, pad = _pool_args(x, window, stride, padding, fn)
    init = jnp.asarray(-jnp.inf, x4.dtype)
    y = lax.reduce_window(x4, init, lax.max, dims, strides, pad)
    return y if batched else y[0]


def avg_pool(
    x: ArrayLike,
    window: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] | None = None,
    padding: str | int | tuple[tuple[int, int], tuple[int, int]] = "VALID",
) -> jax.Array:
    """Average pooling of NHWC images; with padding, each window averages its real pixels only.

    Args:
        x: (B, H, W, C) images, or one image (H, W, C).
        window: ``k`` or ``(kh, kw)`` (static ints >= 1).
        stride: ``s`` or ``(sh, sw)``; default ``window`` (non-overlapping windows).
        padding: ``"VALID"``, ``"SAME"``, an int or ``((top, bottom), (left, right))``, each
            smaller than the window. Padded positions are left out of the average (the count
            excludes them), so a constant image pools to the same constant.

    Returns:
        (B, H', W', C) (or (H', W', C)) in the dtype of ``x``; sums run in float32 for
        float16/bfloat16 inputs.

    Raises:
        TypeError: non-floating ``x``.
        ValueError: wrong ranks, bad window, stride or padding.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.nn import avg_pool
        >>> x = jnp.arange(16.0).reshape(4, 4, 1)
        >>> np.asarray(avg_pool(x, 2)[..., 0]).tolist()
        [[2.5, 4.5], [10.5, 12.5]]
    """
    fn = f"{_MODULE}.avg_pool"
    x4, batched, dims, strides, pad = _pool_args(x, window, stride, padding, fn)
    cdt = _checks.compute_dtype(x4.dtype)
    zero = jnp.zeros((), cdt)
    total = lax.reduce_window(x4.astype(cdt), zero, lax.add, dims, strides, pad)
    if pad == "VALID":
        y = total / jnp.asarray(dims[1] * dims[2], cdt)
    else:
        ones = jnp.ones((1, *x4.shape[1:3], 1), cdt)
        count = lax.reduce_window(ones, zero, lax.add, dims, strides, pad)
        y = total / count
    y = y.astype(x4.dtype)
    return y if batched else y[0]


# --------------------------------------------------------------------------------------------
# gated linear units


def glu_init(
    key: jax.Array,
    d_in: int,
    d_hidden: int,
    d_out: int | None = None,
    *,
    use_bias: bool = False,
    w_init: _init.Initializer = _init.lecun_normal,
    dtype: Any = jnp.float32,
) -> dict[str, dict[str, jax.Array]]:
    """Parameters of a gated linear unit (the feed-forward block of :func:`glu`/:func:`swiglu`).

    Args:
        key: PRNG key (split once per projection).
        d_in: Input features (static int >= 1).
        d_hidden: Hidden width (static int >= 1).
        d_out: Output features; default ``d_in``.
        use_bias: Whether the three projections have biases (default False, as in LLaMA/PaLM).
        w_init: Initializer of the weights (default :func:`~jaxla.nn.lecun_normal`).
        dtype: Floating dtype of the parameters.

    Returns:
        ``{"gate": {"w": (d_in, d_hidden)}, "up": {"w": (d_in, d_hidden)},
        "down": {"w": (d_hidden, d_out)}}``, each with ``"b"`` when ``use_bias``.

    Examples:
        >>> import jax
        >>> from jaxla.nn import glu_init
        >>> params = glu_init(jax.random.key(0), 8, 32)
        >>> {name: p["w"].shape for name, p in params.items()}
        {'gate': (8, 32), 'up': (8, 32), 'down': (32, 8)}
    """
    fn = f"{_MODULE}.glu_init"
    d_in = _checks.check_int(d_in, fn, "d_in", min=1)
    d_hidden = _checks.check_int(d_hidden, fn, "d_hidden", min=1)
    d_out = d_in if d_out is None else _checks.check_int(d_out, fn, "d_out", min=1)
    use_bias = _checks.check_bool(use_bias, fn, "use_bias")
    dt = _checks.check_float_dtype(dtype, fn)
    _check_callable(w_init, fn, "w_init")
    kg, ku, kd = jax.random.split(key, 3)
    kw = {"use_bias": use_bias, "w_init": w_init, "dtype": dt}
    return {
        "gate": dense_init(kg, d_in, d_hidden, **kw),
        "up": dense_init(ku, d_in, d_hidden, **kw),
        "down": dense_init(kd, d_hidden, d_out, **kw),
    }


swiglu_init = glu_init
"""Parameters of :func:`swiglu`: the same as :func:`glu_init`."""


def _glu(params: Any, x: Any, act: Callable[..., Any], fn: str) -> jax.Array:
    if not isinstance(params, dict) or any(n not in params for n in ("gate", "up", "down")):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        _checks.fail(
            fn, f"`params` must be a dict with entries 'gate', 'up', 'down' (as made by "
            f"glu_init), got {got}"
        )
    wg, bg = _dense_params(params["gate"], fn, "params['gate']")
    wu, bu = _dense_params(params["up"], fn, "params['up']")
    wd, bd = _dense_params(params["down"], fn, "params['down']")
    if _shape(wu) != _shape(wg) or _shape(wd)[0] != _shape(wg)[1]:
        _checks.fail(
            fn,
            f"`params` must hold gate and up weights (d_in, d_hidden) and a down weight "
            f"(d_hidden, d_out), got shapes {_shape(wg)}, {_shape(wu)} and {_shape(wd)}",
        )
    x = _checks.as_float_array(x, fn, "x", min_ndim=1, doc="(..., d_in)")
    _check_features(x, _shape(wg)[0], fn, f"params['gate']['w'] of shape {_shape(wg)}")
    cdt = _compute(x, wg, wu, wd)
    h = act(_dense(wg, bg, x, cdt)) * _dense(wu, bu, x, cdt)
    return _dense(wd, bd, h, cdt).astype(x.dtype)


def glu(
    params: dict[str, dict[str, jax.Array]],
    x: ArrayLike,
    *,
    activation: Callable[[jax.Array], jax.Array] | str = jax.nn.sigmoid,
) -> jax.Array:
    """Gated linear unit: ``down(activation(gate(x)) * up(x))``.

    With ``activation=jax.nn.sigmoid`` this is the GLU of Dauphin et al. (2017) followed by an
    output projection; ``jax.nn.gelu`` gives GEGLU and ``jax.nn.silu`` SwiGLU (:func:`swiglu`).

    Args:
        params: ``{"gate", "up", "down"}`` dense parameters from :func:`glu_init`.
        x: (..., d_in) inputs.
        activation: An elementwise function, or the name of one of :data:`ACTIVATIONS`.

    Returns:
        (..., d_out) outputs in the dtype of ``x``.

    Raises:
        TypeError: non-floating ``x``; a bad ``activation``.
        ValueError: ``params`` without the three projections or with shapes that do not chain;
            ``x`` without ``d_in`` features; an unknown activation name.

    Reference:
        Shazeer, "GLU variants improve transformer", arXiv:2002.05202, 2020.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.nn import glu, glu_init
        >>> params = glu_init(jax.random.key(0), 4, 8)
        >>> x = jnp.ones((3, 4))
        >>> p = {name: q["w"] for name, q in params.items()}
        >>> ref = (jax.nn.sigmoid(x @ p["gate"]) * (x @ p["up"])) @ p["down"]
        >>> bool(jnp.allclose(glu(params, x), ref, atol=1e-6))
        True
    """
    fn = f"{_MODULE}.glu"
    return _glu(params, x, _resolve_activation(activation, fn), fn)


def swiglu(params: dict[str, dict[str, jax.Array]], x: ArrayLike) -> jax.Array:
    """SwiGLU feed-forward block: ``down(silu(gate(x)) * up(x))`` (``silu(z) = z sigmoid(z)``).

    Args:
        params: ``{"gate", "up", "down"}`` dense parameters from :func:`swiglu_init`
            (= :func:`glu_init`).
        x: (..., d_in) inputs.

    Returns:
        (..., d_out) outputs in the dtype of ``x``.

    Raises:
        TypeError: non-floating ``x``.
        ValueError: as :func:`glu`.

    Reference:
        Shazeer, "GLU variants improve transformer", arXiv:2002.05202, 2020.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.nn import glu, swiglu, swiglu_init
        >>> params = swiglu_init(jax.random.key(0), 4, 8)
        >>> x = jnp.ones((3, 4))
        >>> bool(jnp.allclose(swiglu(params, x), glu(params, x, activation=jax.nn.silu)))
        True
    """
    return _glu(params, x, jax.nn.silu, f"{_MODULE}.swiglu")


# --------------------------------------------------------------------------------------------
# composition


class Layer(NamedTuple):
    """A layer as a pair of pure functions, as returned by :func:`serial`."""

    init: Callable[[jax.Array], Any]  # init(key) -> params
    apply: Callable[..., Any]  # apply(params, x, *, key=None, **options) -> y


def _keywords(f: Callable[..., Any], skip: int) -> frozenset[str] | None:
    """Keyword names that ``f`` accepts after its first ``skip`` positional arguments.

    ``None`` means any keyword (``**kwargs``) or an unknown signature.
    """
    declared = getattr(f, "accepted_keywords", None)
    if declared is not None:
        return frozenset(declared)
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return frozenset()
    names = []
    for i, p in enumerate(sig.parameters.values()):
        if p.kind is p.VAR_KEYWORD:
            return None
        if p.kind is p.KEYWORD_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and i >= skip):
            names.append(p.name)
    return frozenset(names)


def serial(*layers: Layer | tuple[Callable[..., Any], Callable[..., Any]] | Callable) -> Layer:
    """Compose layers in sequence, like ``stax.serial``: ``apply = f_n o ... o f_1``.

    Each entry is either

    * a pair ``(init, apply)`` with ``init(key) -> params`` and ``apply(params, x, ...) -> y``,
      e.g. ``(functools.partial(dense_init, d_in=4, d_out=8), dense)`` or another
      :func:`serial`; or
    * a parameter-free function ``f(x, ...) -> y``, e.g. ``jax.nn.relu`` or
      ``functools.partial(dropout, rate=0.1)``.

    The parameters of entry ``i`` are stored under ``"layers_{i}"``, ``i`` being its position
    in the sequence (parameter-free entries store nothing).

    Args:
        *layers: The entries, applied first to last (at least one).

    Returns:
        ``Layer(init, apply)``: ``init(key) -> {"layers_i": params_i}`` splits ``key`` once per
        entry (entry ``i`` gets ``split(key, n)[i]``); ``apply(params, x, *, key=None,
        **options)`` runs the entries in order. When ``key`` is given it is split the same way
        and entry ``i`` receives ``key=split(key, n)[i]`` if its apply function takes a
        ``key`` keyword (e.g. :func:`dropout`); each option is passed to the entries whose
        function takes a keyword of that name (e.g. ``deterministic=True`` reaches every
        dropout), and an option that no entry takes raises ``TypeError``.

    Raises:
        TypeError: an entry that is neither a pair of callables nor a callable.
        ValueError: no entries.

    Examples:
        >>> import functools
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla.nn import dense, dense_init, dropout, serial
        >>> init, apply = serial(
        ...     (functools.partial(dense_init, d_in=4, d_out=16), dense),
        ...     jax.nn.relu,
        ...     functools.partial(dropout, rate=0.5),
        ...     (functools.partial(dense_init, d_in=16, d_out=2), dense),
        ... )
        >>> params = init(jax.random.key(0))
        >>> sorted(params)
        ['layers_0', 'layers_3']
        >>> x = jnp.ones((8, 4))
        >>> apply(params, x, key=jax.random.key(1)).shape
        (8, 2)
        >>> y = apply(params, x, deterministic=True)
        >>> h = jax.nn.relu(dense(params["layers_0"], x))
        >>> bool(jnp.allclose(y, dense(params["layers_3"], h)))
        True
    """
    fn = f"{_MODULE}.serial"
    if not layers:
        _checks.fail(fn, "`layers` must hold at least one layer, got none")
    entries: list[tuple[Callable[..., Any] | None, Callable[..., Any], frozenset[str] | None]] = []
    for i, layer in enumerate(layers):
        if isinstance(layer, tuple) and len(layer) == 2 and all(callable(f) for f in layer):
            init_i, apply_i = layer
            entries.append((init_i, apply_i, _keywords(apply_i, 2)))
        elif callable(layer) and not isinstance(layer, tuple):
            entries.append((None, layer, _keywords(layer, 1)))
        else:
            _checks.fail(
                fn,
                f"`layers[{i}]` must be an (init, apply) pair of callables or a parameter-free "
                f"callable, got {layer!r}",
                TypeError,
            )
    n = len(entries)
    accepted: set[str] = {"key"}
    for _, _, kws in entries:
        if kws is not None:
            accepted |= kws

    def init(key: jax.Array) -> dict[str, Any]:
        keys = jax.random.split(key, n)
        return {f"layers_{i}": e[0](keys[i]) for i, e in enumerate(entries) if e[0] is not None}

    def apply(params: dict[str, Any], x: Any, *, key: jax.Array | None = None, **options) -> Any:
        for name in options:
            if name not in accepted and all(kws is not None for _, _, kws in entries):
                _checks.fail(
                    fn,
                    f"`{name}` must be a keyword taken by one of the layers "
                    f"({', '.join(sorted(accepted - {'key'})) or 'none take options'}), "
                    f"got {name}={options[name]!r}",
                    TypeError,
                )
        missing = [f"layers_{i}" for i, e in enumerate(entries) if e[0] is not None]
        missing = [m for m in missing if not isinstance(params, dict) or m not in params]
        if missing:
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            _checks.fail(fn, f"`params` must have the entries {missing} made by init, got {got}")
        keys = None if key is None else jax.random.split(key, n)
        for i, (init_i, apply_i, kws) in enumerate(entries):
            kw = {k: v for k, v in options.items() if kws is None or k in kws}
            if kws is None or "key" in kws:
                if keys is not None:
                    kw["key"] = keys[i]
            args = (x,) if init_i is None else (params[f"layers_{i}"], x)
            x = apply_i(*args, **kw)
        return x

    apply.accepted_keywords = frozenset(accepted)  # type: ignore[attr-defined]
    return Layer(init, apply)
