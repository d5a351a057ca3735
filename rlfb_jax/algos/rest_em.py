"""Expert iteration and ReST-EM from execution feedback (``config.algo = "rest_em"``).

One iteration i = 1..I (ReST-EM, Singh et al. 2023, "Beyond Human Data"; expert iteration,
Anthony et al. 2017; STaR, Zelikman et al. 2022):

    E-step  sample N programs per training problem from the current policy (T=0.7, top-k 40)
            -> execute (chunk c runs in the executor pool while chunk c+1 is sampled)
            -> rewards -> keep reward > threshold -> dedupe -> cap per problem
            (`rlfb_jax.algos.rest_em_data`)
    M-step  a fresh TrainState from the *base* params (ReST-EM, ``restart_from_base=True``)
            or from the previous iterate (expert iteration / STaR, ``False``), trained with
            the reward-weighted NLL (``rest_em.loss``, default the "sft" loss with
            ``weights`` [B]) on the kept samples' completion tokens, through the same `make_step` as SFT
    eval    greedy pass rate on the validation tasks (early stopping: stop after
            ``patience`` iterations without improvement; the best iterate is the result)
            and held-out greedy pass@1 + sampled pass@k.

The base model comes from `rlfb_jax.algos.driver.Driver.base` (``config.base`` /
``config.base_workdir``): the synthetic SFT base, or a Hugging Face checkpoint
(``config.base.model.hf_path``, e.g. with ``config.base.train.steps=0`` to use it as is).

Run directory: the usual files (`rlfb_jax.core.rundir.RunDir`) plus ``iter<i>/`` (E-step
selection ``estep.json`` and ``kept.jsonl``, held-out ``eval.png`` / ``eval_samples.jsonl``)
and ``rest_em.png`` (per-iteration curves). The checkpoint's ``frozen["best"]`` slot holds
the best iterate so far; the final checkpoint's policy is that best iterate. Every phase
resumes: a killed run continues from its last M-step checkpoint with the E-step read back
from disk, and a finished run does no work.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import jax
import ml_collections
import numpy as np

from rlfb_jax.algos import register_algo
from rlfb_jax.algos import rest_em_data as red
from rlfb_jax.algos.driver import Driver
from rlfb_jax.algos.rest_em_report import load_estep, plot_iterations, save_estep, summarize
from rlfb_jax.algos.sft import default_config as sft_config
from rlfb_jax.core.batching import epoch_order, make_sequence_batch
from rlfb_jax.core.config import experiment_config
from rlfb_jax.core.optim import make_optimizer
from rlfb_jax.core.policy import Policy
from rlfb_jax.core.rollout import rollout
from rlfb_jax.core.rundir import is_main_process
from rlfb_jax.core.state import TrainState, state_from_params
from rlfb_jax.core.step import make_step
from rlfb_jax.data.tokenizer import encode_batch
from rlfb_jax.losses import get_loss
from rlfb_jax.rewards import make_reward

log = logging.getLogger("rlfb_jax")


def default_config() -> ml_collections.ConfigDict:
    """ReST-EM's defaults (N=32 at T=0.7, top-k 40, cap 10, 3 iterations, restart from base).

    The policy is the base model, so there is no top-level ``model`` section: the base's
    architecture / checkpoint is ``config.base.model``. ``config.optimizer`` and
    ``config.train.batch_size`` are the M-step's.
    """
    c = experiment_config()
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
        loss="sft",  # a registered loss; "sft" with per-row weights: the reward-weighted NLL
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
        # ILF (Chen et al. 2023): "off" (ReST-EM); "ilf": the failed samples' feedback on the
        # visible examples -> one repair each by the same model (its base trained with
        # data.repair_pairs) -> keep the repairs that pass, trained on as (task -> repair);
        # "both": the passing samples and the passing repairs
        feedback_repair="off",
        repairs_per_problem=4,  # at most this many repairs per problem and iteration
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
        self.loss = get_loss(config.rest_em.loss)
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


def e_step(policy: Policy, params, tasks, rc, pool, reward_fn, key, seed: int):
    """Samples ``rc.n_samples`` completions per task, runs them, selects the kept ones
    (`rlfb_jax.algos.rest_em_data.select_samples`); with ``rc.feedback_repair`` also
    repairs the failures (`repair_step`). Returns (kept, metrics)."""
    n, t0 = int(rc.n_samples), time.time()
    sampling = policy.sampling(rc.temperature, rc.top_k, rc.top_p, rc.max_new_tokens)
    eps = rollout(policy, params, tasks, sampling, n, key, pool, reward_fn,
                  chunk_rows=int(rc.sample_batch), jobs=lambda t, texts: [
                      t.to_job(c, rc.test_kind) for c in texts], desc=f"e-step n={n}")
    ids = eps.completion_ids()
    samples = [red.Sample(i // n, eps.texts[i], float(eps.rewards[i]), tuple(ids[i]))
               for i in range(len(eps.texts))]
    rmetrics: dict[str, float] = {}
    if rc.feedback_repair != "off":
        repairs, rmetrics = repair_step(policy, params, tasks, samples, eps.outcomes, rc, pool,
                                        reward_fn, jax.random.fold_in(key, 1))
        samples = repairs + (samples if rc.feedback_repair == "both" else [])
    kept, stats = red.select_samples(
        samples, threshold=float(rc.threshold), dedupe_mode=rc.dedupe,
        cap=int(rc.cap_per_problem), seed=seed, num_problems=len(tasks),
        prefixes=[t.prompt for t in tasks])
    outcomes = eps.task_outcomes
    metrics = {
        **{f"estep/{k}": v for k, v in stats.items()},
        **rmetrics,
        "estep/pass_rate": sum(o.passed for o in eps.outcomes) / max(len(eps.outcomes), 1),
        "estep/solve_rate": sum(any(o.passed for o in os_) for os_ in outcomes) / len(tasks),
        "estep/problems": float(len(tasks)),
        "estep/programs": float(len(eps.texts) + rmetrics.get("ilf/repairs", 0.0)),
        **{f"estep/{k}": v for k, v in eps.reward_metrics.items()},
        "time/estep_sample_s": eps.times["time/sample_s"],
        "time/estep_execute_wait_s": eps.times["time/execute_wait_s"],
        "time/estep_s": time.time() - t0,
    }
    return kept, metrics


def repair_step(policy: Policy, params, tasks, samples, outcomes, rc, pool, reward_fn, key):
    """ILF's refinement step: each failed sample (up to ``rc.repairs_per_problem`` per
    problem) that fails a visible example gets its feedback text and one repair by the same
    model (`rlfb_jax.data.feedback`); the repairs are judged on the training tests like any
    sample. Returns (repairs as Samples of the original problems, metrics)."""
    from rlfb_jax.data.feedback import feedback_job, render_feedback, repair_task

    failed, per_task = [], {}
    for s, o in zip(samples, outcomes):
        if not o.passed and o.status != "sandbox_error" and \
                per_task.get(s.task_index, 0) < int(rc.repairs_per_problem):
            per_task[s.task_index] = per_task.get(s.task_index, 0) + 1
            failed.append(s)
    jobs = [feedback_job(tasks[s.task_index], s.completion) for s in failed]
    fb = [render_feedback(tasks[s.task_index], s.completion, f.result(), j.program)
          for s, j, f in zip(failed, jobs, pool.submit(jobs))]
    todo = [(s, text) for s, text in zip(failed, fb) if text]
    metrics = {"ilf/failed": float(len(failed)), "ilf/repairs": float(len(todo)),
               "ilf/repair_pass_rate": 0.0}
    if not todo:
        return [], metrics
    prompts = [repair_task(tasks[s.task_index], s.completion, text) for s, text in todo]
    sampling = policy.sampling(rc.temperature, rc.top_k, rc.top_p, rc.max_new_tokens)
    eps = rollout(policy, params, prompts, sampling, 1, key, pool, reward_fn,
                  chunk_rows=int(rc.sample_batch), jobs=lambda t, texts: [
                      t.to_job(c, rc.test_kind) for c in texts], desc="e-step repairs")
    ids = eps.completion_ids()
    repairs = [red.Sample(s.task_index, eps.texts[i], float(eps.rewards[i]), tuple(ids[i]))
               for i, (s, _) in enumerate(todo)]
    metrics["ilf/repair_pass_rate"] = float(np.mean([o.passed for o in eps.outcomes]))
    return repairs, metrics


def _valid_tasks(config, base) -> list:
    tasks = list(base.data.valid_tasks)
    if not tasks and config.base.data.source == "mbpp":
        from rlfb_jax.data.benchmarks import load_mbpp

        tasks = load_mbpp(config.base.data.path, split="validation")
    n = int(config.rest_em.valid_tasks)
    return tasks[:n] if n > 0 else tasks


def _check(config) -> None:
    rc = config.rest_em
    if rc.dedupe not in red.DEDUPE_MODES:
        raise ValueError(f"config.rest_em.dedupe={rc.dedupe!r}: use one of {red.DEDUPE_MODES}")
    if rc.weighting not in ("reward", "uniform"):
        raise ValueError(f"config.rest_em.weighting={rc.weighting!r}: use reward or uniform")
    if rc.weighting == "reward" and float(rc.threshold) < 0:
        raise ValueError("config.rest_em.weighting='reward' needs threshold >= 0 (positive "
                         "weights); use weighting='uniform' for a negative threshold")
    if rc.feedback_repair not in ("off", "ilf", "both"):
        raise ValueError(f"config.rest_em.feedback_repair={rc.feedback_repair!r}: use off, "
                         "ilf or both")
    if int(rc.n_samples) < 1 or int(rc.iterations) < 1:
        raise ValueError("config.rest_em.n_samples and iterations must be >= 1")


def _iteration_seed(seed: int, it: int) -> int:
    """The numpy seed of iteration `it`: the E-step's tie shuffle and the M-step's data order."""
    return int(seed) * 1000 + it


@dataclasses.dataclass
class RestEM:
    """What every iteration needs, built once per run."""

    config: ml_collections.ConfigDict
    driver: Driver
    policy: Policy
    base_params: object
    train_tasks: list
    valid_tasks: list
    reward_fn: object
    mstep: MStep
    shardings: object  # of the M-step's TrainState

    def problems(self, it: int) -> list:
        """The training problems of iteration `it` (all, or ``problems_per_iter`` of them)."""
        p_iter = int(self.config.rest_em.problems_per_iter) or len(self.train_tasks)
        if p_iter >= len(self.train_tasks):
            return list(self.train_tasks)
        idx = epoch_order(len(self.train_tasks), it, p_iter, int(self.config.seed))
        return [self.train_tasks[j] for j in idx]

    def validate(self, params) -> float:
        """Greedy pass@1 on the validation tasks (0 without any)."""
        if not self.valid_tasks:
            return 0.0
        cfg = self.config.eval.copy_and_resolve_references()
        cfg.num_tasks = len(self.valid_tasks)
        return self.driver.evaluate(self.policy, params, self.valid_tasks, cfg, prefix="valid",
                                    greedy_only=True, write=False)["valid/pass@1"]


@dataclasses.dataclass
class Record:
    """The run's progress, the record of every checkpoint: per-iteration entries, the global
    step (M-step steps + one per iteration) and the base's validation score."""

    history: list[dict]
    gstep: int
    base_valid: float

    def meta(self, iteration: int, phase: str, **extra) -> dict:
        return {"iteration": iteration, "phase": phase, "gstep": self.gstep,
                "history": self.history, "base_valid": self.base_valid, **extra}


