"""Supervised fine-tuning on (prompt, completion) pairs, through the generic step builder.

Data (``config.data.source``):
  "jsonl"      a file of {"prompt": ..., "completion": ...} lines (``data.path``); tokenizer
               from ``data.tokenizer`` or the HF checkpoint in ``model.hf_path``.
  "synthetic"  the synthetic task world (see `rlfb_jax.algos.datasets`).
  "mbpp"       MBPP's train split from ``data.path`` (the original jsonl).

The data position is the step: batch i is a deterministic function of (seed, i), so a
resumed run trains on exactly what an uninterrupted one would.
"""

from __future__ import annotations

import logging
import time

import jax
import ml_collections

from rlfb_jax.algos import common, register_algo
from rlfb_jax.algos.datasets import load_sft_data
from rlfb_jax.core import sharding as shd
from rlfb_jax.core.batching import epoch_order, make_sequence_batch
from rlfb_jax.core.config import base_config, lock
from rlfb_jax.core.optim import make_optimizer
from rlfb_jax.core.run import Run
from rlfb_jax.core.state import create_state, state_from_params
from rlfb_jax.core.step import make_step
from rlfb_jax.losses import get_loss

log = logging.getLogger("rlfb_jax")


def default_config() -> ml_collections.ConfigDict:
    c = base_config()
    c.algo = "sft"
    c.loss = ml_collections.ConfigDict(dict(name="sft"))
    c.data = ml_collections.ConfigDict(
        dict(
            source="synthetic",
            path="",
            tokenizer="",
            prompt_len=96,
            completion_len=64,
            num_train=20000,
            num_valid=200,
            num_test=200,
            max_depth=3,
            examples_in_tests=False,  # synthetic: also judge on the prompt's examples
            example_outputs=True,  # synthetic: False shows the examples' inputs only
            code_variants=False,  # synthetic: references in equivalent spellings
            vocab_size=2048,
            seed=0,
        )
    )
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


@register_algo("sft")
def run(config, workdir: str) -> dict:
    run = Run(config, workdir)
    done = run.finished()
    if done is not None:
        log.info("%s is finished; nothing to do", workdir)
        run.close()
        return done
    t0 = time.time()
    data = load_sft_data(config, workdir)
    policy = common.build_policy(config, data.tokenizer)
    prompts, completions = common.encode_pairs(policy.tokenizer, data.prompts, data.completions)
    lm = policy.lm
    total = int(config.train.steps)
    tx, schedule = make_optimizer(config.optimizer, total)
    mesh = common.make_mesh(config)
    rules = common.rules(config)
    logical = {"policy": lm.logical_axes()}
    if policy.params is None:
        state, shardings = create_state(lambda rng: ({"policy": lm.init(rng)}, {}), tx,
                                        jax.random.key(config.seed), mesh, logical, rules)
    else:  # a pretrained checkpoint
        state, shardings = state_from_params({"policy": policy.params}, {}, tx,
                                             jax.random.key(config.seed), mesh, logical, rules)
    state, meta = run.resume(state, shardings)
    step_fn = make_step(get_loss(config.loss.name), tx, schedule=schedule,
                        state_shardings=shardings, mesh=mesh, rules=rules, model=lm)
    start = int(jax.device_get(state.step))
    bs = int(config.train.batch_size)
    p_len, c_len = int(config.data.prompt_len), int(config.data.completion_len)
    n = len(prompts)
    tokens_seen = 0
    t_loop = time.time()
    for step in run.progress(start, total, "sft"):
        idx = epoch_order(n, step, bs, int(config.data.seed))
        batch = make_sequence_batch([prompts[i] for i in idx], [completions[i] for i in idx],
                                    p_len, c_len, policy.pad_id)
        truncated = float(batch.pop("truncated").mean())
        tokens_seen += int(batch["attention_mask"].sum())
        state, metrics = step_fn(state, shd.shard_batch(batch, mesh, rules))
        meta = {"step": step + 1, "data_position": step + 1, "seed": int(config.seed)}
        extra = {"data/truncated_frac": truncated}
        if (step + 1) % run.log_every == 0:
            jax.block_until_ready(metrics)  # dispatch is asynchronous: time finished work
            extra["perf/tokens_per_s"] = tokens_seen / max(time.time() - t_loop, 1e-9)
        run.after_step(step + 1, state, metrics, meta, extra=extra)
    summary = {"train/steps": total, "train/examples": n}
    final = jax.device_get(metrics) if start < total else {}
    for k in ("train/loss", "loss/sft"):
        if k in final:
            summary[k] = float(final[k])
    if data.eval_tasks and int(config.eval.num_tasks) > 0:
        from rlfb_jax.eval.policy_eval import evaluate_policy

        ev = evaluate_policy(policy, state.params["policy"], data.eval_tasks, config.eval,
                             workdir=run.workdir, rng=jax.random.key(config.seed + 1))
        summary.update(ev)
        run.log(total, ev)
    summary["time/total_s"] = time.time() - t0
    run.finish(summary, step=total, state=state, meta={"step": total, "data_position": total})
    return summary
