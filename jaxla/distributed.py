"""Data parallelism on a device mesh: meshes, row-sharded data, replicated parameters, TSQR.

jaxla's data-parallel entry points take arrays whose leading (row, example) axis is split over a
:class:`jax.sharding.Mesh` and run as one SPMD program, equal to the single-device computation up
to rounding:

- :func:`jaxla.pca.fit` (covariance solver), :func:`jaxla.pca.stats_update` and
  :func:`jaxla.pca.fit_stream` (covariance accumulation of sharded chunks): each device reduces
  its rows to a (d,) mean and a (d, d) scatter, and only those are summed across devices. The
  ``"svd"`` and ``"randomized"`` solvers of a tall sharded ``x`` use the SVD paths below.
- :func:`jaxla.linalg.truncated_svd` and :func:`jaxla.linalg.randomized_svd` of a tall matrix
  split by rows: TSQR (:func:`tsqr`) replaces Householder QR, the Gram matrices of the sketch are
  summed, and only ``b x b`` and ``n x b`` factors cross devices; ``u`` stays split by rows.
- :func:`jaxla.train.make_step` and :func:`jaxla.train.fit` with replicated parameters
  (:func:`replicate`) and a sharded batch (:func:`shard_rows`): XLA computes each device's part
  of the loss and sums the gradients (one all-reduce of the parameter-sized gradient). With
  minibatches, ``fit`` gathers each batch's rows from the sharded data (examples may move
  between devices): XLA partitions the gather with ``Auto`` axes, and with ``Explicit`` axes
  the batch keeps the data's sharding (replicated rows when the batch size does not divide
  into the shards).
- :func:`jaxla.autodiff.hvp`, :func:`jaxla.curvature.hessian_eigs` and
  :func:`jaxla.curvature.hessian_trace` over a sharded batch: every curvature-vector product is
  computed where the examples live and summed.

This module has no communication code of its own: collectives come from XLA's SPMD partitioner
(jit over sharded inputs) and from ``jax.shard_map`` (``psum``, ``all_gather``) in the paths
named above. ``docs/scaling.md`` shows which arrays cross devices, with the compiled HLO as
evidence, and the multi-process recipe (``jax.distributed.initialize`` plus the same code).

Axis types. :func:`data_mesh` makes ``Auto`` axes by default (``axis_type="auto"``), whereas
``jax.make_mesh`` defaults to ``Explicit`` ones. With ``Auto`` axes any JAX program runs on
sharded inputs unchanged: XLA decides how intermediate values are sharded and inserts the
collectives. With ``Explicit`` axes the sharding is part of every array's type, and operations
whose result sharding is ambiguous raise ``ShardingTypeError`` (``x.T @ x`` over sharded rows,
``jnp.take`` of rows of a sharded batch, QR of a sharded matrix), so user loss functions must be
written for it; in exchange a traced array (inside ``jit``) tells jaxla how it is sharded.
jaxla's entry points work with both: called eagerly they read the sharding of the concrete
arrays; inside ``jit`` they read it from the types with ``Explicit`` axes, while with ``Auto``
axes :func:`jaxla.pca.fit` takes ``row_groups=<shards>`` and the SVDs fall back to XLA's
partitioning of the single-device algorithm (correct, but the QR then gathers the sketch).

Dimension letters: ``n`` rows (examples), ``d`` or ``k`` columns, ``p`` devices on the axis.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxla import _checks, _paths
from jaxla.linalg import lowrank
from jaxla.linalg.decompositions import QR, qr

__all__ = ["AXIS_TYPES", "data_mesh", "process_rows", "replicate", "shard_rows", "tsqr"]

AXIS_TYPES = ("auto", "explicit")
"""The values accepted by ``axis_type=`` (``jax.sharding.AxisType.Auto`` / ``.Explicit``)."""

_MODULE = "jaxla.distributed"


def _axis_type(value: Any, fn: str) -> AxisType:
    if isinstance(value, AxisType):
        value = value.name.lower()
    value = _checks.check_option(value, AXIS_TYPES, fn, "axis_type")
    return AxisType.Auto if value == "auto" else AxisType.Explicit


def _check_mesh(mesh: Any, fn: str) -> Mesh:
    if not isinstance(mesh, Mesh):
        _checks.fail(fn, f"`mesh` must be a jax.sharding.Mesh (e.g. from "
                     f"jaxla.distributed.data_mesh()), got {type(mesh).__name__}", TypeError)
    return mesh


def _check_axis(mesh: Mesh, axis_name: Any, fn: str) -> str:
    names = tuple(mesh.axis_names)
    if axis_name not in names:
        _checks.fail(fn, f"`axis_name` must be an axis of `mesh` {names}, got {axis_name!r}")
    return axis_name


def data_mesh(
    n_devices: int | None = None,
    *,
    axis_name: str = "data",
    axis_type: str | AxisType = "auto",
) -> Mesh:
    """A one-axis mesh over the first ``n_devices`` devices, for data parallelism.

    In a multi-process run (after ``jax.distributed.initialize``) the devices are those of all
    processes (``jax.devices()``), ordered by process, so each process holds a contiguous block
    of the rows of an array sharded over the mesh (see :func:`process_rows`).

    Args:
        n_devices: Number of devices, ``1 <= n_devices <= jax.device_count()``; ``None`` takes
            them all.
        axis_name: Name of the mesh axis (the name :func:`shard_rows` splits rows over).
        axis_type: ``"auto"`` (default: XLA's partitioner shards intermediate values, so any
            program runs unchanged) or ``"explicit"`` (shardings are part of the array types;
            see the module documentation). A ``jax.sharding.AxisType`` is accepted too.

    Returns:
        A ``jax.sharding.Mesh`` of shape ``{axis_name: n_devices}``.

    Raises:
        ValueError: ``n_devices`` out of range; an unknown ``axis_type``.
        TypeError: a non-int ``n_devices`` or a non-str ``axis_name``.

    Examples:
        >>> import jax
        >>> from jaxla import distributed
        >>> mesh = distributed.data_mesh()
        >>> mesh.axis_names, mesh.shape["data"] == jax.device_count()
        (('data',), True)
    """
    fn = f"{_MODULE}.data_mesh"
    total = jax.device_count()
    n = total if n_devices is None else _checks.check_int(
        n_devices, fn, "n_devices", min=1, max=total, max_doc="jax.device_count()")
    if not isinstance(axis_name, str) or not axis_name:
        _checks.fail(fn, f"`axis_name` must be a non-empty str, got {axis_name!r}", TypeError)
    kind = _axis_type(axis_type, fn)
    return jax.make_mesh((n,), (axis_name,), axis_types=(kind,), devices=jax.devices()[:n])


def _leaf_where(path: Any) -> str:
    where = _paths.path_str(path)
    return f" at {where!r}" if where else ""


def shard_rows(
    x: Any,
    mesh: Mesh,
    *,
    axis_name: str = "data",
    process_local: bool = False,
) -> Any:
    """Split the leading axis of an array (or of every leaf of a batch pytree) over a mesh axis.

    Each leaf of shape ``(n, ...)`` gets the sharding ``NamedSharding(mesh, P(axis_name))``:
    device ``i`` of the axis holds rows ``i n / p`` to ``(i + 1) n / p - 1``; other mesh axes (if
    any) hold copies. Values are unchanged.

    Args:
        x: An array ``(n, ...)``, or a pytree of arrays sharing a leading axis (e.g. ``(x, y)``
            or a dict batch). numpy or JAX arrays.
        mesh: The mesh (e.g. from :func:`data_mesh`).
        axis_name: The mesh axis to split rows over.
        process_local: Multi-process runs: ``x`` holds only this process's rows (those
            :func:`process_rows` names), and the result is the global array they form
            (``jax.make_array_from_process_local_data``); the global row count is ``n`` times
            the number of processes. ``False``: ``x`` holds all rows (in a multi-process run,
            every process passes the same values).

    Returns:
        The same pytree of ``jax.Array``, each leaf split by rows over ``axis_name``.

    Raises:
        ValueError: a leaf without a leading axis; leaves whose row counts differ; a row count
            not divisible by the number of devices on ``axis_name``; an unknown ``axis_name``.
        TypeError: ``mesh`` not a ``jax.sharding.Mesh``.

    Examples:
        >>> import numpy as np
        >>> from jaxla import distributed
        >>> mesh = distributed.data_mesh()
        >>> xs, ys = distributed.shard_rows((np.ones((8, 3)), np.zeros(8)), mesh)
        >>> xs.shape, xs.sharding.spec
        ((8, 3), P('data',))
    """
    fn = f"{_MODULE}.shard_rows"
    mesh = _check_mesh(mesh, fn)
    axis_name = _check_axis(mesh, axis_name, fn)
    p = int(mesh.shape[axis_name])
    flat, treedef = jax.tree_util.tree_flatten_with_path(x)
    if not flat:
        _checks.fail(fn, "`x` must be an array or a pytree with at least one array, got "
                     f"{type(x).__name__} without leaves")
    sharding = NamedSharding(mesh, PartitionSpec(axis_name))
    procs = jax.process_count() if process_local else 1
    rows, first = None, None
    out = []
    for path, leaf in flat:
        shape = tuple(int(s) for s in np.shape(leaf))
        if not shape:
            _checks.fail(fn, f"`x` must have a leading row axis, got a scalar{_leaf_where(path)}")
        n = shape[0] * procs
        if rows is None:
            rows, first = n, _leaf_where(path)
        elif n != rows:
            _checks.fail(fn, f"`x` leaves must share the leading row axis ({rows} rows{first}), "
                         f"got {n}{_leaf_where(path)}")
        if n % p:
            _checks.fail(fn, f"`x` must have a number of rows divisible by the {p} devices of "
                         f"mesh axis {axis_name!r}, got {n} rows{_leaf_where(path)}; drop or pad "
                         "rows first")
        if process_local:
            out.append(jax.make_array_from_process_local_data(
                sharding, np.asarray(leaf), (n, *shape[1:])))
        else:
            out.append(jax.device_put(leaf, sharding))
    return jax.tree_util.tree_unflatten(treedef, out)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put a full copy of every leaf of ``tree`` on every device of ``mesh``.

    The parameters and optimizer state of data-parallel training are replicated: each device
    then updates its copy with the same all-reduced gradient, so the copies stay identical.

    Args:
        tree: A pytree of arrays (numpy or JAX) or numbers, e.g. a parameter dict.
        mesh: The mesh (e.g. from :func:`data_mesh`).

    Returns:
        The same pytree, each leaf a ``jax.Array`` with sharding ``NamedSharding(mesh, P())``.

    Raises:
        TypeError: ``mesh`` not a ``jax.sharding.Mesh``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxla import distributed
        >>> params = distributed.replicate({"w": jnp.zeros((3, 2))}, distributed.data_mesh())
        >>> params["w"].sharding.is_fully_replicated
        True
    """
    fn = f"{_MODULE}.replicate"
    mesh = _check_mesh(mesh, fn)
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(lambda leaf: jax.device_put(leaf, sharding), tree)


