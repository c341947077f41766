"""Curvature of a loss: Hessian and Gauss-Newton spectra, traces and densities, per layer.

Every function here is "the right operator + the Krylov engine": it builds a matrix-free
curvature-vector product on the parameter pytree (:func:`jaxla.autodiff.hvp` for the Hessian,
:func:`jaxla.autodiff.ggn_vp` for the generalized Gauss-Newton matrix) and hands it to
:mod:`jaxla.linalg.krylov` (:func:`~jaxla.linalg.eigsh`, :func:`~jaxla.linalg.hutchpp_trace`,
:func:`~jaxla.linalg.hutchinson_trace`, :func:`~jaxla.linalg.spectral_density`). Results are
krylov's result tuples, so every answer carries its error bars: eigenvalue error estimates,
residual norms and a converged flag for eigenpairs, a standard error for traces, and the number
of curvature-vector products.

The loss
--------
``loss_fn(params, batch) -> scalar`` by default. For the Gauss-Newton matrix the loss must be
split into a model and a loss on its outputs: pass ``model_fn(params, batch) -> outputs`` and
then ``loss_fn(outputs, batch) -> scalar``; the loss is ``loss_fn(model_fn(params, batch), batch)``
(the batch is handed to both, so each picks what it needs, e.g. inputs and labels). The same pair
works with ``curvature="hessian"``. A loss that does not return a real scalar raises at trace time
(checked with ``jax.eval_shape``).

``curvature="hessian"`` is the Hessian ``H = d^2 L / d params^2``; ``curvature="ggn"`` is
``G = J^T H_out J`` with ``J`` the Jacobian of the outputs and ``H_out`` the Hessian of the loss
in the outputs; ``G`` is positive semi-definite for losses convex in the outputs (squared error,
softmax cross-entropy) and equals ``H`` minus the terms with second derivatives of the model.

The data
--------
``data`` is one batch (a pytree of arrays that the loss accepts), or several batches with
identical structures, shapes and dtypes: a ``list`` of batches, or a ``tuple`` whose every
element is itself a container (a tuple ``(x, y)`` of arrays is one batch; wrap a batch in a list,
``[batch]``, to remove any doubt). The curvature of several batches is the **mean** of the per-batch
curvatures, each batch weighted equally: the curvature of the mean of the per-batch losses. When
the loss is a mean over the examples of its batch and the batches have equal sizes, that is the
curvature of the mean loss over the concatenated data (for a loss that sums over examples,
multiply by the number of batches to get the curvature of the total). The batches are stacked
once along a new leading axis and every curvature-vector product runs ``lax.scan`` over them
inside one compiled program; ``num_matvecs`` counts full-data products.

Per-layer curvature
-------------------
``params_filter`` selects leaves by path (glob strings or compiled regular expressions, as in
:mod:`jaxla._paths`: ``"layers_0/*"``, ``"*/w"``, ``re.compile(r"layers_[01]/w")``). The operator is
then restricted to the selected leaves, the others held fixed: its matrix is the diagonal block of
the full curvature for those leaves (e.g. the Hessian block of one layer), and its dimension ``n``
is their number of entries. Eigenvectors are returned as full parameter pytrees, with zeros in the
leaves that were not selected. Leaves held fixed may have any dtype (integer counters, ...); the
selected ones must be floating. A per-layer view is one call per layer, e.g.
``{name: hessian_eigs(key, loss_fn, params, data, params_filter=f"{name}/*") for name in
params}``.

Numerics
--------
Computations run in the parameters' dtype (float16/bfloat16 parameters are upcast to float32 for
the computation); results are returned in the parameters' dtype. For one batch the operator is
linearized once (``jax.linearize`` of the gradient: the forward and backward passes at ``params``
are done once, before the Krylov loop), so each product costs only its tangent part, about two
gradient evaluations; for several batches each product recomputes those passes batch by batch
inside the scan (about three gradient evaluations per batch), so memory stays that of one batch.
A float32 model gives accurate float32 curvature (eigenvalue errors near ``tol * ||H||`` or
below). Shape-setting integers and iteration budgets are static Python ints and options are
keyword-only strings; ``params``, ``data`` and ``key`` may be traced, so the functions work inside
``jax.jit`` (call them inside your own ``jit`` to compile once for repeated use, as
:func:`sharpness_tracker` does). Called eagerly,
NaN/Inf in ``params`` or ``data``, or a loss whose curvature is not finite, raise ``ValueError``.

Dimension letters: ``n`` the number of (selected) parameter entries, ``k`` eigenpairs (``k2 = k``
or ``2 k`` for ``which="both_ends"``), ``p`` probes, ``m`` Lanczos steps, ``g`` grid points.

References
----------
- B. A. Pearlmutter (1994), fast exact multiplication by the Hessian.
- N. N. Schraudolph (2002), fast curvature matrix-vector products.
- B. Ghorbani, S. Krishnan and Y. Xiao (2019), an investigation into neural net optimization via
  Hessian eigenvalue density.
- Z. Yao, A. Gholami, K. Keutzer and M. Mahoney (2020), PyHessian: neural networks through the
  lens of the Hessian.
- J. Cohen, S. Kaur, Y. Li, J. Z. Kolter and A. Talwalkar (2021), gradient descent on neural
  networks typically occurs at the edge of stability.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxla import _checks, _paths
from jaxla._numerics import upcast
from jaxla.autodiff import (
    _check_callable,
    _check_float_output,
    _check_scalar_output,
    _ggn_vp,
    _hvp,
)
from jaxla.linalg import krylov
from jaxla.linalg.krylov import EigshResult, SpectralDensity, TraceEstimate

__all__ = [
    "hessian_density",
    "hessian_eigs",
    "hessian_trace",
    "max_stable_lr",
    "sharpness_tracker",
]

PyTree = Any
LossFn = Callable[[PyTree, Any], jax.Array]

_WHICH = ("largest", "smallest", "both_ends")
_CRITERIA = ("residual", "eigenvalue")
_CURVATURES = ("hessian", "ggn")
_METHODS = ("hutch++", "hutchinson")
_DISTRIBUTIONS = ("rademacher", "gaussian")


# ---------------------------------------------------------------------------------------------
# Data: one batch or a stack of batches


class _Data(NamedTuple):
    batches: PyTree  # one batch, or the batches stacked along a new leading axis
    num_batches: int  # 0 for a single (unstacked) batch


def _is_leaf(x: Any) -> bool:
    return jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(x)) and x is not None


def _is_sequence_of_batches(data: Any) -> bool:
    if isinstance(data, list):
        return True
    return type(data) is tuple and len(data) > 0 and not any(_is_leaf(e) for e in data)


def _spec(leaf: Any) -> tuple[tuple[int, ...], Any]:
    return tuple(int(d) for d in np.shape(leaf)), jnp.result_type(leaf)


def _describe(batch: Any, what: str) -> str:
    leaves, treedef = jax.tree_util.tree_flatten(batch)
    if what == "dtypes":
        items = [str(_spec(x)[1]) for x in leaves]
    else:
        items = [_spec(x)[0] for x in leaves]
    if treedef == jax.tree_util.tree_structure(0):
        return f"{what[:-1]} {items[0]}"
    return str(jax.tree_util.tree_unflatten(treedef, items))


def _prepare_data(fn: str, data: Any) -> _Data:
    """Validate ``data`` and stack a sequence of batches along a new leading axis."""
    if _is_sequence_of_batches(data) or (type(data) is tuple and len(data) == 0):
        batches = list(data)
        if not batches:
            _checks.fail(fn, "`data` must be a batch (a pytree of arrays) or a non-empty sequence "
                         f"of batches, got an empty {type(data).__name__}")
    else:
        batches = [data]
    leaves0, def0 = jax.tree_util.tree_flatten(batches[0])
    specs0 = [_spec(x) for x in leaves0]
    for i, batch in enumerate(batches[1:], start=1):
        leaves, treedef = jax.tree_util.tree_flatten(batch)
        specs = [_spec(x) for x in leaves]
        if treedef != def0 or [s for s, _ in specs] != [s for s, _ in specs0]:
            _checks.fail(fn, "`data` batches must have identical structures and shapes, got "
                         f"batch 0 with {_describe(batches[0], 'shapes')} and batch {i} with "
                         f"{_describe(batch, 'shapes')}")
        if [d for _, d in specs] != [d for _, d in specs0]:
            _checks.fail(fn, "`data` batches must have identical dtypes, got batch 0 with "
                         f"{_describe(batches[0], 'dtypes')} and batch {i} with "
                         f"{_describe(batch, 'dtypes')}")
    for batch in batches:
        _checks.check_finite(batch, fn, "data")
    if len(batches) == 1:
        return _Data(batches[0], 0)
    stacked = jax.tree_util.tree_map(lambda *ls: jnp.stack([jnp.asarray(x) for x in ls]),
                                     *batches)
    return _Data(stacked, len(batches))


def _first_batch(data: _Data) -> PyTree:
    """The structure of one batch (ShapeDtypeStructs when the data is stacked)."""
    if not data.num_batches:
        return data.batches
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(tuple(x.shape[1:]), x.dtype), data.batches
    )


# ---------------------------------------------------------------------------------------------
# The operator


class _Problem(NamedTuple):
    """The validated, static description of a curvature problem."""

    loss_fn: LossFn
    model_fn: Callable[[PyTree, Any], PyTree] | None
    curvature: str
    selected: tuple[int, ...]  # indices of the selected leaves (tree_leaves order)
    n: int  # number of selected entries
    out_dtype: Any  # common dtype of the selected leaves as given
    num_batches: int  # 0 for one batch


def _as_arrays(tree: PyTree) -> PyTree:
    return jax.tree_util.tree_map(lambda x: x if isinstance(x, jax.Array) else jnp.asarray(x),
                                  tree)


def _check_options(fn: str, loss_fn: Any, model_fn: Any, curvature: str) -> str:
    _check_callable(loss_fn, fn, "loss_fn")
    curvature = _checks.check_option(curvature, _CURVATURES, fn, "curvature")
    if model_fn is not None:
        _check_callable(model_fn, fn, "model_fn")
    elif curvature == "ggn":
        _checks.fail(fn, "`model_fn` must be given when curvature='ggn' (the Gauss-Newton matrix "
                     "needs the loss split as loss_fn(model_fn(params, batch), batch)), got None")
    return curvature


def _problem(
    fn: str,
    loss_fn: LossFn,
    params: PyTree,
    data: _Data,
    *,
    curvature: str,
    params_filter: Any,
    model_fn: Callable[[PyTree, Any], PyTree] | None,
) -> _Problem:
    """Validate the parameters, the filter and the loss (on shapes only)."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    if not flat:
        _checks.fail(fn, f"`params` must be an array or a non-empty pytree of arrays, got "
                     f"{params!r}")
    leaves = [leaf for _, leaf in flat]
    _checks.check_finite(params, fn, "params")
    if params_filter is None:
        mask = [True] * len(leaves)
    else:
        mask = jax.tree_util.tree_leaves(
            _paths.select(params, params_filter, fn=fn, include_name="params_filter")
        )
        if not any(mask):
            _checks.fail(fn, f"`params_filter` must select at least one leaf, got "
                         f"{params_filter!r}, which selects none of "
                         f"{', '.join(repr(p) for p in _paths.leaf_paths(params))}")
    selected = tuple(i for i, m in enumerate(mask) if m)
    for i in selected:  # leaves held fixed may be of any type (integer counters, ...)
        if not jnp.issubdtype(leaves[i].dtype, jnp.floating):
            path = _paths.path_str(flat[i][0])
            where = f" at leaf '{path}'" if path else ""
            _checks.fail(fn, f"`params` must have real floating dtype(s) in the selected leaves, "
                         f"got dtype {leaves[i].dtype}{where}; cast them first, e.g. to "
                         f"jnp.float32, or leave them out with `params_filter`", TypeError)

    # the loss must be a real scalar (checked on shapes only)
    batch0 = _first_batch(data)
    if model_fn is None:
        _check_scalar_output(jax.eval_shape(loss_fn, params, batch0), fn, "loss_fn")
    else:
        out = jax.eval_shape(model_fn, params, batch0)
        _check_float_output(out, fn, "model_fn")
        _check_scalar_output(jax.eval_shape(loss_fn, out, batch0), fn, "loss_fn",
                             "loss_fn(model_fn(params, batch), batch)")
    n = int(sum(math.prod(leaves[i].shape) for i in selected))
    out_dtype = jnp.result_type(*(leaves[i].dtype for i in selected))
    return _Problem(loss_fn, model_fn, curvature, selected, n, out_dtype, data.num_batches)


