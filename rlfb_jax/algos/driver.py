"""The driver: everything an algorithm needs around its own iteration, written once (the
role of big_vision's trainer).

    summary = run(config, workdir)        # the algorithm config.algo names, in a Driver

    @register_algo("my_algo", pool="rl")  # its executor pool: config.rl.workers / timeout
    def train(driver):
        base = driver.base_model()                            # trained first when missing
        state, shardings = driver.create_state({"policy": base.params}, {}, tx, logical)
        step = lambda state, i: ...                           # -> (state, metrics)
        state = driver.loop(state, step, start=int(driver.meta.get("step", 0)), total=n,
                            desc="my_algo", meta=lambda i: {"step": i})
        summary = driver.evaluate(base.policy, state.params["policy"])  # config.eval
        return driver.finish(summary, step=n, state=state, base=base)

What it owns: the run directory (`rlfb_jax.core.rundir.RunDir`: config.json, metrics,
checkpoints, summary, plots) and the finished-run shortcut (``driver.finished``); the base
model (`rlfb_jax.algos.base_model`); the mesh and the TrainState, created into its shardings
and resumed from the latest checkpoint (``driver.meta`` is the checkpoint's record); the
executor pool, started on first use and closed on exit; the evaluators, configured by
``config.eval`` with one evaluation key per run; metrics, the summary (``time/total_s``,
the base's ``eval/*`` as ``eval/*_base``) and the final checkpoint.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import jax
from etils import epath

from rlfb_jax.algos import get_algo
from rlfb_jax.algos.base_model import BaseModel, load_base_model
from rlfb_jax.algos.datasets import eval_tasks_from
from rlfb_jax.core import sharding as shd
from rlfb_jax.core.rundir import RunDir, is_main_process
from rlfb_jax.core.state import TrainState, create_state, named_key, state_from_params
from rlfb_jax.eval.policy_eval import evaluate_policy
from rlfb_jax.executor import ExecutorPool

log = logging.getLogger("rlfb_jax")

Iteration = Callable[[TrainState, int], tuple[TrainState, Mapping[str, Any]]]


def run(config, workdir: str, *, allow_config_change: bool = False) -> dict:
    """Runs algorithm ``config.algo`` in `workdir` and returns its summary; a finished run
    (summary.json present) returns the summary without doing any work. A workdir holding a
    run made with another config raises `ConfigChanged` unless `allow_config_change`."""
    algo = get_algo(config.algo)
    pool = config.get(algo.pool) if algo.pool else None
    with Driver(config, workdir, pool=pool, allow_config_change=allow_config_change) as driver:
        if driver.finished is not None:
            return driver.finished
        return algo.train(driver)


class Driver:
    """One run of one algorithm in `workdir` (or `workdir/subdir`); a context manager that
    closes the pool and the run directory. `pool`: the config section with ``workers`` and
    ``timeout`` (seconds per test) of the executor pool; default ``config.eval``."""

    def __init__(self, config, workdir: str, *, subdir: str = "", pool=None,
                 allow_config_change: bool = False):
        self.config = config
        self.rundir = RunDir(config, workdir, subdir=subdir,
                             allow_config_change=allow_config_change)
        self.workdir = self.rundir.workdir
        self.finished: dict[str, Any] | None = self.rundir.finished()
        if self.finished is not None:
            log.info("%s is finished; nothing to do", self.workdir)
        self.meta: dict[str, Any] = {}
        self._pool_cfg = pool if pool is not None else config.get("eval")
        self._pool: ExecutorPool | None = None

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self.rundir.close()

    # -- parts -----------------------------------------------------------------------------
    @functools.cached_property
    def base(self) -> BaseModel:
        return self.base_model()

    def base_model(self, heads: tuple[str, ...] = ()) -> BaseModel:
        """The base model of ``config.base`` (trained into ``config.base_workdir`` first when
        it is not there), with extra zero-initialized `heads`; cached as ``driver.base``."""
        base = load_base_model(self.config, self.rundir.workdir, run, heads)
        spec = self._own_eval_tasks()
        if spec:  # this run's held-out tasks, not the base's
            base.data.eval_tasks = eval_tasks_from(*spec)
            base.summary = {k: v for k, v in base.summary.items() if not k.startswith("eval/")}
        if int(self.config.get("base_step", 0) or 0):
            base.summary.update(self._base_eval_here(base, "base_step_eval.json",
                                                     f"checkpoint at step {self.config.base_step}"))
        elif spec:
            base.summary.update(self._base_eval_here(base, "base_eval.json", f"on {spec[0]}"))
        self.__dict__["base"] = base
        return base

    def _own_eval_tasks(self) -> tuple[str, str] | None:
        """(``eval.tasks``, ``eval.path``) when this run's config names other held-out tasks
        than its base's (``--config.eval.tasks=humaneval`` on a PPO config); else None."""
        own, theirs = self.config.get("eval"), self.config.base.get("eval")
        if own is None or not own.get("tasks"):
            return None
        spec = lambda c: (c.get("tasks", ""), c.get("path", "") if c.get("tasks") == "mbpp"
                          else "")
        return spec(own) if theirs is None or spec(own) != spec(theirs) else None

    def _base_eval_here(self, base, name: str, what: str) -> dict[str, Any]:
        """The held-out evaluation of the base as this run sees it (an earlier checkpoint,
        ``config.base_step``, or this run's own ``eval.tasks``), made once and kept in
        WORKDIR/`name` (its ``*_base`` figures); the base's own evaluation is of other
        weights or other tasks."""
        path = epath.Path(self.workdir) / name
        tasks = self._own_eval_tasks()
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.pop("eval_tasks", None) == (list(tasks) if tasks else None):
                return saved
        log.info("evaluating the base (%s)", what)
        metrics = self.evaluate(base.policy, base.params, base.data.eval_tasks, write=False)
        if is_main_process():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**metrics, "eval_tasks": list(tasks) if tasks else None}))
        return metrics

    @functools.cached_property
    def mesh(self):
        mesh = shd.make_mesh(self.config.mesh)
        log.info("%s", shd.describe_mesh(mesh))
        return mesh

    @functools.cached_property
    def replicated(self):
        """The sharding of arrays every device holds whole (e.g. ``TrainState.aux``)."""
        return shd.replicated(self.mesh)

    @functools.cached_property
    def rules(self) -> tuple:
        return tuple((k, tuple(v) if isinstance(v, list | tuple) else v)
                     for k, v in self.config.mesh.rules)

    @property
    def pool(self) -> ExecutorPool:
        """The run's executor pool (started on first use; programs get 4x the per-test
        timeout in all)."""
        if self._pool is None:
            cfg = self._pool_cfg
            self._pool = ExecutorPool(num_workers=int(cfg.workers),
                                      timeout=float(cfg.timeout) * 4,
                                      timeout_per_test=float(cfg.timeout)).start()
        return self._pool

    def create_state(self, params, frozen: dict, tx, logical: dict, *,
                     aux: dict | None = None, rng: jax.Array | None = None):
        """A TrainState born in its shardings, then resumed from the latest checkpoint
        (``driver.meta`` becomes the checkpoint's record, {} when there is none).

        params: the trainable slots, or ``init(rng) -> (trainable, frozen)`` for a model
        initialized from scratch. rng: the state's key (default: from ``config.seed``).
        Returns (state, shardings)."""
        rng = jax.random.key(int(self.config.seed)) if rng is None else rng
        if callable(params):
            state, shardings = create_state(params, tx, rng, self.mesh, logical, self.rules)
        else:
            state, shardings = state_from_params(params, frozen, tx, rng, self.mesh, logical,
                                                 self.rules, aux=aux)
        return self.resume(state, shardings), shardings

    def resume(self, state: TrainState, shardings: TrainState) -> TrainState:
        """The latest checkpoint restored into `shardings` (`state` when there is none);
        ``driver.meta`` becomes its record."""
        state, self.meta = self.rundir.resume(state, shardings)
        return state

    def shard(self, batch: Mapping[str, Any]):
        """A host batch split over the mesh's batch axes."""
        return shd.shard_batch(dict(batch), self.mesh, self.rules)

    # -- the loop --------------------------------------------------------------------------
    def progress(self, start: int, total: int, desc: str):
        return self.rundir.progress(start, total, desc)

    def loop(self, state: TrainState, iteration: Iteration, *, start: int, total: int,
             desc: str, meta: Callable[[int], dict], evaluate_every: int = 0,
             evaluate: Callable[[TrainState], dict] | None = None,
             offset: int = 0) -> TrainState:
        """Runs ``state, metrics = iteration(state, i)`` for i in [start, total): logs the
        metrics and checkpoints after each, at step ``offset + i + 1`` (``meta(i + 1)`` is
        the checkpoint's record; a NaN/Inf loss stops the run), and logs ``evaluate(state)``
        every `evaluate_every` iterations before the last."""
        for i in self.progress(start, total, desc):
            state, metrics = iteration(state, i)
            self.rundir.after_step(offset + i + 1, state, metrics, meta(i + 1))
            if evaluate_every and (i + 1) % evaluate_every == 0 and i + 1 < total:
                self.log(i + 1, evaluate(state))
        return state

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        self.rundir.log(step, dict(metrics))

    def save(self, step: int, state: TrainState, meta: dict) -> None:
        self.rundir.save(step, state, meta)

    # -- evaluation and the end ------------------------------------------------------------
    @property
    def eval_key(self) -> jax.Array:
        """The evaluation key: the same for every evaluation of the run, so they compare."""
        return named_key(jax.random.key(int(self.config.seed)), "eval")

    def evaluate(self, policy, params, tasks=None, cfg=None, *, prefix: str = "eval",
                 greedy_only: bool = False, write: bool | str = True) -> dict[str, float]:
        """`rlfb_jax.eval.policy_eval.evaluate_policy` of `params` on `tasks` (default: the
        base's held-out tasks) with `cfg` (default ``config.eval``; `greedy_only` keeps
        the greedy pass, for learning curves). `write`: True writes samples and plots into
        the run directory, a path into that directory; False writes nothing and leaves
        out the error breakdown."""
        cfg = (cfg or self.config.eval).copy_and_resolve_references()
        if greedy_only:
            cfg.n_samples = 1
        tasks = self.base.data.eval_tasks if tasks is None else tasks
        out = (self.workdir if write is True else write) or None
        metrics = evaluate_policy(policy, params, tasks, cfg, rng=self.eval_key, prefix=prefix,
                                  pool=self.pool, workdir=out)
        return {k: v for k, v in metrics.items() if write or "/errors/" not in k}

    def finish(self, summary: dict[str, Any], *, step: int | None = None, state=None,
               meta: dict | None = None, base: BaseModel | None = None) -> dict[str, Any]:
        """Writes summary.json (+ ``time/total_s`` and, with `base`, the base's ``eval/*``
        metrics as ``eval/*_base``), the plots and the final checkpoint of `state`."""
        summary = dict(summary)
        if base is not None:
            summary.update({f"{k}_base": v for k, v in base.summary.items()
                            if k.startswith("eval/") and "/errors/" not in k})
        summary["time/total_s"] = self.rundir.elapsed()  # every segment of a resumed run
        if "mesh" in self.__dict__:  # the mesh this run used: mesh/data, mesh/fsdp, ...
            summary.update({f"mesh/{a}": n for a, n in self.mesh.shape.items()})
        return self.rundir.finish(summary, step=step, state=state, meta=meta)
