"""Tests of jaxla.models.graphs against networkx, scikit-learn, numpy and dense computations."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.experimental import checkify
from jax.experimental import sparse as jsparse
from jax.test_util import check_grads
from sklearn.cluster import SpectralClustering
from sklearn.manifold import spectral_embedding as sk_spectral_embedding
from sklearn.metrics import adjusted_rand_score

import jaxla.models.graphs as graphs
from jaxla.datasets._graphs import karate_club
from tests.helpers import msg

M = "jaxla.models"


# ---------------------------------------------------------------------------------------------
# Data


@functools.cache
def _karate():
    """networkx's karate club, its unweighted (A) and weighted (W) adjacency, the factions."""
    g = nx.karate_club_graph()
    a = nx.to_numpy_array(g, nodelist=range(34), weight=None)
    w = nx.to_numpy_array(g, nodelist=range(34), weight="weight")
    factions = np.array([g.nodes[i]["club"] == "Officer" for i in range(34)], dtype=np.int64)
    return g, a, w, factions


def _nx_scores(g, n, **kw):
    kw.setdefault("tol", 1e-14)
    kw.setdefault("max_iter", 100_000)
    ref = nx.pagerank(g, **kw)
    return np.array([ref[i] for i in range(n)])


@functools.cache
def _random_digraph(n: int, m: int, seed: int = 0, weighted: bool = False):
    """Random directed graph: unique edges without self-loops, many dangling nodes."""
    rng = np.random.default_rng(seed)
    e = rng.integers(0, n, (m, 2))
    e = np.unique(e[e[:, 0] != e[:, 1]], axis=0)
    w = rng.uniform(0.5, 2.0, len(e)) if weighted else None
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    if weighted:
        g.add_weighted_edges_from((int(i), int(j), float(x)) for (i, j), x in zip(e, w,
                                                                                    strict=True))
    else:
        g.add_edges_from(e.tolist())
    return e, w, g


