"""Krylov methods and stochastic trace and spectrum estimators, matrix-free.

Operators
---------
Every function takes the operator as ``matvec``, either

- a callable ``matvec(v) -> A v``, where ``v`` is an array **or a pytree of arrays** (for example a
  parameter pytree, with ``matvec`` a Hessian-vector product). The output must have the structure
  and shapes of the input: the operator is square. This is checked at trace time with
  ``jax.eval_shape``; or
- a dense square matrix ``(n, n)`` (a numpy or JAX array), used as ``v -> a @ v``; or
- a square :class:`jaxla.linalg.LinearOperator` ``(n, n)``, used through its ``matvec``.

``x0_like`` (``v0`` for :func:`lanczos`, ``b`` for :func:`conjugate_gradient`) gives the structure,
shapes and dtype of the vectors the operator acts on; an array, a pytree of arrays or of
``jax.ShapeDtypeStruct``. Only its structure is used, not its values. It may be ``None`` when
``matvec`` is a dense matrix or a ``LinearOperator``. Internally vectors are flattened to length
``n`` (the total number of entries); vectors are returned in the structure of ``x0_like``, and a
set of ``k`` vectors as the same pytree with a leading axis of size ``k`` on every leaf.

:func:`eigsh`, :func:`lanczos`, :func:`power_iteration` and :func:`spectral_density` assume a
symmetric (self-adjoint) operator, :func:`conjugate_gradient` a symmetric positive definite one;
the trace estimators accept any square operator.

Dimension letters: ``n`` the dimension of the operator, ``k`` the number of eigenpairs, ``m`` the
number of Lanczos steps, ``p`` the number of probes, ``g`` the number of grid points.

Numerics and reporting
----------------------
Computations run in the dtype of ``x0_like`` (float16/bfloat16 are upcast to float32) and every
inner product goes through ``matmul`` at ``precision=HIGHEST``; outputs have the input dtype.
Lanczos bases are re-orthogonalized fully, twice ("twice is enough"). Every result reports how the
method did: the number of matrix-vector products, residual norms or standard errors, and a
``converged`` flag. Shape-setting integers (``k``, ``num_matvecs``, ``num_probes``, ...), iteration
budgets (``num_iters``, ``max_matvecs``, ``max_iters``) and the string options are Python values,
fixed when a function is traced under ``jax.jit``; everything else may be traced. All loops are
``lax`` loops. Each call runs as one compiled program: for a dense matrix it is cached (a
different iteration budget reuses it); a callable is traced with ``jax.make_jaxpr`` and the arrays
it closes over are passed to the program as arguments (never embedded as constants), compiled
once per call, so call the function inside your own ``jax.jit`` to compile it once for repeated
use. Called eagerly, the functions raise ``ValueError`` when a dense matrix or a start vector
holds NaN/Inf, or when the operator produced NaN/Inf values; under ``jit`` the results carry
them (and ``converged`` is false), and ``jax.experimental.checkify`` raises the same message.

References
----------
- C. Lanczos (1950); C. C. Paige (1972), full re-orthogonalization; L. Giraud, J. Langou,
  M. Rozloznik (2005), "twice is enough" Gram-Schmidt.
- K. Wu and H. Simon (2000), thick-restart Lanczos for large symmetric eigenvalue problems;
  G. W. Stewart (2001), a Krylov-Schur algorithm for large eigenproblems.
- M. R. Hestenes and E. Stiefel (1952), conjugate gradients.
- M. F. Hutchinson (1990), a stochastic estimator of the trace of the influence matrix.
- R. A. Meyer, C. Musco, C. Musco and D. P. Woodruff (2021), Hutch++: optimal stochastic trace
  estimation.
- S. Ubaru, J. Chen and Y. Saad (2017), fast estimation of tr(f(A)) via stochastic Lanczos
  quadrature; B. Ghorbani, S. Krishnan and Y. Xiao (2019), an investigation into neural net
  optimization via Hessian eigenvalue density.
- Z. Yao, A. Gholami, K. Keutzer and M. Mahoney (2020), PyHessian.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import checkify

from jaxla import _checks
from jaxla._numerics import eps, matmul
from jaxla.linalg._canonical import vector_signs
from jaxla.linalg.operators import LinearOperator

__all__ = [
    "CGResult",
    "EigshResult",
    "LanczosResult",
    "PowerIterationResult",
    "SpectralDensity",
    "TraceEstimate",
    "conjugate_gradient",
    "eigsh",
    "hutchinson_trace",
    "hutchpp_trace",
    "lanczos",
    "power_iteration",
    "spectral_density",
]

PyTree = Any
Operator = Callable[[PyTree], PyTree] | jax.Array | np.ndarray | LinearOperator

_WHICH = ("largest", "smallest", "both_ends")
_CRITERIA = ("residual", "eigenvalue")
_REORTHO = ("full", "none")
_DISTRIBUTIONS = ("rademacher", "gaussian")
# An invariant subspace is declared found when the new Lanczos vector is below this many units
# of round-off relative to the largest ||A v|| seen so far.
_BREAKDOWN_ULPS = 10.0


# ---------------------------------------------------------------------------------------------
# Results


class PowerIterationResult(NamedTuple):
    """Result of :func:`power_iteration`.

    ``eigenvalue`` is the Rayleigh quotient of ``eigenvector`` and ``residual_norm`` is
    ``||A v - eigenvalue * v||`` for exactly that pair.
    """

    eigenvalue: jax.Array  # () the dominant (largest-magnitude) eigenvalue estimate
    eigenvector: PyTree  # like x0_like: unit-norm eigenvector estimate, canonical sign
    residual_norm: jax.Array  # () ||A v - eigenvalue v||
    num_matvecs: jax.Array  # () int32, matrix-vector products used
    converged: jax.Array  # () bool, the stopping criterion was met within num_iters


class LanczosResult(NamedTuple):
    """Result of :func:`lanczos`: ``A Q^T = Q^T T + remainder e_m^T`` with ``Q Q^T = I``.

    ``Q`` is the basis flattened to ``(m, n)`` and ``T`` the symmetric tridiagonal matrix with
    diagonal ``alphas`` and off-diagonal ``betas``.
    """

    alphas: jax.Array  # (m,) diagonal of T
    betas: jax.Array  # (m - 1,) off-diagonal of T
    basis: PyTree  # like v0, each leaf with a leading axis m: the Lanczos vectors q_1 .. q_m
    remainder: PyTree  # like v0: the unnormalized next Lanczos vector beta_m q_{m+1}
    num_matvecs: jax.Array  # () int32, matrix-vector products used (< m after a breakdown)
    breakdown: jax.Array  # () bool, an invariant subspace was found; later entries are zero


class EigshResult(NamedTuple):
    """Result of :func:`eigsh` (``k2 = k``, or ``2 k`` for ``which="both_ends"``)."""

    eigenvalues: jax.Array  # (k2,) Ritz values, ascending
    eigenvectors: PyTree  # like x0_like, each leaf with a leading axis k2: unit Ritz vectors
    residual_norms: jax.Array  # (k2,) ||A v_i - lambda_i v_i||
    num_matvecs: jax.Array  # () int32, matrix-vector products used
    converged: jax.Array  # () bool, every wanted pair met the stopping criterion
    error_bounds: jax.Array  # (k2,) eigenvalue error estimates min(r_i, r_i**2 / gap_i)


class CGResult(NamedTuple):
    """Result of :func:`conjugate_gradient`."""

    x: PyTree  # like b: the approximate solution of A x = b
    residual_norm: jax.Array  # () ||r|| of the (recursively updated) residual r = b - A x
    num_iters: jax.Array  # () int32, iterations (one matrix-vector product each)
    converged: jax.Array  # () bool, residual_norm <= tol * ||b||


class TraceEstimate(NamedTuple):
    """Result of :func:`hutchinson_trace` and :func:`hutchpp_trace`."""

    estimate: jax.Array  # () the trace estimate
    std_error: jax.Array  # () estimated standard error of the estimate
    num_matvecs: jax.Array  # () int32, matrix-vector products used


class SpectralDensity(NamedTuple):
    """Result of :func:`spectral_density` (stochastic Lanczos quadrature).

    Per probe, the nodes and weights form a Gauss quadrature rule for the spectral measure
    ``sum_i (v^T u_i)^2 delta(t - lambda_i)``; the weights of a probe sum to 1.
    """

    nodes: jax.Array  # (p, m) Ritz values of each probe's tridiagonal matrix, ascending
    weights: jax.Array  # (p, m) squared first components of their eigenvectors
    grid: jax.Array  # (g,) points where the density is evaluated, ascending
    density: jax.Array  # (g,) smoothed spectral density, trapezoid integral over grid = 1
    num_matvecs: jax.Array  # () int32, matrix-vector products used (all probes)


# ---------------------------------------------------------------------------------------------
# Vector spaces and operators


def _leaf_spec(leaf: Any) -> tuple[tuple[int, ...], np.dtype]:
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return tuple(int(d) for d in leaf.shape), jnp.dtype(leaf.dtype)
    arr = jnp.asarray(leaf)
    return tuple(arr.shape), arr.dtype


def _describe(tree: Any) -> str:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    shapes = [_leaf_spec(x)[0] for x in leaves]
    if treedef.num_leaves == 1 and treedef == jax.tree_util.tree_structure(0):
        return f"shape {shapes[0]}"
    return f"{jax.tree_util.tree_unflatten(treedef, shapes)}"


class _Space:
    """Flattening between the user's vectors (array or pytree) and flat ``(n,)`` arrays."""

    def __init__(self, fn: str, name: str, like: Any):
        leaves, self.treedef = jax.tree_util.tree_flatten(like)
        if not leaves:
            _checks.fail(fn, f"`{name}` must be an array or a non-empty pytree of arrays, got "
                         f"{like!r}")
        specs = [_leaf_spec(x) for x in leaves]
        self.shapes = [s for s, _ in specs]
        self.dtypes = [d for _, d in specs]
        for dt in self.dtypes:
            if not jnp.issubdtype(dt, jnp.floating):
                _checks.fail(
                    fn,
                    f"`{name}` must have real floating dtype(s), got dtype {dt}; cast it first, "
                    f"e.g. {name}.astype(jnp.float32)",
                    TypeError,
                )
        self.sizes = [math.prod(s) for s in self.shapes]
        self.n = int(sum(self.sizes))
        if self.n == 0:
            _checks.fail(fn, f"`{name}` must have at least one entry, got {_describe(like)}")
        self.dtype = jnp.dtype(jnp.result_type(*self.dtypes))
        self.cdtype = _checks.compute_dtype(self.dtype)
        self.struct = jax.tree_util.tree_unflatten(
            self.treedef,
            [jax.ShapeDtypeStruct(s, d) for s, d in zip(self.shapes, self.dtypes, strict=True)],
        )

    def ravel(self, tree: PyTree) -> jax.Array:
        leaves = jax.tree_util.tree_leaves(tree)
        flat = [jnp.ravel(x).astype(self.cdtype) for x in leaves]
        return flat[0] if len(flat) == 1 else jnp.concatenate(flat)

    def unravel(self, vec: jax.Array) -> PyTree:
        """(n,) -> pytree (leaves in their own dtypes); (k, n) -> pytree with leading axis k."""
        lead = vec.shape[:-1]
        out, off = [], 0
        for shape, size, dt in zip(self.shapes, self.sizes, self.dtypes, strict=True):
            out.append(vec[..., off:off + size].reshape(lead + shape).astype(dt))
            off += size
        return jax.tree_util.tree_unflatten(self.treedef, out)


