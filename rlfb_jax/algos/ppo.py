"""Policy gradient and PPO from execution feedback (``config.algo = "pg"`` or ``"ppo"``).

One iteration:

    sample n programs per prompt (jitted sampler, chunk by chunk)
      -> execute chunk i in the executor pool while chunk i+1 is sampled
      -> rewards (host: execution levels, AST/data-flow match, RLTF line penalties)
      -> policy/reference log-probs and values in one jitted call
      -> token rewards (+ per-token KL penalty) -> advantages (registered estimator)
      -> K epochs x M minibatches of the registered loss in one jitted update (lax.scan)

The policy starts from the base model (`rlfb_jax.algos.base`), which is also the frozen KL
reference. "pg" is the same loop with the "pg" loss (REINFORCE with the chosen baseline)
and, by default, one epoch of one minibatch.
"""

from __future__ import annotations

import collections
import functools
import logging
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rlfb_jax.algos import common, register_algo
from rlfb_jax.algos.base import ensure_base
from rlfb_jax.algos.sft import default_config as sft_config
from rlfb_jax.core import sharding as shd
from rlfb_jax.core.batching import epoch_order, make_sequence_batch
from rlfb_jax.core.config import base_config
from rlfb_jax.core.optim import make_optimizer
from rlfb_jax.core.run import Run
from rlfb_jax.core.state import state_from_params
from rlfb_jax.core.step import make_epoch_update
from rlfb_jax.eval.policy_eval import ERROR_STATUSES, evaluate_policy
from rlfb_jax.executor import ExecutorPool
from rlfb_jax.losses import compute_advantages, get_loss, kl_penalty_rewards, make_kl_controller
from rlfb_jax.losses.advantages import discounted_returns
from rlfb_jax.losses.sequence import sequence_logprobs
from rlfb_jax.models.sampler import Sampler
from rlfb_jax.rewards import make_reward
from rlfb_jax.rewards.execution import rltf_error_line_penalty, span_token_rewards

log = logging.getLogger("rlfb_jax")


def default_config(algo: str = "ppo") -> ml_collections.ConfigDict:
    c = base_config()
    c.algo = algo
    c.base = sft_config()
    c.base_workdir = ""
    c.rl = ml_collections.ConfigDict(dict(
        iterations=40,
        prompts_per_iter=32,
        n_samples=8,
        chunk_prompts=8,  # prompts per sampling chunk (execution of one overlaps the next)
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=48,
        loss=algo,
        advantage="rloo" if algo == "pg" else "grpo",
        gamma=1.0,
        lam=0.95,
        whiten=False,
        epochs=1 if algo == "pg" else 2,
        minibatches=1 if algo == "pg" else 4,
        clip_eps=0.2,
        vf_coef=0.5,
        ent_coef=0.0,
        value_slot="",  # "" (no critic) or "policy" (value head on the policy backbone)
        aggregation="token_mean",
        rewards=ml_collections.ConfigDict({"coderl": 1.0}),
        line_penalty=0.0,  # RLTF fine-grained penalty on the error line's tokens (e.g. -0.3)
        workers=2,
        timeout=2.0,
        task_depths=(),  # train on synthetic tasks of these difficulties only (() = all)
        # > 0: update on this many rows per iteration, those with the largest |sequence
        # advantage| (all-equal groups of RLOO/GRPO carry no outcome signal; DAPO's dynamic
        # sampling drops them too). Only they are scored and trained on: the update costs
        # update_rows / (prompts_per_iter * n_samples) of a full one. Not with GAE.
        update_rows=0,
        # advantages below this are raised to it (e.g. 0.0: learn from successes only, as in
        # filtered behaviour cloning / RAFT); None: off
        adv_floor=None,
        kl=ml_collections.ConfigDict(dict(
            controller="fixed", beta=0.02, target=2.0, horizon=2000.0, estimator="k1",
            placement="reward",  # "reward" (per-token penalty, PPOCoder) or "loss"
        )),
    ))
    c.eval = c.base.eval.copy_and_resolve_references()
    c.eval.every = 10
    c.optimizer.learning_rate = 5e-5
    c.optimizer.schedule = "constant"
    c.optimizer.warmup_steps = 0
    c.train.log_every = 1
    c.train.checkpoint_every = 5
    return c