class _Operator(NamedTuple):
    matvec: Callable[[list[jax.Array]], list[jax.Array]]  # on the selected leaves
    like: list[jax.ShapeDtypeStruct]  # the selected leaves, in the compute dtype
    expand: Callable[[list[jax.Array]], PyTree]  # (k, ...) selected leaves -> full pytree


def _operator(prob: _Problem, params: PyTree, batches: PyTree) -> _Operator:
    """The curvature-vector product on the selected leaves (``params``, ``batches`` traced)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    loss_fn, model_fn, selected = prob.loss_fn, prob.model_fn, prob.selected
    leaves_c = [upcast(x) if jnp.issubdtype(x.dtype, jnp.floating) else x for x in leaves]
    sel_c = [leaves_c[i] for i in selected]

    def merge(sel: list[jax.Array]) -> PyTree:
        full = list(leaves_c)
        for i, leaf in zip(selected, sel, strict=True):
            full[i] = leaf
        return jax.tree_util.tree_unflatten(treedef, full)

    def total_loss(sel: list[jax.Array], batch: PyTree) -> jax.Array:
        if model_fn is None:
            return loss_fn(merge(sel), batch)
        return loss_fn(model_fn(merge(sel), batch), batch)

    def one_batch(vs: list[jax.Array], batch: PyTree) -> list[jax.Array]:
        """The product on one batch, primal passes included (inside the scan over batches)."""
        if prob.curvature == "ggn":
            return _ggn_vp(lambda s, b: model_fn(merge(s), b), loss_fn, sel_c, batch, batch, vs)
        return _hvp(lambda s: total_loss(s, batch), sel_c, vs)

    def linearized(batch: PyTree) -> Callable[[list[jax.Array]], list[jax.Array]]:
        """The product on one fixed batch with the primal passes done once, here.

        ``jax.linearize`` evaluates the forward and backward passes at ``params`` once and keeps
        what the tangent computation needs, so each product costs only the linear (tangent)
        part: about two gradient evaluations instead of three for forward-over-reverse.
        """
        if prob.curvature == "ggn":
            out, jvp_fn = jax.linearize(lambda s: model_fn(merge(s), batch), sel_c)
            _, h_out = jax.linearize(jax.grad(lambda o: loss_fn(o, batch)), out)
            vjp_fn = jax.linear_transpose(jvp_fn, sel_c)
            return lambda vs: vjp_fn(h_out(jvp_fn(vs)))[0]
        _, lin = jax.linearize(jax.grad(lambda s: total_loss(s, batch)), sel_c)
        return lin

    num_batches = prob.num_batches
    if not num_batches:
        matvec = linearized(batches)
    else:

        def matvec(vs: list[jax.Array]) -> list[jax.Array]:
            def body(acc, batch):
                return [a + b for a, b in zip(acc, one_batch(vs, batch), strict=True)], None

            acc, _ = lax.scan(body, [jnp.zeros_like(v) for v in vs], batches)
            return [a / num_batches for a in acc]

    like = [jax.ShapeDtypeStruct(tuple(x.shape), x.dtype) for x in sel_c]

    def expand(vecs: list[jax.Array]) -> PyTree:
        kk = vecs[0].shape[0]
        full = [jnp.zeros((kk, *leaf.shape), leaf.dtype) for leaf in leaves]
        for i, vec in zip(selected, vecs, strict=True):
            full[i] = vec.astype(leaves[i].dtype)
        return jax.tree_util.tree_unflatten(treedef, full)

    return _Operator(matvec, like, expand)


def _run(fn: str, compute: Callable[..., Any], finite: Callable[[Any], jax.Array], what: str,
         *args: Any) -> Any:
    """``compute(*args)`` as one compiled program; a non-finite result raises eagerly.

    The linearization and the Krylov loop are compiled together (called eagerly, nothing runs
    operation by operation); ``params`` and ``data`` are arguments of the program, not constants.
    """
    out = jax.jit(compute)(*args)
    ok = finite(out)
    if _checks.is_concrete(ok) and not bool(ok):
        _checks.fail(fn, f"`loss_fn` must have finite curvature at `params` on `data`, got NaN "
                     f"or Inf in {what}")
    return out


def _check_batch_size(fn: str, batch_size: Any) -> int | None:
    return None if batch_size is None else _checks.check_int(batch_size, fn, "batch_size", min=1)


# ---------------------------------------------------------------------------------------------
# Eigenpairs


def _eigs(
    fn: str,
    key: jax.Array,
    loss_fn: LossFn,
    params: PyTree,
    data: _Data,
    *,
    k: int,
    which: str,
    tol: float,
    criterion: str,
    max_matvecs: int | None,
    basis_size: int | None,
    curvature: str,
    params_filter: Any,
    model_fn: Any,
) -> EigshResult:
    params = _as_arrays(params)
    prob = _problem(fn, loss_fn, params, data, curvature=curvature, params_filter=params_filter,
                    model_fn=model_fn)
    n = prob.n
    if which == "both_ends":
        k = _checks.check_int(k, fn, "k", min=1, max=n // 2,
                              max_doc="half the number of (selected) parameters n // 2 "
                              "(which='both_ends')")
        kk = 2 * k
    else:
        k = _checks.check_int(k, fn, "k", min=1, max=n,
                              max_doc="the number of (selected) parameters n")
        kk = k
    if max_matvecs is not None:
        max_matvecs = _checks.check_int(max_matvecs, fn, "max_matvecs", min=kk)
    if basis_size is not None:
        basis_size = _checks.check_int(basis_size, fn, "basis_size", min=min(kk + 1, n), max=n,
                                       max_doc="the number of (selected) parameters n")

    def compute(key, params, batches):
        op = _operator(prob, params, batches)
        res = krylov.eigsh(key, op.matvec, op.like, k, which=which, tol=tol,
                           criterion=criterion, max_matvecs=max_matvecs, basis_size=basis_size)
        return EigshResult(
            eigenvalues=res.eigenvalues.astype(prob.out_dtype),
            eigenvectors=op.expand(res.eigenvectors),
            residual_norms=res.residual_norms.astype(prob.out_dtype),
            num_matvecs=res.num_matvecs,
            converged=res.converged,
            error_bounds=res.error_bounds.astype(prob.out_dtype),
        )

    def finite(res):
        return jnp.all(jnp.isfinite(res.eigenvalues)) & jnp.all(jnp.isfinite(res.residual_norms))

    return _run(fn, compute, finite, "the Ritz values", key, params, data.batches)


def hessian_eigs(
    key: jax.Array,
    loss_fn: LossFn,
    params: PyTree,
    data: PyTree | Sequence[PyTree],
    *,
    k: int = 1,
    which: str = "largest",
    tol: float = 1e-3,
    criterion: str = "residual",
    max_matvecs: int | None = None,
    basis_size: int | None = None,
    curvature: str = "hessian",
    params_filter: Any = None,
    model_fn: Callable[[PyTree, Any], PyTree] | None = None,
) -> EigshResult:
    """Extreme eigenvalues and eigenvectors of the Hessian (or GGN) of a loss, matrix-free.

    Runs :func:`jaxla.linalg.eigsh` (thick-restarted Lanczos with full re-orthogonalization) on
    the curvature-vector product of the loss at ``params`` over ``data``: ``k`` eigenpairs at the
    top (``"largest"``: the sharpest directions), the bottom (``"smallest"``: the most negative
    curvature) or both (``"both_ends"``). Each Lanczos step costs exactly one curvature-vector
    product and convergence is checked after every one. Typically 7 to 40 products give the top
    eigenvalue to ``tol`` (few when it is well separated, more in a tight cluster). Power
    iteration (PyHessian's method) converges at the rate ``lambda_2 / lambda_1``, so on a
    clustered top spectrum it needs several times more products for the same accuracy, and its
    usual rule (stop when the estimate changes by less than ``tol``, relatively) can stop well
    before the estimate is accurate; it cannot find the bottom of an indefinite spectrum
    (``benchmarks/curvature.py`` compares the two).

    Accuracy: ``tol`` is relative to ``||C||`` (``C`` the curvature operator, ``||C||``
    estimated by the largest ``|Ritz value|``; for the top eigenvalue of a Hessian whose
    positive end dominates this is ``lambda_1`` itself). With ``criterion="residual"``
    (default) the iteration stops when every wanted pair has
    ``r_i = ||C v_i - lambda_i v_i|| <= tol * ||C||``: an eigenvalue lies within ``r_i`` of
    each returned value, and the eigenvectors are accurate too. ``criterion="eigenvalue"``
    stops when every wanted Ritz value has an error estimate
    ``error_bounds[i] = min(r_i, r_i**2 / gap_i) <= tol * ||C||``, ``gap_i`` the distance to the
    other Ritz values (less their residuals): the eigenvalue error of a Ritz value is at most
    ``r**2 / gap`` (Kato-Temple), far smaller than ``r`` once the pair has separated, so it
    needs fewer products (medians of 8 instead of 10 for the top eigenvalue of the trained MLP
    in ``benchmarks/curvature.py``, 31 instead of 35 at its initialization). The gap is
    estimated, so this is an a-posteriori estimate rather than a guarantee, and the
    eigenvectors are less accurate than the eigenvalues (their angle error is about
    ``r_i / gap_i``). Either rule must hold at two
    consecutive products without a wanted Ritz value moving by more than ``tol * ||C||`` (one
    confirming product), which catches most stops at the second eigenvalue from a start vector
    with little weight on the top eigenvector; like every method from one random start vector
    (power iteration included) it can still, rarely, miss an eigenvalue whose eigenvector the
    start vector nearly avoids; that is rarer with ``"residual"`` (measured rates in
    :func:`jaxla.linalg.eigsh`). Check ``converged``, ``error_bounds`` and ``residual_norms``.

    Args:
        key: PRNG key for the start vector.
        loss_fn: ``loss_fn(params, batch) -> scalar``, or with ``model_fn``,
            ``loss_fn(outputs, batch) -> scalar`` (see the module documentation).
        params: The parameters: a pytree of real floating arrays (a dict from
            :func:`jaxla.nn.mlp_init`, a Flax/Equinox parameter tree, an array).
        data: One batch, or a list of batches of identical shapes (mean curvature; see the
            module documentation).
        k: Number of eigenpairs (from each end for ``"both_ends"``), static;
            ``k <= n`` (``2 k <= n`` for ``"both_ends"``), ``n`` the number of selected entries.
        which: ``"largest"``, ``"smallest"`` or ``"both_ends"``.
        tol: Relative accuracy of the eigenvalues (see above); ``0`` runs until
            ``max_matvecs``.
        criterion: ``"residual"`` (default: the residual norms ``r``) or ``"eigenvalue"``
            (the error estimates ``min(r, r**2 / gap)``, fewer products) must be below
            ``tol * ||C||``.
        max_matvecs: Budget of curvature-vector products (a Python int, each over all of
            ``data``); default that of :func:`jaxla.linalg.eigsh`, ``max(1000, 20 * basis)``.
        basis_size: Largest Krylov basis kept (static); default as :func:`jaxla.linalg.eigsh`,
            ``min(n, max(2 k2 + 10, 20))``; the basis holds that many parameter-sized vectors.
        curvature: ``"hessian"`` or ``"ggn"`` (generalized Gauss-Newton; needs ``model_fn``).
        params_filter: Leaves to restrict the operator to (glob strings or compiled regular
            expressions matched against leaf paths such as ``"layers_0/w"``); ``None`` uses all.
        model_fn: ``model_fn(params, batch) -> outputs``: splits the loss into
            ``loss_fn(model_fn(params, batch), batch)``; required for ``curvature="ggn"``.

    Returns:
        EigshResult (:class:`jaxla.linalg.EigshResult`): ``eigenvalues`` (k2,), ascending;
        ``eigenvectors``: a pytree like ``params``, each leaf with a leading axis k2
        (orthonormal over the selected leaves, zero in the others; the largest-magnitude entry
        of each flattened vector is positive); ``residual_norms`` (k2,); ``num_matvecs`` ()
        (curvature-vector products over all of ``data``); ``converged`` () (the criterion was
        met and confirmed); ``error_bounds`` (k2,), the eigenvalue error estimates
        ``min(r_i, r_i**2 / gap_i)`` (reported whatever the criterion).

    Raises:
        ValueError: a loss that is not a scalar; ``k`` too large; mismatched batches; a
            ``params_filter`` that selects nothing; unknown options; NaN/Inf in ``params``,
            ``data`` or the curvature (eagerly).
        TypeError: non-callable ``loss_fn``/``model_fn``; integer selected parameters; non-int
            ``k``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import numpy as np
        >>> import jaxla.curvature as curvature
        >>> from jaxla.nn import mlp, mlp_init
        >>> params = mlp_init(jax.random.key(0), [3, 8, 1], dtype=jnp.float32)
        >>> x = jax.random.normal(jax.random.key(1), (32, 3))
        >>> batch = {"x": x, "y": jnp.sin(x[:, :1])}
        >>> def loss(p, b):
        ...     return jnp.mean((mlp(p, b["x"], activation="tanh") - b["y"]) ** 2)
        >>> res = curvature.hessian_eigs(jax.random.key(2), loss, params, batch, k=2)
        >>> res.eigenvalues.shape, res.eigenvectors["layers_0"]["w"].shape, bool(res.converged)
        ((2,), (2, 3, 8), True)
        >>> from jaxla.autodiff import hessian
        >>> dense = hessian(lambda p: loss(p, batch), params, dense=True).matrix
        >>> top = np.linalg.eigvalsh(np.asarray(dense, np.float64))[-2:]
        >>> bool(np.allclose(res.eigenvalues, top, rtol=1e-3))
        True

        With ``params_filter="layers_0/*"`` the same call gives the eigenpairs of the Hessian
        block of the first layer (the other leaves of the eigenvectors are zero).
    """
    fn = "jaxla.curvature.hessian_eigs"
    curvature = _check_options(fn, loss_fn, model_fn, curvature)
    which = _checks.check_option(which, _WHICH, fn, "which")
    criterion = _checks.check_option(criterion, _CRITERIA, fn, "criterion")
    tol = _checks.check_positive(tol, fn, "tol", allow_zero=True)
    data = _prepare_data(fn, data)
    return _eigs(fn, key, loss_fn, params, data, k=k, which=which, tol=tol,
                 criterion=criterion, max_matvecs=max_matvecs, basis_size=basis_size,
                 curvature=curvature, params_filter=params_filter, model_fn=model_fn)


# ---------------------------------------------------------------------------------------------
# Trace and density


def hessian_trace(
    key: jax.Array,
    loss_fn: LossFn,
    params: PyTree,
    data: PyTree | Sequence[PyTree],
    *,
    num_matvecs: int,
    method: str = "hutch++",
    distribution: str = "rademacher",
    batch_size: int | None = None,
    curvature: str = "hessian",
    params_filter: Any = None,
    model_fn: Callable[[PyTree, Any], PyTree] | None = None,
) -> TraceEstimate:
    """Stochastic estimate of the trace of the Hessian (or GGN) of a loss, with its standard error.

    ``method="hutch++"`` (default) runs :func:`jaxla.linalg.hutchpp_trace`: a third of the budget
    sketches the dominant eigenspace, whose trace is then taken exactly, and the rest estimates
    the remainder by Hutchinson's method; its error falls like ``1/m`` when the spectrum decays,
    as Hessian spectra do. ``method="hutchinson"`` runs :func:`jaxla.linalg.hutchinson_trace`,
    the mean of ``z^T C z`` over ``m`` random probes (PyHessian's estimator). Both are unbiased;
    ``std_error`` is the standard error of the Hutchinson part (conditional on the sketch for
    Hutch++), so the exact trace lies within about 3 standard errors.

    Args:
        key: PRNG key for the probes.
        loss_fn: ``loss_fn(params, batch) -> scalar``, or with ``model_fn``,
            ``loss_fn(outputs, batch) -> scalar`` (see the module documentation).
        params: The parameters: a pytree of real floating arrays.
        data: One batch, or a list of batches of identical shapes (mean curvature).
        num_matvecs: Budget ``m`` of curvature-vector products, static: ``m >= 2`` for
            Hutchinson, ``4 <= m <= 3 n + 2`` for Hutch++.
        method: ``"hutch++"`` or ``"hutchinson"``.
        distribution: Probe distribution, ``"rademacher"`` (default) or ``"gaussian"``.
        batch_size: Products per vectorized batch (static); ``None`` vectorizes each group
            of probes at once; smaller values bound the memory.
        curvature: ``"hessian"`` or ``"ggn"`` (needs ``model_fn``).
        params_filter: Leaves to restrict the operator to (the trace of that diagonal block).
        model_fn: ``model_fn(params, batch) -> outputs`` (see :func:`hessian_eigs`).

    Returns:
        TraceEstimate (:class:`jaxla.linalg.TraceEstimate`): ``estimate`` (), ``std_error`` (),
        ``num_matvecs`` (), in the parameters' dtype.

    Raises:
        ValueError: as :func:`hessian_eigs`; a budget out of range.
        TypeError: as :func:`hessian_eigs`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import jaxla.curvature as curvature
        >>> params = {"w": jnp.array([1.0, 2.0, 3.0])}
        >>> def loss(p, b):  # Hessian diag(2 b), trace 2 * sum(b) = 12
        ...     return jnp.sum(b * p["w"] ** 2)
        >>> est = curvature.hessian_trace(jax.random.key(0), loss, params, jnp.arange(1.0, 4.0),
        ...                               num_matvecs=9)
        >>> print(round(float(est.estimate), 3), round(float(est.std_error), 3))
        12.0 0.0
    """
    fn = "jaxla.curvature.hessian_trace"
    curvature = _check_options(fn, loss_fn, model_fn, curvature)
    method = _checks.check_option(method, _METHODS, fn, "method")
    distribution = _checks.check_option(distribution, _DISTRIBUTIONS, fn, "distribution")
    batch_size = _check_batch_size(fn, batch_size)
    data = _prepare_data(fn, data)
    params = _as_arrays(params)
    prob = _problem(fn, loss_fn, params, data, curvature=curvature, params_filter=params_filter,
                    model_fn=model_fn)
    if method == "hutchinson":
        m = _checks.check_int(num_matvecs, fn, "num_matvecs", min=2)
        estimator = krylov.hutchinson_trace
    else:
        m = _checks.check_int(num_matvecs, fn, "num_matvecs", min=4, max=3 * prob.n + 2,
                              max_doc="3 * n + 2 (the sketch uses num_matvecs // 3 <= n products)")
        estimator = krylov.hutchpp_trace

    def compute(key, params, batches):
        op = _operator(prob, params, batches)
        res = estimator(key, op.matvec, op.like, m, distribution=distribution,
                        batch_size=batch_size)
        dt = prob.out_dtype
        return TraceEstimate(res.estimate.astype(dt), res.std_error.astype(dt), res.num_matvecs)

    def finite(res):
        return jnp.isfinite(res.estimate) & jnp.isfinite(res.std_error)

    return _run(fn, compute, finite, "the estimate", key, params, data.batches)


def hessian_density(
    key: jax.Array,
    loss_fn: LossFn,
    params: PyTree,
    data: PyTree | Sequence[PyTree],
    *,
    num_probes: int,
    num_matvecs: int,
    grid: jax.Array | int | None = None,
    sigma: float | None = None,
    distribution: str = "rademacher",
    batch_size: int | None = None,
    curvature: str = "hessian",
    params_filter: Any = None,
    model_fn: Callable[[PyTree, Any], PyTree] | None = None,
) -> SpectralDensity:
    """Eigenvalue density of the Hessian (or GGN) of a loss by stochastic Lanczos quadrature.

    Runs :func:`jaxla.linalg.spectral_density` on the curvature-vector product: for each of
    ``p = num_probes`` random unit probes, ``m = num_matvecs`` Lanczos steps give a Gauss
    quadrature rule (``nodes``, ``weights``) of the probe's spectral measure; the density is their
    average smoothed by a Gaussian of width ``sigma`` (Ghorbani, Krishnan & Xiao 2019; PyHessian).
    Outlying eigenvalues (the top of a Hessian spectrum) appear as isolated nodes.

    Moments and error bars: ``t_i = n * sum_j weights[i, j] * nodes[i, j]`` is Hutchinson's
    estimate of the trace from probe ``i`` (exact in expectation), so ``mean(t)`` estimates the
    trace with standard error ``std(t) / sqrt(p)``; likewise with ``nodes ** q`` for
    ``trace(C ** q)``, ``q <= 2 m - 1``. The spread of the probes' rules shows how well the
    density is determined.

    Args:
        key: PRNG key for the probes.
        loss_fn: ``loss_fn(params, batch) -> scalar``, or with ``model_fn``,
            ``loss_fn(outputs, batch) -> scalar`` (see the module documentation).
        params: The parameters: a pytree of real floating arrays.
        data: One batch, or a list of batches of identical shapes (mean curvature).
        num_probes: Number of probes ``p >= 1``, static.
        num_matvecs: Lanczos steps per probe, ``1 <= m <= n``, static (``p * m`` products).
        grid: Points where the density is evaluated: a 1-D ascending array, or a number of
            points (static int >= 2) spanning the nodes plus ``5 sigma``; ``None`` means 256.
        sigma: Width of the Gaussian smoothing (> 0); default ``(max(nodes) - min(nodes)) / 100``.
        distribution: Probe distribution, ``"rademacher"`` (default) or ``"gaussian"``.
        batch_size: Probes per vectorized batch (static); ``None`` runs all probes at once.
        curvature: ``"hessian"`` or ``"ggn"`` (needs ``model_fn``).
        params_filter: Leaves to restrict the operator to (the density of that diagonal block).
        model_fn: ``model_fn(params, batch) -> outputs`` (see :func:`hessian_eigs`).

    Returns:
        SpectralDensity (:class:`jaxla.linalg.SpectralDensity`): ``nodes`` (p, m), ``weights``
        (p, m), ``grid`` (g,), ``density`` (g,) (trapezoid integral 1), ``num_matvecs`` ().

    Raises:
        ValueError: as :func:`hessian_eigs`; budgets, ``grid`` or ``sigma`` out of range.
        TypeError: as :func:`hessian_eigs`.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import jaxla.curvature as curvature
        >>> params = {"w": jnp.zeros(50)}
        >>> def loss(p, b):  # Hessian diag(b): eigenvalues 1, ..., 50, trace 1275
        ...     return 0.5 * jnp.sum(b * p["w"] ** 2)
        >>> sd = curvature.hessian_density(jax.random.key(0), loss, params, jnp.arange(1.0, 51.0),
        ...                                num_probes=4, num_matvecs=10)
        >>> sd.nodes.shape, round(float(jnp.trapezoid(sd.density, sd.grid)), 3)
        ((4, 10), 1.0)
        >>> print(round(float(50 * jnp.sum(sd.weights * sd.nodes) / 4)))  # Rademacher: exact
        1275
    """
    fn = "jaxla.curvature.hessian_density"
    curvature = _check_options(fn, loss_fn, model_fn, curvature)
    distribution = _checks.check_option(distribution, _DISTRIBUTIONS, fn, "distribution")
    batch_size = _check_batch_size(fn, batch_size)
    p = _checks.check_int(num_probes, fn, "num_probes", min=1)
    if grid is not None:
        if isinstance(grid, int | np.integer) and not isinstance(grid, bool):
            grid = _checks.check_int(grid, fn, "grid", min=2)
        else:
            grid = _checks.as_float_array(grid, fn, "grid", ndim=1, doc="(g,)")
            if grid.shape[0] < 2:
                _checks.fail(fn, f"`grid` must have at least 2 points, got shape "
                             f"{tuple(grid.shape)}")
            _checks.check_finite(grid, fn, "grid")
    if sigma is not None:
        sigma = _checks.check_positive(sigma, fn, "sigma")
    data = _prepare_data(fn, data)
    params = _as_arrays(params)
    prob = _problem(fn, loss_fn, params, data, curvature=curvature, params_filter=params_filter,
                    model_fn=model_fn)
    m = _checks.check_int(num_matvecs, fn, "num_matvecs", min=1, max=prob.n,
                          max_doc="the number of (selected) parameters n")

    grid_array = grid if isinstance(grid, jax.Array) else None  # traced; a count is static
    grid_count = grid if isinstance(grid, int) else None

    def compute(key, params, batches, grid_array):
        op = _operator(prob, params, batches)
        res = krylov.spectral_density(
            key, op.matvec, op.like, num_probes=p, num_matvecs=m,
            grid=grid_count if grid_array is None else grid_array, sigma=sigma,
            distribution=distribution, batch_size=batch_size,
        )
        dt = prob.out_dtype
        return SpectralDensity(res.nodes.astype(dt), res.weights.astype(dt),
                               res.grid.astype(dt), res.density.astype(dt), res.num_matvecs)

    def finite(res):
        return jnp.all(jnp.isfinite(res.nodes)) & jnp.all(jnp.isfinite(res.weights))

    return _run(fn, compute, finite, "the quadrature nodes", key, params, data.batches,
                grid_array)


# ---------------------------------------------------------------------------------------------
# Sharpness during training


def sharpness_tracker(
    key: jax.Array,
    loss_fn: LossFn,
    data: PyTree | Sequence[PyTree],
    *,
    every: int = 1,
    tol: float = 1e-3,
    criterion: str = "residual",
    max_matvecs: int | None = None,
    curvature: str = "hessian",
    params_filter: Any = None,
    model_fn: Callable[[PyTree, Any], PyTree] | None = None,
) -> Callable[[Any], dict[str, float] | None]:
    """A training callback that logs the sharpness (top Hessian eigenvalue) every few steps.

    The callback follows the protocol of :func:`jaxla.train.fit`: it is called as ``cb(info)``
    with ``info`` carrying ``step`` and ``params`` (and ``opt_state``, ``metrics``,
    ``history``, unused here). At steps that are multiples of ``every`` it returns
    ``{"sharpness": lambda_max}``, the algebraically largest eigenvalue of the Hessian (or GGN)
    of the loss on ``data`` at ``info.params`` (as :func:`hessian_eigs` with ``k=1``,
    ``which="largest"``), a Python float; at other steps it returns ``None``. Compare it with
    ``2 / learning_rate`` (:func:`max_stable_lr`): under gradient descent the sharpness typically
    rises to that value and hovers there ("edge of stability", Cohen et al. 2021).

    The data are validated and stacked once, when the tracker is made; the eigen-solve is
    compiled once (on the first call) and reused at every logged step. The start vector at step
    ``s`` is drawn from ``jax.random.fold_in(key, s)``, so a logged value depends only on ``key``,
    ``s`` and the parameters. Validation that needs the parameters (the loss returns a scalar,
    ``params_filter`` matches) happens on the first call.

    Args:
        key: PRNG key for the start vectors.
        loss_fn: ``loss_fn(params, batch) -> scalar``, or with ``model_fn``,
            ``loss_fn(outputs, batch) -> scalar`` (see the module documentation).
        data: One batch, or a list of batches of identical shapes (mean curvature).
        every: Log every ``every`` steps (static int >= 1).
        tol: Relative accuracy of the sharpness (as in :func:`hessian_eigs`).
        criterion: ``"residual"`` (default) or ``"eigenvalue"`` (as in :func:`hessian_eigs`).
        max_matvecs: Budget of curvature-vector products per logged step (Python int).
        curvature: ``"hessian"`` or ``"ggn"`` (needs ``model_fn``).
        params_filter: Leaves to restrict the operator to (the sharpness of a block).
        model_fn: ``model_fn(params, batch) -> outputs`` (see :func:`hessian_eigs`).

    Returns:
        A callable ``cb(info) -> {"sharpness": float} | None``.

    Raises:
        ValueError: bad ``every``, ``tol``, ``criterion``, ``max_matvecs``, options or ``data``
            (when made);
            the errors of :func:`hessian_eigs` (on the first call).
        TypeError: non-callable ``loss_fn``/``model_fn``.

    Examples:
        >>> import types
        >>> import jax, jax.numpy as jnp
        >>> import jaxla.curvature as curvature
        >>> def loss(p, b):  # Hessian diag(2 b): sharpness 2 * max(b) = 6
        ...     return jnp.sum(b * p["w"] ** 2)
        >>> cb = curvature.sharpness_tracker(jax.random.key(0), loss, jnp.array([1.0, 2.0, 3.0]),
        ...                                  every=10)
        >>> info = types.SimpleNamespace(step=20, params={"w": jnp.ones(3)}, opt_state=None,
        ...                              metrics={}, history={})
        >>> print(round(cb(info)["sharpness"], 3))
        6.0
        >>> print(cb(types.SimpleNamespace(step=21, params={"w": jnp.ones(3)})))
        None
    """
    fn = "jaxla.curvature.sharpness_tracker"
    curvature = _check_options(fn, loss_fn, model_fn, curvature)
    every = _checks.check_int(every, fn, "every", min=1)
    tol = _checks.check_positive(tol, fn, "tol", allow_zero=True)
    criterion = _checks.check_option(criterion, _CRITERIA, fn, "criterion")
    if max_matvecs is not None:
        max_matvecs = _checks.check_int(max_matvecs, fn, "max_matvecs", min=1)
    prepared = _prepare_data(fn, data)
    if params_filter is not None:
        _paths.check_patterns(params_filter, fn, "params_filter")
    num_batches = prepared.num_batches

    @jax.jit
    def top(step_key: jax.Array, params: PyTree, batches: PyTree) -> jax.Array:
        res = _eigs(fn, step_key, loss_fn, params, _Data(batches, num_batches), k=1,
                    which="largest", tol=tol, criterion=criterion, max_matvecs=max_matvecs,
                    basis_size=None, curvature=curvature, params_filter=params_filter,
                    model_fn=model_fn)
        return res.eigenvalues[-1]

    def callback(info: Any) -> dict[str, float] | None:
        step = int(info.step)
        if step % every:
            return None
        lam = top(jax.random.fold_in(key, step), info.params, prepared.batches)
        return {"sharpness": float(lam)}

    return callback


def max_stable_lr(lambda_max: float | jax.Array) -> float | jax.Array:
    """The gradient-descent stability threshold ``2 / lambda_max`` for curvature ``lambda_max``.

    On a quadratic ``L(w) = w^T H w / 2``, gradient descent ``w <- w - lr * H w`` multiplies the
    component along an eigenvector of eigenvalue ``lambda`` by ``1 - lr * lambda`` per step, so it
    converges iff ``lr < 2 / lambda_max`` and diverges along the top eigenvector beyond that.
    For neural networks this is the "edge of stability" threshold: under full-batch gradient
    descent with learning rate ``lr`` the sharpness rises to about ``2 / lr`` and hovers there
    (Cohen, Kaur, Li, Kolter & Talwalkar 2021). Use it with the sharpness of
    :func:`sharpness_tracker` or :func:`hessian_eigs`. It does not apply as such to momentum or
    adaptive optimizers, whose thresholds differ.

    Args:
        lambda_max: The top Hessian eigenvalue, a positive finite number (Python float or a
            scalar array; traced values are not checked).

    Returns:
        ``2 / lambda_max``, a Python float for a Python number, else an array of its dtype.

    Raises:
        ValueError: ``lambda_max <= 0`` (gradient descent on a quadratic is then stable for
            every step size along the top direction; no threshold exists), NaN or Inf.
        TypeError: not a real number.

    Examples:
        >>> import jaxla.curvature as curvature
        >>> curvature.max_stable_lr(40.0)
        0.05
    """
    fn = "jaxla.curvature.max_stable_lr"
    if isinstance(lambda_max, jax.core.Tracer):
        return 2.0 / lambda_max
    if isinstance(lambda_max, jax.Array | np.ndarray | np.generic):
        if np.ndim(lambda_max) != 0:
            _checks.fail(fn, f"`lambda_max` must be a scalar, got shape "
                         f"{tuple(np.shape(lambda_max))}")
        if not jnp.issubdtype(jnp.result_type(lambda_max), jnp.floating):
            _checks.fail(fn, f"`lambda_max` must be a real floating scalar, got dtype "
                         f"{jnp.result_type(lambda_max)}", TypeError)
        _checks.check_positive(float(lambda_max), fn, "lambda_max")
        return 2.0 / lambda_max
    if isinstance(lambda_max, bool) or not isinstance(lambda_max, int | float):
        _checks.fail(fn, f"`lambda_max` must be a real number, got {lambda_max!r}", TypeError)
    return 2.0 / _checks.check_positive(lambda_max, fn, "lambda_max")
