"""Expert iteration and ReST-EM from execution feedback (``config.algo = "rest_em"``).

One iteration i = 1..I (ReST-EM, Singh et al. 2023, "Beyond Human Data"; expert iteration,
Anthony et al. 2017; STaR, Zelikman et al. 2022):

    E-step  sample N programs per training problem from the current policy (T=0.7, top-k 40)
            -> execute (chunk c runs in the executor pool while chunk c+1 is sampled)
            -> rewards -> keep reward > threshold -> dedupe -> cap per problem
            (`rlfb_jax.algos.rest_em_data`)
    M-step  a fresh TrainState from the *base* params (ReST-EM, ``restart_from_base=True``)
            or from the previous iterate (expert iteration / STaR, ``False``), trained with
            the reward-weighted NLL ("sft" loss with ``weights`` [B]) on the kept samples'
            completion tokens, through the same `make_step` as SFT
    eval    greedy pass rate on the validation tasks (early stopping: stop after
            ``patience`` iterations without improvement; the best iterate is the result)
            and held-out greedy pass@1 + sampled pass@k.

The base model comes from `rlfb_jax.algos.base.ensure_base` (``config.base`` /
``config.base_workdir``): the synthetic SFT base, or a Hugging Face checkpoint
(``config.base.model.hf_path``, e.g. with ``config.base.train.steps=0`` to use it as is).

Run directory: the usual files (`rlfb_jax.core.run.Run`) plus ``iter<i>/`` (E-step
selection ``estep.json`` and ``kept.jsonl``, held-out ``eval.png`` / ``eval_samples.jsonl``)
and ``rest_em.png`` (per-iteration curves). The checkpoint's ``frozen["best"]`` slot holds
the best iterate so far; the final checkpoint's policy is that best iterate. Every phase
resumes: a killed run continues from its last M-step checkpoint with the E-step read back
from disk, and a finished run does no work.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import jax
import ml_collections
import numpy as np

from rlfb_jax.algos import common, register_algo
from rlfb_jax.algos import rest_em_data as red
from rlfb_jax.algos.base import ensure_base
from rlfb_jax.algos.sft import default_config as sft_config
from rlfb_jax.core import sharding as shd
from rlfb_jax.core.batching import epoch_order, make_sequence_batch
from rlfb_jax.core.config import base_config
from rlfb_jax.core.optim import make_optimizer
from rlfb_jax.core.run import Run, is_main_process
from rlfb_jax.core.state import state_from_params
from rlfb_jax.core.step import make_step
from rlfb_jax.eval.policy_eval import evaluate_policy, generate
from rlfb_jax.executor import ExecutorPool
from rlfb_jax.losses import get_loss
from rlfb_jax.rewards import make_reward

log = logging.getLogger("rlfb_jax")


def default_config() -> ml_collections.ConfigDict:
    """ReST-EM's defaults (N=32 at T=0.7, top-k 40, cap 10, 3 iterations, restart from base).

    The policy is the base model, so there is no top-level ``model`` section: the base's
    architecture / checkpoint is ``config.base.model``. ``config.optimizer`` and
    ``config.train.batch_size`` are the M-step's.
    """
    c = base_config()
    del c.model
    c.algo = "rest_em"
    c.base = sft_config()
    c.base_workdir = ""
    c.rest_em = ml_collections.ConfigDict(dict(
        iterations=3,
        restart_from_base=True,  # True: ReST-EM; False: expert iteration / STaR
        problems_per_iter=0,  # training problems sampled per iteration; 0: all of them
        n_samples=32,
        temperature=0.7,
        top_k=40,
        top_p=1.0,
        max_new_tokens=64,
        sample_batch=256,  # rows (prompts x samples) per sampling chunk
        rewards=ml_collections.ConfigDict({"coderl": 1.0}),  # > 0 iff the program passed
        threshold=0.0,  # keep samples with reward > threshold
        dedupe="whitespace",  # none | exact | whitespace | ast
        cap_per_problem=10,  # <= 0: no cap
        weighting="reward",  # reward | uniform (weights of the reward-weighted NLL)
        test_kind="assert",
        workers=2,
        timeout=2.0,
        mstep=ml_collections.ConfigDict(dict(
            steps=0,  # > 0: fixed number of optimizer steps per M-step
            epochs=2.0,  # else ceil(epochs * kept / train.batch_size) ...
            min_steps=1,
            max_steps=0,  # ... clipped to [min_steps, max_steps] (0: no upper bound)
        )),
        valid_tasks=0,  # validation tasks for early stopping; 0: all
        patience=1,  # stop after this many iterations without improvement; 0: never
        min_delta=0.0,
    ))
    c.eval = c.base.eval.copy_and_resolve_references()
    c.optimizer.learning_rate = 3e-4
    c.optimizer.schedule = "constant"  # steps vary per iteration; constant needs one compile
    c.optimizer.warmup_steps = 0
    c.train.batch_size = 32
    c.train.log_every = 10
    c.train.checkpoint_every = 50
    return c


# ----------------------------------------------------------------------------------- M-step


class MStep:
    """The M-step's parts: optimizer, jitted step, fresh TrainStates. One `make_step` per
    learning-rate schedule length (a constant schedule: one for the whole run)."""

    def __init__(self, config, lm, mesh, rules):
        self.config, self.lm, self.mesh, self.rules = config, lm, mesh, rules
        self.logical = {"policy": lm.logical_axes(), "best": lm.logical_axes()}
        self.loss = get_loss("sft")
        self._parts: dict[int, tuple] = {}

    def _key(self, total: int) -> int:
        # A constant schedule (warmup included) does not depend on the run length.
        return 1 if self.config.optimizer.schedule == "constant" else max(int(total), 1)

    def tx(self, total: int):
        key = self._key(total)
        if key not in self._parts:
            tx, schedule = make_optimizer(self.config.optimizer, key)
            self._parts[key] = (tx, schedule, None)
        return self._parts[key]

    def init_state(self, start_params, best_params, total: int, rng):
        """A fresh TrainState: policy = `start_params`, frozen["best"] = `best_params`
        (both copied into their shardings). Returns (state, shardings)."""
        tx, _, _ = self.tx(total)
        return state_from_params({"policy": start_params}, {"best": best_params}, tx, rng,
                                 self.mesh, self.logical, self.rules)

    def step_fn(self, total: int, shardings):
        key = self._key(total)
        tx, schedule, fn = self.tx(total)
        if fn is None:
            fn = make_step(self.loss, tx, schedule=schedule, state_shardings=shardings,
                           mesh=self.mesh, rules=self.rules, model=self.lm)
            self._parts[key] = (tx, schedule, fn)
        return fn


def mstep_batch(prompt_ids, comp_ids, weights, step: int, batch_size: int, seed: int,
                prompt_len: int, completion_len: int, pad_id: int) -> dict[str, np.ndarray]:
    """Batch `step` of an M-step over K kept samples: tokens / attention_mask / loss_mask
    [B, P+N] (loss on completion tokens only) and weights [B] float32."""
    idx = epoch_order(len(prompt_ids), step, batch_size, seed)
    batch = make_sequence_batch([prompt_ids[i] for i in idx], [comp_ids[i] for i in idx],
                                prompt_len, completion_len, pad_id)
    batch.pop("truncated")
    batch["weights"] = np.asarray(weights, np.float32)[idx]
    return batch


# ----------------------------------------------------------------------------------- E-step


def e_step(policy, params, tasks, rc, pool: ExecutorPool, reward_fn, rng, seed: int):
    """Samples ``rc.n_samples`` completions per task, runs them, selects the kept ones.

    Returns (samples [len(tasks) * n] `Sample`s, kept, metrics). Sampling of chunk c+1
    overlaps the execution of chunk c.
    """
    n = int(rc.n_samples)
    sampling = policy.sampling(rc.temperature, rc.top_k, rc.top_p, rc.max_new_tokens)
    completions: list[list[str]] = [[] for _ in tasks]
    token_ids: list[list[tuple[int, ...]]] = [[] for _ in tasks]
    futures: list[list] = [[] for _ in tasks]
    t0 = time.time()
    t_exec_submit = 0.0
    for idx, texts, rollout in generate(policy, params, tasks, sampling, n, rng,
                                        int(rc.sample_batch), desc=f"e-step n={n}"):
        toks, mask = jax.device_get((rollout.tokens, rollout.mask))
        ts = time.time()
        for j, (i, outs) in enumerate(zip(idx, texts)):
            completions[i] = outs
            token_ids[i] = [tuple(int(t) for t, m in zip(toks[j * n + s], mask[j * n + s]) if m)
                            for s in range(n)]
            futures[i] = pool.submit([tasks[i].to_job(c, rc.test_kind) for c in outs])
        t_exec_submit += time.time() - ts
    t_sample = time.time() - t0 - t_exec_submit
    t1 = time.time()
    outcomes = [[f.result() for f in fs] for fs in futures]
    t_wait = time.time() - t1
    flat_tasks = [t for t in tasks for _ in range(n)]
    flat_comp = [c for cs in completions for c in cs]
    flat_out = [o for os_ in outcomes for o in os_]
    rewards, rmetrics = reward_fn(flat_tasks, flat_comp, flat_out)
    samples = [red.Sample(i // n, flat_comp[i], float(rewards[i]), token_ids[i // n][i % n])
               for i in range(len(flat_comp))]
    kept, stats = red.select_samples(
        samples, threshold=float(rc.threshold), dedupe_mode=rc.dedupe,
        cap=int(rc.cap_per_problem), seed=seed, num_problems=len(tasks),
        prefixes=[t.prompt for t in tasks])
    passed = sum(o.passed for o in flat_out)
    solved = sum(any(o.passed for o in os_) for os_ in outcomes)
    metrics = {
        **{f"estep/{k}": v for k, v in stats.items()},
        "estep/pass_rate": passed / max(len(flat_out), 1),
        "estep/solve_rate": solved / max(len(tasks), 1),  # problems with a passing sample
        "estep/problems": float(len(tasks)),
        **{f"estep/{k}": v for k, v in rmetrics.items()},
        "time/estep_sample_s": t_sample,
        "time/estep_execute_wait_s": t_wait,
        "time/estep_s": time.time() - t0,
    }
    return samples, kept, metrics


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)  # atomic: a killed run never leaves half a file


def save_estep(idir: str, tasks, kept, metrics) -> None:
    """``iter<i>/kept.jsonl`` (one kept sample per line) and ``iter<i>/estep.json``."""
    if not is_main_process():
        return
    os.makedirs(idir, exist_ok=True)
    with open(os.path.join(idir, "kept.jsonl"), "w") as f:
        for s in kept:
            f.write(json.dumps({"task_id": tasks[s.task_index].task_id,
                                "task_index": s.task_index, "reward": s.reward,
                                "completion": s.completion,
                                "token_ids": list(s.token_ids)}) + "\n")
    _write_json(os.path.join(idir, "estep.json"),
                {"metrics": metrics, "task_ids": [t.task_id for t in tasks],
                 "kept": [[s.task_index, s.completion, s.reward, list(s.token_ids)]
                          for s in kept]})


def load_estep(idir: str, tasks):
    """(kept, metrics) of a finished E-step, or None when there is none for these tasks."""
    path = os.path.join(idir, "estep.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        d = json.load(f)
    if d["task_ids"] != [t.task_id for t in tasks]:
        return None
    kept = [red.Sample(int(i), c, float(r), tuple(ids)) for i, c, r, ids in d["kept"]]
    return kept, d["metrics"]


# ------------------------------------------------------------------------------------ loop


def _valid_tasks(config, base) -> list:
    tasks = list(base.data.valid_tasks)
    if not tasks and config.base.data.source == "mbpp":
        from rlfb_jax.data.benchmarks import load_mbpp

        tasks = load_mbpp(config.base.data.path, split="validation")
    n = int(config.rest_em.valid_tasks)
    return tasks[:n] if n > 0 else tasks


def _greedy_cfg(config, num_tasks: int):
    cfg = config.eval.copy_and_resolve_references()
    cfg.n_samples, cfg.num_tasks = 1, num_tasks
    return cfg


def _check(config) -> None:
    rc = config.rest_em
    if rc.dedupe not in red.DEDUPE_MODES:
        raise ValueError(f"config.rest_em.dedupe={rc.dedupe!r}: use one of {red.DEDUPE_MODES}")
    if rc.weighting not in ("reward", "uniform"):
        raise ValueError(f"config.rest_em.weighting={rc.weighting!r}: use reward or uniform")
    if rc.weighting == "reward" and float(rc.threshold) < 0:
        raise ValueError("config.rest_em.weighting='reward' needs threshold >= 0 (positive "
                         "weights); use weighting='uniform' for a negative threshold")
    if int(rc.n_samples) < 1 or int(rc.iterations) < 1:
        raise ValueError("config.rest_em.n_samples and iterations must be >= 1")


def _iter_metrics(i: int, entry: dict) -> dict:
    """Summary keys of iteration i: ``rest_em/iter<i>/<name>`` (pass@1, pass@16, kept,
    train_solve_rate, valid_pass@1, time/estep_s, ...)."""
    out = {}
    for k, v in entry.items():
        if k == "valid/pass@1":
            name = "valid_pass@1"
        elif k.startswith(("eval/", "estep/", "rest_em/")):
            name = k.split("/", 1)[1]
        else:
            name = k
        out[f"rest_em/iter{i}/{name}"] = v
    return out


@register_algo("rest_em")
def run(config, workdir: str) -> dict:
    rc = config.rest_em
    run = Run(config, workdir)
    done = run.finished()
    if done is not None:
        log.info("%s is finished; nothing to do", workdir)
        run.close()
        return done
    _check(config)
    t_start = time.time()
    base = ensure_base(config, workdir)
    policy, tok, lm = base.policy, base.policy.tokenizer, base.policy.lm
    train_tasks, eval_tasks = list(base.data.train_tasks), list(base.data.eval_tasks)
    valid_tasks = _valid_tasks(config, base)
    if not train_tasks:
        raise ValueError("rest_em needs training tasks with tests (data.source synthetic/mbpp)")
    if not valid_tasks and int(rc.patience) > 0:
        raise ValueError("no validation tasks for early stopping; set config.rest_em.patience=0")
    reward_fn = make_reward(rc.rewards.to_dict())
    mesh, rules = common.make_mesh(config), common.rules(config)
    mstep = MStep(config, lm, mesh, rules)
    state, shardings = mstep.init_state(base.params, base.params, 1, jax.random.key(config.seed))
    state, meta = run.resume(state, shardings)
    iterations = int(rc.iterations)
    bs = int(config.train.batch_size)
    prompt_len, comp_len = int(config.base.data.prompt_len), int(rc.max_new_tokens)
    history: list[dict] = list(meta.get("history", []))
    gstep = int(meta.get("gstep", 0))
    pool = ExecutorPool(num_workers=int(rc.workers), timeout=float(rc.timeout) * 4,
                        timeout_per_test=float(rc.timeout)).start()
    eval_rng = jax.random.key(config.seed + 1)
    try:
        if "base_valid" in meta:
            base_valid = float(meta["base_valid"])
        elif valid_tasks:
            base_valid = evaluate_policy(policy, base.params, valid_tasks,
                                         _greedy_cfg(config, len(valid_tasks)), rng=eval_rng,
                                         prefix="valid", pool=pool)["valid/pass@1"]
        else:
            base_valid = 0.0
        scores = [base_valid] + [h["valid/pass@1"] for h in history]
        best, stopped = red.early_stopping(scores, int(rc.patience), float(rc.min_delta))
        start_it = int(meta.get("iteration", 0))
        for it in run.progress(start_it, iterations, "rest_em"):
            if stopped:
                break
            i = it + 1
            idir = os.path.join(run.workdir, f"iter{i}")
            t_it = time.time()
            # -- E-step: sample from the current iterate (the base before iteration 1)
            p_iter = int(rc.problems_per_iter) or len(train_tasks)
            idx = (epoch_order(len(train_tasks), it, p_iter, int(config.seed))
                   if p_iter < len(train_tasks) else np.arange(len(train_tasks)))
            tasks = [train_tasks[j] for j in idx]
            mid_mstep = meta.get("phase") == "mstep" and int(meta.get("iteration", -1)) == it
            loaded = load_estep(idir, tasks)
            if loaded is None:
                if mid_mstep:
                    raise RuntimeError(f"{idir}/estep.json is missing; cannot resume the M-step")
                _, kept, emetrics = e_step(
                    policy, state.params["policy"], tasks, rc, pool, reward_fn,
                    jax.random.fold_in(jax.random.key(config.seed + 11), it),
                    seed=int(config.seed) * 1000 + it)
                save_estep(idir, tasks, kept, emetrics)
            else:
                kept, emetrics = loaded
                log.info("iteration %d: E-step read back from %s", i, idir)
            log.info("iteration %d: E-step kept %d samples (%d positive of %d; train solve "
                     "rate %.3f)",
                     i, len(kept), emetrics["estep/positive"], emetrics["estep/samples"],
                     emetrics["estep/solve_rate"])
            # -- M-step: a fresh state from the base (ReST-EM) or the last iterate (ExIt)
            t0 = time.time()
            total = red.mstep_steps(len(kept), bs, steps=int(rc.mstep.steps),
                                    epochs=float(rc.mstep.epochs),
                                    min_steps=int(rc.mstep.min_steps),
                                    max_steps=int(rc.mstep.max_steps))
            if mid_mstep:
                s0 = int(meta["mstep_step"])
            else:
                s0 = 0
                start = red.mstep_init(bool(rc.restart_from_base), base.params,
                                       state.params["policy"] if it > 0 else None)
                state, shardings = mstep.init_state(
                    start, state.frozen["best"], total,
                    jax.random.fold_in(jax.random.key(config.seed), i))
            mmetrics: dict = {}
            if total > 0:
                prompt_ids = common.encode(tok, [tasks[s.task_index].prompt for s in kept])
                eos = policy.eos_id
                comp_ids = [list(s.token_ids) if s.token_ids and s.token_ids[-1] == eos
                            else list(s.token_ids) + [eos] for s in kept]
                weights = red.sample_weights([s.reward for s in kept], rc.weighting)
                step_fn = mstep.step_fn(total, shardings)
                from tqdm.auto import tqdm

                for s in tqdm(range(s0, total), initial=s0, total=total, desc=f"m-step {i}",
                              leave=False, file=sys.stderr, disable=not is_main_process()):
                    batch = mstep_batch(prompt_ids, comp_ids, weights, s, bs,
                                        int(config.seed) * 1000 + it, prompt_len, comp_len,
                                        policy.pad_id)
                    state, metrics = step_fn(state, shd.shard_batch(batch, mesh, rules))
                    gstep += 1
                    run.after_step(gstep, state, metrics,
                                   {"iteration": it, "phase": "mstep", "mstep_step": s + 1,
                                    "gstep": gstep, "history": history,
                                    "base_valid": base_valid},
                                   extra={"rest_em/iteration": i})
                if s0 < total:
                    mmetrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            t_mstep = time.time() - t0
            # -- evaluation: validation (early stopping) and held-out
            params = state.params["policy"]
            t0 = time.time()
            valid = (evaluate_policy(policy, params, valid_tasks,
                                     _greedy_cfg(config, len(valid_tasks)), rng=eval_rng,
                                     prefix="valid", pool=pool) if valid_tasks else {})
            t_valid = time.time() - t0
            t0 = time.time()
            heldout = evaluate_policy(policy, params, eval_tasks, config.eval,
                                      workdir=idir if is_main_process() else None,
                                      rng=eval_rng, prefix="eval", pool=pool)
            t_eval = time.time() - t0
            entry = {
                "rest_em/kept": float(len(kept)),
                "rest_em/train_solve_rate": emetrics["estep/solve_rate"],
                "rest_em/mstep_steps": float(total),
                "valid/pass@1": float(valid.get("valid/pass@1", 0.0)),
                **{k: v for k, v in heldout.items() if "/errors/" not in k},
                **{k: v for k, v in emetrics.items()
                   if k not in ("estep/kept", "estep/solve_rate")},
                "time/mstep_s": t_mstep,
                "time/valid_s": t_valid,
                "time/eval_s": t_eval,
                "time/iteration_s": time.time() - t_it,
            }
            history.append(entry)
            scores.append(entry["valid/pass@1"])
            prev_best = best
            best, stopped = red.early_stopping(scores, int(rc.patience), float(rc.min_delta))
            if best == i and best != prev_best:
                state = state.replace(frozen={"best": params})
            gstep += 1
            meta = {"iteration": i, "phase": "done", "gstep": gstep, "history": history,
                    "base_valid": base_valid}
            run.log(gstep, {**entry, **{f"mstep/{k}": v for k, v in mmetrics.items()},
                            "rest_em/iteration": i, "rest_em/best_iter": best})
            run.save(gstep, state, meta)
            log.info("iteration %d: held-out pass@1 %.3f, validation %.3f (best: iteration %d)%s",
                     i, heldout["eval/pass@1"], entry["valid/pass@1"], best,
                     "; stopping early" if stopped else "")
            if is_main_process():
                plot_iterations(os.path.join(run.workdir, "rest_em.png"), base.summary, history,
                                base_valid)
    finally:
        pool.close()
    summary = _summary(base.summary, history, base_valid, best, stopped, iterations)
    summary["time/total_s"] = time.time() - t_start
    if history:
        if is_main_process():
            plot_iterations(os.path.join(run.workdir, "rest_em.png"), base.summary, history,
                            base_valid)
        final = state.replace(params={"policy": state.frozen["best"]})
    else:
        final = None
    run.finish(summary, step=gstep + 1, state=final, meta={**meta, "phase": "finished"})
    return summary


def _summary(base_summary: dict, history: list[dict], base_valid: float, best: int,
             stopped: bool, iterations: int) -> dict:
    out: dict = {}
    for k, v in base_summary.items():
        if k.startswith("eval/") and "/errors/" not in k:
            out[f"{k}_base"] = v
    out["rest_em/valid_pass@1_base"] = base_valid
    for i, entry in enumerate(history, start=1):
        out.update(_iter_metrics(i, entry))
    out["rest_em/best_iter"] = best
    out["rest_em/iterations_run"] = len(history)
    out["rest_em/stopped_early"] = bool(stopped and len(history) < iterations)
    # The result: the held-out metrics of the iterate chosen by validation.
    chosen = history[best - 1] if best > 0 else {k: v for k, v in base_summary.items()}
    for k, v in chosen.items():
        if k.startswith("eval/") and "/errors/" not in k:
            out[k] = v
    return out


def plot_iterations(path: str, base_summary: dict, history: list[dict], base_valid: float):
    """rest_em.png: pass rates per iteration (0 = base), kept samples, held-out pass@k per
    iteration, and time per phase."""
    from rlfb_jax.core.metrics import new_figure

    its = list(range(len(history) + 1))
    fig, axes = new_figure(1, 4, figsize=(18, 3.8))
    a = axes[0]
    a.plot(its, [base_summary.get("eval/pass@1", np.nan)] + [h["eval/pass@1"] for h in history],
           marker="o", label="held-out greedy pass@1")
    a.plot(its, [base_valid] + [h["valid/pass@1"] for h in history], marker="s",
           label="validation greedy pass@1")
    a.plot(its[1:], [h["rest_em/train_solve_rate"] for h in history], marker="^",
           label="train solve rate (E-step)")
    a.set_xlabel("iteration (0: base)")
    a.set_ylim(0, 1)
    a.set_xticks(its)
    a.legend(fontsize=7)
    a.grid(alpha=0.3)
    b = axes[1]
    b.bar(its[1:], [h["rest_em/kept"] for h in history], label="kept")
    b.plot(its[1:], [h["estep/positive"] for h in history], "k.-", label="positive")
    b.set_xlabel("iteration")
    b.set_title("E-step samples", fontsize=9)
    b.set_xticks(its[1:])
    b.legend(fontsize=7)
    c = axes[2]
    rows = [("base", base_summary)] + [(f"iter {i}", h) for i, h in enumerate(history, 1)]
    for name, m in rows:
        ks = sorted(int(k.split("@")[1]) for k in m
                    if k.startswith("eval/pass@") and k != "eval/pass@1")
        if not ks:
            continue
        vals = [m.get("eval/sampled_pass@1", np.nan)] + [m[f"eval/pass@{k}"] for k in ks]
        c.plot([1] + ks, vals, marker="o", label=name,
               ls="--" if name == "base" else "-")
    c.set_xscale("log", base=2)
    c.set_xlabel("k")
    c.set_ylabel("held-out pass@k (sampled)")
    c.set_ylim(0, 1)
    c.legend(fontsize=7)
    c.grid(alpha=0.3)
    d = axes[3]
    phases = ["estep_s", "mstep_s", "valid_s", "eval_s"]
    bottom = np.zeros(len(history))
    for ph in phases:
        vals = np.array([h.get(f"time/{ph}", 0.0) for h in history])
        d.bar(its[1:], vals, bottom=bottom, label=ph[:-2])
        bottom += vals
    d.set_xlabel("iteration")
    d.set_ylabel("seconds")
    d.set_xticks(its[1:])
    d.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
