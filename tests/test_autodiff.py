"""Tests of jaxla.autodiff against jax.jacfwd/jacrev/hessian, dense matrices and finite differences.

References are built independently of jaxla: a numpy flattening of the parameter pytree (leaves
in ``jax.tree.leaves`` order, row-major) and ``jax.hessian``/``jax.jacfwd`` on it for dense
matrices. Test data are numpy arrays and every JAX computation is jitted, since each eager JAX
operation would compile on its own.
"""

import functools
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

from jaxla import autodiff
from jaxla.autodiff import DenseHessian, GradCheck
from jaxla.nn import mlp
from tests.helpers import msg


def prefix(text):
    """Regex matching a message that starts with ``text`` (under jit JAX may append a note)."""
    return "^" + re.escape(text)


def _mlp_params(rng, sizes):
    return {
        f"layers_{i}": {"w": jnp.asarray(rng.standard_normal((a, b)) / np.sqrt(a)),
                        "b": jnp.asarray(0.1 * rng.standard_normal(b))}
        for i, (a, b) in enumerate(itertools.pairwise(sizes))
    }


def flat(tree):
    """A pytree as one float64 numpy vector (leaves in tree_leaves order, row-major)."""
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def unflat(vec, like):
    """Inverse of ``flat`` for the structure of ``like`` (numpy or traced ``vec``)."""
    leaves, treedef = jax.tree.flatten(like)
    out, off = [], 0
    for leaf in leaves:
        out.append(vec[off:off + leaf.size].reshape(leaf.shape))
        off += leaf.size
    return jax.tree.unflatten(treedef, out)


# Test data are made with numpy (device transfers only): eager JAX ops would each compile.
_RNG = np.random.default_rng(0)
# a small MLP (4 -> 5 -> 3, tanh): 43 parameters, float64
PARAMS = _mlp_params(_RNG, [4, 5, 3])
X = jnp.asarray(_RNG.standard_normal((7, 4)))
LABELS = jnp.asarray(np.array([0, 1, 2, 0, 1, 2, 1]))
FLAT = flat(PARAMS)
P = FLAT.shape[0]


def UNRAVEL(z):
    return unflat(z, PARAMS)


def model(p, x):
    return mlp(p, x, activation="tanh")


def out_loss(z, y):
    logp = jax.nn.log_softmax(z, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def loss(p):
    return out_loss(model(p, X), LABELS)


@functools.cache
def dense_hessian():
    return np.asarray(jax.jit(jax.hessian(lambda z: loss(UNRAVEL(z))))(FLAT))


def _vec(seed, like=PARAMS):
    size = sum(x.size for x in jax.tree.leaves(like))
    vec = np.random.default_rng(seed).standard_normal(size)
    return jax.tree.map(jnp.asarray, unflat(vec, like))


# ---------------------------------------------------------------------------------------------
# jacobian


def vec_fn(p):
    """A pytree -> pytree function with 6 inputs and 12 outputs."""
    return {"a": jnp.outer(jnp.sin(p["u"]), p["v"]), "b": jnp.tanh(p["u"] * p["v"][0])}


IN = {"u": jnp.array([0.1, -0.4, 0.7]), "v": jnp.array([1.5, -0.3, 0.2])}


@pytest.mark.parametrize("mode", ["auto", "fwd", "rev"])
def test_jacobian_matches_jacfwd_and_jacrev(mode):
    jac = jax.jit(lambda x: autodiff.jacobian(vec_fn, x, mode=mode))(IN)
    for ref in _vec_fn_refs():
        assert jax.tree.structure(jac) == jax.tree.structure(ref)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14),
                     jac, ref)
    assert jac["a"]["u"].shape == (3, 3, 3) and jac["b"]["v"].shape == (3, 3)


@functools.cache
def _vec_fn_refs():
    return jax.jit(jax.jacfwd(vec_fn))(IN), jax.jit(jax.jacrev(vec_fn))(IN)


