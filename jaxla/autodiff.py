"""Derivatives of functions of pytrees: Jacobians, Hessians, curvature-vector products, checks.

What this module adds to ``jax.jacfwd``, ``jax.jacrev``, ``jax.hessian`` and ``jax.jvp``:

- **Mode choice.** :func:`jacobian` picks forward or reverse mode from the input and output sizes
  (forward needs one pass per input entry, reverse one per output entry).
- **Flat views with a path map.** :func:`hessian` with ``dense=True`` returns the ``(P, P)``
  matrix of a function of a parameter pytree together with the map from matrix indices back to
  leaf paths (``"layers_0/w"``, as in :mod:`jaxla._paths`), so a block or an index can be named.
- **Curvature-vector products without matrices.** :func:`hvp` (Hessian) and :func:`ggn_vp`
  (generalized Gauss-Newton) act on pytrees of the shape of the parameters, at the cost of a few
  gradient evaluations; they are the operators that :mod:`jaxla.curvature` hands to the Krylov
  solvers.
- **Derivative checks.** :func:`check_grad` compares gradients and Hessian-vector products with
  central finite differences and returns the measured errors.
- **Validation.** Static problems (a function that does not return a scalar where one is needed,
  a tangent of the wrong structure, integer inputs) raise ``ValueError``/``TypeError`` at trace
  time with a message naming the argument.

Conventions: inputs ``x`` (or ``params``) are arrays or pytrees of real floating arrays. ``P`` is
the total number of entries of ``x``. Derivatives are computed in the dtypes the function
computes in (a float32 input gives float32 derivatives); :func:`check_grad` is most informative in
float64.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxla import _checks, _paths
from jaxla._numerics import eps as _machine_eps
from jaxla._numerics import matmul

__all__ = [
    "DenseHessian",
    "GradCheck",
    "check_grad",
    "ggn_vp",
    "hessian",
    "hvp",
    "jacobian",
]

PyTree = Any

_MODES = ("auto", "fwd", "rev")


# ---------------------------------------------------------------------------------------------
# Validation helpers


def _check_callable(f: Any, fn: str, name: str) -> Callable[..., Any]:
    if not callable(f):
        _checks.fail(fn, f"`{name}` must be callable, got {f!r}", TypeError)
    return f


def _as_tree(x: PyTree) -> PyTree:
    """Leaves that are not JAX arrays (numpy arrays, Python floats) as JAX arrays."""
    return jax.tree_util.tree_map(
        lambda leaf: leaf if isinstance(leaf, jax.Array) else jnp.asarray(leaf), x
    )


def _shape_tree(tree: PyTree) -> str:
    """A short description of a pytree: its structure with each leaf replaced by its shape."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    shapes = [tuple(int(d) for d in np.shape(leaf)) for leaf in leaves]
    if treedef == jax.tree_util.tree_structure(0):
        return f"shape {shapes[0]}"
    return str(jax.tree_util.tree_unflatten(treedef, shapes))


def _check_float_tree(x: PyTree, fn: str, name: str) -> None:
    """Require ``x`` to be a non-empty array or pytree of real floating arrays."""
    flat = jax.tree_util.tree_flatten_with_path(x)[0]
    if not flat:
        _checks.fail(fn, f"`{name}` must be an array or a non-empty pytree of arrays, got {x!r}")
    for path, leaf in flat:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            where = f" at leaf '{_paths.path_str(path)}'" if path else ""
            _checks.fail(
                fn,
                f"`{name}` must have real floating dtype(s), got dtype {dtype}{where}; cast it "
                f"first, e.g. {name}.astype(jnp.float32)",
                TypeError,
            )


