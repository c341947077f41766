"""Training with optax as pure functions: a jitted step, a fit loop, penalties, SAM, checkpoints.

Dimension letters: ``n`` examples (the leading axis of every leaf of ``data``), ``B`` the batch
size, ``T`` the number of logged rows of a history.

Steps
-----
:func:`make_step` and :func:`make_sam_step` return ``step(params, opt_state, batch, key=None) ->
(params, opt_state, metrics)``, a ``jax.jit``-ed pure function that evaluates
``loss_fn(params, batch)`` (``loss_fn(params, batch, key)`` when a ``key`` is given, e.g. for
dropout), feeds the gradient to any ``optax.GradientTransformation`` and applies the update with
``optax.apply_updates``. ``metrics`` is a dict of scalar arrays: ``"loss"``, ``"grad_norm"`` (the
global L2 norm of the gradient) and, with ``has_aux=True``, the entries of the ``aux`` dict that
``loss_fn`` returns next to its loss. The buffers of ``params`` and ``opt_state`` are donated: do
not use the arrays passed in after the call (``donate=False`` keeps them).

fit
---
:func:`fit` runs many steps. Steps are numbered ``1, 2, ..., total``: step ``t`` evaluates the
loss at the parameters after ``t - 1`` updates and applies the ``t``-th update.

- **Full batch** (``batch_size=None``): every step sees all of ``data``; ``epochs=E`` means ``E``
  steps. **Minibatches** (``batch_size=B``): an epoch is ``n // B`` steps; the last ``n % B``
  examples of each epoch's order are dropped (every batch has exactly ``B`` examples, so nothing
  recompiles). With ``shuffle=True`` (default) epoch ``e`` (counted from 0) visits the examples in
  the order ``jax.random.permutation(jax.random.fold_in(shuffle_key, e), n)``, batch ``j`` of the
  epoch being entries ``j*B`` to ``(j+1)*B - 1`` of it; with ``shuffle=False`` in the order of
  ``data``. ``shuffle_key, step_key = jax.random.split(key)``.
- **Keys.** When ``key`` is given, ``loss_fn`` is called as ``loss_fn(params, batch, step key)``
  with the step key ``jax.random.fold_in(step_key, t)`` for step ``t``; shuffling and step keys
  depend only on ``key`` and the epoch/step number, never on where a run was resumed. Shuffling
  needs a key: without one, pass ``shuffle=False``.
- **Chunks.** Steps run inside one compiled ``lax.scan`` per chunk of ``L`` steps, ``L`` being the
  greatest common divisor of ``log_every``, ``eval_every`` and ``checkpoint_every`` (those that are
  set); chunk ends are the multiples of ``L`` and the last step, so at most two chunk lengths are
  compiled (three when a run resumes from a checkpoint written by a run with other intervals).
  Logging, evaluation, callbacks, checkpoints and Ctrl-C handling happen at chunk ends, outside
  ``jit``. A chunk end that needs only the metrics (no evaluation, callback or checkpoint due)
  is read back while the next chunk already runs, so logging costs no pipeline stall. Compiled
  chunks are reused by later ``fit`` calls with the same ``loss_fn`` and ``optimizer`` objects.
  The steps of a chunk are the steps of :func:`make_step` (same arithmetic), with the batch
  gathered from ``data`` inside the compiled program.

History
-------
``history`` is a dict of 1-D numpy arrays (float64 values, int64 step numbers) in three groups,
each with its own step column:

- ``"step"`` and every training metric: one row per logging boundary (every ``log_every`` steps
  and the last step), holding the metrics of that step (not an average over the chunk);
- ``"eval_step"`` and the names returned by ``eval_fn(params)``: one row every ``eval_every``
  steps and at the last step;
- ``"callback_step"`` and the names returned by callbacks: one row per logging boundary at which
  some callback returned a non-empty dict (a name missing from a row is NaN there).

A name may appear in one group only (an ``eval_fn`` returning ``"loss"`` is an error: call it
``"eval_loss"``).

Callbacks
---------
A callback is any callable ``cb(info) -> dict | None`` called at every logging boundary, in the
order given, outside ``jit``, after the training row (and the evaluation row, when due) was added
to the history. ``info`` is a :class:`CallbackInfo` ``(step, params, opt_state, metrics,
history)``: ``metrics`` holds that step's training metrics (and evaluation metrics when they were
computed at this step) as Python floats, ``history`` a snapshot of the history so far. The
arrays of ``info.params`` and ``info.opt_state`` are valid during the call only: the next chunk
reuses (donates) their buffers, so copy them (``jax.tree.map(jnp.copy, info.params)``) to keep
them. A returned dict of scalars is added to the history (``"callback_step"`` group) and printed
with the progress line; a ``"stop"`` entry is not recorded: when true, training stops after this
boundary (early stopping), a final checkpoint is written and a later ``resume`` returns the stopped
state without training further. Callbacks must be deterministic functions of ``info`` for a
resumed run to reproduce an uninterrupted one.

Progress
--------
With ``progress=True``: a tqdm bar on stderr when stderr is a terminal and tqdm is installed,
otherwise one plain line on stderr per logging boundary, e.g. ``step 100/1000 loss 0.1234
grad_norm 0.0567``. ``log_every`` defaults to ``max(1, total // 20)``.

Checkpoints and failures
------------------------
With ``checkpoint_dir``, ``fit`` writes ``<checkpoint_dir>/checkpoint.npz`` (see
:func:`save_checkpoint`: params, optimizer state, step, key, history and the run configuration,
written atomically) every ``checkpoint_every`` steps (default: ``log_every``), at the last step,
when a callback stops training and when interrupted. With ``resume=True`` (default) a run finds
that file and continues from it, ending bitwise identical to an uninterrupted run on the same
machine (the remaining chunks are the same compiled programs on the same bits); the checkpoint's
key, number of examples, ``batch_size`` and ``shuffle`` must match the call.

- **Ctrl-C.** The first SIGINT (in the main thread) is deferred to the end of the running chunk;
  there ``fit`` writes a checkpoint of that last completed step and raises ``KeyboardInterrupt``
  (a second Ctrl-C interrupts at once). A ``KeyboardInterrupt`` raised by a callback or by
  ``eval_fn`` likewise writes a checkpoint of the boundary's step first. The exception carries
  ``err.params``, ``err.opt_state``, ``err.step`` and ``err.history``.
- **Non-finite values.** Inside a chunk a flag stops all updates after the first step whose loss
  or gradient norm is not finite; at the chunk's end ``fit`` raises ``FloatingPointError
  ("jaxla.train.fit: loss is not finite at step N; ...")`` naming that step and the last good
  checkpoint, which is left untouched. ``err.params`` / ``err.opt_state`` hold the state after
  step ``N - 1`` (``err.step``), ``err.history`` the history up to the previous boundary.

Penalties
---------
:func:`l2` (``sum w^2``, no 1/2: scikit-learn's Ridge objective is ``||y - X w||^2 + alpha *
l2(w)``), :func:`l1` (``sum |w|``) and :func:`elastic_net` (scikit-learn's ElasticNet penalty
``l1_ratio * l1 + (1 - l1_ratio) / 2 * l2``) select leaves by path with ``include`` /
``exclude`` patterns (``jaxla._paths`` rules: a glob such as ``"*/w"`` or a compiled regular
expression, matched against ``"layers_0/w"``-style paths; a pattern matching no leaf is an
error). Decoupled weight decay belongs to optax: :func:`decay_mask` builds the mask for
``optax.adamw(..., mask=...)`` or ``optax.add_decayed_weights(..., mask=...)``.

Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from jaxla import train
    >>> x = jax.random.normal(jax.random.key(0), (64, 3))
    >>> y = x @ jnp.array([1.0, -2.0, 0.5])
    >>> def loss_fn(params, batch):
    ...     xb, yb = batch
    ...     return jnp.mean((xb @ params["w"] - yb) ** 2)
    >>> params, history = train.fit(loss_fn, {"w": jnp.zeros(3)}, (x, y), optax.sgd(0.1),
    ...                             steps=200, progress=False)
    >>> [round(float(v), 3) for v in params["w"]]
    [1.0, -2.0, 0.5]
    >>> history["step"][-3:].tolist()
    [180, 190, 200]
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import numbers
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import PartitionSpec

from jaxla import _checkpoint, _checks, _paths
from jaxla._numerics import upcast
from jaxla._sharding import explicit_sharding

__all__ = [
    "DECAY_EXCLUDE",
    "CallbackInfo",
    "Checkpoint",
    "decay_mask",
    "elastic_net",
    "fit",
    "l1",
    "l2",
    "load_checkpoint",
    "make_sam_step",
    "make_step",
    "save_checkpoint",
]

_MODULE = "jaxla.train"
CHECKPOINT_FILE = "checkpoint.npz"
_RESERVED = ("loss", "grad_norm", "sam_loss", "sam_grad_norm")
_STEP_COLUMNS = ("step", "eval_step", "callback_step")

DECAY_EXCLUDE: tuple[str, ...] = ("b", "*/b", "bias", "*/bias", "scale", "*/scale")
"""Default ``exclude`` of :func:`decay_mask`: biases and normalization scales.

