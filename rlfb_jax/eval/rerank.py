"""Best-of-n selection among sampled programs: LEVER and its baselines (host only, numpy).

Every selector takes the n candidates of one task and returns the index of the chosen one.
Candidates are described by arrays of length n:

* ``logprob`` [n] float: log p_LM(y | x), the sum of the sampled tokens' log-probabilities
  under the model at temperature 1 (`Rollout.logprobs * mask` summed);
* ``length`` [n] int: number of completion tokens (for length normalization);
* ``keys`` [n] str: the execution result on the prompt's *visible* examples only (what
  `Task.probe_job` prints, see `execution_key`); hidden tests are never used for selection;
* ``programs`` [n] str: the completion text (identical programs are one program);
* ``log_pv`` [n] float: log p_verifier(correct | x, y[, execution result]).

Methods (names are the summary keys ``rerank/<method>@<n>``):

=================  ===========================================================================
greedy             the greedy decode (sampled separately; the same for every n)
random             a uniformly random sample; scored by its expected accuracy (the pass rate
                   of the n samples), which is exact rather than one noisy draw
likelihood         argmax of log p_LM (optionally divided by the length)
majority_vote      execution-based voting: the largest group of samples with equal results on
                   the visible inputs (programs that fail to run vote only if nothing else
                   ran), its most likely member (Shi et al. 2022's MBR-exec in its simplest form)
verifier_no_exec   argmax of p_LM^alpha x p_verifier, a verifier that never saw execution results
verifier_no_agg    argmax of p_LM^alpha x p_verifier with execution results, no aggregation
lever              LEVER (Ni et al. 2023, eq. 3): over distinct programs,
                   score(y) = p_LM(y)^alpha x p_verifier(y), summed over programs with the same
                   execution result; the best group's best program is returned
=================  ===========================================================================

Ties are broken deterministically: the earliest candidate wins (``np.argmax``), and groups
are ordered by first appearance. The rank-based AUC (Mann-Whitney U) lives here as well.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

METHODS = ("greedy", "random", "likelihood", "majority_vote", "verifier_no_exec",
           "verifier_no_agg", "lever")

# Execution keys of programs that did not run to the end of the visible examples start
# with this marker (see `execution_key`); majority voting prefers programs that ran.
ERROR_MARK = "!"


def execution_key(status: str, stdout: str, error_type: str | None = None) -> str:
    """The execution result of a probe job (`Task.probe_job`) as a grouping key.

    A probe that ran prints one line per visible example (the value's repr, the expected
    text when equal, or ``!ErrorType`` when the call raised): the key is that output,
    whitespace-normalized per line. A program that failed before printing (syntax error,
    crash at import, timeout, ...) gets ``"!<status>[:<ErrorType>]"``.
    """
    if status in ("passed", "wrong_answer"):
        return "\n".join(line.strip() for line in stdout.strip().splitlines())
    return ERROR_MARK + status + (f":{error_type}" if error_type else "")


def lm_scores(logprob, length, alpha: float = 1.0, length_norm: bool = False) -> np.ndarray:
    """alpha * log p_LM(y) [n], per token when `length_norm` (lengths of 0 count as 1)."""
    logprob = np.asarray(logprob, np.float64)
    if length_norm:
        logprob = logprob / np.maximum(np.asarray(length, np.float64), 1.0)
    return float(alpha) * logprob


def group_ids(keys: Sequence[str]) -> np.ndarray:
    """[n] int group index of each key, groups numbered in order of first appearance."""
    index: dict[str, int] = {}
    return np.array([index.setdefault(k, len(index)) for k in keys], np.int64)


def first_occurrences(programs: Sequence[str]) -> np.ndarray:
    """[n] bool, True on the first copy of each distinct program."""
    seen: set[str] = set()
    out = np.zeros(len(programs), bool)
    for i, p in enumerate(programs):
        if p not in seen:
            seen.add(p)
            out[i] = True
    return out


def select_likelihood(logprob, length, length_norm: bool = False) -> int:
    """Maximum likelihood: argmax log p_LM (per token when `length_norm`)."""
    return int(np.argmax(lm_scores(logprob, length, 1.0, length_norm)))


def select_majority_vote(keys: Sequence[str], logprob, length, length_norm: bool = False) -> int:
    """Execution-based majority vote over all n samples (duplicates vote too).

    The winning group has the most samples; ties go to the group whose best member is more
    likely, then to the earlier group. Groups of programs that failed to run (keys starting
    with "!") vote only when no program ran. Returns the winner's most likely member.
    """
    keys = list(keys)
    lm = lm_scores(logprob, length, 1.0, length_norm)
    gid = group_ids(keys)
    ran = np.array([not k.startswith(ERROR_MARK) for k in keys])
    eligible = ran if ran.any() else np.ones(len(keys), bool)
    best_group, best = -1, None
    for g in range(int(gid.max()) + 1):
        members = (gid == g) & eligible
        if not members.any():
            continue
        rank = (int(members.sum()), float(lm[members].max()))
        if best is None or rank > best:  # strict: the earlier group keeps a full tie
            best_group, best = g, rank
    members = gid == best_group
    return int(np.argmax(np.where(members, lm, -np.inf)))


def select_verifier(logprob, length, log_pv, alpha: float = 1.0,
                    length_norm: bool = False) -> int:
    """Argmax of alpha log p_LM + log p_verifier, each program on its own (no aggregation)."""
    return int(np.argmax(lm_scores(logprob, length, alpha, length_norm)
                         + np.asarray(log_pv, np.float64)))


def lever_group_scores(keys: Sequence[str], programs: Sequence[str], logprob, length, log_pv,
                       alpha: float = 1.0, length_norm: bool = False):
    """LEVER's aggregated scores (Ni et al. 2023, eq. 3).

    Returns (gid [n], log group score [G], log score of each candidate [n]). A group's score
    is log sum over its *distinct* programs of p_LM(y)^alpha p_verifier(y); duplicate
    samples of a program do not add to it (p_LM already counts how likely a program is).
    """
    own = lm_scores(logprob, length, alpha, length_norm) + np.asarray(log_pv, np.float64)
    gid = group_ids(keys)
    first = first_occurrences(programs)
    n_groups = int(gid.max()) + 1 if len(gid) else 0
    group = np.full(n_groups, -np.inf)
    for g in range(n_groups):
        vals = own[(gid == g) & first]
        if vals.size:
            top = vals.max()
            group[g] = top + np.log(np.sum(np.exp(vals - top))) if np.isfinite(top) else top
    return gid, group, own


def select_lever(keys: Sequence[str], programs: Sequence[str], logprob, length, log_pv,
                 alpha: float = 1.0, length_norm: bool = False) -> int:
    """LEVER: the group with the largest summed score, and its highest-scoring program."""
    gid, group, own = lever_group_scores(keys, programs, logprob, length, log_pv, alpha,
                                         length_norm)
    best = int(np.argmax(group))
    return int(np.argmax(np.where(gid == best, own, -np.inf)))


@dataclasses.dataclass
class TaskCandidates:
    """All sampled candidates of one task (arrays [n]) plus their hidden-test verdicts.

    ``passed`` (hidden tests) is only read to score a selection, never to make one.
    """

    logprob: np.ndarray
    length: np.ndarray
    keys: list[str]
    programs: list[str]
    log_pv: np.ndarray  # verifier with execution results
    log_pv_no_exec: np.ndarray  # verifier without them
    passed: np.ndarray  # bool
    compiled: np.ndarray | None = None  # bool; scores the compile rate of the selections

    def subset(self, idx) -> TaskCandidates:
        idx = np.asarray(idx)
        return TaskCandidates(self.logprob[idx], self.length[idx],
                              [self.keys[i] for i in idx], [self.programs[i] for i in idx],
                              self.log_pv[idx], self.log_pv_no_exec[idx], self.passed[idx],
                              None if self.compiled is None else self.compiled[idx])


def pick_all(c: TaskCandidates, alpha: float = 1.0,
             length_norm: bool = False) -> dict[str, int]:
    """The candidate each sampled-candidate method selects (an index into `c`)."""
    return {
        "likelihood": select_likelihood(c.logprob, c.length, length_norm),
        "majority_vote": select_majority_vote(c.keys, c.logprob, c.length, length_norm),
        "verifier_no_exec": select_verifier(c.logprob, c.length, c.log_pv_no_exec, alpha,
                                            length_norm),
        "verifier_no_agg": select_verifier(c.logprob, c.length, c.log_pv, alpha, length_norm),
        "lever": select_lever(c.keys, c.programs, c.logprob, c.length, c.log_pv, alpha,
                              length_norm),
    }


def select_all(c: TaskCandidates, alpha: float = 1.0, length_norm: bool = False,
               field: str = "passed") -> dict[str, float]:
    """Accuracy (hidden tests) of every sampled-candidate method on one candidate set, or
    with ``field="compiled"`` the compile rate of the selected programs.

    "random" is the expected value of a uniform pick; the others are 0/1.
    """
    return _score(pick_all(c, alpha, length_norm), getattr(c, field))


def _score(picks: dict[str, int], values) -> dict[str, float]:
    """The value of each method's pick; "random": the mean over all candidates."""
    values = np.asarray(values, np.float64)
    out = {m: float(values[i]) for m, i in picks.items()}
    out["random"] = float(np.mean(values))
    return out


