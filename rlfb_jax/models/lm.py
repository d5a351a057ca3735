"""`LanguageModel`: the NNX transformer seen as pure functions of a params pytree.

The train state stores parameters as a plain nested dict of arrays (``nnx.to_pure_dict``),
which orbax, optax and sharding rules all handle directly. Inside a jitted function,
`LanguageModel.bind(params)` merges them with the static graph definition into a live
`Transformer` (cost paid at trace time only).
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rlfb_jax.models.config import ModelConfig
from rlfb_jax.models.transformer import KVCache, ModelOutput, Transformer

Params = dict[str, Any]

# Logical axis names of every parameter, by the end of its path. Sharding rules in the
# config map these names to mesh axes (rlfb_jax.core.sharding).
_LOGICAL_AXES = [
    (r"embed/embedding$", ("vocab", "embed")),
    (r"pos_embed/embedding$", (None, "embed")),
    (r"attn/[qkv]_proj/kernel$", ("embed", "heads")),
    (r"attn/[qkv]_proj/bias$", ("heads",)),
    (r"attn/o_proj/kernel$", ("heads", "embed")),
    (r"(gate|up)_proj/kernel$", ("embed", "mlp")),
    (r"(gate|up)_proj/bias$", ("mlp",)),
    (r"down_proj/kernel$", ("mlp", "embed")),
    (r"lm_head/kernel$", ("embed", "vocab")),
    (r"(value|score)_head/kernel$", ("embed", None)),
    (r"(value|score)_head/bias$", (None,)),
    (r"(scale|bias)$", ("embed",)),
]


def _path_str(path) -> str:
    parts = []
    for p in path:
        parts.append(str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))))
    return "/".join(parts)


class LanguageModel:
    """Static description of a model: config + graph definition. Holds no arrays."""

    def __init__(self, config: ModelConfig):
        self.config = config
        abstract = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
        self.graphdef, self._abstract_state = nnx.split(abstract)

    def init(self, rng: jax.Array) -> Params:
        """Fresh random parameters as a pure dict."""
        model = Transformer(self.config, rngs=nnx.Rngs(params=rng))
        return nnx.to_pure_dict(nnx.state(model))

    def abstract_params(self) -> Params:
        """ShapeDtypeStructs of the parameters (no allocation)."""
        return nnx.to_pure_dict(self._abstract_state)

    def bind(self, params: Params) -> Transformer:
        state = jax.tree.map(lambda x: x, self._abstract_state)
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(self.graphdef, state)

    def __call__(self, params: Params, tokens, positions=None, attention_mask=None):
        """Logits [B, T, V] float32 for int32 tokens [B, T]."""
        return self.bind(params)(tokens, positions, attention_mask)

    def forward(
        self, params: Params, tokens, positions=None, attention_mask=None,
        cache: KVCache | None = None, compute_logits: bool = True,
    ) -> ModelOutput:
        return self.bind(params).forward(tokens, positions, attention_mask, cache,
                                         compute_logits)

    def logits(self, params: Params, hidden) -> jax.Array:
        """The vocabulary projection of final hidden states: [..., T, D] -> [..., T, V] f32."""
        return self.bind(params).logits(hidden)

    def logical_axes(self, params: Params | None = None) -> Any:
        """A pytree like the params whose leaves are tuples of logical axis names."""
        params = self.abstract_params() if params is None else params

        def axes(path, leaf):
            name = _path_str(path)
            for pattern, names in _LOGICAL_AXES:
                if re.search(pattern, name):
                    if len(names) != leaf.ndim:
                        break
                    return names
            return (None,) * leaf.ndim

        return jax.tree_util.tree_map_with_path(axes, params)


def token_logprobs(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """log p(targets) under logits. logits [..., V] float32, targets [...] int -> [...].

    The arithmetic of ``jax.nn.log_softmax`` then a gather (same values, same gradients),
    with the target picked by a one-hot select instead of ``take_along_axis``: the gather's
    gradient is a scatter into a zeroed [..., V] buffer, the select's an elementwise op
    that XLA fuses into the softmax gradient (~6% of a CPU PPO step; issue 19).
    """
    x = logits.astype(jnp.float32)
    shifted = x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True))
    hit = jnp.arange(x.shape[-1], dtype=jnp.int32) == targets[..., None].astype(jnp.int32)
    picked = jnp.sum(jnp.where(hit, shifted, 0.0), axis=-1)
    return picked - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1))


def entropy(logits: jax.Array) -> jax.Array:
    """Entropy of the softmax over the last axis: [..., V] -> [...]."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)