def _token_rewards(seq_rewards, extra, mask):
    """[B, T] rewards: the sequence reward on the last completion token + per-token extras."""
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    out = np.array(extra, np.float32)
    rows = np.arange(mask.shape[0])
    has = mask.any(axis=1)
    out[rows[has], last[has]] += seq_rewards[has]
    return out * mask


def sequence_advantages(rl, seq_rewards, n: int, baseline) -> np.ndarray:
    """Outcome advantages [B] of whole sequences (the registered estimator applied to one
    reward per row), with ``rl.adv_floor``; used to pick and weight the update rows."""
    r = np.asarray(seq_rewards, np.float32)[:, None]
    kwargs = dict(group_size=n, gamma=1.0, whiten=rl.whiten)
    if rl.advantage == "greedy_baseline":
        kwargs["baseline"] = baseline
    adv, _ = compute_advantages(rl.advantage, r, np.ones_like(r, bool), **kwargs)
    adv = np.asarray(adv, np.float32)[:, 0]
    if rl.adv_floor is not None:
        adv = np.maximum(adv, float(rl.adv_floor))
    return adv


def select_rows(adv: np.ndarray, k: int) -> np.ndarray:
    """The k rows with the largest |advantage| (ties: lower index first), in index order."""
    order = np.argsort(-np.abs(adv), kind="stable")
    return np.sort(order[:k])


def _token_offsets(tokenizer, ids):
    """Character span of each token of a completion, by incremental decoding."""
    offsets, prev = [], 0
    for i in range(len(ids)):
        cur = len(tokenizer.decode(ids[: i + 1], skip_special_tokens=True))
        offsets.append((prev, cur))
        prev = cur
    return offsets


class _Scorer:
    """Jitted helpers built once per run (no recompilation across iterations)."""

    def __init__(self, lm, rl, value_slot):
        self.lm = lm

        @jax.jit
        def score(params, frozen, batch):
            logp, _, hidden = sequence_logprobs(lm, params["policy"], batch)
            ref_logp, _, _ = sequence_logprobs(lm, frozen["reference"], batch)
            values = (lm.bind(params["policy"]).value(hidden)[:, :-1]
                      if value_slot == "policy" else jnp.zeros_like(logp))
            return logp, ref_logp, values

        @functools.partial(jax.jit, static_argnames=("group_size",))
        def advantages(rewards, logp, ref_logp, values, mask, baseline, beta, group_size):
            kl_tok = kl_penalty_rewards(logp, ref_logp, mask, 1.0, rl.kl.estimator)
            if rl.kl.placement == "reward":
                rewards = rewards + beta * kl_tok
            kwargs = dict(values=values, group_size=group_size, gamma=rl.gamma, whiten=rl.whiten)
            if rl.advantage == "gae":
                kwargs["lam"] = rl.lam
            if rl.advantage == "greedy_baseline":
                kwargs["baseline"] = baseline
            adv, ret = compute_advantages(rl.advantage, rewards, mask, **kwargs)
            seq_kl = -jnp.sum(kl_tok, axis=1)  # kl_tok = -KL per token
            return adv, ret, jnp.mean(seq_kl)

        @jax.jit
        def row_advantages(seq_adv, logp, ref_logp, mask, beta):
            """Sequence advantages on every completion token, plus the per-token KL penalty
            as a return-to-go (gamma = 1) when it is placed in the reward."""
            kl_tok = kl_penalty_rewards(logp, ref_logp, mask, 1.0, rl.kl.estimator)
            adv = seq_adv[:, None] * mask
            if rl.kl.placement == "reward":
                adv = adv + beta * discounted_returns(kl_tok, mask, 1.0)
            return adv, adv, jnp.mean(-jnp.sum(kl_tok, axis=1))

        self.score = score
        self.advantages = advantages
        self.row_advantages = row_advantages


