"""The attention experiment in a reduced configuration, checked against corpus statistics."""

from __future__ import annotations

import collections
import itertools
import json
import math

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("optax")

from experiments import attention

# The experiment trains a model (about half a minute on 2 cores): CI runs this module in its
# second step, with the other slow tests.
pytestmark = pytest.mark.slow

# A 1-block model trained for 100 steps, and two short sequence lengths: about half a minute.
REDUCED = {
    "mode": "quick", "seed": 0, "d_model": 32, "num_heads": 2, "num_layers": 1, "seq_len": 32,
    "batch_size": 16, "steps": 100, "steps_per_call": 25, "warmup_steps": 10,
    "eval_windows": 16, "sample_tokens": 16, "snippet_len": 16, "scaling_lengths": [64, 128],
    "chunk_size": 32, "timing_repeats": 1,
}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("attention")
    return attention.run(dict(REDUCED), out_dir), out_dir


@pytest.fixture(scope="module")
def corpus():
    return attention.load_corpus()


def test_module_constants_and_corpus(corpus):
    assert attention.NAME == "attention" and isinstance(attention.TITLE, str)
    train, heldout = corpus
    assert len(train) > 100_000 and len(heldout) > 10_000
    assert all(c == "\n" or 32 <= ord(c) < 127 for c in train + heldout)
    assert attention.load_corpus() == corpus  # deterministic


def _unigram_entropy(text):
    counts = collections.Counter(text)
    n = sum(counts.values())
    return -sum(c / n * math.log(c / n) for c in counts.values())


def _bigram_cross_entropy(train, heldout, vocab):
    pairs = collections.Counter(itertools.pairwise(train))
    firsts = collections.Counter(train[:-1])
    total = 0.0
    for a, b in itertools.pairwise(heldout):
        total -= math.log((pairs[(a, b)] + 1) / (firsts[a] + len(vocab)))
    return total / (len(heldout) - 1)


def test_loss_beats_the_unigram_entropy(result, corpus):
    m = result[0]["metrics"]
    train, heldout = corpus
    unigram = _unigram_entropy(train)
    np.testing.assert_allclose(m["unigram_entropy"], unigram, rtol=1e-9)
    assert m["final_heldout_loss"] < unigram
    assert m["final_train_loss"] < unigram
    assert m["final_heldout_loss"] < m["initial_heldout_loss"] - 1.0
    vocab = sorted(set(train) | set(heldout))
    assert m["vocab_size"] == len(vocab)
    np.testing.assert_allclose(m["bigram_heldout_cross_entropy"],
                               _bigram_cross_entropy(train, heldout, vocab), rtol=1e-9)
    np.testing.assert_allclose(m["final_heldout_bits_per_char"],
                               m["final_heldout_loss"] / math.log(2))
    assert m["steps"] == 100 and m["train_step_traces"] == 1  # compiled once, no retracing


def test_decoding_and_samples(result):
    res = result[0]
    m = res["metrics"]
    assert m["cache_vs_full_max_abs_logit_diff"] < 1e-4 * max(1.0, m["cache_vs_full_max_abs_logit"])
    assert m["cache_vs_full_same_argmax"] is True
    assert m["greedy_cache_matches_full_recompute"] is True
    (samples,) = [t for t in res["tables"] if t["title"].startswith("Samples")]
    assert len(samples["rows"]) == 4
    for prompt, _, text in samples["rows"]:
        assert text.startswith(prompt) and len(text) == len(prompt) + REDUCED["sample_tokens"]
    assert len(m["attention_entropy_per_block"]) == REDUCED["num_layers"]
    # attention rows have entropy between 0 and log(T)
    assert all(0 <= h <= math.log(REDUCED["snippet_len"]) for h in m["attention_entropy_per_block"])


def test_scaling_measurements(result):
    res = result[0]
    (table,) = [t for t in res["tables"] if t["title"].startswith("Naive vs chunked")]
    cols = table["columns"]
    rows = [dict(zip(cols, r, strict=True)) for r in table["rows"]]
    assert [r["T"] for r in rows] == REDUCED["scaling_lengths"]
    naive = [r["naive fwd (MiB)"] for r in rows]
    chunked = [r["chunked fwd (MiB)"] for r in rows]
    # the (T, T) weights: doubling T at least triples the naive temporaries
    assert naive[1] > 3 * naive[0]
    assert chunked[1] < naive[1]
    assert all(r["max |diff|"] < 1e-5 for r in rows)
    assert all(r["naive (ms)"] > 0 and r["chunked (ms)"] > 0 for r in rows)


def test_result_structure_and_figures(result):
    res, out_dir = result
    assert set(res) == {"summary", "metrics", "figures", "tables"}
    json.dumps(res, allow_nan=False)
    files = [f["file"] for f in res["figures"]]
    assert files == ["loss_curve.png", "attention_weights.png", "attention_scaling.png"]
    for fig in res["figures"]:
        assert fig["caption"]
        assert (out_dir / fig["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_config(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"^experiments.attention.run: `config\['mode'\]` must be one of 'quick', 'full', "
              r"got 'fast'$",
    ):
        attention.run({"mode": "fast", "seed": 0}, tmp_path)
    with pytest.raises(
        ValueError, match=r"^experiments.attention.run: `config` has an unknown entry 'stpes'"
    ):
        attention.run({"mode": "quick", "seed": 0, "stpes": 3}, tmp_path)
    with pytest.raises(
        ValueError, match=r"^experiments.attention.run: `config\['steps'\]` must be >= 1, got 0$"
    ):
        attention.run({"mode": "quick", "seed": 0, "steps": 0}, tmp_path)
