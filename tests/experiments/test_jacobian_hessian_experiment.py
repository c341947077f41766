"""The jacobian_hessian experiment in quick mode, run through its command line once per module.

The Hessian numbers are checked against an independent float64 computation (``jax.hessian`` of
the loss written in numpy style on a flat parameter vector, ``numpy.linalg.eigh``) at the
parameters the run saved.
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from experiments import jacobian_hessian as jh
from experiments import runner
from tests.experiments.helpers import assert_finite, help_text

threadpool_limits = pytest.importorskip("threadpoolctl").threadpool_limits  # with sklearn

CONFIG = {"mode": "quick", "seed": 0}
FIGURES = ["jacobian_cost.png", "hessian_matrix.png", "hessian_spectrum.png",
           "finite_differences.png", "eigenvector_layers.png"]


# Each test module runs its experiment in quick mode (about a minute on 2 cores): CI runs
# them in its second step, with the other slow tests.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Quick mode through ``python -m experiments.jacobian_hessian``'s entry point, in process."""
    out = tmp_path_factory.mktemp("jacobian_hessian")
    code = runner.experiment_main(jh, ["--quick", "--seed", "0", "--out", str(out)])
    (results_path,) = out.glob(f"*/{runner.RESULTS_FILE}")
    record = json.loads(results_path.read_text())["experiments"][jh.NAME]
    assert code == 0 and record["status"] == "ok", record["error"]
    assert record["config"] == CONFIG
    return record["result"], results_path.parent / jh.NAME


def table(result, title_start):
    (t,) = [t for t in result["tables"] if t["title"].startswith(title_start)]
    return [dict(zip(t["columns"], row, strict=True)) for row in t["rows"]]


@pytest.fixture(scope="module")
def reference(run):
    """Flat float64 parameters, the leaf layout, and the float64 Hessian of the loss there."""
    _, out_dir = run
    saved = np.load(out_dir / jh.PARAMS_FILE)
    names = sorted(saved.files)  # "layers_0/b", "layers_0/w", ...: the order of tree_leaves
    shapes = [saved[k].shape for k in names]
    flat = np.concatenate([saved[k].astype(np.float64).ravel() for k in names])
    x, y = jh.load_data()
    x = x.astype(np.float64)
    n_layers = len({k.split("/")[0] for k in names})

    def loss(z):
        leaves, i = {}, 0
        for k, s in zip(names, shapes, strict=True):
            size = math.prod(s)
            leaves[k] = z[i:i + size].reshape(s)
            i += size
        h = jnp.asarray(x)
        for n in range(n_layers):
            h = h @ leaves[f"layers_{n}/w"] + leaves[f"layers_{n}/b"][None, :]
            if n < n_layers - 1:
                h = jnp.tanh(h)
        logp = h - jax.scipy.special.logsumexp(h, axis=1, keepdims=True)
        return -jnp.mean(logp[np.arange(len(y)), y])

    hess = np.asarray(jax.jit(jax.hessian(loss))(jnp.asarray(flat)), np.float64)
    return {"names": names, "shapes": shapes, "flat": flat, "loss": loss, "hessian": hess}


def test_module_constants_and_data():
    assert jh.NAME == "jacobian_hessian" and isinstance(jh.TITLE, str) and jh.TITLE
    x, y = jh.load_data()
    assert x.shape == (150, 4) and x.dtype == np.float32 and y.shape == (150,)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(x.std(axis=0), 1.0, rtol=1e-5)
    assert sorted(set(y.tolist())) == [0, 1, 2]
    params = jh.init_params(CONFIG)
    assert {k: v["w"].shape for k, v in params.items()} == {
        "layers_0": (4, 16), "layers_1": (16, 16), "layers_2": (16, 3)}


