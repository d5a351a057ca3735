"""ExecutorPool API and robustness: futures, order, worker replacement, degraded mode."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from rlfb_jax.executor import ExecutorPool, Job, Outcome
from rlfb_jax.executor.sandbox import LAYER_NAMES

from .conftest import REPO, host_processes_matching

INC = "def f(x):\n    return x + 1\n"


def inc_jobs(n: int, sleep: float = 0.0) -> list[Job]:
    program = f"import time\ndef f(x):\n    time.sleep({sleep})\n    return x + 1\n"
    return [
        Job(program=program, tests=[f"assert f({i}) == {i + 1}"], job_id=str(i)) for i in range(n)
    ]


def worker_pids() -> list[int]:
    return host_processes_matching("rlfb_jax.executor.worker import main")


def test_submit_as_completed_and_imap(pool):
    futures = pool.submit(inc_jobs(8, sleep=0.05))
    assert not all(f.done() for f in futures)  # submit does not block
    done = [f.result().job_id for f in pool.as_completed(futures)]
    assert sorted(done, key=int) == [str(i) for i in range(8)]
    assert [o.job_id for o in pool.imap(inc_jobs(5))] == [str(i) for i in range(5)]
    assert all(isinstance(o, Outcome) and o.passed for o in pool.run(inc_jobs(5)))


def test_layers_are_reported(pool):
    assert set(pool.layers) <= set(LAYER_NAMES)
    for name in ("process_group", "rlimits", "deadline", "temp_cwd", "scrubbed_env"):
        assert pool.layers[name]
    for name, active in pool.layers.items():
        assert active or name in pool.missing_layers


def test_bad_arguments():
    with pytest.raises(RuntimeError):
        ExecutorPool(num_workers=1).submit(inc_jobs(1))
    with pytest.raises(ValueError):
        ExecutorPool(memory_limit_mb=1)
    with ExecutorPool(num_workers=1) as p, pytest.raises(TypeError):
        p.submit(["print(1)"])


def test_killed_worker_is_replaced():
    before = set(worker_pids())
    with ExecutorPool(num_workers=2, timeout=5.0, timeout_per_test=2.0) as p:
        futures = p.submit(inc_jobs(6, sleep=0.3))
        time.sleep(0.2)
        victims = [pid for pid in set(worker_pids()) - before if _parent(pid) == os.getpid()]
        assert victims
        os.kill(victims[0], signal.SIGKILL)
        outcomes = [f.result() for f in futures]
        assert {o.status for o in outcomes} <= {"passed", "sandbox_error"}
        assert sum(o.status == "sandbox_error" for o in outcomes) <= 1
        assert all(o.passed for o in p.run(inc_jobs(6)))


def test_workers_are_recycled_and_nothing_outlives_the_pool():
    before = set(worker_pids())
    with ExecutorPool(num_workers=2, recycle_after=3) as p:
        assert all(o.passed for o in p.run(inc_jobs(20)))
        mine = [pid for pid in set(worker_pids()) - before if _parent(pid) == os.getpid()]
        assert 1 <= len(mine) <= 2
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in mine) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in mine)
    assert not [pid for pid in set(worker_pids()) - before if _parent(pid) == os.getpid()]


def test_degraded_mode_without_namespaces(caplog):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    tmp_before = {n for n in os.listdir("/tmp") if n.startswith("rlfb-exec-")}
    with caplog.at_level(logging.WARNING, logger="rlfb_jax.executor.pool"):
        with ExecutorPool(num_workers=1, namespaces=False, timeout_per_test=1.0) as p:
            assert not p.layers["net_namespace"] and not p.layers["pid_namespace"]
            assert p.layers["socket_disabled"]
            connect = (
                "import socket\ndef f(x):\n    socket.create_connection(('127.0.0.1', "
                f"{port}), timeout=1)\n    return x + 1\n"
            )
            escape = (
                "import subprocess\ndef f(x):\n    subprocess.Popen(['sleep', '987656'],"
                " start_new_session=True)\n    return x + 1\n"
            )
            o_net, o_escape, o_honest = p.run(
                [
                    Job(program=connect, tests=["assert f(1) == 2"]),
                    Job(program=escape, tests=["assert f(1) == 2"]),
                    Job(program=INC, tests=["assert f(1) == 2"]),
                ]
            )
            assert o_net.status == "runtime_error" and o_net.error_type == "PermissionError"
            assert o_escape.passed and o_honest.passed
            p.run([Job(program=INC, tests=["assert f(1) == 2"])])  # cleanup of the last job
            assert host_processes_matching("987656") == []
    assert "net_namespace" in caplog.text  # the pool says which layers are missing
    listener.settimeout(0.1)
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()
    assert {n for n in os.listdir("/tmp") if n.startswith("rlfb-exec-")} == tmp_before


def test_executor_never_imports_jax():
    code = (
        "import sys\nimport rlfb_jax.executor, rlfb_jax.evaluate, rlfb_jax.eval.passk\n"
        "from rlfb_jax.executor import ExecutorPool, Job\n"
        "with ExecutorPool(num_workers=1) as p:\n"
        "    assert p.run([Job(program='x = 1', tests=['assert x == 1'])])[0].passed\n"
        "assert 'jax' not in sys.modules, 'jax was imported'\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_doctor_confirms_every_active_layer():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "rlfb_jax.executor.doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all active layers confirmed" in result.stdout


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_hung_worker_is_killed_with_everything_below_it():
    # A test snippet stuck in one long C-level call hangs the (trusted) worker itself (its
    # alarm can't cut a C loop); the pool's own deadline kills the worker and, without a PID
    # namespace, every process below it. The job's time ran out: a timeout.
    daemon = (
        "import subprocess\n"
        "subprocess.Popen(['sleep', '987657'], start_new_session=True)\n"
        "def f(x):\n    return x + 1\n"
    )
    with ExecutorPool(num_workers=1, namespaces=False) as p:
        (hung,) = p.run([Job(program=daemon, tests=["sum(range(10**15))"], timeout=0.5)])
        assert hung.status == "timeout" and "worker replaced" in hung.error_message
        assert host_processes_matching("987657") == []
        assert all(o.passed for o in p.run(inc_jobs(3)))
