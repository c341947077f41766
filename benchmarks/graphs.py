"""PageRank: jaxla.models.graphs.pagerank against networkx.pagerank (its scipy backend).

Graphs: random directed graphs with ``AVG_OUT_DEGREE`` out-edges per node on average (uniform
endpoints, no self-loops or repeated edges, so that about ``exp(-5) n`` nodes are dangling),
generated with a fixed seed:

- ``10,000 nodes`` (about 50,000 edges): jaxla's dense path (a float32 (n, n) adjacency, one
  ``n^2`` vector-matrix product per iteration) and its sparse path (a BCOO matrix, one
  ``segment_sum`` over the edges per iteration);
- ``20,000 nodes`` (about 100,000 edges): the sparse path only.

Both sides run damping 0.85 with the same stopping rule: networkx stops when the L1 change of an
iteration is below ``n * tol``; jaxla is given ``tol = n * NX_TOL`` (an L1 change of 1e-6).
networkx computes in float64 on a scipy CSR matrix it builds from the graph at each call (that
conversion is part of its cost); jaxla runs jitted, in float32, on an adjacency built once.
Accuracy: the max absolute error of the scores against networkx run to ``tol=1e-14`` (float64).
The number of jaxla iterations is recorded with each case.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jax.numpy as jnp
import networkx as nx
import numpy as np

from benchmarks.harness import Anchor, Case, max_abs_error
from jaxla.models import graphs

SUITE = "graphs"

AVG_OUT_DEGREE = 5
DAMPING = 0.85
NX_TOL = 1e-10
"""networkx's per-node tolerance; jaxla gets ``tol = n * NX_TOL`` (the same L1 change)."""
FULL = ((10_000, ("dense", "sparse")), (20_000, ("sparse",)))
QUICK = ((1_000, ("dense", "sparse")), (2_000, ("sparse",)))


def random_digraph(n: int, *, seed: int = 0) -> tuple[np.ndarray, Any]:
    """Edges (m, 2) of a random directed graph on ``n`` nodes, and the same graph in networkx."""
    rng = np.random.default_rng(seed)
    e = rng.integers(0, n, (AVG_OUT_DEGREE * n, 2))
    e = np.unique(e[e[:, 0] != e[:, 1]], axis=0)
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from(e.tolist())
    return e, g


def _jaxla(adjacency, *, tol: float):
    return graphs.pagerank(adjacency, damping=DAMPING, tol=tol)


def _networkx(g, n: int) -> np.ndarray:
    scores = nx.pagerank(g, alpha=DAMPING, tol=NX_TOL, max_iter=10_000)
    return np.array([scores[i] for i in range(n)])


def _info(out) -> dict[str, Any]:
    return {"iterations": int(out.iterations), "converged": bool(out.converged)}


def cases(quick: bool) -> Iterator[Case]:
    for n, layouts in QUICK if quick else FULL:
        e, g = random_digraph(n)
        exact = nx.pagerank(g, alpha=DAMPING, tol=1e-14, max_iter=100_000)
        ref = np.array([exact[i] for i in range(n)])
        dangling = int(np.sum(np.bincount(e[:, 0], minlength=n) == 0))
        for layout in layouts:
            adj = graphs.adjacency_matrix(e, n, directed=True, sparse=layout == "sparse",
                                          dtype=jnp.float32)
            yield Case(
                name=f"pagerank ({layout})",
                size=f"n={n}, m={len(e)}",
                label=f"jaxla.models.graphs.pagerank ({layout}, float32)",
                fn=functools.partial(_jaxla, tol=n * NX_TOL),
                args=(adj,),
                anchors=[Anchor("networkx.pagerank (scipy, float64)",
                                functools.partial(_networkx, g, n), (),
                                accuracy=functools.partial(max_abs_error, ref=ref),
                                info=lambda out: {})],
                accuracy=lambda out, ref=ref: max_abs_error(out.scores, ref),
                metric="max abs error of the scores vs networkx at tol=1e-14 (float64)",
                info=_info,
                note=(f"damping {DAMPING}; stop at an L1 change below {NX_TOL:g} n on both "
                      f"sides; {dangling} dangling nodes; "
                      + ("dense: n^2 work per iteration." if layout == "dense"
                         else "sparse BCOO: one segment_sum over the edges per iteration.")),
            )

