"""LoRA: a LoRA training step against full fine-tuning, and PiSSA initialization against exact SVDs.

Cases:

- ``train_step``: one Adam step (loss, gradient, update) of a ``jaxla.nn.mlp`` with widths
  1024-4096-4096-1024 (25 M parameters) on a batch of 64, float32. The jaxla side trains rank-16
  adapters on every weight, differentiating with respect to the adapters dict
  (``loss(lora.apply(base, adapters, spec))``, optax Adam on the adapters). Anchors: full
  fine-tuning (Adam on every parameter) and the same LoRA training through
  ``lora.optimizer`` on the adapted parameters. ACCEPTANCE: LoRA step <= 0.8x the full step,
  LoRA optimizer state <= 5% of full's (both in bytes; listed under the table). Accuracy is the
  relative error of the step's loss against a float64 numpy forward pass (``B = 0``, so the
  adapted model is the base model).
- ``pissa_init``: ``lora.init(key, {"w": w}, spec, method="pissa")`` of a 4096 x 4096 float32
  weight at rank 16 (randomized SVD, block Krylov, 2 iterations, plus the residual
  ``W - s A B``). The weight is ``U diag(1/j) V^T`` over 1024 random orthonormal directions
  (slowly decaying singular values with small gaps, the hard case for a randomized SVD), so the
  optimal rank-16 error is known exactly. Anchors: the exact truncated SVD by
  ``scipy.sparse.linalg.svds`` (ARPACK, k = 16) and by a full ``numpy.linalg.svd`` (what PEFT's
  ``init_lora_weights="pissa"`` does). Accuracy is ``||W - s A B||_F / optimal - 1`` (the
  relative excess of the residual's Frobenius norm over the exact truncated SVD's).
  ACCEPTANCE: under 1 s and accuracy <= 0.01.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse.linalg

import jaxla.lora as lora
from benchmarks.harness import Anchor, Case
from jaxla import nn

SUITE = "lora"

FULL_SIZES = (1024, 4096, 4096, 1024)
QUICK_SIZES = (64, 256, 256, 64)
BATCH, QUICK_BATCH = 64, 16
RANK = 16
LR = 1e-4
PISSA_N, QUICK_PISSA_N = 4096, 512
PISSA_SUPPORT = 1024  # directions carrying the spectrum 1/j


# --------------------------------------------------------------------------------------------
# training step


def _loss(params, x, y):
    return jnp.mean((nn.mlp(params, x) - y) ** 2)


def _full_step(tx, params, state, x, y):
    loss, grads = jax.value_and_grad(_loss)(params, x, y)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss


def _adapters_step(tx, spec, base, adapters, state, x, y):
    def loss_fn(ad):
        return _loss(lora.apply(base, ad, spec), x, y)

    loss, grads = jax.value_and_grad(loss_fn)(adapters)
    updates, state = tx.update(grads, state, adapters)
    return optax.apply_updates(adapters, updates), state, loss


def _np_loss(params, x, y) -> float:
    h = np.asarray(x, np.float64)
    n = len(params)
    for i in range(n):
        p = params[f"layers_{i}"]
        h = h @ np.asarray(p["w"], np.float64) + np.asarray(p["b"], np.float64)
        if i < n - 1:
            h = np.maximum(h, 0.0)
    return float(np.mean((h - np.asarray(y, np.float64)) ** 2))


def _state_bytes(state) -> int:
    return int(sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(state)))


def _train_cases(quick: bool) -> Iterator[Case]:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    batch = QUICK_BATCH if quick else BATCH
    params = nn.mlp_init(jax.random.key(0), list(sizes))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, sizes[0]), dtype=np.float32)
    y = rng.standard_normal((batch, sizes[-1]), dtype=np.float32)
    spec = lora.spec(params, "*/w", rank=RANK)
    base, adapters = lora.init(jax.random.key(1), params, spec)
    adapted = lora.apply(base, adapters, spec)

    adam = optax.adam(LR)
    full_state = adam.init(params)
    ad_state = adam.init(adapters)
    lora_tx = lora.optimizer(optax.adam(LR), adapted)
    opt_state = lora_tx.init(adapted)
    full_bytes, ad_bytes = _state_bytes(full_state), _state_bytes(ad_state)
    assert _state_bytes(opt_state) == ad_bytes

    ref = _np_loss(params, x, y)

    def acc(out) -> float:
        return abs(float(out[2]) - ref) / ref

    n_params = sum(int(np.size(v)) for v in jax.tree_util.tree_leaves(params))
    info = lora.summary(params, spec)

    def state_info(out) -> dict:
        return {"optimizer_state_bytes": _state_bytes(out[1])}

    yield Case(
        name="train_step",
        size=f"mlp {'-'.join(map(str, sizes))}, batch {batch}, rank {RANK}",
        label="jaxla.lora (grad wrt adapters, Adam)",
        fn=functools.partial(_adapters_step, adam, spec),
        args=(base, adapters, ad_state, x, y),
        anchors=[
            Anchor("full fine-tuning (Adam on every parameter)",
                   functools.partial(_full_step, adam), (params, full_state, x, y), jit=True),
            Anchor("jaxla.lora.optimizer on adapted params (Adam)",
                   functools.partial(_full_step, lora_tx), (adapted, opt_state, x, y),
                   jit=True),
        ],
        accuracy=acc,
        metric="relative error of the step's loss vs a float64 numpy forward pass",
        info=state_info,
        note=(
            f"{info.trainable:,} trainable of {n_params:,} parameters; optimizer state "
            f"{ad_bytes:,} bytes (LoRA) vs {full_bytes:,} bytes (full), "
            f"{100 * ad_bytes / full_bytes:.2f}%."
        ),
    )


# --------------------------------------------------------------------------------------------
# PiSSA initialization


def _pissa_matrix(n: int, support: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, n) float32 ``U diag(1/j) V^T`` with ``support`` orthonormal directions; its spectrum."""
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.standard_normal((n, support)))
    v, _ = np.linalg.qr(rng.standard_normal((n, support)))
    s = 1.0 / np.arange(1, support + 1)
    return ((u * s) @ v.T).astype(np.float32), s


