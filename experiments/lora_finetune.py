"""LoRA fine-tuning: full fine-tuning, head-only, LoRA at several ranks and PiSSA, side by side.

A model is pretrained on one task and adapted to a shifted one, on scikit-learn's 8x8 digits
(embedded, no network):

- **pretraining task**: classify the digits 0-4;
- **shifted task**: classify the digits 5-9 (five new classes, so every adapted model gets a new,
  zero-initialized classification head) from ``train_per_class`` images of each digit. Each
  method's learning rate is chosen on ``val_per_class`` validation images of each digit, and
  accuracy is reported on the remaining images (about 90 per digit), never used for a choice.

Two models see the same data:

1. an MLP classifier (:func:`jaxla.models.mlp_classifier_init`, ReLU hidden layers); LoRA adapts
   its hidden weight matrices;
2. a small vision transformer built from :mod:`jaxla.nn`: each ``transformer_patch`` x
   ``transformer_patch`` patch of the image is a token (a dense patch embedding plus a learned
   position embedding), followed by pre-norm :func:`jaxla.nn.transformer_block` layers, a final
   layer norm, mean pooling over the tokens and a dense head. LoRA adapts the weights named by
   ``transformer_targets``: by default the position-embedding table (read through
   :func:`jaxla.nn.embedding`, which applies an adapted table factored) and the attention value
   projections. Adapting the position embedding matters on this task: which pixels tell the
   new digits apart differs from the old ones. In quick mode's three gap seeds, rank-8 LoRA
   on the value projections alone (0.79% of the parameters,
   ``config={"transformer_targets": ["*/attention/value/w"]}``) reaches 90.6 / 89.2 / 91.7%
   test accuracy, 1.8 points below full fine-tuning (92.2 / 90.6 / 94.2%) on average; with
   the position table too, 91.7 / 92.8 / 95.5%, 1.0 point above it.

Why a transformer on the digits rather than the character-level language model of
:mod:`experiments.attention`: that model needs about a minute of a 2-core CPU to get anywhere
and stays far from converged, so further training of any kind keeps improving it on any text,
and a comparison of fine-tuning methods would measure continued pretraining. The digits
transformer is pretrained to convergence in seconds, so adaptation is what is compared.

The methods, all trained on the same batches for the same number of steps (Adam after
global-norm clipping, linear warm-up, cosine decay of the learning rate to a tenth):

- ``full``: every parameter of the pretrained model, with the new head;
- ``head``: the new head alone (a linear probe on the frozen pretrained features);
- ``lora_r{r}``: LoRA adapters of rank ``r`` (:func:`jaxla.lora.spec`, :func:`jaxla.lora.init`:
  ``A`` random, ``B = 0``, scale 1) and the new head, the base frozen; the loss is a function of
  the adapters and the head only, the model running factored through :func:`jaxla.lora.apply`;
- ``pissa_r{r}``: the same adapters initialized by PiSSA (``init(..., method="pissa")``: the
  adapters start as the principal rank-``r`` part of each weight, the frozen base is the
  residual).

Reported for every method and model: test accuracy after the last step, at the learning rate of
the method's grid with the best final validation accuracy (the test images are evaluated once
per method, for that run only), the learning curve (validation accuracy every ``eval_every``
steps), the final model's mean cross-entropy on the training images (how closely the method
fits the shifted task), the number of trained parameters and their fraction of the model
(frozen plus trained, as :func:`jaxla.lora.summary` counts it), the median time of a training
step after compilation, and the memory of the optimizer state (bytes of the leaves of the optax
state). Every fine-tuned adapter set is checked: merged and factored outputs agree
(:func:`jaxla.lora.check_merge`), and adapters written with :func:`jaxla.lora.save` into a
temporary directory inside ``out_dir`` and read back with :func:`jaxla.lora.load` are
bit-identical and give identical outputs.

Acceptance (booleans, with the measured numbers): on the transformer at rank 8 the trained
parameters (adapters and head) are at most 1% of the model, and LoRA's test accuracy is within
2 points of full fine-tuning's. One run's gap moves by several points with the seed (the data
split, the pretrained model, the batches and the learning rates chosen all change with it), so
the gap is the mean over ``gap_seeds`` seeds (``seed``, ``seed + 1``, ...; every seed after the
first pretrains again and runs full fine-tuning and LoRA at rank 8 alone, each choosing its
learning rate on its own validation images), reported with its standard error and every seed's
numbers. The MLP's gap (one seed) is reported too.

Both modes choose every method's learning rate on the validation images: quick mode from two
rates per method, with fewer steps and three gap seeds (about two CPU-minutes), full
mode from three rates per method, with twice the pretraining steps, three times the
fine-tuning steps and five gap seeds.

Run it alone with ``python -m experiments.lora_finetune [--quick | --full] [--out DIR]``.
"""

from __future__ import annotations

import functools
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxla.lora as lora
import jaxla.nn as jnn
from experiments._config import merge_config
from experiments._plotting import figure
from experiments.attention import _progress
from jaxla import models
from jaxla._checks import check_int, check_positive, fail

__all__ = ["ACCEPT_RANK", "FULL", "NAME", "QUICK", "TITLE", "Data", "load_data", "run"]

NAME = "lora_finetune"
TITLE = "LoRA fine-tuning: full, head-only, LoRA ranks and PiSSA on a shifted task"
_FN = "experiments.lora_finetune.run"

ACCEPT_RANK = 8
"""The rank at which the acceptance targets are measured."""
_KINDS = ("full", "head", "lora", "pissa")
_MODELS = ("mlp", "transformer")
_ADAPTERS = "adapters"  # key of the adapters inside a trainable pytree

