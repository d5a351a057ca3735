"""The entry point: config errors before compute, the run directory, resume, CLI overrides."""

import json
import os

import pytest
from main_runner import run_main

SMOKE = "experiments/smoke.py"


def _run(workdir, *extra, check=True):
    return run_main(SMOKE, workdir, *extra, check=check, timeout=300)


@pytest.mark.parametrize("config, override, message", [
    (SMOKE, "--config.optimizer.nmae=lion", "bad --config override --config.optimizer.nmae"),
    (SMOKE, "--config.train.stepz=3", 'Did you mean "steps"'),
    (SMOKE, "--config.train.steps=many", "--config.train.steps=many: invalid literal"),
    (SMOKE, "--config.optimizer.name=adamz", "optax has no optimizer 'adamz'"),
    (SMOKE, "--config.model.n_heads=3", "config.model: model.n_heads=3"),
    (SMOKE, "--config.mesh.data=64", "need 64 devices"),
    ("experiments/no_such_experiment.py", "--config.seed=1",
     "experiments/no_such_experiment.py: no such file"),
])
def test_bad_inputs_fail_in_a_few_lines_before_anything_is_written(tmp_path, config, override,
                                                                   message):
    out = run_main(config, tmp_path / "w", override, check=False, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) <= 3, out.stderr
    assert not (tmp_path / "w").exists()  # nothing written


def test_a_workdir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "w"
    path.write_text("not a run")
    out = _run(path, check=False)
    assert out.returncode == 2 and "is a file, not a directory" in out.stderr, out.stderr
    assert path.read_text() == "not a run"


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
