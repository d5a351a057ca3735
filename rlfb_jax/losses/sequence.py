"""Sequence batches and the per-token log-probabilities every loss starts from.

A sequence batch is a dict of arrays with leading dim B:

* ``tokens`` [B, L] int32: prompt (left-padded) followed by completion (right-padded);
* ``attention_mask`` [B, L] bool: False on padding;
* ``loss_mask`` [B, L] bool: True where the token is a completion token to predict.

Token t is predicted from position t-1, so per-token quantities live on [B, L-1] and are
aligned with ``tokens[:, 1:]``. `rlfb_jax.models.sampler.Rollout` converts to this layout.

``temperature`` T scores under softmax(logits / T), the distribution the sampler draws
from at temperature T before any top-k / top-p truncation (its ``sample_logprobs``):
policy-gradient losses score with the sampling temperature (see `rlfb_jax.losses.pg`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlfb_jax.models.lm import LanguageModel, Params, entropy, token_logprobs


def target_mask(batch) -> jax.Array:
    """[B, L-1] float32 mask of predicted tokens."""
    return batch["loss_mask"][:, 1:].astype(jnp.float32)


def sequence_logprobs(model: LanguageModel, params: Params, batch, with_entropy: bool = False,
                      temperature: float = 1.0):
    """log p_T(tokens[:, 1:]) [B, L-1] float32 under softmax(logits / temperature) (and its
    entropy [B, L-1] when asked), plus the model's final hidden states [B, L, D] for
    value/score heads. With ``model.config.logits_chunk`` set, the head runs in chunks
    (`head_logprobs`)."""
    tokens = batch["tokens"]
    if 0 < int(model.config.logits_chunk) < tokens.shape[1] - 1:
        out = model.forward(params, tokens, attention_mask=batch["attention_mask"],
                            compute_logits=False)
        logp, ent = head_logprobs(model, params, out.hidden[:, :-1], tokens[:, 1:],
                                  with_entropy, temperature)
        return logp, ent, out.hidden
    out = model.forward(params, tokens, attention_mask=batch["attention_mask"])
    logits = _tempered(out.logits[:, :-1], temperature)
    logp = token_logprobs(logits, tokens[:, 1:])
    return logp, (entropy(logits) if with_entropy else None), out.hidden


def _tempered(logits: jax.Array, temperature: float) -> jax.Array:
    if temperature <= 0:
        raise ValueError(f"scoring needs temperature > 0, got {temperature}")
    return logits if temperature == 1.0 else logits.astype(jnp.float32) / temperature


def head_logprobs(model: LanguageModel, params: Params, hidden, targets,
                  with_entropy: bool = False, temperature: float = 1.0):
    """log p_T(targets) [B, T] under softmax(logits / temperature) (and its entropy [B, T]
    or None) from final hidden states [B, T, D] through the model's vocabulary projection.

    With ``model.config.logits_chunk = C`` (0 < C < T) the head runs on C positions at a
    time: `jax.lax.map` over chunks of a `jax.checkpoint`-ed head, so neither the forward
    nor the backward pass keeps more than one chunk's [B, C, V] logits (the same values as
    all at once; the backward pass recomputes each chunk's logits)."""
    b, t, d = hidden.shape
    chunk = int(model.config.logits_chunk)
    if not 0 < chunk < t:
        logits = _tempered(model.logits(params, hidden), temperature)
        return token_logprobs(logits, targets), (entropy(logits) if with_entropy else None)
    n = -(-t // chunk)
    pad = n * chunk - t
    h = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0))).reshape(b, n, chunk, d).swapaxes(0, 1)
    y = jnp.pad(targets, ((0, 0), (0, pad))).reshape(b, n, chunk).swapaxes(0, 1)

    @jax.checkpoint
    def head(xs):
        h_c, y_c = xs
        logits = _tempered(model.logits(params, h_c), temperature)
        lp = token_logprobs(logits, y_c)
        return lp, (entropy(logits) if with_entropy else jnp.zeros_like(lp))

    lp, ent = jax.lax.map(head, (h, y))

    def unchunk(a):
        return a.swapaxes(0, 1).reshape(b, n * chunk)[:, :t]

    return unchunk(lp), (unchunk(ent) if with_entropy else None)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of x over mask (0 when the mask is empty)."""
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)
