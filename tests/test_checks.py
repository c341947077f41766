"""Tests of the shared validation helpers: every message names the function and the argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxla import _checks

FN = "jaxla.demo.fn"


def test_as_float_array_rejects_integers_with_a_hint():
    with pytest.raises(TypeError, match=r"jaxla.demo.fn: `x` must have a real floating dtype, got "
                       r"integer or boolean dtype int\d+; cast it first"):
        _checks.as_float_array(np.arange(3), FN, "x")


def test_as_float_array_rejects_complex():
    with pytest.raises(TypeError, match="got complex dtype"):
        _checks.as_float_array(np.ones(3, np.complex64), FN, "x")


def test_as_float_array_checks_rank_and_converts_lists():
    out = _checks.as_float_array([[1.0, 2.0]], FN, "x", ndim=2)
    assert isinstance(out, jax.Array) and out.shape == (1, 2)
    with pytest.raises(ValueError, match=r"^jaxla.demo.fn: `x` must be 2-D \(n_samples, "
                       r"n_features\), got shape \(5,\)$"):
        _checks.as_float_array(np.ones(5), FN, "x", ndim=2, doc="(n_samples, n_features)")
    with pytest.raises(ValueError, match=r"`x` must be 1-D or 2-D, got shape \(1, 1, 1\)"):
        _checks.as_float_array(np.ones((1, 1, 1)), FN, "x", ndim=(1, 2))


def test_check_ndim_runs_at_trace_time_under_jit():
    @jax.jit
    def f(x):
        _checks.as_float_array(x, FN, "x", ndim=2)
        return x

    with pytest.raises(ValueError, match="`x` must be 2-D"):
        f(jnp.ones(3))


def test_check_square_and_same_shape():
    with pytest.raises(
        ValueError, match=r"`a` must be a square matrix \(n, n\), got shape \(2, 3\)"
    ):
        _checks.check_square(np.ones((2, 3)), FN, "a")
    with pytest.raises(
        ValueError, match=r"`a` and `b` must have the same shape, got \(2,\) and \(3,\)"
    ):
        _checks.check_same_shape(np.ones(2), np.ones(3), FN, ("a", "b"))


def test_check_int():
    assert _checks.check_int(np.int64(3), FN, "rank", min=1) == 3
    assert _checks.check_int(jnp.asarray(3), FN, "rank", min=1) == 3
    with pytest.raises(ValueError, match=r"`rank` must be >= 1, got 0"):
        _checks.check_int(0, FN, "rank", min=1)
    with pytest.raises(ValueError, match=r"`rank`=70 exceeds min\(m, n\)=64"):
        _checks.check_int(70, FN, "rank", min=1, max=64, max_doc="min(m, n)")
    with pytest.raises(TypeError, match=r"`rank` must be an int, got 2.5"):
        _checks.check_int(2.5, FN, "rank")
    with pytest.raises(TypeError, match=r"`rank` must be an int, got True"):
        _checks.check_int(True, FN, "rank")

    @jax.jit
    def f(r):
        return _checks.check_int(r, FN, "rank")

    with pytest.raises(TypeError, match=r"`rank` sets a shape and must be a static Python int"):
        f(3)


def test_check_positive_and_option():
    assert _checks.check_positive(0.5, FN, "tol") == 0.5
    assert _checks.check_positive(0, FN, "tol", allow_zero=True) == 0.0
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="`tol` must be > 0 and finite"):
            _checks.check_positive(bad, FN, "tol")
    with pytest.raises(TypeError, match="`tol` must be a real number"):
        _checks.check_positive("x", FN, "tol")
    assert _checks.check_option("qr", ("qr", "lu"), FN, "method") == "qr"
    with pytest.raises(ValueError, match=r"`method` must be one of 'qr', 'lu', got 'svd'"):
        _checks.check_option("svd", ("qr", "lu"), FN, "method")


def test_check_finite_eager_and_skipped_under_jit():
    _checks.check_finite(np.ones(3), FN, "x")
    _checks.check_finite(np.arange(3), FN, "x")  # integers are always finite
    with pytest.raises(ValueError, match=r"`x` contains 2 NaN or Inf value\(s\)"):
        _checks.check_finite({"a": np.array([np.nan, 1.0, np.inf])}, FN, "x")
    jax.jit(lambda x: _checks.check_finite(x, FN, "x") or x)(jnp.array([np.nan]))


def test_compute_dtype_upcasts_half_precision():
    assert _checks.compute_dtype(jnp.bfloat16) == jnp.float32
    assert _checks.compute_dtype(jnp.float16) == jnp.float32
    assert _checks.compute_dtype(jnp.float32) == jnp.float32
    assert _checks.compute_dtype(jnp.float64) == jnp.float64
