"""The configuration of PG and PPO (`rlfb_jax.algos.ppo`): defaults, checks, and the
registered parts it names (KL controller, loss hyperparameters)."""

from __future__ import annotations

import ml_collections
from etils import epath

from rlfb_jax.algos.sft import default_config as sft_config
from rlfb_jax.core.config import experiment_config
from rlfb_jax.losses import (
    ADVANTAGES,
    KL_CONTROLLERS,
    KL_ESTIMATORS,
    LOSSES,
    KLController,
    make_kl_controller,
)
from rlfb_jax.losses.registry import check_loss, get_loss, loss_hparams
from rlfb_jax.registry import check_options
from rlfb_jax.rewards import TOKEN_REWARDS, check_reward_spec

KL_PLACEMENTS = ("reward", "loss")


def default_config(algo: str = "ppo") -> ml_collections.ConfigDict:
    c = experiment_config()
    c.algo = algo
    c.base = sft_config()
    c.base_workdir = ""
    # > 0: start from the base's checkpoint at this step (an earlier, weaker base, e.g.
    # PPOCoder's setting); its held-out evaluation is made once and reported as *_base
    c.base_step = 0
    loss_kwargs = dict(aggregation="token_mean", vf_coef=0.5, ent_coef=0.0)
    if algo == "ppo":
        loss_kwargs["clip_eps"] = 0.2
    c.rl = ml_collections.ConfigDict(dict(
        iterations=40,
        prompts_per_iter=32,
        n_samples=8,
        chunk_prompts=8,  # prompts per sampling chunk (execution of one overlaps the next)
        # rows per scoring forward (log-probs, reference log-probs, values): the batch is
        # scored in equal chunks of at most this many rows, so its [rows, L, vocab] logits
        # stay bounded however many rows an iteration updates on; 0: all rows at once
        score_rows=1024,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=48,
        loss=algo,  # a registered loss ...
        loss_kwargs=ml_collections.ConfigDict(loss_kwargs),  # ... and its hyperparameters
        advantage="rloo" if algo == "pg" else "grpo",  # a registered advantage estimator
        advantage_kwargs=ml_collections.ConfigDict(),  # e.g. {"lam": 0.95} for "gae"
        gamma=1.0,
        whiten=False,
        epochs=1 if algo == "pg" else 2,
        minibatches=1 if algo == "pg" else 4,
        # "" (no critic), "policy" (a value head on the policy's backbone) or "value" (a
        # separate critic: a copy of the base with a value head, its own parameters)
        value_slot="",
        rewards=ml_collections.ConfigDict({"coderl": 1.0}),
        # registered token rewards, e.g. {"rltf_error_line": {"penalty": -0.3}} (RLTF)
        token_rewards=ml_collections.ConfigDict(),
        workers=2,
        timeout=2.0,
        task_depths=(),  # train on synthetic tasks of these difficulties only (() = all)
        # > 0: update on this many rows per iteration, those with the largest |sequence
        # advantage| (all-equal groups of RLOO/GRPO carry no outcome signal; DAPO's dynamic
        # sampling drops them too). Only they are scored and trained on: the update costs
        # update_rows / (prompts_per_iter * n_samples) of a full one.
        update_rows=0,
        # how update_rows are picked: "advantage" (the largest |sequence advantage|, above;
        # critic-free estimators only) or "random" (update_rows / n_samples prompts drawn
        # uniformly, each with all its samples: the configured estimator, a critic's
        # included, runs on them as on a smaller rollout)
        row_select="advantage",
        # advantages below this are raised to it (e.g. 0.0: learn from successes only, as in
        # filtered behaviour cloning / RAFT); None: off
        adv_floor=None,
        # > 0: DAPO's soft overlong punishment over the last overlong_cache tokens before
        # max_new_tokens (`rlfb_jax.rewards.overlong_penalty`); 0: off
        overlong_cache=0,
        # a finished "critic" run (experiments/synthetic_critic.py, same base): CodeRL's
        # token weights, the critic's probability of each row's actual outcome class,
        # multiply the outcome advantages; "": off
        critic_workdir="",
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


def check_config(rl, where: str = "config.rl") -> None:
    """Fails before any work on settings that cannot go together, or on a name no part
    takes; messages name the key under `where` (the ``rl`` section's path)."""
    if not rl.temperature > 0:
        raise ValueError(f"{where}.temperature={rl.temperature}: RL samples (and their "
                         "scoring) need a temperature > 0")
    if rl.value_slot not in ("", "policy", "value"):
        raise ValueError(f"{where}.value_slot must be '', 'policy' or 'value', got "
                         f"{rl.value_slot!r}")
    if rl.advantage in ("gae", "value_baseline") and not rl.value_slot:
        raise ValueError(f"{where}.advantage={rl.advantage!r} needs a critic: set "
                         f"{where}.value_slot=policy (or value)")
    rows = int(rl.n_samples) * int(rl.prompts_per_iter)
    if int(rl.update_rows or rows) > rows or int(rl.update_rows or rows) % int(rl.minibatches):
        raise ValueError(f"{where}.update_rows={rl.update_rows}: must be at most "
                         f"prompts_per_iter * n_samples = {rows} and divisible by "
                         f"minibatches={rl.minibatches}")
    select = rl.get("row_select", "advantage")
    if select not in ("advantage", "random"):
        raise ValueError(f"{where}.row_select={select!r}: expected 'advantage' or 'random'")
    if select == "random" and (not rl.update_rows or int(rl.update_rows) % int(rl.n_samples)):
        raise ValueError(f"{where}.row_select='random' draws whole prompts: "
                         f"{where}.update_rows={rl.update_rows} must be a positive multiple "
                         f"of n_samples={rl.n_samples}")
    if (rl.update_rows and select == "advantage"
            and (rl.advantage in ("gae", "value_baseline") or rl.value_slot)):
        # the rows are picked by an outcome advantage computed before any value is known,
        # and their returns would be those advantages: a critic would learn advantages
        raise ValueError(f"{where}.update_rows={rl.update_rows} takes a critic-free "
                         f"sequence-level advantage, got advantage={rl.advantage!r}, "
                         f"value_slot={rl.value_slot!r}: set update_rows=0, or "
                         f"{where}.row_select='random' (whole prompts drawn at random), "
                         "to train a critic")
    if rl.critic_workdir and not epath.Path(rl.critic_workdir, "summary.json").exists():
        raise ValueError(f"{where}.critic_workdir={rl.critic_workdir!r}: no finished critic "
                         "run there (train one with experiments/synthetic_critic.py)")
    if rl.adv_floor is not None and (not rl.update_rows or select != "advantage"):
        raise ValueError(f"{where}.adv_floor needs {where}.update_rows > 0 with "
                         f"{where}.row_select='advantage'")
    if rl.adv_floor is not None and rl.advantage == "reinforce_pp":
        # its advantages are normalized per token, outcome + KL, after the rows are picked
        raise ValueError(f"{where}.adv_floor floors sequence advantages; "
                         f"{where}.advantage='reinforce_pp' normalizes token advantages "
                         "(outcome + KL) over the batch: unset one of them")
    for key, value, known in (("loss", rl.loss, LOSSES.names()),
                              ("advantage", rl.advantage, ADVANTAGES.names())):
        if value not in known:
            raise ValueError(f"{where}.{key}={value!r}: expected one of {', '.join(known)}")
    check_loss(rl.loss, rl.loss_kwargs, f"{where}.loss_kwargs")
    for key, source in (("value_slot", f"{where}.value_slot"),
                        ("temperature", f"{where}.temperature (samples are scored at it)"),
                        ("kl_estimator", f"{where}.kl.estimator"),
                        ("kl_in_loss_beta", f"{where}.kl.placement='loss' and {where}.kl.beta")):
        if key in rl.loss_kwargs:
            raise ValueError(f"{where}.loss_kwargs.{key}: set by the PG/PPO update from "
                             f"{source}; remove it from loss_kwargs")
    known = loss_hparams(get_loss(rl.loss))
    passed = sorted(set(loss_kwargs(rl)) - set(rl.loss_kwargs)
                    - set(loss_kwargs(rl) if known is None else known))
    if passed:
        raise ValueError(f"{where}.loss={rl.loss!r}: the PG/PPO update passes every loss "
                         f"{passed} (the critic's slot, the sampling temperature, and the KL "
                         f"estimator when {where}.kl.placement='loss'); the loss takes "
                         f"{sorted(set(known))}: add them to its signature (or **hparams)")
    check_reward_spec(rl.rewards, f"{where}.rewards")
    for name, options in rl.token_rewards.items():
        check_options(TOKEN_REWARDS, name, options, f"{where}.token_rewards.{name}", skip=3)
    # the update passes the estimator these itself (from rl.gamma, rl.whiten, n_samples, the
    # greedy baseline's rewards, the critic's values)
    check_options(ADVANTAGES, rl.advantage, rl.advantage_kwargs, f"{where}.advantage_kwargs",
                  skip=2, passed=("values", "group_size", "baseline", "gamma", "whiten"))
    if not 0 <= int(rl.overlong_cache) <= int(rl.max_new_tokens):
        raise ValueError(f"{where}.overlong_cache={rl.overlong_cache}: must be in "
                         f"[0, max_new_tokens={rl.max_new_tokens}]")
    for key, value, known in (("placement", rl.kl.placement, KL_PLACEMENTS),
                              ("controller", rl.kl.controller, KL_CONTROLLERS.names()),
                              ("estimator", rl.kl.estimator, KL_ESTIMATORS.names())):
        if value not in known:
            raise ValueError(f"{where}.kl.{key}={value!r}: expected one of "
                             f"{', '.join(known)}")
    if rl.kl.placement == "loss" and rl.kl.estimator == "k1":
        # d k1 = d log pi, whose mean under the sampling policy is 0 (Schulman 2020)
        raise ValueError(f"{where}.kl.estimator='k1' with {where}.kl.placement='loss': the "
                         "k1 term's gradient is grad log pi, zero in expectation over the "
                         "samples, so the loss would pull nothing toward the reference; use "
                         f"{where}.kl.estimator=k3 (GRPO) or k2 in the loss, or "
                         f"{where}.kl.placement=reward")


def kl_controller(kl) -> KLController:
    """The registered KL controller of ``rl.kl`` (its beta, and target/horizon if adaptive)."""
    if kl.controller == "fixed":
        return make_kl_controller("fixed", beta=kl.beta)
    return make_kl_controller(kl.controller, init_beta=kl.beta, target=kl.target,
                              horizon=kl.horizon)


def loss_kwargs(rl) -> dict:
    """The loss's hyperparameters: ``rl.loss_kwargs``, the critic's slot, the sampling
    temperature (log-probs are scored under the sampling distribution) and, with the KL in
    the loss, its estimator (its beta is data: ``batch["kl_beta"]``, see `update_batch`)."""
    out = dict(rl.loss_kwargs.to_dict(), value_slot=rl.value_slot or None,
               temperature=float(rl.temperature))
    if rl.kl.placement == "loss":
        out.update(kl_estimator=rl.kl.estimator)
    return out
