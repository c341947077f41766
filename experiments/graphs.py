"""Graphs with :mod:`jaxla.models.graphs`: the karate club's split, the stdlib's import graph.

1. **Zachary's karate club** (34 members, 78 friendships; the club split into two factions). The
   spectral embedding (Laplacian eigenmaps, ``jaxla.models.graphs.spectral_embedding``) in two
   dimensions, coloured by the faction each member joined, against scikit-learn's
   ``spectral_embedding``; the spectral bisection by the sign of the Fiedler vector against the
   recorded factions (combinatorial and normalized Laplacian); spectral clustering into two
   clusters against scikit-learn's ``SpectralClustering``.
2. **Laplacian spectrum** of the karate club (combinatorial and normalized), computed in float32
   with ``jaxla.linalg.eigh`` and compared with ``numpy.linalg.eigvalsh`` in float64 on a Laplacian
   built independently with numpy.
3. **PageRank of the standard library's import graph** (``jaxla.datasets.stdlib_import_graph``:
   module ``i`` imports module ``j``; compiled modules are dangling nodes), dense and sparse,
   float32 and float64, against ``networkx.pagerank`` run to a tight tolerance; the top modules.
4. **Convergence against damping**: the power iterations PageRank needs to reach an L1 change of
   1e-4, 1e-7 and 1e-10 for damping factors from 0.5 to 0.99 (one vmapped call per graph), on the
   import graph and on the karate club. The Google matrix ``damping S + (1 - damping) 1 p^T``
   has the eigenvalues 1 and ``damping * lambda_i(S)`` (``S``: the walk's transition matrix with
   uniform dangling rows), so the iterations follow ``log(tol) / log(damping |lambda_2(S)|)``
   (``lambda_2`` from ``numpy.linalg.eigvals``), far below the worst case
   ``log(tol) / log(damping)`` on the nearly acyclic import graph. The error against networkx at
   each damping, in float64 and float32.

Quick mode keeps the first ``QUICK_MODULES`` modules of the import graph (the documented order of
``stdlib_import_graph(max_modules=...)``: top-level public modules first) and six damping factors;
full mode uses every module and ten. ``config["seed"]`` seeds the k-means of the spectral
clustering.

Run it alone with ``python -m experiments.graphs [--quick | --full] [--out DIR]``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments._plotting import figure
from jaxla._checks import check_int, check_option
from jaxla.datasets._graphs import karate_club, stdlib_import_graph
from jaxla.linalg import eigh
from jaxla.models import graphs

__all__ = [
    "DAMPINGS_FULL",
    "DAMPINGS_QUICK",
    "NAME",
    "QUICK_MODULES",
    "TITLE",
    "TOLERANCES",
    "TOP",
    "load_import_graph",
    "run",
]

NAME = "graphs"
TITLE = "Graphs: the karate club's spectral split, PageRank of the standard library's imports"
QUICK_MODULES = 250
"""Modules of the import graph kept in quick mode (full mode keeps all)."""
DAMPINGS_QUICK = (0.5, 0.7, 0.85, 0.9, 0.95, 0.99)
DAMPINGS_FULL = (0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99)
TOLERANCES = (1e-4, 1e-7, 1e-10)
"""L1-change tolerances of the convergence study."""
TOP = 15
"""Rows of the top-modules table."""
MAX_ITER = 20_000
"""Iteration cap of the convergence study."""
NX_TOL = 1e-13
"""networkx's per-node tolerance for the reference scores (L1 change below n * NX_TOL)."""
_FN = "experiments.graphs.run"


def _check_config(config: dict[str, Any]) -> tuple[str, int]:
    mode = check_option(config.get("mode"), ("quick", "full"), _FN, "config['mode']")
    seed = check_int(config.get("seed"), _FN, "config['seed']", min=0)
    return mode, seed


