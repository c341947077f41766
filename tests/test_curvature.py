"""Tests of jaxla.curvature against dense Hessians and Gauss-Newton matrices (numpy.linalg.eigh).

The model is a small tanh MLP (4 -> 16 -> 16 -> 3, 403 parameters, float64) with a softmax
cross-entropy loss on 24 random examples. References are dense matrices built with
``jax.hessian``/``jax.jacfwd`` on a numpy flattening of the parameters (leaves in
``jax.tree.leaves`` order, row-major), decomposed with ``numpy.linalg.eigh``.

Every JAX computation is jitted once per configuration and shared between tests (test data are
numpy arrays): an eager call of a Krylov solver compiles a fresh program.
"""

import functools
import itertools
import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxla.curvature as curvature
from jaxla.linalg import EigshResult, SpectralDensity, TraceEstimate, eigsh
from jaxla.nn import mlp
from tests.helpers import msg


def prefix(text):
    """Regex matching a message that starts with ``text`` (under jit JAX may append a note)."""
    return "^" + re.escape(text)


def flat(tree):
    """A pytree as one float64 numpy vector (leaves in tree_leaves order, row-major)."""
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def unflat(vec, like):
    leaves, treedef = jax.tree.flatten(like)
    out, off = [], 0
    for leaf in leaves:
        out.append(vec[off:off + leaf.size].reshape(leaf.shape))
        off += leaf.size
    return jax.tree.unflatten(treedef, out)


_RNG = np.random.default_rng(0)
SIZES = (4, 16, 16, 3)
PARAMS = {
    f"layers_{i}": {"w": _RNG.standard_normal((a, b)) / np.sqrt(a),
                    "b": 0.3 * _RNG.standard_normal(b)}
    for i, (a, b) in enumerate(itertools.pairwise(SIZES))
}
N_PARAMS = sum(x.size for x in jax.tree.leaves(PARAMS))  # 403
BATCH = {"x": _RNG.standard_normal((24, 4)), "y": _RNG.integers(0, 3, 24)}
BATCHES = [jax.tree.map(lambda a, i=i: a[8 * i:8 * (i + 1)], BATCH) for i in range(3)]


def model_fn(p, b):
    return mlp(p, b["x"], activation="tanh")


def out_loss(z, b):
    logp = jax.nn.log_softmax(z, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, b["y"][:, None], axis=1))


def loss_fn(p, b):
    return out_loss(model_fn(p, b), b)


@functools.cache
def dense_hessian():
    h = jax.jit(jax.hessian(lambda z: loss_fn(unflat(z, PARAMS), BATCH)))(flat(PARAMS))
    return np.asarray(h)


@functools.cache
def dense_ggn():
    z = flat(PARAMS)
    jac = jax.jit(jax.jacfwd(lambda z: model_fn(unflat(z, PARAMS), BATCH)))(z)  # (24, 3, P)
    out = jax.jit(model_fn)(PARAMS, BATCH)
    h_out = jax.jit(jax.hessian(lambda o: out_loss(o, BATCH)))(out)  # (24, 3, 24, 3)
    return np.einsum("ncp,ncmd,mdq->pq", jac, h_out, jac)


@functools.cache
def dense_eigh(which):
    return np.linalg.eigh(dense_hessian() if which == "hessian" else dense_ggn())


@functools.partial(jax.jit, static_argnames=("k", "which", "kind", "params_filter", "split",
                                             "tol", "criterion"))
def eigs(key, params, data, *, k, which, kind="hessian", params_filter=None, split=False,
         tol=1e-8, criterion="residual"):
    """hessian_eigs on the MLP (``kind`` is its ``curvature``); ``split`` passes the loss as
    (model_fn, out_loss). Jitted so that each configuration compiles once."""
    return curvature.hessian_eigs(
        key, out_loss if split else loss_fn, params, data, k=k, which=which, tol=tol,
        criterion=criterion, curvature=kind, params_filter=params_filter,
        model_fn=model_fn if split else None,
    )


KEY = jax.random.key(0)


def _ref_pairs(w, u, k, which):
    idx = {"largest": np.arange(len(w) - k, len(w)), "smallest": np.arange(k),
           "both_ends": np.r_[np.arange(k), np.arange(len(w) - k, len(w))]}[which]
    return w[idx], u[:, idx]


