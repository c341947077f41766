"""Gradient descent at the edge of stability (Cohen, Kaur, Li, Kolter & Talwalkar, ICLR 2021).

Full-batch gradient descent (plain SGD on the whole training set, no momentum) trains a tanh
MLP with the squared loss on a subset of scikit-learn's 8x8 digits, at several step sizes
``eta``. Gradient descent on a quadratic with curvature ``lambda`` is stable only while
``lambda < 2 / eta`` (:func:`jaxla.curvature.max_stable_lr`); on a neural network the sharpness
(the largest eigenvalue of the Hessian of the training loss) first rises during training
("progressive sharpening") until it reaches ``2 / eta``, and then hovers there while the loss
keeps falling, non-monotonically, over long time scales ("edge of stability").

What runs:

- data: ``n_examples`` digits drawn with ``config["seed"]``, pixels scaled to [0, 1] and
  centered; targets the one-hot labels, centered; loss ``0.5 * mean_i ||f(x_i) - y_i||^2``
  (:func:`mse_loss`);
- model: :func:`jaxla.nn.mlp` with widths ``(64, *hidden, 10)`` and tanh activations, float32,
  initialized once (:func:`init_params`) and trained from the same start at every ``eta``;
- training: :func:`jaxla.train.fit` on the full batch with ``optax.sgd(eta)`` (step ``t``
  evaluates the loss at the parameters after ``t - 1`` updates), one logged row per step;
- sharpness: a :func:`jaxla.curvature.sharpness_tracker` callback (Lanczos,
  :func:`jaxla.curvature.hessian_eigs` with ``k=1``) measures the top Hessian eigenvalue of the
  training loss at the initial parameters (step 0) and every ``every`` steps at the parameters
  after that many updates, all with the same compiled eigen-solve on the same float32 data; the
  step-0 value starts every sharpness series (all step sizes start from the same parameters).
  The sharpness first *falls* for a few dozen updates (at ``eta = 0.28`` in quick mode from 4.84
  to 4.22 after the first 5 updates) before it rises, so a series that began at the first
  logged step would start below the initial value. The eigen-solve uses the (default)
  ``criterion="residual"`` with ``tol = 1e-4`` rather than the default ``1e-3``: thousands of
  measurements are made, and a start vector with little weight on the top eigenvector can let
  Lanczos stop at the second eigenvalue; the tighter tolerance takes a few more products and
  makes such a miss far rarer.

Acceptance (stored in ``metrics["eos"]``, one entry per ``eta``, see :func:`edge_statistics`):
the first logged step at which ``|sharpness / (2 / eta) - 1| <= TOLERANCE`` (10%), the largest
such relative deviation from that step to the end of training, and the first step at which the
sharpness is at or above ``2 / eta``; an ``eta`` shows the edge of stability when the sharpness
enters the band, reaches ``2 / eta`` and never leaves the band afterwards.
``metrics["eos_accepted"]`` is true when that holds for at least two step sizes whose ``2 / eta``
is above the initial sharpness. The loss histories and sharpness series, and the initial and
final parameters, are saved to ``edge_of_stability.npz`` in the output directory.

Quick mode trains a 64-32-32-10 network on 300 digits for 3500 steps at three step sizes (about
a minute on a 2-core CPU); full mode uses 1000 digits, four step sizes and 8000 steps, and
measures the sharpness every 4 steps (about ten minutes).

Run it alone with ``python -m experiments.edge_of_stability [--quick | --full] [--out DIR]``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments._config import merge_config
from experiments._plotting import figure
from jaxla import curvature, train
from jaxla._checks import check_int, check_option, check_positive, fail
from jaxla.nn import mlp, mlp_init

__all__ = [
    "FULL",
    "NAME",
    "NPZ_FILE",
    "QUICK",
    "TITLE",
    "TOLERANCE",
    "edge_statistics",
    "init_params",
    "load_data",
    "mse_loss",
    "run",
]

NAME = "edge_of_stability"
TITLE = "Edge of stability: the sharpness under full-batch gradient descent rises to 2 / eta"
_FN = f"experiments.{NAME}.run"

QUICK: dict[str, Any] = {
    "n_examples": 300,  # digits in the training set
    "hidden": [32, 32],  # hidden widths of the tanh MLP
    "etas": [0.28, 0.24, 0.2],  # step sizes of gradient descent
    "steps": 3500,  # gradient-descent steps per step size
    "every": 5,  # steps between sharpness measurements
    "tol": 1e-4,  # relative tolerance of the Lanczos eigen-solve
    "criterion": "residual",  # its stopping criterion (see jaxla.curvature.hessian_eigs)
}
"""Quick-mode configuration; any entry can be overridden through the ``config`` dict."""

FULL: dict[str, Any] = {
    **QUICK,
    "n_examples": 1000,
    "etas": [0.27, 0.24, 0.21, 0.18],
    "steps": 8000,
    "every": 4,
}
"""Full-mode configuration."""

TOLERANCE = 0.10
"""Half-width of the band ``|sharpness / (2 / eta) - 1| <= TOLERANCE`` of the acceptance."""

NPZ_FILE = "edge_of_stability.npz"
"""Histories and parameters saved in the output directory (see :func:`run`)."""

ZOOM_STEPS = 400
"""Number of final updates whose losses are shown one by one."""

_INT_KEYS = ("n_examples", "steps", "every")
_N_DIGITS = 1797


# --------------------------------------------------------------------------------------------
# configuration, data, model


def _settings(config: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    mode, seed, cfg = merge_config(config, QUICK, FULL, _FN)
    for k in _INT_KEYS:
        cfg[k] = check_int(cfg[k], _FN, f"config['{k}']", min=1)
    cfg["n_examples"] = check_int(cfg["n_examples"], _FN, "config['n_examples']", min=2,
                                  max=_N_DIGITS, max_doc="the number of digits")
    cfg["tol"] = check_positive(cfg["tol"], _FN, "config['tol']")
    cfg["criterion"] = check_option(cfg["criterion"], ("residual", "eigenvalue"), _FN,
                                    "config['criterion']")
    for k in ("hidden", "etas"):
        if not isinstance(cfg[k], list | tuple) or not cfg[k]:
            fail(_FN, f"`config['{k}']` must be a non-empty list, got {cfg[k]!r}")
    cfg["hidden"] = [check_int(h, _FN, "config['hidden']", min=1) for h in cfg["hidden"]]
    cfg["etas"] = [check_positive(e, _FN, "config['etas']") for e in cfg["etas"]]
    if cfg["every"] > cfg["steps"]:
        fail(_FN, f"`config['every']`={cfg['every']} exceeds config['steps']={cfg['steps']}")
    return mode, seed, cfg


def load_data(config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The training set of a run: inputs ``(n, 64)`` and targets ``(n, 10)``, float32.

    ``n = n_examples`` digits drawn without replacement with ``config["seed"]`` (in their
    original order); inputs are the pixels divided by 16, minus their mean over the ``n`` images;
    targets are the one-hot labels minus their mean.
    """
    from sklearn.datasets import load_digits

    _, seed, cfg = _settings(config)
    digits = load_digits()
    keep = np.sort(np.random.default_rng(seed).permutation(len(digits.data))[:cfg["n_examples"]])
    x = digits.data[keep].astype(np.float64) / 16.0
    y = np.eye(10)[digits.target[keep]]
    x = (x - x.mean(axis=0, keepdims=True)).astype(np.float32)
    y = (y - y.mean(axis=0, keepdims=True)).astype(np.float32)
    return x, y


