"""The recommender experiment in quick mode, checked against numpy and the module's own API.

The experiment runs once (module-scoped fixture). Every test recomputes what it checks
independently: the data and the noise floor with numpy from ``load_data``, precision@k by brute
force, the warm-started ALS path against one long ALS run, the recommendation table against the
true ratings.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("optax")

from experiments import recommender as ex
from jaxla.datasets import synthetic_ratings
from tests.experiments.helpers import help_text, record_from_command_line

CONFIG = {"mode": "quick", "seed": 0}
PNG = b"\x89PNG\r\n\x1a\n"

# The module runs its experiment in quick mode: CI runs it in its second step, with the other
# slow tests.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("recommender")
    return ex.run(dict(CONFIG), out_dir), out_dir


@pytest.fixture(scope="module")
def data():
    return ex.load_data(CONFIG)


def _walk(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{path}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, obj


# ------------------------------------------------------------------------------------------------
# Module, configuration, helpers


def test_module_constants():
    assert ex.NAME == "recommender" == ex.__name__.rsplit(".", 1)[1]
    assert isinstance(ex.TITLE, str) and ex.TITLE
    assert set(ex.QUICK) == set(ex.FULL)
    for s in (ex.QUICK, ex.FULL):
        assert s["rank"] in s["ranks"] and max(s["ranks"]) <= 2 * s["rank"]


def test_bad_config(tmp_path):
    with pytest.raises(ValueError, match=r"^experiments.recommender.run: `config\['mode'\]` must "
                                         r"be one of 'quick', 'full', got 'fast'$"):
        ex.run({"mode": "fast", "seed": 0}, tmp_path)
    with pytest.raises(TypeError, match=r"^experiments.recommender.run: `config\['seed'\]` must "
                                        r"be an int, got '0' \(str\)$"):
        ex.run({"mode": "quick", "seed": "0"}, tmp_path)


def test_load_data(data):
    s = ex.QUICK
    ref = synthetic_ratings(0, s["n_users"], s["n_items"], s["rank"], density=s["density"],
                            noise=s["noise"])
    for a, b in zip(data, ref, strict=True):
        np.testing.assert_array_equal(a, b)
    assert data.ratings.shape == (s["n_users"], s["n_items"])
    other = ex.load_data({"mode": "quick", "seed": 1})
    assert not np.array_equal(other.ratings, data.ratings)
    full = ex.FULL
    assert (full["n_users"], full["n_items"]) > (s["n_users"], s["n_items"])


def test_initial_factors():
    u, v = ex.initial_factors(0, 30, 20, 3, 0.5)
    assert u.shape == (30, 3) and v.shape == (20, 3) and u.dtype == v.dtype == np.float32
    u2, v2 = ex.initial_factors(0, 30, 20, 3, 0.5)
    np.testing.assert_array_equal(u, u2)
    np.testing.assert_array_equal(v, v2)
    assert 0.3 < np.std(np.concatenate([u.ravel(), v.ravel()])) < 0.7


def test_precision_at_k():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((6, 15))
    seen = rng.random((6, 15)) < 0.3
    np.testing.assert_array_equal(ex.precision_at_k(truth, truth, seen, 4), 1.0)
    pred = truth + 0.5 * rng.standard_normal((6, 15))
    got = ex.precision_at_k(pred, truth, seen, 4)
    for i in range(6):  # brute force: sort (score, item) pairs of the unseen items
        unseen = [j for j in range(15) if not seen[i, j]]
        best_pred = {j for _, j in sorted((-pred[i, j], j) for j in unseen)[:4]}
        best_true = {j for _, j in sorted((-truth[i, j], j) for j in unseen)[:4]}
        assert got[i] == len(best_pred & best_true) / 4
    assert np.all(ex.precision_at_k(-truth, truth, np.zeros_like(seen), 4) == 0)


def test_als_path_equals_one_long_run():
    import jax.numpy as jnp

    from jaxla.models import recommender as rec

    d = synthetic_ratings(2, 40, 30, 2, density=0.5, noise=0.1)
    init = ex.initial_factors(2, 40, 30, 2, 0.8)
    r, w, t = jnp.asarray(d.ratings), jnp.asarray(d.train_mask), jnp.asarray(d.test_mask)
    model, curve = ex.als_path(r, w, t, init, reg=0.1, iters=5)
    long = rec.als(r, w, 2, reg=0.1, iters=5, init=init)
    np.testing.assert_allclose(curve["objective"], long.objective, rtol=1e-5)
    np.testing.assert_allclose(curve["train_rmse"], long.train_rmse, rtol=1e-5)
    np.testing.assert_allclose(rec.predict_ratings(model), rec.predict_ratings(long), atol=1e-5)
    np.testing.assert_allclose(curve["grad_norm"][-1], long.grad_norm, rtol=1e-2)
    assert len(curve["test_rmse"]) == 6
    np.testing.assert_allclose(curve["test_rmse"][-1], rec.rmse(long, r, t), rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# The run


def test_result_structure_and_figures(result):
    res, out_dir = result
    assert set(res) == {"summary", "metrics", "figures", "tables"}
    assert isinstance(res["summary"], str) and len(res["summary"]) > 200
    json.dumps(res)
    files = [f["file"] for f in res["figures"]]
    assert files == ["rmse_vs_iteration.png", "rmse_vs_rank.png", "recommendations.png"]
    for fig in res["figures"]:
        assert fig["caption"]
        assert (out_dir / fig["file"]).read_bytes()[:8] == PNG
    for table in res["tables"]:
        assert all(len(row) == len(table["columns"]) for row in table["rows"])
    for path, v in _walk(res["metrics"]):
        if isinstance(v, float):
            assert math.isfinite(v), path


def test_acceptance(result, data):
    m = result[0]["metrics"]
    noise = ex.QUICK["noise"]
    assert m["noise"] == noise
    assert m["n_train"] == int(data.train_mask.sum()) and m["n_test"] == int(data.test_mask.sum())
    oracle = np.sqrt(np.mean((data.ratings - data.truth)[data.test_mask].astype(float) ** 2))
    np.testing.assert_allclose(m["oracle_test_rmse"], oracle, rtol=1e-6)
    assert m["als_test_rmse"] <= 1.1 * noise
    assert m["acceptance_als_test_rmse_within_10pct_of_noise"] is True
    np.testing.assert_allclose(m["als_test_rmse_over_noise"], m["als_test_rmse"] / noise)
    assert m["als_train_rmse"] < noise < m["als_test_rmse"]
    assert m["gd_objective_over_als"] <= 1.01 and m["acceptance_gd_within_1pct_of_als_objective"]
    np.testing.assert_allclose(m["gd_objective_over_als"], m["gd_objective"] / m["als_objective"],
                               rtol=1e-9)
    assert m["gd_objective_over_als"] >= 1 - 1e-4  # ALS reaches the minimum
    assert m["als_objective_nonincreasing"] is True


def test_curves(result):
    m = result[0]["metrics"]
    iters = ex.QUICK["iters"]
    for label, final in (("als", "als_objective"), ("als_plain", "plain_als_objective")):
        c = m["als_curves"][label]
        for key in ("objective", "train_rmse", "test_rmse", "grad_norm"):
            assert len(c[key]) == iters + 1
        obj = np.asarray(c["objective"])
        assert np.all(np.diff(obj) <= 1e-6 * obj[0])
        assert c["objective"][-1] == m[final]
    # balancing: ALS converges, plain ALS has not yet after the same iterations
    assert m["als_grad_norm"] < 1e-4 < m["plain_als_grad_norm"]
    assert m["als_objective"] < m["plain_als_objective"]
    # gradient descent: jaxla.train.fit and fit_gd take the same steps
    assert m["train_fit_vs_fit_gd_max_rel_diff"] < 1e-4
    np.testing.assert_allclose(m["train_fit_objective"], m["gd_objective"], rtol=1e-4)
    steps = np.asarray(m["gd_eval_steps"])
    assert steps[-1] == ex.QUICK["gd_steps"] and np.all(np.diff(steps) == ex.QUICK["eval_every"])
    assert len(m["gd_test_rmse_curve"]) == len(steps)
    assert m["gd_test_rmse_curve"][-1] == m["train_fit_test_rmse"] <= 1.1 * ex.QUICK["noise"]


def test_rank_sweep(result):
    m = result[0]["metrics"]
    ranks = m["ranks"]
    assert ranks == ex.QUICK["ranks"]
    test = m["test_rmse_by_rank"]
    train = m["train_rmse_by_rank"]
    assert m["best_rank"] == ranks[int(np.argmin(test))] == ex.QUICK["rank"]
    assert np.all(np.diff(train) < 0)  # more factors always fit the training entries better
    assert test[ranks.index(ex.QUICK["rank"])] == m["als_test_rmse"]
    table = result[0]["tables"][1]
    assert [row[0] for row in table["rows"]] == ranks
    assert [row[2] for row in table["rows"]] == test


def test_recommendations(result, data):
    res, _ = result
    m = res["metrics"]
    seen = data.train_mask
    assert m["recommendations_exclude_seen"] is True
    assert m["precision_at_10"] == pytest.approx(m["precision_at_10_from_lists"])
    random_prec = np.mean(ex.TOP_N / (~seen).sum(axis=1))
    np.testing.assert_allclose(m["random_precision_at_10"], random_prec, rtol=1e-12)
    assert m["precision_at_10"] > 0.8 > 5 * random_prec
    user = m["example_user"]
    rows = res["tables"][0]["rows"]
    items = [row[1] for row in rows]
    assert items == m["example_items"] and len(items) == ex.TOP_N == len(set(items))
    assert not np.any(seen[user, items])
    scores = [row[2] for row in rows]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose([row[3] for row in rows], data.truth[user, items], rtol=1e-6)
    unseen = np.flatnonzero(~seen[user])
    true_top = set(unseen[np.argsort(-data.truth[user, unseen], kind="stable")[:ex.TOP_N]])
    assert [row[4] for row in rows] == [i in true_top for i in items]


# ------------------------------------------------------------------------------------------------
# Command line


def test_command_line_help():
    text = help_text("experiments.recommender")
    for flag in ("--quick", "--full", "--out", "--seed"):
        assert flag in text


def test_command_line_records_the_run(result, tmp_path, monkeypatch, capsys):
    """``experiment_main`` on this module: results.json and the report (run() reused)."""
    record, run_dir = record_from_command_line(ex, result, CONFIG, tmp_path, monkeypatch)
    assert record["result"]["metrics"]["als_test_rmse"] == result[0]["metrics"]["als_test_rmse"]
    assert (run_dir / "report.html").is_file()
    assert capsys.readouterr().out.strip().endswith(f"{run_dir / 'report.html'}")
