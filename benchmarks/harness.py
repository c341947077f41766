"""Timing harness shared by every benchmark suite.

A *case* times one jaxla operation side by side with one or more *anchors* (numpy, scipy,
scikit-learn, or another JAX implementation) in the same process, on the same data:

- a JAX callable is jitted; its compile time (``jax.jit(f).lower(*args).compile()``) is measured
  separately, then it is warmed up and run ``repeats`` times, each run ending in
  ``jax.block_until_ready``;
- a plain Python callable (numpy/scipy/scikit-learn) is warmed up and run ``repeats`` times;
- the report keeps the median, the minimum and the interquartile range of the runs (garbage
  collection is paused while timing);
- accuracy is reported next to time: the case's ``accuracy`` function maps a side's output (with
  every array leaf converted to numpy) to one error number against a float64 reference, for the
  jaxla side and for each anchor;
- where a case gives its floating-point operation count (``flops``), achieved GFLOP/s is reported,
  next to the machine's float32 matmul throughput measured once per run (:func:`matmul_peak`).

Adding a suite
--------------
Create ``benchmarks/<name>.py`` (no leading underscore). The runner (``python -m benchmarks``)
discovers every such module that defines ``SUITE``; no registry needs editing::

    import functools

    import numpy as np

    import jaxla
    from benchmarks.harness import Anchor, Case, max_rel_error

    SUITE = "mysuite"  # results go to benchmarks/results/mysuite.json


    def cases(quick: bool) -> list[Case]:  # a generator works too: data is then built lazily
        n = 200 if quick else 2000
        a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
        ref = np.linalg.norm(a.astype(np.float64), axis=1)  # float64 reference, untimed
        return [
            Case(
                name="row_norms",
                size=f"{n}x{n}",
                fn=functools.partial(jaxla.linalg.norm, axis=1),  # bind static options
                args=(a,),  # numpy leaves are moved to the device once, before timing
                anchors=[Anchor("numpy.linalg.norm", functools.partial(np.linalg.norm, axis=1),
                                (a,))],
                accuracy=lambda out: max_rel_error(out, ref),
                metric="max relative error of the norms vs float64",
                flops=None,  # the flop count of one call, where the operation is matmul-bound
            )
        ]

Then ``python -m benchmarks mysuite --quick`` for a smoke run, ``python -m benchmarks mysuite`` for
the results to commit (``docs/benchmarks.md`` explains the columns and the BLAS settings).

Rules of thumb: keep ``quick`` sizes tiny (a smoke run of every suite takes seconds); choose full
sizes so the whole suite finishes in a few minutes on a 2-core CPU; pass static options with
``functools.partial`` or a lambda so that ``fn`` takes only array (pytree) arguments; build the
float64 reference outside the timed callables; set ``jit=False`` on a case (or ``jit=True`` on an
anchor) when that side is not (or is) a jittable JAX function; give ``info=`` a function of the
output returning extra figures (matvec counts, a converged flag, an error estimate) to record them.
An exception raised by one side is recorded in the results and the suite goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import importlib
import importlib.metadata
import json
import math
import os
import pkgutil
import platform
import random
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Anchor",
    "Case",
    "discover_suites",
    "environment",
    "load_average",
    "load_results",
    "matmul_peak",
    "max_abs_error",
    "max_rel_error",
    "rel_error",
    "render_markdown",
    "run_case",
    "run_suite",
    "time_callable",
    "wait_until_quiet",
    "write_markdown",
    "write_suite_json",
]

PACKAGE_DIR = Path(__file__).resolve().parent
RESULTS_DIR = PACKAGE_DIR / "results"
RESULTS_MD = PACKAGE_DIR / "RESULTS.md"
NOT_SUITES = frozenset({"harness"})
BLAS_ENV_REMOVED = "JAXLA_BENCH_REMOVED_ENV"  # set by the runner when it re-executes itself
ENV_RECORDED = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "XLA_FLAGS",
    "JAX_PLATFORMS",
    "JAX_ENABLE_X64",
)


@dataclasses.dataclass(frozen=True)
class Anchor:
    """A reference implementation timed against the jaxla side of a :class:`Case`.

    Attributes:
        label: What the table shows, e.g. ``"numpy.linalg.svd"`` or ``"scipy.linalg.svd (gesdd)"``.
        fn: The callable, called as ``fn(*args)``.
        args: Its positional arguments (the same data as the jaxla side, in the anchor's types).
        accuracy: Error of this anchor's output; ``None`` uses the case's ``accuracy``.
        jit: ``True`` when ``fn`` is a JAX function to be jitted and timed like the jaxla side.
        info: Extra figures of this anchor's output (``None`` uses the case's ``info``).
    """

    label: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    accuracy: Callable[[Any], float] | None = None
    jit: bool = False
    info: Callable[[Any], dict[str, Any]] | None = None


@dataclasses.dataclass(frozen=True)
class Case:
    """One jaxla operation on one input size, with its anchors.

    Attributes:
        name: Short operation name, the table's first column (``"svd"``).
        size: Human-readable input size (``"1000x500"``).
        fn: The jaxla callable, called as ``fn(*args)``; jitted unless ``jit=False``.
        args: Its positional arguments (array pytrees; numpy leaves are put on the device once).
        anchors: The implementations it is compared with.
        accuracy: Maps a side's output (array leaves converted to numpy) to an error (float).
        metric: What ``accuracy`` measures, e.g. ``"max rel. error of singular values vs float64"``.
        label: Name of the jaxla function shown in the results (defaults to ``name``).
        flops: Floating-point operations of one call, if the operation is matmul-bound.
        dtype: Dtype of the inputs, shown in the table.
        jit: ``False`` when ``fn`` is not a jittable JAX function (then timed like an anchor).
        note: A remark printed under the suite's table.
        info: Maps a side's output to extra figures to record, e.g. ``{"matvecs": 40}`` for an
            iterative method; stored in the JSON file and listed under the table.
    """

    name: str
    size: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    anchors: Sequence[Anchor]
    accuracy: Callable[[Any], float]
    metric: str
    label: str = ""
    flops: float | None = None
    dtype: str = "float32"
    jit: bool = True
    note: str = ""
    info: Callable[[Any], dict[str, Any]] | None = None


# ---------------------------------------------------------------------------------------------
# Accuracy helpers (float64 arithmetic on numpy copies)


def _f64(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def rel_error(x: Any, ref: Any) -> float:
    """Relative Frobenius-norm error ``||x - ref|| / ||ref||`` computed in float64."""
    x, ref = _f64(x), _f64(ref)
    if x.shape != ref.shape:
        raise ValueError(f"rel_error: shapes differ, {x.shape} vs {ref.shape}")
    den = np.linalg.norm(ref)
    return float(np.linalg.norm(x - ref) / (den if den > 0 else 1.0))


def max_rel_error(x: Any, ref: Any, *, scale: float | None = None) -> float:
    """``max |x - ref| / |ref|`` elementwise, or ``max |x - ref| / scale`` given ``scale``."""
    x, ref = _f64(x), _f64(ref)
    if x.shape != ref.shape:
        raise ValueError(f"max_rel_error: shapes differ, {x.shape} vs {ref.shape}")
    err = np.abs(x - ref)
    if scale is not None:
        return float(err.max(initial=0.0) / scale)
    den = np.abs(ref)
    return float(np.max(err / np.where(den > 0, den, 1.0), initial=0.0))


def max_abs_error(x: Any, ref: Any) -> float:
    """``max |x - ref|`` computed in float64."""
    x, ref = _f64(x), _f64(ref)
    if x.shape != ref.shape:
        raise ValueError(f"max_abs_error: shapes differ, {x.shape} vs {ref.shape}")
    return float(np.max(np.abs(x - ref), initial=0.0))


# ---------------------------------------------------------------------------------------------
# Timing


@contextlib.contextmanager
def _no_gc():
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _stats(times_s: list[float]) -> dict[str, Any]:
    t = np.asarray(times_s) * 1e3
    q25, q75 = np.percentile(t, [25, 75])
    return {
        "median_ms": float(np.median(t)),
        "min_ms": float(t.min()),
        "iqr_ms": float(q75 - q25),
        "times_ms": [float(v) for v in t],
    }


def _to_device(args: tuple[Any, ...]) -> tuple[Any, ...]:
    def put(leaf):
        return jax.device_put(leaf) if isinstance(leaf, np.ndarray | np.generic) else leaf

    return jax.tree_util.tree_map(put, args)


def time_callable(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    *,
    jit: bool,
    repeats: int = 5,
    warmup: int = 1,
) -> tuple[dict[str, Any], Any]:
    """Time ``fn(*args)``; return ``(stats, last_output)``.

    With ``jit=True`` the compile time of ``jax.jit(fn).lower(*args).compile()`` (after
    ``jax.clear_caches()``, so that it is never a cache hit) is reported as ``compile_ms`` and
    every run ends in ``jax.block_until_ready``. ``stats`` holds ``median_ms``,
    ``min_ms``, ``iqr_ms``, ``times_ms`` (every run), ``compile_ms`` (``None`` without jit) and
    ``repeats``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(
            f"time_callable: need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}"
        )
    compile_ms = None
    if jit:
        args = _to_device(args)
        jax.clear_caches()  # a cold compile, even when this function was compiled before
        t0 = time.perf_counter()
        call = jax.jit(fn).lower(*args).compile()
        compile_ms = (time.perf_counter() - t0) * 1e3

        def run():
            return jax.block_until_ready(call(*args))
    else:

        def run():
            return fn(*args)

    out = None
    for _ in range(warmup):
        out = run()
    times = []
    with _no_gc():
        for _ in range(repeats):
            del out
            t0 = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - t0)
    return {**_stats(times), "compile_ms": compile_ms, "repeats": repeats}, out