def init_params(config: dict[str, Any]) -> dict[str, dict[str, jax.Array]]:
    """The initial float32 MLP ``(64, *hidden, 10)``: :func:`jaxla.nn.mlp_init`, key ``seed``."""
    _, seed, cfg = _settings(config)
    return mlp_init(jax.random.key(seed), [64, *cfg["hidden"], 10], dtype=jnp.float32)


def mse_loss(params: dict[str, dict[str, jax.Array]], batch: tuple[jax.Array, jax.Array]
             ) -> jax.Array:
    """``0.5 * mean_i ||mlp(params, x_i) - y_i||^2`` with tanh activations; ``batch = (x, y)``."""
    x, y = batch
    r = mlp(params, x, activation="tanh") - y
    return 0.5 * jnp.mean(jnp.sum(r * r, axis=1))


def edge_statistics(
    steps: np.ndarray, sharpness: np.ndarray, eta: float, *, tolerance: float = TOLERANCE
) -> dict[str, Any]:
    """When a sharpness series reaches ``2 / eta`` and how far it strays afterwards.

    Args:
        steps: (T,) logged steps, ascending.
        sharpness: (T,) the sharpness at those steps.
        eta: the step size.
        tolerance: half-width of the band ``|sharpness / (2 / eta) - 1| <= tolerance``.

    Returns:
        ``reach_step`` (the first step in the band, or None), ``max_rel_dev_after_reach``
        (``max |sharpness / (2 / eta) - 1|`` from that step on), ``max_overshoot_after_reach``
        (the largest signed deviation ``sharpness / (2 / eta) - 1`` from that step on),
        ``stays_within`` (reached and never left the band), ``cross_step`` (the first step with
        ``sharpness >= 2 / eta``, or None), ``steps_at_edge`` (from ``cross_step`` to the last
        logged step, 0 if never crossed), and over the last half of the logged steps the mean,
        min and max of the signed deviation.
    """
    steps = np.asarray(steps)
    rel = np.asarray(sharpness, np.float64) / (2.0 / eta) - 1.0
    inside = np.flatnonzero(np.abs(rel) <= tolerance)
    half = rel[len(rel) // 2:]
    out: dict[str, Any] = {
        "reach_step": None,
        "max_rel_dev_after_reach": None,
        "max_overshoot_after_reach": None,
        "stays_within": False,
        "cross_step": None,
        "steps_at_edge": 0,
        "final_half_mean_rel_dev": float(np.mean(half)),
        "final_half_min_rel_dev": float(np.min(half)),
        "final_half_max_rel_dev": float(np.max(half)),
    }
    if len(inside):
        i = int(inside[0])
        after = rel[i:]
        out["reach_step"] = int(steps[i])
        out["max_rel_dev_after_reach"] = float(np.max(np.abs(after)))
        out["max_overshoot_after_reach"] = float(np.max(after))
        out["stays_within"] = bool(np.max(np.abs(after)) <= tolerance)
    crossed = np.flatnonzero(rel >= 0)
    if len(crossed):
        out["cross_step"] = int(steps[crossed[0]])
        out["steps_at_edge"] = int(steps[-1] - steps[crossed[0]])
    return out


def _flat(params: Any, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}/{name}/{leaf}": np.asarray(v) for name, layer in params.items()
            for leaf, v in layer.items()}


