"""Run jaxla's experiments, record their results safely and write a self-contained HTML report.

Command line::

    python -m experiments [NAMES...] [--quick | --full] [--out runs/] [--seed 0] [--resume RUN_DIR]

A run creates ``<out>/<timestamp>/`` (e.g. ``runs/20261122-153012/``; a suffix ``-2``, ``-3``...
keeps it unique) and runs the experiments one after the other, each writing its figures into
``<out>/<timestamp>/<name>/``. After every experiment, ``results.json`` is rewritten atomically
(temporary file, then :func:`os.replace`), so finished work survives a crash or Ctrl-C.

Behaviour:

- An experiment that raises, or returns something malformed, is recorded as ``"failed"`` with its
  traceback; the others still run, and the exit status is 1.
- Ctrl-C records the running experiment as ``"interrupted"``, writes ``results.json`` and the report
  of what is finished, and exits with status 130.
- ``--resume RUN_DIR`` continues a run in place: experiments recorded there as ``"ok"`` are skipped,
  failed, interrupted and missing ones run. Mode and seed are those of the recorded run (asking for
  different ones is an error), and without NAMES the run's original list of experiments is used.
- At the end, ``report.html`` is written (figures embedded as base64 PNG data URIs, so the file is
  self-contained) and its path is the last line printed: ``Report: runs/<timestamp>/report.html``.

``results.json`` holds ``{"run": {...metadata...}, "planned": [names], "experiments": {name:
record}}``. The run metadata records mode, seed, status, start/finish times, total seconds, the
command, package versions, platform and device. Each record holds ``title``, ``status`` (``"ok"``,
``"failed"`` or ``"interrupted"``), ``seconds``, ``started``, ``config``, ``result`` (the dict the
experiment returned, with each figure's ``path`` relative to the run directory added) and ``error``
(a traceback, or null). Non-finite floats in results are stored as the strings ``"nan"``, ``"inf"``
and ``"-inf"`` so that the file is strict JSON.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import html
import importlib
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from experiments import EXPERIMENTS

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "MODES",
    "REPORT_FILE",
    "RESULTS_FILE",
    "RunOutcome",
    "RunnerError",
    "experiment_main",
    "load_results",
    "main",
    "run_experiments",
    "write_json_atomic",
    "write_report",
]

MODES = ("quick", "full")
RESULTS_FILE = "results.json"
REPORT_FILE = "report.html"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
_VERSIONED = ("jaxla", "jax", "jaxlib", "numpy", "scipy", "scikit-learn", "matplotlib", "optax")

Experiment = str | ModuleType
"""An experiment to run: a registered name, or a module with ``NAME``, ``TITLE`` and ``run``."""


class RunnerError(ValueError):
    """A problem with the request itself (unknown experiment, bad resume directory, ...)."""


class RunOutcome(NamedTuple):
    """What :func:`run_experiments` did."""

    exit_code: int  # 0 all ok, 1 some experiment failed, 130 interrupted
    run_dir: Path  # the run directory, <out>/<timestamp>/ or the resumed one
    report: Path  # <run_dir>/report.html
    results: dict  # the content of <run_dir>/results.json


# --------------------------------------------------------------------------------------------------
# Small helpers


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _fail(message: str) -> None:
    raise RunnerError(f"experiments.runner: {message}")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically: a temporary file, fsync, then os.replace.

    A reader (or a crash at any moment) sees either the previous file or the new one, never a
    partly written file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = json.dumps(data, indent=2, allow_nan=False)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_results(run_dir: Path) -> dict:
    """Read ``<run_dir>/results.json``; raise :class:`RunnerError` if it is missing or invalid."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        _fail(f"`--resume` expected a run directory with {RESULTS_FILE}, got {str(run_dir)!r}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        _fail(f"`--resume` expected a valid {path}, got invalid JSON ({e})")
    if not isinstance(data, dict) or not isinstance(data.get("experiments"), dict):
        _fail(f"`--resume` expected {path} written by this runner, got another structure")
    return data


