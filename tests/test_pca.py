"""Tests of jaxla.pca against scikit-learn's PCA (float64 reference) and dense computations."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.experimental import checkify
from jax.test_util import check_grads
from sklearn.datasets import load_digits, load_iris
from sklearn.decomposition import PCA as SkPCA

from jaxla import pca

FIELDS = (
    "mean",
    "components",
    "explained_variance",
    "explained_variance_ratio",
    "singular_values",
    "noise_variance",
)


# ---------------------------------------------------------------------------------------------
# Data and references


def _tall() -> np.ndarray:
    rng = np.random.default_rng(1)
    scales = np.geomspace(10.0, 0.1, 12)
    return rng.standard_normal((400, 12)) * scales[None, :] + 3.0


def _wide() -> np.ndarray:
    rng = np.random.default_rng(2)
    basis = np.linalg.qr(rng.standard_normal((60, 25)))[0]
    coef = rng.standard_normal((25, 25)) * np.geomspace(5.0, 0.05, 25)[None, :]
    return coef @ basis.T + 1.0


DATASETS = {
    "digits": (lambda: load_digits().data, 10),
    "iris": (lambda: load_iris().data, 4),
    "tall": (_tall, 6),
    "wide": (_wide, 5),
}


@functools.cache
def _data(name: str) -> np.ndarray:
    return np.asarray(DATASETS[name][0](), dtype=np.float64)


@functools.cache
def _ref(name: str, k, whiten: bool = False) -> SkPCA:
    """scikit-learn's PCA on the float32-rounded data, in float64."""
    x64 = _data(name).astype(np.float32).astype(np.float64)
    return SkPCA(k, svd_solver="full", whiten=whiten).fit(x64)


def _close(actual, desired, rtol=1e-4, atol_scale=1e-5):
    """Relative agreement; entries small compared with the largest are compared absolutely."""
    actual = np.asarray(actual, dtype=np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    scale = float(np.max(np.abs(desired), initial=0.0))
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol_scale * max(scale, 1e-30))


def _assert_matches(p: pca.PCA, ref: SkPCA, x64: np.ndarray) -> None:
    assert p.components.dtype == jnp.float32
    _close(p.mean, ref.mean_)
    _close(p.components, ref.components_)
    _close(p.explained_variance, ref.explained_variance_)
    _close(p.explained_variance_ratio, ref.explained_variance_ratio_)
    _close(p.singular_values, ref.singular_values_)
    _close(p.noise_variance, ref.noise_variance_, atol_scale=0,
           rtol=1e-4 if ref.noise_variance_ > 1e-6 * ref.explained_variance_[0] else 1.0)
    assert int(p.n_samples) == ref.n_samples_
    assert bool(p.ok)
    x32 = jnp.asarray(x64, jnp.float32)
    _close(pca.transform(p, x32), ref.transform(x64))
    z = ref.transform(x64)
    _close(pca.inverse_transform(p, jnp.asarray(z, jnp.float32)), ref.inverse_transform(z))


# ---------------------------------------------------------------------------------------------
# Agreement with scikit-learn


@pytest.mark.parametrize("solver", ["covariance_eigh", "svd"])
@pytest.mark.parametrize("name", list(DATASETS))
def test_matches_sklearn(name, solver):
    x64 = _data(name)
    k = DATASETS[name][1]
    p = pca.fit(jnp.asarray(x64, jnp.float32), k, solver=solver)
    _assert_matches(p, _ref(name, k), x64)


@pytest.mark.parametrize("name", ["digits", "wide"])
def test_randomized_matches_sklearn(name, key):
    x64 = _data(name)
    k = 5
    p = pca.fit(jnp.asarray(x64, jnp.float32), k, solver="randomized", key=key, power_iters=12)
    _assert_matches(p, _ref(name, k), x64)
    assert float(p.residual) < 1e-5


def _exact_eigenvalues(x64: np.ndarray) -> np.ndarray:
    xc = x64 - x64.mean(0)
    return np.linalg.eigvalsh(xc.T @ xc / (len(x64) - 1))