def test_result_structure_and_figures(run):
    result, out_dir = run
    assert set(result) == {"summary", "metrics", "figures", "tables"}
    json.dumps(result, allow_nan=False)
    assert [f["file"] for f in result["figures"]] == FIGURES
    for fig in result["figures"]:
        assert fig["caption"]
        assert (out_dir / fig["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out_dir.parent / runner.REPORT_FILE).is_file()
    assert len(result["summary"]) > 100
    assert_finite(result["metrics"])
    for t in result["tables"]:
        assert_finite(t["rows"], t["title"])


def test_jacobian_grid(run):
    result, _ = run
    m = result["metrics"]
    rows = table(result, "Jacobian time")
    sizes = jh.QUICK["jac_sizes"]
    assert [(r["d_in"], r["d_out"]) for r in rows] == [(a, b) for a in sizes for b in sizes]
    for r in rows:
        # auto: forward mode exactly when the input has fewer entries than the output
        assert r["auto picks"] == ("fwd" if r["d_in"] < r["d_out"] else "rev")
        assert r["forward (ms)"] > 0 and r["reverse (ms)"] > 0
        assert r["faster"] == ("fwd" if r["forward (ms)"] < r["reverse (ms)"] else "rev")
        assert r["max |J_fwd - J_rev| / max |J|"] < 1e-5
    assert m["jacobian_cells"] == len(rows)
    assert m["auto_picked_faster"] == sum(r["auto picks"] == r["faster"] for r in rows)
    few_in = [r for r in rows if 8 * r["d_in"] <= r["d_out"]]
    few_out = [r for r in rows if 8 * r["d_out"] <= r["d_in"]]
    assert m["fwd_faster_when_inputs_few"] == [sum(r["faster"] == "fwd" for r in few_in),
                                                len(few_in)]
    assert m["rev_faster_when_outputs_few"] == [sum(r["faster"] == "rev" for r in few_out),
                                                 len(few_out)]


def test_path_map_and_loss(run, reference):
    m = run[0]["metrics"]
    sizes = [math.prod(s) for s in reference["shapes"]]
    assert m["hessian_paths"] == reference["names"]
    assert m["hessian_offsets"] == [0, *np.cumsum(sizes).tolist()]
    assert m["n_params"] == sum(sizes) == 403
    np.testing.assert_allclose(m["train_loss"], float(reference["loss"](reference["flat"])),
                               rtol=1e-5)
    assert m["train_loss"] < m["train_loss_initial"]


def test_eigenvalues_and_traces_against_numpy(run, reference):
    result, _ = run
    m = result["metrics"]
    with threadpool_limits(1):  # one BLAS thread: much faster than two on a busy machine
        evals = np.linalg.eigvalsh(reference["hessian"])
    scale = np.max(np.abs(evals))
    k = jh.QUICK["eig_k"]
    np.testing.assert_allclose(m["exact_top"], evals[-k:], rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(m["exact_bottom"], evals[:k], rtol=1e-9, atol=1e-12 * scale)
    assert evals[0] < -0.01 * scale  # mid training: clearly negative curvature
    # the float32 Hessian's eigenvalues are float32-accurate
    assert m["eigvals_float32_vs_float64_max_err_rel"] < 1e-5
    # Lanczos: within the residual tolerance tol * ||H|| = 1e-3 * ||H|| of the exact ends
    lanczos = np.asarray(m["lanczos_eigenvalues"])
    ends = np.r_[evals[:k], evals[-k:]]
    assert np.all(np.abs(lanczos - ends) <= 1e-3 * scale)
    np.testing.assert_allclose(lanczos[-1], evals[-1], rtol=1e-5)
    np.testing.assert_allclose(m["lanczos_max_abs_err_rel"],
                               np.max(np.abs(lanczos - ends)) / scale, rtol=1e-6, atol=1e-9)
    assert m["lanczos_converged"] is True
    rows = table(result, "Extreme Hessian")
    assert [r["index"] for r in rows] == [0, 1, 2, 400, 401, 402]
    for r in rows:
        assert r["abs error"] <= r["residual norm"] + 1e-6 * scale  # Ritz value error bound
    # traces: the exact one, and the estimates within 4 of their standard errors
    trace = float(np.trace(reference["hessian"]))
    np.testing.assert_allclose(m["trace_exact"], trace, rtol=1e-9)
    for name in ("hutchpp", "slq"):
        est, se = m[f"trace_{name}"], m[f"trace_{name}_std_error"]
        assert se > 0 and abs(est - trace) <= 4 * se, (name, est, se, trace)
        np.testing.assert_allclose(m[f"trace_{name}_z"], (est - trace) / se, rtol=1e-6)
    # the SLQ measure is close to the exact spectrum
    assert m["slq_wasserstein_rel_range"] < 0.02


def test_finite_differences(run):
    result, _ = run
    m = result["metrics"]
    rows = table(result, "Finite differences")
    hs = np.asarray([r["h"] for r in rows])
    np.testing.assert_allclose(hs, np.logspace(-1, -8, 15))
    for name in ("gradient float64", "HVP float64"):
        errs = np.asarray([r[name] for r in rows])
        sel = hs >= 1e-3 * (1 - 1e-9)
        slope = np.polyfit(np.log10(hs[sel]), np.log10(errs[sel]), 1)[0]
        assert abs(slope - 2) < 0.05  # truncation error ~ h^2
        np.testing.assert_allclose(m["fd_slopes"][name], slope, rtol=1e-9)
        assert errs.min() < 1e-8 and errs[-1] > 10 * errs.min()  # then round-off grows
    for name in ("gradient float32", "HVP float32"):
        errs = np.asarray([r[name] for r in rows])
        assert errs.min() < 1e-3 and errs[-1] > 100 * errs.min()
        # the best step of float32 is far larger than that of float64
        assert m["fd_best"][name]["h"] > 10 * m["fd_best"][name.replace("32", "64")]["h"]
    for name, best in m["fd_best"].items():
        errs = np.asarray([r[name] for r in rows])
        assert best == {"error": float(errs.min()), "h": float(hs[np.argmin(errs)])}
    assert m["fd_directions"] == jh.QUICK["fd_directions"]


def test_eigenvector_layer_shares(run, reference):
    result, _ = run
    m = result["metrics"]
    with threadpool_limits(1):
        _, vecs = np.linalg.eigh(reference["hessian"])
    top = vecs[:, -1]
    sizes = [math.prod(s) for s in reference["shapes"]]
    bounds = np.r_[0, np.cumsum(sizes)]
    expected = {}
    for name, lo, hi in zip(reference["names"], bounds[:-1], bounds[1:], strict=True):
        layer = name.split("/")[0]
        expected[layer] = expected.get(layer, 0.0) + float(np.sum(top[lo:hi] ** 2))
    assert set(m["top_eigvec_layer_shares"]) == set(expected) == {"layers_0", "layers_1",
                                                                  "layers_2"}
    for layer, share in expected.items():
        assert abs(m["top_eigvec_layer_shares_exact"][layer] - share) < 1e-5
        assert abs(m["top_eigvec_layer_shares"][layer] - share) < 1e-3
    np.testing.assert_allclose(sum(m["top_eigvec_layer_shares"].values()), 1.0, atol=1e-5)
    assert m["top_eigvec_abs_cosine"] > 0.999
    n_params = sum(sizes)
    assert m["param_layer_shares"] == pytest.approx(
        {"layers_0": 80 / n_params, "layers_1": 272 / n_params, "layers_2": 51 / n_params})


def test_layer_shares_helper():
    shares = jh.layer_shares(np.array([1.0, 2.0, 0.0, 2.0]), ("a/b", "a/w", "c/w"), (0, 1, 2, 4))
    assert shares == {"a": 5.0, "c": 4.0}


def test_bad_config(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"^experiments.jacobian_hessian.run: `config\['mode'\]` must be one of 'quick', "
              r"'full', got 'fast'$",
    ):
        jh.run({"mode": "fast", "seed": 0}, tmp_path)
    with pytest.raises(
        ValueError, match=r"^experiments.jacobian_hessian.run: `config` has an unknown entry "
                          r"'hiden'; known: "
    ):
        jh.run({"mode": "quick", "seed": 0, "hiden": [3]}, tmp_path)
    with pytest.raises(
        ValueError, match=r"^experiments.jacobian_hessian.run: `config\['jac_sizes'\]` must be "
                          r">= 1, got 0$"
    ):
        jh.run({"mode": "quick", "seed": 0, "jac_sizes": [0, 4]}, tmp_path)
    with pytest.raises(TypeError, match=r"`config\['seed'\]` must be an int, got '0' \(str\)"):
        jh.run({"mode": "quick", "seed": "0"}, tmp_path)


def test_command_line_help():
    text = help_text("experiments.jacobian_hessian")
    assert "python -m experiments.jacobian_hessian" in text
    assert "--quick" in text and "--full" in text
