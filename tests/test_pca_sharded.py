"""Sharded PCA fits on 8 simulated CPU devices equal the single-device fit.

XLA's device count is fixed when JAX starts, so the sharded fits run in a subprocess started with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``; it prints a JSON report that the tests
check. Besides the numbers, the report lists the collectives of the compiled programs: only the
(d,) means and the (d, d) statistics may cross devices, never the rows.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    r"""
    import json, re, sys
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    from jaxla import pca

    N, D, K = 4096, 24, 5
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((N, D)) * np.geomspace(4.0, 0.5, D) + 50.0).astype(np.float32)
    single = pca.fit(jax.device_put(x, jax.devices()[0]), K, solver="covariance_eigh",
                     block_size=128)

    def diff(p):
        out = {}
        for f in ("mean", "components", "explained_variance", "explained_variance_ratio",
                  "singular_values", "noise_variance"):
            a = np.asarray(getattr(p, f), np.float64)
            b = np.asarray(getattr(single, f), np.float64)
            out[f] = float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))
        out["n_samples"] = int(p.n_samples)
        out["dtype"] = str(p.components.dtype)
        return out

    def collectives(compiled_text):
        # [kind, [operand shapes]] of every collective instruction of a compiled program
        found = []
        for line in compiled_text.splitlines():
            m = re.search(r"= (.*?) (all-gather|all-reduce|all-to-all|collective-permute|"
                          r"reduce-scatter)(-start)?\(", line)
            if m:
                shapes = [[int(v) for v in dims.split(",") if v]
                          for dims in re.findall(r"[a-z]+[0-9]+\[([0-9,]*)\]", m.group(1))]
                found.append([m.group(2), shapes])
        return found

    report = {"devices": jax.device_count()}
    # 1. eager fit of a row-sharded array (Auto axes)
    mesh = jax.make_mesh((8,), ("rows",), axis_types=(AxisType.Auto,))
    xs = jax.device_put(x, NamedSharding(mesh, P("rows", None)))
    report["eager_auto"] = diff(pca.fit(xs, K, solver="covariance_eigh", block_size=128))
    report["eager_auto_default_solver"] = diff(pca.fit(xs, K, block_size=128))
    core = pca._fit_core.lower(
        xs, None, jnp.asarray(False), k=K, solver="covariance_eigh", center=True, block=128,
        groups=8, oversamples=10, power_iters=None).compile().as_text()
    report["eager_auto_collectives"] = collectives(core)

    # 2. jit with Auto axes: row_groups says how the rows are split
    f = jax.jit(lambda a: pca.fit(a, K, solver="covariance_eigh", block_size=128, row_groups=8))
    report["jit_auto"] = diff(f(xs))
    report["jit_auto_collectives"] = collectives(f.lower(xs).compile().as_text())

    # 3. jit with Explicit axes: the sharding is read from the array's type
    mesh_e = jax.make_mesh((8,), ("rows",), axis_types=(AxisType.Explicit,))
    xe = jax.device_put(x, NamedSharding(mesh_e, P("rows", None)))
    with jax.set_mesh(mesh_e):
        g = jax.jit(lambda a: pca.fit(a, K, solver="covariance_eigh", block_size=128))
        report["jit_explicit"] = diff(g(xe))
        report["jit_explicit_collectives"] = collectives(g.lower(xe).compile().as_text())

    # 4. a transform of the sharded rows stays sharded by rows
    z = pca.transform(pca.fit(xs, K), xs)
    report["transform_sharding"] = str(z.sharding.spec)
    print("REPORT" + json.dumps(report))
    """
)


@functools.cache
def _report() -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8")
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("JAX_ENABLE_X64", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"sharded PCA subprocess failed:\n{proc.stderr[-4000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT")][-1]
    return json.loads(line[len("REPORT"):])


@pytest.mark.parametrize(
    "case", ["eager_auto", "eager_auto_default_solver", "jit_auto", "jit_explicit"]
)
def test_sharded_fit_equals_single_device(case):
    rep = _report()
    assert rep["devices"] == 8
    res = rep[case]
    assert res["n_samples"] == 4096
    assert res["dtype"] == "float32"
    for field in ("mean", "components", "explained_variance", "explained_variance_ratio",
                  "singular_values", "noise_variance"):
        assert res[field] <= 1e-5, (case, field, res[field])


@pytest.mark.parametrize(
    "case", ["eager_auto_collectives", "jit_auto_collectives", "jit_explicit_collectives"]
)
def test_only_statistics_cross_devices(case):
    ops = _report()[case]
    assert ops, "a sharded fit must combine the per-device statistics"
    for kind, shapes in ops:
        assert kind == "all-reduce", (kind, shapes)
        # every operand is a (d,) or (d, d) statistic (d = 24) or a scalar, never rows of x
        for dims in shapes:
            assert all(v in (1, 24) for v in dims), (kind, shapes)


def test_transform_keeps_rows_sharded():
    assert "rows" in _report()["transform_sharding"]
