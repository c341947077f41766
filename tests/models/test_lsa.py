"""Tests of jaxla.models.lsa and jaxla.datasets.stdlib_docs against scikit-learn and numpy.

References: scikit-learn's ``CountVectorizer``, ``TfidfTransformer`` and
``TruncatedSVD(algorithm="arpack")``; numpy's SVD and cosine similarities written out in numpy
for the queries; ``inspect`` for the corpus. The corpus is the standard library's documentation
on this machine (146 modules on Python 3.11), so retrieval results are checked as properties (the
compression modules come first), not as hard-coded rankings.
"""

from __future__ import annotations

import functools
import importlib
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

import jaxla.datasets._text as text
import jaxla.models.lsa as lsa
from tests.helpers import msg

RANK = 20
VECTORIZE = "jaxla.models.vectorize"
TFIDF = "jaxla.models.tfidf"
FIT = "jaxla.models.lsa_fit"
QUERY = "jaxla.models.query"
DOCS = "jaxla.datasets.stdlib_docs"
COMPRESSION = {"zlib", "gzip", "bz2", "lzma"}
COMPRESSION_QUERIES = ("compress data", "compressed file", "decompress a compressed stream")
# other queries: at least two of the listed modules among the top 5 at rank RANK
TOPIC_QUERIES = {
    "send an email message": {"smtplib", "email", "email.message", "email.utils", "mailbox",
                              "poplib", "imaplib"},
    "parse command line arguments": {"argparse", "getopt", "shlex", "sys"},
    "date and time": {"datetime", "time", "calendar", "zoneinfo"},
    "secure hash digest": {"hashlib", "hmac", "secrets"},
    "http request url": {"urllib.request", "http.client", "urllib.parse", "http.server"},
    "thread lock": {"threading", "multiprocessing", "asyncio", "queue"},
}


# ---------------------------------------------------------------------------------------------
# shared data (built once per test module)


@functools.cache
def _corpus():
    """The default corpus, its counts (min_df=2, max_df=0.5, English stop words), idf, TF-IDF."""
    names, texts = text.stdlib_docs()
    counts, vocab = lsa.vectorize(texts, min_df=2, max_df=0.5, stop_words="english")
    idf = lsa.idf_weights(counts)
    x = lsa.tfidf(counts, idf=idf, sublinear_tf=True)
    return names, texts, counts, vocab, idf, x


@functools.cache
def _model():
    x = _corpus()[5]
    return lsa.lsa_fit(None, x, RANK, method="exact")


@functools.cache
def _arpack(k: int):
    x64 = np.asarray(_corpus()[5], np.float64)
    return TruncatedSVD(k, algorithm="arpack", random_state=0).fit(x64)


