"""The image compression experiment in quick mode, checked against numpy's SVD in float64.

The experiment runs once (module-scoped fixture); the reference decodes the same photograph,
takes numpy's SVD of every channel and computes reconstructions, PSNR and storage by hand.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from experiments import image_compression as exp
from jaxla.datasets._images import sample_image
from tests.experiments.helpers import record_from_command_line

CONFIG = {"mode": "quick", "seed": 0}
PNG = b"\x89PNG\r\n\x1a\n"

# Each experiment test module runs its experiment (tens of seconds on 2 cores): CI runs them in
# its second step, with the other slow tests.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("image_compression")
    return exp.run(dict(CONFIG), out_dir), out_dir


@pytest.fixture(scope="module")
def reference():
    """The quick image (float64) and numpy's SVD of each channel."""
    img = sample_image()[:: exp.QUICK_STRIDE, :: exp.QUICK_STRIDE].astype(np.float64)
    svds = [np.linalg.svd(img[..., c], full_matrices=False) for c in range(3)]
    return img, svds


def _reconstruct(reference, k, clip=True):
    svds = reference[1]
    rec = np.stack([(u[:, :k] * s[:k]) @ vt[:k] for u, s, vt in svds], axis=-1)
    return np.clip(rec, 0.0, 1.0) if clip else rec


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a - b) ** 2))


def test_module_constants():
    assert exp.NAME == "image_compression" == exp.__name__.rsplit(".", 1)[1]
    assert isinstance(exp.TITLE, str) and exp.TITLE
    assert exp.full_ranks(512)[:3] == (1, 2, 3) and exp.full_ranks(512)[-1] == 512
    assert set(range(1, 51)) <= set(exp.full_ranks(512))


def test_bad_config(tmp_path):
    with pytest.raises(ValueError, match=r"^experiments.image_compression.run: "
                                         r"`config\['mode'\]` must be one of 'quick', 'full', "
                                         r"got 'fast'$"):
        exp.run({"mode": "fast", "seed": 0}, tmp_path)


def test_result_structure_and_figures(result):
    res, out_dir = result
    assert set(res) == {"summary", "metrics", "figures", "tables"}
    json.dumps(res)
    assert [f["file"] for f in res["figures"]] == ["psnr_vs_rank.png", "reconstructions.png",
                                                   "spectrum_and_error.png"]
    for fig in res["figures"]:
        assert fig["caption"]
        assert (out_dir / fig["file"]).read_bytes()[:8] == PNG
    for table in res["tables"]:
        assert all(len(row) == len(table["columns"]) for row in table["rows"])


def test_psnr_and_storage_against_numpy(result, reference):
    m = result[0]["metrics"]
    img, _ = reference
    h, w, c = img.shape
    assert m["image_shape"] == [h, w, c] == [300, 256, 3]
    assert m["ranks"] == list(exp.QUICK_RANKS)
    for k, p, r in zip(m["ranks"], m["psnr_db"], m["storage_ratio"], strict=True):
        np.testing.assert_allclose(r, k * (h + w + 1) / (h * w), rtol=1e-12)
        if k < min(h, w):  # at full rank the PSNR measures float32 rounding only
            np.testing.assert_allclose(p, _psnr(img, _reconstruct(reference, k)), atol=2e-3)
    assert m["break_even_rank"] == max(k for k in range(1, min(h, w) + 1)
                                       if k * (h + w + 1) <= h * w)
    k30 = m["rank_for_30db"]["Grace Hopper (RGB)"]
    psnrs = {k: _psnr(img, _reconstruct(reference, k)) for k in m["ranks"]}
    assert k30 == min(k for k in m["ranks"] if psnrs[k] >= exp.PSNR_TARGET)
    assert m["psnr_30db_below_break_even"] == (k30 <= m["break_even_rank"])


def test_eckart_young_and_clipping(result, reference):
    m = result[0]["metrics"]
    img, svds = reference
    assert m["eckart_young_holds"] and m["eckart_young_max_discrepancy"] < 1e-5
    assert m["clipping_never_hurts"] and m["psnr_increases_with_rank"]
    assert m["svd_compress_matches_sweep"]
    (table,) = result[0]["tables"]
    norm = np.linalg.norm(img)
    for row in table["rows"]:
        k = row[0]
        tail = np.sqrt(sum(np.sum(s[k:] ** 2) for _, s, _ in svds)) / norm
        np.testing.assert_allclose(row[5], tail, rtol=1e-4, atol=1e-6)
        err = np.linalg.norm(_reconstruct(reference, k, clip=False) - img) / norm
        np.testing.assert_allclose(row[4], err, rtol=1e-4, atol=1e-6)


def test_command_line_records_the_run(result, tmp_path, monkeypatch, capsys):
    """``experiment_main`` on this module: results.json and the report (run() reused)."""
    record, run_dir = record_from_command_line(exp, result, CONFIG, tmp_path, monkeypatch)
    assert record["result"]["metrics"]["ranks"] == result[0]["metrics"]["ranks"]
    assert (run_dir / "report.html").is_file()
    capsys.readouterr()