@pytest.mark.parametrize("power_iters", [0, 1, 7])
def test_residual_certifies_randomized_fit(power_iters, key):
    x64 = _data("digits").astype(np.float32).astype(np.float64)
    exact = _exact_eigenvalues(x64)
    p = pca.fit(jnp.asarray(x64, jnp.float32), 8, solver="randomized", key=key,
                power_iters=power_iters)
    ev = np.asarray(p.explained_variance, np.float64)
    bound = float(p.residual) * ev[0]
    dist = np.min(np.abs(ev[:, None] - exact[None, :]), axis=1)
    assert np.all(dist <= bound * (1 + 1e-3) + 1e-5 * ev[0])
    ref = _ref("digits", 8).explained_variance_
    if power_iters == 0:  # a poor fit is reported as such
        assert float(p.residual) > 1e-3
        assert np.max(np.abs(ev - ref) / ref) > 1e-3
    if power_iters == 7:
        assert float(p.residual) < 1e-3


@pytest.mark.parametrize("solver", ["covariance_eigh", "svd"])
def test_residual_of_exact_solvers_is_tiny(solver):
    p = pca.fit(jnp.asarray(_data("digits"), jnp.float32), 10, solver=solver)
    assert 0 <= float(p.residual) < 1e-5


@pytest.mark.parametrize(("name", "expected"), [("digits", "covariance_eigh"),
                                              ("iris", "covariance_eigh"), ("wide", "svd")])
def test_auto_solver_choice(name, expected):
    x = jnp.asarray(_data(name), jnp.float32)
    k = DATASETS[name][1]
    auto, chosen = pca.fit(x, k), pca.fit(x, k, solver=expected)
    jax.tree.map(np.testing.assert_array_equal, auto, chosen)


def test_auto_uses_randomized_only_with_key(key):
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.standard_normal((520, 500)) * np.geomspace(10, 1, 500), jnp.float32)
    auto = pca.fit(x, 5, key=key)
    rand = pca.fit(x, 5, solver="randomized", key=key)
    np.testing.assert_array_equal(np.asarray(auto.components), np.asarray(rand.components))
    exact = pca.fit(x, 5)  # no key: an exact solver
    svd = pca.fit(x, 5, solver="svd")
    np.testing.assert_array_equal(np.asarray(exact.components), np.asarray(svd.components))


@pytest.mark.parametrize("solver", ["covariance_eigh", "svd"])
def test_whiten_matches_sklearn(solver):
    x64 = _data("digits")
    ref = _ref("digits", 10, whiten=True)
    p = pca.fit(jnp.asarray(x64, jnp.float32), 10, solver=solver, whiten=True)
    assert bool(p.whiten)
    z = pca.transform(p, jnp.asarray(x64, jnp.float32))
    _close(z, ref.transform(x64))
    np.testing.assert_allclose(np.var(np.asarray(z, np.float64), axis=0, ddof=1), 1.0, rtol=1e-4)
    zr = ref.transform(x64[:20])
    _close(pca.inverse_transform(p, jnp.asarray(zr, jnp.float32)), ref.inverse_transform(zr))


@pytest.mark.parametrize("fraction", [0.5, 0.8, 0.95, 0.99])
@pytest.mark.parametrize("name", ["digits", "iris"])
def test_variance_fraction_picks_sklearn_k(name, fraction):
    x64 = _data(name)
    ref = _ref(name, fraction)
    for solver in ("covariance_eigh", "svd"):
        p = pca.fit(jnp.asarray(x64, jnp.float32), fraction, solver=solver)
        assert p.components.shape == (ref.n_components_, x64.shape[1])
        _close(p.explained_variance, ref.explained_variance_)
        _close(p.noise_variance, ref.noise_variance_)


def test_fit_transform_is_fit_then_transform():
    x = jnp.asarray(_data("iris"), jnp.float32)
    p, z = pca.fit_transform(x, 2, whiten=True)
    np.testing.assert_array_equal(np.asarray(z), np.asarray(pca.transform(p, x)))
    _close(z, _ref("iris", 2, whiten=True).transform(_data("iris")))


