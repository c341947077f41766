"""Tests of jaxla.models.linear against scikit-learn, numpy and dense computations."""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.experimental import checkify
from jax.test_util import check_grads
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

import jaxla.models as models
from tests.helpers import msg, rel_err

METHODS = ("cholesky", "qr", "svd", "gd")
LINREG = "jaxla.models.linear_regression"
LOGREG = "jaxla.models.logistic_regression"


# ---------------------------------------------------------------------------------------------
# Data


@functools.cache
def _regression(offset: float = 3.0, n: int = 60, d: int = 5):
    """A well-conditioned design with a common offset, one target and two targets."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)) * np.linspace(1.0, 2.0, d) + offset
    w = rng.standard_normal((d, 2))
    y2 = x @ w + 0.1 * rng.standard_normal((n, 2)) + np.array([2.0, -1.0])
    return x, y2[:, 0], y2


def _design(kappa: float, n: int = 60, d: int = 5, seed: int = 1) -> np.ndarray:
    """An (n, d) design with singular values geomspace(1, 1/kappa): cond(x) = kappa exactly."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((n, d)))
    v, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (u * np.geomspace(1.0, 1.0 / kappa, d)) @ v.T


def _sk_linear(x, y, alpha, fit_intercept):
    if alpha == 0:
        return LinearRegression(fit_intercept=fit_intercept, tol=0.0).fit(x, y)
    return Ridge(alpha=alpha, fit_intercept=fit_intercept, solver="svd").fit(x, y)


def _fit(x, y, method, **kw):
    if method == "gd":
        kw.setdefault("tol", 1e-13)
        kw.setdefault("max_iter", 100_000)
    return models.linear_regression(x, y, method=method, **kw)


# ---------------------------------------------------------------------------------------------
# linear_regression: agreement with scikit-learn


CASES = [  # (fit_intercept, alpha, multi-target)
    (True, 0.0, False),
    (False, 0.0, True),
    (True, 1.5, True),
]


@pytest.mark.parametrize("method", METHODS)
def test_linear_regression_matches_sklearn_float64(method):
    x, y1, y2 = _regression()
    for fit_intercept, alpha, multi in CASES:
        y = y2 if multi else y1
        ref = _sk_linear(x, y, alpha, fit_intercept)
        m = _fit(jnp.asarray(x), jnp.asarray(y), method, alpha=alpha, fit_intercept=fit_intercept)
        assert m.coef.shape == ref.coef_.shape and m.coef.dtype == jnp.float64
        assert m.intercept.shape == ((2,) if multi else ())  # scikit-learn: 0.0 if no intercept
        assert rel_err(m.coef, ref.coef_) < 1e-8
        np.testing.assert_allclose(m.intercept, ref.intercept_, rtol=1e-8, atol=1e-8)
        assert bool(m.converged)
        assert (int(m.n_iter) > 0) == (method == "gd")
        assert float(m.residual) < (1e-12 if method == "gd" else 1e-13)
        pred = models.predict(m, jnp.asarray(x))
        assert pred.shape == ref.predict(x).shape
        assert rel_err(pred, ref.predict(x)) < 1e-8


@pytest.mark.parametrize("method", METHODS)
def test_linear_regression_float32_is_accurate(method):
    """float32 in, float32 out, 1e-4 relative to the float64 fit of the same rounded data."""
    x, _, y2 = _regression(offset=50.0)
    x32, y32 = x.astype(np.float32), y2.astype(np.float32)
    ref = _sk_linear(x32.astype(np.float64), y32.astype(np.float64), 0.5, True)
    kw = {"tol": 1e-7} if method == "gd" else {}
    m = models.linear_regression(jnp.asarray(x32), jnp.asarray(y32), method=method, alpha=0.5,
                                 **kw)
    for field in ("coef", "intercept", "cond", "residual"):
        assert getattr(m, field).dtype == jnp.float32
    assert rel_err(m.coef, ref.coef_) < 1e-4
    assert rel_err(m.intercept, ref.intercept_) < 1e-4
    assert bool(m.converged)
    assert models.predict(m, jnp.asarray(x32)).dtype == jnp.float32


