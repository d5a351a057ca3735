"""Run-directory outputs: metrics.jsonl, TensorBoard events, summary.json and PNG plots.

Metrics are flat dicts with slash names (``train/loss``, ``eval/pass@1``). Each `write`
appends one JSON object ``{"step": N, ...}`` to ``metrics.jsonl`` and the same scalars to
TensorBoard (tensorboardX, no TensorFlow needed). metrics.jsonl is flushed at every write and
is the record; TensorBoard's events are written by a background thread, so a killed run may
lose its last ones there. When a run resumes from a checkpoint at step S, records after S
(logged before the interruption, then lost) are dropped so the file never holds a step twice,
and the TensorBoard events are rebuilt from the records kept: one event file with the whole
history, the killed segment included.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np


def _scalar(v) -> float | int | str | None:
    if isinstance(v, str | bool | int) or v is None:
        return v
    arr = np.asarray(v)
    if arr.size != 1:
        raise ValueError(f"metric value of shape {arr.shape} is not a scalar")
    x = arr.item()
    return x if isinstance(x, int) else float(x)


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """Reads a JSON-lines file; a malformed line raises ValueError naming file and line."""
    from rlfb_jax.data.jsonl import read_jsonl as _read

    return _read(path)


class MetricsWriter:
    def __init__(self, workdir: str, resume_step: int | None = None, tensorboard: bool = True):
        os.makedirs(workdir, exist_ok=True)
        self.workdir = workdir
        self.path = os.path.join(workdir, "metrics.jsonl")
        if os.path.exists(self.path):
            rows = read_jsonl(self.path)
            keep = [r for r in rows if resume_step is not None and r.get("step", 0) <= resume_step]
            if len(keep) != len(rows):
                with open(self.path, "w") as f:
                    f.writelines(json.dumps(r) + "\n" for r in keep)
        self._file = open(self.path, "a")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            tb_dir = os.path.join(workdir, "tensorboard")
            shutil.rmtree(tb_dir, ignore_errors=True)  # rebuilt from the records below
            self._tb = SummaryWriter(tb_dir, flush_secs=10)
            for row in read_jsonl(self.path) if os.path.exists(self.path) else []:
                self._add_scalars(row)

    def write(self, step: int, metrics: Mapping[str, Any]):
        row = {"step": int(step)}
        row.update({k: _scalar(v) for k, v in metrics.items()})
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        self._add_scalars(row)

    def _add_scalars(self, row: Mapping[str, Any]):
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, int | float) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, int(row["step"]))

    def close(self):
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def write_summary(workdir: str, summary: Mapping[str, Any]) -> str:
    """Writes summary.json (a flat dict of final metrics) and returns its path."""
    path = os.path.join(workdir, "summary.json")
    clean = {k: _scalar(v) for k, v in summary.items()}
    with open(path, "w") as f:
        json.dump(clean, f, indent=2, sort_keys=True)
    return path


def new_figure(*args, figsize: tuple[float, float], **kwargs):
    """(fig, axes) like ``plt.subplots(*args, figsize=..., **kwargs)``, for a figure that
    pyplot never sees: nothing to close, and the caller's backend (a notebook's) is left
    as it was. Write it with ``fig.savefig(path)``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def plot_metrics(workdir: str, per_page: int = 12) -> list[str]:
    """Grids of every logged metric, one panel each, by prefix: ``metrics_train.png``,
    ``metrics_eval.png``, ... (``metrics_eval_2.png`` and on when a prefix has more than
    `per_page` metrics: none is dropped). The ``metrics_`` names keep the grids apart from the
    figures an algorithm draws itself (``eval.png``, ``rest_em.png``), which they never
    replace. A metric logged once is shown as its value, not as a lone dot."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []

    series: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for row in read_jsonl(path):
        for k, v in row.items():
            if k == "step" or not isinstance(v, int | float) or isinstance(v, bool):
                continue
            if not math.isfinite(v):
                continue
            prefix = k.split("/", 1)[0] if "/" in k else "misc"
            series[prefix][k].append((row["step"], v))
    written = []
    for prefix, metrics in sorted(series.items()):
        names = sorted(metrics)
        pages = [names[i:i + per_page] for i in range(0, len(names), per_page)]
        for page, page_names in enumerate(pages, 1):
            suffix = f"_{page}" if page > 1 else ""
            out = os.path.join(workdir, f"metrics_{prefix.replace('@', '_')}{suffix}.png")
            _grid(out, {n: metrics[n] for n in page_names})
            written.append(out)
    return written


def _grid(out: str, metrics: Mapping[str, list[tuple[int, float]]]) -> None:
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = new_figure(rows, cols, figsize=(4.5 * cols, 3 * rows), squeeze=False)
    for ax, (name, points) in zip(axes.flat, metrics.items()):
        ax.set_title(name, fontsize=9)
        if len(points) == 1:
            step, value = points[0]
            ax.text(0.5, 0.5, f"{value:.4g}", ha="center", va="center", fontsize=16,
                    transform=ax.transAxes)
            ax.text(0.5, 0.2, f"at step {step}", ha="center", fontsize=8,
                    transform=ax.transAxes)
            ax.set_axis_off()
            continue
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="." if len(xs) < 30 else None)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