These are the names of jaxla.nn (``"b"`` of dense/conv layers, ``"scale"``/``"bias"`` of
``layer_norm``/``rms_norm``), of Flax (``"bias"``, ``"scale"``) and of Equinox (``bias``); weight
matrices (``"w"``, ``"kernel"``, ``"weight"``) and embedding tables are decayed.
"""


class Checkpoint(NamedTuple):
    """A training state read back by :func:`load_checkpoint`."""

    params: Any  # pytree shaped like params_like
    opt_state: Any  # pytree shaped like opt_state_like
    step: int  # completed steps
    key: Any  # the PRNG key saved with it (typed or raw uint32), or None
    history: dict[str, np.ndarray]  # name -> (T,) column


class CallbackInfo(NamedTuple):
    """What a :func:`fit` callback sees at a logging boundary."""

    step: int  # completed steps
    params: Any  # pytree of arrays, valid during the call only
    opt_state: Any  # pytree of arrays, valid during the call only
    metrics: dict[str, float]  # this step's training (and evaluation) metrics
    history: dict[str, np.ndarray]  # name -> (T,) column, a snapshot


# ---------------------------------------------------------------------------------------------
# Argument checks


def _check_callable(f: Any, fn: str, name: str) -> None:
    if not callable(f):
        _checks.fail(fn, f"`{name}` must be callable, got {f!r}", TypeError)


def _check_optimizer(optimizer: Any, fn: str) -> None:
    if not (callable(getattr(optimizer, "init", None))
            and callable(getattr(optimizer, "update", None))):
        _checks.fail(
            fn,
            "`optimizer` must be an optax.GradientTransformation (with init and update), "
            f"got {type(optimizer).__name__}",
            TypeError,
        )


def _check_key(key: Any, fn: str) -> None:
    if key is not None:
        _checks.check_key(key, fn)


def _check_rho(rho: Any, fn: str) -> Any:
    return _checks.check_positive(rho, fn, "rho", allow_zero=True)


# ---------------------------------------------------------------------------------------------
# The step


def _global_norm(tree: Any) -> jax.Array:
    """Global L2 norm of the floating leaves of ``tree``, accumulated in float32 or wider."""
    sums = [jnp.sum(jnp.square(upcast(x))) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    if not sums:
        return jnp.zeros((), jnp.float32)
    return jnp.sqrt(sum(sums[1:], sums[0]))


def _check_aux(aux: Any, fn: str) -> dict[str, Any]:
    if not isinstance(aux, Mapping):
        _checks.fail(fn, f"`loss_fn` must return (loss, aux) with aux a dict of scalar metrics, "
                         f"got aux of type {type(aux).__name__}", TypeError)
    for name, value in aux.items():
        if not isinstance(name, str):
            _checks.fail(fn, f"`loss_fn` aux keys must be strings, got {name!r}", TypeError)
        if name in _RESERVED or name in _STEP_COLUMNS:
            _checks.fail(fn, f"`loss_fn` aux names must differ from {', '.join(_RESERVED)} and "
                             f"{', '.join(_STEP_COLUMNS)}, got {name!r}")
        if np.shape(value) != ():
            _checks.fail(fn, f"`loss_fn` aux[{name!r}] must be a scalar, got shape "
                             f"{tuple(np.shape(value))}")
    return dict(aux)


def _call_loss(loss_fn, params, batch, key, has_aux, fn):
    out = loss_fn(params, batch) if key is None else loss_fn(params, batch, key)
    if has_aux:
        if not (isinstance(out, tuple) and len(out) == 2):
            if isinstance(out, tuple):
                got = f"a tuple of length {len(out)}"
            elif hasattr(out, "shape"):
                got = f"a single array of shape {tuple(out.shape)}"
            else:
                got = type(out).__name__
            _checks.fail(fn, f"`loss_fn` must return (loss, aux) with has_aux=True, got {got}")
        loss, aux = out
        aux = _check_aux(aux, fn)
    else:
        if isinstance(out, tuple | list):
            _checks.fail(fn, f"`loss_fn` must return a scalar loss (pass has_aux=True to return "
                             f"(loss, aux)), got a {type(out).__name__} of length {len(out)}")
        loss, aux = out, {}
    shape = tuple(int(d) for d in np.shape(loss))
    if shape != ():
        _checks.fail(fn, f"`loss_fn` must return a scalar loss, got shape {shape}")
    dtype = jnp.result_type(loss)
    if not jnp.issubdtype(dtype, jnp.floating):
        _checks.fail(fn, f"`loss_fn` must return a floating-point loss, got dtype {dtype}",
                     TypeError)
    return loss, aux


def _sam_perturbation(params, grads, grad_norm, rho, adaptive):
    """``rho g / ||g||`` or, adaptive, ``rho |w|^2 g / || |w| g ||``; zero where the norm is 0."""
    g = jax.tree_util.tree_map(upcast, grads)
    if adaptive:
        absw = jax.tree_util.tree_map(lambda w: jnp.abs(upcast(w)), params)
        scaled = jax.tree_util.tree_map(jnp.multiply, absw, g)
        denom = _global_norm(scaled)
        num = jax.tree_util.tree_map(jnp.multiply, absw, scaled)
    else:
        denom, num = grad_norm, g
    scale = rho / jnp.where(denom > 0, denom, jnp.ones_like(denom))
    return jax.tree_util.tree_map(lambda v: v * scale.astype(v.dtype), num)


def _add(w, e):
    return (upcast(w) + e).astype(w.dtype)


class _Update:
    """One optimizer step as a pure function; hashable by identity of its callables.

    Instances are static arguments of the compiled chunks of :func:`fit`, so two fits with the
    same ``loss_fn`` and ``optimizer`` objects (and options) share compiled code.
    """

    def __init__(self, loss_fn, optimizer, *, has_aux, sam_rho, sam_adaptive, fn):
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.has_aux = has_aux
        self.sam_rho = sam_rho
        self.sam_adaptive = sam_adaptive
        self.fn = fn

    def _key(self):
        return (id(self.loss_fn), id(self.optimizer), self.has_aux, self.sam_rho,
                self.sam_adaptive, self.fn)

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, _Update) and self.loss_fn is other.loss_fn
                and self.optimizer is other.optimizer and self._key() == other._key())

    def value(self, params, batch, key):
        return _call_loss(self.loss_fn, params, batch, key, self.has_aux, self.fn)

    def __call__(self, params, opt_state, batch, key=None):
        value_and_grad = jax.value_and_grad(self.value, has_aux=True)
        (loss, aux), grads = value_and_grad(params, batch, key)
        grad_norm = _global_norm(grads)
        metrics = {"loss": loss, "grad_norm": grad_norm}
        if self.sam_rho is not None:
            e = _sam_perturbation(params, grads, grad_norm, self.sam_rho, self.sam_adaptive)
            (sam_loss, _), grads = value_and_grad(jax.tree_util.tree_map(_add, params, e),
                                                  batch, key)
            metrics["sam_loss"] = sam_loss
            metrics["sam_grad_norm"] = _global_norm(grads)
        updates, opt_state = self.optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics.update(aux)
        return params, opt_state, metrics


def _jit_step(update: _Update, donate: bool) -> Callable[..., Any]:
    def step(params: Any, opt_state: Any, batch: Any, key: jax.Array | None = None):
        """One training step: ``(params, opt_state, batch, key=None) -> (params, opt_state,
        metrics)``; ``metrics`` is a dict of scalar arrays (``"loss"``, ``"grad_norm"``...)."""
        return update(params, opt_state, batch, key)

    return jax.jit(step, donate_argnums=(0, 1) if donate else ())


def make_step(
    loss_fn: Callable[..., Any],
    optimizer: optax.GradientTransformation,
    *,
    has_aux: bool = False,
    donate: bool = True,
) -> Callable[..., tuple[Any, Any, dict[str, jax.Array]]]:
    """A jitted optimizer step ``step(params, opt_state, batch, key=None)``.

    The step computes ``loss, grads = value_and_grad(loss_fn)(params, batch)`` (with
    ``loss_fn(params, batch, key)`` when ``key`` is given), then ``updates, opt_state =
    optimizer.update(grads, opt_state, params)`` and ``params = optax.apply_updates(params,
    updates)``.

    Args:
        loss_fn: ``loss_fn(params, batch) -> loss`` (a scalar), or ``-> (loss, aux)`` with
            ``has_aux=True``, ``aux`` a dict of scalar metrics; called with a third argument
            ``key`` when the step gets one.
        optimizer: Any ``optax.GradientTransformation``.
        has_aux: Whether ``loss_fn`` returns ``(loss, aux)``.
        donate: Donate the buffers of ``params`` and ``opt_state`` (``jax.jit``'s
            ``donate_argnums``): the arrays passed in are invalid after the call.

    Returns:
        ``step(params, opt_state, batch, key=None) -> (params, opt_state, metrics)``, jitted:
        ``params`` and ``opt_state`` have the structure, shapes and dtypes of the inputs;
        ``metrics`` is a dict of scalar arrays: ``"loss"``, ``"grad_norm"`` (global L2 norm of
        the gradient, accumulated in float32 or wider) and the entries of ``aux``.

    Raises:
        TypeError: ``loss_fn`` not callable; ``optimizer`` without ``init``/``update``; a loss
            that is not floating.
        ValueError: (at trace time) ``loss_fn`` returning a non-scalar loss, or not
            ``(loss, aux)`` with ``has_aux=True``; ``aux`` entries that are not scalars or reuse
            the names ``loss``/``grad_norm``.

    Examples:
        >>> import jax.numpy as jnp
        >>> import optax
        >>> from jaxla import train
        >>> def loss_fn(params, batch):
        ...     return jnp.sum((params["w"] - batch) ** 2)
        >>> optimizer = optax.sgd(0.25)
        >>> step = train.make_step(loss_fn, optimizer)
        >>> params = {"w": jnp.zeros(2)}
        >>> params, state, metrics = step(params, optimizer.init(params), jnp.array([1.0, 2.0]))
        >>> params["w"].tolist(), round(float(metrics["loss"]), 4)
        ([0.5, 1.0], 5.0)
    """
    fn = f"{_MODULE}.make_step"
    _check_callable(loss_fn, fn, "loss_fn")
    _check_optimizer(optimizer, fn)
    has_aux = _checks.check_bool(has_aux, fn, "has_aux")
    donate = _checks.check_bool(donate, fn, "donate")
    update = _Update(loss_fn, optimizer, has_aux=has_aux, sam_rho=None, sam_adaptive=False, fn=fn)
    return _jit_step(update, donate)


def make_sam_step(
    loss_fn: Callable[..., Any],
    optimizer: optax.GradientTransformation,
    *,
    rho: float = 0.05,
    adaptive: bool = False,
    has_aux: bool = False,
    donate: bool = True,
) -> Callable[..., tuple[Any, Any, dict[str, jax.Array]]]:
    """A jitted sharpness-aware minimisation (SAM) step ``step(params, opt_state, batch, key)``.

    With ``g = grad L(w)`` the step moves to the worst point of a ball of radius ``rho``,
    ``e = rho g / ||g||`` (Foret et al., 2021), or with ``adaptive=True`` (ASAM, Kwon et al.,
    2021) ``e = rho |w|^2 g / || |w| g ||`` (``|w|`` elementwise, norms global over the pytree),
    and feeds ``g_sam = grad L(w + e)`` to ``optimizer``: ``updates, opt_state =
    optimizer.update(g_sam, opt_state, w)``, ``w <- optax.apply_updates(w, updates)``. ``e`` is
    a constant (first-order SAM: no derivative through it). A zero gradient (or a zero ``|w| g``)
    gives ``e = 0``, never NaN. Both evaluations use the same ``batch`` and ``key``.

    Args:
        loss_fn: As in :func:`make_step`.
        optimizer: Any ``optax.GradientTransformation``.
        rho: Radius of the perturbation (>= 0; 0 gives plain gradient steps).
        adaptive: Use ASAM's scale-invariant perturbation.
        has_aux: Whether ``loss_fn`` returns ``(loss, aux)``; ``aux`` is taken at ``w``.
        donate: Donate the buffers of ``params`` and ``opt_state``.

    Returns:
        ``step(params, opt_state, batch, key=None) -> (params, opt_state, metrics)``, jitted;
        ``metrics``: ``"loss"`` and ``"grad_norm"`` at ``w``, ``"sam_loss"`` (the loss at
        ``w + e``), ``"sam_grad_norm"`` (``||g_sam||``) and the entries of ``aux``.

    Raises:
        TypeError, ValueError: as :func:`make_step`; ``rho`` negative or not finite.

    Examples:
        >>> import jax.numpy as jnp
        >>> import optax
        >>> from jaxla import train
        >>> def loss_fn(params, batch):
        ...     return jnp.sum(params["w"] ** 2)
        >>> optimizer = optax.sgd(0.5)
        >>> step = train.make_sam_step(loss_fn, optimizer, rho=0.1)
        >>> params = {"w": jnp.array([3.0, 4.0])}
        >>> params, state, metrics = step(params, optimizer.init(params), None)
        >>> [round(float(v), 4) for v in params["w"]]  # w - 0.5 * 2 (w + 0.1 w / |w|)
        [-0.06, -0.08]
        >>> round(float(metrics["sam_loss"]), 4)  # |w + e|^2 = 5.1^2
        26.01
    """
    fn = f"{_MODULE}.make_sam_step"
    _check_callable(loss_fn, fn, "loss_fn")
    _check_optimizer(optimizer, fn)
    rho = _check_rho(rho, fn)
    adaptive = _checks.check_bool(adaptive, fn, "adaptive")
    has_aux = _checks.check_bool(has_aux, fn, "has_aux")
    donate = _checks.check_bool(donate, fn, "donate")
    update = _Update(loss_fn, optimizer, has_aux=has_aux, sam_rho=rho, sam_adaptive=adaptive,
                     fn=fn)
    return _jit_step(update, donate)


# ---------------------------------------------------------------------------------------------
# Compiled chunks of steps


def _keep_if(ok, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)


def _take_rows(a: jax.Array, rows: jax.Array) -> jax.Array:
    """The rows ``rows`` (B,) of ``a``.

    An array sharded over ``Explicit`` mesh axes carries its sharding in its type, and a gather
    from it must name the sharding of its result: the batch keeps ``a``'s (rows split the same
    way when B divides into the shards, else replicated rows).
    """
    sharding = explicit_sharding(a)
    if sharding is None:
        return jnp.take(a, rows, axis=0)
    spec = tuple(sharding.spec)
    row_axes = spec[0]
    names = () if row_axes is None else (row_axes,) if isinstance(row_axes, str) else row_axes
    shards = math.prod(sharding.mesh.shape[n] for n in names)
    if rows.shape[0] % shards:
        row_axes = None
    out = PartitionSpec(row_axes, *spec[1:])
    return a.at[rows].get(out_sharding=out)


@functools.partial(jax.jit, static_argnames=("update", "length"), donate_argnames=("state",))
def _run_chunk(state, status, data, idx, step_key, t0, *, update, length):
    """Steps ``t0 + 1 ... t0 + length``; no update after the first non-finite step.

    ``state = (params, opt_state)`` (donated); ``status`` is the first bad step so far (int32,
    0 if none; a nonzero status freezes the whole chunk). ``idx`` is None (full batch) or
    (length, B) example indices. Returns the state, the status and the stacked metrics, each of
    shape (length,).
    """

    def body(c, i):
        params, opt_state, status = c
        t = t0 + 1 + i
        batch = data if idx is None else jax.tree_util.tree_map(
            lambda a: _take_rows(a, idx[i]), data)
        key = None if step_key is None else jax.random.fold_in(step_key, t)
        new_params, new_state, metrics = update(params, opt_state, batch, key)
        ok = (status == 0) & jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
        status = jnp.where((status == 0) & ~ok, t, status)
        return (_keep_if(ok, new_params, params), _keep_if(ok, new_state, opt_state), status), \
            metrics

    steps = jnp.arange(length, dtype=jnp.int32)
    (params, opt_state, status), metrics = lax.scan(body, (*state, status), steps)
    return (params, opt_state), status, metrics


# ---------------------------------------------------------------------------------------------
# fit


class _History:
    """Columns grouped by their step column; rows are appended at boundaries."""

    def __init__(self, columns: dict[str, Any] | None = None, groups: dict[str, str] | None = None):
        self.columns: dict[str, list] = {k: list(np.asarray(v).tolist())
                                         for k, v in (columns or {}).items()}
        self.groups: dict[str, str] = dict(groups or {})

    def reserve(self, step_column: str, names: Sequence[str]) -> None:
        """Claim ``names`` for the group of ``step_column`` before its first row."""
        rows = len(self.columns.get(step_column, []))
        for name in names:
            if name not in self.groups:
                self.groups[name] = step_column
                self.columns[name] = [math.nan] * rows

    def add(self, step_column: str, step: int, values: dict[str, float], fn: str, who: str):
        for name in values:
            group = self.groups.get(name)
            if name in _STEP_COLUMNS or (group is not None and group != step_column):
                others = sorted(k for k, g in self.groups.items() if g != step_column)
                _checks.fail(fn, f"{who} must return metric names distinct from the other "
                                 f"history columns ({', '.join(others)}), got {name!r}")
        rows = len(self.columns.get(step_column, []))
        self.columns.setdefault(step_column, []).append(int(step))
        for name, value in values.items():
            if name not in self.groups:
                self.groups[name] = step_column
                self.columns[name] = [math.nan] * rows
            self.columns[name].append(float(value))
        for name, group in self.groups.items():
            if group == step_column and name not in values:
                self.columns[name].append(math.nan)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(col, dtype=np.int64 if name in _STEP_COLUMNS else np.float64)
                for name, col in self.columns.items()}


def _scalars(out: Any, fn: str, who: str) -> dict[str, Any]:
    if not isinstance(out, Mapping):
        _checks.fail(fn, f"{who} must return a dict of scalar metrics, got "
                         f"{type(out).__name__}", TypeError)
    values = {}
    for name, value in out.items():
        if not isinstance(name, str):
            _checks.fail(fn, f"{who} must return a dict with string keys, got {name!r}", TypeError)
        if np.shape(value) != ():
            _checks.fail(fn, f"{who} must return scalar metrics, got {name!r} of shape "
                             f"{tuple(np.shape(value))}")
        values[name] = value
    return jax.device_get(values)


def _fmt(v: float) -> str:
    return f"{v:.4g}"


class _Progress:
    """A tqdm bar when stderr is a terminal, else plain lines on stderr; or nothing."""

    def __init__(self, enabled: bool, total: int, initial: int):
        self.enabled, self.total, self.bar, self.t0 = enabled, total, None, time.perf_counter()
        stderr = sys.stderr
        if enabled and stderr is not None and hasattr(stderr, "isatty") and stderr.isatty():
            with contextlib.suppress(ImportError):
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=initial, unit="step", file=stderr,
                                dynamic_ncols=True, leave=True)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def line(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        text = " ".join(f"{k} {_fmt(v)}" for k, v in values.items())
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=True)
        else:
            print(f"step {step}/{self.total} {text} ({time.perf_counter() - self.t0:.1f}s)",
                  file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def _deferred_sigint():
    """Defer the first SIGINT (main thread, default handler only) to the caller's next check."""
    state = {"requested": False}
    installed = False
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)
        if previous is signal.default_int_handler:

            def handler(signum, frame):
                if state["requested"]:
                    raise KeyboardInterrupt
                state["requested"] = True

            signal.signal(signal.SIGINT, handler)
            installed = True
    try:
        yield state
    finally:
        if installed:
            signal.signal(signal.SIGINT, previous)


