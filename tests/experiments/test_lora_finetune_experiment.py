"""The lora_finetune experiment: its data split and configuration checks (fast), and quick mode
run once through its command line (slow), checked against independent recomputations.

Trained-parameter counts are recomputed here from the parameter shapes the configuration
implies (dense layers, transformer blocks, adapters ``r * (d_in + d_out)``), and optimizer-state
bytes from Adam's two float32 moments per trained parameter plus its int32 step count.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")
pytest.importorskip("optax")

from experiments import lora_finetune as lf
from experiments import runner
from tests.experiments.helpers import assert_finite, help_text

CONFIG = {"mode": "quick", "seed": 0}
FIGURES = ["accuracy_vs_trained.png", "learning_curves.png", "cost.png"]
_FN = r"^experiments\.lora_finetune\.run: "


# ------------------------------------------------------------------------------- data, config


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.asarray(d.data, np.float64) / 16.0, np.asarray(d.target)


def _rows(x):
    """The images of ``x`` as a sorted list of byte strings (a multiset of rows)."""
    return sorted(row.tobytes() for row in np.asarray(x, np.float64))


def test_module_constants():
    assert lf.NAME == "lora_finetune" and isinstance(lf.TITLE, str) and lf.TITLE
    assert lf.ACCEPT_RANK in lf.QUICK["ranks"] and lf.ACCEPT_RANK in lf.FULL["ranks"]


def test_load_data_splits_the_digits(digits):
    x, y = digits
    data = lf.load_data(CONFIG)
    q = lf.QUICK
    for part in data:
        xs, ys = part
        assert xs.dtype == np.float32 and xs.shape == (len(ys), 64) and ys.dtype == np.int32
        assert xs.min() >= 0.0 and xs.max() <= 1.0
        assert ys.min() >= 0 and ys.max() <= 4
    # pretraining: every image of 0-4 exactly once, 15% held out
    pre_x = np.concatenate([data.pre_train[0], data.pre_test[0]])
    pre_y = np.concatenate([data.pre_train[1], data.pre_test[1]])
    assert _rows(pre_x) == _rows(x[y < 5])
    assert np.array_equal(np.bincount(pre_y), np.bincount(y[y < 5]))
    assert len(data.pre_test[1]) == round(0.15 * np.sum(y < 5))
    # shifted task: every image of 5-9 exactly once, labels digit - 5
    parts = (data.train, data.val, data.test)
    all_x = np.concatenate([p[0] for p in parts])
    assert _rows(all_x) == _rows(x[y >= 5])
    for p, per_class in ((data.train, q["train_per_class"]), (data.val, q["val_per_class"])):
        assert np.array_equal(np.bincount(p[1], minlength=5), np.full(5, per_class))
    want_test = np.bincount(y[y >= 5] - 5) - q["train_per_class"] - q["val_per_class"]
    assert np.array_equal(np.bincount(data.test[1], minlength=5), want_test)
    for p in parts:  # labels follow the images
        lookup = {row.tobytes(): label for row, label in zip(x, y, strict=True)}
        assert all(lookup[row.astype(np.float64).tobytes()] == label + 5
                   for row, label in zip(p[0], p[1], strict=True))
    # deterministic for a seed, another seed gives another split
    again = lf.load_data(CONFIG)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
               for a, b in zip(data, again, strict=True))
    other = lf.load_data({"mode": "quick", "seed": 1})
    assert not np.array_equal(other.train[0], data.train[0])


def test_patches_are_row_major_squares():
    import jax.numpy as jnp

    x = np.arange(2 * 64, dtype=np.float32).reshape(2, 64)
    for p in (1, 2, 4, 8):
        got = np.asarray(lf._patches(jnp.asarray(x), p))
        img = x.reshape(2, 8, 8)
        want = np.stack([np.stack([img[b, i:i + p, j:j + p].reshape(-1)
                                   for i in range(0, 8, p) for j in range(0, 8, p)])
                         for b in range(2)])
        np.testing.assert_array_equal(got, want)


def test_score_is_accuracy_and_mean_cross_entropy():
    """The reported accuracies and training loss, against numpy on the same logits."""
    import jax

    model = lf._make_models(lf.QUICK)["mlp"]
    params = model.init(jax.random.key(0), 5)
    rng = np.random.default_rng(0)
    x = rng.random((40, 64)).astype(np.float32)
    y = rng.integers(0, 5, 40).astype(np.int32)
    acc, loss = lf._score(model, params, (x, y))
    z = np.asarray(model.apply(params, x), np.float64)
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    assert acc == np.mean(z.argmax(axis=1) == y)
    np.testing.assert_allclose(loss, -np.mean(logp[np.arange(40), y]), rtol=1e-5)


@pytest.mark.parametrize(("override", "exc", "message"), [
    ({"mode": "fast"}, ValueError, r"`config\['mode'\]` must be one of 'quick', 'full', got "
                                   r"'fast'$"),
    ({"stpes": 3}, ValueError, r"`config` has an unknown entry 'stpes'; known: "),
    ({"mlp_steps": 0}, ValueError, r"`config\['mlp_steps'\]` must be >= 1, got 0$"),
    ({"mlp_steps": 30}, ValueError, r"`config\['mlp_steps'\]` must be a multiple of "
                                    r"eval_every=25, got 30$"),
    ({"ranks": [1, 4]}, ValueError, r"`config\['ranks'\]` must include the acceptance rank 8, "
                                    r"got \[1, 4\]$"),
    ({"ranks": []}, ValueError, r"`config\['ranks'\]` must be a non-empty list of ints, got "
                                r"\[\]$"),
    ({"mlp_lrs": {"full": [1e-3]}}, ValueError,
     r"`config\['mlp_lrs'\]` must be a dict with the keys \['full', 'head', 'lora', 'pissa'\], "
     r"got \{'full': \[0.001\]\}$"),
    ({"transformer_lrs": {"full": [1e-3], "head": [-1.0], "lora": [1e-2], "pissa": [1e-2]}},
     ValueError, r"`config\['transformer_lrs'\]\['head'\]` must be > 0 and finite, got -1.0$"),
    ({"transformer_d_model": 150}, ValueError,
     r"`config\['transformer_d_model'\]` must be a multiple of transformer_heads=4, got 150$"),
    ({"transformer_patch": 3}, ValueError,
     r"`config\['transformer_patch'\]` must divide the image side 8, got 3$"),
    ({"transformer_targets": "*/w"}, ValueError,
     r"`config\['transformer_targets'\]` must be a non-empty list of glob patterns, got '\*/w'$"),
    ({"gap_seeds": 1}, ValueError, r"`config\['gap_seeds'\]` must be >= 2, got 1$"),
    ({"seed": 1.5}, TypeError, r"`config\['seed'\]` must be an int, got 1.5 \(float\)$"),
    ({"train_per_class": 100, "val_per_class": 70}, ValueError,
     r"`config\['train_per_class'\] \+ config\['val_per_class'\]` must leave at least 20 test "
     r"images of each digit \(182 images of the digit 5\), got 100 \+ 70$"),
])
def test_bad_config(override, exc, message, tmp_path):
    with pytest.raises(exc, match=_FN + message):
        lf.run({**CONFIG, **override}, tmp_path)


# ------------------------------------------------------------------------------- quick mode


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """Quick mode through ``python -m experiments.lora_finetune``'s entry point, in process."""
    out = tmp_path_factory.mktemp("lora_finetune")
    code = runner.experiment_main(lf, ["--quick", "--seed", "0", "--out", str(out)])
    (results_path,) = out.glob(f"*/{runner.RESULTS_FILE}")
    record = json.loads(results_path.read_text())["experiments"][lf.NAME]
    assert code == 0 and record["status"] == "ok", record["error"]
    assert record["config"] == CONFIG
    return record["result"], results_path.parent / lf.NAME