def test_full_rank_reconstruction_and_zero_noise():
    x64 = _data("tall")
    x = jnp.asarray(x64, jnp.float32)
    for solver in ("covariance_eigh", "svd"):
        p = pca.fit(x, 12, solver=solver)
        assert float(p.noise_variance) == 0.0
        np.testing.assert_allclose(float(jnp.sum(p.explained_variance_ratio)), 1.0, rtol=1e-5)
        back = pca.inverse_transform(p, pca.transform(p, x))
        np.testing.assert_allclose(np.asarray(back), x64, atol=2e-4 * np.abs(x64).max())


def test_center_false_is_uncentered_second_moment():
    x64 = _data("tall")
    g = x64.T @ x64 / (x64.shape[0] - 1)
    w, v = np.linalg.eigh(g)
    w, v = w[::-1][:3], v[:, ::-1][:, :3].T
    v = v * np.sign(v[np.arange(3), np.argmax(np.abs(v), axis=1)])[:, None]
    for solver in ("covariance_eigh", "svd"):
        p = pca.fit(jnp.asarray(x64, jnp.float32), 3, solver=solver, center=False)
        np.testing.assert_array_equal(np.asarray(p.mean), 0.0)
        _close(p.explained_variance, w)
        _close(p.components, v)
        _close(p.explained_variance_ratio, w / np.trace(g))


# ---------------------------------------------------------------------------------------------
# float32 accuracy where scikit-learn's float32 path is not accurate


@pytest.mark.parametrize("solver", ["covariance_eigh", "svd"])
def test_large_offset_float32(solver):
    rng = np.random.default_rng(3)
    x32 = (rng.standard_normal((20000, 8)) * np.linspace(0.5, 2.0, 8) + 1e4).astype(np.float32)
    ref = SkPCA(8, svd_solver="full").fit(x32.astype(np.float64))
    p = pca.fit(jnp.asarray(x32), 8, solver=solver)
    assert p.explained_variance.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(p.explained_variance), ref.explained_variance_,
                               rtol=1e-3)
    np.testing.assert_allclose(np.asarray(p.mean), ref.mean_, rtol=1e-6)
    z = pca.transform(p, jnp.asarray(x32[:100]))
    np.testing.assert_allclose(np.asarray(z), ref.transform(x32[:100].astype(np.float64)),
                               atol=2e-2)


def test_large_offset_float32_streaming():
    rng = np.random.default_rng(4)
    x32 = (rng.standard_normal((6000, 5)) * np.linspace(0.5, 2.0, 5) + 1e4).astype(np.float32)
    ref = SkPCA(5, svd_solver="full").fit(x32.astype(np.float64))
    p = pca.fit_stream((x32[i:i + 1000] for i in range(0, 6000, 1000)), 5)
    np.testing.assert_allclose(np.asarray(p.explained_variance), ref.explained_variance_,
                               rtol=1e-3)


@pytest.mark.parametrize("block_size", [1, 7, 64, 1000])
def test_block_sizes_and_remainders(block_size):
    x64 = _data("tall")[:150]
    ref = SkPCA(4, svd_solver="full").fit(x64.astype(np.float32).astype(np.float64))
    p = pca.fit(jnp.asarray(x64, jnp.float32), 4, solver="covariance_eigh",
                block_size=block_size)
    _close(p.explained_variance, ref.explained_variance_)
    _close(p.components, ref.components_)
    _close(p.mean, ref.mean_)


# ---------------------------------------------------------------------------------------------
# dtypes, jit, vmap, grad


def test_dtypes_are_preserved():
    x64 = _data("iris")
    p64 = pca.fit(jnp.asarray(x64), 2)
    assert p64.components.dtype == jnp.float64
    _close(p64.explained_variance, _ref("iris", 2).explained_variance_, rtol=1e-10)
    p16 = pca.fit(jnp.asarray(x64, jnp.float16), 2)
    for f in FIELDS:
        assert getattr(p16, f).dtype == jnp.float16, f
    assert p16.n_samples.dtype == jnp.int32 and p16.whiten.dtype == jnp.bool_
    _close(p16.explained_variance, _ref("iris", 2).explained_variance_, rtol=2e-2)
    z = pca.transform(p16, jnp.asarray(x64, jnp.float32))
    assert z.dtype == jnp.float32
    assert pca.inverse_transform(p64, z).dtype == jnp.float32


