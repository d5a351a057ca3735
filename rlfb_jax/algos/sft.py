"""Supervised fine-tuning on (prompt, completion) pairs, through the generic step builder.

Data (``config.data.source``):
  "jsonl"      a file of {"prompt": ..., "completion": ...} lines (``data.path``); tokenizer
               from ``data.tokenizer`` or the HF checkpoint in ``model.hf_path``.
  "synthetic"  the synthetic task world (see `rlfb_jax.algos.datasets`).
  "mbpp"       MBPP's train split from ``data.path`` (the original jsonl).

The loss is ``config.loss.name`` (a registered loss) with ``config.loss.kwargs`` as its
hyperparameters. The data position is the step: batch i is a deterministic function of
(seed, i), so a resumed run trains on exactly what an uninterrupted one would.

``perf/tokens_per_s``: tokens (prompt and completion, padding excluded) trained on per
second of wall time over the steps since the previous log, host batching included; the
first step of each run segment (which compiles) is left out.
"""

from __future__ import annotations

import logging
import time

import jax
import ml_collections

from rlfb_jax.algos import register_algo
from rlfb_jax.algos.datasets import data_config, load_sft_data
from rlfb_jax.algos.driver import Driver
from rlfb_jax.core.batching import epoch_order, make_sequence_batch
from rlfb_jax.core.config import experiment_config, lock
from rlfb_jax.core.optim import make_optimizer
from rlfb_jax.core.policy import build_policy
from rlfb_jax.core.step import make_step
from rlfb_jax.data.tokenizer import encode_pairs
from rlfb_jax.losses import get_loss
from rlfb_jax.models.config import count_params

log = logging.getLogger("rlfb_jax")


def default_config() -> ml_collections.ConfigDict:
    c = experiment_config()
    c.algo = "sft"
    # a registered loss and its hyperparameters (open: --config.loss.kwargs.NAME=VALUE)
    c.loss = ml_collections.ConfigDict(dict(name="sft", kwargs=ml_collections.ConfigDict()))
    c.data = data_config()
    # eval.tasks: "" (the data source's held-out split), "humaneval", "mbpp" (with eval.path)
    # or a tasks jsonl; evaluation samples with these settings and runs the hidden tests.
    c.eval = ml_collections.ConfigDict(
        dict(every=0, num_tasks=200, n_samples=16, temperature=0.8, top_p=1.0, top_k=0,
             max_new_tokens=64, batch_size=64, workers=2, timeout=2.0, ks=(1, 16),
             tasks="", path="")
    )
    return c


def get_config() -> ml_collections.ConfigDict:
    return lock(default_config())


class Throughput:
    """Tokens per second since the last `rate` call; tokens added before `start` (the
    compiling first step) do not count."""

    def __init__(self, clock=time.perf_counter):
        self.clock, self.tokens, self.t0 = clock, 0, None

    def start(self) -> None:
        self.tokens, self.t0 = 0, self.clock()

    def add(self, tokens: int) -> None:
        if self.t0 is not None:
            self.tokens += tokens

    def rate(self) -> float | None:
        """The rate since `start` or the last call (None before `start`); restarts the
        interval."""
        if self.t0 is None or not self.tokens:
            return None
        rate = self.tokens / max(self.clock() - self.t0, 1e-9)
        self.start()
        return rate


@register_algo("sft")
def train(driver: Driver) -> dict:
    """Steps over (seed, step)-ordered batches, then the held-out evaluation."""
    config = driver.config
    t0 = time.time()
    data = load_sft_data(config, driver.workdir)
    policy = build_policy(config, data.tokenizer)
    log.info("tokenizing %d examples...", len(data.prompts))
    prompts, completions = encode_pairs(policy.tokenizer, data.prompts, data.completions)
    log.info("data ready in %.1f s", time.time() - t0)
    lm, total = policy.lm, int(config.train.steps)
    tx, schedule = make_optimizer(config.optimizer, total)
    if policy.params is None:  # from scratch
        slots = lambda rng: ({"policy": lm.init(rng)}, {})
    else:  # a pretrained checkpoint
        slots = {"policy": policy.params}
    t0 = time.time()
    state, shardings = driver.create_state(slots, {}, tx, {"policy": lm.logical_axes()})
    log.info("train state ready in %.1f s: %s parameters", time.time() - t0,
             f"{count_params(state.params):,}")
    step_fn = make_step(get_loss(config.loss.name), tx, schedule=schedule,
                        state_shardings=shardings, mesh=driver.mesh, rules=driver.rules, model=lm,
                        **config.loss.kwargs.to_dict())
    bs, seed = int(config.train.batch_size), int(config.data.seed)
    p_len, c_len = int(config.data.prompt_len), int(config.data.completion_len)
    start = int(jax.device_get(state.step))
    meter = Throughput()
    last: dict = {}

    def step(state, i):
        idx = epoch_order(len(prompts), i, bs, seed)
        batch = make_sequence_batch([prompts[j] for j in idx], [completions[j] for j in idx],
                                    p_len, c_len, policy.pad_id)
        truncated = float(batch.pop("truncated").mean())
        meter.add(int(batch["attention_mask"].sum()))
        t_step = time.time()
        state, metrics = step_fn(state, driver.shard(batch))
        last.update(metrics)
        metrics = {**metrics, "data/truncated_frac": truncated}
        if i == start:
            jax.block_until_ready(metrics)
            log.info("compiled and ran the first step in %.1f s", time.time() - t_step)
            meter.start()
        elif (i + 1) % driver.rundir.log_every == 0:
            jax.block_until_ready(metrics)  # dispatch is asynchronous: time finished work
            rate = meter.rate()
            if rate is not None:
                metrics["perf/tokens_per_s"] = rate
        return state, metrics

    position = lambda i: {"step": i, "data_position": i, "seed": int(config.seed)}
    if start < total:
        log.info("compiling the train step (loss %r)...", config.loss.name)
    state = driver.loop(state, step, start=start, total=total, desc="sft", meta=position)
    summary = {"train/steps": total, "train/examples": len(prompts)}
    losses = ("train/loss", "loss/sft")
    summary.update(driver.rundir.last_logged(losses))  # a resume may have no step left to run
    summary.update({k: float(v) for k, v in jax.device_get(last).items() if k in losses})
    if data.eval_tasks and int(config.eval.num_tasks) > 0:
        ev = driver.evaluate(policy, state.params["policy"], data.eval_tasks)
        summary.update(ev)
        driver.log(total, ev)
    return driver.finish(summary, step=total, state=state, meta=position(total))
