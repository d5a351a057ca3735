"""Sequence batches and the per-token log-probabilities every loss starts from.

A sequence batch is a dict of arrays with leading dim B:

* ``tokens`` [B, L] int32: prompt (left-padded) followed by completion (right-padded);
* ``attention_mask`` [B, L] bool: False on padding;
* ``loss_mask`` [B, L] bool: True where the token is a completion token to predict.

Token t is predicted from position t-1, so per-token quantities live on [B, L-1] and are
aligned with ``tokens[:, 1:]``. `rlfb_jax.models.sampler.Rollout` converts to this layout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlfb_jax.models.lm import LanguageModel, Params, entropy, token_logprobs


def target_mask(batch) -> jax.Array:
    """[B, L-1] float32 mask of predicted tokens."""
    return batch["loss_mask"][:, 1:].astype(jnp.float32)


def sequence_logprobs(model: LanguageModel, params: Params, batch, with_entropy: bool = False):
    """log p(tokens[:, 1:]) [B, L-1] float32 (and the entropy [B, L-1] when asked), plus
    the model's final hidden states [B, L, D] for value/score heads."""
    out = model.forward(params, batch["tokens"], attention_mask=batch["attention_mask"])
    logits = out.logits[:, :-1]
    logp = token_logprobs(logits, batch["tokens"][:, 1:])
    ent = entropy(logits) if with_entropy else None
    return logp, ent, out.hidden


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of x over mask (0 when the mask is empty)."""
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)