@functools.cache
def _blocks(sizes=(20, 25, 15), p_in=0.5, p_out=0.03, seed=0):
    """A planted-partition (stochastic block model) adjacency and its blocks."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    n = len(truth)
    p = np.where(truth[:, None] == truth[None, :], p_in, p_out)
    upper = np.triu(rng.uniform(size=(n, n)) < p, 1)
    a = (upper | upper.T).astype(np.float64) * rng.uniform(0.5, 1.5, (n, n))
    a = np.triu(a, 1)
    return a + a.T, truth


_pagerank = jax.jit(graphs.pagerank)


def _bcoo(a, padding=0):
    """A BCOO matrix with the nonzeros of the dense numpy ``a``, plus ``padding`` entries at the
    out-of-range index (n, n), as ``BCOO.fromdense(a, nse=...)`` makes them."""
    a = np.asarray(a)
    rows, cols = np.nonzero(a)
    n = a.shape[0]
    idx = np.concatenate([np.stack([rows, cols], axis=1),
                          np.full((padding, 2), a.shape)]).astype(np.int32)
    data = np.concatenate([a[rows, cols], np.zeros(padding, a.dtype)])
    return jsparse.BCOO((jnp.asarray(data), jnp.asarray(idx)), shape=(n, a.shape[1]))


# ---------------------------------------------------------------------------------------------
# Adjacency matrices and degrees


def test_adjacency_matrix_matches_networkx():
    g, a_ref, w_ref, _ = _karate()
    edges, _ = karate_club()
    np.testing.assert_array_equal(graphs.adjacency_matrix(edges, 34, directed=False), a_ref)
    weights = np.array([g.edges[int(i), int(j)]["weight"] for i, j in edges], np.float64)
    a = graphs.adjacency_matrix(edges, 34, directed=False, weights=weights)
    assert a.dtype == jnp.float64
    np.testing.assert_array_equal(a, w_ref)
    s = graphs.adjacency_matrix(edges, 34, directed=False, weights=weights, sparse=True)
    assert isinstance(s, jsparse.BCOO) and s.nse == 2 * len(edges)
    np.testing.assert_array_equal(s.todense(), w_ref)
    # directed, weighted, a self-loop and a repeated edge (weights add up)
    e = np.array([[0, 1], [1, 0], [2, 2], [0, 1], [3, 1]])
    w = np.array([1.0, 2.0, 3.0, 0.5, 4.0], np.float32)
    dg = nx.MultiDiGraph()
    dg.add_nodes_from(range(4))
    dg.add_weighted_edges_from((int(i), int(j), float(x)) for (i, j), x in zip(e, w, strict=True))
    ref = nx.to_numpy_array(dg, nodelist=range(4))
    for sparse in (False, True):
        out = graphs.adjacency_matrix(e, 4, directed=True, weights=w, sparse=sparse)
        out = out.todense() if sparse else out
        assert out.dtype == jnp.float32
        np.testing.assert_array_equal(out, ref)
    # undirected self-loop counts once, as in networkx
    ug = nx.Graph([(0, 0), (0, 1)])
    np.testing.assert_array_equal(
        graphs.adjacency_matrix(np.array([[0, 0], [0, 1]]), 2, directed=False),
        nx.to_numpy_array(ug, nodelist=[0, 1]))
    assert graphs.adjacency_matrix(e, 4, directed=True).dtype == jnp.float32
    assert graphs.adjacency_matrix(e, 4, directed=True, dtype=jnp.float64).dtype == jnp.float64
    jitted = jax.jit(graphs.adjacency_matrix, static_argnames=("n", "directed"))
    np.testing.assert_array_equal(jitted(e, n=4, directed=True),
                                  nx.to_numpy_array(dg, nodelist=range(4), weight=None))


def test_adjacency_matrix_errors():
    fn = f"{M}.adjacency_matrix"
    e = np.array([[0, 1], [1, 2]])
    with pytest.raises(TypeError, match=msg(f"{fn}: `edges` must have an integer dtype (node "
                                            "indices), got dtype float64")):
        graphs.adjacency_matrix(e.astype(np.float64), 3, directed=True)
    with pytest.raises(ValueError, match=msg(f"{fn}: `edges` must be 2-D (m, 2), got shape (2, "
                                             "3)")):
        graphs.adjacency_matrix(np.zeros((2, 3), int), 3, directed=True)
    with pytest.raises(ValueError, match=msg(f"{fn}: `edges` must hold node indices in [0, n) = "
                                             "[0, 2), got 2")):
        graphs.adjacency_matrix(e, 2, directed=True)
    with pytest.raises(ValueError, match=msg(f"{fn}: `weights` must have shape (m,) = (2,), one "
                                             "per edge, got shape (3,)")):
        graphs.adjacency_matrix(e, 3, directed=True, weights=np.ones(3))
    with pytest.raises(TypeError, match=msg(f"{fn}: `directed` must be a Python bool, got 1")):
        graphs.adjacency_matrix(e, 3, directed=1)
    with pytest.raises(TypeError, match=msg(f"{fn}: `dtype` must be a real floating dtype, got "
                                            "int32")):
        graphs.adjacency_matrix(e, 3, directed=True, dtype=jnp.int32)


def test_degree_dense_and_sparse():
    e, w, g = _random_digraph(40, 150, weighted=True)
    a = graphs.adjacency_matrix(e, 40, directed=True, weights=w)
    s = graphs.adjacency_matrix(e, 40, directed=True, weights=w, sparse=True)
    out_ref = np.array([g.out_degree(i, weight="weight") for i in range(40)])
    in_ref = np.array([g.in_degree(i, weight="weight") for i in range(40)])
    for adj in (a, s):
        np.testing.assert_allclose(graphs.degree(adj), out_ref, rtol=1e-13)
        np.testing.assert_allclose(graphs.degree(adj, direction="in"), in_ref, rtol=1e-13)
    a32 = a.astype(jnp.float32)
    assert graphs.degree(a32).dtype == jnp.float32
    np.testing.assert_allclose(graphs.degree(a32), out_ref, rtol=1e-6)
    # padding entries of a BCOO matrix are ignored
    padded = _bcoo(a, padding=7)
    np.testing.assert_allclose(graphs.degree(padded, direction="in"), in_ref, rtol=1e-13)
    with pytest.raises(ValueError, match=msg(f"{M}.degree: `direction` must be one of 'out', "
                                             "'in', got 'both'")):
        graphs.degree(a, direction="both")


# ---------------------------------------------------------------------------------------------
# Laplacians


def _graph_with_isolated_node_and_self_loop():
    g = nx.Graph()
    g.add_nodes_from(range(6))
    g.add_weighted_edges_from([(0, 1, 1.0), (1, 2, 2.0), (2, 0, 0.5), (3, 4, 1.5), (4, 4, 2.0)])
    return g, nx.to_numpy_array(g, nodelist=range(6))  # node 5 is isolated


def test_laplacian_matches_networkx():
    g, a = _graph_with_isolated_node_and_self_loop()
    comb = graphs.laplacian(jnp.asarray(a))
    np.testing.assert_allclose(comb, nx.laplacian_matrix(g, nodelist=range(6)).toarray(),
                               atol=1e-15)
    norm = graphs.laplacian(jnp.asarray(a), kind="normalized")
    np.testing.assert_allclose(norm, nx.normalized_laplacian_matrix(g, nodelist=range(6))
                               .toarray(), atol=1e-14)
    rw = graphs.laplacian(jnp.asarray(a), kind="random_walk")
    d = a.sum(axis=1)
    inv = np.where(d > 0, 1 / np.where(d > 0, d, 1), 0)
    np.testing.assert_allclose(rw, inv[:, None] * (np.diag(d) - a), atol=1e-15)
    for lap in (comb, norm, rw):
        assert np.all(np.isfinite(lap)) and np.all(np.asarray(lap)[5] == 0)
    # the multiplicity of 0 is the number of components (3: {0,1,2}, {3,4}, {5})
    for lap in (comb, norm):
        w = np.linalg.eigvalsh(np.asarray(lap))
        assert np.sum(np.abs(w) < 1e-12) == 3
    # directed: out-degrees, I - D^-1 A is row-stochastic complement
    _, _, dg = _random_digraph(30, 80)
    ad = nx.to_numpy_array(dg, nodelist=range(30))
    np.testing.assert_allclose(graphs.laplacian(jnp.asarray(ad)),
                               np.diag(ad.sum(axis=1)) - ad, atol=0)


def test_laplacian_float32_jit_grad():
    g, _, w, _ = _karate()
    ref = nx.normalized_laplacian_matrix(g, nodelist=range(34)).toarray()
    out = jax.jit(graphs.laplacian, static_argnames="kind")(jnp.asarray(w, jnp.float32),
                                                            kind="normalized")
    assert out.dtype == jnp.float32 and out.shape == (34, 34)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    assert graphs.laplacian(jnp.asarray(w, jnp.float16)).dtype == jnp.float16
    _, a_iso = _graph_with_isolated_node_and_self_loop()
    # derivatives of all three kinds against finite differences (no isolated node there), and
    # finite at an isolated node
    check_grads(_laplacians, (jnp.asarray(a_iso) + 0.1 * np.eye(6)[::-1],), order=1,
                modes=["fwd", "rev"])
    g = jax.grad(lambda x: sum(jnp.sum(lap ** 2) for lap in _laplacians(x)))(jnp.asarray(a_iso))
    assert np.all(np.isfinite(g))


def test_laplacian_errors():
    fn = f"{M}.laplacian"
    with pytest.raises(ValueError, match=msg(f"{fn}: `kind` must be one of 'combinatorial', "
                                             "'normalized', 'random_walk', got 'sym'")):
        graphs.laplacian(jnp.eye(3), kind="sym")
    with pytest.raises(ValueError, match=msg(f"{fn}: `adjacency` must be a square matrix (n, n), "
                                             "got shape (3, 4)")):
        graphs.laplacian(jnp.ones((3, 4)))
    with pytest.raises(ValueError, match=msg(f"{fn}: `adjacency` must be a square matrix (n, n), "
                                             "got shape (3, 4)")):
        jax.jit(graphs.laplacian)(jnp.ones((3, 4)))
    with pytest.raises(TypeError, match=msg(f"{fn}: `adjacency` must have a real floating dtype, "
                                            "got integer or boolean dtype int64; cast it first, "
                                            "e.g. adjacency.astype(jnp.float32)")):
        graphs.laplacian(np.ones((3, 3), np.int64))
    with pytest.raises(TypeError, match=msg(f"{fn}: `adjacency` must be a dense array (n, n) "
                                            "(convert a sparse matrix with .todense()), got "
                                            "BCOO")):
        graphs.laplacian(_bcoo(np.eye(3)))
    with pytest.raises(ValueError, match=msg(f"{fn}: `adjacency` contains 1 NaN or Inf value(s); "
                                             "clean or mask them first")):
        graphs.laplacian(jnp.array([[0.0, np.nan], [1.0, 0.0]]))


@given(st.lists(st.floats(0.0, 3.0), min_size=64, max_size=64))
def test_laplacian_properties(values):
    """L 1 = 0 and L_rw = D^-1/2 L_sym D^1/2 on nodes with edges, for random weighted graphs."""
    a = np.asarray(values).reshape(8, 8)
    a = np.triu(a, 1) * (np.triu(a, 1) > 1.0)
    a = a + a.T
    comb = np.asarray(_laplacians(jnp.asarray(a))[0])
    np.testing.assert_allclose(comb @ np.ones(8), 0, atol=1e-12)
    np.testing.assert_allclose(comb, comb.T, atol=0)
    _, sym, rw = (np.asarray(x) for x in _laplacians(jnp.asarray(a)))
    d = a.sum(axis=1)
    s = np.where(d > 0, np.sqrt(np.where(d > 0, d, 1)), 0)
    si = np.where(d > 0, 1 / np.where(d > 0, s, 1), 0)
    np.testing.assert_allclose(rw, si[:, None] * sym * s[None, :], atol=1e-12)
    w = np.linalg.eigvalsh(sym)
    assert w.min() > -1e-12 and w.max() < 2 + 1e-12  # spectrum of the normalized Laplacian


@jax.jit
def _laplacians(a):
    return tuple(graphs.laplacian(a, kind=k) for k in graphs.LAPLACIANS)


# ---------------------------------------------------------------------------------------------
# Spectral embedding, bisection and clustering


@pytest.mark.parametrize("kind", ["normalized", "combinatorial"])
def test_spectral_embedding_matches_sklearn(kind):
    _, a, w, _ = _karate()
    for adj in (a, w):
        for drop_first in (True, False):
            ref = sk_spectral_embedding(adj, n_components=3, drop_first=drop_first,
                                        norm_laplacian=kind == "normalized", random_state=0)
            out = graphs.spectral_embedding(jnp.asarray(adj), 3, kind=kind,
                                            drop_first=drop_first)
            assert out.shape == (34, 3) and out.dtype == jnp.float64
            # both follow the max-|entry|-positive sign convention: no flipping needed
            np.testing.assert_allclose(out, ref, atol=1e-8)
    out32 = jax.jit(graphs.spectral_embedding, static_argnames=("dim", "kind"))(
        jnp.asarray(w, jnp.float32), dim=2, kind=kind)
    ref = sk_spectral_embedding(w, n_components=2, norm_laplacian=kind == "normalized",
                                random_state=0)
    assert out32.dtype == jnp.float32
    np.testing.assert_allclose(out32, ref, atol=2e-5 * np.abs(ref).max())


def test_spectral_embedding_structure_and_vmap():
    a, _ = _blocks()
    n = a.shape[0]
    z = np.asarray(graphs.spectral_embedding(jnp.asarray(a), 2, drop_first=False))
    d = a.sum(axis=1)
    # D-orthonormal eigenvectors of the random-walk Laplacian, the first one constant
    np.testing.assert_allclose(z.T @ (d[:, None] * z), np.eye(2), atol=1e-10)
    np.testing.assert_allclose(z[:, 0], z[0, 0], rtol=1e-10)
    lrw = np.eye(n) - a / d[:, None]
    lam = np.linalg.eigvals(lrw).real
    lam.sort()
    np.testing.assert_allclose(lrw @ z[:, 1], lam[1] * z[:, 1], atol=1e-10)
    # vmap over a stack of graphs equals the loop
    perm = np.random.default_rng(0).permutation(n)
    stack = jnp.stack([jnp.asarray(a), jnp.asarray(a[perm][:, perm])])
    vm = jax.vmap(lambda x: graphs.spectral_embedding(x, 2))(stack)
    for i in range(2):
        np.testing.assert_allclose(vm[i], graphs.spectral_embedding(stack[i], 2), atol=1e-10)


@pytest.mark.slow
def test_spectral_embedding_grad():
    """Gradient with respect to the edge weights of a sign-invariant function of the embedding,
    against finite differences."""
    edges, _ = karate_club()
    weights = jnp.asarray(np.random.default_rng(0).uniform(1.0, 2.0, len(edges)))

    def f(wts):
        adj = graphs.adjacency_matrix(edges, 34, directed=False, weights=wts)
        return jnp.sum(graphs.spectral_embedding(adj, 2) ** 2 * jnp.arange(34.0)[:, None])

    check_grads(f, (weights,), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_spectral_embedding_errors():
    fn = f"{M}.spectral_embedding"
    a = jnp.asarray(_karate()[1])
    with pytest.raises(ValueError, match=msg(f"{fn}: `dim`=34 exceeds n - 1=33")):
        graphs.spectral_embedding(a, 34)
    with pytest.raises(ValueError, match=msg(f"{fn}: `dim`=34 exceeds n - 1=33")):
        jax.jit(graphs.spectral_embedding, static_argnames="dim")(a, dim=34)
    with pytest.raises(ValueError, match=msg(f"{fn}: `dim` must be >= 1, got 0")):
        graphs.spectral_embedding(a, 0)
    with pytest.raises(ValueError, match=msg(f"{fn}: `kind` must be one of 'normalized', "
                                             "'combinatorial', got 'random_walk'")):
        graphs.spectral_embedding(a, 2, kind="random_walk")
    with pytest.raises(ValueError, match=msg(f"{fn}: `adjacency` must have nonnegative weights, "
                                             "got 2 negative value(s)")):
        graphs.spectral_embedding(a.at[0, 1].set(-1.0).at[1, 0].set(-1.0), 2)


def test_spectral_bisection_karate_acceptance():
    _, a, _, factions = _karate()
    for kind in ("combinatorial", "normalized"):
        b = graphs.spectral_bisection(jnp.asarray(a), kind=kind)
        labels = np.asarray(b.labels)
        assert labels.dtype == np.int32 and b.fiedler.shape == (34,)
        errors = min(np.sum(labels != factions), np.sum(labels == factions))
        assert errors <= 2, (kind, errors)
    # reference: numpy's Fiedler vector of D - A and the algebraic connectivity
    b = graphs.spectral_bisection(jnp.asarray(a))
    lap = np.diag(a.sum(axis=1)) - a
    w, v = np.linalg.eigh(lap)
    f = v[:, 1] * np.sign(v[np.argmax(np.abs(v[:, 1])), 1])
    np.testing.assert_allclose(b.fiedler, f, atol=1e-10)
    np.testing.assert_allclose(b.connectivity, w[1], rtol=1e-10)
    np.testing.assert_array_equal(b.labels, (f > 0).astype(np.int32))
    b32 = jax.jit(graphs.spectral_bisection)(jnp.asarray(a, jnp.float32))
    assert b32.fiedler.dtype == jnp.float32 and b32.connectivity.dtype == jnp.float32
    np.testing.assert_array_equal(b32.labels, b.labels)
    with pytest.raises(ValueError, match=msg(f"{M}.spectral_bisection: `adjacency` must have at "
                                             "least 2 nodes, got shape (1, 1)")):
        graphs.spectral_bisection(jnp.zeros((1, 1)))


def test_spectral_clustering_matches_sklearn():
    a, truth = _blocks()
    res = graphs.spectral_clustering(jax.random.key(0), jnp.asarray(a), 3)
    n = a.shape[0]
    assert res.labels.shape == (n,) and res.labels.dtype == jnp.int32
    assert res.embedding.shape == (n, 3) and res.centers.shape == (3, 3)
    sk = SpectralClustering(3, affinity="precomputed", random_state=0).fit(a)
    assert adjusted_rand_score(sk.labels_, res.labels) == 1.0
    assert adjusted_rand_score(truth, res.labels) == 1.0
    # labels are numbered by first appearance, centers and inertia are consistent
    labels = np.asarray(res.labels)
    _, first = np.unique(labels, return_index=True)
    assert np.all(np.diff(first) > 0) and labels[0] == 0
    z = np.asarray(res.embedding)
    centers = np.stack([z[labels == c].mean(axis=0) for c in range(3)])
    np.testing.assert_allclose(res.centers, centers, atol=1e-10)
    np.testing.assert_allclose(res.inertia, np.sum((z - centers[labels]) ** 2), rtol=1e-8)
    assert bool(res.converged) and int(res.n_iter) >= 1
    # the embedding is scikit-learn's (drop_first=False)
    ref = sk_spectral_embedding(a, n_components=3, drop_first=False, random_state=0)
    np.testing.assert_allclose(res.embedding, ref, atol=1e-8)


@pytest.mark.slow
def test_spectral_clustering_karate_float32_jit():
    """The karate club in two clusters: the same partition as scikit-learn's."""
    _, karate, _, _ = _karate()
    cluster = jax.jit(graphs.spectral_clustering, static_argnames="n_clusters")
    two = cluster(jax.random.key(1), jnp.asarray(karate, jnp.float32), n_clusters=2)
    assert two.embedding.dtype == jnp.float32
    sk2 = SpectralClustering(2, affinity="precomputed", random_state=0).fit(karate)
    assert adjusted_rand_score(sk2.labels_, two.labels) == 1.0


