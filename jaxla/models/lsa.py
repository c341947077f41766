"""Latent semantic analysis: bag of words, TF-IDF and a truncated SVD for retrieval.

The pipeline, with scikit-learn's definitions so that every step compares directly:

1. :func:`vectorize` (plain Python) splits texts into lower-case tokens of two or more word
   characters (scikit-learn's default ``token_pattern``), drops stop words, builds an
   alphabetically sorted vocabulary pruned by document frequency and counts the terms: the
   ``(n_docs, n_terms)`` count matrix of ``CountVectorizer``.
2. :func:`tfidf` (JAX) weights the counts as ``TfidfTransformer`` does: ``tf * idf`` with
   ``idf = log((1 + n) / (1 + df)) + 1`` (``smooth_idf``) or ``log(n / df) + 1``, optionally
   ``tf = 1 + log(tf)`` (``sublinear_tf``), then each row scaled to unit l2 (or l1) norm.
3. :func:`lsa_fit` takes the top-``k`` singular triplets ``X ~ U diag(s) V^T`` of the TF-IDF
   matrix with jaxla's exact or randomized truncated SVD: ``U`` places the documents and ``V``
   the terms in a ``k``-dimensional latent space where terms that occur in similar contexts
   are close (scikit-learn's ``TruncatedSVD``; its ``components_`` are ``V^T``).
4. :func:`fold_in` maps a new document or query ``q`` (a TF-IDF row) into the latent space as
   ``q V diag(s)^-1``, the row of ``U`` it would have had; :func:`query` ranks the training
   documents by the cosine similarity of ``q V`` with the documents' ``U diag(s)`` (the fold-in
   and the documents both scaled by ``s``, as in Deerwester et al.).

Dimension letters: ``d`` documents, ``t`` terms (the vocabulary), ``k`` the rank of the model,
``r`` the number of results of a query.

References:
    S. Deerwester, S. T. Dumais, G. W. Furnas, T. K. Landauer, R. Harshman. Indexing by latent
    semantic analysis. Journal of the American Society for Information Science 41(6), 1990.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxla import _checks
from jaxla._numerics import matmul, upcast
from jaxla.linalg.decompositions import svd
from jaxla.linalg.lowrank import randomized_svd
from jaxla.linalg.vectors import cosine_similarity

__all__ = [
    "ENGLISH_STOP_WORDS",
    "LSA",
    "QueryResult",
    "fold_in",
    "idf_weights",
    "lsa_fit",
    "query",
    "tfidf",
    "tokenize",
    "vectorize",
]

_MODULE = "jaxla.models"
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_NORMS = ("l2", "l1", None)
_METHODS = ("auto", "exact", "randomized")
_AUTO_EXACT = 1000  # "auto" takes the exact thin SVD up to this min(d, t)
_POWER_ITERS = 20

ENGLISH_STOP_WORDS: frozenset[str] = frozenset(
    """
    a about above across after afterwards again against all almost alone along already also
    although always am among amongst an and another any anyhow anyone anything anyway anywhere
    are around as at be became because become becomes becoming been before beforehand behind
    being below beside besides between beyond both but by can cannot could did do does doing
    done down during each either else elsewhere enough etc even ever every everyone everything
    everywhere except few for former formerly from further had has have having he hence her
    here hereafter hereby herein hers herself him himself his how however i ie if in indeed
    into is it its itself just last latter least less many may me meanwhile might mine more
    moreover most mostly much must my myself namely neither never nevertheless next no nobody
    none noone nor not nothing now nowhere of off often on once one only onto or other others
    otherwise our ours ourselves out over own per perhaps please rather same several she should
    since so some somehow someone something sometime sometimes somewhere still such than that
    the their theirs them themselves then thence there thereafter thereby therefore therein
    thereupon these they this those though through throughout thru thus to together too toward
    towards under until up upon us very via was we well were what whatever when whence
    whenever where whereafter whereas whereby wherein whereupon wherever whether which while
    whither who whoever whole whom whose why will with within without would yet you your yours
    yourself yourselves
    """.split()
)
"""Common English function words (pronouns, articles, prepositions, conjunctions, auxiliary
verbs and adverbs), dropped by ``vectorize(..., stop_words="english")``."""


class LSA(NamedTuple):
    """A latent semantic analysis model: ``X ~ U diag(s) V^T`` (documents x terms).

    ``U`` is ``doc_vectors``, ``s`` ``singular_values`` and ``V`` ``term_vectors``.

    Passes through ``jax.jit`` and ``jax.vmap``. ``doc_vectors @ diag(singular_values)`` are
    scikit-learn's ``TruncatedSVD.fit_transform(X)`` and ``term_vectors.T`` its ``components_``.
    """

    doc_vectors: jax.Array  # (d, k) left singular vectors U: orthonormal columns, one row per doc
    singular_values: jax.Array  # (k,) descending, >= 0
    term_vectors: jax.Array  # (t, k) right singular vectors V: orthonormal columns, one row per
    #   term; the largest-magnitude entry of each column is positive (canonical signs)
    explained_variance: jax.Array  # (k,) variance of each column of X V over the documents
    explained_variance_ratio: jax.Array  # (k,) explained_variance / total variance of X's columns
    error_estimate: jax.Array  # () estimate of ||X - U diag(s) V^T||_2 (exact: s_{k+1})
    converged: jax.Array  # () bool: the decomposition is finite (randomized: and its estimate)


class QueryResult(NamedTuple):
    """Documents ranked by a query, best first (ties: lower document index first)."""

    indices: jax.Array  # (r,) or (n_q, r) int32 document indices, by decreasing score
    scores: jax.Array  # (r,) or (n_q, r) cosine similarities in [-1, 1], decreasing


# --------------------------------------------------------------------------------------------
# bag of words (plain Python)


def tokenize(text: str) -> list[str]:
    """Lower-case tokens of two or more word characters, in order of appearance.

    The tokens of scikit-learn's default analyzer: the regular expression ``(?u)\\b\\w\\w+\\b``
    applied to ``text.lower()`` (single characters and punctuation are dropped).

    Args:
        text: a string.

    Returns:
        The list of tokens.

    Raises:
        TypeError: ``text`` is not a string.

    Examples:
        >>> from jaxla.models.lsa import tokenize
        >>> tokenize("Compress data with zlib.compress(); a 2-step API!")
        ['compress', 'data', 'with', 'zlib', 'compress', 'step', 'api']
    """
    if not isinstance(text, str):
        _checks.fail(f"{_MODULE}.tokenize", f"`text` must be a str, got {type(text).__name__}",
                     TypeError)
    return _TOKEN.findall(text.lower())


def _check_df(value: Any, fn: str, name: str) -> int | float:
    """A document-frequency bound: an int count >= 0 or a float proportion in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        _checks.fail(fn, f"`{name}` must be an int count or a float in [0, 1], got {value!r}",
                     TypeError)
    if isinstance(value, int | np.integer):
        return _checks.check_int(value, fn, name, min=0)
    value = float(value)
    if not 0.0 <= value <= 1.0:
        _checks.fail(fn, f"`{name}` must be a proportion in [0, 1] when a float, got {value!r}")
    return value