def _jsonable(obj: Any, where: str) -> Any:
    """A strict-JSON copy of ``obj``; numpy/JAX scalars and arrays become numbers and lists."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        v = float(obj)
        if math.isfinite(v):
            return v
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} has a non-string key {k!r}")
            out[k] = _jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "dtype") and hasattr(obj, "tolist"):  # numpy / JAX scalars and arrays
        return _jsonable(obj.tolist(), where)
    raise TypeError(f"{where} is not JSON-serializable: {type(obj).__name__}")


def _check_result(raw: Any, name: str, out_dir: Path) -> dict:
    """Validate the dict an experiment returned; add each figure's path relative to the run dir."""
    who = f"experiment {name!r}"

    def bad(message: str) -> None:
        raise ValueError(f"experiments.runner: {who} {message}")

    if not isinstance(raw, dict):
        bad(f"must return a dict, got {type(raw).__name__}")
    result = _jsonable(raw, "result")
    if not isinstance(result.get("summary"), str):
        bad("must return a 'summary' string")
    if not isinstance(result.get("metrics"), dict):
        bad("must return a 'metrics' dict")
    figures = result.setdefault("figures", [])
    if not isinstance(figures, list):
        bad(f"must return 'figures' as a list, got {type(figures).__name__}")
    root = out_dir.resolve()
    for i, fig in enumerate(figures):
        if not isinstance(fig, dict) or not isinstance(fig.get("file"), str):
            bad(f"figure {i} must be a dict with a 'file' string, got {fig!r}")
        file = (out_dir / fig["file"]).resolve()
        if root not in file.parents or file.suffix.lower() != ".png" or not file.is_file():
            bad(f"figure {i} must name a PNG file written into out_dir, got {fig['file']!r}")
        fig.setdefault("caption", "")
        fig["path"] = file.relative_to(root.parent).as_posix()
    tables = result.setdefault("tables", [])
    if not isinstance(tables, list):
        bad(f"must return 'tables' as a list, got {type(tables).__name__}")
    for i, table in enumerate(tables):
        ok = (
            isinstance(table, dict)
            and isinstance(table.get("columns"), list)
            and isinstance(table.get("rows"), list)
            and all(isinstance(r, list) and len(r) == len(table["columns"]) for r in table["rows"])
        )
        if not ok:
            bad(f"table {i} must be {{'title', 'columns': [...], 'rows': [[...], ...]}} with "
                "one value per column in every row")
    return result


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in _VERSIONED:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _device() -> str:
    import jax

    devices = jax.devices()
    kinds = ", ".join(sorted({d.device_kind for d in devices}))
    backend = jax.default_backend()
    return f"{backend} x{len(devices)}" + ("" if kinds == backend else f" ({kinds})")


def _platform() -> dict[str, Any]:
    return {
        "system": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
    }


def _command() -> str:
    """The command line that started this process, as a user would type it."""
    script = Path(sys.argv[0])
    if script.name == "__main__.py":
        prog = f"python -m {script.parent.name}"
    elif script.suffix == ".py" and script.parent.name == "experiments":
        prog = f"python -m experiments.{script.stem}"
    else:
        prog = script.name
    return " ".join([prog, *sys.argv[1:]])