def test_spectral_clustering_errors():
    fn = f"{M}.spectral_clustering"
    a = jnp.asarray(_karate()[1])
    with pytest.raises(TypeError, match=msg(f"{fn}: `key` must be a JAX random key such as "
                                            "jax.random.key(0), got int")):
        graphs.spectral_clustering(0, a, 2)
    with pytest.raises(ValueError, match=msg(f"{fn}: `n_clusters` must be >= 2, got 1")):
        graphs.spectral_clustering(jax.random.key(0), a, 1)
    with pytest.raises(ValueError, match=msg(f"{fn}: `n_clusters`=34 exceeds n - 1=33")):
        graphs.spectral_clustering(jax.random.key(0), a, 34)
    with pytest.raises(ValueError, match=msg(f"{fn}: `tol` must be >= 0 and finite, got -1.0")):
        graphs.spectral_clustering(jax.random.key(0), a, 2, tol=-1.0)


# ---------------------------------------------------------------------------------------------
# PageRank


def test_pagerank_karate_matches_networkx():
    g, a, w, _ = _karate()
    for adj, weight in ((a, None), (w, "weight")):
        ref = _nx_scores(g, 34, weight=weight)
        pr = graphs.pagerank(jnp.asarray(adj))
        assert pr.scores.shape == (34,) and pr.scores.dtype == jnp.float64
        assert bool(pr.converged) and pr.iterations.dtype == jnp.int32
        assert float(pr.residual) <= 1e-10
        np.testing.assert_allclose(pr.scores, ref, atol=1e-12)
        # the documented bound on the L1 error
        assert np.abs(np.asarray(pr.scores) - ref).sum() <= 0.85 / 0.15 * float(pr.residual)
        pr32 = graphs.pagerank(jnp.asarray(adj, jnp.float32))
        assert pr32.scores.dtype == jnp.float32 and bool(pr32.converged)
        np.testing.assert_allclose(pr32.scores, ref, atol=1e-7)
    # personalization, dangling weights and damping on a directed graph with dangling nodes
    e, wts, dg = _random_digraph(60, 120, seed=3, weighted=True)
    adj = graphs.adjacency_matrix(e, 60, directed=True, weights=wts)
    assert np.sum(np.asarray(graphs.degree(adj)) == 0) >= 5
    rng = np.random.default_rng(1)
    p = rng.uniform(size=60) * (rng.uniform(size=60) < 0.5)
    dw = rng.uniform(size=60)
    for kw in ({}, {"personalization": p}, {"personalization": p, "dangling": dw},
               {"dangling": dw, "damping": 0.5}, {"damping": 0.0}):
        nkw = {k: dict(enumerate(v)) for k, v in kw.items() if k != "damping"}
        ref = _nx_scores(dg, 60, alpha=kw.get("damping", 0.85), **nkw)
        np.testing.assert_allclose(graphs.pagerank(adj, **kw).scores, ref, atol=1e-12)


