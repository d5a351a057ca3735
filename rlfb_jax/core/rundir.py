"""`RunDir`: a run directory and what is written into it around the steps.

    rundir = RunDir(config, workdir)
    state, meta = rundir.resume(state, shardings)      # latest checkpoint, if any
    for step in rundir.progress(start, total, "sft"):
        state, metrics = step_fn(state, batch)
        rundir.after_step(step + 1, state, metrics, meta)  # log, NaN check, checkpoint
    rundir.finish(summary)                              # summary.json, plots, final checkpoint

The algorithms use it through `rlfb_jax.algos.driver.Driver`.

Run directory: config.json, metrics.jsonl, tensorboard/, checkpoints/, summary.json, the
metric grids metrics_*.png and the algorithm's own figures (eval.png, ...).
Only process 0 writes files (on multi-host runs every process checkpoints its shards
through orbax).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import jax

from rlfb_jax.core.checkpoint import Checkpointer, abstract_with_shardings
from rlfb_jax.core.metrics import MetricsWriter, plot_metrics, write_summary
from rlfb_jax.core.state import TrainState
from rlfb_jax.core.step import check_finite

log = logging.getLogger("rlfb_jax")


def is_main_process() -> bool:
    return jax.process_index() == 0


class RunDir:
    """One run directory: config.json, metrics, checkpoints, summary (see the module
    docstring). ``subdir`` places it under `workdir` (LEVER's verifier runs)."""

    def __init__(self, config, workdir: str, *, subdir: str = ""):
        self.config = config
        self.workdir = os.path.abspath(os.path.join(workdir, subdir))
        os.makedirs(self.workdir, exist_ok=True)
        train = config.get("train", {})
        self.log_every = int(train.get("log_every", 10))
        self.ckpt = Checkpointer(
            self.workdir,
            every=int(train.get("checkpoint_every", 100)),
            keep=int(train.get("keep_checkpoints", 2)),
        )
        self._writer: MetricsWriter | None = None
        self._closed = False
        finished = os.path.exists(os.path.join(self.workdir, "summary.json"))
        if is_main_process() and not finished:  # a finished run keeps the config it ran with
            with open(os.path.join(self.workdir, "config.json"), "w") as f:
                f.write(config.to_json_best_effort(indent=2) if hasattr(config, "to_json_best_effort")
                        else json.dumps(dict(config), indent=2, default=str))

    # -- lifecycle ---------------------------------------------------------------------------
    def finished(self) -> dict[str, Any] | None:
        """The summary of a finished run in this workdir, or None."""
        path = os.path.join(self.workdir, "summary.json")
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        return None

    def resume(self, state: TrainState, shardings: TrainState):
        """Restores the latest checkpoint into `state`'s shardings; returns (state, meta)."""
        step = self.ckpt.latest_step()
        meta: dict[str, Any] = {}
        if step is not None:
            state, meta = self.ckpt.restore(abstract_with_shardings(state, shardings), step)
            log.info("resuming from step %d", step)
        self._open_writer(step)
        return state, meta

    def _open_writer(self, resume_step):
        if self._writer is None and is_main_process():
            self._writer = MetricsWriter(self.workdir, resume_step=resume_step or 0)

    def progress(self, start: int, total: int, desc: str):
        """Iterates steps start..total-1 with a progress bar (rate and ETA) on stderr."""
        from tqdm.auto import tqdm

        return tqdm(range(start, total), initial=start, total=total, desc=desc,
                    disable=not is_main_process(), file=sys.stderr, dynamic_ncols=True,
                    mininterval=1.0)

    def log(self, step: int, metrics: dict[str, Any]):
        self._open_writer(None)
        if self._writer is not None:
            self._writer.write(step, jax.device_get(metrics))

    def after_step(self, step: int, state: TrainState, metrics, meta: dict[str, Any],
                   extra: dict[str, Any] | None = None):
        """Logs every `log_every` steps; checks for NaN/Inf before any checkpoint is written.

        `step` counts completed steps. A non-finite loss raises FloatingPointError; the last
        checkpoint on disk was written from finite values.
        """
        log_now = step % self.log_every == 0
        save_now = self.ckpt.should_save(step)
        if log_now or save_now:
            host = jax.device_get(metrics)
            check_finite(host, step)
            if log_now:
                self.log(step, {**host, **(extra or {})})
        if save_now:
            self.ckpt.save(step, state, meta)

    def save(self, step: int, state: TrainState, meta: dict[str, Any]):
        self.ckpt.save(step, state, meta, force=True)

    def finish(self, summary: dict[str, Any], step: int | None = None, state=None, meta=None):
        """Final checkpoint (if a state is given), summary.json and PNG plots."""
        if state is not None and step is not None:
            self.ckpt.save(step, state, meta or {}, force=True)
        self.close()
        if is_main_process():
            write_summary(self.workdir, summary)
            plot_metrics(self.workdir)
        return summary

    def close(self):
        """Waits for pending checkpoints and closes the metrics writer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.ckpt.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
