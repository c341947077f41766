"""Graphs: adjacency matrices, Laplacians, spectral embedding and clustering, and PageRank.

A graph on ``n`` nodes is given by its adjacency matrix ``a`` (n, n): ``a[i, j]`` is the weight of
the edge from node ``i`` to node ``j`` (0 where there is none). An undirected graph has a
symmetric ``a``. :func:`adjacency_matrix` builds one from an edge list, dense or as a
``jax.experimental.sparse.BCOO`` matrix.

Definitions (those of networkx, scipy and scikit-learn, so results compare directly):

* **Degree.** ``d = a.sum(axis=1)`` (weighted out-degree; ``direction="in"`` gives the column
  sums). A self-loop ``a[i, i]`` counts once.
* **Laplacians** (:func:`laplacian`), with ``D = diag(d)``:

  - ``"combinatorial"``: ``L = D - a``;
  - ``"normalized"``: ``L = I - D^{-1/2} a D^{-1/2}``;
  - ``"random_walk"``: ``L = I - D^{-1} a``.

  An isolated node (``d_i = 0``) has a zero row and column in every kind: ``D^{-1/2}`` and
  ``D^{-1}`` are taken as 0 there, so nothing is divided by zero and the multiplicity of the
  eigenvalue 0 is the number of connected components (networkx's and scipy's convention, and
  F. Chung's definition). For a directed graph the out-degrees are used and ``L`` is not
  symmetric.
* **Spectral embedding** (:func:`spectral_embedding`, Laplacian eigenmaps, scikit-learn's
  ``spectral_embedding``): the eigenvectors of the smallest eigenvalues of the Laplacian of the
  symmetric part ``(a + a.T) / 2``. With ``kind="normalized"`` they are the eigenvectors ``u`` of
  ``I - D^{-1/2} a D^{-1/2}`` mapped to ``D^{-1/2} u`` (the eigenvectors of the random-walk
  Laplacian, orthonormal in the ``D`` inner product); with ``kind="combinatorial"`` the
  orthonormal eigenvectors of ``D - a``. Eigenvectors are computed densely by
  :func:`jaxla.linalg.eigh` and each column follows jaxla's sign convention: its entry of largest
  magnitude is positive (ties go to the first index), which is also scikit-learn's
  ``_deterministic_vector_sign_flip``.
* **Spectral clustering** (:func:`spectral_clustering`): k-means with k-means++ seeding on the
  ``n_clusters``-dimensional embedding with the first eigenvector kept (scikit-learn's
  ``SpectralClustering(affinity="precomputed", assign_labels="kmeans")``).
* **Spectral bisection** (:func:`spectral_bisection`): the sign of the Fiedler vector, the
  eigenvector of the second smallest Laplacian eigenvalue.
* **PageRank** (:func:`pagerank`): the stationary distribution ``x`` of the random walk that,
  with probability ``damping``, follows an out-edge of the current node (``i -> j`` with
  probability ``a[i, j] / d_i``) and otherwise jumps to a node drawn from the personalization
  vector ``p``; from a dangling node (no out-edge, ``d_i = 0``) the walk moves to a node drawn
  from the dangling weights (``p`` by default). ``x`` solves
  ``x = damping * (x P + (x . dangling_mask) w) + (1 - damping) p`` with ``P = D^{-1} a``; it is
  found by power iteration from the uniform vector in one ``lax.while_loop``, exactly as
  ``networkx.pagerank`` does.

Value problems: called eagerly, the functions raise ``ValueError`` on NaN/Inf adjacency
matrices, on negative weights (:func:`pagerank`, :func:`spectral_embedding`,
:func:`spectral_clustering`, :func:`spectral_bisection`), on a damping factor outside ``[0, 1)``
and on a personalization or dangling vector that is negative or sums to 0. Under ``jit`` they
cannot raise; the checks are expressed with ``jax.experimental.checkify.debug_check``, so
wrapping the call in ``jax.experimental.checkify.checkify`` reports the same messages. A PageRank
that runs out of iterations returns its last iterate with ``converged=False``; it does not raise.

Derivatives: :func:`laplacian` and :func:`spectral_embedding` are differentiable (the latter
through :func:`jaxla.linalg.eigh`'s rule); :func:`pagerank` and the k-means of
:func:`spectral_clustering` iterate in ``lax.while_loop`` and support forward mode only.

Dimension letters: ``n`` nodes, ``m`` edges, ``k`` embedding dimensions or clusters.

References:
    U. von Luxburg, "A tutorial on spectral clustering", Statistics and Computing 17(4), 2007.
    M. Belkin and P. Niyogi, "Laplacian eigenmaps for dimensionality reduction and data
    representation", Neural Computation 15(6), 2003. M. Fiedler, "Algebraic connectivity of
    graphs", Czechoslovak Math. J. 23(2), 1973. L. Page, S. Brin, R. Motwani and T. Winograd,
    "The PageRank citation ranking: bringing order to the web", 1999. A. Langville and
    C. Meyer, "Deeper inside PageRank", Internet Mathematics 1(3), 2004. D. Arthur and
    S. Vassilvitskii, "k-means++: the advantages of careful seeding", SODA 2007.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import checkify
from jax.experimental import sparse as jsparse
from jax.typing import ArrayLike, DTypeLike

from jaxla import _checks
from jaxla._checks import shape_of as _shape
from jaxla._numerics import eps, matmul, upcast
from jaxla.linalg import eigh
from jaxla.linalg._canonical import flip_columns

__all__ = [
    "LAPLACIANS",
    "Bisection",
    "PageRank",
    "SpectralClusters",
    "adjacency_matrix",
    "degree",
    "laplacian",
    "pagerank",
    "spectral_bisection",
    "spectral_clustering",
    "spectral_embedding",
]

LAPLACIANS = ("combinatorial", "normalized", "random_walk")
"""The values accepted by ``laplacian(..., kind=)``."""

_EMBEDDINGS = ("normalized", "combinatorial")
_DIRECTIONS = ("out", "in")
_MODULE = "jaxla.models"
_PAGERANK_FLOOR = 8.0
"""PageRank's rounding level: ``_PAGERANK_FLOOR * eps(dtype)`` of L1 change per iteration."""


