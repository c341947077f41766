"""The LSA experiment in quick mode, checked against an independent scikit-learn/numpy pipeline.

The experiment runs once (module-scoped fixture). The reference rebuilds the TF-IDF matrix with
scikit-learn's ``TfidfVectorizer``, takes numpy's SVD in float64 and ranks the modules with
cosine similarities written out in numpy.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from experiments import lsa as exp
from jaxla.datasets._text import stdlib_docs
from jaxla.models.lsa import ENGLISH_STOP_WORDS
from tests.experiments.helpers import record_from_command_line

CONFIG = {"mode": "quick", "seed": 0}
PNG = b"\x89PNG\r\n\x1a\n"

# Each experiment test module runs its experiment (tens of seconds on 2 cores): CI runs them in
# its second step, with the other slow tests.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("lsa")
    return exp.run(dict(CONFIG), out_dir), out_dir


@pytest.fixture(scope="module")
def reference():
    """scikit-learn's TF-IDF of the same corpus, numpy's SVD of it, the vectorizer."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    names, texts = stdlib_docs()
    vec = TfidfVectorizer(min_df=exp.MIN_DF, max_df=exp.MAX_DF, sublinear_tf=True,
                          stop_words=sorted(ENGLISH_STOP_WORDS))
    x = vec.fit_transform(texts).toarray()
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    return names, vec, x, (u, s, vt)


def _top5(reference, query, k):
    names, vec, _, (u, s, vt) = reference
    qv = vec.transform([query]).toarray()[0] @ vt[:k].T
    docs = u[:, :k] * s[:k]
    scores = docs @ qv / (np.linalg.norm(docs, axis=1) * np.linalg.norm(qv))
    return [names[i] for i in np.argsort(-scores, kind="stable")[:5]]


def test_module_constants():
    assert exp.NAME == "lsa" == exp.__name__.rsplit(".", 1)[1]
    assert isinstance(exp.TITLE, str) and exp.TITLE
    assert set(exp.COMPRESSION) == {"zlib", "gzip", "bz2", "lzma"}


def test_bad_config(tmp_path):
    with pytest.raises(ValueError, match=r"^experiments.lsa.run: `config\['mode'\]` must be one "
                                         r"of 'quick', 'full', got 'fast'$"):
        exp.run({"mode": "fast", "seed": 0}, tmp_path)
    with pytest.raises(TypeError, match=r"`config\['seed'\]` must be an int, got '0' \(str\)"):
        exp.run({"mode": "quick", "seed": "0"}, tmp_path)


def test_result_structure_and_figures(result):
    res, out_dir = result
    assert set(res) == {"summary", "metrics", "figures", "tables"}
    json.dumps(res)
    assert [f["file"] for f in res["figures"]] == ["spectrum.png", "module_map.png",
                                                   "retrieval_vs_rank.png"]
    for fig in res["figures"]:
        assert fig["caption"]
        assert (out_dir / fig["file"]).read_bytes()[:8] == PNG
    for table in res["tables"]:
        assert all(len(row) == len(table["columns"]) for row in table["rows"])


def test_corpus_and_spectrum_against_numpy(result, reference):
    m = result[0]["metrics"]
    names, vec, x, (_, s, vt) = reference
    assert m["n_docs"] == len(names) and m["n_terms"] == len(vec.get_feature_names_out())
    assert m["vocabulary_equals_sklearn"] and m["tfidf_max_abs_err_vs_sklearn"] < 1e-6
    k = m["rank"]
    (table,) = [t for t in result[0]["tables"] if t["title"].startswith("Leading singular")]
    for row in table["rows"]:
        j = row[0] - 1
        np.testing.assert_allclose(row[1], s[j], rtol=1e-5)  # exact
        np.testing.assert_allclose(row[2], s[j], rtol=1e-4)  # randomized
        np.testing.assert_allclose(row[3], s[j], rtol=1e-6)  # arpack
    # explained variance ratio of the rank-k model (TruncatedSVD's definition)
    evr = np.var(x @ vt[:k].T, axis=0).sum() / np.var(x, axis=0).sum()
    np.testing.assert_allclose(m["explained_variance_ratio_at_rank"], evr, rtol=1e-4)
    assert m["singular_values_match_arpack_1e-4"]
    assert m["singular_values_max_rel_err_exact_vs_arpack"] < 1e-5
    assert m["singular_values_max_rel_err_randomized_vs_arpack"] < 1e-4
    assert s[k] <= m["randomized_error_estimate"] < 2 * s[k]


def test_queries_against_numpy(result, reference):
    m = result[0]["metrics"]
    k = m["rank"]
    for q, top in m["compression_queries_top5"].items():
        assert top == _top5(reference, q, k)
        assert set(exp.COMPRESSION) <= set(top)
    assert m["compression_modules_in_top5_at_rank"]
    expected = [r for r in m["sweep_ranks"]
                if all(set(exp.COMPRESSION) <= set(_top5(reference, q, r))
                       for q in exp.COMPRESSION_QUERIES)]
    assert m["ranks_with_all_compression_modules_in_top5"] == expected
    assert m["compression_modules_in_top5_at_every_sweep_rank"] == (expected == m["sweep_ranks"])
    for q, hits in m["topic_query_hits_in_top5"].items():
        assert hits == len(set(exp.TOPIC_QUERIES[q]) & set(_top5(reference, q, k)))
    (table,) = [t for t in result[0]["tables"] if t["title"].startswith("Queries")]
    for row in table["rows"]:
        assert [cell.split(" ")[0] for cell in row[1:]] == _top5(reference, row[0], k)


def test_command_line_records_the_run(result, tmp_path, monkeypatch, capsys):
    """``experiment_main`` on this module: results.json and the report (run() reused)."""
    record, run_dir = record_from_command_line(exp, result, CONFIG, tmp_path, monkeypatch)
    assert record["result"]["metrics"]["rank"] == result[0]["metrics"]["rank"]
    assert (run_dir / "report.html").is_file()
    capsys.readouterr()
