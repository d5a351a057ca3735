"""A learned verifier and LEVER reranking (``config.algo = "lever"``; Ni et al. 2023).

    1. verifier data   sample K programs per training task (T = lever.temperature), dedupe
                       keeping counts, run each against the hidden tests (label) and on the
                       prompt's visible examples (execution result)        [verifier_data]
    2. verifier        the base model + a scalar score head, fine-tuned in the TrainState's
                       "verifier" slot with the "verifier" loss (weighted BCE, optional joint
                       LM term, Cobbe et al. 2021); trained twice: with the execution
                       rendering in its input ("exec") and without it ("no_exec")
    3. test samples    greedy + n_max samples per held-out task, executed the same way
    4. reranking       every method of `rlfb_jax.eval.rerank` for each n in lever.ns
                       (subsets of the n_max samples, averaged over seeded draws)

Outputs (the run directory): summary.json with ``rerank/<method>@<n>``, ``verifier/auc``
and ``verifier/auc_no_exec`` (held-out test programs), ``rerank_diff[_lo|_hi]/<method>@<n>``
(LEVER minus the method, paired over tasks, with a 95% bootstrap interval), rerank.md (tables),
rerank_accuracy.png (accuracy against n),
the sample files, and the two verifier runs in ``verifier_exec/`` and ``verifier_no_exec/``
(each a Run with its own checkpoints and metrics). Every stage is saved when it ends, so a
killed run resumes at the stage it was in (verifier training from its last checkpoint) and
a finished run does no work.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from rlfb_jax.algos import register_algo
from rlfb_jax.algos import verifier_data as vd
from rlfb_jax.algos.driver import Driver
from rlfb_jax.algos.sft import default_config as sft_config
from rlfb_jax.core import sharding as shd
from rlfb_jax.core.batching import epoch_order
from rlfb_jax.core.checkpoint import params_from_checkpoint
from rlfb_jax.core.config import experiment_config
from rlfb_jax.core.optim import make_optimizer
from rlfb_jax.core.rollout import rollout
from rlfb_jax.core.rundir import is_main_process
from rlfb_jax.core.state import named_key
from rlfb_jax.core.step import make_step
from rlfb_jax.eval import rerank
from rlfb_jax.losses import get_loss
from rlfb_jax.losses.verifier import verifier_logits

log = logging.getLogger("rlfb_jax")


def default_config() -> ml_collections.ConfigDict:
    c = experiment_config()
    c.algo = "lever"
    c.base = sft_config()
    c.base_workdir = ""
    c.lever = ml_collections.ConfigDict(dict(
        train_tasks=512,  # training tasks to sample verifier data from
        train_samples=8,  # K programs per training task
        temperature=0.8,  # for verifier data and test samples (LEVER samples at T > 0)
        top_k=0,
        top_p=1.0,
        max_new_tokens=48,
        test_tasks=200,  # held-out tasks (the first of the base's eval split)
        test_benchmark="",  # "" (the base's eval split) or "humaneval" (the package's file)
        ns=(1, 4, 16, 64),  # the largest is sampled once per task; smaller n are subsets
        num_subsets=100,  # random subsets averaged for each n below the largest
        alpha=1.0,  # score = alpha * log p_LM + log p_verifier
        length_norm=False,  # log p_LM per token
        # > 0: hold out this many training tasks from verifier training and choose alpha and
        # length_norm among the grids below by LEVER's accuracy on them (all K samples);
        # the held-out test tasks are never used for the choice
        select_tasks=0,
        alpha_grid=(1.0, 0.5, 2.0, 0.0),
        length_norm_grid=(False, True),
        batch_size=256,  # sampling rows per call
        workers=2,
        timeout=2.0,
    ))
    c.verifier = ml_collections.ConfigDict(dict(
        loss="verifier",
        steps=200,
        no_exec_steps=-1,  # -1: same as steps
        batch_size=32,
        lm_coef=0.0,  # joint LM objective (Cobbe et al. 2021); 0 switches it off
        balance=True,  # class-balanced weights
        calibrate=True,  # undo the weighting's prior shift at test time (see prior_offset)
        weight_by_count=False,  # weight each distinct program by its number of samples
        prompt_len=96,
        completion_len=64,
        exec_len=32,  # token budget of the execution rendering
        score_batch=128,
    ))
    c.optimizer.learning_rate = 1e-4
    c.optimizer.warmup_steps = 20
    c.optimizer.weight_decay = 0.01
    c.train.log_every = 10
    c.train.checkpoint_every = 50
    return c


class _VerifierScorer:
    """log p_verifier(correct | input) for many rows, in fixed-size jitted batches."""

    def __init__(self, lm, mesh, rules, batch_size: int):
        self.mesh, self.rules, self.bs = mesh, rules, int(batch_size)

        @jax.jit
        def score(params, batch, offset):
            logits, _ = verifier_logits(lm, params, batch)
            return jax.nn.log_sigmoid(logits + offset)

        self._score = score

    def __call__(self, params, batch: dict[str, np.ndarray], desc: str,
                 offset: float = 0.0) -> np.ndarray:
        """log sigmoid(logit + offset) [N] of every row of `batch`."""
        from tqdm.auto import tqdm

        n = len(batch["tokens"])
        out = np.zeros(n, np.float64)
        keys = ("tokens", "attention_mask")
        for s in tqdm(range(0, n, self.bs), desc=desc, file=sys.stderr, leave=False,
                      disable=not is_main_process()):
            idx = np.arange(s, s + self.bs).clip(max=n - 1)  # pad with the last row
            part = {k: batch[k][idx] for k in keys}
            vals = jax.device_get(self._score(
                params, shd.shard_batch(part, self.mesh, self.rules), jnp.float32(offset)))
            out[s : s + self.bs] = vals[: min(self.bs, n - s)]
        return out


def _train_verifier(driver: Driver, subdir: str, base, batch, steps: int):
    """Fine-tunes the base (+ score head) on `batch` in the "verifier" slot, in a run
    directory of its own, WORKDIR/subdir (resumable). Returns (verifier params, the run's
    summary)."""
    config, lm = driver.config, base.policy.lm
    with Driver(config, driver.workdir, subdir=subdir) as sub:
        if sub.finished is not None:
            return (params_from_checkpoint(sub.workdir, base.params, slot="verifier"),
                    sub.finished)
        vcfg = config.verifier
        tx, schedule = make_optimizer(config.optimizer, steps)
        init = jax.tree.map(jnp.copy, base.params)  # the step donates; base.params stays
        state, shardings = sub.create_state({"verifier": init}, {}, tx,
                                            {"verifier": lm.logical_axes()})
        step_fn = make_step(get_loss(vcfg.loss), tx, schedule=schedule,
                            state_shardings=shardings, mesh=sub.mesh, rules=sub.rules,
                            model=lm, lm_coef=float(vcfg.lm_coef))
        n, bs, seed = len(batch["labels"]), int(vcfg.batch_size), int(config.seed)
        last: dict = {}

        def step(state, i):
            idx = epoch_order(n, i, bs, seed)
            state, metrics = step_fn(state, sub.shard({k: v[idx] for k, v in batch.items()}))
            last.update(metrics)
            return state, metrics

        t0 = time.time()
        state = sub.loop(state, step, start=int(jax.device_get(state.step)), total=steps,
                         desc=subdir, meta=lambda i: {"step": i})
        final = {k: float(v) for k, v in jax.device_get(last).items()}
        summary = {"train/steps": steps, "train/examples": n, "time/train_s": time.time() - t0,
                   **{k: v for k, v in final.items() if k.startswith(("train/", "loss/"))}}
        # what finish wrote (mesh, total time): the same summary a resumed run reads back
        summary = sub.finish(summary, step=steps, state=state, meta={"step": steps})
        return state.params["verifier"], summary


def prior_offset(labels, weights) -> float:
    """Logit shift that undoes class weighting (a verifier trained with weights believes the
    positive rate is pi_w = sum(w y) / sum(w); the data's rate is pi): logit(pi) -
    logit(pi_w). LEVER multiplies and sums probabilities, so they must be calibrated:
    balanced training alone inflates every wrong program's p_verifier. 0 when one class
    is missing."""
    labels = np.asarray(labels, np.float64)
    weights = np.asarray(weights, np.float64)
    pi, pi_w = labels.mean(), (weights * labels).sum() / weights.sum()
    if not 0 < pi < 1:
        return 0.0
    return float(np.log(pi / (1 - pi)) - np.log(pi_w / (1 - pi_w)))


def _verifier_rows(config, tok, samples, tasks, use_exec: bool, labels_known: bool = True):
    prompts, comps, renders, labels, counts, rows = vd.flatten(samples, tasks)
    v = config.verifier
    weights = vd.class_weights(labels, counts if v.weight_by_count else None,
                               bool(v.balance)) if labels_known else None
    batch = vd.verifier_batch(tok, prompts, comps, renders if use_exec else None,
                              int(v.prompt_len), int(v.completion_len),
                              int(v.exec_len) if use_exec else 0, labels, weights)
    return batch, labels, rows


def _stage(path: str, make):
    """Samples saved at `path` (loaded if present, else made and saved)."""
    if epath.Path(path).exists():
        return vd.load_samples(path)
    out = make()
    if is_main_process():
        vd.save_samples(path, out)
    return out


def _candidates(samples, log_pv_exec, log_pv_no_exec, task_rows) -> list:
    """One `rerank.TaskCandidates` per task from its samples and the verifiers' scores of
    its distinct programs (rows of the scored batch, `task_rows` naming their task)."""
    out = []
    for r, s in enumerate(samples):
        rows = np.flatnonzero(task_rows == r)  # distinct programs of this task, in order
        idx = np.asarray(s.index)
        progs = [s.programs[i] for i in idx]
        out.append(rerank.TaskCandidates(
            logprob=np.asarray(s.logprob), length=np.asarray(s.length),
            keys=[p.key for p in progs], programs=[p.completion for p in progs],
            log_pv=log_pv_exec[rows][idx], log_pv_no_exec=log_pv_no_exec[rows][idx],
            passed=np.array([p.passed for p in progs]),
            compiled=np.array([p.status != "syntax_error" for p in progs])))
    return out


def choose_scoring(cands, alphas, length_norms) -> tuple[float, bool, dict[str, float]]:
    """(alpha, length_norm) with the best LEVER accuracy over `cands` using all their
    candidates (ties: the earlier grid entry), and the accuracy of every pair."""
    table, best = {}, None
    for ln in length_norms:
        for a in alphas:
            acc = float(np.mean([c.passed[rerank.select_lever(
                c.keys, c.programs, c.logprob, c.length, c.log_pv, float(a), bool(ln))]
                for c in cands])) if cands else 0.0
            table[f"select/lever_acc/alpha={a}/length_norm={bool(ln)}"] = acc
            if best is None or acc > best[2]:
                best = (float(a), bool(ln), acc)
    return best[0], best[1], table


@register_algo("lever", pool="lever")
def train(driver: Driver) -> dict:
    """Samples -> two verifiers -> reranking of the held-out samples -> report."""
    config, lv = driver.config, driver.config.lever
    base = driver.base_model(heads=("score",))
    train_tasks, test_tasks = _tasks(lv, base)
    times: dict[str, float] = {}
    train, test, greedy = collect_samples(driver, base, train_tasks, test_tasks, times)
    n_sel = int(lv.select_tasks)
    if n_sel and n_sel >= len(train):
        raise ValueError(f"config.lever.select_tasks={n_sel} leaves no training tasks "
                         f"(lever.train_tasks={len(train)})")
    fit, sel = (train[:-n_sel], train[-n_sel:]) if n_sel else (train, [])
    scores = train_verifiers(driver, base, fit, sel, test, train_tasks, test_tasks, times)
    summary = rerank_summary(config, scores, train, sel, test, greedy)
    summary.update(times)
    if is_main_process():
        write_report(driver.workdir, summary, lv, len(test))
    return driver.finish(summary, base=base)


def _tasks(lv, base) -> tuple[list, list]:
    """(training tasks for verifier data, held-out test tasks)."""
    train_tasks = list(base.data.train_tasks)[: int(lv.train_tasks)]
    held_out = base.data.eval_tasks
    if lv.test_benchmark == "humaneval":
        from rlfb_jax.data.benchmarks import load_humaneval

        held_out = load_humaneval()
    elif lv.test_benchmark:
        raise ValueError(f"config.lever.test_benchmark: {lv.test_benchmark!r} is not '' or "
                         "'humaneval'")
    test_tasks = list(held_out)[: int(lv.test_tasks)]
    if not train_tasks or not test_tasks:
        raise ValueError("lever needs training tasks (verifier data) and held-out tasks")
    return train_tasks, test_tasks


def collect_samples(driver: Driver, base, train_tasks, test_tasks, times: dict):
    """Verifier data (K samples per training task), test samples (n_max per held-out task)
    and greedy test programs, each executed and saved (read back when on disk)."""
    lv, policy, workdir = driver.config.lever, base.policy, driver.workdir
    params = jax.device_put(base.params)
    key = jax.random.key(int(driver.config.seed))
    sampling = policy.sampling(lv.temperature, lv.top_k, lv.top_p, lv.max_new_tokens)
    n_max, bs = max(int(n) for n in lv.ns), int(lv.batch_size)
    t0 = time.time()
    train = _stage(os.path.join(workdir, "verifier_train_samples.jsonl"), lambda: vd.collect(
        policy, params, train_tasks, sampling, int(lv.train_samples),
        named_key(key, "verifier_data"), driver.pool, bs, desc="verifier data"))
    times["time/verifier_data_s"] = time.time() - t0
    t0 = time.time()
    test = _stage(os.path.join(workdir, "test_samples.jsonl"), lambda: vd.collect(
        policy, params, test_tasks, sampling, n_max, named_key(key, "test_samples"),
        driver.pool, bs, desc=f"test samples n={n_max}"))

    def make_greedy():
        greedy = policy.sampling(0.0, max_new_tokens=lv.max_new_tokens)
        eps = rollout(policy, params, test_tasks, greedy, 1, named_key(key, "greedy"),
                      driver.pool, chunk_rows=bs, desc="greedy")
        return [vd.TaskSamples(i, [0.0], [0], [0], [vd.Program(c, passed=bool(o.passed),
                                                               status=o.status)])
                for i, (c, o) in enumerate(zip(eps.texts, eps.outcomes))]

    greedy = _stage(os.path.join(workdir, "greedy_samples.jsonl"), make_greedy)
    times["time/test_samples_s"] = time.time() - t0
    return train, test, greedy


def train_verifiers(driver: Driver, base, fit, sel, test, train_tasks, test_tasks,
                    times: dict) -> dict:
    """Trains the verifier with ("exec") and without ("no_exec") execution results on `fit`
    and scores the test samples (and the selection tasks `sel`, exec only). Returns
    {"log_pv": {name: [N]}, "sel": [N_sel] or None, "vsum": {name: summary},
    "test_labels", "test_rows", "sel_rows"}."""
    config, tok = driver.config, base.policy.tokenizer
    v = config.verifier
    scorer = _VerifierScorer(base.policy.lm, driver.mesh, driver.rules, int(v.score_batch))
    out: dict = {"log_pv": {}, "vsum": {}, "sel": None, "sel_rows": None}
    for name, use_exec in (("exec", True), ("no_exec", False)):
        t0 = time.time()
        steps = int(v.steps)
        if not use_exec and int(v.no_exec_steps) >= 0:
            steps = int(v.no_exec_steps)
        tbatch, labels, _ = _verifier_rows(config, tok, fit, train_tasks, use_exec)
        offset = prior_offset(labels, tbatch["weights"]) if v.calibrate else 0.0
        vparams, out["vsum"][name] = _train_verifier(driver, f"verifier_{name}", base, tbatch,
                                                     steps)
        times[f"time/verifier_{name}_train_s"] = time.time() - t0
        t0 = time.time()
        ebatch, out["test_labels"], out["test_rows"] = _verifier_rows(
            config, tok, test, test_tasks, use_exec, labels_known=False)
        out["log_pv"][name] = scorer(vparams, ebatch, f"score {name}", offset)
        if sel and use_exec:  # LEVER's choice needs the execution-aware verifier only
            sbatch, _, out["sel_rows"] = _verifier_rows(config, tok, sel, train_tasks, use_exec,
                                                        labels_known=False)
            out["sel"] = scorer(vparams, sbatch, f"score {name} (selection)", offset)
        out["vsum"][name]["prior_offset"] = offset
        times[f"time/verifier_{name}_score_s"] = time.time() - t0
    if is_main_process():
        buf = io.BytesIO()  # np.savez, then epath: the workdir may be a URI
        np.savez(buf, log_pv_exec=out["log_pv"]["exec"], log_pv_no_exec=out["log_pv"]["no_exec"],
                 labels=out["test_labels"], task_row=out["test_rows"])
        epath.Path(driver.workdir, "test_scores.npz").write_bytes(buf.getvalue())
    return out


def rerank_summary(config, scores: dict, train, sel, test, greedy) -> dict:
    """Every method's held-out accuracy for each n, LEVER's paired differences, verifier
    AUCs and data statistics; alpha / length_norm chosen on `sel` when there are any."""
    lv, log_pv = config.lever, scores["log_pv"]
    ns = sorted(int(n) for n in lv.ns)
    alpha, length_norm, select_table = float(lv.alpha), bool(lv.length_norm), {}
    if sel:
        sel_cands = _candidates(sel, scores["sel"], scores["sel"], scores["sel_rows"])
        alpha, length_norm, select_table = choose_scoring(sel_cands, lv.alpha_grid,
                                                          lv.length_norm_grid)
        log.info("LEVER scoring chosen on %d held-out training tasks: alpha=%s, "
                 "length_norm=%s", len(sel), alpha, length_norm)
    cands = _candidates(test, log_pv["exec"], log_pv["no_exec"], scores["test_rows"])
    per_task: dict = {}
    summary = rerank.rerank_accuracy(cands, [g.programs[0].passed for g in greedy], ns,
                                     int(lv.num_subsets), int(config.seed), alpha, length_norm,
                                     per_task)
    summary.update(rerank.paired_differences(per_task, seed=int(config.seed)))
    summary.update(select_table)
    summary["lever/alpha"], summary["lever/length_norm"] = alpha, float(length_norm)
    test_labels = scores["test_labels"]
    summary["verifier/auc"] = rerank.rank_auc(log_pv["exec"], test_labels)
    summary["verifier/auc_no_exec"] = rerank.rank_auc(log_pv["no_exec"], test_labels)
    train_labels = np.array([p.passed for s in train for p in s.programs])
    summary.update({
        "data/train_programs": len(train_labels),
        "data/train_pass_frac": float(train_labels.mean()) if len(train_labels) else 0.0,
        "data/test_programs": len(test_labels),
        "data/test_pass_frac": float(np.mean(test_labels)) if len(test_labels) else 0.0,
        "data/test_sample_pass_rate": float(np.mean([c.passed.mean() for c in cands])),
        "data/test_pass@n_max": float(np.mean([c.passed.any() for c in cands])),
        **{f"verifier_{k}/{m}": v for k, s in scores["vsum"].items() for m, v in s.items()},
    })
    return summary


def write_report(workdir: str, summary: dict, lv, num_tasks: int) -> None:
    """rerank.md (accuracy and paired-difference tables) and rerank_accuracy.png."""
    ns = sorted(int(n) for n in lv.ns)
    alpha, length_norm = summary["lever/alpha"], bool(summary["lever/length_norm"])
    table = rerank.markdown_table(summary, ns)
    head = (f"Held-out accuracy of best-of-n selection ({num_tasks} tasks, "
            f"T={lv.temperature}, alpha={alpha}, length_norm={length_norm}).\n"
            f"Verifier AUC: {summary['verifier/auc']:.3f} with execution results, "
            f"{summary['verifier/auc_no_exec']:.3f} without.\n\n")
    diffs = ("\nLEVER minus each method: mean over the held-out tasks (paired) and its 95% "
             "bootstrap interval over tasks.\n\n" + rerank.difference_table(summary, ns))
    epath.Path(workdir, "rerank.md").write_text(head + table + diffs)
    rerank.plot_accuracy(os.path.join(workdir, "rerank_accuracy.png"), summary, ns,
                         title=f"LEVER reranking, {num_tasks} held-out tasks")
    log.info("reranking accuracy:\n%s", table)