def _check_eigenpairs(res, mat, ref_w, *, rtol):
    """Eigenvalues against the reference, eigenvectors by their true residuals."""
    w = np.asarray(res.eigenvalues)
    np.testing.assert_allclose(w, ref_w, rtol=rtol)
    assert np.all(np.abs(w - ref_w) <= rtol * np.abs(ref_w))
    vecs = np.stack([flat(jax.tree.map(lambda x, i=i: x[i], res.eigenvectors))
                     for i in range(len(w))])
    np.testing.assert_allclose(vecs @ vecs.T, np.eye(len(w)), atol=1e-8)
    true_res = np.linalg.norm(vecs @ mat - w[:, None] * vecs, axis=1)
    np.testing.assert_allclose(res.residual_norms, true_res, atol=1e-7 * np.abs(w).max())
    return vecs


# ---------------------------------------------------------------------------------------------
# eigenpairs


@pytest.mark.parametrize("which", [
    pytest.param("largest", marks=pytest.mark.slow),  # each option compiles its own program
    pytest.param("smallest", marks=pytest.mark.slow),
    "both_ends",
])
def test_hessian_eigs_match_dense_eigh(which):
    res = eigs(KEY, PARAMS, BATCH, k=5, which=which)
    assert isinstance(res, EigshResult)
    k2 = 10 if which == "both_ends" else 5
    assert res.eigenvalues.shape == (k2,) and res.eigenvalues.dtype == jnp.float64
    assert res.residual_norms.shape == (k2,) and res.error_bounds.shape == (k2,)
    assert res.eigenvectors["layers_1"]["w"].shape == (k2, 16, 16)
    assert bool(res.converged) and 5 <= int(res.num_matvecs) < 1000
    w_all, u_all = dense_eigh("hessian")
    assert w_all[0] < 0 < w_all[-1]  # an indefinite Hessian: both ends matter
    ref_w, ref_u = _ref_pairs(w_all, u_all, 5, which)
    vecs = _check_eigenpairs(res, dense_hessian(), ref_w, rtol=1e-4)
    # eigenvectors are those of eigh up to the canonical sign (largest |entry| positive)
    ref_u = ref_u * np.sign(ref_u[np.argmax(np.abs(ref_u), axis=0), np.arange(k2)])
    np.testing.assert_allclose(vecs, ref_u.T, atol=1e-5)


def test_ggn_eigenvalues_match_dense_gauss_newton():
    res = eigs(KEY, PARAMS, BATCH, k=5, which="largest", kind="ggn", split=True)
    w_all, _ = dense_eigh("ggn")
    assert w_all[0] > -1e-12  # the GGN of a cross-entropy loss is PSD
    assert not np.allclose(w_all[-5:], dense_eigh("hessian")[0][-5:], rtol=1e-2)
    assert bool(res.converged)
    _check_eigenpairs(res, dense_ggn(), w_all[-5:], rtol=1e-4)


def test_params_filter_gives_the_eigenvalues_of_the_dense_block():
    pattern = re.compile(r"layers_1/.*")  # the middle layer's w and b: 272 parameters
    # a leaf held fixed may be an integer (a step counter in the parameter tree)
    res = eigs(KEY, {**PARAMS, "step": np.int32(7)}, BATCH, k=3, which="both_ends",
               params_filter=pattern)
    counter = res.eigenvectors.pop("step")
    assert counter.shape == (6,) and counter.dtype == jnp.int32 and not np.any(counter)
    marker = jax.tree.map(np.zeros_like, PARAMS)
    marker["layers_1"] = jax.tree.map(np.ones_like, marker["layers_1"])
    sel = flat(marker).astype(bool)
    assert sel.sum() == 272
    block = dense_hessian()[np.ix_(sel, sel)]
    ref = np.linalg.eigvalsh(block)
    full = np.zeros((6, N_PARAMS))
    full[:] = np.stack([flat(jax.tree.map(lambda x, i=i: x[i], res.eigenvectors))
                        for i in range(6)])
    assert np.all(full[:, ~sel] == 0)  # the other leaves are held fixed
    assert bool(res.converged)
    np.testing.assert_allclose(res.eigenvalues, np.r_[ref[:3], ref[-3:]], rtol=1e-4)
    res_block = np.linalg.norm(full[:, sel] @ block - np.asarray(res.eigenvalues)[:, None]
                               * full[:, sel], axis=1)
    assert np.all(res_block <= 1e-6 * np.abs(ref).max())
    # the block's spectrum is not the full Hessian's
    assert not np.allclose(res.eigenvalues[-3:], dense_eigh("hessian")[0][-3:], rtol=1e-2)