def test_gradient_descent_converges_to_closed_form_and_reports_it():
    x, y, _ = _regression()
    exact = models.linear_regression(jnp.asarray(x), jnp.asarray(y), method="svd", alpha=2.0)
    xc, yc = x - x.mean(0), y - y.mean()

    def rel_grad(w):  # ||x_c^T (x_c w - y_c) + alpha w|| / ||x_c^T y_c||, in numpy
        return np.linalg.norm(xc.T @ (xc @ w - yc) + 2.0 * w) / np.linalg.norm(xc.T @ yc)

    for tol in (1e-4, 1e-9):
        g = models.linear_regression(jnp.asarray(x), jnp.asarray(y), method="gd", alpha=2.0,
                                     tol=tol)
        assert bool(g.converged) and 0 < int(g.n_iter) < 10_000
        assert rel_grad(np.asarray(g.coef)) <= tol
        np.testing.assert_allclose(g.residual, rel_grad(np.asarray(g.coef)), rtol=1e-6)
        # error bound from strong convexity: ||w - w*|| <= ||grad|| / lambda_min
        lam = np.linalg.eigvalsh(xc.T @ xc + 2.0 * np.eye(x.shape[1]))
        bound = tol * np.linalg.norm(xc.T @ yc) / lam[0]
        assert np.linalg.norm(np.asarray(g.coef) - np.asarray(exact.coef)) <= bound
    # the condition number it reports is that of the Hessian x_c^T x_c + alpha I
    np.testing.assert_allclose(g.cond, lam[-1] / lam[0], rtol=1e-8)
    # out of iterations: reported, not raised
    short = models.linear_regression(jnp.asarray(x), jnp.asarray(y), method="gd", alpha=2.0,
                                     tol=1e-12, max_iter=3)
    assert int(short.n_iter) == 3 and not bool(short.converged)
    assert float(short.residual) > 1e-12


@pytest.mark.slow
def test_gradient_descent_with_lanczos_eigenvalues(key):
    x, y, _ = _regression()
    exact = models.linear_regression(jnp.asarray(x), jnp.asarray(y), method="gd", tol=1e-10)
    lanczos = models.linear_regression(jnp.asarray(x), jnp.asarray(y), method="gd", tol=1e-10,
                                       key=key)
    assert bool(lanczos.converged)
    assert rel_err(lanczos.coef, exact.coef) < 1e-8
    np.testing.assert_allclose(lanczos.cond, exact.cond, rtol=1e-2)


# ---------------------------------------------------------------------------------------------
# Conditioning: the normal equations square the condition number


@pytest.mark.parametrize(("dtype", "kappa"), [(np.float64, 1e6), (np.float32, 1e3)])
def test_normal_equations_lose_digits_on_ill_conditioned_design(dtype, kappa):
    x64 = _design(kappa)
    w = np.random.default_rng(2).standard_normal((x64.shape[1], 2))  # two right-hand sides
    x = x64.astype(dtype)
    y = (x.astype(np.float64) @ w).astype(dtype)
    # reference: the exact least-squares solution of the rounded problem, in float64
    ref = np.linalg.lstsq(x.astype(np.float64), y.astype(np.float64), rcond=None)[0]
    eps = np.finfo(dtype).eps
    errs = {}
    for method in ("cholesky", "qr", "svd"):
        m = models.linear_regression(jnp.asarray(x), jnp.asarray(y), method=method,
                                     fit_intercept=False)
        assert m.coef.dtype == dtype
        errs[method] = (np.linalg.norm(np.asarray(m.coef, np.float64).T - ref)
                        / np.linalg.norm(ref))
        expected_cond = kappa**2 if method == "cholesky" else kappa
        np.testing.assert_allclose(float(m.cond), expected_cond, rtol=0.05)
    # backward-stable QR and SVD: error of order cond(x) * eps ...
    assert errs["qr"] < 100 * kappa * eps and errs["svd"] < 100 * kappa * eps
    # ... while the normal equations are visibly worse, as cond(x)^2 * eps predicts
    assert errs["cholesky"] > 30 * max(errs["qr"], errs["svd"])
    assert errs["cholesky"] < 100 * kappa**2 * eps