@pytest.mark.parametrize("solver", ["covariance_eigh", "svd"])
def test_jit_equals_eager(solver):
    x = jnp.asarray(_data("tall"), jnp.float32)
    f = jax.jit(functools.partial(pca.fit, n_components=3, solver=solver, whiten=True))
    pj, pe = f(x), pca.fit(x, 3, solver=solver, whiten=True)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), pj, pe)
    zj = jax.jit(pca.transform)(pj, x)
    np.testing.assert_allclose(zj, pca.transform(pe, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("solver", ["covariance_eigh", "svd"])
def test_vmap_equals_loop(solver):
    rng = np.random.default_rng(5)
    xs = jnp.asarray(rng.standard_normal((3, 40, 6)) * np.arange(1, 7) + 2.0, jnp.float32)
    batched = jax.vmap(lambda x: pca.fit(x, 3, solver=solver))(xs)
    assert batched.components.shape == (3, 3, 6)
    for i in range(3):
        one = pca.fit(xs[i], 3, solver=solver)
        jax.tree.map(
            lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-5),
            batched, one,
        )
    zs = jax.vmap(pca.transform)(batched, xs)
    np.testing.assert_allclose(zs[1], pca.transform(pca.fit(xs[1], 3, solver=solver), xs[1]),
                               rtol=1e-5, atol=1e-5)


def test_vmap_over_whiten_flag():
    x = jnp.asarray(_data("iris"), jnp.float32)
    ps = jax.vmap(lambda w: pca.fit(x, 2, whiten=w))(jnp.array([False, True]))
    zs = jax.vmap(lambda p: pca.transform(p, x))(ps)
    np.testing.assert_allclose(zs[0], pca.transform(pca.fit(x, 2), x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(zs[1], pca.transform(pca.fit(x, 2, whiten=True), x),
                               rtol=1e-5, atol=1e-5)


def test_transform_accepts_leading_axes():
    x = jnp.asarray(_data("iris"), jnp.float32)
    p = pca.fit(x, 2, whiten=True)
    z = pca.transform(p, x.reshape(10, 15, 4))
    np.testing.assert_allclose(z.reshape(150, 2), pca.transform(p, x), rtol=1e-6, atol=1e-6)
    assert pca.transform(p, x[0]).shape == (2,)
    assert pca.inverse_transform(p, z).shape == (10, 15, 4)


@pytest.mark.parametrize("solver", ["covariance_eigh", "svd"])
def test_grad_matches_finite_differences(solver):
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.standard_normal((9, 3)) * np.array([3.0, 2.0, 1.0]), jnp.float64)
    probe = jnp.asarray(rng.standard_normal((2, 3)))

    def f(x):
        p = pca.fit(x, 2, solver=solver)
        return jnp.sum(p.explained_variance) + jnp.sum(pca.transform(p, probe) ** 2)

    check_grads(f, (x,), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("solver", ["covariance_eigh", "svd"])
def test_nan_under_jit_sets_ok_and_checkify_raises(solver):
    x = np.asarray(_data("iris"), np.float32).copy()
    x[3, 1] = np.nan
    f = jax.jit(lambda x: pca.fit(x, 2, solver=solver))
    assert not bool(f(jnp.asarray(x)).ok)
    err, _ = checkify.checkify(f)(jnp.asarray(x))
    with pytest.raises(checkify.JaxRuntimeError, match=r"jaxla\.pca\.fit: `x` contains NaN"):
        err.throw()
    err, _ = checkify.checkify(f)(jnp.asarray(_data("iris"), jnp.float32))
    err.throw()


# ---------------------------------------------------------------------------------------------
# Streaming statistics


def _assert_same_fit(p: pca.PCA, q: pca.PCA) -> None:
    """Two fits of the same data agree to 1e-5 (components are unit vectors: absolute)."""
    for f in FIELDS:
        if f == "components":
            np.testing.assert_allclose(p.components, q.components, rtol=1e-5, atol=1e-5)
        else:
            _close(getattr(p, f), getattr(q, f), rtol=1e-5, atol_scale=1e-6)


def _chunks(x, sizes):
    out, i = [], 0
    for s in sizes:
        out.append(x[i:i + s])
        i += s
    return out


def test_stream_equals_batch():
    x32 = np.asarray(_data("digits"), np.float32)
    batch = pca.fit(jnp.asarray(x32), 10, solver="covariance_eigh")
    stream = pca.fit_stream(_chunks(x32, [500, 500, 500, 297]), 10)
    _assert_same_fit(stream, batch)
    assert int(stream.n_samples) == 1797
    _assert_matches(stream, _ref("digits", 10), _data("digits"))


def test_stream_variance_fraction_and_whiten():
    x32 = np.asarray(_data("digits"), np.float32)
    ref = _ref("digits", 0.7, whiten=True)
    p = pca.fit_stream(iter(_chunks(x32, [1000, 797])), 0.7, whiten=True)
    assert p.components.shape[0] == ref.n_components_
    _close(pca.transform(p, jnp.asarray(x32)), ref.transform(_data("digits")))


def test_stats_merge_and_jitted_update():
    x32 = np.asarray(_data("tall"), np.float32)
    update = jax.jit(pca.stats_update)
    s0 = pca.stats_init(12)
    a = update(update(s0, x32[:100]), x32[100:250])
    b = update(s0, x32[250:])
    merged = jax.jit(pca.stats_merge)(a, b)
    assert int(merged.count) == 400
    np.testing.assert_allclose(merged.mean, x32.astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(merged.scatter, 399 * np.cov(x32.astype(np.float64).T),
                               rtol=1e-5, atol=1e-5 * 399 * 100)
    # merging with empty statistics is the identity
    same = pca.stats_merge(s0, merged)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-6), same, merged)
    assert pca.stats_update(merged, x32[:0]) is merged
    p = jax.jit(functools.partial(pca.fit_from_stats, n_components=4))(merged)
    _assert_same_fit(p, pca.fit(jnp.asarray(x32), 4, solver="covariance_eigh"))


def test_stats_vmap_over_datasets():
    rng = np.random.default_rng(7)
    xs = jnp.asarray(rng.standard_normal((4, 30, 3)), jnp.float32)
    stats = jax.vmap(lambda x: pca.stats_update(pca.stats_init(3), x))(xs)
    assert stats.scatter.shape == (4, 3, 3)
    np.testing.assert_allclose(stats.scatter[2], 29 * np.cov(np.asarray(xs[2], np.float64).T),
                               rtol=1e-5, atol=1e-5)


def test_stream_from_float16_chunks_keeps_dtype():
    x16 = np.asarray(_data("iris"), np.float16)
    p = pca.fit_stream([x16[:70], x16[70:]], 2)
    assert p.components.dtype == jnp.float16
    _close(p.explained_variance, _ref("iris", 2).explained_variance_, rtol=2e-2)


# ---------------------------------------------------------------------------------------------
# Property tests


# A few fixed shapes keep compilation out of the examples' cost; values vary freely.
_SHAPES = [(2, 1), (3, 5), (9, 4), (30, 8)]


@given(
    shape=st.sampled_from(_SHAPES),
    solver=st.sampled_from(["svd", "covariance_eigh"]),
    seed=st.integers(0, 2**16),
    offset=st.sampled_from([0.0, 5.0, 300.0]),
)
def test_property_full_rank_reconstruction_and_orthonormality(shape, solver, seed, offset):
    n, d = shape
    rng = np.random.default_rng(seed)
    x64 = rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, d) + offset
    x = jnp.asarray(x64, jnp.float32)
    k = min(n, d)
    p = pca.fit(x, k, solver=solver)
    back = np.asarray(pca.inverse_transform(p, pca.transform(p, x)), np.float64)
    np.testing.assert_allclose(back, x64, atol=1e-4 * (np.abs(x64).max() + 1))
    c = np.asarray(p.components, np.float64)
    r = min(k, n - 1)  # centered data have rank <= n - 1: further axes span the null space
    np.testing.assert_allclose(c[:r] @ c[:r].T, np.eye(r), atol=1e-5)
    ev = np.asarray(p.explained_variance)
    assert np.all(np.diff(ev) <= 1e-6 * ev.max(initial=0.0) + 1e-30)
    np.testing.assert_allclose(float(np.sum(p.explained_variance_ratio)), 1.0, rtol=1e-5)


_STREAM_N = 48
_stream_batch = functools.cache(
    lambda: jax.jit(functools.partial(pca.fit, n_components=4, solver="covariance_eigh",
                                      block_size=8))
)


@given(
    seed=st.integers(0, 2**16),
    cuts=st.lists(st.integers(0, _STREAM_N // 6).map(lambda c: 6 * c), max_size=4),
)
def test_property_streaming_equals_batch(seed, cuts):
    rng = np.random.default_rng(seed)
    x32 = (rng.standard_normal((_STREAM_N, 4)) * [4.0, 2.0, 1.0, 0.5] + 7.0).astype(np.float32)
    edges = sorted({0, _STREAM_N, *cuts})
    chunks = [x32[a:b] for a, b in itertools.pairwise(edges)]
    stream = pca.fit_stream(chunks, 4, block_size=8)
    _assert_same_fit(stream, _stream_batch()(jnp.asarray(x32)))
    assert int(stream.n_samples) == _STREAM_N


# ---------------------------------------------------------------------------------------------
# Errors


X_OK = np.ones((10, 4), np.float32) + np.arange(40, dtype=np.float32).reshape(10, 4) ** 1.5


def test_error_x_rank():
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.fit: `x` must be 2-D \(n_samples, "
                       r"n_features\), got shape \(5,\)$"):
        pca.fit(np.ones(5, np.float32), 1)
    with pytest.raises(ValueError, match=r"`x` must be 2-D .*got shape \(2, 3, 4\)"):
        pca.fit(np.ones((2, 3, 4), np.float32), 1)


def test_error_x_not_finite():
    x = X_OK.copy()
    x[2, 1] = np.nan
    x[3, 3] = np.inf
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.fit: `x` contains 2 NaN or Inf "
                       r"value\(s\); clean or mask them first$"):
        pca.fit(x, 2)
    with pytest.raises(ValueError, match=r"`x` contains 2 NaN or Inf"):
        pca.fit(x, 2, solver="svd")


def test_error_integer_x():
    with pytest.raises(TypeError, match=r"jaxla\.pca\.fit: `x` must have a real floating dtype"):
        pca.fit(np.ones((5, 3), np.int32), 1)


def test_error_n_components():
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.fit: `n_components` must be >= 1, "
                       r"got 0$"):
        pca.fit(X_OK, 0)
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.fit: `n_components`=5 exceeds "
                       r"min\(n_samples, n_features\)=4$"):
        pca.fit(X_OK, 5)
    with pytest.raises(ValueError, match=r"`n_components`=4 exceeds min\(n_samples, "
                       r"n_features\)=3"):
        pca.fit(X_OK[:3], 4)
    for bad in (1.0, 1.5, 0.0, -0.2):
        with pytest.raises(ValueError, match=r"^jaxla\.pca\.fit: `n_components` as a float must "
                           r"be a variance fraction in \(0, 1\), got "):
            pca.fit(X_OK, bad)
    with pytest.raises(TypeError, match=r"`n_components` must be an int, got '3'"):
        pca.fit(X_OK, "3")