class PageRank(NamedTuple):
    """The result of :func:`pagerank`. Under ``vmap`` every field gains a leading batch axis."""

    scores: jax.Array  # (n,) PageRank of each node, nonnegative, summing to 1
    iterations: jax.Array  # () int32, power iterations (one product with the adjacency each)
    residual: jax.Array  # () L1 norm of the change made by the last iteration
    converged: jax.Array  # () bool, residual <= max(tol, 8 eps(dtype)) when it stopped


class Bisection(NamedTuple):
    """The result of :func:`spectral_bisection`."""

    labels: jax.Array  # (n,) int32, 1 where the Fiedler vector is > 0, else 0
    fiedler: jax.Array  # (n,) the Fiedler vector (canonical sign: largest |entry| positive)
    connectivity: jax.Array  # () second smallest Laplacian eigenvalue (algebraic connectivity)


class SpectralClusters(NamedTuple):
    """The result of :func:`spectral_clustering`.

    Cluster labels are numbered in the order in which the clusters first appear among the nodes
    (node 0 is in cluster 0), so equal partitions give equal labels.
    """

    labels: jax.Array  # (n,) int32, cluster of each node, in 0..k-1
    embedding: jax.Array  # (n, k) spectral embedding that k-means clustered
    centers: jax.Array  # (k, k) cluster centers in the embedding, row c for label c
    inertia: jax.Array  # () sum of squared distances of the nodes to their centers
    n_iter: jax.Array  # () int32, Lloyd iterations of the best k-means run
    converged: jax.Array  # () bool, the best k-means run met its tolerance within max_iter


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _check_weights(values: jax.Array, fn: str, name: str) -> None:
    """NaN/Inf and negative entries of an adjacency matrix (or of a BCOO's stored values)."""
    _checks.check_finite(values, fn, name)
    if _checks.is_concrete(values):
        bad = int(np.count_nonzero(np.asarray(values) < 0))
        if bad:
            _checks.fail(fn, f"`{name}` must have nonnegative weights, got {bad} negative "
                         f"value(s)")
    else:
        checkify.debug_check(jnp.all(jnp.isfinite(values)),
                             f"{fn}: `{name}` contains NaN or Inf value(s); clean or mask them "
                             "first")
        checkify.debug_check(jnp.all(values >= 0),
                             f"{fn}: `{name}` must have nonnegative weights")


def _dense_adjacency(adjacency: Any, fn: str, *, nonnegative: bool) -> jax.Array:
    """A dense square float adjacency matrix, validated (NaN/Inf, optionally negative weights)."""
    if isinstance(adjacency, jsparse.JAXSparse):
        _checks.fail(fn, f"`adjacency` must be a dense array (n, n) (convert a sparse matrix "
                     f"with .todense()), got {type(adjacency).__name__}", TypeError)
    a = _checks.as_float_array(adjacency, fn, "adjacency", ndim=2, doc="(n, n)")
    _checks.check_square(a, fn, "adjacency")
    if a.shape[0] == 0:
        _checks.fail(fn, f"`adjacency` must have at least one node, got shape {_shape(a)}")
    if nonnegative:
        _check_weights(a, fn, "adjacency")
    else:
        _checks.check_finite(a, fn, "adjacency")
        if not _checks.is_concrete(a):
            checkify.debug_check(jnp.all(jnp.isfinite(a)),
                                 f"{fn}: `adjacency` contains NaN or Inf value(s); clean or mask "
                                 "them first")
    return a


def _inverse(d: jax.Array, power: float) -> jax.Array:
    """``d ** -power`` where ``d > 0``, else 0 (finite derivatives at ``d = 0``)."""
    pos = d > 0
    safe = jnp.where(pos, d, jnp.ones_like(d))
    return jnp.where(pos, safe ** (-power), jnp.zeros_like(d))


def _laplacian(a: jax.Array, kind: str) -> jax.Array:
    n = a.shape[0]
    d = jnp.sum(a, axis=1)
    eye = jnp.eye(n, dtype=a.dtype)
    lap = d[:, None] * eye - a
    if kind == "combinatorial":
        return lap
    if kind == "normalized":
        s = _inverse(d, 0.5)
        return s[:, None] * lap * s[None, :]
    return _inverse(d, 1.0)[:, None] * lap


# ---------------------------------------------------------------------------------------------
# Adjacency matrices and degrees


