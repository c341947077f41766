"""Jacobians and Hessians of a small MLP with :mod:`jaxla.autodiff` and :mod:`jaxla.curvature`.

1. **Forward vs reverse Jacobians.** The Jacobian ``d f(x) / d x`` of a tanh MLP
   ``f: R^d_in -> R^d_out`` (widths ``d_in, jac_hidden, jac_hidden, d_out``, LeCun-normal
   weights), for a batch of ``jac_batch`` inputs (``jax.vmap`` over
   :func:`jaxla.autodiff.jacobian`), over a grid of input and output sizes. Forward mode costs
   one Jacobian-vector product per input entry, reverse mode one vector-Jacobian product per
   output entry: forward wins when inputs are few, reverse when outputs are few. Each mode is
   timed after compilation (best of ``timing_repeats`` calls); the mode that ``mode="auto"``
   picks is read from the traced program (it traces to the same program as one of the two) and
   marked.
2. **The dense Hessian of a loss.** A tanh MLP with widths ``(4, *hidden, 3)`` (a few hundred
   parameters) trained for ``train_steps`` full-batch Adam steps with :func:`jaxla.train.fit` on
   scikit-learn's iris data (standardized features, softmax cross-entropy): a point in mid
   training, where the Hessian still has clearly negative eigenvalues.
   :func:`jaxla.autodiff.hessian` with ``dense=True`` gives the ``(P, P)`` Hessian and the map
   from indices to parameter paths, drawn as a heatmap with the layer and leaf boundaries. Its
   exact eigenvalues (``numpy.linalg.eigh`` in float64, on the float32 Hessian and on the
   Hessian computed in float64) are compared with :func:`jaxla.curvature.hessian_eigs`
   (Lanczos, top and bottom ``eig_k``), with the stochastic Lanczos quadrature density of
   :func:`jaxla.curvature.hessian_density`, and the exact trace with
   :func:`jaxla.curvature.hessian_trace` (Hutch++) and the SLQ trace estimate, each with its
   standard error.
3. **Finite differences.** :func:`jaxla.autodiff.check_grad` compares the gradient and
   Hessian-vector products of the same loss with central differences at step sizes ``h`` from
   1e-1 to 1e-8, in float32 and float64: the error falls like ``h^2`` until round-off, about
   ``eps / h``, takes over (best ``h`` near ``eps^(1/3)``).
4. **Where the sharpest direction lives.** The squared norm of the top (and bottom) Hessian
   eigenvector in each layer, from Lanczos and from the exact eigenvector, next to each layer's
   share of the parameters.

Quick mode uses a 3 x 3 grid of sizes, 16 random directions for the finite differences and a
403-parameter model (under a minute on a 2-core CPU); full mode a 6 x 6 grid, every coordinate
direction and a 795-parameter model.

Run it alone with ``python -m experiments.jacobian_hessian [--quick | --full] [--out DIR]``.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments._config import merge_config
from experiments._plotting import figure
from jaxla import autodiff, curvature, train
from jaxla._checks import check_int, fail
from jaxla.nn import mlp, mlp_init

__all__ = [
    "FD_STEPS",
    "FULL",
    "NAME",
    "PARAMS_FILE",
    "QUICK",
    "TITLE",
    "init_params",
    "jacobian_timings",
    "layer_shares",
    "load_data",
    "loss_fn",
    "run",
]

NAME = "jacobian_hessian"
TITLE = "Jacobians and Hessians: forward vs reverse, dense spectra, finite differences"
_FN = f"experiments.{NAME}.run"

QUICK: dict[str, Any] = {
    "jac_sizes": [4, 32, 256],  # input and output sizes of the Jacobian grid
    "jac_hidden": 128,  # hidden width of the Jacobian MLP
    "jac_batch": 16,  # inputs per timed call (vmap)
    "timing_repeats": 7,  # timed calls per mode and cell (best is kept)
    "hidden": [16, 16],  # hidden widths of the iris MLP (4-16-16-3: 403 parameters)
    "train_steps": 20,  # full-batch Adam steps before the Hessian is taken
    "eig_k": 3,  # Lanczos eigenpairs at each end of the spectrum
    "density_probes": 16,  # SLQ probes
    "density_matvecs": 40,  # Lanczos steps per SLQ probe
    "trace_matvecs": 90,  # Hutch++ budget
    "fd_directions": 16,  # random directions of the finite-difference checks (0: all P)
}
"""Quick-mode configuration; any entry can be overridden through the ``config`` dict."""

FULL: dict[str, Any] = {
    **QUICK,
    "jac_sizes": [2, 8, 32, 128, 512, 1024],
    "timing_repeats": 15,
    "hidden": [24, 24],
    "eig_k": 5,
    "density_probes": 32,
    "density_matvecs": 80,
    "trace_matvecs": 300,
    "fd_directions": 0,
}
"""Full-mode configuration."""

FD_STEPS: tuple[float, ...] = tuple(float(h) for h in np.logspace(-1, -8, 15))
"""Finite-difference step sizes ``h`` (half-decades from 1e-1 to 1e-8)."""

PARAMS_FILE = "iris_mlp_params.npz"
"""The parameters at which the Hessian is taken, saved in the output directory."""

_INT_KEYS = ("jac_hidden", "jac_batch", "timing_repeats", "train_steps", "eig_k",
             "density_probes", "density_matvecs", "trace_matvecs")
_LEARNING_RATE = 0.02


# --------------------------------------------------------------------------------------------
# configuration, data, model


def _settings(config: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    mode, seed, cfg = merge_config(config, QUICK, FULL, _FN)
    for k in _INT_KEYS:
        cfg[k] = check_int(cfg[k], _FN, f"config['{k}']", min=1)
    cfg["fd_directions"] = check_int(cfg["fd_directions"], _FN, "config['fd_directions']", min=0)
    for k in ("jac_sizes", "hidden"):
        if not isinstance(cfg[k], list | tuple) or not cfg[k]:
            fail(_FN, f"`config['{k}']` must be a non-empty list of ints, got {cfg[k]!r}")
        cfg[k] = [check_int(v, _FN, f"config['{k}']", min=1) for v in cfg[k]]
    return mode, seed, cfg


def load_data() -> tuple[np.ndarray, np.ndarray]:
    """Iris: standardized features ``(150, 4)`` float32 and labels ``(150,)`` int32."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    x = np.asarray(iris.data, np.float64)
    x = (x - x.mean(axis=0, keepdims=True)) / x.std(axis=0, keepdims=True)
    return x.astype(np.float32), np.asarray(iris.target, np.int32)


