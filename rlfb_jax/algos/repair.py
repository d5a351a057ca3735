"""Inference with execution feedback (``config.algo = "repair"``): CodeRL's critical sampling
and self-repair, against plain resampling at the same number of executed programs.

For each held-out task and seed:

    round 0     n samples; each runs on the visible examples (feedback) and, for judging
                only, on the hidden tests
    round r     tasks with no sample passing the visible examples yet get n new programs:
                  repair:   one repair of each of the previous round's n failed attempts,
                            the same model prompted with (task, attempt, feedback text)
                            (`rlfb_jax.data.feedback`)
                  resample: n fresh samples of the plain prompt
                  critical: (with ``repair.critic_workdir``, CodeRL's critical sampling)
                            each failed attempt is cut where a critic's P(passed | prompt,
                            program so far) is highest and sampled on from there
    select      the first program (in execution order) that passes the visible examples,
                else the first sample; its hidden verdict is the task's pass@1

A program already executed for a task is not run again (its verdict is known): it is drawn
again, up to ``repair.redraws`` times, and dropped if it stays a repeat, so the budget
counts distinct programs for both methods. Both methods share round 0 and spend programs
only on unsolved tasks, so at each round the repair curve has executed at most as many
programs as resampling whenever it solves more.
The model must have been trained to repair: the base's ``data.repair_pairs`` > 0 (see
`experiments/synthetic_repair.py`).

Outputs: summary.json with, per round r, ``repair/round<r>/pass@1`` and
``resample/round<r>/pass@1`` (means over ``repair.seeds`` seeds), ``.../programs`` (programs
executed per task), ``diff/round<r>/pass@1`` (repair - resample, paired over tasks and seeds)
with ``_lo``/``_hi`` (95% bootstrap over tasks), ``eval/pass@1_base`` (the base's greedy
pass@1) and ``repair/sampled_pass@1`` (its samples' pass rate); repair.png (pass@1 against
programs executed), repair_samples.jsonl (every attempt with its feedback), and
``seed<s>.json`` per finished seed (a killed run resumes at the next seed).
"""

from __future__ import annotations

import dataclasses
import json
import logging

import jax
import ml_collections
import numpy as np
from etils import epath

from rlfb_jax.algos import register_algo
from rlfb_jax.algos.driver import Driver
from rlfb_jax.algos.sft import default_config as sft_config
from rlfb_jax.core.config import experiment_config
from rlfb_jax.core.rollout import rollout
from rlfb_jax.core.state import named_key
from rlfb_jax.data.feedback import feedback_job, render_feedback, repair_task
from rlfb_jax.data.tokenizer import encode_batch

log = logging.getLogger("rlfb_jax")
METHODS = ("repair", "resample")


def methods(critical: bool) -> tuple[str, ...]:
    """The methods compared: repair and resampling, and CodeRL's critical sampling when a
    critic is given (each failed attempt cut where the critic's P(passed) is highest and
    sampled on from there, `rlfb_jax.algos.critic.critical_prefixes`)."""
    return METHODS + ("critical",) if critical else METHODS


def default_config() -> ml_collections.ConfigDict:
    c = experiment_config()
    c.algo = "repair"
    c.base = sft_config()
    c.base_workdir = ""
    c.repair = ml_collections.ConfigDict(dict(
        num_tasks=200, n=4, rounds=3, seeds=3, temperature=0.8, top_k=0, top_p=1.0,
        max_new_tokens=48, chunk_rows=256, workers=2, timeout=2.0, bootstrap=2000,
        # > 0: a program already executed for the task is drawn again (up to this many
        # times) instead of being executed again; 0: every sample runs, repeats included
        redraws=3,
        # a finished critic run (experiments/synthetic_critic.py on this base): adds a third
        # method, CodeRL's critical sampling; "": off
        critic_workdir=""))
    return c


@dataclasses.dataclass
class Attempt:
    text: str
    feedback: str  # "" when the visible examples pass
    visible: bool  # passes the visible examples
    hidden: bool  # passes the hidden tests (judging only: never shown to the model)
    status: str  # the hidden tests' status
    prompt_kind: str  # "sample", "repair" or "critical"


