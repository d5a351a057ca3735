"""The NNX decoder: cache consistency, padding, both architectures, dtypes, heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlfb_jax.models import KVCache, LanguageModel, ModelConfig, count_params

CFGS = {
    "llama_gqa": ModelConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                             d_ff=64, tie_embeddings=False),
    "qwen2_bias": ModelConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=4, n_kv_heads=1,
                              d_ff=64, qkv_bias=True, rope_theta=1e6),
    "gpt2": ModelConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=4, d_ff=128,
                        arch="gpt2", norm_eps=1e-5, max_len=64),
}


@pytest.mark.parametrize("name", sorted(CFGS))
def test_incremental_decoding_matches_full_forward(name):
    cfg = CFGS[name]
    lm = LanguageModel(cfg)
    params = lm.init(jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (3, 9), 0, cfg.vocab_size)
    full = lm(params, tokens)
    assert full.shape == (3, 9, cfg.vocab_size) and full.dtype == jnp.float32
    cache = KVCache.empty(cfg, 3, 12)
    out = lm.forward(params, tokens[:, :5], cache=cache)
    logits = [out.logits]
    cache = out.cache
    for t in range(5, 9):
        out = lm.forward(params, tokens[:, t : t + 1], cache=cache)
        cache = out.cache
        logits.append(out.logits)
    np.testing.assert_allclose(jnp.concatenate(logits, 1), full, atol=2e-5, rtol=1e-5)
    assert int(cache.index) == 9


@pytest.mark.parametrize("name", sorted(CFGS))
def test_left_padding_does_not_change_logits(name):
    cfg = CFGS[name]
    lm = LanguageModel(cfg)
    params = lm.init(jax.random.key(0))
    seq = jnp.array([[5, 6, 7, 8]])
    padded = jnp.array([[0, 0, 0, 5, 6, 7, 8]])
    mask = padded != 0
    a = lm(params, seq)
    b = lm(params, padded, attention_mask=mask)
    np.testing.assert_allclose(b[:, 3:], a, atol=2e-5, rtol=1e-5)


def test_bfloat16_compute_runs_and_stays_close():
    cfg = CFGS["llama_gqa"]
    lm32, lm16 = LanguageModel(cfg), LanguageModel(cfg.replace(dtype="bfloat16"))
    params = lm32.init(jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 8), 0, cfg.vocab_size)
    a, b = lm32(params, tokens), lm16(params, tokens)
    assert b.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(a - b))) < 0.05
    bf_params = LanguageModel(cfg.replace(param_dtype="bfloat16")).init(jax.random.key(0))
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(bf_params))


def test_value_and_score_heads_share_the_backbone():
    cfg = CFGS["llama_gqa"].replace(heads=("value", "score"))
    lm = LanguageModel(cfg)
    params = lm.init(jax.random.key(0))
    assert "value_head" in params and "score_head" in params
    tokens = jnp.ones((2, 5), jnp.int32)
    model = lm.bind(params)
    out = model.forward(tokens)
    assert model.value(out.hidden).shape == (2, 5)
    assert model.score(out.hidden).shape == (2, 5)
    base = count_params(LanguageModel(CFGS["llama_gqa"]).init(jax.random.key(0)))
    assert count_params(params) == base + 2 * (cfg.d_model + 1)


def test_logical_axes_cover_every_parameter():
    lm = LanguageModel(CFGS["llama_gqa"].replace(heads=("value",)))
    params = lm.init(jax.random.key(0))
    axes = lm.logical_axes(params)
    for leaf, names in zip(jax.tree.leaves(params),
                           jax.tree.leaves(axes, is_leaf=lambda x: isinstance(x, tuple))):
        assert len(names) == leaf.ndim
    assert axes["layers"][0]["mlp"]["up_proj"]["kernel"] == ("embed", "mlp")
    assert axes["embed"]["embedding"] == ("vocab", "embed")


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="model.arch"):
        ModelConfig(arch="mamba")
    with pytest.raises(ValueError, match="n_kv_heads"):
        ModelConfig(n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="unknown model config key"):
        ModelConfig.from_dict({"d_modle": 3})