def test_jacobian_auto_picks_the_cheaper_mode():
    # a while loop is differentiable in forward mode only, a custom_vjp in reverse mode only
    def fwd_only(x):
        _, y = jax.lax.while_loop(lambda s: s[0] < 3, lambda s: (s[0] + 1, s[1] * 1.5),
                                  (0, x))
        return jnp.concatenate([y, y**2])

    @jax.custom_vjp
    def rev_only(x):
        return jnp.sum(x**2, keepdims=True)

    rev_only.defvjp(lambda x: (rev_only(x), x), lambda x, g: (2 * x * g,))

    x = jnp.array([1.0, 2.0, 3.0])
    wide = autodiff.jacobian(fwd_only, x)  # 3 inputs < 6 outputs: forward
    np.testing.assert_allclose(wide, np.concatenate([np.eye(3) * 3.375,
                                                     np.diag(2 * 3.375**2 * np.asarray(x))]))
    narrow = autodiff.jacobian(rev_only, x)  # 3 inputs >= 1 output: reverse
    np.testing.assert_allclose(narrow, [[2.0, 4.0, 6.0]])
    with pytest.raises(Exception):  # noqa: B017 - the mode that auto avoided fails
        autodiff.jacobian(rev_only, x, mode="fwd")


def test_jacobian_array_shapes_dtype_jit_and_vmap():
    a = jnp.asarray(np.random.default_rng(3).standard_normal((2, 5, 3)), jnp.float32)

    def f(x):  # (3, 4) -> (2, 5, 4)
        return jnp.tanh(jnp.einsum("ijk,kl->ijl", a, x))

    x = np.ones((3, 4), np.float32)
    xs = np.stack([x, 2 * x])
    jac = jax.jit(jax.vmap(lambda x: autodiff.jacobian(f, x)))(xs)  # reverse mode: 12 < 40
    assert jac.shape == (2, 2, 5, 4, 3, 4) and jac.dtype == jnp.float32
    ref = jax.jit(jax.vmap(jax.jacfwd(f)))(xs.astype(np.float64))
    np.testing.assert_allclose(jac, ref, rtol=1e-5, atol=1e-6)


def test_jacobian_errors():
    fn = "jaxla.autodiff.jacobian"
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `mode` must be one of 'auto', 'fwd', 'rev', got 'forward'")):
        autodiff.jacobian(vec_fn, IN, mode="forward")
    with pytest.raises(TypeError, match=msg(f"{fn}: `f` must be callable, got 3")):
        autodiff.jacobian(3, IN)
    with pytest.raises(TypeError, match=msg(
            f"{fn}: `x` must have real floating dtype(s), got dtype int64 at leaf 'u'; cast it "
            "first, e.g. x.astype(jnp.float32)")):
        autodiff.jacobian(vec_fn, {"u": jnp.arange(3), "v": IN["v"]})
    with pytest.raises(TypeError, match=msg(
            f"{fn}: `f` must return real floating arrays, got dtype int32")):
        autodiff.jacobian(lambda x: jnp.round(x).astype(jnp.int32), IN["u"])
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `x` must be an array or a non-empty pytree of arrays, got {{}}")):
        autodiff.jacobian(vec_fn, {})


# ---------------------------------------------------------------------------------------------
# hessian


def test_hessian_pytree_of_pytrees_matches_jax_hessian():
    h = jax.jit(lambda p: autodiff.hessian(loss, p))(PARAMS)
    ref = jax.jit(jax.hessian(loss))(PARAMS)
    assert jax.tree.structure(h) == jax.tree.structure(ref)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12), h, ref)
    assert h["layers_0"]["w"]["layers_1"]["b"].shape == (4, 5, 3)