def init_params(config: dict[str, Any]) -> dict[str, dict[str, jax.Array]]:
    """The untrained float32 iris MLP ``(4, *hidden, 3)``: :func:`jaxla.nn.mlp_init`, ``seed``."""
    _, seed, cfg = _settings(config)
    return mlp_init(jax.random.key(seed), [4, *cfg["hidden"], 3], dtype=jnp.float32)


def loss_fn(params: dict[str, dict[str, jax.Array]], batch: tuple[jax.Array, jax.Array]
            ) -> jax.Array:
    """Mean softmax cross-entropy of the tanh MLP on ``batch = (x, labels)``."""
    x, labels = batch
    logits = mlp(params, x, activation="tanh")
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def layer_shares(vec: np.ndarray, paths: tuple[str, ...], offsets: tuple[int, ...]
                 ) -> dict[str, float]:
    """Squared norm of a flat vector ``(P,)`` in each layer (the first part of each path)."""
    vec = np.asarray(vec, np.float64)
    out: dict[str, float] = {}
    for path, lo, hi in zip(paths, offsets[:-1], offsets[1:], strict=True):
        layer = path.split("/")[0]
        out[layer] = out.get(layer, 0.0) + float(np.sum(vec[lo:hi] ** 2))
    return out


def _time(f: Any, *args: Any, repeats: int) -> float:
    """Best wall time of ``repeats`` calls of ``f(*args)`` after one warm-up call, in seconds."""
    jax.block_until_ready(f(*args))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def _batched_jacobian(mode: str) -> Any:
    def jac(params: Any, xb: jax.Array) -> jax.Array:
        def one(x: jax.Array) -> jax.Array:
            return autodiff.jacobian(lambda z: mlp(params, z, activation="tanh"), x, mode=mode)

        return jax.vmap(one)(xb)

    return jax.jit(jac)