def test_singular_design():
    """Rank deficiency: svd gives the minimum-norm solution, cholesky/qr raise (eagerly)."""
    rng = np.random.default_rng(3)
    x, y, _ = _regression()
    x = np.concatenate([x[:, :4], x[:, :1] + x[:, 1:2]], axis=1)  # rank 4 < d = 5
    m = models.linear_regression(jnp.asarray(x), jnp.asarray(y), method="svd")
    xc, yc = x - x.mean(0), y - y.mean()
    np.testing.assert_allclose(m.coef, np.linalg.pinv(xc, rtol=1e-10) @ yc, rtol=1e-9,
                               atol=1e-12)
    ref = LinearRegression().fit(x, y)
    np.testing.assert_allclose(m.coef, ref.coef_, rtol=1e-8, atol=1e-10)
    assert bool(m.converged) and float(m.cond) > 1e12
    for method, what in (("cholesky", "normal equations x^T x + alpha I are"),
                         ("qr", "R factor of its QR decomposition is")):
        text = (f"{LINREG}: `x` must be numerically of full column rank for "
                f"method='{method}', got a design whose {what} singular to working precision "
                "(cond = @); use method='svd' (minimum-norm solution) or alpha > 0")
        with pytest.raises(ValueError, match=msg(text).replace("@", ".*")):
            models.linear_regression(jnp.asarray(x), jnp.asarray(y), method=method)
        ridge = models.linear_regression(jnp.asarray(x), jnp.asarray(y), method=method,
                                         alpha=1.5)
        assert bool(ridge.converged)
    bad = _JITTED["cholesky"](x, y, 0.0)
    assert not bool(bad.converged)  # under jit: reported, not raised
    # wide data: the minimum-norm solution, as scikit-learn
    xw, yw = rng.standard_normal((6, 10)), rng.standard_normal(6)
    mw = models.linear_regression(jnp.asarray(xw), jnp.asarray(yw), method="svd")
    xwc = xw - xw.mean(0)
    np.testing.assert_allclose(mw.coef, np.linalg.pinv(xwc, rtol=1e-10) @ (yw - yw.mean()),
                               rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(mw.coef, LinearRegression().fit(xw, yw).coef_, rtol=1e-8,
                               atol=1e-10)
    assert np.isinf(float(mw.cond))
    with pytest.raises(ValueError, match=msg(
        f"{LINREG}: `x` must have at least d + 1 = 11 samples for method='qr' with alpha=0 "
        "(the centered design has rank <= 5 < d = 10); use method='svd' (minimum-norm "
        "solution) or alpha > 0, got shape (6, 10)"
    )):
        models.linear_regression(jnp.asarray(xw), jnp.asarray(yw), method="qr")


# ---------------------------------------------------------------------------------------------
# jit, vmap, grad


@given(seed=st.integers(0, 2**16), alpha=st.floats(0.0, 10.0))
def test_methods_agree(seed, alpha):
    """Property: every method solves the same problem (random data and penalty)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((60, 5)) + rng.standard_normal(5)
    y = rng.standard_normal((60, 2))
    fits = [models.linear_regression(x, y, method=m, alpha=alpha) for m in ("cholesky", "qr",
                                                                          "svd")]
    for f in fits[1:]:
        assert rel_err(f.coef, fits[0].coef) < 1e-9
        assert rel_err(f.intercept, fits[0].intercept) < 1e-9


_JITTED = {
    m: jax.jit(lambda x, y, a, m=m: models.linear_regression(x, y, method=m, alpha=a))
    for m in METHODS
}


def test_jit_and_vmap_over_problems_and_penalties():
    rng = np.random.default_rng(4)
    xs = rng.standard_normal((3, 20, 3))
    ys = rng.standard_normal((3, 20))
    alphas = np.array([0.0, 0.5, 4.0])
    batched = jax.vmap(_JITTED["qr"])(xs, ys, alphas)
    assert batched.coef.shape == (3, 3) and batched.intercept.shape == (3,)
    for i in range(3):  # each problem of the batch equals its own fit
        ref = _sk_linear(xs[i], ys[i], alphas[i], True)
        assert rel_err(batched.coef[i], ref.coef_) < 1e-10
        np.testing.assert_allclose(batched.intercept[i], ref.intercept_, rtol=1e-10)
        xc = xs[i] - xs[i].mean(0)
        s = np.linalg.svd(xc, compute_uv=False)
        np.testing.assert_allclose(batched.cond[i], np.sqrt((s[0]**2 + alphas[i])
                                                            / (s[-1]**2 + alphas[i])), rtol=1e-8)
    # a penalty path on one problem, gradient descent included
    path = jax.vmap(_JITTED["gd"], in_axes=(None, None, 0))(xs[0], ys[0], alphas)
    for i in range(3):
        ref = _sk_linear(xs[0], ys[0], alphas[i], True)
        assert rel_err(path.coef[i], ref.coef_) < 1e-5  # gd's default tolerance
        assert bool(path.converged[i])
    # predict under vmap over the stack of models
    preds = jax.vmap(models.predict)(batched, xs)
    for i in range(3):
        np.testing.assert_allclose(preds[i], xs[i] @ np.asarray(batched.coef[i])
                                   + float(batched.intercept[i]), rtol=1e-10)


@pytest.mark.parametrize("method", ["cholesky", pytest.param("qr", marks=pytest.mark.slow),
                                    pytest.param("svd", marks=pytest.mark.slow)])
def test_gradients_of_direct_methods(method):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((12, 3))
    y = rng.standard_normal(12)

    def f(x, y, a):
        m = models.linear_regression(x, y, method=method, alpha=a)
        return jnp.sum(m.coef**2) + m.intercept

    check_grads(jax.jit(f), (x, y, 0.7), order=1, modes=["rev"])


# ---------------------------------------------------------------------------------------------
# predict and decision_function


def test_predict_and_decision_function_of_linear_model():
    x, _, y2 = _regression()
    m = models.linear_regression(jnp.asarray(x), jnp.asarray(y2))
    ref = LinearRegression().fit(x, y2)
    x32 = jnp.asarray(x[:7], jnp.float32)
    out = models.predict(m, x32)
    assert out.shape == (7, 2) and out.dtype == jnp.float32
    assert rel_err(out, ref.predict(x[:7])) < 1e-6
    np.testing.assert_array_equal(models.decision_function(m, x32), out)


# ---------------------------------------------------------------------------------------------
# Errors


def test_linear_regression_errors():
    x, y, _ = _regression()
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    cases = [
        (dict(method="lu"), ValueError,
         f"{LINREG}: `method` must be one of 'cholesky', 'qr', 'svd', 'gd', got 'lu'"),
        (dict(alpha=-1.0), ValueError, f"{LINREG}: `alpha` must be >= 0 and finite, got -1.0"),
        (dict(fit_intercept=1), TypeError,
         f"{LINREG}: `fit_intercept` must be a Python bool, got 1"),
        (dict(method="gd", max_iter=0), ValueError, f"{LINREG}: `max_iter` must be >= 1, got 0"),
        (dict(method="gd", tol=-1.0), ValueError,
         f"{LINREG}: `tol` must be >= 0 and finite, got -1.0"),
        (dict(method="gd", key=3), TypeError,
         f"{LINREG}: `key` must be a JAX random key such as jax.random.key(0), got int"),
    ]
    for kw, exc, text in cases:
        with pytest.raises(exc, match=msg(text)):
            models.linear_regression(xj, yj, **kw)
    with pytest.raises(ValueError, match=msg(
        f"{LINREG}: `x` must be 2-D (n_samples, n_features), got shape (60,)")):
        models.linear_regression(yj, yj)
    with pytest.raises(ValueError, match=msg(
        f"{LINREG}: `y` must have 60 rows (one per sample of `x`) and at least one target, "
        "got shape (59,)")):
        models.linear_regression(xj, yj[1:])
    with pytest.raises(ValueError, match=msg(
        f"{LINREG}: `y` must be 1-D or 2-D (n_samples,) or (n_samples, n_targets), "
        "got shape (60, 1, 1)")):
        models.linear_regression(xj, yj[:, None, None])
    with pytest.raises(TypeError, match=rf"^{LINREG}: `x` must have a real floating dtype, got "
                       r"integer or boolean dtype int"):
        models.linear_regression(np.ones((4, 2), np.int32), yj[:4])
    with pytest.raises(ValueError, match=msg(
        f"{LINREG}: `y` contains 1 NaN or Inf value(s); clean or mask them first")):
        models.linear_regression(xj, yj.at[3].set(jnp.nan))
    # under jit: checkify reports NaN input
    f = checkify.checkify(jax.jit(functools.partial(models.linear_regression, method="svd")))
    err, _ = f(xj.at[0, 0].set(jnp.inf), yj)
    with pytest.raises(checkify.JaxRuntimeError, match=rf"{LINREG}: `x` contains NaN or Inf"):
        err.throw()


def test_predict_errors():
    x, y, _ = _regression()
    m = models.linear_regression(jnp.asarray(x), jnp.asarray(y))
    with pytest.raises(ValueError, match=msg(
        "jaxla.models.predict: `x` must have 5 features (columns) to match `model.coef` of "
        "shape (5,), got shape (3, 4)")):
        models.predict(m, jnp.ones((3, 4)))
    with pytest.raises(TypeError, match=msg(
        "jaxla.models.predict: `model` must be a LinearModel or a LogisticModel, got dict")):
        models.predict({"coef": 1}, jnp.ones((3, 5)))
    with pytest.raises(TypeError, match=msg(
        "jaxla.models.predict_proba: `model` must be a LogisticModel, got LinearModel")):
        models.predict_proba(m, jnp.ones((3, 5)))


# =============================================================================================
# logistic_regression


@functools.cache
def _classification(n_classes: int, n: int = 150, d: int = 4, seed: int = 0):
    """Overlapping (non-separable) classes: labels drawn from a softmax of a linear model."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) + np.linspace(-1.0, 1.0, d)
    w = rng.standard_normal((n_classes, d))
    z = x @ w.T
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.array([rng.choice(n_classes, p=pi) for pi in p])
    return x, y


def _sk_logistic(x, y, penalty, C, fit_intercept=True):
    if penalty == "l1":
        kw = dict(C=C, l1_ratio=1.0, solver="saga", tol=1e-12, max_iter=200_000,
                  random_state=0)
    else:
        kw = dict(C=C if penalty == "l2" else np.inf, l1_ratio=0.0, tol=1e-10, max_iter=10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LogisticRegression(fit_intercept=fit_intercept, **kw).fit(x, y)


def _objective(coef, intercept, x, y, penalty, C):
    """scikit-learn's objective C * sum(loss) + penalty, in float64 numpy."""
    coef, intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)
    z = x @ coef.T + intercept
    if coef.shape[0] == 1:
        s = 2 * y - 1
        loss = np.logaddexp(0.0, -s * z[:, 0])
    else:
        zmax = z.max(1, keepdims=True)
        lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(1))
        loss = lse - z[np.arange(len(y)), y]
    pen = {"l2": 0.5 * np.sum(coef**2), "l1": np.sum(np.abs(coef)), "none": 0.0}[penalty]
    return (C if penalty != "none" else 1.0) * loss.sum() + pen