@register_algo("rest_em", pool="rest_em")
def train(driver: Driver) -> dict:
    config, rc = driver.config, driver.config.rest_em
    _check(config)
    base = driver.base
    valid_tasks = _valid_tasks(config, base)
    if not base.data.train_tasks:
        raise ValueError("rest_em needs training tasks with tests (data.source synthetic/mbpp)")
    if not valid_tasks and int(rc.patience) > 0:
        raise ValueError("no validation tasks for early stopping; set config.rest_em.patience=0")
    mstep = MStep(config, base.policy.lm, driver.mesh, driver.rules)
    state, shardings = mstep.init_state(base.params, base.params, 1,
                                        jax.random.key(int(config.seed)))
    state = driver.resume(state, shardings)
    r = RestEM(config, driver, base.policy, base.params, list(base.data.train_tasks),
               valid_tasks, make_reward(rc.rewards.to_dict()), mstep, shardings)
    meta, iterations = driver.meta, int(rc.iterations)
    rec = Record(list(meta.get("history", [])), int(meta.get("gstep", 0)),
                 float(meta["base_valid"]) if "base_valid" in meta else r.validate(base.params))
    scores = [rec.base_valid] + [h["valid/pass@1"] for h in rec.history]
    best, stopped = red.early_stopping(scores, int(rc.patience), float(rc.min_delta))
    plot = os.path.join(driver.workdir, "rest_em.png")
    for it in driver.progress(int(meta.get("iteration", 0)), iterations, "rest_em"):
        if stopped:
            break
        state, entry, mmetrics = iteration(r, state, it, rec)
        rec.history.append(entry)
        scores.append(entry["valid/pass@1"])
        prev_best = best
        best, stopped = red.early_stopping(scores, int(rc.patience), float(rc.min_delta))
        if best == it + 1 and best != prev_best:
            state = state.replace(frozen={"best": state.params["policy"]})
        rec.gstep += 1
        driver.log(rec.gstep, {**entry, **{f"mstep/{k}": v for k, v in mmetrics.items()},
                               "rest_em/iteration": it + 1, "rest_em/best_iter": best})
        driver.save(rec.gstep, state, rec.meta(it + 1, "done"))
        log.info("iteration %d: held-out pass@1 %.3f, validation %.3f (best: iteration %d)%s",
                 it + 1, entry["eval/pass@1"], entry["valid/pass@1"], best,
                 "; stopping early" if stopped else "")
        if is_main_process():
            plot_iterations(plot, base.summary, rec.history, rec.base_valid)
    summary = summarize(base.summary, rec.history, rec.base_valid, best, stopped, iterations)
    final = state.replace(params={"policy": state.frozen["best"]}) if rec.history else None
    return driver.finish(summary, step=rec.gstep + 1, state=final,
                         meta=rec.meta(len(rec.history), "finished"))