def _dense_matvec(v: jax.Array, a: jax.Array) -> jax.Array:
    return matmul(a, v)


def _identity(v: jax.Array) -> jax.Array:
    return v


class _JaxprOperator:
    """A flat operator ``v -> A v`` given by a jaxpr; the values it closes over are arguments.

    A user's callable is traced once with ``jax.make_jaxpr``; the arrays it closes over (model
    parameters, data) become the jaxpr's constants and are passed to the compiled core as
    arguments, never embedded into the compiled program as literals.
    """

    __slots__ = ("jaxpr",)

    def __init__(self, jaxpr: Any):
        self.jaxpr = jaxpr

    def __call__(self, v: jax.Array, *consts: jax.Array) -> jax.Array:
        return jax.core.eval_jaxpr(self.jaxpr, consts, v)[0]


def _trace_operator(
    f: Callable[[jax.Array], jax.Array], n: int, dtype: Any
) -> tuple[_JaxprOperator, tuple[Any, ...]]:
    closed = jax.make_jaxpr(f)(jax.ShapeDtypeStruct((n,), dtype))
    return _JaxprOperator(closed.jaxpr), tuple(closed.consts)


# Cores take the operator as a static function plus its array arguments. With the module-level
# functions below (dense matrices) the compiled core is cached across calls; with a traced
# callable it is compiled once per call by a fresh jit, so nothing accumulates in jit caches.
_STABLE_FNS = (_dense_matvec, _identity)


def _jit_core(*static_argnames: str):
    """Decorator: run ``core(op_fn, ...)`` as one compiled program (``op_fn`` static)."""

    def deco(core):
        cached = jax.jit(core, static_argnums=(0,), static_argnames=static_argnames)

        @functools.wraps(core)
        def call(op_fn, *args, **kwargs):
            fns = [op_fn] + [v for v in kwargs.values() if callable(v)]
            if all(any(f is g for g in _STABLE_FNS) for f in fns):
                return cached(op_fn, *args, **kwargs)
            fresh = jax.jit(functools.partial(core, op_fn), static_argnames=static_argnames)
            return fresh(*args, **kwargs)

        return call

    return deco


def _operator(
    fn: str, matvec: Operator, like: Any, like_name: str
) -> tuple[_Space, Callable[..., jax.Array], tuple[jax.Array, ...]]:
    """Validate ``matvec`` against ``like``.

    Returns the vector space and the flat operator as ``(op_fn, op_args)``:
    ``A v = op_fn(v, *op_args)`` for flat vectors ``v`` of shape (n,) in the compute dtype.
    """
    if isinstance(matvec, jax.Array | np.ndarray):
        a = _checks.as_float_array(matvec, fn, "matvec", ndim=2, doc="(n, n)")
        _checks.check_square(a, fn, "matvec")
        _checks.check_finite(a, fn, "matvec")
        n = int(a.shape[0])
        space = _Space(fn, like_name, jax.ShapeDtypeStruct((n,), a.dtype) if like is None
                       else like)
        if space.treedef.num_leaves != 1 or space.shapes[0] != (n,):
            _checks.fail(
                fn,
                f"`{like_name}` must be a vector of shape ({n},) to match `matvec` of shape "
                f"{tuple(a.shape)}, got {_describe(like)}",
            )
        return space, _dense_matvec, (a.astype(space.cdtype),)
    if isinstance(matvec, LinearOperator):
        shape = tuple(int(d) for d in matvec.shape)
        if len(shape) != 2 or shape[0] != shape[1]:
            _checks.fail(fn, f"`matvec` must be a square operator (n, n), got shape {shape}")
        n = shape[0]
        if like is None:
            like = jax.ShapeDtypeStruct((n,), _checks.compute_dtype(matvec.dtype))
        like_space = _Space(fn, like_name, like)
        if like_space.treedef.num_leaves != 1 or like_space.shapes[0] != (n,):
            _checks.fail(
                fn,
                f"`{like_name}` must be a vector of shape ({n},) to match `matvec` of shape "
                f"{shape}, got {_describe(like)}",
            )
        matvec = matvec.matvec
    if not callable(matvec):
        _checks.fail(
            fn,
            "`matvec` must be a callable v -> A v, a square matrix (n, n) or a LinearOperator, "
            f"got {type(matvec).__name__}",
            TypeError,
        )
    if like is None:
        _checks.fail(
            fn,
            f"`{like_name}` must give the structure of the vectors when `matvec` is a callable, "
            "got None",
        )
    space = _Space(fn, like_name, like)
    _check_same_structure(fn, "matvec", matvec, space, like_name)

    def mv(v: jax.Array) -> jax.Array:
        return space.ravel(matvec(space.unravel(v)))

    op_fn, op_args = _trace_operator(mv, space.n, space.cdtype)
    return space, op_fn, op_args


def _check_same_structure(fn: str, name: str, f: Callable, space: _Space, like_name: str) -> None:
    """Require ``f`` to map vectors like ``space`` to the same structure and shapes."""
    out = jax.eval_shape(f, space.struct)
    out_leaves, out_def = jax.tree_util.tree_flatten(out)
    out_shapes = [tuple(x.shape) for x in out_leaves]
    if out_def != space.treedef or out_shapes != space.shapes:
        _checks.fail(
            fn,
            f"`{name}` must map vectors like `{like_name}` ({_describe(space.struct)}) to the "
            f"same structure and shapes (a square operator), got {_describe(out)}",
        )
    for leaf in out_leaves:
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            _checks.fail(
                fn, f"`{name}` must return real floating values, got dtype {leaf.dtype}", TypeError
            )


