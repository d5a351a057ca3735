"""Policy gradient and PPO from execution feedback (``config.algo = "pg"`` or ``"ppo"``).

One `iteration`, top to bottom:

    collect     `rollout`: n programs per prompt, chunk i executed while chunk i+1 samples,
                rewarded on the host (+ registered token rewards, e.g. RLTF's error line)
    score       policy / reference log-probs (and values) of the sampled tokens, one jit
    advantages  token rewards (+ per-token KL penalty) -> the registered estimator, one jit
    update      ``rl.epochs`` x ``rl.minibatches`` steps of the registered loss, one jitted
                `lax.scan`; the KL controller (in ``TrainState.aux``) follows the KL

The policy starts from the base model, which is also the frozen KL reference. Variation
comes from the registries: ``rl.advantage`` + ``rl.advantage_kwargs``, ``rl.loss`` +
``rl.loss_kwargs``, ``rl.rewards`` and ``rl.token_rewards``. "pg" is the same loop with the
"pg" loss (REINFORCE with the chosen baseline) and one epoch of one minibatch.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import ml_collections
import numpy as np

from rlfb_jax.algos import register_algo
from rlfb_jax.algos.driver import Driver
from rlfb_jax.algos.pg_batch import (
    Scorer,
    TokenRewards,
    iteration_metrics,
    select_rows,
    training_batch,
    update_batch,
)
from rlfb_jax.algos.pg_config import check_config, default_config, kl_controller, loss_kwargs
from rlfb_jax.core.batching import epoch_order
from rlfb_jax.core.checkpoint import params_from_checkpoint
from rlfb_jax.core.optim import make_optimizer
from rlfb_jax.core.policy import Policy
from rlfb_jax.core.rollout import rollout
from rlfb_jax.core.state import TrainState
from rlfb_jax.core.step import make_epoch_update
from rlfb_jax.losses import KLController, get_loss
from rlfb_jax.rewards import make_reward, sandbox_errors

# default_config: the experiments start from it
__all__ = ["default_config", "iteration", "setup", "train"]


@dataclasses.dataclass
class PPO:
    """What one iteration needs, built once per run (so nothing recompiles)."""

    rl: ml_collections.ConfigDict
    seed: int
    driver: Driver
    policy: Policy
    train_tasks: list
    prompt_len: int
    sampling: object  # SamplingParams of the training samples
    greedy: object | None  # greedy SamplingParams when the estimator needs that baseline
    reward_fn: object  # tasks, texts, outcomes -> (rewards [B], metrics)
    token_rewards: TokenRewards
    kl_controller: KLController
    scorer: Scorer
    update: object  # jitted (state, batch, key) -> (state, metrics)


@register_algo("ppo", pool="rl")
@register_algo("pg", pool="rl")
def train(driver: Driver) -> dict:
    """Iterations from the base model (or the latest checkpoint), then the evaluation."""
    config, iterations = driver.config, int(driver.config.rl.iterations)
    ppo, state = setup(driver)
    greedy_eval = lambda s: driver.evaluate(ppo.policy, s.params["policy"], greedy_only=True,
                                            write=False)
    state = driver.loop(state, lambda s, it: iteration(ppo, s, it),
                        start=int(driver.meta.get("iteration", 0)), total=iterations,
                        desc=config.algo, meta=lambda it: {"iteration": it},
                        evaluate_every=int(config.eval.every), evaluate=greedy_eval)
    summary = driver.evaluate(ppo.policy, state.params["policy"])
    driver.log(iterations, summary)
    return driver.finish(summary, step=iterations, state=state,
                         meta={"iteration": iterations}, base=driver.base)


def setup(driver: Driver) -> tuple[PPO, TrainState]:
    """The run's parts (jitted once) and its TrainState: the base model as policy and frozen
    reference, the KL controller's state in ``aux``; resumed when a checkpoint exists."""
    config, rl = driver.config, driver.config.rl
    check_config(rl)
    base = driver.base_model(heads=("value",) if rl.value_slot else ())
    lm = base.policy.lm
    tx, schedule = make_optimizer(config.optimizer,
                                  int(rl.iterations) * int(rl.epochs) * int(rl.minibatches))
    kl_ctl = kl_controller(rl.kl)
    slots = {"policy": base.params}
    if rl.value_slot == "value":  # a separate critic, starting as the base (+ a zero head)
        slots["value"] = jax.tree.map(lambda x: x.copy(), base.params)
    frozen, logical = {"reference": base.params}, {k: lm.logical_axes() for k in slots}
    logical["reference"] = lm.logical_axes()
    critic_lm = None
    if rl.critic_workdir:  # CodeRL's critic (a finished "critic" run), frozen
        critic_lm = base.policy.with_heads(("critic",)).lm
        frozen["critic"] = params_from_checkpoint(rl.critic_workdir, critic_lm.abstract_params(),
                                                  slot="critic")
        logical["critic"] = critic_lm.logical_axes()
    state, shardings = driver.create_state(slots, frozen, tx, logical,
                                           aux={"kl": kl_ctl.init()})
    update = make_epoch_update(get_loss(rl.loss), tx, epochs=rl.epochs,
                               minibatches=rl.minibatches, schedule=schedule,
                               state_shardings=shardings, mesh=driver.mesh, rules=driver.rules,
                               model=lm, **loss_kwargs(rl))
    tasks = [t for t in base.data.train_tasks
             if not rl.task_depths or t.difficulty in tuple(rl.task_depths)]
    if not tasks:
        raise ValueError(f"config.rl.task_depths={tuple(rl.task_depths)}: no train tasks")
    sample = base.policy.sampling
    ppo = PPO(rl, int(config.seed), driver, base.policy, tasks, int(config.base.data.prompt_len),
              sample(rl.temperature, rl.top_k, rl.top_p, rl.max_new_tokens),
              (sample(0.0, max_new_tokens=rl.max_new_tokens)
               if rl.advantage == "greedy_baseline" else None),  # CodeRL's baseline
              make_reward(rl.rewards.to_dict()),
              TokenRewards(rl.token_rewards.to_dict(), base.policy.tokenizer), kl_ctl,
              Scorer(lm, rl, int(rl.n_samples), critic_lm), update)
    return ppo, state


