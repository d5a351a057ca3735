"""Run-directory metrics: after a kill and a resume TensorBoard shows the whole history once;
the metric grids never replace an algorithm's own figures and drop no metric."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

from tensorboardX.proto import event_pb2

from rlfb_jax.core.metrics import MetricsWriter, plot_metrics, read_jsonl

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tensorboard_history(logdir: str) -> dict[str, dict[int, float]]:
    """Every event file's scalars, by tag and step, in write order (TFRecord framing: length,
    its crc, the Event payload, its crc)."""
    shown: dict[str, dict[int, float]] = {}
    for name in sorted(os.listdir(logdir)):
        with open(os.path.join(logdir, name), "rb") as f:
            data = f.read()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for v in event.summary.value:
                shown.setdefault(v.tag, {})[event.step] = v.simple_value
    return shown


KILLED = """
import os, sys
sys.path.insert(0, {repo!r})
from rlfb_jax.core.metrics import MetricsWriter
w = MetricsWriter({workdir!r})
for step in range(1, 6):
    w.write(step, {{"train/loss": float(step)}})
os.kill(os.getpid(), 9)  # no close, no flush at exit
"""


def test_a_killed_run_keeps_its_events_and_a_resume_shows_one_history(tmp_path):
    wd = str(tmp_path / "run")
    out = subprocess.run([sys.executable, "-c", KILLED.format(repo=REPO, workdir=wd)])
    assert out.returncode == -9
    tb = os.path.join(wd, "tensorboard")
    # resumed from the checkpoint at step 3: steps 4-5 of the killed segment are redone
    w = MetricsWriter(wd, resume_step=3)
    for step in range(4, 8):
        w.write(step, {"train/loss": 10.0 * step})
    w.close()
    expected = {1: 1.0, 2: 2.0, 3: 3.0, 4: 40.0, 5: 50.0, 6: 60.0, 7: 70.0}
    assert len(os.listdir(tb)) == 1  # one history, not a killed segment's file beside it
    assert tensorboard_history(tb) == {"train/loss": expected}
    assert [(r["step"], r["train/loss"]) for r in read_jsonl(os.path.join(wd, "metrics.jsonl"))
            ] == sorted(expected.items())


def test_metric_grids_keep_the_algorithms_figures_and_every_metric(tmp_path):
    wd = str(tmp_path)
    w = MetricsWriter(wd, tensorboard=False)
    for step in (10, 20):
        w.write(step, {f"eval/m{i:02d}": float(i + step) for i in range(15)})
    w.write(20, {"train/loss": 1.5})  # logged once
    w.close()
    curated = os.path.join(wd, "eval.png")
    with open(curated, "wb") as f:
        f.write(b"the algorithm's own figure")
    written = sorted(os.path.basename(p) for p in plot_metrics(wd))
    # 15 eval metrics on two pages of 12 and 3 panels; the curated figure is untouched
    assert written == ["metrics_eval.png", "metrics_eval_2.png", "metrics_train.png"]
    assert open(curated, "rb").read() == b"the algorithm's own figure"
    for name in written:
        assert open(os.path.join(wd, name), "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_tensorboard_shows_the_names_of_metrics_jsonl(tmp_path):
    w = MetricsWriter(str(tmp_path))
    w.write(1, {"eval/pass@1": 0.25, "eval/errors/syntax error": 0.5, "train/loss": 2.0})
    w.close()
    assert tensorboard_history(str(tmp_path / "tensorboard")) == {
        "eval/pass@1": {1: 0.25}, "eval/errors/syntax error": {1: 0.5}, "train/loss": {1: 2.0}}
