"""The policy-gradient training batch: from a rollout's rows to advantages (PG and PPO).

    batch = training_batch(eps, tasks, prompt_len, completion_len, pad_id, token_rewards,
                           baseline)
    batch, informative = select_rows(rl, batch, n)                  # rl.update_rows
    logp, ref_logp, values = scorer.score(state.params, state.frozen, batch)
    adv, returns, seq_kl = scorer.advantages(batch, logp, ref_logp, values, beta)
    metrics = iteration_metrics(eps, update_metrics, times, seq_kl, beta, informative, wall)

Host pieces are numpy; the scorer's two functions are jitted once per run. Token-level
arrays are [B, L-1], aligned with ``tokens[:, 1:]`` (`rlfb_jax.losses.sequence`).

The KL penalty (``rl.kl.placement == "reward"``) is added after the estimator: the
registered estimator sees the outcome rewards only (so GRPO normalizes outcomes, never
KL noise, Shao et al. 2024), and the per-token -beta * KL joins as its returns-to-go
(Ziegler et al. 2019, eq. 2). Estimators with a learned critic ("gae", "value_baseline")
see outcome + KL as their reward, since the critic models the whole return, and so does
"reinforce_pp", whose batch normalization covers the KL term (Hu 2025).

Rows whose execution ended in ``sandbox_error`` (an infrastructure failure: no verdict on
the program) are masked out: empty ``loss_mask`` / ``target_mask``, so no gradient, no
place in their group's baseline or normalization, and not counted as failures in the
pass and compile rates (``exec/sandbox_error_frac`` logs how many there were). The same
holds for the rows of a prompt whose greedy baseline (CodeRL) was a sandbox error.

Registered token rewards (RLTF's error-line penalty) are per-token weights, not rewards:
they are added to the advantage of their own token and never accumulate into
returns-to-go (RLTF, Liu et al. 2023, sec. 3.3: an error-line token's weight is R - 0.3).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rlfb_jax.core.batching import make_sequence_batch
from rlfb_jax.core.rollout import Episodes
from rlfb_jax.data.tokenizer import token_offsets
from rlfb_jax.executor import STATUSES
from rlfb_jax.losses import compute_advantages, kl_penalty_rewards
from rlfb_jax.losses.advantages import discounted_returns
from rlfb_jax.losses.critic import critic_logits, outcome_class, token_class_probs
from rlfb_jax.losses.sequence import sequence_logprobs
from rlfb_jax.rewards import (
    get_token_reward,
    overlong_penalty,
    sandbox_errors,
    span_token_rewards,
)


def place_rewards(seq_rewards: np.ndarray, extra: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Token rewards [B, T] float32: each sequence reward [B] on its row's last masked token,
    plus the per-token `extra` [B, T], zero off `mask` [B, T]."""
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    out = np.array(extra, np.float32)
    rows = np.arange(mask.shape[0])
    has = mask.any(axis=1)
    out[rows[has], last[has]] += seq_rewards[has]
    return out * mask


class TokenRewards:
    """The registered token rewards of ``rl.token_rewards`` ({name: kwargs}) as [B, T]
    per-token values: each term's character spans of a completion are mapped onto the
    completion's tokens (`rlfb_jax.rewards.span_token_rewards`)."""

    def __init__(self, spec: Mapping[str, Mapping[str, Any]], tokenizer):
        self.terms = [(get_token_reward(name), dict(kwargs)) for name, kwargs in spec.items()]
        self.tokenizer = tokenizer

    def __call__(self, tasks, texts, outcomes, comp_ids, mask: np.ndarray) -> np.ndarray:
        """tasks, texts, outcomes, comp_ids: [B] per row; mask [B, T] completion tokens."""
        out = np.zeros(mask.shape, np.float32)
        for fn, kwargs in self.terms:
            for b, (task, text, outcome) in enumerate(zip(tasks, texts, outcomes)):
                spans = fn(task, text, outcome, **kwargs)
                if spans:
                    offs = token_offsets(self.tokenizer, comp_ids[b])
                    row = span_token_rewards(spans, offs, len(offs))
                    pos = np.flatnonzero(mask[b])[: len(row)]
                    out[b, pos] += row[: len(pos)]
        return out


