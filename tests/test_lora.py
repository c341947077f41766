"""Tests of jaxla.lora against dense references (numpy float64, SVD, finite differences)."""

import functools
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxla.lora as lora
from jaxla import _paths, nn
from tests.helpers import msg

# --------------------------------------------------------------------------------------------
# shared models (small: compile time dominates)

MLP_SIZES = [6, 12, 12, 3]
LM = {"vocab_size": 20, "d_model": 16, "num_heads": 2, "num_layers": 1, "max_len": 8}


@functools.cache
def mlp_params():
    return nn.mlp_init(jax.random.key(0), MLP_SIZES)


@functools.cache
def lm_params():
    return nn.decoder_lm_init(
        jax.random.key(0), LM["vocab_size"], LM["d_model"], LM["num_heads"], LM["num_layers"],
        max_len=LM["max_len"], ffn="swiglu",
    )


mlp_jit = jax.jit(nn.mlp)
lm_jit = jax.jit(functools.partial(nn.decoder_lm, num_heads=LM["num_heads"]))

LM_TARGETS = ("*/attention/*/w", "*/ffn/*/w")


def tokens():
    return jax.random.randint(jax.random.key(5), (2, 6), 0, LM["vocab_size"])


def random_adapters(spec, seed, dtype=jnp.float32, scale=0.3):
    """Adapters with nonzero a and b (a trained state), drawn with numpy."""
    rng = np.random.default_rng(seed)
    return {
        t.path: {
            "a": jnp.asarray(scale * rng.standard_normal((t.shape[0], t.rank)), dtype),
            "b": jnp.asarray(scale * rng.standard_normal((t.rank, t.shape[1])), dtype),
        }
        for t in spec.targets
    }


def leaf(tree, path):
    for part in path.split("/"):
        tree = tree[part]
    return tree


def np_merged(base, adapters, spec):
    """Reference merge in float64 numpy."""
    out = {}
    for t in spec.targets:
        w = np.asarray(leaf(base, t.path), np.float64)
        a = np.asarray(adapters[t.path]["a"], np.float64)
        b = np.asarray(adapters[t.path]["b"], np.float64)
        out[t.path] = w + spec.scale(t.path) * a @ b
    return out


def items(tree):
    return list(zip(_paths.leaf_paths(tree), jax.tree_util.tree_leaves(tree), strict=True))


def float_size(tree):
    return sum(
        x.size for x in jax.tree_util.tree_leaves(tree)
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
    )


# --------------------------------------------------------------------------------------------
# spec


def test_spec_selects_matrices_by_pattern_with_overrides():
    params = mlp_params()
    s = lora.spec(
        params, ["*/w"], rank=4, exclude="layers_2/*", rank_pattern={"layers_1/*": 2, "*": 3},
        alpha_pattern={re.compile(r"layers_1/w"): 8.0},
    )
    assert s.paths == ("layers_0/w", "layers_1/w")
    assert s["layers_0/w"] == lora.LoraTarget("layers_0/w", (6, 12), 3, 3.0)  # "*" matched
    assert s["layers_1/w"] == lora.LoraTarget("layers_1/w", (12, 12), 2, 8.0)  # first match
    assert s.scale("layers_0/w") == 1.0 and s.scale("layers_1/w") == 4.0
    assert len(s) == 2 and "layers_1/w" in s and list(s) == list(s.paths)
    r = lora.spec(params, "*/w", rank=2, alpha=8.0, rslora=True)
    assert r.scale("layers_0/w") == pytest.approx(8.0 / np.sqrt(2))
    # the same leaves a plain fnmatch over the paths gives
    import fnmatch

    paths = [p for p in _paths.leaf_paths(params) if fnmatch.fnmatchcase(p, "*/w")]
    assert lora.spec(params, "*/w", rank=1).paths == tuple(paths)


def test_spec_is_hashable_static_data():
    params = mlp_params()
    s1 = lora.spec(params, "*/w", rank=2)
    s2 = lora.spec(params, "*/w", rank=2)
    assert s1 == s2 and hash(s1) == hash(s2)
    assert s1 != lora.spec(params, "*/w", rank=2, rslora=True)
    assert jax.tree_util.tree_leaves(s1) == []

    @functools.partial(jax.jit, static_argnames="spec")
    def static(x, spec):
        return x * len(spec)

    assert float(static(jnp.ones(()), spec=s1)) == 3.0
    assert float(jax.jit(lambda x, spec: x * len(spec))(jnp.ones(()), s1)) == 3.0


def test_spec_unmatched_pattern_names_it_and_lists_paths():
    params = mlp_params()
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.spec: `targets` pattern '*/kernel' must match at least one leaf path, got "
        "no match; nearest paths: 'layers_2/w', 'layers_2/b', 'layers_1/w', 'layers_1/b', "
        "'layers_0/w'"
    )):
        lora.spec(params, ["*/w", "*/kernel"])
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.spec: `exclude` pattern 'layers_9/*' must match at least one leaf path, got "
        "no match; nearest paths: 'layers_2/w', 'layers_2/b', 'layers_1/w', 'layers_1/b', "
        "'layers_0/w'"
    )):
        lora.spec(params, "*/w", exclude="layers_9/*")
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.spec: `rank_pattern` pattern 'layers_2/*' must match at least one leaf path, "
        "got no match; nearest paths: 'layers_1/w', 'layers_0/w'"
    )):
        lora.spec(params, "*/w", exclude="layers_2/*", rank_pattern={"layers_2/*": 1})
    # not strict: unmatched patterns are ignored
    s = lora.spec(params, ["*/w", "*/kernel"], rank=1, rank_pattern={"x": 2}, strict=False)
    assert s.paths == ("layers_0/w", "layers_1/w", "layers_2/w")
    assert len(lora.spec(params, "*/kernel", strict=False)) == 0


