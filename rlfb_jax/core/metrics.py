"""Run-directory outputs: metrics.jsonl, TensorBoard events, summary.json and PNG plots.

Metrics are flat dicts with slash names (``train/loss``, ``eval/pass@1``). Each `write`
appends one JSON object ``{"step": N, ...}`` to ``metrics.jsonl`` and the same scalars to
TensorBoard (tensorboardX, no TensorFlow needed), under the same names: ``eval/pass@1``
stays ``eval/pass@1`` (tensorboardX's `add_scalar` would rename it ``eval/pass_1``, a rule of
TensorFlow 1 op names that TensorBoard's tags do not have). metrics.jsonl is flushed at every
write and is the record; TensorBoard's events are written by a background thread, so a killed
run may lose its last ones there. When a run resumes from a checkpoint at step S, records
after S (logged before the interruption, then lost) are dropped so the file never holds a
step twice, and the TensorBoard events are rebuilt from the records kept: one event file with
the whole history, the killed segment included.

A workdir may be local or a URI (``gs://bucket/run``): every output here goes through
``etils.epath`` (gs:// needs ``gcsfs``, or TensorFlow). Object stores cannot append, so
there metrics.jsonl is rewritten whole at each write and the event file at each TensorBoard
flush (every 10 s and at close); figures are rendered to bytes, then written.
"""

from __future__ import annotations

import io
import json
import math
import os
import threading
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
from etils import epath


def is_uri(path) -> bool:
    """True for ``gs://bucket/...`` and other URIs (not a local path)."""
    return "://" in os.fspath(path)


def absolute_path(path, *parts: str) -> str:
    """`path` joined with `parts`: made absolute when local, a URI kept as it is
    (``os.path.abspath("gs://b/run")`` would be ``$PWD/gs:/b/run``)."""
    if is_uri(path):
        return str(epath.Path(path, *parts))
    return os.path.abspath(os.path.join(path, *parts))


def copy_dir(src, dst) -> None:
    """Copies the files of directory `src` (not its subdirectories) into `dst`, either side
    local or a URI."""
    src, dst = epath.Path(src), epath.Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if not f.is_dir():
            (dst / f.name).write_bytes(f.read_bytes())


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
        epath.Path(workdir).mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.path = os.path.join(workdir, "metrics.jsonl")
        file = epath.Path(self.path)
        rows = read_jsonl(self.path) if file.exists() else []
        last = -1 if resume_step is None else resume_step  # records after it were lost
        self._rows = [r for r in rows if r.get("step", 0) <= last]
        if len(self._rows) != len(rows):
            file.write_text("".join(json.dumps(r) + "\n" for r in self._rows))
        # an object store has no append: there the file is rewritten from _rows at each write
        self._file = None if is_uri(workdir) else open(self.path, "a")
        self._tb = None
        if tensorboard:
            from tensorboardX import FileWriter

            tb_dir = os.path.join(workdir, "tensorboard")
            epath.Path(tb_dir).rmtree(missing_ok=True)  # rebuilt from the records below
            if is_uri(tb_dir):
                _register_event_files(tb_dir)
            self._tb = FileWriter(tb_dir, flush_secs=10)
            for row in self._rows:
                self._add_scalars(row)

    def write(self, step: int, metrics: Mapping[str, Any]):
        row = {"step": int(step)}
        row.update({k: _scalar(v) for k, v in metrics.items()})
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()
        else:
            self._rows.append(row)
            epath.Path(self.path).write_text("".join(json.dumps(r) + "\n" for r in self._rows))
        self._add_scalars(row)

    def _add_scalars(self, row: Mapping[str, Any]):
        """The row's numbers as TensorBoard scalars tagged with their metric names as they are
        (`add_scalar` would turn ``eval/pass@1`` into ``eval/pass_1``)."""
        from tensorboardX.proto.summary_pb2 import Summary

        if self._tb is not None:
            values = [Summary.Value(tag=k, simple_value=float(v)) for k, v in row.items()
                      if k != "step" and isinstance(v, int | float) and not isinstance(v, bool)]
            if values:
                self._tb.add_summary(Summary(value=values), int(row["step"]))

    def close(self):
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()


class _CloudEventFile:
    """A TensorBoard event file on an object store: kept in memory and written whole at each
    flush (no append there). Not an `io.IOBase`: tensorboardX would `os.fsync` its fileno."""

    def __init__(self, path: str):
        self.path, self._buf, self._lock = epath.Path(path), io.BytesIO(), threading.Lock()

    def write(self, data: bytes):
        with self._lock:
            self._buf.write(data)

    def flush(self):
        with self._lock:  # the writer thread and close() both flush
            self.path.write_bytes(self._buf.getvalue())

    def close(self):
        self.flush()


class _CloudEventFiles:
    """tensorboardX's writer factory for a URI scheme: event files through epath."""

    def open(self, path: str) -> _CloudEventFile:
        return _CloudEventFile(path)

    def directory_check(self, path: str):
        epath.Path(path).mkdir(parents=True, exist_ok=True)


def _register_event_files(uri: str) -> None:
    """Routes tensorboardX's event files under `uri`'s scheme through epath (its own gs://
    writer needs google-cloud-storage; epath takes gcsfs or TensorFlow, as the rest does)."""
    from tensorboardX import record_writer

    record_writer.register_writer_factory(uri.split("://", 1)[0], _CloudEventFiles())


def write_summary(workdir: str, summary: Mapping[str, Any]) -> str:
    """Writes summary.json (a flat dict of final metrics) and returns its path."""
    path = os.path.join(workdir, "summary.json")
    clean = {k: _scalar(v) for k, v in summary.items()}
    epath.Path(path).write_text(json.dumps(clean, indent=2, sort_keys=True))
    return path


def new_figure(*args, figsize: tuple[float, float], **kwargs):
    """(fig, axes) like ``plt.subplots(*args, figsize=..., **kwargs)``, for a figure that
    pyplot never sees: nothing to close, and the caller's backend (a notebook's) is left
    as it was. Write it with `save_figure`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def save_figure(fig, path: str, **kwargs) -> None:
    """``fig.savefig(path, **kwargs)`` for a local path or a URI: matplotlib writes local
    files only, so the image is rendered to bytes and written with epath."""
    buf = io.BytesIO()
    fig.savefig(buf, format=os.path.splitext(path)[1][1:] or "png", **kwargs)
    epath.Path(path).write_bytes(buf.getvalue())


def plot_metrics(workdir: str, per_page: int = 12) -> list[str]:
    """Grids of every logged metric, one panel each, by prefix: ``metrics_train.png``,
    ``metrics_eval.png``, ... (``metrics_eval_2.png`` and on when a prefix has more than
    `per_page` metrics: none is dropped). The ``metrics_`` names keep the grids apart from the
    figures an algorithm draws itself (``eval.png``, ``rest_em.png``), which they never
    replace. A metric logged once is shown as its value, not as a lone dot."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not epath.Path(path).exists():
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
    save_figure(fig, out, dpi=80)
