"""Latent semantic analysis of the Python standard library's documentation.

The corpus is one document per standard-library module (:func:`jaxla.datasets.stdlib_docs`: the
module's docstring and those of its public functions and classes; 146 modules on Python 3.11).
With :mod:`jaxla.models.lsa`:

1. bag of words (:func:`~jaxla.models.lsa.vectorize`: terms in at least ``MIN_DF`` documents and
   at most a fraction ``MAX_DF`` of them, English stop words dropped) and sublinear TF-IDF
   (:func:`~jaxla.models.lsa.tfidf`), checked against scikit-learn's ``TfidfVectorizer``;
2. the spectrum of the TF-IDF matrix and the variance explained by the leading singular
   directions (scikit-learn's ``TruncatedSVD`` definition), and the rank-``k`` model by the exact
   and by the randomized SVD, both checked against ``TruncatedSVD(algorithm="arpack")``;
3. a 2-D map of the modules on the second and third latent directions (the first is close to
   the average document), coloured by topic;
4. retrieval: free-text queries folded into the latent space and the modules ranked by cosine
   similarity, with the acceptance check that "compress data", "compressed file" and "decompress
   a compressed stream" put all four compression modules (zlib, gzip, bz2, lzma) in their top 5,
   measured at every rank of a sweep; and the nearest terms of a few words in the latent space.

Quick mode uses rank 20 and a sweep of 11 ranks; full mode uses rank 50 and every rank from 1 to
``min(d, t)``. The corpus is the same in both (it depends only on the Python version).

Run it alone with ``python -m experiments.lsa [--quick | --full] [--out DIR]``.
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
from jaxla.datasets._text import stdlib_docs
from jaxla.linalg.vectors import cosine_similarity
from jaxla.models import lsa

__all__ = [
    "COMPRESSION",
    "COMPRESSION_QUERIES",
    "MAX_DF",
    "MIN_DF",
    "NAME",
    "TITLE",
    "TOPICS",
    "TOPIC_QUERIES",
    "load_corpus",
    "run",
]

NAME = "lsa"
TITLE = "Latent semantic analysis of the standard library's documentation"
_FN = "experiments.lsa.run"

MIN_DF = 2
"""Terms must occur in at least this many modules."""
MAX_DF = 0.5
"""Terms in more than this fraction of the modules are dropped (corpus-specific stop words)."""
QUICK_RANK, FULL_RANK = 20, 50
QUICK_SWEEP = (1, 2, 3, 5, 10, 15, 20, 30, 50, 100, 146)

COMPRESSION = ("zlib", "gzip", "bz2", "lzma")
COMPRESSION_QUERIES = ("compress data", "compressed file", "decompress a compressed stream")
TOPIC_QUERIES: dict[str, tuple[str, ...]] = {
    "send an email message": ("smtplib", "email", "email.message", "email.utils", "mailbox",
                              "poplib", "imaplib"),
    "parse command line arguments": ("argparse", "getopt", "shlex", "sys"),
    "date and time": ("datetime", "time", "calendar", "zoneinfo"),
    "secure hash digest": ("hashlib", "hmac", "secrets"),
    "http request url": ("urllib.request", "http.client", "urllib.parse", "http.server"),
    "thread lock": ("threading", "multiprocessing", "asyncio", "queue"),
    "run unit tests": ("unittest", "doctest"),
}
"""Other queries and the modules that count as relevant for them (precision at 5)."""

TOPICS: dict[str, tuple[str, ...]] = {
    "compression": ("zlib", "gzip", "bz2", "lzma", "zipfile", "tarfile", "zipimport"),
    "internet": ("socket", "ssl", "select", "selectors", "http.client", "http.server",
                 "http.cookies", "http.cookiejar", "urllib.request", "urllib.parse",
                 "urllib.robotparser", "ftplib", "poplib", "imaplib", "smtplib", "socketserver",
                 "ipaddress", "xmlrpc.client", "xmlrpc.server", "email", "email.message",
                 "email.utils", "mimetypes", "mailbox", "webbrowser"),
    "numbers": ("math", "cmath", "statistics", "random", "decimal", "fractions", "numbers"),
    "dates": ("datetime", "calendar", "time", "zoneinfo"),
    "concurrency": ("threading", "asyncio", "subprocess", "multiprocessing",
                    "concurrent.futures", "queue", "sched", "signal"),
    "testing": ("unittest", "doctest", "pdb", "timeit", "cProfile", "profile", "trace",
                "traceback", "faulthandler", "tracemalloc"),
}
"""Topic groups that colour the 2-D map (other modules are grey)."""

NEIGHBOUR_TERMS = ("compress", "socket", "thread", "date", "hash", "random")
_QUERIES = (*COMPRESSION_QUERIES, *TOPIC_QUERIES)


def _check_config(config: dict[str, Any]) -> tuple[str, int]:
    mode = check_option(config.get("mode"), ("quick", "full"), _FN, "config['mode']")
    seed = check_int(config.get("seed"), _FN, "config['seed']", min=0)
    return mode, seed


def load_corpus() -> tuple[list[str], np.ndarray, list[str], jax.Array, jax.Array]:
    """The corpus of :func:`run`: ``(names, counts (d, t), vocab, idf (t,), tfidf (d, t))``.

    float32 counts and weights; ``tfidf`` is sublinear and l2-normalized.
    """
    names, texts = stdlib_docs()
    counts, vocab = lsa.vectorize(texts, min_df=MIN_DF, max_df=MAX_DF, stop_words="english")
    idf = lsa.idf_weights(counts)
    return names, counts, vocab, idf, lsa.tfidf(counts, idf=idf, sublinear_tf=True)


def _rank_k(model: lsa.LSA, k: int) -> lsa.LSA:
    """The model with the singular values beyond the ``k``-th set to zero.

    Queries skip zero singular values (their latent coordinates are 0), so this ranks documents
    exactly as the rank-``k`` model does, with the shapes of the full model: one compilation of
    :func:`jaxla.models.lsa.query` serves every rank of the sweep.
    """
    s = model.singular_values
    return model._replace(singular_values=jnp.where(jnp.arange(s.shape[0]) < k, s, 0))


def _max_rel(a: Any, ref: np.ndarray) -> float:
    a = np.asarray(a, np.float64)
    return float(np.max(np.abs(a - ref) / np.abs(ref)))


def run(config: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Run the experiment; write three PNG figures into ``out_dir``; return its results.

    Args:
        config: ``{"mode": "quick" | "full", "seed": int}`` (the seed keys the randomized SVD).
        out_dir: existing directory for the figures.

    Returns:
        ``{"summary", "metrics", "figures", "tables"}`` as described in :mod:`experiments`.
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    out_dir = Path(out_dir)
    mode, seed = _check_config(config)
    rank = QUICK_RANK if mode == "quick" else FULL_RANK

    # ---------------------------------------------------------------- corpus and TF-IDF
    names, _, vocab, idf, x = load_corpus()
    _, texts = stdlib_docs()
    d, t = x.shape
    x64 = np.asarray(x, np.float64)
    sk_vec = TfidfVectorizer(min_df=MIN_DF, max_df=MAX_DF, sublinear_tf=True,
                             stop_words=sorted(lsa.ENGLISH_STOP_WORDS))
    ref_x = sk_vec.fit_transform(texts).toarray()
    vocab_same = list(sk_vec.get_feature_names_out()) == vocab
    tfidf_err = float(np.max(np.abs(x64 - ref_x))) if vocab_same else float("nan")

    # ---------------------------------------------------------------- spectrum and fits
    full = lsa.lsa_fit(None, x, min(d, t), method="exact")  # every direction, sklearn's ratios
    s_all = np.asarray(full.singular_values, np.float64)
    evr_all = np.asarray(full.explained_variance_ratio, np.float64)
    model = lsa.lsa_fit(None, x, rank, method="exact")
    rmodel = lsa.lsa_fit(jax.random.key(seed), x, rank, method="randomized")
    arpack = TruncatedSVD(rank, algorithm="arpack", random_state=seed).fit(x64)
    err_exact = _max_rel(model.singular_values, arpack.singular_values_)
    err_rand = _max_rel(rmodel.singular_values, arpack.singular_values_)
    evr_err = _max_rel(model.explained_variance_ratio, arpack.explained_variance_ratio_)
    s_next = float(s_all[rank]) if rank < len(s_all) else 0.0

    # ---------------------------------------------------------------- queries
    qc, _ = lsa.vectorize(list(_QUERIES), vocabulary=vocab)
    qx = lsa.tfidf(qc, idf=idf, sublinear_tf=True)
    res = lsa.query(model, qx, top_k=5)
    top_idx = np.asarray(res.indices)
    top_scores = np.asarray(res.scores, np.float64)
    top_names = [[names[i] for i in row] for row in top_idx]
    comp_ok = {q: set(COMPRESSION) <= set(top_names[j]) for j, q in enumerate(COMPRESSION_QUERIES)}
    topic_hits = {q: len(set(TOPIC_QUERIES[q]) & set(top_names[len(COMPRESSION_QUERIES) + j]))
                  for j, q in enumerate(TOPIC_QUERIES)}

    sweep = QUICK_SWEEP if mode == "quick" else tuple(range(1, min(d, t) + 1))
    sweep = tuple(k for k in sweep if k <= min(d, t))
    comp_found = np.zeros((len(sweep), len(COMPRESSION_QUERIES)), np.int64)
    topic_prec = np.zeros(len(sweep))
    for i, k in enumerate(sweep):
        r = np.asarray(lsa.query(_rank_k(full, k), qx, top_k=5).indices)
        for j in range(len(COMPRESSION_QUERIES)):
            comp_found[i, j] = len(set(COMPRESSION) & {names[n] for n in r[j]})
        hits = [len(set(TOPIC_QUERIES[q]) & {names[n] for n in r[len(COMPRESSION_QUERIES) + j]})
                for j, q in enumerate(TOPIC_QUERIES)]
        topic_prec[i] = np.mean(hits) / 5
    ranks_all_four = [int(k) for k, row in zip(sweep, comp_found, strict=True)
                      if np.all(row == len(COMPRESSION))]

    # nearest terms: cosine of the rows of V diag(s)
    tv = model.term_vectors * model.singular_values[None, :]
    present = [w for w in NEIGHBOUR_TERMS if w in vocab]
    rows = jnp.stack([tv[vocab.index(w)] for w in present])
    sims = np.asarray(cosine_similarity(rows, tv), np.float64)
    neighbours = {}
    for w, srow in zip(present, sims, strict=True):
        order = [j for j in np.argsort(-srow, kind="stable") if vocab[j] != w][:6]
        neighbours[w] = [(vocab[j], float(srow[j])) for j in order]

    # ---------------------------------------------------------------- figures
    figures = []
    idx = np.arange(1, len(s_all) + 1)
    with figure(out_dir, "spectrum.png", ncols=2, size=(11.5, 4.3)) as (_fig, axes):
        ax = axes[0, 0]
        ax.semilogy(idx, s_all, "o-", ms=2.5, lw=1)
        ax.axvline(rank, color="C3", ls="--", lw=1, label=f"rank {rank}")
        ax.set_xlabel("index $j$")
        ax.set_ylabel("singular value $s_j$")
        ax.set_title(f"Spectrum of the {d} x {t} TF-IDF matrix")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        ax = axes[0, 1]
        ax.plot(idx, 100 * np.cumsum(evr_all), "-", lw=1.5, label="cumulative")
        ax.bar(idx, 100 * evr_all, color="C1", label="per direction")
        ax.axvline(rank, color="C3", ls="--", lw=1)
        ax.set_xlabel("number of latent directions $k$")
        ax.set_ylabel("explained variance ratio (%)")
        ax.set_title("Variance explained (TruncatedSVD's definition)")
        ax.grid(True, alpha=0.3)
        ax.legend()
    figures.append({
        "file": "spectrum.png",
        "caption": (
            f"Singular values of the sublinear TF-IDF matrix of {d} modules and {t} terms, and "
            f"the variance explained by the leading directions. Rank {rank} explains "
            f"{100 * evr_all[:rank].sum():.1f}% (the spectrum decays slowly, as is usual for "
            f"text). jaxla's exact singular values match scikit-learn's arpack to "
            f"{err_exact:.1e}, the randomized ones to {err_rand:.1e} (relative)."
        ),
    })

    coords = np.asarray(full.doc_vectors[:, 1:3] * full.singular_values[None, 1:3], np.float64)
    with figure(out_dir, "module_map.png", size=(9.0, 7.5)) as (_fig, axes):
        ax = axes[0, 0]
        topic_of = {m: tp for tp, mods in TOPICS.items() for m in mods}
        other = [i for i, n in enumerate(names) if n not in topic_of]
        ax.scatter(coords[other, 0], coords[other, 1], s=10, color="0.7", label="other")
        for c, (tp, mods) in enumerate(TOPICS.items()):
            sel = [i for i, n in enumerate(names) if n in mods]
            ax.scatter(coords[sel, 0], coords[sel, 1], s=18, color=f"C{c}", label=tp)
            for i in sel:
                ax.annotate(names[i], coords[i], fontsize=6.5, color=f"C{c}",
                            textcoords="offset points", xytext=(3, 2))
        ax.set_xlabel("latent direction 2:  $U_{:,2}\\, s_2$")
        ax.set_ylabel("latent direction 3:  $U_{:,3}\\, s_3$")
        ax.set_title("Standard-library modules in the latent space")
        ax.legend(fontsize=8, markerscale=1.5)
        ax.grid(True, alpha=0.3)
    figures.append({
        "file": "module_map.png",
        "caption": (
            "Every module placed by its coordinates on the second and third singular directions "
            "of the TF-IDF matrix (the first is close to the average document). Modules of a "
            "topic, coloured by hand, land near each other without any label being used."
        ),
    })

    with figure(out_dir, "retrieval_vs_rank.png", size=(8.0, 4.5)) as (_fig, axes):
        ax = axes[0, 0]
        for j, q in enumerate(COMPRESSION_QUERIES):
            ax.plot(sweep, comp_found[:, j] + 0.04 * (j - 1), "o-", ms=3,
                    label=f"'{q}': compression modules in top 5")
        ax.plot(sweep, 5 * topic_prec, "k--", lw=1.2,
                label=f"{len(TOPIC_QUERIES)} topic queries: mean relevant modules in top 5")
        ax.axvline(rank, color="C3", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_ylim(0, 5.2)
        ax.set_xlabel("rank $k$ of the model")
        ax.set_ylabel("relevant modules among the top 5")
        ax.set_title("Retrieval quality against the rank")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(True, which="both", alpha=0.3)
    figures.append({
        "file": "retrieval_vs_rank.png",
        "caption": (
            f"How many of zlib, gzip, bz2, lzma each compression query finds in its top 5 "
            f"(curves offset slightly), and the mean precision@5 of the other queries, for "
            f"models of rank {sweep[0]} to {sweep[-1]}. All four are found at "
            f"{len(ranks_all_four)} of the {len(sweep)} ranks tried."
        ),
    })

    # ---------------------------------------------------------------- tables and metrics
    tables = [
        {
            "title": f"Queries at rank {rank}: the top 5 modules (cosine similarity)",
            "columns": ["query", "1", "2", "3", "4", "5"],
            "rows": [[q, *(f"{n} ({sc:.2f})" for n, sc in zip(top_names[j], top_scores[j],
                                                               strict=True))]
                     for j, q in enumerate(_QUERIES)],
        },
        {
            "title": f"Nearest terms in the latent space (rank {rank}, cosine of V diag(s) rows)",
            "columns": ["term", "neighbours"],
            "rows": [[w, ", ".join(f"{n} ({sc:.2f})" for n, sc in nb)]
                     for w, nb in neighbours.items()],
        },
        {
            "title": "Leading singular values: jaxla (float32) against scikit-learn arpack "
                     "(float64)",
            "columns": ["j", "exact", "randomized", "arpack", "explained variance ratio (%)"],
            "rows": [[j + 1, float(model.singular_values[j]), float(rmodel.singular_values[j]),
                      float(arpack.singular_values_[j]),
                      float(100 * model.explained_variance_ratio[j])]
                     for j in range(min(rank, 10))],
        },
    ]
    compression_ok = all(comp_ok.values())
    metrics = {
        "n_docs": d,
        "n_terms": t,
        "rank": rank,
        "tfidf_max_abs_err_vs_sklearn": tfidf_err,
        "vocabulary_equals_sklearn": vocab_same,
        "explained_variance_ratio_at_rank": float(evr_all[:rank].sum()),
        "singular_values_max_rel_err_exact_vs_arpack": err_exact,
        "singular_values_max_rel_err_randomized_vs_arpack": err_rand,
        "explained_variance_ratio_max_rel_err_vs_arpack": evr_err,
        "singular_values_match_arpack_1e-4": bool(err_exact < 1e-4 and err_rand < 1e-4),
        "randomized_error_estimate": float(rmodel.error_estimate),
        "optimal_error_s_k_plus_1": s_next,
        "compression_queries_top5": {q: top_names[j] for j, q in enumerate(COMPRESSION_QUERIES)},
        "compression_modules_in_top5_at_rank": compression_ok,
        "sweep_ranks": list(sweep),
        "ranks_with_all_compression_modules_in_top5": ranks_all_four,
        "compression_modules_in_top5_at_every_sweep_rank": len(ranks_all_four) == len(sweep),
        "topic_query_hits_in_top5": topic_hits,
        "topic_precision_at_5": float(np.mean(list(topic_hits.values())) / 5),
    }
    summary = (
        f"LSA of {d} standard-library modules ({t} terms after pruning): the rank-{rank} model "
        f"explains {100 * evr_all[:rank].sum():.1f}% of the TF-IDF variance; its singular values "
        f"match scikit-learn's arpack to {err_exact:.1e} (exact) and {err_rand:.1e} "
        f"(randomized). 'compress data' returns {', '.join(top_names[0])}; all four compression "
        f"modules are in the top 5 of every compression query at "
        f"{len(ranks_all_four)}/{len(sweep)} ranks of the sweep, and the topic queries reach a "
        f"precision@5 of {metrics['topic_precision_at_5']:.2f} at rank {rank}."
    )
    return {"summary": summary, "metrics": metrics, "figures": figures, "tables": tables}


if __name__ == "__main__":
    from experiments.runner import experiment_main

    raise SystemExit(experiment_main(sys.modules[__name__]))