QUICK: dict[str, Any] = {
    "train_per_class": 60, "val_per_class": 30, "batch_size": 16, "eval_every": 25,
    "warmup_steps": 20, "ranks": [1, 4, 8, 16], "pissa_rank": 8,
    "mlp_hidden": [256, 256], "mlp_pretrain_steps": 300, "mlp_pretrain_lr": 3e-3,
    "mlp_steps": 200,
    "mlp_lrs": {"full": [1e-3, 3e-3], "head": [1e-2, 3e-2], "lora": [3e-3, 1e-2],
                "pissa": [3e-3, 1e-2]},
    "transformer_d_model": 192, "transformer_heads": 4, "transformer_layers": 2,
    "transformer_patch": 2,
    "transformer_targets": ["position_embedding/table", "*/attention/value/w"],
    "transformer_pretrain_steps": 300, "transformer_pretrain_lr": 5e-4, "transformer_steps": 100,
    "transformer_lrs": {"full": [5e-4, 1e-3], "head": [1e-2, 3e-2], "lora": [1e-2, 3e-2],
                        "pissa": [1e-2, 3e-2]},
    "gap_seeds": 3,
}
"""Quick-mode configuration; any entry can be overridden through the ``config`` dict.

``*_lrs`` map a method kind (``full``, ``head``, ``lora``, ``pissa``) to the learning rates
tried (quick mode: two rates per method, the better ones in trial runs); every LoRA rank uses
the ``lora`` grid. ``*_steps`` must be multiples of ``eval_every``. At width 192 the rank-8
adapters of the (16, 192) position table and the two (192, 192) value projections, and the
head, are 0.97% of the transformer's parameters. ``gap_seeds``
(at least 2) is the number of seeds over which the transformer's rank-8 gap to full
fine-tuning is averaged.
"""

FULL: dict[str, Any] = {
    **QUICK,
    "mlp_pretrain_steps": 600, "mlp_steps": 400,
    "mlp_lrs": {"full": [3e-4, 1e-3, 3e-3], "head": [1e-2, 3e-2, 1e-1],
                "lora": [3e-3, 1e-2, 3e-2], "pissa": [1e-3, 3e-3, 1e-2]},
    "transformer_pretrain_steps": 600, "transformer_steps": 300,
    "transformer_lrs": {"full": [5e-4, 1e-3, 2e-3], "head": [1e-2, 3e-2, 1e-1],
                        "lora": [3e-3, 1e-2, 3e-2], "pissa": [3e-3, 1e-2, 3e-2]},
    "gap_seeds": 5,
}
"""Full-mode configuration: a wider transformer, three learning rates per method, more steps."""

_INT_KEYS = ("train_per_class", "val_per_class", "batch_size", "eval_every",
             "mlp_pretrain_steps", "mlp_steps", "transformer_d_model", "transformer_heads",
             "transformer_layers", "transformer_patch", "transformer_pretrain_steps",
             "transformer_steps", "pissa_rank")
_MIN_GAP_SEEDS = 2  # a standard error needs two
_FLOAT_KEYS = ("mlp_pretrain_lr", "transformer_pretrain_lr")
_PRETRAIN_TEST_FRACTION = 0.15
_MIN_TEST_PER_CLASS = 20
_TX = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam())
"""Every run: global-norm clipping, then Adam's scaling; the scheduled learning rate follows."""


# --------------------------------------------------------------------------------------------
# configuration and data


def _int_list(value: Any, name: str) -> list[int]:
    if not isinstance(value, list | tuple) or not value:
        fail(_FN, f"`config['{name}']` must be a non-empty list of ints, got {value!r}")
    return [check_int(v, _FN, f"config['{name}']", min=1) for v in value]


def _lr_grid(value: Any, name: str) -> dict[str, list[float]]:
    if not isinstance(value, dict) or set(value) != set(_KINDS):
        fail(_FN, f"`config['{name}']` must be a dict with the keys {list(_KINDS)}, got "
                  f"{value!r}")
    out = {}
    for kind in _KINDS:
        lrs = value[kind]
        if not isinstance(lrs, list | tuple) or not lrs:
            fail(_FN, f"`config['{name}']['{kind}']` must be a non-empty list of learning "
                      f"rates, got {lrs!r}")
        out[kind] = [check_positive(v, _FN, f"config['{name}']['{kind}']") for v in lrs]
    return out