def iteration(r: RestEM, state: TrainState, it: int, rec: Record):
    """E-step (or its record on disk) -> M-step -> validation and held-out evaluation.
    Returns (state, the iteration's entry, the M-step's last metrics)."""
    rc, driver, i, t_it = r.config.rest_em, r.driver, it + 1, time.time()
    idir = os.path.join(driver.workdir, f"iter{i}")
    tasks = r.problems(it)
    resuming = driver.meta.get("phase") == "mstep" and int(driver.meta["iteration"]) == it
    loaded = load_estep(idir, tasks)
    if loaded is not None:
        kept, emetrics = loaded
        log.info("iteration %d: E-step read back from %s", i, idir)
    elif resuming:
        raise RuntimeError(f"{idir}/estep.json is missing; cannot resume the M-step")
    else:
        kept, emetrics = e_step(r.policy, state.params["policy"], tasks, rc, driver.pool,
                                r.reward_fn, state.key("estep"),
                                _iteration_seed(r.config.seed, it))
        save_estep(idir, tasks, kept, emetrics)
    log.info("iteration %d: E-step kept %d samples (%d positive of %d; train solve rate "
             "%.3f)", i, len(kept), emetrics["estep/positive"], emetrics["estep/samples"],
             emetrics["estep/solve_rate"])
    t0 = time.time()
    state, total, mmetrics = m_step(r, state, it, tasks, kept, rec, resuming)
    t_mstep, t0 = time.time() - t0, time.time()
    valid = r.validate(state.params["policy"])
    t_valid, t0 = time.time() - t0, time.time()
    heldout = driver.evaluate(r.policy, state.params["policy"], prefix="eval",
                              write=idir if is_main_process() else False)
    entry = {
        "rest_em/kept": float(len(kept)),
        "rest_em/train_solve_rate": emetrics["estep/solve_rate"],
        "rest_em/mstep_steps": float(total),
        "valid/pass@1": float(valid),
        **{k: v for k, v in heldout.items() if "/errors/" not in k},
        **{k: v for k, v in emetrics.items() if k not in ("estep/kept", "estep/solve_rate")},
        "time/mstep_s": t_mstep,
        "time/valid_s": t_valid,
        "time/eval_s": time.time() - t0,
        "time/iteration_s": time.time() - t_it,
    }
    return state, entry, mmetrics