def test_spec_errors():
    params = mlp_params()
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.spec: `targets` must select only 2-D weight matrices (d_in, d_out), got "
        "'layers_0/b' with shape (12,); narrow the pattern or add 'layers_0/b' to `exclude`"
    )):
        lora.spec(params, "layers_0/*")
    with pytest.raises(TypeError, match=msg(
        "jaxla.lora.spec: `targets` must select only floating-point weight matrices, got 'ids' "
        "with dtype int32; narrow the pattern or add 'ids' to `exclude`"
    )):
        lora.spec({"ids": jnp.zeros((3, 3), jnp.int32)}, "*")
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.spec: `rank` must be at most min(d_in, d_out)=3 for 'layers_2/w' of shape "
        "(12, 3), got 4"
    )):
        lora.spec(params, "*/w", rank=4)
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.spec: `rank_pattern['layers_0/*']` must be at most min(d_in, d_out)=6 for "
        "'layers_0/w' of shape (6, 12), got 7"
    )):
        lora.spec(params, "*/w", rank=1, rank_pattern={"layers_0/*": 7})
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.spec: `exclude` must leave at least one leaf selected by `targets`, got every "
        "selected leaf excluded by ('layers_*',)"
    )):
        lora.spec(params, "*/w", exclude="layers_*")
    with pytest.raises(ValueError, match=msg("jaxla.lora.spec: `rank` must be >= 1, got 0")):
        lora.spec(params, "*/w", rank=0)
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.spec: `alpha` must be > 0 and finite, got -1.0"
    )):
        lora.spec(params, "*/w", alpha=-1.0)
    with pytest.raises(TypeError, match=msg(
        "jaxla.lora.spec: `rank_pattern` must be a dict mapping glob strings or compiled regular "
        "expressions to values, got [('*', 2)]"
    )):
        lora.spec(params, "*/w", rank_pattern=[("*", 2)])


def test_spec_works_on_shape_structs():
    abstract = jax.eval_shape(lambda: mlp_params())
    assert lora.spec(abstract, "*/w", rank=2) == lora.spec(mlp_params(), "*/w", rank=2)


# --------------------------------------------------------------------------------------------
# summary


def test_summary_counts_and_table():
    params = mlp_params()
    s = lora.spec(params, "*/w", rank=2, alpha=4.0, exclude="layers_2/*")
    info = lora.summary(params, s)
    base_total = sum(np.size(x) for x in jax.tree_util.tree_leaves(params))
    want = [2 * (6 + 12), 2 * (12 + 12)]
    assert [r.params for r in info.rows] == want
    assert info.trainable == sum(want) and info.total == base_total + sum(want)
    assert info.fraction == pytest.approx(sum(want) / (base_total + sum(want)))
    assert [(r.path, r.shape, r.rank, r.alpha, r.scale) for r in info.rows] == [
        ("layers_0/w", (6, 12), 2, 4.0, 2.0), ("layers_1/w", (12, 12), 2, 4.0, 2.0)
    ]
    lines = str(info).splitlines()
    assert lines[0].split() == ["path", "shape", "rank", "alpha", "scale", "adapter", "params"]
    assert lines[2].split() == ["layers_0/w", "6x12", "2", "4", "2", "36"]
    assert len({len(line) for line in lines[:4]}) == 1  # aligned columns
    assert lines[-1] == (f"trainable 84 of {base_total + 84:,} parameters "
                         f"({100 * 84 / (base_total + 84):.3f}%) in 2 adapted weights")


# --------------------------------------------------------------------------------------------
# init and the step-0 guarantees


def test_init_default_and_gaussian():
    params = {"big": jnp.zeros((256, 64), jnp.float32), "b": jnp.zeros(3, jnp.float32)}
    s = lora.spec(params, "big", rank=32)
    base, ad = lora.init(jax.random.key(0), params, s)
    assert base is not None and jax.tree_util.tree_structure(base) == jax.tree_util.tree_structure(
        params)
    a, b = ad["big"]["a"], ad["big"]["b"]
    assert a.shape == (256, 32) and b.shape == (32, 64)
    assert a.dtype == jnp.float32 and b.dtype == jnp.float32
    assert not np.any(np.asarray(b))
    bound = 1 / np.sqrt(256)
    an = np.asarray(a, np.float64)
    assert np.all(np.abs(an) <= bound) and an.max() > 0.9 * bound and an.min() < -0.9 * bound
    assert np.std(an) == pytest.approx(bound / np.sqrt(3), rel=0.05)  # uniform variance
    _, ad_jit = jax.jit(lambda k: lora.init(k, params, s))(jax.random.key(0))
    np.testing.assert_array_equal(ad_jit["big"]["a"], a)
    _, ad = lora.init(jax.random.key(0), params, s, method="gaussian", dtype=jnp.bfloat16)
    assert ad["big"]["a"].dtype == jnp.bfloat16 and ad["big"]["b"].dtype == jnp.bfloat16
    assert np.std(np.asarray(ad["big"]["a"], np.float64)) == pytest.approx(1 / 32, rel=0.05)