def _small_counts(seed: int = 0, d: int = 8, t: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.poisson(1.0, size=(d, t)).astype(np.float64)
    c[:, 3] = 0.0  # a term in no document
    c[2] = 0.0  # an empty document
    return c


def _query_vector(q: str) -> jax.Array:
    vocab, idf = _corpus()[3:5]
    c, _ = lsa.vectorize([q], vocabulary=vocab)
    return lsa.tfidf(c, idf=idf, sublinear_tf=True)[0]


@functools.cache
def _numpy_svd():
    return np.linalg.svd(np.asarray(_corpus()[5], np.float64), full_matrices=False)


def _numpy_ranking(q64: np.ndarray, k: int):
    """Cosine of q V_k with the rows of U_k S_k from numpy's SVD of the corpus; best first."""
    u, s, vt = _numpy_svd()
    qv = q64 @ vt[:k].T
    docs = u[:, :k] * s[:k]
    scores = docs @ qv / (np.linalg.norm(docs, axis=1) * np.linalg.norm(qv))
    order = np.argsort(-scores, kind="stable")
    return order, scores[order]


# ---------------------------------------------------------------------------------------------
# stdlib_docs


def test_stdlib_docs_default_corpus():
    names, texts = text.stdlib_docs()
    assert len(text.STDLIB_MODULES) == len(set(text.STDLIB_MODULES)) == 146
    assert 80 <= len(names) <= 150 and len(names) == len(texts)
    required = ["zlib", "gzip", "bz2", "lzma", "zipfile", "tarfile", "json", "csv", "re",
                "socket", "http.client", "urllib.request", "math", "statistics", "random",
                "datetime", "calendar", "threading", "asyncio", "subprocess", "os", "shutil",
                "pathlib", "hashlib", "hmac", "secrets", "ssl", "email", "smtplib",
                "xml.etree.ElementTree", "html", "unittest", "logging", "argparse", "pickle",
                "copy", "itertools", "functools", "collections"]
    assert set(required) <= set(text.STDLIB_MODULES)
    # names keep the documented order; missing modules are the only ones left out
    assert names == [m for m in text.STDLIB_MODULES if m in set(names)]
    assert set(required) - {"sqlite3"} <= set(names)
    assert all(t.strip() for t in texts)
    # the same call gives the same corpus, in fresh lists
    names2, texts2 = text.stdlib_docs()
    assert names2 == names and texts2 == texts and names2 is not names


def test_stdlib_docs_content_matches_inspect():
    names, texts = text.stdlib_docs(["zlib", "json"])
    assert names == ["zlib", "json"]
    for name, doc in zip(names, texts, strict=True):
        module = importlib.import_module(name)
        assert doc.startswith(inspect.cleandoc(module.__doc__))
    zlib = importlib.import_module("zlib")
    json = importlib.import_module("json")
    assert inspect.cleandoc(zlib.compress.__doc__) in texts[0]
    assert inspect.cleandoc(json.dumps.__doc__) in texts[1]
    assert inspect.cleandoc(json.JSONDecoder.__doc__) in texts[1]  # listed in json.__all__


def test_stdlib_docs_errors():
    with pytest.raises(ValueError, match=f"^{DOCS}: `modules` must name importable modules, "
                                         "got 'no_such_module_xyz' \\(ModuleNotFoundError"):
        text.stdlib_docs(["zlib", "no_such_module_xyz"])
    with pytest.raises(TypeError, match=msg(
            f"{DOCS}: `modules` must be a sequence of module names, got 'zlib'")):
        text.stdlib_docs("zlib")
    with pytest.raises(TypeError, match=msg(f"{DOCS}: `modules` must contain strings, got 3")):
        text.stdlib_docs(["zlib", 3])
    with pytest.raises(ValueError, match=msg(
            f"{DOCS}: `modules` must name at least one module, got an empty sequence")):
        text.stdlib_docs([])


# ---------------------------------------------------------------------------------------------
# tokenize and vectorize


def test_tokenize_matches_scikit_learn():
    analyzer = CountVectorizer().build_analyzer()
    for t in ["Compress data with zlib.compress(); a 2-step API!", "Ünïcode wörds_ok x 12 3",
              *_corpus()[1][:5]]:
        assert lsa.tokenize(t) == analyzer(t)


@pytest.mark.parametrize(("min_df", "max_df", "stop_words"), [
    (1, 1.0, None), (2, 0.5, "english"), (0.05, 40, ["data", "return", "the"]),
])
def test_vectorize_matches_count_vectorizer(min_df, max_df, stop_words):
    texts = _corpus()[1]
    counts, vocab = lsa.vectorize(texts, min_df=min_df, max_df=max_df, stop_words=stop_words)
    sk_stop = sorted(lsa.ENGLISH_STOP_WORDS) if stop_words == "english" else stop_words
    cv = CountVectorizer(min_df=min_df, max_df=max_df, stop_words=sk_stop)
    ref = cv.fit_transform(texts).toarray()
    assert vocab == list(cv.get_feature_names_out())
    assert counts.dtype == np.float32 and counts.shape == (len(texts), len(vocab))
    np.testing.assert_array_equal(counts, ref)


def test_vectorize_with_a_vocabulary():
    vocab = ["compress", "data", "zlib", "unused"]
    counts, out = lsa.vectorize(["Compress DATA, compress!", "nothing known", "zlib"],
                                vocabulary=vocab, dtype=np.float64)
    assert out == vocab and counts.dtype == np.float64
    ref = CountVectorizer(vocabulary=vocab).fit_transform(
        ["Compress DATA, compress!", "nothing known", "zlib"]).toarray()
    np.testing.assert_array_equal(counts, ref)
    assert not counts[1].any()  # no known term: a zero row


def test_vectorize_errors():
    with pytest.raises(ValueError, match=msg(
            f"{VECTORIZE}: `texts` must hold at least one document (an empty corpus), got 0")):
        lsa.vectorize([])
    with pytest.raises(TypeError, match=msg(
            f"{VECTORIZE}: `texts` must be a sequence of strings, got str; wrap a single text "
            "in a list")):
        lsa.vectorize("one text")
    with pytest.raises(TypeError, match=msg(
            f"{VECTORIZE}: `texts` must contain strings, got int at index 1")):
        lsa.vectorize(["a text", 3])
    with pytest.raises(ValueError, match=msg(
            f"{VECTORIZE}: the vocabulary must not be empty, got no term in 4 distinct token(s) "
            "with min_df=2 <= df <= max_df=1.0; relax the bounds or the stop words")):
        lsa.vectorize(["aa bb", "cc dd"], min_df=2)
    with pytest.raises(ValueError, match=msg(
            f"{VECTORIZE}: the vocabulary must not be empty, got no term in 0 distinct token(s) "
            "with min_df=1 <= df <= max_df=1.0; relax the bounds or the stop words")):
        lsa.vectorize(["the a of", "a and or"], stop_words="english")
    with pytest.raises(ValueError, match=msg(
            f"{VECTORIZE}: `max_df` must allow at least `min_df` documents, got max_df=0.2 "
            "(0.4 documents) and min_df=1 (1 documents)")):
        lsa.vectorize(["aa bb", "bb cc"], max_df=0.2)
    with pytest.raises(ValueError, match=msg(
            f"{VECTORIZE}: `min_df` must be a proportion in [0, 1] when a float, got 1.5")):
        lsa.vectorize(["aa bb"], min_df=1.5)
    with pytest.raises(ValueError, match=msg(f"{VECTORIZE}: `min_df` must be >= 0, got -1")):
        lsa.vectorize(["aa bb"], min_df=-1)
    with pytest.raises(ValueError, match=msg(
            f"{VECTORIZE}: `stop_words` must be one of 'english', got 'french'")):
        lsa.vectorize(["aa bb"], stop_words="french")
    with pytest.raises(ValueError, match=msg(
            f"{VECTORIZE}: `vocabulary` must have distinct terms, got duplicates ['aa']")):
        lsa.vectorize(["aa bb"], vocabulary=["aa", "bb", "aa"])
    with pytest.raises(ValueError, match=msg(
            f"{VECTORIZE}: `vocabulary` must not be empty, got 0 terms")):
        lsa.vectorize(["aa bb"], vocabulary=[])
    with pytest.raises(TypeError, match=msg(
            f"{VECTORIZE}: `dtype` must be a floating numpy dtype, got int64")):
        lsa.vectorize(["aa bb"], dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# idf_weights and tfidf


@pytest.mark.parametrize(("norm", "smooth_idf", "sublinear_tf"), [
    ("l2", True, False), ("l1", False, True), (None, True, True), ("l2", False, False),
])
def test_tfidf_matches_tfidf_transformer(norm, smooth_idf, sublinear_tf):
    c = _small_counts()
    c[:, 3] = 1.0 if not smooth_idf else 0.0  # df = 0 only where smoothing keeps idf finite
    tr = TfidfTransformer(norm=norm, smooth_idf=smooth_idf, sublinear_tf=sublinear_tf)
    ref = tr.fit_transform(c).toarray()
    out = lsa.tfidf(c, norm=norm, smooth_idf=smooth_idf, sublinear_tf=sublinear_tf)
    assert out.shape == c.shape and out.dtype == jnp.float64
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(lsa.idf_weights(c, smooth_idf=smooth_idf), tr.idf_, rtol=1e-12)
    # a new document weighted with the corpus's idf: TfidfTransformer.transform
    new = _small_counts(seed=1)[:3]
    out_new = lsa.tfidf(new, idf=lsa.idf_weights(c, smooth_idf=smooth_idf), norm=norm,
                        sublinear_tf=sublinear_tf)
    np.testing.assert_allclose(out_new, tr.transform(new).toarray(), rtol=1e-12, atol=1e-15)


def test_tfidf_float32_on_the_corpus():
    counts, _, idf, x = _corpus()[2:]
    assert x.dtype == jnp.float32 and idf.dtype == jnp.float32
    tr = TfidfTransformer(sublinear_tf=True)
    ref = tr.fit_transform(counts.astype(np.float64)).toarray()
    assert np.max(np.abs(np.asarray(x, np.float64) - ref)) < 1e-6
    np.testing.assert_allclose(np.asarray(idf, np.float64), tr.idf_, rtol=1e-6)
    # non-smooth idf of a term in no document is inf (as scikit-learn), its entries stay 0
    c = _small_counts()
    assert np.isinf(np.asarray(lsa.idf_weights(c, smooth_idf=False))[3])
    out = lsa.tfidf(c, smooth_idf=False)
    assert np.all(np.isfinite(out)) and not np.asarray(out)[:, 3].any()
    assert not np.asarray(out)[2].any()  # the empty document stays zero


def test_tfidf_jit_vmap_grad():
    c = jnp.stack([jnp.asarray(_small_counts(s)) for s in range(3)])
    f = jax.jit(functools.partial(lsa.tfidf, sublinear_tf=True))
    np.testing.assert_allclose(f(c[0]), TfidfTransformer(sublinear_tf=True).fit_transform(
        np.asarray(c[0])).toarray(), rtol=1e-12, atol=1e-15)
    out = jax.vmap(lsa.tfidf)(c)
    for i in range(3):
        np.testing.assert_allclose(out[i], TfidfTransformer().fit_transform(
            np.asarray(c[i])).toarray(), rtol=1e-12, atol=1e-15)
    pos = jnp.asarray(np.random.default_rng(2).uniform(0.5, 3.0, size=(4, 5)))
    idf = lsa.idf_weights(pos)
    check_grads(lambda x: lsa.tfidf(x, idf=idf, sublinear_tf=True), (pos,), order=1,
                modes=["rev"])


def test_tfidf_errors():
    c = jnp.ones((3, 4))
    with pytest.raises(ValueError, match=msg(
            f"{TFIDF}: `norm` must be one of 'l2', 'l1', None, got 'max'")):
        lsa.tfidf(c, norm="max")
    with pytest.raises(ValueError, match=msg(
            f"{TFIDF}: `counts` must be non-negative term counts, got a minimum of -1")):
        lsa.tfidf(c.at[0, 0].set(-1.0))
    with pytest.raises(ValueError, match=msg(
            f"{TFIDF}: `counts` must be 2-D (d, t), got shape (4,)")):
        lsa.tfidf(jnp.ones(4))
    with pytest.raises(TypeError, match=f"^{TFIDF}: `counts` must have a real floating dtype"):
        lsa.tfidf(np.ones((3, 4), np.int64))
    with pytest.raises(ValueError, match=msg(
            f"{TFIDF}: `idf` must have one weight per term of `counts` (4,), got shape (3,)")):
        lsa.tfidf(c, idf=jnp.ones(3))
    with pytest.raises(TypeError,
                       match=msg(f"{TFIDF}: `sublinear_tf` must be a Python bool, got 1")):
        lsa.tfidf(c, sublinear_tf=1)
    with pytest.raises(ValueError, match=msg(
            f"{TFIDF}: `counts` contains 1 NaN or Inf value(s); clean or mask them first")):
        lsa.tfidf(c.at[1, 1].set(jnp.nan))


# ---------------------------------------------------------------------------------------------
# lsa_fit


def test_lsa_fit_exact_matches_truncated_svd_arpack():
    x = _corpus()[5]
    model = _model()
    ref = _arpack(RANK)
    d, t = x.shape
    assert model.doc_vectors.shape == (d, RANK) and model.term_vectors.shape == (t, RANK)
    for field in model:
        assert field.dtype == (jnp.bool_ if field is model.converged else jnp.float32)
    s = np.asarray(model.singular_values, np.float64)
    assert np.max(np.abs(s - ref.singular_values_) / ref.singular_values_) < 1e-5
    # components with signs, where the singular values are separated from their neighbours
    gaps = np.minimum(np.r_[np.inf, -np.diff(s)], np.r_[-np.diff(s), np.inf]) / s[0]
    sep = gaps > 1e-3
    assert sep.sum() >= RANK // 2
    comp = np.asarray(model.term_vectors, np.float64).T
    assert np.max(np.abs(comp[sep] - ref.components_[sep])) < 1e-3
    np.testing.assert_allclose(np.asarray(model.explained_variance, np.float64),
                               ref.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(model.explained_variance_ratio, np.float64),
                               ref.explained_variance_ratio_, rtol=1e-4)
    # transform: U S = X V, as TruncatedSVD.fit_transform
    us = np.asarray(model.doc_vectors, np.float64) * s
    assert np.max(np.abs(us - np.asarray(x, np.float64) @ comp.T)) < 1e-5
    # error of the exact fit: the next singular value
    s_all = np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)
    np.testing.assert_allclose(float(model.error_estimate), s_all[RANK], rtol=1e-5)
    assert bool(model.converged)


@pytest.mark.slow
@pytest.mark.parametrize("k", [10, RANK, 50])
def test_lsa_fit_randomized_matches_truncated_svd_arpack(k):
    x = _corpus()[5]
    model = lsa.lsa_fit(jax.random.key(0), x, k, method="randomized")
    ref = _arpack(k)
    s = np.asarray(model.singular_values, np.float64)
    assert s.dtype == np.float64 and model.singular_values.dtype == jnp.float32
    assert np.max(np.abs(s - ref.singular_values_) / ref.singular_values_) < 1e-4
    s_all = np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)
    # the estimate bounds the optimum from above and stays within a factor 2 of it
    assert s_all[k] <= float(model.error_estimate) < 2 * s_all[k]
    assert bool(model.converged)


