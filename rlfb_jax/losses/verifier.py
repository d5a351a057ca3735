"""The verifier loss: binary cross-entropy on a scalar score head, plus an optional LM term.

The verifier (LEVER, Ni et al. 2023; Cobbe et al. 2021, "Training Verifiers to Solve Math
Word Problems") is the language model with a scalar ``score`` head, trained in the
``"verifier"`` slot of the TrainState to predict whether a program is correct from
the prompt, the program and (for LEVER) its execution result. The score is read at the
last real token of each row.

Batch (a sequence batch, see `rlfb_jax.losses.sequence`, plus):

* ``labels`` [B] float32: 1 for a correct program, 0 otherwise;
* ``weights`` [B] float32 (optional): per-row weights (class balancing, duplicate counts);
  rows of weight 0 are padding;
* ``loss_mask`` [B, L] bool: the program's tokens, for the optional joint LM objective
  (Cobbe et al. 2021, section 4.2: a language-modeling term keeps the backbone's features).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlfb_jax.losses.registry import register_loss
from rlfb_jax.losses.sequence import head_logprobs
from rlfb_jax.models.lm import token_logprobs


def last_token_index(attention_mask: jax.Array) -> jax.Array:
    """[B] int32 index of the last True of each row of attention_mask [B, L] (0 if none)."""
    length = attention_mask.shape[1]
    rev = jnp.argmax(attention_mask[:, ::-1].astype(jnp.int32), axis=1)
    return jnp.where(attention_mask.any(axis=1), length - 1 - rev, 0).astype(jnp.int32)


def verifier_logits(model, params, batch):
    """Verifier logits [B] (read at the last real token) and the model's output (LM
    logits [B, L, V], unused ones compiled away, and final hidden states [B, L, D])."""
    m = model.bind(params)
    out = m.forward(batch["tokens"], attention_mask=batch["attention_mask"])
    scores = m.score(out.hidden)  # [B, L]
    idx = last_token_index(batch["attention_mask"])
    return jnp.take_along_axis(scores, idx[:, None], axis=1)[:, 0], out


def binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-row BCE with logits, [B] -> [B]: -y log sigmoid(s) - (1 - y) log sigmoid(-s).

    Written with log_sigmoid (smooth everywhere; a max/abs form has a zero subgradient at
    s = 0, exactly where a zero-initialized head starts)."""
    return -labels * jax.nn.log_sigmoid(logits) - (1.0 - labels) * jax.nn.log_sigmoid(-logits)


@register_loss("verifier")
def verifier_loss(params, batch, *, model, slot: str = "verifier", lm_coef: float = 0.0):
    """Weighted BCE of the verifier logit at the last real token (+ lm_coef x token NLL).

    loss = sum_b w_b BCE(s_b, y_b) / sum_b w_b + lm_coef * mean NLL(program tokens)

    Returns (loss, metrics). ``verifier/bce_sum`` and ``verifier/weight_sum`` (and
    ``verifier/nll_sum``, ``verifier/tokens``) are exact sums for averaging across
    micro-batches and hosts; ``verifier/accuracy`` is the weighted 0.5-threshold accuracy.
    """
    logits, out = verifier_logits(model, params[slot], batch)
    labels = batch["labels"].astype(jnp.float32)
    weights = batch.get("weights")
    weights = jnp.ones_like(labels) if weights is None else weights.astype(jnp.float32)
    per_row = binary_cross_entropy(logits, labels)
    wsum = jnp.sum(weights)
    bce_sum = jnp.sum(weights * per_row)
    bce = bce_sum / jnp.maximum(wsum, 1e-6)
    correct = ((logits > 0).astype(jnp.float32) == labels).astype(jnp.float32)
    metrics = {
        "loss/verifier": bce,
        "verifier/bce_sum": bce_sum,
        "verifier/weight_sum": wsum,
        "verifier/accuracy": jnp.sum(weights * correct) / jnp.maximum(wsum, 1e-6),
        "verifier/mean_prob": jnp.sum(weights * jax.nn.sigmoid(logits)) / jnp.maximum(wsum, 1e-6),
    }
    loss = bce
    if lm_coef:
        mask = batch["loss_mask"][:, 1:].astype(jnp.float32)
        targets = batch["tokens"][:, 1:]
        if 0 < int(model.config.logits_chunk) < targets.shape[1]:
            logp, _ = head_logprobs(model, params[slot], out.hidden[:, :-1], targets)
        else:
            logp = token_logprobs(out.logits[:, :-1], targets)
        nll_sum = -jnp.sum(logp * mask)
        count = jnp.sum(mask)
        nll = nll_sum / jnp.maximum(count, 1e-6)
        loss = loss + lm_coef * nll
        metrics.update({"loss/verifier_lm": nll, "verifier/nll_sum": nll_sum,
                        "verifier/tokens": count})
    return loss, metrics