@register_algo("ppo")
def run_ppo(config, workdir: str) -> dict:
    return _run(config, workdir)


@register_algo("pg")
def run_pg(config, workdir: str) -> dict:
    return _run(config, workdir)


def _run(config, workdir: str) -> dict:
    rl = config.rl
    run = Run(config, workdir)
    done = run.finished()
    if done is not None:
        run.close()
        return done
    t_start = time.time()
    value_slot = rl.value_slot or None
    if value_slot not in (None, "policy"):
        raise ValueError(f"config.rl.value_slot must be '' or 'policy', got {rl.value_slot!r}")
    if rl.advantage == "gae" and value_slot is None:
        raise ValueError("config.rl.advantage='gae' needs a critic: set config.rl.value_slot=policy")
    n, p_iter = int(rl.n_samples), int(rl.prompts_per_iter)
    update_rows = int(rl.update_rows) or n * p_iter
    if update_rows > n * p_iter or update_rows % int(rl.minibatches):
        raise ValueError(f"config.rl.update_rows={rl.update_rows}: must be at most "
                         f"prompts_per_iter * n_samples = {n * p_iter} and divisible by "
                         f"minibatches={rl.minibatches}")
    if rl.update_rows and (rl.advantage == "gae" or rl.line_penalty):
        raise ValueError("config.rl.update_rows needs a sequence-level advantage (not gae) "
                         "and no line_penalty")
    if rl.adv_floor is not None and not rl.update_rows:
        raise ValueError("config.rl.adv_floor needs config.rl.update_rows > 0")
    base = ensure_base(config, workdir, heads=("value",) if value_slot else ())
    policy, tok = base.policy, base.policy.tokenizer
    lm = policy.lm
    train_tasks = base.data.train_tasks
    if rl.task_depths:
        train_tasks = [t for t in train_tasks if t.difficulty in tuple(rl.task_depths)]
        if not train_tasks:
            raise ValueError(f"config.rl.task_depths={tuple(rl.task_depths)}: no train tasks")
    reward_fn = make_reward(rl.rewards.to_dict())
    loss_fn = get_loss(rl.loss)
    kl_ctl = make_kl_controller(rl.kl.controller, **(
        dict(beta=rl.kl.beta) if rl.kl.controller == "fixed" else
        dict(init_beta=rl.kl.beta, target=rl.kl.target, horizon=rl.kl.horizon)))
    iterations = int(rl.iterations)
    rows = n * p_iter
    updates_per_iter = int(rl.epochs) * int(rl.minibatches)
    tx, schedule = make_optimizer(config.optimizer, iterations * updates_per_iter)
    mesh, rules = common.make_mesh(config), common.rules(config)
    ref = base.params
    state, shardings = state_from_params(
        {"policy": base.params}, {"reference": ref}, tx, jax.random.key(config.seed), mesh,
        {"policy": lm.logical_axes(), "reference": lm.logical_axes()}, rules)
    state, meta = run.resume(state, shardings)
    kl_state = kl_ctl.init()
    if "kl_beta" in meta:
        kl_state = kl_state._replace(beta=jnp.asarray(meta["kl_beta"], jnp.float32))
    hparams = dict(aggregation=rl.aggregation, value_slot=value_slot, vf_coef=rl.vf_coef,
                   ent_coef=rl.ent_coef)
    if rl.loss == "ppo":
        hparams["clip_eps"] = rl.clip_eps
    if rl.kl.placement == "loss":
        hparams.update(kl_in_loss_beta=float(rl.kl.beta), kl_estimator=rl.kl.estimator)
    update = make_epoch_update(loss_fn, tx, epochs=rl.epochs, minibatches=rl.minibatches,
                               schedule=schedule, state_shardings=shardings, mesh=mesh,
                               rules=rules, model=lm, **hparams)
    scorer = _Scorer(lm, rl, value_slot)
    sampling = policy.sampling(rl.temperature, rl.top_k, rl.top_p, rl.max_new_tokens)
    greedy = policy.sampling(0.0, max_new_tokens=rl.max_new_tokens)
    prompt_len = int(config.base.data.prompt_len)
    # Prompts keep their last prompt_len tokens, for sampling as in the training batch; one
    # prompt bucket, so the sampler compiles once for the whole run.
    prompt_ids_all = [p[-prompt_len:] for p in common.encode(tok, [t.prompt for t in train_tasks])]
    sampler = Sampler(lm, prompt_buckets=(prompt_len,))
    pool = ExecutorPool(num_workers=int(rl.workers), timeout=float(rl.timeout) * 4,
                        timeout_per_test=float(rl.timeout)).start()
    start_it = int(meta.get("iteration", 0))
    summary: dict = {}
    try:
        for it in run.progress(start_it, iterations, config.algo):
            times = collections.defaultdict(float)
            t_it = time.time()
            idx = epoch_order(len(train_tasks), it, p_iter, int(config.seed))
            tasks = [train_tasks[i] for i in idx for _ in range(n)]
            rng = jax.random.fold_in(jax.random.key(config.seed + 7), it)
            # -- sample chunk by chunk; each chunk's programs run while the next is sampled
            completions, comp_ids, futures = [], [], []
            chunk = max(1, int(rl.chunk_prompts))
            for c0 in range(0, p_iter, chunk):
                ids = [prompt_ids_all[i] for i in idx[c0 : c0 + chunk]]
                t0 = time.time()
                r = sampler(state.params["policy"], ids, jax.random.fold_in(rng, c0),
                                   sampling, n=n)
                toks, mask = jax.device_get((r.tokens, r.mask))
                times["sample"] += time.time() - t0
                texts = common.decode(tok, toks, mask)
                t0 = time.time()
                first = len(completions)
                for j, text in enumerate(texts):
                    futures.append(pool.submit([tasks[first + j].to_job(text)])[0])
                times["submit"] += time.time() - t0
                completions.extend(texts)
                comp_ids.extend([[int(t) for t, m in zip(row, mrow) if m]
                                 for row, mrow in zip(toks, mask)])
            t0 = time.time()
            outcomes = [f.result() for f in futures]
            times["execute_wait"] += time.time() - t0
            seq_rewards, rmetrics = reward_fn(tasks, completions, outcomes)
            baseline = np.zeros((rows,), np.float32)
            if rl.advantage == "greedy_baseline":
                t0 = time.time()
                ids = [prompt_ids_all[i] for i in idx]
                g = sampler(state.params["policy"], ids, rng, greedy, n=1)
                g_texts = common.decode(tok, *jax.device_get((g.tokens, g.mask)))
                g_tasks = [train_tasks[i] for i in idx]
                g_out = pool.run([t.to_job(x) for t, x in zip(g_tasks, g_texts)])
                g_rew, _ = reward_fn(g_tasks, g_texts, g_out)
                baseline = np.repeat(g_rew, n).astype(np.float32)
                times["greedy_baseline"] += time.time() - t0
            # -- the training batch: fixed shapes, so nothing recompiles between iterations
            batch = make_sequence_batch([prompt_ids_all[i] for i in idx for _ in range(n)],
                                        comp_ids, prompt_len, int(rl.max_new_tokens),
                                        policy.pad_id)
            batch.pop("truncated")
            tmask = batch["loss_mask"][:, 1:]
            extra = np.zeros(tmask.shape, np.float32)
            if rl.line_penalty:
                for b, (t, text, o) in enumerate(zip(tasks, completions, outcomes)):
                    spans = rltf_error_line_penalty(t, text, o, penalty=float(rl.line_penalty))
                    if spans:
                        offs = _token_offsets(tok, comp_ids[b])
                        row = span_token_rewards(spans, offs, len(offs))
                        pos = np.flatnonzero(tmask[b])[: len(row)]
                        extra[b, pos] += row[: len(pos)]
            n_tok = int(tmask.sum())  # sampled completion tokens
            informative = 1.0
            t0 = time.time()
            if rl.update_rows:  # score and train on the informative rows only
                seq_adv = sequence_advantages(rl, seq_rewards, n, baseline)
                sel = select_rows(seq_adv, update_rows)
                batch = {k: v[sel] for k, v in batch.items()}
                tmask = batch["loss_mask"][:, 1:]
                dev = shd.shard_batch(batch, mesh, rules)
                logp, ref_logp, values = scorer.score(state.params, state.frozen, dev)
                adv, ret, seq_kl = scorer.row_advantages(
                    jnp.asarray(seq_adv[sel]), logp, ref_logp,
                    jnp.asarray(tmask, jnp.float32), kl_state.beta)
                informative = float(np.mean(np.abs(seq_adv) > 1e-8))
            else:
                token_rewards = _token_rewards(seq_rewards, extra, tmask)
                dev = shd.shard_batch(batch, mesh, rules)
                logp, ref_logp, values = scorer.score(state.params, state.frozen, dev)
                adv, ret, seq_kl = scorer.advantages(
                    jnp.asarray(token_rewards), logp, ref_logp, values,
                    jnp.asarray(tmask, jnp.float32), jnp.asarray(baseline), kl_state.beta,
                    group_size=n)
            train_batch = {**batch, "old_logprobs": logp, "ref_logprobs": ref_logp,
                           "advantages": adv, "returns": ret, "old_values": values}
            state, umetrics = update(state, shd.shard_batch(train_batch, mesh, rules),
                                     jax.random.fold_in(rng, 10**6))
            umetrics = jax.device_get(umetrics)
            times["update"] += time.time() - t0
            kl_value = float(seq_kl)
            kl_state = kl_ctl.update(kl_state, kl_value, rows)
            wall = time.time() - t_it
            statuses = collections.Counter(o.status for o in outcomes)
            metrics = {
                **{k: float(v) for k, v in umetrics.items()},
                **rmetrics,
                "rl/pass_rate": statuses["passed"] / rows,
                "rl/compile_rate": 1 - statuses["syntax_error"] / rows,
                **{f"exec/{s}_frac": statuses[s] / rows for s in ERROR_STATUSES},
                "kl/seq_kl": kl_value,
                "kl/beta": float(kl_state.beta),
                "rl/completion_len": n_tok / rows,
                "rl/informative_frac": informative,  # rows with a nonzero outcome advantage
                "perf/tokens_per_s": n_tok / max(times["sample"], 1e-9),
                "perf/programs_per_s": rows / max(wall, 1e-9),
                **{f"time/{k}_s": v for k, v in times.items()},
                "time/iteration_s": wall,
                "time/hiding_ratio": wall / max(times["sample"] + times["update"], 1e-9),
            }
            meta = {"iteration": it + 1, "kl_beta": float(kl_state.beta)}
            run.after_step(it + 1, state, {"train/loss": metrics["train/loss"]}, meta,
                           extra=metrics)
            every = int(config.eval.every)
            if every and (it + 1) % every == 0 and it + 1 < iterations:
                quick = config.eval.copy_and_resolve_references()
                quick.n_samples = 1  # greedy only: learning curves without the sampling cost
                ev = evaluate_policy(policy, state.params["policy"], base.data.eval_tasks,
                                     quick, rng=jax.random.key(config.seed + 1), pool=pool)
                run.log(it + 1, {k: v for k, v in ev.items() if "/errors/" not in k})
        ev = evaluate_policy(policy, state.params["policy"], base.data.eval_tasks, config.eval,
                             workdir=run.workdir, rng=jax.random.key(config.seed + 1), pool=pool)
    finally:
        pool.close()
    run.log(iterations, ev)
    summary.update(ev)
    for key in ("eval/pass@1", "eval/compile_rate", "eval/pass@16"):
        if key in base.summary:
            summary[f"{key}_base"] = base.summary[key]
    summary["time/total_s"] = time.time() - t_start
    run.finish(summary, step=iterations, state=state,
               meta={"iteration": iterations, "kl_beta": float(kl_state.beta)})
    return summary
