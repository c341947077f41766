"""Tests of jaxla.models.classifiers: the MLP classifier against dense numpy computations."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import jaxla.models as models
from tests.helpers import msg

LOSS = "jaxla.models.mlp_classifier_loss"


def _numpy_forward(params, x):
    """Reference forward pass: ReLU between dense layers, in float64 numpy."""
    h = np.asarray(x, np.float64)
    n = len(params)
    for i in range(n):
        p = params[f"layers_{i}"]
        h = h @ np.asarray(p["w"], np.float64) + np.asarray(p["b"], np.float64)
        if i < n - 1:
            h = np.maximum(h, 0)
    return h


def _numpy_loss(params, x, y, l2):
    z = _numpy_forward(params, x)
    zmax = z.max(1, keepdims=True)
    logp = z - zmax - np.log(np.exp(z - zmax).sum(1, keepdims=True))
    penalty = sum(np.sum(np.asarray(p["w"], np.float64) ** 2) for p in params.values())
    return -np.mean(logp[np.arange(len(y)), y]) + 0.5 * l2 * penalty


@functools.cache
def _small():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 5))
    y = rng.integers(0, 3, 16)
    return x, y


def test_init_layout_and_apply_match_dense_computation(key):
    params = models.mlp_classifier_init(key, 5, 3, hidden=(8, 6))
    assert {k: (v["w"].shape, v["b"].shape) for k, v in params.items()} == {
        "layers_0": ((5, 8), (8,)), "layers_1": ((8, 6), (6,)), "layers_2": ((6, 3), (3,))}
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    np.testing.assert_array_equal(params["layers_0"]["b"], np.zeros(8))
    x, _ = _small()
    x32 = jnp.asarray(x, jnp.float32)
    logits = jax.jit(models.mlp_classifier_apply)(params, x32)
    assert logits.shape == (16, 3) and logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, _numpy_forward(params, x), rtol=1e-5, atol=1e-5)
    # no hidden layer: multinomial logistic regression's scores; default width 64; float64
    linear = models.mlp_classifier_init(key, 5, 3, hidden=(), dtype=jnp.float64)
    assert linear["layers_0"]["w"].dtype == jnp.float64
    np.testing.assert_allclose(jax.jit(models.mlp_classifier_apply)(linear, x),
                               x @ np.asarray(linear["layers_0"]["w"]), rtol=1e-12)
    default = jax.eval_shape(lambda k: models.mlp_classifier_init(k, 5, 3), key)
    assert default["layers_0"]["w"].shape == (5, 64) and default["layers_1"]["w"].shape == (64, 3)


def test_loss_matches_reference_and_gradients(key):
    params = jax.tree.map(lambda a: a.astype(jnp.float64),
                          models.mlp_classifier_init(key, 5, 3, hidden=(7,)))
    x, y = _small()
    loss = jax.jit(functools.partial(models.mlp_classifier_loss, l2=0.3))
    np.testing.assert_allclose(loss(params, (x, y)), _numpy_loss(params, x, y, 0.3), rtol=1e-12)
    np.testing.assert_allclose(jax.jit(models.mlp_classifier_loss)(params, (x, y)),
                               _numpy_loss(params, x, y, 0.0), rtol=1e-12)
    # gradients against finite differences (float64), with respect to parameters and inputs
    check_grads(lambda p: loss(p, (x, y)), (params,), order=1, modes=["rev"])
    check_grads(lambda xx: loss(params, (xx, y)), (x,), order=1, modes=["rev"])
    # float32 inputs give a float32 loss
    p32 = models.mlp_classifier_init(key, 5, 3, hidden=(7,))
    value = jax.jit(models.mlp_classifier_loss)(p32, (jnp.asarray(x, jnp.float32), y))
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(value, _numpy_loss(p32, x, y, 0.0), rtol=1e-5)


def test_per_example_gradients_with_vmap(key):
    """vmap over single examples: their mean gradient is the batch gradient (l2 = 0)."""
    params = jax.tree.map(lambda a: a.astype(jnp.float64),
                          models.mlp_classifier_init(key, 5, 3, hidden=(7,)))
    x, y = _small()
    grad = jax.grad(models.mlp_classifier_loss)
    per_example = jax.jit(jax.vmap(lambda xi, yi: grad(params, (xi[None], yi[None]))))(x, y)
    batch = jax.jit(grad)(params, (x, y))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.mean(a, axis=0), b, rtol=1e-10,
                                                         atol=1e-12), per_example, batch)


def test_accuracy_against_numpy():
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((40, 4))
    y = rng.integers(0, 4, 40)
    acc = models.accuracy(jnp.asarray(scores), jnp.asarray(y))
    assert acc.shape == () and acc.dtype == jnp.float64
    np.testing.assert_allclose(acc, np.mean(scores.argmax(1) == y))
    acc32 = models.accuracy(jnp.asarray(scores, jnp.float32), jnp.asarray(y))
    assert acc32.dtype == jnp.float32
    # binary decision values: class 1 where positive
    s1 = scores[:, 0]
    yb = (y > 1).astype(np.int32)
    np.testing.assert_allclose(models.accuracy(jnp.asarray(s1), jnp.asarray(yb)),
                               np.mean((s1 > 0) == yb))
    assert float(jax.jit(models.accuracy)(scores, y)) == pytest.approx(float(acc))


def test_mlp_learns_digits_with_optax(key):
    """A few hundred full-batch Adam steps reach >= 0.95 test accuracy on scikit-learn's digits."""
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split((x / 16.0).astype(np.float32), y.astype(np.int32),
                                              test_size=0.25, random_state=0, stratify=y)
    params = models.mlp_classifier_init(key, 64, 10, hidden=(64,))
    loss = functools.partial(models.mlp_classifier_loss, l2=1e-4)
    opt = optax.adam(1e-2)

    @jax.jit
    def train(params):
        def step(carry, _):
            p, state = carry
            value, grads = jax.value_and_grad(loss)(p, (x_tr, y_tr))
            updates, state = opt.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), value

        (p, _), values = jax.lax.scan(step, (params, opt.init(params)), None, length=300)
        return p, values

    trained, values = train(params)
    assert float(values[-1]) < 0.1 * float(values[0])
    test_acc = models.accuracy(models.mlp_classifier_apply(trained, x_te), y_te)
    assert float(test_acc) >= 0.95


