"""Training loops: ``jaxla.train.fit`` (steps scanned in compiled chunks) against Python loops.

Every case trains the same float32 model with ``optax.adam(1e-3)`` for ``STEPS`` steps from the
same initial parameters on the same data, and times the whole run; the time per step is the
median divided by ``STEPS`` (listed in each case's note next to the ratio). Sides:

- jaxla: ``train.fit(..., progress=False)`` with its default ``log_every = STEPS // 20``: 20
  compiled ``lax.scan`` chunks, each followed by one transfer of the chunk's metrics and the
  non-finite check (what a user gets).
- ``fit, one chunk``: ``log_every = STEPS``, a single scan: the floor of the scanned path.
- ``Python loop of make_step``: ``for t in range(STEPS): params, state, m = step(params, state,
  batch)`` with the jitted, donating ``train.make_step``; nothing is read back until the end, so
  dispatch overlaps computation (the fastest Python loop).
- ``Python loop + float(loss)``: the same loop reading the loss back every step, as a loop that
  logs or checks for NaN does.

Minibatch cases give the Python loops batches already sliced on the device (no gather in their
timing); ``fit`` gathers each batch inside the scan from a shuffled order.

Models: ``mlp``, an MLP 64-64-10 (ReLU), and ``logreg``, multinomial logistic regression 64 ->
10, both with softmax cross-entropy, on Gaussian inputs with labels of a random linear teacher;
and softmax regression on scikit-learn's iris data (150 examples, 4 standardized features, 3
classes), the textbook small model.

Accuracy: the largest difference of the final parameters from the ``Python loop of make_step``
result, relative to its largest entry (float rounding between the scanned and the unrolled
program; 0 for that side itself).

Acceptance: the scanned full-batch path is at least 3x faster per step than the Python loop of
jitted ``make_step`` calls on a small model (iris). The gain is the Python dispatch of a jitted
call (about 45 microseconds per step on a 2-core CPU), so it shrinks as a step's computation
grows: a step of logistic regression 64 -> 10 on 100 examples already computes for about 20
microseconds inside the scan (a 100 x 64 x 10 matrix product alone takes about 9), and the MLP on
1,000 examples for about half a millisecond, where no loop structure can be 3x faster and the
ratio shows how close to the computation both get.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxla.train as train
from benchmarks.harness import Anchor, Case, max_abs_error

SUITE = "train"

OPTIMIZER = optax.adam(1e-3)


def _data(n: int, d: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    if (n, d, classes) == (150, 4, 3):  # the iris data, standardized
        from sklearn.datasets import load_iris

        x, y = load_iris(return_X_y=True)
        x = (x - x.mean(axis=0)) / x.std(axis=0)
        return x.astype(np.float32), y.astype(np.int32)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    teacher = rng.standard_normal((d, classes)).astype(np.float32)
    return x, np.argmax(x @ teacher, axis=1).astype(np.int32)


def _init(sizes: tuple[int, ...], seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {
        f"layers_{i}": {
            "w": (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32),
            "b": np.zeros(b, np.float32),
        }
        for i, (a, b) in enumerate(itertools.pairwise(sizes))
    }


def _forward(params: dict, x: jax.Array) -> jax.Array:
    n = len(params)
    for i in range(n):
        layer = params[f"layers_{i}"]
        x = x @ layer["w"] + layer["b"][None, :]
        if i < n - 1:
            x = jax.nn.relu(x)
    return x


def loss_fn(params: dict, batch: tuple[jax.Array, jax.Array], key: jax.Array | None = None):
    """Mean softmax cross-entropy (``key`` unused: the model has no dropout)."""
    x, y = batch
    return optax.softmax_cross_entropy_with_integer_labels(_forward(params, x), y).mean()


STEP = train.make_step(loss_fn, OPTIMIZER)


def _copy(tree):
    return jax.tree_util.tree_map(jnp.array, tree)


def _fit(params, data, *, steps, batch_size=None, key=None, log_every=None):
    out, _ = train.fit(loss_fn, params, data, OPTIMIZER, steps=steps, batch_size=batch_size,
                       key=key, log_every=log_every, progress=False)
    return out


def _loop(params, batches, *, readback: bool):
    """``len(batches)`` jitted, donating make_step calls (params copied first)."""
    params = _copy(params)
    state = OPTIMIZER.init(params)
    for batch in batches:
        params, state, metrics = STEP(params, state, batch)
        if readback:
            float(metrics["loss"])
    return jax.block_until_ready(params)


def _minibatches(x, y, steps: int, batch_size: int, key) -> list[tuple[jax.Array, jax.Array]]:
    """The batches ``fit`` visits, sliced on the device ahead of time."""
    n = x.shape[0]
    per_epoch = n // batch_size
    shuffle_key, _ = jax.random.split(key)
    out, orders = [], {}
    for s in range(steps):
        e, j = divmod(s, per_epoch)
        if e not in orders:
            orders[e] = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, e), n))
        idx = orders[e][j * batch_size:(j + 1) * batch_size]
        out.append((jax.device_put(x[idx]), jax.device_put(y[idx])))
    return out


def _param_error(ref):
    scale = max(float(np.max(np.abs(np.asarray(v)))) for v in jax.tree_util.tree_leaves(ref))

    def err(out) -> float:
        return max(max_abs_error(a, b) for a, b in zip(
            jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(ref), strict=True)) / scale

    return err


CONFIGS = {
    # name: (sizes, n, batch_size); (4, 3) on n=150 is scikit-learn's iris data
    "softmax regression on iris 4->3, full batch": ((4, 3), 150, None),
    "mlp 64-64-10, full batch": ((64, 64, 10), 1000, None),
    "logreg 64->10, full batch": ((64, 10), 1000, None),
    "logreg 64->10, full batch (n=100)": ((64, 10), 100, None),
    "mlp 64-64-10, minibatch": ((64, 64, 10), 1000, 32),
}


def cases(quick: bool) -> Iterator[Case]:
    steps = 200 if quick else 1000
    key = jax.random.key(0)
    for name, (sizes, n, batch_size) in CONFIGS.items():
        x, y = _data(n, sizes[0], sizes[-1])
        params = jax.device_put(_init(sizes))
        data = (jax.device_put(x), jax.device_put(y))
        if batch_size is None:
            batches = [data] * steps
            fit_kw = {"steps": steps}
        else:
            batches = _minibatches(x, y, steps, batch_size, key)
            fit_kw = {"steps": steps, "batch_size": batch_size, "key": key}
        ref = jax.device_get(_loop(params, batches, readback=False))
        n_params = sum(int(np.size(v)) for v in jax.tree_util.tree_leaves(params))
        yield Case(
            name=f"fit ({name})",
            size=f"n={n}{'' if batch_size is None else f', B={batch_size}'}, {steps} steps, "
                 f"{n_params} params",
            label="jaxla.train.fit (scanned chunks, default log_every)",
            fn=functools.partial(_fit, **fit_kw),
            args=(params, data),
            jit=False,
            anchors=[
                Anchor("jaxla.train.fit, one chunk (log_every=steps)",
                       functools.partial(_fit, log_every=steps, **fit_kw), (params, data)),
                Anchor("Python loop of jitted make_step",
                       functools.partial(_loop, readback=False), (params, batches)),
                Anchor("Python loop of make_step + float(loss) each step",
                       functools.partial(_loop, readback=True), (params, batches)),
            ],
            accuracy=_param_error(ref),
            metric="max |params - params of the make_step loop| / max |params|",
            note=f"times are for {steps} steps: time per step = median / {steps}; a ratio "
                 "below 1/3 against the make_step loop meets the 3x acceptance.",
        )
