"""Run benchmark suites: ``python -m benchmarks [SUITES...] [--quick] [--repeats 5]``.

Run from the repository root. Each suite writes ``benchmarks/results/<suite>.json``; then
``benchmarks/RESULTS.md`` is regenerated from every suite JSON file present, so running one suite
keeps the other suites' sections. ``--quick`` runs smoke-test sizes and writes to
``benchmarks/results/quick/`` instead, leaving the committed results alone.

OpenBLAS reads ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` when numpy is imported; forced
values can select slower kernels than OpenBLAS's own detection. Unless ``--keep-env`` is given,
the runner re-executes itself without them (before importing numpy) and records what it removed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
REMOVED_VAR = "JAXLA_BENCH_REMOVED_ENV"  # same name as harness.BLAS_ENV_REMOVED


def _reexec_without_blas_overrides(argv: list[str]) -> None:
    """Replace this process by one without the OpenBLAS overrides, if any are set."""
    present = {k: os.environ[k] for k in BLAS_OVERRIDES if k in os.environ}
    if not present or "--keep-env" in argv or "numpy" in sys.modules:
        return
    env = {k: v for k, v in os.environ.items() if k not in BLAS_OVERRIDES}
    env[REMOVED_VAR] = json.dumps(present)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks", *argv], env)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time jaxla against its anchors and write benchmarks/RESULTS.md.",
    )
    p.add_argument("suites", nargs="*", help="suites to run (default: all discovered suites)")
    p.add_argument("--quick", action="store_true", help="small sizes for a fast smoke run")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per side (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs (default 1)")
    p.add_argument("--list", action="store_true", help="list the discovered suites and exit")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results directory (default benchmarks/results, or benchmarks/results/quick with "
        "--quick); RESULTS.md is written next to the JSON files unless it is the default",
    )
    p.add_argument(
        "--keep-env",
        action="store_true",
        help="do not remove OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE from the environment",
    )
    p.add_argument(
        "--no-peak", action="store_true", help="skip the matmul-throughput measurement"
    )
    p.add_argument(
        "--max-background",
        type=float,
        default=None,
        help="before each case wait until other processes keep at most this many cores busy, "
        "and run a case again (up to --retries times) when they exceeded it meanwhile "
        "(default 0.2 for full runs, off with --quick; a negative value turns it off)",
    )
    p.add_argument("--retries", type=int, default=3, help="re-runs of a disturbed case (default 3)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the selected suites, write the JSON files and RESULTS.md."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.repeats < 1:
        _parser().error(f"--repeats must be >= 1, got {args.repeats}")
    if args.retries < 0:
        _parser().error(f"--retries must be >= 0, got {args.retries}")

    from benchmarks import harness

    suites, failures = harness.discover_suites()
    for module, error in failures.items():
        print(f"warning: benchmarks/{module}.py could not be imported: {error}", file=sys.stderr)
    if args.list:
        for name, module in suites.items():
            print(f"{name:12s} {module.__name__}")
        return 0
    wanted = args.suites or list(suites)
    unknown = [s for s in wanted if s not in suites]
    if unknown:
        print(
            f"error: unknown suite(s) {', '.join(unknown)}; available: {', '.join(suites)}",
            file=sys.stderr,
        )
        return 2

    if args.out is not None:
        results_dir, results_md = args.out, args.out / "RESULTS.md"
    elif args.quick:
        results_dir = harness.RESULTS_DIR / "quick"
        results_md = results_dir / "RESULTS.md"
    else:
        results_dir, results_md = harness.RESULTS_DIR, harness.RESULTS_MD

    load = harness.load_average()
    if load and load[0] > 1.5:
        print(f"warning: 1-minute load average is {load[0]:.2f}; timings may be disturbed",
              file=sys.stderr)
    if os.environ.get(REMOVED_VAR):
        print(f"note: removed from the environment: {os.environ[REMOVED_VAR]}", file=sys.stderr)

    max_background = args.max_background
    if max_background is None:
        max_background = None if args.quick else 0.2
    elif max_background < 0:
        max_background = None
    peak = None
    if not args.no_peak:
        n = 1024 if args.quick else 2048
        print(f"measuring float32 matmul throughput ({n}x{n}) ...", file=sys.stderr, flush=True)
        peak = harness.matmul_peak(
            n, repeats=args.repeats, max_background=max_background, retries=args.retries
        )
        print(
            f"    jax {peak['jax_gflops']:.1f} GFLOP/s, numpy {peak['numpy_gflops']:.1f} GFLOP/s",
            file=sys.stderr,
        )

    for name in wanted:
        record = harness.run_suite(
            name,
            suites[name].cases(args.quick),
            repeats=args.repeats,
            warmup=args.warmup,
            quick=args.quick,
            peak=peak,
            max_background=max_background,
            retries=args.retries,
        )
        path = harness.write_suite_json(record, results_dir)
        print(f"wrote {path}", file=sys.stderr)
    md = harness.write_markdown(results_dir, results_md)
    print(f"wrote {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    _reexec_without_blas_overrides(sys.argv[1:])
    sys.exit(main())
