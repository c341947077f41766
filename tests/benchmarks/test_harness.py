"""The benchmark harness: record structure, RESULTS.md rendering, suite discovery, the runner.

No timing is asserted: only that times exist, are positive and that derived numbers (ratio,
GFLOP/s) are computed from them consistently.
"""

import json
import os
import sys
import types

import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import __main__ as runner
from benchmarks import harness as H

N = 32
FLOPS = 2.0 * N**3


@pytest.fixture(scope="module")
def data():
    a = np.random.default_rng(0).standard_normal((N, N)).astype(np.float32)
    return a, a.astype(np.float64) @ a.astype(np.float64)


def _toy_case(a, ref, name="matmul"):
    def broken(x):
        raise RuntimeError("anchor exploded")

    return H.Case(
        name=name,
        size=f"{N}x{N}",
        label="jnp.matmul",
        fn=lambda x: jnp.matmul(x, x),
        args=(a,),
        anchors=[H.Anchor("numpy.matmul", lambda x: x @ x, (a,)), H.Anchor("broken", broken, (a,))],
        accuracy=lambda out: H.rel_error(out, ref),
        metric="relative Frobenius error",
        flops=FLOPS,
        note="a toy case",
    )


@pytest.fixture(scope="module")
def record(data):
    a, ref = data
    return H.run_suite("toy", [_toy_case(a, ref)], repeats=2, peak=None, log=lambda msg: None)


def test_record_structure(record, data):
    a, ref = data
    assert record["suite"] == "toy"
    assert record["repeats"] == 2 and record["quick"] is False
    for key in ("machine", "versions", "blas", "env", "env_removed", "date", "wall_s"):
        assert key in record
    assert len(record["load_average_before"]) == 3
    background = record["cases"][0]["background_cores"]
    assert background is None or 0 <= background <= os.cpu_count() + 1
    assert record["max_background_cores"] == background
    assert record["machine"]["cores"] == os.cpu_count()
    assert record["versions"]["numpy"] == np.__version__
    (case,) = record["cases"]
    assert (case["name"], case["size"], case["dtype"]) == ("matmul", f"{N}x{N}", "float32")
    assert case["metric"] == "relative Frobenius error" and case["flops"] == FLOPS

    j = case["jaxla"]
    assert j["error"] is None and j["label"] == "jnp.matmul"
    assert len(j["times_ms"]) == 2 and all(t > 0 for t in j["times_ms"])
    assert j["median_ms"] == pytest.approx(np.median(j["times_ms"]))
    assert j["min_ms"] == pytest.approx(min(j["times_ms"]))
    assert j["iqr_ms"] >= 0
    assert j["compile_ms"] > 0
    assert j["gflops"] == pytest.approx(FLOPS / (j["median_ms"] * 1e6))
    # Accuracy is the case's metric applied to the output: float32 matmul vs float64 reference.
    expected = np.linalg.norm(a @ a - ref) / np.linalg.norm(ref)
    assert j["accuracy"] == pytest.approx(expected, rel=1.0, abs=1e-6)
    assert 0 <= j["accuracy"] < 1e-5

    ok, bad = case["anchors"]
    assert ok["label"] == "numpy.matmul" and ok["error"] is None
    assert ok["compile_ms"] is None and len(ok["times_ms"]) == 2
    assert ok["ratio"] == pytest.approx(j["median_ms"] / ok["median_ms"])
    assert 0 <= ok["accuracy"] < 1e-5
    assert bad["label"] == "broken"
    assert bad["error"] == "RuntimeError: anchor exploded"
    assert bad["ratio"] is None
    json.dumps(record)  # JSON-ready


def test_failing_jaxla_side_and_accuracy_are_recorded(data):
    a, _ = data
    case = H.Case(
        name="bad",
        size="1",
        fn=lambda x: jnp.linalg.no_such_function(x),
        args=(a,),
        anchors=[
            H.Anchor(
                "numpy.sum", np.sum, (a,), accuracy=lambda out: 1 / 0, info=lambda out: {"sum": out}
            )
        ],
        accuracy=lambda out: 0.0,
        metric="none",
    )
    res = H.run_case(case, repeats=1)
    assert "info" not in res["jaxla"]
    assert res["anchors"][0]["info"] == {"sum": pytest.approx(float(np.sum(a)))}
    text = H.render_markdown([{"suite": "s", "cases": [res]}])
    assert "- `bad 1 numpy.sum`: sum=" in text and "accuracy failed: ZeroDivisionError" in text
    assert res["jaxla"]["error"].startswith("AttributeError")
    assert res["jaxla"]["label"] == "bad"
    (anchor,) = res["anchors"]
    assert anchor["ratio"] is None and anchor["error"] is None
    assert anchor["accuracy"] is None
    assert anchor["accuracy_error"] == "ZeroDivisionError: division by zero"


def test_disturbed_case_runs_again(monkeypatch, data):
    a, _ = data
    busy = iter([1.5, 0.0])
    monkeypatch.setattr(H, "_background_cores", lambda start, end: next(busy))
    monkeypatch.setattr(H, "wait_until_quiet", lambda max_background: 0.0)
    case = H.Case("sum", "1", np.sum, (a,), [], accuracy=lambda out: 0.0, metric="m", jit=False)
    record = H.run_suite("s", [case], repeats=1, max_background=0.2, retries=3, log=lambda m: None)
    (res,) = record["cases"]
    assert res["attempts"] == 2 and res["background_cores"] == 0.0
    assert record["max_background"] == 0.2 and record["max_background_cores"] == 0.0