def _new_run_dir(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1, 1000):
        candidate = out / (stamp if i == 1 else f"{stamp}-{i}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    _fail(f"could not create a new run directory under {str(out)!r}")
    raise AssertionError  # unreachable


def _name_of(exp: Experiment) -> str:
    if isinstance(exp, str):
        if exp not in EXPERIMENTS:
            _fail(f"unknown experiment {exp!r}; registered: {', '.join(EXPERIMENTS)}")
        return exp
    name = getattr(exp, "NAME", None)
    if not isinstance(name, str) or not name or not callable(getattr(exp, "run", None)):
        _fail(f"experiment module {exp.__name__!r} must define NAME (str) and run(config, out_dir)")
    return name


def _names_of(experiments: Iterable[Experiment]) -> list[str]:
    names = [_name_of(e) for e in experiments]
    if len(set(names)) != len(names):
        _fail(f"each experiment may be named once, got {names}")
    return names


_Write = Callable[[str], None]


def _progress(total: int) -> tuple[_Write, _Write, Callable[[], None]]:
    """(write, advance, close): a tqdm bar on stderr, or plain prints where tqdm is missing."""
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is an optional dependency of the experiments extra
        return (lambda s: print(s, flush=True)), (lambda s: None), (lambda: None)
    bar = tqdm(total=total, desc="experiments", unit="exp", file=sys.stderr, dynamic_ncols=True)

    def write(line: str) -> None:
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()

    def advance(label: str) -> None:
        bar.set_postfix_str(label, refresh=False)
        bar.update(1)

    def close() -> None:
        bar.close()
        sys.stderr.flush()

    return write, advance, close


# --------------------------------------------------------------------------------------------------
# The run


def run_experiments(
    experiments: Iterable[Experiment] | None = None,
    *,
    mode: str | None = None,
    seed: int | None = None,
    out: Path | str = "runs",
    resume: Path | str | None = None,
) -> RunOutcome:
    """Run experiments in order, recording each result in ``results.json`` as soon as it finishes.

    Args:
        experiments: registered names or experiment modules; default: all registered experiments
            (or, with ``resume``, the list the resumed run had planned).
        mode: ``"quick"`` (default for a new run) or ``"full"``.
        seed: seed passed to every experiment (default 0 for a new run).
        out: directory under which the new run directory ``<timestamp>/`` is created.
        resume: an existing run directory to continue instead of creating one.

    Returns:
        A :class:`RunOutcome`; ``exit_code`` is 0 (all ok), 1 (some failed) or 130 (interrupted).

    Raises:
        RunnerError: for an unknown experiment, an invalid mode or a bad resume directory.
    """
    if mode is not None and mode not in MODES:
        _fail(f"`mode` must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        _fail(f"`seed` must be an int, got {seed!r}")
    t_session = time.perf_counter()

    if resume is not None:
        run_dir = Path(resume)
        results = load_results(run_dir)
        meta = results["run"]
        for key, asked in (("mode", mode), ("seed", seed)):
            if asked is not None and asked != meta.get(key):
                _fail(
                    f"`--resume` continues a run with {key}={meta.get(key)!r}; "
                    f"got a different {key}={asked!r}"
                )
        mode, seed = meta["mode"], meta["seed"]
        if experiments is None:
            experiments = list(results.get("planned") or EXPERIMENTS)
        planned = _names_of(experiments)
        results["planned"] = list(dict.fromkeys([*results.get("planned", []), *planned]))
        meta["sessions"] = int(meta.get("sessions", 1)) + 1
        meta["resumed"] = [*meta.get("resumed", []), _now()]
        previous_seconds = float(meta.get("total_seconds", 0.0))
    else:
        mode = "quick" if mode is None else mode
        seed = 0 if seed is None else seed
        experiments = list(EXPERIMENTS if experiments is None else experiments)
        planned = _names_of(experiments)
        run_dir = _new_run_dir(Path(out))
        meta = {
            "id": run_dir.name,
            "mode": mode,
            "seed": seed,
            "status": "running",
            "started": _now(),
            "finished": None,
            "total_seconds": 0.0,
            "sessions": 1,
            "command": _command(),
        }
        results = {"run": meta, "planned": planned, "experiments": {}}
        previous_seconds = 0.0
    meta["versions"] = _versions()
    meta["platform"] = _platform()
    meta["device"] = _device()
    meta["status"] = "running"
    config = {"mode": mode, "seed": seed}
    records: dict[str, dict] = results["experiments"]
    results_path = run_dir / RESULTS_FILE

    def save(status: str | None = None) -> None:
        meta["total_seconds"] = round(previous_seconds + time.perf_counter() - t_session, 3)
        if status is not None:
            meta["status"] = status
            meta["finished"] = _now()
        write_json_atomic(results_path, results)

    save()
    write, advance, close = _progress(len(planned))
    write(f"Run {run_dir} (mode={mode}, seed={seed}, device={meta['device']})")
    current: str | None = None
    t0 = 0.0
    record: dict[str, Any] = {}
    interrupted = False
    try:
        for i, (exp, name) in enumerate(zip(experiments, planned, strict=True), start=1):
            tag = f"[{i}/{len(planned)}] {name}"
            if records.get(name, {}).get("status") == "ok":
                write(f"{tag}: skipped (recorded as ok in {results_path})")
                advance(f"{name} skipped")
                continue
            out_dir = run_dir / name
            out_dir.mkdir(exist_ok=True)
            current, t0, started = name, time.perf_counter(), _now()
            record: dict[str, Any] = {"title": name, "status": "running", "seconds": None,
                                      "started": started, "config": dict(config),
                                      "result": None, "error": None}
            try:
                module = exp if isinstance(exp, ModuleType) else importlib.import_module(
                    f"experiments.{name}")
                record["title"] = str(getattr(module, "TITLE", name))
                write(f"{tag}: running - {record['title']}")
                raw = module.run(dict(config), out_dir)
                record["result"] = _check_result(raw, name, out_dir)
                record["status"] = "ok"
            except Exception:
                record["status"] = "failed"
                record["error"] = traceback.format_exc()
            seconds = time.perf_counter() - t0
            current = None
            record["seconds"] = round(seconds, 3)
            records[name] = record
            save()
            if record["status"] == "ok":
                write(f"{tag}: ok in {seconds:.1f} s")
            else:
                last = record["error"].strip().splitlines()[-1]
                write(f"{tag}: FAILED after {seconds:.1f} s: {last}")
            advance(f"{name} {record['status']}")
    except KeyboardInterrupt:
        interrupted = True
        if current is not None:
            record.update(status="interrupted", seconds=round(time.perf_counter() - t0, 3),
                          result=None, error="KeyboardInterrupt")
            records[current] = record
    finally:
        close()

    statuses = [records.get(n, {}).get("status") for n in planned]
    if interrupted:
        exit_code, status = EXIT_INTERRUPTED, "interrupted"
    elif any(s != "ok" for s in statuses):
        exit_code, status = EXIT_FAILED, "failed"
    else:
        exit_code, status = EXIT_OK, "finished"
    save(status)
    report = write_report(run_dir, results)

    n_ok = statuses.count("ok")
    n_failed = statuses.count("failed")
    print(f"{status.capitalize()}: {n_ok} ok, {n_failed} failed, "
          f"{len(planned) - n_ok - n_failed} not finished, of {len(planned)} experiment(s); "
          f"total {meta['total_seconds']:.1f} s")
    for name in planned:
        rec = records.get(name)
        if rec is None:
            print(f"  {name:<24} not run")
        else:
            print(f"  {name:<24} {rec['status']:<12} {rec['seconds']:>8.1f} s")
    print(f"Results: {results_path}")
    print(f"Report: {report}", flush=True)
    return RunOutcome(exit_code, run_dir, report, results)


# --------------------------------------------------------------------------------------------------
# The report

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.meta td:first-child { width: 11em; font-weight: 600; background: #f3f3f3; }
.status { display: inline-block; padding: 0.05em 0.5em; border-radius: 0.6em; font-size: 0.85em;
          color: #fff; }
.ok { background: #2e7d32; } .failed { background: #c62828; }
.interrupted, .running, .notrun { background: #ef6c00; }
.summary { font-size: 1.05em; background: #f7f9fc; border-left: 4px solid #4a78b5;
           padding: 0.5em 0.8em; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.92em; margin-top: 0.3em; }
pre { background: #fbeaea; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.small { color: #666; font-size: 0.9em; }
"""


def _fmt(value: Any) -> str:
    """A short, readable rendering of a metric value."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    if isinstance(value, str):
        return value
    text = json.dumps(value)
    return text if len(text) <= 300 else text[:297] + "..."


def _cell(value: Any) -> str:
    cls = ' class="num"' if isinstance(value, int | float) and not isinstance(value, bool) else ""
    return f"<td{cls}>{html.escape(_fmt(value))}</td>"


def _table(columns: Sequence[Any] | None, rows: Sequence[Sequence[Any]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns or ())
    head = f"<thead><tr>{head}</tr></thead>" if head else ""
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}>{head}<tbody>{body}</tbody></table>"


def _anchor(name: str) -> str:
    return "exp-" + "".join(c if c.isalnum() else "-" for c in name)


def _figure_html(run_dir: Path, fig: dict) -> str:
    caption = html.escape(str(fig.get("caption", "")))
    path = run_dir / str(fig.get("path", fig.get("file", "")))
    try:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return f'<figure><p class="small">(figure file {html.escape(str(path))} is missing)</p>' \
               f"<figcaption>{caption}</figcaption></figure>"
    alt = html.escape(str(fig.get("file", "")))
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _section(run_dir: Path, name: str, rec: dict | None) -> str:
    parts = [f'<section id="{_anchor(name)}">']
    if rec is None:
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.append('<p><span class="status notrun">not run</span></p>')
        return "".join(parts) + "</section>"
    status = str(rec.get("status"))
    seconds = rec.get("seconds")
    took = f" in {seconds:.1f} s" if isinstance(seconds, int | float) else ""
    parts.append(f"<h2>{html.escape(str(rec.get('title', name)))}</h2>")
    parts.append(f'<p class="small"><code>{html.escape(name)}</code> '
                 f'<span class="status {html.escape(status)}">{html.escape(status)}</span>'
                 f"{html.escape(took)}</p>")
    result = rec.get("result") or {}
    if result.get("summary"):
        parts.append(f'<p class="summary">{html.escape(result["summary"])}</p>')
    metrics = result.get("metrics") or {}
    if metrics:
        parts.append("<h3>Key metrics</h3>")
        parts.append(_table(["metric", "value"], [[k, v] for k, v in metrics.items()]))
    for table in result.get("tables") or []:
        if table.get("title"):
            parts.append(f"<h3>{html.escape(str(table['title']))}</h3>")
        parts.append(_table(table.get("columns", []), table.get("rows", [])))
    figures = result.get("figures") or []
    if figures:
        parts.append("<h3>Figures</h3>")
        parts.extend(_figure_html(run_dir, fig) for fig in figures)
    if rec.get("error"):
        parts.append(f"<h3>Error</h3><pre>{html.escape(str(rec['error']))}</pre>")
    return "".join(parts) + "</section>"


def write_report(run_dir: Path, results: dict) -> Path:
    """Write ``<run_dir>/report.html`` from ``results`` (the content of results.json).

    The page is self-contained: figures are embedded as ``data:image/png;base64`` URIs. It has a
    header with mode, seed, date, versions, device and total time, a table of contents, and one
    section per planned or recorded experiment (title, status, summary, key metrics, tables,
    figures with captions, and the traceback of a failure). Written atomically.
    """
    run_dir = Path(run_dir)
    meta = results.get("run", {})
    records = results.get("experiments", {})
    names = list(dict.fromkeys([*results.get("planned", []), *records]))
    versions = meta.get("versions", {})
    plat = meta.get("platform", {})
    total = meta.get("total_seconds")
    header_rows = [
        ["run", meta.get("id", run_dir.name)],
        ["status", meta.get("status")],
        ["mode", meta.get("mode")],
        ["seed", meta.get("seed")],
        ["started", meta.get("started")],
        ["finished", meta.get("finished")],
        ["total time", f"{total:.1f} s" if isinstance(total, int | float) else total],
        ["jax version", f"{versions.get('jax')} (jaxlib {versions.get('jaxlib')})"],
        ["jaxla version", versions.get("jaxla")],
        ["python / numpy", f"{versions.get('python')} / {versions.get('numpy')}"],
        ["device", meta.get("device")],
        ["platform", f"{plat.get('system')}, {plat.get('cpu_count')} CPU(s)"],
        ["command", meta.get("command")],
    ]
    if meta.get("resumed"):
        header_rows.append(["resumed", ", ".join(meta["resumed"])])
    toc_rows = []
    for name in names:
        rec = records.get(name)
        status = rec.get("status", "?") if rec else "not run"
        sec = rec.get("seconds") if rec else None
        title = rec.get("title", name) if rec else name
        toc_rows.append(
            f'<tr><td><a href="#{_anchor(name)}">{html.escape(str(title))}</a></td>'
            f'<td><span class="status {html.escape(status.replace(" ", ""))}">'
            f"{html.escape(status)}</span></td>"
            f'<td class="num">{"" if sec is None else f"{sec:.1f} s"}</td></tr>'
        )
    toc = ("<table><thead><tr><th>experiment</th><th>status</th><th>time</th></tr></thead>"
           f"<tbody>{''.join(toc_rows)}</tbody></table>")
    body = "".join(_section(run_dir, name, records.get(name)) for name in names)
    title = f"jaxla experiments - {meta.get('id', run_dir.name)}"
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>jaxla experiments</h1>"
        f"{_table(None, header_rows, css='meta')}</header>"
        f"<nav><h2>Contents</h2>{toc}</nav>{body}</body></html>\n"
    )
    path = run_dir / REPORT_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------------------
# Command lines


def _parser(prog: str, *, single: str | None = None) -> argparse.ArgumentParser:
    if single is None:
        description = "Run jaxla's experiments and write runs/<timestamp>/ with a report."
    else:
        description = f"Run the experiment {single!r} and write runs/<timestamp>/ with a report."
    p = argparse.ArgumentParser(prog=prog, description=description)
    if single is None:
        p.add_argument("names", nargs="*", metavar="NAME",
                       help=f"experiments to run, default all: {', '.join(EXPERIMENTS)}")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--quick", dest="mode", action="store_const", const="quick",
                       help="quick mode (the default): small subsets, minutes on a laptop CPU")
    group.add_argument("--full", dest="mode", action="store_const", const="full",
                       help="full mode: the published-scale results")
    p.add_argument("--out", type=Path, default=Path("runs"),
                   help="directory in which the run directory <timestamp>/ is created "
                        "(default: runs)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed passed to every experiment (default: 0)")
    if single is None:
        p.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                       help="continue RUN_DIR in place: skip experiments recorded there as ok")
    return p


def _exit_code(outcome: RunOutcome) -> int:
    if outcome.exit_code == EXIT_INTERRUPTED:
        # Everything is written. Leave at once: an interrupted XLA compilation may still hold
        # threads that make a normal interpreter shutdown crash.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    return outcome.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m experiments``; returns the exit status."""
    parser = _parser("python -m experiments")
    args = parser.parse_args(argv)
    try:
        outcome = run_experiments(args.names or None, mode=args.mode, seed=args.seed,
                                  out=args.out, resume=args.resume)
    except RunnerError as e:
        parser.error(str(e))
    return _exit_code(outcome)


def experiment_main(module: ModuleType, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m experiments.<name>``: run that one experiment with a report."""
    name = _name_of(module)
    parser = _parser(f"python -m experiments.{name}", single=name)
    args = parser.parse_args(argv)
    try:
        outcome = run_experiments([module], mode=args.mode, seed=args.seed, out=args.out)
    except RunnerError as e:
        parser.error(str(e))
    return _exit_code(outcome)