def test_pagerank_acceptance_10000_nodes():
    """The acceptance check: a 10,000-node random directed graph, float64 and float32."""
    n = 10_000
    e, _, dg = _random_digraph(n, 50_000, seed=0)
    ref = _nx_scores(dg, n, tol=1e-13)
    s64 = graphs.adjacency_matrix(e, n, directed=True, sparse=True, dtype=jnp.float64)
    pr = graphs.pagerank(s64)
    assert bool(pr.converged) and pr.scores.dtype == jnp.float64
    np.testing.assert_allclose(pr.scores, ref, atol=1e-10)
    pr32 = graphs.pagerank(graphs.adjacency_matrix(e, n, directed=True, sparse=True))
    assert bool(pr32.converged) and pr32.scores.dtype == jnp.float32
    np.testing.assert_allclose(pr32.scores, ref, atol=1e-8)


def test_pagerank_sparse_equals_dense_jit_vmap():
    e, w, _ = _random_digraph(300, 900, seed=2, weighted=True)
    dense = graphs.adjacency_matrix(e, 300, directed=True, weights=w)
    sparse = graphs.adjacency_matrix(e, 300, directed=True, weights=w, sparse=True)
    padded = _bcoo(dense, padding=11)
    ref = graphs.pagerank(dense)
    for s in (sparse, padded):
        out = _pagerank(s) if s is sparse else graphs.pagerank(s)
        np.testing.assert_allclose(out.scores, ref.scores, atol=1e-14)
        assert int(out.iterations) == int(ref.iterations)
    # vmap over damping and personalization vectors together: each equals its own call
    damp = jnp.array([0.5, 0.85, 0.95])
    ps = jnp.eye(300)[:3] + 0.01  # personalized PageRank of nodes 0..2
    vm = jax.jit(jax.vmap(lambda d, p: graphs.pagerank(sparse, damping=d, personalization=p)))(
        damp, ps)
    assert vm.scores.shape == (3, 300) and vm.iterations.shape == (3,)
    for i, d in enumerate((0.5, 0.85, 0.95)):
        one = graphs.pagerank(dense, damping=d, personalization=ps[i])
        np.testing.assert_allclose(vm.scores[i], one.scores, atol=1e-14)
        assert int(vm.iterations[i]) == int(one.iterations)
    assert int(vm.iterations[0]) < int(vm.iterations[2])
    # float16 input: computed in float32, returned in float16
    h = graphs.pagerank(dense.astype(jnp.float16))
    assert h.scores.dtype == jnp.float16
    np.testing.assert_allclose(np.asarray(h.scores, np.float64), ref.scores, atol=1e-3)