def m_step(r: RestEM, state: TrainState, it: int, tasks, kept, rec: Record, resuming: bool):
    """Fine-tunes on the kept samples in a fresh TrainState, from the base (ReST-EM) or the
    last iterate (expert iteration); continues a killed M-step when `resuming`. Returns
    (state, steps, the last step's metrics)."""
    rc, driver, cfg = r.config.rest_em, r.driver, r.config
    total = red.mstep_steps(len(kept), int(cfg.train.batch_size), steps=int(rc.mstep.steps),
                            epochs=float(rc.mstep.epochs), min_steps=int(rc.mstep.min_steps),
                            max_steps=int(rc.mstep.max_steps))
    s0 = int(driver.meta["mstep_step"]) if resuming else 0
    if not resuming:
        start = red.mstep_init(bool(rc.restart_from_base), r.base_params,
                               state.params["policy"] if it > 0 else None)
        state, r.shardings = r.mstep.init_state(start, state.frozen["best"], total,
                                                state.key("mstep"))
    if total == 0:
        return state, 0, {}
    eos = r.policy.eos_id
    prompt_ids = encode_batch(r.policy.tokenizer, [tasks[s.task_index].prompt for s in kept])
    comp_ids = [list(s.token_ids) + ([] if s.token_ids and s.token_ids[-1] == eos else [eos])
                for s in kept]
    weights = red.sample_weights([s.reward for s in kept], rc.weighting)
    step_fn = r.mstep.step_fn(total, r.shardings)
    last: dict = {}

    def step(state, s):
        batch = mstep_batch(prompt_ids, comp_ids, weights, s, int(cfg.train.batch_size),
                            _iteration_seed(cfg.seed, it), int(cfg.base.data.prompt_len),
                            int(rc.max_new_tokens), r.policy.pad_id)
        state, metrics = step_fn(state, driver.shard(batch))
        last.update(metrics)
        return state, {**metrics, "rest_em/iteration": it + 1}

    offset = rec.gstep - s0
    state = driver.loop(state, step, start=s0, total=total, desc=f"m-step {it + 1}",
                        offset=offset, meta=lambda s: rec.meta(it, "mstep", mstep_step=s,
                                                              gstep=offset + s))
    rec.gstep = offset + total
    return state, total, {k: float(v) for k, v in jax.device_get(last).items()}
