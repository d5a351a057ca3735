"""HF checkpoint import: logits and greedy decoding match `transformers`; errors name things."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from rlfb_jax.models import LanguageModel
from rlfb_jax.models.hf import CheckpointError, load_checkpoint, load_pretrained, weight_map
from rlfb_jax.models.hf_config import config_from_hf

from .hf_tiny import VOCAB, build, hf_greedy, hf_logits, padded_batch, rel_err

torch = pytest.importorskip("torch")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

KINDS = ("llama", "llama_tied", "qwen2", "gpt2", "mistral")
PROMPT = [5, 6, 7, 8, 9, 10]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """kind -> (HF model, its checkpoint dir); llama is also saved sharded."""
    out = {}
    for kind in KINDS:
        model = build(kind)
        path = tmp_path_factory.mktemp(kind)
        model.save_pretrained(path, safe_serialization=True)
        out[kind] = (model, path)
    model = out["llama"][0]
    path = tmp_path_factory.mktemp("llama_sharded")
    model.save_pretrained(path, safe_serialization=True, max_shard_size="20KB")
    out["llama_sharded"] = (model, path)
    return out


def _greedy(lm, params, prompt, n):
    """Greedy continuation through our full forward: one compile, right-padded buffer."""
    total = len(prompt) + n
    step = jax.jit(lambda p, t: jnp.argmax(lm(p, t), axis=-1))
    buf = np.zeros((1, total), np.int32)
    buf[0, : len(prompt)] = prompt
    for i in range(len(prompt), total):
        buf[0, i] = int(step(params, jnp.asarray(buf))[0, i - 1])  # causal: padding unseen
    return buf[0, len(prompt):].tolist()


@pytest.mark.parametrize("kind", [*KINDS, "llama_sharded"])
def test_logits_and_greedy_match_transformers(checkpoints, kind):
    model, path = checkpoints[kind]
    lm, params, tok = load_checkpoint(path)
    assert tok is None
    assert lm.config.arch == ("gpt2" if kind == "gpt2" else "llama")
    tokens, mask, positions = padded_batch()
    ref = hf_logits(model, tokens, mask, positions)
    ours = lm(params, jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask))
    assert ours.shape == (3, tokens.shape[1], VOCAB) and ours.dtype == jnp.float32
    assert rel_err(ours, ref, mask) < 1e-4
    # Default positions (count of real tokens) equal HF's position_ids for left padding.
    ours_default = lm(params, jnp.asarray(tokens), attention_mask=jnp.asarray(mask))
    assert rel_err(ours_default, ref, mask) < 1e-4
    assert _greedy(lm, params, PROMPT, 20) == hf_greedy(model, PROMPT, 20)


def test_load_pretrained_returns_callable_transformer(checkpoints):
    model, path = checkpoints["qwen2"]
    net = load_pretrained(path)
    tokens = np.random.RandomState(1).randint(0, VOCAB, (2, 7)).astype(np.int32)
    logits = net(jnp.asarray(tokens))
    assert logits.shape == (2, 7, VOCAB) and logits.dtype == jnp.float32
    assert rel_err(logits, hf_logits(model, tokens)) < 1e-4


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_sampler_greedy_matches_transformers(checkpoints, kind):
    sampler = pytest.importorskip("rlfb_jax.models.sampler")
    model, path = checkpoints[kind]
    lm, params, _ = load_checkpoint(path)
    prompts = [PROMPT, [11, 12, 13]]
    toks, mask = sampler.left_pad(prompts, 8)
    out = sampler.sample(lm, params, jnp.asarray(toks), jnp.asarray(mask), jax.random.key(0),
                         sampler.SamplingParams(temperature=0.0, max_new_tokens=20))
    for row, prompt in enumerate(prompts):
        assert np.asarray(out.tokens[row]).tolist() == hf_greedy(model, prompt, 20)


def test_load_straight_into_shardings(checkpoints):
    sharding = pytest.importorskip("rlfb_jax.core.sharding")
    if len(jax.devices()) < 4:
        pytest.skip("needs 4 devices (tests/conftest.py fakes 8 CPU devices)")
    model, path = checkpoints["llama"]
    lm, _, _ = load_checkpoint(path, tokenizer=False)
    mesh = sharding.make_mesh({"data": -1, "fsdp": 2, "model": 2},
                              devices=jax.devices()[: 2 * 2 * (len(jax.devices()) // 4)])
    shardings = sharding.tree_shardings(lm.abstract_params(), lm.logical_axes(), mesh)
    _, params, _ = load_checkpoint(path, shardings=shardings, tokenizer=False)
    emb = params["embed"]["embedding"]
    assert emb.sharding == shardings["embed"]["embedding"]
    assert emb.addressable_shards[0].data.shape == (VOCAB // 2, 48 // 2)
    tokens = np.arange(3, 13, dtype=np.int32)[None]
    assert rel_err(jax.jit(lm)(params, jnp.asarray(tokens)), hf_logits(model, tokens)) < 1e-4


def test_bfloat16_checkpoint(tmp_path):
    model = build("llama").to(torch.bfloat16)
    model.save_pretrained(tmp_path, safe_serialization=True)
    lm, params, _ = load_checkpoint(tmp_path)
    assert lm.config.param_dtype == "bfloat16" and lm.config.dtype == "bfloat16"
    assert params["embed"]["embedding"].dtype == jnp.bfloat16
    ref_emb = model.model.embed_tokens.weight.detach().float().numpy()
    np.testing.assert_array_equal(np.asarray(params["embed"]["embedding"], np.float32), ref_emb)
    # Upcast on load: exact bf16 values, float32 math, same as HF run in float32.
    lm32, params32, _ = load_checkpoint(tmp_path, param_dtype="float32")
    tokens = np.random.RandomState(2).randint(0, VOCAB, (2, 9)).astype(np.int32)
    from transformers import AutoModelForCausalLM

    # (not model.float(): the bf16 cast also rounded HF's rotary inv_freq buffer)
    ref = hf_logits(AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32), tokens)
    assert rel_err(lm32(params32, jnp.asarray(tokens)), ref) < 1e-4
    assert rel_err(lm(params, jnp.asarray(tokens)), ref) < 0.1  # bf16 compute


def test_every_parameter_is_mapped():
    for kind, hf in [("llama", {"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
                                "intermediate_size": 16, "num_hidden_layers": 2,
                                "num_attention_heads": 2, "attention_bias": True,
                                "mlp_bias": True}),
                     ("gpt2", {"model_type": "gpt2", "vocab_size": 10, "n_embd": 8, "n_layer": 2,
                               "n_head": 2, "n_positions": 16, "tie_word_embeddings": False})]:
        cfg = config_from_hf(hf)
        leaves = jax.tree_util.tree_flatten_with_path(LanguageModel(cfg).abstract_params())[0]
        ours = {tuple(getattr(k, "key", k) for k in path) for path, _ in leaves}
        mapped = [m.ours for m in weight_map(cfg)]
        assert len(mapped) == len(set(mapped)) and set(mapped) == ours, kind


# ------------------------------------------------------------------------------------------
# Config translation and errors


def test_config_fields():
    hf = {"model_type": "qwen2", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
          "num_hidden_layers": 3, "num_attention_heads": 8, "num_key_value_heads": 2,
          "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}, "rms_norm_eps": 1e-5,
          "tie_word_embeddings": True, "max_position_embeddings": 4096, "torch_dtype": "bfloat16",
          "use_sliding_window": False, "sliding_window": 4096}
    cfg = config_from_hf(hf, dtype="float32", heads=("value",))
    assert (cfg.arch, cfg.n_kv_heads, cfg.rope_theta, cfg.norm_eps) == ("llama", 2, 1e6, 1e-5)
    assert (cfg.qkv_bias, cfg.out_bias, cfg.mlp_bias, cfg.tie_embeddings) == (1, 0, 0, 1)
    assert (cfg.param_dtype, cfg.dtype, cfg.max_len, cfg.heads) == (
        "bfloat16", "float32", 4096, ("value",))
    old_style = {**hf, "model_type": "llama", "rope_theta": 5e5}
    del old_style["rope_parameters"]
    assert config_from_hf(old_style).rope_theta == 5e5


@pytest.mark.parametrize("change, field", [
    ({"model_type": "bert"}, "model_type"),
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope_scaling"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}}, "rope_parameters"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"model_type": "mistral", "sliding_window": 16}, "sliding_window"),
    ({"model_type": "qwen2", "use_sliding_window": True, "sliding_window": 16,
      "max_window_layers": 0}, "sliding_window"),
    ({"hidden_size": None}, "hidden_size"),
])
def test_unsupported_config_names_the_field(change, field):
    hf = {"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
          "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 64,
          **change}
    with pytest.raises(ValueError, match=field):
        config_from_hf(hf)


def test_sliding_window_accepted_within_window():
    hf = {"model_type": "mistral", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
          "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 64,
          "sliding_window": 16}
    assert config_from_hf(hf, max_len=16).max_len == 16


def _copy_checkpoint(src, dst, edit):
    """Copies a single-file checkpoint, passing its tensors through `edit(dict) -> dict`."""
    dst.mkdir()
    (dst / "config.json").write_text((src / "config.json").read_text())
    tensors = safetensors_numpy.load_file(str(src / "model.safetensors"))
    safetensors_numpy.save_file(edit(tensors), str(dst / "model.safetensors"),
                                metadata={"format": "pt"})
    return dst


def test_shape_mismatch_names_tensor_and_path(checkpoints, tmp_path):
    name = "model.layers.1.self_attn.k_proj.weight"

    def edit(t):
        return {**t, name: t[name][:8]}

    path = _copy_checkpoint(checkpoints["llama"][1], tmp_path / "c", edit)
    with pytest.raises(CheckpointError, match=r"k_proj.weight.*layers/1/attn/k_proj/kernel.*"
                                              r"expected shape \(24, 48\), got \(8, 48\)"):
        load_checkpoint(path)


def test_missing_and_unexpected_tensors_are_named(checkpoints, tmp_path):
    src = checkpoints["gpt2"][1]
    name = "transformer.h.1.mlp.c_fc.bias"
    path = _copy_checkpoint(src, tmp_path / "a", lambda t: {k: v for k, v in t.items()
                                                           if k != name})
    with pytest.raises(CheckpointError, match=rf"{name}.*layers/1/mlp/up_proj/bias"):
        load_checkpoint(path)
    extra = {"transformer.h.0.attn.q_norm.weight": np.ones(4, np.float32),
             "transformer.h.0.attn.bias": np.ones((1, 1, 4, 4), np.float32)}  # mask: ignored
    path = _copy_checkpoint(src, tmp_path / "b", lambda t: {**t, **extra})
    with pytest.raises(CheckpointError, match=r"no place for.*q_norm.weight") as err:
        load_checkpoint(path)
    assert "attn.bias'" not in str(err.value)


def test_unprefixed_gpt2_names_and_ignored_buffers(checkpoints, tmp_path):
    model, src = checkpoints["gpt2"]

    def edit(t):
        out = {k.removeprefix("transformer."): v for k, v in t.items()}
        out["h.0.attn.masked_bias"] = np.array(-1e4, np.float32)
        return out

    path = _copy_checkpoint(src, tmp_path / "c", edit)
    lm, params, _ = load_checkpoint(path)
    tokens = np.arange(3, 15, dtype=np.int32)[None]
    assert rel_err(lm(params, jnp.asarray(tokens)), hf_logits(model, tokens)) < 1e-4


def test_missing_paths_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(tmp_path)
    hf = {"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
          "num_hidden_layers": 2, "num_attention_heads": 2}
    (tmp_path / "config.json").write_text(json.dumps(hf))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_checkpoint(tmp_path)


def test_tokenizer_is_loaded(checkpoints, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3, "def": 4, "return": 5, "x": 6}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<bos>",
                                  eos_token="<eos>", unk_token="<unk>")
    model, src = checkpoints["llama"]
    path = _copy_checkpoint(src, tmp_path / "t", lambda t: t)
    tok.save_pretrained(str(path))
    lm, params, loaded = load_checkpoint(path)
    assert loaded is not None
    assert loaded("def x return y")["input_ids"] == [4, 6, 5, 3]
    assert (loaded.eos_token_id, loaded.pad_token_id) == (2, 0)
    assert load_checkpoint(path, tokenizer=False)[2] is None


def test_build_policy_takes_logits_chunk_from_the_config(checkpoints, tmp_path):
    # config.model.logits_chunk is a training setting: it applies to an HF checkpoint too,
    # and the chunked head gives the log-probs of the whole-sequence one.
    from rlfb_jax.core.config import model_config
    from rlfb_jax.core.policy import build_policy
    from rlfb_jax.losses.sequence import sequence_logprobs

    _, path = checkpoints["llama"]
    tok = type("Tok", (), {"__len__": lambda self: VOCAB})()
    cfg = type("C", (), {})()
    out = []
    for chunk in (0, 4):
        cfg.model = model_config(logits_chunk=chunk)
        cfg.model.hf_path = str(path)
        policy = build_policy(cfg, tokenizer=tok)
        assert policy.lm.config.logits_chunk == chunk
        batch = {"tokens": jnp.asarray([PROMPT + [11, 12, 13, 14]], jnp.int32),
                 "attention_mask": jnp.ones((1, 10), bool)}
        out.append(sequence_logprobs(policy.lm, policy.params, batch)[0])
    np.testing.assert_allclose(out[1], out[0], rtol=1e-5, atol=1e-5)


def test_bf16_reader_matches_safetensors_flax(tmp_path):
    flax_st = pytest.importorskip("safetensors.flax")
    x = (np.random.RandomState(0).randn(5, 7)).astype(ml_dtypes.bfloat16)
    safetensors_numpy.save_file({"w": x, "e": np.zeros((0, 3), np.float32)},
                                str(tmp_path / "f.safetensors"))
    from rlfb_jax.models.hf import SafetensorsFile

    f = SafetensorsFile(tmp_path / "f.safetensors")
    np.testing.assert_array_equal(f.read("w"), x)
    assert f.read("e").shape == (0, 3)
    np.testing.assert_array_equal(
        np.asarray(flax_st.load_file(str(tmp_path / "f.safetensors"))["w"]), f.read("w"))