def test_lsa_fit_auto_jit_vmap():
    x = lsa.tfidf(jnp.asarray(_small_counts()))
    # "auto" with min(d, t) <= 1000: the exact SVD, no key needed (here under jit)
    jitted = jax.jit(lsa.lsa_fit, static_argnames=("rank", "method"))(None, x, 3)
    u, s, vt = np.linalg.svd(np.asarray(x), full_matrices=False)
    np.testing.assert_allclose(jitted.singular_values, s[:3], rtol=1e-12)
    signs = np.sign(vt[np.arange(3), np.argmax(np.abs(vt[:3]), axis=1)])  # svd_flip on rows of vt
    np.testing.assert_allclose(jitted.term_vectors, (vt[:3] * signs[:, None]).T, atol=1e-12)
    np.testing.assert_allclose(jitted.doc_vectors, u[:, :3] * signs, atol=1e-12)
    np.testing.assert_allclose(float(jitted.error_estimate), s[3], rtol=1e-12)
    stack = jnp.stack([lsa.tfidf(jnp.asarray(_small_counts(i))) for i in range(3)])
    models = jax.vmap(lambda a: lsa.lsa_fit(None, a, 3, method="exact"))(stack)
    assert models.term_vectors.shape == (3, 12, 3) and models.converged.shape == (3,)
    for i in range(3):
        s_i = np.linalg.svd(np.asarray(stack[i]), compute_uv=False)
        np.testing.assert_allclose(models.singular_values[i], s_i[:3], rtol=1e-12)


