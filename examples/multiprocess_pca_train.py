"""Data-parallel jaxla across processes: PCA, training and curvature on globally sharded rows.

One command starts everything::

    python examples/multiprocess_pca_train.py --processes 2

The launcher picks a free port on localhost, starts ``--processes`` worker processes of this
script and waits for them. Each worker

1. joins the others with ``jax.distributed.initialize(coordinator_address="localhost:PORT",
   num_processes=N, process_id=i)`` (CPU collectives over gloo), then sees all ``N x
   --local-devices`` devices of the job;
2. builds a one-axis mesh over them (``jaxla.distributed.data_mesh``) and turns *its own* rows
   of the data set into one global array split by rows (``jaxla.distributed.process_rows`` says
   which rows a process holds, ``shard_rows(..., process_local=True)`` assembles them);
3. runs ``jaxla.pca.fit`` (each device reduces its rows to a (d,) mean and a (d, d) scatter, and
   only those are summed across processes), ``jaxla.linalg.truncated_svd`` (TSQR: only (d, d)
   factors are gathered), one ``jaxla.train.make_step`` step of an MLP with replicated
   parameters (the gradient is all-reduced), three steps of ``jaxla.train.fit`` and the top
   Hessian eigenvalue (``jaxla.curvature.hessian_eigs``: every Hessian-vector product is
   all-reduced);
4. writes what it got (the replicated results are the same in every process).

The launcher then computes the same things in a single process on one device and prints the
largest relative differences; it exits with status 1 when one exceeds ``--tol`` (1e-5, float32).
On a cluster, the worker part is the whole recipe: start one process per host with the real
coordinator address (or let ``jax.distributed.initialize()`` detect SLURM / Cloud TPU settings).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

N_COMPONENTS = 4
HIDDEN = 16


def make_data(rows: int, features: int) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic regression data set: ``x`` (rows, features) and ``y`` (rows, 1)."""
    rng = np.random.default_rng(0)
    scales = np.geomspace(3.0, 0.3, features)
    x = (rng.standard_normal((rows, features)) * scales + 5.0).astype(np.float32)
    w = rng.standard_normal((features, 1)) / np.sqrt(features)
    y = (np.tanh((x - 5.0) @ w) + 0.1 * rng.standard_normal((rows, 1))).astype(np.float32)
    return x, y


def problem(features: int):
    """The model, loss, optimizer and initial parameters shared by workers and the reference."""
    import jax
    import jax.numpy as jnp
    import optax

    from jaxla.nn import mlp, mlp_init

    params = mlp_init(jax.random.key(1), [features, HIDDEN, 1], dtype=jnp.float32)

    def loss_fn(p, batch):
        xb, yb = batch
        return jnp.mean((mlp(p, xb, activation="tanh") - yb) ** 2)

    return params, loss_fn, optax.adam(1e-2)


def compute(x, y, features: int) -> dict:
    """PCA, truncated SVD, training and the top Hessian eigenvalue on (x, y); returns numpy
    results."""
    import jax

    from jaxla import curvature, distributed, pca, train
    from jaxla.linalg import truncated_svd

    params, loss_fn, optimizer = problem(features)
    if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1:
        params = distributed.replicate(params, x.sharding.mesh)
    p = pca.fit(x, N_COMPONENTS, solver="covariance_eigh")
    svd = truncated_svd(x - p.mean[None, :], N_COMPONENTS)
    step = train.make_step(loss_fn, optimizer, donate=False)
    new_params, _, metrics = step(params, optimizer.init(params), (x, y))
    fitted, history = train.fit(loss_fn, params, (x, y), optimizer, steps=3, progress=False)
    eigs = curvature.hessian_eigs(jax.random.key(2), loss_fn, params, (x, y), k=1)
    out = {
        "pca.mean": p.mean,
        "pca.components": p.components,
        "pca.explained_variance": p.explained_variance,
        "svd.s": svd.s,
        "svd.vt": svd.vt,
        "step.loss": metrics["loss"],
        "step.grad_norm": metrics["grad_norm"],
    }
    for path, leaf in jax.tree_util.tree_leaves_with_path(new_params):
        out["step.params" + jax.tree_util.keystr(path)] = leaf
    out["fit.loss"] = history["loss"]
    for path, leaf in jax.tree_util.tree_leaves_with_path(fitted):
        out["fit.params" + jax.tree_util.keystr(path)] = leaf
    out["hessian_eigs.eigenvalue"] = eigs.eigenvalues
    # replicated results are readable in every process
    return {k: np.asarray(v, np.float64).tolist() for k, v in out.items()}


