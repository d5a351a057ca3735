"""``python -m rlfb_jax.executor.doctor``: which isolation layers are active on this host.

Starts a one-worker pool, prints what the worker could set up (and why a layer is off),
then runs a probe program inside the sandbox and checks each layer from the inside: can it
reach the network, write outside its directory, see other processes, read the caller's
environment, and so on. Exit status 0 when every layer the worker reports as active is
confirmed by the probe, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .jobs import Job
from .pool import ExecutorPool
from .sandbox import UID_BASE

_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])

PROBE = r"""
import ctypes, json, os, resource, socket, sys
seen = {}
libc = ctypes.CDLL(None, use_errno=True)
def refused(ret):
    return "allowed" if ret >= 0 else f"refused (errno {ctypes.get_errno()})"
def attempt(fn):
    try:
        fn()
        return "allowed"
    except BaseException as e:
        return f"refused ({type(e).__name__})"
def connect():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1)
    s.connect(("127.0.0.1", 22))
def connect_out():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1)
    s.connect(("1.1.1.1", 80))
def write_outside():
    with open("/etc/rlfb_doctor_probe", "w") as f:
        f.write("x")
def write_tmp_root():
    with open(os.path.join(os.path.dirname(os.getcwd()), "rlfb_doctor_probe"), "w") as f:
        f.write("x")
def write_cwd():
    with open("probe.txt", "w") as f:
        f.write("x")
seen["uid"] = os.getuid()
seen["loopback_connect"] = attempt(connect)
seen["internet_connect"] = attempt(connect_out)
seen["write_etc"] = attempt(write_outside)
seen["write_next_to_cwd"] = attempt(write_tmp_root)
seen["write_cwd"] = attempt(write_cwd)
seen["visible_pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())[:20]
seen["pid"] = os.getpid()
seen["env_keys"] = sorted(os.environ)
seen["stdin"] = sys.stdin.read(10)
seen["cwd"] = os.getcwd()
seen["rlimit_as"] = resource.getrlimit(resource.RLIMIT_AS)[0]
seen["rlimit_nproc"] = resource.getrlimit(resource.RLIMIT_NPROC)[0]
seen["pgid_is_self"] = os.getpgid(0) == os.getpid()
seen["root_entries"] = sorted(os.listdir("/"))
seen["project_visible"] = os.path.exists(PROJECT_ROOT)
seen["sysv_shmget"] = refused(libc.shmget(0, 4096, 0o1600))
seen["keyctl"] = refused(libc.syscall(250, 0, -4, 0))  # KEYCTL_GET_KEYRING_ID, user keyring
seen["unshare_user"] = refused(libc.unshare(0x10000000))
print(json.dumps(seen))
"""


def probe(pool: ExecutorPool) -> dict:
    """Run the probe program in ``pool``; return what it observed from inside."""
    program = f"PROJECT_ROOT = {_PROJECT_ROOT!r}\n" + PROBE
    outcome = pool.run([Job(program=program, kind="stdio", tests=[("", "")])])[0]
    try:
        return json.loads(outcome.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(
            f"the probe failed: {outcome.status} {outcome.error_type} "
            f"{outcome.error_message}\n{outcome.stderr}"
        ) from None


def verify(active: dict[str, bool], seen: dict) -> dict[str, tuple[bool, str]]:
    """Layer -> (confirmed from inside, evidence)."""
    checks = {
        "net_namespace": (
            seen["loopback_connect"] != "allowed" and seen["internet_connect"] != "allowed",
            f"loopback {seen['loopback_connect']}, internet {seen['internet_connect']}",
        ),
        "socket_disabled": (
            seen["loopback_connect"] != "allowed",
            f"socket connect {seen['loopback_connect']}",
        ),
        "readonly_fs": (
            seen["write_etc"] != "allowed" and seen["write_next_to_cwd"] != "allowed",
            f"write /etc {seen['write_etc']}, write next to cwd {seen['write_next_to_cwd']}",
        ),
        "temp_cwd": (seen["write_cwd"] == "allowed", f"cwd {seen['cwd']} writable"),
        "drop_privileges": (seen["uid"] != 0, f"uid {seen['uid']}"),
        "pid_namespace": (
            len(seen["visible_pids"]) <= 3,
            f"pid {seen['pid']}, sees pids {seen['visible_pids'][:5]}",
        ),
        "scrubbed_env": (len(seen["env_keys"]) <= 8, f"env keys {seen['env_keys']}"),
        "stdin_devnull": (seen["stdin"] == "", "stdin empty"),
        "rlimits": (
            seen["rlimit_as"] > 0,
            f"RLIMIT_AS {seen['rlimit_as'] >> 20} MiB, RLIMIT_NPROC {seen['rlimit_nproc']}",
        ),
        "process_group": (seen["pgid_is_self"], "own process group"),
        "fs_allow_list": (
            not seen["project_visible"] and "work" not in seen["root_entries"],
            f"/ holds {seen['root_entries']}; project tree visible: {seen['project_visible']}",
        ),
        "seccomp": (
            all(seen[k] != "allowed" for k in ("sysv_shmget", "keyctl", "unshare_user")),
            f"shmget {seen['sysv_shmget']}, keyctl {seen['keyctl']}, "
            f"unshare(CLONE_NEWUSER) {seen['unshare_user']}",
        ),
        "uid_per_worker": (seen["uid"] >= UID_BASE, f"uid {seen['uid']}"),
        "ipc_per_job": (
            seen["sysv_shmget"] != "allowed" or not active.get("seccomp"),
            f"shmget {seen['sysv_shmget']}"
            + ("" if active.get("seccomp") else " (a new IPC namespace per job)"),
        ),
    }
    return {name: checks[name] for name in checks if active.get(name)}


def main() -> int:
    with ExecutorPool(num_workers=1) as pool:
        active, missing = dict(pool.layers), dict(pool.missing_layers)
        seen = probe(pool)
    confirmed = verify(active, seen)
    ok = True
    print("rlfb_jax executor isolation layers on this host\n")
    for name in sorted(active):
        if active[name]:
            good, evidence = confirmed.get(name, (True, "set up by the worker"))
            ok &= good
            mark = "on " if good else "FAIL"
            print(f"  [{mark}] {name:18s} {evidence}")
        else:
            print(f"  [off] {name:18s} {missing.get(name, '')}")
    for name, reason in missing.items():
        if name not in active:
            print(f"  [note] {name}: {reason}")
    print(
        "\nall active layers confirmed from inside the sandbox"
        if ok
        else "\nSOME LAYERS DID NOT HOLD"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
