"""jaxla.distributed and the data-parallel entry points.

The helpers are tested in this process (one CPU device). The sharded entry points run on 8
simulated CPU devices in a subprocess (``XLA_FLAGS=--xla_force_host_platform_device_count=8``
must be set before JAX starts): ``tests/distributed_scripts/report.py`` computes every check
once and prints a JSON report that the tests below read. The default run uses its ``quick``
mode (a sharded PCA fit, the TSQR truncated SVD, ``tsqr``, with the collectives of their compiled
programs); the slow tests use its ``full`` mode (every entry point, Auto and Explicit axes) and run
``examples/multiprocess_pca_train.py`` with 2 processes. Sharded results must equal the
single-device ones to 1e-5 (float32, relative to the largest entry).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, Mesh

from jaxla import distributed
from tests.helpers import msg

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5
N, D = 4096, 24  # the report's data: 8 devices hold 512 rows each
P_DEV = 8


# ---------------------------------------------------------------------------------------------
# Helpers, in this process


def test_data_mesh_axes():
    mesh = distributed.data_mesh()
    assert isinstance(mesh, Mesh)
    assert mesh.axis_names == ("data",)
    assert mesh.shape["data"] == jax.device_count()
    assert mesh.axis_types == (AxisType.Auto,)
    explicit = distributed.data_mesh(1, axis_name="batch", axis_type="explicit")
    assert explicit.axis_names == ("batch",)
    assert explicit.axis_types == (AxisType.Explicit,)
    assert distributed.data_mesh(axis_type=AxisType.Explicit).axis_types == (AxisType.Explicit,)


def test_data_mesh_errors():
    fn = "jaxla.distributed.data_mesh"
    count = jax.device_count()
    with pytest.raises(ValueError, match=msg(f"{fn}: `n_devices` must be >= 1, got 0")):
        distributed.data_mesh(0)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `n_devices`={count + 1} exceeds jax.device_count()={count}")):
        distributed.data_mesh(count + 1)
    with pytest.raises(TypeError, match=msg(f"{fn}: `n_devices` must be an int, got 1.5 (float)")):
        distributed.data_mesh(1.5)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `axis_type` must be one of 'auto', 'explicit', got 'manual'")):
        distributed.data_mesh(axis_type="manual")
    with pytest.raises(TypeError, match=msg(f"{fn}: `axis_name` must be a non-empty str, got ''")):
        distributed.data_mesh(axis_name="")


@pytest.fixture(scope="module")
def mesh():
    return distributed.data_mesh()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shard_rows_pytree(mesh, dtype):
    rng = np.random.default_rng(0)
    batch = {"x": rng.standard_normal((8, 3)).astype(dtype), "y": jnp.arange(8)}
    out = distributed.shard_rows(batch, mesh)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(batch)
    for name in ("x", "y"):
        assert isinstance(out[name], jax.Array)
        assert out[name].sharding.spec[0] == "data"
        assert out[name].dtype == jnp.asarray(batch[name]).dtype
        np.testing.assert_array_equal(np.asarray(out[name]), np.asarray(batch[name]))
    single = distributed.shard_rows(batch["x"], mesh)
    assert single.shape == (8, 3)


def test_shard_rows_errors(mesh):
    fn = "jaxla.distributed.shard_rows"
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `x` must have a leading row axis, got a scalar at 'b'")):
        distributed.shard_rows({"a": np.ones(4), "b": np.float32(1.0)}, mesh)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `x` leaves must share the leading row axis (4 rows at '0'), got 5 at "
            "'1'")):
        distributed.shard_rows((np.ones((4, 2)), np.ones(5)), mesh)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `axis_name` must be an axis of `mesh` ('data',), got 'rows'")):
        distributed.shard_rows(np.ones(4), mesh, axis_name="rows")
    with pytest.raises(TypeError, match=msg(
            f"{fn}: `mesh` must be a jax.sharding.Mesh (e.g. from "
            "jaxla.distributed.data_mesh()), got str")):
        distributed.shard_rows(np.ones(4), "data")
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `x` must be an array or a pytree with at least one array, got dict without "
            "leaves")):
        distributed.shard_rows({}, mesh)


def test_replicate(mesh):
    params = {"w": np.arange(6.0).reshape(3, 2), "b": jnp.ones(2, jnp.float32)}
    out = distributed.replicate(params, mesh)
    for name, leaf in out.items():
        assert leaf.sharding.is_fully_replicated
        np.testing.assert_array_equal(np.asarray(leaf), np.asarray(params[name]))
    assert out["b"].dtype == jnp.float32
    with pytest.raises(TypeError, match=msg(
            "jaxla.distributed.replicate: `mesh` must be a jax.sharding.Mesh (e.g. from "
            "jaxla.distributed.data_mesh()), got NoneType")):
        distributed.replicate(params, None)


def test_process_rows(mesh):
    assert distributed.process_rows(12, mesh) == slice(0, 12)
    with pytest.raises(ValueError, match=msg(
            "jaxla.distributed.process_rows: `n_rows` must be >= 1, got 0")):
        distributed.process_rows(0, mesh)


@functools.cache
def _tsqr_ref(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.random.default_rng(seed).standard_normal((n, k))
    q, r = np.linalg.qr(a)
    s = np.where(np.diag(r) < 0, -1.0, 1.0)
    return a, q * s[None, :], r * s[:, None]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tsqr_one_device_equals_qr(mesh, dtype):
    a, q_ref, r_ref = _tsqr_ref(40, 5, 0)
    x = distributed.shard_rows(a.astype(dtype), mesh)
    q, r = distributed.tsqr(x)
    assert q.shape == (40, 5) and r.shape == (5, 5)
    assert q.dtype == dtype and r.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(np.asarray(q), q_ref, atol=tol)
    np.testing.assert_allclose(np.asarray(r), r_ref, atol=tol * 10)
    # jit and vmap (traced, unsharded: Householder QR)
    _, rj = jax.jit(distributed.tsqr)(x)
    np.testing.assert_allclose(np.asarray(rj), np.asarray(r), atol=tol * 10)
    stack = jnp.stack([jnp.asarray(a, dtype), 2 * jnp.asarray(a, dtype)])
    qv, rv = jax.vmap(distributed.tsqr)(stack)
    assert qv.shape == (2, 40, 5)
    np.testing.assert_allclose(np.asarray(rv[1]), 2 * r_ref, atol=tol * 20)


def test_tsqr_errors():
    fn = "jaxla.distributed.tsqr"
    with pytest.raises(ValueError, match=msg(f"{fn}: `x` must be tall (n >= k), got shape (2, 3)")):
        distributed.tsqr(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=msg(f"{fn}: `x` must be 2-D (n, k), got shape (3,)")):
        distributed.tsqr(jnp.ones(3))
    with pytest.raises(TypeError, match="^" + fn + ": `x` must have a real floating dtype"):
        distributed.tsqr(jnp.ones((3, 2), jnp.int32))
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `x` contains 1 NaN or Inf value(s); clean or mask them first")):
        distributed.tsqr(jnp.ones((3, 2)).at[0, 0].set(jnp.nan))


# ---------------------------------------------------------------------------------------------
# Sharded entry points on 8 simulated devices (subprocess)


def _report(mode: str) -> dict:
    rep = _run_report(mode)
    if "failed" in rep:
        pytest.fail(rep["failed"])
    return rep


@functools.cache
def _run_report(mode: str) -> dict:
    """The subprocess's report; a failed run is remembered too (it is not run once per test)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("JAX_ENABLE_X64", None)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.distributed_scripts.report", mode],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT")]
    if proc.returncode != 0 or not lines:
        return {"failed": f"sharded subprocess ({mode}) failed:\n{proc.stderr[-4000:]}"}
    return json.loads(lines[-1][len("REPORT"):])


