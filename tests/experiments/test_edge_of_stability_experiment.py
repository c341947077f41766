"""The edge_of_stability experiment, checked against independent computations.

By default a reduced configuration (100 digits, a 64-16-16-10 MLP, two step sizes, 1500 steps)
runs once per module through the experiment's command-line entry point; the quick mode itself
(about a minute) runs under ``pytest -m slow``. The sharpness is checked against the top
eigenvalue of the dense float64 Hessian (``jax.hessian`` of the loss written on a flat parameter
vector, ``numpy.linalg.eigvalsh``) at the initial and at the saved final parameters, the losses
against a numpy forward pass, and the acceptance statistics are recomputed from the saved series.
"""

from __future__ import annotations

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")
pytest.importorskip("optax")

from experiments import edge_of_stability as eos
from experiments import runner
from tests.experiments.helpers import assert_finite, help_text

threadpool_limits = pytest.importorskip("threadpoolctl").threadpool_limits  # with sklearn

REDUCED = {"n_examples": 100, "hidden": [16, 16], "etas": [0.28, 0.25], "steps": 1500}
FIGURES = ["sharpness_and_loss.png", "edge_deviation_and_loss_zoom.png"]


# Each test module runs its experiment in quick mode (about a minute on 2 cores): CI runs
# them in its second step, with the other slow tests.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    """The reduced configuration through ``python -m experiments.edge_of_stability``'s entry
    point (quick mode with :data:`REDUCED` patched into the quick settings), in process."""
    out = tmp_path_factory.mktemp("edge_of_stability")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in REDUCED.items():
            mp.setitem(eos.QUICK, k, v)
        code = runner.experiment_main(eos, ["--quick", "--seed", "0", "--out", str(out)])
    (results_path,) = out.glob(f"*/{runner.RESULTS_FILE}")
    record = json.loads(results_path.read_text())["experiments"][eos.NAME]
    assert code == 0 and record["status"] == "ok", record["error"]
    config = {"mode": "quick", "seed": 0, **REDUCED}
    return record["result"], results_path.parent / eos.NAME, config


@functools.lru_cache
def _hessian_fn(names, shapes):
    """Jitted float64 Hessian of the loss as a function of the flat parameters ``z`` (leaves
    in sorted-path order, the order of ``jax.tree_util.tree_leaves``), written independently of
    jaxla; one compilation per parameter layout."""
    n_layers = len({k.split("/")[0] for k in names})

    def loss(z, x, y):
        leaves, i = {}, 0
        for k, s in zip(names, shapes, strict=True):
            leaves[k] = z[i:i + math.prod(s)].reshape(s)
            i += math.prod(s)
        h = x
        for n in range(n_layers):
            h = h @ leaves[f"layers_{n}/w"] + leaves[f"layers_{n}/b"][None, :]
            if n < n_layers - 1:
                h = jnp.tanh(h)
        return 0.5 * jnp.mean(jnp.sum((h - y) ** 2, axis=1))

    return jax.jit(jax.hessian(loss))


def _numpy_mse(params, x, y):
    h = np.asarray(x, np.float64)
    n_layers = len({k.split("/")[0] for k in params})
    for n in range(n_layers):
        h = h @ params[f"layers_{n}/w"].astype(np.float64) + params[f"layers_{n}/b"]
        if n < n_layers - 1:
            h = np.tanh(h)
    return 0.5 * float(np.mean(np.sum((h - y) ** 2, axis=1)))


def _top_eigenvalue(params, x, y):
    names = tuple(sorted(params))
    flat = np.concatenate([np.asarray(params[k], np.float64).ravel() for k in names])
    hess = _hessian_fn(names, tuple(params[k].shape for k in names))(
        jnp.asarray(flat), jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64))
    # one BLAS thread: a multi-threaded LAPACK call can be many times slower on a busy machine
    with threadpool_limits(1):
        return float(np.linalg.eigvalsh(np.asarray(hess, np.float64))[-1])


def _gd(params, x, y, eta, steps):
    """``steps`` plain gradient-descent updates of the squared loss, in float32, as flat
    ``{"layers_j/w": ...}`` numpy leaves."""
    def loss(p):
        h = jnp.asarray(x)
        for n in range(len(p)):
            h = h @ p[f"layers_{n}"]["w"] + p[f"layers_{n}"]["b"][None, :]
            if n < len(p) - 1:
                h = jnp.tanh(h)
        return 0.5 * jnp.mean(jnp.sum((h - jnp.asarray(y)) ** 2, axis=1))

    grad = jax.jit(jax.grad(loss))
    for _ in range(steps):
        params = jax.tree.map(lambda w, g: w - eta * g, params, grad(params))
    return {f"{layer}/{leaf}": np.asarray(v) for layer, d in params.items()
            for leaf, v in d.items()}


def _saved_params(saved, prefix):
    n = len(prefix) + 1
    return {k[n:]: saved[k] for k in saved.files if k.startswith(prefix + "/layers_")}


def check_run(result, out_dir, config):
    """Everything a finished run must satisfy; returns the metrics."""
    assert set(result) == {"summary", "metrics", "figures", "tables"}
    json.dumps(result, allow_nan=False)
    assert [f["file"] for f in result["figures"]] == FIGURES
    for fig in result["figures"]:
        assert fig["caption"]
        assert (out_dir / fig["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = result["metrics"]
    assert_finite(m)
    cfg = {**(eos.QUICK if config["mode"] == "quick" else eos.FULL),
           **{k: v for k, v in config.items() if k not in ("mode", "seed")}}
    etas, steps, every = cfg["etas"], cfg["steps"], cfg["every"]
    assert m["etas"] == etas and m["steps"] == steps and len(m["eos"]) == len(etas)
    x, y = eos.load_data(config)
    saved = np.load(out_dir / eos.NPZ_FILE)
    np.testing.assert_array_equal(saved["etas"], etas)

    # the initial sharpness against the dense float64 Hessian at the initial parameters
    init = _saved_params(saved, "init")
    params0 = eos.init_params(config)
    for k, v in init.items():  # the saved initial parameters are init_params(config)
        layer, leaf = k.split("/")
        np.testing.assert_array_equal(v, np.asarray(params0[layer][leaf]))
    s0 = _top_eigenvalue(init, x, y)
    np.testing.assert_allclose(m["initial_sharpness"], s0, rtol=1e-3)
    np.testing.assert_allclose(m["max_stable_lr_initial"], 2.0 / m["initial_sharpness"])
    assert m["n_params"] == sum(v.size for v in init.values())
    loss0 = _numpy_mse(init, x, y)

    for i, (eta, r) in enumerate(zip(etas, m["eos"], strict=True)):
        assert r["eta"] == eta
        np.testing.assert_allclose(r["two_over_eta"], 2.0 / eta, rtol=1e-15)
        assert r["above_initial"] == (2.0 / eta > s0)
        loss = saved[f"{i}/loss"]
        sharp = saved[f"{i}/sharpness"]
        s_steps = saved[f"{i}/sharpness_step"]
        assert loss.shape == (steps + 1,) and np.all(np.isfinite(loss))
        # every series starts with the initial sharpness (step 0), then every `every` steps
        np.testing.assert_array_equal(s_steps, np.arange(0, steps + 1, every))
        assert sharp[0] == m["initial_sharpness"]
        if i == 0:  # the sharpness after the first `every` updates, against the dense
            # Hessian after plain gradient descent written here (for one step size)
            after = _top_eigenvalue(_gd(params0, x, y, eta, every), x, y)
            np.testing.assert_allclose(sharp[1], after, rtol=1e-3)
        low = int(np.argmin(sharp[:len(sharp) // 2]))
        assert r["min_sharpness"] == sharp[low] and r["min_sharpness_step"] == s_steps[low]
        # losses at the initial and final parameters against a numpy forward pass
        final = _saved_params(saved, str(i))
        np.testing.assert_allclose(loss[0], loss0, rtol=1e-5)
        np.testing.assert_allclose(r["initial_loss"], loss0, rtol=1e-5)
        np.testing.assert_allclose(r["final_loss"], _numpy_mse(final, x, y), rtol=1e-4)
        np.testing.assert_allclose(loss[-1], r["final_loss"], rtol=1e-12)
        # the last logged sharpness (after `steps` updates) against the dense Hessian there
        assert s_steps[-1] == steps
        np.testing.assert_allclose(sharp[-1], _top_eigenvalue(final, x, y), rtol=1e-3)
        np.testing.assert_allclose(r["final_sharpness"], sharp[-1], rtol=1e-12)
        # the acceptance statistics, recomputed from the series
        rel = sharp / (2.0 / eta) - 1.0
        inside = np.flatnonzero(np.abs(rel) <= eos.TOLERANCE)
        crossed = np.flatnonzero(rel >= 0)
        assert r["reach_step"] == (int(s_steps[inside[0]]) if len(inside) else None)
        assert r["cross_step"] == (int(s_steps[crossed[0]]) if len(crossed) else None)
        if len(inside):
            after = np.abs(rel[inside[0]:])
            np.testing.assert_allclose(r["max_rel_dev_after_reach"], after.max(), rtol=1e-12)
            assert r["stays_within"] == bool(after.max() <= eos.TOLERANCE)
        assert r["eos"] == (r["stays_within"] and r["cross_step"] is not None)
        if r["cross_step"] is not None:
            c = r["cross_step"]
            rises = np.diff(loss) > 0
            np.testing.assert_allclose(r["loss_rise_fraction_after_cross"], rises[c:].mean())
            np.testing.assert_allclose(r["loss_rise_fraction_before_cross"], rises[:c].mean())
    above = [r for r in m["eos"] if r["above_initial"]]
    assert m["n_above_initial"] == len(above)
    assert m["n_eos_above_initial"] == sum(r["eos"] for r in above)
    assert m["eos_accepted"] == (m["n_eos_above_initial"] >= 2)
    (table,) = result["tables"]
    assert len(table["rows"]) == len(etas)
    return m


def check_edge_of_stability(m):
    """The phenomenon: for every step size above the initial sharpness, the sharpness rises into
    the band, reaches 2/eta and stays within 10% of it; gradient descent's loss decreases
    monotonically before that point, non-monotonically (but still falls) after it."""
    assert m["eos_accepted"] is True
    for r in m["eos"]:
        assert r["above_initial"] and r["eos"] is True
        assert r["initial_sharpness"] < (1 - eos.TOLERANCE) * r["two_over_eta"]  # it rises
        assert r["max_rel_dev_after_reach"] <= eos.TOLERANCE
        assert r["reach_step"] <= r["cross_step"]
        assert r["loss_rise_fraction_before_cross"] < 0.01
        assert r["loss_rise_fraction_after_cross"] > 0.01
        assert r["final_loss"] < r["loss_at_cross"] < r["initial_loss"]


def test_reduced_run(reduced):
    result, out_dir, config = reduced
    m = check_run(result, out_dir, config)
    check_edge_of_stability(m)
    assert m["n_eos_above_initial"] == 2 and m["n_params"] == 1482


@pytest.mark.slow
def test_quick_mode(tmp_path):
    config = {"mode": "quick", "seed": 0}
    result = eos.run(dict(config), tmp_path)
    m = check_run(result, tmp_path, config)
    check_edge_of_stability(m)
    assert m["n_eos_above_initial"] == len(eos.QUICK["etas"]) == 3
    # the sharpness first falls, well below its initial value, before it rises
    for r in m["eos"]:
        assert r["min_sharpness"] < 0.9 * r["initial_sharpness"]
        assert 0 < r["min_sharpness_step"] < r["reach_step"]


def test_module_constants_and_data():
    assert eos.NAME == "edge_of_stability" and isinstance(eos.TITLE, str) and eos.TITLE
    config = {"mode": "quick", "seed": 0, "n_examples": 50}
    x, y = eos.load_data(config)
    assert x.shape == (50, 64) and y.shape == (50, 10)
    assert x.dtype == np.float32 and y.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(y.sum(axis=1), 0.0, atol=1e-6)  # centered one-hot rows
    assert np.all(x.max(axis=0) - x.min(axis=0) <= 1.0 + 1e-6)  # pixels / 16
    # pixels / 16, centered: differences of rows times 16 are integer pixel differences
    diffs = (x - x[:1]) * 16.0
    np.testing.assert_allclose(diffs, np.round(diffs), atol=1e-4)
    assert np.abs(diffs).max() <= 16 + 1e-4
    # targets: one-hot labels minus their mean, so the label is the argmax of a row
    labels = np.argmax(y, axis=1)
    onehot = np.eye(10)[labels]
    np.testing.assert_allclose(y, onehot - onehot.mean(axis=0, keepdims=True), atol=1e-6)
    x2, _ = eos.load_data({"mode": "quick", "seed": 1, "n_examples": 50})
    assert not np.array_equal(x, x2)
    np.testing.assert_array_equal(x, eos.load_data(dict(config))[0])
    params = eos.init_params({"mode": "quick", "seed": 0})
    assert {k: v["w"].shape for k, v in params.items()} == {
        "layers_0": (64, 32), "layers_1": (32, 32), "layers_2": (32, 10)}
    assert all(v["w"].dtype == jnp.float32 for v in params.values())


def test_edge_statistics():
    eta = 0.25  # 2 / eta = 8
    steps = np.array([5, 10, 15, 20, 25, 30])
    stats = eos.edge_statistics(steps, 8.0 * np.array([0.5, 0.95, 1.05, 0.98, 1.02, 1.0]), eta)
    assert stats["reach_step"] == 10 and stats["cross_step"] == 15
    assert stats["steps_at_edge"] == 15 and stats["stays_within"] is True
    assert stats["max_rel_dev_after_reach"] == pytest.approx(0.05)
    assert stats["max_overshoot_after_reach"] == pytest.approx(0.05)
    assert stats["final_half_mean_rel_dev"] == pytest.approx(0.0)
    # leaves the band after reaching it
    stats = eos.edge_statistics(steps, 8.0 * np.array([0.5, 0.95, 1.2, 0.98, 1.02, 1.0]), eta)
    assert stats["reach_step"] == 10 and stats["stays_within"] is False
    assert stats["max_rel_dev_after_reach"] == pytest.approx(0.2)
    # never gets there
    stats = eos.edge_statistics(steps, 8.0 * np.linspace(0.3, 0.8, 6), eta)
    assert stats["reach_step"] is None and stats["cross_step"] is None
    assert stats["stays_within"] is False and stats["steps_at_edge"] == 0


def test_bad_config(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"^experiments.edge_of_stability.run: `config\['mode'\]` must be one of 'quick', "
              r"'full', got 'fast'$",
    ):
        eos.run({"mode": "fast", "seed": 0}, tmp_path)
    with pytest.raises(
        ValueError, match=r"^experiments.edge_of_stability.run: `config` has an unknown entry "
                          r"'eta'; known: "
    ):
        eos.run({"mode": "quick", "seed": 0, "eta": 0.1}, tmp_path)
    with pytest.raises(
        ValueError, match=r"^experiments.edge_of_stability.run: `config\['etas'\]` must be > 0 "
                          r"and finite, got -0.1$"
    ):
        eos.run({"mode": "quick", "seed": 0, "etas": [0.2, -0.1]}, tmp_path)
    with pytest.raises(
        ValueError, match=r"^experiments.edge_of_stability.run: `config\['every'\]`=20 exceeds "
                          r"config\['steps'\]=10$"
    ):
        eos.run({"mode": "quick", "seed": 0, "every": 20, "steps": 10}, tmp_path)
    with pytest.raises(
        ValueError, match=r"^experiments.edge_of_stability.run: `config\['n_examples'\]`=2000 "
                          r"exceeds the number of digits=1797$"
    ):
        eos.run({"mode": "quick", "seed": 0, "n_examples": 2000}, tmp_path)
    with pytest.raises(TypeError, match=r"`config\['seed'\]` must be an int, got '0' \(str\)"):
        eos.run({"mode": "quick", "seed": "0"}, tmp_path)


def test_command_line_help():
    text = help_text("experiments.edge_of_stability")
    assert "python -m experiments.edge_of_stability" in text
    assert "--quick" in text and "--full" in text