def _to_numpy(out: Any) -> Any:
    return jax.tree_util.tree_map(np.asarray, out)


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray | np.generic) and np.ndim(v) == 0:
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v if isinstance(v, str | int | float | bool | type(None)) else str(v)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()[:500]


def _measure(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    accuracy: Callable[[Any], float],
    flops: float | None,
    info: Callable[[Any], dict[str, Any]] | None,
    *,
    jit: bool,
    repeats: int,
    warmup: int,
) -> dict[str, Any]:
    """Time one side and evaluate its accuracy; exceptions are recorded, not raised."""
    try:
        stats, out = time_callable(fn, args, jit=jit, repeats=repeats, warmup=warmup)
    except Exception as exc:  # a failing side is a result, not a crash
        traceback.print_exc(file=sys.stderr)
        return {"error": _error_text(exc)}
    res: dict[str, Any] = {**stats, "error": None}
    res["gflops"] = flops / (stats["median_ms"] * 1e6) if flops and stats["median_ms"] > 0 else None
    out = _to_numpy(out)
    try:
        res["accuracy"] = float(accuracy(out))
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        res["accuracy"] = None
        res["accuracy_error"] = _error_text(exc)
    if info is not None:
        try:
            res["info"] = {str(k): _jsonable(v) for k, v in info(out).items()}
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            res["info"] = {"error": _error_text(exc)}
    del out
    return res