@given(st.lists(st.floats(0.0, 2.0), min_size=49, max_size=49), st.floats(0.0, 0.95))
def test_pagerank_solves_the_linear_system(values, damping):
    """x (I - damping P') = (1 - damping) p with dangling rows of P' replaced by p."""
    a = np.asarray(values).reshape(7, 7)
    a = a * (a > 1.0)
    out = graphs.pagerank(jnp.asarray(a), damping=damping)
    d = a.sum(axis=1)
    p = np.full(7, 1 / 7)
    pt = np.where(d[:, None] > 0, a / np.where(d > 0, d, 1)[:, None], p[None, :])
    x = np.linalg.solve((np.eye(7) - damping * pt).T, (1 - damping) * p)
    assert bool(out.converged)
    np.testing.assert_allclose(out.scores, x, atol=1e-10)
    assert np.all(np.asarray(out.scores) >= 0)


def test_pagerank_forward_derivative_and_no_convergence():
    _, a, _, _ = _karate()
    adj = jnp.asarray(a)
    f = lambda d: graphs.pagerank(adj, damping=d, tol=0.0, max_iter=400).scores  # noqa: E731
    check_grads(f, (0.7,), order=1, modes=["fwd"], eps=1e-6)
    few = graphs.pagerank(adj, max_iter=3)
    assert int(few.iterations) == 3 and not bool(few.converged)
    assert float(few.residual) > 1e-10
    np.testing.assert_allclose(np.sum(few.scores), 1.0, rtol=1e-14)