@pytest.mark.slow
def test_lsa_fit_randomized_vmap():
    stack = jnp.stack([lsa.tfidf(jnp.asarray(_small_counts(i))) for i in range(3)])
    keys = jax.random.split(jax.random.key(1), 3)
    rand = jax.vmap(lambda k, a: lsa.lsa_fit(k, a, 2, method="randomized"))(keys, stack)
    for i in range(3):
        s_i = np.linalg.svd(np.asarray(stack[i]), compute_uv=False)
        np.testing.assert_allclose(rand.singular_values[i], s_i[:2], rtol=1e-10)


def test_lsa_fit_errors():
    x = jnp.ones((4, 6))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=msg(f"{FIT}: `rank` must be >= 1, got 0")):
        lsa.lsa_fit(key, x, 0)
    with pytest.raises(ValueError, match=msg(f"{FIT}: `rank`=5 exceeds min(d, t)=4")):
        lsa.lsa_fit(key, x, 5)
    with pytest.raises(ValueError, match=msg(
            f"{FIT}: `method` must be one of 'auto', 'exact', 'randomized', got 'arpack'")):
        lsa.lsa_fit(key, x, 2, method="arpack")
    with pytest.raises(ValueError, match=msg(
            f"{FIT}: `key` must be a JAX random key for the randomized method, got None; pass "
            "jax.random.key(0) or use method='exact'")):
        lsa.lsa_fit(None, x, 2, method="randomized")
    with pytest.raises(TypeError, match=msg(
            f"{FIT}: `key` must be a JAX random key such as jax.random.key(0), got int")):
        lsa.lsa_fit(0, x, 2, method="randomized")
    with pytest.raises(ValueError, match=msg(f"{FIT}: `x` must be 2-D (d, t), got shape (6,)")):
        lsa.lsa_fit(key, jnp.ones(6), 1)
    with pytest.raises(ValueError, match=msg(
            f"{FIT}: `x` contains 1 NaN or Inf value(s); clean or mask them first")):
        lsa.lsa_fit(key, x.at[0, 0].set(jnp.inf), 2)
    with pytest.raises(TypeError, match=f"^{FIT}: `rank` sets a shape and must be a static"):
        jax.jit(lsa.lsa_fit)(key, x, 2)


