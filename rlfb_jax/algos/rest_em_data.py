"""Host-side pieces of expert iteration / ReST-EM: filter, dedupe, cap, weights, stopping.

Pure functions over plain Python values and numpy (no jax), so every rule of the E-step's
selection is unit-tested by hand:

    samples = [Sample(task_index, completion, reward, token_ids), ...]   # N per problem
    kept, stats = select_samples(samples, threshold=0.0, dedupe="whitespace", cap=10, seed=s)

1. keep samples whose reward is strictly above ``threshold`` (with the CodeRL levels and
   threshold 0 that is exactly "the program passed": ReST-EM's binary reward, Singh et al.
   2023, sec. 3);
2. dedupe per problem: two completions of one problem are the same program when their keys
   under `program_key` are equal (``"exact"``, ``"whitespace"``, ``"ast"``; ``"none"`` keeps
   duplicates); the highest-reward copy stays;
3. cap per problem (ReST-EM keeps at most 10 solutions per problem so that easy problems do
   not dominate the M-step): the highest rewards first, ties broken by a seeded shuffle.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import math
import re
from collections.abc import Sequence

import numpy as np

DEDUPE_MODES = ("none", "exact", "whitespace", "ast")


@dataclasses.dataclass(frozen=True)
class Sample:
    """One sampled completion of one training problem.

    task_index: index of the problem in the iteration's problem list.
    completion: the decoded completion (``task.prompt + completion`` is the program).
    reward: the scalar reward of its execution outcome.
    token_ids: the sampled completion tokens (stop token included when it was sampled),
      what the M-step trains on.
    """

    task_index: int
    completion: str
    reward: float
    token_ids: tuple[int, ...] = ()


_SPACES = re.compile(r"[ \t]+")


def program_key(completion: str, mode: str = "whitespace", prefix: str = ""):
    """The identity of a completion for deduplication.

    "exact": the string itself. "whitespace": trailing spaces dropped, blank lines dropped,
    runs of spaces/tabs inside a line (after its indentation) collapsed to one space, so
    formatting-only variants are one program (a string literal differing only in inner
    spaces is also merged; rare in practice). "ast": the AST dump of ``prefix + completion``
    (comments and all formatting ignored; falls back to "whitespace" when it does not parse).
    """
    if mode == "exact":
        return completion
    if mode == "ast":
        try:
            return ast.dump(ast.parse(prefix + completion))
        except (SyntaxError, ValueError):
            pass
    elif mode != "whitespace":
        raise ValueError(f"dedupe mode {mode!r}: expected one of {DEDUPE_MODES}")
    lines = []
    for line in completion.splitlines():
        body = line.rstrip()
        if not body:
            continue
        indent = len(body) - len(body.lstrip())
        lines.append(body[:indent] + _SPACES.sub(" ", body[indent:]))
    return "\n".join(lines)


def filter_by_reward(samples: Sequence[Sample], threshold: float = 0.0) -> list[Sample]:
    """Samples with ``reward > threshold`` (strictly), in their original order."""
    return [s for s in samples if s.reward > threshold]


def dedupe(samples: Sequence[Sample], mode: str = "whitespace",
           prefixes: Sequence[str] | None = None) -> list[Sample]:
    """One sample per (problem, program key): the highest reward wins, then the earliest.

    `prefixes[task_index]` (the prompts) is prepended for the "ast" mode, whose key parses
    the whole program. Order: as in `samples`, minus the dropped copies.
    """
    if mode not in DEDUPE_MODES:
        raise ValueError(f"dedupe mode {mode!r}: expected one of {DEDUPE_MODES}")
    if mode == "none":
        return list(samples)
    best: dict[tuple[int, object], int] = {}
    for i, s in enumerate(samples):
        prefix = prefixes[s.task_index] if (prefixes is not None and mode == "ast") else ""
        key = (s.task_index, program_key(s.completion, mode, prefix))
        j = best.get(key)
        if j is None or s.reward > samples[j].reward:
            best[key] = i
    keep = set(best.values())
    return [s for i, s in enumerate(samples) if i in keep]


def cap_per_problem(samples: Sequence[Sample], cap: int, seed: int = 0) -> list[Sample]:
    """At most `cap` samples per problem (``cap <= 0``: no cap): highest rewards first, ties
    broken by a shuffle seeded with `seed`. Order: as in `samples`."""
    if cap <= 0:
        return list(samples)
    order = np.random.default_rng(seed).permutation(len(samples))
    rank = {int(i): r for r, i in enumerate(order)}
    by_task: dict[int, list[int]] = collections.defaultdict(list)
    for i, s in enumerate(samples):
        by_task[s.task_index].append(i)
    keep = set()
    for idx in by_task.values():
        idx.sort(key=lambda i: (-samples[i].reward, rank[i]))
        keep.update(idx[:cap])
    return [s for i, s in enumerate(samples) if i in keep]


def select_samples(samples: Sequence[Sample], *, threshold: float = 0.0,
                   dedupe_mode: str = "whitespace", cap: int = 10, seed: int = 0,
                   num_problems: int | None = None, prefixes: Sequence[str] | None = None
                   ) -> tuple[list[Sample], dict[str, float]]:
    """Filter -> dedupe -> cap (see the module docstring). Returns (kept, stats).

    stats: ``samples`` (all), ``positive`` (reward above threshold), ``unique`` (after
    dedupe), ``kept`` (after the cap), ``covered`` (problems with >= 1 kept sample) and
    ``coverage`` (covered / num_problems, default: the number of distinct task indices).
    """
    positive = filter_by_reward(samples, threshold)
    unique = dedupe(positive, dedupe_mode, prefixes)
    kept = cap_per_problem(unique, cap, seed)
    covered = len({s.task_index for s in kept})
    total = num_problems if num_problems is not None else len({s.task_index for s in samples})
    stats = {
        "samples": float(len(samples)),
        "positive": float(len(positive)),
        "unique": float(len(unique)),
        "kept": float(len(kept)),
        "covered": float(covered),
        "coverage": covered / max(total, 1),
    }
    return kept, stats


def sample_weights(rewards: Sequence[float], weighting: str = "reward") -> np.ndarray:
    """Per-example weights [K] float32 of the M-step's reward-weighted NLL.

    "reward": the reward itself (ReST-EM's M-step maximizes sum r * log p; with a binary
    reward this is plain NLL on the kept samples); "uniform": 1 for every kept sample.
    """
    r = np.asarray(rewards, np.float32)
    if weighting == "uniform":
        return np.ones_like(r)
    if weighting != "reward":
        raise ValueError(f"weighting {weighting!r}: expected 'reward' or 'uniform'")
    if (r <= 0).any():
        raise ValueError("reward weighting needs positive rewards; raise the threshold to >= 0 "
                         "or use weighting='uniform'")
    return r


def mstep_steps(num_kept: int, batch_size: int, *, steps: int = 0, epochs: float = 2.0,
                min_steps: int = 1, max_steps: int = 0) -> int:
    """Optimizer steps of one M-step: `steps` when > 0, else ``ceil(epochs * kept / batch)``
    clipped to [min_steps, max_steps] (max_steps 0: no upper bound); 0 with nothing kept."""
    if num_kept <= 0:
        return 0
    if steps > 0:
        return int(steps)
    n = max(math.ceil(epochs * num_kept / batch_size), int(min_steps))
    return min(n, int(max_steps)) if max_steps > 0 else n


def mstep_init(restart_from_base: bool, base_params, last_params):
    """The parameters an M-step starts from: the base model every iteration (ReST-EM, Singh
    et al. 2023: fine-tuning from the base each round limits drift and overfitting) or the
    previous iterate (expert iteration, Anthony et al. 2017; STaR, Zelikman et al. 2022).
    Before the first iteration the last iterate is the base."""
    if restart_from_base or last_params is None:
        return base_params
    return last_params


def early_stopping(valid_scores: Sequence[float], patience: int, min_delta: float = 0.0
                   ) -> tuple[int, bool]:
    """(best index, stop?) from validation scores [iterations + 1] (index 0: the base).

    The best is the earliest index whose score exceeds every earlier best by more than
    `min_delta`; stop once `patience` iterations in a row brought no such improvement
    (``patience <= 0``: never stop early).
    """
    if not valid_scores:
        raise ValueError("early_stopping: no scores")
    best, best_score = 0, valid_scores[0]
    for i, v in enumerate(valid_scores[1:], start=1):
        if v > best_score + min_delta:
            best, best_score = i, v
    since = len(valid_scores) - 1 - best
    return best, patience > 0 and since >= patience