def test_b_zero_equals_base_exactly_mlp():
    params = mlp_params()
    s = lora.spec(params, "*/w", rank=2)
    x = jax.random.normal(jax.random.key(1), (4, 6), jnp.float32)
    for method in ("default", "gaussian"):
        base, ad = lora.init(jax.random.key(2), params, s, method=method)
        adapted = lora.apply(base, ad, s)
        y = mlp_jit(adapted, x)
        assert y.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(y), np.asarray(mlp_jit(params, x)))
        np.testing.assert_array_equal(np.asarray(nn.mlp(adapted, x)), np.asarray(nn.mlp(params,
                                                                                        x)))


def test_b_zero_equals_base_exactly_decoder_lm():
    params = lm_params()
    s = lora.spec(params, LM_TARGETS, rank=2)
    base, ad = lora.init(jax.random.key(2), params, s)
    out = lm_jit(lora.apply(base, ad, s), tokens())
    np.testing.assert_array_equal(np.asarray(out), np.asarray(lm_jit(params, tokens())))


def test_merged_and_factored_agree_mlp_and_reference():
    params = mlp_params()
    s = lora.spec(params, "*/w", rank=2, alpha=3.0)
    ad = random_adapters(s, 3)
    x = jax.random.normal(jax.random.key(1), (4, 6), jnp.float32)
    assert lora.check_merge(mlp_jit, params, ad, s, x) <= 1e-5
    merged = lora.merge(params, ad, s)
    ref = np_merged(params, ad, s)
    for t in s.targets:
        m = leaf(merged, t.path)
        assert m.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(m, np.float64), ref[t.path], rtol=1e-6, atol=1e-6)
    # the factored forward pass matches a float64 numpy forward pass of the merged weights
    h = np.asarray(x, np.float64)
    for i in range(3):
        h = h @ ref[f"layers_{i}/w"] + np.asarray(params[f"layers_{i}"]["b"], np.float64)
        h = np.maximum(h, 0) if i < 2 else h
    np.testing.assert_allclose(np.asarray(mlp_jit(lora.apply(params, ad, s), x)), h,
                               rtol=1e-5, atol=1e-5)


def test_merged_and_factored_agree_decoder_lm():
    params = lm_params()
    s = lora.spec(params, LM_TARGETS, rank=2)
    ad = random_adapters(s, 4, scale=0.2)
    assert lora.check_merge(lm_jit, params, ad, s, tokens()) <= 1e-5
    # the factored model is not the base model (the adapters do act)
    assert not np.allclose(lm_jit(lora.apply(params, ad, s), tokens()), lm_jit(params, tokens()))


def test_unmerge_restores_base():
    params = mlp_params()
    s = lora.spec(params, "*/w", rank=3)
    ad = random_adapters(s, 5)
    back = lora.unmerge(lora.merge(params, ad, s), ad, s)
    for x, y in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params),
                    strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=1e-6)