def _check_scalar_output(out: Any, fn: str, name: str, call: str = "") -> None:
    """Require ``out`` (a ShapeDtypeStruct from ``jax.eval_shape``) to be a real scalar."""
    leaves, treedef = jax.tree_util.tree_flatten(out)
    where = f" from {call}" if call else ""
    if treedef != jax.tree_util.tree_structure(0):
        _checks.fail(fn, f"`{name}` must return a scalar (shape ()){where}, got "
                     f"{_shape_tree(out)}")
    shape = tuple(leaves[0].shape)
    if shape != ():
        _checks.fail(fn, f"`{name}` must return a scalar (shape ()){where}, got shape {shape}")
    if not jnp.issubdtype(leaves[0].dtype, jnp.floating):
        _checks.fail(fn, f"`{name}` must return a real floating scalar{where}, got dtype "
                     f"{leaves[0].dtype}", TypeError)


def _check_float_output(out: Any, fn: str, name: str) -> None:
    for leaf in jax.tree_util.tree_leaves(out):
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            _checks.fail(fn, f"`{name}` must return real floating arrays, got dtype {leaf.dtype}",
                         TypeError)


def _check_like(v: PyTree, x: PyTree, fn: str, names: tuple[str, str]) -> PyTree:
    """Require ``v`` to have the structure and shapes of ``x``; return it in ``x``'s dtypes."""
    v = _as_tree(v)
    v_leaves, v_def = jax.tree_util.tree_flatten(v)
    x_leaves, x_def = jax.tree_util.tree_flatten(x)
    if v_def != x_def or [np.shape(a) for a in v_leaves] != [np.shape(b) for b in x_leaves]:
        _checks.fail(fn, f"`{names[0]}` must have the structure and shapes of `{names[1]}` "
                     f"({_shape_tree(x)}), got {_shape_tree(v)}")
    _check_float_tree(v, fn, names[0])
    return jax.tree_util.tree_unflatten(
        x_def, [a.astype(jnp.result_type(b)) for a, b in zip(v_leaves, x_leaves, strict=True)]
    )