def test_error_fraction_under_jit():
    with pytest.raises(ValueError, match=r"jaxla\.pca\.fit: `n_components` as a variance "
                       r"fraction .* under jit/vmap, got 0\.9; fit with an int"):
        jax.jit(lambda x: pca.fit(x, 0.9))(X_OK)


def test_error_too_few_samples():
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.fit: `x` must have at least 2 samples "
                       r"\(rows\), got shape \(1, 4\)$"):
        pca.fit(X_OK[:1], 1)


def test_error_solver_and_key():
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.fit: `solver` must be one of 'auto', "
                       r"'covariance_eigh', 'svd', 'randomized', got 'arpack'$"):
        pca.fit(X_OK, 2, solver="arpack")
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.fit: `key` must be a JAX random key "
                       r"such as jax\.random\.key\(0\) when solver='randomized', got None$"):
        pca.fit(X_OK, 2, solver="randomized")
    with pytest.raises(TypeError, match=r"^jaxla\.pca\.fit: `key` must be a JAX random key "
                       r"such as jax\.random\.key\(0\), got int$"):
        pca.fit(X_OK, 2, solver="randomized", key=0)
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.fit: `n_components` must be an int "
                       r"with solver='randomized'.*got 0\.5$"):
        pca.fit(X_OK, 0.5, solver="randomized", key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.fit: `row_groups` must divide "
                       r"n_samples=10, got 3$"):
        pca.fit(X_OK, 2, row_groups=3)