@given(
    shape=st.sampled_from([(5, 4), (3, 7)]),
    rank=st.integers(1, 3),
    alpha=st.floats(0.25, 4.0),
    rslora=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_merge_unmerge_roundtrip(shape, rank, alpha, rslora, seed):
    rng = np.random.default_rng(seed)
    base = {"m": {"w": jnp.asarray(rng.standard_normal(shape))}}
    s = lora.spec(base, "m/w", rank=rank, alpha=alpha, rslora=rslora)
    ad = {"m/w": {"a": jnp.asarray(rng.standard_normal((shape[0], rank))),
                  "b": jnp.asarray(rng.standard_normal((rank, shape[1])))}}
    merged = lora.merge(base, ad, s)
    np.testing.assert_allclose(merged["m"]["w"], np_merged(base, ad, s)["m/w"], rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(lora.unmerge(merged, ad, s)["m"]["w"], base["m"]["w"],
                               rtol=0, atol=1e-12)


def test_low_precision_and_dtype_preservation():
    base = {"w": jax.random.normal(jax.random.key(0), (8, 6)).astype(jnp.bfloat16)}
    s = lora.spec(base, "w", rank=2, alpha=4.0)
    ad = random_adapters(s, 1, dtype=jnp.float32)
    merged = lora.merge(base, ad, s)["w"]
    assert merged.dtype == jnp.bfloat16
    ref = np_merged(base, ad, s)["w"].astype(np.float32)
    np.testing.assert_array_equal(np.asarray(merged.astype(jnp.float32)),
                                  np.asarray(jnp.asarray(ref).astype(jnp.bfloat16)
                                             .astype(jnp.float32)))
    x = jnp.ones((3, 8), jnp.bfloat16)
    y = nn.dense({"w": lora.apply(base, ad, s)["w"]}, x)
    assert y.dtype == jnp.bfloat16


# --------------------------------------------------------------------------------------------
# PiSSA


def decaying(m, n, key, decay):
    """(m, n) float32 matrix with singular values decay**j (a clear spectral decay)."""
    rng = np.random.default_rng(key)
    u, _ = np.linalg.qr(rng.standard_normal((m, m)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    k = min(m, n)
    return ((u[:, :k] * decay ** np.arange(k)) @ v[:, :k].T).astype(np.float32)


def test_pissa_matches_truncated_svd():
    w = decaying(96, 64, 0, 0.8)
    params = {"layer": {"w": jnp.asarray(w), "b": jnp.zeros(64, jnp.float32)}}
    r = 8
    s = lora.spec(params, "*/w", rank=r, alpha=2.0 * r)  # scale 2
    base, ad = lora.init(jax.random.key(0), params, s, method="pissa")
    a, b = ad["layer/w"]["a"], ad["layer/w"]["b"]
    res = base["layer"]["w"]
    assert a.dtype == b.dtype == res.dtype == jnp.float32
    assert base["layer"]["b"] is params["layer"]["b"]
    u, sv, vt = np.linalg.svd(w.astype(np.float64))
    best = (u[:, :r] * sv[:r]) @ vt[:r]
    low = 2.0 * np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    assert np.linalg.norm(low - best) / np.linalg.norm(best) < 1e-4
    # balanced factors: a^T a = b b^T = diag(S) / scale
    np.testing.assert_allclose(np.asarray(a, np.float64).T @ a, np.diag(sv[:r] / 2),
                               atol=1e-5)
    # base residual + s A B = W to float tolerance
    np.testing.assert_allclose(np.asarray(res, np.float64) + low, w, atol=1e-5)


def test_pissa_residual_error_within_one_percent_of_optimal():
    # singular values 1/j: slow decay and small gaps, the hard case for a randomized SVD
    rng = np.random.default_rng(1)
    m, n, r = 160, 120, 10
    u, _ = np.linalg.qr(rng.standard_normal((m, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    sv = 1.0 / np.arange(1, n + 1)
    w = ((u * sv) @ v.T).astype(np.float32)
    params = {"w": jnp.asarray(w)}
    s = lora.spec(params, "w", rank=r)
    base, _ = lora.init(jax.random.key(0), params, s, method="pissa")
    optimal = np.sqrt(np.sum(np.linalg.svd(w.astype(np.float64), compute_uv=False)[r:] ** 2))
    assert np.linalg.norm(np.asarray(base["w"], np.float64)) <= 1.01 * optimal


def test_pissa_adapted_model_equals_base_model_at_step_zero():
    params = mlp_params()
    s = lora.spec(params, "layers_1/w", rank=2, alpha=1.0, rslora=True)
    base, ad = lora.init(jax.random.key(0), params, s, method="pissa", pissa_method="power")
    x = jax.random.normal(jax.random.key(1), (4, 6), jnp.float32)
    np.testing.assert_allclose(mlp_jit(lora.apply(base, ad, s), x), mlp_jit(params, x),
                               atol=1e-5)
    for t in s.targets:  # the residual is not the weight: the principal part moved
        assert not np.allclose(leaf(base, t.path), leaf(params, t.path), atol=1e-3)


def test_init_errors():
    params = mlp_params()
    s = lora.spec(params, "*/w", rank=2)
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.init: `method` must be one of 'default', 'gaussian', 'pissa', got 'lora'"
    )):
        lora.init(jax.random.key(0), params, s, method="lora")
    with pytest.raises(TypeError, match=msg(
        "jaxla.lora.init: `key` must be a JAX random key such as jax.random.key(0), got int"
    )):
        lora.init(0, params, s)
    bad = {"w": jnp.full((4, 4), jnp.nan, jnp.float32)}
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.init: `params['w']` contains 16 NaN or Inf value(s); clean or mask them "
        "first"
    )):
        lora.init(jax.random.key(0), bad, lora.spec(bad, "w", rank=1), method="pissa")
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.init: `params` must have a leaf at every target path of `spec`, got none at "
        "'layers_2/w'; nearest paths: 'layers_1/w', 'layers_0/w', 'layers_1/b', 'layers_0/b'"
    )):
        lora.init(jax.random.key(0), nn.mlp_init(jax.random.key(0), [6, 12, 12]), s)


# --------------------------------------------------------------------------------------------
# LoRAWeight, apply, dropout, jit / vmap / grad


def test_lora_weight_node():
    w, a, b = jnp.ones((4, 3)), jnp.ones((4, 2)), jnp.ones((2, 3))
    lw = lora.LoRAWeight(w, a, b, 0.5)
    assert lw.shape == (4, 3) and lw.ndim == 2 and lw.dtype == w.dtype and lw.rank == 2
    paths = _paths.leaf_paths({"p": lw})
    assert paths == ["p/w", "p/a", "p/b"]
    x = np.arange(8.0).reshape(2, 4)
    ref = x @ np.ones((4, 3)) + 0.5 * (x @ np.ones((4, 2))) @ np.ones((2, 3))
    np.testing.assert_allclose(jnp.asarray(x) @ lw, ref)
    np.testing.assert_allclose(x @ lw, ref)  # numpy defers to the node
    moved = jax.tree_util.tree_map(lambda v: v * 2, lw)
    assert isinstance(moved, lora.LoRAWeight) and moved.scale == 0.5


def test_apply_jit_vmap_and_grad():
    params = mlp_params()
    s = lora.spec(params, "*/w", rank=2, alpha=4.0)
    x = jax.random.normal(jax.random.key(1), (4, 6), jnp.float32)
    ad = random_adapters(s, 2)

    @jax.jit
    def factored(ad, x):
        return nn.mlp(lora.apply(params, ad, s), x)

    @jax.jit
    def merged(ad, x):
        return nn.mlp(lora.merge(params, ad, s), x)

    np.testing.assert_allclose(factored(ad, x), merged(ad, x), atol=1e-5)
    # vmap over a stack of adapters
    stack = jax.tree_util.tree_map(lambda *v: jnp.stack(v), ad, random_adapters(s, 3))
    ys = jax.vmap(factored, in_axes=(0, None))(stack, x)
    for i in range(2):
        one = jax.tree_util.tree_map(lambda v, i=i: v[i], stack)
        np.testing.assert_allclose(ys[i], merged(one, x), atol=1e-5)
    # gradients of the factored path equal those through the merged weights
    g_f = jax.grad(lambda ad: jnp.sum(factored(ad, x) ** 2))(ad)
    g_m = jax.grad(lambda ad: jnp.sum(merged(ad, x) ** 2))(ad)
    for u, v in zip(jax.tree_util.tree_leaves(g_f), jax.tree_util.tree_leaves(g_m), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # heavy; the slow step of CI runs it
def test_grads_float64_finite_differences():
    base = {"proj": {"w": jax.random.normal(jax.random.key(0), (5, 4), jnp.float64),
                     "b": jnp.zeros(4, jnp.float64)}}
    s = lora.spec(base, "proj/w", rank=2, alpha=3.0)
    ad = random_adapters(s, 1, dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(2), (3, 5), jnp.float64)

    def f(a, b):
        return jnp.tanh(nn.dense(lora.apply(base, {"proj/w": {"a": a, "b": b}}, s)["proj"], x))

    check_grads(f, (ad["proj/w"]["a"], ad["proj/w"]["b"]), order=2, modes=["fwd", "rev"])


def test_embedding_table_adapters_factored_equal_merged_and_reference():
    """An adapted (V, D) table read through nn.embedding / nn.embedding_attend (the rows and the
    transposed product of W + s A B, factored) against float64 numpy and against merge."""
    params = {"emb": nn.embedding_init(jax.random.key(0), 7, 5)}
    s = lora.spec(params, "emb/table", rank=2, alpha=3.0)
    ad = random_adapters(s, 2)
    merged = np_merged(params, ad, s)["emb/table"]
    adapted = lora.apply(params, ad, s)["emb"]
    ids = jnp.array([[0, 6, 3], [3, 3, 1]])
    x = jax.random.normal(jax.random.key(1), (2, 5), jnp.float32)
    rows = nn.embedding(adapted, ids)
    assert rows.dtype == jnp.float32 and rows.shape == (2, 3, 5)
    np.testing.assert_allclose(np.asarray(rows, np.float64), merged[np.asarray(ids)],
                               rtol=1e-6, atol=1e-6)
    logits = nn.embedding_attend(adapted, x)
    np.testing.assert_allclose(np.asarray(logits, np.float64),
                               np.asarray(x, np.float64) @ merged.T, rtol=1e-5, atol=1e-5)
    # under jit, the same numbers
    np.testing.assert_allclose(jax.jit(nn.embedding)(adapted, ids), rows, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jax.jit(nn.embedding_attend)(adapted, x), logits,
                               rtol=1e-6, atol=1e-6)
    # a bfloat16 table: bfloat16 rows, computed in float32 (to bfloat16's precision)
    low = jax.tree.map(lambda v: v.astype(jnp.bfloat16), (params, ad))
    rows16 = nn.embedding(lora.apply(*low, s)["emb"], ids)
    ref16 = np_merged(*low, s)["emb/table"][np.asarray(ids)]
    assert rows16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(rows16, np.float64), ref16, rtol=1e-2, atol=1e-2)
    # B = 0: exactly the base table's rows and logits
    base, zero = lora.init(jax.random.key(3), params, s)
    at_init = lora.apply(base, zero, s)["emb"]
    np.testing.assert_array_equal(nn.embedding(at_init, ids), nn.embedding(params["emb"], ids))
    np.testing.assert_array_equal(nn.embedding_attend(at_init, x),
                                  nn.embedding_attend(params["emb"], x))


def test_embedding_table_adapters_in_decoder_lm():
    """The tied token table (lookup and output logits) and the position table (read at the
    cache's offset when decoding) adapted factored, against the merged model."""
    params = lm_params()
    tables = ("token_embedding/table", "position_embedding/table")
    s = lora.spec(params, (*tables, *LM_TARGETS), rank=2)
    ad = random_adapters(s, 6, scale=0.2)
    assert lora.check_merge(lm_jit, params, ad, s, tokens()) <= 1e-5
    base, zero = lora.init(jax.random.key(2), params, s)
    np.testing.assert_array_equal(np.asarray(lm_jit(lora.apply(base, zero, s), tokens())),
                                  np.asarray(lm_jit(params, tokens())))
    # decoding in two pieces through the cache: the second piece reads positions 4 and 5
    adapted, merged = lora.apply(params, ad, s), lora.merge(params, ad, s)
    cache = nn.init_decoder_cache(params, 2, 6, num_heads=LM["num_heads"])
    first, cache = lm_jit(adapted, tokens()[:, :4], cache=cache)
    second, _ = lm_jit(adapted, tokens()[:, 4:], cache=cache)
    np.testing.assert_allclose(jnp.concatenate([first, second], axis=1),
                               lm_jit(merged, tokens()), rtol=1e-5, atol=1e-5)


def test_grads_float64_embedding_table():
    base = {"emb": {"table": jax.random.normal(jax.random.key(0), (6, 4), jnp.float64)}}
    s = lora.spec(base, "emb/table", rank=2, alpha=3.0)
    ad = random_adapters(s, 1, dtype=jnp.float64)
    ids = jnp.array([1, 5, 1])
    x = jax.random.normal(jax.random.key(2), (3, 4), jnp.float64)

    def f(a, b):
        emb = lora.apply(base, {"emb/table": {"a": a, "b": b}}, s)["emb"]
        return jnp.tanh(nn.embedding(emb, ids)), jnp.tanh(nn.embedding_attend(emb, x))

    check_grads(f, (ad["emb/table"]["a"], ad["emb/table"]["b"]), order=2, modes=["fwd", "rev"])


@pytest.mark.slow
def test_grads_float64_attention():
    attn_base = nn.multi_head_attention_init(jax.random.key(3), 4, 2, dtype=jnp.float64)
    sa = lora.spec(attn_base, ("query/w", "value/w"), rank=1)
    ada = random_adapters(sa, 4, dtype=jnp.float64)
    xa = jax.random.normal(jax.random.key(5), (3, 4), jnp.float64)

    def g(ad):
        return nn.multi_head_attention(lora.apply(attn_base, ad, sa), xa, num_heads=2)

    check_grads(g, (ada,), order=1, modes=["fwd", "rev"])


def test_dropout():
    params = {"proj": nn.dense_init(jax.random.key(0), 8, 5)}
    s = lora.spec(params, "proj/w", rank=2)
    ad = random_adapters(s, 1)
    x = jax.random.normal(jax.random.key(2), (200, 8), jnp.float32)
    plain = nn.dense(lora.apply(params, ad, s)["proj"], x)
    d1 = nn.dense(lora.apply(params, ad, s, dropout_rate=0.5, key=jax.random.key(3))["proj"], x)
    d2 = jax.jit(lambda ad, k: nn.dense(
        lora.apply(params, ad, s, dropout_rate=0.5, key=k)["proj"], x))(ad, jax.random.key(3))
    np.testing.assert_allclose(d1, d2, atol=1e-6)  # same key, same masks, jit or not
    assert not np.allclose(d1, plain, atol=1e-3)
    # the w path sees the whole input: the difference is the a path's only, and unbiased
    w_only = x @ params["proj"]["w"] + params["proj"]["b"][None, :]
    low_plain, low_drop = plain - w_only, d1 - w_only
    keys = jax.random.split(jax.random.key(7), 400)
    draws = jax.vmap(lambda k: nn.dense(
        lora.apply(params, ad, s, dropout_rate=0.5, key=k)["proj"], x[:1]))(keys)
    mean = np.mean(np.asarray(draws) - np.asarray(w_only[:1])[None], axis=0)
    np.testing.assert_allclose(mean, low_plain[:1], atol=0.15 * np.abs(low_plain[:1]).max())
    assert low_drop.shape == low_plain.shape
    # B = 0: dropout or not, the output is the base output exactly
    _, ad0 = lora.init(jax.random.key(4), params, s)
    y0 = nn.dense(lora.apply(params, ad0, s, dropout_rate=0.3, key=jax.random.key(5))["proj"], x)
    np.testing.assert_array_equal(y0, nn.dense(params["proj"], x))
    # with_dropout on adapted params; rate 0 removes it
    adapted = lora.apply(params, ad, s)
    again = lora.with_dropout(lora.with_dropout(adapted, jax.random.key(3), rate=0.5),
                              jax.random.key(0), rate=0.0)
    np.testing.assert_array_equal(nn.dense(again["proj"], x), plain)
    with pytest.raises(TypeError, match=msg(
        "jaxla.lora.apply: `key` must be a JAX random key such as jax.random.key(0), got None"
    )):
        lora.apply(params, ad, s, dropout_rate=0.1)
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.with_dropout: `rate` must be in [0, 1), got 1.0"
    )):
        lora.with_dropout(adapted, jax.random.key(0), rate=1.0)
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.with_dropout: `adapted` must contain LoRAWeight nodes (from "
        "jaxla.lora.apply), got none"
    )):
        lora.with_dropout(params, jax.random.key(0), rate=0.1)


