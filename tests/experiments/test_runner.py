"""Tests of the experiment runner, on small fake experiments (no JAX work, no matplotlib)."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import pytest

import experiments
from experiments import runner
from experiments.runner import RunnerError, run_experiments
from tests.experiments.helpers import ROOT, help_text


def _png(width: int = 3, height: int = 2) -> bytes:
    """A valid grey PNG image, written by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes([128] * width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def fake(name: str, calls: list | None = None, behaviour: dict | None = None) -> types.ModuleType:
    """A fake experiment module; ``behaviour[name]`` may be "fail", "interrupt", "bad", "nofig"."""
    calls = [] if calls is None else calls
    behaviour = {} if behaviour is None else behaviour
    mod = types.ModuleType(f"fake_{name}")
    mod.NAME = name
    mod.TITLE = f"Fake experiment {name}"

    def run(config: dict, out_dir: Path) -> dict:
        calls.append((name, dict(config), Path(out_dir)))
        what = behaviour.get(name)
        if what == "fail":
            raise RuntimeError(f"boom in {name}")
        if what == "interrupt":
            raise KeyboardInterrupt
        if what == "bad":
            return {"metrics": {}}
        (out_dir / "plot.png").write_bytes(_png())
        figures = [{"file": "missing.png" if what == "nofig" else "plot.png",
                    "caption": f"caption of {name}"}]
        return {
            "summary": f"{name} ran in {config['mode']} mode with seed {config['seed']}.",
            "metrics": {"seed": config["seed"], "half": np.float32(0.5), "inf": float("inf"),
                        "vector": np.arange(3)},
            "figures": figures,
            "tables": [{"title": f"table of {name}", "columns": ["k", "value"],
                        "rows": [[1, 2.5], [2, 0.125]]}],
        }

    mod.run = run
    return mod


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_run_records_results_and_writes_report(tmp_path, capsys):
    calls = []
    out = run_experiments([fake("alpha", calls), fake("beta", calls)], seed=3, out=tmp_path)
    assert out.exit_code == 0
    assert out.run_dir.parent == tmp_path
    assert re.fullmatch(r"\d{8}-\d{6}", out.run_dir.name)
    # each experiment got the config and its own output directory, in order
    assert [c[0] for c in calls] == ["alpha", "beta"]
    assert calls[0][1] == {"mode": "quick", "seed": 3}
    assert calls[0][2] == out.run_dir / "alpha"

    data = read_results(out.run_dir)
    assert data == out.results
    meta = data["run"]
    assert meta["mode"] == "quick" and meta["seed"] == 3 and meta["status"] == "finished"
    assert meta["total_seconds"] >= 0
    assert meta["versions"]["jax"] and meta["versions"]["numpy"] and meta["versions"]["python"]
    assert meta["device"].startswith("cpu x")
    assert meta["platform"]["cpu_count"] >= 1
    assert data["planned"] == ["alpha", "beta"]
    rec = data["experiments"]["alpha"]
    assert rec["status"] == "ok" and rec["error"] is None
    assert rec["title"] == "Fake experiment alpha"
    assert isinstance(rec["seconds"], float) and rec["seconds"] >= 0
    result = rec["result"]
    assert result["summary"] == "alpha ran in quick mode with seed 3."
    # numpy values become JSON numbers and lists; non-finite floats become strings
    assert result["metrics"] == {"seed": 3, "half": 0.5, "inf": "inf", "vector": [0, 1, 2]}
    assert result["figures"] == [
        {"file": "plot.png", "caption": "caption of alpha", "path": "alpha/plot.png"}
    ]
    assert (out.run_dir / "alpha" / "plot.png").is_file()

    report = out.report
    assert report == out.run_dir / "report.html" and report.is_file()
    page = report.read_text()
    for name in ("alpha", "beta"):
        assert f'<section id="exp-{name}">' in page
        assert f"Fake experiment {name}" in page
        assert f"caption of {name}" in page
        assert f"table of {name}" in page
    assert page.count("data:image/png;base64,") == 2
    assert "src=\"alpha/plot.png\"" not in page  # embedded, not linked
    assert "quick" in page and meta["versions"]["jax"] in page and meta["device"] in page
    # the report path is the last line printed
    assert last_line(capsys.readouterr().out) == f"Report: {report}"


def test_failure_is_recorded_and_others_still_run(tmp_path, capsys):
    calls = []
    exps = [fake(n, calls, {"beta": "fail"}) for n in ("alpha", "beta", "gamma")]
    out = run_experiments(exps, out=tmp_path)
    assert out.exit_code == 1
    assert [c[0] for c in calls] == ["alpha", "beta", "gamma"]
    recs = read_results(out.run_dir)["experiments"]
    assert [recs[n]["status"] for n in ("alpha", "beta", "gamma")] == ["ok", "failed", "ok"]
    assert recs["beta"]["result"] is None
    assert "Traceback" in recs["beta"]["error"]
    assert "RuntimeError: boom in beta" in recs["beta"]["error"]
    assert read_results(out.run_dir)["run"]["status"] == "failed"
    page = out.report.read_text()
    assert '<section id="exp-beta">' in page and "boom in beta" in page
    text = capsys.readouterr().out
    assert "beta: FAILED" in text and "RuntimeError: boom in beta" in text
    assert last_line(text) == f"Report: {out.report}"


@pytest.mark.parametrize(
    ("what", "message"),
    [("bad", "must return a 'summary' string"),
     ("nofig", "figure 0 must name a PNG file written into out_dir, got 'missing.png'")],
)
def test_malformed_result_is_a_failure(tmp_path, what, message):
    out = run_experiments([fake("alpha", behaviour={"alpha": what})], out=tmp_path)
    assert out.exit_code == 1
    rec = read_results(out.run_dir)["experiments"]["alpha"]
    assert rec["status"] == "failed"
    assert f"experiments.runner: experiment 'alpha' {message}" in rec["error"]


def test_results_rewritten_atomically_after_each_experiment(tmp_path, monkeypatch):
    replaced = []
    real_replace = runner.os.replace

    def spy_replace(src, dst):
        replaced.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(runner.os, "replace", spy_replace)
    seen = {}
    second = fake("beta")
    first_run = second.run

    def run_checking_previous(config, out_dir):
        # while beta runs, alpha is already recorded on disk
        seen.update(json.loads((out_dir.parent / "results.json").read_text()))
        return first_run(config, out_dir)

    second.run = run_checking_previous
    out = run_experiments([fake("alpha"), second], out=tmp_path)
    assert out.exit_code == 0
    assert seen["experiments"]["alpha"]["status"] == "ok"
    assert "beta" not in seen["experiments"]
    results_writes = [(s, d) for s, d in replaced if d.name == "results.json"]
    # start, after alpha, after beta, final status
    assert len(results_writes) == 4
    assert all(s.parent == d.parent and s != d for s, d in results_writes)
    assert sorted(p.name for p in out.run_dir.iterdir()) == [
        "alpha", "beta", "report.html", "results.json"
    ]


def test_write_json_atomic_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    runner.write_json_atomic(path, {"a": 1})
    with pytest.raises(ValueError, match="Out of range float values"):
        runner.write_json_atomic(path, {"a": float("nan")})

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(runner.os, "fsync", crash)  # fails after the new text was written
    with pytest.raises(OSError, match="disk full"):
        runner.write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_resume_skips_recorded_experiments(tmp_path):
    calls, behaviour = [], {"beta": "fail"}
    exps = [fake(n, calls, behaviour) for n in ("alpha", "beta")]
    first = run_experiments(exps, seed=5, out=tmp_path)
    assert first.exit_code == 1
    before = read_results(first.run_dir)

    behaviour.clear()  # beta works now
    calls.clear()
    second = run_experiments(exps, resume=first.run_dir)
    assert second.exit_code == 0
    assert second.run_dir == first.run_dir
    assert [c[0] for c in calls] == ["beta"]  # alpha was recorded as ok: skipped
    assert calls[0][1] == {"mode": "quick", "seed": 5}  # the recorded run's config
    after = read_results(first.run_dir)
    assert after["experiments"]["alpha"] == before["experiments"]["alpha"]
    assert after["experiments"]["beta"]["status"] == "ok"
    assert after["run"]["sessions"] == 2 and after["run"]["status"] == "finished"
    assert after["run"]["started"] == before["run"]["started"]
    assert after["run"]["total_seconds"] >= before["run"]["total_seconds"]
    assert list(tmp_path.iterdir()) == [first.run_dir]  # no new run directory

    calls.clear()
    third = run_experiments(exps, resume=first.run_dir)
    assert third.exit_code == 0 and calls == []


def test_resume_errors(tmp_path):
    first = run_experiments([fake("alpha")], seed=1, out=tmp_path)
    with pytest.raises(
        RunnerError,
        match=r"^experiments.runner: `--resume` continues a run with mode='quick'; "
              r"got a different mode='full'$",
    ):
        run_experiments([fake("alpha")], mode="full", resume=first.run_dir)
    with pytest.raises(RunnerError, match="continues a run with seed=1; got a different seed=2"):
        run_experiments([fake("alpha")], seed=2, resume=first.run_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        RunnerError,
        match=re.escape(f"`--resume` expected a run directory with results.json, got '{empty}'"),
    ):
        run_experiments(resume=empty)


def test_keyboard_interrupt_saves_and_exits_130(tmp_path, capsys):
    calls = []
    exps = [fake(n, calls, {"beta": "interrupt"}) for n in ("alpha", "beta", "gamma")]
    out = run_experiments(exps, out=tmp_path)
    assert out.exit_code == 130
    assert [c[0] for c in calls] == ["alpha", "beta"]
    data = read_results(out.run_dir)
    assert data["run"]["status"] == "interrupted"
    assert data["experiments"]["alpha"]["status"] == "ok"
    assert data["experiments"]["beta"]["status"] == "interrupted"
    assert data["experiments"]["beta"]["title"] == "Fake experiment beta"
    assert "gamma" not in data["experiments"]
    page = out.report.read_text()
    assert '<section id="exp-gamma">' in page and "not run" in page
    assert last_line(capsys.readouterr().out) == f"Report: {out.report}"

    # resuming runs what was interrupted or never started
    calls.clear()
    again = run_experiments(
        [fake(n, calls) for n in ("alpha", "beta", "gamma")], resume=out.run_dir
    )
    assert again.exit_code == 0
    assert [c[0] for c in calls] == ["beta", "gamma"]


def test_run_directories_are_unique(tmp_path):
    dirs = {run_experiments([fake("alpha")], out=tmp_path).run_dir for _ in range(3)}
    assert len(dirs) == 3
    assert all(re.fullmatch(r"\d{8}-\d{6}(-\d+)?", d.name) for d in dirs)


def test_bad_requests(tmp_path):
    with pytest.raises(RunnerError, match=r"unknown experiment 'nope'; registered: linalg_tour"):
        run_experiments(["nope"], out=tmp_path)
    with pytest.raises(RunnerError, match=r"`mode` must be one of 'quick', 'full', got 'slow'"):
        run_experiments([fake("alpha")], mode="slow", out=tmp_path)
    with pytest.raises(RunnerError, match=r"each experiment may be named once"):
        run_experiments([fake("alpha"), fake("alpha")], out=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_registry():
    assert experiments.EXPERIMENTS[0] == "linalg_tour"
    assert len(set(experiments.EXPERIMENTS)) == len(experiments.EXPERIMENTS)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in experiments.EXPERIMENTS)


def test_main_uses_registry(tmp_path, monkeypatch, capsys):
    calls = []
    for name in ("alpha", "beta"):
        monkeypatch.setitem(sys.modules, f"experiments.{name}", fake(name, calls))
    monkeypatch.setattr(runner, "EXPERIMENTS", ["alpha", "beta"])
    code = runner.main(["--full", "--seed", "7", "--out", str(tmp_path)])
    assert code == 0
    assert [(c[0], c[1]) for c in calls] == [
        ("alpha", {"mode": "full", "seed": 7}), ("beta", {"mode": "full", "seed": 7})
    ]
    run_dir = next(tmp_path.iterdir())
    assert last_line(capsys.readouterr().out) == f"Report: {run_dir / 'report.html'}"

    calls.clear()
    assert runner.main(["beta", "--out", str(tmp_path)]) == 0
    assert [c[0] for c in calls] == ["beta"]

    with pytest.raises(SystemExit) as exc:
        runner.main(["gamma", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "unknown experiment 'gamma'; registered: alpha, beta" in capsys.readouterr().err

    with pytest.raises(SystemExit):
        runner.main(["--quick", "--full"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_experiment_main(tmp_path, capsys):
    mod = fake("alpha", behaviour={"alpha": "fail"})
    assert runner.experiment_main(mod, ["--out", str(tmp_path)]) == 1
    run_dir = next(tmp_path.iterdir())
    assert read_results(run_dir)["experiments"]["alpha"]["status"] == "failed"
    assert last_line(capsys.readouterr().out) == f"Report: {run_dir / 'report.html'}"


def test_command_line_help():
    text = help_text("experiments")
    for flag in ("--quick", "--full", "--out", "--seed", "--resume", "linalg_tour"):
        assert flag in text


def test_command_line_interrupt_exits_130(tmp_path):
    script = f"""
import sys, types
from experiments import runner
mod = types.ModuleType("experiments.stop")
mod.NAME, mod.TITLE = "stop", "Stops"
def run(config, out_dir):
    raise KeyboardInterrupt
mod.run = run
sys.modules["experiments.stop"] = mod
runner.EXPERIMENTS = ["stop"]
raise SystemExit(runner.main(["--out", {str(tmp_path)!r}]))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    run_dir = next(tmp_path.iterdir())
    assert last_line(proc.stdout) == f"Report: {run_dir / 'report.html'}"
    assert read_results(run_dir)["experiments"]["stop"]["status"] == "interrupted"