def process_rows(n_rows: int, mesh: Mesh, *, axis_name: str = "data") -> slice:
    """The rows of an ``n_rows``-row array split over ``axis_name`` that this process holds.

    In a multi-process run each process loads only these rows and passes them to
    :func:`shard_rows` with ``process_local=True``. In a single-process run it is every row.

    Args:
        n_rows: Global number of rows (divisible by the devices on ``axis_name``).
        mesh: The mesh (e.g. from :func:`data_mesh`).
        axis_name: The mesh axis rows are split over.

    Returns:
        ``slice(start, stop)`` of the global rows held by this process's devices.

    Raises:
        ValueError: ``n_rows`` not divisible; the process's rows not contiguous (a mesh whose
            devices are not grouped by process along ``axis_name``).

    Examples:
        >>> from jaxla import distributed
        >>> distributed.process_rows(8, distributed.data_mesh())
        slice(0, 8, None)
    """
    fn = f"{_MODULE}.process_rows"
    mesh = _check_mesh(mesh, fn)
    axis_name = _check_axis(mesh, axis_name, fn)
    n = _checks.check_int(n_rows, fn, "n_rows", min=1)
    p = int(mesh.shape[axis_name])
    if n % p:
        _checks.fail(fn, f"`n_rows` must be divisible by the {p} devices of mesh axis "
                     f"{axis_name!r}, got {n}")
    index_map = NamedSharding(mesh, PartitionSpec(axis_name)).addressable_devices_indices_map(
        (n,))
    spans = sorted({(idx[0].start or 0, n if idx[0].stop is None else idx[0].stop)
                    for idx in index_map.values()})
    start, stop = spans[0][0], spans[0][1]
    for lo, hi in spans[1:]:
        if lo != stop:
            _checks.fail(fn, f"`mesh` must give this process a contiguous block of rows along "
                         f"{axis_name!r}, got pieces {spans}")
        stop = hi
    return slice(start, stop)