def test_apply_merge_errors():
    params = mlp_params()
    s = lora.spec(params, "*/w", rank=2, exclude="layers_2/*")
    ad = random_adapters(s, 0)
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.apply: `adapters` must have an entry for every target of `spec`, got none "
        "for ['layers_1/w']"
    )):
        lora.apply(params, {"layers_0/w": ad["layers_0/w"]}, s)
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.merge: `adapters` must hold only the targets of `spec` ['layers_0/w', "
        "'layers_1/w'], got also ['layers_2/w']"
    )):
        lora.merge(params, {**ad, "layers_2/w": ad["layers_0/w"]}, s)
    wrong = {**ad, "layers_1/w": {"a": jnp.ones((12, 3)), "b": jnp.ones((3, 12))}}
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.unmerge: `adapters['layers_1/w']['a']` must have shape (d_in, r)=(12, 2) for "
        "the rank r=2 of `spec`, got shape (12, 3)"
    )):
        lora.unmerge(params, wrong, s)
    other = nn.mlp_init(jax.random.key(0), [6, 10, 12, 3])
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.apply: `base` leaf 'layers_0/w' must have the shape (6, 12) recorded in "
        "`spec`, got (6, 10)"
    )):
        lora.apply(other, ad, s)
    with pytest.raises(TypeError, match=msg(
        "jaxla.lora.merge: `spec` must be a LoraSpec (from jaxla.lora.spec), got dict"
    )):
        lora.merge(params, ad, {"layers_0/w": 2})


