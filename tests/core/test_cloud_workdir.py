"""A gs:// workdir (on `fake_gcs`, a local stand-in for the bucket): every output of a run
lands in the bucket and nothing in ./gs:, an object is rewritten rather than appended to,
and a second run finds the finished one or resumes from the bucket's checkpoints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import fake_gcs
import pytest
from main_runner import REPO, main_env

from core.test_metrics import tensorboard_history
from rlfb_jax.core.metrics import MetricsWriter, plot_metrics, read_jsonl, write_summary
from rlfb_jax.core.report import write_report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """gs://bucket is tmp_path/gcs/bucket for this test; the working directory is tmp_path."""
    fake_gcs.install(str(tmp_path / "gcs"), monkeypatch.setattr)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "gcs" / "bucket"


def test_metrics_summary_and_plots_on_a_bucket(bucket, tmp_path):
    wd = "gs://bucket/run"
    w = MetricsWriter(wd)
    for step in (1, 2, 3):
        w.write(step, {"train/loss": float(step), "eval/pass@1": step / 4})
    w.close()
    w = MetricsWriter(wd, resume_step=2)  # resumed from the checkpoint at step 2
    w.write(3, {"train/loss": 30.0})
    w.close()
    write_summary(wd, {"train/loss": 30.0})
    plot_metrics(wd)

    run = bucket / "run"
    assert [(r["step"], r["train/loss"]) for r in read_jsonl(run / "metrics.jsonl")] == [
        (1, 1.0), (2, 2.0), (3, 30.0)]
    assert tensorboard_history(run / "tensorboard") == {
        "train/loss": {1: 1.0, 2: 2.0, 3: 30.0}, "eval/pass@1": {1: 0.25, 2: 0.5}}
    assert json.loads((run / "summary.json").read_text()) == {"train/loss": 30.0}
    for name in ("metrics_eval.png", "metrics_train.png"):
        assert (run / name).read_bytes()[:8] == PNG
    assert os.listdir(tmp_path) == ["gcs"]  # no ./gs:/bucket/run


def test_compare_reads_runs_on_a_bucket(bucket, tmp_path):
    from rlfb_jax.eval.compare import FinishedRun, compare

    for name, final in (("a", 0.3), ("b", 0.5)):
        w = MetricsWriter(f"gs://bucket/{name}")
        w.write(1, {"eval/pass@1": final})
        w.close()
        write_summary(f"gs://bucket/{name}", {"eval/pass@1": final})
    (bucket / "a" / "eval_samples.jsonl").write_text(json.dumps(
        {"task_id": "t", "completion": "x", "passed": True, "status": "passed"}) + "\n")
    files = compare(["gs://bucket/a", "gs://bucket/b"], str(tmp_path / "out"))
    table = open(files["table"]).read()
    assert "| a |" in table and "0.300" in table and "0.500" in table
    assert "outcomes" in files  # run a's samples were read from the bucket
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FinishedRun("gs://bucket/none")


def _main(root, cwd) -> subprocess.CompletedProcess:
    """The smoke experiment with --workdir gs://bucket/run, gs:// being ROOT/."""
    cmd = [sys.executable, os.path.join(REPO, "tests", "fake_gcs.py"), str(root), "-m",
           "rlfb_jax.main", f"--config={os.path.join(REPO, 'experiments/smoke.py')}",
           "--workdir=gs://bucket/run"]
    out = subprocess.run(cmd, env=main_env(), cwd=cwd, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def test_a_smoke_run_on_a_bucket_is_found_finished_and_resumes(tmp_path, monkeypatch):
    root, cwd = tmp_path / "gcs", tmp_path / "cwd"
    cwd.mkdir()
    run = root / "bucket" / "run"
    _main(root, cwd)
    summary = json.loads((run / "summary.json").read_text())
    for name in ("config.json", "eval_samples.jsonl", "tokenizer/tokenizer.json"):
        assert (run / name).stat().st_size > 100, name
    for name in ("eval.png", "metrics_train.png", "metrics_eval.png"):
        assert (run / name).read_bytes()[:8] == PNG, name
    assert sorted(os.listdir(run / "checkpoints")) == ["20", "40"]
    rows = read_jsonl(run / "metrics.jsonl")
    losses = {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}
    assert sorted(losses) == [5, 10, 15, 20, 25, 30, 35, 40]
    shown = tensorboard_history(run / "tensorboard")
    assert shown["train/loss"] == pytest.approx(losses)
    assert shown["eval/pass@1"] == pytest.approx({40: summary["eval/pass@1"]})
    assert os.listdir(cwd) == []  # no ./gs:/bucket/run
    fake_gcs.install(str(root), monkeypatch.setattr)  # the run's report, from the bucket
    monkeypatch.chdir(cwd)
    assert write_report("gs://bucket/run") == ["gs://bucket/run/overview.png",
                                               "gs://bucket/run/report.md"]
    assert (run / "overview.png").read_bytes()[:8] == PNG
    assert "[eval.png](eval.png)" in (run / "report.md").read_text()
    assert os.listdir(cwd) == []

    again = _main(root, cwd)
    assert "finished; nothing to do" in again.stderr
    assert json.loads((run / "summary.json").read_text()) == summary

    # as if killed after the checkpoint at step 20: the bucket's checkpoint, metrics and
    # tokenizer are read back, and the run ends where the uninterrupted one did
    (run / "summary.json").unlink()
    shutil.rmtree(run / "checkpoints" / "40")
    resumed = _main(root, cwd)
    assert "resuming from step 20" in resumed.stderr
    final = json.loads((run / "summary.json").read_text())
    assert {k: v for k, v in final.items() if not k.startswith("time/")} == {
        k: v for k, v in summary.items() if not k.startswith("time/")}
    rows = read_jsonl(run / "metrics.jsonl")
    assert {r["step"]: r["train/loss"] for r in rows if "train/loss" in r} == losses
    assert tensorboard_history(run / "tensorboard")["train/loss"] == pytest.approx(losses)
    assert os.listdir(cwd) == []
