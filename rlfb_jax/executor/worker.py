"""A worker process: enters the namespaces once, starts its zygote, runs jobs for the pool.

Started by `ExecutorPool` as ``python -I -c <bootstrap> CONFIG``; talks to the pool over two
inherited pipes (pickled frames: a job in, an `Outcome` out). The worker is trusted: it runs
the benchmark's test code (never the program) and builds every verdict. It holds the tests,
the zygote never does, so no job process forked from the zygote can read a test or an
expected value from its own memory.

Start-up, as root: private net, IPC/UTS and mount namespaces (tmpfs on /tmp, everything
else read-only), then ``unshare(CLONE_NEWPID)`` and fork: the zygote becomes PID 1 of a new
PID namespace and mounts its own /proc. Without root, each missing layer is reported in the
hello message and the worker goes on with what it has.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import traceback
from pathlib import Path

from . import codec, sandbox
from .jobs import Outcome
from .runner import JobRunner
from .session import ProcessEnded, ZygoteClient
from .zygote import BOOTSTRAP as ZYGOTE_BOOTSTRAP

PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
TRUSTED_MEMORY_MB = 2048  # the worker's own address space beyond a job's memory limit
# A stand-in for the top-level package: worker and zygote import only rlfb_jax.executor, never
# rlfb_jax/__init__.py (whatever it may import one day, jax included).
PACKAGE_STUB = (
    "import sys, types; pkg = types.ModuleType('rlfb_jax'); "
    "pkg.__path__ = [sys.argv[1] + '/rlfb_jax']; sys.modules['rlfb_jax'] = pkg; "
)
BOOTSTRAP = PACKAGE_STUB + "from rlfb_jax.executor.worker import main; main(sys.argv[2])"


def _start_zygote(config: dict) -> tuple[ZygoteClient, subprocess.Popen, tuple]:
    """Start the zygote as a fresh, lean interpreter (PID 1 of our PID namespace, if any)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    config = dict(config, socket_fd=theirs.fileno(), sys_path=list(sys.path))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            PACKAGE_STUB + ZYGOTE_BOOTSTRAP,
            PROJECT_ROOT,
            json.dumps(config),
        ],
        pass_fds=(theirs.fileno(),),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        close_fds=True,
    )
    theirs.close()
    client = ZygoteClient(ours)
    hello = client.recv()
    if hello[0] != "hello":
        raise RuntimeError(f"zygote said {hello[0]!r} instead of hello")
    return client, proc, hello[1:]