def iteration(p: PPO, state: TrainState, it: int) -> tuple[TrainState, dict]:
    """Collect -> score -> advantages -> update, on this iteration's prompts."""
    rl, n, t_start = p.rl, int(p.rl.n_samples), time.time()
    tasks = [p.train_tasks[i] for i in
             epoch_order(len(p.train_tasks), it, int(rl.prompts_per_iter), p.seed)]
    # -- collect: sample, execute (overlapped), reward
    eps = rollout(p.policy, state.params["policy"], tasks, p.sampling, n, state.key("rollout"),
                  p.driver.pool, p.reward_fn, chunk_rows=int(rl.chunk_prompts) * n,
                  prompt_len=p.prompt_len, desc=f"iteration {it + 1} samples")
    t0 = time.time()
    baseline = np.zeros(len(eps.texts), np.float32)
    if p.greedy is not None:
        greedy = rollout(p.policy, state.params["policy"], tasks, p.greedy, 1,
                         state.key("greedy"), p.driver.pool, p.reward_fn,
                         chunk_rows=int(rl.chunk_prompts), prompt_len=p.prompt_len)
        # a greedy sample without a verdict is no baseline: its prompt's rows are masked out
        baseline = np.repeat(np.where(sandbox_errors(greedy.outcomes), np.nan,
                                      greedy.rewards), n)
    times = {**eps.times, "time/greedy_baseline_s": time.time() - t0}
    t0 = time.time()
    batch = training_batch(eps, tasks, p.prompt_len, int(rl.max_new_tokens), p.policy.pad_id,
                           p.token_rewards, baseline, int(rl.overlong_cache))
    # all rows, or rl.update_rows of them (row_select "random": drawn by a generator of its
    # own per run seed and iteration, the constant keeping it apart from other host draws)
    batch, informative = select_rows(rl, batch, n,
                                     np.random.default_rng([p.seed, it, 0x5E1EC7]))
    # -- score and advantages (device)
    dev = p.driver.shard(batch)
    logp, ref_logp, values = p.scorer.score(state.params, state.frozen, dev)
    if p.scorer.critic_weights is not None:
        dev["critic_weights"] = p.scorer.critic_weights(state.frozen, dev)
    beta = state.aux["kl"].beta
    adv, ret, seq_kl = p.scorer.advantages(dev, logp, ref_logp, values, beta)
    # -- update: epochs x minibatches in one jitted scan; then the KL controller, whose n
    # is the number of sequences the KL was measured on
    train = update_batch(rl, dev, logp, ref_logp, adv, ret, values, beta)
    state, umetrics = p.update(state, p.driver.shard(train), state.key("update"))
    umetrics = jax.device_get(umetrics)  # waits for the update: dispatch is asynchronous
    kl = float(seq_kl)
    kl_state = p.kl_controller.update(state.aux["kl"], kl, logp.shape[0])
    state = state.replace(aux={"kl": jax.device_put(kl_state, p.driver.replicated)})
    times["time/update_s"] = time.time() - t0
    return state, iteration_metrics(eps, umetrics, times, kl, float(kl_state.beta),
                                    informative, time.time() - t_start)