def _settings(config: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    mode, seed, cfg = merge_config(config, QUICK, FULL, _FN)
    for k in _INT_KEYS:
        cfg[k] = check_int(cfg[k], _FN, f"config['{k}']", min=1)
    cfg["warmup_steps"] = check_int(cfg["warmup_steps"], _FN, "config['warmup_steps']", min=0)
    cfg["gap_seeds"] = check_int(cfg["gap_seeds"], _FN, "config['gap_seeds']",
                                 min=_MIN_GAP_SEEDS)
    for k in _FLOAT_KEYS:
        cfg[k] = check_positive(cfg[k], _FN, f"config['{k}']")
    for k in ("mlp_pretrain_steps", "mlp_steps", "transformer_pretrain_steps",
              "transformer_steps"):
        if cfg[k] % cfg["eval_every"]:
            fail(_FN, f"`config['{k}']` must be a multiple of eval_every={cfg['eval_every']}, "
                      f"got {cfg[k]}")
    cfg["ranks"] = sorted(set(_int_list(cfg["ranks"], "ranks")))
    if ACCEPT_RANK not in cfg["ranks"]:
        fail(_FN, f"`config['ranks']` must include the acceptance rank {ACCEPT_RANK}, got "
                  f"{cfg['ranks']}")
    cfg["mlp_hidden"] = _int_list(cfg["mlp_hidden"], "mlp_hidden")
    for name in ("mlp_lrs", "transformer_lrs"):
        cfg[name] = _lr_grid(cfg[name], name)
    targets = cfg["transformer_targets"]
    if not isinstance(targets, list | tuple) or not targets or not all(
            isinstance(t, str) for t in targets):
        fail(_FN, f"`config['transformer_targets']` must be a non-empty list of glob patterns, "
                  f"got {targets!r}")
    cfg["transformer_targets"] = list(targets)
    if cfg["transformer_d_model"] % cfg["transformer_heads"]:
        fail(_FN, f"`config['transformer_d_model']` must be a multiple of transformer_heads="
                  f"{cfg['transformer_heads']}, got {cfg['transformer_d_model']}")
    if 8 % cfg["transformer_patch"]:
        fail(_FN, f"`config['transformer_patch']` must divide the image side 8, got "
                  f"{cfg['transformer_patch']}")
    return mode, seed, cfg


class Data(NamedTuple):
    """Images ``(n, 64)`` float32 in [0, 1] and int32 labels ``(n,)`` of the two tasks."""

    pre_train: tuple[np.ndarray, np.ndarray]  # digits 0-4, labels 0..4, for pretraining
    pre_test: tuple[np.ndarray, np.ndarray]  # digits 0-4 held out from pretraining
    train: tuple[np.ndarray, np.ndarray]  # digits 5-9, labels digit - 5: train_per_class each
    val: tuple[np.ndarray, np.ndarray]  # digits 5-9: val_per_class each, for every choice
    test: tuple[np.ndarray, np.ndarray]  # digits 5-9: the rest, for the reported accuracies


def load_data(config: dict[str, Any]) -> Data:
    """The two tasks of a run: digits 0-4 (pretraining) and digits 5-9 (the shifted task).

    Pixels are scaled from 0..16 to [0, 1]. The images of 0-4 are shuffled with
    ``config["seed"]`` and 15% of them held out; the images of each digit 5-9 are shuffled and
    split into ``train_per_class`` training, ``val_per_class`` validation and the remaining test
    images (at least 20). Labels are ``digit`` for 0-4 and ``digit - 5`` for 5-9; every part is
    in the order of scikit-learn's data set.
    """
    from sklearn.datasets import load_digits

    _, seed, cfg = _settings(config)
    digits = load_digits()
    x = np.asarray(digits.data, np.float32) / np.float32(16.0)
    y = np.asarray(digits.target, np.int32)
    rng = np.random.default_rng(seed)
    pre = rng.permutation(np.flatnonzero(y < 5))
    n_pre_test = round(_PRETRAIN_TEST_FRACTION * len(pre))
    n_train, n_val = cfg["train_per_class"], cfg["val_per_class"]
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for digit in range(5, 10):
        idx = rng.permutation(np.flatnonzero(y == digit))
        if n_train + n_val > len(idx) - _MIN_TEST_PER_CLASS:
            fail(_FN, f"`config['train_per_class'] + config['val_per_class']` must leave at least "
                      f"{_MIN_TEST_PER_CLASS} test images of each digit ({len(idx)} images of "
                      f"the digit {digit}), got {n_train} + {n_val}")
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train:n_train + n_val])
        parts["test"].append(idx[n_train + n_val:])

    def part(idx: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray]:
        idx = np.sort(idx)
        return x[idx], y[idx] - np.int32(offset)

    return Data(
        pre_train=part(pre[n_pre_test:], 0), pre_test=part(pre[:n_pre_test], 0),
        **{k: part(np.concatenate(v), 5) for k, v in parts.items()},
    )


# --------------------------------------------------------------------------------------------
# the two models


class _Model(NamedTuple):
    """A classifier as pure functions, and where LoRA goes in it."""

    name: str  # "mlp" or "transformer"
    init: Callable[[jax.Array, int], dict]  # init(key, n_classes) -> params
    apply: Callable[[dict, jax.Array], jax.Array]  # apply(params, x (B, 64)) -> logits (B, C)
    head: str  # key of the classification head in the params
    targets: tuple[str, ...]  # LoRA target patterns


def _patches(x: jax.Array, patch: int) -> jax.Array:
    """(B, 64) images -> (B, (8 / patch)^2, patch^2) patch tokens, row-major."""
    b, g = x.shape[0], 8 // patch
    return x.reshape(b, g, patch, g, patch).transpose(0, 1, 3, 2, 4).reshape(
        b, g * g, patch * patch)


def _transformer_init(key: jax.Array, n_classes: int, *, d_model: int, num_heads: int,
                      num_layers: int, patch: int) -> dict:
    keys = jax.random.split(key, num_layers + 3)
    n_tokens = (8 // patch) ** 2
    params: dict[str, Any] = {
        "patch_embedding": jnn.dense_init(keys[0], patch * patch, d_model),
        "position_embedding": {
            "table": 0.1 * jax.random.normal(keys[1], (n_tokens, d_model), jnp.float32)
        },
    }
    for i in range(num_layers):
        params[f"blocks_{i}"] = jnn.transformer_block_init(keys[2 + i], d_model, num_heads)
    params["final_norm"] = jnn.layer_norm_init(None, d_model)
    params["head"] = jnn.dense_init(keys[-1], d_model, n_classes)
    return params


def _transformer_apply(params: dict, x: jax.Array, *, num_heads: int, num_layers: int,
                       patch: int) -> jax.Array:
    h = jnn.dense(params["patch_embedding"], _patches(x, patch))
    h = h + jnn.embedding(params["position_embedding"], np.arange(h.shape[-2]))[None]
    for i in range(num_layers):
        h = jnn.transformer_block(params[f"blocks_{i}"], h, num_heads=num_heads)
    h = jnn.layer_norm(params["final_norm"], h)
    return jnn.dense(params["head"], jnp.mean(h, axis=-2))


def _make_models(cfg: dict[str, Any]) -> dict[str, _Model]:
    hidden = tuple(cfg["mlp_hidden"])
    tf = {"num_heads": cfg["transformer_heads"], "num_layers": cfg["transformer_layers"],
          "patch": cfg["transformer_patch"]}
    return {
        "mlp": _Model(
            "mlp",
            lambda key, c: models.mlp_classifier_init(key, 64, c, hidden=hidden),
            models.mlp_classifier_apply, f"layers_{len(hidden)}",
            tuple(f"layers_{i}/w" for i in range(len(hidden))),
        ),
        "transformer": _Model(
            "transformer",
            functools.partial(_transformer_init, d_model=cfg["transformer_d_model"], **tf),
            functools.partial(_transformer_apply, **tf), "head",
            tuple(cfg["transformer_targets"]),
        ),
    }


def _n_params(tree: Any) -> int:
    return sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(tree))