def test_render_markdown(record):
    text = H.render_markdown([record])
    assert text.startswith("# Benchmark results\n")
    assert "## Machine and versions" in text and "## toy" in text
    assert f"numpy {np.__version__}" in text
    assert "| " + " | ".join(H.COLUMNS) + " |" in text
    rows = [line for line in text.splitlines() if line.startswith(f"| matmul | {N}x{N} |")]
    assert len(rows) == 2
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert len(cells) == len(H.COLUMNS)
    j, ok = record["cases"][0]["jaxla"], record["cases"][0]["anchors"][0]
    assert cells[5] == "numpy.matmul"
    assert float(cells[3].replace(",", "")) == pytest.approx(j["median_ms"], rel=0.01)
    assert float(cells[7]) == pytest.approx(ok["ratio"], abs=0.006)
    assert "failed: RuntimeError: anchor exploded" in rows[1]
    assert "- `matmul`: relative Frobenius error" in text
    assert "- `matmul`: a toy case" in text
    assert "median of 2 runs" in text


def test_render_markdown_without_results():
    assert "No results yet" in H.render_markdown([])


def test_files_keep_other_suites(record, tmp_path):
    other = {**record, "suite": "another", "quick": True}
    H.write_suite_json(record, tmp_path)
    H.write_suite_json(other, tmp_path)
    md = H.write_markdown(tmp_path, tmp_path / "RESULTS.md")
    loaded = H.load_results(tmp_path)
    assert [r["suite"] for r in loaded] == ["another", "toy"]
    assert loaded[1] == json.loads(json.dumps(record))
    text = md.read_text()
    assert "## another" in text and "## toy" in text
    assert "quick (smoke-test sizes" in text
    # Rewriting one suite regenerates the page with both sections.
    H.write_suite_json({**record, "repeats": 7}, tmp_path)
    text = H.write_markdown(tmp_path, tmp_path / "RESULTS.md").read_text()
    assert "## another" in text and "median of 7 runs" in text
    assert not list(tmp_path.glob("*.tmp"))


def test_accuracy_helpers():
    x = np.array([1.0, 2.0, -4.0], dtype=np.float32)
    ref = np.array([1.0, 2.5, -5.0])
    assert H.rel_error(x, ref) == pytest.approx(np.linalg.norm(x - ref) / np.linalg.norm(ref))
    assert H.max_rel_error(x, ref) == pytest.approx(0.2)
    assert H.max_rel_error(x, ref, scale=10.0) == pytest.approx(0.1)
    assert H.max_abs_error(x, ref) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"rel_error: shapes differ, \(3,\) vs \(2,\)"):
        H.rel_error(x, ref[:2])


def test_time_callable_validates_repeats():
    with pytest.raises(ValueError, match="need repeats >= 1 and warmup >= 0, got 0, 1"):
        H.time_callable(np.sum, (np.ones(3),), jit=False, repeats=0)


def test_matmul_peak_keys():
    peak = H.matmul_peak(64, repeats=2)
    assert peak["n"] == 64 and peak["dtype"] == "float32"
    assert peak["jax_gflops"] > 0 and peak["numpy_gflops"] > 0
    assert peak["jax_gflops"] == pytest.approx(2 * 64**3 / (peak["jax_median_ms"] * 1e6))


def test_discovery_finds_suites_not_helpers():
    suites, failures = H.discover_suites()
    assert "linalg" in suites
    assert suites["linalg"].SUITE == "linalg"
    assert "harness" not in suites and "__main__" not in suites
    assert all(callable(m.cases) for m in suites.values())
    assert "harness" not in failures


def test_runner_writes_json_and_markdown(monkeypatch, tmp_path, data):
    a, ref = data
    fake = types.ModuleType("benchmarks.fake")
    fake.SUITE = "fake"
    fake.cases = lambda quick: [_toy_case(a, ref, name="small" if quick else "big")]
    monkeypatch.setattr(H, "discover_suites", lambda: ({"fake": fake}, {}))
    assert runner.main(["nope", "--out", str(tmp_path)]) == 2
    assert runner.main(["--quick", "--repeats", "2", "--no-peak", "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "fake.json").read_text())
    assert saved["quick"] is True and saved["repeats"] == 2 and saved["matmul_peak"] is None
    assert [c["name"] for c in saved["cases"]] == ["small"]
    assert "## fake" in (tmp_path / "RESULTS.md").read_text()


def test_reexec_removes_openblas_overrides(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execve", lambda exe, argv, env: calls.append((exe, argv, env)))
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Prescott")
    monkeypatch.delenv("OPENBLAS_L2_SIZE", raising=False)
    runner._reexec_without_blas_overrides(["linalg"])
    assert calls == []  # numpy is already imported here: too late to change its BLAS
    monkeypatch.delitem(sys.modules, "numpy")
    runner._reexec_without_blas_overrides(["linalg", "--keep-env"])
    assert calls == []
    runner._reexec_without_blas_overrides(["linalg"])
    ((exe, argv, env),) = calls
    assert exe == sys.executable and argv == [sys.executable, "-m", "benchmarks", "linalg"]
    assert "OPENBLAS_CORETYPE" not in env
    assert json.loads(env[runner.REMOVED_VAR]) == {"OPENBLAS_CORETYPE": "Prescott"}