def _alive(tree: Any) -> bool:
    return not any(getattr(x, "is_deleted", lambda: False)() for x in
                   jax.tree_util.tree_leaves(tree))


def _same_key(a: Any, b: Any) -> bool:
    return _checkpoint.encode_key(a) == _checkpoint.encode_key(b)


def _data_size(data: Any, fn: str) -> tuple[Any, int]:
    flat = jax.tree_util.tree_flatten_with_path(data)[0]
    if not flat:
        _checks.fail(fn, "`data` must hold at least one array, got a pytree without leaves")
    n, first = None, None
    for path, leaf in flat:
        shape = np.shape(leaf)
        where = _paths.path_str(path) or "data"
        if len(shape) == 0:
            _checks.fail(fn, f"`data` leaves must have a leading example axis, got a scalar at "
                             f"{where!r}")
        if n is None:
            n, first = int(shape[0]), where
        elif shape[0] != n:
            _checks.fail(fn, f"`data` leaves must share the leading example axis ({n} examples "
                             f"at {first!r}), got {shape[0]} at {where!r}")
    return jax.tree_util.tree_map(jnp.asarray, data), n


def _accepts_key(f: Any) -> bool | None:
    """Whether ``f`` takes a third positional argument (None when its signature is unknown)."""
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return None
    kinds = [p.kind for p in sig.parameters.values()]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(k in positional for k in kinds) >= 3