def test_dense_hessian_matrix_and_index_map():
    h = jax.jit(lambda p: autodiff.hessian(loss, p, dense=True))(PARAMS)
    assert isinstance(h, DenseHessian)
    ref = dense_hessian()
    assert h.matrix.shape == (P, P) and h.size == P and h.matrix.dtype == jnp.float64
    np.testing.assert_allclose(h.matrix, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(h.matrix, h.matrix.T)
    # the map from indices to leaf paths agrees with ravel_pytree's order
    assert h.paths == ("layers_0/b", "layers_0/w", "layers_1/b", "layers_1/w")
    assert h.offsets == (0, 5, 25, 28, 43)
    assert h.shapes == ((5,), (4, 5), (3,), (5, 3))
    marker = jax.tree.map(lambda x: np.zeros(x.shape), PARAMS)
    marker["layers_1"]["w"][2, 1] = 1.0
    i = int(np.argmax(flat(marker)))
    assert h.locate(i) == ("layers_1/w", (2, 1)) and h.index("layers_1/w", (2, 1)) == i
    assert all(h.index(*h.locate(j)) == j for j in range(P))
    # blocks agree with the pytree-of-pytrees Hessian
    tree = jax.jit(jax.hessian(loss))(PARAMS)
    np.testing.assert_allclose(h.block("layers_0/w", "layers_1/b"),
                               tree["layers_0"]["w"]["layers_1"]["b"].reshape(20, 3),
                               rtol=1e-10, atol=1e-12)
    assert h.block("layers_1/b").shape == (3, 3)
    # ravel / unravel round trip, leading axes kept
    v = _vec(4)
    np.testing.assert_array_equal(h.ravel(v), flat(v))
    back = h.unravel(jnp.stack([h.ravel(v)] * 2))
    assert back["layers_0"]["w"].shape == (2, 4, 5)
    np.testing.assert_array_equal(back["layers_1"]["w"][1], v["layers_1"]["w"])
    with pytest.raises(ValueError, match=msg(
            "jaxla.autodiff.DenseHessian: `path` must be one of 'layers_0/b', 'layers_0/w', "
            "'layers_1/b', 'layers_1/w', got 'layers_0'")):
        h.slice("layers_0")
    with pytest.raises(ValueError, match=msg(
            "jaxla.autodiff.DenseHessian.locate: `index`=43 exceeds P - 1=42")):
        h.locate(43)


def test_dense_hessian_jit_vmap_and_float32():
    def f(p, c):
        return jnp.sum(c * p["a"] ** 3) + jnp.sum(p["a"]) * jnp.sum(p["b"] ** 2)

    p = {"a": jnp.array([1.0, 2.0], jnp.float32), "b": jnp.array([[0.5, -1.0]], jnp.float32)}
    h = jax.jit(lambda p, c: autodiff.hessian(lambda q: f(q, c), p, dense=True))(p, 2.0)
    assert isinstance(h, DenseHessian) and h.matrix.dtype == jnp.float32
    ref = jax.jit(jax.vmap(jax.hessian(lambda z, c: f(unflat(z, p), c)), in_axes=(None, 0)))(
        flat(p), np.array([2.0, 3.0]))
    np.testing.assert_allclose(h.matrix, ref[0], rtol=1e-6)
    hs = jax.jit(jax.vmap(lambda c: autodiff.hessian(lambda q: f(q, c), p, dense=True)))(
        jnp.array([1.0, 3.0], jnp.float32))
    assert hs.matrix.shape == (2, 4, 4) and hs.paths == ("a", "b")
    np.testing.assert_allclose(hs.matrix[1], ref[1], rtol=1e-6)


def test_hessian_errors():
    fn = "jaxla.autodiff.hessian"
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `f` must return a scalar (shape ()), got shape (7, 3)")):
        autodiff.hessian(lambda p: model(p, X), PARAMS)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `f` must return a scalar (shape ()), got {{'a': (), 'b': ()}}")):
        autodiff.hessian(lambda p: {"a": loss(p), "b": loss(p)}, PARAMS, dense=True)
    with pytest.raises(TypeError, match=msg(f"{fn}: `dense` must be a Python bool, got 'yes'")):
        autodiff.hessian(loss, PARAMS, dense="yes")
    with pytest.raises(ValueError, match=prefix(
            f"{fn}: `f` must return a scalar (shape ()), got shape (3,)")):
        jax.jit(lambda x: autodiff.hessian(jnp.sin, x))(jnp.ones(3))


# ---------------------------------------------------------------------------------------------
# hvp


def test_hvp_equals_dense_hessian_times_v():
    for seed in (5, 6):
        v = _vec(seed)
        out = _jit_hvp(v)
        assert jax.tree.structure(out) == jax.tree.structure(PARAMS)
        np.testing.assert_allclose(flat(out), dense_hessian() @ flat(v),
                                   rtol=1e-10, atol=1e-10)


def test_hvp_jit_vmap_dtype_and_grad():
    f = jax.jit(lambda p, v: autodiff.hvp(loss, p, v))
    vs = np.stack([flat(_vec(s)) for s in range(3)])
    batched = jax.vmap(lambda z: jnp.concatenate(
        [jnp.ravel(x) for x in jax.tree.leaves(f(PARAMS, UNRAVEL(z)))]))(vs)
    np.testing.assert_allclose(batched, vs @ dense_hessian().T, rtol=1e-10, atol=1e-10)
    # float32 parameters: a float64 vector is cast, the result is float32 and accurate
    p32 = jax.tree.map(lambda x: np.asarray(x, np.float32), PARAMS)
    out = jax.jit(lambda p, v: autodiff.hvp(loss, p, v))(p32, _vec(5))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(out))
    ref = dense_hessian() @ flat(_vec(5))
    assert np.max(np.abs(flat(out) - ref)) <= 1e-5 * np.max(np.abs(ref))

    # hvp is differentiable in x (third derivatives) and v (checked in float64)
    def cubic(x):
        return jnp.sum(jnp.sin(x) * x**2) + x[0] * x[1] * x[2]

    x0, v0 = jnp.array([0.3, -0.5, 0.9]), jnp.array([1.0, 0.2, -0.7])
    check_grads(jax.jit(lambda x, v: autodiff.hvp(cubic, x, v)), (x0, v0), order=1,
                modes=["fwd", "rev"])