def adjacency_matrix(
    edges: ArrayLike,
    n: int,
    *,
    directed: bool,
    weights: ArrayLike | None = None,
    sparse: bool = False,
    dtype: DTypeLike | None = None,
) -> jax.Array | jsparse.BCOO:
    """The adjacency matrix of a graph given by its edge list.

    Edge ``(i, j)`` with weight ``w`` sets ``a[i, j] = w``, and ``a[j, i] = w`` too when
    ``directed=False`` (a self-loop ``(i, i)`` sets ``a[i, i] = w`` once, as networkx's
    ``to_numpy_array`` does). Repeated edges add their weights, so list each undirected edge
    once.

    Args:
        edges: (m, 2) integer array of node indices in ``[0, n)``; row ``(i, j)`` is an edge from
            ``i`` to ``j``.
        n: Number of nodes (static Python int >= 1).
        directed: Whether edges are one-way (``True``) or symmetric (``False``).
        weights: Optional (m,) real weights, one per edge (default 1).
        sparse: Return a ``jax.experimental.sparse.BCOO`` matrix (``m`` stored entries for a
            directed graph, ``2 m`` for an undirected one; repeated entries are summed by every
            BCOO operation) instead of a dense array.
        dtype: Floating dtype of the result; default: the dtype of ``weights``, else float32.

    Returns:
        The (n, n) adjacency matrix, a dense ``jax.Array`` or a ``BCOO``.

    Raises:
        TypeError: ``edges`` not integer, ``weights`` or ``dtype`` not floating, ``directed`` or
            ``sparse`` not a bool.
        ValueError: ``edges`` not (m, 2), ``weights`` not (m,), node indices outside ``[0, n)``
            (checked eagerly).

    Examples:
        >>> import numpy as np
        >>> from jaxla.models.graphs import adjacency_matrix
        >>> edges = np.array([[0, 1], [1, 2]])
        >>> np.asarray(adjacency_matrix(edges, 3, directed=False)).astype(int)
        array([[0, 1, 0],
               [1, 0, 1],
               [0, 1, 0]])
        >>> a = adjacency_matrix(edges, 3, directed=True, weights=np.array([2.0, 0.5]),
        ...                      sparse=True)
        >>> np.asarray(a.todense())
        array([[0. , 2. , 0. ],
               [0. , 0. , 0.5],
               [0. , 0. , 0. ]])
    """
    fn = f"{_MODULE}.adjacency_matrix"
    n = _checks.check_int(n, fn, "n", min=1)
    directed = _checks.check_bool(directed, fn, "directed")
    sparse = _checks.check_bool(sparse, fn, "sparse")
    e = edges if isinstance(edges, jax.Array) else jnp.asarray(edges)
    if not jnp.issubdtype(e.dtype, jnp.integer):
        _checks.fail(fn, f"`edges` must have an integer dtype (node indices), got dtype "
                     f"{e.dtype}", TypeError)
    if e.ndim != 2 or e.shape[1] != 2:
        _checks.fail(fn, f"`edges` must be 2-D (m, 2), got shape {_shape(e)}")
    m = e.shape[0]
    if _checks.is_concrete(e) and m:
        lo, hi = int(np.min(np.asarray(e))), int(np.max(np.asarray(e)))
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            _checks.fail(fn, f"`edges` must hold node indices in [0, n) = [0, {n}), got {bad}")
    if weights is not None:
        w = _checks.as_float_array(weights, fn, "weights", ndim=1, doc="(m,)")
        if w.shape[0] != m:
            _checks.fail(fn, f"`weights` must have shape (m,) = ({m},), one per edge, got shape "
                         f"{_shape(w)}")
    if dtype is None:
        dtype = jnp.float32 if weights is None else w.dtype
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        _checks.fail(fn, f"`dtype` must be a real floating dtype, got {dtype}", TypeError)
    return _adjacency_jit(e, None if weights is None else w, n, directed, sparse, dtype)


@functools.partial(jax.jit, static_argnames=("n", "directed", "sparse", "dtype"))
def _adjacency_jit(e, w, n: int, directed: bool, sparse: bool, dtype) -> jax.Array | jsparse.BCOO:
    w = jnp.ones((e.shape[0],), dtype) if w is None else w.astype(dtype)
    src, dst = e[:, 0].astype(jnp.int32), e[:, 1].astype(jnp.int32)
    if not directed:
        w_back = jnp.where(src == dst, jnp.zeros_like(w), w)
        src, dst = jnp.concatenate([src, dst]), jnp.concatenate([dst, src])
        w = jnp.concatenate([w, w_back])
    if sparse:
        return jsparse.BCOO((w, jnp.stack([src, dst], axis=1)), shape=(n, n))
    return jnp.zeros((n, n), dtype).at[src, dst].add(w)


def degree(adjacency: ArrayLike | jsparse.BCOO, *, direction: str = "out") -> jax.Array:
    """Weighted degrees of the nodes: row sums (``"out"``) or column sums (``"in"``).

    For an undirected graph (symmetric adjacency) both are the degree; a self-loop counts once.

    Args:
        adjacency: (n, n) adjacency matrix, dense or ``BCOO`` (``a[i, j]`` weighs the edge
            ``i -> j``).
        direction: ``"out"`` (``a.sum(axis=1)``) or ``"in"`` (``a.sum(axis=0)``).

    Returns:
        (n,) degrees in the dtype of ``adjacency``.

    Raises:
        TypeError: integer or boolean ``adjacency``.
        ValueError: ``adjacency`` not square, unknown ``direction``, NaN/Inf values (eagerly).

    Examples:
        >>> import numpy as np
        >>> from jaxla.models.graphs import adjacency_matrix, degree
        >>> a = adjacency_matrix(np.array([[0, 1], [0, 2], [1, 2]]), 3, directed=True)
        >>> np.asarray(degree(a)).astype(int), np.asarray(degree(a, direction="in")).astype(int)
        (array([2, 1, 0]), array([0, 1, 2]))
    """
    fn = f"{_MODULE}.degree"
    direction = _checks.check_option(direction, _DIRECTIONS, fn, "direction")
    axis = 1 if direction == "out" else 0
    if isinstance(adjacency, jsparse.BCOO):
        _check_bcoo(adjacency, fn, nonnegative=False)
    else:
        adjacency = _dense_adjacency(adjacency, fn, nonnegative=False)
    return _degree_jit(adjacency, axis)


@functools.partial(jax.jit, static_argnames="axis")
def _degree_jit(adjacency, axis: int) -> jax.Array:
    if isinstance(adjacency, jsparse.BCOO):
        rows, cols, data = _bcoo_parts(adjacency)
        idx = rows if axis == 1 else cols
        dt = _checks.compute_dtype(data.dtype)
        out = jax.ops.segment_sum(data.astype(dt), idx, num_segments=adjacency.shape[0])
        return out.astype(data.dtype)
    dt = _checks.compute_dtype(adjacency.dtype)
    return jnp.sum(adjacency.astype(dt), axis=axis).astype(adjacency.dtype)