def test_errors(key):
    params = models.mlp_classifier_init(key, 5, 3, hidden=(4,))
    x, y = _small()
    x32 = jnp.asarray(x, jnp.float32)
    bad = y.copy()
    bad[0] = 3
    with pytest.raises(ValueError, match=msg(
        f"{LOSS}: `y` must hold class labels in [0, 2] (3 classes), got label 3")):
        models.mlp_classifier_loss(params, (x32, bad))
    with pytest.raises(TypeError, match=msg(
        f"{LOSS}: `y` must hold integer class labels 0..c-1, got dtype float32")):
        models.mlp_classifier_loss(params, (x32, y.astype(np.float32)))
    with pytest.raises(ValueError, match=msg(
        f"{LOSS}: `y` must have 16 labels (one per row of the inputs), got shape (15,)")):
        models.mlp_classifier_loss(params, (x32, y[1:]))
    with pytest.raises(TypeError, match=msg(f"{LOSS}: `batch` must be a pair (x, y), got dict")):
        models.mlp_classifier_loss(params, {"x": x32, "y": y})
    with pytest.raises(ValueError, match=msg(f"{LOSS}: `l2` must be >= 0 and finite, got -1.0")):
        models.mlp_classifier_loss(params, (x32, y), l2=-1.0)
    with pytest.raises(ValueError, match=msg(
        "jaxla.models.mlp_classifier_init: `n_classes` must be >= 2, got 1")):
        models.mlp_classifier_init(key, 5, 1)
    with pytest.raises(ValueError, match=msg(
        "jaxla.models.mlp_classifier_init: `hidden[1]` must be >= 1, got 0")):
        models.mlp_classifier_init(key, 5, 3, hidden=(4, 0))
    with pytest.raises(TypeError, match=msg(
        "jaxla.models.mlp_classifier_init: `hidden` must be a sequence of widths, got 64")):
        models.mlp_classifier_init(key, 5, 3, hidden=64)
    with pytest.raises(ValueError, match=msg(
        "jaxla.models.accuracy: `y` must have 16 labels (one per row of the inputs), "
        "got shape (3,)")):
        models.accuracy(x32, y[:3])