def test_pagerank_errors():
    fn = f"{M}.pagerank"
    _, a, _, _ = _karate()
    adj = jnp.asarray(a)
    with pytest.raises(ValueError, match=msg(f"{fn}: `damping` must be in [0, 1), got -0.1")):
        graphs.pagerank(adj, damping=-0.1)
    with pytest.raises(ValueError, match=msg(f"{fn}: `damping` must be in [0, 1), got 1.0")):
        graphs.pagerank(adj, damping=1.0)
    with pytest.raises(ValueError, match=msg(f"{fn}: `adjacency` must be a square matrix (n, n), "
                                             "got shape (34, 33)")):
        graphs.pagerank(adj[:, :33])
    with pytest.raises(ValueError, match=msg(f"{fn}: `adjacency` must be a square matrix (n, n), "
                                             "got shape (34, 33)")):
        _pagerank(_bcoo(a[:, :33]))
    with pytest.raises(ValueError, match=msg(f"{fn}: `adjacency` must have nonnegative weights, "
                                             "got 1 negative value(s)")):
        graphs.pagerank(adj.at[0, 1].set(-2.0))
    with pytest.raises(ValueError, match=msg(f"{fn}: `adjacency` must have nonnegative weights, "
                                             "got 1 negative value(s)")):
        graphs.pagerank(_bcoo(np.asarray(adj.at[0, 1].set(-2.0))))
    with pytest.raises(ValueError, match=msg(f"{fn}: `personalization` must have shape (n,) = "
                                             "(34,), one entry per node, got shape (33,)")):
        graphs.pagerank(adj, personalization=jnp.ones(33))
    with pytest.raises(ValueError, match=msg(f"{fn}: `personalization` must have a positive sum, "
                                             "got 0.0")):
        graphs.pagerank(adj, personalization=jnp.zeros(34))
    with pytest.raises(ValueError, match=msg(f"{fn}: `dangling` must be nonnegative, got 1 "
                                             "negative value(s)")):
        graphs.pagerank(adj, dangling=jnp.ones(34).at[3].set(-1.0))
    with pytest.raises(TypeError, match=msg(f"{fn}: `adjacency` must have a real floating dtype, "
                                            "got integer or boolean dtype int32; cast it first, "
                                            "e.g. adjacency.astype(jnp.float32)")):
        graphs.pagerank(adj.astype(jnp.int32))
    with pytest.raises(ValueError, match=msg(f"{fn}: `max_iter` must be >= 1, got 0")):
        graphs.pagerank(adj, max_iter=0)
    with pytest.raises(ValueError, match=msg(f"{fn}: `adjacency` contains 1 NaN or Inf value(s); "
                                             "clean or mask them first")):
        graphs.pagerank(adj.at[2, 3].set(np.inf))
    # under jit the value checks are reported by checkify (one compilation for the three cases)
    checked = checkify.checkify(jax.jit(
        lambda a, d, p: graphs.pagerank(a, damping=d, personalization=p)))
    ones = jnp.ones(34)
    for args, text in (((adj.at[0, 1].set(-2.0), 0.85, ones), "`adjacency` must have "
                        "nonnegative weights"),
                       ((adj, 1.5, ones), "`damping` must be in [0, 1)"),
                       ((adj, 0.85, 0 * ones), "`personalization` must have a positive sum")):
        err, _ = checked(*args)
        with pytest.raises(checkify.JaxRuntimeError, match=re.escape(f"{fn}: {text}")):
            err.throw()
