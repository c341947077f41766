"""Checks shared by the experiment test modules."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from experiments import runner

ROOT = Path(__file__).resolve().parents[2]


def assert_finite(obj: Any, where: str = "metrics") -> None:
    """Every number in a results tree is finite (the runner stores NaN/Inf as strings)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert_finite(v, f"{where}[{k!r}]")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            assert_finite(v, f"{where}[{i}]")
    elif isinstance(obj, float):
        assert math.isfinite(obj), where
    else:
        assert obj not in ("nan", "inf", "-inf"), where


def help_text(module: str) -> str:
    """The ``--help`` output of ``python -m <module>``, run from the repository root."""
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def record_from_command_line(exp: ModuleType, result: tuple[dict, Path], config: dict,
                             out: Path, monkeypatch: Any) -> tuple[dict, Path]:
    """``experiment_main(exp, ["--quick", "--out", out])`` with ``exp.run`` replaced by one that
    checks it gets ``config`` and returns the already computed ``result`` (its figures copied),
    so the command line is tested without running the experiment again.

    Returns the experiment's record in the run's ``results.json`` (its status checked to be
    ``"ok"``) and the run directory.
    """
    res, fig_dir = result

    def run(cfg, out_dir):
        assert cfg == config
        for fig in res["figures"]:
            shutil.copy(fig_dir / fig["file"], Path(out_dir) / fig["file"])
        return res

    monkeypatch.setattr(exp, "run", run)
    assert runner.experiment_main(exp, ["--quick", "--out", str(out)]) == 0
    run_dir = next(out.iterdir())
    record = json.loads((run_dir / runner.RESULTS_FILE).read_text())["experiments"][exp.NAME]
    assert record["status"] == "ok"
    return record, run_dir