def _pissa_init(spec, w):
    base, adapters = lora.init(jax.random.key(0), {"w": w}, spec, method="pissa")
    return base["w"], adapters["w"]["a"], adapters["w"]["b"]


def _svds(w: np.ndarray):
    u, s, vt = scipy.sparse.linalg.svds(w, k=RANK, random_state=0)
    return u, s, vt


def _numpy_svd(w: np.ndarray):
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    return u[:, :RANK], s[:RANK], vt[:RANK]


def _pissa_cases(quick: bool) -> Iterator[Case]:
    n = QUICK_PISSA_N if quick else PISSA_N
    support = min(PISSA_SUPPORT, n // 2)
    w, s = _pissa_matrix(n, support)
    optimal = float(np.sqrt(np.sum(s[RANK:] ** 2)))
    spec = lora.spec({"w": w}, "w", rank=RANK)
    w64 = w.astype(np.float64)

    def acc_jaxla(out) -> float:
        residual = np.asarray(out[0], np.float64)
        return float(np.linalg.norm(residual) / optimal - 1.0)

    def acc_svd(out) -> float:
        u, sv, vt = (np.asarray(v, np.float64) for v in out)
        return float(np.linalg.norm(w64 - (u * sv) @ vt) / optimal - 1.0)

    def pissa_info(out) -> dict:
        residual, a, b = (np.asarray(v, np.float64) for v in out)
        return {"max |base + A B - W|": float(np.max(np.abs(residual + a @ b - w64)))}

    yield Case(
        name="pissa_init",
        size=f"{n}x{n}, rank {RANK}",
        label='jaxla.lora.init(method="pissa")',
        fn=functools.partial(_pissa_init, spec),
        args=(w,),
        anchors=[
            Anchor(f"scipy.sparse.linalg.svds (ARPACK, k={RANK})", _svds, (w,),
                   accuracy=acc_svd, info=lambda out: {}),
            Anchor("numpy.linalg.svd (full, truncated)", _numpy_svd, (w,), accuracy=acc_svd,
                   info=lambda out: {}),
        ],
        accuracy=acc_jaxla,
        metric="||W - s A B||_F / (exact truncated SVD's error) - 1",
        info=pissa_info,
        note=(f"singular values 1/j over {support} directions; optimal rank-{RANK} Frobenius "
              f"error {optimal:.4g}."),
    )


def cases(quick: bool) -> Iterator[Case]:
    yield from _train_cases(quick)
    yield from _pissa_cases(quick)
