"""A multi-layer perceptron classifier as pure functions, trained with any optax optimizer.

The model is :func:`jaxla.nn.mlp` with ``n_classes`` outputs read as logits. Four functions make
the whole API:

* :func:`mlp_classifier_init` -- parameters ``{"layers_0": {"w", "b"}, ..., "layers_L": ...}``
  (the :func:`jaxla.nn.mlp_init` layout, so paths address layers for optax masks, LoRA or
  per-layer curvature);
* :func:`mlp_classifier_apply` -- logits (n, c);
* :func:`mlp_classifier_loss` -- ``loss(params, batch)`` with ``batch = (x, y)``: mean softmax
  cross-entropy plus an optional L2 penalty on the weights, the signature every training loop
  expects (``jax.grad(loss)(params, batch)``; ``jaxla.train.fit`` takes it as is);
* :func:`accuracy` -- the fraction of correctly classified samples, from logits (or any scores).

Options that are functions (``activation``) are passed to the apply and loss functions, never
stored in the parameters, so the parameters stay a pytree of arrays that optimizers, ``jit`` and
checkpoints handle directly; bind them with ``functools.partial``.

Dimension letters: ``n`` samples, ``d`` input features, ``c`` classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxla import _checks
from jaxla._checks import shape_of as _shape
from jaxla.nn import he_normal, mlp, mlp_init

__all__ = ["accuracy", "mlp_classifier_apply", "mlp_classifier_init", "mlp_classifier_loss"]

_MODULE = "jaxla.models"


def _labels(y: Any, n: int, fn: str) -> jax.Array:
    """Integer labels (n,); a concrete ``y`` is not range-checked here (see callers)."""
    y = y if isinstance(y, jax.Array) else jnp.asarray(y)
    if not jnp.issubdtype(y.dtype, jnp.integer):
        _checks.fail(fn, f"`y` must hold integer class labels 0..c-1, got dtype {y.dtype}",
                     TypeError)
    _checks.check_ndim(y, fn, "y", 1, "(n_samples,)")
    if y.shape[0] != n:
        _checks.fail(fn, f"`y` must have {n} labels (one per row of the inputs), got shape "
                     f"{_shape(y)}")
    return y


def _check_range(y: jax.Array, c: int, fn: str) -> None:
    if not _checks.is_concrete(y) or y.shape[0] == 0:
        return
    arr = np.asarray(y)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= c:
        _checks.fail(fn, f"`y` must hold class labels in [0, {c - 1}] ({c} classes), got label "
                     f"{lo if lo < 0 else hi}")


def mlp_classifier_init(
    key: jax.Array,
    in_dim: int,
    n_classes: int,
    *,
    hidden: Sequence[int] = (64,),
    dtype: Any = jnp.float32,
) -> dict[str, dict[str, jax.Array]]:
    """Parameters of an MLP classifier with widths ``(in_dim, *hidden, n_classes)``.

    Weights are drawn with He-normal scaling (suited to ReLU activations), biases are zero.

    Args:
        key: PRNG key (split once per layer).
        in_dim: Number of input features ``d >= 1`` (static int).
        n_classes: Number of classes ``c >= 2`` (static int): the width of the logits.
        hidden: Widths of the hidden layers (static ints >= 1); ``()`` gives multinomial logistic
            regression.
        dtype: Floating dtype of the parameters.

    Returns:
        ``{"layers_0": {"w": (d, h_1), "b": (h_1,)}, ..., "layers_L": {"w": (h_L, c), "b": (c,)}}``.

    Raises:
        TypeError: non-int sizes, a non-floating ``dtype``.
        ValueError: sizes below their minimum.

    Examples:
        >>> import jax
        >>> from jaxla import models
        >>> params = models.mlp_classifier_init(jax.random.key(0), 64, 10, hidden=(32,))
        >>> {name: p["w"].shape for name, p in params.items()}
        {'layers_0': (64, 32), 'layers_1': (32, 10)}
    """
    fn = f"{_MODULE}.mlp_classifier_init"
    in_dim = _checks.check_int(in_dim, fn, "in_dim", min=1)
    n_classes = _checks.check_int(n_classes, fn, "n_classes", min=2)
    if isinstance(hidden, str) or not isinstance(hidden, Sequence):
        _checks.fail(fn, f"`hidden` must be a sequence of widths, got {hidden!r}", TypeError)
    widths = [_checks.check_int(h, fn, f"hidden[{i}]", min=1) for i, h in enumerate(hidden)]
    return mlp_init(key, [in_dim, *widths, n_classes], w_init=he_normal, dtype=dtype)


def mlp_classifier_apply(
    params: dict[str, dict[str, jax.Array]],
    x: ArrayLike,
    *,
    activation: Callable[[jax.Array], jax.Array] | str = jax.nn.relu,
) -> jax.Array:
    """Logits of the MLP classifier: :func:`jaxla.nn.mlp` with no activation after the last layer.

    Args:
        params: Parameters from :func:`mlp_classifier_init`.
        x: (..., d) inputs, any leading batch axes (usually (n, d)).
        activation: Elementwise function between layers (a callable or a ``jax.nn`` name).

    Returns:
        (..., c) logits (unnormalized log-probabilities) in the dtype of ``x``.

    Raises:
        TypeError: integer ``x``, an invalid ``activation``.
        ValueError: parameters that do not chain, ``x`` with the wrong number of features.

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> from jaxla import models
        >>> params = models.mlp_classifier_init(jax.random.key(0), 4, 3, hidden=(8,))
        >>> models.mlp_classifier_apply(params, jnp.ones((5, 4))).shape
        (5, 3)
    """
    return mlp(params, x, activation=activation)


def mlp_classifier_loss(
    params: dict[str, dict[str, jax.Array]],
    batch: tuple[ArrayLike, ArrayLike],
    *,
    l2: float | ArrayLike = 0.0,
    activation: Callable[[jax.Array], jax.Array] | str = jax.nn.relu,
) -> jax.Array:
    """Mean softmax cross-entropy of a batch plus ``0.5 * l2 * sum ||W||_F^2`` over the weights.

    ``loss(params, batch)`` is the signature optax training loops use: differentiate it with
    ``jax.grad`` with respect to ``params``, bind the options with ``functools.partial``. The L2
    term covers the weight matrices (``"w"`` leaves), not the biases. The cross-entropy is
    computed from the log-softmax of the logits (stable for large logits).

    Args:
        params: Parameters from :func:`mlp_classifier_init`.
        batch: ``(x, y)`` with ``x`` (n, d) floating inputs and ``y`` (n,) integer labels in
            ``0..c-1`` (checked when ``y`` is concrete).
        l2: Weight of the L2 penalty ``>= 0`` (may be traced).
        activation: Elementwise function between layers (a callable or a ``jax.nn`` name).

    Returns:
        The loss, shape (), in the dtype of ``x``.

    Raises:
        TypeError: ``batch`` not a pair, integer ``x``, non-integer ``y``.
        ValueError: mismatched shapes, labels out of range (concrete ``y``), a negative ``l2``.

    Examples:
        A few steps of Adam on a toy problem, with a plain optax loop:

        >>> import functools
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import optax
        >>> from jaxla import models
        >>> x = jax.random.normal(jax.random.key(1), (64, 2))
        >>> y = (x[:, 0] * x[:, 1] > 0).astype(jnp.int32)
        >>> params = models.mlp_classifier_init(jax.random.key(0), 2, 2, hidden=(16,))
        >>> loss = functools.partial(models.mlp_classifier_loss, l2=1e-4)
        >>> opt = optax.adam(1e-2)
        >>> state = opt.init(params)
        >>> @jax.jit
        ... def step(params, state):
        ...     value, grads = jax.value_and_grad(loss)(params, (x, y))
        ...     updates, state = opt.update(grads, state, params)
        ...     return optax.apply_updates(params, updates), state, value
        >>> first = float(loss(params, (x, y)))
        >>> for _ in range(200):
        ...     params, state, value = step(params, state)
        >>> bool(value < first)
        True
        >>> acc = models.accuracy(models.mlp_classifier_apply(params, x), y)
        >>> bool(acc > 0.8)
        True
    """
    fn = f"{_MODULE}.mlp_classifier_loss"
    if not isinstance(batch, tuple | list) or len(batch) != 2:
        _checks.fail(fn, f"`batch` must be a pair (x, y), got {type(batch).__name__}", TypeError)
    x, y = batch
    x = _checks.as_float_array(x, fn, "batch[0]", ndim=2, doc="(n_samples, n_features)")
    y = _labels(y, x.shape[0], fn)
    l2 = _checks.check_positive(l2, fn, "l2", allow_zero=True)
    logits = mlp(params, x, activation=activation)
    c = logits.shape[-1]
    _check_range(y, c, fn)
    cdt = _checks.compute_dtype(logits.dtype)
    logp = jax.nn.log_softmax(logits.astype(cdt), axis=-1)
    nll = -jnp.take_along_axis(logp, y.astype(jnp.int32)[:, None], axis=1)[:, 0]
    loss = jnp.mean(nll)
    weights = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)
               if getattr(path[-1], "key", None) == "w"]
    penalty = sum((jnp.sum(jnp.square(w.astype(cdt))) for w in weights), jnp.zeros((), cdt))
    return (loss + 0.5 * jnp.asarray(l2, cdt) * penalty).astype(x.dtype)


def accuracy(scores: ArrayLike, y: ArrayLike) -> jax.Array:
    """Fraction of samples whose highest score is their label.

    Args:
        scores: (n, c) logits, probabilities or any class scores; or (n,) binary decision values
            (class 1 where the score is positive), as :func:`jaxla.models.decision_function`
            returns for a binary logistic model.
        y: (n,) integer labels.

    Returns:
        The accuracy in [0, 1], shape (), float32 (float64 for float64 scores). Ties between
        classes go to the lower label.

    Raises:
        TypeError: non-floating ``scores``, non-integer ``y``.
        ValueError: mismatched shapes.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxla import models
        >>> logits = jnp.array([[2.0, 0.0, 1.0], [0.0, 3.0, 0.0], [1.0, 0.0, 0.5]])
        >>> print(round(float(models.accuracy(logits, jnp.array([0, 1, 2]))), 4))
        0.6667
    """
    fn = f"{_MODULE}.accuracy"
    scores = _checks.as_float_array(scores, fn, "scores", ndim=(1, 2),
                                    doc="(n_samples, n_classes) or (n_samples,)")
    y = _labels(y, scores.shape[0], fn)
    if scores.ndim == 1:
        pred = (scores > 0).astype(jnp.int32)
    else:
        pred = jnp.argmax(scores, axis=1).astype(jnp.int32)
    dt = _checks.compute_dtype(scores.dtype)
    return jnp.mean((pred == y.astype(jnp.int32)).astype(dt))
