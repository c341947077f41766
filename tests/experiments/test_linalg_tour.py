"""The linear-algebra tour in quick mode, checked against an independent numpy computation."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from experiments import linalg_tour

CONFIG = {"mode": "quick", "seed": 0}


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("linalg_tour")
    return linalg_tour.run(dict(CONFIG), out_dir), out_dir


@pytest.fixture(scope="module")
def data():
    """The same images as the run, in float64, centered; and the labels."""
    x, y = linalg_tour.load_data(dict(CONFIG))
    x = x.astype(np.float64)
    return x, x - x.mean(axis=0, keepdims=True), y


def table(result, title_start):
    (t,) = [t for t in result["tables"] if t["title"].startswith(title_start)]
    return {c: [row[i] for row in t["rows"]] for i, c in enumerate(t["columns"])}


def test_module_constants():
    assert linalg_tour.NAME == "linalg_tour"
    assert linalg_tour.TITLE == "Linear algebra tour: digits as vectors"


def test_load_data():
    x, y = linalg_tour.load_data({"mode": "full", "seed": 0})
    assert x.shape == (1797, 64) and x.dtype == np.float32 and y.shape == (1797,)
    xq, yq = linalg_tour.load_data(CONFIG)
    assert xq.shape == (linalg_tour.QUICK_IMAGES, 64) and xq.dtype == np.float32
    assert set(yq.tolist()) == set(range(10))
    np.testing.assert_array_equal(xq, linalg_tour.load_data(dict(CONFIG))[0])
    assert not np.array_equal(xq, linalg_tour.load_data({"mode": "quick", "seed": 1})[0])


def test_bad_config(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"^experiments.linalg_tour.run: `config\['mode'\]` must be one of 'quick', "
              r"'full', got 'fast'$",
    ):
        linalg_tour.run({"mode": "fast", "seed": 0}, tmp_path)
    with pytest.raises(TypeError, match=r"`config\['seed'\]` must be an int, got '0' \(str\)"):
        linalg_tour.run({"mode": "quick", "seed": "0"}, tmp_path)


def test_result_structure_and_figures(tour):
    result, out_dir = tour
    assert set(result) == {"summary", "metrics", "figures", "tables"}
    assert isinstance(result["summary"], str) and len(result["summary"]) > 50
    json.dumps(result)  # JSON-serializable
    files = [f["file"] for f in result["figures"]]
    assert files == ["cosine_similarity.png", "norms.png", "spectrum.png", "rank_k_error.png",
                     "condition.png"]
    for fig in result["figures"]:
        assert fig["caption"]
        assert (out_dir / fig["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = result["metrics"]
    assert m["n_images"] == linalg_tour.QUICK_IMAGES and m["n_pixels"] == 64


def test_class_mean_cosines(tour, data):
    m = tour[0]["metrics"]
    x, _, y = data
    means = np.stack([x[y == c].mean(axis=0) for c in range(10)])
    unit = means / np.linalg.norm(means, axis=1, keepdims=True)
    cos = unit @ unit.T
    iu = np.triu_indices(10, k=1)
    hi, lo = np.argmax(cos[iu]), np.argmin(cos[iu])
    assert m["most_similar_pair"] == [iu[0][hi], iu[1][hi]]
    assert m["least_similar_pair"] == [iu[0][lo], iu[1][lo]]
    np.testing.assert_allclose(m["most_similar_cosine"], cos[iu][hi], rtol=1e-5)
    np.testing.assert_allclose(m["least_similar_cosine"], cos[iu][lo], rtol=1e-5)
    centered = means - means.mean(axis=0, keepdims=True)
    unit_c = centered / np.linalg.norm(centered, axis=1, keepdims=True)
    cos_c = (unit_c @ unit_c.T)[iu]
    assert m["most_opposite_pair_centered"] == [iu[0][np.argmin(cos_c)], iu[1][np.argmin(cos_c)]]
    np.testing.assert_allclose(m["most_opposite_cosine_centered"], cos_c.min(), atol=1e-5)


def test_norms(tour, data):
    m = tour[0]["metrics"]
    x, _, y = data
    norms = np.linalg.norm(x, axis=1)
    medians = [np.median(norms[y == c]) for c in range(10)]
    np.testing.assert_allclose(m["mean_image_norm"], norms.mean(), rtol=1e-5)
    assert m["largest_median_norm_class"] == int(np.argmax(medians))
    assert m["smallest_median_norm_class"] == int(np.argmin(medians))


def test_spectrum_against_numpy(tour, data):
    result = tour[0]
    m = result["metrics"]
    _, xc, _ = data
    s = np.linalg.svd(xc, compute_uv=False)
    lead = table(result, "Leading singular values")
    np.testing.assert_allclose(lead["s_i"], s[:10], rtol=1e-5)
    np.testing.assert_allclose(m["sigma_1"], s[0], rtol=1e-5)
    cum = np.cumsum(s**2) / np.sum(s**2)
    np.testing.assert_allclose(lead["cumulative (%)"], 100 * cum[:10], rtol=1e-5)
    assert m["rank_for_90pct_energy"] == int(np.argmax(cum >= 0.9) + 1)
    assert m["rank_for_99pct_energy"] == int(np.argmax(cum >= 0.99) + 1)
    assert m["numerical_rank"] == np.linalg.matrix_rank(xc)
    assert m["svd_max_rel_err_vs_numpy_float64"] < 1e-4


def test_eckart_young(tour, data):
    result = tour[0]
    _, xc, _ = data
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    fro = np.linalg.norm(xc)
    rows = table(result, "Rank-k relative error")
    for k, measured, predicted in zip(rows["k"], rows["measured"], rows["Eckart-Young"],
                                      strict=True):
        error = np.linalg.norm(xc - (u[:, :k] * s[:k]) @ vt[:k]) / fro
        np.testing.assert_allclose(measured, error, atol=2e-6)
        np.testing.assert_allclose(predicted, np.sqrt(np.sum(s[k:] ** 2)) / fro, atol=2e-6)
    assert 0 <= result["metrics"]["eckart_young_max_discrepancy"] < 1e-5


def test_condition_numbers(tour, data):
    m = tour[0]["metrics"]
    x, xc, _ = data
    varying = x.max(axis=0) > x.min(axis=0)
    assert m["constant_pixels_dropped"] == int(np.sum(~varying))
    a = xc[:, varying]
    gram = a.T @ a
    np.testing.assert_allclose(m["cond_data"], np.linalg.cond(a), rtol=1e-3)
    # the Gram matrix is formed and decomposed in float32: accurate to about cond * eps
    np.testing.assert_allclose(m["cond_gram"], np.linalg.cond(gram), rtol=5e-2)
    np.testing.assert_allclose(m["cond_gram"], m["cond_data"] ** 2, rtol=5e-2)
    np.testing.assert_allclose(m["cond_gram_over_cond_data_squared"], 1.0, atol=5e-2)
    lam = m["ridge_lambda"]
    np.testing.assert_allclose(lam, linalg_tour.RIDGE * np.linalg.norm(a, 2) ** 2, rtol=1e-5)
    eye = np.eye(a.shape[1])
    np.testing.assert_allclose(
        m["cond_data_ridge"], np.linalg.cond(np.concatenate([a, np.sqrt(lam) * eye])), rtol=1e-3
    )
    np.testing.assert_allclose(m["cond_gram_ridge"], np.linalg.cond(gram + lam * eye), rtol=1e-3)
    assert m["cond_all_pixels"] > 1e6  # constant pixels: singular (inf, or huge in float32)
