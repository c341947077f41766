"""A small classification problem shared by tests/test_train.py and its subprocess script.

Both processes must build bit-identical data, parameters and programs, so everything here is a
deterministic function of fixed seeds; the subprocess sets the same JAX configuration as the
root conftest.py (float64 enabled, rank promotion raising) before importing this module.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

N, D_IN, D_HIDDEN, D_OUT = 48, 4, 8, 3
KEEP = 0.9  # dropout keep probability when the loss gets a key

OPTIMIZER = optax.adam(0.05)

# fit settings of the kill-and-resume runs: the script hangs at HANG_AT (after the checkpoint of
# the previous logging boundary was written) until it is killed
KILL_RUNS = {
    "full": {"steps": 60, "log_every": 5},
    "minibatch": {"steps": 60, "log_every": 4, "batch_size": 10, "key_seed": 3},
}
HANG_AT = 40


def data() -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D_IN)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


def init_params() -> dict:
    rng = np.random.default_rng(1)

    def dense(d_in, d_out):
        w = rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)
        return {"w": jnp.asarray(w, jnp.float32), "b": jnp.zeros((d_out,), jnp.float32)}

    return {"layers_0": dense(D_IN, D_HIDDEN), "layers_1": dense(D_HIDDEN, D_OUT)}


def logits(params, x, key=None):
    h = jnp.tanh(x @ params["layers_0"]["w"] + params["layers_0"]["b"][None, :])
    if key is not None:
        keep = jax.random.bernoulli(key, KEEP, h.shape)
        h = jnp.where(keep, h / KEEP, jnp.zeros_like(h))
    return h @ params["layers_1"]["w"] + params["layers_1"]["b"][None, :]


def loss(params, batch, key=None):
    """Mean softmax cross-entropy; dropout on the hidden layer when a key is given."""
    x, y = batch
    return optax.softmax_cross_entropy_with_integer_labels(logits(params, x, key), y).mean()


def kill_run_kwargs(mode: str) -> dict:
    kw = dict(KILL_RUNS[mode])
    seed = kw.pop("key_seed", None)
    if seed is not None:
        kw["key"] = jax.random.key(seed)
    return kw
