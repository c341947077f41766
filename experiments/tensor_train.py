"""Tensor trains: TT-SVD on a smooth tensor, and a TT-compressed MLP layer on the digits.

1. **TT-SVD accuracy.** Samples of the smooth function ``f(x) = 1 / (1 + x_1 + ... + x_d)`` on a
   uniform grid of ``[0, 1]^d`` (d = 4) are factored by :func:`jaxla.linalg.tensor.tt_svd` for a
   range of ``eps``. For each ``eps``: the TT ranks, the number of parameters, the error
   ``||A - B||_F / ||A||_F`` measured on the dense tensor against the guaranteed ``eps`` and
   against the reported ``rel_error``; tensorly's ``tensor_train`` given jaxla's ranks (same
   algorithm: the same error); and the smallest uniform rank with which tensorly meets ``eps``
   (a rank found by trying ranks and looking at the error; jaxla's rule chooses the ranks from
   the singular values so that the bound is *guaranteed*, and its largest rank is no larger).
2. **TT layer on the digits.** An MLP ``64 -> 1024 -> 10`` (ReLU) is trained with Adam on
   minibatches of the 8x8 digits (scikit-learn, a seeded 70/30 train/test split, pixels scaled
   to [0, 1]). Its first weight ``(64, 1024)`` is converted by
   :func:`jaxla.nn.tt.tt_dense_from_dense` into TT layers with ``row_dims = ROW_DIMS = (4, 4,
   4)`` and ``col_dims = COL_DIMS = (8, 8, 16)`` at several TT ranks. For each rank: the
   compression factor of that weight (dense parameters / TT-core parameters), the test accuracy
   right after the TT-SVD, and after a short fine-tuning of the TT cores and the bias of that
   layer with Adam (``finetune_steps`` minibatch steps; the output layer stays frozen).

For reference, t3f's MNIST tutorial reports about 31x compression of a dense layer at TT-rank 16
with the full accuracy recovered after 2 epochs of fine-tuning; this experiment measures the
same trade-off on a smaller problem (the digits, a 64x1024 layer), and its table states the
numbers it measured.

Run it alone with ``python -m experiments.tensor_train [--quick | --full] [--out DIR]``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments._config import merge_config
from experiments._plotting import figure
from jaxla._checks import check_int, fail
from jaxla.linalg.tensor import tt_ranks, tt_svd, tt_to_full
from jaxla.nn import mlp, mlp_init
from jaxla.nn.tt import tt_dense, tt_dense_from_dense

__all__ = ["COL_DIMS", "FULL", "NAME", "QUICK", "ROW_DIMS", "TITLE", "load_data", "run",
           "smooth_tensor"]

NAME = "tensor_train"
TITLE = "Tensor trains: TT-SVD accuracy and a TT-compressed MLP layer on the digits"
ROW_DIMS = (4, 4, 4)
"""Factors of the 64 input pixels."""
COL_DIMS = (8, 8, 16)
"""Factors of the 1024 hidden units."""

QUICK: dict[str, Any] = {
    "grid": 8, "order": 4, "eps": [1e-2, 1e-4, 1e-6, 1e-8],
    "ranks": [1, 4, 8, 16], "train_steps": 400, "finetune_steps": 200, "batch_size": 128,
    "learning_rate": 3e-3, "finetune_learning_rate": 1e-2,
}
"""Quick-mode configuration; any entry can be overridden through the ``config`` dict."""
FULL: dict[str, Any] = {
    **QUICK,
    "grid": 16, "eps": [1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-8, 1e-10],
    "ranks": [1, 2, 4, 8, 16, 32], "train_steps": 1500, "finetune_steps": 600,
}
"""Full-mode configuration."""

FLOAT32_MIN_EPS = 1e-5
"""Smallest eps tried in float32 (its rounding error is about 1e-7 relative)."""
_FN = "experiments.tensor_train.run"
_INT_KEYS = ("grid", "order", "train_steps", "finetune_steps", "batch_size")
_HIDDEN = math.prod(COL_DIMS)


def _settings(config: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    mode, seed, cfg = merge_config(config, QUICK, FULL, _FN)
    for k in _INT_KEYS:
        cfg[k] = check_int(cfg[k], _FN, f"config['{k}']", min=2 if k in ("grid", "order") else 1)
    for k in ("learning_rate", "finetune_learning_rate"):
        cfg[k] = float(cfg[k])
    for k in ("ranks", "eps"):
        vals = cfg[k]
        if not isinstance(vals, list | tuple) or not vals:
            fail(_FN, f"`config['{k}']` must be a non-empty list, got {vals!r}")
    cfg["ranks"] = [check_int(r, _FN, "config['ranks']", min=1) for r in cfg["ranks"]]
    cfg["eps"] = [float(e) for e in cfg["eps"]]
    if not all(0 < e < 1 for e in cfg["eps"]):
        fail(_FN, f"`config['eps']` must hold numbers in (0, 1), got {cfg['eps']!r}")
    return mode, seed, cfg


# --------------------------------------------------------------------------------------------
# data


def smooth_tensor(grid: int, order: int) -> np.ndarray:
    """``1 / (1 + x_1 + ... + x_d)`` on the grid ``linspace(0, 1, grid)^d``: (grid,) * d float64."""
    x = np.linspace(0.0, 1.0, grid)
    total = np.zeros((1,) * order)
    for k in range(order):
        total = total + x.reshape((1,) * k + (grid,) + (1,) * (order - k - 1))
    return 1.0 / (1.0 + total)


def load_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits split 70/30 with ``seed``: x_train (n, 64), y_train (n,), x_test, y_test.

    Pixels are scaled to [0, 1] (float32); labels are int32.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.asarray(digits.data, np.float32) / 16.0
    y = np.asarray(digits.target, np.int32)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_train = round(0.7 * len(x))
    tr, te = perm[:n_train], perm[n_train:]
    return x[tr], y[tr], x[te], y[te]


# --------------------------------------------------------------------------------------------
# part 1: TT-SVD of a smooth tensor


def _tensorly_error(a: np.ndarray, ranks: list[int]) -> float:
    import tensorly as tl
    from tensorly.decomposition import tensor_train

    tl.set_backend("numpy")
    full = tl.tt_to_tensor(tensor_train(a, rank=list(ranks)))
    return float(np.linalg.norm(full - a) / np.linalg.norm(a))


def _tt_svd_study(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """TT-SVD of the smooth tensor for each eps: float64, and float32 for eps >= FLOAT32_MIN_EPS."""
    a = smooth_tensor(cfg["grid"], cfg["order"])
    d = a.ndim
    rows = []
    for dtype in ("float64", "float32"):
        for eps in cfg["eps"]:
            if dtype == "float32" and eps < FLOAT32_MIN_EPS:
                continue
            with jax.enable_x64(dtype == "float64"):
                tt = tt_svd(jnp.asarray(a, dtype), eps=eps)
                full = np.asarray(tt_to_full(tt), np.float64)
                rel_error = float(tt.rel_error)
            ranks = tt_ranks(tt)
            err = float(np.linalg.norm(full - a) / np.linalg.norm(a))
            params = sum(int(np.prod(c.shape)) for c in tt.cores)
            uniform = next((r for r in range(1, a.size + 1)
                            if _tensorly_error(a, [1, *[r] * (d - 1), 1]) <= eps), None)
            rows.append({
                "dtype": dtype, "eps": eps, "ranks": list(ranks), "params": params,
                "compression": a.size / params, "error": err, "rel_error": rel_error,
                "tensorly_error_same_ranks": _tensorly_error(a, list(ranks)),
                "tensorly_min_uniform_rank": uniform,
            })
    return rows


# --------------------------------------------------------------------------------------------
# part 2: TT layer on the digits


@jax.jit
def _logits_dense(params: dict, x: jax.Array) -> jax.Array:
    return mlp(params, x, activation="relu")


def _masked(tt: dict, masks: list[jax.Array]) -> dict:
    return {"cores": [c * m for c, m in zip(tt["cores"], masks, strict=True)], "b": tt["b"]}


@jax.jit
def _logits_tt(tt: dict, masks: list[jax.Array], out: dict, x: jax.Array) -> jax.Array:
    h = jax.nn.relu(tt_dense(_masked(tt, masks), x))
    return h @ out["w"] + out["b"][None, :]


def _loss(logits: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def _accuracy(logits: jax.Array, y: np.ndarray) -> float:
    return float(np.mean(np.asarray(jnp.argmax(logits, axis=-1)) == y))


def _batches(n: int, steps: int, batch: int, seed: int) -> np.ndarray:
    """(steps, batch) row indices: consecutive slices of seeded epoch permutations."""
    batch = min(batch, n)
    per_epoch = n // batch
    rng = np.random.default_rng(seed)
    epochs = -(-steps // per_epoch)
    idx = np.concatenate([rng.permutation(n)[: per_epoch * batch] for _ in range(epochs)])
    return idx[: steps * batch].reshape(steps, batch).astype(np.int32)


def _adam_scan(loss_fn, params, extra, x, y, idx, lr):
    """Adam over the minibatches ``idx`` (steps, batch) in one scan; ``loss_fn(p, extra, xb,
    yb)``. Returns (params, losses (steps,))."""
    opt = optax.adam(lr)

    def step(carry, rows):
        p, s = carry
        value, g = jax.value_and_grad(loss_fn)(p, extra, x[rows], y[rows])
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), value

    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), idx)
    return params, losses


@jax.jit
def _train_dense(params, x, y, idx, lr):
    return _adam_scan(lambda p, _, xb, yb: _loss(_logits_dense(p, xb), yb), params, None, x, y,
                      idx, lr)


@jax.jit
def _train_tt(tt, masks, out, x, y, idx, lr):
    return _adam_scan(lambda p, m, xb, yb: _loss(_logits_tt(p, m, out, xb), yb), tt, masks, x,
                      y, idx, lr)


def _pad_to(c: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jnp.pad(c, [(0, t - s) for s, t in zip(c.shape, shape, strict=True)])


def _digits_study(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train the dense MLP, convert its first layer at each TT rank, fine-tune, evaluate.

    All ranks share one compiled fine-tuning program: the cores of a rank-r layer are
    zero-padded to the shapes of the largest rank and multiplied by a fixed 0/1 mask in the
    forward pass, so the padding gets zero gradients, Adam (elementwise) never moves it, and
    the kept entries follow exactly the trajectory of the unpadded rank-r layer.
    """
    xtr, ytr, xte, yte = load_data(seed)
    xtr_j, ytr_j, xte_j = jnp.asarray(xtr), jnp.asarray(ytr), jnp.asarray(xte)
    params = mlp_init(jax.random.key(seed), [64, _HIDDEN, 10])
    n, batch = len(xtr), cfg["batch_size"]
    params, losses = _train_dense(params, xtr_j, ytr_j,
                                  _batches(n, cfg["train_steps"], batch, seed),
                                  cfg["learning_rate"])
    dense_acc = _accuracy(_logits_dense(params, xte_j), yte)
    dense_train_acc = _accuracy(_logits_dense(params, xtr_j), ytr)
    first, out = params["layers_0"], params["layers_1"]
    w64 = np.asarray(first["w"], np.float64)
    n_dense = w64.size

    def weight_error(tt: dict) -> float:
        return float(np.linalg.norm(_tt_weight(tt) - w64) / np.linalg.norm(w64))

    exact_err = weight_error(tt_dense_from_dense(first, ROW_DIMS, COL_DIMS, max_rank=None))
    tts = {r: tt_dense_from_dense(first, ROW_DIMS, COL_DIMS, max_rank=r) for r in cfg["ranks"]}
    shapes = [tuple(max(s) for s in zip(*(tt["cores"][k].shape for tt in tts.values()),
                                        strict=True)) for k in range(len(ROW_DIMS))]

    tune_idx = _batches(n, cfg["finetune_steps"], batch, seed + 1)
    rows = []
    for rank, tt in tts.items():
        masks = [_pad_to(jnp.ones_like(c), s) for c, s in zip(tt["cores"], shapes, strict=True)]
        padded = {"cores": [_pad_to(c, s) for c, s in zip(tt["cores"], shapes, strict=True)],
                  "b": tt["b"]}
        before = _accuracy(_logits_tt(padded, masks, out, xte_j), yte)
        tuned, ft_losses = _train_tt(padded, masks, out, xtr_j, ytr_j, tune_idx,
                                     cfg["finetune_learning_rate"])
        after = _accuracy(_logits_tt(tuned, masks, out, xte_j), yte)
        leak = max(float(jnp.max(jnp.abs(c * (1 - m)))) for c, m in
                   zip(tuned["cores"], masks, strict=True))
        n_tt = sum(int(np.prod(c.shape)) for c in tt["cores"])
        rows.append({
            "rank": rank, "ranks": [1, *(int(c.shape[-1]) for c in tt["cores"])],
            "tt_params": n_tt, "compression": n_dense / n_tt, "weight_rel_error": weight_error(tt),
            "acc_before": before, "acc_after": after, "padding_max_abs": leak,
            "finetune_loss_first": float(ft_losses[0]), "finetune_loss_last": float(ft_losses[-1]),
        })
    return {"dense_acc": dense_acc, "dense_train_acc": dense_train_acc,
            "train_loss": np.asarray(losses, np.float64), "n_dense": n_dense,
            "exact_conversion_weight_rel_error": exact_err, "rows": rows,
            "n_train": len(xtr), "n_test": len(xte)}