def load_import_graph(config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The import graph of a run: module names (n,) and edges (m, 2) (importer, imported)."""
    mode, _ = _check_config(config)
    return stdlib_import_graph(max_modules=QUICK_MODULES if mode == "quick" else None)


def _nx_pagerank(g: Any, n: int, damping: float = 0.85) -> np.ndarray:
    import networkx as nx

    ref = nx.pagerank(g, alpha=damping, tol=NX_TOL, max_iter=100_000)
    return np.array([ref[i] for i in range(n)])


def _misassigned(labels: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Nodes whose label disagrees with ``truth`` under the better of the two matchings."""
    wrong = labels != truth
    return np.flatnonzero(wrong if wrong.sum() <= len(truth) - wrong.sum() else ~wrong)


def _karate(seed: int, dampings: tuple[float, ...]) -> dict[str, Any]:
    from sklearn.cluster import SpectralClustering
    from sklearn.manifold import spectral_embedding
    from sklearn.metrics import adjusted_rand_score

    edges, factions = karate_club()
    a = graphs.adjacency_matrix(edges, 34, directed=False)  # float32
    a64 = np.asarray(a, np.float64)
    emb = np.asarray(graphs.spectral_embedding(a, 2), np.float64)
    emb_ref = spectral_embedding(a64, n_components=2, random_state=0)
    out: dict[str, Any] = {
        "edges": edges,
        "factions": factions,
        "embedding": emb,
        "embedding_err": float(np.max(np.abs(emb - emb_ref))),
    }
    for kind in ("combinatorial", "normalized"):
        b = graphs.spectral_bisection(a, kind=kind)
        out[f"bisection_{kind}"] = np.asarray(b.labels)
        out[f"fiedler_{kind}"] = np.asarray(b.fiedler, np.float64)
        out[f"misassigned_{kind}"] = _misassigned(np.asarray(b.labels), factions)
        out[f"connectivity_{kind}"] = float(b.connectivity)
    clusters = graphs.spectral_clustering(jax.random.key(seed), a, 2)
    sk = SpectralClustering(2, affinity="precomputed", random_state=seed).fit(a64)
    out["cluster_ari_factions"] = float(adjusted_rand_score(factions, clusters.labels))
    out["cluster_ari_sklearn"] = float(adjusted_rand_score(sk.labels_, clusters.labels))

    # Laplacian spectra: jaxla float32 against numpy float64 on independently built Laplacians
    d = a64.sum(axis=1)
    lap_ref = {"combinatorial": np.diag(d) - a64,
               "normalized": np.eye(34) - a64 / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]}
    for kind, ref in lap_ref.items():
        w = np.asarray(eigh(graphs.laplacian(a, kind=kind)).eigenvalues, np.float64)
        w_ref = np.linalg.eigvalsh(ref)
        out[f"spectrum_{kind}"] = w
        out[f"spectrum_ref_{kind}"] = w_ref
        out[f"spectrum_err_{kind}"] = float(np.max(np.abs(w - w_ref)) / np.max(np.abs(w_ref)))
    out["sweep"] = _sweep(edges, 34, dampings, dtype="float64", directed=False, sparse=False)
    out["lambda2"] = _lambda2(edges, 34, directed=False)
    return out


def _pagerank_study(names: np.ndarray, edges: np.ndarray, dampings: tuple[float, ...]
                    ) -> dict[str, Any]:
    import networkx as nx

    n = len(names)
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from(edges.tolist())
    ref = _nx_pagerank(g, n)
    res: dict[str, Any] = {"ref": ref, "n": n, "m": len(edges)}
    for dtype in ("float32", "float64"):
        with jax.enable_x64(dtype == "float64"):
            for layout in ("dense", "sparse"):
                adj = graphs.adjacency_matrix(edges, n, directed=True, sparse=layout == "sparse",
                                              dtype=jnp.dtype(dtype))
                pr = graphs.pagerank(adj)
                scores = np.asarray(pr.scores, np.float64)
                res[f"{dtype}_{layout}"] = {
                    "scores": scores,
                    "err": float(np.max(np.abs(scores - ref))),
                    "iterations": int(pr.iterations),
                    "residual": float(pr.residual),
                    "converged": bool(pr.converged),
                }
    res["dangling"] = int(np.sum(np.bincount(edges[:, 0], minlength=n) == 0))
    res["in_degree"] = np.bincount(edges[:, 1], minlength=n)
    res["out_degree"] = np.bincount(edges[:, 0], minlength=n)

    # convergence against damping
    refs = np.stack([_nx_pagerank(g, n, d) for d in dampings])  # (len(dampings), n)
    for dtype in ("float64", "float32"):
        sweep = _sweep(edges, n, dampings, dtype=dtype, directed=True, sparse=True)
        sweep["err"] = np.max(np.abs(sweep.pop("scores") - refs[None]), axis=2)  # (tols, damp.)
        res[f"sweep_{dtype}"] = sweep
    res["lambda2"] = _lambda2(edges, n, directed=True)
    return res