def _stop_set(stop_words: Any, fn: str) -> frozenset[str]:
    if stop_words is None:
        return frozenset()
    if isinstance(stop_words, str):
        _checks.check_option(stop_words, ("english",), fn, "stop_words")
        return ENGLISH_STOP_WORDS
    words = list(stop_words) if isinstance(stop_words, Iterable) else None
    if words is None or not all(isinstance(w, str) for w in words):
        _checks.fail(
            fn,
            f"`stop_words` must be None, 'english' or an iterable of strings, got {stop_words!r}",
            TypeError,
        )
    return frozenset(words)


def vectorize(
    texts: Sequence[str],
    *,
    vocabulary: Sequence[str] | None = None,
    min_df: int | float = 1,
    max_df: int | float = 1.0,
    stop_words: str | Iterable[str] | None = None,
    dtype: Any = np.float32,
) -> tuple[np.ndarray, list[str]]:
    """Term counts of a corpus: a bag-of-words matrix and its vocabulary.

    Texts are split by :func:`tokenize`, stop words are dropped, and, unless ``vocabulary`` is
    given, the vocabulary is every remaining term whose document frequency ``df`` (the number of
    texts containing it) satisfies ``min_df <= df <= max_df``, sorted alphabetically. This is
    ``sklearn.feature_extraction.text.CountVectorizer(min_df=..., max_df=..., stop_words=...)``
    with its default tokenizer; an int bound is a number of documents and a float bound a
    proportion of them.

    With ``vocabulary`` the counts are taken over those terms, in that order (``min_df`` and
    ``max_df`` are not used): this is how a query or a new document is put in the space of a
    fitted corpus. A text without any known term gives a row of zeros.

    Args:
        texts: the ``d`` documents (a sequence of strings, not a single string).
        vocabulary: optional fixed vocabulary of ``t`` distinct terms.
        min_df: keep terms in at least this many documents (int >= 0) or this proportion of them
            (float in [0, 1]).
        max_df: keep terms in at most this many documents (int) or this proportion (float).
        stop_words: None, ``"english"`` (:data:`ENGLISH_STOP_WORDS`) or an iterable of words to
            drop.
        dtype: floating numpy dtype of the counts (float32 by default, ready for :func:`tfidf`).

    Returns:
        ``(counts, vocabulary)``: ``counts`` a numpy array ``(d, t)`` whose entry ``[i, j]`` is
        the number of occurrences of term ``vocabulary[j]`` in ``texts[i]``, and the list of the
        ``t`` terms.

    Raises:
        ValueError: an empty corpus; a vocabulary that is empty (no term survives the pruning)
            or has duplicates; ``max_df`` below ``min_df``; a bound out of range; an unknown
            ``stop_words`` string.
        TypeError: ``texts`` (or ``vocabulary``) not a sequence of strings; a non-float ``dtype``.

    Examples:
        >>> from jaxla.models.lsa import vectorize
        >>> counts, vocab = vectorize(["zlib compresses data", "json encodes data", "data data"])
        >>> vocab
        ['compresses', 'data', 'encodes', 'json', 'zlib']
        >>> counts.astype(int).tolist()
        [[1, 1, 0, 0, 1], [0, 1, 1, 1, 0], [0, 2, 0, 0, 0]]
        >>> vectorize(["compressed data"], vocabulary=vocab)[0].astype(int).tolist()
        [[0, 1, 0, 0, 0]]
    """
    fn = f"{_MODULE}.vectorize"
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        _checks.fail(fn, f"`texts` must be a sequence of strings, got {type(texts).__name__}; "
                         "wrap a single text in a list", TypeError)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            _checks.fail(fn, f"`texts` must contain strings, got {type(text).__name__} at "
                             f"index {i}", TypeError)
    if len(texts) == 0:
        _checks.fail(fn, "`texts` must hold at least one document (an empty corpus), got 0")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        _checks.fail(fn, f"`dtype` must be a floating numpy dtype, got {dtype!r}", TypeError)
    if not np.issubdtype(dtype, np.floating):
        _checks.fail(fn, f"`dtype` must be a floating numpy dtype, got {dtype}", TypeError)
    stop = _stop_set(stop_words, fn)
    docs = [Counter(w for w in tokenize(text) if w not in stop) for text in texts]
    n = len(docs)
    if vocabulary is None:
        lo = _check_df(min_df, fn, "min_df")
        hi = _check_df(max_df, fn, "max_df")
        lo_count = lo if isinstance(lo, int) else lo * n
        hi_count = hi if isinstance(hi, int) else hi * n
        if hi_count < lo_count:
            _checks.fail(fn, f"`max_df` must allow at least `min_df` documents, got "
                             f"max_df={max_df!r} ({hi_count:g} documents) and min_df={min_df!r} "
                             f"({lo_count:g} documents)")
        df = Counter(w for doc in docs for w in doc)
        terms = sorted(w for w, c in df.items() if lo_count <= c <= hi_count)
        if not terms:
            _checks.fail(fn, f"the vocabulary must not be empty, got no term in "
                             f"{len(df)} distinct token(s) with min_df={min_df!r} <= df <= "
                             f"max_df={max_df!r}; relax the bounds or the stop words")
    else:
        if isinstance(vocabulary, str) or not isinstance(vocabulary, Sequence) or not all(
            isinstance(w, str) for w in vocabulary
        ):
            _checks.fail(fn, f"`vocabulary` must be a sequence of strings, got {vocabulary!r}",
                         TypeError)
        terms = list(vocabulary)
        if not terms:
            _checks.fail(fn, "`vocabulary` must not be empty, got 0 terms")
        if len(set(terms)) != len(terms):
            dup = sorted(w for w, c in Counter(terms).items() if c > 1)
            _checks.fail(fn, f"`vocabulary` must have distinct terms, got duplicates {dup[:5]}")
    index = {w: j for j, w in enumerate(terms)}
    counts = np.zeros((n, len(terms)), dtype=dtype)
    for i, doc in enumerate(docs):
        for w, c in doc.items():
            j = index.get(w)
            if j is not None:
                counts[i, j] = c
    return counts, terms