def _entry(rep: dict, name: str):
    if name not in rep:
        pytest.fail(f"{name} was not computed; errors: {rep.get('section_errors')}")
    res = rep[name]
    if isinstance(res, dict) and "error" in res:
        pytest.fail(f"{name} raised in the subprocess:\n{res['error']}")
    return res


def _assert_close(res: dict, fields, tol=TOL):
    for f in fields:
        assert res[f] <= tol, (f, res[f])


def _assert_small(ops, *, max_rows: int, max_cols: int, kinds=("all-reduce", "all-gather")):
    """Every collective is of an allowed kind and moves only arrays of at most
    ``max_rows x max_cols`` (a vector or scalar counts as one row): never rows of the data, whose
    row counts (4096 in all, 512 per device) appear in no operand."""
    for kind, shapes in ops:
        assert kind in kinds, (kind, shapes)
        for dims in shapes:
            assert len(dims) <= 2, (kind, shapes)
            assert N not in dims and N // P_DEV not in dims, (kind, shapes)
            rows, cols = (1, *dims)[-2:] if dims else (1, 1)
            assert rows <= max_rows and cols <= max_cols, (kind, shapes)


def test_quick_sharded_checks():
    """Default run: row sharding, sharded PCA fit and TSQR SVD equal one device; the HLO
    proves that only (d, d) statistics and (d, d) factors cross devices."""
    rep = _report("quick")
    assert rep["devices"] == 8
    assert rep["mesh_axis_types"] == ["AxisType.Auto"]
    assert rep["shard_rows_error"] == (
        "jaxla.distributed.shard_rows: `x` must have a number of rows divisible by the 8 devices "
        "of mesh axis 'data', got 100 rows; drop or pad rows first")
    assert rep["shard_rows_tree_error"] == (
        "jaxla.distributed.shard_rows: `x` leaves must share the leading row axis (16 rows at "
        "'x'), got 12 at 'y'")
    assert rep["shard_rows"] == {"spec": "P('data',)", "y_spec": "P('data',)", "equal": True,
                                 "shard_shape": [N // P_DEV, D]}

    fit = rep["pca_fit"]
    assert fit["dtype"] == "float32" and fit["n_samples"] == N
    _assert_close(fit, ("mean", "components", "explained_variance", "explained_variance_ratio",
                        "singular_values", "noise_variance"))
    ops = rep["pca_fit_hlo"]
    assert any(kind == "all-reduce" and [D, D] in shapes for kind, shapes in ops), ops
    _assert_small(ops, max_rows=D, max_cols=D, kinds=("all-reduce",))  # no all-gather at all

    svd = rep["truncated_svd"]
    assert svd["dtype"] == "float32" and svd["u_spec"].startswith("P('data',")
    _assert_close(svd, ("u", "s", "vt"))
    ops = rep["truncated_svd_hlo"]
    assert any(kind == "all-gather" for kind, _ in ops), ops  # the TSQR gather of R factors
    _assert_small(ops, max_rows=P_DEV * D, max_cols=D)  # (8 d, d) stacked R: never data rows

    tsqr = rep["tsqr"]
    assert tsqr["reconstruction"] <= TOL and tsqr["orthonormality"] <= TOL
    assert tsqr["r"] <= TOL and tsqr["triangular"] and tsqr["diag_nonnegative"]
    assert tsqr["q_spec"].startswith("P('data',") and tsqr["dtype"] == "float32"


PCA_FIELDS = ("mean", "components", "explained_variance", "explained_variance_ratio",
              "singular_values", "noise_variance")


@pytest.mark.slow
@pytest.mark.parametrize("case", ["pca_svd_auto", "pca_svd_explicit", "pca_randomized_auto",
                                  "pca_randomized_explicit"])
def test_pca_solvers_sharded(case):
    res = _entry(_report("full"), case)
    assert res["dtype"] == "float32" and res["n_samples"] == N
    _assert_close(res, PCA_FIELDS)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["pca_svd_hlo", "pca_randomized_hlo"])
def test_pca_solvers_move_only_small_arrays(case):
    ops = _entry(_report("full"), case)
    assert ops
    _assert_small(ops, max_rows=P_DEV * D, max_cols=D + 16)


@pytest.mark.slow
def test_covariance_accumulation_of_sharded_chunks():
    res = _entry(_report("full"), "pca_stats")
    assert res["count"] == N
    assert res["mean"] <= TOL and res["scatter"] <= TOL
    _assert_close(res["fit_stream"], PCA_FIELDS)
    assert any(kind == "all-reduce" and [D, D] in shapes for kind, shapes in res["hlo"])
    _assert_small(res["hlo"], max_rows=D, max_cols=D, kinds=("all-reduce",))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["rsvd_power_auto", "rsvd_block_krylov_auto",
                                  "rsvd_adaptive_auto", "rsvd_centered_auto",
                                  "rsvd_power_explicit"])
