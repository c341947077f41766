"""Tests of jaxla.nn.initializers: fans, variances against the formulas, jax.nn.initializers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxla import nn
from jaxla.nn import (
    compute_fans,
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
    lecun_normal,
    lecun_uniform,
    normal,
    ones,
    zeros,
)

# name -> (initializer, jax.nn.initializers factory, variance as a function of the fans, uniform?)
VARIANCE_SCALING = {
    "glorot_normal": (glorot_normal, jax.nn.initializers.glorot_normal,
                      lambda fi, fo: 2 / (fi + fo), False),
    "glorot_uniform": (glorot_uniform, jax.nn.initializers.glorot_uniform,
                       lambda fi, fo: 2 / (fi + fo), True),
    "he_normal": (he_normal, jax.nn.initializers.he_normal, lambda fi, fo: 2 / fi, False),
    "he_uniform": (he_uniform, jax.nn.initializers.he_uniform, lambda fi, fo: 2 / fi, True),
    "lecun_normal": (lecun_normal, jax.nn.initializers.lecun_normal, lambda fi, fo: 1 / fi, False),
    "lecun_uniform": (lecun_uniform, jax.nn.initializers.lecun_uniform,
                      lambda fi, fo: 1 / fi, True),
}

# A conv kernel (kh, kw, c_in, c_out) with 73,728 entries: the sample variance has a relative
# standard error below 0.6%, so a 4% tolerance never fails by chance.
CONV = (3, 3, 32, 256)
DENSE = (8, 6)


def test_compute_fans_dense_and_conv():
    assert compute_fans((64, 10)) == (64, 10)
    assert compute_fans((3, 5, 16, 32)) == (3 * 5 * 16, 3 * 5 * 32)
    assert compute_fans((7, 4, 6)) == (28, 42)  # 1-D convolution (k, c_in, c_out)


@pytest.mark.parametrize("name", list(VARIANCE_SCALING))
def test_variance_matches_formula(name):
    init, _, variance, uniform = VARIANCE_SCALING[name]
    w = np.asarray(init(jax.random.key(1), CONV), np.float64)
    assert w.shape == CONV
    fan_in, fan_out = 3 * 3 * 32, 3 * 3 * 256
    var = variance(fan_in, fan_out)
    np.testing.assert_allclose(w.var(), var, rtol=0.04)
    assert abs(w.mean()) < 4 * np.sqrt(var / w.size)
    if uniform:
        bound = np.sqrt(3 * var)
        assert np.abs(w).max() <= bound
        assert np.abs(w).max() > 0.99 * bound  # the whole interval is used
        # a uniform distribution has kurtosis 9/5
        np.testing.assert_allclose(np.mean(w**4) / w.var() ** 2, 1.8, rtol=0.03)
    else:
        bound = 2 * np.sqrt(var) / 0.87962566103423978  # truncated at 2 std of the base normal
        assert np.abs(w).max() <= bound * (1 + 1e-6)
        assert np.abs(w).max() > 0.98 * bound


@pytest.mark.parametrize(
    ("name", "dtype"),
    [(name, np.float32) for name in VARIANCE_SCALING]
    + [("glorot_normal", np.float64), ("he_uniform", np.float64)],
)
def test_same_numbers_as_jax_nn_initializers(name, dtype):
    init, factory, _, _ = VARIANCE_SCALING[name]
    key = jax.random.key(3)
    ours = init(key, DENSE, dtype)
    ref = factory()(key, DENSE, dtype)
    assert ours.dtype == dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=0)


def test_dtypes_keys_and_jit():
    key = jax.random.key(0)
    assert he_normal(key, DENSE).dtype == jnp.float32  # float32 default with float64 enabled
    w16 = he_normal(key, DENSE, jnp.bfloat16)
    assert w16.dtype == jnp.bfloat16
    np.testing.assert_allclose(
        np.asarray(w16, np.float32), he_normal(key, DENSE), rtol=1e-2
    )  # drawn in float32, then rounded
    np.testing.assert_array_equal(he_normal(key, DENSE), he_normal(key, DENSE))
    assert not np.array_equal(he_normal(key, DENSE), he_normal(jax.random.key(1), DENSE))
    jitted = jax.jit(functools.partial(he_normal, shape=DENSE))(key)
    np.testing.assert_allclose(jitted, he_normal(key, DENSE), rtol=1e-6)
    keys = jax.random.split(key, 3)
    batch = jax.vmap(lambda k: lecun_uniform(k, DENSE))(keys)
    assert batch.shape == (3, *DENSE)
    np.testing.assert_allclose(batch[2], lecun_uniform(keys[2], DENSE), rtol=1e-6)


def test_normal_zeros_ones():
    w = np.asarray(normal(jax.random.key(2), (200, 300), stddev=0.02), np.float64)
    np.testing.assert_allclose(w.std(), 0.02, rtol=0.02)
    assert abs(w.mean()) < 4 * 0.02 / np.sqrt(w.size)
    assert normal(jax.random.key(2), 5).shape == (5,)
    z = zeros(None, (2, 3), jnp.float64)
    assert z.dtype == jnp.float64 and not np.any(np.asarray(z))
    o = ones(jax.random.key(0), 4)
    assert o.dtype == jnp.float32
    np.testing.assert_array_equal(o, np.ones(4))


def test_errors():
    key = jax.random.key(0)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.glorot_normal: `shape` must have at least 2 axes \(\.\.\., fan_in, "
              r"fan_out\) to define fans, got \(5,\)$",
    ):
        glorot_normal(key, (5,))
    with pytest.raises(
        ValueError, match=r"^jaxla.nn.he_uniform: `shape\[1\]` must be >= 1, got 0$"
    ):
        he_uniform(key, (3, 0))
    with pytest.raises(
        TypeError, match=r"^jaxla.nn.lecun_normal: `dtype` must be a floating dtype, got int32$"
    ):
        lecun_normal(key, (3, 4), jnp.int32)
    with pytest.raises(TypeError, match=r"^jaxla.nn.zeros: `shape` must be a tuple of ints"):
        zeros(None, "3")
    with pytest.raises(
        ValueError, match=r"^jaxla.nn.normal: `stddev` must be > 0 and finite, got -1.0$"
    ):
        normal(key, (2, 2), stddev=-1.0)
    with pytest.raises(ValueError, match=r"^jaxla.nn.compute_fans: `shape` must have at least 2"):
        compute_fans((4,))


def test_public_names():
    for name in ("compute_fans", "glorot_normal", "he_uniform", "normal", "zeros", "ones",
                 "Initializer"):
        assert name in nn.__all__ and getattr(nn, name) is getattr(nn.initializers, name)
