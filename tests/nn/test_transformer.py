"""Tests of jaxla.nn.transformer against a float64 numpy transformer, and of decoding with caches.

Models are tiny (D=8, 2 heads, 2 blocks, vocabulary 11) and the jitted functions are shared
across tests, so that compilation stays cheap.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxla import nn
from jaxla.nn import (
    KVCache,
    chunked_attention,
    decoder_lm,
    decoder_lm_init,
    encoder_classifier,
    encoder_classifier_init,
    generate,
    init_decoder_cache,
    sinusoidal_positions,
    transformer_block,
    transformer_block_init,
)

V, D, N, LAYERS, T = 11, 8, 2, 2, 6


def _f64(x):
    return np.asarray(x, np.float64)


# --------------------------------------------------------------------------------------------
# an independent float64 numpy transformer


def _np_norm(p, x):
    x = _f64(x)
    if "bias" in p:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * _f64(p["scale"]) + _f64(p["bias"])
    return x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6) * _f64(p["scale"])


def _np_attention(p, x, num_heads, causal, valid_keys=None):
    """x (B, T, D); head n uses key/value head n // G; valid_keys (B, T) bool."""
    q, k, v = (_f64(x) @ _f64(p[name]["w"]) for name in ("query", "key", "value"))
    b, t, width = q.shape
    h = width // num_heads
    kv_heads = k.shape[-1] // h
    g = num_heads // kv_heads
    out = np.zeros_like(q)
    for n in range(num_heads):
        qn = q[..., n * h:(n + 1) * h]
        m = n // g
        kn, vn = k[..., m * h:(m + 1) * h], v[..., m * h:(m + 1) * h]
        logits = qn @ np.swapaxes(kn, -1, -2) / np.sqrt(h)  # (B, T, T)
        allowed = np.ones((b, t, t), bool)
        if causal:
            allowed &= np.tril(np.ones((t, t), bool))
        if valid_keys is not None:
            allowed &= valid_keys[:, None, :]
        logits = np.where(allowed, logits, -np.inf)
        w = np.exp(logits - logits.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        out[..., n * h:(n + 1) * h] = w @ vn
    return out @ _f64(p["out"]["w"])


def _np_gelu(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _np_ffn(p, x):
    if "gate" in p:
        gate = x @ _f64(p["gate"]["w"])
        return (gate / (1 + np.exp(-gate)) * (x @ _f64(p["up"]["w"]))) @ _f64(p["down"]["w"])
    h = _np_gelu(x @ _f64(p["layers_0"]["w"]) + _f64(p["layers_0"]["b"]))
    return h @ _f64(p["layers_1"]["w"]) + _f64(p["layers_1"]["b"])


def _np_block(p, x, num_heads, causal, valid_keys=None):
    x = _f64(x)
    x = x + _np_attention(p["attention"], _np_norm(p["attention_norm"], x), num_heads, causal,
                          valid_keys)
    return x + _np_ffn(p["ffn"], _np_norm(p["ffn_norm"], x))


def _np_sinusoidal(t, d, start=0):
    pos = np.arange(start, start + t)[:, None]
    i = np.arange(d)[None, :]
    angle = pos / 10000 ** (2 * (i // 2) / d)
    return np.where(i % 2 == 0, np.sin(angle), np.cos(angle))


def _np_features(params, tokens, num_heads, causal, valid_keys=None):
    table = _f64(params["token_embedding"]["table"])
    d = table.shape[1]
    x = table[tokens] * np.sqrt(d)
    t = tokens.shape[-1]
    if "position_embedding" in params:
        x = x + _f64(params["position_embedding"]["table"])[:t]
    else:
        x = x + _np_sinusoidal(t, d)
    i = 0
    while f"blocks_{i}" in params:
        x = _np_block(params[f"blocks_{i}"], x, num_heads, causal, valid_keys)
        i += 1
    return _np_norm(params["final_norm"], x)


def _np_decoder(params, tokens, num_heads):
    h = _np_features(params, tokens, num_heads, causal=True)
    if "head" in params:
        return h @ _f64(params["head"]["w"]) + _f64(params["head"]["b"])
    return h @ _f64(params["token_embedding"]["table"]).T


# --------------------------------------------------------------------------------------------
# shared models and jitted functions

CONFIGS = {
    # learned positions, tied embeddings, MLP, layer norm, multi-head attention
    "gpt": {"positions": "learned", "max_len": 16},
    # sinusoidal positions, untied output, SwiGLU, RMS norm, grouped-query attention (K=1)
    "llama": {"positions": "sinusoidal", "tie_embeddings": False, "ffn": "swiglu",
              "norm": "rms_norm", "num_kv_heads": 1},
}


@functools.cache
def _model(name):
    return decoder_lm_init(jax.random.key(0), V, D, N, LAYERS, **CONFIGS[name])


@functools.cache
def _tokens(seed=0, batch=2, length=T):
    return jnp.asarray(np.random.default_rng(seed).integers(0, V, (batch, length)), jnp.int32)


_forward = jax.jit(functools.partial(decoder_lm, num_heads=N))
_step = jax.jit(lambda p, t, c: decoder_lm(p, t, num_heads=N, cache=c))


def test_sinusoidal_positions_match_formula():
    np.testing.assert_allclose(sinusoidal_positions(5, 7, start=3), _np_sinusoidal(5, 7, 3),
                               atol=1e-6)
    p64 = sinusoidal_positions(4, 6, dtype=jnp.float64)
    assert p64.dtype == jnp.float64
    np.testing.assert_allclose(p64, _np_sinusoidal(4, 6), atol=1e-14)
    traced = jax.jit(lambda s: sinusoidal_positions(3, 4, start=s))(jnp.int32(5))
    np.testing.assert_allclose(traced, _np_sinusoidal(3, 4, 5), atol=1e-6)


# --------------------------------------------------------------------------------------------
# the block


def test_block_init_structure():
    p = transformer_block_init(jax.random.key(0), D, N)
    assert sorted(p) == ["attention", "attention_norm", "ffn", "ffn_norm"]
    assert sorted(p["attention_norm"]) == ["bias", "scale"]
    assert {k: v["w"].shape for k, v in p["attention"].items()} == {
        "query": (D, D), "key": (D, D), "value": (D, D), "out": (D, D)}
    assert {k: v["w"].shape for k, v in p["ffn"].items()} == {
        "layers_0": (D, 4 * D), "layers_1": (4 * D, D)}
    s = transformer_block_init(jax.random.key(0), 12, 4, num_kv_heads=2, ffn="swiglu",
                               norm="rms_norm", mlp_ratio=2)
    assert sorted(s["ffn_norm"]) == ["scale"]
    assert s["attention"]["key"]["w"].shape == (12, 6)
    assert {k: v["w"].shape for k, v in s["ffn"].items()} == {
        "gate": (12, 16), "up": (12, 16), "down": (16, 12)}  # round(2/3 * 2 * 12) = 16
    # weights are LeCun normal: variance 1 / d_in (checked on a wider block)
    w = transformer_block_init(jax.random.key(1), 256, 4)["ffn"]["layers_0"]["w"]
    np.testing.assert_allclose(_f64(w).var(), 1 / 256, rtol=0.05)


@pytest.mark.parametrize(
    ("kw", "causal"),
    [({}, True), ({"ffn": "swiglu", "norm": "rms_norm", "num_kv_heads": 1}, False)],
    ids=["mlp-layernorm-mha-causal", "swiglu-rmsnorm-mqa"],
)
def test_block_matches_numpy(kw, causal):
    params = transformer_block_init(jax.random.key(2), D, N, **kw)
    x = np.random.default_rng(0).standard_normal((2, 5, D)).astype(np.float32)
    y = transformer_block(params, x, num_heads=N, is_causal=causal)
    assert y.shape == x.shape and y.dtype == jnp.float32
    np.testing.assert_allclose(y, _np_block(params, x, N, causal), rtol=1e-4, atol=1e-5)
    # one sequence without the batch axis, and vmap over the batch
    np.testing.assert_allclose(transformer_block(params, x[1], num_heads=N, is_causal=causal),
                               y[1], rtol=1e-5, atol=1e-6)
    f = jax.vmap(lambda x: transformer_block(params, x, num_heads=N, is_causal=causal))
    np.testing.assert_allclose(f(x), y, rtol=1e-5, atol=1e-6)


def test_block_mask_weights_dropout_and_chunked_attention():
    params = transformer_block_init(jax.random.key(2), D, N)
    x = np.random.default_rng(1).standard_normal((2, 5, D)).astype(np.float32)
    y, w = transformer_block(params, x, num_heads=N, is_causal=True, return_weights=True)
    assert w.shape == (2, N, 5, 5)
    np.testing.assert_allclose(np.triu(_f64(w), 1), 0, atol=0)  # causal weights
    np.testing.assert_allclose(_f64(w).sum(-1), 1, atol=1e-6)
    mask = jnp.tril(jnp.ones((5, 5), bool))
    np.testing.assert_allclose(transformer_block(params, x, num_heads=N, mask=mask), y,
                               rtol=1e-6, atol=1e-6)
    chunked = functools.partial(chunked_attention, query_chunk_size=2, key_chunk_size=2)
    np.testing.assert_allclose(
        transformer_block(params, x, num_heads=N, is_causal=True, attention_fn=chunked), y,
        rtol=1e-5, atol=1e-5)
    # dropout: off by default and when deterministic; random with a key
    np.testing.assert_array_equal(
        transformer_block(params, x, num_heads=N, is_causal=True, dropout_rate=0.5), y)
    yd = transformer_block(params, x, num_heads=N, is_causal=True, dropout_rate=0.5,
                           deterministic=False, key=jax.random.key(0))
    assert np.all(np.isfinite(yd)) and not np.allclose(yd, y)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.transformer_block: `key` must be a PRNG key when deterministic=False "
              r"and dropout_rate > 0, got None; pass key=\.\.\. or deterministic=True$",
    ):
        transformer_block(params, x, num_heads=N, dropout_rate=0.5, deterministic=False)


# --------------------------------------------------------------------------------------------
# decoder


def test_decoder_init_structure():
    p = _model("gpt")
    assert sorted(p) == ["blocks_0", "blocks_1", "final_norm", "position_embedding",
                         "token_embedding"]
    assert p["token_embedding"]["table"].shape == (V, D)
    assert p["position_embedding"]["table"].shape == (16, D)
    q = _model("llama")
    assert sorted(q) == ["blocks_0", "blocks_1", "final_norm", "head", "token_embedding"]
    assert q["head"]["w"].shape == (D, V) and q["blocks_0"]["attention"]["key"]["w"].shape == (
        D, D // N)
    big = decoder_lm_init(jax.random.key(1), 512, 64, 4, 1, max_len=8)
    np.testing.assert_allclose(_f64(big["token_embedding"]["table"]).std(), 1 / 8, rtol=0.05)
    np.testing.assert_allclose(_f64(big["position_embedding"]["table"]).std(), 0.1, rtol=0.15)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_decoder_matches_numpy(name):
    params = _model(name)
    tokens = _tokens()
    logits = _forward(params, tokens)
    assert logits.shape == (2, T, V) and logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, _np_decoder(params, np.asarray(tokens), N),
                               rtol=1e-4, atol=1e-4)


def test_decoder_causality():
    params = _model("gpt")
    tokens = _tokens()
    logits = _forward(params, tokens)
    changed = tokens.at[:, 3].set((tokens[:, 3] + 1) % V)
    other = _forward(params, changed)
    np.testing.assert_array_equal(other[:, :3], logits[:, :3])  # earlier positions unchanged
    assert np.all(np.abs(_f64(other[:, 3:]) - _f64(logits[:, 3:])).max(-1) > 1e-4)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cache_decoding_equals_full_forward(name):
    params = _model(name)
    tokens = _tokens(1)
    full = _forward(params, tokens)
    cache = init_decoder_cache(params, 2, T, num_heads=N)
    assert len(cache) == LAYERS and all(isinstance(c, KVCache) for c in cache)
    steps = []
    for t in range(T):  # token by token: one compiled step
        out, cache = _step(params, tokens[:, t:t + 1], cache)
        steps.append(out)
    assert int(cache[0].index) == T
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, rtol=1e-5, atol=1e-5)
    cache = init_decoder_cache(params, 2, T, num_heads=N)
    first, cache = decoder_lm(params, tokens[:, :4], num_heads=N, cache=cache)  # in pieces
    second, _ = decoder_lm(params, tokens[:, 4:], num_heads=N, cache=cache)
    np.testing.assert_allclose(jnp.concatenate([first, second], axis=1), full,
                               rtol=1e-5, atol=1e-5)


def test_cache_decoding_under_vmap():
    params = _model("gpt")
    tokens = _tokens(2)
    full = _forward(params, tokens)
    cache = init_decoder_cache(params, 2, T, num_heads=N)
    axes = tuple(KVCache(0, 0, None) for _ in cache)
    step = jax.jit(jax.vmap(lambda t, c: decoder_lm(params, t, num_heads=N, cache=c),
                            in_axes=(0, axes), out_axes=(0, axes)))
    outs = []
    for t in range(T):
        out, cache = step(tokens[:, t:t + 1], cache)
        outs.append(out)
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, rtol=1e-5, atol=1e-5)
    per_example = jax.vmap(lambda t: decoder_lm(params, t, num_heads=N))(tokens)
    np.testing.assert_allclose(per_example, full, rtol=1e-5, atol=1e-6)


def test_generate_greedy_and_sampled():
    params = _model("gpt")
    prompt = _tokens(3, 2, 3)
    greedy = generate(jax.random.key(0), params, prompt, 5, num_heads=N, temperature=0.0)
    assert greedy.shape == (2, 5) and greedy.dtype == jnp.int32
    seq = jnp.concatenate([prompt, greedy], axis=1)
    np.testing.assert_array_equal(_forward(params, seq)[:, 2:-1].argmax(-1), greedy)
    sampled = generate(jax.random.key(1), params, prompt, 5, num_heads=N, temperature=1.0)
    assert sampled.shape == (2, 5) and np.all((0 <= sampled) & (sampled < V))
    np.testing.assert_array_equal(
        sampled, generate(jax.random.key(1), params, prompt, 5, num_heads=N, temperature=1.0))
    # a very low temperature samples the argmax
    cold = generate(jax.random.key(2), params, prompt, 5, num_heads=N, temperature=1e-4)
    np.testing.assert_array_equal(cold, greedy)


@pytest.mark.slow
def test_generate_samples_follow_the_softmax():
    params = _model("gpt")
    prompt = _tokens(3, 2, 3)
    one = generate(jax.random.key(0), params, prompt[1], 5, num_heads=N, temperature=0.0)
    greedy = generate(jax.random.key(0), params, prompt, 5, num_heads=N, temperature=0.0)
    np.testing.assert_array_equal(one, greedy[1])
    # the first token of a sampled continuation follows softmax(logits): empirical frequencies
    logits = _forward(params, prompt[:1])[0, -1]
    p = np.asarray(jax.nn.softmax(_f64(logits)))
    keys = jax.random.split(jax.random.key(5), 2000)
    draws = jax.jit(jax.vmap(lambda k: generate(k, params, prompt[0], 1, num_heads=N)))(keys)
    freq = np.bincount(np.asarray(draws[:, 0]), minlength=V) / len(keys)
    assert np.abs(freq - p).max() < 5 * np.sqrt(p.max() / len(keys))


def test_grad_jit_and_dtypes():
    params = _model("llama")
    tokens = _tokens()

    def loss(p):
        logits = decoder_lm(p, tokens[:, :-1], num_heads=N)
        logp = jax.nn.log_softmax(logits)
        return -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1).mean()

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    assert np.isfinite(value)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    # bfloat16 parameters give bfloat16 logits
    p16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    assert decoder_lm(p16, tokens, num_heads=N).dtype == jnp.bfloat16