@given(st.integers(0, 2**16), st.floats(-3.0, 3.0))
def test_hvp_is_symmetric_and_linear(seed, a):
    u, v = flat(_vec(seed)), flat(_vec(seed + 1))  # numpy vectors
    hu = _jit_hvp(UNRAVEL(u))
    hv = _jit_hvp(UNRAVEL(v))
    np.testing.assert_allclose(u @ flat(hv), v @ flat(hu), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(flat(_jit_hvp(UNRAVEL(a * u + v))), a * flat(hu) + flat(hv),
                               rtol=1e-9, atol=1e-11)


_jit_hvp = jax.jit(lambda v: autodiff.hvp(loss, PARAMS, v))


def test_hvp_errors():
    fn = "jaxla.autodiff.hvp"
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `v` must have the structure and shapes of `x` (shape (3,)), got shape (4,)")):
        autodiff.hvp(lambda x: jnp.sum(x**3), jnp.ones(3), jnp.ones(4))
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `v` must have the structure and shapes of `x` ({{'a': (2,), 'b': ()}}), "
            "got {'a': (2,)}")):
        autodiff.hvp(lambda p: p["b"] * jnp.sum(p["a"]), {"a": jnp.ones(2), "b": jnp.ones(())},
                     {"a": jnp.ones(2)})
    with pytest.raises(TypeError, match=msg(
            f"{fn}: `v` must have real floating dtype(s), got dtype int64; cast it first, e.g. "
            "v.astype(jnp.float32)")):
        autodiff.hvp(lambda x: jnp.sum(x**3), jnp.ones(3), jnp.arange(3))
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `f` must return a scalar (shape ()), got shape (3,)")):
        autodiff.hvp(jnp.sin, jnp.ones(3), jnp.ones(3))
    with pytest.raises(TypeError, match=msg(
            f"{fn}: `f` must return a real floating scalar, got dtype int32")):
        autodiff.hvp(lambda x: jnp.sum(x).astype(jnp.int32), jnp.ones(3), jnp.ones(3))


# ---------------------------------------------------------------------------------------------
# ggn_vp


