"""The regression and regularization experiment in quick mode, checked against numpy/scikit-learn.

The experiment runs once (module-scoped fixture); every test recomputes what it checks
independently: condition numbers and least-squares solutions with numpy, gradient descent with a
plain numpy loop, the L1/L2 logistic fits with scikit-learn, the digits split with scikit-learn.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")
pytest.importorskip("optax")

from experiments import regression_and_regularization as rr
from tests.experiments.helpers import ROOT, help_text, record_from_command_line

CONFIG = {"mode": "quick", "seed": 0}
EPS64 = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)
PNG = b"\x89PNG\r\n\x1a\n"


# Each test module runs its experiment in quick mode (about a minute on 2 cores): CI runs
# them in its second step, with the other slow tests.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("regression_and_regularization")
    return rr.run(dict(CONFIG), out_dir), out_dir


@pytest.fixture(scope="module")
def designs(result):
    """The designs of the error sweep as the run built them, float64."""
    m = result[0]["metrics"]
    n, d = m["lstsq_shape"]
    return [rr.design(c, n=n, d=d, seed=CONFIG["seed"]) for c in m["cond_target"]]


def _sklearn_logistic(penalty, c, x, y):
    import sklearn
    from sklearn.linear_model import LogisticRegression

    kw = {"C": c, "tol": 1e-12, "max_iter": 100_000}
    if penalty == "l1":
        kw["solver"] = "saga"
        major, minor = (int(v) for v in sklearn.__version__.split(".")[:2])
        if (major, minor) >= (1, 8):
            kw["l1_ratio"] = 1.0
        else:
            kw["penalty"] = "l1"
    return LogisticRegression(**kw).fit(x, y)


def _rel(a, ref):
    return np.linalg.norm(np.asarray(a, np.float64) - ref) / np.linalg.norm(ref)


# ------------------------------------------------------------------------------------------------
# Module, configuration, helpers


def test_module_constants():
    assert rr.NAME == "regression_and_regularization" == rr.__name__.rsplit(".", 1)[1]
    assert isinstance(rr.TITLE, str) and rr.TITLE
    assert rr.METHODS == ("cholesky", "qr", "svd", "gd")
    assert set(rr.QUICK) == set(rr.FULL)


def test_bad_config(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"^experiments.regression_and_regularization.run: `config\['mode'\]` must be one "
              r"of 'quick', 'full', got 'fast'$",
    ):
        rr.run({"mode": "fast", "seed": 0}, tmp_path)
    with pytest.raises(
        TypeError,
        match=r"^experiments.regression_and_regularization.run: `config\['seed'\]` must be an "
              r"int, got '0' \(str\)$",
    ):
        rr.run({"mode": "quick", "seed": "0"}, tmp_path)
    with pytest.raises(ValueError, match=r"`config\['seed'\]` must be >= 0, got -1$"):
        rr.run({"mode": "quick", "seed": -1}, tmp_path)


@pytest.mark.parametrize("cond", [1e1, 1e4, 1e7])
def test_design(cond):
    x, y, w = rr.design(cond, n=30, d=6, seed=3)
    assert x.shape == (30, 6) and y.shape == (30,) and w.shape == (6,)
    s = np.linalg.svd(x, compute_uv=False)
    np.testing.assert_allclose(s, cond ** (-np.linspace(0, 1, 6)), rtol=1e-8)
    np.testing.assert_allclose(np.linalg.cond(x), cond, rtol=1e-6)
    np.testing.assert_allclose(y, x @ w, rtol=0, atol=1e-14)
    _, _, w2 = rr.design(1e2, n=30, d=6, seed=3)  # only the singular values depend on cond
    np.testing.assert_array_equal(w, w2)


def test_exact_lstsq():
    # hand-solvable problems: a consistent one, and the mean of y for a column of ones
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(rr.exact_lstsq(x, np.array([1.0, 2.0, 3.0])), [1.0, 2.0])
    np.testing.assert_array_equal(rr.exact_lstsq(np.ones((3, 1)), np.array([0.0, 1.0, 3.0])),
                                  [4.0 / 3.0])
    # float64 and float32-rounded designs against numpy's lstsq in float64 (accurate to about
    # eps * cond here)
    for cond, dtype in ((1e2, np.float64), (1e3, np.float32)):
        x, y, _ = rr.design(cond, n=40, d=8, seed=1)
        xs, ys = x.astype(dtype).astype(np.float64), y.astype(dtype).astype(np.float64)
        ref = np.linalg.lstsq(xs, ys, rcond=None)[0]
        assert _rel(rr.exact_lstsq(xs, ys), ref) < 10 * EPS64 * cond
    # an inconsistent, badly scaled problem: the residual is orthogonal to the columns
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 3)) * np.array([1e-3, 1.0, 1e4])[None, :]
    y = rng.standard_normal(12)
    w = rr.exact_lstsq(x, y)
    np.testing.assert_allclose(w, np.linalg.lstsq(x, y, rcond=None)[0], rtol=1e-10)
    assert np.max(np.abs(x.T @ (x @ w - y)) / np.linalg.norm(x, axis=0)) < 1e-12


def test_sparse_logistic_data():
    data = rr.sparse_logistic_data(0)
    n, d = rr.N_LOGISTIC, rr.N_FEATURES
    assert data["x"].shape == data["x_val"].shape == (n, d)
    assert data["y"].shape == data["y_val"].shape == (n,) and data["y"].dtype == np.int32
    assert np.count_nonzero(data["w_true"]) == rr.N_INFORMATIVE
    assert set(np.unique(data["y"]).tolist()) == {0, 1}
    np.testing.assert_array_equal(data["x"], rr.sparse_logistic_data(0)["x"])
    assert not np.array_equal(data["x"], rr.sparse_logistic_data(1)["x"])


def test_digits_split():
    from sklearn.datasets import load_digits

    x_tr, x_te, y_tr, y_te = rr.digits_split(0)
    assert x_tr.dtype == x_te.dtype == np.float32 and y_tr.dtype == np.int32
    assert len(x_tr) + len(x_te) == 1797 and len(x_te) == math.ceil(0.25 * 1797)
    assert 0.0 <= x_tr.min() and x_tr.max() <= 1.0
    # stratified: every class is held out in proportion
    counts = np.bincount(load_digits().target, minlength=10)
    assert np.all(np.abs(np.bincount(y_te, minlength=10) - 0.25 * counts) <= 1)
    assert not np.array_equal(x_te, rr.digits_split(1)[1])


# ------------------------------------------------------------------------------------------------
# The run


def _walk(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{path}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, obj


def test_result_structure_and_figures(result):
    res, out_dir = result
    assert set(res) == {"summary", "metrics", "figures", "tables"}
    assert isinstance(res["summary"], str) and len(res["summary"]) > 100
    json.dumps(res)
    files = [f["file"] for f in res["figures"]]
    assert files == ["lstsq_error_vs_condition.png", "normal_equations_and_gd.png",
                     "l1_vs_l2_weights.png", "regularization_path.png",
                     "mlp_learning_curves.png"]
    for fig in res["figures"]:
        assert fig["caption"]
        assert (out_dir / fig["file"]).read_bytes()[:8] == PNG
    for table in res["tables"]:
        assert all(len(row) == len(table["columns"]) for row in table["rows"])
    # every number is finite, except the errors of failed solves, which are NaN
    m = res["metrics"]
    for path, v in _walk(m):
        if isinstance(v, float) and not math.isfinite(v):
            method, i = path.split("/")[2].split("[")
            assert path.startswith("/errors_float32/") and not math.isinf(v), path
            assert not m["converged_float32"][method][int(i[:-1])], path


def test_condition_numbers(result, designs):
    m = result[0]["metrics"]
    for i, (x, _, _) in enumerate(designs):
        cond = m["cond_target"][i]
        np.testing.assert_allclose(m["cond_x_float64"][i], np.linalg.cond(x), rtol=1e-6)
        np.testing.assert_allclose(m["cond_x_float64"][i], cond, rtol=1e-6)
        x32 = x.astype(np.float32).astype(np.float64)
        np.testing.assert_allclose(m["cond_x_float32"][i], np.linalg.cond(x32), rtol=1e-6)
        # cond(x^T x) formed in float64 is cond(x)^2 up to the rounding of x^T x
        gram = np.linalg.cond(x.T @ x)
        rtol = 1e-6 + 10 * EPS64 * cond**2
        np.testing.assert_allclose(m["cond_gram_float64"][i], gram, rtol=rtol)
        np.testing.assert_allclose(m["cond_gram_float64"][i], m["cond_x_float64"][i] ** 2,
                                   rtol=rtol)
        g32 = m["cond_gram_float32_in_float32"][i]
        if EPS32 * cond**2 < 1e-3:
            np.testing.assert_allclose(g32, m["cond_x_float32"][i] ** 2, rtol=1e-2)
        elif EPS32 * cond**2 > 1e3:  # x^T x formed in float32 is singular to working precision
            assert g32 < 0.1 * cond**2
            a = x.astype(np.float32)
            assert np.linalg.cond(a.T @ a) < 0.1 * cond**2  # numpy in float32 agrees
    assert m["cond_gram_over_cond_x_squared_max_dev"] < 1e-3


def test_float64_errors_against_numpy(result, designs):
    m = result[0]["metrics"]
    e = m["errors_float64"]
    for i, (x, y, _) in enumerate(designs):
        cond = m["cond_x_float64"][i]
        exact = rr.exact_lstsq(x, y)
        np_err = _rel(np.linalg.lstsq(x, y, rcond=None)[0], exact)
        # QR and SVD are backward stable like numpy's lstsq: errors of order eps * cond
        assert np_err <= 2 * EPS64 * cond
        assert e["qr"][i] <= 2 * EPS64 * cond and e["svd"][i] <= 2 * EPS64 * cond
        assert e["cholesky"][i] <= 2 * EPS64 * cond**2
        if cond >= 1e5:  # the normal equations lose far more than lstsq
            assert e["cholesky"][i] > 1e3 * max(np_err, e["qr"][i])
        assert all(m["converged_float64"][meth][i] for meth in ("cholesky", "qr", "svd"))
    # gradient descent with a fixed budget: exact where cond^2 << budget, far off beyond
    budget = m["gd_budget"]
    for i, cond in enumerate(m["cond_x_float64"]):
        if cond**2 * 40 < budget:
            assert e["gd"][i] < 1e-12
        if cond**2 > budget:
            assert e["gd"][i] > 1e-3


def test_one_error_recomputed(result, designs):
    import jax
    import jax.numpy as jnp

    from jaxla import models

    m = result[0]["metrics"]
    i = m["cond_target"].index(1e4)
    x, y, _ = designs[i]
    exact = rr.exact_lstsq(x, y)
    with jax.enable_x64(True):
        fit = models.linear_regression(jnp.asarray(x), jnp.asarray(y), method="qr",
                                       fit_intercept=False)
    np.testing.assert_allclose(m["errors_float64"]["qr"][i], _rel(fit.coef, exact), rtol=1e-3)
    np_err = _rel(np.linalg.lstsq(x, y, rcond=None)[0], exact)
    assert 1e-2 < m["errors_float64"]["qr"][i] / np_err < 1e2


def test_float32_errors(result, designs):
    sla = pytest.importorskip("scipy.linalg")
    m = result[0]["metrics"]
    e, ok = m["errors_float32"], m["converged_float32"]
    for i, (x, y, _) in enumerate(designs):
        cond = m["cond_x_float32"][i]
        x32, y32 = x.astype(np.float32), y.astype(np.float32)
        exact = rr.exact_lstsq(x32, y32)
        if cond <= 1e4:
            # LAPACK in float32 (numpy's lstsq would compute in float64): QR with column pivoting
            # and the SVD
            for meth, driver in (("qr", "gelsy"), ("svd", "gelsd")):
                ref_err = _rel(sla.lstsq(x32, y32, lapack_driver=driver)[0], exact)
                assert e[meth][i] <= 2 * EPS32 * cond
                assert e[meth][i] < 30 * max(ref_err, EPS32)
        if EPS32 * cond**2 < 1e-2:
            assert ok["cholesky"][i] and e["cholesky"][i] <= 2 * EPS32 * cond**2
        if EPS32 * cond**2 > 10:
            assert not ok["cholesky"][i]
            assert not (e["cholesky"][i] < 1e-2)  # NaN or far off
    assert e["cholesky"][m["cond_target"].index(1e4)] > 0.1


def test_gradient_descent_iterations(result):
    m = result[0]["metrics"]
    n, d = m["lstsq_shape"]
    tol = m["gd_tol"]
    assert tol == pytest.approx(math.sqrt(EPS64))
    iters = np.asarray(m["gd_iterations"])
    assert np.all(np.diff(iters) > 0)
    for i, cond in enumerate(m["gd_cond_x"]):
        x, y, _ = rr.design(cond, n=n, d=d, seed=CONFIG["seed"])
        kappa = np.linalg.cond(x) ** 2
        np.testing.assert_allclose(m["gd_hessian_cond"][i], kappa, rtol=1e-6)
        np.testing.assert_allclose(m["gd_predicted_iterations"][i], kappa * math.log(1 / tol),
                                   rtol=1e-6)
        assert 0.5 * m["gd_estimated_iterations"][i] <= iters[i] <= m["gd_predicted_iterations"][i]
        if iters[i] <= 2000:  # the same iteration in numpy stops at the same step
            lam = np.linalg.eigvalsh(x.T @ x)[-1]
            w = np.zeros(d)
            g = x.T @ (x @ w - y) / n
            target = tol * np.linalg.norm(g)
            k = 0
            while np.linalg.norm(g) > target:
                w = w - (n / lam) * g
                g = x.T @ (x @ w - y) / n
                k += 1
            assert abs(k - iters[i]) <= 1
    slope = np.polyfit(np.log(m["gd_cond_x"]), np.log(iters), 1)[0]
    np.testing.assert_allclose(m["gd_iterations_loglog_slope"], slope, rtol=1e-9)
    assert 1.6 < slope < 2.2


def test_l1_vs_l2_against_sklearn(result):
    m = result[0]["metrics"]
    data = rr.sparse_logistic_data(CONFIG["seed"])
    c = m["C_matched"]
    assert c == m["penalty_C"][int(np.argmin(m["l1_validation_log_loss"]))]
    l1, l2 = np.asarray(m["l1_coef"]), np.asarray(m["l2_coef"])
    sk1 = _sklearn_logistic("l1", c, data["x"], data["y"])
    sk2 = _sklearn_logistic("l2", c, data["x"], data["y"])
    assert np.max(np.abs(l1 - sk1.coef_[0])) < 1e-5
    assert np.max(np.abs(l2 - sk2.coef_[0])) < 1e-5
    assert abs(m["l1_intercept"] - sk1.intercept_[0]) < 1e-5
    assert abs(m["l2_intercept"] - sk2.intercept_[0]) < 1e-5
    # L1 gives exact zeros where scikit-learn does; L2 none
    np.testing.assert_array_equal(l1 == 0, sk1.coef_[0] == 0)
    assert m["l1_zero_pattern_matches_sklearn"]
    assert m["l1_n_exact_zeros"] == int(np.sum(l1 == 0)) >= rr.N_FEATURES // 4
    assert m["l2_n_exact_zeros"] == int(np.sum(l2 == 0)) == 0
    assert m["l2_min_abs_coef"] == pytest.approx(np.min(np.abs(l2)))
    support = data["w_true"] != 0
    assert m["l1_true_support_found"] == int(np.sum((l1 != 0) & support)) == rr.N_INFORMATIVE
    # validation log-loss at the chosen C, recomputed from scikit-learn's model
    p = np.clip(sk1.predict_proba(data["x_val"])[:, 1], 1e-15, 1 - 1e-15)
    yv = data["y_val"]
    ll = -np.mean(yv * np.log(p) + (1 - yv) * np.log1p(-p))
    np.testing.assert_allclose(min(m["l1_validation_log_loss"]), ll, rtol=1e-5)
    # number of nonzeros along the path, as scikit-learn finds them
    for cc, nnz1, nnz2 in zip(m["penalty_C"], m["l1_path_nonzeros"], m["l2_path_nonzeros"],
                              strict=True):
        sk = _sklearn_logistic("l1", cc, data["x"], data["y"])
        assert abs(nnz1 - np.count_nonzero(sk.coef_)) <= 1
        assert nnz2 == rr.N_FEATURES
    assert m["l1_path_nonzeros"][0] == 0 and m["l1_path_nonzeros"][-1] >= rr.N_FEATURES - 2


def test_training_api_penalties(result):
    m = result[0]["metrics"]
    # Adam on the L2 objective reaches Newton's solution; on the L1 objective it gets close to
    # FISTA's objective but makes no weight exactly zero
    assert m["adam_l2_max_abs_diff_vs_newton"] < 1e-6
    assert -1e-9 <= m["adam_l1_objective_rel_gap"] < 1e-4
    assert m["adam_l1_max_abs_diff_vs_fista"] < 1e-2
    assert m["adam_l1_n_exact_zeros"] < m["l1_n_exact_zeros"]
    assert m["adam_l1_n_below_1e-3"] >= m["l1_n_exact_zeros"] - 2


def test_mlp_on_digits(result):
    m = result[0]["metrics"]
    assert m["mlp_test_accuracy"] >= 0.97
    n_test = m["mlp_n_test"]
    assert n_test == len(rr.digits_split(CONFIG["seed"])[1]) == 450
    assert m["mlp_n_train"] + n_test == 1797
    correct = m["mlp_test_accuracy"] * n_test  # a count of correctly classified images
    assert abs(correct - round(correct)) < 1e-3
    hidden = m["mlp_hidden"]
    widths = [64, *hidden, 10]
    assert m["mlp_n_params"] == sum(a * b + b for a, b in itertools.pairwise(widths))
    curve = m["mlp_test_accuracy_curve"]
    assert len(curve) == len(m["mlp_test_loss_curve"]) == len(m["mlp_train_loss_curve"])
    assert len(curve) == m["mlp_epochs"]
    assert curve[-1] == m["mlp_test_accuracy"] == m["mlp_test_accuracy_per_split"][0]
    assert m["mlp_train_loss_curve"][-1] < 0.25 * m["mlp_train_loss_curve"][0]
    assert m["mlp_train_accuracy"] >= m["mlp_test_accuracy"] - 0.01
    assert 0 < m["mlp_test_loss"] < 0.2


# ------------------------------------------------------------------------------------------------
# Command line


def test_command_line_help():
    text = help_text("experiments.regression_and_regularization")
    for flag in ("--quick", "--full", "--out", "--seed"):
        assert flag in text


def test_command_line_records_the_run(result, tmp_path, monkeypatch, capsys):
    """``experiment_main`` on this module: results.json and the report (run() reused)."""
    record, run_dir = record_from_command_line(rr, result, CONFIG, tmp_path, monkeypatch)
    metric = "mlp_test_accuracy"
    assert record["result"]["metrics"][metric] == result[0]["metrics"][metric]
    assert (run_dir / "report.html").is_file()
    assert capsys.readouterr().out.strip().endswith(f"{run_dir / 'report.html'}")


@pytest.mark.slow
def test_command_line_quick_run(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.regression_and_regularization", "--quick",
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = list(tmp_path.iterdir())
    results = json.loads((run_dir / "results.json").read_text())
    record = results["experiments"][rr.NAME]
    assert record["status"] == "ok"
    assert record["result"]["metrics"]["mlp_test_accuracy"] >= 0.97
    for fig in record["result"]["figures"]:
        assert (run_dir / fig["path"]).read_bytes()[:8] == PNG