# --------------------------------------------------------------------------------------------
# a Flax linen parameter dict (built by hand: flax is not a dependency)


def flax_params(key):
    k0, k1, k2 = jax.random.split(key, 3)
    return {"params": {
        "Dense_0": {"kernel": jax.random.normal(k0, (5, 16)) / np.sqrt(5),
                    "bias": jnp.zeros(16)},
        "Dense_1": {"kernel": jax.random.normal(k1, (16, 16)) / 4.0,
                    "bias": 0.1 * jax.random.normal(k2, (16,))},
        "Dense_2": {"kernel": jax.random.normal(k2, (16, 2)) / 4.0, "bias": jnp.zeros(2)},
    }}


def flax_apply(variables, x):
    """What nn.Dense -> relu -> nn.Dense -> relu -> nn.Dense computes."""
    p = variables["params"]
    h = x
    for i in range(3):
        h = h @ p[f"Dense_{i}"]["kernel"] + p[f"Dense_{i}"]["bias"][None, :]
        h = jax.nn.relu(h) if i < 2 else h
    return h


def test_flax_style_params_merge_check_merge_extract():
    params = jax.tree_util.tree_map(lambda v: v.astype(jnp.float32), flax_params(
        jax.random.key(0)))
    s = lora.spec(params, "params/*/kernel", rank=2, exclude="*/Dense_2/*")
    assert s.paths == ("params/Dense_0/kernel", "params/Dense_1/kernel")
    ad = random_adapters(s, 1)
    x = jax.random.normal(jax.random.key(2), (7, 5), jnp.float32)
    assert lora.check_merge(flax_apply, params, ad, s, x) <= 1e-5
    merged = lora.merge(params, ad, s)
    ref = np_merged(params, ad, s)
    np.testing.assert_allclose(merged["params"]["Dense_1"]["kernel"],
                               ref["params/Dense_1/kernel"], atol=1e-6)
    # extract recovers the fine-tuning (a rank-2 change) from the two parameter dicts
    got, errors = lora.extract(params, merged, 2, targets="params/*/kernel")
    assert set(got) == {"params/Dense_0/kernel", "params/Dense_1/kernel",
                        "params/Dense_2/kernel"}
    assert float(errors["params/Dense_2/kernel"]) == 0.0
    for path in s.paths:
        assert float(errors[path]) < 1e-5
    s1 = lora.spec(params, list(got), rank=2)
    np.testing.assert_allclose(flax_apply(lora.merge(params, got, s1), x),
                               flax_apply(merged, x), atol=1e-5)