@functools.partial(jax.jit, static_argnums=2)
def _permutation(shuffle_key: Any, epoch: Any, n: int) -> jax.Array:
    return jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n)


def _epoch_order(shuffle_key: Any, epoch: int, n: int) -> np.ndarray:
    if shuffle_key is None:
        return np.arange(n, dtype=np.int32)
    return np.asarray(_permutation(shuffle_key, np.uint32(epoch), n)).astype(np.int32)


class _Batches:
    """Example indices of the steps of a chunk, (length, B), from per-epoch orders."""

    def __init__(self, shuffle_key: Any, n: int, batch_size: int):
        self.key, self.n, self.bs = shuffle_key, n, batch_size
        self.per_epoch = n // batch_size
        self.cache: dict[int, np.ndarray] = {}

    def indices(self, t0: int, length: int) -> jax.Array:
        s = np.arange(t0, t0 + length)  # 0-based step indices
        epochs, pos = s // self.per_epoch, s % self.per_epoch
        wanted = np.unique(epochs)
        self.cache = {e: p for e, p in self.cache.items() if e in wanted}
        for e in wanted.tolist():
            if e not in self.cache:
                self.cache[e] = _epoch_order(self.key, e, self.n)
        orders = np.stack([self.cache[e] for e in wanted.tolist()])
        rows = np.searchsorted(wanted, epochs)
        cols = pos[:, None] * self.bs + np.arange(self.bs)[None, :]
        return jnp.asarray(orders[rows[:, None], cols])