# --------------------------------------------------------------------------------------------
# TF-IDF (JAX)


def _counts(counts: Any, fn: str, name: str = "counts") -> jax.Array:
    x = _checks.as_float_array(counts, fn, name, ndim=2, doc="(d, t)")
    _checks.check_finite(x, fn, name)
    if _checks.is_concrete(x) and x.size and float(jnp.min(x)) < 0:
        _checks.fail(fn, f"`{name}` must be non-negative term counts, got a minimum of "
                         f"{float(jnp.min(x)):g}")
    return x


@functools.partial(jax.jit, static_argnames=("smooth_idf",))
def _idf(x: jax.Array, smooth_idf: bool) -> jax.Array:
    xc = upcast(x)
    n = jnp.asarray(x.shape[0], xc.dtype)
    df = jnp.sum((xc > 0).astype(xc.dtype), axis=0)
    if smooth_idf:
        n, df = n + 1, df + 1
    return (jnp.log(n / df) + 1).astype(x.dtype)


def idf_weights(counts: jax.Array, *, smooth_idf: bool = True) -> jax.Array:
    """Inverse document frequencies of the terms of a count matrix (scikit-learn's ``idf_``).

    ``idf = log((1 + d) / (1 + df)) + 1`` with ``smooth_idf=True`` (as if one extra document
    contained every term once), else ``log(d / df) + 1``; ``df`` is the number of documents
    (rows) in which a term's count is positive. A term in every document gets weight 1, rarer
    terms more. Without smoothing a term with ``df = 0`` gets ``inf``, as in scikit-learn.

    Args:
        counts: ``(d, t)`` float array of non-negative term counts.
        smooth_idf: add one to the document counts (static bool).

    Returns:
        ``(t,)`` array in the dtype of ``counts``.

    Raises:
        ValueError: ``counts`` not 2-D, negative, or with NaN/Inf (eagerly).
        TypeError: integer ``counts``, non-bool ``smooth_idf``.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.models.lsa import idf_weights
        >>> counts = jnp.array([[1.0, 2.0], [0.0, 1.0], [0.0, 3.0]])
        >>> print(np.round(np.asarray(idf_weights(counts), np.float64), 4))
        [1.6931 1.    ]
    """
    fn = f"{_MODULE}.idf_weights"
    x = _counts(counts, fn)
    smooth_idf = _checks.check_bool(smooth_idf, fn, "smooth_idf")
    return _idf(x, smooth_idf)