def rerank_accuracy(tasks: Sequence[TaskCandidates], greedy_passed: Sequence[bool],
                    ns: Sequence[int], num_subsets: int = 20, seed: int = 0,
                    alpha: float = 1.0, length_norm: bool = False,
                    per_task: dict | None = None) -> dict[str, float]:
    """Held-out accuracy of every method for each n: ``{"rerank/<method>@<n>": acc}``, and
    when the candidates know whether they compile, ``rerank_compile/<method>@<n>``.

    Each task has N >= max(ns) candidates; for n < N the accuracy is averaged over
    `num_subsets` random subsets of size n (without replacement, seeded), for n = N all
    candidates are used once. "greedy" does not depend on n. A dict passed as `per_task`
    receives ``per_task[n][method]``: [T] each task's accuracy (for `paired_differences`).
    """
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    greedy_rows = np.asarray(greedy_passed, np.float64)
    greedy = float(np.mean(greedy_rows))
    for n in ns:
        rows = {m: np.zeros(len(tasks)) for m in METHODS[1:]}
        compiled = dict.fromkeys(METHODS[1:], 0.0)
        with_compile = all(c.compiled is not None for c in tasks)
        for t, c in enumerate(tasks):
            total = len(c.programs)
            if n > total:
                raise ValueError(f"n={n} but a task has only {total} candidates")
            draws = 1 if n == total else num_subsets
            for _ in range(draws):
                idx = np.arange(total) if n == total else np.sort(
                    rng.choice(total, n, replace=False))
                sub = c.subset(idx)
                picks = pick_all(sub, alpha, length_norm)  # once; scored on both fields
                for m, v in _score(picks, sub.passed).items():
                    rows[m][t] += v / draws
                if with_compile:
                    for m, v in _score(picks, sub.compiled).items():
                        compiled[m] += v / draws
        out[f"rerank/greedy@{n}"] = greedy
        for m, v in rows.items():
            out[f"rerank/{m}@{n}"] = float(v.mean()) if len(tasks) else 0.0
            if with_compile and tasks:
                out[f"rerank_compile/{m}@{n}"] = compiled[m] / len(tasks)
        if per_task is not None:
            per_task[n] = {"greedy": greedy_rows, **rows}
    return out


