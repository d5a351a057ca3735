"""The entry point: config errors before compute, the run directory, resume, CLI overrides."""

import json
import os
import subprocess
import sys

import pytest
from main_runner import REPO, main_env, run_main

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
    # a method that starts from a base builds its policy from config.base.model: a change
    # to its own config.model did nothing
    ("experiments/synthetic_ppo.py", "--config.model.n_layers=3",
     "config.model.n_layers: not used by algo 'ppo', whose policy is its base's model: set "
     "config.base.model.n_layers"),
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


def test_a_config_that_imports_its_siblings_loads_from_any_directory(tmp_path):
    """experiments/*.py import each other as ``experiments.x``: run from another directory,
    the config's package root goes on the path (it failed with ModuleNotFoundError). The
    workdir is a file, so the run stops at its first check after loading the config."""
    (tmp_path / "file").write_text("")
    (tmp_path / "path").mkdir()  # the package alone on the path, not the repository
    os.symlink(os.path.join(REPO, "rlfb_jax"), tmp_path / "path" / "rlfb_jax")
    env = dict(main_env(), PYTHONPATH=str(tmp_path / "path"))
    config = os.path.join(REPO, "experiments", "synthetic_rl_study.py") + ":smoke"
    out = subprocess.run([sys.executable, "-m", "rlfb_jax.main", f"--config={config}",
                          "--workdir", str(tmp_path / "file")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "is a file, not a directory" in out.stderr, out.stderr


def test_a_config_that_fails_to_import_is_named_in_one_line(tmp_path):
    (tmp_path / "cfg.py").write_text("import no_such_module_xyz\n\ndef get_config():\n"
                                     "    return None\n")
    out = subprocess.run([sys.executable, "-m", "rlfb_jax.main", "--config=cfg.py",
                          "--workdir", str(tmp_path / "w")], cwd=tmp_path, env=main_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "rlfb_jax.main: error: --config cfg.py: ModuleNotFoundError: No module named "
        "'no_such_module_xyz'")
    assert not (tmp_path / "w").exists()


def test_smoke_run_directory_and_resume(tmp_path):
    wd = tmp_path / "smoke"
    first = _run(wd)
    summary = json.loads((wd / "summary.json").read_text())
    for key in ("eval/pass@1", "eval/compile_rate", "train/loss", "eval/pass@4"):
        assert key in summary
    for name in ("config.json", "metrics.jsonl", "summary.json", "metrics_train.png",
                 "eval.png", "overview.png", "report.md"):  # every finished run has its face
        assert (wd / name).exists(), name
    assert "eval.png" in (wd / "report.md").read_text()
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


def test_a_changed_config_on_resume_is_refused_unless_allowed_and_then_recorded(tmp_path):
    from rlfb_jax.core.checkpoint import Checkpointer

    wd = tmp_path / "w"
    _run(wd)
    first = json.loads((wd / "summary.json").read_text())
    (wd / "summary.json").unlink()  # as if killed after its last checkpoint
    config = (wd / "config.json").read_text()
    refused = _run(wd, "--config.optimizer.learning_rate=0.5", check=False)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "optimizer.learning_rate: 0.003 -> 0.5" in refused.stderr, refused.stderr
    assert "--allow_config_change" in refused.stderr
    assert (wd / "config.json").read_text() == config and not (wd / "summary.json").exists()

    _run(wd, "--config.optimizer.learning_rate=0.5", "--allow_config_change")
    (change,) = [json.loads(x) for x in open(wd / "config_changes.jsonl")]
    assert change == {"from_step": 40, "changed": {"optimizer.learning_rate": [0.003, 0.5]}}
    assert json.loads((wd / "config.json").read_text())["optimizer"]["learning_rate"] == 0.5
    # the resumed summary is complete: the final loss, and the time of both segments
    again = json.loads((wd / "summary.json").read_text())
    assert again["train/loss"] == first["train/loss"]
    _, meta = Checkpointer(str(wd)).restore_raw(40)
    assert 0 < meta["rundir/elapsed_s"] <= again["time/total_s"]

    finished = _run(wd, "--config.train.steps=80", "--config.optimizer.learning_rate=0.5",
                    check=False)
    assert finished.returncode == 2 and "finished run" in finished.stderr, finished.stderr
    assert "train.steps: 40 -> 80" in finished.stderr