def _assert_logistic_matches(m, ref, x, y, penalty, C, rtol=1e-4):
    assert m.coef.shape == ref.coef_.shape and m.intercept.shape == ref.intercept_.shape
    assert rel_err(m.coef, ref.coef_) < rtol
    if np.any(ref.intercept_ != 0):
        assert rel_err(m.intercept, ref.intercept_) < rtol
    np.testing.assert_allclose(models.predict_proba(m, x), ref.predict_proba(x), atol=rtol)
    np.testing.assert_allclose(models.decision_function(m, x), ref.decision_function(x),
                               atol=10 * rtol * np.max(np.abs(ref.decision_function(x))))
    np.testing.assert_array_equal(models.predict(m, x), ref.predict(x))
    assert bool(m.converged)
    # the reported objective is scikit-learn's, and at least as low as scikit-learn's solution
    ours = _objective(m.coef, m.intercept, x, y, penalty, C)
    np.testing.assert_allclose(m.objective, ours, rtol=1e-6)
    theirs = _objective(ref.coef_, ref.intercept_, x, y, penalty, C)
    assert ours <= theirs * (1 + 1e-9)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("penalty", ["l2", "none"])
def test_logistic_newton_matches_sklearn_lbfgs(penalty, n_classes):
    x, y = _classification(n_classes)
    m = models.logistic_regression(jnp.asarray(x), jnp.asarray(y), penalty=penalty, C=0.3)
    ref = _sk_logistic(x, y, penalty, 0.3)
    _assert_logistic_matches(m, ref, x, y, penalty, 0.3)
    assert m.coef.dtype == jnp.float64 and float(m.residual) <= 1e-8
    assert 0 < int(m.n_iter) < 20  # Newton: a handful of iterations
    if n_classes > 2:  # scikit-learn's symmetric parametrization
        np.testing.assert_allclose(np.sum(np.asarray(m.intercept)), 0.0, atol=1e-10)