def laplacian(adjacency: ArrayLike, *, kind: str = "combinatorial") -> jax.Array:
    """The graph Laplacian: ``D - A``, ``I - D^{-1/2} A D^{-1/2}`` or ``I - D^{-1} A``.

    ``D = diag(d)`` holds the weighted out-degrees ``d = A.sum(axis=1)``. An isolated node
    (``d_i = 0``) gets a zero row and column in every kind (``D^{-1/2}`` and ``D^{-1}`` are taken
    as 0 there), so no NaN appears and the multiplicity of the eigenvalue 0 is the number of
    connected components; this is networkx's ``normalized_laplacian_matrix`` and scipy's
    ``csgraph.laplacian(normed=True)``. A self-loop ``A[i, i]`` adds to ``d_i`` and cancels in
    ``D - A``. Differentiable (finite derivatives at isolated nodes).

    Args:
        adjacency: (n, n) dense adjacency matrix (weights may be any real numbers).
        kind: ``"combinatorial"``, ``"normalized"`` or ``"random_walk"``.

    Returns:
        (n, n) Laplacian in the dtype of ``adjacency`` (symmetric for a symmetric ``adjacency``
        except for ``"random_walk"``).

    Raises:
        TypeError: integer, boolean or sparse ``adjacency``.
        ValueError: ``adjacency`` not square, unknown ``kind``, NaN/Inf values (eagerly).

    Examples:
        >>> import numpy as np
        >>> from jaxla.models.graphs import adjacency_matrix, laplacian
        >>> a = adjacency_matrix(np.array([[0, 1], [1, 2]]), 4, directed=False)  # node 3 alone
        >>> np.asarray(laplacian(a)).astype(int)
        array([[ 1, -1,  0,  0],
               [-1,  2, -1,  0],
               [ 0, -1,  1,  0],
               [ 0,  0,  0,  0]])
        >>> np.round(np.asarray(laplacian(a, kind="normalized"), dtype=float), 3)
        array([[ 1.   , -0.707,  0.   ,  0.   ],
               [-0.707,  1.   , -0.707,  0.   ],
               [ 0.   , -0.707,  1.   ,  0.   ],
               [ 0.   ,  0.   ,  0.   ,  0.   ]])
    """
    fn = f"{_MODULE}.laplacian"
    kind = _checks.check_option(kind, LAPLACIANS, fn, "kind")
    a = _dense_adjacency(adjacency, fn, nonnegative=False)
    return _laplacian_jit(a, kind)


@functools.partial(jax.jit, static_argnames="kind")
def _laplacian_jit(a: jax.Array, kind: str) -> jax.Array:
    return _laplacian(upcast(a), kind).astype(a.dtype)


# ---------------------------------------------------------------------------------------------
# Spectral methods


@functools.partial(jax.jit, static_argnames="kind")
def _spectrum(a: jax.Array, kind: str) -> tuple[jax.Array, jax.Array]:
    """Eigenvalues (n,) ascending and embedding vectors (n, n) of the Laplacian of ``a``.

    ``a`` is the input adjacency; its symmetric part is used, in the compute dtype. The vectors
    are the eigenvectors (``D^{-1/2} u`` for the normalized kind) with canonical signs. All of
    them are computed (dense ``eigh``), so one compilation serves every ``dim``.
    """
    a = upcast(a)
    a = (a + a.T) / 2
    lap = _laplacian(a, "normalized" if kind == "normalized" else "combinatorial")
    w, v = eigh(lap)
    if kind == "normalized":
        # D^{-1/2} u, with 1 in place of D^{-1/2} at isolated nodes (as scikit-learn does)
        d = jnp.sum(a, axis=1)
        v = v * jnp.where(d > 0, _inverse(d, 0.5), jnp.ones_like(d))[:, None]
    return w, flip_columns(v)


def spectral_embedding(
    adjacency: ArrayLike, dim: int, *, kind: str = "normalized", drop_first: bool = True
) -> jax.Array:
    """Laplacian eigenmaps: the nodes embedded by the Laplacian's bottom eigenvectors.

    The eigenvectors of the ``dim`` (``dim + 1`` with ``drop_first``) smallest eigenvalues of the
    Laplacian of ``(A + A.T) / 2``, computed densely by :func:`jaxla.linalg.eigh` (``n^3`` work):

    * ``kind="normalized"``: the eigenvectors ``u`` of ``I - D^{-1/2} A D^{-1/2}`` mapped to
      ``D^{-1/2} u``, scikit-learn's ``spectral_embedding(norm_laplacian=True)``; these are the
      eigenvectors of the random-walk Laplacian ``I - D^{-1} A``, orthonormal in the
      ``D``-weighted inner product, and the first one is constant on each connected component;
    * ``kind="combinatorial"``: the orthonormal eigenvectors of ``D - A``
      (``norm_laplacian=False``).

    ``drop_first`` drops the first eigenvector (constant for a connected graph). Each column is
    flipped so that its entry of largest magnitude is positive (jaxla's convention and
    scikit-learn's), so for a connected graph with distinct eigenvalues the result equals
    scikit-learn's. scikit-learn ignores the diagonal of the adjacency (self-loops) in the
    normalized Laplacian; jaxla counts self-loops in the degrees, as networkx does. An isolated
    node's coordinates are not scaled by ``D^{-1/2}`` (scikit-learn's convention).
    Differentiable where the eigenvalues used are distinct from their neighbours.

    Args:
        adjacency: (n, n) dense adjacency (affinity) matrix, nonnegative weights.
        dim: Number of columns of the embedding (static int, ``1 <= dim <= n - 1``).
        kind: ``"normalized"`` or ``"combinatorial"``.
        drop_first: Drop the eigenvector of the smallest eigenvalue.

    Returns:
        (n, dim) embedding in the dtype of ``adjacency``; row ``i`` holds the coordinates of
        node ``i``.

    Raises:
        TypeError: integer, boolean or sparse ``adjacency``; ``dim`` not an int.
        ValueError: ``adjacency`` not square, ``dim`` outside ``[1, n)``, unknown ``kind``,
            NaN/Inf or negative weights (eagerly).

    Examples:
        >>> import numpy as np
        >>> from jaxla.models.graphs import adjacency_matrix, spectral_embedding
        >>> ring = np.array([[i, (i + 1) % 6] for i in range(6)])
        >>> a = adjacency_matrix(ring, 6, directed=False, dtype=np.float64)
        >>> z = spectral_embedding(a, 2)
        >>> z.shape
        (6, 2)
        >>> np.round(np.sum(np.asarray(z) ** 2, axis=1) * 2 * 6, 3)  # a circle
        array([2., 2., 2., 2., 2., 2.])
    """
    fn = f"{_MODULE}.spectral_embedding"
    kind = _checks.check_option(kind, _EMBEDDINGS, fn, "kind")
    drop_first = _checks.check_bool(drop_first, fn, "drop_first")
    a = _dense_adjacency(adjacency, fn, nonnegative=True)
    dim = _checks.check_int(dim, fn, "dim", min=1, max=a.shape[0] - 1, max_doc="n - 1")
    _, v = _spectrum(a, kind)
    start = int(drop_first)
    return v[:, start:start + dim].astype(a.dtype)