# ---------------------------------------------------------------------------------------------
# fold_in and query


def test_fold_in_recovers_the_document_vectors():
    x = _corpus()[5]
    model = _model()
    folded = lsa.fold_in(model, x)
    assert folded.shape == model.doc_vectors.shape and folded.dtype == jnp.float32
    assert np.max(np.abs(np.asarray(folded) - np.asarray(model.doc_vectors))) < 1e-4
    one = lsa.fold_in(model, x[7])
    np.testing.assert_allclose(one, folded[7], atol=1e-6)
    # a zero singular value is skipped (pseudo-inverse)
    zero = model._replace(singular_values=model.singular_values.at[-1].set(0.0))
    assert float(lsa.fold_in(zero, x[7])[-1]) == 0.0


def test_query_matches_numpy_and_ranks_compression_modules_first():
    names = _corpus()[0]
    model = _model()
    for q in COMPRESSION_QUERIES:
        qv = _query_vector(q)
        res = lsa.query(model, qv, top_k=5)
        assert res.indices.shape == (5,) and res.indices.dtype == jnp.int32
        assert res.scores.dtype == jnp.float32
        order, ref_scores = _numpy_ranking(np.asarray(qv, np.float64), RANK)
        np.testing.assert_array_equal(res.indices, order[:5])
        np.testing.assert_allclose(res.scores, ref_scores[:5], atol=1e-5)
        top5 = {names[i] for i in np.asarray(res.indices)}
        assert COMPRESSION <= top5, (q, top5)
    for q, relevant in TOPIC_QUERIES.items():
        res = lsa.query(model, _query_vector(q), top_k=5)
        top5 = {names[i] for i in np.asarray(res.indices)}
        assert len(top5 & relevant) >= 2, (q, top5)