def _tt_weight(tt: dict) -> np.ndarray:
    """Dense weight of TT-layer parameters by an independent numpy contraction."""
    cores = [np.asarray(c, np.float64) for c in tt["cores"]]
    w = cores[0][0]  # (m, n, r)
    for c in cores[1:]:
        m, n, _ = w.shape
        w = np.einsum("MNa,amnb->MmNnb", w, c).reshape(m * c.shape[1], n * c.shape[2], -1)
    return w[:, :, 0]


# --------------------------------------------------------------------------------------------
# run


def run(config: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Run the experiment; write two PNG figures into ``out_dir``; return its results.

    Args:
        config: ``{"mode": "quick" | "full", "seed": int}``, plus optional overrides of the
            entries of :data:`QUICK`.
        out_dir: existing directory for the figures.

    Returns:
        ``{"summary", "metrics", "figures", "tables"}`` as described in :mod:`experiments`.
    """
    out_dir = Path(out_dir)
    _, seed, cfg = _settings(config)
    svd_rows = _tt_svd_study(cfg)
    dig = _digits_study(cfg, seed)
    rows = dig["rows"]

    r64 = [r for r in svd_rows if r["dtype"] == "float64"]
    r32 = [r for r in svd_rows if r["dtype"] == "float32"]

    # ---------------------------------------------------------------- figures
    figures = []
    eps = np.asarray([r["eps"] for r in r64])
    eps32 = np.asarray([r["eps"] for r in r32])
    floor = 1e-17
    with figure(out_dir, "tt_svd_accuracy.png", ncols=2, size=(11.5, 4.5)) as (_, axes):
        ax = axes[0, 0]
        ax.loglog(eps, eps, "k--", lw=1, label="guarantee: error = eps")
        ax.loglog(eps, [max(r["error"], floor) for r in r64], "o-", label="float64: measured")
        ax.loglog(eps, [max(r["rel_error"], floor) for r in r64], "x", ms=8,
                  label="float64: reported rel_error")
        ax.loglog(eps, [max(r["tensorly_error_same_ranks"], floor) for r in r64], "+",
                  ms=10, label="tensorly (float64) at the same ranks")
        ax.loglog(eps32, [max(r["error"], floor) for r in r32], "s:", ms=5,
                  label="float32: measured")
        ax.invert_xaxis()
        ax.set_xlabel("eps")
        ax.set_ylabel(r"$\|A - B\|_F / \|A\|_F$")
        ax.set_title("TT-SVD error against the requested accuracy")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        ax = axes[0, 1]
        ax.semilogx(eps, [max(r["ranks"]) for r in r64], "o-", label="jaxla: largest rank")
        ax.semilogx(eps, [r["tensorly_min_uniform_rank"] or np.nan for r in r64], "s--",
                    label="tensorly: smallest uniform rank meeting eps")
        ax.invert_xaxis()
        ax.set_xlabel("eps")
        ax.set_ylabel("TT rank")
        ax.set_title("Ranks of a smooth tensor grow like log(1/eps)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    n_el = cfg["grid"] ** cfg["order"]
    figures.append({
        "file": "tt_svd_accuracy.png",
        "caption": (
            f"TT-SVD of 1/(1 + x_1 + ... + x_{cfg['order']}) on a {cfg['grid']}^{cfg['order']} "
            f"grid ({n_el} entries). Left: the measured error stays below eps for every eps "
            f"(float64, and float32 for eps >= {FLOAT32_MIN_EPS:g}) and equals the reported "
            f"rel_error; tensorly given the same ranks reaches the same error. Right: jaxla's "
            f"largest rank and the smallest uniform rank with which tensorly meets eps."
        ),
    })

    comp = np.asarray([r["compression"] for r in rows])
    with figure(out_dir, "tt_layer_accuracy.png", size=(7.5, 4.8)) as (_, axes):
        ax = axes[0, 0]
        ax.semilogx(comp, [100 * r["acc_before"] for r in rows], "o--", label="after TT-SVD")
        ax.semilogx(comp, [100 * r["acc_after"] for r in rows], "s-",
                    label=f"after fine-tuning ({cfg['finetune_steps']} Adam steps)")
        ax.axhline(100 * dig["dense_acc"], color="k", ls=":", label="dense layer")
        for r in rows:
            ax.annotate(f"r={r['rank']}", (r["compression"], 100 * r["acc_after"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(f"compression of the 64x{_HIDDEN} weight (dense / TT parameters)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("TT layer on the digits: accuracy against compression")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    figures.append({
        "file": "tt_layer_accuracy.png",
        "caption": (
            f"The first layer (64x{_HIDDEN}) of a trained MLP replaced by TT layers "
            f"(row dims {ROW_DIMS}, column dims {COL_DIMS}) at TT ranks "
            f"{', '.join(str(r['rank']) for r in rows)}; test accuracy on "
            f"{dig['n_test']} held-out digits right after the TT-SVD and after fine-tuning the "
            f"TT cores and bias. Dense: {100 * dig['dense_acc']:.1f}%."
        ),
    })

    # ---------------------------------------------------------------- tables and metrics
    tables = [
        {
            "title": "TT-SVD of a smooth tensor",
            "columns": ["dtype", "eps", "ranks", "parameters", "compression", "error (dense)",
                        "rel_error", "tensorly error, same ranks",
                        "tensorly smallest uniform rank"],
            "rows": [[r["dtype"], r["eps"], str(tuple(r["ranks"])), r["params"],
                      r["compression"], r["error"], r["rel_error"],
                      r["tensorly_error_same_ranks"], r["tensorly_min_uniform_rank"]]
                     for r in svd_rows],
        },
        {
            "title": f"TT layer 64 -> {_HIDDEN} on the digits (dense test accuracy "
                     f"{100 * dig['dense_acc']:.1f}%)",
            "columns": ["TT rank", "ranks", "TT parameters", "compression", "weight rel. error",
                        "test acc. after TT-SVD (%)", "test acc. after fine-tuning (%)"],
            "rows": [[r["rank"], str(tuple(r["ranks"])), r["tt_params"], r["compression"],
                      r["weight_rel_error"], 100 * r["acc_before"], 100 * r["acc_after"]]
                     for r in rows],
        },
    ]
    meets64 = all(r["error"] <= r["eps"] * (1 + 1e-9) + 1e-14 for r in r64)
    meets32 = all(r["error"] <= r["eps"] for r in r32)
    same_rank_ok = all(r["error"] <= r["tensorly_error_same_ranks"] * (1 + 1e-9) + 1e-14
                       for r in r64)
    reported_gap = max(abs(r["rel_error"] - r["error"]) for r in r64)
    rank_gap = [max(r["ranks"]) - (r["tensorly_min_uniform_rank"] or 0) for r in r64]
    best = max(rows, key=lambda r: (r["acc_after"] >= dig["dense_acc"] - 0.01, r["compression"]))
    recovered = [r for r in rows if r["acc_after"] >= dig["dense_acc"] - 0.01]
    top = max(recovered, key=lambda r: r["compression"]) if recovered else None
    metrics: dict[str, Any] = {
        "tt_svd_meets_eps_float64": meets64,
        "tt_svd_meets_eps_float32": meets32,
        "tt_svd_max_error_over_eps_float64": max(r["error"] / r["eps"] for r in r64),
        "tt_svd_max_error_over_eps_float32": max(r["error"] / r["eps"] for r in r32),
        "tt_svd_error_le_tensorly_at_same_ranks": same_rank_ok,
        "tt_svd_rel_error_max_abs_gap_vs_dense_float64": reported_gap,
        "tt_svd_largest_rank_minus_tensorly_min_uniform_rank": rank_gap,
        "tt_svd_ranks_le_tensorly_min_uniform_rank": max(rank_gap) <= 0,
        "tt_svd_eps": [r["eps"] for r in r64],
        "tt_svd_ranks_float64": [r["ranks"] for r in r64],
        "dense_test_accuracy": dig["dense_acc"],
        "dense_train_accuracy": dig["dense_train_acc"],
        "dense_final_train_loss": float(dig["train_loss"][-1]),
        "exact_tt_conversion_weight_rel_error": dig["exact_conversion_weight_rel_error"],
        "exact_tt_conversion_matches_dense": dig["exact_conversion_weight_rel_error"] < 1e-5,
        "finetune_padding_stays_zero": all(r["padding_max_abs"] == 0.0 for r in rows),
        "tt_ranks": [r["rank"] for r in rows],
        "tt_compression": [r["compression"] for r in rows],
        "tt_acc_before_finetune": [r["acc_before"] for r in rows],
        "tt_acc_after_finetune": [r["acc_after"] for r in rows],
        "finetune_never_hurts": all(r["acc_after"] >= r["acc_before"] - 0.005 for r in rows),
        "largest_compression_within_1pt_of_dense": top["compression"] if top else 0.0,
        "some_rank_within_1pt_of_dense_at_10x_or_more": bool(top and top["compression"] >= 10),
    }
    summary = (
        f"TT-SVD of a smooth {cfg['grid']}^{cfg['order']} tensor met every requested eps "
        f"(float64: {'yes' if meets64 else 'NO'}, worst error/eps "
        f"{metrics['tt_svd_max_error_over_eps_float64']:.2f}; float32 for eps >= "
        f"{FLOAT32_MIN_EPS:g}: {'yes' if meets32 else 'NO'}) with ranks "
        f"{tuple(r64[0]['ranks'])} at eps={r64[0]['eps']:g} up to {tuple(r64[-1]['ranks'])} at "
        f"eps={r64[-1]['eps']:g}, the same error as tensorly at the same ranks and never a "
        f"larger rank than the smallest uniform rank with which tensorly meets eps "
        f"({'yes' if max(rank_gap) <= 0 else 'NO'}). A "
        f"64x{_HIDDEN} MLP layer ({100 * dig['dense_acc']:.1f}% test accuracy) compressed to TT "
        f"rank {best['rank']} ({best['compression']:.0f}x fewer weights) scores "
        f"{100 * best['acc_before']:.1f}% right after TT-SVD and {100 * best['acc_after']:.1f}% "
        f"after {cfg['finetune_steps']} fine-tuning steps of the TT cores."
    )
    return {"summary": summary, "metrics": metrics, "figures": figures, "tables": tables}


if __name__ == "__main__":
    from experiments.runner import experiment_main

    raise SystemExit(experiment_main(sys.modules[__name__]))