# --------------------------------------------------------------------------------------------
# run


def run(config: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Run the experiment; write two PNG figures and ``NPZ_FILE`` into ``out_dir``.

    Args:
        config: ``{"mode": "quick" | "full", "seed": int}``, plus optional overrides of any
            entry of :data:`QUICK` / :data:`FULL` (e.g. ``"etas"``, ``"steps"``).
        out_dir: existing directory for the figures.

    Returns:
        ``{"summary", "metrics", "figures", "tables"}`` as described in :mod:`experiments`.
        ``NPZ_FILE`` holds, for the ``i``-th step size, ``"{i}/loss"`` (steps + 1,), the loss
        at the parameters after ``u = 0, ..., steps`` updates; ``"{i}/sharpness_step"`` and
        ``"{i}/sharpness"`` (T,), the sharpness at steps ``0, every, 2 every, ...`` (step 0:
        the initial sharpness); the final parameters
        ``"{i}/layers_j/w"`` and ``"{i}/layers_j/b"``; and ``"etas"``, the initial parameters
        ``"init/layers_j/w"`` (and ``/b``) and ``"init/sharpness"``.
    """
    out_dir = Path(out_dir)
    _, seed, cfg = _settings(config)
    x_np, y_np = load_data(config)
    data = (jnp.asarray(x_np), jnp.asarray(y_np))
    params0 = init_params(config)
    n_params = int(sum(v.size for v in jax.tree_util.tree_leaves(params0)))
    key = jax.random.key(seed)
    etas, steps, every = cfg["etas"], cfg["steps"], cfg["every"]

    tracker = curvature.sharpness_tracker(jax.random.fold_in(key, 1), mse_loss, data,
                                          every=every, tol=cfg["tol"],
                                          criterion=cfg["criterion"])
    # the initial sharpness with the same (compiled) eigen-solve, as the tracker at step 0; it
    # is the first point of every series (every run starts from params0)
    s0 = tracker(train.CallbackInfo(step=0, params=params0, opt_state=None, metrics={},
                                    history={}))["sharpness"]

    runs = []
    saved: dict[str, np.ndarray] = {"etas": np.asarray(etas), "init/sharpness": np.asarray(s0),
                                    **_flat(params0, "init")}
    for i, eta in enumerate(etas):
        params, hist = train.fit(mse_loss, params0, data, optax.sgd(eta), steps=steps,
                                 log_every=1, callbacks=[tracker], progress=False)
        # loss[u]: the loss at the parameters after u updates, u = 0..steps (step u + 1 of the
        # history evaluates it; the last one is evaluated here)
        final_loss = float(mse_loss(params, data))
        loss = np.append(np.asarray(hist["loss"], np.float64), final_loss)
        sharp = np.r_[s0, np.asarray(hist["sharpness"], np.float64)]
        s_steps = np.r_[0, np.asarray(hist["callback_step"])]
        stats = edge_statistics(s_steps, sharp, eta)
        low = int(np.argmin(sharp[:len(sharp) // 2]))  # the early dip, before the rise
        cross = stats["cross_step"]
        rises = np.diff(loss) > 0  # rises[u]: loss[u + 1] > loss[u]
        before = rises if cross is None else rises[:cross]
        after = rises[:0] if cross is None else rises[cross:]
        runs.append({
            "eta": eta,
            "two_over_eta": 2.0 / eta,
            "initial_sharpness": s0,
            "above_initial": bool(2.0 / eta > s0),
            **stats,
            "eos": bool(stats["stays_within"] and cross is not None),
            "min_sharpness": float(sharp[low]),
            "min_sharpness_step": int(s_steps[low]),
            "final_sharpness": float(sharp[-1]),
            "initial_loss": float(loss[0]),
            "loss_at_cross": None if cross is None else float(loss[cross]),
            "final_loss": final_loss,
            "loss_rise_fraction_before_cross": float(np.mean(before)) if len(before) else 0.0,
            "loss_rise_fraction_after_cross": float(np.mean(after)) if len(after) else 0.0,
            "_loss": loss, "_sharp": sharp, "_s_step": s_steps,
        })
        saved.update({f"{i}/loss": loss, f"{i}/sharpness_step": s_steps,
                      f"{i}/sharpness": sharp, **_flat(params, str(i))})
    np.savez(out_dir / NPZ_FILE, **saved)

    eos = [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs]
    above = [r for r in eos if r["above_initial"]]
    n_ok = sum(r["eos"] for r in above)
    accepted = n_ok >= 2

    # ---------------------------------------------------------------- figures
    figures = []
    colors = [f"C{i}" for i in range(len(runs))]
    updates = np.arange(steps + 1)
    with figure(out_dir, "sharpness_and_loss.png", ncols=2, size=(12.0, 4.6)) as (_, axes):
        ax = axes[0, 0]
        for r, c in zip(runs, colors, strict=True):
            ax.plot(r["_s_step"], r["_sharp"], color=c, lw=1.2, label=f"$\\eta$ = {r['eta']:g}")
            ax.axhline(r["two_over_eta"], color=c, ls="--", lw=1)
            if r["cross_step"] is not None:
                ax.axvline(r["cross_step"], color=c, ls=":", lw=0.8)
        ax.plot([0], [s0], "ko", ms=5, label=f"initial sharpness {s0:.2f}")
        ax.set_xlabel("gradient-descent updates")
        ax.set_ylabel("sharpness (top Hessian eigenvalue)")
        ax.set_title("Sharpness rises to 2/$\\eta$ (dashed) and stays there")
        ax.legend(loc="lower right")
        ax.grid(True, alpha=0.3)
        ax = axes[0, 1]
        for r, c in zip(runs, colors, strict=True):
            ax.semilogy(updates, r["_loss"], color=c, lw=0.8, label=f"$\\eta$ = {r['eta']:g}")
            if r["cross_step"] is not None:
                ax.axvline(r["cross_step"], color=c, ls=":", lw=0.8)
        ax.set_xlabel("gradient-descent updates")
        ax.set_ylabel("training loss")
        ax.set_title("Training loss (dotted: sharpness reaches 2/$\\eta$)")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    figures.append({
        "file": "sharpness_and_loss.png",
        "caption": (
            f"Full-batch gradient descent on {cfg['n_examples']} digits (tanh MLP "
            f"{'-'.join(map(str, [64, *cfg['hidden'], 10]))}, {n_params} parameters, squared "
            f"loss). Left: the sharpness, measured by Lanczos (sharpness_tracker) at the "
            f"initial parameters (black dot, {s0:.2f}) and every {every} steps, first falls "
            f"(to {min(r['min_sharpness'] for r in runs):.2f}-"
            f"{max(r['min_sharpness'] for r in runs):.2f}), then rises to 2/eta (dashed) and "
            f"hovers there. Right: the loss keeps falling, but no longer monotonically once the "
            f"sharpness has reached 2/eta (dotted lines)."
        ),
    })

    zoomed = max((r for r in runs if r["cross_step"] is not None), key=lambda r: r["eta"],
                 default=runs[0])
    color = colors[runs.index(zoomed)]
    lo = max(steps - ZOOM_STEPS, 0)
    with figure(out_dir, "edge_deviation_and_loss_zoom.png", ncols=2,
                size=(12.0, 4.6)) as (_, axes):
        ax = axes[0, 0]
        ax.axhspan(1 - TOLERANCE, 1 + TOLERANCE, color="0.85", label=f"±{TOLERANCE:.0%}")
        for r, c in zip(runs, colors, strict=True):
            ax.plot(r["_s_step"], r["_sharp"] / r["two_over_eta"], color=c, lw=1.0,
                    label=f"$\\eta$ = {r['eta']:g}")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_ylim(0.0, 1.5)
        ax.set_xlabel("gradient-descent updates")
        ax.set_ylabel("sharpness / (2/$\\eta$)")
        ax.set_title("Sharpness relative to the stability threshold")
        ax.legend(loc="lower right")
        ax.grid(True, alpha=0.3)
        ax = axes[0, 1]
        ax.plot(updates[lo:], zoomed["_loss"][lo:], ".-", ms=2, lw=0.6, color=color)
        ax.set_xlabel("gradient-descent updates")
        ax.set_ylabel("training loss", color=color)
        ax.set_title(f"The last {steps - lo} updates at $\\eta$ = {zoomed['eta']:g}")
        ax.grid(True, alpha=0.3)
        twin = ax.twinx()
        sel = zoomed["_s_step"] >= lo
        twin.plot(zoomed["_s_step"][sel], zoomed["_sharp"][sel], color="k", lw=0.8)
        twin.axhline(zoomed["two_over_eta"], color="k", ls="--", lw=0.8)
        twin.set_ylabel("sharpness (black; dashed: 2/$\\eta$)")
    figures.append({
        "file": "edge_deviation_and_loss_zoom.png",
        "caption": (
            f"Left: sharpness divided by 2/eta; the grey band is the ±{TOLERANCE:.0%} band of "
            f"the acceptance. Right: the loss of every step over the last {steps - lo} updates "
            f"at eta = {zoomed['eta']:g} (colour) with the sharpness (black): at the edge of "
            f"stability the loss falls on average while rising on "
            f"{100 * float(np.mean(np.diff(zoomed['_loss'][lo:]) > 0)):.0f}% of these steps."
        ),
    })

    # ---------------------------------------------------------------- tables, metrics
    def pct(v: float | None) -> float | None:
        return None if v is None else 100.0 * v

    table = {
        "title": f"Edge of stability per step size (band ±{TOLERANCE:.0%} of 2/eta)",
        "columns": ["eta", "2/eta", "initial sharpness", "lowest sharpness", "lowest at step",
                    "band reached at step", "2/eta crossed at step", "max |dev| after reach (%)",
                    "max overshoot (%)",
                    "mean dev, last half (%)", "final sharpness",
                    "loss rises after crossing (% of steps)", "final loss", "edge of stability"],
        "rows": [[r["eta"], r["two_over_eta"], r["initial_sharpness"], r["min_sharpness"],
                  r["min_sharpness_step"], r["reach_step"],
                  r["cross_step"], pct(r["max_rel_dev_after_reach"]),
                  pct(r["max_overshoot_after_reach"]), pct(r["final_half_mean_rel_dev"]),
                  r["final_sharpness"], pct(r["loss_rise_fraction_after_cross"]),
                  r["final_loss"], r["eos"]]
                 for r in eos],
    }
    metrics = {
        "n_examples": cfg["n_examples"],
        "n_params": n_params,
        "widths": [64, *cfg["hidden"], 10],
        "steps": steps,
        "sharpness_every": every,
        "tolerance": TOLERANCE,
        "initial_sharpness": s0,
        "max_stable_lr_initial": float(curvature.max_stable_lr(s0)),
        "etas": list(etas),
        "eos": eos,
        "n_above_initial": len(above),
        "n_eos_above_initial": n_ok,
        "eos_accepted": accepted,
    }
    parts = []
    for r in eos:
        head = f"eta={r['eta']:g} (2/eta={r['two_over_eta']:.2f})"
        if r["reach_step"] is None:
            parts.append(f"{head} never comes within {TOLERANCE:.0%} of it (final sharpness "
                         f"{r['final_sharpness']:.2f})")
            continue
        text = f"{head} enters the band at step {r['reach_step']}"
        if r["cross_step"] is not None:
            text += f", crosses 2/eta at step {r['cross_step']}"
        text += (f", overshoots by at most {100 * r['max_overshoot_after_reach']:.1f}%, "
                 f"{'stays' if r['stays_within'] else 'does not stay'} within the band "
                 f"(max |deviation| {100 * r['max_rel_dev_after_reach']:.1f}%) and ends at "
                 f"{r['final_sharpness']:.2f}")
        parts.append(text)
    summary = (
        f"Full-batch gradient descent on {cfg['n_examples']} digits with a {n_params}-parameter "
        f"tanh MLP and the squared loss, {steps} steps per step size. The sharpness starts at "
        f"{s0:.2f} (gradient descent is stable there for eta < "
        f"{curvature.max_stable_lr(s0):.3f}), first falls (to "
        + ", ".join(f"{r['min_sharpness']:.2f} at step {r['min_sharpness_step']}" for r in eos)
        + ") and then rises towards 2/eta: " + "; ".join(parts)
        + f". {n_ok} of {len(above)} step sizes with 2/eta above the initial sharpness reach "
        f"2/eta and stay within "
        f"{TOLERANCE:.0%} of it (acceptance: at least two, {'met' if accepted else 'NOT met'}). "
        f"After the sharpness reaches 2/eta the loss rises on "
        + ", ".join(f"{100 * r['loss_rise_fraction_after_cross']:.0f}%" for r in eos)
        + " of the steps (before: "
        + ", ".join(f"{100 * r['loss_rise_fraction_before_cross']:.0f}%" for r in eos)
        + ") while still falling overall."
    )
    return {"summary": summary, "metrics": metrics, "figures": figures, "tables": [table]}


if __name__ == "__main__":
    from experiments.runner import experiment_main

    raise SystemExit(experiment_main(sys.modules[__name__]))