def spectral_bisection(adjacency: ArrayLike, *, kind: str = "combinatorial") -> Bisection:
    """Split a graph in two by the sign of its Fiedler vector.

    The Fiedler vector is the eigenvector of the second smallest eigenvalue of the Laplacian of
    ``(A + A.T) / 2``: of ``D - A`` (``kind="combinatorial"``, the relaxed ratio cut) or the
    ``D^{-1/2} u`` vector of the normalized Laplacian (``kind="normalized"``, the relaxed
    normalized cut; see :func:`spectral_embedding`). Its sign follows jaxla's convention (largest
    magnitude entry positive), so ``labels`` puts the node of largest ``|fiedler|`` in part 1.
    For a disconnected graph the second eigenvalue is 0 and the Fiedler vector is constant on
    each connected component, so the split keeps every component on one side.

    Args:
        adjacency: (n, n) dense adjacency matrix, nonnegative weights, ``n >= 2``.
        kind: ``"combinatorial"`` or ``"normalized"``.

    Returns:
        ``Bisection(labels, fiedler, connectivity)``: labels (n,) int32 (1 where
        ``fiedler > 0``, else 0), the Fiedler vector (n,) and the second smallest eigenvalue ()
        of the Laplacian (the algebraic connectivity for the combinatorial kind), in the dtype
        of ``adjacency``.

    Raises:
        TypeError: integer, boolean or sparse ``adjacency``.
        ValueError: ``adjacency`` not square or smaller than 2 x 2, unknown ``kind``, NaN/Inf or
            negative weights (eagerly).

    Examples:
        >>> import numpy as np
        >>> from jaxla.models.graphs import adjacency_matrix, spectral_bisection
        >>> two_triangles = np.array([[0, 1], [1, 2], [2, 0], [3, 4], [4, 5], [5, 3], [2, 3]])
        >>> a = adjacency_matrix(two_triangles, 6, directed=False)
        >>> np.asarray(spectral_bisection(a).labels).tolist()
        [1, 1, 1, 0, 0, 0]
    """
    fn = f"{_MODULE}.spectral_bisection"
    kind = _checks.check_option(kind, _EMBEDDINGS, fn, "kind")
    a = _dense_adjacency(adjacency, fn, nonnegative=True)
    if a.shape[0] < 2:
        _checks.fail(fn, f"`adjacency` must have at least 2 nodes, got shape {_shape(a)}")
    w, v = _spectrum(a, kind)
    f = v[:, 1]
    return Bisection((f > 0).astype(jnp.int32), f.astype(a.dtype), w[1].astype(a.dtype))


def _sq_distances(x: jax.Array, c: jax.Array) -> jax.Array:
    """Squared Euclidean distances (n, k) between the rows of ``x`` (n, d) and ``c`` (k, d)."""
    d2 = (jnp.sum(x * x, axis=1)[:, None] - 2 * matmul(x, c.T)
          + jnp.sum(c * c, axis=1)[None, :])
    return jnp.maximum(d2, 0)


def _kmeans_plusplus(u: jax.Array, x: jax.Array, k: int) -> jax.Array:
    """Greedy k-means++ seeding (scikit-learn's: ``2 + log(k)`` candidates per center).

    ``u`` (k, trials) holds uniform random numbers in [0, 1): ``u[0, 0]`` picks the first center,
    ``u[c]`` the candidates for center ``c``, drawn with probability proportional to the squared
    distance to the nearest center chosen so far (inverse-CDF sampling).
    """
    n = x.shape[0]
    first = jnp.minimum((u[0, 0] * n).astype(jnp.int32), n - 1)
    centers = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(x[first])
    closest = _sq_distances(x, x[first][None, :])[:, 0]

    def add(c, state):
        centers, closest = state
        cum = jnp.cumsum(closest)
        cand = jnp.searchsorted(cum, u[c].astype(cum.dtype) * cum[-1], side="right",
                                method="compare_all")
        cand = jnp.minimum(cand, n - 1)
        d2 = jnp.minimum(closest[:, None], _sq_distances(x, x[cand]))  # (n, trials)
        best = jnp.argmin(jnp.sum(d2, axis=0))
        return centers.at[c].set(x[cand[best]]), d2[:, best]

    centers, _ = lax.fori_loop(1, k, add, (centers, closest))
    return centers