def test_sequence_of_batches_equals_the_hessian_of_the_mean_loss():
    # three equal batches of 8, with the loss split into model and output loss
    res = eigs(KEY, PARAMS, BATCHES, k=3, which="both_ends", split=True)
    w_all, _ = dense_eigh("hessian")  # the Hessian of the mean loss over all 24 examples
    assert bool(res.converged)
    _check_eigenpairs(res, dense_hessian(), np.r_[w_all[:3], w_all[-3:]], rtol=1e-4)


def test_float32_parameters_are_accurate_and_keep_their_dtype():
    # criterion='eigenvalue': tol is the relative accuracy of the eigenvalues
    p32 = jax.tree.map(lambda x: np.asarray(x, np.float32), PARAMS)
    b32 = {"x": np.asarray(BATCH["x"], np.float32), "y": BATCH["y"]}
    res = eigs(KEY, p32, b32, k=3, which="largest", tol=1e-3, criterion="eigenvalue")
    assert res.eigenvalues.dtype == jnp.float32 and res.residual_norms.dtype == jnp.float32
    assert res.error_bounds.dtype == jnp.float32
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(res.eigenvectors))
    assert bool(res.converged)
    ref = dense_eigh("hessian")[0][-3:]
    assert np.all(np.abs(np.asarray(res.eigenvalues, np.float64) - ref) <= 1e-3 * ref[-1])
    bounds = np.asarray(res.error_bounds)
    assert np.all(bounds <= 1e-3 * ref[-1] * 1.001)  # the criterion, on the reported estimates
    assert np.all(bounds <= np.asarray(res.residual_norms))  # min(r, r**2 / gap) <= r


