"""Flax NNX decoder-only transformer with a functional KV cache.

One module tree covers the Llama/Qwen2 family (RoPE, RMSNorm, SwiGLU, grouped-query
attention, optional q/k/v bias) and GPT-2 (learned positions, LayerNorm, GELU), chosen by
`ModelConfig.arch`. The cache is an explicit pytree argument and return value (not a
mutable variable), so prefill and every decode step are pure functions that jit cleanly.

Shapes: B batch, T new tokens, S cache slots, H query heads, K kv heads, Dh head dim.
Slots are aligned across the batch (prompts are left-padded), so one scalar `index` says
where the new tokens go; `valid[b, s]` marks slots holding real (non-pad) tokens.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from rlfb_jax.models.config import ModelConfig

# the critic head's outputs: compile error, runtime error, failed test, passed (CodeRL)
CRITIC_OUTPUTS = 4


class KVCache(NamedTuple):
    """Keys/values of every layer plus slot validity.

    k, v: tuples (one per layer) of [B, K, S, Dh] (heads before slots, so a decode step's
    attention reads each head's keys contiguously instead of transposing the whole cache:
    about 12x faster on CPU at batch 256); valid: [B, S] bool; index: [] int32, the first
    free slot.
    """

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]
    valid: jax.Array
    index: jax.Array

    @classmethod
    def empty(cls, config: ModelConfig, batch: int, slots: int) -> KVCache:
        shape = (batch, config.num_kv_heads, slots, config.dim_per_head)
        zeros = tuple(jnp.zeros(shape, config.jnp_dtype) for _ in range(config.n_layers))
        return cls(
            zeros,
            zeros,
            jnp.zeros((batch, slots), jnp.bool_),
            jnp.zeros((), jnp.int32),
        )


class ModelOutput(NamedTuple):
    logits: jax.Array | None  # [B, T, V] float32 (None when not computed)
    hidden: jax.Array  # [B, T, D] final hidden states (after the last norm), float32
    cache: KVCache | None


def _rows(layer, x: jax.Array) -> jax.Array:
    """``layer`` (a projection over the last axis) applied to x [..., D] as one 2-D matmul.

    Leading dims are merged into rows first. With x [B, T, D] the weight gradient is a
    contraction over two dims (B and T), which XLA's CPU backend canonicalizes by writing
    the [B, T, F] output gradient transposed, fused into its producer: per 32 x 128-token
    PPO minibatch on one core, 11-21 ms per MLP layer and 69 ms for the tied vocabulary
    head, ~15% of the step (benchmarks/RESULTS.md, issue 19). With one contraction dim
    there is no copy; the values are the same and a reshape is free on every backend.
    """
    y = layer(x.reshape(-1, x.shape[-1]))
    return y.reshape(*x.shape[:-1], y.shape[-1])


def _dense(cfg: ModelConfig, din: int, dout: int, bias: bool, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        din,
        dout,
        use_bias=bias,
        dtype=cfg.jnp_dtype,
        param_dtype=cfg.jnp_param_dtype,
        kernel_init=nnx.initializers.normal(cfg.init_std),
        rngs=rngs,
    )


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, param_dtype):
        self.scale = nnx.Param(jnp.ones((dim,), param_dtype))
        self.eps = eps

    def __call__(self, x):
        x = x.astype(jnp.float32)
        var = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
        return x * jax.lax.rsqrt(var + self.eps) * self.scale[...].astype(jnp.float32)


def _norm(cfg: ModelConfig, rngs: nnx.Rngs):
    if cfg.arch == "gpt2":
        return nnx.LayerNorm(
            cfg.d_model, epsilon=cfg.norm_eps, dtype=jnp.float32,
            param_dtype=cfg.jnp_param_dtype, rngs=rngs,
        )
    return RMSNorm(cfg.d_model, cfg.norm_eps, cfg.jnp_param_dtype)


def rope(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotary embedding in the half-split layout (x[..., :d/2], x[..., d/2:]).

    x: [B, T, N, Dh]; positions: [B, T] int. Computed in float32.
    """
    dh = x.shape[-1]
    inv_freq = 1.0 / (theta ** (jnp.arange(0, dh, 2, dtype=jnp.float32) / dh))
    ang = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, Dh/2]
    cos, sin = jnp.cos(ang)[:, :, None, :], jnp.sin(ang)[:, :, None, :]
    xf = x.astype(jnp.float32)
    x1, x2 = xf[..., : dh // 2], xf[..., dh // 2 :]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        h, k, dh = cfg.n_heads, cfg.num_kv_heads, cfg.dim_per_head
        self.q_proj = _dense(cfg, cfg.d_model, h * dh, cfg.qkv_bias, rngs)
        self.k_proj = _dense(cfg, cfg.d_model, k * dh, cfg.qkv_bias, rngs)
        self.v_proj = _dense(cfg, cfg.d_model, k * dh, cfg.qkv_bias, rngs)
        self.o_proj = _dense(cfg, h * dh, cfg.d_model, cfg.out_bias, rngs)

    def __call__(self, x, positions, mask, k_cache, v_cache, index):
        """x: [B, T, D]; mask: [B, T, S] bool; k_cache/v_cache: [B, K, S, Dh]."""
        cfg = self.cfg
        b, t, _ = x.shape
        h, kh, dh = cfg.n_heads, cfg.num_kv_heads, cfg.dim_per_head
        q = _rows(self.q_proj, x).reshape(b, t, h, dh)
        k = _rows(self.k_proj, x).reshape(b, t, kh, dh)
        v = _rows(self.v_proj, x).reshape(b, t, kh, dh)
        if cfg.arch == "llama":
            q = rope(q, positions, cfg.rope_theta)
            k = rope(k, positions, cfg.rope_theta)
        k = k.astype(k_cache.dtype).transpose(0, 2, 1, 3)  # [B, K, T, Dh]
        v = v.astype(v_cache.dtype).transpose(0, 2, 1, 3)
        k_cache = jax.lax.dynamic_update_slice(k_cache, k, (0, 0, index, 0))
        v_cache = jax.lax.dynamic_update_slice(v_cache, v, (0, 0, index, 0))
        g = h // kh
        qg = q.reshape(b, t, kh, g, dh)
        scores = jnp.einsum(
            "btkgd,bksd->bkgts", qg, k_cache, preferred_element_type=jnp.float32
        ) / jnp.sqrt(jnp.float32(dh))
        scores = jnp.where(mask[:, None, None, :, :], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(v_cache.dtype)
        out = jnp.einsum("bkgts,bksd->btkgd", probs, v_cache).reshape(b, t, h * dh)
        return _rows(self.o_proj, out), k_cache, v_cache


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.arch = cfg.arch
        if cfg.arch == "llama":
            self.gate_proj = _dense(cfg, cfg.d_model, cfg.d_ff, cfg.mlp_bias, rngs)
            self.up_proj = _dense(cfg, cfg.d_model, cfg.d_ff, cfg.mlp_bias, rngs)
            self.down_proj = _dense(cfg, cfg.d_ff, cfg.d_model, cfg.mlp_bias, rngs)
        else:
            self.up_proj = _dense(cfg, cfg.d_model, cfg.d_ff, True, rngs)
            self.down_proj = _dense(cfg, cfg.d_ff, cfg.d_model, True, rngs)

    def __call__(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # one matmul row per token (see `_rows`)
        if self.arch == "llama":
            y = self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))
        else:
            y = self.down_proj(jax.nn.gelu(self.up_proj(x), approximate=True))
        return y.reshape(shape)


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.attn_norm = _norm(cfg, rngs)
        self.attn = Attention(cfg, rngs)
        self.mlp_norm = _norm(cfg, rngs)
        self.mlp = MLP(cfg, rngs)
        self.dtype = cfg.jnp_dtype

    def __call__(self, x, positions, mask, k_cache, v_cache, index):
        a, k_cache, v_cache = self.attn(
            self.attn_norm(x).astype(self.dtype), positions, mask, k_cache, v_cache, index
        )
        x = x + a.astype(jnp.float32)
        x = x + self.mlp(self.mlp_norm(x).astype(self.dtype)).astype(jnp.float32)
        return x, k_cache, v_cache


class Transformer(nnx.Module):
    """The decoder. Call it on int32 tokens [B, T] to get float32 logits [B, T, V]."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        cfg = self.config = config
        self.embed = nnx.Embed(
            cfg.vocab_size, cfg.d_model, param_dtype=cfg.jnp_param_dtype,
            embedding_init=nnx.initializers.normal(cfg.init_std), rngs=rngs,
        )
        if cfg.arch == "gpt2":
            self.pos_embed = nnx.Embed(
                cfg.max_len, cfg.d_model, param_dtype=cfg.jnp_param_dtype,
                embedding_init=nnx.initializers.normal(cfg.init_std / 2), rngs=rngs,
            )
        self.layers = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.final_norm = _norm(cfg, rngs)
        if not cfg.tie_embeddings:
            self.lm_head = _dense(cfg, cfg.d_model, cfg.vocab_size, False, rngs)
        if "value" in cfg.heads:
            self.value_head = nnx.Linear(cfg.d_model, 1, param_dtype=jnp.float32,
                                         kernel_init=nnx.initializers.zeros, rngs=rngs)
        if "score" in cfg.heads:
            self.score_head = nnx.Linear(cfg.d_model, 1, param_dtype=jnp.float32,
                                         kernel_init=nnx.initializers.zeros, rngs=rngs)
        if "critic" in cfg.heads:  # CodeRL's critic: one logit per outcome class
            self.critic_head = nnx.Linear(cfg.d_model, CRITIC_OUTPUTS, param_dtype=jnp.float32,
                                          kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, tokens, positions=None, attention_mask=None):
        return self.forward(tokens, positions, attention_mask).logits

    def forward(self, tokens, positions=None, attention_mask=None, cache: KVCache | None = None,
                compute_logits: bool = True):
        """Runs the decoder on new tokens, optionally appending them to a cache.

        tokens: [B, T] int32. attention_mask: [B, T] bool, False on padding (default all True).
        positions: [B, T] int (default: count of real tokens before each one, so left padding
        works). Without a cache, attention is causal over these T tokens. With
        ``compute_logits=False`` the output's logits are None (the head is applied later,
        e.g. in chunks by `rlfb_jax.losses.sequence.sequence_logprobs`).
        """
        cfg = self.config
        b, t = tokens.shape
        if attention_mask is None:
            attention_mask = jnp.ones((b, t), jnp.bool_)
        attention_mask = attention_mask.astype(jnp.bool_)
        use_cache = cache is not None
        if cache is None:
            cache = KVCache.empty(cfg, b, t)
        if positions is None:
            prior = jnp.sum(cache.valid, axis=1, keepdims=True)
            positions = prior + jnp.cumsum(attention_mask, axis=1) - 1
            positions = jnp.maximum(positions, 0)
        index = cache.index
        valid = jax.lax.dynamic_update_slice(cache.valid, attention_mask, (0, index))
        slots = cache.valid.shape[1]
        q_slot = index + jnp.arange(t)
        causal = jnp.arange(slots)[None, :] <= q_slot[:, None]  # [T, S]
        mask = causal[None] & valid[:, None, :]  # [B, T, S]

        x = self.embed(tokens).astype(jnp.float32)
        if cfg.arch == "gpt2":
            x = x + self.pos_embed(positions).astype(jnp.float32)
        new_k, new_v = [], []
        remat = cfg.remat and not use_cache
        for i, layer in enumerate(self.layers):
            if remat:
                graphdef, state = nnx.split(layer)

                def block(state, *args, graphdef=graphdef):
                    return nnx.merge(graphdef, state)(*args)

                x, k, v = jax.checkpoint(block)(state, x, positions, mask, cache.k[i],
                                                cache.v[i], index)
            else:
                x, k, v = layer(x, positions, mask, cache.k[i], cache.v[i], index)
            new_k.append(k)
            new_v.append(v)
        hidden = self.final_norm(x).astype(jnp.float32)
        logits = self.logits(hidden) if compute_logits else None
        new_cache = KVCache(tuple(new_k), tuple(new_v), valid, index + t) if use_cache else None
        return ModelOutput(logits, hidden, new_cache)

    def logits(self, hidden):
        """[..., D] -> [..., V] float32, as one [rows, D] x [D, V] matmul (see `_rows`)."""
        if self.config.tie_embeddings:
            w = self.embed.embedding[...]
            rows = hidden.reshape(-1, hidden.shape[-1]).astype(w.dtype)
            out = jnp.einsum("nd,vd->nv", rows, w, preferred_element_type=jnp.float32)
            return out.reshape(*hidden.shape[:-1], out.shape[-1])
        return _rows(self.lm_head, hidden.astype(self.config.jnp_dtype)).astype(jnp.float32)

    def value(self, hidden):
        """Scalar value per position: [B, T, D] -> [B, T]."""
        return self.value_head(hidden)[..., 0]

    def score(self, hidden):
        """Scalar verifier logit per position: [B, T, D] -> [B, T]."""
        return self.score_head(hidden)[..., 0]

    def critic(self, hidden):
        """Outcome-class logits per position: [B, T, D] -> [B, T, CRITIC_OUTPUTS]."""
        return self.critic_head(hidden)