def test_error_transform_features():
    p = pca.fit(X_OK, 2)
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.transform: `x` must have 4 features "
                       r"\(last axis\) to match the fitted PCA, got shape \(6, 3\)$"):
        pca.transform(p, np.ones((6, 3), np.float32))
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.inverse_transform: `z` must have 2 "
                       r"components \(last axis\) to match the fitted PCA, got shape \(6, 3\)$"):
        pca.inverse_transform(p, np.ones((6, 3), np.float32))
    bad = X_OK.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.transform: `x` contains 1 NaN or Inf"):
        pca.transform(p, bad)


def test_error_streaming():
    s = pca.stats_init(4)
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.stats_update: `chunk` must have 4 "
                       r"features \(columns\) to match `stats`, got shape \(2, 3\)$"):
        pca.stats_update(s, np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match=r"jaxla\.pca\.stats_update: `stats` must be a PCAStats"):
        pca.stats_update((0, 1, 2), X_OK)
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.fit_stream: `chunks` must yield at least "
                       r"one chunk of rows, got an empty iterable$"):
        pca.fit_stream([], 1)
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.fit_stream: `chunks\[1\]` must have 4 "
                       r"features \(columns\) like the first chunk, got shape \(2, 5\)$"):
        pca.fit_stream([X_OK, np.ones((2, 5), np.float32)], 1)
    bad = X_OK.copy()
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.fit_stream: `chunks\[1\]` contains 1 "
                       r"NaN or Inf value\(s\)"):
        pca.fit_stream([X_OK, bad], 1)
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.fit_from_stats: `stats` must hold at "
                       r"least 2 samples \(rows\), got count=1$"):
        pca.fit_from_stats(pca.stats_update(s, X_OK[:1]), 1)
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.fit_from_stats: `n_components`=5 "
                       r"exceeds min\(n_samples, n_features\)=4$"):
        pca.fit_from_stats(pca.stats_update(s, X_OK), 5)
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.fit_from_stats: `stats` must be finite, "
                       r"got NaN or Inf statistics"):
        pca.fit_from_stats(jax.jit(pca.stats_update)(s, bad), 1)
    with pytest.raises(ValueError, match=r"^jaxla\.pca\.stats_merge: `a` and `b` must have the "
                       r"same number of features"):
        pca.stats_merge(s, pca.stats_init(3))