@functools.partial(jax.jit, static_argnames=("norm", "smooth_idf", "sublinear_tf"))
def _tfidf(x, idf, norm, smooth_idf, sublinear_tf):
    xc = upcast(x)
    w = upcast(_idf(x, smooth_idf)) if idf is None else upcast(idf).astype(xc.dtype)
    present = xc > 0
    tf = jnp.where(present, 1 + jnp.log(jnp.where(present, xc, 1)), 0) if sublinear_tf else xc
    # entries with tf = 0 stay 0 even where idf is inf (df = 0 without smoothing)
    out = jnp.where(present, tf * jnp.where(present, w[None, :], 0), 0)
    if norm is not None:
        mag = jnp.abs(out)
        scale = jnp.max(mag, axis=1, keepdims=True)
        scale = jnp.where(scale > 0, scale, 1)
        y = mag / scale  # rescaled first: any magnitude works in float32
        nrm = jnp.sqrt(jnp.sum(y * y, axis=1, keepdims=True)) if norm == "l2" else jnp.sum(
            y, axis=1, keepdims=True)
        nrm = nrm * scale
        out = out / jnp.where(nrm > 0, nrm, 1)
    return out.astype(x.dtype)


def tfidf(
    counts: jax.Array,
    *,
    idf: jax.Array | None = None,
    norm: str | None = "l2",
    smooth_idf: bool = True,
    sublinear_tf: bool = False,
) -> jax.Array:
    """TF-IDF weighting of a count matrix, as scikit-learn's ``TfidfTransformer``.

    Each entry becomes ``tf * idf`` where ``tf`` is the count (``1 + log(count)`` for positive
    counts with ``sublinear_tf``, which damps repeated words) and ``idf`` the term's inverse
    document frequency (:func:`idf_weights` of ``counts``, or the ``idf`` given, e.g. that of a
    training corpus when weighting a query); each row is then divided by its l2 (or l1) norm.
    All-zero rows stay zero. Matches ``TfidfTransformer(norm, smooth_idf, sublinear_tf)
    .fit_transform(counts)`` (``.transform`` of a fitted one when ``idf`` is given) to rounding.

    Args:
        counts: ``(d, t)`` float array of non-negative term counts (:func:`vectorize`).
        idf: optional ``(t,)`` idf weights; by default computed from ``counts``.
        norm: ``"l2"``, ``"l1"`` or None (no row normalization).
        smooth_idf: passed to :func:`idf_weights` when ``idf`` is not given (static bool).
        sublinear_tf: replace positive counts by ``1 + log(count)`` (static bool).

    Returns:
        ``(d, t)`` array in the dtype of ``counts`` (float16/bfloat16 computed in float32).

    Raises:
        ValueError: ``counts`` not 2-D, negative or with NaN/Inf (eagerly); ``idf`` of the wrong
            length; an unknown ``norm``.
        TypeError: integer ``counts`` or ``idf``, non-bool flags.

    Examples:
        >>> import jax.numpy as jnp
        >>> import numpy as np
        >>> from jaxla.models.lsa import tfidf
        >>> counts = jnp.array([[3.0, 0.0, 1.0], [2.0, 0.0, 0.0], [3.0, 2.0, 0.0]])
        >>> print(np.round(np.asarray(tfidf(counts), np.float64), 4))
        [[0.8709 0.     0.4915]
         [1.     0.     0.    ]
         [0.6631 0.7485 0.    ]]
    """
    fn = f"{_MODULE}.tfidf"
    x = _counts(counts, fn)
    norm = _checks.check_option(norm, _NORMS, fn, "norm")
    smooth_idf = _checks.check_bool(smooth_idf, fn, "smooth_idf")
    sublinear_tf = _checks.check_bool(sublinear_tf, fn, "sublinear_tf")
    if idf is not None:
        idf = _checks.as_float_array(idf, fn, "idf", ndim=1, doc="(t,)")
        if idf.shape[0] != x.shape[1]:
            _checks.fail(fn, f"`idf` must have one weight per term of `counts` "
                             f"({x.shape[1]},), got shape {tuple(idf.shape)}")
        if _checks.is_concrete(idf) and bool(jnp.any(jnp.isnan(idf))):
            _checks.fail(fn, "`idf` contains NaN value(s); clean or mask them first")
    return _tfidf(x, idf, norm, smooth_idf, sublinear_tf)


