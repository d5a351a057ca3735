"""Every script in benchmarks/ runs in its quick mode and prints its ratio line, so a
benchmark that no longer matches the code fails here instead of on a user's machine. The
figures themselves are not checked (speed belongs to the benchmarks, not to tests); what is
checked is that each comparison compares like with like."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest
from main_runner import REPO, main_env

SCRIPTS = sorted(f for f in os.listdir(os.path.join(REPO, "benchmarks")) if f.endswith(".py"))
RATIO = re.compile(r"^(\w*ratio\w*(?:@\d+)?)=(\S+)\s*$", re.M)


def run_quick(script: str, *extra: str) -> str:
    out = subprocess.run([sys.executable, os.path.join("benchmarks", script), "--quick", *extra],
                         cwd=REPO, env=main_env(1), capture_output=True, text=True,
                         timeout=1200)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-4000:])
    return out.stdout


def ratios(stdout: str) -> dict[str, float]:
    found = {name: float(value) for name, value in RATIO.findall(stdout)}
    assert found, f"no ratio line in:\n{stdout[-2000:]}"
    for name, value in found.items():
        assert math.isfinite(value) and value > 0, (name, value)
    return found


def test_data_quick():
    out = run_quick("data.py")
    assert set(ratios(out)) == {"ratio_vs_sft", "encode_ratio_vs_sft"}
    assert re.search(r"generation: \d+ tasks", out), out


def test_train_step_quick_computes_the_same_losses_as_torch():
    out = run_quick("train_step.py")
    assert set(ratios(out)) == {"ratio_vs_torch"}
    mean, last = map(float, re.search(r"\|ours - torch\|: mean (\S+), last (\S+)", out).groups())
    assert mean < 1e-4 and last < 1e-4, out  # the same update, step for step


def test_sampler_quick_decodes_the_same_tokens_as_transformers():
    out = run_quick("sampler.py")
    assert set(ratios(out)) == {"ratio_vs_transformers@1", "ratio_vs_transformers@8"}
    assert out.count("same tokens: True") == 2, out


def test_scaling_quick_agrees_across_device_counts():
    out = run_quick("scaling.py")  # it asserts equal losses and parameters itself
    assert "ratio_8_vs_1" in ratios(out)


def test_scaling_gpu_mode_dry_runs_on_cpu():
    """--gpu --quick: the GPU measurement's code path with a toy model, so the script a lent
    accelerator runs is known to work before the lease starts."""
    out = run_quick("scaling.py", "--gpu")
    assert re.search(r"PPO update: .* tokens/s", out) and "update_mfu=" in out, out
    assert re.search(r"sampling_tokens_per_s@\d+=\d+", out), out


def test_rl_iteration_quick():
    out = run_quick("rl_iteration.py")
    assert {"hiding_ratio", "ratio_vs_serial"} <= set(ratios(out))


def test_executor_quick_agrees_with_the_official_harness():
    out = run_quick("executor.py")
    assert {"ratio_programs_per_s", "ratio_programs_per_cpu_s"} <= set(ratios(out))
    assert "verdicts differing: 0" in out and "passed: official 20, ours 20" in out, out


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_offers_a_quick_mode(script):
    out = subprocess.run([sys.executable, os.path.join("benchmarks", script), "--help"],
                         cwd=REPO, env=main_env(1), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--quick" in out.stdout, out.stderr[-2000:]