def _check_like(fn: str, name: str, x: PyTree, space: _Space, like_name: str) -> jax.Array:
    """Require ``x`` to have the structure and shapes of ``space``, be finite; return it flat."""
    x_space = _Space(fn, name, x)
    if x_space.treedef != space.treedef or x_space.shapes != space.shapes:
        _checks.fail(fn, f"`{name}` must have the structure and shapes of `{like_name}` "
                     f"({_describe(space.struct)}), got {_describe(x)}")
    _checks.check_finite(x, fn, name)
    return space.ravel(x)


def _finite_or_raise(fn: str, ok: jax.Array, what: str) -> None:
    """Report non-finite results: raise eagerly, register a checkify check under tracing."""
    message = f"{fn}: `matvec` must produce finite values, got NaN or Inf in {what}"
    checkify.debug_check(ok, message)
    if _checks.is_concrete(ok) and not bool(ok):
        raise ValueError(message)


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
    return matmul(a, b)


def _norm(x: jax.Array) -> jax.Array:
    """Euclidean norm with a finite gradient at zero."""
    sq = _dot(x, x)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1)), 0)


def _safe_div(x: jax.Array, d: jax.Array, ok: jax.Array) -> jax.Array:
    return jnp.where(ok, x / jnp.where(ok, d, 1), 0)


def _probe(key: jax.Array, n: int, dtype: Any, distribution: str) -> jax.Array:
    if distribution == "rademacher":
        return jax.random.rademacher(key, (n,), dtype=dtype)
    return jax.random.normal(key, (n,), dtype=dtype)


def _map(f: Callable[[jax.Array], Any], xs: jax.Array, batch_size: int | None) -> Any:
    """``vmap(f)(xs)`` or, with ``batch_size``, ``lax.map`` over batches of that size."""
    if batch_size is None or batch_size >= xs.shape[0]:
        return jax.vmap(f)(xs)
    return lax.map(f, xs, batch_size=batch_size)


def _check_batch_size(fn: str, batch_size: int | None) -> int | None:
    return None if batch_size is None else _checks.check_int(batch_size, fn, "batch_size", min=1)


def _check_tol(fn: str, tol: Any) -> Any:
    return _checks.check_positive(tol, fn, "tol", allow_zero=True)


# ---------------------------------------------------------------------------------------------
# Power iteration


def power_iteration(
    key: jax.Array,
    matvec: Operator,
    x0_like: PyTree | None,
    *,
    num_iters: int = 100,
    tol: float = 1e-3,
) -> PowerIterationResult:
    """Dominant eigenpair of a symmetric operator by power iteration (PyHessian's method).

    Starts from a Gaussian random vector drawn with ``key`` and iterates ``v <- A v / ||A v||``.
    Each iteration costs one matrix-vector product and yields the Rayleigh quotient
    ``lambda = v^T A v`` and the exact residual ``||A v - lambda v||`` of the pair ``(lambda, v)``.
    The iteration stops when the relative change of the eigenvalue estimate is at most ``tol``
    (PyHessian's criterion) or when ``||A v - lambda v|| <= tol * |lambda|``, or after
    ``num_iters`` iterations.

    Power iteration converges to the eigenvalue of **largest magnitude** (with its sign), at the
    rate ``|lambda_2 / lambda_1|`` per iteration: slowly when the gap is small, and it cannot find
    the most negative eigenvalue of an operator whose positive eigenvalues dominate. A small
    relative change does not imply an accurate answer; check ``residual_norm``. :func:`eigsh`
    finds either end of the spectrum and, when the gap is small, usually needs several times
    fewer matrix-vector products for the same accuracy (``benchmarks/krylov.py``).

    Args:
        key: PRNG key for the start vector.
        matvec: The symmetric operator: a callable on arrays/pytrees, a dense ``(n, n)`` matrix
            or a ``LinearOperator``.
        x0_like: Structure, shapes and dtype of the vectors (``None`` for a dense matrix or a
            ``LinearOperator``).
        num_iters: Maximum number of iterations (= matrix-vector products), a Python int.
        tol: Tolerance of the stopping criteria above (``0`` runs all ``num_iters``).

    Returns:
        PowerIterationResult: ``eigenvalue`` (), ``eigenvector`` (like ``x0_like``, unit norm, its
        largest-magnitude entry positive), ``residual_norm`` (), ``num_matvecs`` (),
        ``converged`` () (a stopping criterion was met within ``num_iters``).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxla.linalg import power_iteration
        >>> a = jnp.diag(jnp.array([1.0, 2.0, 10.0]))
        >>> res = power_iteration(jax.random.key(0), a, None, num_iters=50, tol=1e-6)
        >>> print(round(float(res.eigenvalue), 4), bool(res.converged))
        10.0 True
    """
    fn = "jaxla.linalg.power_iteration"
    num_iters = _checks.check_int(num_iters, fn, "num_iters", min=1)
    tol = _check_tol(fn, tol)
    space, op_fn, op_args = _operator(fn, matvec, x0_like, "x0_like")
    lam, v, res, i, done = _power_core(
        op_fn, op_args, key, tol, num_iters, n=space.n, dtype=space.cdtype
    )
    ok = jnp.isfinite(lam) & jnp.isfinite(res)
    _finite_or_raise(fn, ok, "the eigenpair")
    return PowerIterationResult(
        eigenvalue=lam.astype(space.dtype),
        eigenvector=space.unravel(v),
        residual_norm=res.astype(space.dtype),
        num_matvecs=i,
        converged=done & ok,
    )


@_jit_core("n", "dtype")
def _power_core(op_fn, op_args, key, tol, num_iters, *, n, dtype):
    def mv(v):
        return op_fn(v, *op_args)

    v0 = jax.random.normal(key, (n,), dtype)
    v0 = v0 / _norm(v0)

    def body(state):
        i, _, lam_prev, _, v, _ = state
        w = mv(v)
        lam = _dot(v, w)
        res = _norm(w - lam * v)
        wn = _norm(w)
        v_next = jnp.where(wn > 0, _safe_div(w, wn, wn > 0), v)
        small_change = (i >= 1) & (jnp.abs(lam - lam_prev) <= tol * jnp.abs(lam))
        done = small_change | (res <= tol * jnp.abs(lam))
        return i + 1, v, lam, res, v_next, done

    def cond(state):
        i, *_, done = state
        return (i < num_iters) & ~done

    zero = jnp.zeros((), dtype)
    init = (jnp.zeros((), jnp.int32), v0, zero, zero, v0, jnp.zeros((), bool))
    i, v, lam, res, _, done = lax.while_loop(cond, body, init)
    return lam, v * vector_signs(v), res, i, done


# ---------------------------------------------------------------------------------------------
# Lanczos tridiagonalization


@_jit_core("m", "full")
def _lanczos_core(op_fn, op_args, v0, *, m, full):
    return _lanczos_flat(lambda v: op_fn(v, *op_args), v0, m, full)


def _lanczos_flat(
    mv: Callable[[jax.Array], jax.Array], v0: jax.Array, m: int, full: bool
) -> tuple[jax.Array, ...]:
    """m Lanczos steps from v0 on flat vectors.

    Returns (alphas (m,), betas (m,), Q (m, n), remainder (n,), num_valid (), breakdown ()):
    betas[j] couples q_j and q_{j+1}; betas[m-1] is the norm of the remainder. After a
    breakdown at step j the later alphas, betas and basis vectors are zero.
    """
    n = v0.shape[0]
    dtype = v0.dtype
    thresh = _BREAKDOWN_ULPS * eps(dtype)
    nrm = _norm(v0)
    start_ok = nrm > 0
    q0 = _safe_div(v0, nrm, start_ok)

    def body(j, state):
        Q, alphas, betas, q, q_prev, beta_prev, anorm, broken, used = state
        Q = Q.at[j].set(q)
        w = lax.cond(broken, jnp.zeros_like, mv, q)
        used = used + jnp.where(broken, 0, 1).astype(jnp.int32)
        anorm = jnp.maximum(anorm, _norm(w))
        alpha = _dot(q, w)
        w = w - alpha * q - beta_prev * q_prev
        if full:
            for _ in range(2):  # twice is enough
                c = matmul(Q, w)  # rows after j are zero
                w = w - matmul(c, Q)
                alpha = alpha + c[j]
        beta = _norm(w)
        broken = broken | (beta <= thresh * anorm)
        q_next = _safe_div(w, beta, ~broken)
        beta = jnp.where(broken, 0, beta)
        alphas = alphas.at[j].set(jnp.where(used > j, alpha, 0))
        betas = betas.at[j].set(beta)
        return Q, alphas, betas, q_next, q, beta, anorm, broken, used

    zero = jnp.zeros((), dtype)
    init = (
        jnp.zeros((m, n), dtype),
        jnp.zeros((m,), dtype),
        jnp.zeros((m,), dtype),
        q0,
        jnp.zeros_like(q0),
        zero,
        zero,
        ~start_ok,
        jnp.zeros((), jnp.int32),
    )
    Q, alphas, betas, q_next, _, beta, _, broken, used = lax.fori_loop(0, m, body, init)
    return alphas, betas, Q, q_next * beta, used, broken