def run_case(case: Case, *, repeats: int = 5, warmup: int = 1) -> dict[str, Any]:
    """Time ``case`` (jaxla side, then each anchor) and return its JSON-ready record."""
    jaxla_res = _measure(
        case.fn,
        case.args,
        case.accuracy,
        case.flops,
        case.info,
        jit=case.jit,
        repeats=repeats,
        warmup=warmup,
    )
    jaxla_res["label"] = case.label or case.name
    anchors = []
    for anchor in case.anchors:
        res = _measure(
            anchor.fn,
            anchor.args,
            anchor.accuracy or case.accuracy,
            case.flops,
            anchor.info or case.info,
            jit=anchor.jit,
            repeats=repeats,
            warmup=warmup,
        )
        res["label"] = anchor.label
        ok = res.get("error") is None and jaxla_res.get("error") is None
        res["ratio"] = jaxla_res["median_ms"] / res["median_ms"] if ok else None
        anchors.append(res)
    return {
        "name": case.name,
        "size": case.size,
        "dtype": case.dtype,
        "metric": case.metric,
        "flops": case.flops,
        "note": case.note,
        "jaxla": jaxla_res,
        "anchors": anchors,
    }


def matmul_peak(
    n: int = 2048,
    *,
    repeats: int = 5,
    max_background: float | None = None,
    retries: int = 3,
) -> dict[str, Any]:
    """Float32 ``(n, n) @ (n, n)`` throughput in jax (precision HIGHEST) and numpy, in GFLOP/s.

    ``max_background`` and ``retries`` work as in :func:`run_suite`.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n**3

    def jax_mm(x, y):
        return jnp.matmul(x, y, precision=jax.lax.Precision.HIGHEST)

    for _ in range(retries + 1):
        if max_background is not None:
            wait_until_quiet(max_background)
        start = _cpu_times()
        jax_stats, _ = time_callable(jax_mm, (a, b), jit=True, repeats=repeats)
        np_stats, _ = time_callable(np.matmul, (a, b), jit=False, repeats=repeats)
        busy = _background_cores(start, _cpu_times())
        if max_background is None or busy is None or busy <= max_background:
            break
    return {
        "background_cores": busy,
        "n": n,
        "dtype": "float32",
        "jax_median_ms": jax_stats["median_ms"],
        "numpy_median_ms": np_stats["median_ms"],
        "jax_gflops": flops / (jax_stats["median_ms"] * 1e6),
        "numpy_gflops": flops / (np_stats["median_ms"] * 1e6),
        "jax_best_gflops": flops / (jax_stats["min_ms"] * 1e6),
        "numpy_best_gflops": flops / (np_stats["min_ms"] * 1e6),
    }


# ---------------------------------------------------------------------------------------------
# Machine, versions, BLAS


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _blas_info() -> dict[str, Any]:
    try:
        import scipy.linalg  # noqa: F401 - load scipy's BLAS so threadpoolctl sees it
        import threadpoolctl

        pools = threadpoolctl.threadpool_info()
        keep = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads",
                "threading_layer", "filepath")
        libraries = [{k: p.get(k) for k in keep} for p in pools]
        libraries.sort(key=lambda lib: (str(lib["user_api"]), str(lib["filepath"])))
        return {"source": "threadpoolctl", "libraries": libraries}
    except ImportError:
        pass
    try:
        config = np.show_config(mode="dicts")
        return {"source": "numpy.show_config", "numpy": config.get("Build Dependencies", config)}
    except Exception as exc:
        return {"source": None, "error": _error_text(exc)}


def _git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if out.returncode == 0:
            return out.stdout.strip()
    return None


def environment() -> dict[str, Any]:
    """Machine, library versions, BLAS libraries and relevant environment variables."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    removed = os.environ.get(BLAS_ENV_REMOVED)
    return {
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "cores_usable": affinity,
            "memory_gib": _memory_gib(),
            "platform": platform.platform(),
            "jax_backend": jax.default_backend(),
            "jax_devices": [str(d) for d in jax.devices()],
        },
        "versions": {
            "python": platform.python_version(),
            **{
                name: _version(dist)
                for name, dist in [
                    ("jax", "jax"),
                    ("jaxlib", "jaxlib"),
                    ("numpy", "numpy"),
                    ("scipy", "scipy"),
                    ("scikit-learn", "scikit-learn"),
                    ("jaxla", "jaxla"),
                    ("threadpoolctl", "threadpoolctl"),
                ]
            },
        },
        "blas": _blas_info(),
        "env": {k: os.environ.get(k) for k in ENV_RECORDED},
        "env_removed": json.loads(removed) if removed else {},
        "git_commit": _git_commit(),
    }