@functools.lru_cache
def dense_ggn():
    jac = jax.jit(jax.jacfwd(lambda z: model(UNRAVEL(z), X)))(FLAT)  # (7, 3, P)
    out = model(PARAMS, X)
    h_out = jax.jit(jax.hessian(lambda o: out_loss(o, LABELS)))(out)  # (7, 3, 7, 3)
    return np.einsum("ncp,ncmd,mdq->pq", jac, h_out, jac)


def test_ggn_vp_equals_dense_gauss_newton():
    g = dense_ggn()
    assert np.min(np.linalg.eigvalsh(g)) > -1e-12  # cross-entropy: PSD
    f = jax.jit(lambda v: autodiff.ggn_vp(model, out_loss, PARAMS, X, LABELS, v))
    for seed in (7, 8):
        v = _vec(seed)
        out = f(v)
        assert jax.tree.structure(out) == jax.tree.structure(PARAMS)
        np.testing.assert_allclose(flat(out), g @ flat(v), rtol=1e-10,
                                   atol=1e-12)


def test_ggn_equals_hessian_for_a_linear_model_jit_vmap_and_grad():
    w = {"w": jnp.array([[0.5, -1.0], [2.0, 0.3], [0.1, 0.4]]), "b": jnp.array([0.2, -0.1])}

    def lin(p, x):
        return x @ p["w"] + p["b"][None, :]

    def sq(z, y):
        return 0.5 * jnp.mean(jnp.sum((z - y) ** 2, axis=1) ** 1.5)

    x = jax.random.normal(jax.random.key(9), (6, 3))
    y = jax.random.normal(jax.random.key(10), (6, 2))
    v = _vec(11, w)
    ggn = jax.jit(lambda p, v: autodiff.ggn_vp(lin, sq, p, x, y, v))(w, v)
    h = jax.jit(lambda p, v: autodiff.hvp(lambda p: sq(lin(p, x), y), p, v))(w, v)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10), ggn, h)
    vs = jax.tree.map(lambda a: jnp.stack([a, -2 * a]), v)
    both = jax.jit(jax.vmap(lambda v: autodiff.ggn_vp(lin, sq, w, x, y, v)))(vs)
    np.testing.assert_allclose(both["w"][1], -2 * ggn["w"], rtol=1e-10)
    check_grads(jax.jit(lambda p: autodiff.ggn_vp(lin, sq, p, x, y, v)["w"]), (w,), order=1,
                modes=["fwd", "rev"])


def test_ggn_vp_errors():
    fn = "jaxla.autodiff.ggn_vp"
    v = _vec(1)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `loss_fn` must return a scalar (shape ()) from "
            "loss_fn(model_fn(params, x), y), got shape (7,)")):
        autodiff.ggn_vp(model, lambda z, y: jnp.sum(z, axis=1), PARAMS, X, LABELS, v)
    with pytest.raises(TypeError, match=msg(f"{fn}: `loss_fn` must be callable, got None")):
        autodiff.ggn_vp(model, None, PARAMS, X, LABELS, v)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `v` must have the structure and shapes of `params` "
            "({'layers_0': {'b': (5,), 'w': (4, 5)}, 'layers_1': {'b': (3,), 'w': (5, 3)}}), "
            "got {'layers_0': {'b': (5,), 'w': (4, 5)}}")):
        autodiff.ggn_vp(model, out_loss, PARAMS, X, LABELS, {"layers_0": v["layers_0"]})


# ---------------------------------------------------------------------------------------------
# check_grad


def smooth(p):
    return jnp.sum(jnp.sin(p["a"]) * jnp.exp(0.5 * p["b"])) + jnp.prod(p["a"]) ** 2


SMOOTH_AT = {"a": jnp.array([0.3, -0.7, 1.1]), "b": jnp.array([0.2, 0.9, -0.4])}


@functools.cache
def _check(order, random=False):
    """check_grad of ``smooth`` jitted once per configuration (the step ``h`` is traced)."""
    if random:
        return jax.jit(lambda x, k: autodiff.check_grad(smooth, x, order=order, key=k,
                                                        num_directions=4))
    return jax.jit(lambda x, h: autodiff.check_grad(smooth, x, order=order, eps=h))