def _attempts(driver: Driver, prompts, n: int, key, kind: str, seen: list[set[str]],
              prefixes: list[tuple[str, list[int]]] | None = None) -> list[list[Attempt]]:
    """Up to n new programs per (plain or repair) prompt task, each run on the visible
    examples and judged on the hidden tests; [len(prompts)][<= n].

    With `prefixes` (critical sampling: (text, token ids) of a program's start per prompt),
    prompt i is sampled on from its prompt's ids + ``prefixes[i]``'s ids (encoded apart, as
    training encodes prompt and completion), and its programs are the prefix's text + the
    sample.

    ``seen[i]``: the programs already executed for prompt i's task (updated here). With
    ``repair.redraws`` > 0 a program seen before is not executed again (its verdict is
    known): it is drawn again, up to that many times, and dropped if it stays a repeat; so
    "programs executed" counts distinct programs for both methods."""
    rc, base = driver.config.repair, driver.base
    sampling = base.policy.sampling(rc.temperature, rc.top_k, rc.top_p, rc.max_new_tokens)
    ids = None
    if prefixes is not None:
        ids = [p + list(pre_ids) for p, (_, pre_ids) in zip(
            encode_batch(base.policy.tokenizer, [t.prompt for t in prompts]), prefixes)]

    def draw(which: list[int], k, m):  # sampling only: execution comes below
        return rollout(base.policy, base.params, [prompts[i] for i in which], sampling, m, k,
                       driver.pool, chunk_rows=int(rc.chunk_rows), jobs=lambda task, texts: [],
                       prompt_len=int(driver.config.base.data.prompt_len), desc=kind,
                       prompt_ids=None if ids is None else [ids[i] for i in which]).texts

    pre = (lambda i: prefixes[i][0]) if prefixes is not None else (lambda i: "")
    rows = [i // n for i in range(len(prompts) * n)]
    texts = [pre(i) + t for i, t in zip(rows, draw(list(range(len(prompts))), key, n))]
    keep: list[str | None] = [None] * len(texts)
    for attempt in range(int(rc.redraws) + 1):
        todo = []
        for j, (i, text) in enumerate(zip(rows, texts)):
            if keep[j] is not None:
                continue
            if text in seen[i] and int(rc.redraws):
                todo.append(j)
            else:
                keep[j] = text
                seen[i].add(text)
        if not todo or attempt == int(rc.redraws):
            break
        again = draw([rows[j] for j in todo], jax.random.fold_in(key, 1 + attempt), 1)
        for j, text in zip(todo, again):
            texts[j] = pre(rows[j]) + text
    runs = [(rows[j], text) for j, text in enumerate(keep) if text is not None]
    jobs = [job for i, text in runs
            for job in (feedback_job(prompts[i], text), prompts[i].to_job(text))]
    futures = driver.pool.submit(jobs)
    out: list[list[Attempt]] = [[] for _ in prompts]
    for k, (i, text) in enumerate(runs):
        fb, hid = futures[2 * k].result(), futures[2 * k + 1].result()
        feedback = render_feedback(prompts[i], text, fb, jobs[2 * k].program)
        out[i].append(Attempt(text, feedback, fb.passed, hid.passed, hid.status, kind))
    return out


def _selected(history: list[Attempt]) -> bool:
    """The hidden verdict of the program a user would keep (see the module docstring)."""
    return next((a.hidden for a in history if a.visible), history[0].hidden)


def run_seed(driver: Driver, tasks, seed: int, critic=None) -> dict:
    """Every method for one seed: per method, per round, the selected programs' hidden
    verdicts [tasks] and the programs executed per task. ``critic(tasks, completions) ->
    prefixes`` adds critical sampling (`methods`)."""
    rc = driver.config.repair
    n, rounds = int(rc.n), int(rc.rounds)
    key = named_key(jax.random.key(seed), "repair")
    seen0 = [set() for _ in tasks]
    first = _attempts(driver, tasks, n, jax.random.fold_in(key, 0), "sample", seen0)
    result = {"sampled_pass": float(np.mean([a.hidden for row in first for a in row]))}
    for m, method in enumerate(methods(critic is not None)):
        history = [list(row) for row in first]
        frontier = [list(row) for row in first]
        seen = [set(s) for s in seen0]
        curve = [([_selected(h) for h in history], [len(h) for h in history])]
        kept: list[float] = []  # critical: the share of each failed program's text kept
        for r in range(1, rounds + 1):
            todo = [i for i, h in enumerate(history) if not any(a.visible for a in h)]
            if todo:
                k = jax.random.fold_in(key, 1 + m * rounds + r)
                if method in ("repair", "critical"):  # one attempt per frontier failure
                    owner = [i for i in todo for _ in frontier[i]]
                    failed = [a for i in todo for a in frontier[i]]
                    seen_by = [seen[i] for i in owner]
                    if method == "repair":
                        got = _attempts(driver, [repair_task(tasks[i], a.text, a.feedback)
                                                 for i, a in zip(owner, failed)], 1, k,
                                        "repair", seen_by)
                    else:  # resample each failure after the critic's cut
                        judged = [tasks[i] for i in owner]
                        prefixes = critic(judged, [a.text for a in failed])
                        kept += [len(p) / max(len(a.text), 1)
                                 for (p, _), a in zip(prefixes, failed)]
                        got = _attempts(driver, judged, 1, k, "critical", seen_by,
                                        prefixes=prefixes)
                    new = [sum((g for g, o in zip(got, owner) if o == i), []) for i in todo]
                else:
                    new = _attempts(driver, [tasks[i] for i in todo], n, k, "sample",
                                    [seen[i] for i in todo])
                for i, row in zip(todo, new):
                    history[i] += row
                    frontier[i] = row or frontier[i]  # all repeats: repair the last ones
            curve.append(([_selected(h) for h in history], [len(h) for h in history]))
        result[method] = {"pass": [[bool(x) for x in c[0]] for c in curve],
                          "programs": [c[1] for c in curve], "kept_frac": kept,
                          "attempts": [[dataclasses.asdict(a) for a in h] for h in history]}
    return result


def _bootstrap(diffs: np.ndarray, draws: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of the mean of per-task values (resampling tasks)."""
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), (draws, len(diffs)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(seeds: list[dict], rounds: int, draws: int = 2000) -> dict[str, float]:
    """Means over seeds per method and round; ``diff/...`` is repair - resample and, with
    critical sampling, ``diff_critical/...`` critical - resample (paired, bootstrap)."""
    out = {"repair/sampled_pass@1": float(np.mean([s["sampled_pass"] for s in seeds]))}
    ms = methods(all("critical" in s for s in seeds))
    if "critical" in ms:  # how much of a failed program critical sampling keeps, on average
        kept = [k for s in seeds for k in s["critical"].get("kept_frac", [])]
        out["critical/kept_frac"] = float(np.mean(kept)) if kept else 0.0
    for r in range(rounds + 1):
        per = {}
        for method in ms:
            passed = np.array([s[method]["pass"][r] for s in seeds], float)  # [seeds, tasks]
            progs = np.array([s[method]["programs"][r] for s in seeds], float)
            out[f"{method}/round{r}/pass@1"] = float(passed.mean())
            out[f"{method}/round{r}/pass@1_seed_std"] = float(passed.mean(axis=1).std())
            out[f"{method}/round{r}/programs"] = float(progs.mean())
            per[method] = passed.mean(axis=0)  # per task, over seeds
        for name, method in (("diff", "repair"), ("diff_critical", "critical")):
            if method in per:
                diff = per[method] - per["resample"]
                out[f"{name}/round{r}/pass@1"] = float(diff.mean())
                out[f"{name}/round{r}/pass@1_lo"], out[f"{name}/round{r}/pass@1_hi"] = \
                    _bootstrap(diff, draws, r)
    return out


def plot(path: str, summary: dict, rounds: int) -> None:
    from rlfb_jax.core.metrics import new_figure, save_figure

    fig, ax = new_figure(figsize=(5.5, 4))
    for method, marker in zip(methods("critical/round0/pass@1" in summary), "os^"):
        xs = [summary[f"{method}/round{r}/programs"] for r in range(rounds + 1)]
        ys = [summary[f"{method}/round{r}/pass@1"] for r in range(rounds + 1)]
        err = [summary[f"{method}/round{r}/pass@1_seed_std"] for r in range(rounds + 1)]
        ax.errorbar(xs, ys, yerr=err, marker=marker, capsize=3, label=method)
        for r, (x, y) in enumerate(zip(xs, ys)):
            ax.annotate(f"R={r}", (x, y), textcoords="offset points", xytext=(4, -10),
                        fontsize=7)
    ax.axhline(summary.get("eval/pass@1_base", np.nan), ls="--", c="gray", label="base greedy")
    ax.set_xlabel("programs executed per task")
    ax.set_ylabel("held-out pass@1 (hidden tests)")
    ax.set_title("selection with visible examples")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def _critic(driver: Driver):
    """``(tasks, completions) -> prefixes`` from the finished critic run of
    ``repair.critic_workdir``, which must have been trained on this base's data."""
    from rlfb_jax.algos.base_model import PROMPT_DEFINING
    from rlfb_jax.algos.critic import critical_prefixes, passed_probs_fn
    from rlfb_jax.core.checkpoint import params_from_checkpoint

    cdir, base, cfg = driver.config.repair.critic_workdir, driver.base, driver.config
    if not epath.Path(cdir, "summary.json").exists():
        raise ValueError(f"config.repair.critic_workdir={cdir!r}: no finished critic run "
                         "there (train one with experiments/synthetic_critic.py:repair)")
    theirs = json.loads(epath.Path(cdir, "config.json").read_text()).get("base", {}).get(
        "data", {})
    ours = cfg.base.data.to_dict()
    diff = [k for k in PROMPT_DEFINING if k in ours and theirs.get(k) != ours[k]]
    if diff:
        raise ValueError(f"config.repair.critic_workdir={cdir!r}: the critic was trained on "
                         f"another base's data ({', '.join('data.' + k for k in diff)} "
                         "differ)")
    lm = base.policy.with_heads(("critic",)).lm
    params = params_from_checkpoint(cdir, lm.abstract_params(), slot="critic")
    shape = (int(cfg.base.data.prompt_len), int(cfg.repair.max_new_tokens),
             base.policy.pad_id, base.policy.eos_id)
    log.info("critical sampling with the critic of %s", cdir)
    probs_fn = passed_probs_fn(lm)
    return lambda tasks, texts: critical_prefixes(
        probs_fn, params, base.policy.tokenizer, tasks, texts, *shape, driver.mesh, driver.rules,
        int(cfg.repair.chunk_rows))


@register_algo("repair", pool="repair")
def train(driver: Driver) -> dict:
    rc = driver.config.repair
    base = driver.base
    if not int(driver.config.base.data.get("repair_pairs", 0)):
        log.warning("the base was trained without repair examples (base.data.repair_pairs=0): "
                    "its repairs are plain samples with a longer prompt")
    tasks = list(base.data.eval_tasks)[: int(rc.num_tasks)]
    critic = _critic(driver) if rc.critic_workdir else None
    ms = methods(critic is not None)
    seeds = []
    workdir = epath.Path(driver.workdir)
    for s in range(int(rc.seeds)):
        path = workdir / f"seed{s}.json"
        if path.exists():  # a seed run without the critic lacks its arm: run it again
            done = json.loads(path.read_text())
            if set(ms) <= set(done):
                seeds.append(done)
                continue
        result = run_seed(driver, tasks, int(driver.config.seed) * 1000 + s, critic)
        tmp = workdir / f"seed{s}.json.tmp"  # whole or absent: a killed seed is rerun
        tmp.write_text(json.dumps(result))
        tmp.replace(path)
        seeds.append(result)
        one = summarize([result], int(rc.rounds), 200)
        driver.log(s + 1, {k: v for k, v in one.items() if "_seed_std" not in k})
        log.info("seed %d: %s", s, " | ".join(m + " " + " ".join(
            f"{one[f'{m}/round{r}/pass@1']:.3f}" for r in range(int(rc.rounds) + 1))
            for m in ms))
    summary = summarize(seeds, int(rc.rounds), int(rc.bootstrap))
    (workdir / "repair_samples.jsonl").write_text("".join(
        json.dumps({"task_id": task.task_id, "method": method, "attempts": hist}) + "\n"
        for method in ms for task, hist in zip(tasks, seeds[0][method]["attempts"])))
    plot(str(workdir / "repair.png"), {**summary, "eval/pass@1_base": base.summary.get(
        "eval/pass@1", float("nan"))}, int(rc.rounds))
    summary = driver.finish(summary, base=base)
    return summary