def test_randomized_svd_sharded(case):
    res = _entry(_report("full"), case)
    assert res["dtype"] == "float32" and res["u_spec"].startswith("P('data',")
    assert res["rank"][0] == res["rank"][1]
    _assert_close(res, ("u", "s", "vt", "error_estimate"))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["rsvd_power_hlo", "rsvd_block_krylov_hlo"])
def test_randomized_svd_moves_only_small_factors(case):
    ops = _entry(_report("full"), case)
    assert any(kind == "all-reduce" for kind, _ in ops)
    # n x (sketch + estimator) products, b x b Gram matrices, stacked (8 b, b) R factors
    _assert_small(ops, max_rows=P_DEV * D, max_cols=D + 16)


@pytest.mark.slow
def test_svd_under_jit_with_explicit_axes():
    res = _entry(_report("full"), "svd_jit_explicit")
    _assert_close(res["rsvd"], ("u", "s", "vt"))
    _assert_close(res["truncated_svd"], ("u", "s", "vt"))
    assert res["tsqr_reconstruction"] <= TOL
    _assert_small(res["hlo"], max_rows=P_DEV * D, max_cols=D + 16)


@pytest.mark.slow
def test_truncated_svd_gradient_through_tsqr():
    res = _entry(_report("full"), "truncated_svd_grad")
    assert res["dtype"] == "float64" and res["tsqr_used"]
    assert res["grad"] <= 1e-10


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_data_parallel_train_step(kind):
    res = _entry(_report("full"), f"train_step_{kind}")
    assert res["params"] <= TOL and res["loss"] <= TOL
    assert res["params_replicated"]
    # the gradient all-reduce carries parameter-sized arrays (largest leaf 8 x 4 ... 8 x 1),
    # never examples: 256 rows, 32 per device
    assert any(kind == "all-reduce" for kind, _ in res["hlo"])
    _assert_small(res["hlo"], max_rows=8, max_cols=8, kinds=("all-reduce",))