def _kmeans_one(u, x, k, max_iter, tol):
    """One k-means run: k-means++ seeding, then Lloyd iterations in a while loop."""
    onehot = jnp.arange(k)[None, :]

    def update(c):
        lab = jnp.argmin(_sq_distances(x, c), axis=1)
        member = (lab[:, None] == onehot).astype(x.dtype)  # (n, k)
        counts = jnp.sum(member, axis=0)
        sums = matmul(member.T, x)
        # an empty cluster keeps its center
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], c)

    def cond(state):
        _, it, shift = state
        return (it < max_iter) & (shift > tol)

    def body(state):
        c, it, _ = state
        new = update(c)
        return new, it + 1, jnp.sum((new - c) ** 2)

    c0 = _kmeans_plusplus(u, x, k)
    c, it, shift = lax.while_loop(cond, body, (c0, jnp.int32(0), jnp.array(jnp.inf, x.dtype)))
    d2 = _sq_distances(x, c)
    lab = jnp.argmin(d2, axis=1).astype(jnp.int32)
    inertia = jnp.sum(jnp.min(d2, axis=1))
    return c, lab, inertia, it, shift <= tol


def _relabel(labels: jax.Array, centers: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Number clusters by first appearance among the nodes; reorder the centers to match."""
    n, k = labels.shape[0], centers.shape[0]
    member = labels[:, None] == jnp.arange(k)[None, :]
    first = jnp.min(jnp.where(member, jnp.arange(n)[:, None], n), axis=0)  # (k,)
    idx = jnp.arange(k)
    before = (first[None, :] < first[:, None]) | ((first[None, :] == first[:, None])
                                                  & (idx[None, :] < idx[:, None]))
    rank = jnp.sum(before, axis=1)  # new label of old label c (a permutation of 0..k-1)
    return rank[labels].astype(jnp.int32), jnp.zeros_like(centers).at[rank].set(centers)


def spectral_clustering(
    key: jax.Array,
    adjacency: ArrayLike,
    n_clusters: int,
    *,
    kind: str = "normalized",
    n_init: int = 10,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> SpectralClusters:
    """Spectral clustering of a graph (or affinity matrix): k-means on its spectral embedding.

    The nodes are embedded by the ``k = n_clusters`` bottom eigenvectors of the Laplacian
    (:func:`spectral_embedding` with ``drop_first=False``), then clustered by k-means: ``n_init``
    runs (one after the other, ``lax.map``) from greedy k-means++ seeds, each iterating Lloyd's
    algorithm in a ``lax.while_loop`` until the squared center shift is at most ``tol`` times
    the mean per-dimension variance of the embedding (scikit-learn's rule) or ``max_iter``
    iterations; the run with the smallest inertia wins. This is scikit-learn's
    ``SpectralClustering(n_clusters, affinity="precomputed")``; an empty cluster keeps its
    center (scikit-learn moves it to a far point).

    Args:
        key: JAX random key for the k-means seeds.
        adjacency: (n, n) dense adjacency (affinity) matrix, nonnegative weights.
        n_clusters: Number of clusters ``k`` (static int, ``2 <= k <= n - 1``).
        kind: Laplacian of the embedding, ``"normalized"`` or ``"combinatorial"``.
        n_init: Number of k-means runs (static int >= 1).
        max_iter: Lloyd iterations per run (int >= 1).
        tol: Relative tolerance on the center shift (>= 0).

    Returns:
        ``SpectralClusters(labels, embedding, centers, inertia, n_iter, converged)``: labels
        (n,) int32 numbered by first appearance, the embedding (n, k), centers (k, k), inertia
        (), n_iter () int32 and converged () bool of the best run; floating fields in the dtype
        of ``adjacency``.

    Raises:
        TypeError: integer, boolean or sparse ``adjacency``; a bad ``key``.
        ValueError: ``adjacency`` not square, ``n_clusters`` outside ``[2, n - 1]``, bad
            ``n_init``/``max_iter``/``tol``, unknown ``kind``, NaN/Inf or negative weights
            (eagerly).

    Examples:
        >>> import jax
        >>> import numpy as np
        >>> from jaxla.models.graphs import adjacency_matrix, spectral_clustering
        >>> cliques = [[i, j] for c in range(3) for i in range(4 * c, 4 * c + 4)
        ...            for j in range(i + 1, 4 * c + 4)]
        >>> bridges = [[3, 4], [7, 8]]
        >>> a = adjacency_matrix(np.array(cliques + bridges), 12, directed=False)
        >>> np.asarray(spectral_clustering(jax.random.key(0), a, 3).labels).tolist()
        [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    """
    fn = f"{_MODULE}.spectral_clustering"
    _checks.check_key(key, fn)
    kind = _checks.check_option(kind, _EMBEDDINGS, fn, "kind")
    a = _dense_adjacency(adjacency, fn, nonnegative=True)
    n = a.shape[0]
    k = _checks.check_int(n_clusters, fn, "n_clusters", min=2, max=n - 1, max_doc="n - 1")
    n_init = _checks.check_int(n_init, fn, "n_init", min=1)
    max_iter = _checks.check_int(max_iter, fn, "max_iter", min=1)
    tol = _checks.check_positive(tol, fn, "tol", allow_zero=True)
    _, v = _spectrum(a, kind)
    return _kmeans_jit(key, v[:, :k], tol, max_iter, a.dtype, n_init)


@functools.partial(jax.jit, static_argnames=("dtype", "n_init"))
def _kmeans_jit(key, z, tol, max_iter, dtype, n_init: int) -> SpectralClusters:
    k = z.shape[1]
    tol_abs = tol * jnp.mean(jnp.var(z, axis=0))
    # all random numbers in one draw (n_init runs, k centers, 2 + log(k) candidates each)
    u = jax.random.uniform(key, (n_init, k, 2 + int(math.log(k))))
    c, lab, inertia, it, conv = lax.map(lambda ui: _kmeans_one(ui, z, k, max_iter, tol_abs), u)
    b = jnp.argmin(inertia)
    labels, centers = _relabel(lab[b], c[b])
    return SpectralClusters(labels, z.astype(dtype), centers.astype(dtype),
                            inertia[b].astype(dtype), it[b], conv[b])


# ---------------------------------------------------------------------------------------------
# PageRank


def _check_bcoo(a: jsparse.BCOO, fn: str, *, nonnegative: bool) -> None:
    """Validate a square 2-D BCOO adjacency matrix (shape, dtype, NaN/Inf, negative values)."""
    if a.n_batch or a.n_dense or len(a.shape) != 2:
        _checks.fail(fn, f"`adjacency` must be a 2-D BCOO matrix without batch or dense "
                     f"dimensions, got shape {tuple(a.shape)} with n_batch={a.n_batch}, "
                     f"n_dense={a.n_dense}")
    _checks.check_square(a, fn, "adjacency")
    n = a.shape[0]
    if n == 0:
        _checks.fail(fn, f"`adjacency` must have at least one node, got shape {tuple(a.shape)}")
    data = _checks.as_float_array(a.data, fn, "adjacency")
    if nonnegative:
        _check_weights(data, fn, "adjacency")
    else:
        _checks.check_finite(data, fn, "adjacency")


def _bcoo_parts(a: jsparse.BCOO) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Row indices, column indices and values (nse,) of a square 2-D BCOO matrix.

    Padding entries (indices out of range) get the value 0, the row index 0 and the column
    index ``n`` (dropped by ``segment_sum``).
    """
    n = a.shape[0]
    rows, cols = a.indices[:, 0], a.indices[:, 1]
    valid = (rows < n) & (cols < n)
    return (jnp.where(valid, rows, 0), jnp.where(valid, cols, n),
            jnp.where(valid, a.data, jnp.zeros_like(a.data)))


def _probability_vector(v: ArrayLike | None, n: int, fn: str, name: str) -> jax.Array | None:
    """Validate a nonnegative (n,) vector with positive sum (None stays None)."""
    if v is None:
        return None
    v = _checks.as_float_array(v, fn, name, ndim=1, doc="(n,)")
    if v.shape[0] != n:
        _checks.fail(fn, f"`{name}` must have shape (n,) = ({n},), one entry per node, got "
                     f"shape {_shape(v)}")
    _checks.check_finite(v, fn, name)
    if _checks.is_concrete(v):
        vals = np.asarray(v, np.float64)
        if np.any(vals < 0):
            _checks.fail(fn, f"`{name}` must be nonnegative, got "
                         f"{int(np.count_nonzero(vals < 0))} negative value(s)")
        if not vals.sum() > 0:
            _checks.fail(fn, f"`{name}` must have a positive sum, got {float(vals.sum())!r}")
    else:
        checkify.debug_check(jnp.all(jnp.isfinite(v)),
                             f"{fn}: `{name}` contains NaN or Inf value(s); clean or mask them "
                             "first")
        checkify.debug_check(jnp.all(v >= 0), f"{fn}: `{name}` must be nonnegative")
        checkify.debug_check(jnp.sum(v) > 0, f"{fn}: `{name}` must have a positive sum")
    return v


def _check_damping(damping: Any, fn: str) -> Any:
    if isinstance(damping, jax.Array | np.ndarray) and np.ndim(damping) != 0:
        _checks.fail(fn, f"`damping` must be a scalar, got shape {_shape(damping)}")
    if not _checks.is_concrete(damping):
        checkify.debug_check((damping >= 0) & (damping < 1),
                             f"{fn}: `damping` must be in [0, 1)")
        return damping
    try:
        d = float(damping)
    except (TypeError, ValueError):
        _checks.fail(fn, f"`damping` must be a real number, got {damping!r}", TypeError)
    if not 0 <= d < 1:
        _checks.fail(fn, f"`damping` must be in [0, 1), got {d!r}")
    return d


def pagerank(
    adjacency: ArrayLike | jsparse.BCOO,
    *,
    damping: float = 0.85,
    personalization: ArrayLike | None = None,
    dangling: ArrayLike | None = None,
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> PageRank:
    """PageRank by power iteration, as ``networkx.pagerank``, dense or sparse, under ``jit``.

    ``A[i, j] >= 0`` weighs the edge ``i -> j``; ``P = D^{-1} A`` (``D`` the out-degrees) is the
    walk's transition matrix. From the uniform vector, each iteration computes

        ``x <- damping * (x P + (sum of x over dangling nodes) * w) + (1 - damping) * p``

    with ``p`` the personalization (uniform by default) and ``w`` the dangling weights
    (``p`` by default), both normalized to sum 1. It stops when the L1 change
    ``residual = ||x_new - x||_1`` is at most ``tol``, after ``max_iter`` iterations, or when the
    residual has reached rounding level (at most ``8 eps(dtype)``, about 1e-6 in float32) and
    stops decreasing, so a ``tol`` below what the dtype can resolve never wastes iterations;
    ``converged`` is ``residual <= max(tol, 8 eps(dtype))``. Since ``P`` is stochastic, the L1
    error of ``x`` is at most ``damping / (1 - damping) * residual`` plus rounding errors.
    networkx stops at an L1 change below ``n * tol_networkx``, so ``tol = n * tol_networkx``
    reproduces its stopping rule. The scores are finally divided by their sum. Each iteration
    costs one product with ``A``: ``n^2`` work dense, ``nse`` (stored entries) sparse.

    ``damping``, ``tol``, ``personalization`` and ``dangling`` may be traced, so ``jax.vmap``
    maps over them (e.g. one personalized PageRank per row of a matrix of personalization
    vectors); every call on a graph of the same shape, dtype and layout shares one compilation.
    Forward-mode differentiable; not reverse-mode (``lax.while_loop``).

    Args:
        adjacency: (n, n) nonnegative adjacency matrix, a dense array or a 2-D
            ``jax.experimental.sparse.BCOO`` (repeated entries add up).
        damping: Probability of following an edge, in ``[0, 1)``.
        personalization: Optional (n,) nonnegative teleport weights with a positive sum.
        dangling: Optional (n,) nonnegative weights, positive sum, of where the walk goes from a
            dangling node (default: ``personalization``).
        tol: Tolerance on the L1 change of one iteration (>= 0).
        max_iter: Maximum number of iterations (int >= 1).

    Returns:
        ``PageRank(scores, iterations, residual, converged)``: scores (n,) summing to 1 in the
        dtype of ``adjacency`` (float16/bfloat16 are computed in float32), iterations () int32,
        residual () the L1 change of the last iteration, converged () bool. Without
        convergence the last iterate is returned with ``converged=False`` (no error is raised).

    Raises:
        TypeError: integer or boolean arrays; non-numeric ``damping``.
        ValueError: ``adjacency`` not square; ``personalization`` or ``dangling`` not of shape
            (n,); ``damping`` outside ``[0, 1)``; bad ``tol``/``max_iter``; and, eagerly, NaN/Inf
            or negative weights and personalization/dangling vectors that are negative or sum
            to 0 (under ``jit``: ``jax.experimental.checkify`` reports them).

    Examples:
        >>> import numpy as np
        >>> from jaxla.models.graphs import adjacency_matrix, pagerank
        >>> edges = np.array([[0, 1], [1, 2], [2, 0], [2, 1], [3, 2]])
        >>> pr = pagerank(adjacency_matrix(edges, 4, directed=True))
        >>> np.round(np.asarray(pr.scores, dtype=float), 4)
        array([0.202 , 0.3736, 0.3869, 0.0375])
        >>> bool(pr.converged), round(float(np.sum(pr.scores)), 6)
        (True, 1.0)
        >>> sparse = adjacency_matrix(edges, 4, directed=True, sparse=True)
        >>> np.round(np.asarray(pagerank(sparse, damping=0.5).scores, dtype=float), 4)
        array([0.2115, 0.3173, 0.3462, 0.125 ])
    """
    fn = f"{_MODULE}.pagerank"
    damping = _check_damping(damping, fn)
    tol = _checks.check_positive(tol, fn, "tol", allow_zero=True)
    max_iter = _checks.check_int(max_iter, fn, "max_iter", min=1)
    if isinstance(adjacency, jsparse.BCOO):
        _check_bcoo(adjacency, fn, nonnegative=True)
    elif isinstance(adjacency, jsparse.JAXSparse):
        _checks.fail(fn, f"`adjacency` must be a dense array or a BCOO matrix, got "
                     f"{type(adjacency).__name__}", TypeError)
    else:
        adjacency = _dense_adjacency(adjacency, fn, nonnegative=True)
    n = adjacency.shape[0]
    p = _probability_vector(personalization, n, fn, "personalization")
    w = _probability_vector(dangling, n, fn, "dangling")
    # defaults as arrays, so that every call on a graph shares one compilation
    dt = _checks.compute_dtype(adjacency.dtype)
    p = np.full((n,), 1.0 / n, dt) if p is None else p
    w = p if w is None else w
    return _pagerank_jit(adjacency, p, w, damping, tol, max_iter)


@jax.jit
def _pagerank_jit(adjacency, p, w, damping, tol, max_iter) -> PageRank:
    n = adjacency.shape[0]
    if isinstance(adjacency, jsparse.BCOO):
        rows, cols, data = _bcoo_parts(adjacency)
        out_dtype = data.dtype
        dt = _checks.compute_dtype(out_dtype)
        data = data.astype(dt)
        deg = jax.ops.segment_sum(data, rows, num_segments=n)

        def walk(v):  # v @ A
            return jax.ops.segment_sum(data * v[rows], cols, num_segments=n)
    else:
        out_dtype = adjacency.dtype
        dt = _checks.compute_dtype(out_dtype)
        a = adjacency.astype(dt)
        deg = jnp.sum(a, axis=1)

        def walk(v):
            return matmul(v, a)

    uniform = jnp.full((n,), 1.0 / n, dt)
    p = p.astype(dt) / jnp.sum(p.astype(dt))
    w = w.astype(dt) / jnp.sum(w.astype(dt))
    inv_deg = _inverse(deg, 1.0)
    is_dangling = deg <= 0
    d = jnp.asarray(damping, dt)

    tol_ = jnp.asarray(tol, dt)
    floor = jnp.asarray(_PAGERANK_FLOOR * eps(dt), dt)

    def cond(state):
        _, it, res, prev = state
        stalled = (res <= floor) & (res >= prev)  # rounding noise: no more progress
        return (it < max_iter) & (res > tol_) & ~stalled

    def body(state):
        x, it, res, _ = state
        lost = jnp.sum(jnp.where(is_dangling, x, jnp.zeros_like(x)))
        new = d * (walk(x * inv_deg) + lost * w) + (1 - d) * p
        return new, it + 1, jnp.sum(jnp.abs(new - x)), res

    inf = jnp.array(jnp.inf, dt)
    x, it, res, _ = lax.while_loop(cond, body, (uniform, jnp.int32(0), inf, inf))
    x = x / jnp.sum(x)
    converged = res <= jnp.maximum(tol_, floor)
    return PageRank(x.astype(out_dtype), it, res.astype(out_dtype), converged)
