"""Running the entry point in a subprocess, as a user would, for end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main_env(devices: int = 1) -> dict[str, str]:
    """The test environment with `devices` fake CPU devices and the repo importable."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def main_cmd(config: str, workdir, *overrides: str) -> list[str]:
    """`python -m rlfb_jax.main` for a config path (relative to the repo, ``:arg`` allowed)."""
    return [sys.executable, "-m", "rlfb_jax.main", f"--config={os.path.join(REPO, config)}",
            f"--workdir={workdir}", *overrides]


def run_main(config: str, workdir, *overrides: str, check: bool = True,
             timeout: float = 900) -> subprocess.CompletedProcess:
    """Runs the entry point; with `check`, a failure shows the end of its stderr."""
    out = subprocess.run(main_cmd(config, workdir, *overrides), env=main_env(), cwd=REPO,
                         capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, out.stderr[-4000:]
    return out


def summary(workdir) -> dict:
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f)