def training_batch(eps: Episodes, tasks: Sequence[Any], prompt_len: int,
                   completion_len: int, pad_id: int, token_rewards: TokenRewards,
                   baseline: np.ndarray, overlong_cache: int = 0) -> dict[str, np.ndarray]:
    """The rollout's rows as one fixed-shape batch (nothing recompiles between iterations).

    tokens / attention_mask / loss_mask [B, P+N]; target_mask [B, P+N-1] float32 (the
    completion tokens); token_rewards [B, P+N-1] (the sequence reward on the last
    completion token); token_bonus [B, P+N-1] (the registered token rewards, added to the
    advantage of their own token by `Scorer`); seq_rewards [B] and baseline [B] float32.
    Sandbox-error rows, and rows whose ``baseline`` is NaN (their greedy sample was a
    sandbox error), have empty masks (see the module docstring). ``overlong_cache`` > 0
    adds DAPO's soft overlong punishment (`rlfb_jax.rewards.overlong_penalty`, L_max =
    completion_len) to the sequence rewards.
    """
    n = len(eps.texts) // len(tasks)
    comp_ids = eps.completion_ids()
    batch = make_sequence_batch([p for p in eps.prompts for _ in range(n)], comp_ids,
                                prompt_len, completion_len, pad_id)
    batch.pop("truncated")
    baseline = np.asarray(baseline, np.float32)
    masked = sandbox_errors(eps.outcomes) | ~np.isfinite(baseline)
    batch["loss_mask"][masked] = False
    tmask = batch["loss_mask"][:, 1:]
    rows_tasks = [t for t in tasks for _ in range(n)]
    extra = token_rewards(rows_tasks, eps.texts, eps.outcomes, comp_ids, tmask)
    batch["target_mask"] = tmask.astype(np.float32)
    batch["seq_rewards"] = np.asarray(eps.rewards, np.float32)
    if overlong_cache:  # masked rows have length 0: no penalty
        batch["seq_rewards"] += overlong_penalty(tmask.sum(axis=1), completion_len,
                                                 overlong_cache)
    batch["token_rewards"] = place_rewards(batch["seq_rewards"], np.zeros_like(extra), tmask)
    batch["token_bonus"] = np.asarray(extra, np.float32) * tmask
    batch["baseline"] = np.where(masked, 0.0, baseline).astype(np.float32)
    batch["outcome_class"] = np.array([outcome_class(o.status) for o in eps.outcomes], np.int32)
    return batch


def sequence_advantages(rl, seq_rewards, n: int, baseline, valid=None) -> np.ndarray:
    """Outcome advantages [B] of whole sequences (the registered estimator applied to one
    reward per row), with ``rl.adv_floor``; used to pick and weight the update rows.
    ``valid`` [B] bool (default all): rows masked out get 0 and leave their group's
    statistics."""
    r = np.asarray(seq_rewards, np.float32)[:, None]
    mask = np.ones_like(r, bool) if valid is None else np.asarray(valid, bool)[:, None]
    adv, _ = compute_advantages(rl.advantage, r, mask, group_size=n,
                                gamma=1.0, whiten=rl.whiten, baseline=baseline,
                                **rl.advantage_kwargs.to_dict())
    adv = np.asarray(adv, np.float32)[:, 0]
    if rl.adv_floor is not None:
        adv = np.maximum(adv, float(rl.adv_floor))
    return adv


def largest_rows(adv: np.ndarray, k: int) -> np.ndarray:
    """The k rows with the largest |advantage| (ties: lower index first), in index order."""
    order = np.argsort(-np.abs(adv), kind="stable")
    return np.sort(order[:k])


# estimators whose reward includes the KL penalty: a critic models the whole return, and
# REINFORCE++ normalizes outcome + KL together
KL_IN_REWARD_ESTIMATORS = ("gae", "value_baseline", "reinforce_pp")


def picks_by_advantage(rl) -> bool:
    """Whether the update rows are picked by |sequence advantage| (``rl.update_rows`` > 0,
    ``rl.row_select`` "advantage"): then they carry that advantage as their reward
    (`select_rows`) and the scorer's estimator is plain returns-to-go (`Scorer`)."""
    return bool(rl.update_rows) and rl.get("row_select", "advantage") == "advantage"