def _cpu_times() -> tuple[float, float, float] | None:
    """(wall, CPU seconds used by the whole machine, CPU seconds used by this process)."""
    try:
        vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = sum(vals[:8]) - vals[3] - vals[4]  # user..steal, without idle and iowait
        own = os.times()
        return time.perf_counter(), busy / os.sysconf("SC_CLK_TCK"), own.user + own.system
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _background_cores(start, end) -> float | None:
    """Average number of cores other processes kept busy between two :func:`_cpu_times`."""
    if start is None or end is None or end[0] <= start[0]:
        return None
    other = (end[1] - start[1]) - (end[2] - start[2])
    return round(max(other, 0.0) / (end[0] - start[0]), 2)


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages, or ``None`` where the OS does not report them."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


# ---------------------------------------------------------------------------------------------
# Suites


def discover_suites() -> tuple[dict[str, ModuleType], dict[str, str]]:
    """Import every ``benchmarks/<name>.py`` that defines ``SUITE``.

    Returns ``(suites, failures)``: suite name -> module, and module name -> import error for the
    modules that could not be imported.
    """
    suites: dict[str, ModuleType] = {}
    failures: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules([str(PACKAGE_DIR)]), key=lambda m: m.name):
        if info.ispkg or info.name.startswith("_") or info.name in NOT_SUITES:
            continue
        try:
            module = importlib.import_module(f"{__package__ or 'benchmarks'}.{info.name}")
        except Exception as exc:  # one broken suite must not hide the others
            failures[info.name] = _error_text(exc)
            continue
        name = getattr(module, "SUITE", None)
        if isinstance(name, str) and callable(getattr(module, "cases", None)):
            suites[name] = module
    return suites, failures