def lanczos(
    matvec: Operator,
    v0: PyTree,
    num_matvecs: int,
    *,
    reortho: str = "full",
) -> LanczosResult:
    """Lanczos tridiagonalization of a symmetric operator from a start vector.

    Runs ``m = num_matvecs`` Lanczos steps from ``v0 / ||v0||`` and returns the orthonormal basis
    ``Q`` (``m`` vectors) of the Krylov space ``span(v0, A v0, ..., A^{m-1} v0)`` and the
    tridiagonal ``T = Q A Q^T``, with the Lanczos relation ``A Q^T = Q^T T + r e_m^T`` where ``r``
    is ``remainder``. With ``reortho="full"`` each new vector is re-orthogonalized against the
    whole basis, twice, which keeps ``Q`` orthonormal to working precision; ``"none"`` is the plain
    three-term recurrence (cheaper, loses orthogonality once Ritz values converge).

    Breakdown: when the Krylov space is invariant (the new vector's norm is at round-off level,
    ``beta ~ 0``), the iteration stops cleanly: ``breakdown`` is true, the remaining ``alphas``,
    ``betas`` and basis vectors are zero (no NaN), ``num_matvecs`` counts only the products made
    before, and the eigenvalues of the leading block of ``T`` are eigenvalues of ``A`` (to
    round-off).

    The start vector is deterministic, matfree-style: draw a random one for a random start.
    The loop has a fixed trip count, so the result is differentiable (reverse mode included)
    with respect to values the operator closes over and to ``v0``.

    Args:
        matvec: The symmetric operator: a callable on arrays/pytrees, a dense ``(n, n)`` matrix
            or a ``LinearOperator``.
        v0: Start vector (array or pytree, nonzero and finite); it also sets the structure.
        num_matvecs: Number of Lanczos steps ``m`` (one matrix-vector product each),
            ``1 <= m <= n``, static.
        reortho: ``"full"`` (default) or ``"none"``.

    Returns:
        LanczosResult: ``alphas`` (m,), ``betas`` (m - 1,), ``basis`` (like ``v0`` with a leading
        axis ``m`` on every leaf), ``remainder`` (like ``v0``), ``num_matvecs`` (),
        ``breakdown`` ().

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.linalg import lanczos
        >>> a = jnp.diag(jnp.arange(1.0, 7.0))
        >>> res = lanczos(a, jnp.ones(6), 6)
        >>> t = jnp.diag(res.alphas) + jnp.diag(res.betas, 1) + jnp.diag(res.betas, -1)
        >>> np.round(np.asarray(jnp.linalg.eigvalsh(t)), 3)
        array([1., 2., 3., 4., 5., 6.])
    """
    fn = "jaxla.linalg.lanczos"
    reortho = _checks.check_option(reortho, _REORTHO, fn, "reortho")
    space, op_fn, op_args = _operator(fn, matvec, v0, "v0")
    m = _checks.check_int(num_matvecs, fn, "num_matvecs", min=1, max=space.n,
                          max_doc="the dimension n")
    _checks.check_finite(v0, fn, "v0")
    v = space.ravel(v0)
    if _checks.is_concrete(v) and not bool(jnp.any(v != 0)):
        _checks.fail(fn, "`v0` must be a nonzero vector, got all zeros")
    alphas, betas, Q, rem, used, broken = _lanczos_core(
        op_fn, op_args, v, m=m, full=reortho == "full"
    )
    ok = jnp.all(jnp.isfinite(alphas)) & jnp.all(jnp.isfinite(betas))
    _finite_or_raise(fn, ok, "the tridiagonal matrix")
    return LanczosResult(
        alphas=alphas.astype(space.dtype),
        betas=betas[: m - 1].astype(space.dtype),
        basis=space.unravel(Q),
        remainder=space.unravel(rem),
        num_matvecs=used,
        breakdown=broken,
    )


# ---------------------------------------------------------------------------------------------
# eigsh: thick-restarted Lanczos


def _priority(m: jax.Array, p: int, which: jax.Array) -> jax.Array:
    """Rank of each of the p ascending Ritz values (0 = most wanted); slots >= m come last.

    ``which`` is the index of the option in ``_WHICH`` (a traced int, so that the options share
    one compiled program).
    """
    i = jnp.arange(p)
    j = m - 1 - i
    both = 2 * jnp.minimum(i, j) + (j < i).astype(i.dtype)  # smallest, largest, 2nd smallest, ...
    pr = jnp.where(which == 0, j, jnp.where(which == 1, i, both))
    return jnp.where(i < m, pr, 4 * p + i)


def _rayleigh_ritz(H: jax.Array, m: jax.Array, beta: jax.Array) -> tuple[jax.Array, ...]:
    """Ritz values (ascending, the m real ones first), vectors and residual estimates of H[:m, :m].

    The unused slots are given a diagonal value above every eigenvalue of the leading block, so
    the decomposition of the padded (p, p) matrix contains the one of the leading block.
    """
    p = H.shape[0]
    valid = jnp.arange(p) < m
    Hm = jnp.where(valid[:, None] & valid[None, :], H, 0)
    pad = 2 * jnp.max(jnp.sum(jnp.abs(Hm), axis=1)) + 1
    Hm = Hm + jnp.diag(jnp.where(valid, 0, pad).astype(H.dtype))
    theta, S = jnp.linalg.eigh(Hm)
    last = lax.dynamic_index_in_dim(S, m - 1, axis=0, keepdims=False)
    res = jnp.where(valid, beta * jnp.abs(last), jnp.inf)
    return theta, S, res


def _error_bounds(theta: jax.Array, res: jax.Array, m: jax.Array) -> jax.Array:
    """Eigenvalue error estimates ``min(r_i, r_i**2 / gap_i)`` of the m valid Ritz values.

    ``gap_i = min_{j != i} (|theta_i - theta_j| - r_j)``: the distance to every other Ritz value,
    less that value's own residual (the interval ``theta_j -+ r_j`` holds an eigenvalue), a
    cautious estimate of the distance from the eigenvalue ``theta_i`` approximates to the rest
    of the spectrum. Without another Ritz value (``m = 1``), or when the gap is not larger than
    the residual, the estimate is the residual itself. Unused slots get ``inf``.
    """
    p = theta.shape[0]
    i = jnp.arange(p)
    valid = i < m
    other = valid[None, :] & (i[:, None] != i[None, :])
    dist = jnp.abs(theta[:, None] - theta[None, :]) - jnp.where(other, res[None, :], 0)
    gap = jnp.min(jnp.where(other, dist, jnp.inf), axis=1)
    quad = (m > 1) & (gap > res)  # the quadratic estimate is smaller than the residual
    return jnp.where(valid, jnp.where(quad, _safe_div(res * res, gap, quad), res), jnp.inf)