def test_query_batch_full_ranking_jit_vmap():
    model = _model()
    qs = jnp.stack([_query_vector(q) for q in COMPRESSION_QUERIES])
    jitted = jax.jit(lsa.query, static_argnames="top_k")
    res = jitted(model, qs)  # every document ranked, under jit
    d = model.doc_vectors.shape[0]
    assert res.indices.shape == res.scores.shape == (3, d)
    for i in range(3):
        assert sorted(np.asarray(res.indices[i]).tolist()) == list(range(d))
        assert np.all(np.diff(np.asarray(res.scores[i])) <= 0)
        single = lsa.query(model, qs[i], top_k=5)
        np.testing.assert_array_equal(single.indices, res.indices[i, :5])
        np.testing.assert_allclose(single.scores, res.scores[i, :5], rtol=1e-6)
    mapped = jax.vmap(lambda q: lsa.query(model, q, top_k=5))(qs)
    np.testing.assert_array_equal(mapped.indices, res.indices[:, :5])
    # under jit a query with no known term cannot raise: its scores are all zero
    zero = jitted(model, qs.at[1].set(0.0))
    np.testing.assert_array_equal(zero.scores[1], np.zeros(d))
    np.testing.assert_array_equal(zero.indices[1], np.arange(d))
    np.testing.assert_array_equal(zero.indices[0], res.indices[0])


