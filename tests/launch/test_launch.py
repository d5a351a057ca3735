"""launch/: --help on every script, usage errors, and the TPU pod commands against a stand-in
``gcloud`` that records what it is asked to do."""

from __future__ import annotations

import os
import subprocess
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = ("local.sh", "gpu_host.sh", "tpu_pod.sh")


def run(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", os.path.join(REPO, "launch", script), *args], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_the_usage_and_exits_0(script):
    out = run(script, "--help")
    assert out.returncode == 0, out.stderr
    assert f"launch/{script}" in out.stdout and "WORKDIR" in out.stdout
    assert "set -euo" not in out.stdout and not out.stdout.startswith("#")


@pytest.mark.parametrize("script", ("local.sh", "gpu_host.sh"))
def test_missing_arguments_name_the_usage(script):
    out = run(script)
    assert out.returncode != 0 and "usage: launch/" in out.stderr


FAKE_GCLOUD = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$GCLOUD_LOG"
for arg in "$@"; do
  case "$arg" in *.tar.gz) [ -f "$arg" ] && cp "$arg" "$GCLOUD_COPY" ;; esac
done
"""


def test_tpu_pod_setup_copies_the_checkout_and_runs_on_every_worker(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
    (bin_dir / "gcloud").chmod(0o755)
    log, copy = tmp_path / "gcloud.log", tmp_path / "copied.tar.gz"
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", TPU_NAME="pod",
               ZONE="zone-a", GCLOUD_LOG=str(log), GCLOUD_COPY=str(copy))
    setup = run("tpu_pod.sh", "--setup", env=env)
    assert setup.returncode == 0, setup.stderr
    scp, ssh = log.read_text().splitlines()
    assert scp.startswith("compute tpus tpu-vm scp ") and "pod:rlfb_jax.tar.gz" in scp
    assert "--zone=zone-a --worker=all" in scp
    assert "tar -xzf rlfb_jax.tar.gz" in ssh and "pip install -r requirements.txt" in ssh
    with tarfile.open(copy) as tar:  # the committed checkout went to the workers
        assert {"rlfb_jax/main.py", "requirements.txt"} <= set(tar.getnames())
    log.unlink()
    job = run("tpu_pod.sh", "experiments/smoke.py", "gs://bucket/run", "--config.seed=3",
              env=env)
    assert job.returncode == 0, job.stderr
    (cmd,) = log.read_text().splitlines()
    assert "--worker=all" in cmd and "RLFB_MULTIHOST=1 python -m rlfb_jax.main" in cmd
    assert "--config=experiments/smoke.py --workdir=gs://bucket/run --config.seed=3" in cmd