@_jit_core("kk", "p", "keep")
def _eigsh_core(
    op_fn: Callable[..., jax.Array],
    op_args: tuple[jax.Array, ...],
    v0: jax.Array,
    key: jax.Array,
    tol: Any,
    max_matvecs: Any,
    which: jax.Array,
    criterion: jax.Array,
    *,
    kk: int,
    p: int,
    keep: int,
) -> tuple[jax.Array, ...]:
    """Thick-restarted Lanczos (Krylov-Schur form) on flat vectors.

    State: orthonormal basis V[:m] (rows), H = V A V^T (kept symmetric), residual f with
    A V^T = V^T H + f e_m^T. Each step adds one vector (one matvec), projects with full
    re-orthogonalization (twice), and does a Rayleigh-Ritz step to test convergence (every
    step, from the first). When the basis is full, it restarts from the `keep` most wanted Ritz
    vectors. ``criterion`` is the index of the option in ``_CRITERIA`` (traced, so the options
    share one compiled program).

    Convergence is declared when the criterion is met at two consecutive steps and no wanted
    Ritz value moved by more than the tolerance in between (or at once when the Krylov space is
    invariant, where the Ritz pairs are exact): a start vector with little weight on a wanted
    eigenvector can let a Ritz value settle near the next eigenvalue, with a small residual,
    until that eigenvector emerges; the one extra step catches most of these false stops.
    """

    def mv(v):
        return op_fn(v, *op_args)

    n = v0.shape[0]
    dtype = v0.dtype
    thresh = _BREAKDOWN_ULPS * eps(dtype)
    rows = jnp.arange(p)
    r0 = jax.random.normal(key, (n,), dtype)

    def check(theta, res, m, beta, anorm, prev_met, prev_want):
        """(converged, criterion met now, wanted Ritz values in priority order, bounds)."""
        want = jnp.argsort(_priority(m, p, which))[:kk]
        scale = jnp.max(jnp.where(rows < m, jnp.abs(theta), 0))
        bounds = _error_bounds(theta, res, m)
        measure = jnp.where(criterion == 0, res, bounds)
        met = (m >= kk) & jnp.all(measure[want] <= tol * scale)
        exact = beta <= thresh * anorm  # invariant subspace: the Ritz pairs are exact
        steady = prev_met & jnp.all(jnp.abs(theta[want] - prev_want) <= tol * scale)
        return met & (exact | steady), met, theta[want], bounds

    def restart(args):
        V, H, m, theta, S = args
        order = jnp.argsort(_priority(m, p, which))[:keep]
        Y = matmul(S[:, order].T, V)  # (keep, n)
        V = jnp.zeros_like(V).at[:keep].set(Y)
        H = jnp.zeros_like(H).at[rows[:keep], rows[:keep]].set(theta[order])
        return V, H, jnp.asarray(keep, m.dtype)

    def body(state):
        V, H, f, beta, m, nmv, anorm, theta, S, res, _, met, want_vals, _ = state
        V, H, m = lax.cond(m == p, restart, lambda a: a[:3], (V, H, m, theta, S))
        # next basis vector: the normalized residual, or a fresh random direction orthogonal to
        # the basis when an invariant subspace has been found
        broke = beta <= thresh * anorm
        below = (rows < m).astype(dtype)

        def fresh(_):
            # a cyclic shift of a Gaussian vector: generic, and cheaper to compile than a fresh
            # draw inside the loop
            r = jnp.roll(r0, nmv)
            for _ in range(2):
                r = r - matmul(matmul(V, r) * below, V)
            return r / _norm(r)

        v = lax.cond(broke, fresh, lambda _: _safe_div(f, beta, ~broke), None)
        V = lax.dynamic_update_index_in_dim(V, v, m, axis=0)
        w = mv(v)
        anorm = jnp.maximum(anorm, _norm(w))
        mask = (rows <= m).astype(dtype)
        h = matmul(V, w) * mask
        w = w - matmul(h, V)
        h2 = matmul(V, w) * mask
        w = w - matmul(h2, V)
        h = h + h2
        H = lax.dynamic_update_index_in_dim(H, h, m, axis=1)
        H = lax.dynamic_update_index_in_dim(H, h, m, axis=0)
        beta = _norm(w)
        m = m + 1
        theta, S, res = _rayleigh_ritz(H, m, beta)
        conv, met, want_vals, bounds = check(theta, res, m, beta, anorm, met, want_vals)
        return V, H, w, beta, m, nmv + 1, anorm, theta, S, res, conv, met, want_vals, bounds

    def cond(state):
        nmv, conv = state[5], state[10]
        return ~conv & (nmv < max_matvecs)

    zero = jnp.zeros((), dtype)
    init = (
        jnp.zeros((p, n), dtype),
        jnp.zeros((p, p), dtype),
        v0,
        _norm(v0),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32),
        zero,
        jnp.zeros((p,), dtype),
        jnp.eye(p, dtype=dtype),
        jnp.full((p,), jnp.inf, dtype),
        jnp.zeros((), bool),
        jnp.zeros((), bool),
        jnp.zeros((kk,), dtype),
        jnp.full((p,), jnp.inf, dtype),
    )
    V, _, _, _, m, nmv, _, theta, S, res, conv, _, _, bounds = lax.while_loop(cond, body, init)
    want = jnp.argsort(_priority(m, p, which))[:kk]
    want = want[jnp.argsort(theta[want])]
    Y = matmul(S[:, want].T, V)
    Y = Y * vector_signs(Y, axis=-1)[:, None]
    return theta[want], Y, res[want], bounds[want], nmv, conv


