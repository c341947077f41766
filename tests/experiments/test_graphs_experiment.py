"""The graphs experiment in quick mode, checked against networkx, scikit-learn and numpy.

The experiment runs once (module-scoped fixture); every test recomputes what it checks
independently: Fiedler vectors and spectra with numpy, PageRank with networkx and a plain numpy
power iteration, the embedding with scikit-learn.
"""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from experiments import graphs as exp

CONFIG = {"mode": "quick", "seed": 0}
PNG = b"\x89PNG\r\n\x1a\n"

# Each test module runs its experiment in quick mode: CI runs them with the other slow tests.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("graphs")
    return exp.run(dict(CONFIG), out_dir), out_dir


@pytest.fixture(scope="module")
def karate():
    """networkx's karate club: adjacency (34, 34) float64 and factions (1 = Officer)."""
    g = nx.karate_club_graph()
    a = nx.to_numpy_array(g, nodelist=range(34), weight=None)
    factions = np.array([g.nodes[i]["club"] == "Officer" for i in range(34)], int)
    return a, factions


def _table(res, title_start):
    (t,) = [t for t in res["tables"] if t["title"].startswith(title_start)]
    return t


def _power_iteration_count(a, damping, tol):
    """Iterations of the textbook power iteration until the L1 change is at most ``tol``."""
    n = len(a)
    d = a.sum(axis=1)
    s = np.where(d[:, None] > 0, a / np.where(d > 0, d, 1)[:, None], 1.0 / n)
    x = np.full(n, 1.0 / n)
    for it in range(1, 100_000):
        new = damping * (x @ s) + (1 - damping) / n
        if np.abs(new - x).sum() <= tol:
            return it
        x = new
    raise AssertionError("no convergence")


def test_module_constants():
    assert exp.NAME == "graphs" == exp.__name__.rsplit(".", 1)[1]
    assert isinstance(exp.TITLE, str) and exp.TITLE
    assert 0.85 in exp.DAMPINGS_QUICK and 0.85 in exp.DAMPINGS_FULL


def test_bad_config(tmp_path):
    with pytest.raises(ValueError, match=r"^experiments.graphs.run: `config\['mode'\]` must be "
                                         r"one of 'quick', 'full', got 'fast'$"):
        exp.run({"mode": "fast", "seed": 0}, tmp_path)
    with pytest.raises(TypeError, match=r"`config\['seed'\]` must be an int, got '0' \(str\)"):
        exp.run({"mode": "quick", "seed": "0"}, tmp_path)


def test_result_structure_and_figures(result):
    res, out_dir = result
    json.dumps(res)  # JSON-serializable
    assert isinstance(res["summary"], str) and res["summary"]
    assert len(res["figures"]) == 4
    for fig in res["figures"]:
        assert (out_dir / fig["file"]).read_bytes()[:8] == PNG
        assert fig["caption"]
    for t in res["tables"]:
        assert all(len(row) == len(t["columns"]) for row in t["rows"])


def test_karate_bisection_and_embedding(result, karate):
    res, _ = result
    m = res["metrics"]
    a, factions = karate
    w, v = np.linalg.eigh(np.diag(a.sum(axis=1)) - a)
    labels = (v[:, 1] > 0).astype(int)
    wrong = labels != factions
    bad = np.flatnonzero(wrong if wrong.sum() <= 17 else ~wrong)
    assert m["karate_misassigned_combinatorial"] == bad.tolist()
    assert m["karate_bisection_errors_combinatorial"] == len(bad) <= 2
    assert m["accept_bisection_at_most_2_errors"] is True
    np.testing.assert_allclose(m["karate_algebraic_connectivity"], w[1], rtol=1e-5)
    assert m["karate_embedding_max_abs_err_vs_sklearn"] <= 1e-4
    assert m["karate_clustering_ari_vs_sklearn"] == 1.0
    for kind, lap in (("combinatorial", np.diag(a.sum(axis=1)) - a),
                      ("normalized", nx.normalized_laplacian_matrix(
                          nx.karate_club_graph(), nodelist=range(34), weight=None).toarray())):
        assert m[f"laplacian_spectrum_rel_err_{kind}"] <= 1e-5
        assert np.linalg.eigvalsh(lap)[1] > 0  # connected


def test_pagerank_of_the_import_graph(result):
    res, _ = result
    m = res["metrics"]
    names, edges = exp.load_import_graph(CONFIG)
    assert m["stdlib_modules"] == len(names) == exp.QUICK_MODULES
    assert m["stdlib_imports"] == len(edges)
    g = nx.DiGraph()
    g.add_nodes_from(range(len(names)))
    g.add_edges_from(edges.tolist())
    ref = nx.pagerank(g, tol=1e-14, max_iter=10_000)
    top = sorted(ref, key=lambda i: -ref[i])[:exp.TOP]
    table = _table(res, "Top")
    assert [row[1] for row in table["rows"][:5]] == [str(names[i]) for i in top[:5]]
    for row in table["rows"]:
        i = int(np.flatnonzero(names == row[1])[0])
        assert abs(row[2] - ref[i]) <= 1e-6 and abs(row[3] - ref[i]) <= 1e-12
        assert row[4] == g.in_degree(i) and row[5] == g.out_degree(i)
    assert m["pagerank_max_abs_err_float64"] <= 1e-10
    assert m["pagerank_max_abs_err_float32"] <= 1e-6
    assert m["accept_pagerank_float64_matches_networkx_1e-6"] is True
    assert m["accept_pagerank_float32_matches_networkx_1e-6"] is True
    assert m["stdlib_dangling_modules"] == sum(1 for i in g if g.out_degree(i) == 0)


def test_convergence_against_damping(result, karate):
    res, _ = result
    m = res["metrics"]
    a, _ = karate
    dampings = m["dampings"]
    assert dampings == list(exp.DAMPINGS_QUICK) and m["sweep_all_converged_float64"] is True
    its = np.asarray(m["karate_iterations_vs_damping"])
    for i, tol in enumerate(exp.TOLERANCES):
        for j, d in enumerate(dampings):
            assert its[i, j] == _power_iteration_count(a, d, tol)
        assert np.all(np.diff(its[i]) >= 0)  # more damping, more iterations
    # |lambda_2| of the walk's matrix and the iteration estimate
    s = a / a.sum(axis=1)[:, None]
    lam2 = np.sort(np.abs(np.linalg.eigvals(s)))[-2]
    np.testing.assert_allclose(m["karate_lambda2"], lam2, rtol=1e-10)
    pred = np.log(np.asarray(exp.TOLERANCES))[:, None] / np.log(np.asarray(dampings) * lam2)
    np.testing.assert_allclose(m["karate_predicted_iterations"], pred, rtol=1e-8)
    # the estimate is asymptotic: at the tightest tolerance the counts are within 40% of it
    for key in ("karate", "stdlib"):
        ratio = (np.asarray(m[f"{key}_iterations_vs_damping"])[-1]
                 / np.asarray(m[f"{key}_predicted_iterations"])[-1])
        assert np.all((ratio > 0.6) & (ratio < 1.4)), (key, ratio)
    assert m["sweep_max_abs_err_float64_tol_1e-10"] <= 1e-10
    assert m["sweep_max_abs_err_float32_tol_1e-10"] <= 1e-6
