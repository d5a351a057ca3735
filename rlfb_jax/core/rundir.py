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

A workdir is one run with one config. Re-running it with a config that differs (an override
added or changed) is refused before anything is written, naming the keys, unless
``allow_config_change`` (``--allow_config_change``) is given: then config.json becomes the
new config and ``config_changes.jsonl`` records each change with the step it applies from
(a finished run stays as it is). A base model reused by another run is checked by what
matters to its weights (`rlfb_jax.algos.base_model.check_base_data`), not by this rule.
``time/total_s`` in the summary adds up every segment of a resumed run up to its last
checkpoint (work redone after a kill is counted once).
A workdir may be a URI (``gs://bucket/run``): every file goes through ``etils.epath``
(`rlfb_jax.core.metrics`), checkpoints through orbax.
Only process 0 writes files (on multi-host runs every process checkpoints its shards
through orbax).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import jax
from etils import epath

from rlfb_jax.core.checkpoint import Checkpointer, abstract_with_shardings
from rlfb_jax.core.metrics import (
    MetricsWriter,
    absolute_path,
    plot_metrics,
    read_jsonl,
    write_summary,
)
from rlfb_jax.core.report import write_report
from rlfb_jax.core.state import TrainState
from rlfb_jax.core.step import check_finite

log = logging.getLogger("rlfb_jax")
_ELAPSED = "rundir/elapsed_s"  # the run's time so far, in each checkpoint's record


def is_main_process() -> bool:
    return jax.process_index() == 0


class ConfigChanged(ValueError):
    """The workdir holds a run made with another config (raised before anything is written)."""


def config_dict(config) -> dict[str, Any]:
    """The JSON form of a config, as config.json holds it."""
    if hasattr(config, "to_json_best_effort"):
        return json.loads(config.to_json_best_effort())
    return json.loads(json.dumps(dict(config), default=str))


def config_diff(old: Any, new: Any, prefix: str = "") -> dict[str, list]:
    """{dotted key: [old, new]} for every leaf that differs (a missing side is None)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: dict[str, list] = {}
        for key in sorted(set(old) | set(new)):
            out.update(config_diff(old.get(key), new.get(key), f"{prefix}{key}."))
        return out
    return {} if old == new else {prefix.rstrip("."): [old, new]}


class RunDir:
    """One run directory: config.json, metrics, checkpoints, summary (see the module
    docstring). ``subdir`` places it under `workdir` (LEVER's verifier runs)."""

    def __init__(self, config, workdir: str, *, subdir: str = "",
                 allow_config_change: bool = False):
        self.config = config
        self.workdir = absolute_path(workdir, subdir)  # local, or a URI (gs://bucket/run)
        changes = self._config_changes(allow_config_change)
        epath.Path(self.workdir).mkdir(parents=True, exist_ok=True)
        train = config.get("train", {})
        self.log_every = int(train.get("log_every", 10))
        self.ckpt = Checkpointer(
            self.workdir,
            every=int(train.get("checkpoint_every", 100)),
            keep=int(train.get("keep_checkpoints", 2)),
        )
        self._writer: MetricsWriter | None = None
        self._closed = False
        self._t_segment = time.time()
        self.time_before = 0.0  # seconds of earlier segments, up to their last checkpoint
        if is_main_process() and (changes or not self._path("config.json").exists()):
            if changes:  # appended by a rewrite: object stores have no append
                record = {"from_step": self.ckpt.latest_step() or 0, "changed": changes}
                log_file = self._path("config_changes.jsonl")
                earlier = log_file.read_text() if log_file.exists() else ""
                log_file.write_text(earlier + json.dumps(record) + "\n")
            self._path("config.json").write_text(json.dumps(config_dict(self.config), indent=2))

    def _path(self, name: str) -> epath.Path:
        return epath.Path(self.workdir) / name

    def _config_changes(self, allowed: bool) -> dict[str, list]:
        """How this config differs from the one the workdir's run was made with; raises
        ConfigChanged unless `allowed`. A finished run is never changed: allowed, it is kept
        as it is (its summary stands)."""
        if not self._path("config.json").exists():
            return {}
        changes = config_diff(json.loads(self._path("config.json").read_text()),
                              config_dict(self.config))
        if not changes:
            return {}
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(changes.items())[:6])
        more = f" (and {len(changes) - 6} more)" if len(changes) > 6 else ""
        if self._path("summary.json").exists():
            if not allowed:
                raise ConfigChanged(f"{self.workdir} holds a finished run made with another "
                                    f"config ({listed}{more}); start a new --workdir to run "
                                    f"this one")
            log.warning("%s: a finished run, made with another config (%s%s); kept as it is",
                        self.workdir, listed, more)
            return {}
        if not allowed:
            raise ConfigChanged(f"{self.workdir} holds a run made with another config "
                                f"({listed}{more}); resume it with its own config, or pass "
                                f"--allow_config_change to go on with this one (recorded in "
                                f"config_changes.jsonl)")
        log.warning("%s: going on with a changed config: %s%s", self.workdir, listed, more)
        return changes

    def elapsed(self) -> float:
        """Seconds spent on this run: earlier segments up to their last checkpoint, plus
        this one so far."""
        return self.time_before + time.time() - self._t_segment

    # -- lifecycle ---------------------------------------------------------------------------
    def finished(self) -> dict[str, Any] | None:
        """The summary of a finished run in this workdir, or None."""
        path = self._path("summary.json")
        return json.loads(path.read_text()) if path.exists() else None

    def resume(self, state: TrainState, shardings: TrainState):
        """Restores the latest checkpoint into `state`'s shardings; returns (state, meta)."""
        step = self.ckpt.latest_step()
        meta: dict[str, Any] = {}
        if step is not None:
            state, meta = self.ckpt.restore(abstract_with_shardings(state, shardings), step)
            self.time_before = float(meta.pop(_ELAPSED, 0.0))
            log.info("resuming from step %d", step)
        self._open_writer(step)
        return state, meta

    def last_logged(self, keys) -> dict[str, float]:
        """The last value logged to metrics.jsonl of each of `keys` (those ever logged): the
        summary of a run resumed after its last step still reports its final losses."""
        path = self._path("metrics.jsonl")
        found: dict[str, float] = {}
        if path.exists():
            for row in read_jsonl(path):
                found.update({k: row[k] for k in keys if k in row})
        return found

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
            self.ckpt.save(step, state, self._timed(meta))

    def save(self, step: int, state: TrainState, meta: dict[str, Any]):
        self.ckpt.save(step, state, self._timed(meta), force=True)

    def _timed(self, meta: dict[str, Any]) -> dict[str, Any]:
        return {**meta, _ELAPSED: self.elapsed()}

    def finish(self, summary: dict[str, Any], step: int | None = None, state=None, meta=None):
        """Final checkpoint (if a state is given), summary.json, PNG plots and the run's face
        (`rlfb_jax.core.report`: overview.png and report.md)."""
        if state is not None and step is not None:
            self.ckpt.save(step, state, self._timed(meta or {}), force=True)
        self.close()
        if is_main_process():
            write_summary(self.workdir, summary)
            plot_metrics(self.workdir)
            try:  # the summary is written: a report that fails must not fail the run
                write_report(self.workdir)
            except Exception as e:  # noqa: BLE001
                log.warning("report.md / overview.png not written: %s: %s",
                            type(e).__name__, e)
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
