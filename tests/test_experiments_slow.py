"""Full experiments with their acceptance thresholds. Slow (minutes each): excluded from
the default run; run with ``python -m pytest -m slow``."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(config: str, workdir, *overrides) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "rlfb_jax.main", f"--config={os.path.join(REPO, config)}",
           f"--workdir={workdir}", *overrides]
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-4000:]
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_synthetic_base_model_is_usefully_imperfect(tmp_path):
    s = _run("experiments/synthetic_sft.py", tmp_path / "base")
    assert 0.10 <= s["eval/pass@1"] <= 0.50
    assert s["eval/pass@16"] >= 2 * s["eval/pass@1"]
    assert s["eval/errors/syntax_error"] + s["eval/errors/runtime_error"] >= 0.05
    assert s["time/total_s"] < 600


@pytest.mark.slow
def test_lever_beats_likelihood_and_voting(tmp_path):
    s = _run("experiments/synthetic_lever.py", tmp_path / "lever")
    for n in (16, 64):
        for method in ("greedy", "random", "likelihood", "majority_vote", "verifier_no_exec"):
            assert s[f"rerank/lever@{n}"] >= s[f"rerank/{method}@{n}"], (method, n)
    assert s["verifier/auc"] > s["verifier/auc_no_exec"]
