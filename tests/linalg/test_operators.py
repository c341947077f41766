"""Tests for jaxla.linalg.operators: LinearOperator, aslinearoperator, centered.

References are dense numpy products (``a @ x``, ``a.T @ y``) and explicit centring.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxla.linalg import LinearOperator, aslinearoperator, centered


@pytest.fixture
def a(rng):
    return rng.standard_normal((5, 3))


def _op_from(a):
    a = jnp.asarray(a)
    return LinearOperator(a.shape, a.dtype, lambda x: a @ x, lambda y: a.T @ y)


def test_dense_operator_products_match_numpy(a, rng):
    op = aslinearoperator(a)
    x, y = rng.standard_normal((3, 2)), rng.standard_normal((5, 4))
    assert op.shape == (5, 3) and op.ndim == 2 and op.dtype == np.float64
    np.testing.assert_allclose(op.matmat(jnp.asarray(x)), a @ x, rtol=1e-12)
    np.testing.assert_allclose(op.rmatmat(jnp.asarray(y)), a.T @ y, rtol=1e-12)
    np.testing.assert_allclose(op.matvec(jnp.asarray(x[:, 0])), a @ x[:, 0], rtol=1e-12)
    np.testing.assert_allclose(op.rmatvec(jnp.asarray(y[:, 0])), a.T @ y[:, 0], rtol=1e-12)
    np.testing.assert_allclose(op.T.matmat(jnp.asarray(y)), a.T @ y, rtol=1e-12)
    assert op.T.shape == (3, 5)


def test_float32_operator_keeps_dtype(a):
    op = aslinearoperator(a.astype(np.float32))
    out = op.matmat(jnp.ones((3, 2), jnp.float32))
    assert op.dtype == np.float32 and out.dtype == jnp.float32


def test_operator_is_a_pytree_without_leaves_and_passes_through_jit(a, rng):
    op = _op_from(a)
    assert jax.tree_util.tree_leaves(op) == []
    x = rng.standard_normal((3, 2))
    out = jax.jit(lambda o, v: o.matmat(v))(op, jnp.asarray(x))
    np.testing.assert_allclose(out, a @ x, rtol=1e-12)
    # and round-trips through flatten/unflatten
    leaves, tree = jax.tree_util.tree_flatten(op)
    assert jax.tree_util.tree_unflatten(tree, leaves) == op


def test_aslinearoperator_returns_a_valid_operator_unchanged(a):
    op = _op_from(a)
    assert aslinearoperator(op) == op


def test_aslinearoperator_checks_matmat_shape_at_trace_time(a):
    bad = LinearOperator((5, 3), jnp.float64, lambda x: x, lambda y: jnp.asarray(a).T @ y)
    msg = (
        "jaxla.linalg.aslinearoperator: `a.matmat` must map an (n, b)=(3, 2) array to "
        "(m, b)=(5, 2), got shape (3, 2)"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        aslinearoperator(bad)
    with pytest.raises(ValueError, match=re.escape(msg)):
        jax.jit(lambda: aslinearoperator(bad).matvec(jnp.ones(3)))()


def test_aslinearoperator_checks_rmatmat_shape(a):
    aj = jnp.asarray(a)
    bad = LinearOperator((5, 3), jnp.float64, lambda x: aj @ x, lambda y: y[:4])
    with pytest.raises(ValueError, match=re.escape(
        "`a.rmatmat` must map an (m, b)=(5, 2) array to (n, b)=(3, 2), got shape (4, 2)"
    )):
        aslinearoperator(bad)


def test_aslinearoperator_rejects_bad_inputs():
    with pytest.raises(ValueError, match=re.escape(
        "jaxla.linalg.aslinearoperator: `a` must be 2-D (m, n), got shape (4,)"
    )):
        aslinearoperator(np.ones(4))
    with pytest.raises(TypeError, match="`a` must have a real floating dtype"):
        aslinearoperator(np.ones((2, 2), np.int32))
    with pytest.raises(ValueError, match=re.escape(
        "`a.shape` must be a pair of ints (m, n) >= 0, got (2, -1)"
    )):
        aslinearoperator(LinearOperator((2, -1), jnp.float32, abs, abs))
    with pytest.raises(TypeError, match=re.escape("`a.matmat` must be callable, got None")):
        aslinearoperator(LinearOperator((2, 2), jnp.float32, None, abs))
    with pytest.raises(TypeError, match=re.escape(
        "`a.dtype` must be a real floating dtype, got int32"
    )):
        aslinearoperator(LinearOperator((2, 2), jnp.int32, abs, abs))


@pytest.mark.parametrize("as_op", [False, True], ids=["dense", "operator"])
def test_centered_equals_explicit_centering(a, rng, as_op):
    mean = a.mean(axis=0) + 0.3
    op = centered(_op_from(a) if as_op else a, mean)
    dense = a - mean[None, :]
    x, y = rng.standard_normal((3, 2)), rng.standard_normal((5, 4))
    np.testing.assert_allclose(op.matmat(jnp.asarray(x)), dense @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.rmatmat(jnp.asarray(y)), dense.T @ y, rtol=1e-12, atol=1e-12)
    assert op.shape == (5, 3)


def test_centered_under_jit_with_traced_mean(a, rng):
    x = rng.standard_normal((3, 2))

    @jax.jit
    def f(arr, mean, v):
        return centered(arr, mean).matmat(v)

    out = f(jnp.asarray(a), jnp.asarray(a.mean(0)), jnp.asarray(x))
    np.testing.assert_allclose(out, (a - a.mean(0)) @ x, rtol=1e-12, atol=1e-12)


def test_centered_float32_stays_float32(a):
    op = centered(a.astype(np.float32), np.zeros(3, np.float64))
    assert op.matmat(jnp.ones((3, 1), jnp.float32)).dtype == jnp.float32


def test_centered_rejects_a_mean_of_the_wrong_length(a):
    with pytest.raises(ValueError, match=re.escape(
        "jaxla.linalg.centered: `mean` must have shape (n,)=(3,), got shape (5,)"
    )):
        centered(a, np.zeros(5))
    with pytest.raises(ValueError, match=re.escape(
        "jaxla.linalg.centered: `mean` must be 1-D (n,), got shape (1, 3)"
    )):
        centered(a, np.zeros((1, 3)))