def test_query_errors():
    model = _model()
    t = model.term_vectors.shape[0]
    q = _query_vector("compress data")
    unknown = _query_vector("xyzzy plugh")
    assert not np.asarray(unknown).any()
    with pytest.raises(ValueError, match=msg(
            f"{QUERY}: `q` must have a nonzero entry in every query (a query with at least one "
            "term of the vocabulary), got all-zero row(s) 0")):
        lsa.query(model, unknown)
    with pytest.raises(ValueError, match=msg(
            f"{QUERY}: `q` must have a nonzero entry in every query (a query with at least one "
            "term of the vocabulary), got all-zero row(s) 1")):
        lsa.query(model, jnp.stack([q, unknown]))
    with pytest.raises(ValueError, match=msg(
            f"{QUERY}: `q` must have one entry per term of the model ({t}), got shape (3,)")):
        lsa.query(model, jnp.ones(3))
    with pytest.raises(ValueError, match=msg(
            f"{QUERY}: `top_k`=147 exceeds the number of documents=146")):
        lsa.query(model, q, top_k=147)
    with pytest.raises(ValueError, match=msg(f"{QUERY}: `top_k` must be >= 1, got 0")):
        lsa.query(model, q, top_k=0)
    with pytest.raises(ValueError, match=msg(
            f"{QUERY}: `q` contains 1 NaN or Inf value(s); clean or mask them first")):
        lsa.query(model, q.at[0].set(jnp.nan))
    with pytest.raises(ValueError, match=msg(
            "jaxla.models.fold_in: `q` must be 1-D or 2-D (t,) or (n_q, t), got shape "
            f"(1, 1, {t})")):
        lsa.fold_in(model, q[None, None])


@pytest.mark.slow
def test_compression_queries_at_many_ranks():
    """The acceptance property at ranks 1 ... 146 (all of them on Python 3.11)."""
    names, x = _corpus()[0], _corpus()[5]
    full = lsa.lsa_fit(None, x, min(x.shape), method="exact")
    failures = []
    for k in (1, 2, 3, 5, 10, 15, 30, 50, 75, 100, 146):
        model = lsa.LSA(full.doc_vectors[:, :k], full.singular_values[:k],
                        full.term_vectors[:, :k], full.explained_variance[:k],
                        full.explained_variance_ratio[:k], full.error_estimate, full.converged)
        for q in COMPRESSION_QUERIES:
            top5 = {names[i] for i in np.asarray(lsa.query(model, _query_vector(q), top_k=5)
                                                 .indices)}
            if not COMPRESSION <= top5:
                failures.append((k, q, top5))
    assert not failures
