"""Linear models: least squares, ridge and logistic regression, checked against scikit-learn.

:func:`linear_regression` fits ``y ≈ x @ coef.T + intercept`` by least squares with an optional
ridge penalty; :func:`logistic_regression` fits scikit-learn's penalized logistic regression
(binary and multinomial). Both return public NamedTuples (:class:`LinearModel`,
:class:`LogisticModel`) that pass through ``jax.jit`` and ``jax.vmap``, so a stack of problems is
fitted with ``jax.vmap(linear_regression)``. :func:`predict`, :func:`decision_function` and
:func:`predict_proba` apply either kind of model to new data.

Definitions (scikit-learn's, so results compare directly with ``sklearn.linear_model``):

* **Least squares / ridge.** ``coef`` minimizes ``||y_c - x_c w||^2 + alpha ||w||^2``, where with
  ``fit_intercept=True`` the columns of ``x`` and ``y`` are centered (``x_c = x - mean(x)``) so that
  the intercept ``mean(y) - mean(x) @ w`` is not penalized; ``LinearRegression`` is ``alpha=0``
  and ``Ridge(alpha)`` the rest. ``coef`` has scikit-learn's ``coef_`` shape: (d,) for ``y`` of
  shape (n,), (t, d) for a multi-target ``y`` (n, t). With ``alpha=0`` and a rank-deficient design
  (``method="svd"`` only) the minimum-norm solution is returned, as ``LinearRegression`` does.
* **Logistic regression.** ``coef`` minimizes ``C * sum_i loss_i + penalty(coef)`` with the
  penalty ``0.5 ||coef||_F^2`` (``"l2"``), ``||coef||_1`` (``"l1"``, entrywise) or none, the
  intercept never penalized. Two classes use the binary (sigmoid) loss with one row of ``coef``
  (shape (1, d), as ``LogisticRegression.coef_``); more classes use the multinomial (softmax) loss
  with one row per class and scikit-learn's symmetric parametrization: wherever the loss does not
  determine them (the intercepts, and all columns without a penalty) the rows sum to zero.

Methods of :func:`linear_regression` (``method=``):

* ``"cholesky"``: the normal equations ``(x_c^T x_c + alpha I) w = x_c^T y_c`` by Cholesky. The
  fastest for tall data (``n d^2`` for the Gram matrix), but forming ``x_c^T x_c`` squares the
  condition number: ``cond(x_c^T x_c) = cond(x_c)^2``, so about twice as many digits are lost as
  with QR or SVD on an ill-conditioned design.
* ``"qr"``: least squares by the QR decomposition of ``x_c`` (of the stacked
  ``[x_c; sqrt(alpha) I]`` for ridge): ``w = r^{-1} q^T y_c``; backward stable, the error grows
  like ``cond(x_c)``.
* ``"svd"``: ``w = v diag(s / (s^2 + alpha)) u^T y_c`` from the thin SVD (the ridge filter
  factors), singular values ``s <= max(n, d) * eps * s_max`` dropped: the minimum-norm solution
  for rank-deficient designs. The most robust, and the most expensive.
* ``"gd"``: gradient descent on the mean squared error
  ``(||x_c w - y_c||^2 + alpha ||w||^2) / (2 n)`` from ``w = 0`` with the step ``1 / L``,
  ``L = (lambda_max(x_c^T x_c) + alpha) / n`` the largest eigenvalue of its Hessian, in one
  ``lax.while_loop``; it stops when the gradient norm has fallen below ``tol`` times its initial
  value or after ``max_iter`` iterations. Each iteration costs two products with ``x_c``
  (``4 n d t`` flops) and the error contracts by ``1 - 1 / cond`` per iteration, where ``cond`` is
  ``LinearModel.cond``: slow on an ill-conditioned design, which is the point of comparing it.
  The eigenvalues are exact (``jaxla.linalg.eigh`` of the Gram matrix) unless a ``key`` is given;
  then they are estimated matrix-free by Lanczos (``jaxla.linalg.eigsh``) and the Gram matrix is
  never formed.

Solvers of :func:`logistic_regression`: ``"l2"`` and ``"none"`` by Newton's method with the exact
Hessian (a Cholesky solve of size ``c (d + 1)``, ``c = 1`` for two classes) and an Armijo
backtracking line search; ``"l1"`` by FISTA (accelerated proximal gradient) with backtracking on
the Lipschitz constant and adaptive restart, whose iterates converge linearly near a solution.
Both run in one ``lax.while_loop``. The stopping rule is scikit-learn's ``tol`` on the objective
scaled by ``1 / (C n)``: the largest absolute entry of its gradient (for ``"l1"`` of its gradient
mapping, the proximal analogue) is at most ``tol``.

Diagnostics: :class:`LinearModel` carries ``cond``, the 2-norm condition number of the matrix the
method factors (``x_c``, or the stacked ridge matrix, for ``"qr"``/``"svd"``; ``x_c^T x_c + alpha
I`` for ``"cholesky"`` and ``"gd"``, the square of the former), and ``residual``, the relative
residual of the normal equations of the returned solution. Both models report ``n_iter`` and
``converged``.

Value problems: called eagerly, the fits raise ``ValueError`` on NaN/Inf inputs, on a design
that is numerically singular for the chosen method (``"cholesky"``, ``"qr"``), and on out-of-range
class labels. Under ``jit`` they cannot raise: the results then carry ``converged=False`` (and NaN
coefficients for a failed factorization), and wrapping the call in
``jax.experimental.checkify.checkify`` reports NaN/Inf inputs. Iterative solvers that run out of
iterations return their last iterate with ``converged=False``; they do not raise.

Derivatives: ``"cholesky"``, ``"qr"`` and ``"svd"`` are differentiable with respect to ``x``, ``y``
and ``alpha`` (through JAX's and jaxla's rules for the decompositions); ``"gd"`` and
:func:`logistic_regression` are iterative (``lax.while_loop``) and support forward-mode only.

Dimension letters: ``n`` samples, ``d`` features, ``t`` targets, ``c`` classes.

References:
    A. Beck and M. Teboulle, "A fast iterative shrinkage-thresholding algorithm for linear
    inverse problems", SIAM J. Imaging Sciences, 2009. B. O'Donoghue and E. Candès, "Adaptive
    restart for accelerated gradient schemes", Found. Comput. Math., 2015. N. J. Higham,
    "Accuracy and Stability of Numerical Algorithms", 2nd ed., SIAM, 2002 (chapters 19-20).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jax import lax
from jax.experimental import checkify
from jax.typing import ArrayLike

from jaxla import _checks
from jaxla._checks import shape_of as _shape
from jaxla._numerics import eps, matmul
from jaxla.linalg import cholesky, cond, eigh, eigsh, qr, svd

__all__ = [
    "LINEAR_METHODS",
    "PENALTIES",
    "LinearModel",
    "LogisticModel",
    "decision_function",
    "linear_regression",
    "logistic_regression",
    "predict",
    "predict_proba",
]

LINEAR_METHODS = ("cholesky", "qr", "svd", "gd")
"""The values accepted by ``linear_regression(..., method=)``."""

PENALTIES = ("l2", "l1", "none")
"""The values accepted by ``logistic_regression(..., penalty=)``."""

_MODULE = "jaxla.models"
_LINREG = f"{_MODULE}.linear_regression"
_LOGREG = f"{_MODULE}.logistic_regression"


class LinearModel(NamedTuple):
    """A fitted linear regression, ``y ≈ x @ coef.T + intercept`` (see :func:`linear_regression`).

    Under ``vmap`` every field gains a leading batch axis.
    """

    coef: jax.Array  # (d,) for a 1-D y, (t, d) for a multi-target y: scikit-learn's coef_
    intercept: jax.Array  # () or (t,): 0 when fit_intercept=False
    cond: jax.Array  # () 2-norm condition number of the matrix the method factors
    residual: jax.Array  # () ||x_c^T (x_c w - y_c) + alpha w|| / ||x_c^T y_c|| at the solution
    n_iter: jax.Array  # () int32, gradient-descent iterations (0 for the direct methods)
    converged: jax.Array  # () bool, solve succeeded (direct) or tolerance met (gd)


class LogisticModel(NamedTuple):
    """A fitted logistic regression (see :func:`logistic_regression`).

    ``k = 1`` row for two classes (binary, scikit-learn's shape), ``k = c`` rows for ``c > 2``.
    Under ``vmap`` every field gains a leading batch axis.
    """

    coef: jax.Array  # (k, d): scikit-learn's coef_
    intercept: jax.Array  # (k,): 0 when fit_intercept=False
    objective: jax.Array  # () C * sum_i loss_i + penalty(coef) at the solution
    residual: jax.Array  # () max-abs (proximal) gradient of objective / (C n) when it stopped
    n_iter: jax.Array  # () int32, Newton or FISTA iterations
    converged: jax.Array  # () bool, residual <= tol within max_iter


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _design(x: ArrayLike, fn: str) -> jax.Array:
    x = _checks.as_float_array(x, fn, "x", ndim=2, doc="(n_samples, n_features)")
    if 0 in x.shape:
        _checks.fail(fn, f"`x` must have at least one sample and one feature, got shape "
                     f"{_shape(x)}")
    return x


def _report_nonfinite(ok: jax.Array, fn: str, name: str) -> None:
    """Express the NaN/Inf check for ``checkify`` (the eager check happened before)."""
    checkify.debug_check(ok, f"{fn}: `{name}` contains NaN or Inf value(s); clean or mask them "
                         "first")


def _center(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Column-centered ``a`` (n, k) and its column means, accurate for a large common offset.

    The first row is subtracted before the mean is taken, so the centering never cancels
    catastrophically in float32.
    """
    shift = a[0]
    b = a - shift[None, :]
    m = jnp.mean(b, axis=0)
    return b - m[None, :], shift + m


def _safe_div(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a / b`` where ``b > 0``, else 0 (or inf where ``a > 0`` and ``b == 0``)."""
    pos = b > 0
    q = a / jnp.where(pos, b, jnp.ones_like(b))
    return jnp.where(pos, q, jnp.where(a > 0, jnp.inf, jnp.zeros_like(a)))


# ---------------------------------------------------------------------------------------------
# Linear regression


def _normal_residual(xc, yc, w, alpha):
    """Relative residual of the normal equations ``x_c^T (x_c w - y_c) + alpha w``."""
    g = matmul(xc.T, matmul(xc, w) - yc) + alpha * w
    b = matmul(xc.T, yc)
    return _safe_div(jnp.sqrt(jnp.sum(g * g)), jnp.sqrt(jnp.sum(b * b)))


def _solve_cholesky(xc, yc, alpha):
    d = xc.shape[1]
    g = matmul(xc.T, xc) + alpha * jnp.eye(d, dtype=xc.dtype)
    b = matmul(xc.T, yc)
    l, ok = cholesky(g, return_info=True)
    w = jsl.cho_solve((l, True), b)
    kappa = cond(g)
    ok = ok & (kappa * eps(xc.dtype) < 1)
    return w, kappa, ok


def _solve_qr(xc, yc, alpha, ridge):
    d = xc.shape[1]
    a, rhs = xc, yc
    if ridge:
        a = jnp.concatenate([xc, jnp.sqrt(alpha) * jnp.eye(d, dtype=xc.dtype)], axis=0)
        rhs = jnp.concatenate([yc, jnp.zeros((d, yc.shape[1]), yc.dtype)], axis=0)
    q, r = qr(a)
    w = jsl.solve_triangular(r, matmul(q.T, rhs), lower=False)
    kappa = cond(r)
    ok = kappa * (eps(xc.dtype) * max(a.shape)) < 1
    return w, kappa, ok


def _solve_svd(xc, yc, alpha):
    n, d = xc.shape
    u, s, vt = svd(xc)
    keep = s > (max(n, d) * eps(xc.dtype)) * s[0]
    s2a = s * s + alpha
    f = jnp.where(keep, s / jnp.where(keep, s2a, jnp.ones_like(s2a)), jnp.zeros_like(s))
    w = matmul(vt.T, f[:, None] * matmul(u.T, yc))
    s_min = s[-1] if n >= d else jnp.zeros((), s.dtype)  # rank <= n < d: a zero singular value
    kappa = _safe_div(jnp.sqrt(s[0] ** 2 + alpha), jnp.sqrt(s_min**2 + alpha))
    return w, kappa, jnp.all(jnp.isfinite(w))


def _solve_gd(xc, yc, alpha, tol, key, max_iter):
    n, d = xc.shape
    t = yc.shape[1]
    if key is None or d < 2:
        lam = eigh(matmul(xc.T, xc)).eigenvalues  # ascending
        lam_min, lam_max = lam[0], lam[-1]
    else:
        res = eigsh(key, lambda v: matmul(xc.T, matmul(xc, v)),
                    jax.ShapeDtypeStruct((d,), xc.dtype), 1, which="both_ends", tol=1e-3)
        lam_min, lam_max = res.eigenvalues[0], res.eigenvalues[-1]
    lam_min = jnp.maximum(lam_min, 0)
    kappa = _safe_div(lam_max + alpha, lam_min + alpha)
    step = n / (lam_max + alpha)  # 1 / L with L = (lambda_max + alpha) / n

    def grad(w):  # gradient of (||x_c w - y_c||^2 + alpha ||w||^2) / (2 n)
        return (matmul(xc.T, matmul(xc, w) - yc) + alpha * w) / n

    w0 = jnp.zeros((d, t), xc.dtype)
    g0 = grad(w0)
    gnorm0 = jnp.sqrt(jnp.sum(g0 * g0))
    target = tol * gnorm0

    def cond_fn(state):
        i, _, _, gnorm = state
        return (i < max_iter) & (gnorm > target)

    def body(state):
        i, w, g, _ = state
        w = w - step * g
        g = grad(w)
        return i + 1, w, g, jnp.sqrt(jnp.sum(g * g))

    i, w, _, gnorm = lax.while_loop(cond_fn, body, (jnp.zeros((), jnp.int32), w0, g0, gnorm0))
    ok = (gnorm <= target) & jnp.all(jnp.isfinite(w))
    return w, kappa, ok, i


@functools.partial(jax.jit, static_argnames=("method", "fit_intercept", "ridge"))
def _linreg_core(x, y, alpha, tol, max_iter, key, *, method, fit_intercept, ridge):
    dtype = jnp.result_type(x, y)
    cdt = _checks.compute_dtype(dtype)
    x = x.astype(cdt)
    y2 = (y[:, None] if y.ndim == 1 else y).astype(cdt)
    _report_nonfinite(jnp.all(jnp.isfinite(x)), _LINREG, "x")
    _report_nonfinite(jnp.all(jnp.isfinite(y2)), _LINREG, "y")
    alpha = jnp.asarray(alpha, cdt)
    if fit_intercept:
        xc, x_mean = _center(x)
        yc, y_mean = _center(y2)
    else:
        xc, yc = x, y2
    n_iter = jnp.zeros((), jnp.int32)
    if method == "cholesky":
        w, kappa, ok = _solve_cholesky(xc, yc, alpha)
    elif method == "qr":
        w, kappa, ok = _solve_qr(xc, yc, alpha, ridge)
    elif method == "svd":
        w, kappa, ok = _solve_svd(xc, yc, alpha)
    else:
        w, kappa, ok, n_iter = _solve_gd(xc, yc, alpha, jnp.asarray(tol, cdt), key, max_iter)
    ok = ok & jnp.all(jnp.isfinite(w))
    if fit_intercept:
        intercept = y_mean - matmul(x_mean, w)
    else:
        intercept = jnp.zeros((w.shape[1],), cdt)
    resid = _normal_residual(xc, yc, w, alpha)
    coef = w.T
    if y.ndim == 1:
        coef, intercept = coef[0], intercept[0]
    return LinearModel(
        coef=coef.astype(dtype),
        intercept=intercept.astype(dtype),
        cond=kappa.astype(dtype),
        residual=resid.astype(dtype),
        n_iter=n_iter,
        converged=ok,
    )


def linear_regression(
    x: ArrayLike,
    y: ArrayLike,
    *,
    method: str = "cholesky",
    alpha: float | ArrayLike = 0.0,
    fit_intercept: bool = True,
    tol: float | None = None,
    max_iter: int = 10_000,
    key: jax.Array | None = None,
) -> LinearModel:
    """Least-squares or ridge regression, as scikit-learn's ``LinearRegression`` and ``Ridge``.

    Minimizes ``||y_c - x_c w||^2 + alpha ||w||^2`` over ``w`` (centered data when
    ``fit_intercept``, so the intercept is not penalized); the methods, their accuracy and the
    diagnostics are described in the module docstring. Works under ``jit`` (``method``,
    ``fit_intercept`` static) and ``vmap`` (a batch of problems; ``alpha`` may be
    batched too).

    Args:
        x: (n, d) design matrix, one sample per row; floating dtype (float16/bfloat16 computed in
            float32). NaN/Inf raise when called eagerly.
        y: (n,) targets or (n, t) multiple targets; floating dtype.
        method: ``"cholesky"`` (normal equations), ``"qr"``, ``"svd"`` or ``"gd"`` (gradient
            descent).
        alpha: Ridge penalty ``>= 0`` (may be traced). ``"cholesky"`` and ``"qr"`` with
            ``alpha=0`` need a design of full column rank (``n - fit_intercept >= d``); use
            ``"svd"`` for the minimum-norm solution of a rank-deficient one.
        fit_intercept: Center ``x`` and ``y`` and fit an unpenalized intercept.
        tol: ``"gd"`` only: stop when ``||gradient|| <= tol * ||initial gradient||``; default
            ``sqrt(eps)`` of the computation dtype (about 3e-4 in float32, 1.5e-8 in float64).
        max_iter: ``"gd"`` only: maximum number of iterations (a Python int).
        key: ``"gd"`` only, optional: with a key the Hessian's extreme eigenvalues are estimated
            matrix-free by Lanczos instead of computed exactly from the (d, d) Gram matrix.

    Returns:
        :class:`LinearModel` with ``coef`` (d,) or (t, d), ``intercept`` () or (t,), ``cond`` (),
        ``residual`` (), ``n_iter`` () and ``converged`` (), in the promoted dtype of ``x`` and
        ``y``.

    Raises:
        TypeError: integer/boolean ``x`` or ``y``, a non-bool ``fit_intercept``, a non-int
            ``max_iter``, a ``key`` that is not a PRNG key.
        ValueError: ``x`` not 2-D or empty, ``y`` not (n,) or (n, t), an unknown ``method``, a
            negative ``alpha`` or ``tol``, ``"cholesky"``/``"qr"`` without penalty on a design with
            fewer samples than needed, NaN/Inf inputs (eagerly), or a design that is numerically
            singular for ``"cholesky"``/``"qr"`` (eagerly; under ``jit``: ``converged=False``).

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla import models
        >>> x = jnp.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 3.0]])
        >>> y = 1.0 + x @ jnp.array([2.0, -1.0])
        >>> m = models.linear_regression(x, y, method="qr")
        >>> print(np.round(np.asarray(m.coef), 4), round(float(m.intercept), 4))
        [ 2. -1.] 1.0
        >>> print(np.round(np.asarray(models.predict(m, jnp.array([[1.0, 1.0]]))), 4))
        [2.]

        Ridge, and gradient descent reaching the same solution:

        >>> r = models.linear_regression(x, y, alpha=1.0)
        >>> g = models.linear_regression(x, y, alpha=1.0, method="gd", tol=1e-5)
        >>> bool(g.converged), bool(np.allclose(g.coef, r.coef, atol=1e-3))
        (True, True)
    """
    fn = _LINREG
    _checks.check_option(method, LINEAR_METHODS, fn, "method")
    fit_intercept = _checks.check_bool(fit_intercept, fn, "fit_intercept")
    x = _design(x, fn)
    n, d = _shape(x)
    y = _checks.as_float_array(y, fn, "y", ndim=(1, 2), doc="(n_samples,) or (n_samples, "
                               "n_targets)")
    if y.shape[0] != n or 0 in y.shape:
        _checks.fail(fn, f"`y` must have {n} rows (one per sample of `x`) and at least one "
                     f"target, got shape {_shape(y)}")
    alpha = _checks.check_positive(alpha, fn, "alpha", allow_zero=True)
    max_iter = _checks.check_int(max_iter, fn, "max_iter", min=1)
    if tol is None:
        tol = float(np.sqrt(eps(_checks.compute_dtype(jnp.result_type(x, y)))))
    else:
        tol = _checks.check_positive(tol, fn, "tol", allow_zero=True)
    if key is not None:
        _checks.check_key(key, fn)
    ridge = not (isinstance(alpha, float) and alpha == 0.0)
    rank_bound = n - int(fit_intercept)
    if method in ("cholesky", "qr") and not ridge and rank_bound < d:
        _checks.fail(
            fn,
            f"`x` must have at least d + {int(fit_intercept)} = {d + int(fit_intercept)} samples "
            f"for method={method!r} with alpha=0 (the {'centered ' if fit_intercept else ''}"
            f"design has rank <= {rank_bound} < d = {d}); use method='svd' (minimum-norm "
            f"solution) or alpha > 0, got shape {(n, d)}",
        )
    _checks.check_finite(x, fn, "x")
    _checks.check_finite(y, fn, "y")
    model = _linreg_core(
        x, y, alpha, tol, max_iter, key if method == "gd" else None,
        method=method, fit_intercept=fit_intercept, ridge=ridge and method == "qr",
    )
    if method in ("cholesky", "qr") and _checks.is_concrete(model.converged):
        if not bool(np.all(np.asarray(model.converged))):
            what = ("normal equations x^T x + alpha I are" if method == "cholesky"
                    else "R factor of its QR decomposition is")
            kappa = float(np.max(np.asarray(model.cond, np.float64)))
            _checks.fail(
                fn,
                f"`x` must be numerically of full column rank for method={method!r}, got a "
                f"design whose {what} singular to working precision (cond = {kappa:.1e}); use "
                "method='svd' (minimum-norm solution) or alpha > 0",
            )
    return model


# ---------------------------------------------------------------------------------------------
# Logistic regression: objective pieces


def _augment(x: jax.Array, fit_intercept: bool) -> jax.Array:
    if not fit_intercept:
        return x
    return jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)


def _losses(z: jax.Array, y: jax.Array, onehot: jax.Array, binary: bool) -> jax.Array:
    """Per-sample losses (n,) from scores ``z`` (n, k)."""
    if binary:
        s = (2 * y - 1).astype(z.dtype)
        return jnp.logaddexp(jnp.zeros_like(z[:, 0]), -s * z[:, 0])
    return jax.nn.logsumexp(z, axis=1) - jnp.sum(onehot * z, axis=1)


def _score_grad(z: jax.Array, y: jax.Array, onehot: jax.Array, binary: bool) -> jax.Array:
    """Derivative of the per-sample losses with respect to the scores (n, k)."""
    if binary:
        return jax.nn.sigmoid(z) - y[:, None].astype(z.dtype)
    return jax.nn.softmax(z, axis=1) - onehot


def _penalty(w: jax.Array, mask: jax.Array, penalty: str) -> jax.Array:
    if penalty == "l2":
        return 0.5 * jnp.sum(mask[None, :] * w * w)
    if penalty == "l1":
        return jnp.sum(mask[None, :] * jnp.abs(w))
    return jnp.zeros((), w.dtype)


def _symmetrize(w: jax.Array, free: jax.Array, binary: bool) -> jax.Array:
    """Multinomial: rows sum to zero in the ``free`` columns (symmetric parametrization)."""
    if binary:
        return w
    return w - free[None, :] * jnp.mean(w, axis=0, keepdims=True)


def _hessian(xa, z, binary, lam_mask):
    """Hessian (k d1, k d1) of the scaled objective: mean loss + lam * 0.5 ||w||^2 (masked)."""
    n, d1 = xa.shape
    if binary:
        p = jax.nn.sigmoid(z[:, 0])
        h = matmul(xa.T, (p * (1 - p))[:, None] * xa) / n
        return h + jnp.diag(lam_mask)
    c = z.shape[1]
    p = jax.nn.softmax(z, axis=1)  # (n, c)
    px = p.T[:, :, None] * xa[None, :, :]  # (c, n, d1)
    diag_blocks = matmul(jnp.swapaxes(px, 1, 2), xa[None, :, :]) / n  # (c, d1, d1)
    zz = jnp.swapaxes(px, 0, 1).reshape(n, c * d1)  # rows p_i (x) x_i
    h = -matmul(zz.T, zz) / n
    h = h.reshape(c, d1, c, d1)
    idx = jnp.arange(c)
    h = h.at[idx, :, idx, :].add(diag_blocks)
    h = h.reshape(c * d1, c * d1)
    # The loss is flat along "add the same vector to every row"; that direction is decoupled
    # (the Hessian commutes with the projector onto it) and the gradient has no component in it,
    # so adding the projector makes the system definite without changing the Newton step.
    scale = jnp.maximum(jnp.mean(jnp.diagonal(h)), jnp.finfo(h.dtype).tiny)
    proj = jnp.kron(jnp.full((c, c), 1.0 / c, h.dtype), jnp.eye(d1, dtype=h.dtype))
    return h + scale * proj + jnp.diag(jnp.tile(lam_mask, c))


def _newton(xa, y, onehot, binary, k, lam, mask, penalty, tol, max_iter):
    n, d1 = xa.shape
    dt = xa.dtype
    lam_mask = (lam * mask) if penalty == "l2" else jnp.zeros_like(mask)
    free = jnp.ones_like(mask) if penalty == "none" else 1 - mask

    def losses(z):
        return _losses(z, y, onehot, binary)

    def pen(w):
        return lam * _penalty(w, mask, penalty)

    def grad_at(z, w):
        g = matmul(_score_grad(z, y, onehot, binary).T, xa) / n  # (k, d1)
        return g + lam_mask[None, :] * w

    def body(state):
        i, w, z, loss, g, _, _ = state
        h = _hessian(xa, z, binary, lam_mask)
        # a damping at rounding level keeps the factorization defined where the loss is flat
        # (constant or collinear features without a penalty) and changes nothing else
        h = h + eps(dt) * jnp.max(jnp.diagonal(h)) * jnp.eye(h.shape[0], dtype=dt)
        l, chol_ok = cholesky(h, return_info=True)
        step = jsl.cho_solve((l, True), g.reshape(-1)).reshape(k, d1)
        step = _symmetrize(step, free, binary)
        zs = matmul(xa, step.T)  # scores of the step
        slope = jnp.sum(g * step)
        pen_w = pen(w)
        # Objective changes are summed per sample (differences first), so they stay accurate
        # to rounding of the change, not of the objective; `slack` absorbs that rounding.
        slack = 8 * eps(dt) * (jnp.mean(loss) + pen_w)

        def change(a):
            trial = losses(z - a * zs)
            return trial, jnp.mean(trial - loss) + (pen(w - a * step) - pen_w)

        def ls_cond(s):
            a, j, _, df = s
            return ~(df <= -1e-4 * a * slope + slack) & (j < 40)

        def ls_body(s):
            a, j, _, _ = s
            a = a / 2
            return (a, j + 1, *change(a))

        one = jnp.ones((), dt)
        a, _, trial, df = lax.while_loop(ls_cond, ls_body,
                                         (one, jnp.zeros((), jnp.int32), *change(one)))
        good = chol_ok & (df <= -1e-4 * a * slope + slack) & jnp.isfinite(df)
        w_new = jnp.where(good, w - a * step, w)
        z_new = jnp.where(good, z - a * zs, z)
        loss_new = jnp.where(good, trial, loss)
        g_new = grad_at(z_new, w_new)
        return i + 1, w_new, z_new, loss_new, g_new, jnp.max(jnp.abs(g_new)), good

    def cond_fn(state):
        i, *_, r, ok = state
        return (i < max_iter) & (r > tol) & ok

    w0 = jnp.zeros((k, d1), dt)
    z0 = jnp.zeros((n, k), dt)
    g0 = grad_at(z0, w0)
    init = (jnp.zeros((), jnp.int32), w0, z0, losses(z0), g0, jnp.max(jnp.abs(g0)),
            jnp.ones((), bool))
    i, w, _, loss, _, r, _ = lax.while_loop(cond_fn, body, init)
    return w, jnp.mean(loss) + pen(w), r, i


def _soft_threshold(v: jax.Array, thresh: jax.Array, mask: jax.Array) -> jax.Array:
    shrunk = jnp.sign(v) * jnp.maximum(jnp.abs(v) - thresh, 0)
    return jnp.where(mask[None, :] > 0, shrunk, v)


def _fista(xa, y, onehot, binary, k, lam, mask, tol, max_iter):
    n, d1 = xa.shape
    dt = xa.dtype
    free = 1 - mask

    def losses(w):
        return _losses(matmul(xa, w.T), y, onehot, binary)

    def losses_grad(w):
        z = matmul(xa, w.T)
        g = matmul(_score_grad(z, y, onehot, binary).T, xa) / n
        return _losses(z, y, onehot, binary), g

    # Lipschitz constant of the smooth part: at most lambda_max(xa^T xa / n) times 1/4 (binary)
    # or 1/2 (softmax). A lower estimate from deterministic power iteration starts the
    # backtracking, which only ever increases it.
    def power(_, v):
        v = matmul(xa.T, matmul(xa, v)) / n
        return v / jnp.maximum(jnp.sqrt(jnp.sum(v * v)), jnp.finfo(dt).tiny)

    v = lax.fori_loop(0, 20, power, jnp.full((d1,), 1 / d1**0.5, dt))
    lmax = jnp.sum(v * (matmul(xa.T, matmul(xa, v)) / n))
    l0 = jnp.maximum(lmax * (0.25 if binary else 0.5), jnp.asarray(1e-30, dt))

    def prox_step(zp, g, L):
        return _symmetrize(_soft_threshold(zp - g / L, lam / L, mask), free, binary)

    def body(state):
        i, w, zp, t, L, _ = state
        loss_z, g = losses_grad(zp)
        # sufficient decrease, with the change of the loss summed per sample (see _newton)
        slack = 8 * eps(dt) * jnp.mean(loss_z)

        def fails(p, L):
            diff = p - zp
            model = jnp.sum(g * diff) + 0.5 * L * jnp.sum(diff * diff)
            return ~(jnp.mean(losses(p) - loss_z) <= model + slack)

        def bt_cond(s):
            L, p, j = s
            return fails(p, L) & (j < 60)

        def bt_body(s):
            L, _, j = s
            L = 2 * L
            return L, prox_step(zp, g, L), j + 1

        L, p, _ = lax.while_loop(bt_cond, bt_body, (L, prox_step(zp, g, L),
                                                   jnp.zeros((), jnp.int32)))
        r = L * jnp.max(jnp.abs(zp - p))  # gradient mapping at zp
        t_new = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
        restart = jnp.sum((zp - p) * (p - w)) > 0
        t_new = jnp.where(restart, jnp.ones_like(t_new), t_new)
        zp_new = jnp.where(restart, p, p + ((t - 1) / t_new) * (p - w))
        return i + 1, p, zp_new, t_new, L, r

    def cond_fn(state):
        i, *_, r = state
        return (i < max_iter) & (r > tol)

    w0 = jnp.zeros((k, d1), dt)
    one = jnp.ones((), dt)
    init = (jnp.zeros((), jnp.int32), w0, w0, one, l0, jnp.full((), jnp.inf, dt))
    i, w, _, _, _, r = lax.while_loop(cond_fn, body, init)
    f = jnp.mean(losses(w)) + lam * _penalty(w, mask, "l1")
    return w, f, r, i


@functools.partial(jax.jit, static_argnames=("penalty", "fit_intercept", "n_classes"))
def _logreg_core(x, y, C, tol, max_iter, *, penalty, fit_intercept, n_classes):
    dtype = x.dtype
    cdt = _checks.compute_dtype(dtype)
    _report_nonfinite(jnp.all(jnp.isfinite(x)), _LOGREG, "x")
    n, d = x.shape
    binary = n_classes == 2
    k = 1 if binary else n_classes
    xa = _augment(x.astype(cdt), fit_intercept)
    d1 = xa.shape[1]
    y = y.astype(jnp.int32)
    onehot = jax.nn.one_hot(y, n_classes, dtype=cdt)
    C = jnp.asarray(C, cdt)
    lam = 1 / (C * n)
    mask = jnp.ones((d1,), cdt)
    if fit_intercept:
        mask = mask.at[d].set(0)
    tol = jnp.asarray(tol, cdt)
    if penalty == "l1":
        w, f, r, i = _fista(xa, y, onehot, binary, k, lam, mask, tol, max_iter)
    else:
        w, f, r, i = _newton(xa, y, onehot, binary, k, lam, mask, penalty, tol, max_iter)
    scale = n if penalty == "none" else C * n
    objective = scale * f
    ok = (r <= tol) & jnp.all(jnp.isfinite(w)) & jnp.isfinite(objective)
    coef = w[:, :d]
    intercept = w[:, d] if fit_intercept else jnp.zeros((k,), cdt)
    return LogisticModel(
        coef=coef.astype(dtype),
        intercept=intercept.astype(dtype),
        objective=objective.astype(dtype),
        residual=r.astype(dtype),
        n_iter=i,
        converged=ok,
    )


def _labels(y: ArrayLike, fn: str, n: int) -> jax.Array:
    y = y if isinstance(y, jax.Array) else jnp.asarray(y)
    if not jnp.issubdtype(y.dtype, jnp.integer):
        _checks.fail(fn, f"`y` must hold integer class labels 0..c-1, got dtype {y.dtype}; "
                     "map the labels first, e.g. np.unique(y, return_inverse=True)[1]",
                     TypeError)
    _checks.check_ndim(y, fn, "y", 1, "(n_samples,)")
    if y.shape[0] != n:
        _checks.fail(fn, f"`y` must have {n} labels (one per sample of `x`), got shape "
                     f"{_shape(y)}")
    return y


def _check_label_range(y: jax.Array, n_classes: int, fn: str) -> None:
    if not _checks.is_concrete(y):
        return
    arr = np.asarray(y)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        _checks.fail(fn, f"`y` must hold class labels in [0, {n_classes - 1}] "
                     f"(n_classes={n_classes}), got label {bad}")


def logistic_regression(
    x: ArrayLike,
    y: ArrayLike,
    *,
    penalty: str = "l2",
    C: float | ArrayLike = 1.0,
    fit_intercept: bool = True,
    n_classes: int | None = None,
    max_iter: int | None = None,
    tol: float | None = None,
) -> LogisticModel:
    """Binary or multinomial logistic regression, scikit-learn's ``LogisticRegression`` objective.

    Minimizes ``C * sum_i loss_i + penalty(coef)`` (intercept unpenalized), with the binary
    logistic loss for two classes and the multinomial (softmax cross-entropy) loss for more; see
    the module docstring for the definitions and the solvers (Newton for ``"l2"``/``"none"``,
    FISTA for ``"l1"``). Works under ``jit`` (``penalty``, ``fit_intercept`` and ``n_classes``
    static; ``C`` and ``tol`` may be traced) and ``vmap``.

    Newton's Hessian has size ``c (d + 1)`` (``c = 1`` for two classes) and costs
    ``n c^2 d^2`` flops per iteration: exact and fast for moderate ``c d`` (a few thousand).
    Without a penalty on separable data no minimizer exists: the coefficients grow until the
    gradient falls below ``tol`` (as with scikit-learn); use a penalty there.

    Args:
        x: (n, d) features, one sample per row; floating dtype (float16/bfloat16 computed in
            float32). NaN/Inf raise when called eagerly.
        y: (n,) integer class labels in ``0..c-1`` (map other labels first, e.g. with
            ``np.unique(y, return_inverse=True)``).
        penalty: ``"l2"``, ``"l1"`` or ``"none"``.
        C: Inverse regularization strength ``> 0`` (ignored for ``"none"``).
        fit_intercept: Fit an unpenalized intercept per row of ``coef``.
        n_classes: Number of classes ``c >= 2`` (static); default ``max(y) + 1``, which needs a
            concrete ``y`` (pass it under ``jit``/``vmap``).
        max_iter: Maximum iterations (a Python int); default 100 for Newton, 10000 for FISTA.
        tol: Stop when the max-abs (proximal) gradient of the objective divided by ``C n`` is at
            most ``tol`` (scikit-learn's meaning of ``tol`` for ``lbfgs``); default ``1e-8`` in
            float64, ``1e-6`` in float32. In float32 rounding limits the attainable residual to
            about ``eps * L * max|coef|`` (``L`` the curvature of the loss): on an
            ill-conditioned problem the fit may then stop with ``converged=False``; pass a
            larger ``tol`` or use float64.

    Returns:
        :class:`LogisticModel` with ``coef`` (k, d), ``intercept`` (k,) (``k = 1`` for two
        classes, ``c`` otherwise), ``objective`` (), ``residual`` (), ``n_iter`` () and
        ``converged`` (), floats in the dtype of ``x``.

    Raises:
        TypeError: integer ``x``, non-integer ``y``, a non-bool ``fit_intercept`` or a non-int
            ``n_classes``/``max_iter``.
        ValueError: wrong shapes, an unknown ``penalty``, ``C <= 0``, a negative ``tol``,
            ``n_classes < 2`` or missing under ``jit``, labels outside ``0..c-1`` (eagerly),
            NaN/Inf in ``x`` (eagerly).

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla import models
        >>> x = jnp.array([[0.0], [1.0], [2.0], [3.0], [1.5], [2.5]])
        >>> y = jnp.array([0, 0, 1, 1, 0, 1])
        >>> m = models.logistic_regression(x, y, C=10.0)
        >>> m.coef.shape, m.intercept.shape, bool(m.converged)
        ((1, 1), (1,), True)
        >>> print(np.asarray(models.predict(m, jnp.array([[0.5], [2.8]]))))
        [0 1]
        >>> p = models.predict_proba(m, jnp.array([[2.0]]))
        >>> print(p.shape, round(float(p[0, 0] + p[0, 1]), 4))
        (1, 2) 1.0
    """
    fn = _LOGREG
    _checks.check_option(penalty, PENALTIES, fn, "penalty")
    fit_intercept = _checks.check_bool(fit_intercept, fn, "fit_intercept")
    x = _design(x, fn)
    n = _shape(x)[0]
    y = _labels(y, fn, n)
    C = _checks.check_positive(C, fn, "C")
    if n_classes is None:
        if not _checks.is_concrete(y):
            _checks.fail(fn, "`n_classes` must be given (a static int >= 2) when `y` is traced "
                         "under jit/vmap, got None")
        n_classes = max(int(np.max(np.asarray(y))) + 1, 2)
    n_classes = _checks.check_int(n_classes, fn, "n_classes", min=2)
    if max_iter is None:
        max_iter = 10_000 if penalty == "l1" else 100
    max_iter = _checks.check_int(max_iter, fn, "max_iter", min=1)
    if tol is None:
        tol = 1e-6 if _checks.compute_dtype(x.dtype) == jnp.float32 else 1e-8
    else:
        tol = _checks.check_positive(tol, fn, "tol", allow_zero=True)
    _check_label_range(y, n_classes, fn)
    _checks.check_finite(x, fn, "x")
    return _logreg_core(x, y, C, tol, max_iter, penalty=penalty, fit_intercept=fit_intercept,
                        n_classes=n_classes)


# ---------------------------------------------------------------------------------------------
# Applying a model


def _model_inputs(model: Any, x: ArrayLike, fn: str) -> jax.Array:
    if not isinstance(model, LinearModel | LogisticModel):
        _checks.fail(fn, f"`model` must be a LinearModel or a LogisticModel, got "
                     f"{type(model).__name__}", TypeError)
    x = _design(x, fn)
    coef = model.coef
    d = _shape(coef)[-1]
    if x.shape[1] != d:
        _checks.fail(fn, f"`x` must have {d} features (columns) to match `model.coef` of shape "
                     f"{_shape(coef)}, got shape {_shape(x)}")
    return x


def _scores(model: LinearModel | LogisticModel, x: jax.Array) -> jax.Array:
    """``x @ coef.T + intercept`` in the compute dtype: (n,) or (n, t) / (n, k)."""
    cdt = _checks.compute_dtype(jnp.result_type(x, model.coef))
    coef = model.coef.astype(cdt)
    b = jnp.asarray(model.intercept).astype(cdt)
    if coef.ndim == 1:
        return matmul(x.astype(cdt), coef) + b
    return matmul(x.astype(cdt), coef.T) + b[None, :]


def decision_function(model: LinearModel | LogisticModel, x: ArrayLike) -> jax.Array:
    """Linear scores ``x @ coef.T + intercept`` (scikit-learn's ``decision_function``).

    Args:
        model: A :class:`LinearModel` or :class:`LogisticModel`.
        x: (n, d) samples.

    Returns:
        In the dtype of ``x``: for a :class:`LinearModel` the predictions (n,) or (n, t); for a
        binary :class:`LogisticModel` the log-odds of class 1, (n,); for ``c > 2`` classes the
        class scores (n, c) (unnormalized log-probabilities).

    Raises:
        TypeError: ``model`` of another type, integer ``x``.
        ValueError: ``x`` not 2-D or with the wrong number of features.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla import models
        >>> m = models.LinearModel(jnp.array([2.0, -1.0]), jnp.array(0.5), jnp.array(1.0),
        ...                        jnp.array(0.0), jnp.array(0), jnp.array(True))
        >>> print(np.asarray(models.decision_function(m, jnp.array([[1.0, 1.0]]))))
        [1.5]
    """
    fn = f"{_MODULE}.decision_function"
    x = _model_inputs(model, x, fn)
    z = _scores(model, x)
    if isinstance(model, LogisticModel) and z.shape[1] == 1:
        z = z[:, 0]
    return z.astype(x.dtype)


def predict(model: LinearModel | LogisticModel, x: ArrayLike) -> jax.Array:
    """Predictions of a fitted model: regression values or class labels.

    Args:
        model: A :class:`LinearModel` (from :func:`linear_regression`) or a
            :class:`LogisticModel` (from :func:`logistic_regression`).
        x: (n, d) samples.

    Returns:
        For a :class:`LinearModel`, ``x @ coef.T + intercept``: (n,) or (n, t) in the dtype of
        ``x``. For a :class:`LogisticModel`, the most probable class of each sample, (n,) int32
        in ``0..c-1`` (ties go to the lower label, as scikit-learn).

    Raises:
        TypeError: ``model`` of another type, integer ``x``.
        ValueError: ``x`` not 2-D or with the wrong number of features.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla import models
        >>> x = jnp.array([[0.0], [1.0], [2.0]])
        >>> m = models.linear_regression(x, 3.0 * x[:, 0] + 1.0)
        >>> print(np.round(np.asarray(models.predict(m, jnp.array([[4.0]]))), 4))
        [13.]
    """
    fn = f"{_MODULE}.predict"
    x = _model_inputs(model, x, fn)
    z = _scores(model, x)
    if isinstance(model, LinearModel):
        return z.astype(x.dtype)
    if z.shape[1] == 1:
        return (z[:, 0] > 0).astype(jnp.int32)
    return jnp.argmax(z, axis=1).astype(jnp.int32)


def predict_proba(model: LogisticModel, x: ArrayLike) -> jax.Array:
    """Class probabilities of a :class:`LogisticModel` (scikit-learn's ``predict_proba``).

    Args:
        model: A fitted :class:`LogisticModel`.
        x: (n, d) samples.

    Returns:
        (n, c) probabilities in the dtype of ``x``, rows summing to 1: ``[1 - p, p]`` with
        ``p = sigmoid(decision_function)`` for two classes, the softmax of the class scores
        otherwise.

    Raises:
        TypeError: ``model`` not a :class:`LogisticModel`, integer ``x``.
        ValueError: ``x`` not 2-D or with the wrong number of features.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla import models
        >>> m = models.LogisticModel(jnp.array([[1.0]]), jnp.array([0.0]), jnp.array(0.0),
        ...                          jnp.array(0.0), jnp.array(0), jnp.array(True))
        >>> print(np.round(np.asarray(models.predict_proba(m, jnp.array([[0.0], [2.0]]))), 4))
        [[0.5    0.5   ]
         [0.1192 0.8808]]
    """
    fn = f"{_MODULE}.predict_proba"
    if not isinstance(model, LogisticModel):
        _checks.fail(fn, f"`model` must be a LogisticModel, got {type(model).__name__}",
                     TypeError)
    x = _model_inputs(model, x, fn)
    z = _scores(model, x)
    if z.shape[1] == 1:
        p = jax.nn.sigmoid(z[:, 0])
        probs = jnp.stack([1 - p, p], axis=1)
    else:
        probs = jax.nn.softmax(z, axis=1)
    return probs.astype(x.dtype)