def main(config_json: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the pool's to handle
    config = json.loads(config_json)
    in_fd, out_fd = config.pop("fds")
    layers = sandbox.Layers()
    sandbox.harden_trusted_process(layers)
    # The private tmpfs normally covers /tmp (hiding the host's temp files from jobs), unless
    # this Python or the project lives under /tmp (a venv in /tmp, say): then it goes on a
    # fresh empty directory, which the pool removes when the worker is gone.
    needed = [PROJECT_ROOT, sys.prefix, sys.base_prefix, *sys.path]
    under_tmp = any(os.path.realpath(p).startswith("/tmp/") for p in needed if p)
    host_dir = config["host_dir"]  # created for us by the pool, removed by it afterwards
    sandbox_tmp = host_dir if under_tmp else "/tmp"
    if config["namespaces"]:
        private = sandbox.enter_worker_namespaces(sandbox_tmp, config["tmpfs_mb"], layers)
    else:
        private = False
        for name in (
            "net_namespace",
            "mount_namespace",
            "readonly_fs",
            "ipc_uts_namespace",
            "pid_namespace",
        ):
            layers.off(name, "disabled by the pool (namespaces=False)")
    view_root = ""
    if private:  # job directories, the zygote's file-system view, import-path binds
        tmp_root = os.path.join(sandbox_tmp, "jobs")
        bind_root = os.path.join(sandbox_tmp, "python")
        view_root = os.path.join(sandbox_tmp, "view")
        os.mkdir(tmp_root, 0o755)
        os.mkdir(view_root, 0o755)
    else:
        tmp_root = host_dir
        bind_root = os.path.join(tmp_root, ".python")
    user = sandbox.sandbox_user() if config["drop_privileges"] else None
    if user is None:
        reason = "disabled by the pool" if not config["drop_privileges"] else "not root"
        layers.off("drop_privileges", reason)
    else:
        layers.on("drop_privileges")
        layers.on("uid_per_worker")
    if not private:
        os.chmod(tmp_root, 0o755)
    layers.on("process_group")
    layers.on("rlimits")
    layers.on("deadline")
    layers.on("temp_cwd")
    layers.on("stdin_devnull")
    layers.on("scrubbed_env")
    if layers.active.get("net_namespace"):
        layers.off("socket_disabled", "not needed: the network namespace has no network")
    else:
        layers.on("socket_disabled")
    pid_ns = sandbox.enter_pid_namespace(layers) if config["namespaces"] else False
    zconfig = {
        "tmp_root": tmp_root,
        "bind_root": bind_root,
        "user": user,
        "pid_namespace": pid_ns,
        "net_namespace": bool(layers.active.get("net_namespace")),
        "limits": config["limits"],
        "preload": config.get("preload", ()),
        "hide_paths": config["hide_paths"],
        "view_root": view_root,
        "project_root": PROJECT_ROOT,
        "seccomp": config["seccomp"],
        "ipc_per_job": os.geteuid() == 0 and config["namespaces"],
    }
    zygote, zproc, hello = _start_zygote(zconfig)
    proc_ok, hidden_ok, unreadable, view_ok, status = hello
    if view_ok:
        layers.on("fs_allow_list")
    else:
        layers.off("fs_allow_list", status["view"])
    if not status["seccomp"]:
        layers.on("seccomp")
        layers.on("ipc_per_job")  # no IPC object can be made at all
    else:
        layers.off("seccomp", status["seccomp"])
        if zconfig["ipc_per_job"]:
            layers.on("ipc_per_job")  # a new IPC namespace for every job
        else:
            layers.off("ipc_per_job", "needs root, namespaces and no seccomp")
    if unreadable:
        layers.missing["import_paths"] = (
            f"the job user cannot read {', '.join(unreadable)}; programs can import only "
            "the modules the zygote preloads"
        )
    if config["hide_paths"]:
        if hidden_ok:
            layers.on("hidden_paths")
        else:
            layers.off("hidden_paths", "needs root and a mount namespace")
    if pid_ns and not proc_ok:
        layers.missing["pid_namespace_proc"] = "could not mount a private /proc"
    # Trusted test code may print: keep it off the protocol pipes and the pool's stdout.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    codec.send_message(out_fd, ("hello", layers.active, layers.missing, tmp_root))
    # Trusted test code computes on the program's values (``[0] * f()``): bound this process
    # too, so that such a test gets a MemoryError (a failed test) instead of the OOM killer.
    # Set after the zygote started, which keeps (and gives each job) limits of its own.
    limit = (config["settings"]["memory_limit_mb"] + TRUSTED_MEMORY_MB) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    runner = JobRunner(zygote, config["settings"])
    try:
        while True:
            message = codec.recv_message(in_fd)
            if message is None or message[0] == "quit":
                break
            _, job = message
            try:
                outcome = runner.run(job)
            except ConnectionError as e:
                codec.send_message(out_fd, ("outcome", _broken(job, e)))
                break  # the zygote is gone: let the pool start a fresh worker
            except (Exception, ProcessEnded) as e:  # noqa: BLE001 - report, keep serving
                outcome = _broken(job, e)
            codec.send_message(out_fd, ("outcome", outcome))
    finally:
        zygote.sock.close()
        zproc.wait()


def _broken(job, e: BaseException) -> Outcome:
    detail = "".join(traceback.format_exception(e))[-2000:]
    print(f"rlfb_jax executor worker: {detail}", file=sys.stderr)
    return Outcome(
        status="sandbox_error",
        error_type=type(e).__name__,
        error_message=f"executor failure: {e}",
        job_id=job.job_id,
    )
