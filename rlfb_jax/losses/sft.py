"""Supervised fine-tuning: token cross-entropy on completion tokens only."""

from __future__ import annotations

import jax.numpy as jnp

from rlfb_jax.losses.registry import register_loss
from rlfb_jax.losses.sequence import sequence_logprobs, target_mask


@register_loss("sft")
def sft_loss(params, batch, *, model, slot: str = "policy"):
    """Mean negative log-likelihood of completion tokens.

    batch: a sequence batch (see `rlfb_jax.losses.sequence`), optionally with ``weights`` [B]
    (per-example weights, e.g. rewards for reward-weighted regression as in ReST-EM).
    Returns (loss, metrics); ``sft/tokens`` and ``sft/nll_sum`` are the exact sums, so
    averages across micro-batches and hosts stay exact.
    """
    logp, _, _ = sequence_logprobs(model, params[slot], batch)
    mask = target_mask(batch)
    if "weights" in batch:
        mask = mask * batch["weights"][:, None].astype(jnp.float32)
    nll_sum = -jnp.sum(logp * mask)
    count = jnp.sum(mask)
    loss = nll_sum / jnp.maximum(count, 1e-6)
    return loss, {"loss/sft": loss, "sft/tokens": count, "sft/nll_sum": nll_sum}