@pytest.mark.parametrize("order", [1, 2])
def test_check_grad_errors_fall_like_h_squared(order):
    errors = []
    for h in (2e-2, 1e-2, 5e-3):
        res = _check(order)(SMOOTH_AT, h)
        assert isinstance(res, GradCheck)
        errors.append(float(res.max_abs_error))
        np.testing.assert_allclose(res.eps, h)
    ratios = np.asarray(errors[:-1]) / np.asarray(errors[1:])
    assert np.all((ratios > 3.5) & (ratios < 4.5)), ratios


def test_check_grad_compares_against_autodiff_and_dense_references():
    default = jax.jit(lambda x: autodiff.check_grad(smooth, x))  # the default step
    res = default(SMOOTH_AT)
    grad = flat(jax.jit(jax.grad(smooth))(SMOOTH_AT))
    assert res.analytic.shape == (6,) and res.numeric.shape == (6,)
    np.testing.assert_allclose(res.analytic, grad, rtol=1e-14)
    np.testing.assert_allclose(res.numeric, grad, rtol=1e-8)
    assert float(res.max_rel_error) < 1e-9  # default step in float64
    np.testing.assert_allclose(res.max_abs_error, np.max(np.abs(res.analytic - res.numeric)),
                               rtol=1e-5)
    res2 = _check(2)(SMOOTH_AT, 1e-5)
    hess = jax.jit(jax.hessian(lambda z: smooth(unflat(z, SMOOTH_AT))))(flat(SMOOTH_AT))
    assert res2.analytic.shape == (6, 6)
    np.testing.assert_allclose(res2.analytic, hess, rtol=1e-12, atol=1e-14)
    assert float(res2.max_rel_error) < 1e-8
    # random unit directions: directional derivatives
    rnd = _check(1, random=True)(SMOOTH_AT, jax.random.key(0))
    assert rnd.analytic.shape == (4,) and float(rnd.max_rel_error) < 1e-9
    # float32: the default step gives about 1e-4
    f32 = jax.tree.map(lambda x: np.asarray(x, np.float32), SMOOTH_AT)
    r32 = default(f32)
    assert r32.analytic.dtype == jnp.float32 and float(r32.max_rel_error) < 1e-3


def test_check_grad_detects_a_wrong_derivative_and_runs_under_jit():
    @jax.custom_jvp
    def bad(x):
        return jnp.sum(jnp.sin(x))

    bad.defjvp(lambda p, t: (bad(p[0]), jnp.sum(1.1 * jnp.cos(p[0]) * t[0])))
    x = jnp.array([0.1, 0.5])
    assert float(jax.jit(lambda x: autodiff.check_grad(bad, x))(x).max_rel_error) > 0.05
    res = jax.jit(lambda x: autodiff.check_grad(lambda y: jnp.sum(jnp.sin(y)), x))(x)
    assert float(res.max_rel_error) < 1e-9


def test_check_grad_errors():
    fn = "jaxla.autodiff.check_grad"
    with pytest.raises(ValueError, match=msg(f"{fn}: `order` must be one of 1, 2, got 3")):
        autodiff.check_grad(smooth, SMOOTH_AT, order=3)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `num_directions` must be None without a `key` (the coordinate directions "
            "are used), got 5")):
        autodiff.check_grad(smooth, SMOOTH_AT, num_directions=5)
    with pytest.raises(ValueError, match=msg(f"{fn}: `eps` must be > 0 and finite, got -0.1")):
        autodiff.check_grad(smooth, SMOOTH_AT, eps=-0.1)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `num_directions` must be >= 1, got 0")):
        autodiff.check_grad(smooth, SMOOTH_AT, key=jax.random.key(0), num_directions=0)
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `x` contains 1 NaN or Inf value(s); clean or mask them first")):
        autodiff.check_grad(jnp.sum, jnp.array([1.0, jnp.nan]))
    with pytest.raises(ValueError, match=msg(
            f"{fn}: `f` must return a scalar (shape ()), got shape (2,)")):
        autodiff.check_grad(jnp.sin, jnp.ones(2))
