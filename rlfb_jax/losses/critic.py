"""CodeRL's critic (Le et al. 2022, section 3.2): the outcome class of a program, predicted
from (task, program prefix) at every program token.

The critic is the language model with a ``critic`` head (one logit per class of
`CRITIC_CLASSES`), trained in the ``"critic"`` slot of a TrainState with the ``"critic"``
loss: the cross-entropy of the program's outcome class at each of its tokens (hidden state
at token t: q(u | prompt, w_1..w_t)). Its two uses:

* policy-gradient weights: CodeRL's gradient -(r - b) sum_t q(u_true | w_<=t) grad log p(w_t)
  weights each token by the critic's probability of the outcome the program actually had
  (`token_class_probs`; ``rl.critic_workdir`` in PG/PPO);
* critical sampling: the prefix where the critic's probability of "passed" peaks is the
  part of a failed program worth keeping.

Batch (a sequence batch, see `rlfb_jax.losses.sequence`, plus): ``labels`` [B] int32, the
class index, -1 for rows to ignore (sandbox errors); ``loss_mask`` [B, L] bool, the
program's tokens; ``weights`` [B] float32 (optional): per-row weights, e.g. inverse class
frequencies (most programs fail their tests: unweighted, the critic learns the majority).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlfb_jax.losses.registry import register_loss
from rlfb_jax.losses.verifier import last_token_index

CRITIC_CLASSES = ("compile_error", "runtime_error", "failed_test", "passed")
_CLASS_OF_STATUS = {"syntax_error": 0, "runtime_error": 1, "timeout": 1, "memory_exceeded": 1,
                    "output_exceeded": 1, "wrong_answer": 2, "passed": 3}


def outcome_class(status: str) -> int:
    """The class index of an executor status; -1 for ``sandbox_error`` (no verdict)."""
    return _CLASS_OF_STATUS.get(status, -1)


def critic_logits(model, params, batch) -> jax.Array:
    """Outcome-class logits [B, L, C] at every position (position t has read tokens <= t)."""
    m = model.bind(params)
    out = m.forward(batch["tokens"], attention_mask=batch["attention_mask"])
    return m.critic(out.hidden)


def token_class_probs(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """softmax(logits)[..., label] [B, L] (0 where the label is -1)."""
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    got = jnp.take_along_axis(probs, jnp.maximum(labels, 0)[:, None, None], axis=-1)[..., 0]
    return jnp.where(labels[:, None] >= 0, got, 0.0)


@register_loss("critic")
def critic_loss(params, batch, *, model, slot: str = "critic"):
    """Mean cross-entropy of the outcome class over the program tokens of labelled rows
    (weighted by ``weights`` when the batch has them).

    Metrics: ``critic/ce``, ``critic/acc_last`` (argmax at the last program token),
    ``critic/tokens`` and ``critic/rows`` (exact counts, for averaging across calls)."""
    logits = critic_logits(model, params[slot], batch)
    labels = batch["labels"].astype(jnp.int32)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.maximum(labels, 0)[:, None, None], axis=-1)[..., 0]
    mask = batch["loss_mask"].astype(jnp.float32) * (labels[:, None] >= 0)
    tokens = jnp.sum(mask)
    w = mask * batch["weights"][:, None] if "weights" in batch else mask
    ce = jnp.sum(nll * w) / jnp.maximum(jnp.sum(w), 1e-8)
    last = last_token_index(batch["loss_mask"])
    pred = jnp.argmax(jnp.take_along_axis(logits, last[:, None, None], axis=1)[:, 0], axis=-1)
    rows = (labels >= 0).astype(jnp.float32)
    acc = jnp.sum((pred == labels) * rows) / jnp.maximum(jnp.sum(rows), 1.0)
    return ce, {"critic/ce": ce, "critic/acc_last": acc, "critic/tokens": tokens,
                "critic/rows": jnp.sum(rows)}