@pytest.mark.slow
def test_hvp_moves_only_parameter_sized_arrays():
    ops = _entry(_report("full"), "hvp_hlo")
    assert any(kind == "all-reduce" for kind, _ in ops)
    _assert_small(ops, max_rows=8, max_cols=8, kinds=("all-reduce",))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["train_fit_auto", "train_fit_explicit",
                                  "train_fit_minibatch_64_auto", "train_fit_minibatch_64_explicit",
                                  "train_fit_minibatch_60_auto", "train_fit_minibatch_60_explicit",
                                  "hvp_auto", "hvp_explicit",
                                  "hessian_trace_auto", "hessian_trace_explicit"])
def test_data_parallel_entry_points(case):
    assert _entry(_report("full"), case) <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["auto", "explicit"])
def test_hessian_eigs_sharded_batch(kind):
    res = _entry(_report("full"), f"hessian_eigs_{kind}")
    assert res["converged"]
    assert res["eigenvalues"] <= TOL and res["eigenvectors"] <= TOL


@pytest.mark.slow
def test_multiprocess_example(tmp_path):
    """Two processes (2 CPU devices each) joined by jax.distributed.initialize: the PCA fit,
    the TSQR SVD, a training step, train.fit and hessian_eigs on globally sharded rows equal a
    single-process run."""
    report = tmp_path / "report.json"
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "multiprocess_pca_train.py"), "--processes",
         "2", "--report", str(report)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rep = json.loads(report.read_text())
    assert rep["ok"]
    assert [p["process"] for p in rep["processes"]] == [0, 1]
    assert all(p["devices"] == 4 and p["local_devices"] == 2 for p in rep["processes"])
    assert [p["rows"] for p in rep["processes"]] == [[0, 2048], [2048, 4096]]
    assert {"fit.loss", "hessian_eigs.eigenvalue"} <= set(rep["max_rel_diff"])
    for name, err in rep["max_rel_diff"].items():
        assert err <= TOL, (name, err)
