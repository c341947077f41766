"""The tensor_train experiment in a reduced configuration, checked against independent references.

References: the smooth tensor evaluated directly on a meshgrid, tensorly's ``tensor_train`` at the
reported ranks, parameter counts recomputed from the ranks, and scikit-learn's logistic
regression on the same digits split as a floor for the trained MLP.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("optax")
tl = pytest.importorskip("tensorly")

from experiments import tensor_train  # noqa: E402

# The experiment trains an MLP and fine-tunes several TT layers: CI runs this module with the
# slow tests.
pytestmark = pytest.mark.slow

REDUCED = {
    "mode": "quick", "seed": 0, "grid": 5, "eps": [1e-2, 1e-6], "ranks": [2, 8],
    "train_steps": 200, "finetune_steps": 100,
}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("tensor_train")
    return tensor_train.run(dict(REDUCED), out_dir), out_dir


def _table(res, prefix):
    (table,) = [t for t in res["tables"] if t["title"].startswith(prefix)]
    return [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]


def test_data():
    a = tensor_train.smooth_tensor(5, 3)
    x = np.linspace(0.0, 1.0, 5)
    g = np.meshgrid(x, x, x, indexing="ij")
    np.testing.assert_allclose(a, 1.0 / (1.0 + g[0] + g[1] + g[2]), rtol=1e-15)
    xtr, _, xte, yte = tensor_train.load_data(0)
    assert xtr.shape == (1258, 64) and xte.shape == (539, 64) and xtr.dtype == np.float32
    assert 0.0 <= xtr.min() and xtr.max() <= 1.0
    again = tensor_train.load_data(0)
    np.testing.assert_array_equal(again[0], xtr)
    np.testing.assert_array_equal(again[3], yte)
    rows = {r.tobytes() for r in np.concatenate([xtr, xte])}
    assert len(rows) > 1700  # the split covers the data set


def test_tt_svd_table(result):
    res = result[0]
    a = tensor_train.smooth_tensor(REDUCED["grid"], 4)
    rows = _table(res, "TT-SVD")
    assert [r["dtype"] for r in rows] == ["float64", "float64", "float32"]
    for r in rows:
        ranks = [int(v) for v in r["ranks"].strip("()").split(",")]
        full = tl.tt_to_tensor(tl.decomposition.tensor_train(a, rank=ranks))
        ref = np.linalg.norm(full - a) / np.linalg.norm(a)
        assert r["error (dense)"] <= r["eps"]
        # the same algorithm at the same ranks: equal errors up to the rounding of the dtype
        tol = 1e-9 * ref + 1e-13 if r["dtype"] == "float64" else 2e-6
        assert abs(r["error (dense)"] - ref) <= tol
        np.testing.assert_allclose(r["tensorly error, same ranks"], ref, rtol=1e-9, atol=1e-15)
        if r["dtype"] == "float64":  # no uniform rank below jaxla's largest meets eps in tensorly
            below = max(ranks) - 1
            if below >= 1:
                lower = tl.tt_to_tensor(tl.decomposition.tensor_train(a, rank=[1, *[below] * 3, 1]))
                assert np.linalg.norm(lower - a) / np.linalg.norm(a) > r["eps"]
        params = sum(ranks[k] * 5 * ranks[k + 1] for k in range(4))
        assert r["parameters"] == params
        np.testing.assert_allclose(r["compression"], 5**4 / params)
    m = res["metrics"]
    assert m["tt_svd_meets_eps_float64"] is True and m["tt_svd_meets_eps_float32"] is True
    assert m["tt_svd_error_le_tensorly_at_same_ranks"] is True
    assert m["tt_svd_ranks_le_tensorly_min_uniform_rank"] is True
    assert m["tt_svd_rel_error_max_abs_gap_vs_dense_float64"] < 1e-10


def test_digits_table(result):
    from sklearn.linear_model import LogisticRegression

    res = result[0]
    m = res["metrics"]
    xtr, ytr, xte, yte = tensor_train.load_data(0)
    floor = LogisticRegression(max_iter=2000).fit(xtr, ytr).score(xte, yte)
    assert m["dense_test_accuracy"] >= floor - 0.03
    rows = _table(res, "TT layer")
    assert [r["TT rank"] for r in rows] == REDUCED["ranks"]
    for r in rows:
        ranks = [int(v) for v in r["ranks"].strip("()").split(",")]
        params = sum(ranks[k] * m_ * n_ * ranks[k + 1] for k, (m_, n_) in
                     enumerate(zip(tensor_train.ROW_DIMS, tensor_train.COL_DIMS, strict=True)))
        assert r["TT parameters"] == params
        np.testing.assert_allclose(r["compression"], 64 * 1024 / params)
        assert r["test acc. after fine-tuning (%)"] >= r["test acc. after TT-SVD (%)"]
        assert 0 < r["weight rel. error"] < 1
    assert rows[-1]["test acc. after fine-tuning (%)"] >= 100 * m["dense_test_accuracy"] - 5
    assert m["exact_tt_conversion_matches_dense"] is True
    assert m["finetune_padding_stays_zero"] is True
    assert m["finetune_never_hurts"] is True


def test_result_structure_and_figures(result):
    res, out_dir = result
    assert set(res) == {"summary", "metrics", "figures", "tables"}
    json.dumps(res, allow_nan=False)
    files = [f["file"] for f in res["figures"]]
    assert files == ["tt_svd_accuracy.png", "tt_layer_accuracy.png"]
    for fig in res["figures"]:
        assert fig["caption"]
        assert (out_dir / fig["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert tensor_train.NAME == "tensor_train" and isinstance(tensor_train.TITLE, str)
    assert math.prod(tensor_train.COL_DIMS) == 1024 and math.prod(tensor_train.ROW_DIMS) == 64


def test_bad_config(tmp_path):
    fn = "experiments.tensor_train.run"
    with pytest.raises(ValueError, match=(
            rf"^{fn}: `config\['mode'\]` must be one of 'quick', 'full', got 'fast'$")):
        tensor_train.run({"mode": "fast", "seed": 0}, tmp_path)
    with pytest.raises(ValueError, match=rf"^{fn}: `config` has an unknown entry 'rnaks'"):
        tensor_train.run({"mode": "quick", "seed": 0, "rnaks": [2]}, tmp_path)
    with pytest.raises(ValueError, match=rf"^{fn}: `config\['ranks'\]` must be >= 1, got 0$"):
        tensor_train.run({"mode": "quick", "seed": 0, "ranks": [0]}, tmp_path)
    with pytest.raises(ValueError, match=(
            rf"^{fn}: `config\['eps'\]` must hold numbers in \(0, 1\), got \[0.0\]$")):
        tensor_train.run({"mode": "quick", "seed": 0, "eps": [0.0]}, tmp_path)