def _size(tree: PyTree) -> int:
    return int(sum(math.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


def _compiled(build: Callable[[Callable[[PyTree], Any]], Callable[..., Any]],
              f: Callable[[PyTree], Any], x: PyTree, *extra: Any) -> Any:
    """``build(f)(x, *extra)`` run as one compiled program.

    ``f`` is traced once with ``jax.make_jaxpr``; the arrays it closes over (data, other
    parameters) become arguments of the compiled program rather than constants embedded in it.
    Called eagerly, this compiles the whole derivative computation at once instead of
    dispatching (and compiling) its many small operations one by one; under an outer ``jit``
    it is inlined.
    """
    closed, out_shape = jax.make_jaxpr(f, return_shape=True)(x)
    out_def = jax.tree_util.tree_structure(out_shape)
    jaxpr = closed.jaxpr

    def pure(consts, y):
        out = jax.core.eval_jaxpr(jaxpr, consts, *jax.tree_util.tree_leaves(y))
        return jax.tree_util.tree_unflatten(out_def, out)

    def run(consts, y, *more):
        return build(lambda z: pure(consts, z))(y, *more)

    return jax.jit(run)(list(closed.consts), x, *extra)


# ---------------------------------------------------------------------------------------------
# Jacobian


def jacobian(f: Callable[[PyTree], PyTree], x: PyTree, *, mode: str = "auto") -> PyTree:
    """Jacobian of ``f`` at ``x``, in forward or reverse mode chosen from the sizes.

    Forward mode (``jax.jacfwd``) costs one Jacobian-vector product per input entry, reverse mode
    (``jax.jacrev``) one vector-Jacobian product per output entry; ``mode="auto"`` uses forward
    mode when ``x`` has fewer entries than ``f(x)`` and reverse mode otherwise. Both modes give
    the same result up to round-off.

    Output structure (as ``jax.jacfwd``/``jax.jacrev``): for an array ``x`` of shape ``(n...)``
    and an array ``f(x)`` of shape ``(m...)``, an array of shape ``(m..., n...)`` with
    ``J[i..., j...] = d f(x)[i...] / d x[j...]``. For pytrees, the structure of ``f(x)`` whose
    every leaf (shape ``(m...)``) is replaced by a pytree of the structure of ``x`` whose leaves
    have shape ``(m..., n...)`` (the output leaf's shape followed by the input leaf's shape).

    Args:
        f: A function of ``x`` returning an array or pytree of real floating arrays.
        x: The point: an array or pytree of real floating arrays.
        mode: ``"auto"`` (default), ``"fwd"`` or ``"rev"``.

    Returns:
        The Jacobian, structured as described above, in the dtypes ``f`` computes in.

    Raises:
        ValueError: an unknown ``mode``.
        TypeError: ``f`` not callable; integer or boolean ``x`` or outputs.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.autodiff import jacobian
        >>> a = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
        >>> np.round(np.asarray(jacobian(lambda x: a @ x, jnp.ones(2))), 3)
        array([[1., 2.],
               [3., 4.],
               [5., 6.]])
        >>> jac = jacobian(lambda p: {"y": p["w"] @ p["b"]}, {"w": jnp.ones((3, 2)),
        ...                                                 "b": jnp.ones(2)})
        >>> jac["y"]["w"].shape, jac["y"]["b"].shape
        ((3, 3, 2), (3, 2))
    """
    fn = "jaxla.autodiff.jacobian"
    _check_callable(f, fn, "f")
    mode = _checks.check_option(mode, _MODES, fn, "mode")
    x = _as_tree(x)
    _check_float_tree(x, fn, "x")
    out = jax.eval_shape(f, x)
    _check_float_output(out, fn, "f")
    if mode == "auto":
        mode = "fwd" if _size(x) < _size(out) else "rev"
    jac = jax.jacfwd if mode == "fwd" else jax.jacrev
    return _compiled(jac, f, x)


# ---------------------------------------------------------------------------------------------
# Hessian


class _Flat:
    """Flattening of a pytree to one vector, with the leaf paths and offsets."""

    def __init__(self, x: PyTree):
        flat, self.treedef = jax.tree_util.tree_flatten_with_path(x)
        self.paths = tuple(_paths.path_str(p) for p, _ in flat)
        self.shapes = tuple(tuple(int(d) for d in np.shape(leaf)) for _, leaf in flat)
        self.dtypes = tuple(jnp.dtype(jnp.result_type(leaf)) for _, leaf in flat)
        sizes = [math.prod(s) for s in self.shapes]
        self.offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(sizes)]))
        self.cdtypes = tuple(_checks.compute_dtype(d) for d in self.dtypes)
        self.dtype = jnp.dtype(jnp.result_type(*self.dtypes))
        self.cdtype = _checks.compute_dtype(self.dtype)

    def ravel(self, tree: PyTree, dtype: Any = None) -> jax.Array:
        dtype = self.cdtype if dtype is None else dtype
        leaves = jax.tree_util.tree_leaves(tree)
        return jnp.concatenate([jnp.ravel(leaf).astype(dtype) for leaf in leaves])

    def unravel_compute(self, vec: jax.Array) -> PyTree:
        """(P,) -> pytree, each leaf in its compute dtype (float16/bfloat16 upcast)."""
        out = [
            vec[self.offsets[i]:self.offsets[i + 1]].reshape(shape).astype(self.cdtypes[i])
            for i, shape in enumerate(self.shapes)
        ]
        return jax.tree_util.tree_unflatten(self.treedef, out)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["matrix"],
    meta_fields=["paths", "offsets", "shapes", "dtypes", "treedef"],
)
@dataclasses.dataclass(frozen=True)
class DenseHessian:
    """The Hessian of a function of a pytree as one ``(P, P)`` matrix, with its index map.

    The pytree ``x`` is flattened leaf by leaf in ``jax.tree_util.tree_leaves`` order, each leaf
    in row-major (C) order: leaf ``l`` (path ``paths[l]``, shape ``shapes[l]``) occupies the
    indices ``offsets[l] <= i < offsets[l + 1]`` of the flat vector, and index ``i`` of that range
    is entry ``np.unravel_index(i - offsets[l], shapes[l])`` of the leaf. :meth:`locate` does this
    lookup, :meth:`index` the reverse, :meth:`block` cuts the block of two leaves, and
    :meth:`ravel`/:meth:`unravel` convert between vectors and pytrees.

    A pytree (registered dataclass) whose only array is ``matrix``; the index map is static, so a
    ``DenseHessian`` passes through ``jax.jit`` and ``jax.vmap``.

    Attributes:
        matrix: (P, P) the symmetric Hessian ``d^2 f / dx_i dx_j``.
        paths: (L,) the leaf paths (``"layers_0/w"``; see :mod:`jaxla._paths`).
        offsets: (L + 1,) start of each leaf's index range, then ``P``.
        shapes: (L,) the leaf shapes.
        dtypes: (L,) the leaf dtypes (:meth:`unravel` restores them).
        treedef: the structure of ``x``.
    """

    matrix: jax.Array  # (P, P) the Hessian of the flattened function
    paths: tuple[str, ...]  # (L,) leaf paths, in flattening order
    offsets: tuple[int, ...]  # (L + 1,) leaf l occupies offsets[l]:offsets[l + 1]
    shapes: tuple[tuple[int, ...], ...]  # (L,) leaf shapes
    dtypes: tuple[Any, ...]  # (L,) leaf dtypes
    treedef: Any  # structure of x

    @property
    def size(self) -> int:
        """``P``, the number of entries of ``x``."""
        return self.offsets[-1]

    def _leaf(self, path: str) -> int:
        if path not in self.paths:
            _checks.fail("jaxla.autodiff.DenseHessian", f"`path` must be one of "
                         f"{', '.join(repr(p) for p in self.paths)}, got {path!r}")
        return self.paths.index(path)

    def slice(self, path: str) -> slice:
        """The index range of the leaf at ``path`` in the flat vector."""
        i = self._leaf(path)
        return slice(self.offsets[i], self.offsets[i + 1])

    def locate(self, index: int) -> tuple[str, tuple[int, ...]]:
        """``(path, entry)`` of flat index ``index``: the leaf and the entry within it."""
        index = _checks.check_int(index, "jaxla.autodiff.DenseHessian.locate", "index", min=0,
                                  max=self.size - 1, max_doc="P - 1")
        leaf = int(np.searchsorted(self.offsets, index, side="right")) - 1
        entry = np.unravel_index(index - self.offsets[leaf], self.shapes[leaf])
        return self.paths[leaf], tuple(int(e) for e in entry)

    def index(self, path: str, entry: tuple[int, ...] = ()) -> int:
        """The flat index of ``entry`` of the leaf at ``path`` (inverse of :meth:`locate`)."""
        i = self._leaf(path)
        return self.offsets[i] + int(np.ravel_multi_index(entry, self.shapes[i]))

    def block(self, row_path: str, col_path: str | None = None) -> jax.Array:
        """The block ``d^2 f / d row_leaf d col_leaf`` as a (size_row, size_col) matrix."""
        col_path = row_path if col_path is None else col_path
        return self.matrix[..., self.slice(row_path), self.slice(col_path)]

    def ravel(self, tree: PyTree) -> jax.Array:
        """A pytree like ``x`` as a (P,) vector in the matrix's dtype."""
        leaves = jax.tree_util.tree_leaves(tree)
        return jnp.concatenate([jnp.ravel(leaf).astype(self.matrix.dtype) for leaf in leaves])

    def unravel(self, vec: jax.Array) -> PyTree:
        """A (..., P) array as a pytree like ``x`` (leading axes kept, leaf dtypes restored)."""
        vec = jnp.asarray(vec)
        lead = vec.shape[:-1]
        out = [
            vec[..., self.offsets[i]:self.offsets[i + 1]].reshape(lead + s).astype(d)
            for i, (s, d) in enumerate(zip(self.shapes, self.dtypes, strict=True))
        ]
        return jax.tree_util.tree_unflatten(self.treedef, out)