def test_check_merge_reveals_a_non_matmul_use():
    params = {"w": jax.random.normal(jax.random.key(0), (4, 4), jnp.float32)}
    s = lora.spec(params, "w", rank=1)
    ad = random_adapters(s, 1)

    def transposed(p, x):  # uses w as w^T: merge changes this model differently
        w = p["w"]
        return (x @ w.w.T + w.scale * x @ (w.a @ w.b).T) if isinstance(
            w, lora.LoRAWeight) else x @ w
    assert lora.check_merge(transposed, params, ad, s, jnp.ones((2, 4))) > 1e-3

    def opaque(p, x):
        return jnp.matmul(x, p["w"])
    with pytest.raises(TypeError, match=r"^jaxla\.lora\.check_merge: `apply_fn` must accept "
                       r"LoRAWeight nodes in place of weights"):
        lora.check_merge(opaque, params, ad, s, jnp.ones((2, 4)))


# --------------------------------------------------------------------------------------------
# extract


def test_extract_is_eckart_young_optimal():
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((12, 9))
    delta = rng.standard_normal((12, 9)) * (0.5 ** np.arange(9))[None, :]
    base = {"layer": {"w": jnp.asarray(w0)}, "b": jnp.zeros(3)}
    tuned = {"layer": {"w": jnp.asarray(w0 + delta)}, "b": jnp.ones(3)}
    ad, errors = lora.extract(base, tuned, 3)
    assert list(ad) == ["layer/w"] and list(errors) == ["layer/w"]
    s = np.linalg.svd(delta, compute_uv=False)
    optimal = np.sqrt(np.sum(s[3:] ** 2)) / np.linalg.norm(delta)
    assert float(errors["layer/w"]) == pytest.approx(optimal, rel=1e-10)
    u, sv, vt = np.linalg.svd(delta)
    ab = np.asarray(ad["layer/w"]["a"]) @ np.asarray(ad["layer/w"]["b"])
    np.testing.assert_allclose(ab, (u[:, :3] * sv[:3]) @ vt[:3], atol=1e-10)
    # float32 weights give float32 adapters
    b32 = jax.tree_util.tree_map(lambda v: v.astype(jnp.float32), base)
    t32 = jax.tree_util.tree_map(lambda v: v.astype(jnp.float32), tuned)
    ad32, err32 = lora.extract(b32, t32, 3)
    assert ad32["layer/w"]["a"].dtype == jnp.float32 and err32["layer/w"].dtype == jnp.float32
    assert float(err32["layer/w"]) == pytest.approx(optimal, rel=1e-4)


def test_extract_errors():
    base = {"w": jnp.ones((4, 3))}
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.extract: `rank` must be at most min(d_in, d_out)=3 for 'w' of shape (4, 3), "
        "got 4"
    )):
        lora.extract(base, base, 4)
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.extract: `finetuned` leaf 'w' must have the shape (4, 3) of `base`, got "
        "(3, 4)"
    )):
        lora.extract(base, {"w": jnp.ones((3, 4))}, 1)
    with pytest.raises(ValueError, match=r"^jaxla\.lora\.extract: `finetuned` must have the tree "
                       r"structure of `base`"):
        lora.extract(base, {"v": jnp.ones((4, 3))}, 1)
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.extract: `targets` pattern 'x' must match at least one leaf path, got no "
        "match; nearest paths: 'w'"
    )):
        lora.extract(base, base, 1, targets="x")


# --------------------------------------------------------------------------------------------
# optax