def _sweep(edges: np.ndarray, n: int, dampings: tuple[float, ...], *, dtype: str,
           directed: bool, sparse: bool) -> dict[str, np.ndarray]:
    """PageRank over the (tolerance, damping) grid in one vmapped call (traced damping and tol)."""
    grid_d = np.repeat(np.asarray(dampings)[None, :], len(TOLERANCES), axis=0).ravel()
    grid_t = np.repeat(np.asarray(TOLERANCES)[:, None], len(dampings), axis=1).ravel()
    shape = (len(TOLERANCES), len(dampings))
    with jax.enable_x64(dtype == "float64"):
        adj = graphs.adjacency_matrix(edges, n, directed=directed, sparse=sparse,
                                      dtype=jnp.dtype(dtype))
        out = jax.jit(jax.vmap(lambda d, t: graphs.pagerank(adj, damping=d, tol=t,
                                                           max_iter=MAX_ITER)))(
            grid_d.astype(dtype), grid_t.astype(dtype))
        return {
            "iterations": np.asarray(out.iterations).reshape(shape),
            "converged": np.asarray(out.converged).reshape(shape),
            "scores": np.asarray(out.scores, np.float64).reshape(*shape, n),
        }


def _lambda2(edges: np.ndarray, n: int, *, directed: bool) -> float:
    """|second eigenvalue| of the walk's matrix S (dangling rows uniform), by numpy in float64.

    The Google matrix ``damping S + (1 - damping) 1 p^T`` has the eigenvalues 1 and
    ``damping * lambda_i(S)``, so power iteration contracts by ``damping * |lambda_2(S)|``.
    """
    a = np.zeros((n, n))
    np.add.at(a, (edges[:, 0], edges[:, 1]), 1.0)
    if not directed:
        a = a + a.T
    d = a.sum(axis=1)
    s = np.where(d[:, None] > 0, a / np.where(d > 0, d, 1)[:, None], 1.0 / n)
    return float(np.sort(np.abs(np.linalg.eigvals(s)))[-2])


def _predicted(lam2: float, dampings: tuple[float, ...]) -> np.ndarray:
    """Iterations ``log(tol) / log(damping |lambda_2|)`` for each (tolerance, damping)."""
    rate = np.asarray(dampings)[None, :] * lam2
    return np.log(np.asarray(TOLERANCES))[:, None] / np.log(rate)