def tsqr(x: jax.Array) -> QR:
    """QR factorization of a tall matrix split by rows, by TSQR (communication-avoiding).

    With ``x`` (n, k) split by rows into ``p`` pieces of at least ``k`` rows, each device factors
    its rows, ``x_i = Q_i R_i``; the ``k x k`` factors ``R_i`` are gathered (the only data that
    crosses devices: ``p k^2`` numbers, never rows of ``x``), the stacked ``(p k, k)`` matrix is
    factored, ``[R_1; ...; R_p] = Q' R``, and ``Q = diag(Q_1, ..., Q_p) Q'`` is formed where its
    rows live. Each local factorization is Householder QR, so ``Q`` is orthonormal to working
    precision whatever the conditioning of ``x`` (unlike Cholesky QR). Runs in one
    ``jax.shard_map``; the sharding is read from a concrete array, or from the type of a traced
    one with ``Explicit`` mesh axes. Otherwise (unsharded ``x``, pieces of fewer than ``k`` rows,
    ``Auto`` axes under ``jit``) it is :func:`jaxla.linalg.qr`.

    Args:
        x: (n, k) float array, ``n >= k``, usually split by rows (:func:`shard_rows`).

    Returns:
        ``QR(q, r)``: ``q`` (n, k) with orthonormal columns, split by rows like ``x``; ``r``
        (k, k) upper triangular with ``diag(r) >= 0``, replicated; ``x = q @ r``. Dtype of ``x``
        (float16/bfloat16 computed in float32).

    Raises:
        ValueError: ``x`` not 2-D or wider than tall; NaN/Inf in ``x`` (eagerly).
        TypeError: integer ``x``.

    Examples:
        >>> import numpy as np
        >>> from jaxla import distributed
        >>> mesh = distributed.data_mesh()
        >>> x = np.random.default_rng(0).standard_normal((16, 3)).astype(np.float32)
        >>> q, r = distributed.tsqr(distributed.shard_rows(x, mesh))
        >>> q.shape, r.shape
        ((16, 3), (3, 3))
        >>> print(bool(np.allclose(q @ r, x, atol=1e-5)), bool(np.all(np.diag(r) >= 0)))
        True True
    """
    fn = f"{_MODULE}.tsqr"
    x = _checks.as_float_array(x, fn, "x", ndim=2, doc="(n, k)")
    n, k = (int(s) for s in x.shape)
    if n < k:
        _checks.fail(fn, f"`x` must be tall (n >= k), got shape {(n, k)}")
    lowrank._check_finite_dense(x, fn, "x")
    rows = lowrank._tall_row_split(x)
    if rows is None:
        return qr(lowrank._unshard_explicit(x))
    return _tsqr_sharded(x, rows=rows)


@functools.partial(jax.jit, static_argnames=("rows",))
def _tsqr_sharded(x: jax.Array, *, rows: Any) -> QR:
    spec = PartitionSpec(rows.axes, None)
    dt = _checks.compute_dtype(x.dtype)

    def local(a):
        q, r = lowrank._tsqr_local(a.astype(dt), rows.axes)
        return QR(q.astype(a.dtype), r.astype(a.dtype))

    return jax.shard_map(local, mesh=rows.mesh, in_specs=spec,
                         out_specs=QR(spec, PartitionSpec()), check_vma=False)(x)