def wait_until_quiet(
    max_background: float, *, timeout_s: float = 300.0, window_s: float = 5.0
) -> float | None:
    """Sleep until other processes keep at most ``max_background`` cores busy.

    Measures over windows of ``window_s`` to ``2 * window_s`` seconds (a random length, so that
    two benchmark processes waiting for each other do not wake up together), for at most
    ``timeout_s`` seconds; returns the last measurement (``None`` without ``/proc/stat``).
    """
    deadline = time.perf_counter() + timeout_s
    while True:
        start = _cpu_times()
        time.sleep(window_s * (1.0 + random.random()))
        busy = _background_cores(start, _cpu_times())
        if busy is None or busy <= max_background or time.perf_counter() >= deadline:
            return busy


def run_suite(
    suite: str,
    cases: Iterable[Case],
    *,
    repeats: int = 5,
    warmup: int = 1,
    quick: bool = False,
    peak: dict[str, Any] | None = None,
    max_background: float | None = None,
    retries: int = 3,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every case of a suite and return the JSON-ready record of the run.

    With ``max_background`` (in cores), each case waits until other processes are quiet and is
    run again (up to ``retries`` times) when they kept more than that many cores busy meanwhile.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.perf_counter()
    record: dict[str, Any] = {
        "suite": suite,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "repeats": repeats,
        "warmup": warmup,
        "max_background": max_background,
        "load_average_before": load_average(),
        **environment(),
        "matmul_peak": peak,
        "cases": [],
    }
    for case in cases:
        log(f"[{suite}] {case.name} {case.size} ...")
        for attempt in range(1, retries + 2):
            if max_background is not None:
                wait_until_quiet(max_background)
            cpu_start = _cpu_times()
            res = run_case(case, repeats=repeats, warmup=warmup)
            res["background_cores"] = busy = _background_cores(cpu_start, _cpu_times())
            res["load_average_after"] = load_average()
            res["attempts"] = attempt
            if max_background is None or busy is None or busy <= max_background:
                break
            log(f"    disturbed: other processes kept {busy:.2f} cores busy; running it again")
        record["cases"].append(res)
        log("    " + _summary_line(res))
    record["load_average_after"] = load_average()
    background = [c["background_cores"] for c in record["cases"]]
    background = [b for b in background if b is not None]
    record["max_background_cores"] = max(background) if background else None
    record["wall_s"] = round(time.perf_counter() - started, 1)
    return record


def _summary_line(res: dict[str, Any]) -> str:
    def side(r):
        if r.get("error"):
            return f"{r['label']}: FAILED ({r['error'][:80]})"
        return f"{r['label']}: {r['median_ms']:.3g} ms (acc {_fmt_acc(r.get('accuracy'))})"

    return "; ".join([side(res["jaxla"]), *(side(a) for a in res["anchors"])])


# ---------------------------------------------------------------------------------------------
# Files


def write_suite_json(record: dict[str, Any], results_dir: Path | str = RESULTS_DIR) -> Path:
    """Write ``record`` to ``<results_dir>/<suite>.json`` (atomically) and return the path."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{record['suite']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def load_results(results_dir: Path | str = RESULTS_DIR) -> list[dict[str, Any]]:
    """Every suite record in ``results_dir``, sorted by suite name."""
    records = []
    for path in sorted(Path(results_dir).glob("*.json")):
        with contextlib.suppress(json.JSONDecodeError, OSError):
            record = json.loads(path.read_text())
            if isinstance(record, dict) and "suite" in record:
                records.append(record)
    return sorted(records, key=lambda r: r["suite"])


def _fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if v < 1000 else f"{v:,.0f}"


def _fmt_acc(v: float | None) -> str:
    if v is None:
        return "-"
    if not math.isfinite(v):
        return str(v)
    return "0" if v == 0 else f"{v:.1e}"


def _fmt_info(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _fmt_gflops(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _blas_summary(blas: dict[str, Any]) -> str:
    libs = blas.get("libraries")
    if not libs:
        return f"unknown (source: {blas.get('source')})"
    parts = []
    for lib in libs:
        if lib.get("user_api") != "blas":
            continue
        owner = Path(lib.get("filepath") or "").parent.name.replace(".libs", "") or "?"
        arch = f", {lib['architecture']} kernels" if lib.get("architecture") else ""
        layer = f", {lib['threading_layer']}" if lib.get("threading_layer") else ""
        parts.append(
            f"{owner}: {lib.get('internal_api')} {lib.get('version')}{arch}, "
            f"{lib.get('num_threads')} threads{layer}"
        )
    return "; ".join(parts) or "no BLAS found by threadpoolctl"


def _machine_summary(record: dict[str, Any]) -> list[str]:
    m, v = record.get("machine", {}), record.get("versions", {})
    lines = [
        f"- Machine: {m.get('cpu')}, {m.get('cores')} cores ({m.get('cores_usable')} usable), "
        f"{m.get('memory_gib')} GiB memory; {m.get('platform')}",
        f"- JAX backend: {m.get('jax_backend')} ({', '.join(m.get('jax_devices', []))})",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val is not None),
        f"- BLAS of the anchors: {_blas_summary(record.get('blas', {}))}",
    ]
    env = {k: val for k, val in record.get("env", {}).items() if val is not None}
    lines.append("- Environment: " + (", ".join(f"{k}={val}" for k, val in env.items()) or
                                      "no BLAS/XLA/thread variables set"))
    removed = record.get("env_removed") or {}
    if removed:
        lines.append(
            "- Removed by the runner before numpy was loaded: "
            + ", ".join(f"{k}={val}" for k, val in removed.items())
        )
    if record.get("git_commit"):
        lines.append(f"- jaxla commit: {record['git_commit']}")
    return lines


def _fingerprint(record: dict[str, Any]) -> str:
    keys = ("machine", "versions", "blas", "env", "env_removed")
    return json.dumps({k: record.get(k) for k in keys}, sort_keys=True)


COLUMNS = (
    "case",
    "size",
    "dtype",
    "jaxla median (ms)",
    "jaxla compile (ms)",
    "anchor",
    "anchor median (ms)",
    "ratio jaxla/anchor",
    "accuracy jaxla",
    "accuracy anchor",
    "GFLOP/s jaxla",
    "GFLOP/s anchor",
)


def _rows(case: dict[str, Any]) -> list[list[str]]:
    j = case["jaxla"]
    head = [case["name"], case["size"], case.get("dtype", "")]
    if j.get("error"):
        jcols = [f"failed: {j['error']}", "-"]
    else:
        jcols = [_fmt_ms(j["median_ms"]), _fmt_ms(j.get("compile_ms"))]
    rows = []
    for a in case["anchors"] or [{"label": "-", "error": None, "median_ms": None}]:
        if a.get("error"):
            acols = [a["label"], f"failed: {a['error']}", "-"]
        else:
            acols = [a["label"], _fmt_ms(a.get("median_ms")), _fmt_ratio(a.get("ratio"))]
        acc = [_fmt_acc(j.get("accuracy")), _fmt_acc(a.get("accuracy"))]
        flops = [_fmt_gflops(j.get("gflops")), _fmt_gflops(a.get("gflops"))]
        rows.append([*head, *jcols, *acols, *acc, *flops])
    return rows


def _suite_section(record: dict[str, Any], header_fp: str) -> list[str]:
    mode = "quick (smoke-test sizes, not for comparison)" if record.get("quick") else "full"
    load = record.get("load_average_before")
    load_txt = f"{load[0]:.2f}" if load else "unknown"
    lines = [
        f"## {record['suite']}",
        "",
        f"Run {record.get('date')}: {mode}; median of {record.get('repeats')} runs after "
        f"{record.get('warmup', 1)} warm-up; 1-minute load average before the run {load_txt}; "
        f"wall time {record.get('wall_s')} s.",
    ]
    if record.get("max_background_cores") is not None:
        lines[-1] += (
            f" Other processes kept at most {record['max_background_cores']:.2f} of "
            f"{record.get('machine', {}).get('cores')} cores busy during a case."
        )
    rerun = sum(1 for c in record.get("cases", []) if c.get("attempts", 1) > 1)
    if rerun:
        lines[-1] += f" {rerun} case(s) were run again because other processes were busy."
    peak = record.get("matmul_peak")
    if peak:
        lines[-1] += (
            f" Machine matmul throughput ({peak['dtype']} {peak['n']}x{peak['n']} @ "
            f"{peak['n']}x{peak['n']}): jax {peak['jax_gflops']:.1f} GFLOP/s, "
            f"numpy {peak['numpy_gflops']:.1f} GFLOP/s."
        )
    if _fingerprint(record) != header_fp:
        lines += ["", "This suite ran on a different machine or environment:", "",
                  *_machine_summary(record)]
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for case in record.get("cases", []):
        for row in _rows(case):
            lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    metrics: dict[str, str] = {}
    notes: dict[str, list[str]] = {}
    for case in record.get("cases", []):
        metrics.setdefault(case["name"], case.get("metric", ""))
        if case.get("note"):
            notes.setdefault(case["name"], [case["note"]])
        for side in (case["jaxla"], *case["anchors"]):
            key = f"{case['name']} {case['size']} {side['label']}"
            if side.get("info"):
                figures = ", ".join(f"{k}={_fmt_info(v)}" for k, v in side["info"].items())
                notes.setdefault(key, []).append(figures)
            if side.get("accuracy_error"):
                notes.setdefault(key, []).append(f"accuracy failed: {side['accuracy_error']}")
    lines += ["", "Accuracy (lower is better):", ""]
    lines += [f"- `{name}`: {metric}" for name, metric in metrics.items()]
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- `{name}`: {'; '.join(texts)}" for name, texts in notes.items()]
    return lines


def render_markdown(records: Sequence[dict[str, Any]]) -> str:
    """The text of ``RESULTS.md`` for the given suite records."""
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python -m benchmarks` from `benchmarks/results/*.json`; do not edit by",
        "hand. Each row times a jaxla operation and an anchor in the same process on the same",
        "data. Times are medians in milliseconds (minimum and interquartile range are in the JSON",
        "files); jaxla is jitted and its compile time is reported separately. A ratio below 1",
        "means jaxla is faster. Accuracy is an error against a float64 reference (metric listed",
        "under each table). GFLOP/s is shown where the operation is matmul-bound. See",
        "`docs/benchmarks.md`.",
    ]
    if not records:
        return "\n".join([*lines, "", "No results yet: run `python -m benchmarks`.", ""])
    newest = max(records, key=lambda r: r.get("date") or "")
    header_fp = _fingerprint(newest)
    lines += ["", "## Machine and versions", "", *_machine_summary(newest)]
    for record in records:
        lines += ["", *_suite_section(record, header_fp)]
    return "\n".join(lines) + "\n"


def write_markdown(
    results_dir: Path | str = RESULTS_DIR, path: Path | str = RESULTS_MD
) -> Path:
    """Regenerate ``path`` from every suite JSON file in ``results_dir``."""
    path = Path(path)
    text = render_markdown(load_results(results_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