def worker(args: argparse.Namespace) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"localhost:{args.port}",
                               num_processes=args.processes, process_id=args.worker)
    from jaxla import distributed

    mesh = distributed.data_mesh()  # every device of every process, one "data" axis
    x, y = make_data(args.rows, args.features)
    mine = distributed.process_rows(args.rows, mesh)  # a real job would load only these rows
    xg, yg = distributed.shard_rows((x[mine], y[mine]), mesh, process_local=True)
    result = compute(xg, yg, args.features)
    result["info"] = {
        "process": jax.process_index(),
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "rows": [mine.start, mine.stop],
        "global_shape": list(xg.shape),
    }
    path = Path(args.out) / f"worker{args.worker}.json"
    path.write_text(json.dumps(result))
    jax.distributed.shutdown()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def launch(args: argparse.Namespace) -> dict:
    """Start the workers, wait for them, compare with a single-process run; return a report."""
    port = free_port()
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                        + f" --xla_force_host_platform_device_count={args.local_devices}")
    env.pop("JAX_ENABLE_X64", None)
    with tempfile.TemporaryDirectory() as out:
        procs = []
        for i in range(args.processes):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(i),
                   "--processes", str(args.processes), "--port", str(port),
                   "--local-devices", str(args.local_devices), "--rows", str(args.rows),
                   "--features", str(args.features), "--out", out]
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
        deadline = time.monotonic() + args.timeout
        logs = []
        failed = False
        for proc in procs:
            try:
                log, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                for other in procs:
                    other.kill()
                log, _ = proc.communicate()
                log += "\n[timed out]"
            logs.append(log)
            failed |= proc.returncode != 0
        if failed:
            for i, log in enumerate(logs):
                print(f"--- worker {i} (exit {procs[i].returncode}) ---\n{log[-3000:]}",
                      file=sys.stderr)
            raise SystemExit("a worker failed")
        results = [json.loads((Path(out) / f"worker{i}.json").read_text())
                   for i in range(args.processes)]
    infos = [r.pop("info") for r in results]
    x, y = make_data(args.rows, args.features)
    import jax

    reference = compute(jax.device_put(x, jax.devices()[0]), jax.device_put(y, jax.devices()[0]),
                        args.features)
    errors = {}
    for name, ref in reference.items():
        ref = np.asarray(ref)
        scale = max(float(np.max(np.abs(ref))), 1e-30)
        errors[name] = max(float(np.max(np.abs(np.asarray(r[name]) - ref))) / scale
                           for r in results)
    return {"processes": infos, "max_rel_diff": errors,
            "ok": bool(all(e <= args.tol for e in errors.values()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--local-devices", type=int, default=2,
                        help="simulated CPU devices per process (default 2)")
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--tol", type=float, default=1e-5,
                        help="largest accepted relative difference (default 1e-5)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the workers")
    parser.add_argument("--report", help="also write the comparison as JSON to this file")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(args)
        return 0
    if args.processes < 1 or args.local_devices < 1:
        parser.error("--processes and --local-devices must be >= 1")
    if args.rows % (args.processes * args.local_devices):
        parser.error("--rows must be divisible by processes x local devices")
    report = launch(args)
    devices = sum(info["local_devices"] for info in report["processes"])
    print(f"{args.processes} processes, {devices} devices, x of shape "
          f"{tuple(report['processes'][0]['global_shape'])} split by rows:")
    for info in report["processes"]:
        print(f"  process {info['process']}: rows {info['rows'][0]}:{info['rows'][1]} on "
              f"{info['local_devices']} devices")
    print("largest relative difference from a single-process run:")
    for name, err in report["max_rel_diff"].items():
        print(f"  {name:<32} {err:.2e}")
    print("OK" if report["ok"] else f"FAILED: a difference exceeds {args.tol:g}")
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