# --------------------------------------------------------------------------------------------
# the model


@jax.jit
def _finish(x, u, s, vt, err, converged):
    xc = upcast(x)
    proj = matmul(xc, upcast(vt).T)  # X V: TruncatedSVD.transform of the training data
    ev = jnp.var(proj, axis=0)
    total = jnp.sum(jnp.var(xc, axis=0))
    ratio = ev / jnp.where(total > 0, total, 1)
    ok = converged & jnp.all(jnp.isfinite(s)) & jnp.all(jnp.isfinite(u)) & jnp.all(
        jnp.isfinite(vt))
    dt = x.dtype
    return LSA(u.astype(dt), s.astype(dt), vt.T.astype(dt), ev.astype(dt), ratio.astype(dt),
               err.astype(dt), ok)


def lsa_fit(
    key: jax.Array | None,
    x: jax.Array,
    rank: int,
    *,
    method: str = "auto",
    oversamples: int | None = None,
    power_iters: int | None = None,
) -> LSA:
    """Fit latent semantic analysis: the top-``rank`` singular triplets of a TF-IDF matrix.

    ``X ~ U diag(s) V^T`` with ``U`` (d, k), ``s`` (k,), ``V`` (t, k) the leading singular
    triplets of ``x`` (no centering), as scikit-learn's ``TruncatedSVD(rank)``. Methods:

    * ``"exact"``: the thin SVD :func:`jaxla.linalg.svd`, truncated (``key`` is not used and may
      be None). Costs about ``d t min(d, t)`` flops: the right choice while ``min(d, t)`` is at
      most a few thousand.
    * ``"randomized"``: :func:`jaxla.linalg.randomized_svd` with ``key``, for large corpora.
      TF-IDF spectra decay slowly, so its defaults here are a sketch of ``2 k`` columns
      (``oversamples = k``) and 20 power iterations: about ``42 * 2k`` products with rows or
      columns of ``x``. ``error_estimate`` then says how close the rank-``k`` approximation is
      to the optimum ``s_{k+1}``.
    * ``"auto"`` (default): ``"exact"`` when ``min(d, t) <= 1000``, else ``"randomized"``.

    The singular values match scikit-learn's ``TruncatedSVD(rank, algorithm="arpack")
    .singular_values_``: to about 1e-6 relative in float32 for ``"exact"``, and to 1e-4 for
    ``"randomized"`` with its defaults in the tests (146 documents, ranks 10, 20 and 50). Signs are
    canonical: the largest-magnitude entry of each column of ``V`` (each row of scikit-learn's
    ``components_``) is positive, as scikit-learn's ``svd_flip(u_based_decision=False)``.
    ``explained_variance`` and ``explained_variance_ratio`` follow ``TruncatedSVD``: the
    variances over the documents of the columns of ``X V``, and their ratio to the total
    variance of the columns of ``X``.

    Args:
        key: JAX random key (``jax.random.key(0)``), required when the method is (or ``"auto"``
            resolves to) ``"randomized"``; may be None otherwise.
        x: ``(d, t)`` float TF-IDF matrix (:func:`tfidf`), or any document-term matrix.
        rank: static int ``k``, ``1 <= k <= min(d, t)``.
        method: ``"auto"``, ``"exact"`` or ``"randomized"``.
        oversamples: extra sketch columns of the randomized SVD (static int >= 0; default ``k``).
        power_iters: power iterations of the randomized SVD (static int >= 0; default 20).

    Returns:
        :class:`LSA` with ``doc_vectors`` (d, k), ``singular_values`` (k,), ``term_vectors``
        (t, k), ``explained_variance`` (k,), ``explained_variance_ratio`` (k,),
        ``error_estimate`` () and ``converged`` () (bool), in the dtype of ``x``
        (float16/bfloat16 computed in float32).

    Raises:
        ValueError: ``x`` not 2-D or with NaN/Inf (eagerly), ``rank`` out of range, unknown
            ``method``, no ``key`` for the randomized method.
        TypeError: integer ``x``, non-int ``rank`` or sizes, an invalid ``key``.

    Examples:
        >>> import jax
        >>> import numpy as np
        >>> from jaxla.models.lsa import idf_weights, lsa_fit, tfidf, vectorize
        >>> texts = ["zlib compresses data streams", "gzip compresses files",
        ...          "json encodes objects", "csv encodes tables of rows"]
        >>> counts, vocab = vectorize(texts)
        >>> x = tfidf(counts, idf=idf_weights(counts))
        >>> model = lsa_fit(None, x, 2)  # "auto": the exact SVD for small matrices
        >>> model.doc_vectors.shape, model.term_vectors.shape
        ((4, 2), (13, 2))
        >>> s_ref = np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)
        >>> bool(np.allclose(model.singular_values, s_ref[:2], rtol=1e-5))
        True
        >>> print(round(float(model.error_estimate / s_ref[2]), 4))  # exact: s_3
        1.0
    """
    fn = f"{_MODULE}.lsa_fit"
    method = _checks.check_option(method, _METHODS, fn, "method")
    xa = _checks.as_float_array(x, fn, "x", ndim=2, doc="(d, t)")
    d, t = xa.shape
    rank = _checks.check_int(rank, fn, "rank", min=1, max=min(d, t), max_doc="min(d, t)")
    if oversamples is not None:
        oversamples = _checks.check_int(oversamples, fn, "oversamples", min=0)
    if power_iters is not None:
        power_iters = _checks.check_int(power_iters, fn, "power_iters", min=0)
    if method == "auto":
        method = "exact" if min(d, t) <= _AUTO_EXACT else "randomized"
    if method == "randomized":
        if key is None:
            _checks.fail(fn, "`key` must be a JAX random key for the randomized method, got "
                             "None; pass jax.random.key(0) or use method='exact'")
        _checks.check_key(key, fn)
    _checks.check_finite(xa, fn, "x")
    if method == "exact":
        u, s, vt = svd(xa)  # the thin SVD: all min(d, t) triplets, then the top k
        err = s[rank] if rank < s.shape[0] else jnp.zeros((), s.dtype)
        return _finish(xa, u[:, :rank], s[:rank], vt[:rank], err, jnp.asarray(True))
    res = randomized_svd(
        key,
        xa,
        rank,
        oversamples=rank if oversamples is None else oversamples,
        power_iters=_POWER_ITERS if power_iters is None else power_iters,
    )
    return _finish(xa, res.u, res.s, res.vt, res.error_estimate, res.converged)


