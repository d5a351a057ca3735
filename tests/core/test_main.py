"""The entry point: config errors before compute, the run directory, resume, CLI overrides."""

import json
import os

import pytest
from main_runner import run_main

SMOKE = "experiments/smoke.py"


def _run(workdir, *extra, check=True):
    return run_main(SMOKE, workdir, *extra, check=check, timeout=300)


@pytest.mark.parametrize("override, message", [
    ("--config.optimizer.nmae=lion", "nmae"),
    ("--config.train.stepz=3", "stepz"),
    ("--config.train.steps=many", "steps"),
])
def test_bad_overrides_fail_before_compute_naming_the_key(tmp_path, override, message):
    out = _run(tmp_path / "w", override, check=False)
    assert out.returncode != 0
    assert message in out.stderr
    assert not (tmp_path / "w" / "checkpoints").exists()


def test_smoke_run_directory_and_resume(tmp_path):
    wd = tmp_path / "smoke"
    first = _run(wd)
    summary = json.loads((wd / "summary.json").read_text())
    for key in ("eval/pass@1", "eval/compile_rate", "train/loss", "eval/pass@4"):
        assert key in summary
    for name in ("config.json", "metrics.jsonl", "summary.json", "metrics_train.png",
                 "eval.png"):
        assert (wd / name).exists(), name
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(wd / "tensorboard"))
    assert "40" in os.listdir(wd / "checkpoints")
    rows = [json.loads(line) for line in open(wd / "metrics.jsonl")]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert losses[-1] < losses[0] * 0.8  # the tiny SFT run learns
    assert json.loads((wd / "config.json").read_text())["train"]["steps"] == 40
    assert "eval/pass@1" in first.stdout
    again = _run(wd)
    assert json.loads((wd / "summary.json").read_text()) == summary
    assert "finished; nothing to do" in again.stderr


@pytest.mark.parametrize("name", ["adafactor", "lion"])
def test_optimizer_swap_from_the_command_line(tmp_path, name):
    wd = tmp_path / name
    _run(wd, f"--config.optimizer.name={name}", "--config.eval.num_tasks=0",
         "--config.train.steps=10", "--config.optimizer.learning_rate=1e-3")
    cfg = json.loads((wd / "config.json").read_text())
    assert cfg["optimizer"]["name"] == name
    summary = json.loads((wd / "summary.json").read_text())
    assert summary["train/steps"] == 10 and summary["train/loss"] < 10