def paired_differences(per_task: dict, ref: str = "lever", num_boot: int = 2000,
                       seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """How much `ref` beats every other method, paired over tasks, with a bootstrap CI.

    `per_task` is what `rerank_accuracy` fills. Returns, for each n and method m != ref,
    ``rerank_diff/<m>@<n>`` = mean over tasks of (ref - m) and ``rerank_diff_lo/...``,
    ``rerank_diff_hi/...``: the percentile interval of that mean over `num_boot` resamples
    of the tasks (the same resamples for every method). With 200 tasks one task is 0.005.
    """
    out: dict[str, float] = {}
    rng = np.random.default_rng(seed)
    q = (1.0 - level) / 2.0
    for n, rows in per_task.items():
        base = np.asarray(rows[ref], np.float64)
        boot = rng.integers(0, len(base), size=(num_boot, len(base))) if len(base) else None
        for m, vals in rows.items():
            if m == ref:
                continue
            d = base - np.asarray(vals, np.float64)
            out[f"rerank_diff/{m}@{n}"] = float(d.mean()) if len(d) else 0.0
            means = d[boot].mean(axis=1) if boot is not None else np.zeros(1)
            out[f"rerank_diff_lo/{m}@{n}"] = float(np.quantile(means, q))
            out[f"rerank_diff_hi/{m}@{n}"] = float(np.quantile(means, 1.0 - q))
    return out


def difference_table(diffs: dict[str, float], ns: Sequence[int], ref: str = "lever",
                     methods: Sequence[str] = METHODS) -> str:
    """Markdown: `ref` minus each method for each n, ``+0.012 [-0.004, +0.030]``."""
    head = f"| {ref} minus | " + " | ".join(f"n={n}" for n in ns) + " |"
    rows = [head, "| --- | " + " | ".join("---:" for _ in ns) + " |"]
    for m in methods:
        if m == ref:
            continue
        cells = []
        for n in ns:
            key = f"{m}@{n}"
            if f"rerank_diff/{key}" not in diffs:
                cells.append("-")
                continue
            cells.append(f"{diffs[f'rerank_diff/{key}']:+.3f} [{diffs[f'rerank_diff_lo/{key}']:+.3f}, "
                         f"{diffs[f'rerank_diff_hi/{key}']:+.3f}]")
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def rank_auc(scores, labels) -> float:
    """ROC AUC by ranks (Mann-Whitney U / (n_pos n_neg)); tied scores share their mean rank.

    scores, labels: [N]. Returns NaN when one class is absent.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks (1-based) over runs of equal scores
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def markdown_table(metrics: dict[str, float], ns: Sequence[int],
                   methods: Sequence[str] = METHODS) -> str:
    """A markdown table of ``rerank/<method>@<n>`` accuracies: methods x n."""
    head = "| method | " + " | ".join(f"n={n}" for n in ns) + " |"
    rule = "| --- | " + " | ".join("---:" for _ in ns) + " |"
    rows = [head, rule]
    for m in methods:
        cells = [f"{metrics[f'rerank/{m}@{n}']:.3f}" if f"rerank/{m}@{n}" in metrics else "-"
                 for n in ns]
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def plot_accuracy(path: str, metrics: dict[str, float], ns: Sequence[int],
                  methods: Sequence[str] = METHODS, title: str = ""):
    """PNG: held-out accuracy of each method against n (log-2 axis)."""
    from rlfb_jax.core.metrics import new_figure, save_figure

    fig, ax = new_figure(figsize=(6, 4))
    for m in methods:
        ys = [metrics.get(f"rerank/{m}@{n}", np.nan) for n in ns]
        # LEVER thick and underneath, so a method that ties it stays visible on top
        style = dict(lw=3.5, color="k", zorder=1) if m == "lever" else dict(lw=1.2, zorder=2)
        ax.plot(list(ns), ys, marker="o", label=m, **style)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(ns))
    ax.set_xticklabels([str(n) for n in ns])
    ax.set_xlabel("n samples per task")
    ax.set_ylabel("held-out accuracy")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