def _l1_kkt(m, x, y, C):
    """Optimality of an L1 fit, from the gradient of C * sum(loss) computed in numpy."""
    coef, b = np.asarray(m.coef), np.asarray(m.intercept)
    z = x @ coef.T + b
    if coef.shape[0] == 1:
        r = (1 / (1 + np.exp(-z[:, 0])) - y)[:, None]
    else:
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        r = p - np.eye(coef.shape[0])[y]
    g, gb = C * r.T @ x, C * r.sum(0)
    nz = coef != 0
    return (np.max(np.abs(g[nz] + np.sign(coef[nz])), initial=0.0),
            np.max(np.abs(g[~nz]), initial=0.0), np.max(np.abs(gb)))


@pytest.mark.parametrize(("n_classes", "C"), [(2, 0.2), (3, 0.05)])
def test_logistic_l1_matches_sklearn_saga_and_is_optimal(n_classes, C):
    x, y = _classification(n_classes)
    m = models.logistic_regression(jnp.asarray(x), jnp.asarray(y), penalty="l1", C=C)
    ref = _sk_logistic(x, y, "l1", C)
    _assert_logistic_matches(m, ref, x, y, "l1", C)
    assert np.any(np.asarray(m.coef) == 0)  # sparsity, exactly
    np.testing.assert_array_equal(np.asarray(m.coef) == 0, np.abs(ref.coef_) < 1e-6)
    # KKT conditions of C * sum(loss) + ||coef||_1 (scaled tolerance: 1e-8 * C * n)
    on_support, off_support, intercept = _l1_kkt(m, x, y, C)
    tol = 1e-8 * C * len(y) * 1.01
    assert on_support <= tol and intercept <= tol and off_support <= 1 + tol