# The stopping rule of hessian_eigs is that of jaxla.linalg.eigsh (Lanczos), checked here on
# dense matrices (eigsh compiles one program for a dense matrix, shared by both criteria):
# TOP_A has a modest gap at the top (lambda_2 / lambda_1 = 0.9) above a bulk; THREE_A has three
# distinct eigenvalues, so the Krylov space of a generic start vector is invariant after three
# steps.
N_QUAD = 120
_Q = np.linalg.qr(np.random.default_rng(3).standard_normal((N_QUAD, N_QUAD)))[0]
TOP_A = (_Q * np.r_[1.0, 0.9, 0.8, np.linspace(-0.1, 0.5, N_QUAD - 3)]) @ _Q.T
THREE_A = (_Q * np.repeat([1.0, 0.5, -0.2], N_QUAD // 3)) @ _Q.T


def top_many(keys, a, criterion):
    """The top eigenpair (k=1, tol=1e-3) of ``a`` from one random start vector per key, stacked
    (a loop of eager calls: they share one compiled program, cheaper to compile than a vmap)."""
    runs = [eigsh(key, a, None, 1, tol=1e-3, criterion=criterion) for key in keys]
    return jax.tree.map(lambda *xs: np.stack(xs), *runs)


def _wrong(res, a):
    """Start vectors whose top eigenvalue is off by more than tol = 1e-3 (relative)."""
    lam = np.linalg.eigvalsh(a)[-1]
    return np.abs(np.asarray(res.eigenvalues[:, 0]) - lam) > 1e-3 * lam


def test_eigenvalue_criterion_is_accurate_with_fewer_products_than_residuals():
    keys = jax.random.split(jax.random.key(0), 32)
    lam = np.linalg.eigvalsh(TOP_A)[-1]
    counts = {}
    for criterion in ("eigenvalue", "residual"):
        res = top_many(keys, TOP_A, criterion)
        assert res.eigenvalues.shape == (32, 1) and res.error_bounds.shape == (32, 1)
        assert np.all(res.converged) and not np.any(_wrong(res, TOP_A))
        bounds, resid = np.asarray(res.error_bounds[:, 0]), np.asarray(res.residual_norms[:, 0])
        assert np.all(bounds <= resid)
        measure = bounds if criterion == "eigenvalue" else resid
        assert np.all(measure <= 1e-3 * lam * 1.001)
        # the reported residuals are those of the returned pairs
        v = np.asarray(res.eigenvectors[:, 0])
        true = np.linalg.norm(v @ TOP_A - np.asarray(res.eigenvalues) * v, axis=1)
        np.testing.assert_allclose(resid, true, atol=1e-10)
        counts[criterion] = np.asarray(res.num_matvecs)
    # the eigenvalue criterion stops earlier (r**2 / gap falls faster than r), never later
    assert np.median(counts["eigenvalue"]) < np.median(counts["residual"])
    assert np.all(counts["eigenvalue"] <= counts["residual"])
    # one product per Lanczos step, checked at every step: with three distinct eigenvalues the
    # Krylov space is invariant after three products, and the answer is exact then
    res = top_many(keys, THREE_A, "eigenvalue")
    np.testing.assert_array_equal(res.num_matvecs, 3)
    np.testing.assert_allclose(res.eigenvalues[:, 0], 1.0, rtol=1e-12)
    assert np.all(res.converged)


@pytest.mark.slow
def test_top_eigenvalue_is_rarely_the_second_one_from_a_random_start():
    # a start vector with little weight on the top eigenvector can let Lanczos settle on the
    # second eigenvalue with a small residual; the confirming product catches nearly all of
    # these (without it, the residual criterion missed 4 of these 2,000 start vectors)
    keys = jax.random.split(jax.random.key(0), 2000)
    wrong = {c: int(np.sum(_wrong(top_many(keys, TOP_A, c), TOP_A)))
             for c in ("eigenvalue", "residual")}
    assert wrong["residual"] <= 2  # 0.1%
    assert wrong["eigenvalue"] <= 20  # 1%: it stops earlier, so it misses more often


# ---------------------------------------------------------------------------------------------
# trace and density

NUM_SEEDS = 8


@functools.partial(jax.jit, static_argnames=("method",))
def _traces(keys, params, data, method):
    return jax.vmap(lambda k: curvature.hessian_trace(k, loss_fn, params, data, num_matvecs=60,
                                                      method=method))(keys)


@pytest.mark.parametrize("method", [
    "hutch++",
    # its dispatch runs by default in the tests of data forms and non-finite curvature below
    pytest.param("hutchinson", marks=pytest.mark.slow),
])
def test_trace_estimates_are_within_their_standard_errors(method):
    exact = np.trace(dense_hessian())
    est = _traces(jax.random.split(jax.random.key(1), NUM_SEEDS), PARAMS, BATCH, method)
    assert isinstance(est, TraceEstimate)
    assert est.estimate.shape == (NUM_SEEDS,) and est.estimate.dtype == jnp.float64
    np.testing.assert_array_equal(est.num_matvecs, 60)
    values, se = np.asarray(est.estimate), np.asarray(est.std_error)
    assert np.all(se > 0)
    # each estimate is within 3 of its standard errors of the exact trace (allow one miss) ...
    assert np.sum(np.abs(values - exact) <= 3 * se) >= NUM_SEEDS - 1
    # ... and the estimates are unbiased
    assert abs(values.mean() - exact) <= 3 * values.std(ddof=1) / np.sqrt(NUM_SEEDS)


def test_density_first_moment_matches_the_trace_and_nodes_lie_in_the_spectrum():
    p, m = 8, 30
    sd = jax.jit(lambda key: curvature.hessian_density(
        key, loss_fn, PARAMS, BATCH, num_probes=p, num_matvecs=m, grid=128))(jax.random.key(2))
    assert isinstance(sd, SpectralDensity)
    assert sd.nodes.shape == (p, m) and sd.weights.shape == (p, m)
    assert sd.grid.shape == (128,) and sd.density.shape == (128,)
    assert int(sd.num_matvecs) == p * m
    np.testing.assert_allclose(np.trapezoid(sd.density, sd.grid), 1.0, rtol=1e-10)
    np.testing.assert_allclose(np.sum(sd.weights, axis=1), 1.0, rtol=1e-10)
    w_all, _ = dense_eigh("hessian")
    nodes = np.asarray(sd.nodes)
    assert nodes.min() >= w_all[0] - 1e-8 and nodes.max() <= w_all[-1] + 1e-8
    # the extreme eigenvalues are quadrature nodes after 30 steps
    np.testing.assert_allclose(nodes.max(), w_all[-1], rtol=1e-6)
    # first moment: per-probe Hutchinson estimates of the trace
    t = N_PARAMS * np.sum(np.asarray(sd.weights) * nodes, axis=1)
    exact = np.trace(dense_hessian())
    assert abs(t.mean() - exact) <= 3 * t.std(ddof=1) / np.sqrt(p)


@functools.cache
def _quadratic_trace():
    def loss(p, b):  # Hessian diag(2 * c); b is a dict, a tuple or a list
        c = b["c"] if isinstance(b, dict) else b[0]
        return jnp.sum(c * p["w"] ** 2)

    return jax.jit(lambda data: curvature.hessian_trace(
        jax.random.key(0), loss, {"w": np.ones(3)}, data, num_matvecs=4, method="hutchinson"))


@pytest.mark.parametrize("form", ["batch", "list", "tuple", "tuple_batch"])
def test_data_forms_single_batch_list_tuple(form):
    c = [np.array([1.0, 2.0, 3.0]), np.array([3.0, 4.0, 5.0])]
    data = {
        "batch": {"c": c[0]},
        "list": [{"c": c[0]}, {"c": c[1]}],
        "tuple": ({"c": c[0]}, {"c": c[1]}),
        "tuple_batch": (c[0], np.zeros(2)),  # a tuple of arrays is one batch
    }[form]
    exact = 12.0 if form in ("batch", "tuple_batch") else 18.0  # mean over batches
    est = _quadratic_trace()(data)
    np.testing.assert_allclose(est.estimate, exact, rtol=1e-12)  # Rademacher: exact


# ---------------------------------------------------------------------------------------------
# sharpness


def test_sharpness_tracker_logs_the_top_eigenvalue_every_few_steps():
    cb = curvature.sharpness_tracker(KEY, loss_fn, BATCHES, every=2, tol=1e-6)
    info = types.SimpleNamespace(step=0, params=PARAMS, opt_state=None, metrics={}, history={})
    out = cb(info)
    assert set(out) == {"sharpness"} and isinstance(out["sharpness"], float)
    top = dense_eigh("hessian")[0][-1]
    assert abs(out["sharpness"] - top) <= 1e-6 * top  # tol: relative accuracy
    assert cb(types.SimpleNamespace(step=3, params=PARAMS)) is None
    moved = jax.tree.map(lambda x: 1.1 * x, PARAMS)
    later = cb(types.SimpleNamespace(step=np.int32(4), params=moved))["sharpness"]
    assert later != out["sharpness"] and np.isfinite(later)
    np.testing.assert_allclose(curvature.max_stable_lr(out["sharpness"]), 2 / top, rtol=1e-6)


def test_max_stable_lr():
    assert curvature.max_stable_lr(4.0) == 0.5
    out = curvature.max_stable_lr(jnp.float32(8.0))
    assert out.dtype == jnp.float32 and float(out) == 0.25
    np.testing.assert_allclose(jax.jit(curvature.max_stable_lr)(jnp.float32(4.0)), 0.5)
    fn = "jaxla.curvature.max_stable_lr"
    with pytest.raises(ValueError, match=msg(f"{fn}: `lambda_max` must be > 0 and finite, "
                                             "got -1.0")):
        curvature.max_stable_lr(-1.0)
    with pytest.raises(ValueError, match=msg(f"{fn}: `lambda_max` must be > 0 and finite, "
                                             "got nan")):
        curvature.max_stable_lr(np.float64("nan"))
    with pytest.raises(ValueError, match=msg(f"{fn}: `lambda_max` must be a scalar, "
                                             "got shape (2,)")):
        curvature.max_stable_lr(np.ones(2))
    with pytest.raises(TypeError, match=msg(f"{fn}: `lambda_max` must be a real number, "
                                            "got '3'")):
        curvature.max_stable_lr("3")


# ---------------------------------------------------------------------------------------------
# validation


def test_static_errors():
    fn = "jaxla.curvature.hessian_eigs"

    def call(**kw):
        args = {"key": KEY, "loss_fn": loss_fn, "params": PARAMS, "data": BATCH, **kw}
        return curvature.hessian_eigs(**args)

    with pytest.raises(ValueError, match=msg(
            f"{fn}: `loss_fn` must return a scalar (shape ()), got shape (24, 3)")):
        call(loss_fn=model_fn)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `loss_fn` must return a scalar (shape ()) from "
            "loss_fn(model_fn(params, batch), batch), got shape (24,)")):
        call(loss_fn=lambda z, b: jnp.sum(z, axis=1), model_fn=model_fn, curvature="ggn")
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `k`=404 exceeds the number of (selected) parameters n=403")):
        call(k=404)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `k`=9 exceeds the number of (selected) parameters n=3")):
        call(k=9, params_filter="layers_2/b")
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `k`=2 exceeds half the number of (selected) parameters n // 2 "
            "(which='both_ends')=1")):
        call(k=2, which="both_ends", params_filter="layers_2/b")
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `data` batches must have identical structures and shapes, got batch 0 with "
            "{'x': (8, 4), 'y': (8,)} and batch 1 with {'x': (7, 4), 'y': (7,)}")):
        call(data=[BATCHES[0], jax.tree.map(lambda a: a[:7], BATCHES[1])])
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `data` batches must have identical structures and shapes, got batch 0 with "
            "{'x': (8, 4), 'y': (8,)} and batch 2 with {'x': (8, 4)}")):
        call(data=[BATCHES[0], BATCHES[1], {"x": BATCHES[2]["x"]}])
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `data` batches must have identical dtypes, got batch 0 with "
            "{'x': 'float64', 'y': 'int64'} and batch 1 with {'x': 'float32', 'y': 'int64'}")):
        call(data=[BATCHES[0], {"x": BATCHES[1]["x"].astype(np.float32), "y": BATCHES[1]["y"]}])
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `data` must be a batch (a pytree of arrays) or a non-empty sequence of "
            "batches, got an empty list")):
        call(data=[])
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `params_filter` pattern 'layers_9/*' must match at least one leaf path, got "
            "no match; nearest paths: 'layers_2/w', 'layers_2/b', 'layers_1/w', 'layers_1/b', "
            "'layers_0/w'")):
        call(params_filter="layers_9/*")
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `params_filter` must select at least one leaf, got [], which selects none of "
            "'layers_0/b', 'layers_0/w', 'layers_1/b', 'layers_1/w', 'layers_2/b', "
            "'layers_2/w'")):
        call(params_filter=[])
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `which` must be one of 'largest', 'smallest', 'both_ends', got 'top'")):
        call(which="top")
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `curvature` must be one of 'hessian', 'ggn', got 'fisher'")):
        call(curvature="fisher")
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `criterion` must be one of 'residual', 'eigenvalue', got 'gap'")):
        call(criterion="gap")
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `model_fn` must be given when curvature='ggn' (the Gauss-Newton matrix needs "
            "the loss split as loss_fn(model_fn(params, batch), batch)), got None")):
        call(curvature="ggn")
    with pytest.raises(TypeError, match=msg(f"{fn}: `k` must be an int, got 2.0 (float)")):
        call(k=2.0)
    with pytest.raises(TypeError, match=msg(
            f"{fn}: `params` must have real floating dtype(s) in the selected leaves, got dtype "
            "int64 at leaf 'layers_0/b'; cast them first, e.g. to jnp.float32, or leave them out "
            "with `params_filter`")):
        call(params={**PARAMS, "layers_0": {"w": PARAMS["layers_0"]["w"],
                                            "b": np.arange(16)}})
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `params` contains 1 NaN or Inf value(s); clean or mask them first")):
        call(params={**PARAMS, "layers_2": {"w": PARAMS["layers_2"]["w"],
                                            "b": np.array([0.0, np.nan, 0.0])}})
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `data` contains 2 NaN or Inf value(s); clean or mask them first")):
        bad = BATCHES[1]["x"].copy()
        bad[0, 0], bad[3, 2] = np.nan, np.inf
        call(data=[BATCHES[0], {"x": bad, "y": BATCHES[1]["y"]}])


