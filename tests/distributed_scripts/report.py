"""Sharded jaxla entry points on 8 simulated CPU devices, compared with the single-device results.

Usage: ``python -m tests.distributed_scripts.report quick|full`` in a process started with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (the device count is fixed when JAX starts).
It prints one line ``REPORT{json}`` that tests/test_distributed.py checks:

- ``quick`` (the default test run): row sharding, a sharded PCA fit, the TSQR truncated SVD of a
  tall matrix and :func:`jaxla.distributed.tsqr`, with the collectives of their compiled
  programs;
- ``full`` (the slow tests): every data-parallel entry point, with ``Auto`` and ``Explicit`` mesh
  axes, eagerly and under ``jit``.

Differences are ``max |sharded - single| / max |single|`` over all entries (and all leaves of a
pytree), in float64. Collectives are listed as ``[kind, [operand shapes]]`` from the compiled HLO
text. The JAX configuration is the test suite's (float64 enabled, rank promotion raising); the
data are float32 unless a check says otherwise.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxla import autodiff, curvature, distributed, pca, train  # noqa: E402
from jaxla.linalg import lowrank, randomized_svd, truncated_svd  # noqa: E402
from jaxla.nn import mlp, mlp_init  # noqa: E402

N, D, K = 4096, 24, 5  # tall data: 512 rows per device
PCA_FIELDS = ("mean", "components", "explained_variance", "explained_variance_ratio",
              "singular_values", "noise_variance")


def rel(out: Any, ref: Any) -> float:
    """Largest difference of two pytrees relative to the largest reference entry (per leaf)."""
    worst = 0.0
    for a, b in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(ref), strict=True):
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64)
        worst = max(worst, float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-300))
    return worst


def collectives(text: str) -> list:
    """``[kind, [operand shapes]]`` of every collective instruction of a compiled program."""
    found = []
    for line in text.splitlines():
        m = re.search(r"= (.*?) (all-gather|all-reduce|all-to-all|collective-permute|"
                      r"reduce-scatter|collective-broadcast)(-start)?\(", line)
        if m:
            shapes = [[int(v) for v in dims.split(",") if v]
                      for dims in re.findall(r"[a-z]+[0-9]+\[([0-9,]*)\]", m.group(1))]
            found.append([m.group(2), shapes])
    return found


def error_text(f) -> str | None:
    try:
        f()
    except Exception as err:  # the text is what the tests check
        return str(err).split("\n")[0]
    return None


def guarded(report: dict, name: str, f) -> None:
    """``report[name] = f()``, or the error (so one failing check does not hide the others)."""
    try:
        report[name] = f()
    except Exception:
        report[name] = {"error": traceback.format_exc()[-3000:]}


def pca_diff(p: pca.PCA, ref: pca.PCA) -> dict:
    out = {f: rel(getattr(p, f), getattr(ref, f)) for f in PCA_FIELDS}
    out["dtype"] = str(p.components.dtype)
    out["n_samples"] = int(p.n_samples)
    return out


def pca_data() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((N, D)) * np.geomspace(4.0, 0.5, D) + 50.0).astype(np.float32)


def tall_matrix() -> np.ndarray:
    """(N, D) with singular values 10 ... 0.1 (well separated) and random singular vectors."""
    rng = np.random.default_rng(1)
    u, _ = np.linalg.qr(rng.standard_normal((N, D)))
    v, _ = np.linalg.qr(rng.standard_normal((D, D)))
    return ((u * np.geomspace(10.0, 0.1, D)) @ v.T).astype(np.float32)


def svd_diff(res: Any, ref: Any) -> dict:
    out = {f: rel(getattr(res, f), getattr(ref, f)) for f in ("u", "s", "vt")}
    out["u_spec"] = str(res.u.sharding.spec)
    out["dtype"] = str(res.u.dtype)
    return out


# ---------------------------------------------------------------------------------------------


def quick(report: dict) -> None:
    mesh = distributed.data_mesh(8)
    report["devices"] = jax.device_count()
    report["mesh_axis_types"] = [str(t) for t in mesh.axis_types]
    report["shard_rows_error"] = error_text(
        lambda: distributed.shard_rows(np.ones((100, 3), np.float32), mesh))
    report["shard_rows_tree_error"] = error_text(
        lambda: distributed.shard_rows({"x": np.ones((16, 3)), "y": np.ones(12)}, mesh))
    x = pca_data()
    xs, ys = distributed.shard_rows((x, np.zeros(N, np.float32)), mesh)
    report["shard_rows"] = {"spec": str(xs.sharding.spec), "y_spec": str(ys.sharding.spec),
                            "equal": bool(np.array_equal(np.asarray(xs), x)),
                            "shard_shape": list(xs.addressable_shards[0].data.shape)}

    # 1. PCA fit of row-sharded data (covariance solver) under jit with Auto axes: one compiled
    # program gives the result and the HLO
    single = pca.fit(jax.device_put(x, jax.devices()[0]), K, solver="covariance_eigh")
    fit = jax.jit(lambda m: pca.fit(m, K, solver="covariance_eigh", row_groups=8))
    compiled = fit.lower(xs).compile()
    report["pca_fit"] = pca_diff(compiled(xs), single)
    report["pca_fit_hlo"] = collectives(compiled.as_text())

    # 2. truncated SVD (TSQR) of a tall row-sharded matrix and the public tsqr, under jit with
    # Explicit axes (the sharding is read from the types)
    a = tall_matrix()
    ref = truncated_svd(jax.device_put(a, jax.devices()[0]), K)
    mesh_e = distributed.data_mesh(8, axis_type="explicit")
    a_e = distributed.shard_rows(a, mesh_e)
    with jax.set_mesh(mesh_e):
        compiled = jax.jit(lambda m: (truncated_svd(m, K), distributed.tsqr(m))).lower(
            a_e).compile()
        tsvd, (q, r) = compiled(a_e)
    report["truncated_svd"] = svd_diff(tsvd, ref)
    report["truncated_svd_hlo"] = collectives(compiled.as_text())
    q64, r64 = np.asarray(q, np.float64), np.asarray(r, np.float64)
    r_ref = np.asarray(jnp.linalg.qr(jnp.asarray(a, jnp.float64))[1])
    r_ref = r_ref * np.where(np.diag(r_ref) < 0, -1.0, 1.0)[:, None]
    report["tsqr"] = {
        "reconstruction": float(np.max(np.abs(q64 @ r64 - a)) / np.max(np.abs(a))),
        "orthonormality": float(np.max(np.abs(q64.T @ q64 - np.eye(D)))),
        "r": rel(r64, r_ref),
        "triangular": bool(np.all(np.tril(r64, -1) == 0)),
        "diag_nonnegative": bool(np.all(np.diag(r64) >= 0)),
        "q_spec": str(q.sharding.spec),
        "dtype": str(q.dtype),
    }


# ---------------------------------------------------------------------------------------------


def full_pca(report: dict, meshes: dict) -> None:
    x = pca_data()
    key = jax.random.key(0)
    x0 = jax.device_put(x, jax.devices()[0])
    singles = {s: pca.fit(x0, K, solver=s, **({"key": key} if s == "randomized" else {}))
               for s in ("svd", "randomized", "covariance_eigh")}
    for kind, mesh in meshes.items():
        xs = distributed.shard_rows(x, mesh)
        for solver in ("svd", "randomized"):
            kw = {"key": key} if solver == "randomized" else {}
            with jax.set_mesh(mesh):
                guarded(report, f"pca_{solver}_{kind}",
                        lambda xs=xs, solver=solver, kw=kw: pca_diff(
                            pca.fit(xs, K, solver=solver, **kw), singles[solver]))
    xa = distributed.shard_rows(x, meshes["auto"])
    rows = lowrank._tall_row_split(xa)
    for solver in ("svd", "randomized"):
        guarded(report, f"pca_{solver}_hlo", lambda solver=solver: collectives(
            pca._fit_core.lower(xa, key if solver == "randomized" else None, jnp.asarray(False),
                                k=K, solver=solver, center=True, block=1024, groups=1,
                                oversamples=10, power_iters=None, rows=rows)
            .compile().as_text()))

    # covariance accumulation of sharded chunks: stats_update / fit_stream
    def stats():
        s0 = pca.stats_init(D)
        ref = pca.stats_update(pca.stats_update(s0, x[: N // 2]), x[N // 2:])
        chunks = [distributed.shard_rows(x[i: i + N // 2], meshes["auto"]) for i in (0, N // 2)]
        out = pca.stats_update(pca.stats_update(s0, chunks[0]), chunks[1])
        hlo = collectives(pca._update_core.lower(s0, chunks[0], block=pca._default_block(D),
                                                 groups=8).compile().as_text())
        stream = pca.fit_stream(iter(chunks), K)
        return {"count": int(out.count), "mean": rel(out.mean, ref.mean),
                "scatter": rel(out.scatter, ref.scatter), "hlo": hlo,
                "fit_stream": pca_diff(stream, singles["covariance_eigh"])}

    guarded(report, "pca_stats", stats)


def full_svd(report: dict, meshes: dict) -> None:
    a = tall_matrix()
    a0 = jax.device_put(a, jax.devices()[0])
    key = jax.random.key(0)
    center = jnp.asarray(np.linspace(-1.0, 1.0, D), jnp.float32)
    cases = {
        "power": {},
        "block_krylov": {"method": "block_krylov"},
        "adaptive": {"tol": 0.3},  # rank 7 of 24, in two blocks of 5
        "centered": {"center": center},
    }
    refs = {name: randomized_svd(key, a0, K, **kw) for name, kw in cases.items()}
    for kind, mesh in meshes.items():
        a_s = distributed.shard_rows(a, mesh)
        for name, kw in cases.items():
            if kind == "explicit" and name != "power":
                continue

            def one(a_s=a_s, name=name, kw=kw, mesh=mesh):
                with jax.set_mesh(mesh):
                    res = randomized_svd(key, a_s, K, **kw)
                out = svd_diff(res, refs[name])
                out["error_estimate"] = rel(res.error_estimate, refs[name].error_estimate)
                out["rank"] = [int(res.rank), int(refs[name].rank)]
                return out

            guarded(report, f"rsvd_{name}_{kind}", one)
    a_s = distributed.shard_rows(a, meshes["auto"])
    rows = lowrank._tall_row_split(a_s)
    for name, method in (("power", "power"), ("block_krylov", "block_krylov")):
        def hlo(method=method):
            # the sketch widths randomized_svd picks: l = K + 10 with 7 power iterations, or
            # l = K + 1 with 3 Krylov blocks ((q + 1) l <= n)
            l, q = (K + 10, 7) if method == "power" else (K + 1, 3)
            g = lowrank._gaussian_block(key, D, l + lowrank._estimator_width(l), jnp.float32)
            return collectives(lowrank._rsvd.lower(
                g, a_s, None, None, k=K, l=l, q=q, method=method, normalizer="qr",
                adaptive=False, max_rank=None, out_dtype=jnp.dtype(jnp.float32), rows=rows)
                .compile().as_text())

        guarded(report, f"rsvd_{name}_hlo", hlo)

    # under jit with Explicit axes the sharding is read from the types
    mesh_e = meshes["explicit"]
    a_e = distributed.shard_rows(a, mesh_e)

    def jit_explicit():
        with jax.set_mesh(mesh_e):
            f = jax.jit(lambda m: (randomized_svd(key, m, K), truncated_svd(m, K),
                                   distributed.tsqr(m)))
            compiled = f.lower(a_e).compile()
            res, tsvd, (q, r) = compiled(a_e)
        return {"rsvd": svd_diff(res, refs["power"]),
                "truncated_svd": svd_diff(tsvd, truncated_svd(a0, K)),
                "tsqr_reconstruction": float(np.max(np.abs(np.asarray(q, np.float64)
                                                           @ np.asarray(r, np.float64) - a))
                                             / np.max(np.abs(a))),
                "hlo": collectives(compiled.as_text())}

    guarded(report, "svd_jit_explicit", jit_explicit)

    # derivatives through the TSQR path (float64) equal the single-device ones; under grad the
    # sharding is known from the types with Explicit axes
    def grads():
        a64 = a.astype(np.float64)
        weights = np.linspace(0.5, 1.5, N)[:, None]

        def f(m, w):
            u, s, vt = truncated_svd(m, 3)
            return jnp.sum(s ** 2 * jnp.arange(1.0, 4.0)) + jnp.sum(w * u ** 2) \
                + jnp.sum(vt[:, :4] ** 3)

        g0 = jax.grad(f)(jax.device_put(a64, jax.devices()[0]), weights)
        with jax.set_mesh(mesh_e):
            m, w = distributed.shard_rows((a64, weights), mesh_e)
            lowered = jax.jit(jax.grad(f)).lower(m, w)
            g1 = lowered.compile()(m, w)
        return {"grad": rel(g1, g0), "dtype": str(g1.dtype),
                "tsqr_used": "all-gather" in lowered.compile().as_text()}

    guarded(report, "truncated_svd_grad", grads)


def full_train(report: dict, meshes: dict) -> None:
    rng = np.random.default_rng(2)
    n = 256
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = np.sin(x[:, :1]).astype(np.float32)
    params = mlp_init(jax.random.key(0), [4, 8, 1], dtype=jnp.float32)

    def loss(p, batch, key=None):
        return jnp.mean((mlp(p, batch[0], activation="tanh") - batch[1]) ** 2)

    opt = optax.adam(1e-2)
    step = train.make_step(loss, opt, donate=False)
    dev0 = jax.devices()[0]
    b0 = jax.device_put((x, y), dev0)
    p0 = jax.device_put(params, dev0)
    vec = jax.tree_util.tree_map(lambda w: jnp.cos(jnp.arange(w.size, dtype=w.dtype)
                                                   ).reshape(w.shape), params)
    singles = {  # single-device references (a failing one fails only the checks using it)
        "step": lambda: step(p0, opt.init(p0), b0),
        "fit": lambda: train.fit(loss, p0, b0, opt, steps=4, progress=False)[0],
        # batches of 64 split over the 8 devices; batches of 60 do not divide into them
        **{f"fit_minibatch_{size}": lambda size=size: train.fit(
            loss, p0, b0, opt, steps=4, batch_size=size, key=jax.random.key(3),
            progress=False)[0] for size in (64, 60)},
        "hvp": lambda: autodiff.hvp(lambda p: loss(p, b0), p0, vec),
        "eigs": lambda: curvature.hessian_eigs(jax.random.key(1), loss, p0, b0, k=2),
        "trace": lambda: curvature.hessian_trace(jax.random.key(1), loss, p0, b0,
                                                 num_matvecs=12),
    }
    cache: dict = {}
    for name, f in singles.items():  # outside any mesh context: on device 0
        try:
            cache[name] = f()
        except Exception as err:
            cache[name] = RuntimeError(f"single-device reference {name!r} failed: "
                                       f"{traceback.format_exc()[-2000:]}")
            cache[name].__cause__ = err

    def single(name):
        if isinstance(cache[name], Exception):
            raise cache[name]
        return cache[name]

    for kind, mesh in meshes.items():
        with jax.set_mesh(mesh):  # Explicit axes need the mesh in context
            batch = distributed.shard_rows((x, y), mesh)
            pr = distributed.replicate(params, mesh)

            def one_step(batch=batch, pr=pr):
                compiled = step.lower(pr, opt.init(pr), batch).compile()
                new_p, _, metrics = compiled(pr, opt.init(pr), batch)
                ref_step = single("step")
                return {"params": rel(new_p, ref_step[0]), "loss": rel(metrics["loss"],
                                                                     ref_step[2]["loss"]),
                        "params_replicated": all(leaf.sharding.is_fully_replicated
                                                 for leaf in jax.tree_util.tree_leaves(new_p)),
                        "hlo": collectives(compiled.as_text())}

            guarded(report, f"train_step_{kind}", one_step)
            guarded(report, f"train_fit_{kind}", lambda batch=batch, pr=pr: rel(
                train.fit(loss, pr, batch, opt, steps=4, progress=False)[0], single("fit")))
            for size in (64, 60):  # with Explicit axes each batch is a gather of typed rows
                guarded(report, f"train_fit_minibatch_{size}_{kind}",
                        lambda batch=batch, pr=pr, size=size: rel(
                            train.fit(loss, pr, batch, opt, steps=4, batch_size=size,
                                      key=jax.random.key(3), progress=False)[0],
                            single(f"fit_minibatch_{size}")))
            vr = distributed.replicate(vec, mesh)
            guarded(report, f"hvp_{kind}", lambda batch=batch, pr=pr, vr=vr: rel(
                autodiff.hvp(lambda p: loss(p, batch), pr, vr), single("hvp")))
            if kind == "auto":
                guarded(report, "hvp_hlo", lambda batch=batch, pr=pr, vr=vr: collectives(
                    jax.jit(lambda p, b, v: autodiff.hvp(lambda q: loss(q, b), p, v))
                    .lower(pr, batch, vr).compile().as_text()))

            def eigs(batch=batch, pr=pr):
                res = curvature.hessian_eigs(jax.random.key(1), loss, pr, batch, k=2)
                ref_eigs = single("eigs")
                return {"eigenvalues": rel(res.eigenvalues, ref_eigs.eigenvalues),
                        "eigenvectors": rel(res.eigenvectors, ref_eigs.eigenvectors),
                        "converged": bool(res.converged)}

            guarded(report, f"hessian_eigs_{kind}", eigs)
            guarded(report, f"hessian_trace_{kind}", lambda batch=batch, pr=pr: rel(
                curvature.hessian_trace(jax.random.key(1), loss, pr, batch,
                                        num_matvecs=12).estimate, single("trace").estimate))


def full(report: dict) -> None:
    meshes = {"auto": distributed.data_mesh(8),
              "explicit": distributed.data_mesh(8, axis_type="explicit")}
    report["devices"] = jax.device_count()
    for section in (full_pca, full_svd, full_train):
        try:
            section(report, meshes)
        except Exception:  # the checks of this section that did not run are reported missing
            report.setdefault("section_errors", {})[section.__name__] = \
                traceback.format_exc()[-3000:]


def main(mode: str) -> None:
    report: dict = {"mode": mode}
    if mode == "quick":
        quick(report)
    else:
        full(report)
    print("REPORT" + json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