def hessian(f: Callable[[PyTree], jax.Array], x: PyTree, *, dense: bool = False) -> Any:
    """Hessian of a scalar function of a pytree, as a pytree of pytrees or a dense matrix.

    Computed forward-over-reverse (``jax.jacfwd(jax.grad(f))``, ``P`` Hessian-vector products).

    With ``dense=False``, the structure of ``jax.hessian``: a pytree shaped like ``x`` whose leaf
    ``i`` is replaced by a pytree shaped like ``x`` whose leaf ``j`` is the block
    ``d^2 f / dx_i dx_j`` of shape ``shape_i + shape_j``. With ``dense=True``, a
    :class:`DenseHessian`: the ``(P, P)`` matrix of ``z -> f(unravel(z))`` for the flattened
    vector ``z`` (leaves in ``jax.tree_util.tree_leaves`` order, each in row-major order),
    symmetrized as ``(H + H^T) / 2`` to remove round-off asymmetry, with the leaf paths and
    offsets that map each index back to its parameter. Use it for small models (``P`` up to a few
    thousand); for bigger ones use :func:`hvp` and :mod:`jaxla.curvature`.

    Args:
        f: A function of ``x`` returning a real scalar (shape ``()``).
        x: The point: an array or pytree of real floating arrays.
        dense: Return a :class:`DenseHessian` instead of a pytree of pytrees.

    Returns:
        The pytree-of-pytrees Hessian, or a :class:`DenseHessian` with ``matrix`` (P, P) in the
        common dtype of the leaves (float16/bfloat16 leaves are upcast to float32 for the
        computation).

    Raises:
        ValueError: ``f`` does not return a scalar.
        TypeError: ``f`` not callable; integer or boolean ``x`` or output; ``dense`` not a bool.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.autodiff import hessian
        >>> def f(p):
        ...     return jnp.sum(p["w"] ** 2) * p["b"][0] + p["b"][1] ** 3
        >>> params = {"b": jnp.array([2.0, 1.0]), "w": jnp.array([1.0, 3.0])}
        >>> h = hessian(f, params, dense=True)
        >>> h.paths, h.offsets
        (('b', 'w'), (0, 2, 4))
        >>> np.round(np.asarray(h.matrix), 3)
        array([[0., 0., 2., 6.],
               [0., 6., 0., 0.],
               [2., 0., 4., 0.],
               [6., 0., 0., 4.]])
        >>> h.locate(3)
        ('w', (1,))
        >>> hessian(f, params)["w"]["b"].shape  # the block d^2 f / dw db
        (2, 2)
    """
    fn = "jaxla.autodiff.hessian"
    _check_callable(f, fn, "f")
    if not isinstance(dense, bool | np.bool_):
        _checks.fail(fn, f"`dense` must be a Python bool, got {dense!r}", TypeError)
    x = _as_tree(x)
    _check_float_tree(x, fn, "x")
    _check_scalar_output(jax.eval_shape(f, x), fn, "f")
    if not dense:
        return _compiled(lambda g: jax.jacfwd(jax.grad(g)), f, x)
    flat = _Flat(x)

    def symmetric_hessian(g):
        def h(z):
            mat = jax.jacfwd(jax.grad(g))(z)
            return ((mat + mat.T) / 2).astype(flat.dtype)

        return h

    mat = _compiled(symmetric_hessian, lambda z: f(flat.unravel_compute(z)), flat.ravel(x))
    return DenseHessian(
        matrix=mat,
        paths=flat.paths,
        offsets=flat.offsets,
        shapes=flat.shapes,
        dtypes=flat.dtypes,
        treedef=flat.treedef,
    )