def test_optimizer_trains_only_adapters():
    params = mlp_params()
    s = lora.spec(params, "*/w", rank=2)
    base, ad = lora.init(jax.random.key(1), params, s)
    adapted = lora.apply(base, ad, s)
    x = jax.random.normal(jax.random.key(2), (32, 6), jnp.float32)
    y = jnp.sin(x[:, :3])

    def loss(p):
        return jnp.mean((nn.mlp(p, x) - y) ** 2)

    for inner, copies in ((optax.sgd(0.1, momentum=0.9), 1), (optax.adam(1e-2), 2)):
        tx = lora.optimizer(inner, adapted)
        state = tx.init(adapted)
        adapter_size = float_size(ad)
        assert float_size(state) == copies * adapter_size  # no state for frozen leaves
        ref_state = inner.init(ad)
        assert float_size(ref_state) == float_size(state)

        @jax.jit
        def step(p, state, tx=tx):
            g = jax.grad(loss)(p)
            updates, state = tx.update(g, state, p)
            return optax.apply_updates(p, updates), state

        p = adapted
        before = float(loss(p))
        for _ in range(15):
            p, state = step(p, state)
        assert float(loss(p)) < 0.9 * before
        trained = {f"{t}/{part}" for t in s.paths for part in ("a", "b")}
        new, old = items(p), items(adapted)
        assert [k for k, _ in new] == [k for k, _ in old]
        frozen = [(u, v) for (k, u), (_, v) in zip(new, old, strict=True) if k not in trained]
        assert len(frozen) == 6  # 3 weights, 3 biases
        for u, v in frozen:  # bit-identical
            np.testing.assert_array_equal(np.asarray(u).view(np.uint32),
                                          np.asarray(v).view(np.uint32))
        assert all(not np.array_equal(u, v) for (k, u), (_, v) in zip(new, old, strict=True)
                   if k.endswith("/w/b"))


def test_optimizer_errors():
    params = mlp_params()
    s = lora.spec(params, "*/w", rank=2)
    adapted = lora.apply(params, random_adapters(s, 0), s)
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.optimizer: `adapted_params` must contain LoRAWeight nodes (from "
        "jaxla.lora.apply), got none"
    )):
        lora.optimizer(optax.adam(1e-3), params)
    with pytest.raises(TypeError, match=msg(
        "jaxla.lora.optimizer: `tx` must be an optax GradientTransformation, got function"
    )):
        lora.optimizer(optax.adam, adapted)
    with pytest.raises(ValueError, match=r"^jaxla\.lora\.optimizer: `adapted_params` must carry "
                       "no dropout keys"):
        lora.optimizer(optax.adam(1e-3), lora.with_dropout(adapted, jax.random.key(0), rate=0.1))


# --------------------------------------------------------------------------------------------
# save / load


def test_save_load_roundtrip(tmp_path):
    params = lm_params()
    s = lora.spec(params, LM_TARGETS, rank=2, alpha=5.0, rslora=True,
                  rank_pattern={"*/ffn/*": 3})
    ad = random_adapters(s, 0)
    ad["blocks_0/ffn/up/w"] = {k: v.astype(jnp.bfloat16) for k, v in
                               ad["blocks_0/ffn/up/w"].items()}
    path = tmp_path / "adapter.npz"
    lora.save(path, ad, s)
    assert os.listdir(tmp_path) == ["adapter.npz"]  # no temporary file left behind
    back, s2 = lora.load(path)
    assert s2 == s
    assert list(back) == list(ad)
    for k in ad:
        for part in ("a", "b"):
            assert back[k][part].dtype == ad[k][part].dtype
            np.testing.assert_array_equal(np.asarray(back[k][part]), np.asarray(ad[k][part]))
    # a plain numpy reader, without pickle, sees the arrays and the metadata
    with np.load(path, allow_pickle=False) as f:
        assert "__metadata__" in f.files and len(f.files) == 1 + 2 * len(s)
    # overwriting replaces the file whole
    lora.save(str(path), back, s2)
    assert lora.load(path)[1] == s


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=msg(
        f"jaxla.lora.load: `path` must name an existing file, got {str(tmp_path / 'x.npz')!r}"
    )):
        lora.load(tmp_path / "x.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"^jaxla\.lora\.load: `path` must be a LoRA adapter file "
                       r"written by jaxla\.lora\.save, got '.*junk\.npz': "):
        lora.load(junk)
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.ones(3))
    with pytest.raises(ValueError, match=msg(
        f"jaxla.lora.load: `path` must be a LoRA adapter file written by jaxla.lora.save, got "
        f"{str(plain)!r}: no '__metadata__' entry"
    )):
        lora.load(plain)
    # a file whose array contradicts its metadata
    base = {"w": jnp.ones((4, 3), jnp.float32)}
    s = lora.spec(base, "w", rank=2)
    good = tmp_path / "good.npz"
    lora.save(good, random_adapters(s, 0), s)
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["t0_a"] = np.ones((4, 1), np.float32)
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, **arrays)
    with pytest.raises(ValueError, match=msg(
        f"jaxla.lora.load: `path` must be a LoRA adapter file written by jaxla.lora.save, got "
        f"{str(tampered)!r}: invalid contents (array 't0_a' of 'w' has shape (4, 1) and dtype "
        "float32, expected (4, 2) and float32)"
    )):
        lora.load(tampered)


def test_save_errors(tmp_path):
    base = {"w": jnp.ones((4, 3), jnp.float32)}
    s = lora.spec(base, "w", rank=2)
    ad = random_adapters(s, 0)
    bad = {"w": {"a": ad["w"]["a"].at[0, 0].set(jnp.inf), "b": ad["w"]["b"]}}
    with pytest.raises(ValueError, match=msg(
        "jaxla.lora.save: `adapters` contains 1 NaN or Inf value(s); clean or mask them first"
    )):
        lora.save(tmp_path / "a.npz", bad, s)
    with pytest.raises(ValueError, match=re.escape(
        "jaxla.lora.save: `adapters` must be concrete arrays (call save outside jit), got a "
        "traced value"
    )):
        jax.jit(lambda ad: lora.save(tmp_path / "a.npz", ad, s))(ad)
    assert os.listdir(tmp_path) == []