def fit(
    loss_fn: Callable[..., Any],
    params: Any,
    data: Any,
    optimizer: optax.GradientTransformation,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    shuffle: bool = True,
    key: jax.Array | None = None,
    eval_fn: Callable[[Any], Mapping[str, Any]] | None = None,
    eval_every: int | None = None,
    callbacks: Sequence[Callable[[CallbackInfo], Mapping[str, Any] | None]] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    progress: bool = True,
    log_every: int | None = None,
    has_aux: bool = False,
    sam_rho: float | None = None,
    sam_adaptive: bool = False,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Train ``params`` on ``data`` with ``optimizer``: compiled chunks of steps, logged, resumable.

    The module docstring describes the protocol in full: step numbering, batches and keys,
    chunks, history, callbacks, progress, checkpoints, Ctrl-C and non-finite losses.

    Args:
        loss_fn: ``loss_fn(params, batch) -> loss`` (scalar) or ``(loss, aux)`` with
            ``has_aux``; ``loss_fn(params, batch, key)`` when ``key`` is given.
        params: Initial parameters (a pytree of floating arrays). Not modified: ``fit`` works
            on a copy.
        data: A pytree of arrays sharing a leading example axis ``n``, e.g. ``(x, y)`` or a dict;
            a batch is the same pytree sliced on that axis (the whole of it with full batches).
        optimizer: Any ``optax.GradientTransformation``.
        steps: Number of steps (static int >= 1). Exactly one of ``steps`` and ``epochs``.
        epochs: Number of epochs (``epochs * (n // batch_size)`` steps; ``epochs`` steps with
            full batches).
        batch_size: ``B`` examples per step (1 <= B <= n); ``None`` for full-batch steps. The
            last ``n % B`` examples of each epoch's order are dropped.
        shuffle: Visit the examples of each epoch in a random order (needs ``key``); ``False``
            keeps the order of ``data``.
        key: PRNG key for shuffling and per-step keys; when given, ``loss_fn`` must take a
            third argument (the step key).
        eval_fn: ``eval_fn(params) -> dict of scalars``, called outside ``jit`` every
            ``eval_every`` steps and at the last step.
        eval_every: Steps between evaluations (default ``log_every``); needs ``eval_fn``.
        callbacks: Callables ``cb(CallbackInfo) -> dict | None`` called at every logging
            boundary (a single callable is accepted too).
        checkpoint_dir: Directory of ``checkpoint.npz`` (created when missing); ``None`` writes
            nothing.
        checkpoint_every: Steps between checkpoints (default ``log_every``); needs
            ``checkpoint_dir``.
        resume: Continue from ``<checkpoint_dir>/checkpoint.npz`` when it exists.
        progress: Show a progress bar (terminal) or log lines (otherwise) on stderr.
        log_every: Steps between logged history rows (default ``max(1, total // 20)``).
        has_aux: Whether ``loss_fn`` returns ``(loss, aux)``; the ``aux`` metrics are logged.
        sam_rho: When set, train with sharpness-aware minimisation of radius ``sam_rho`` (see
            :func:`make_sam_step`).
        sam_adaptive: Use ASAM's perturbation (needs ``sam_rho``).

    Returns:
        ``(params, history)``: the trained parameters (structure, shapes and dtypes of
        ``params``) and the history, a dict of (T,) numpy arrays (``"step"``, ``"loss"``,
        ``"grad_norm"``, the ``aux``, evaluation and callback metrics and their step columns).

    Raises:
        TypeError: wrong argument types (callables, optimizer, key, ints).
        ValueError: both or neither of ``steps``/``epochs``; ``batch_size`` > n; ``data`` leaves
            disagreeing on ``n``; NaN/Inf in ``params`` or ``data``; shuffling without ``key``;
            ``eval_every``/``checkpoint_every``/``sam_adaptive`` without what they need; a
            checkpoint that does not match the call; bad ``loss_fn``/``eval_fn``/callback
            outputs.
        FloatingPointError: a non-finite loss or gradient norm (``err.params``, ``err.step``...).
        KeyboardInterrupt: re-raised after writing a checkpoint (``err.params``, ``err.step``).

    Examples:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import optax
        >>> from jaxla import train
        >>> x = jax.random.normal(jax.random.key(0), (100, 2))
        >>> y = (x[:, 0] > 0).astype(jnp.float32)
        >>> def loss_fn(params, batch, key=None):
        ...     xb, yb = batch
        ...     logits = xb @ params["w"] + params["b"]
        ...     loss = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, yb))
        ...     return loss, {"accuracy": jnp.mean((logits > 0) == (yb > 0))}
        >>> params = {"w": jnp.zeros(2), "b": jnp.zeros(())}
        >>> params, history = train.fit(
        ...     loss_fn, params, (x, y), optax.adam(0.1), epochs=10, batch_size=20,
        ...     key=jax.random.key(1), has_aux=True, log_every=10, progress=False)
        >>> history["step"].tolist()
        [10, 20, 30, 40, 50]
        >>> bool(history["accuracy"][-1] >= 0.9)
        True
    """
    fn = f"{_MODULE}.fit"
    _check_callable(loss_fn, fn, "loss_fn")
    _check_optimizer(optimizer, fn)
    has_aux = _checks.check_bool(has_aux, fn, "has_aux")
    shuffle = _checks.check_bool(shuffle, fn, "shuffle")
    resume = _checks.check_bool(resume, fn, "resume")
    progress = _checks.check_bool(progress, fn, "progress")
    sam_adaptive = _checks.check_bool(sam_adaptive, fn, "sam_adaptive")
    if sam_rho is not None:
        sam_rho = _checks.check_positive(sam_rho, fn, "sam_rho", allow_zero=True)
    elif sam_adaptive:
        _checks.fail(fn, "`sam_adaptive` needs `sam_rho` (the SAM radius), got sam_rho=None")
    if eval_fn is not None:
        _check_callable(eval_fn, fn, "eval_fn")
    if callable(callbacks):
        callbacks = (callbacks,)
    if not isinstance(callbacks, Sequence) or not all(callable(c) for c in callbacks):
        _checks.fail(fn, f"`callbacks` must be a sequence of callables, got {callbacks!r}",
                     TypeError)
    _check_key(key, fn)

    data, n = _data_size(data, fn)
    if (steps is None) == (epochs is None):
        _checks.fail(fn, f"exactly one of `steps` and `epochs` must be given, got steps={steps!r} "
                         f"and epochs={epochs!r}")
    if batch_size is not None:
        batch_size = _checks.check_int(batch_size, fn, "batch_size", min=1, max=n,
                                       max_doc="the number of examples n")
        if shuffle and key is None:
            _checks.fail(fn, "`key` must be given to shuffle minibatches (or pass "
                             "shuffle=False), got None")
    per_epoch = 1 if batch_size is None else n // batch_size
    if steps is not None:
        total = _checks.check_int(steps, fn, "steps", min=1)
    else:
        total = _checks.check_int(epochs, fn, "epochs", min=1) * per_epoch
    log_every = max(1, total // 20) if log_every is None else \
        _checks.check_int(log_every, fn, "log_every", min=1)
    if eval_every is not None:
        if eval_fn is None:
            _checks.fail(fn, f"`eval_every` needs `eval_fn`, got eval_every={eval_every!r} and "
                             "eval_fn=None")
        eval_every = _checks.check_int(eval_every, fn, "eval_every", min=1)
    elif eval_fn is not None:
        eval_every = log_every
    if checkpoint_every is not None:
        if checkpoint_dir is None:
            _checks.fail(fn, f"`checkpoint_every` needs `checkpoint_dir`, got "
                             f"checkpoint_every={checkpoint_every!r} and checkpoint_dir=None")
        checkpoint_every = _checks.check_int(checkpoint_every, fn, "checkpoint_every", min=1)
    elif checkpoint_dir is not None:
        checkpoint_every = log_every
    chunk = math.gcd(log_every, eval_every or 0, checkpoint_every or 0)
    if key is not None and _accepts_key(loss_fn) is False:
        _checks.fail(fn, "`loss_fn` must take a third argument, the step key, when `key` is "
                         "given (add a `key=None` parameter), got a function of fewer arguments",
                     TypeError)
    _checks.check_finite(params, fn, "params")
    _checks.check_finite(data, fn, "data")

    update = _Update(loss_fn, optimizer, has_aux=has_aux, sam_rho=sam_rho,
                     sam_adaptive=sam_adaptive, fn=fn)
    params = jax.tree_util.tree_map(jnp.array, params)  # a copy: the caller's arrays survive
    opt_state = jax.tree_util.tree_map(jnp.array, optimizer.init(params))
    shuffle_key, step_key = (None, None) if key is None else jax.random.split(key)
    if not shuffle:
        shuffle_key = None
    config = {"n": n, "batch_size": batch_size, "shuffle": shuffle}
    history = _History()
    step, stopped = 0, False
    ckpt_path = None if checkpoint_dir is None else os.path.join(os.fspath(checkpoint_dir),
                                                                  CHECKPOINT_FILE)
    last_ckpt: tuple[str, int] | None = None
    if ckpt_path is not None and resume and os.path.exists(ckpt_path):
        params, opt_state, step, history, stopped = _resume(
            ckpt_path, params, opt_state, key, config, total, fn)
        last_ckpt = (ckpt_path, step)

    bar = _Progress(progress, total, step)
    if last_ckpt is not None:
        bar.note(f"resuming from {ckpt_path} at step {step}/{total}")
    batches = None if batch_size is None else _Batches(shuffle_key, n, batch_size)

    def save(t: int) -> None:
        nonlocal last_ckpt
        extra = {"fit": {**config, "groups": history.groups, "stopped": stopped}}
        _checkpoint.write(ckpt_path, params, opt_state, step=t, key=key,
                          history=history.arrays(), extra=extra)
        last_ckpt = (ckpt_path, t)

    def attach(err: BaseException) -> None:
        err.params, err.opt_state, err.step, err.history = (params, opt_state, step,
                                                            history.arrays())

    def needs_state(end: int) -> bool:
        """Whether the boundary at ``end`` uses the parameters (so it cannot lag a chunk)."""
        return (end == total or interrupt["requested"]
                or (eval_fn is not None and end % eval_every == 0)
                or (bool(callbacks) and end % log_every == 0)
                or (ckpt_path is not None and end % checkpoint_every == 0))

    def finish(start: int, end: int, status: Any, metrics: Any) -> bool:
        """Read a chunk's results back: raise on a non-finite step, else log the boundary."""
        nonlocal step
        status, metrics = jax.device_get((status, metrics))
        if status:
            bad = int(status)
            at = min(max(bad - start - 1, 0), end - start - 1)
            row = {k: float(v[at]) for k, v in metrics.items()}
            step = bad - 1  # params are frozen at the state after step bad - 1
            what = "loss" if not math.isfinite(row["loss"]) else "gradient"
            where = (f"the last good checkpoint is {last_ckpt[0]!r} (step {last_ckpt[1]})"
                     if last_ckpt else "no checkpoint was written")
            err = FloatingPointError(
                f"{fn}: {what} is not finite at step {bad} (loss {_fmt(row['loss'])}, "
                f"grad_norm {_fmt(row['grad_norm'])}); {where}; err.params holds the "
                f"parameters after step {step}")
            attach(err)
            raise err
        bar.update(end - start)
        order = [k for k in _RESERVED if k in metrics] + sorted(
            k for k in metrics if k not in _RESERVED)
        last = {k: float(metrics[k][-1]) for k in order}
        return _boundary(end, total, last, params, opt_state, history, eval_fn, eval_every,
                         callbacks, log_every, bar, fn)

    # Chunks are dispatched one ahead of their read-back when the boundary between them needs
    # only the metrics (no evaluation, callback or checkpoint): the transfer and the host work
    # then overlap the next chunk. ``status`` is carried, so a chunk dispatched after a bad step
    # stays frozen and ``params``/``opt_state``/``step`` always describe the newest chunk.
    pending = None  # (start, end, status, metrics) of a chunk not read back yet
    status = np.zeros((), np.int32)
    with _deferred_sigint() as interrupt:
        try:
            while step < total and not stopped:
                start, end = step, min((step // chunk + 1) * chunk, total)
                idx = None if batches is None else batches.indices(start, end - start)
                (new_params, new_state), new_status, metrics = _run_chunk(
                    (params, opt_state), status, data, idx, step_key, np.int32(start),
                    update=update, length=end - start)
                params, opt_state, status, step = new_params, new_state, new_status, end
                if pending is not None:
                    earlier, pending = pending, None
                    finish(*earlier)
                if not needs_state(end):
                    pending = (start, end, status, metrics)
                    continue
                stopped = finish(start, end, status, metrics)
                if ckpt_path is not None and (end % checkpoint_every == 0 or end == total
                                              or stopped):
                    save(end)
                if interrupt["requested"]:
                    raise KeyboardInterrupt
        except KeyboardInterrupt as err:
            if _alive((params, opt_state)) and not int(jax.device_get(status)):
                if pending is not None:
                    earlier, pending = pending, None
                    finish(*earlier)
                if ckpt_path is not None and (last_ckpt is None or last_ckpt[1] != step):
                    save(step)
                    bar.note(f"interrupted: wrote {ckpt_path} at step {step}/{total}")
                attach(err)
            raise
        finally:
            bar.close()
    return params, history.arrays()


def _resume(path, params, opt_state, key, config, total, fn):
    ckpt = _load(path, params, opt_state, fn=fn)
    if not _same_key(ckpt.key, key):
        _checks.fail(fn, f"`key` must be the key of the run that wrote the checkpoint {path!r} "
                         "(pass the same key, or resume=False to start afresh), got a different "
                         "key")
    meta = ckpt.extra.get("fit", {})
    for name in ("n", "batch_size", "shuffle"):
        if name in meta and meta[name] != config[name]:
            what = "the number of examples of `data`" if name == "n" else f"`{name}`"
            _checks.fail(fn, f"{what} must be {meta[name]!r} as in the run that wrote the "
                             f"checkpoint {path!r} (or pass resume=False), got {config[name]!r}")
    if ckpt.step > total:
        _checks.fail(fn, f"the checkpoint {path!r} is at step {ckpt.step}, beyond the {total} "
                         "steps asked for; ask for more steps or pass resume=False")
    history = _History(ckpt.history, meta.get("groups") or {
        name: "step" for name in ckpt.history if name not in _STEP_COLUMNS})
    return ckpt.params, ckpt.opt_state, ckpt.step, history, bool(meta.get("stopped", False))


def _boundary(step, total, last, params, opt_state, history, eval_fn, eval_every, callbacks,
              log_every, bar, fn) -> bool:
    """Log, evaluate and call the callbacks at the end of a chunk; True to stop."""
    is_log = step % log_every == 0 or step == total
    printed = dict(last) if is_log else {}
    history.reserve("step", list(last))
    if is_log:
        history.add("step", step, last, fn, "`loss_fn`")
    if eval_fn is not None and (step % eval_every == 0 or step == total):
        values = _scalars(eval_fn(params), fn, "`eval_fn`")
        history.add("eval_step", step, values, fn, "`eval_fn`")
        printed.update({k: float(v) for k, v in values.items()})
        last = {**last, **{k: float(v) for k, v in values.items()}}
    stop = False
    if is_log and callbacks:
        outputs: dict[str, Any] = {}
        for i, cb in enumerate(callbacks):
            out = cb(CallbackInfo(step, params, opt_state, dict(last), history.arrays()))
            if out is None:
                continue
            out = dict(out) if isinstance(out, Mapping) else out
            if isinstance(out, dict) and "stop" in out:
                stop = stop or bool(out.pop("stop"))
            outputs.update(_scalars(out, fn, f"`callbacks[{i}]`"))
        if outputs:
            history.add("callback_step", step, outputs, fn, "`callbacks`")
            printed.update({k: float(v) for k, v in outputs.items()})
    if is_log:
        bar.line(step, printed)
    return stop


# ---------------------------------------------------------------------------------------------
# Checkpoints


class _Loaded(NamedTuple):
    params: Any
    opt_state: Any
    step: int
    key: Any
    history: dict[str, np.ndarray]
    extra: dict[str, Any]


def _load(path, params_like, opt_state_like, *, fn) -> _Loaded:
    meta, arrays = _checkpoint.read(path, fn=fn)
    shown = os.fspath(path)
    public = fn.endswith("load_checkpoint")
    params = _checkpoint.restore_tree(params_like, meta["params"], arrays, "params", fn=fn,
                                      name="params_like" if public else "params", path=shown)
    opt_state = _checkpoint.restore_tree(
        opt_state_like, meta["opt_state"], arrays, "opt_state", fn=fn,
        name="opt_state_like" if public else "optimizer.init(params)", path=shown)
    return _Loaded(params, opt_state, int(meta["step"]), _checkpoint.decode_key(meta["key"]),
                   _checkpoint.decode_history(meta["history"]), meta.get("extra") or {})


def save_checkpoint(
    path: str | os.PathLike,
    params: Any,
    opt_state: Any,
    *,
    step: int,
    key: jax.Array | None = None,
    history: Mapping[str, Any] | None = None,
) -> str:
    """Write a training state to ``path`` atomically, as a ``.npz`` plus JSON metadata.

    The file is a ``.npz`` archive (no pickle) of the leaves of ``params`` (``params_<i>``) and
    ``opt_state`` (``opt_state_<i>``) in ``jax.tree_util.tree_leaves`` order, and a ``metadata``
    entry holding the UTF-8 bytes of a JSON object: step, leaf paths/shapes/dtypes, the key
    (``jax.random.key_data`` and its implementation) and the history. It is written to a temporary
    file in the same directory, fsync-ed and moved over ``path`` with ``os.replace``: a reader
    (or a run killed meanwhile) sees the previous file or the new one, never a partial one.
    Values are stored bit for bit (bfloat16 and other non-numpy dtypes as their raw bits).

    Args:
        path: File to write (its directory is created when missing); the name is used as is.
        params: Pytree of arrays.
        opt_state: Pytree of arrays (an optax state; ``()`` when there is none).
        step: Completed steps (int >= 0).
        key: PRNG key to store (typed or raw), or ``None``.
        history: Dict of 1-D columns (e.g. :func:`fit`'s history), or ``None``.

    Returns:
        ``path`` as a string.

    Examples:
        >>> import os, tempfile
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import optax
        >>> from jaxla import train
        >>> params = {"w": jnp.arange(3.0)}
        >>> optimizer = optax.adam(1e-3)
        >>> path = os.path.join(tempfile.mkdtemp(), "state.npz")
        >>> _ = train.save_checkpoint(path, params, optimizer.init(params), step=7,
        ...                           key=jax.random.key(0))
        >>> ckpt = train.load_checkpoint(path, params, optimizer.init(params))
        >>> ckpt.step, ckpt.params["w"].tolist()
        (7, [0.0, 1.0, 2.0])
    """
    fn = f"{_MODULE}.save_checkpoint"
    step = _checks.check_int(step, fn, "step", min=0)
    _check_key(key, fn)
    if history is not None:
        if not isinstance(history, Mapping):
            _checks.fail(fn, f"`history` must be a dict of 1-D columns, got "
                             f"{type(history).__name__}", TypeError)
        for name, col in history.items():
            if np.ndim(col) != 1:
                _checks.fail(fn, f"`history` columns must be 1-D, got {name!r} of shape "
                                 f"{tuple(np.shape(col))}")
    if os.path.isdir(os.fspath(path)):
        _checks.fail(fn, f"`path` must name a file, got the directory {os.fspath(path)!r}")
    return _checkpoint.write(path, params, opt_state, step=step, key=key,
                             history=dict(history) if history is not None else None)


def load_checkpoint(path: str | os.PathLike, params_like: Any, opt_state_like: Any) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` or :func:`fit`.

    The stored leaves are put back into the structures of ``params_like`` and ``opt_state_like``
    (e.g. freshly initialized parameters and ``optimizer.init(params)``), whose leaf paths,
    shapes and dtypes must match the file.

    Args:
        path: The checkpoint file (``<checkpoint_dir>/checkpoint.npz`` for :func:`fit`).
        params_like: Pytree with the structure, shapes and dtypes of the stored parameters.
        opt_state_like: Same for the optimizer state.

    Returns:
        :class:`Checkpoint` ``(params, opt_state, step, key, history)``: arrays on the default
        device, ``step`` an int, ``key`` the stored key (``None`` if none), ``history`` a dict of
        1-D numpy arrays.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a jaxla checkpoint; leaf paths, shapes or dtypes that differ from the
            ``*_like`` trees (the message names the first differing leaf).

    Examples:
        >>> import os, tempfile
        >>> import jax.numpy as jnp
        >>> from jaxla import train
        >>> path = os.path.join(tempfile.mkdtemp(), "adapter.npz")
        >>> _ = train.save_checkpoint(path, {"a": jnp.ones((2, 3))}, (), step=0)
        >>> train.load_checkpoint(path, {"a": jnp.zeros((2, 3))}, ()).params["a"].shape
        (2, 3)
    """
    fn = f"{_MODULE}.load_checkpoint"
    loaded = _load(path, params_like, opt_state_like, fn=fn)
    return Checkpoint(loaded.params, loaded.opt_state, loaded.step, loaded.key, loaded.history)


# ---------------------------------------------------------------------------------------------
# Penalties and masks


def _selected(params: Any, include: Any, exclude: Any, fn: str) -> list[jax.Array]:
    mask = _paths.select(params, include, exclude, fn=fn)
    out = []
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    for (path, leaf), chosen in zip(flat, jax.tree_util.tree_leaves(mask), strict=True):
        if chosen:
            out.append(upcast(_checks.as_float_array(
                leaf, fn, f"params[{_paths.path_str(path)!r}]")))
    return out


def _total(values: list[jax.Array]) -> jax.Array:
    if not values:
        return jnp.zeros((), jnp.float32)
    return sum(values[1:], values[0])


def l2(params: Any, *, include: Any = None, exclude: Any = None) -> jax.Array:
    """Squared L2 norm ``sum w^2`` of the selected leaves (no factor 1/2).

    scikit-learn's Ridge minimizes ``||y - X w||^2 + alpha * l2(w)``: add ``alpha * l2(params)``
    to a loss for the same objective.

    Args:
        params: Pytree of floating arrays.
        include: Patterns (glob strings or compiled regular expressions, ``jaxla._paths`` rules)
            of the leaf paths to include; ``None`` includes every leaf.
        exclude: Patterns of leaf paths to leave out (applied after ``include``).

    Returns:
        Scalar, in the dtype of the selected leaves (float16/bfloat16 give float32: a sum of many
        squares overflows them); 0 when nothing is selected.

    Raises:
        TypeError: a selected leaf that is not floating.
        ValueError: a pattern that matches no leaf (the message lists the nearest paths).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxla import train
        >>> params = {"layer": {"w": jnp.array([1.0, 2.0]), "b": jnp.array([3.0])}}
        >>> float(train.l2(params)), float(train.l2(params, exclude="*/b"))
        (14.0, 5.0)
    """
    fn = f"{_MODULE}.l2"
    return _total([jnp.sum(jnp.square(x)) for x in _selected(params, include, exclude, fn)])


def l1(params: Any, *, include: Any = None, exclude: Any = None) -> jax.Array:
    """L1 norm ``sum |w|`` of the selected leaves.

    Args:
        params: Pytree of floating arrays.
        include: Patterns of the leaf paths to include (``None``: every leaf).
        exclude: Patterns of leaf paths to leave out.

    Returns:
        Scalar, in the dtype of the selected leaves (float16/bfloat16 give float32).

    Raises:
        TypeError: a selected leaf that is not floating.
        ValueError: a pattern that matches no leaf.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxla import train
        >>> params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([3.0])}
        >>> float(train.l1(params)), float(train.l1(params, include="w"))
        (6.0, 3.0)
    """
    fn = f"{_MODULE}.l1"
    return _total([jnp.sum(jnp.abs(x)) for x in _selected(params, include, exclude, fn)])


def elastic_net(
    params: Any, *, l1_ratio: float = 0.5, include: Any = None, exclude: Any = None
) -> jax.Array:
    """scikit-learn's ElasticNet penalty ``l1_ratio * l1 + (1 - l1_ratio) / 2 * l2``.

    ``ElasticNet(alpha, l1_ratio)`` minimizes ``||y - X w||^2 / (2 n) + alpha *
    elastic_net(w, l1_ratio=l1_ratio)``.

    Args:
        params: Pytree of floating arrays.
        l1_ratio: Mix between the L1 (1.0) and the squared L2 (0.0) penalties, in [0, 1].
        include: Patterns of the leaf paths to include (``None``: every leaf).
        exclude: Patterns of leaf paths to leave out.

    Returns:
        Scalar, in the dtype of the selected leaves (float16/bfloat16 give float32).

    Raises:
        TypeError: a selected leaf that is not floating.
        ValueError: ``l1_ratio`` outside [0, 1]; a pattern that matches no leaf.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxla import train
        >>> params = {"w": jnp.array([1.0, -2.0])}
        >>> float(train.elastic_net(params, l1_ratio=0.5))  # 0.5 * 3 + 0.25 * 5
        2.75
    """
    fn = f"{_MODULE}.elastic_net"
    if not isinstance(l1_ratio, jax.core.Tracer):
        if not isinstance(l1_ratio, numbers.Real | np.ndarray | jax.Array) or \
                np.ndim(l1_ratio) != 0:
            _checks.fail(fn, f"`l1_ratio` must be a real number in [0, 1], got {l1_ratio!r}",
                         TypeError)
        if not 0.0 <= float(l1_ratio) <= 1.0:
            _checks.fail(fn, f"`l1_ratio` must be in [0, 1], got {l1_ratio!r}")
        l1_ratio = float(l1_ratio)
    leaves = _selected(params, include, exclude, fn)
    sq = _total([jnp.sum(jnp.square(x)) for x in leaves])
    ab = _total([jnp.sum(jnp.abs(x)) for x in leaves])
    return l1_ratio * ab + (1 - l1_ratio) / 2 * sq


def decay_mask(params: Any, *, include: Any = None, exclude: Any = DECAY_EXCLUDE) -> Any:
    """Boolean mask pytree of the leaves that weight decay applies to.

    For ``optax.adamw(..., mask=...)`` and ``optax.add_decayed_weights(..., mask=...)``; also
    usable directly as the mask callable (``mask=train.decay_mask``). A leaf is decayed when its
    path matches ``include`` (every leaf when ``None``) and none of ``exclude``.

    Args:
        params: Parameter pytree.
        include: Patterns of the leaf paths to decay (``None``: every leaf).
        exclude: Patterns of leaf paths never decayed; the default :data:`DECAY_EXCLUDE` leaves
            out biases and normalization scales (``"b"``, ``"bias"``, ``"scale"`` at any depth)
            and may match nothing; patterns given explicitly must each match some leaf.

    Returns:
        A pytree of Python bools with the structure of ``params``.

    Raises:
        ValueError: an explicitly given pattern that matches no leaf.

    Examples:
        >>> import jax
        >>> from jaxla import nn, train
        >>> params = nn.mlp_init(jax.random.key(0), [3, 4, 2])
        >>> train.decay_mask(params)
        {'layers_0': {'b': False, 'w': True}, 'layers_1': {'b': False, 'w': True}}
    """
    fn = f"{_MODULE}.decay_mask"
    keep = _paths.select(params, include, None, fn=fn)
    patterns = _paths.check_patterns(exclude, fn, "exclude")
    if patterns:
        drop = _paths.select(params, patterns, None, fn=fn, include_name="exclude",
                             strict=exclude is not DECAY_EXCLUDE)
    else:
        drop = jax.tree_util.tree_map(lambda _: False, keep)
    return jax.tree_util.tree_map(lambda k, d: bool(k and not d), keep, drop)