def run(config: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Run the experiment; write four PNG figures into ``out_dir``; return its results.

    Args:
        config: ``{"mode": "quick" | "full", "seed": int}``.
        out_dir: existing directory for the figures.

    Returns:
        ``{"summary", "metrics", "figures", "tables"}`` as described in :mod:`experiments`.
    """
    out_dir = Path(out_dir)
    mode, seed = _check_config(config)
    dampings = DAMPINGS_QUICK if mode == "quick" else DAMPINGS_FULL
    k = _karate(seed, dampings)
    names, edges = load_import_graph(config)
    pr = _pagerank_study(names, edges, dampings)
    factions = k["factions"]
    n_mod = pr["n"]

    # ---------------------------------------------------------------- figures
    figures = []
    colors = np.where(factions == 0, "C0", "C1")
    with figure(out_dir, "karate_club.png", ncols=2, size=(12.0, 5.0)) as (_, axes):
        ax = axes[0, 0]
        z = k["embedding"]
        for i, j in k["edges"]:
            ax.plot(z[[i, j], 0], z[[i, j], 1], color="0.8", lw=0.7, zorder=1)
        for f, label in ((0, "Mr. Hi's faction"), (1, "Officer's faction")):
            sel = factions == f
            ax.scatter(z[sel, 0], z[sel, 1], s=45, color=f"C{f}", label=label, zorder=2,
                       edgecolor="k", lw=0.5)
        bad = k["misassigned_combinatorial"]
        ax.scatter(z[bad, 0], z[bad, 1], s=180, facecolor="none", edgecolor="red", lw=1.5,
                   label="split differs from faction", zorder=3)
        for i in (0, 33, *bad.tolist()):
            ax.annotate(str(i), z[i], textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xlabel("embedding coordinate 1 (Fiedler direction)")
        ax.set_ylabel("embedding coordinate 2")
        ax.set_title("Spectral embedding (normalized Laplacian)")
        ax.legend(fontsize=8, loc="best")
        ax = axes[0, 1]
        f = k["fiedler_combinatorial"]
        order = np.argsort(f)
        ax.bar(np.arange(34), f[order], color=colors[order], edgecolor="k", lw=0.3)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(np.arange(34), [str(i) for i in order], fontsize=6, rotation=90)
        ax.set_xlabel("member (sorted by Fiedler value)")
        ax.set_ylabel("Fiedler vector entry")
        ax.set_title("Spectral bisection: the sign of the Fiedler vector")
    figures.append({
        "file": "karate_club.png",
        "caption": (
            f"Left: the 34 members at their spectral-embedding coordinates (float32; equal to "
            f"scikit-learn's spectral_embedding to {k['embedding_err']:.1e}), coloured by the "
            f"faction they joined. Right: the Fiedler vector of D - A (combinatorial "
            f"Laplacian); its sign misassigns "
            f"{len(k['misassigned_combinatorial'])} members "
            f"({', '.join(map(str, k['misassigned_combinatorial']))}), circled on the left."
        ),
    })

    with figure(out_dir, "laplacian_spectrum.png", ncols=2, size=(11.5, 4.2)) as (_, axes):
        for ax, kind in zip(axes[0], ("combinatorial", "normalized"), strict=True):
            idx = np.arange(34)
            ax.plot(idx, k[f"spectrum_ref_{kind}"], "o", ms=7, mfc="none", color="0.5",
                    label="numpy eigvalsh (float64)")
            ax.plot(idx, k[f"spectrum_{kind}"], ".", color="C3", label="jaxla eigh (float32)")
            ax.annotate(rf"$\lambda_2$ = {k[f'connectivity_{kind}']:.3f}",
                        (1, k[f"spectrum_{kind}"][1]), textcoords="offset points",
                        xytext=(25, 45), fontsize=8, arrowprops={"arrowstyle": "->"})
            ax.set_xlabel("index")
            ax.set_ylabel("eigenvalue")
            ax.set_title(f"{kind.capitalize()} Laplacian of the karate club")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
    figures.append({
        "file": "laplacian_spectrum.png",
        "caption": (
            f"Eigenvalues of D - A and I - D^-1/2 A D^-1/2 (jaxla float32 against numpy float64: "
            f"{k['spectrum_err_combinatorial']:.1e} and {k['spectrum_err_normalized']:.1e} of "
            f"the largest). One zero eigenvalue: the graph is connected; the normalized spectrum "
            f"lies in [0, 2]."
        ),
    })

    main = pr["float32_sparse"]
    top = np.argsort(-main["scores"], kind="stable")[:TOP]
    with figure(out_dir, "pagerank_stdlib.png", size=(8.0, 6.0)) as (_, axes):
        ax = axes[0, 0]
        y = np.arange(len(top))[::-1]
        ax.barh(y, main["scores"][top], color="C2", label="jaxla (float32, sparse)")
        ax.plot(pr["ref"][top], y, "k|", ms=14, mew=2, label="networkx (float64)")
        ax.set_yticks(y, [str(names[i]) for i in top])
        ax.set_xlabel("PageRank")
        ax.set_title(f"Most imported modules of the standard library ({n_mod} modules)")
        ax.legend(fontsize=8, loc="lower right")
    figures.append({
        "file": "pagerank_stdlib.png",
        "caption": (
            f"PageRank (damping 0.85) of the import graph of {n_mod} standard-library modules "
            f"and {pr['m']} imports ({pr['dangling']} modules import nothing and are dangling "
            f"nodes). jaxla float32 against networkx: max abs error {main['err']:.1e}."
        ),
    })

    studies = {
        "standard-library imports": (pr["sweep_float64"], pr["lambda2"]),
        "karate club": (k["sweep"], k["lambda2"]),
    }
    predicted = {name: _predicted(lam2, dampings) for name, (_, lam2) in studies.items()}
    with figure(out_dir, "pagerank_convergence.png", ncols=3, size=(15.0, 4.5)) as (_, axes):
        x = 1 / (1 - np.asarray(dampings))
        for ax, (name, (sweep, lam2)) in zip(axes[0, :2], studies.items(), strict=True):
            for i, tol in enumerate(TOLERANCES):
                ax.loglog(x, sweep["iterations"][i], "o-", color=f"C{i}",
                          label=f"jaxla, tol={tol:g}")
                ax.loglog(x, predicted[name][i], "--", color=f"C{i}", alpha=0.7)
                ax.loglog(x, np.log(tol) / np.log(np.asarray(dampings)), ":", color=f"C{i}",
                          alpha=0.4)
            ax.plot([], [], "k--", alpha=0.7, label=r"log(tol) / log(damping $|\lambda_2|$)")
            ax.plot([], [], "k:", alpha=0.4, label="log(tol) / log(damping)")
            ax.set_xticks(x, [f"{d:g}" for d in dampings], fontsize=7)
            ax.minorticks_off()
            ax.set_xlabel("damping (axis: 1 / (1 - damping))")
            ax.set_ylabel("power iterations")
            ax.set_title(f"{name.capitalize()} ($|\\lambda_2(S)|$ = {lam2:.3f})")
            ax.legend(fontsize=7)
            ax.grid(True, which="both", alpha=0.3)
        ax = axes[0, 2]
        for dtype, style in (("float64", "o-"), ("float32", "s--")):
            ax.semilogy(dampings, np.maximum(pr[f"sweep_{dtype}"]["err"][-1], 1e-17), style,
                        label=f"jaxla {dtype}, tol=1e-10")
        ax.set_xlabel("damping")
        ax.set_ylabel("max |score - networkx score|")
        ax.set_title("Standard-library imports: error against networkx")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    i85 = list(dampings).index(0.85)
    it_std = pr["sweep_float64"]["iterations"][-1]
    it_kar = k["sweep"]["iterations"][-1]
    figures.append({
        "file": "pagerank_convergence.png",
        "caption": (
            f"Power iterations to an L1 change below tol against damping. The Google matrix has "
            f"the eigenvalues 1 and damping * lambda_i(S) (S: the walk's transition matrix, "
            f"dangling rows uniform), so the change contracts asymptotically by "
            f"damping * |lambda_2(S)| per iteration and about log(tol) / log(damping "
            f"|lambda_2(S)|) iterations are needed (dashed; dotted: the worst case "
            f"|lambda_2| = 1). The import graph is "
            f"nearly acyclic (|lambda_2| = {pr['lambda2']:.2f}): {it_std[i85]} iterations at "
            f"damping 0.85 and {it_std[-1]} at {dampings[-1]} for tol 1e-10; the karate club "
            f"(|lambda_2| = {k['lambda2']:.2f}) needs {it_kar[i85]} and {it_kar[-1]}. Right: "
            f"the error against networkx at tol 1e-10: float64 at most "
            f"{np.max(pr['sweep_float64']['err'][-1]):.1e}, float32 at its rounding level "
            f"({np.max(pr['sweep_float32']['err'][-1]):.1e})."
        ),
    })

    # ---------------------------------------------------------------- tables and metrics
    tables = [
        {
            "title": f"Top {TOP} modules by PageRank (damping 0.85)",
            "columns": ["rank", "module", "jaxla float32", "networkx", "in-degree",
                        "out-degree"],
            "rows": [[r + 1, str(names[i]), float(main["scores"][i]), float(pr["ref"][i]),
                      int(pr["in_degree"][i]), int(pr["out_degree"][i])]
                     for r, i in enumerate(top)],
        },
        {
            "title": "PageRank of the import graph against networkx",
            "columns": ["dtype", "layout", "max abs error", "iterations", "residual",
                        "converged"],
            "rows": [[dt, lay, pr[f"{dt}_{lay}"]["err"], pr[f"{dt}_{lay}"]["iterations"],
                      pr[f"{dt}_{lay}"]["residual"], pr[f"{dt}_{lay}"]["converged"]]
                     for dt in ("float32", "float64") for lay in ("dense", "sparse")],
        },
        {
            "title": "Power iterations against damping and tolerance (float64), measured / "
                     "predicted log(tol) / log(damping |lambda_2(S)|)",
            "columns": ["graph", "tol", *[f"damping {d:g}" for d in dampings]],
            "rows": [[name, tol, *[f"{int(v)} / {p:.0f}" for v, p in
                                   zip(sweep["iterations"][i], predicted[name][i], strict=True)]]
                     for name, (sweep, _) in studies.items() for i, tol in enumerate(TOLERANCES)],
        },
    ]
    bis_c = len(k["misassigned_combinatorial"])
    bis_n = len(k["misassigned_normalized"])
    err32 = max(pr["float32_dense"]["err"], pr["float32_sparse"]["err"])
    err64 = max(pr["float64_dense"]["err"], pr["float64_sparse"]["err"])
    sweep_ok = bool(np.all(pr["sweep_float64"]["converged"]) and np.all(k["sweep"]["converged"]))
    metrics = {
        "karate_bisection_errors_combinatorial": bis_c,
        "karate_bisection_errors_normalized": bis_n,
        "karate_misassigned_combinatorial": k["misassigned_combinatorial"].tolist(),
        "accept_bisection_at_most_2_errors": bool(max(bis_c, bis_n) <= 2),
        "karate_algebraic_connectivity": k["connectivity_combinatorial"],
        "karate_embedding_max_abs_err_vs_sklearn": k["embedding_err"],
        "accept_embedding_matches_sklearn_1e-4": bool(k["embedding_err"] <= 1e-4),
        "karate_clustering_ari_vs_factions": k["cluster_ari_factions"],
        "karate_clustering_ari_vs_sklearn": k["cluster_ari_sklearn"],
        "laplacian_spectrum_rel_err_combinatorial": k["spectrum_err_combinatorial"],
        "laplacian_spectrum_rel_err_normalized": k["spectrum_err_normalized"],
        "stdlib_modules": n_mod,
        "stdlib_imports": pr["m"],
        "stdlib_dangling_modules": pr["dangling"],
        "stdlib_top_modules": [str(names[i]) for i in top[:5]],
        "pagerank_max_abs_err_float64": err64,
        "pagerank_max_abs_err_float32": err32,
        "accept_pagerank_float64_matches_networkx_1e-6": bool(err64 <= 1e-6),
        "accept_pagerank_float32_matches_networkx_1e-6": bool(err32 <= 1e-6),
        "pagerank_iterations_float32": main["iterations"],
        "pagerank_iterations_float64": pr["float64_sparse"]["iterations"],
        "dampings": list(dampings),
        "tolerances": list(TOLERANCES),
        "stdlib_lambda2": pr["lambda2"],
        "karate_lambda2": k["lambda2"],
        "stdlib_iterations_vs_damping": pr["sweep_float64"]["iterations"].tolist(),
        "stdlib_predicted_iterations": predicted["standard-library imports"].tolist(),
        "karate_iterations_vs_damping": k["sweep"]["iterations"].tolist(),
        "karate_predicted_iterations": predicted["karate club"].tolist(),
        "sweep_all_converged_float64": sweep_ok,
        "sweep_max_abs_err_float64_tol_1e-10": float(np.max(pr["sweep_float64"]["err"][-1])),
        "sweep_max_abs_err_float32_tol_1e-10": float(np.max(pr["sweep_float32"]["err"][-1])),
    }
    summary = (
        f"The sign of the karate club's Fiedler vector splits the 34 members into the two "
        f"recorded factions with {bis_c} error(s) (normalized Laplacian: {bis_n}); the 2-D "
        f"spectral embedding equals scikit-learn's to {k['embedding_err']:.1e} and spectral "
        f"clustering finds scikit-learn's partition (ARI {k['cluster_ari_sklearn']:.2f}). "
        f"PageRank of the import graph of {n_mod} standard-library modules ({pr['m']} imports) "
        f"matches networkx to {err64:.1e} in float64 and {err32:.1e} in float32 "
        f"(dense and sparse); the top modules are "
        f"{', '.join(str(names[i]) for i in top[:5])}. Power iteration contracts by "
        f"damping * |lambda_2(S)| per step: the nearly acyclic import graph "
        f"(|lambda_2| = {pr['lambda2']:.2f}) needs {it_std[i85]} iterations at damping 0.85 and "
        f"{it_std[-1]} at {dampings[-1]} (tol 1e-10), the karate club (|lambda_2| = "
        f"{k['lambda2']:.2f}) {it_kar[i85]} and {it_kar[-1]}."
    )
    return {"summary": summary, "metrics": metrics, "figures": figures, "tables": tables}


if __name__ == "__main__":
    from experiments.runner import experiment_main

    raise SystemExit(experiment_main(sys.modules[__name__]))
