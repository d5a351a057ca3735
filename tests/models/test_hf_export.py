"""HF checkpoint export: transformers loads what we write, and round trips are exact."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlfb_jax.models import LanguageModel, ModelConfig
from rlfb_jax.models.hf import HEADS_FILE, SafetensorsFile, load_checkpoint, open_tensors
from rlfb_jax.models.hf_config import hf_config_for
from rlfb_jax.models.hf_export import _parse_size, save_pretrained

from .hf_tiny import VOCAB, build, hf_logits, padded_batch, rel_err

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

BASE = dict(vocab_size=VOCAB, d_model=48, n_layers=2, n_heads=4, d_ff=96, max_len=64)
OURS = {
    # name: (config, HF class expected)
    "llama_gqa_value": (ModelConfig(**BASE, n_kv_heads=2, tie_embeddings=False,
                                    heads=("value", "score")), "LlamaForCausalLM"),
    "qwen2_like": (ModelConfig(**BASE, n_kv_heads=1, qkv_bias=True, rope_theta=1e6),
                   "Qwen2ForCausalLM"),
    "llama_biases": (ModelConfig(**BASE, head_dim=8, qkv_bias=True, mlp_bias=True),
                     "LlamaForCausalLM"),
    "gpt2_no_bias": (ModelConfig(**BASE, arch="gpt2", norm_eps=1e-5), "GPT2LMHeadModel"),
    "gpt2_untied": (ModelConfig(**BASE, arch="gpt2", qkv_bias=True, out_bias=True,
                                tie_embeddings=False), "GPT2LMHeadModel"),
}


def _random_params(lm: LanguageModel, seed: int):
    """Random params with non-trivial norms/biases (fresh init has ones and zeros)."""
    params = lm.init(jax.random.key(seed))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
    leaves = [x + 0.1 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(tree, leaves)


def _equal_trees(a, b) -> bool:
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(x.dtype == y.dtype and np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("name", sorted(OURS))
def test_transformers_loads_our_export(name, tmp_path):
    cfg, cls = OURS[name]
    lm = LanguageModel(cfg)
    params = _random_params(lm, seed=len(name))
    shard = "30KB" if name == "llama_gqa_value" else "2GB"
    save_pretrained(lm, params, tmp_path, max_shard_size=shard)
    if name == "llama_gqa_value":
        assert (tmp_path / "model.safetensors.index.json").is_file()
        assert (tmp_path / HEADS_FILE).is_file()
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(model).__name__ == cls
    tokens, mask, positions = padded_batch(seed=3)
    ref = hf_logits(model, tokens, mask, positions)
    ours = lm(params, jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask))
    assert rel_err(ours, ref, mask) < 1e-4

    # ours -> HF dir -> ours: the same params (biases HF forces come back as zeros).
    lm2, params2, _ = load_checkpoint(tmp_path)
    assert lm2.config.heads == cfg.heads
    if lm2.config == cfg:
        assert _equal_trees(params, params2)
    assert rel_err(lm2(params2, jnp.asarray(tokens), attention_mask=jnp.asarray(mask)),
                   ref, mask) < 1e-4


@pytest.mark.parametrize("kind", ["llama", "llama_tied", "qwen2", "gpt2", "mistral"])
def test_hf_ours_hf_ours_is_exact(kind, tmp_path):
    model = build(kind)
    model.save_pretrained(tmp_path / "a", safe_serialization=True)
    lm, params, _ = load_checkpoint(tmp_path / "a")
    save_pretrained(lm, params, tmp_path / "b")
    lm2, params2, _ = load_checkpoint(tmp_path / "b")
    assert lm2.config == lm.config
    assert _equal_trees(params, params2)
    # The files hold the same tensors too (HF drops lm_head.weight when tied; so do we).
    a, b = open_tensors(tmp_path / "a"), open_tensors(tmp_path / "b")
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name].read(name), b[name].read(name), err_msg=name)
    written = json.loads((tmp_path / "b" / "config.json").read_text())
    assert written["model_type"] == ("llama" if kind == "mistral" else kind.split("_")[0])


def test_heads_survive_and_hf_ignores_them(tmp_path):
    cfg = ModelConfig(**BASE, heads=("value",))
    lm = LanguageModel(cfg)
    params = _random_params(lm, seed=7)
    save_pretrained(lm, params, tmp_path)
    stored = SafetensorsFile(tmp_path / HEADS_FILE)
    assert sorted(stored.keys()) == ["value_head/bias", "value_head/kernel"]
    transformers.AutoModelForCausalLM.from_pretrained(tmp_path)  # loads without the heads
    lm2, params2, _ = load_checkpoint(tmp_path, heads=("score",))
    assert lm2.config.heads == ("score", "value")
    np.testing.assert_array_equal(params2["value_head"]["kernel"], params["value_head"]["kernel"])
    assert not np.any(np.asarray(params2["score_head"]["kernel"]))  # fresh head: zero init
    # Re-exporting without heads removes the stale side file.
    save_pretrained(LanguageModel(cfg.replace(heads=())),
                    {k: v for k, v in params.items() if k != "value_head"}, tmp_path)
    assert not (tmp_path / HEADS_FILE).exists()


def test_bfloat16_export(tmp_path):
    cfg = ModelConfig(**BASE, param_dtype="bfloat16")
    lm = LanguageModel(cfg)
    params = lm.init(jax.random.key(0))
    save_pretrained(lm, params, tmp_path)
    st = SafetensorsFile(tmp_path / "model.safetensors")
    assert {e["dtype"] for e in st.entries.values()} == {"BF16"}
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert model.dtype == torch.bfloat16
    lm2, params2, _ = load_checkpoint(tmp_path)
    assert lm2.config.param_dtype == "bfloat16" and _equal_trees(params, params2)


def test_tokenizer_is_saved_with_its_ids(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3, "a": 4, "b": 5}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<bos>",
                                  eos_token="<eos>", unk_token="<unk>")
    lm = LanguageModel(ModelConfig(**BASE))
    save_pretrained(lm, lm.init(jax.random.key(0)), tmp_path, tok,
                    extra_config={"eos_token_id": [2, 3]})
    hf = json.loads((tmp_path / "config.json").read_text())
    assert (hf["bos_token_id"], hf["pad_token_id"], hf["eos_token_id"]) == (1, 0, [2, 3])
    _, _, loaded = load_checkpoint(tmp_path)
    assert loaded("a b c")["input_ids"] == [4, 5, 3]


def test_export_errors_name_the_problem(tmp_path):
    llama = ModelConfig(**BASE, n_kv_heads=2)
    with pytest.raises(ValueError, match="model_type='gpt2'"):
        hf_config_for(llama, "gpt2")
    with pytest.raises(ValueError, match="n_kv_heads"):
        hf_config_for(ModelConfig(**BASE, arch="gpt2", n_kv_heads=2), None)
    with pytest.raises(ValueError, match="qwen2"):
        hf_config_for(ModelConfig(**BASE, qkv_bias=True, mlp_bias=True), "qwen2")
    lm = LanguageModel(llama)
    params = lm.init(jax.random.key(0))
    del params["layers"][1]["mlp"]["up_proj"]
    with pytest.raises(ValueError, match=r"layers/1/mlp/up_proj/kernel.*mlp.up_proj.weight"):
        save_pretrained(lm, params, tmp_path)
    params = lm.init(jax.random.key(0))
    params["final_norm"]["scale"] = jnp.ones(7)
    with pytest.raises(ValueError, match=r"final_norm/scale.*\(48,\).*\(7,\)"):
        save_pretrained(lm, params, tmp_path)


def test_parse_size():
    assert _parse_size("2GB") == 2 * 10**9
    assert _parse_size("500MiB") == 500 * 2**20
    assert _parse_size(1234) == 1234
    with pytest.raises(ValueError, match="max_shard_size"):
        _parse_size("lots")