def _query_matrix(model: LSA, q: Any, fn: str) -> tuple[jax.Array, bool]:
    t = model.term_vectors.shape[-2]
    qa = _checks.as_float_array(q, fn, "q", ndim=(1, 2), doc="(t,) or (n_q, t)")
    if qa.shape[-1] != t:
        _checks.fail(fn, f"`q` must have one entry per term of the model ({t}), got shape "
                         f"{tuple(qa.shape)}")
    _checks.check_finite(qa, fn, "q")
    return (qa[None, :], True) if qa.ndim == 1 else (qa, False)


@jax.jit
def _fold_in(model: LSA, q: jax.Array) -> jax.Array:
    s = upcast(model.singular_values)
    inv = jnp.where(s > 0, 1 / jnp.where(s > 0, s, 1), 0)
    dt = jnp.result_type(q.dtype, model.term_vectors.dtype)
    proj = matmul(upcast(q.astype(dt)), upcast(model.term_vectors.astype(dt)))
    return (proj * inv[None, :]).astype(dt)


def fold_in(model: LSA, q: jax.Array) -> jax.Array:
    """Place new documents in the latent space: ``q V diag(s)^-1``.

    The fold-in of a TF-IDF row is the row of ``U`` the document would have if it had been part
    of the fit: for a training document of an exact fit it is exactly its row of ``U``, at any
    rank (``X V = U diag(s)``). Zero singular
    values are skipped (their coordinate is 0, the pseudo-inverse).

    Args:
        model: a fitted :class:`LSA`.
        q: ``(t,)`` TF-IDF vector or ``(n_q, t)`` matrix of them, weighted as the training matrix
            was (``tfidf(counts, idf=...)`` with the corpus's idf).

    Returns:
        ``(k,)`` or ``(n_q, k)`` latent coordinates, in the promoted dtype of ``q`` and the
        model.

    Raises:
        ValueError: ``q`` not 1-D/2-D, of the wrong length, or with NaN/Inf (eagerly).
        TypeError: integer ``q``.

    Examples:
        >>> import numpy as np
        >>> from jaxla.models.lsa import fold_in, idf_weights, lsa_fit, tfidf, vectorize
        >>> counts, _ = vectorize(["zlib compresses data streams", "gzip compresses files",
        ...                        "json encodes objects", "csv encodes tables of rows"])
        >>> x = tfidf(counts, idf=idf_weights(counts))
        >>> model = lsa_fit(None, x, 2, method="exact")
        >>> bool(np.allclose(fold_in(model, x), model.doc_vectors, atol=1e-5))
        True
    """
    fn = f"{_MODULE}.fold_in"
    qm, single = _query_matrix(model, q, fn)
    out = _fold_in(model, qm)
    return out[0] if single else out