def jacobian_timings(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Time forward- and reverse-mode Jacobians over the grid of input and output sizes.

    Returns:
        One dict per ``(d_in, d_out)``: ``fwd_ms`` and ``rev_ms`` (best time per call),
        ``auto_mode`` (the mode ``mode="auto"`` traced to), ``faster`` and ``max_rel_diff``
        (``max |J_fwd - J_rev| / max |J_fwd|``).
    """
    _, seed, cfg = _settings(config)
    fns = {m: _batched_jacobian(m) for m in ("auto", "fwd", "rev")}
    cells = []
    for i, d_in in enumerate(cfg["jac_sizes"]):
        for j, d_out in enumerate(cfg["jac_sizes"]):
            # LeCun-normal weights drawn with numpy (cheaper than compiling an initializer for
            # every shape of the grid), zero biases: the mlp_init layout
            rng = np.random.default_rng([seed, i, j])
            widths = [d_in, cfg["jac_hidden"], cfg["jac_hidden"], d_out]
            params = {
                f"layers_{n}": {"w": jnp.asarray(rng.standard_normal((a, b)) / math.sqrt(a),
                                                 jnp.float32),
                                "b": jnp.zeros((b,), jnp.float32)}
                for n, (a, b) in enumerate(itertools.pairwise(widths))
            }
            xb = jnp.asarray(rng.standard_normal((cfg["jac_batch"], d_in)), jnp.float32)
            programs = {m: str(jax.make_jaxpr(f)(params, xb)) for m, f in fns.items()}
            auto = [m for m in ("fwd", "rev") if programs[m] == programs["auto"]]
            times = {m: 1e3 * _time(fns[m], params, xb, repeats=cfg["timing_repeats"])
                     for m in ("fwd", "rev")}
            j_fwd = np.asarray(fns["fwd"](params, xb), np.float64)
            j_rev = np.asarray(fns["rev"](params, xb), np.float64)
            cells.append({
                "d_in": d_in, "d_out": d_out,
                "fwd_ms": times["fwd"], "rev_ms": times["rev"],
                "faster": "fwd" if times["fwd"] < times["rev"] else "rev",
                "auto_mode": auto[0] if len(auto) == 1 else "unknown",
                "max_rel_diff": float(np.max(np.abs(j_fwd - j_rev)) / np.max(np.abs(j_fwd))),
            })
    return cells


def _flatten(params: Any) -> dict[str, np.ndarray]:
    return {f"{name}/{leaf}": np.asarray(v) for name, layer in params.items()
            for leaf, v in layer.items()}


def _slope(hs: np.ndarray, errs: np.ndarray, lo: float, hi: float) -> float:
    """Least-squares slope of log10(err) against log10(h) for lo <= h <= hi."""
    sel = (hs >= lo * (1 - 1e-9)) & (hs <= hi * (1 + 1e-9))
    return float(np.polyfit(np.log10(hs[sel]), np.log10(errs[sel]), 1)[0])


# --------------------------------------------------------------------------------------------
# run


def run(config: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Run the experiment; write five PNG figures and :data:`PARAMS_FILE` into ``out_dir``.

    Args:
        config: ``{"mode": "quick" | "full", "seed": int}``, plus optional overrides of any
            entry of :data:`QUICK` / :data:`FULL` (e.g. ``"jac_sizes"``, ``"hidden"``).
        out_dir: existing directory for the figures.

    Returns:
        ``{"summary", "metrics", "figures", "tables"}`` as described in :mod:`experiments`.
        :data:`PARAMS_FILE` holds the trained iris MLP as ``"layers_i/w"``, ``"layers_i/b"``.
    """
    from scipy.stats import wasserstein_distance

    out_dir = Path(out_dir)
    _, seed, cfg = _settings(config)
    key = jax.random.key(seed)

    # ---------------------------------------------------------------- 1. Jacobians
    cells = jacobian_timings(config)
    sizes = cfg["jac_sizes"]
    picked = [c["auto_mode"] == c["faster"] for c in cells]
    clear = [c for c in cells if max(c["fwd_ms"], c["rev_ms"]) >= 2 * min(c["fwd_ms"],
                                                                           c["rev_ms"])]
    n_clear_ok = sum(c["auto_mode"] == c["faster"] for c in clear)
    few_in = [c for c in cells if 8 * c["d_in"] <= c["d_out"]]
    few_out = [c for c in cells if 8 * c["d_out"] <= c["d_in"]]

    # ---------------------------------------------------------------- 2. the dense Hessian
    x_np, y_np = load_data()
    batch = (jnp.asarray(x_np), jnp.asarray(y_np))
    params0 = init_params(config)
    params, _ = train.fit(loss_fn, params0, batch, optax.adam(_LEARNING_RATE),
                          steps=cfg["train_steps"], log_every=cfg["train_steps"],
                          progress=False)
    np.savez(out_dir / PARAMS_FILE, **_flatten(params))
    loss0 = float(loss_fn(params0, batch))
    loss1 = float(loss_fn(params, batch))
    accuracy = float(np.mean(np.argmax(np.asarray(mlp(params, batch[0], activation="tanh")),
                                       axis=1) == y_np))

    def objective(p: Any) -> jax.Array:
        return loss_fn(p, batch)

    # jitted: one compiled program per call instead of op-by-op dispatch
    dense = jax.jit(lambda p: autodiff.hessian(objective, p, dense=True))(params)
    h32 = np.asarray(dense.matrix, np.float64)
    n_params = dense.size
    evals, evecs = np.linalg.eigh(h32)
    with jax.enable_x64(True):
        batch64 = (jnp.asarray(x_np, jnp.float64), jnp.asarray(y_np))
        params64 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), params)
        dense64 = jax.jit(lambda p: autodiff.hessian(lambda q: loss_fn(q, batch64), p,
                                                     dense=True))(params64)
        h64 = np.asarray(dense64.matrix, np.float64)
    evals64 = np.linalg.eigvalsh(h64)
    scale = float(np.max(np.abs(evals64)))
    trace_exact = float(np.sum(evals64))
    f32_eval_err = float(np.max(np.abs(evals - evals64)) / scale)
    f32_matrix_err = float(np.max(np.abs(h32 - h64)) / np.max(np.abs(h64)))

    k = cfg["eig_k"]
    eigs = jax.jit(lambda p: curvature.hessian_eigs(jax.random.fold_in(key, 1), loss_fn, p,
                                                    batch, k=k, which="both_ends"))(params)
    lanczos = np.asarray(eigs.eigenvalues, np.float64)
    exact_ends = np.concatenate([evals64[:k], evals64[-k:]])
    eig_abs_err = np.abs(lanczos - exact_ends)
    density = curvature.hessian_density(jax.random.fold_in(key, 2), loss_fn, params, batch,
                                        num_probes=cfg["density_probes"],
                                        num_matvecs=cfg["density_matvecs"], grid=400)
    nodes = np.asarray(density.nodes, np.float64)
    weights = np.asarray(density.weights, np.float64)
    per_probe = n_params * np.sum(weights * nodes, axis=1)
    slq_trace = float(np.mean(per_probe))
    slq_se = float(np.std(per_probe, ddof=1) / math.sqrt(len(per_probe))) if len(
        per_probe) > 1 else math.nan
    w1 = float(wasserstein_distance(nodes.ravel(), evals64, u_weights=weights.ravel()))
    hutch = jax.jit(lambda p: curvature.hessian_trace(jax.random.fold_in(key, 3), loss_fn, p,
                                                      batch, num_matvecs=cfg["trace_matvecs"])
                    )(params)
    hutch_est, hutch_se = float(hutch.estimate), float(hutch.std_error)

    # ---------------------------------------------------------------- 3. finite differences
    nd = cfg["fd_directions"]
    fd_key = jax.random.fold_in(key, 4)
    fd_kw = {} if nd == 0 else {"key": fd_key, "num_directions": nd}
    hs = np.asarray(FD_STEPS)

    def fd_errors(params_: Any, batch_: Any, dtype: Any) -> dict[int, np.ndarray]:
        out = {}
        for order in (1, 2):
            check = jax.jit(lambda p, h, order=order: autodiff.check_grad(
                lambda q: loss_fn(q, batch_), p, order=order, eps=h, **fd_kw))
            out[order] = np.asarray([float(check(params_, jnp.asarray(h, dtype)).max_rel_error)
                                     for h in hs])
        return out

    fd32 = fd_errors(params, batch, jnp.float32)
    with jax.enable_x64(True):
        fd64 = fd_errors(params64, batch64, jnp.float64)
    fd_cols = {"gradient float32": fd32[1], "HVP float32": fd32[2],
               "gradient float64": fd64[1], "HVP float64": fd64[2]}
    best = {name: (float(np.min(e)), float(hs[int(np.argmin(e))])) for name, e in fd_cols.items()}
    # in float64 the truncation error dominates from h = 1e-1 down to 1e-3 (round-off is
    # about eps / h < 1e-12 there), so the error must fall like h^2
    slopes = {
        "gradient float64": _slope(hs, fd64[1], 1e-3, 1e-1),
        "HVP float64": _slope(hs, fd64[2], 1e-3, 1e-1),
    }

    # ---------------------------------------------------------------- 4. layer shares
    def flat_vec(tree: Any, i: int) -> np.ndarray:
        return np.asarray(dense.ravel(jax.tree_util.tree_map(lambda v: v[i], tree)), np.float64)

    v_top = flat_vec(eigs.eigenvectors, -1)
    v_bottom = flat_vec(eigs.eigenvectors, 0)
    shares_top = layer_shares(v_top, dense.paths, dense.offsets)
    shares_top_exact = layer_shares(evecs[:, -1], dense.paths, dense.offsets)
    shares_bottom = layer_shares(v_bottom, dense.paths, dense.offsets)
    shares_bottom_exact = layer_shares(evecs[:, 0], dense.paths, dense.offsets)
    shares_params = layer_shares(np.ones(n_params) / math.sqrt(n_params), dense.paths,
                                 dense.offsets)
    layers = list(shares_top)
    top_layer = max(layers, key=lambda layer: shares_top[layer])
    share_diff = max(abs(shares_top[layer] - shares_top_exact[layer]) for layer in layers)
    top_cos = float(abs(v_top @ evecs[:, -1]))

    # ---------------------------------------------------------------- figures
    figures = []
    n_s = len(sizes)
    ratio = np.zeros((n_s, n_s))
    for c in cells:
        ratio[sizes.index(c["d_in"]), sizes.index(c["d_out"])] = c["fwd_ms"] / c["rev_ms"]
    with figure(out_dir, "jacobian_cost.png", ncols=3, size=(15.5, 4.6)) as (fig, axes):
        ax = axes[0, 0]
        lim = max(1.0, float(np.max(np.abs(np.log2(ratio)))))
        im = ax.imshow(np.log2(ratio), cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
        for c in cells:
            i, j = sizes.index(c["d_in"]), sizes.index(c["d_out"])
            ok = "" if c["auto_mode"] == c["faster"] else " (slower)"
            ax.text(j, i, f"auto: {c['auto_mode']}{ok}\n{c['fwd_ms']:.2g} / {c['rev_ms']:.2g} ms",
                    ha="center", va="center", fontsize=7)
        ax.set_xticks(range(n_s), [str(s) for s in sizes])
        ax.set_yticks(range(n_s), [str(s) for s in sizes])
        ax.set_xlabel("output size $d_{out}$")
        ax.set_ylabel("input size $d_{in}$")
        ax.set_title("log2(time fwd / time rev): blue = forward faster")
        fig.colorbar(im, ax=ax, shrink=0.8)
        for ax, fixed, vary, label in ((axes[0, 1], "d_out", "d_in", "input size $d_{in}$"),
                                       (axes[0, 2], "d_in", "d_out", "output size $d_{out}$")):
            sel = [c for c in cells if c[fixed] == sizes[-1]]
            ax.loglog([c[vary] for c in sel], [c["fwd_ms"] for c in sel], "o-", label="forward")
            ax.loglog([c[vary] for c in sel], [c["rev_ms"] for c in sel], "s-", label="reverse")
            ax.set_xlabel(label)
            ax.set_ylabel("time per call (ms)")
            other = "$d_{out}$" if fixed == "d_out" else "$d_{in}$"
            ax.set_title(f"{other} = {sizes[-1]}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
    figures.append({
        "file": "jacobian_cost.png",
        "caption": (
            f"Jacobian of a tanh MLP {{d_in}}-{cfg['jac_hidden']}-{cfg['jac_hidden']}-{{d_out}} "
            f"for {cfg['jac_batch']} inputs (vmap), forward vs reverse mode, best of "
            f"{cfg['timing_repeats']} calls after compilation. Forward mode wins when inputs "
            f"are few, reverse mode when outputs are few; mode='auto' picked the faster mode in "
            f"{sum(picked)} of {len(cells)} cells ({n_clear_ok} of the {len(clear)} cells where "
            f"one mode is at least twice as fast)."
        ),
    })

    with figure(out_dir, "hessian_matrix.png", size=(7.6, 6.6)) as (fig, axes):
        from matplotlib.colors import SymLogNorm

        ax = axes[0, 0]
        vmax = float(np.max(np.abs(h32)))
        im = ax.imshow(h32, cmap="RdBu_r", norm=SymLogNorm(1e-3 * vmax, vmin=-vmax, vmax=vmax),
                       interpolation="nearest")
        centers, labels = [], []
        for idx, (path, lo, hi) in enumerate(zip(dense.paths, dense.offsets[:-1],
                                                 dense.offsets[1:], strict=True)):
            new_layer = idx > 0 and path.split("/")[0] != dense.paths[idx - 1].split("/")[0]
            if idx > 0:
                lw, style = (1.2, "-") if new_layer else (0.6, ":")
                ax.axhline(lo - 0.5, color="k", lw=lw, ls=style)
                ax.axvline(lo - 0.5, color="k", lw=lw, ls=style)
            centers.append((lo + hi - 1) / 2)
            labels.append(path)
        ax.set_xticks(centers, labels, rotation=60, fontsize=7)
        ax.set_yticks(centers, labels, fontsize=7)
        ax.set_title(f"Hessian of the iris loss ({n_params} x {n_params}), symlog colours")
        ticks = [s * vmax * 10.0 ** -e for s in (-1, 1) for e in (0, 1, 2)] + [0.0]
        cbar = fig.colorbar(im, ax=ax, shrink=0.8, ticks=sorted(ticks))
        cbar.ax.set_yticklabels([f"{t:.1e}" if t else "0" for t in sorted(ticks)])
    figures.append({
        "file": "hessian_matrix.png",
        "caption": (
            f"jaxla.autodiff.hessian(..., dense=True) of the softmax cross-entropy of a "
            f"{'-'.join(map(str, [4, *cfg['hidden'], 3]))} tanh MLP on iris after "
            f"{cfg['train_steps']} Adam steps (loss {loss0:.3f} -> {loss1:.3f}, accuracy "
            f"{100 * accuracy:.0f}%). Solid lines separate layers, dotted lines the leaves "
            f"(paths and offsets from the returned index map). The float32 matrix agrees with "
            f"the float64 one to {f32_matrix_err:.1e} of its largest entry."
        ),
    })

    with figure(out_dir, "hessian_spectrum.png", ncols=2, size=(12.0, 4.6)) as (fig, axes):
        ax = axes[0, 0]
        idx = np.arange(n_params)
        ax.plot(idx, evals64, ".", ms=3, color="0.4", label="numpy eigvalsh (float64)")
        ax.plot(np.r_[idx[:k], idx[-k:]], lanczos, "o", mfc="none", color="C3", ms=8,
                label=f"hessian_eigs both_ends, k={k}")
        ax.set_yscale("symlog", linthresh=1e-4 * scale)
        ax.set_xlabel("eigenvalue index (ascending)")
        ax.set_ylabel("eigenvalue (symlog)")
        ax.set_title("All eigenvalues and the Lanczos ends")
        ax.grid(True, alpha=0.3)
        ax.legend()
        ax = axes[0, 1]
        grid = np.asarray(density.grid, np.float64)
        bins = np.linspace(grid[0], grid[-1], 80)
        ax.hist(evals64, bins=bins, density=True, color="0.75", label="exact eigenvalues")
        ax.plot(grid, np.asarray(density.density, np.float64), color="C0", lw=1.5,
                label=f"SLQ density ({cfg['density_probes']} probes x "
                      f"{cfg['density_matvecs']} steps)")
        for v in lanczos:
            ax.axvline(v, color="C3", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_ylim(bottom=1e-4)
        ax.set_xlabel("eigenvalue")
        ax.set_ylabel("density")
        ax.set_title("Spectral density (dashed: Lanczos ends)")
        ax.legend()
    figures.append({
        "file": "hessian_spectrum.png",
        "caption": (
            f"Left: the {n_params} exact eigenvalues with the {k} top and {k} bottom ones from "
            f"hessian_eigs (max error {np.max(eig_abs_err) / scale:.1e} of the largest, "
            f"{int(eigs.num_matvecs)} Hessian-vector products). Right: histogram of the exact "
            f"eigenvalues against the SLQ density of hessian_density (Wasserstein-1 distance "
            f"{w1:.2e}, {100 * w1 / (evals64[-1] - evals64[0]):.2f}% of the spectral range). "
            f"Trace {trace_exact:.4f}: Hutch++ {hutch_est:.4f} ± {hutch_se:.4f}, SLQ "
            f"{slq_trace:.4f} ± {slq_se:.4f}."
        ),
    })

    with figure(out_dir, "finite_differences.png", size=(7.5, 5.0)) as (_, axes):
        ax = axes[0, 0]
        styles = {"gradient float32": ("C0", "o-"), "HVP float32": ("C1", "s-"),
                  "gradient float64": ("C2", "o--"), "HVP float64": ("C3", "s--")}
        for name, errs in fd_cols.items():
            color, style = styles[name]
            ax.loglog(hs, errs, style, color=color, ms=4, label=name)
        ref = fd64[2][0] * (hs / hs[0]) ** 2
        ax.loglog(hs, ref, ":", color="k", lw=1, label="slope 2 ($h^2$)")
        for eps_, color in ((np.finfo(np.float32).eps, "C0"), (np.finfo(np.float64).eps, "C2")):
            ax.axvline(eps_ ** (1 / 3), color=color, lw=0.8, ls="-.")
        ax.set_ylim(1e-12, 1e1)
        ax.invert_xaxis()
        ax.set_xlabel("finite-difference step $h$")
        ax.set_ylabel("max relative error vs autodiff")
        ax.set_title("Central differences: $h^2$ truncation, then round-off")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    directions = f"{nd} random unit directions" if nd else f"all {n_params} coordinate directions"
    figures.append({
        "file": "finite_differences.png",
        "caption": (
            f"jaxla.autodiff.check_grad along {directions}: the error of central differences "
            f"falls like h^2 (fitted slopes {slopes['gradient float64']:.2f} and "
            f"{slopes['HVP float64']:.2f} in float64) until round-off takes over near "
            f"h = eps^(1/3) (dash-dotted lines). Best errors: float32 "
            f"{best['gradient float32'][0]:.1e} (gradient) / {best['HVP float32'][0]:.1e} (HVP), "
            f"float64 {best['gradient float64'][0]:.1e} / {best['HVP float64'][0]:.1e}."
        ),
    })

    with figure(out_dir, "eigenvector_layers.png", size=(7.5, 4.6)) as (_, axes):
        ax = axes[0, 0]
        xpos = np.arange(len(layers))
        bars = (("top (Lanczos)", shares_top, "C3", 0.0), ("top (exact)", shares_top_exact,
                                                         "C1", 0.2),
                ("bottom (Lanczos)", shares_bottom, "C0", 0.4),
                ("parameters", shares_params, "0.6", 0.6))
        for label, shares, color, off in bars:
            ax.bar(xpos - 0.3 + off, [shares[layer] for layer in layers], width=0.2,
                   color=color, label=label)
        ax.set_xticks(xpos, layers)
        ax.set_ylabel("share of the squared norm")
        ax.set_title("Where the extreme Hessian eigenvectors live")
        ax.legend()
        ax.grid(True, axis="y", alpha=0.3)
    figures.append({
        "file": "eigenvector_layers.png",
        "caption": (
            "Squared norm of the top and bottom Hessian eigenvectors in each layer (weights and "
            "bias together), next to each layer's share of the parameters. Lanczos and the exact "
            f"eigenvector agree to {share_diff:.1e} (|cos| = {top_cos:.6f}). The top eigenvector "
            f"puts {100 * shares_top[top_layer]:.0f}% of its squared norm in {top_layer}, which "
            f"holds {100 * shares_params[top_layer]:.0f}% of the parameters."
        ),
    })

    # ---------------------------------------------------------------- tables, metrics
    tables = [
        {
            "title": "Jacobian time per call, forward vs reverse mode (best of "
                     f"{cfg['timing_repeats']}, after compilation)",
            "columns": ["d_in", "d_out", "forward (ms)", "reverse (ms)", "faster", "auto picks",
                        "max |J_fwd - J_rev| / max |J|"],
            "rows": [[c["d_in"], c["d_out"], c["fwd_ms"], c["rev_ms"], c["faster"],
                      c["auto_mode"], c["max_rel_diff"]] for c in cells],
        },
        {
            "title": "Extreme Hessian eigenvalues: Lanczos (hessian_eigs) vs numpy (float64)",
            "columns": ["index", "numpy eigvalsh", "hessian_eigs", "abs error",
                        "residual norm"],
            "rows": [[int(i), float(e), float(v), float(err), float(r)] for i, e, v, err, r in
                     zip(np.r_[np.arange(k), np.arange(n_params - k, n_params)], exact_ends,
                         lanczos, eig_abs_err, np.asarray(eigs.residual_norms), strict=True)],
        },
        {
            "title": "Finite differences: max relative error vs autodiff",
            "columns": ["h", *fd_cols],
            "rows": [[float(h), *(float(e[i]) for e in fd_cols.values())]
                     for i, h in enumerate(hs)],
        },
        {
            "title": "Share of the squared norm of the extreme eigenvectors per layer",
            "columns": ["layer", "top (Lanczos)", "top (exact)", "bottom (Lanczos)",
                        "bottom (exact)", "parameters"],
            "rows": [[layer, shares_top[layer], shares_top_exact[layer], shares_bottom[layer],
                      shares_bottom_exact[layer], shares_params[layer]] for layer in layers],
        },
    ]
    metrics = {
        "jacobian_cells": len(cells),
        "auto_picked_faster": int(sum(picked)),
        "clear_cells": len(clear),
        "auto_picked_faster_in_clear_cells": int(n_clear_ok),
        "fwd_faster_when_inputs_few": [int(sum(c["faster"] == "fwd" for c in few_in)),
                                       len(few_in)],
        "rev_faster_when_outputs_few": [int(sum(c["faster"] == "rev" for c in few_out)),
                                        len(few_out)],
        "jacobian_fwd_rev_max_rel_diff": max(c["max_rel_diff"] for c in cells),
        "n_params": n_params,
        "hessian_paths": list(dense.paths),
        "hessian_offsets": list(dense.offsets),
        "train_loss_initial": loss0,
        "train_loss": loss1,
        "train_accuracy": accuracy,
        "hessian_float32_vs_float64_max_rel": f32_matrix_err,
        "eigvals_float32_vs_float64_max_err_rel": f32_eval_err,
        "eig_max": float(evals64[-1]),
        "eig_min": float(evals64[0]),
        "exact_top": [float(v) for v in evals64[-k:]],
        "exact_bottom": [float(v) for v in evals64[:k]],
        "lanczos_eigenvalues": [float(v) for v in lanczos],
        "lanczos_max_abs_err_rel": float(np.max(eig_abs_err) / scale),
        "lanczos_num_matvecs": int(eigs.num_matvecs),
        "lanczos_converged": bool(eigs.converged),
        "trace_exact": trace_exact,
        "trace_hutchpp": hutch_est,
        "trace_hutchpp_std_error": hutch_se,
        "trace_hutchpp_z": (hutch_est - trace_exact) / hutch_se if hutch_se > 0 else 0.0,
        "trace_slq": slq_trace,
        "trace_slq_std_error": slq_se,
        "trace_slq_z": (slq_trace - trace_exact) / slq_se if slq_se > 0 else 0.0,
        "slq_wasserstein": w1,
        "slq_wasserstein_rel_range": w1 / float(evals64[-1] - evals64[0]),
        "fd_directions": nd if nd else n_params,
        "fd_best": {name: {"error": e, "h": h} for name, (e, h) in best.items()},
        "fd_slopes": slopes,
        "top_eigvec_layer_shares": shares_top,
        "top_eigvec_layer_shares_exact": shares_top_exact,
        "top_eigvec_layer_share_max_diff": share_diff,
        "top_eigvec_abs_cosine": top_cos,
        "param_layer_shares": shares_params,
    }
    summary = (
        f"Jacobians of a tanh MLP: forward mode was faster in "
        f"{metrics['fwd_faster_when_inputs_few'][0]} of {len(few_in)} cells with 8x fewer "
        f"inputs than outputs, reverse mode in {metrics['rev_faster_when_outputs_few'][0]} of "
        f"{len(few_out)} with 8x fewer outputs, and mode='auto' picked the faster mode in "
        f"{sum(picked)} of {len(cells)} cells. The dense {n_params} x {n_params} Hessian of an "
        f"iris MLP has eigenvalues from {evals64[0]:.3g} to {evals64[-1]:.3g}; hessian_eigs "
        f"finds the {k} at each end to {metrics['lanczos_max_abs_err_rel']:.1e} of the largest "
        f"with {int(eigs.num_matvecs)} products, Hutch++ estimates the trace "
        f"{trace_exact:.4f} as {hutch_est:.4f} ± {hutch_se:.4f} and SLQ as {slq_trace:.4f} ± "
        f"{slq_se:.4f}. Central differences agree with autodiff to "
        f"{best['HVP float64'][0]:.0e} (float64) and {best['HVP float32'][0]:.0e} (float32) at "
        f"the best step, with error slope {slopes['HVP float64']:.2f} in h. The top eigenvector "
        f"puts {100 * shares_top[top_layer]:.0f}% of its squared norm in {top_layer} "
        f"({100 * shares_params[top_layer]:.0f}% of the parameters)."
    )
    return {"summary": summary, "metrics": metrics, "figures": figures, "tables": tables}


if __name__ == "__main__":
    from experiments.runner import experiment_main

    raise SystemExit(experiment_main(sys.modules[__name__]))