# ---------------------------------------------------------------------------------------------
# Curvature-vector products


def _hvp(f: Callable[[PyTree], jax.Array], x: PyTree, v: PyTree) -> PyTree:
    """Unchecked forward-over-reverse Hessian-vector product."""
    return jax.jvp(jax.grad(f), (x,), (v,))[1]


def hvp(f: Callable[[PyTree], jax.Array], x: PyTree, v: PyTree) -> PyTree:
    """Hessian-vector product ``H v`` of a scalar function of a pytree, forward-over-reverse.

    Computes ``jax.jvp(jax.grad(f), (x,), (v,))``: the directional derivative of the gradient,
    which never forms ``H`` (Pearlmutter 1994) and costs about three gradient evaluations for a
    network of dense layers (the forward and backward passes plus their tangents); products at a
    fixed ``x`` can reuse the primal passes with ``jax.linearize(jax.grad(f), x)`` at about two
    gradient evaluations each, as :mod:`jaxla.curvature` does. ``v`` is cast to the dtype of each
    leaf of ``x``. For repeated use, call it inside your own ``jax.jit``.

    Args:
        f: A function of ``x`` returning a real scalar (shape ``()``).
        x: The point: an array or pytree of real floating arrays.
        v: The vector: an array or pytree with the structure and shapes of ``x``.

    Returns:
        ``H v``, a pytree like ``x`` (same structure, shapes and dtypes).

    Raises:
        ValueError: ``f`` does not return a scalar; ``v`` is not shaped like ``x``.
        TypeError: ``f`` not callable; integer or boolean ``x`` or ``v``.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.autodiff import hvp
        >>> def f(p):
        ...     return jnp.sum(p["w"] ** 3) + p["w"][0] * p["b"]
        >>> params = {"w": jnp.array([1.0, 2.0]), "b": jnp.array(3.0)}
        >>> out = hvp(f, params, {"w": jnp.array([1.0, 0.0]), "b": jnp.array(1.0)})
        >>> np.round(np.asarray(out["w"]), 3), round(float(out["b"]), 3)
        (array([7., 0.]), 1.0)

    References:
        B. A. Pearlmutter (1994), fast exact multiplication by the Hessian.
    """
    fn = "jaxla.autodiff.hvp"
    _check_callable(f, fn, "f")
    x = _as_tree(x)
    _check_float_tree(x, fn, "x")
    v = _check_like(v, x, fn, ("v", "x"))
    _check_scalar_output(jax.eval_shape(f, x), fn, "f")
    return _hvp(f, x, v)