@functools.partial(jax.jit, static_argnames=("top_k",))
def _query(model: LSA, q: jax.Array, top_k: int) -> QueryResult:
    s = upcast(model.singular_values)
    qv = _fold_in(model, q) * s[None, :].astype(q.dtype)  # q V
    docs = model.doc_vectors * model.singular_values[None, :]  # U diag(s)
    dt = jnp.result_type(qv.dtype, docs.dtype)
    scores = cosine_similarity(qv.astype(dt), docs.astype(dt))  # (n_q, d), 0 for zero rows
    top, idx = lax.top_k(scores, top_k)
    return QueryResult(idx.astype(jnp.int32), top)


def query(model: LSA, q: jax.Array, *, top_k: int | None = None) -> QueryResult:
    """Rank the training documents by their latent-space cosine similarity to a query.

    The score of document ``i`` is ``cos(q V, (U diag(s))_i)``: the query folded in
    (:func:`fold_in`) and the documents, both scaled by the singular values, which is the cosine
    of ``q`` and ``x_i`` after projecting both on the span of the ``k`` term vectors. Documents
    come by decreasing score; equal scores keep the lower document index first.

    A query without any known term (an all-zero ``q``) has no direction: called eagerly it
    raises ``ValueError``; under ``jit``/``vmap`` its scores are all 0 (documents ``0 .. r-1``).

    Args:
        model: a fitted :class:`LSA`.
        q: ``(t,)`` TF-IDF query vector or ``(n_q, t)`` matrix of them, weighted as the training
            matrix (``tfidf(vectorize([text], vocabulary=vocab)[0], idf=idf)``).
        top_k: static int ``r``, ``1 <= r <= d``: return the best ``r`` documents; None ranks
            all ``d``.

    Returns:
        :class:`QueryResult` with ``indices`` (int32) and ``scores`` of shape ``(r,)`` for one
        query, ``(n_q, r)`` for several.

    Raises:
        ValueError: ``q`` of the wrong shape, NaN/Inf in it or an all-zero query (eagerly),
            ``top_k`` out of range.
        TypeError: integer ``q``, non-int ``top_k``.

    Examples:
        >>> import numpy as np
        >>> from jaxla.models.lsa import idf_weights, lsa_fit, query, tfidf, vectorize
        >>> texts = ["zlib compresses data streams", "gzip compresses files",
        ...          "json encodes objects", "csv encodes tables of rows"]
        >>> counts, vocab = vectorize(texts)
        >>> idf = idf_weights(counts)
        >>> model = lsa_fit(None, tfidf(counts, idf=idf), 2, method="exact")
        >>> q = tfidf(vectorize(["compresses a stream"], vocabulary=vocab)[0], idf=idf)
        >>> res = query(model, q[0], top_k=2)
        >>> [texts[i].split()[0] for i in np.asarray(res.indices)]
        ['zlib', 'gzip']
    """
    fn = f"{_MODULE}.query"
    d = model.doc_vectors.shape[-2]
    top_k = d if top_k is None else _checks.check_int(
        top_k, fn, "top_k", min=1, max=d, max_doc="the number of documents")
    qm, single = _query_matrix(model, q, fn)
    if _checks.is_concrete(qm):
        zero = np.flatnonzero(~np.any(np.asarray(qm) != 0, axis=1))
        if zero.size:
            rows = ", ".join(str(int(r)) for r in zero[:10])
            _checks.fail(fn, "`q` must have a nonzero entry in every query (a query with at "
                             f"least one term of the vocabulary), got all-zero row(s) {rows}")
    res = _query(model, qm, top_k)
    return QueryResult(res.indices[0], res.scores[0]) if single else res