def _dense(d_in, d_out):
    return d_in * d_out + d_out


def _expected_counts(name):
    """(model parameters, {method: trained parameters}, {method: adapter parameters}) from the
    shapes the quick configuration implies."""
    q = lf.QUICK
    ranks = [*q["ranks"], q["pissa_rank"]]
    kinds = [*(f"lora_r{r}" for r in q["ranks"]), f"pissa_r{q['pissa_rank']}"]
    if name == "mlp":
        widths = [64, *q["mlp_hidden"], 5]
        n = sum(_dense(a, b) for a, b in itertools.pairwise(widths))
        head = _dense(widths[-2], 5)
        targets = list(itertools.pairwise(widths[:-1]))  # the hidden layers' weights
    else:
        d, p, layers = q["transformer_d_model"], q["transformer_patch"], q["transformer_layers"]
        block = 4 * d * d + _dense(d, 4 * d) + _dense(4 * d, d) + 2 * 2 * d  # attention, ffn,
        n = _dense(p * p, d) + (8 // p) ** 2 * d + layers * block + 2 * d + _dense(d, 5)  # norms
        head = _dense(d, 5)
        assert q["transformer_targets"] == ["position_embedding/table", "*/attention/value/w"]
        targets = [((8 // p) ** 2, d)] + [(d, d)] * layers  # the position table, the values
    adapters = {k: sum(r * (a + b) for a, b in targets) for k, r in zip(kinds, ranks,
                                                                       strict=True)}
    trained = {"full": n, "head": head, **{k: v + head for k, v in adapters.items()}}
    return n, trained, adapters


@pytest.mark.slow
def test_result_structure_and_figures(result):
    res, out_dir = result
    assert set(res) == {"summary", "metrics", "figures", "tables"}
    json.dumps(res, allow_nan=False)
    assert_finite(res["metrics"])
    assert [f["file"] for f in res["figures"]] == FIGURES
    for fig in res["figures"]:
        assert fig["caption"]
        assert (out_dir / fig["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the adapters were saved into a temporary directory, removed afterwards
    assert not [p for p in out_dir.iterdir() if p.is_dir()]
    assert not list(out_dir.glob("*.npz"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_trained_parameters_and_optimizer_state(result, name):
    m = result[0]["metrics"]
    n, trained, adapters = _expected_counts(name)
    assert m[f"{name}_params"] == n
    methods = m[f"{name}_methods"]
    assert list(methods) == ["full", "head", *(f"lora_r{r}" for r in lf.QUICK["ranks"]),
                             f"pissa_r{lf.QUICK['pissa_rank']}"]
    for meth, row in methods.items():
        assert row["n_trainable"] == trained[meth], meth
        total = n + adapters.get(meth, 0)  # frozen base + adapters + head
        assert row["n_total"] == total, meth
        assert row["fraction"] == pytest.approx(trained[meth] / total, rel=1e-12)
        if meth in adapters:
            assert row["adapter_params"] == adapters[meth]
        # Adam: two float32 moments per trained parameter, and an int32 step count
        assert row["opt_bytes"] == 2 * 4 * trained[meth] + 4, meth
        assert row["step_seconds"] > 0


@pytest.mark.slow
def test_accuracies_gaps_and_acceptance(result):
    res = result[0]
    m = res["metrics"]
    n_test, n_val = m["n_shift_test"], m["n_shift_val"]
    for name in ("mlp", "transformer"):
        methods = m[f"{name}_methods"]
        for meth, row in methods.items():
            for acc, size in ((row["test_accuracy"], n_test), (row["val_accuracy"], n_val)):
                assert 0.0 <= acc <= 1.0
                assert abs(acc * size - round(acc * size)) < 1e-9, (name, meth)  # k / n
        # fine-tuning learns the new classes, far above chance (20%)
        assert methods["full"]["test_accuracy"] > 0.85
        assert m[f"{name}_pretrain_test_accuracy"] > 0.9
    tf = m["transformer_methods"]
    frac = tf["lora_r8"]["fraction"]
    gap = 100 * (tf["full"]["test_accuracy"] - tf["lora_r8"]["test_accuracy"])
    assert m["acceptance_transformer_r8_trained_fraction"] == frac
    assert m["transformer_lora_r8_gap_points"] == pytest.approx(gap, abs=1e-9)
    assert m["acceptance_transformer_r8_trained_at_most_1pct"] is True and frac <= 0.01
    # the acceptance gap: the mean over gap_seeds seeds, the first being the run above
    rows = m["transformer_lora_r8_gap_by_seed"]
    assert [r["seed"] for r in rows] == list(range(lf.QUICK["gap_seeds"]))
    first = rows[0]
    assert (first["full_test_accuracy"], first["lora_test_accuracy"]) == (
        tf["full"]["test_accuracy"], tf["lora_r8"]["test_accuracy"])
    assert (first["full_lr"], first["lora_lr"]) == (tf["full"]["lr"], tf["lora_r8"]["lr"])
    for r in rows:
        assert r["full_lr"] in lf.QUICK["transformer_lrs"]["full"]
        assert r["lora_lr"] in lf.QUICK["transformer_lrs"]["lora"]
        for acc in (r["full_test_accuracy"], r["lora_test_accuracy"]):
            assert abs(acc * n_test - round(acc * n_test)) < 1e-9  # the same test-set size
        assert r["gap_points"] == pytest.approx(
            100 * (r["full_test_accuracy"] - r["lora_test_accuracy"]), abs=1e-9)
        assert r["full_test_accuracy"] > 0.85  # every seed's full fine-tuning learns the task
    gaps = np.array([100 * (r["full_test_accuracy"] - r["lora_test_accuracy"]) for r in rows])
    mean, se = gaps.mean(), gaps.std(ddof=1) / np.sqrt(len(gaps))
    assert m["acceptance_transformer_lora_r8_mean_gap_points"] == pytest.approx(mean, abs=1e-9)
    assert m["acceptance_transformer_lora_r8_gap_stderr_points"] == pytest.approx(se, abs=1e-9)
    assert m["acceptance_transformer_lora_r8_within_2_points"] is bool(mean <= 2.0)
    # the per-seed table shows the same numbers
    (table,) = [t for t in res["tables"] if "seeds (each: its own data split" in t["title"]]
    assert [row[0] for row in table["rows"]] == [r["seed"] for r in rows]
    np.testing.assert_allclose([row[-1] for row in table["rows"]], gaps, atol=1e-9)
    mlp = m["mlp_methods"]
    mlp_gap = 100 * (mlp["full"]["test_accuracy"] - mlp["lora_r8"]["test_accuracy"])
    assert m["mlp_lora_r8_gap_points"] == pytest.approx(mlp_gap, abs=1e-9)
    assert m["mlp_lora_r8_within_2_points"] is (mlp_gap <= 2.0)


@pytest.mark.slow
def test_acceptance_lora_r8_within_2_points_of_full_fine_tuning(result):
    m = result[0]["metrics"]
    assert m["acceptance_transformer_lora_r8_mean_gap_points"] <= 2.0
    assert m["acceptance_transformer_lora_r8_within_2_points"] is True


@pytest.mark.slow
def test_learning_rates_are_chosen_on_validation(result):
    res = result[0]
    m = res["metrics"]
    (grid,) = [t for t in res["tables"] if t["title"].startswith("Learning-rate grid")]
    for name in ("mlp", "transformer"):
        for meth, row in m[f"{name}_methods"].items():
            runs = [r for r in grid["rows"] if r[0] == name and r[1] == meth]
            kind = row["kind"]
            assert [r[2] for r in runs] == lf.QUICK[f"{name}_lrs"][kind]
            # the best final validation accuracy, the lower validation loss breaking ties
            best = max(runs, key=lambda r: (r[3], -r[4]))
            assert best[2] == row["lr"], (name, meth)
            assert best[3] == pytest.approx(100 * row["val_accuracy"])


@pytest.mark.slow
def test_merge_and_save_load_checks(result):
    res = result[0]
    m = res["metrics"]
    assert m["check_merge_max_rel_diff"] < 1e-4
    assert m["adapters_save_load_identical"] is True
    (table,) = [t for t in res["tables"] if t["title"].startswith("Fine-tuned adapters")]
    cols = table["columns"]
    rows = [dict(zip(cols, r, strict=True)) for r in table["rows"]]
    adapted = [(name, meth) for name in ("mlp", "transformer")
               for meth in m[f"{name}_methods"] if meth.startswith(("lora", "pissa"))]
    assert [(r["model"], r["method"]) for r in rows] == adapted
    for r in rows:
        assert r["max |merged - factored| logit"] <= 1e-4 * max(1.0, r["max |logit|"])
        assert r["loaded bit-identical"] is True and r["max |output diff| after load"] == 0.0
        _, _, adapters = _expected_counts(r["model"])
        assert r["file bytes"] > 4 * adapters[r["method"]]  # float32 factors and metadata


@pytest.mark.slow
def test_method_tables_match_metrics(result):
    res = result[0]
    m = res["metrics"]
    for name, table in zip(("mlp", "transformer"), res["tables"][:2], strict=True):
        rows = [dict(zip(table["columns"], r, strict=True)) for r in table["rows"]]
        methods = m[f"{name}_methods"]
        assert [r["method"] for r in rows] == list(methods)
        for r in rows:
            row = methods[r["method"]]
            assert r["trained params"] == row["n_trainable"]
            assert r["trained (%)"] == pytest.approx(100 * row["fraction"])
            assert r["test accuracy (%)"] == pytest.approx(100 * row["test_accuracy"])
            assert r["train loss"] == pytest.approx(row["train_loss"])
            assert np.isfinite(row["train_loss"]) and row["train_loss"] >= 0.0
            assert r["optimizer state (bytes)"] == row["opt_bytes"]


@pytest.mark.slow
def test_command_line_help():
    text = help_text("experiments.lora_finetune")
    assert "--quick" in text and "--full" in text