def test_trace_density_and_tracker_errors():
    with pytest.raises(ValueError, match=msg(
            "jaxla.curvature.hessian_trace: `method` must be one of 'hutch++', 'hutchinson', "
            "got 'hutch'")):
        curvature.hessian_trace(KEY, loss_fn, PARAMS, BATCH, num_matvecs=10, method="hutch")
    with pytest.raises(ValueError, match=msg(
            "jaxla.curvature.hessian_trace: `num_matvecs`=20 exceeds 3 * n + 2 (the sketch uses "
            "num_matvecs // 3 <= n products)=11")):
        curvature.hessian_trace(KEY, loss_fn, PARAMS, BATCH, num_matvecs=20,
                                params_filter="layers_2/b")
    with pytest.raises(ValueError, match=msg(
            "jaxla.curvature.hessian_trace: `num_matvecs` must be >= 2, got 1")):
        curvature.hessian_trace(KEY, loss_fn, PARAMS, BATCH, num_matvecs=1, method="hutchinson")
    with pytest.raises(ValueError, match=msg(
            "jaxla.curvature.hessian_density: `num_matvecs`=4 exceeds the number of (selected) "
            "parameters n=3")):
        curvature.hessian_density(KEY, loss_fn, PARAMS, BATCH, num_probes=2, num_matvecs=4,
                                  params_filter="layers_2/b")
    with pytest.raises(ValueError, match=msg(
            "jaxla.curvature.hessian_density: `sigma` must be > 0 and finite, got 0.0")):
        curvature.hessian_density(KEY, loss_fn, PARAMS, BATCH, num_probes=2, num_matvecs=4,
                                  sigma=0.0)
    with pytest.raises(ValueError, match=msg(
            "jaxla.curvature.hessian_density: `distribution` must be one of 'rademacher', "
            "'gaussian', got 'normal'")):
        curvature.hessian_density(KEY, loss_fn, PARAMS, BATCH, num_probes=2, num_matvecs=4,
                                  distribution="normal")
    with pytest.raises(ValueError, match=msg(
            "jaxla.curvature.sharpness_tracker: `every` must be >= 1, got 0")):
        curvature.sharpness_tracker(KEY, loss_fn, BATCH, every=0)
    with pytest.raises(ValueError, match=msg(
            "jaxla.curvature.sharpness_tracker: `criterion` must be one of 'residual', "
            "'eigenvalue', got 'ritz'")):
        curvature.sharpness_tracker(KEY, loss_fn, BATCH, criterion="ritz")
    # errors that need the parameters are raised on the first call, also under jit
    cb = curvature.sharpness_tracker(KEY, model_fn, BATCH)
    with pytest.raises(ValueError, match=prefix(
            "jaxla.curvature.sharpness_tracker: `loss_fn` must return a scalar (shape ()), got "
            "shape (24, 3)")):
        cb(types.SimpleNamespace(step=0, params=PARAMS))


def test_static_errors_raise_under_jit():
    with pytest.raises(ValueError, match=prefix(
            "jaxla.curvature.hessian_eigs: `k`=404 exceeds the number of (selected) parameters "
            "n=403")):
        eigs(KEY, PARAMS, BATCH, k=404, which="largest")


def test_non_finite_curvature_is_reported():
    def loss(p, b):  # the second derivative of sqrt is infinite at 0
        return jnp.sum(jnp.sqrt(p["w"] * b))

    with pytest.raises(ValueError, match=msg(
            "jaxla.curvature.hessian_trace: `loss_fn` must have finite curvature at `params` on "
            "`data`, got NaN or Inf in the estimate")):
        curvature.hessian_trace(KEY, loss, {"w": np.array([0.0, 1.0])}, np.ones(2),
                                num_matvecs=2, method="hutchinson")
