"""Tiny random Hugging Face causal LMs (float32, seeded) for the HF import/export tests."""

from __future__ import annotations

import numpy as np

VOCAB = 192


def build(kind: str):
    """A seeded random ``transformers`` model in eval mode; `kind` picks the architecture."""
    import torch
    import transformers as tf

    torch.manual_seed({"llama": 0, "llama_tied": 1, "qwen2": 2, "gpt2": 3, "mistral": 4}[kind])
    common = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                  initializer_range=0.3)
    if kind == "gpt2":
        cfg = tf.GPT2Config(n_embd=48, n_layer=2, n_head=4, n_positions=64, **common)
        model = tf.GPT2LMHeadModel(cfg)
    else:
        kw = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  rms_norm_eps=1e-5, rope_theta=500.0, **common)
        if kind == "llama":  # untied, GQA
            cfg = tf.LlamaConfig(tie_word_embeddings=False, **kw)
        elif kind == "llama_tied":  # tied, biases everywhere, head_dim != hidden / heads
            cfg = tf.LlamaConfig(tie_word_embeddings=True, attention_bias=True, mlp_bias=True,
                                 head_dim=16, **kw)
        elif kind == "qwen2":
            cfg = tf.Qwen2Config(tie_word_embeddings=True, **kw)
        elif kind == "mistral":
            cfg = tf.MistralConfig(sliding_window=None, **kw)
        else:
            raise ValueError(kind)
        model = {"qwen2": tf.Qwen2ForCausalLM, "mistral": tf.MistralForCausalLM}.get(
            kind, tf.LlamaForCausalLM)(cfg)
    # Random init leaves norms at 1 and biases at 0; perturb them so the mapping is tested.
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def padded_batch(seed: int = 0, lengths=(12, 8, 5)):
    """Left-padded random tokens [B, T] int32, mask [B, T] bool, HF-style positions [B, T]."""
    rng = np.random.RandomState(seed)
    t = max(lengths)
    tokens = np.zeros((len(lengths), t), np.int32)
    mask = np.zeros((len(lengths), t), bool)
    for i, n in enumerate(lengths):
        tokens[i, t - n :] = rng.randint(3, VOCAB, n)
        mask[i, t - n :] = True
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)
    return tokens, mask, positions


def hf_logits(model, tokens, mask=None, positions=None) -> np.ndarray:
    import torch

    kw = {}
    if mask is not None:
        kw["attention_mask"] = torch.tensor(mask.astype(np.int64))
    if positions is not None:
        kw["position_ids"] = torch.tensor(positions.astype(np.int64))
    with torch.no_grad():
        return model(torch.tensor(tokens.astype(np.int64)), **kw).logits.float().numpy()


def rel_err(a, b, mask=None) -> float:
    """max|a - b| / max|b| over positions where mask [B, T] is True."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if mask is not None:
        a, b = a[mask], b[mask]
    return float(np.abs(a - b).max() / np.abs(b).max())


def hf_greedy(model, prompt, n: int) -> list[int]:
    """`generate(do_sample=False)` continuation of one unpadded prompt, never stopping early."""
    import torch

    model.generation_config.eos_token_id = None  # run all n steps, as our loop does
    out = model.generate(
        torch.tensor([list(prompt)]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        do_sample=False, max_new_tokens=n, pad_token_id=0,
    )
    return out[0, len(prompt):].tolist()