def _ggn_vp(
    model_fn: Callable[[PyTree, Any], PyTree],
    loss_fn: Callable[[PyTree, Any], jax.Array],
    params: PyTree,
    x: Any,
    y: Any,
    v: PyTree,
) -> PyTree:
    """Unchecked ``J^T H_loss J v``: one linearization of the model, its transpose, one hvp."""

    def model(p):
        return model_fn(p, x)

    out, jvp_fn = jax.linearize(model, params)
    jv = jvp_fn(v)
    hjv = _hvp(lambda o: loss_fn(o, y), out, jv)
    (gv,) = jax.linear_transpose(jvp_fn, params)(hjv)
    return gv


def ggn_vp(
    model_fn: Callable[[PyTree, Any], PyTree],
    loss_fn: Callable[[PyTree, Any], jax.Array],
    params: PyTree,
    x: Any,
    y: Any,
    v: PyTree,
) -> PyTree:
    """Generalized Gauss-Newton vector product ``G v = J^T H_L J v`` of a split loss.

    The loss is ``loss_fn(model_fn(params, x), y)``; ``J`` is the Jacobian of the model outputs
    ``z = model_fn(params, x)`` with respect to ``params`` and ``H_L`` the Hessian of
    ``loss_fn(z, y)`` with respect to the outputs ``z`` (Schraudolph 2002). The product is
    formed as ``J v`` (the model linearized once with ``jax.linearize``), ``H_L (J v)`` (a
    forward-over-reverse Hessian-vector product in output space) and ``J^T (H_L J v)`` (the
    transpose of the same linearization), never forming ``J``.

    ``G`` is the Hessian of the loss with the second derivatives of the model dropped: ``G``
    equals the Hessian when the model is linear in ``params``, and ``G`` is positive
    semi-definite when the loss is convex in the outputs (squared error, softmax cross-entropy).
    For a mean loss over a batch, ``loss_fn`` does the averaging and ``G`` is the mean of the
    per-example GGNs.

    Args:
        model_fn: ``model_fn(params, x) -> z``, outputs an array or pytree of real floats.
        loss_fn: ``loss_fn(z, y) -> scalar``.
        params: The parameters: an array or pytree of real floating arrays.
        x: Model inputs (any pytree ``model_fn`` accepts).
        y: Loss targets (any pytree ``loss_fn`` accepts).
        v: The vector: a pytree with the structure and shapes of ``params``.

    Returns:
        ``G v``, a pytree like ``params`` (same structure, shapes and dtypes).

    Raises:
        ValueError: ``loss_fn`` does not return a scalar; ``v`` is not shaped like ``params``.
        TypeError: a function is not callable; integer or boolean ``params``, ``v`` or outputs.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.autodiff import ggn_vp
        >>> x = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
        >>> y = jnp.zeros(3)
        >>> def model(w, x):
        ...     return x @ w
        >>> def loss(z, y):
        ...     return 0.5 * jnp.sum((z - y) ** 2)
        >>> # a linear model with squared error: G = X^T X
        >>> np.round(np.asarray(ggn_vp(model, loss, jnp.ones(2), x, y, jnp.array([1.0, 0.0]))), 3)
        array([2., 1.])

    References:
        N. N. Schraudolph (2002), fast curvature matrix-vector products for second-order
        gradient descent.
    """
    fn = "jaxla.autodiff.ggn_vp"
    _check_callable(model_fn, fn, "model_fn")
    _check_callable(loss_fn, fn, "loss_fn")
    params = _as_tree(params)
    _check_float_tree(params, fn, "params")
    v = _check_like(v, params, fn, ("v", "params"))
    out = jax.eval_shape(model_fn, params, x)
    _check_float_output(out, fn, "model_fn")
    _check_scalar_output(jax.eval_shape(loss_fn, out, y), fn, "loss_fn",
                         "loss_fn(model_fn(params, x), y)")
    return _ggn_vp(model_fn, loss_fn, params, x, y, v)