def _n_bytes(tree: Any) -> int:
    return sum(int(np.asarray(x).nbytes) for x in jax.tree.leaves(tree))


# --------------------------------------------------------------------------------------------
# training


def _params(trainable: dict, frozen: dict, spec: lora.LoraSpec | None, *,
            merged: bool = False) -> dict:
    """Model parameters from the trained and frozen parts, adapters applied factored (the
    training path) or merged into the weights (plain parameters)."""
    params = {**frozen, **{k: v for k, v in trainable.items() if k != _ADAPTERS}}
    if spec is None:
        return params
    return (lora.merge if merged else lora.apply)(params, trainable[_ADAPTERS], spec)


def _xent(logits: jax.Array, y: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))


def _schedule(t: jax.Array, total: jax.Array, warmup: jax.Array) -> jax.Array:
    """Linear warm-up over ``warmup`` steps, then cosine decay from 1 to 0.1 at ``total``."""
    t = t.astype(jnp.float32)
    warm = jnp.minimum(1.0, (t + 1.0) / jnp.maximum(warmup, 1.0))
    frac = jnp.clip((t - warmup) / jnp.maximum(total - warmup, 1.0), 0.0, 1.0)
    return warm * (0.1 + 0.45 * (1.0 + jnp.cos(jnp.pi * frac)))


_TRACES = [0]  # traces of _train_chunk: a call that traced also compiled


@functools.partial(jax.jit, static_argnames=("apply_fn", "spec"))
def _train_chunk(trainable, opt_state, frozen, xb, yb, t0, lr, total, warmup, *, apply_fn,
                 spec):
    """``L`` steps on the batches ``xb`` (L, B, 64) and ``yb`` (L, B), in a ``lax.scan``."""
    _TRACES[0] += 1

    def step(carry, inputs):
        trainable, opt_state = carry
        x, y, t = inputs

        def loss(tr):
            return _xent(apply_fn(_params(tr, frozen, spec), x), y)

        value, grads = jax.value_and_grad(loss)(trainable)
        updates, opt_state = _TX.update(grads, opt_state, trainable)
        scale = -lr * _schedule(t, total, warmup)
        trainable = jax.tree.map(lambda p, u: p + (scale * u).astype(p.dtype), trainable, updates)
        return (trainable, opt_state), value

    ts = t0 + jnp.arange(xb.shape[0], dtype=jnp.int32)
    (trainable, opt_state), losses = jax.lax.scan(step, (trainable, opt_state), (xb, yb, ts))
    return trainable, opt_state, losses


@functools.partial(jax.jit, static_argnames=("apply_fn",))
def _evaluate(params, x, y, *, apply_fn):
    """Per-example correctness and cross-entropy ``(n,)`` of plain parameters on (x, y)."""
    logp = jax.nn.log_softmax(apply_fn(params, x).astype(jnp.float32), axis=-1)
    return jnp.argmax(logp, axis=-1) == y, -jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]