@pytest.mark.slow
def test_gradient_matches_finite_differences_float64():
    params = _model("llama")
    tokens = _tokens()

    def loss(p):
        logits = decoder_lm(p, tokens[:, :-1], num_heads=N)
        logp = jax.nn.log_softmax(logits)
        return -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1).mean()

    # directional derivative against a central difference in float64
    p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    direction = jax.tree.map(lambda a: jnp.asarray(
        np.random.default_rng(0).standard_normal(a.shape)), p64)
    g64 = jax.grad(loss)(p64)
    dd = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(g64), jax.tree.leaves(direction),
                                             strict=True))
    eps = 1e-6
    shift = lambda s: jax.tree.map(lambda a, d: a + s * d, p64, direction)  # noqa: E731
    fd = (loss(shift(eps)) - loss(shift(-eps))) / (2 * eps)
    np.testing.assert_allclose(dd, fd, rtol=1e-6)


def test_decoder_dropout():
    params = _model("gpt")
    tokens = _tokens()
    train = jax.jit(lambda p, k: decoder_lm(p, tokens, num_heads=N, key=k, dropout_rate=0.3,
                                            deterministic=False))
    a, b = train(params, jax.random.key(0)), train(params, jax.random.key(1))
    assert np.all(np.isfinite(a)) and not np.allclose(a, b)
    np.testing.assert_array_equal(a, train(params, jax.random.key(0)))
    np.testing.assert_allclose(
        decoder_lm(params, tokens, num_heads=N, dropout_rate=0.3), _forward(params, tokens))