# ---------------------------------------------------------------------------------------------
# Finite-difference checks


class GradCheck(NamedTuple):
    """Result of :func:`check_grad` (``d`` directions, ``P`` entries of ``x``).

    ``analytic`` and ``numeric`` have shape (d,) for ``order=1`` and (d, P) for ``order=2``.
    """

    analytic: jax.Array  # (d,) or (d, P): derivatives along each direction from autodiff
    numeric: jax.Array  # (d,) or (d, P): the same by central finite differences
    max_abs_error: jax.Array  # () max |analytic - numeric|
    max_rel_error: jax.Array  # () max_abs_error / max |analytic| (max_abs_error if that is 0)
    eps: jax.Array  # () the finite-difference step h


def check_grad(
    f: Callable[[PyTree], jax.Array],
    x: PyTree,
    *,
    order: int = 1,
    eps: float | None = None,
    key: jax.Array | None = None,
    num_directions: int | None = None,
) -> GradCheck:
    """Compare derivatives of a scalar function with central finite differences.

    With ``order=1`` the gradient (reverse mode, ``jax.grad``) is checked: for each unit direction
    ``u_i``, ``analytic_i = <grad f(x), u_i>`` against
    ``numeric_i = (f(x + h u_i) - f(x - h u_i)) / (2 h)``. With ``order=2`` the Hessian
    (forward-over-reverse Hessian-vector products, as :func:`hvp`) is checked:
    ``analytic_i = H u_i`` against ``numeric_i = (grad f(x + h u_i) - grad f(x - h u_i)) / (2 h)``
    (a vector of ``P`` entries per direction).

    The directions are, without ``key``, the ``P`` coordinate vectors (every entry of the
    gradient, or every column of the Hessian, is checked; ``2 P`` evaluations, for small ``x``),
    or with ``key``, ``num_directions`` random unit vectors (default 10). ``x`` is flattened as
    in :func:`hessian` (the flat index ``j`` of an ``(d, P)`` result maps to a leaf entry as in
    :class:`DenseHessian`).

    Central differences have truncation error ``h^2 |f'''| / 6`` (so the error falls by a factor
    of 4 when ``h`` is halved) plus round-off about ``eps_machine |f| / h``. The default step
    ``h = eps_machine ** (1/3) * max(1, max |x|)`` balances the two: expect errors near
    ``1e-10`` relative in float64 and ``1e-4`` to ``1e-3`` in float32. Use float64 for checks that
    discriminate; float16/bfloat16 inputs are upcast to float32 and ``f`` evaluated there.

    Args:
        f: A function of ``x`` returning a real scalar (shape ``()``).
        x: The point: an array or pytree of real floating arrays.
        order: ``1`` (gradient) or ``2`` (Hessian-vector products).
        eps: The step ``h > 0``; default as above.
        key: PRNG key for random directions; ``None`` checks the coordinate directions.
        num_directions: Number of random directions ``d >= 1`` (static; only with ``key``).

    Returns:
        GradCheck: ``analytic`` and ``numeric`` ((d,) for ``order=1``, (d, P) for ``order=2``),
        ``max_abs_error`` (), ``max_rel_error`` (), ``eps`` (), in the dtype of ``x``.

    Raises:
        ValueError: ``f`` does not return a scalar; bad ``order``, ``eps`` or
            ``num_directions``; NaN/Inf in ``x`` (eagerly).
        TypeError: ``f`` not callable; integer or boolean ``x``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxla.autodiff import check_grad
        >>> def f(p):
        ...     return jnp.sum(jnp.sin(p["w"]) * p["b"])
        >>> params = {"w": jnp.array([0.1, 0.2, 0.3]), "b": jnp.array([1.0, 2.0, 3.0])}
        >>> res = check_grad(f, params, eps=1e-2)
        >>> res.analytic.shape, bool(res.max_rel_error < 1e-3)
        ((6,), True)
        >>> bool(check_grad(f, params, order=2, eps=1e-2).max_rel_error < 1e-3)
        True
    """
    fn = "jaxla.autodiff.check_grad"
    _check_callable(f, fn, "f")
    order = _checks.check_option(order, (1, 2), fn, "order")
    x = _as_tree(x)
    _check_float_tree(x, fn, "x")
    _checks.check_finite(x, fn, "x")
    _check_scalar_output(jax.eval_shape(f, x), fn, "f")
    flat = _Flat(x)
    dtype = flat.cdtype
    z = flat.ravel(x)
    p = flat.offsets[-1]
    if key is None:
        if num_directions is not None:
            _checks.fail(fn, "`num_directions` must be None without a `key` (the coordinate "
                         f"directions are used), got {num_directions!r}")
        dirs = jnp.eye(p, dtype=dtype)
    else:
        d = 10 if num_directions is None else _checks.check_int(
            num_directions, fn, "num_directions", min=1)
        dirs = jax.random.normal(key, (d, p), dtype)
        dirs = dirs / jnp.sqrt(jnp.sum(dirs * dirs, axis=1, keepdims=True))
    if eps is None:
        h = _machine_eps(dtype) ** (1.0 / 3.0) * jnp.maximum(1.0, jnp.max(jnp.abs(z)))
    else:
        h = _checks.check_positive(eps, fn, "eps")
    h = jnp.asarray(h, dtype)

    def compare(g, z, dirs, h):
        grad_g = jax.grad(g)
        if order == 1:
            analytic = matmul(dirs, grad_g(z))
            numeric = jax.vmap(lambda u: (g(z + h * u) - g(z - h * u)) / (2 * h))(dirs)
        else:
            analytic = jax.vmap(lambda u: _hvp(g, z, u))(dirs)
            numeric = jax.vmap(lambda u: (grad_g(z + h * u) - grad_g(z - h * u)) / (2 * h))(dirs)
        analytic, numeric = analytic.astype(dtype), numeric.astype(dtype)
        abs_err = jnp.max(jnp.abs(analytic - numeric))
        scale = jnp.max(jnp.abs(analytic))
        rel_err = jnp.where(scale > 0, abs_err / jnp.where(scale > 0, scale, 1), abs_err)
        out = flat.dtype
        return GradCheck(analytic.astype(out), numeric.astype(out), abs_err.astype(out),
                         rel_err.astype(out), h.astype(out))

    return _compiled(lambda g: functools.partial(compare, g),
                     lambda w: f(flat.unravel_compute(w)), z, dirs, h)
