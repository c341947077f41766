"""Tests for jaxla.linalg.decompositions: svd, eigh, qr, lu, cholesky.

References are numpy.linalg, scipy.linalg, scikit-learn's ``svd_flip`` (for the SVD sign
convention), jnp.linalg's own derivatives at simple spectra, and central finite differences.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st
from jax.experimental import checkify
from jax.test_util import check_grads
from sklearn.utils.extmath import svd_flip

from jaxla.linalg import (
    LU,
    QR,
    SVD,
    Cholesky,
    Eigh,
    _canonical,
    cholesky,
    eigh,
    lu,
    qr,
    svd,
)

SHAPES = [(4, 3), (3, 4), (3, 3)]  # tall, wide, square: shared to reuse compilations
DTYPES = [np.float32, np.float64]


def _tol(dtype):
    return 2e-5 if np.dtype(dtype) == np.float32 else 1e-11


def _orthogonal(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))[None, :]


def _with_singular_values(rng, m, n, s):
    """An (m, n) matrix with the given singular values (len(s) == min(m, n))."""
    k = len(s)
    return _orthogonal(rng, m)[:, :k] @ np.diag(s) @ _orthogonal(rng, n)[:, :k].T


def _with_eigenvalues(rng, w):
    q = _orthogonal(rng, len(w))
    return q @ np.diag(w) @ q.T


def _spd(rng, n):
    b = rng.standard_normal((n, n))
    return b @ b.T + n * np.eye(n)


def _np_flip_columns(v):
    """Reference for the eigenvector convention: max-|.| entry of each column positive."""
    v = np.array(v, copy=True)
    for j in range(v.shape[1]):
        i = int(np.argmax(np.abs(v[:, j])))
        if v[i, j] < 0:
            v[:, j] = -v[:, j]
    return v


def _assert_max_abs_positive(x, axis):
    """The entry of largest magnitude along ``axis`` is > 0 (or the vector is zero)."""
    x = np.asarray(x, dtype=np.float64)
    idx = np.expand_dims(np.argmax(np.abs(x), axis=axis), axis)
    top = np.take_along_axis(x, idx, axis=axis)
    assert np.all(top >= 0)


def _assert_same(tree_a, tree_b, atol=1e-12):
    leaves_a = jax.tree_util.tree_leaves(tree_a)
    leaves_b = jax.tree_util.tree_leaves(tree_b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def _eye(m, n=None):
    return np.eye(m, n)


# --------------------------------------------------------------------------------------------
# values against numpy / scipy / scikit-learn


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_svd_matches_numpy_and_svd_flip(shape, dtype, rng):
    m, n = shape
    k = min(m, n)
    a = rng.standard_normal(shape)
    res = svd(a.astype(dtype))
    assert isinstance(res, SVD)
    assert res.u.shape == (m, k) and res.s.shape == (k,) and res.vt.shape == (k, n)
    assert res.u.dtype == res.s.dtype == res.vt.dtype == dtype
    u_np, s_np, vt_np = np.linalg.svd(a, full_matrices=False)
    u_ref, vt_ref = svd_flip(u_np, vt_np, u_based_decision=False)
    tol = _tol(dtype)
    np.testing.assert_allclose(res.s, s_np, rtol=tol, atol=tol)
    np.testing.assert_allclose(res.u, u_ref, atol=10 * tol)
    np.testing.assert_allclose(res.vt, vt_ref, atol=10 * tol)
    _assert_max_abs_positive(res.vt, axis=-1)
    recon = np.asarray(res.u, np.float64) * np.asarray(res.s, np.float64)[None, :] @ res.vt
    np.testing.assert_allclose(recon, a, atol=5 * tol)


@pytest.mark.parametrize("shape", SHAPES)
def test_svd_full_matrices(shape, rng):
    m, n = shape
    k = min(m, n)
    a = rng.standard_normal(shape)
    full = svd(a, full_matrices=True)
    thin = svd(a)
    assert full.u.shape == (m, m) and full.s.shape == (k,) and full.vt.shape == (n, n)
    np.testing.assert_allclose(full.u.T @ full.u, _eye(m), atol=1e-12)
    np.testing.assert_allclose(full.vt @ full.vt.T, _eye(n), atol=1e-12)
    sigma = np.zeros((m, n))
    sigma[:k, :k] = np.diag(full.s)
    np.testing.assert_allclose(full.u @ sigma @ full.vt, a, atol=1e-12)
    np.testing.assert_allclose(full.s, thin.s, atol=1e-12)
    np.testing.assert_allclose(full.u[:, :k], thin.u, atol=1e-12)
    np.testing.assert_allclose(full.vt[:k], thin.vt, atol=1e-12)
    _assert_max_abs_positive(full.vt, axis=-1)
    _assert_max_abs_positive(full.u[:, k:], axis=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_eigh_matches_numpy(dtype, rng):
    a = rng.standard_normal((3, 3))
    a = a + a.T
    res = eigh(a.astype(dtype))
    assert isinstance(res, Eigh)
    assert res.eigenvalues.shape == (3,) and res.eigenvectors.shape == (3, 3)
    assert res.eigenvalues.dtype == res.eigenvectors.dtype == dtype
    w_np, v_np = np.linalg.eigh(a)
    tol = _tol(dtype)
    np.testing.assert_allclose(res.eigenvalues, w_np, atol=10 * tol)
    np.testing.assert_allclose(res.eigenvectors, _np_flip_columns(v_np), atol=10 * tol)
    _assert_max_abs_positive(res.eigenvectors, axis=0)


def test_eigh_uses_symmetric_part(rng):
    a = rng.standard_normal((3, 3))
    sym = (a + a.T) / 2
    res = eigh(a)
    w_np, v_np = scipy.linalg.eigh(sym)
    np.testing.assert_allclose(res.eigenvalues, w_np, atol=1e-12)
    np.testing.assert_allclose(res.eigenvectors, _np_flip_columns(v_np), atol=1e-10)
    _assert_same(res, eigh(sym))


@pytest.mark.parametrize("mode", ["reduced", "complete", "r"])
@pytest.mark.parametrize("shape", SHAPES)
def test_qr_matches_numpy(shape, mode, rng):
    m, n = shape
    k = min(m, n)
    a = rng.standard_normal(shape)
    res = qr(a, mode=mode)
    assert isinstance(res, QR)
    q_np, r_np = np.linalg.qr(a, mode="complete" if mode == "complete" else "reduced")
    d = np.sign(np.diag(r_np))
    d_rows = np.concatenate([d, np.ones(r_np.shape[0] - k)])
    r_ref = r_np * d_rows[:, None]
    np.testing.assert_allclose(res.r, r_ref, atol=1e-12)
    assert np.all(np.diag(res.r) >= 0)
    if mode == "r":
        assert res.q is None
        assert res.r.shape == (k, n)
        return
    d_cols = np.concatenate([d, np.ones(q_np.shape[1] - k)])
    np.testing.assert_allclose(res.q, q_np * d_cols[None, :], atol=1e-12)
    expect_q = (m, m) if mode == "complete" else (m, k)
    expect_r = (m, n) if mode == "complete" else (k, n)
    assert res.q.shape == expect_q and res.r.shape == expect_r
    np.testing.assert_allclose(res.q @ res.r, a, atol=1e-12)


@pytest.mark.parametrize("shape", [*SHAPES, (4, 1), (1, 4)])
def test_lu_matches_scipy(shape, rng):
    a = rng.standard_normal(shape)
    res = lu(a)
    assert isinstance(res, LU)
    p_ref, l_ref, u_ref = scipy.linalg.lu(a)
    np.testing.assert_array_equal(res.p, p_ref)
    np.testing.assert_allclose(res.l, l_ref, atol=1e-12)
    np.testing.assert_allclose(res.u, u_ref, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cholesky_matches_numpy(dtype, rng):
    a = _spd(rng, 3)
    l = cholesky(a.astype(dtype))
    assert l.shape == (3, 3) and l.dtype == dtype
    np.testing.assert_allclose(l, np.linalg.cholesky(a), rtol=10 * _tol(dtype))
    info = cholesky(a.astype(dtype), return_info=True)
    assert isinstance(info, Cholesky)
    assert info.ok.shape == () and info.ok.dtype == np.bool_ and bool(info.ok)
    _assert_same(info.l, l)


def test_cholesky_uses_symmetric_part(rng):
    a = _spd(rng, 3)
    skew = np.triu(rng.standard_normal((3, 3)), 1)
    _assert_same(cholesky(a + skew - skew.T), cholesky(a), atol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_low_precision_inputs_keep_their_dtype(dtype, rng):
    a = jnp.asarray(rng.standard_normal((4, 3)), dtype=dtype)
    sq = jnp.asarray(_spd(rng, 3) / 3, dtype=dtype)
    outs = [svd(a), svd(a, full_matrices=True), qr(a), lu(a), eigh(sq), cholesky(sq)]
    for leaf in jax.tree_util.tree_leaves(outs):
        assert leaf.dtype == dtype
        assert bool(jnp.all(jnp.isfinite(leaf)))
    s_ref = np.linalg.svd(np.asarray(a, np.float64), compute_uv=False)
    np.testing.assert_allclose(np.asarray(svd(a).s, np.float64), s_ref, rtol=1e-2)


# --------------------------------------------------------------------------------------------
# jit, vmap and leading batch axes give the eager canonical form


def _batch(rng, name):
    if name == "eigh":
        return np.stack([_with_eigenvalues(rng, [-1.0, 0.5, 2.0]) for _ in range(2)])
    if name == "cholesky":
        return np.stack([_spd(rng, 3) for _ in range(2)])
    return rng.standard_normal((2, 4, 3))


FUNCS = {
    "svd": svd,
    "svd_full": lambda a: svd(a, full_matrices=True),
    "eigh": eigh,
    "qr": qr,
    "qr_complete": lambda a: qr(a, mode="complete"),
    "qr_r": lambda a: qr(a, mode="r"),
    "lu": lu,
    "cholesky": cholesky,
}


@pytest.mark.parametrize("name", list(FUNCS))
def test_jit_vmap_and_batch_axes_match_eager(name, rng):
    fn = FUNCS[name]
    stack = _batch(rng, name.split("_")[0])
    eager = [fn(x) for x in stack]
    stacked = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *eager)
    _assert_same(jax.jit(fn)(stack[0]), eager[0])
    _assert_same(jax.vmap(fn)(stack), stacked, atol=1e-10)
    # Two leading batch axes, passed directly.
    _assert_same(fn(stack[None]), jax.tree_util.tree_map(lambda x: x[None], stacked), atol=1e-10)


# --------------------------------------------------------------------------------------------
# property tests: reconstruction, orthogonality, canonical forms


@st.composite
def _matrices(draw, shapes):
    shape = draw(st.sampled_from(shapes))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    kind = draw(st.sampled_from(["gaussian", "low_rank", "repeated", "zero", "integer"]))
    scale = 10.0 ** draw(st.integers(-3, 3))
    m, n = shape
    k = min(m, n)
    if kind == "gaussian":
        a = rng.standard_normal(shape)
    elif kind == "low_rank":
        a = rng.standard_normal((m, 1)) @ rng.standard_normal((1, n))
    elif kind == "repeated":
        a = _with_singular_values(rng, m, n, np.r_[np.full(k - k // 2, 2.0), np.ones(k // 2)])
    elif kind == "zero":
        a = np.zeros(shape)
    else:
        a = rng.integers(-2, 3, size=shape).astype(np.float64)
    return scale * a


PROP_SHAPES = [*SHAPES, (1, 3)]


@given(_matrices(PROP_SHAPES))
def test_svd_properties(a):
    m, n = a.shape
    k = min(m, n)
    u, s, vt = svd(a)
    scale = max(1.0, float(np.abs(a).max()))
    np.testing.assert_allclose((u * s[None, :]) @ vt, a, atol=1e-12 * scale)
    np.testing.assert_allclose(u.T @ u, _eye(k), atol=1e-12)
    np.testing.assert_allclose(vt @ vt.T, _eye(k), atol=1e-12)
    assert np.all(np.diff(np.asarray(s)) <= 0) and np.all(np.asarray(s) >= 0)
    np.testing.assert_allclose(s, np.linalg.svd(a, compute_uv=False), atol=1e-12 * scale)
    _assert_max_abs_positive(vt, axis=-1)


@given(_matrices([(3, 3), (1, 1)]))
def test_eigh_properties(b):
    a = (b + b.T) / 2
    n = a.shape[0]
    w, v = eigh(a)
    scale = max(1.0, float(np.abs(a).max()))
    np.testing.assert_allclose((v * w[None, :]) @ v.T, a, atol=1e-12 * scale)
    np.testing.assert_allclose(v.T @ v, _eye(n), atol=1e-12)
    assert np.all(np.diff(np.asarray(w)) >= 0)
    np.testing.assert_allclose(w, np.linalg.eigvalsh(a), atol=1e-12 * scale)
    _assert_max_abs_positive(v, axis=0)


@given(_matrices(PROP_SHAPES), st.sampled_from(["reduced", "complete"]))
def test_qr_properties(a, mode):
    q, r = qr(a, mode=mode)
    scale = max(1.0, float(np.abs(a).max()))
    np.testing.assert_allclose(q @ r, a, atol=1e-12 * scale)
    np.testing.assert_allclose(q.T @ q, _eye(q.shape[1]), atol=1e-12)
    np.testing.assert_array_equal(r, np.triu(r))
    assert np.all(np.diag(r) >= 0)


@given(_matrices(PROP_SHAPES))
def test_lu_properties(a):
    p, l, u = lu(a)
    scale = max(1.0, float(np.abs(a).max()))
    np.testing.assert_allclose(p @ l @ u, a, atol=1e-12 * scale)
    np.testing.assert_array_equal(p @ p.T, _eye(a.shape[0]))
    assert set(np.unique(np.asarray(p))) <= {0.0, 1.0}
    np.testing.assert_array_equal(l, np.tril(l))
    np.testing.assert_array_equal(np.diag(l), 1.0)
    assert np.all(np.abs(np.asarray(l)) <= 1.0)
    np.testing.assert_array_equal(u, np.triu(u))


@given(
    st.sampled_from([1, 3]),
    st.integers(0, 2**31 - 1),
    st.integers(-3, 3),
    st.sampled_from([0.0, 1e-3, 1.0]),
)
def test_cholesky_properties(n, seed, log_scale, shift):
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((n, n))
    a = 10.0**log_scale * (b @ b.T + (shift + 1e-2) * np.eye(n))
    l = cholesky(a)
    np.testing.assert_allclose(l @ l.T, a, atol=1e-12 * np.abs(a).max())
    np.testing.assert_array_equal(l, np.tril(l))
    assert np.all(np.diag(l) > 0)


# --------------------------------------------------------------------------------------------
# derivatives
#
# Losses take their coefficients as arguments so that one compiled function serves many tests.


def _jnp_svd(a):
    u, s, vt = jnp.linalg.svd(a, full_matrices=False)
    u, vt = _canonical.svd_signs(u, vt)
    return u, s, vt


def _jnp_eigh(a):
    w, v = jnp.linalg.eigh(a)
    return w, _canonical.flip_columns(v)


def _svd_loss_with(decompose, a, cu, cs, cv):
    u, s, vt = decompose(a)
    return jnp.sum(cu * u) + jnp.sum(cs * s**2) + jnp.sum(cv * jnp.sin(vt))


def _svd_loss(a, cu, cs, cv):
    return _svd_loss_with(svd, a, cu, cs, cv)


def _eigh_loss_with(decompose, a, cw, cv):
    w, v = decompose(a)
    return jnp.sum(cw * jnp.cos(w)) + jnp.sum(cv * v)


def _eigh_loss(a, cw, cv):
    return _eigh_loss_with(eigh, a, cw, cv)


_svd_grad = jax.jit(jax.grad(_svd_loss))
_svd_grad_ref = jax.jit(jax.grad(lambda a, *c: _svd_loss_with(_jnp_svd, a, *c)))
_eigh_grad = jax.jit(jax.grad(_eigh_loss))
_eigh_grad_ref = jax.jit(jax.grad(lambda a, *c: _eigh_loss_with(_jnp_eigh, a, *c)))


def _grad_hvp_and_frobenius_grad(loss, spectrum):
    """Batched (grad, Hessian-vector product, grad of sum(spectrum(a) ** 2)) at each matrix."""

    def one(a, t, *coefs):
        g, hvp = jax.jvp(lambda x: jax.grad(loss)(x, *coefs), (a,), (t,))
        g2 = jax.grad(lambda x: jnp.sum(spectrum(x) ** 2))(a)
        return g, hvp, g2

    return jax.jit(jax.vmap(one, in_axes=(0, 0) + (None,) * 3))


_svd_at_points = _grad_hvp_and_frobenius_grad(_svd_loss, lambda x: svd(x).s)
_eigh_at_points = _grad_hvp_and_frobenius_grad(
    lambda a, cw, cv, _: _eigh_loss(a, cw, cv), lambda x: eigh(x).eigenvalues
)


def _svd_coefs(rng, m, n):
    k = min(m, n)
    return rng.standard_normal((m, k)), rng.standard_normal(k), rng.standard_normal((k, n))


def _check_svd_grads(shape, rng):
    m, n = shape
    a = _with_singular_values(rng, m, n, [3.0, 2.0, 1.0][: min(m, n)])
    coefs = _svd_coefs(rng, m, n)
    check_grads(jax.jit(lambda x: _svd_loss(x, *coefs)), (a,), order=2, modes=["fwd", "rev"])


def test_svd_check_grads_simple_spectrum_tall(rng):
    _check_svd_grads((4, 3), rng)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(3, 4), (3, 3)])
def test_svd_check_grads_simple_spectrum_wide_square(shape, rng):
    _check_svd_grads(shape, rng)


@pytest.mark.parametrize("shape", SHAPES)
def test_svd_grad_matches_jax_at_simple_spectrum(shape, rng):
    a = rng.standard_normal(shape)
    coefs = _svd_coefs(rng, *shape)
    np.testing.assert_allclose(_svd_grad(a, *coefs), _svd_grad_ref(a, *coefs), atol=1e-10)
    if shape == (4, 3):  # float32 gradients are accurate too
        c32 = [c.astype(np.float32) for c in coefs]
        g32 = _svd_grad(a.astype(np.float32), *c32)
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, _svd_grad_ref(a, *coefs), rtol=1e-3, atol=1e-4)


def test_eigh_check_grads_and_matches_jax(rng):
    a = _with_eigenvalues(rng, [-1.0, 0.5, 2.0])
    cw, cv = rng.standard_normal(3), rng.standard_normal((3, 3))
    check_grads(jax.jit(lambda x: _eigh_loss(x, cw, cv)), (a,), order=2, modes=["fwd", "rev"])
    np.testing.assert_allclose(_eigh_grad(a, cw, cv), _eigh_grad_ref(a, cw, cv), atol=1e-10)
    b = rng.standard_normal((3, 3))  # non-symmetric input: the symmetric part is decomposed
    np.testing.assert_allclose(_eigh_grad(b, cw, cv), _eigh_grad_ref(b, cw, cv), atol=1e-10)


def _svd_points():
    rng = np.random.default_rng(1)
    return {
        (3, 3): [
            np.eye(3),
            np.zeros((3, 3)),
            _with_singular_values(rng, 3, 3, [2.0, 2.0, 1.0]),
            2.0 * _orthogonal(rng, 3),
            _with_singular_values(rng, 3, 3, [2.0, 0.0, 0.0]),
        ],
        (4, 3): [
            np.c_[rng.standard_normal((4, 2)), np.zeros((4, 1))],
            _with_singular_values(rng, 4, 3, [1.0, 1.0, 1.0]),
            np.zeros((4, 3)),
        ],
        (3, 4): [np.eye(3, 4), np.zeros((3, 4)), _with_singular_values(rng, 3, 4, [1, 1, 0])],
    }


@pytest.mark.parametrize("shape", SHAPES)
def test_svd_grads_finite_at_repeated_and_zero_singular_values(shape, rng):
    points = np.stack(_svd_points()[shape])
    tangents = rng.standard_normal(points.shape)
    g, hvp, g2 = _svd_at_points(points, tangents, *_svd_coefs(rng, *shape))
    assert g.shape == points.shape
    assert bool(jnp.all(jnp.isfinite(g))) and bool(jnp.all(jnp.isfinite(hvp)))
    # sum(s**2) = ||a||_F**2 is smooth everywhere: its gradient is 2a, also at ties.
    np.testing.assert_allclose(g2, 2 * points, atol=1e-12)


def test_eigh_grads_finite_at_repeated_eigenvalues(rng):
    points = np.stack([np.eye(3), np.zeros((3, 3)), _with_eigenvalues(rng, [1.0, 1.0, 5.0])])
    tangents = rng.standard_normal(points.shape)
    cw, cv = rng.standard_normal(3), rng.standard_normal((3, 3))
    g, hvp, g2 = _eigh_at_points(points, tangents, cw, cv, None)
    assert bool(jnp.all(jnp.isfinite(g))) and bool(jnp.all(jnp.isfinite(hvp)))
    np.testing.assert_allclose(g2, 2 * points, atol=1e-12)


def _directional_fd(f, a, t, h=1e-6):
    return (f(a + h * t) - f(a - h * t)) / (2 * h)


def test_grads_exact_at_ties_for_functions_that_do_not_split_them(rng):
    # Nuclear norm at a full-rank point with all singular values tied: gradient = u @ vt.
    q = _orthogonal(rng, 3)
    nuclear_grad = jax.jit(jax.vmap(jax.grad(lambda x: jnp.sum(svd(x).s))))
    np.testing.assert_allclose(nuclear_grad(np.stack([2.0 * q, np.eye(3)])), [q, np.eye(3)])

    # Projector onto the top-2 left singular subspace where s = (3, 3, 1).
    a = _with_singular_values(rng, 4, 3, [3.0, 3.0, 1.0])
    c = rng.standard_normal((4, 4))

    @jax.jit
    def svd_proj(x):
        u = svd(x).u[:, :2]
        return jnp.sum(c * (u @ u.T))

    t = rng.standard_normal(a.shape)
    fd = _directional_fd(svd_proj, a, t)
    np.testing.assert_allclose(jnp.sum(jax.grad(svd_proj)(a) * t), fd, rtol=1e-6, atol=1e-8)

    # Projector onto the eigenvector of the simple eigenvalue 5 next to a tied pair (1, 1).
    a = _with_eigenvalues(rng, [1.0, 1.0, 5.0])
    c = rng.standard_normal((3, 3))

    @jax.jit
    def eigh_proj(x):
        v = eigh(x).eigenvectors[:, 2:]
        return jnp.sum(c * (v @ v.T))

    t = rng.standard_normal((3, 3))
    t = t + t.T
    fd = _directional_fd(eigh_proj, a, t)
    np.testing.assert_allclose(jnp.sum(jax.grad(eigh_proj)(a) * t), fd, rtol=1e-6, atol=1e-8)


def test_svd_full_matrices_gradients(rng):
    a = rng.standard_normal((3, 3))
    coefs = _svd_coefs(rng, 3, 3)
    full_loss = lambda x: _svd_loss_with(lambda y: svd(y, full_matrices=True), x, *coefs)  # noqa: E731
    np.testing.assert_allclose(jax.grad(full_loss)(a), _svd_grad(a, *coefs), atol=1e-12)
    msg = re.escape(
        "jaxla.linalg.svd: `full_matrices` must be False to differentiate a non-square `a`"
    )
    with pytest.raises(ValueError, match=msg):
        jax.grad(lambda x: jnp.sum(svd(x, full_matrices=True).s))(rng.standard_normal((4, 3)))


def test_qr_lu_cholesky_grads(rng):
    a = rng.standard_normal((4, 3))

    def qr_loss(x):
        q, r = qr(x)
        return jnp.sum(jnp.sin(q)) + jnp.sum(r**2)

    def lu_loss(x):
        _, l, u = lu(x)
        return jnp.sum(jnp.sin(l)) + jnp.sum(u**2)

    check_grads(jax.jit(qr_loss), (a,), order=1, modes=["rev"])
    check_grads(jax.jit(lu_loss), (a[:3],), order=1, modes=["rev"])
    check_grads(jax.jit(lambda x: jnp.sum(jnp.sin(cholesky(x)))), (_spd(rng, 3),), 1, ["rev"])


# --------------------------------------------------------------------------------------------
# errors


def _msg(fn, text):
    return "^" + re.escape(f"jaxla.linalg.{fn}: {text}")


ALL = {"svd": svd, "eigh": eigh, "qr": qr, "lu": lu, "cholesky": cholesky}


@pytest.mark.parametrize("name", list(ALL))
def test_errors_rank_dtype_nan(name):
    fn = ALL[name]
    for call in (fn, jax.jit(fn)):
        with pytest.raises(ValueError, match=_msg(name, "`a` must have at least 2 dimensions")):
            call(jnp.ones(3))
        with pytest.raises(TypeError, match=_msg(name, "`a` must have a real floating dtype")):
            call(jnp.ones((3, 3), dtype=jnp.int32))
    with pytest.raises(ValueError, match=re.escape("got shape (3,)")):
        fn(jnp.ones(3))
    with pytest.raises(
        ValueError, match=_msg(name, "`a` must have at least one row and one column, got shape")
    ):
        fn(jnp.ones((0, 0)))
    bad = np.eye(3)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=_msg(name, "`a` contains 1 NaN or Inf value(s)")):
        fn(bad)
    err, _ = checkify.checkify(jax.jit(fn))(bad)
    with pytest.raises(ValueError, match=_msg(name, "`a` contains NaN or Inf value(s)")):
        err.throw()


@pytest.mark.parametrize("name", ["eigh", "cholesky"])
def test_errors_not_square(name):
    with pytest.raises(
        ValueError, match=_msg(name, "`a` must be a square matrix (n, n), got shape (3, 4)")
    ):
        ALL[name](jnp.ones((3, 4)))


def test_errors_options():
    with pytest.raises(
        ValueError,
        match=_msg("qr", "`mode` must be one of 'reduced', 'complete', 'r', got 'full'"),
    ):
        qr(jnp.eye(3), mode="full")
    with pytest.raises(TypeError, match=_msg("svd", "`full_matrices` must be a Python bool")):
        svd(jnp.eye(3), full_matrices="yes")
    with pytest.raises(TypeError, match=_msg("cholesky", "`return_info` must be a Python bool")):
        cholesky(jnp.eye(3), return_info=1)


NOT_PD = _msg("cholesky", "`a` is not positive definite")


def test_cholesky_not_positive_definite_eager_and_info():
    bad = np.array([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match=NOT_PD):
        cholesky(bad)
    with pytest.raises(ValueError, match=NOT_PD):
        cholesky(np.stack([np.eye(2), bad]))
    l, ok = cholesky(np.stack([np.eye(2), bad, -np.eye(2)]), return_info=True)
    np.testing.assert_array_equal(ok, [True, False, False])
    np.testing.assert_array_equal(l[0], np.eye(2))
    l32, ok32 = cholesky(np.zeros((2, 2), np.float32), return_info=True)  # PSD, not PD
    assert not bool(ok32) and l32.dtype == np.float32


def test_cholesky_not_positive_definite_under_jit_checkify():
    bad = np.array([[1.0, 2.0], [2.0, 1.0]])
    jitted = jax.jit(cholesky)
    np.testing.assert_array_equal(jitted(bad), np.full((2, 2), np.nan))  # documented NaN
    err, _ = checkify.checkify(jitted)(bad)
    with pytest.raises(checkify.JaxRuntimeError, match=NOT_PD):
        err.throw()
    err, _ = checkify.checkify(jax.jit(jax.vmap(cholesky)))(np.stack([np.eye(2), bad]))
    with pytest.raises(checkify.JaxRuntimeError, match=NOT_PD):
        err.throw()
    err, l = checkify.checkify(jitted)(np.eye(2))
    err.throw()  # positive definite: nothing raised
    np.testing.assert_array_equal(l, np.eye(2))
    info = jax.jit(lambda x: cholesky(x, return_info=True))
    err, (_, ok) = checkify.checkify(info)(bad)
    assert err.get() is None and not bool(ok)