def eigsh(
    key: jax.Array,
    matvec: Operator,
    x0_like: PyTree | None,
    k: int,
    *,
    which: str = "largest",
    tol: float = 1e-6,
    criterion: str = "residual",
    max_matvecs: int | None = None,
    basis_size: int | None = None,
    v0: PyTree | None = None,
) -> EigshResult:
    """A few eigenpairs at the ends of the spectrum of a symmetric operator (thick-restart Lanczos).

    The matrix-free counterpart of ``scipy.sparse.linalg.eigsh``, for operators such as
    Hessian-vector products on parameter pytrees. It builds a Krylov basis of up to
    ``basis_size`` vectors with full re-orthogonalization (twice), extracts Ritz pairs from the
    projected matrix after every matrix-vector product, and when the basis is full restarts from
    the most wanted Ritz vectors (thick restart, Wu & Simon 2000), all in one
    ``lax.while_loop`` over a static buffer. When the Krylov space becomes invariant it continues
    with a random vector orthogonal to the basis, so repeated eigenvalues and start vectors in a
    small invariant subspace are handled.

    Stopping criterion (``||A||`` below is estimated by the largest ``|Ritz value|``, a lower
    bound of the spectral norm), checked after every product:

    - ``criterion="residual"`` (default): every wanted Ritz pair ``(lambda_i, v_i)`` has
      ``r_i = ||A v_i - lambda_i v_i|| <= tol * ||A||``. For a symmetric operator an eigenvalue
      lies within ``r_i`` of ``lambda_i`` and the Ritz vector is accurate too (its angle to the
      eigenvector is about ``r_i / gap_i``).
    - ``criterion="eigenvalue"``: every wanted Ritz value has ``error_bounds[i] <= tol * ||A||``,
      with ``error_bounds[i] = min(r_i, r_i**2 / gap_i)``: the eigenvalue error of a Ritz value
      is at most ``r_i**2 / gap_i`` when ``gap_i`` is its distance to the rest of the spectrum
      (Kato-Temple; the a-posteriori bound of Lanczos), so ``tol`` is the relative accuracy of
      the eigenvalues, and fewer products are needed than for residuals below ``tol``. The
      gap is estimated from the other Ritz values: ``gap_i = min_{j != i} (|lambda_i - lambda_j|
      - r_j)``, so the estimate is an a-posteriori one, not a guarantee; the eigenvectors are
      less accurate than the eigenvalues (their angle error is about ``r_i / gap_i``;
      ``residual_norms`` tells).

    Either criterion must hold at two consecutive products with no wanted Ritz value moving by
    more than ``tol * ||A||`` in between (one confirming product; not needed when the Krylov
    space is invariant), or ``max_matvecs`` products are used. A start vector with little weight
    on the top eigenvector can let a Ritz value settle on the second eigenvalue with a small
    residual until the top eigenvector emerges; the confirming product catches most of these
    stops. Like every method from one random start vector, Lanczos can still miss an eigenvalue
    whose eigenvector the start vector nearly avoids, more often with ``"eigenvalue"``, which
    stops earlier: for ``k = 1``, ``tol = 1e-3`` and 2,000 random start vectors on a 120 x 120
    matrix with ``lambda_2 / lambda_1 = 0.9``, ``"residual"`` returned the second eigenvalue 2
    times (4 without the confirming product) and ``"eigenvalue"`` 15 times, with 12 and 10
    products in the median. ``residual_norms`` are the Lanczos estimates ``beta_m |s_m|``, equal
    to the true residuals up to round-off (about ``eps * ||A||``; so in float32 a ``tol`` below
    about ``1e-6`` measures round-off).

    ``which``: ``"largest"`` (algebraically largest, e.g. the top Hessian eigenvalues),
    ``"smallest"`` (algebraically smallest, e.g. negative curvature), ``"both_ends"`` (``k`` from
    each end, ``2 k`` pairs). In every case the eigenvalues are returned in ascending order (as
    numpy and scipy do); for ``"both_ends"`` the first ``k`` are the smallest, the last ``k`` the
    largest. Eigenvectors follow the canonical sign convention: the largest-magnitude entry of the
    flattened vector is positive. For the largest-magnitude eigenvalue use ``"both_ends"`` or
    :func:`power_iteration`.

    Limitations: like every Krylov method it sees the multiplicity of a repeated eigenvalue only
    through round-off and restarts, so it can stop before finding every copy. It is not
    differentiable itself (a while loop); the derivative of a simple eigenvalue is that of
    ``v^T A v`` with ``v = lax.stop_gradient(eigenvector)`` held fixed.

    Args:
        key: PRNG key for the start vector and for fresh directions after an invariant subspace.
        matvec: The symmetric operator: a callable on arrays/pytrees, a dense ``(n, n)`` matrix
            or a ``LinearOperator``.
        x0_like: Structure, shapes and dtype of the vectors; not used as the start vector
            (``None`` for a dense matrix or a ``LinearOperator``).
        k: Number of eigenpairs (from each end for ``"both_ends"``), static;
            ``k <= n`` (``2 k <= n`` for ``"both_ends"``).
        which: ``"largest"``, ``"smallest"`` or ``"both_ends"``.
        tol: Relative tolerance of the criterion (see above); ``0`` runs until ``max_matvecs``.
        criterion: ``"residual"`` (default) or ``"eigenvalue"`` (see above).
        max_matvecs: Budget of matrix-vector products, a Python int; default
            ``max(1000, 20 * basis_size)``; at least the number of wanted pairs.
        basis_size: Maximal number of basis vectors kept, static; default
            ``min(n, max(2 k2 + 10, 20))`` with ``k2`` the number of wanted pairs.
        v0: Optional start vector (like ``x0_like``), e.g. the eigenvector of a previous call;
            ``None`` draws a Gaussian one from ``key``.

    Returns:
        EigshResult: ``eigenvalues`` (k2,), ascending; ``eigenvectors`` (like ``x0_like``, each
        leaf with a leading axis k2, orthonormal); ``residual_norms`` (k2,); ``num_matvecs`` ();
        ``converged`` (); ``error_bounds`` (k2,), the eigenvalue error estimates
        ``min(r_i, r_i**2 / gap_i)`` (whatever the criterion), with ``k2 = k`` or ``2 k`` for
        ``"both_ends"``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.linalg import eigsh
        >>> a = jnp.diag(jnp.linspace(-1.0, 4.0, 50))
        >>> res = eigsh(jax.random.key(0), a, None, 2, which="both_ends")
        >>> np.round(np.asarray(res.eigenvalues), 3)
        array([-1.   , -0.898,  3.898,  4.   ])
        >>> bool(res.converged)
        True

        On a pytree of parameters, with a Hessian-vector product:

        >>> params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
        >>> def loss(p):
        ...     return jnp.sum(p["w"] ** 4) + jnp.sum(p["b"] ** 2)
        >>> hvp = lambda v: jax.jvp(jax.grad(loss), (params,), (v,))[1]
        >>> res = eigsh(jax.random.key(0), hvp, params, 1)
        >>> print(round(float(res.eigenvalues[0]), 3), res.eigenvectors["w"].shape)
        12.0 (1, 3, 2)
    """
    fn = "jaxla.linalg.eigsh"
    which = _checks.check_option(which, _WHICH, fn, "which")
    criterion = _checks.check_option(criterion, _CRITERIA, fn, "criterion")
    space, op_fn, op_args = _operator(fn, matvec, x0_like, "x0_like")
    n = space.n
    if which == "both_ends":
        k = _checks.check_int(k, fn, "k", min=1, max=n // 2,
                              max_doc="half the dimension n // 2 (which='both_ends')")
        kk = 2 * k
    else:
        k = _checks.check_int(k, fn, "k", min=1, max=n, max_doc="the dimension n")
        kk = k
    if basis_size is None:
        p = min(n, max(2 * kk + 10, 20))
    else:
        p = _checks.check_int(basis_size, fn, "basis_size", min=min(kk + 1, n), max=n,
                              max_doc="the dimension n")
    keep = min(kk + (p - kk) // 2, p - 1)
    if max_matvecs is None:
        max_matvecs = max(1000, 20 * p)
    max_matvecs = _checks.check_int(max_matvecs, fn, "max_matvecs", min=kk)
    tol = _check_tol(fn, tol)
    k_start, k_fresh = jax.random.split(key)
    if v0 is None:
        start = jax.random.normal(k_start, (n,), space.cdtype)
    else:
        start = _check_like(fn, "v0", v0, space, "x0_like")
    theta, Y, res, bounds, nmv, conv = _eigsh_core(
        op_fn, op_args, start, k_fresh, tol, max_matvecs, _WHICH.index(which),
        _CRITERIA.index(criterion), kk=kk, p=p, keep=keep,
    )
    ok = jnp.all(jnp.isfinite(theta)) & jnp.all(jnp.isfinite(res))
    _finite_or_raise(fn, ok, "the Ritz values")
    return EigshResult(
        eigenvalues=theta.astype(space.dtype),
        eigenvectors=space.unravel(Y),
        residual_norms=res.astype(space.dtype),
        num_matvecs=nmv,
        converged=conv & ok,
        error_bounds=bounds.astype(space.dtype),
    )


# ---------------------------------------------------------------------------------------------
# Conjugate gradients


@_jit_core("pre_fn")
def _cg_core(op_fn, op_args, b, x0, pre_args, tol, max_iters, *, pre_fn):
    def mv(v):
        return op_fn(v, *op_args)

    def solve(mv_, rhs):
        return _cg_flat(mv_, rhs, x0, lambda r: pre_fn(r, *pre_args), tol, max_iters)

    return lax.custom_linear_solve(mv, b, solve, symmetric=True, has_aux=True)


def _cg_flat(mv, b, x0, precond, tol, max_iters):
    bnorm = _norm(b)
    if x0 is None:
        x, r = jnp.zeros_like(b), b
    else:
        x, r = x0, b - mv(x0)
    z = precond(r)
    rz = _dot(r, z)
    target = tol * bnorm

    def cond(state):
        _, _, _, _, k, rnorm, ok = state
        return (rnorm > target) & (k < max_iters) & ok

    def body(state):
        x, r, p, rz, k, _, _ = state
        ap = mv(p)
        pap = _dot(p, ap)
        ok = pap > 0  # stop on a direction of non-positive curvature
        alpha = _safe_div(rz, pap, ok)
        x = x + alpha * p
        r = r - alpha * ap
        z = precond(r)
        rz_new = _dot(r, z)
        beta = _safe_div(rz_new, rz, rz != 0)
        p = z + beta * p
        return x, r, p, rz_new, k + 1, _norm(r), ok

    init = (x, r, z, rz, jnp.zeros((), jnp.int32), _norm(r), jnp.ones((), bool))
    x, r, _, _, k, rnorm, _ = lax.while_loop(cond, body, init)
    return x, (rnorm, k, rnorm <= target)


def conjugate_gradient(
    matvec: Operator,
    b: PyTree,
    *,
    x0: PyTree | None = None,
    tol: float = 1e-5,
    max_iters: int | None = None,
    preconditioner: Operator | None = None,
) -> CGResult:
    """Solve ``A x = b`` for a symmetric positive definite operator by conjugate gradients.

    Stops when ``||r|| <= tol * ||b||`` for the recursively updated residual ``r`` (the
    criterion of ``scipy.sparse.linalg.cg`` with ``atol=0``), after ``max_iters`` iterations, or
    when a search direction with ``p^T A p <= 0`` shows that ``A`` is not positive definite (then
    ``converged`` is false). In floating point the recursive residual can fall below the true
    residual ``||b - A x||`` once that reaches its attainable level (about
    ``eps * cond(A) * ||b||``).

    With a preconditioner ``M ~ A^{-1}`` (symmetric positive definite) it runs preconditioned CG.
    The solve is wrapped in ``lax.custom_linear_solve``: gradients with respect to ``b`` and to
    values the operator closes over are computed implicitly (by another CG solve), not by
    differentiating the iterations.

    Args:
        matvec: The operator ``A``: a callable on arrays/pytrees, a dense ``(n, n)`` matrix or a
            ``LinearOperator``.
        b: Right-hand side (array or pytree, finite); it sets the structure of ``x``.
        x0: Initial guess like ``b`` (default zero; a nonzero guess costs one more product).
        tol: Relative tolerance on the residual norm.
        max_iters: Maximum number of iterations, a Python int; default ``10 * n``.
        preconditioner: ``M``: a callable on vectors like ``b`` or a dense ``(n, n)`` matrix.

    Returns:
        CGResult: ``x`` (like ``b``), ``residual_norm`` (), ``num_iters`` (), ``converged`` ().

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.linalg import conjugate_gradient
        >>> a = jnp.array([[4.0, 1.0], [1.0, 3.0]])
        >>> res = conjugate_gradient(a, jnp.array([1.0, 2.0]))
        >>> np.round(np.asarray(res.x), 4), bool(res.converged)
        (array([0.0909, 0.6364]), True)
    """
    fn = "jaxla.linalg.conjugate_gradient"
    space, op_fn, op_args = _operator(fn, matvec, b, "b")
    tol = _check_tol(fn, tol)
    if max_iters is None:
        max_iters = 10 * space.n
    max_iters = _checks.check_int(max_iters, fn, "max_iters", min=0)
    _checks.check_finite(b, fn, "b")
    x0_flat = None if x0 is None else _check_like(fn, "x0", x0, space, "b")
    if preconditioner is None:
        pre_fn, pre_args = _identity, ()
    elif isinstance(preconditioner, jax.Array | np.ndarray):
        pm = _checks.as_float_array(preconditioner, fn, "preconditioner", ndim=2, doc="(n, n)")
        if tuple(pm.shape) != (space.n, space.n):
            _checks.fail(fn, f"`preconditioner` must have shape ({space.n}, {space.n}), got "
                         f"shape {tuple(pm.shape)}")
        _checks.check_finite(pm, fn, "preconditioner")
        pre_fn, pre_args = _dense_matvec, (pm.astype(space.cdtype),)
    elif callable(preconditioner):
        _check_same_structure(fn, "preconditioner", preconditioner, space, "b")

        def pre_flat(r):
            return space.ravel(preconditioner(space.unravel(r)))

        pre_fn, pre_args = _trace_operator(pre_flat, space.n, space.cdtype)
    else:
        _checks.fail(fn, "`preconditioner` must be a callable, a square matrix (n, n) or None, "
                     f"got {type(preconditioner).__name__}", TypeError)
    x, (rnorm, k, conv) = _cg_core(
        op_fn, op_args, space.ravel(b), x0_flat, pre_args, tol, max_iters, pre_fn=pre_fn
    )
    ok = jnp.all(jnp.isfinite(x)) & jnp.isfinite(rnorm)
    _finite_or_raise(fn, ok, "the solution")
    return CGResult(
        x=space.unravel(x),
        residual_norm=rnorm.astype(space.dtype),
        num_iters=k,
        converged=conv & ok,
    )


# ---------------------------------------------------------------------------------------------
# Stochastic trace estimation


@_jit_core("n", "dtype", "p", "distribution", "batch_size")
def _hutchinson_core(op_fn, op_args, key, *, n, dtype, p, distribution, batch_size):
    def quad(i):
        z = _probe(jax.random.fold_in(key, i), n, dtype, distribution)
        return _dot(z, op_fn(z, *op_args))

    vals = _map(quad, jnp.arange(p), batch_size)
    return jnp.mean(vals), jnp.std(vals, ddof=1) / math.sqrt(p)


def hutchinson_trace(
    key: jax.Array,
    matvec: Operator,
    x0_like: PyTree | None,
    num_matvecs: int,
    *,
    distribution: str = "rademacher",
    batch_size: int | None = None,
) -> TraceEstimate:
    """Hutchinson's stochastic estimate of ``trace(A)``.

    Averages ``z_i^T A z_i`` over ``p = num_matvecs`` independent probe vectors ``z_i`` with
    ``E[z z^T] = I`` (Rademacher signs or standard Gaussian entries), an unbiased estimate of the
    trace. ``std_error`` is the sample standard deviation of the ``p`` values divided by
    ``sqrt(p)``. Rademacher probes minimize the variance, ``2 (||A||_F^2 - sum_i A_ii^2) / p`` for
    symmetric ``A``. The products are batched with ``vmap`` over the probes (all at once, or
    ``batch_size`` at a time to bound memory).

    Args:
        key: PRNG key for the probes.
        matvec: The square operator: a callable on arrays/pytrees, a dense ``(n, n)`` matrix or
            a ``LinearOperator``.
        x0_like: Structure, shapes and dtype of the vectors (``None`` for a dense matrix or a
            ``LinearOperator``).
        num_matvecs: Number of probes ``p >= 2`` (one product each), static.
        distribution: ``"rademacher"`` (default) or ``"gaussian"``.
        batch_size: Probes per vectorized batch, static; ``None`` does all at once.

    Returns:
        TraceEstimate: ``estimate`` (), ``std_error`` (), ``num_matvecs`` ().

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxla.linalg import hutchinson_trace
        >>> a = jnp.diag(jnp.arange(1.0, 101.0))
        >>> est = hutchinson_trace(jax.random.key(0), a, None, 20)
        >>> print(round(float(est.estimate), 1))  # diagonal: exact for Rademacher probes
        5050.0
    """
    fn = "jaxla.linalg.hutchinson_trace"
    distribution = _checks.check_option(distribution, _DISTRIBUTIONS, fn, "distribution")
    space, op_fn, op_args = _operator(fn, matvec, x0_like, "x0_like")
    p = _checks.check_int(num_matvecs, fn, "num_matvecs", min=2)
    batch_size = _check_batch_size(fn, batch_size)
    est, se = _hutchinson_core(op_fn, op_args, key, n=space.n, dtype=space.cdtype, p=p,
                               distribution=distribution, batch_size=batch_size)
    ok = jnp.isfinite(est) & jnp.isfinite(se)
    _finite_or_raise(fn, ok, "the estimate")
    return TraceEstimate(est.astype(space.dtype), se.astype(space.dtype),
                         jnp.asarray(p, jnp.int32))


def _orthonormal_rows(Y: jax.Array) -> jax.Array:
    """Orthonormal rows spanning the rows of ``Y`` (s, n), by Gram-Schmidt twice.

    Rows that are numerically dependent on the previous ones become zero. Written with lax
    loops and matmuls rather than a LAPACK QR: batched LAPACK calls under ``vmap`` can deadlock
    the CPU runtime when two of them run concurrently on a small thread pool.
    """
    s = Y.shape[0]
    thresh = _BREAKDOWN_ULPS * eps(Y.dtype)

    def body(i, Q):
        y = Y[i]
        v = y
        for _ in range(2):  # twice is enough
            v = v - matmul(matmul(Q, v), Q)  # rows >= i of Q are zero
        nv = _norm(v)
        keep = nv > thresh * _norm(y)
        return Q.at[i].set(_safe_div(v, nv, keep))

    return lax.fori_loop(0, s, body, jnp.zeros_like(Y))


@_jit_core("n", "dtype", "m", "distribution", "batch_size")
def _hutchpp_core(op_fn, op_args, key, *, n, dtype, m, distribution, batch_size):
    def mv(v):
        return op_fn(v, *op_args)

    s = m // 3
    g = m - 2 * s
    k_sketch, k_res = jax.random.split(key)

    def sketch(i):
        return mv(_probe(jax.random.fold_in(k_sketch, i), n, dtype, distribution))

    Y = _map(sketch, jnp.arange(s), batch_size)  # (s, n) = (A S)^T
    Q = _orthonormal_rows(Y)  # (s, n)
    AQ = _map(mv, Q, batch_size)
    t_top = jnp.sum(Q * AQ)

    def quad(i):
        z = _probe(jax.random.fold_in(k_res, i), n, dtype, distribution)
        z = z - matmul(matmul(Q, z), Q)
        return _dot(z, mv(z))

    vals = _map(quad, jnp.arange(g), batch_size)
    return t_top + jnp.mean(vals), jnp.std(vals, ddof=1) / math.sqrt(g)


def hutchpp_trace(
    key: jax.Array,
    matvec: Operator,
    x0_like: PyTree | None,
    num_matvecs: int,
    *,
    distribution: str = "rademacher",
    batch_size: int | None = None,
) -> TraceEstimate:
    """Hutch++ estimate of ``trace(A)`` (Meyer, Musco, Musco & Woodruff 2021).

    Splits the budget ``m = num_matvecs`` into ``s = m // 3`` products ``A S`` with random probes,
    whose orthonormal basis ``Q`` (``n x s``) captures the dominant part of the spectrum,
    ``s`` products ``A Q`` giving that part's trace ``trace(Q^T A Q)`` exactly, and the remaining
    ``g = m - 2 s`` products for Hutchinson's estimate of the trace of the deflated operator
    ``(I - Q Q^T) A (I - Q Q^T)``. The estimate is unbiased, and its error falls like ``1/m``
    rather than ``1/sqrt(m)`` when the spectrum decays (e.g. for Hessians and kernel matrices).

    ``std_error`` is the standard error of the residual Hutchinson part (sample standard
    deviation of its ``g`` values over ``sqrt(g)``), conditional on the sketch ``Q``; the
    projected part is exact given ``Q``.

    Args:
        key: PRNG key for the probes.
        matvec: The square operator: a callable on arrays/pytrees, a dense ``(n, n)`` matrix or
            a ``LinearOperator``.
        x0_like: Structure, shapes and dtype of the vectors (``None`` for a dense matrix or a
            ``LinearOperator``).
        num_matvecs: Budget ``m``, ``4 <= m``, with ``m // 3 <= n``, static.
        distribution: Distribution of the probes, ``"rademacher"`` (default) or ``"gaussian"``.
        batch_size: Products per vectorized batch, static; ``None`` does each group at once.

    Returns:
        TraceEstimate: ``estimate`` (), ``std_error`` (), ``num_matvecs`` ().

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxla.linalg import hutchpp_trace
        >>> a = jnp.diag(2.0 ** -jnp.arange(30.0))  # fast-decaying spectrum, trace ~ 2
        >>> est = hutchpp_trace(jax.random.key(0), a, None, 30)
        >>> print(round(float(est.estimate), 2), round(float(jnp.trace(a)), 2))
        2.0 2.0
    """
    fn = "jaxla.linalg.hutchpp_trace"
    distribution = _checks.check_option(distribution, _DISTRIBUTIONS, fn, "distribution")
    space, op_fn, op_args = _operator(fn, matvec, x0_like, "x0_like")
    m = _checks.check_int(num_matvecs, fn, "num_matvecs", min=4, max=3 * space.n + 2,
                          max_doc="3 * n + 2 (the sketch uses num_matvecs // 3 <= n products)")
    batch_size = _check_batch_size(fn, batch_size)
    est, se = _hutchpp_core(op_fn, op_args, key, n=space.n, dtype=space.cdtype, m=m,
                            distribution=distribution, batch_size=batch_size)
    ok = jnp.isfinite(est) & jnp.isfinite(se)
    _finite_or_raise(fn, ok, "the estimate")
    return TraceEstimate(est.astype(space.dtype), se.astype(space.dtype),
                         jnp.asarray(m, jnp.int32))


# ---------------------------------------------------------------------------------------------
# Spectral density by stochastic Lanczos quadrature


@_jit_core("n", "dtype", "p", "m", "num_points", "distribution", "batch_size")
def _slq_core(op_fn, op_args, key, grid, sigma, *, n, dtype, p, m, num_points, distribution,
              batch_size):
    def mv(v):
        return op_fn(v, *op_args)

    def one(i):
        z = _probe(jax.random.fold_in(key, i), n, dtype, distribution)
        alphas, betas, _, _, used, _ = _lanczos_flat(mv, z, m, True)
        # after a breakdown the tail of T is zero; pad its diagonal with alphas[0], a value
        # inside the spectrum, so the padding adds only zero-weight nodes within the range
        diag = jnp.where(jnp.arange(m) < used, alphas, alphas[0])
        t = jnp.diag(diag) + jnp.diag(betas[: m - 1], 1) + jnp.diag(betas[: m - 1], -1)
        theta, S = jnp.linalg.eigh(t)
        return theta, S[0] ** 2, used

    nodes, weights, used = _map(one, jnp.arange(p), batch_size)
    lo, hi = jnp.min(nodes), jnp.max(nodes)
    if sigma is None:
        spread = hi - lo
        scale = jnp.maximum(jnp.abs(lo), jnp.abs(hi))
        sig = jnp.where(spread > 0, spread / 100, jnp.where(scale > 0, scale / 100, 1.0))
        sig = sig.astype(dtype)
    else:
        sig = jnp.asarray(sigma, dtype)
    if grid is None:
        grid = jnp.linspace(lo - 5 * sig, hi + 5 * sig, num_points, dtype=dtype)
    else:
        grid = grid.astype(dtype)
    z = (grid[:, None, None] - nodes[None, :, :]) / sig
    kernel = jnp.exp(-0.5 * z**2) / (sig * math.sqrt(2 * math.pi))
    density = jnp.sum(kernel * weights[None, :, :], axis=(1, 2)) / p
    total = jnp.trapezoid(density, grid)
    density = _safe_div(density, total, total > 0)
    return nodes, weights, grid, density, jnp.sum(used).astype(jnp.int32)


def spectral_density(
    key: jax.Array,
    matvec: Operator,
    x0_like: PyTree | None,
    *,
    num_probes: int,
    num_matvecs: int,
    grid: jax.Array | int | None = None,
    sigma: float | None = None,
    distribution: str = "rademacher",
    batch_size: int | None = None,
) -> SpectralDensity:
    """Spectral density of a symmetric operator by stochastic Lanczos quadrature.

    For each of ``p = num_probes`` random unit vectors ``v`` (normalized Rademacher or Gaussian
    probes), runs ``m = num_matvecs`` Lanczos steps with full re-orthogonalization from ``v`` and
    eigendecomposes the tridiagonal matrix ``T = S diag(nodes) S^T``: the Ritz values (``nodes``)
    and the squared first components of ``S`` (``weights``, summing to 1 per probe) form the
    ``m``-point Gauss quadrature rule of the measure ``sum_i (v^T u_i)^2 delta(t - lambda_i)``,
    whose expectation is the spectral density ``(1/n) sum_i delta(t - lambda_i)`` (Ubaru, Chen &
    Saad 2017; Ghorbani, Krishnan & Xiao 2019; PyHessian). The density is the average over probes
    of the quadrature rules smoothed with a Gaussian of width ``sigma``, evaluated on ``grid`` and
    normalized so that its trapezoid-rule integral over the grid is 1.

    Moments: ``n * sum(weights * nodes**j) / p`` estimates ``trace(A**j)`` (exact in expectation
    for ``j <= 2 m - 1``); in particular ``n * sum(weights * nodes) / p`` is Hutchinson's trace
    estimate with the same probes. Nodes of the quadrature include the extreme eigenvalues after
    a few dozen steps, so outliers (e.g. the top Hessian eigenvalues) show up as isolated peaks.

    Args:
        key: PRNG key for the probes.
        matvec: The symmetric operator: a callable on arrays/pytrees, a dense ``(n, n)`` matrix
            or a ``LinearOperator``.
        x0_like: Structure, shapes and dtype of the vectors (``None`` for a dense matrix or a
            ``LinearOperator``).
        num_probes: Number of probe vectors ``p >= 1``, static.
        num_matvecs: Lanczos steps per probe ``1 <= m <= n``, static (``p * m`` products in all).
        grid: Points where the density is evaluated: a 1-D ascending array, or a number of points
            (static int >= 2) spanning ``[min(nodes) - 5 sigma, max(nodes) + 5 sigma]``;
            ``None`` means 256 such points.
        sigma: Width of the Gaussian smoothing; default ``(max(nodes) - min(nodes)) / 100``.
        distribution: ``"rademacher"`` (default) or ``"gaussian"`` probes.
        batch_size: Probes per vectorized batch, static; ``None`` does all at once.

    Returns:
        SpectralDensity: ``nodes`` (p, m), ``weights`` (p, m), ``grid`` (g,), ``density`` (g,),
        ``num_matvecs`` ().

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from jaxla.linalg import spectral_density
        >>> a = jnp.diag(jnp.linspace(0.0, 1.0, 100))
        >>> sd = spectral_density(jax.random.key(0), a, None, num_probes=4, num_matvecs=20)
        >>> print(round(float(jnp.trapezoid(sd.density, sd.grid)), 4))
        1.0
        >>> print(round(float(100 * jnp.sum(sd.weights * sd.nodes) / 4), 2))  # trace = 50
        50.0
    """
    fn = "jaxla.linalg.spectral_density"
    distribution = _checks.check_option(distribution, _DISTRIBUTIONS, fn, "distribution")
    space, op_fn, op_args = _operator(fn, matvec, x0_like, "x0_like")
    n = space.n
    p = _checks.check_int(num_probes, fn, "num_probes", min=1)
    m = _checks.check_int(num_matvecs, fn, "num_matvecs", min=1, max=n,
                          max_doc="the dimension n")
    batch_size = _check_batch_size(fn, batch_size)
    grid_arr = None
    num_points = 256
    if grid is not None:
        if isinstance(grid, int | np.integer) and not isinstance(grid, bool):
            num_points = _checks.check_int(grid, fn, "grid", min=2)
        else:
            grid_arr = _checks.as_float_array(grid, fn, "grid", ndim=1, doc="(g,)")
            if grid_arr.shape[0] < 2:
                _checks.fail(fn, f"`grid` must have at least 2 points, got shape "
                             f"{tuple(grid_arr.shape)}")
            _checks.check_finite(grid_arr, fn, "grid")
    if sigma is not None:
        sigma = _checks.check_positive(sigma, fn, "sigma")

    nodes, weights, grid_c, density, used = _slq_core(
        op_fn, op_args, key, grid_arr, sigma, n=n, dtype=space.cdtype, p=p, m=m,
        num_points=num_points, distribution=distribution, batch_size=batch_size,
    )
    ok = jnp.all(jnp.isfinite(nodes)) & jnp.all(jnp.isfinite(weights))
    _finite_or_raise(fn, ok, "the quadrature nodes")
    return SpectralDensity(
        nodes=nodes.astype(space.dtype),
        weights=weights.astype(space.dtype),
        grid=grid_c.astype(space.dtype),
        density=density.astype(space.dtype),
        num_matvecs=used,
    )
