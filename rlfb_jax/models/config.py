"""Model configuration: one frozen dataclass for the Llama/Qwen2 family and GPT-2.

The fields follow Hugging Face's names where there is one, so that importing a checkpoint
is a direct mapping (see `rlfb_jax.models.hf`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import jax.numpy as jnp

Arch = Literal["llama", "gpt2"]

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer.

    ``arch="llama"`` gives RoPE + RMSNorm + SwiGLU + grouped-query attention (Llama, Qwen2,
    Mistral-style); ``arch="gpt2"`` gives learned positions + LayerNorm + GELU MLP with biases.
    """

    vocab_size: int = 2048
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None  # None: equal to n_heads (multi-head attention)
    head_dim: int | None = None  # None: d_model // n_heads
    d_ff: int = 768
    max_len: int = 512  # learned positions (gpt2) and the default cache size
    arch: Arch = "llama"
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    qkv_bias: bool = False  # Qwen2 has biases on q/k/v only
    out_bias: bool = False  # bias on the attention output projection
    mlp_bias: bool = False
    tie_embeddings: bool = True
    param_dtype: str = "float32"
    dtype: str = "float32"  # compute dtype of matmuls; norms, softmax and logits stay float32
    # extra heads on the backbone: "value", "score" (scalars), "critic" (CodeRL's outcome
    # classes, `rlfb_jax.losses.critic.CRITIC_CLASSES`)
    heads: tuple[str, ...] = ()
    init_std: float = 0.02
    # > 0: training losses compute the vocabulary projection, log-softmax and entropy over
    # this many positions at a time, recomputed in the backward pass (memory of the logits
    # B x chunk x V instead of B x L x V; for large vocabularies, e.g. 152k). 0: all at once.
    logits_chunk: int = 0
    # True: without a KV cache (training and scoring), each block's activations are
    # recomputed in the backward pass instead of stored (jax.checkpoint per block).
    remat: bool = False

    def __post_init__(self):
        if self.arch not in ("llama", "gpt2"):
            raise ValueError(f"model.arch must be 'llama' or 'gpt2', got {self.arch!r}")
        for name in ("param_dtype", "dtype"):
            if getattr(self, name) not in _DTYPES:
                raise ValueError(
                    f"model.{name} must be one of {sorted(_DTYPES)}, got {getattr(self, name)!r}"
                )
        if self.n_heads % self.num_kv_heads:
            raise ValueError(
                f"model.n_heads={self.n_heads} is not a multiple of n_kv_heads={self.num_kv_heads}"
            )
        if self.head_dim is None and self.d_model % self.n_heads:
            raise ValueError(f"model.d_model={self.d_model} is not divisible by n_heads")
        if self.logits_chunk < 0:
            raise ValueError(f"model.logits_chunk must be >= 0, got {self.logits_chunk}")
        bad = set(self.heads) - {"value", "score", "critic"}
        if bad:
            raise ValueError(f"model.heads: unknown head(s) {sorted(bad)}; known: value, "
                             "score, critic")

    @property
    def num_kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    @property
    def jnp_dtype(self):
        return _DTYPES[self.dtype]

    @property
    def jnp_param_dtype(self):
        return _DTYPES[self.param_dtype]

    def replace(self, **kw) -> ModelConfig:
        return dataclasses.replace(self, **kw)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Builds a config from a mapping (e.g. an ml_collections ConfigDict), naming unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config key(s) {unknown}; known: {sorted(known)}")
        if "heads" in d:
            d["heads"] = tuple(d["heads"])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["heads"] = list(self.heads)
        return d


def count_params(params) -> int:
    import jax

    return sum(x.size for x in jax.tree.leaves(params))
