"""The rollout: sample -> execute -> reward, the one path from a policy to scored programs.

    eps = rollout(policy, params, tasks, sampling, n, key, pool, reward_fn)

Every algorithm and evaluator samples through it: PPO and PG (training rows and the greedy
baseline), ReST-EM's E-step, LEVER's verifier data and test samples, and
`rlfb_jax.eval.policy_eval`. Row ``i * n + j`` of the result is sample j of ``tasks[i]``.

Tasks are sampled in chunks of about ``chunk_rows`` rows, shortest prompts first (a chunk
pads little and hits a small compiled prompt bucket). A chunk's programs go to the executor
pool as soon as its tokens reach the host, so they run on the host CPUs while the device
samples the next chunk; the only wait is at the end (``time/execute_wait_s``).

Execution is one job per row (``task.to_job(text, kind)``) unless ``jobs`` says otherwise
(LEVER runs each distinct program twice); the rewards need one job per row.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from rlfb_jax.data.tokenizer import decode_completions, encode_batch

JobsFn = Callable[[Any, list[str]], list[Any]]  # (task, its n texts) -> executor Jobs


def test_jobs(kind: str = "assert") -> JobsFn:
    """One job per sample: the program against the task's hidden tests in form `kind`."""
    return lambda task, texts: [task.to_job(t, kind) for t in texts]


@dataclasses.dataclass
class Episodes:
    """A rollout's rows, B = len(tasks) * n; row ``i * n + j`` is sample j of task i.

    prompts [len(tasks)] the prompt token ids as sampled from (cut to ``prompt_len``);
    tokens [B, T] int32 completion tokens (T = sampling.max_new_tokens, pad after the end);
    mask [B, T] bool (sampled tokens, the stop token included); logprobs [B, T] float32
    (log p of each token under the policy at T = 1, 0 off the mask: LEVER's p_LM; PG/PPO
    re-score the tokens at the sampling temperature, see `rlfb_jax.models.sampler`);
    texts [B] decoded completions; task_outcomes [len(tasks)][jobs per task] executor
    `Outcome`s; rewards [B] float32 (None without a reward function) and its metrics;
    times: seconds per phase.
    """

    prompts: list[list[int]]
    tokens: np.ndarray
    mask: np.ndarray
    logprobs: np.ndarray
    texts: list[str]
    task_outcomes: list[list[Any]]
    rewards: np.ndarray | None = None
    reward_metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    times: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def outcomes(self) -> list[Any]:
        """[B] outcomes, one per row (with the default one-job-per-row execution)."""
        return [o for outs in self.task_outcomes for o in outs]

    def completion_ids(self) -> list[list[int]]:
        """[B] the sampled token ids of each row (stop token included when sampled)."""
        return [[int(t) for t in row[m]] for row, m in zip(self.tokens, self.mask)]


def _chunks(prompts: list[list[int]], n: int, chunk_rows: int) -> list[list[int]]:
    """Task indices per sampling chunk: shortest prompts first, about chunk_rows rows each."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    per_chunk = max(1, chunk_rows // n)
    return [order[s : s + per_chunk] for s in range(0, len(order), per_chunk)]


def rollout(policy, params, tasks: Sequence[Any], sampling, n: int, key: jax.Array, pool,
            reward_fn=None, *, chunk_rows: int = 64, prompt_len: int | None = None,
            jobs: JobsFn | None = None, desc: str | None = None,
            prompt_ids: Sequence[Sequence[int]] | None = None) -> Episodes:
    """Samples `n` completions per task with `policy` at `params`, executes them in `pool`
    (overlapped with sampling, see the module docstring) and scores them with
    ``reward_fn(tasks [B], texts [B], outcomes [B]) -> (rewards [B], metrics)``.

    `key` is folded with the chunk index. `prompt_len`: prompts keep their last prompt_len
    tokens and share one compiled prompt length (None: the sampler's buckets). `desc` shows
    a progress bar on stderr. `prompt_ids`: each task's prompt as token ids (default: the
    tokenizer's encoding of ``task.prompt``), e.g. a prompt followed by the first tokens of
    a program to continue, encoded as training encodes a prompt and its completion.
    """
    from tqdm.auto import tqdm

    if not tasks:
        raise ValueError("rollout: no tasks")
    jobs = jobs or test_jobs()
    if prompt_ids is not None and len(prompt_ids) != len(tasks):
        raise ValueError(f"rollout: {len(prompt_ids)} prompt_ids for {len(tasks)} tasks")
    prompts = ([list(p) for p in prompt_ids] if prompt_ids is not None
               else encode_batch(policy.tokenizer, [t.prompt for t in tasks]))
    if prompt_len is not None:
        prompts = [p[-prompt_len:] for p in prompts]
    sampler = policy.sampler(prompt_len)
    width = int(sampling.max_new_tokens)
    tokens = np.zeros((len(tasks) * n, width), np.int32)
    mask = np.zeros((len(tasks) * n, width), bool)
    logprobs = np.zeros((len(tasks) * n, width), np.float32)
    texts: list[str] = [""] * (len(tasks) * n)
    futures: list[list[Any]] = [[] for _ in tasks]
    times = {"sample": 0.0, "submit": 0.0}
    chunks = _chunks(prompts, n, chunk_rows)
    bar = tqdm(chunks, desc=desc, unit="chunk", file=sys.stderr, leave=False,
               disable=desc is None or jax.process_index() != 0)
    for c, idx in enumerate(bar):
        t0 = time.time()
        out = sampler(params, [prompts[i] for i in idx], jax.random.fold_in(key, c), sampling,
                      n=n)
        toks, msk, logp = jax.device_get((out.tokens, out.mask, out.logprobs))
        times["sample"] += time.time() - t0
        t0 = time.time()
        chunk_texts = decode_completions(policy.tokenizer, toks, msk)
        for j, i in enumerate(idx):
            rows, src = slice(i * n, (i + 1) * n), slice(j * n, (j + 1) * n)
            tokens[rows], mask[rows], logprobs[rows] = toks[src], msk[src], logp[src]
            texts[rows] = chunk_texts[src]
            futures[i] = pool.submit(jobs(tasks[i], chunk_texts[src]))
        times["submit"] += time.time() - t0
    t0 = time.time()
    task_outcomes = [[f.result() for f in fs] for fs in futures]
    times["execute_wait"] = time.time() - t0
    eps = Episodes(prompts, tokens, mask, logprobs, texts, task_outcomes,
                   times={f"time/{k}_s": v for k, v in times.items()})
    if reward_fn is not None:
        outcomes = eps.outcomes
        if len(outcomes) != len(texts):
            raise ValueError(f"rewards need one outcome per row: {len(outcomes)} outcomes "
                             f"for {len(texts)} rows")
        eps.rewards, eps.reward_metrics = reward_fn([t for t in tasks for _ in range(n)],
                                                    texts, outcomes)
    return eps
