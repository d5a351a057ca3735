"""Two local JAX processes (2 fake CPU devices each, gloo collectives) train exactly like
one process with 4 devices."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
WORKER = os.path.join(HERE, "multiprocess_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _result(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.multiprocess
def test_two_processes_match_one():
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, WORKER, str(port), "2", str(i)], env=_env(2),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=240)
        finally:
            p.kill()
        assert p.returncode == 0, err[-3000:]
        outs.append(_result(out))
    ref = subprocess.run([sys.executable, WORKER, "0", "1", "0"], env=_env(4), check=True,
                         capture_output=True, text=True, timeout=240)
    ref = _result(ref.stdout)
    assert outs[0]["devices"] == outs[1]["devices"] == ref["devices"] == 4
    for o in outs:
        np.testing.assert_allclose(o["losses"], ref["losses"], rtol=1e-5)
        np.testing.assert_allclose(o["param_sq"], ref["param_sq"], rtol=1e-5)