# ---------------------------------------------------------------------------------------------
# The digits experiment (quick mode), checked against scikit-learn


@pytest.mark.slow
def test_digits_experiment_quick(tmp_path):
    pytest.importorskip("matplotlib")
    from experiments import pca_digits

    config = {"mode": "quick", "seed": 0}
    result = pca_digits.run(dict(config), tmp_path)
    assert set(result) == {"summary", "metrics", "figures", "tables"}
    for fig in result["figures"]:
        assert (tmp_path / fig["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert fig["caption"]
    x, _ = pca_digits.load_data(dict(config))
    m = result["metrics"]
    assert m["n_images"] == pca_digits.QUICK_IMAGES == x.shape[0]
    x64 = x.astype(np.float64)
    for frac, key in ((0.9, "k_for_90pct"), (0.95, "k_for_95pct"), (0.99, "k_for_99pct")):
        assert m[key] == SkPCA(frac, svd_solver="full").fit(x64).n_components_
    assert m["explained_variance_top10_max_rel_err_vs_sklearn"] < 1e-4
    assert m["projection_max_rel_err_vs_sklearn"] < 1e-4
    assert m["stream_vs_batch_max_diff"] < 1e-5
    assert m["reconstruction_vs_prediction_max_discrepancy"] < 1e-4
    errs = m["offset_errors"]
    assert max(errs["jaxla covariance_eigh"]) < 1e-3
    assert max(errs["jaxla svd"]) < 1e-3
    with pytest.raises(ValueError, match=r"^experiments\.pca_digits\.run: `config\['mode'\]` "
                       r"must be one of 'quick', 'full', got 'fast'$"):
        pca_digits.run({"mode": "fast", "seed": 0}, tmp_path)