# --------------------------------------------------------------------------------------------
# encoder classifier


@functools.cache
def _encoder():
    return encoder_classifier_init(jax.random.key(4), V, 3, D, N, LAYERS, max_len=T)


def test_encoder_classifier_matches_numpy_and_ignores_padding():
    params = _encoder()
    assert params["head"]["w"].shape == (D, 3)
    tokens = _tokens(4, 3)
    lengths = jnp.array([6, 4, 1])
    f = jax.jit(functools.partial(encoder_classifier, num_heads=N))
    logits = f(params, tokens, lengths=lengths)
    assert logits.shape == (3, 3) and logits.dtype == jnp.float32
    valid = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    h = _np_features(params, np.asarray(tokens), N, causal=False, valid_keys=valid)
    pooled = (h * valid[..., None]).sum(1) / valid.sum(1, keepdims=True)
    ref = pooled @ _f64(params["head"]["w"]) + _f64(params["head"]["b"])
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5)
    # tokens past the lengths do not matter
    padded = tokens.at[1, 4:].set(0).at[2, 1:].set(5)
    np.testing.assert_allclose(f(params, padded, lengths=lengths), logits, rtol=1e-5, atol=1e-6)
    # no lengths = full lengths; one sequence without the batch axis
    np.testing.assert_allclose(f(params, tokens), f(params, tokens, lengths=jnp.full(3, T)),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        encoder_classifier(params, tokens[1], num_heads=N, lengths=jnp.int32(4)), logits[1],
        rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# errors


def test_errors():
    key = jax.random.key(0)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.transformer_block_init: `d_model` must be a multiple of "
              r"`num_heads`=3, got d_model=8$",
    ):
        transformer_block_init(key, 8, 3)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.transformer_block_init: `ffn` must be one of 'mlp', 'swiglu', "
              r"got 'geglu'$",
    ):
        transformer_block_init(key, 8, 2, ffn="geglu")
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.decoder_lm_init: `max_len` must be given for positions='learned', "
              r"got None$",
    ):
        decoder_lm_init(key, V, D, N, 1)
    params = _model("gpt")
    tokens = _tokens()
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.decoder_lm: `num_heads` must divide the width N\*H=8 of "
              r"params\['blocks_0'\]\['attention'\]\['query'\], got num_heads=3$",
    ):
        decoder_lm(params, tokens, num_heads=3)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.decoder_lm: `tokens` must hold ids in \[0, vocab_size=11\), "
              r"got values in \[0, 11\]$",
    ):
        decoder_lm(params, tokens.at[0, 0].set(V), num_heads=N)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.decoder_lm: `tokens` must have at most max_len=16 positions \(the "
              r"learned position table\), got T=17$",
    ):
        decoder_lm(params, jnp.zeros((1, 17), jnp.int32), num_heads=N)
    cache = init_decoder_cache(params, 2, T, num_heads=N)
    with pytest.raises(
        TypeError,
        match=r"^jaxla.nn.decoder_lm: `cache` must be a tuple of 2 KVCache, one per block "
              r"\(from init_decoder_cache\), got tuple of length 1$",
    ):
        decoder_lm(params, tokens, num_heads=N, cache=cache[:1])
    _, full = decoder_lm(params, tokens, num_heads=N, cache=cache)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.decoder_lm: `cache\[0\]` must have room for the T=1 new tokens "
              r"\(index \+ T <= L=6\), got index=6$",
    ):
        decoder_lm(params, tokens[:, :1], num_heads=N, cache=full)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.generate: `num_tokens` must fit the learned positions: prompt length "
              r"P=6 \+ num_tokens=12 - 1 exceeds max_len=16$",
    ):
        generate(key, params, tokens, 12, num_heads=N)
    with pytest.raises(
        ValueError, match=r"^jaxla.nn.generate: `temperature` must be >= 0 and finite, got -1"
    ):
        generate(key, params, tokens, 2, num_heads=N, temperature=-1)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.init_decoder_cache: `max_len`=20 exceeds the learned positions of "
              r"the model max_len=16$",
    ):
        init_decoder_cache(params, 1, 20, num_heads=N)
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.encoder_classifier: `lengths` must lie in \[1, T=6\], got values "
              r"in \[0, 6\]$",
    ):
        encoder_classifier(_encoder(), tokens, num_heads=N, lengths=jnp.array([6, 0]))
    with pytest.raises(
        ValueError,
        match=r"^jaxla.nn.transformer_block: `params` must be a dict with entries "
              r"'attention_norm', 'attention', 'ffn_norm', 'ffn'",
    ):
        transformer_block({"attention": {}}, jnp.ones((2, D)), num_heads=N)
    with pytest.raises(
        ValueError, match=r"^jaxla.nn.transformer_block: `x` contains 1 NaN or Inf value"
    ):
        transformer_block(params["blocks_0"], jnp.ones((2, D)).at[0, 0].set(jnp.nan),
                          num_heads=N)


def test_public_names():
    for name in ("transformer_block", "transformer_block_init", "decoder_lm", "decoder_lm_init",
                 "encoder_classifier", "encoder_classifier_init", "generate",
                 "init_decoder_cache", "sinusoidal_positions"):
        assert name in nn.__all__ and getattr(nn, name) is getattr(nn.transformer, name)