def test_logistic_without_intercept():
    x, y = _classification(2)
    m = models.logistic_regression(jnp.asarray(x), jnp.asarray(y), C=2.0, fit_intercept=False)
    ref = _sk_logistic(x, y, "l2", 2.0, fit_intercept=False)
    _assert_logistic_matches(m, ref, x, y, "l2", 2.0)
    np.testing.assert_array_equal(m.intercept, np.zeros(1))


@pytest.mark.parametrize(("penalty", "n_classes"), [("l2", 2), ("l1", 3)])
def test_logistic_float32_is_accurate(penalty, n_classes):
    x, y = _classification(n_classes)
    x32 = x.astype(np.float32)
    ref = _sk_logistic(x32.astype(np.float64), y, penalty, 0.5)
    m = models.logistic_regression(jnp.asarray(x32), jnp.asarray(y), penalty=penalty, C=0.5)
    for field in ("coef", "intercept", "objective", "residual"):
        assert getattr(m, field).dtype == jnp.float32
    assert bool(m.converged)
    assert rel_err(m.coef, ref.coef_) < 1e-4
    assert rel_err(m.intercept, ref.intercept_) < 1e-4
    proba = models.predict_proba(m, jnp.asarray(x32))
    assert proba.dtype == jnp.float32
    np.testing.assert_allclose(proba, ref.predict_proba(x32.astype(np.float64)), atol=1e-4)


