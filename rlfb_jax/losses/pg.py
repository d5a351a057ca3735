"""Policy-gradient losses: REINFORCE ("pg"), PPO ("ppo") and GSPO ("gspo"), with value loss,
entropy bonus and an optional KL-to-reference term.

Batch keys (the sequence batch of `rlfb_jax.losses.sequence` plus, all [B, L-1] float32 and
aligned with ``tokens[:, 1:]``):

* ``advantages`` (both losses), e.g. from `rlfb_jax.losses.advantages`;
* ``old_logprobs``: log-probs of the tokens under the policy that sampled them ("ppo");
* ``ref_logprobs``: under the frozen reference (for ``kl_in_loss_beta`` and ``kl/*`` metrics);
* ``returns``: value targets (when a value function is trained, ``value_slot`` not None);
* ``old_values``: the values at sampling time (for the clipped value loss, ``value_clip``);
* ``kl_beta`` [B] float32 (optional): the KL coefficient as data, one copy per row (an
  adaptive controller's beta changes every iteration without recompiling the loss).

Shared hparams:

* ``aggregation``: how per-token terms become a scalar: "token_mean" (mean over all
  completion tokens of the batch), "seq_mean" (mean over sequences of each sequence's token
  mean) or "seq_sum_norm" (token sum / (B * norm_len), Dr. GRPO; norm_len defaults to L-1);
* ``value_slot``: None (no value function), "policy" (value head on the policy's backbone,
  heads=("value",)) or "value" (a separate critic in ``params["value"]``, described by
  ``value_model``, default ``model``); ``vf_coef`` weighs the value loss, ``value_clip`` the
  PPO value clipping range (None: plain squared error);
* ``ent_coef``: entropy bonus weight (loss -= ent_coef * entropy);
* ``temperature``: the sampling temperature T. Log-probs, ratios, entropy and the KL term
  are those of softmax(logits / T), the distribution the rollout drew from (so at the
  sampling parameters the PPO ratio is 1). Top-k / top-p truncation is left out: with it
  the sampler's probability of a token is q = p_T / M (M: the p_T-mass of the kept
  tokens), so the ratio is p_T,new / p_T,old rather than q_new / q_old = that times
  M_old / M_new, and k1 averages log p_T - log p_ref,T over samples of q (the truncation
  counts as part of the sampler, as in the usual RL stacks). ``old_logprobs`` and
  ``ref_logprobs`` must be scored at the same T (`rlfb_jax.algos.pg_batch.Scorer` does);
* ``kl_in_loss_beta`` / ``kl_estimator``: beta * KL(pi || ref) added to the loss with an
  estimator of `rlfb_jax.losses.kl` (needs ``ref_logprobs``); a static float. With
  ``batch["kl_beta"]`` the coefficient is that data instead (give one or the other).

Metrics: ``loss/total``, ``loss/pg``, ``loss/entropy``, ``loss/value``, ``loss/kl``,
``policy/entropy``, ``kl/mean`` (k1 token mean vs the reference), ``kl/k3_mean`` (k3 token
mean, >= 0 per token), ``kl/seq_mean`` (mean per-sequence k1 sum, the quantity the adaptive
controller targets), ``value/*``, ``ppo/*``. These KL metrics are measured during the update,
on the rollout's tokens, with the policy's current parameters; once the policy has moved
off the sampler, k1's average can be negative (seen in first iterations, where the reference
is the sampler), while k3's cannot;
``tokens/count`` with the token sums ``policy/entropy_sum``, ``kl/sum``, ``ppo/clip_count``
keep averages exact across micro-batches and hosts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlfb_jax.losses.kl import get_kl_estimator, k1, k3
from rlfb_jax.losses.registry import register_loss
from rlfb_jax.losses.sequence import masked_mean, sequence_logprobs, target_mask

AGGREGATIONS = ("token_mean", "seq_mean", "seq_sum_norm")
_ROLLOUT_KEYS = ("advantages", "old_logprobs", "ref_logprobs", "returns", "old_values",
                 "kl_beta")


def aggregate(x: jax.Array, mask: jax.Array, mode: str = "token_mean",
              norm_len: int | None = None) -> jax.Array:
    """Per-token values x [B, T] to a scalar over mask [B, T] (see the module docstring).

    "seq_mean" skips sequences with an empty mask; "seq_sum_norm" divides by B * norm_len
    (norm_len defaults to T), a constant, so long sequences are not down-weighted.
    """
    x, mask = jnp.asarray(x, jnp.float32), jnp.asarray(mask, jnp.float32)
    if mode == "token_mean":
        return masked_mean(x, mask)
    if mode == "seq_mean":
        per_seq_n = jnp.sum(mask, axis=1)
        per_seq = jnp.sum(x * mask, axis=1) / jnp.maximum(per_seq_n, 1.0)
        return masked_mean(per_seq, (per_seq_n > 0).astype(jnp.float32))
    if mode == "seq_sum_norm":
        length = x.shape[1] if norm_len is None else norm_len
        return jnp.sum(x * mask) / (x.shape[0] * length)
    raise ValueError(f"unknown aggregation {mode!r}; expected one of {', '.join(AGGREGATIONS)}")


def ppo_clip_objective(logprobs, old_logprobs, advantages, clip_eps: float = 0.2,
                       clip_eps_high: float | None = None, dual_clip: float | None = None):
    """Per-token PPO clipped surrogate loss (Schulman et al. 2017, eq. 7), all [B, T] float32.

    loss_t = -min(r_t A_t, clip(r_t, 1 - eps, 1 + eps_high) A_t), r_t = exp(logp - old_logp).
    ``clip_eps_high`` (default ``clip_eps``) allows an asymmetric range (DAPO's clip-higher).
    ``dual_clip`` = c > 1 (Ye et al. 2020) also bounds the loss for A_t < 0 by -c A_t, so
    a huge ratio on a bad token cannot blow the update up.

    Returns (loss, ratio, clipped) where ``clipped`` is 1.0 where the clipped branch is the
    active one (the token's gradient is zero).
    """
    high = clip_eps if clip_eps_high is None else clip_eps_high
    ratio = jnp.exp(logprobs - old_logprobs)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + high) * advantages
    objective = jnp.minimum(unclipped, clipped)
    is_clipped = clipped < unclipped
    if dual_clip is not None:
        lower = dual_clip * advantages
        is_clipped = is_clipped | ((advantages < 0) & (objective < lower))
        objective = jnp.where(advantages < 0, jnp.maximum(objective, lower), objective)
    return -objective, ratio, is_clipped.astype(jnp.float32)


def clipped_value_loss(values, returns, old_values=None, value_clip: float | None = 0.2):
    """Per-token value loss [B, T]: 0.5 * max((V - R)^2, (V_clip - R)^2) with
    V_clip = V_old + clip(V - V_old, -c, c) (the PPO value clipping of Schulman's baselines
    implementation); 0.5 * (V - R)^2 when ``value_clip`` is None.

    Returns (loss, clipped) with ``clipped`` 1.0 where the clipped error is the larger one.
    """
    err = jnp.square(values - returns)
    if value_clip is None:
        return 0.5 * err, jnp.zeros_like(err)
    if old_values is None:
        raise ValueError("value_clip needs batch['old_values']; set value_clip=None to drop it")
    v_clip = old_values + jnp.clip(values - old_values, -value_clip, value_clip)
    err_clip = jnp.square(v_clip - returns)
    return 0.5 * jnp.maximum(err, err_clip), (err_clip > err).astype(jnp.float32)


def explained_variance(values, returns, mask) -> jax.Array:
    """1 - Var(R - V) / Var(R) over the mask (0 when the returns are constant)."""
    var_r = masked_mean(jnp.square(returns - masked_mean(returns, mask)), mask)
    resid = returns - values
    var_e = masked_mean(jnp.square(resid - masked_mean(resid, mask)), mask)
    return jnp.where(var_r > 1e-8, 1.0 - var_e / jnp.maximum(var_r, 1e-8), 0.0)


def _values(params, batch, hidden, model, value_slot, value_model):
    """V(s_t) [B, L-1] aligned with the predicted tokens (position t chooses token t+1)."""
    critic = model if value_model is None or value_slot == "policy" else value_model
    config = getattr(critic, "config", None)
    if config is not None and "value" not in config.heads:
        raise ValueError(f"value_slot={value_slot!r} needs a model config with "
                         f"heads=('value',), got heads={config.heads}")
    if value_slot == "policy":
        return model.bind(params["policy"]).value(hidden)[:, :-1]
    if value_slot == "value":
        out = critic.forward(params["value"], batch["tokens"],
                             attention_mask=batch["attention_mask"], compute_logits=False)
        return critic.bind(params["value"]).value(out.hidden)[:, :-1]
    raise AssertionError(value_slot)  # checked in _common


def _loss(params, batch, model, surrogate, *, aggregation, norm_len, value_slot, value_model,
          vf_coef, value_clip, ent_coef, kl_in_loss_beta, kl_estimator, temperature):
    """The shared body: per-token policy surrogate + value + entropy + KL terms."""
    # Rollout quantities are constants of the update, even if the caller computed them inside
    # the differentiated function.
    batch = {k: jax.lax.stop_gradient(v) if k in _ROLLOUT_KEYS else v for k, v in batch.items()}
    mask = target_mask(batch)
    logp, ent, hidden = sequence_logprobs(model, params["policy"], batch, with_entropy=True,
                                          temperature=temperature)
    pg_tok, metrics = surrogate(logp, batch, mask)

    def agg(x):
        return aggregate(x, mask, aggregation, norm_len)

    pg = agg(pg_tok)
    if not ent_coef:  # a metric only: no backward pass through the [B, T, V] softmax
        ent = jax.lax.stop_gradient(ent)
    ent_mean = agg(ent)
    total = pg - ent_coef * ent_mean
    count = jnp.sum(mask)
    sg = jax.lax.stop_gradient
    metrics.update({
        "loss/pg": pg,
        "loss/entropy": -ent_coef * ent_mean,
        "policy/entropy": masked_mean(sg(ent), mask),
        "policy/entropy_sum": jnp.sum(sg(ent) * mask),
        "policy/logprob": masked_mean(sg(logp), mask),
        "tokens/count": count,
        "adv/mean": masked_mean(batch["advantages"], mask),
    })

    if "ref_logprobs" in batch:
        ref = batch["ref_logprobs"]
        kl_tok = sg(k1(logp, ref))
        metrics["kl/mean"] = masked_mean(kl_tok, mask)
        metrics["kl/k3_mean"] = masked_mean(sg(k3(logp, ref)), mask)
        metrics["kl/sum"] = jnp.sum(kl_tok * mask)
        metrics["kl/seq_mean"] = jnp.sum(kl_tok * mask) / mask.shape[0]
    if "kl_beta" in batch and kl_in_loss_beta:
        raise ValueError("the KL coefficient comes either from batch['kl_beta'] or from "
                         f"kl_in_loss_beta={kl_in_loss_beta}, not both")
    if kl_in_loss_beta or "kl_beta" in batch:
        if "ref_logprobs" not in batch:
            raise ValueError("a KL term in the loss needs batch['ref_logprobs']")
        k = get_kl_estimator(kl_estimator)(logp, batch["ref_logprobs"])
        if "kl_beta" in batch:  # [B]: the same value on every row, split with the rows
            kl_loss = agg(batch["kl_beta"][:, None] * k)
        else:
            kl_loss = kl_in_loss_beta * agg(k)
        total = total + kl_loss
        metrics["loss/kl"] = kl_loss

    if value_slot is not None:
        values = _values(params, batch, hidden, model, value_slot, value_model)
        returns = batch["returns"]
        v_tok, v_clipped = clipped_value_loss(values, returns, batch.get("old_values"),
                                              value_clip)
        v_loss = agg(v_tok)
        total = total + vf_coef * v_loss
        metrics.update({
            "loss/value": v_loss,
            "value/mean": masked_mean(sg(values), mask),
            "value/clip_frac": masked_mean(v_clipped, mask),
            "value/explained_variance": explained_variance(sg(values), returns, mask),
        })
    metrics["loss/total"] = total
    return total, metrics


def _common(aggregation="token_mean", norm_len=None, value_slot=None, value_model=None,
            vf_coef=0.5, value_clip=0.2, ent_coef=0.0, kl_in_loss_beta=0.0, kl_estimator="k3",
            temperature=1.0):
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; "
                         f"expected one of {', '.join(AGGREGATIONS)}")
    if value_slot not in (None, "policy", "value"):
        raise ValueError(f"value_slot must be None, 'policy' or 'value', got {value_slot!r}")
    return dict(aggregation=aggregation, norm_len=norm_len, value_slot=value_slot,
                value_model=value_model, vf_coef=vf_coef, value_clip=value_clip,
                ent_coef=ent_coef, kl_in_loss_beta=kl_in_loss_beta, kl_estimator=kl_estimator,
                temperature=float(temperature))


@register_loss("pg")
def pg_loss(params, batch, *, model, value_clip=None, **hparams):
    """REINFORCE (Williams 1992): per-token loss -A_t * log pi(x_t), A from the batch.

    With a baseline folded into ``advantages`` this is REINFORCE with a baseline (batch mean,
    RLOO, CodeRL's greedy baseline or a learned value). Value clipping is off by default
    (it needs ``old_values``). Hparams: see the module docstring.
    """

    def surrogate(logp, batch, mask):
        return -batch["advantages"] * logp, {}

    return _loss(params, batch, model, surrogate,
                 **_common(value_clip=value_clip, **hparams))


@register_loss("ppo")
def ppo_loss(params, batch, *, model, clip_eps=0.2, clip_eps_high=None, dual_clip=None,
             **hparams):
    """PPO (Schulman et al. 2017): the clipped surrogate of eq. 7 (optionally dual-clipped) +
    vf_coef * clipped value loss - ent_coef * entropy (eq. 9) + optional beta * KL(pi || ref).

    Needs ``old_logprobs``. Extra metrics: ``ppo/clip_frac`` (fraction of tokens whose clipped
    branch is active), ``ppo/clip_count``, ``ppo/approx_kl`` (k3 estimate of KL(old || new)),
    ``ppo/ratio_mean``, ``ppo/ratio_max``.
    """

    def surrogate(logp, batch, mask):
        loss, ratio, clipped = ppo_clip_objective(
            logp, batch["old_logprobs"], batch["advantages"], clip_eps, clip_eps_high, dual_clip)
        sg_log_ratio = jax.lax.stop_gradient(logp - batch["old_logprobs"])
        metrics = {
            "ppo/clip_frac": masked_mean(clipped, mask),
            "ppo/clip_count": jnp.sum(clipped * mask),
            "ppo/approx_kl": masked_mean(jnp.expm1(sg_log_ratio) - sg_log_ratio, mask),
            "ppo/ratio_mean": masked_mean(jax.lax.stop_gradient(ratio), mask),
            "ppo/ratio_max": jnp.max(jnp.where(mask > 0, jax.lax.stop_gradient(ratio), 0.0)),
        }
        return loss, metrics

    return _loss(params, batch, model, surrogate, **_common(**hparams))


def gspo_objective(logprobs, old_logprobs, advantages, mask, clip_eps: float = 3e-4,
                   clip_eps_high: float | None = 4e-4):
    """GSPO's sequence-level clipped surrogate (Zheng et al. 2025, eqs. 5-7), per sequence.

    s_i = (pi(y_i) / pi_old(y_i))^(1 / |y_i|) = exp(mean_t (logp_t - old_logp_t)) over the
    row's masked tokens, and loss_i = -min(s_i A_i, clip(s_i, 1 - eps, 1 + eps_high) A_i)
    with A_i the row's mean token advantage (the group advantage when it is constant over
    the row). Inputs [B, T] float32; returns (loss [B], s [B], clipped [B] float32: 1.0
    where the clipped branch is active). Rows with an empty mask give 0. The paper's
    ranges are tiny (3e-4, 4e-4) because s_i is a per-token geometric mean.
    """
    mask = jnp.asarray(mask, jnp.float32)
    n = jnp.maximum(jnp.sum(mask, axis=1), 1.0)
    log_s = jnp.sum((logprobs - old_logprobs) * mask, axis=1) / n
    adv = jnp.sum(advantages * mask, axis=1) / n
    s = jnp.exp(log_s)
    high = clip_eps if clip_eps_high is None else clip_eps_high
    unclipped = s * adv
    clipped = jnp.clip(s, 1.0 - clip_eps, 1.0 + high) * adv
    valid = jnp.sum(mask, axis=1) > 0
    loss = jnp.where(valid, -jnp.minimum(unclipped, clipped), 0.0)
    return loss, s, (valid & (clipped < unclipped)).astype(jnp.float32)


@register_loss("gspo")
def gspo_loss(params, batch, *, model, clip_eps=3e-4, clip_eps_high=4e-4,
              aggregation="seq_mean", **hparams):
    """GSPO (Zheng et al. 2025): `gspo_objective`, the sequence-level ratio in place of
    PPO's per-token one, + the shared value / entropy / KL terms. Its per-sequence loss
    sits on every token of the row, so ``aggregation="seq_mean"`` (the default) averages
    over sequences as the paper's 1/G sum_i does. Needs ``old_logprobs``. Metrics:
    ``gspo/clip_frac`` (fraction of sequences clipped), ``gspo/ratio_mean``."""

    def surrogate(logp, batch, mask):
        loss, s, clipped = gspo_objective(logp, batch["old_logprobs"], batch["advantages"],
                                          mask, clip_eps, clip_eps_high)
        rows = (jnp.sum(mask, axis=1) > 0).astype(jnp.float32)
        metrics = {"gspo/clip_frac": masked_mean(clipped, rows),
                   "gspo/ratio_mean": masked_mean(jax.lax.stop_gradient(s), rows)}
        return loss[:, None] * mask, metrics

    return _loss(params, batch, model, surrogate,
                 **_common(aggregation=aggregation, **hparams))


# Their **hparams all go to `_common`: `check_loss` checks config names against it.
pg_loss.hparams_to = ppo_loss.hparams_to = gspo_loss.hparams_to = _common