def _batch_order(n: int, steps: int, batch: int, seed: int) -> np.ndarray:
    """(steps, batch) example indices: consecutive random permutations (epochs) of range(n)."""
    rng = np.random.default_rng(seed)
    epochs = -(-steps * batch // n)
    order = np.concatenate([rng.permutation(n) for _ in range(epochs)])
    return order[:steps * batch].reshape(steps, batch).astype(np.int32)


def _score(model: _Model, params: dict, data: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of plain parameters on ``data``."""
    correct, loss = _evaluate(params, jnp.asarray(data[0]), jnp.asarray(data[1]),
                              apply_fn=model.apply)
    return float(np.mean(np.asarray(correct))), float(np.mean(np.asarray(loss, np.float64)))


def _fit(model: _Model, trainable: dict, frozen: dict, spec: lora.LoraSpec | None,
         train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *,
         steps: int, lr: float, cfg: dict[str, Any], seed: int, bar: Any) -> dict[str, Any]:
    """Train one configuration for ``steps`` steps in chunks of ``eval_every`` steps.

    Returns the learning curve (``step``; ``train_loss``, the mean batch loss of the chunk;
    ``val_accuracy`` and ``val_loss`` after the chunk), the final trainable parameters, the
    seconds per step of every chunk that did not compile, and the bytes of the optimizer state.
    """
    x, y = train
    order = _batch_order(len(y), steps, min(cfg["batch_size"], len(y)), seed)
    opt_state = _TX.init(trainable)
    scalars = {"lr": jnp.float32(lr), "total": jnp.float32(steps),
               "warmup": jnp.float32(min(cfg["warmup_steps"], steps // 2))}
    curve: dict[str, list[float]] = {"step": [], "train_loss": [], "val_accuracy": [],
                                     "val_loss": []}
    step_seconds = []
    every = cfg["eval_every"]
    for t0 in range(0, steps, every):
        traces = _TRACES[0]
        start = time.perf_counter()
        rows = order[t0:t0 + every]
        trainable, opt_state, losses = _train_chunk(
            trainable, opt_state, frozen, jnp.asarray(x[rows]), jnp.asarray(y[rows]),
            jnp.int32(t0), **scalars, apply_fn=model.apply, spec=spec)
        jax.block_until_ready((trainable, opt_state))
        if _TRACES[0] == traces:
            step_seconds.append((time.perf_counter() - start) / every)
        acc, loss = _score(model, _params(trainable, frozen, spec, merged=True), val)
        for k, v in (("step", t0 + every), ("train_loss", float(jnp.mean(losses))),
                     ("val_accuracy", acc), ("val_loss", loss)):
            curve[k].append(v)
        if bar is not None:
            bar.update(every)
    return {"curve": curve, "final": trainable, "step_seconds": step_seconds,
            "opt_bytes": _n_bytes(opt_state), "lr": lr}


# --------------------------------------------------------------------------------------------
# the methods


def _methods(cfg: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    """(name, kind, rank) of every adaptation method."""
    return [("full", "full", None), ("head", "head", None),
            *((f"lora_r{r}", "lora", r) for r in cfg["ranks"]),
            (f"pissa_r{cfg['pissa_rank']}", "pissa", cfg["pissa_rank"])]


_LABELS = {"full": "full fine-tuning", "head": "head only"}


def _label(name: str) -> str:
    if name in _LABELS:
        return _LABELS[name]
    kind, rank = name.split("_r")
    return f"{'LoRA' if kind == 'lora' else 'PiSSA'} r={rank}"


def _setup(model: _Model, kind: str, rank: int | None, pretrained: dict,
           key: jax.Array) -> tuple[dict, dict, lora.LoraSpec | None]:
    """(trainable, frozen, spec) of a method on the shifted task.

    Every method starts from the pretrained model with a new, zero-initialized head (the classes
    are new, as many as before); LoRA and PiSSA train adapters of rank ``rank`` on the model's
    targets, and the head.
    """
    head = jax.tree.map(jnp.zeros_like, pretrained[model.head])
    if kind == "full":
        return {**pretrained, model.head: head}, {}, None
    frozen = {k: v for k, v in pretrained.items() if k != model.head}
    if kind == "head":
        return {model.head: head}, frozen, None
    spec = lora.spec(frozen, model.targets, rank=rank)
    base, adapters = lora.init(key, frozen, spec,
                               method="pissa" if kind == "pissa" else "default")
    return {_ADAPTERS: adapters, model.head: head}, base, spec


def _run_model(model: _Model, data: Data, cfg: dict[str, Any], seed: int,
               only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Pretrain ``model`` on 0-4, then adapt it to 5-9 with every method (or the methods named
    in ``only``) and learning rate."""
    prefix = model.name
    k_pre, k_methods = jax.random.split(jax.random.key(seed))
    n_classes = int(data.pre_train[1].max()) + 1
    methods = _methods(cfg)
    grid = cfg[f"{prefix}_lrs"]
    steps = cfg[f"{prefix}_steps"]
    bar = _progress(cfg[f"{prefix}_pretrain_steps"]
                    + steps * sum(len(grid[kind]) for name, kind, _ in methods
                                  if only is None or name in only),
                    f"lora_finetune: {prefix}, seed {seed}")
    pre = _fit(model, model.init(k_pre, n_classes), {}, None, data.pre_train, data.pre_test,
               steps=cfg[f"{prefix}_pretrain_steps"], lr=cfg[f"{prefix}_pretrain_lr"],
               cfg=cfg, seed=seed, bar=bar)
    pretrained = pre["final"]
    results: dict[str, dict[str, Any]] = {}
    for j, (name, kind, rank) in enumerate(methods):
        if only is not None and name not in only:
            continue
        trainable, frozen, spec = _setup(model, kind, rank, pretrained,
                                         jax.random.fold_in(k_methods, j))
        runs = [_fit(model, trainable, frozen, spec, data.train, data.val, steps=steps, lr=lr,
                     cfg=cfg, seed=seed + 1, bar=bar) for lr in grid[kind]]
        # the final validation accuracy chooses; the lower validation loss breaks ties
        chosen = max(runs, key=lambda r: (r["curve"]["val_accuracy"][-1],
                                          -r["curve"]["val_loss"][-1]))
        merged = _params(chosen["final"], frozen, spec, merged=True)
        n_trainable = _n_params(trainable)
        n_total = _n_params(frozen) + n_trainable
        summary = None if spec is None else lora.summary(frozen, spec)
        results[name] = {
            "kind": kind, "rank": rank, "spec": spec, "frozen": frozen,
            "trainable": chosen["final"], "n_trainable": n_trainable, "n_total": n_total,
            "fraction": n_trainable / n_total, "lr": chosen["lr"],
            "targets": None if spec is None else list(spec.paths),
            "adapter_params": None if summary is None else summary.trainable,
            "val_accuracy": chosen["curve"]["val_accuracy"][-1],
            "test_accuracy": _score(model, merged, data.test)[0],
            "train_loss": _score(model, merged, data.train)[1],
            "step_seconds": float(np.median([s for r in runs for s in r["step_seconds"]])),
            "opt_bytes": chosen["opt_bytes"], "curve": chosen["curve"],
            "grid": [[r["lr"], r["curve"]["val_accuracy"][-1], r["curve"]["val_loss"][-1]]
                     for r in runs],
        }
    if bar is not None:
        bar.close()
    return {"pretrain_test_accuracy": pre["curve"]["val_accuracy"][-1],
            "n_params": _n_params(pretrained), "methods": results}


def _adapter_checks(model: _Model, res: dict[str, Any], data: Data,
                    out_dir: Path) -> list[dict[str, Any]]:
    """check_merge and a save/load round trip of every fine-tuned adapter set."""
    x = jnp.asarray(data.test[0])
    rows = []
    with tempfile.TemporaryDirectory(dir=out_dir, prefix="adapters-") as tmp:
        for name, m in res["methods"].items():
            if m["spec"] is None:
                continue
            adapters, spec = m["trainable"][_ADAPTERS], m["spec"]
            base = {**m["frozen"], model.head: m["trainable"][model.head]}
            out = model.apply(lora.apply(base, adapters, spec), x)
            path = Path(tmp) / f"{model.name}_{name}.npz"
            lora.save(path, adapters, spec)
            back, spec_back = lora.load(path)
            identical = spec_back == spec and set(back) == set(adapters) and all(
                back[p][f].dtype == adapters[p][f].dtype
                and np.array_equal(np.asarray(back[p][f]), np.asarray(adapters[p][f]))
                for p in adapters for f in ("a", "b"))
            out_back = model.apply(lora.apply(base, back, spec_back), x)
            rows.append({
                "method": name,
                "merge_max_abs_diff": lora.check_merge(model.apply, base, adapters, spec, x),
                "max_abs_logit": float(jnp.max(jnp.abs(out))),
                "save_load_identical": bool(identical),
                "save_load_max_abs_output_diff": float(jnp.max(jnp.abs(out - out_back))),
                "file_bytes": path.stat().st_size,
            })
    return rows


# --------------------------------------------------------------------------------------------
# the experiment


def run(config: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Pretrain both models on digits 0-4, adapt them to 5-9 with every method; 3 figures.

    Args:
        config: ``{"mode": "quick" | "full", "seed": int}``, plus optional overrides of any
            entry of :data:`QUICK` / :data:`FULL` (e.g. ``"transformer_steps"``, ``"ranks"``).
        out_dir: existing directory for the figures (the adapters are saved and read back in a
            temporary directory inside it, removed afterwards).

    Returns:
        ``{"summary", "metrics", "figures", "tables"}`` as described in :mod:`experiments`.
    """
    out_dir = Path(out_dir)
    mode, seed, cfg = _settings(config)
    t_start = time.perf_counter()
    data = load_data(config)
    built = _make_models(cfg)
    res = {name: _run_model(built[name], data, cfg, seed) for name in _MODELS}
    checks = {name: _adapter_checks(built[name], res[name], data, out_dir) for name in _MODELS}
    r8, pissa = f"lora_r{ACCEPT_RANK}", f"pissa_r{cfg['pissa_rank']}"
    seed_rows = [_gap_row(seed, res["transformer"]["methods"], r8)]
    for s in range(seed + 1, seed + cfg["gap_seeds"]):  # the same comparison on other seeds
        other = _run_model(built["transformer"], load_data({**config, "seed": s}), cfg, s,
                           only=("full", r8))
        seed_rows.append(_gap_row(s, other["methods"], r8))
    seed_gaps = np.array([row["gap_points"] for row in seed_rows])
    mean_gap = float(np.mean(seed_gaps))
    gap_se = float(np.std(seed_gaps, ddof=1) / np.sqrt(len(seed_gaps)))
    gaps = {name: {meth: 100 * (ms["full"]["test_accuracy"] - m["test_accuracy"])
                   for meth, m in ms.items()}
            for name, ms in ((n, res[n]["methods"]) for n in _MODELS)}
    tf, mm = res["transformer"]["methods"], res["mlp"]["methods"]
    tf_frac, tf_gap = tf[r8]["fraction"], gaps["transformer"][r8]
    all_checks = [row for rows in checks.values() for row in rows]
    merge_rel = max(row["merge_max_abs_diff"] / max(1.0, row["max_abs_logit"])
                    for row in all_checks)
    round_trip = all(row["save_load_identical"] and row["save_load_max_abs_output_diff"] == 0.0
                     for row in all_checks)

    figures = _figures(out_dir, res, cfg, gaps)

    # ---------------------------------------------------------------------------- tables
    columns = ["method", "rank", "trained params", "trained (%)", "learning rate",
               "train loss", "val accuracy (%)", "test accuracy (%)", "gap to full (points)",
               "step time (ms)", "optimizer state (bytes)"]
    titles = {
        "mlp": f"MLP 64-{'-'.join(map(str, cfg['mlp_hidden']))}-5 on the digits 5-9 "
               f"(pretrained on 0-4, {res['mlp']['n_params']:,} parameters, LoRA on "
               f"{', '.join(built['mlp'].targets)}, {cfg['mlp_steps']} steps)",
        "transformer": f"Transformer (width {cfg['transformer_d_model']}, "
                       f"{cfg['transformer_layers']} blocks, {cfg['transformer_heads']} heads, "
                       f"{cfg['transformer_patch']}x{cfg['transformer_patch']} patches) on the "
                       f"digits 5-9 (pretrained on 0-4, {res['transformer']['n_params']:,} "
                       f"parameters, LoRA on {', '.join(built['transformer'].targets)}, "
                       f"{cfg['transformer_steps']} steps)",
    }
    tables = [{
        "title": titles[name], "columns": columns,
        "rows": [[meth, m["rank"] or "", m["n_trainable"], 100 * m["fraction"], m["lr"],
                  m["train_loss"], 100 * m["val_accuracy"], 100 * m["test_accuracy"],
                  gaps[name][meth], 1e3 * m["step_seconds"], m["opt_bytes"]]
                 for meth, m in res[name]["methods"].items()],
    } for name in _MODELS]
    tables.append({
        "title": f"Transformer, LoRA r={ACCEPT_RANK} against full fine-tuning on "
                 f"{len(seed_rows)} seeds (each: its own data split, pretraining, batches and "
                 f"learning rates chosen on its validation images): mean gap {mean_gap:.2f} "
                 f"points, standard error {gap_se:.2f}",
        "columns": ["seed", "full: learning rate", "full: test accuracy (%)",
                    "LoRA: learning rate", "LoRA: test accuracy (%)", "gap (points)"],
        "rows": [[row["seed"], row["full_lr"], 100 * row["full_test_accuracy"], row["lora_lr"],
                  100 * row["lora_test_accuracy"], row["gap_points"]] for row in seed_rows],
    })
    tables.append({
        "title": "Learning-rate grid: final validation accuracy and loss of every run (the rate "
                 "with the best validation accuracy is kept, the lower loss breaking ties; the "
                 "test images are evaluated for the kept run only)",
        "columns": ["model", "method", "learning rate", "val accuracy (%)", "val loss"],
        "rows": [[name, meth, lr, 100 * va, vl] for name in _MODELS
                 for meth, m in res[name]["methods"].items() for lr, va, vl in m["grid"]],
    })
    tables.append({
        "title": "Fine-tuned adapters: merged vs factored outputs (jaxla.lora.check_merge on the "
                 "test images) and a jaxla.lora.save / load round trip",
        "columns": ["model", "method", "max |merged - factored| logit", "max |logit|",
                    "file bytes", "loaded bit-identical", "max |output diff| after load"],
        "rows": [[name, row["method"], row["merge_max_abs_diff"], row["max_abs_logit"],
                  row["file_bytes"], row["save_load_identical"],
                  row["save_load_max_abs_output_diff"]]
                 for name in _MODELS for row in checks[name]],
    })

    # ---------------------------------------------------------------------------- metrics
    metrics: dict[str, Any] = {
        "mode": mode,
        "n_pretrain_train": len(data.pre_train[1]), "n_pretrain_test": len(data.pre_test[1]),
        "n_shift_train": len(data.train[1]), "n_shift_val": len(data.val[1]),
        "n_shift_test": len(data.test[1]),
        "acceptance_transformer_r8_trained_fraction": tf_frac,
        "acceptance_transformer_r8_trained_at_most_1pct": bool(tf_frac <= 0.01),
        "acceptance_transformer_lora_r8_mean_gap_points": mean_gap,
        "acceptance_transformer_lora_r8_gap_stderr_points": gap_se,
        "acceptance_transformer_lora_r8_within_2_points": bool(mean_gap <= 2.0),
        "transformer_lora_r8_gap_by_seed": seed_rows,
        "transformer_lora_r8_gap_points": tf_gap,
        "transformer_pissa_gap_points": gaps["transformer"][pissa],
        "mlp_lora_r8_trained_fraction": mm[r8]["fraction"],
        "mlp_lora_r8_gap_points": gaps["mlp"][r8],
        "mlp_lora_r8_within_2_points": bool(gaps["mlp"][r8] <= 2.0),
        "mlp_pissa_gap_points": gaps["mlp"][pissa],
        "check_merge_max_abs_diff": max(row["merge_max_abs_diff"] for row in all_checks),
        "check_merge_max_rel_diff": merge_rel,
        "adapters_save_load_identical": round_trip,
    }
    for name in _MODELS:
        metrics[f"{name}_params"] = res[name]["n_params"]
        metrics[f"{name}_pretrain_test_accuracy"] = res[name]["pretrain_test_accuracy"]
        metrics[f"{name}_methods"] = {
            meth: {k: m[k] for k in ("kind", "rank", "targets", "lr", "n_trainable", "n_total",
                                     "fraction", "adapter_params", "train_loss",
                                     "val_accuracy", "test_accuracy", "step_seconds",
                                     "opt_bytes")}
            for meth, m in res[name]["methods"].items()}
    metrics["seconds"] = time.perf_counter() - t_start

    def pct(m: dict[str, Any]) -> str:
        return f"{100 * m['test_accuracy']:.1f}%"

    summary = (
        f"Pretrained on the digits 0-4, adapted to 5-9 from {len(data.train[1])} images "
        f"(accuracy on {len(data.test[1])} test images; learning rates chosen on "
        f"{len(data.val[1])} validation images). Transformer ({res['transformer']['n_params']:,}"
        f" parameters): full fine-tuning {pct(tf['full'])}, head only {pct(tf['head'])}, LoRA "
        f"r={ACCEPT_RANK} {pct(tf[r8])} training {100 * tf_frac:.2f}% of the parameters "
        f"(target <= 1%: {'met' if tf_frac <= 0.01 else 'missed'}), {_versus_full(tf_gap)}; "
        f"over {len(seed_rows)} seeds LoRA r={ACCEPT_RANK} is {_versus_full(mean_gap)} on "
        f"average (standard error {gap_se:.1f}; per seed "
        f"{', '.join(f'{g:.1f}' for g in seed_gaps)}; target: at most 2 points below: "
        f"{'met' if mean_gap <= 2.0 else 'missed'}); PiSSA "
        f"r={cfg['pissa_rank']} {pct(tf[pissa])}. MLP ({res['mlp']['n_params']:,} parameters): "
        f"full {pct(mm['full'])}, head only {pct(mm['head'])}, LoRA r={ACCEPT_RANK} {pct(mm[r8])}"
        f" with {100 * mm[r8]['fraction']:.1f}% trained ({_versus_full(gaps['mlp'][r8])}), "
        f"PiSSA {pct(mm[pissa])}. Merged and factored models agree to {merge_rel:.1e} of "
        f"the logits; saved adapters load back "
        f"{'bit-identical' if round_trip else 'DIFFERENT'}."
    )
    return {"summary": summary, "metrics": metrics, "figures": figures, "tables": tables}


def _gap_row(seed: int, methods: dict[str, Any], r8: str) -> dict[str, Any]:
    """One seed's full fine-tuning and rank-8 LoRA results, and the gap between them."""
    full, low = methods["full"], methods[r8]
    return {"seed": seed, "full_lr": full["lr"], "full_test_accuracy": full["test_accuracy"],
            "lora_lr": low["lr"], "lora_test_accuracy": low["test_accuracy"],
            "gap_points": 100 * (full["test_accuracy"] - low["test_accuracy"])}


def _versus_full(gap: float) -> str:
    """A gap to full fine-tuning (in accuracy points, positive when below) in words."""
    return f"{abs(gap):.1f} points {'below' if gap >= 0 else 'above'} full fine-tuning"


def _color(meth: str) -> str:
    if meth in ("full", "head"):
        return {"full": "C3", "head": "C2"}[meth]
    return "C4" if meth.startswith("pissa") else "C0"


def _figures(out_dir: Path, res: dict[str, Any], cfg: dict[str, Any],
             gaps: dict[str, dict[str, float]]) -> list[dict[str, str]]:
    names = {"mlp": "MLP", "transformer": "Transformer"}
    r8 = f"lora_r{ACCEPT_RANK}"
    tf, mm = res["transformer"]["methods"], res["mlp"]["methods"]
    figures = []
    with figure(out_dir, "accuracy_vs_trained.png", ncols=2, size=(12.0, 5.0)) as (_fig, axes):
        for ax, name in zip(axes[0], _MODELS, strict=True):
            ms = res[name]["methods"]
            full = 100 * ms["full"]["test_accuracy"]
            ax.axhspan(full - 2.0, full, color="C3", alpha=0.08, lw=0,
                       label="within 2 points of full fine-tuning")
            ranks = [m for m in ms if m.startswith("lora_r")]
            ax.plot([100 * ms[m]["fraction"] for m in ranks],
                    [100 * ms[m]["test_accuracy"] for m in ranks], "-", color="C0", lw=1,
                    alpha=0.6, label="LoRA, ranks " + ", ".join(str(ms[m]["rank"])
                                                                for m in ranks))
            for meth, m in ms.items():
                ax.plot(100 * m["fraction"], 100 * m["test_accuracy"], "o", ms=7,
                        color=_color(meth), mec="black", mew=0.5)
                ax.annotate(_label(meth), (100 * m["fraction"], 100 * m["test_accuracy"]),
                            textcoords="offset points", xytext=(5, 4), fontsize=7.5)
            if name == "transformer":
                ax.axvline(1.0, color="gray", ls=":", lw=1, label="1% of the parameters")
            ax.set_xscale("log")
            ax.margins(x=0.12)
            ax.set_xlabel("trained parameters (% of the model)")
            ax.set_ylabel("test accuracy on the digits 5-9 (%)")
            ax.set_title(f"{names[name]} ({res[name]['n_params']:,} parameters)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(loc="lower right", fontsize=8)
    figures.append({
        "file": "accuracy_vs_trained.png",
        "caption": (
            f"Test accuracy on the shifted task against the fraction of parameters trained (log "
            f"scale), every method at the learning rate with the best validation accuracy; the "
            f"band marks 2 points below full fine-tuning. Transformer LoRA r={ACCEPT_RANK}: "
            f"{100 * tf[r8]['fraction']:.2f}% of the parameters, "
            f"{_versus_full(gaps['transformer'][r8])}; MLP: {100 * mm[r8]['fraction']:.1f}%, "
            f"{_versus_full(gaps['mlp'][r8])}."
        ),
    })

    with figure(out_dir, "learning_curves.png", ncols=2, size=(12.0, 5.0)) as (_fig, axes):
        for ax, name in zip(axes[0], _MODELS, strict=True):
            ms = res[name]["methods"]
            for meth, m in ms.items():
                c = m["curve"]
                ax.plot(c["step"], 100 * np.asarray(c["val_accuracy"]), "o-", ms=3,
                        color=_color(meth), alpha=0.4 + 0.6 * m["rank"] / max(cfg["ranks"])
                        if m["kind"] == "lora" else 1.0,
                        lw=1.8 if meth in ("full", r8) else 1.0,
                        label=f"{_label(meth)} (lr {m['lr']:g})")
            ax.set_xlabel("step")
            ax.set_ylabel("validation accuracy (%)")
            ax.set_title(f"{names[name]}: learning curves on the digits 5-9")
            low = min(min(m["curve"]["val_accuracy"]) for m in ms.values())
            ax.set_ylim(max(0.0, 100 * low - 2), 100.5)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7, ncols=2, loc="lower right")
    figures.append({
        "file": "learning_curves.png",
        "caption": (
            f"Validation accuracy every {cfg['eval_every']} steps (batches of "
            f"{cfg['batch_size']}) at each method's chosen learning rate. Pretraining on 0-4 "
            f"reached {100 * res['mlp']['pretrain_test_accuracy']:.1f}% (MLP) and "
            f"{100 * res['transformer']['pretrain_test_accuracy']:.1f}% (transformer) on "
            "held-out images of 0-4."
        ),
    })

    with figure(out_dir, "cost.png", nrows=2, ncols=2, size=(12.0, 8.0)) as (_fig, axes):
        for row, name in enumerate(_MODELS):
            ms = res[name]["methods"]
            pos = np.arange(len(ms))
            cols = [_color(m) for m in ms]
            axes[row, 0].bar(pos, [1e3 * m["step_seconds"] for m in ms.values()], color=cols)
            axes[row, 0].set_ylabel("median step time (ms)")
            axes[row, 0].set_title(f"{names[name]}: a training step after compilation")
            axes[row, 1].bar(pos, [m["opt_bytes"] / 1024 for m in ms.values()], color=cols)
            axes[row, 1].set_yscale("log")
            axes[row, 1].set_ylabel("optimizer state (KiB)")
            axes[row, 1].set_title(f"{names[name]}: Adam state (bytes of the optax state leaves)")
            for ax in axes[row]:
                ax.set_xticks(pos)
                ax.set_xticklabels([_label(m) for m in ms], rotation=30, ha="right", fontsize=8)
                ax.grid(True, axis="y", alpha=0.3)
    figures.append({
        "file": "cost.png",
        "caption": (
            f"Median time of a training step after compilation on "
            f"{jax.default_backend().upper()} (batches of {cfg['batch_size']}) and the size of "
            f"the Adam state (two moments per trained parameter). Transformer: full "
            f"fine-tuning {1e3 * tf['full']['step_seconds']:.1f} ms and "
            f"{tf['full']['opt_bytes']:,} bytes; LoRA r={ACCEPT_RANK} "
            f"{1e3 * tf[r8]['step_seconds']:.1f} ms and {tf[r8]['opt_bytes']:,} bytes."
        ),
    })
    return figures


if __name__ == "__main__":
    from experiments.runner import experiment_main

    raise SystemExit(experiment_main(sys.modules[__name__]))