def test_logistic_jit_and_vmap_over_C():
    x, y = _classification(2)
    Cs = jnp.array([0.1, 1.0, 10.0])
    fit = jax.jit(lambda c: models.logistic_regression(x, y, C=c, n_classes=2))
    path = jax.vmap(fit)(Cs)
    assert path.coef.shape == (3, 1, 4) and path.converged.shape == (3,)
    for i, c in enumerate(np.asarray(Cs)):
        single = models.logistic_regression(x, y, C=float(c))
        np.testing.assert_allclose(path.coef[i], single.coef, rtol=1e-7, atol=1e-9)
        assert bool(path.converged[i])
    # the norm of the coefficients grows with C (less regularization)
    norms = np.linalg.norm(np.asarray(path.coef).reshape(3, -1), axis=1)
    assert np.all(np.diff(norms) > 0)
    # a traced y needs n_classes
    with pytest.raises(ValueError, match=msg(
        f"{LOGREG}: `n_classes` must be given (a static int >= 2) when `y` is traced under "
        "jit/vmap, got None").rstrip("$")):  # JAX appends a note to errors raised in jit
        jax.jit(models.logistic_regression)(x, y)


def test_logistic_max_iter_reports_non_convergence():
    x, y = _classification(2)
    m = models.logistic_regression(jnp.asarray(x), jnp.asarray(y), penalty="l1", max_iter=5)
    assert int(m.n_iter) == 5 and not bool(m.converged) and float(m.residual) > 1e-8


def test_logistic_errors():
    x, y = _classification(3)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    cases = [
        (dict(penalty="elasticnet"), ValueError,
         f"{LOGREG}: `penalty` must be one of 'l2', 'l1', 'none', got 'elasticnet'"),
        (dict(C=0.0), ValueError, f"{LOGREG}: `C` must be > 0 and finite, got 0.0"),
        (dict(n_classes=2), ValueError,
         f"{LOGREG}: `y` must hold class labels in [0, 1] (n_classes=2), got label 2"),
        (dict(n_classes=1), ValueError, f"{LOGREG}: `n_classes` must be >= 2, got 1"),
        (dict(max_iter=2.5), TypeError, f"{LOGREG}: `max_iter` must be an int, got 2.5 (float)"),
    ]
    for kw, exc, text in cases:
        with pytest.raises(exc, match=msg(text)):
            models.logistic_regression(xj, yj, **kw)
    with pytest.raises(ValueError, match=msg(
        f"{LOGREG}: `y` must hold class labels in [0, 2] (n_classes=3), got label -1")):
        models.logistic_regression(xj, yj.at[0].set(-1), n_classes=3)
    with pytest.raises(TypeError, match=msg(
        f"{LOGREG}: `y` must hold integer class labels 0..c-1, got dtype float64; map the "
        "labels first, e.g. np.unique(y, return_inverse=True)[1]")):
        models.logistic_regression(xj, yj.astype(jnp.float64))
    with pytest.raises(ValueError, match=msg(
        f"{LOGREG}: `y` must have 150 labels (one per sample of `x`), got shape (149,)")):
        models.logistic_regression(xj, yj[1:])
    with pytest.raises(ValueError, match=msg(
        f"{LOGREG}: `x` contains 1 NaN or Inf value(s); clean or mask them first")):
        models.logistic_regression(xj.at[2, 1].set(jnp.nan), yj)
    m = models.logistic_regression(xj, yj, max_iter=1)
    with pytest.raises(ValueError, match=msg(
        "jaxla.models.predict_proba: `x` must have 4 features (columns) to match `model.coef` "
        "of shape (3, 4), got shape (2, 3)")):
        models.predict_proba(m, jnp.ones((2, 3)))