def select_rows(rl, batch: dict[str, np.ndarray], n: int,
                rng: np.random.Generator | None = None) -> tuple[dict[str, np.ndarray], float]:
    """With ``rl.update_rows`` > 0 and ``rl.row_select`` "random": update_rows / n prompts
    drawn uniformly by ``rng``, each with its n rows, unchanged (the scorer runs the
    configured estimator on them, a critic's included), and 1.0. With "advantage" (the
    default): the rows with the largest |sequence advantage|, whose
    token rewards become that advantage on the last completion token (the scorer then
    only adds the KL penalty's returns-to-go); the fraction of rows with a nonzero outcome
    advantage. Without: the batch as it is and 1.0.

    REINFORCE++ (``rl.advantage == "reinforce_pp"``) normalizes over the whole batch's
    tokens (Hu 2025), so its rows' advantage is (R - mu) / sigma with mu, sigma the
    token-weighted mean and std of every row's outcome R, and the picked rows get
    ``kl_scale`` = 1 / sigma [B]: the scorer divides their KL penalty by the same sigma.
    This is the path without ``update_rows`` except that the unscored rows' KL (about
    beta x a few nats against an outcome std of ~0.5) is left out of mu and sigma."""
    if not rl.update_rows:
        return batch, 1.0
    if not picks_by_advantage(rl):  # row_select "random"
        if rng is None:
            raise ValueError("select_rows: row_select='random' needs an rng")
        prompts = len(batch["seq_rewards"]) // n
        picked = np.sort(rng.choice(prompts, int(rl.update_rows) // n, replace=False))
        sel = (picked[:, None] * n + np.arange(n)).ravel()
        return {k: v[sel] for k, v in batch.items()}, 1.0
    scale = None
    if rl.advantage == "reinforce_pp":
        seq_adv, scale = batch_normalized_outcomes(batch["seq_rewards"],
                                                   batch["target_mask"].sum(axis=1))
    else:
        seq_adv = sequence_advantages(rl, batch["seq_rewards"], n, batch["baseline"],
                                      batch["target_mask"].any(axis=1))
    sel = largest_rows(seq_adv, int(rl.update_rows))
    out = {k: v[sel] for k, v in batch.items()}
    out["token_rewards"] = place_rewards(seq_adv[sel], np.zeros_like(out["target_mask"]),
                                         out["target_mask"] > 0)
    if scale is not None:
        out["kl_scale"] = np.full(len(sel), scale, np.float32)
    return out, float(np.mean(np.abs(seq_adv) > 1e-8))


def batch_normalized_outcomes(seq_rewards: np.ndarray, lengths: np.ndarray,
                              eps: float = 1e-8) -> tuple[np.ndarray, float]:
    """REINFORCE++'s normalization of outcome rewards [B] over the batch's tokens: each row
    counts once per token (``lengths`` [B]; rows without tokens get 0). Returns
    ((R - mu) / sigma [B] float32, 1 / sigma)."""
    r = np.asarray(seq_rewards, np.float64)
    w = np.asarray(lengths, np.float64)
    total = max(w.sum(), 1.0)
    mu = float((w * r).sum() / total)
    inv = 1.0 / float(np.sqrt((w * (r - mu) ** 2).sum() / total + eps))
    return np.where(w > 0, (r - mu) * inv, 0.0).astype(np.float32), inv


class Scorer:
    """The two jitted device steps before the update, built once per run.

    ``score(params, frozen, batch) -> (logp, ref_logp, values)``, each [B, L-1]: the
    sampled tokens' log-probs under the policy and the frozen reference, both at the
    sampling temperature ``rl.temperature`` (softmax(logits / T), what the sampler drew
    from before top-k / top-p; see `rlfb_jax.losses.pg`), and the critic's values (zeros
    without one; ``rl.value_slot`` "policy": the policy's value head, "value": the separate
    critic's).
    ``critic_weights(frozen, batch) -> [B, L-1]`` (with a critic, ``rl.critic_workdir``):
    CodeRL's token weights q(u | prompt, w_<=t), the frozen critic's probability of the
    outcome class the row's program had (``batch["outcome_class"]``), read after each
    token; put into the batch as ``critic_weights``, they multiply the outcome advantage.
    ``advantages(batch, logp, ref_logp, values, beta) -> (advantages, returns, seq_kl)``,
    [B, L-1], [B, L-1] and []: the registered estimator over the outcome rewards
    ``batch["token_rewards"]``, plus, when ``rl.kl.placement == "reward"``, the
    returns-to-go of the per-token penalty -beta * k(logp, ref_logp) (gamma ``rl.gamma``):

        A_t = A^outcome_t + sum_{s >= t} gamma^(s-t) (-beta k_s)

    (for `KL_IN_REWARD_ESTIMATORS` the penalty joins the estimator's reward instead), plus
    the token bonus ``batch["token_bonus"]`` [B, L-1] on its own token (no returns-to-go;
    not in ``returns``). ``returns`` get the same KL term. seq_kl is the mean per-sequence
    KL over the rows with tokens (what the adaptive controller tracks). ``rl.whiten``
    whitens the outcome part only.

    With ``rl.update_rows`` (rows picked by advantage) the rows already carry their outcome
    advantage on the last token (`select_rows`), so the estimator is plain returns-to-go
    ("reinforce", gamma 1, no whitening): both paths give the same advantages on the same
    rows. REINFORCE++'s rows
    also carry ``kl_scale`` [B], its batch normalization's 1 / sigma, which scales their
    KL penalty.
    """

    def __init__(self, lm, rl, group_size: int, critic_lm=None):
        critic = rl.value_slot
        kl_in_reward = rl.kl.placement == "reward"
        estimator = rl.kl.estimator
        kl_gamma = float(rl.gamma)
        temperature = float(rl.temperature)
        if picks_by_advantage(rl):
            name, kwargs = "reinforce", dict(gamma=1.0, whiten=False)
        else:
            name = rl.advantage
            kwargs = dict(gamma=rl.gamma, whiten=rl.whiten, group_size=group_size,
                          **rl.advantage_kwargs.to_dict())
        kl_in_estimator = name in KL_IN_REWARD_ESTIMATORS

        score_rows = int(rl.get("score_rows", 0))

        @jax.jit
        def score(params, frozen, batch):
            def one(rows):  # the same values per row, whatever the chunking
                logp, _, hidden = sequence_logprobs(lm, params["policy"], rows,
                                                    temperature=temperature)
                ref_logp, _, _ = sequence_logprobs(lm, frozen["reference"], rows,
                                                   temperature=temperature)
                if critic == "value":  # a separate critic network
                    hidden = lm.forward(params["value"], rows["tokens"],
                                        attention_mask=rows["attention_mask"],
                                        compute_logits=False).hidden
                values = (lm.bind(params[critic]).value(hidden)[:, :-1] if critic
                          else jnp.zeros_like(logp))
                return logp, ref_logp, values

            rows = {k: batch[k] for k in ("tokens", "attention_mask")}
            return map_row_chunks(one, rows, score_rows)

        @jax.jit
        def advantages(batch, logp, ref_logp, values, beta):
            mask = batch["target_mask"]
            kl_tok = kl_penalty_rewards(logp, ref_logp, mask, 1.0, estimator)  # -KL per token
            penalty = beta * kl_tok if kl_in_reward else jnp.zeros_like(kl_tok)
            if "kl_scale" in batch:  # REINFORCE++ on picked rows: the batch's 1 / sigma
                penalty = penalty * batch["kl_scale"][:, None]
            rewards = batch["token_rewards"] + (penalty if kl_in_estimator else 0.0)
            adv, ret = compute_advantages(name, rewards, mask, values=values,
                                          baseline=batch["baseline"], **kwargs)
            if "critic_weights" in batch:  # CodeRL: each token weighted by q(u_true | w_<=t)
                adv = adv * batch["critic_weights"]
            if not kl_in_estimator:
                kl_to_go = discounted_returns(penalty, mask, kl_gamma)
                adv, ret = adv + kl_to_go, ret + kl_to_go
            if "token_bonus" in batch:
                adv = adv + batch["token_bonus"] * mask
            rows = jnp.any(mask > 0, axis=1)  # masked (sandbox-error) rows have no KL
            seq_kl = jnp.sum(-jnp.sum(kl_tok, axis=1)) / jnp.maximum(jnp.sum(rows), 1)
            return adv, ret, seq_kl

        @jax.jit
        def critic_weights(frozen, batch):
            logits = critic_logits(critic_lm, frozen["critic"], batch)[:, 1:]
            return token_class_probs(logits, batch["outcome_class"]) * batch["target_mask"]

        self.score = score
        self.advantages = advantages
        self.critic_weights = critic_weights if critic_lm is not None else None


def map_row_chunks(fn, rows: dict[str, jax.Array], max_rows: int):
    """fn(rows) for a dict of [B, ...] arrays, run on equal chunks of at most max_rows rows
    (`jax.lax.map`, one chunk at a time; max_rows <= 0 or >= B: all at once). Chunk j holds
    rows j, j + n, j + 2n, ... (n chunks), so a batch sharded over its rows keeps every
    chunk spread over all devices. B need not divide evenly: n is the smallest divisor of B
    that keeps chunks within max_rows. fn's outputs are [rows, ...] arrays, returned in the
    input's row order."""
    b = next(iter(rows.values())).shape[0]
    if max_rows <= 0 or b <= max_rows:
        return fn(rows)
    n = next(k for k in range(-(-b // max_rows), b + 1) if b % k == 0)
    c = b // n

    def split(x):  # [B, ...] -> [n, c, ...]: chunk j = rows j, j + n, ...
        return x.reshape(c, n, *x.shape[1:]).swapaxes(0, 1)

    def join(y):  # [n, c, ...] -> [B, ...]
        return y.swapaxes(0, 1).reshape(b, *y.shape[2:])

    out = jax.lax.map(fn, jax.tree.map(split, rows))
    return jax.tree.map(join, out)


def update_batch(rl, batch, logp, ref_logp, advantages, returns, values, beta):
    """The update's batch: the scored batch's tokens and masks [B, L], old / reference
    log-probs, advantages, returns and old values [B, L-1]; with ``rl.kl.placement ==
    "loss"`` also ``kl_beta`` [B], the controller's current beta as data (an adaptive beta
    reaches the jitted loss without recompiling it)."""
    out = {k: batch[k] for k in ("tokens", "attention_mask", "loss_mask")}
    out.update(old_logprobs=logp, ref_logprobs=ref_logp, advantages=advantages,
               returns=returns, old_values=values)
    if rl.kl.placement == "loss":
        out["kl_beta"] = jnp.full(logp.shape[:1], beta, jnp.float32)
    return out


def iteration_metrics(eps: Episodes, update: dict, times: dict, kl: float, beta: float,
                      informative: float, wall: float) -> dict[str, float]:
    """The iteration's flat metrics: update, rewards, outcomes, KL, speed and time split."""
    statuses = collections.Counter(o.status for o in eps.outcomes)
    rows = len(eps.texts)
    judged = max(rows - statuses["sandbox_error"], 1)  # rows with a verdict on the program
    n_tok = int(eps.mask.sum())
    sample, upd = times["time/sample_s"], times["time/update_s"]
    return {
        **{k: float(v) for k, v in update.items()},
        **eps.reward_metrics,
        "rl/pass_rate": statuses["passed"] / judged,
        "rl/compile_rate": 1 - statuses["syntax_error"] / judged,
        **{f"exec/{s}_frac": statuses[s] / rows for s in STATUSES if s != "passed"},
        "kl/seq_kl": kl,
        "kl/beta": beta,
        "rl/completion_len": n_tok / rows,
        # rows that used every one of the max_new_tokens: truncated programs (unless their
        # last token was the stop token); what DAPO's overlong shaping acts on
        "rl/max_len_frac": float(eps.mask.all(axis=1).mean()),
        # rows with a nonzero outcome advantage (1.0 unless rows are picked by advantage)
        "rl/informative_frac": informative,
        "perf/tokens_per_s": n_tok / max(sample, 1e-9),
        "perf/programs_per_s": rows / max(wall, 1e-9),
        **times,
        "time/iteration_s": wall,
        "time/hiding_ratio": wall / max(sample + upd, 1e-9),
    }
