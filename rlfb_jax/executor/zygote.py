"""The zygote: a warm, pre-imported process that forks one sandboxed process per job.

It runs as the init (PID 1) of the worker's PID namespace when the host allows one, and
never sees a test or an expected value: the worker sends it only the program (in a memfd)
and the job's pipe ends (SCM_RIGHTS). After each job it kills every process left in the
namespace (including children that called setsid() or ignore SIGTERM), reaps them, and
removes the job's working directory.

Messages to the worker (pickled, over a SOCK_SEQPACKET socket), tagged with the job's
sequence number: ``("exited", seq, wait_status, max_rss_kb)`` when the job process ends by
itself, and ``("done", seq, wait_status, max_rss_kb)`` after each ``cleanup`` request, once
every process of the job is dead and reaped and its directory removed. The worker waits for
it before it reports the job's outcome.
"""

from __future__ import annotations

import gc
import importlib
import itertools
import json
import os
import pickle
import select
import signal
import socket
import sys
import time

from . import child, codec, fsview, sandbox, seccomp

# Small modules most programs import (typing alone costs ~7 ms per job otherwise). Bigger
# ones are left out on purpose: every preloaded page makes each fork and exit slower.
PRELOAD = (
    "math",
    "re",
    "collections",
    "itertools",
    "functools",
    "heapq",
    "bisect",
    "string",
    "typing",
    "operator",
)
# Preloaded too when the job user can't read the Python installation (e.g. under /root)
# and no mount namespace is available to expose it.
FALLBACK_PRELOAD = (
    "array",
    "atexit",
    "cmath",
    "copy",
    "ctypes",
    "datetime",
    "decimal",
    "fractions",
    "hashlib",
    "json",
    "random",
    "resource",
    "shutil",
    "signal",
    "socket",
    "statistics",
    "subprocess",
    "threading",
    "time",
    "traceback",
    "unicodedata",
)
_JOB_FDS = 6  # payload memfd, stdin, requests, replies, stdout, stderr


# Where the zygote parks a job's pipe ends just before fork: in the child they only need
# moving to 0-4 (stdin, stdout, stderr, requests, replies).
_PARKED = (100, 101, 102, 103, 104)
_TARGETS = (0, 1, 2, child.REQUEST_FD, child.REPLY_FD)


def _exec_job(config: dict, payload: dict, limits: list, workdir: str) -> None:
    """In the freshly forked job process: apply the per-job layers, then run the program.

    Kept to a handful of calls, all prepared before the fork: every object touched here
    costs a copy-on-write page fault.
    """
    try:
        os.setpgid(0, 0)
        for parked, target in zip(_PARKED, _TARGETS):
            os.dup2(parked, target)
        os.closerange(5, os.sysconf("SC_OPEN_MAX"))
        os.chdir(workdir)
        if config["ipc_per_job"]:  # only without seccomp, which refuses every IPC call
            sandbox.unshare(sandbox.CLONE_NEWIPC)
        sandbox.apply_rlimit_pairs(limits)
        sandbox.drop_privileges(config["user"])
        if not config["net_namespace"]:
            sandbox.disable_sockets()
        sys.argv = ["program"]
    except BaseException:  # noqa: BLE001 - never run the program without its sandbox
        os._exit(71)
    child.main(payload)


class Zygote:
    def __init__(self, sock: socket.socket, config: dict):
        self.sock = sock
        self.config = config
        self.pid_ns = config["pid_namespace"]
        self.counter = itertools.count()
        self.seq = 0  # spawns so far; tags every message so the worker can drop stale ones
        self.job_pid: int | None = None
        self.job_status: tuple[int, int] | None = None
        self.workdir: str | None = None
        self.pidfd: int | None = None  # readable once the job process has exited

    def send(self, message: tuple) -> None:
        self.sock.send(pickle.dumps(message))

    def spawn(self, fds: list[int]) -> None:
        with os.fdopen(fds[0], "rb") as f:
            f.seek(0)
            payload = pickle.load(f)
        workdir = os.path.join(self.config["tmp_root"], f"job-{os.getpid()}-{next(self.counter)}")
        os.mkdir(workdir, 0o700)
        if self.config["user"] is not None:
            os.chown(workdir, *self.config["user"])
        limits = sandbox.rlimit_pairs(
            {**self.config["limits"], "cpu_seconds": payload["cpu_seconds"]}
        )
        # stdin, stdout, stderr, requests, replies (received as stdin, req, resp, out, err)
        for fd, parked in zip((fds[1], fds[4], fds[5], fds[2], fds[3]), _PARKED):
            os.dup2(fd, parked)
        for fd in fds[1:]:
            os.close(fd)
        pid = os.fork()
        if pid == 0:
            _exec_job(self.config, payload, limits, workdir)
        for fd in _PARKED:
            os.close(fd)
        self.pidfd = os.pidfd_open(pid)
        self.job_pid, self.job_status, self.workdir = pid, None, workdir
        self.seq += 1

    def reap(self, block: bool = False) -> bool:
        """Collect exited children; return True once no child is left at all."""
        while True:
            try:
                pid, status, usage = os.wait4(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == 0:
                return False
            if pid == self.job_pid and self.job_status is None:
                self.job_status = (status, usage.ru_maxrss)
                self.send(("exited", self.seq, status, usage.ru_maxrss))

    def kill_all(self) -> None:
        """SIGKILL every process the job created, wherever it moved, and reap them all."""
        if self.job_pid is None:
            return
        try:
            os.killpg(self.job_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.pid_ns:
            # As init: every process in the namespace. Nothing can fork past a pending
            # SIGKILL, so the blocking reap below ends.
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.reap(block=True)
            return
        # Fallback: we are a child subreaper, so every escaped descendant is below us. Kill
        # what we see, reap without blocking (one may fork while we look), repeat.
        deadline = time.monotonic() + 5.0
        while True:
            for pid in sandbox.descendants(os.getpid()):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if self.reap() or time.monotonic() > deadline:
                return
            time.sleep(0.0005)

    def cleanup(self) -> None:
        self.kill_all()
        if self.workdir is not None:
            try:
                fsview.remove_tree(self.workdir)
            except OSError:  # never let a job's leftovers end the zygote; keep the name taken
                pass
        status, rss = self.job_status if self.job_status else (0, 0)
        self.send(("done", self.seq, status, rss))
        if self.pidfd is not None:
            os.close(self.pidfd)
        self.job_pid, self.job_status, self.workdir, self.pidfd = None, None, None, None

    def serve(self) -> None:
        while True:
            watched = [self.sock] if self.pidfd is None else [self.sock, self.pidfd]
            ready, _, _ = select.select(watched, [], [])
            if self.pidfd is not None and self.pidfd in ready:
                self.reap()
                if self.job_status is not None:
                    os.close(self.pidfd)
                    self.pidfd = None
            if self.sock in ready:
                data, fds, _, _ = socket.recv_fds(self.sock, 1024, _JOB_FDS)
                if not data:
                    return
                command = data.decode()
                if command == "spawn" and len(fds) == _JOB_FDS:
                    self.spawn(fds)
                elif command == "cleanup":
                    self.cleanup()
                else:
                    for fd in fds:
                        os.close(fd)


def _warm_up() -> None:
    """Run the job-process code paths once here (compile, exec, one call served over a
    pipe), so that the lazily built state they need exists before the fork and each job
    process shares it instead of rebuilding it in fresh, page-faulting memory."""
    namespace: dict = {"__name__": "__main__"}
    code = compile("def f(x, y=0):\n    return [x, (x, {x: y})]\n", child.PROGRAM_FILE, "exec")
    exec(code, namespace)
    sorted(k for k in namespace if type(k) is str)
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    args = [codec.encode_value((1, [2.5, "x"])), codec.encode_value({"y": None})]
    for name in ("f", "missing"):
        codec.write_frame(req_w, codec.dumps(["call", name, *args]))
    os.close(req_w)
    child.serve_calls(namespace, req_r, rep_w)
    os.close(rep_w)
    while codec.read_frame(rep_r) is not None:
        pass
    os.close(req_r)
    os.close(rep_r)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()


BOOTSTRAP = "from rlfb_jax.executor.zygote import zygote_main; zygote_main(sys.argv[2])"


def _enter_view(config: dict, proc: bool) -> tuple[bool, str, list[str]]:
    """Move into the allow-listed file-system view (see `fsview`): (entered, why not,
    answer paths inside it that could not be masked)."""
    hidden = [*config["hide_paths"], *fsview.default_hidden(), config["project_root"]]
    readonly = fsview.allowed_paths(sys.path, config["project_root"])
    writable = [config["tmp_root"]]
    try:
        failed = fsview.build(config["view_root"], readonly, writable, hidden, proc)
        fsview.enter(config["view_root"])
    except OSError as e:
        return False, str(e), []
    return True, "", failed


def zygote_main(config_json: str) -> None:
    """Body of the zygote process (started by the worker with ``python -I -S``)."""
    code = 0
    try:
        config = json.loads(config_json)
        sock = socket.socket(fileno=config["socket_fd"])
        sandbox.harden_trusted_process()
        sys.path[:] = config["sys_path"]  # site-packages too, for programs using numpy
        own_mounts = False
        if os.geteuid() == 0:
            try:
                sandbox.private_mounts()
                own_mounts = True
            except OSError:
                pass
        status = {"view": "needs root and a mount namespace", "seccomp": "", "proc": False}
        view_ok, unmasked = False, []
        if own_mounts and config["view_root"]:
            view_ok, status["view"], unmasked = _enter_view(config, config["pid_namespace"])
            status["proc"] = view_ok and config["pid_namespace"]
        hidden_ok = (view_ok and not unmasked) or not config["hide_paths"]
        if own_mounts and not view_ok:
            # Fallback: the whole host file system, minus the listed answer files.
            hidden_ok = not sandbox.hide_paths(config["hide_paths"] + fsview.default_hidden())
            if config["pid_namespace"]:
                try:
                    sandbox.mount_private_proc()
                    status["proc"] = True
                except OSError:
                    pass
        if not config["pid_namespace"]:
            sandbox.become_subreaper()
        unreadable: list[str] = []
        if own_mounts and not view_ok and config["user"] is not None:
            moved = sandbox.expose_paths(sys.path, tuple(config["user"]), config["bind_root"])
            sandbox.remap_import_paths(moved)
        elif not view_ok and config["user"] is not None:
            unreadable = [
                p
                for p in sys.path
                if os.path.isdir(p) and not sandbox.traversable(p, *config["user"])
            ]
        importlib.invalidate_caches()
        # Without the binds, the job user can import only what is already loaded here.
        extra = FALLBACK_PRELOAD if unreadable else ()
        for name in PRELOAD + extra + tuple(config.get("preload", ())):
            try:
                importlib.import_module(name)
            except ImportError:
                pass
        _warm_up()
        # The filter goes on the zygote itself (every job inherits it, at no cost per job);
        # the zygote needs none of the calls it refuses once it is set up.
        status["seccomp"] = seccomp.available() or ""
        if config["seccomp"] and not status["seccomp"]:
            try:
                seccomp.Filter().install()
            except OSError as e:
                status["seccomp"] = str(e)
        elif not config["seccomp"]:
            status["seccomp"] = "disabled by the pool"
        config["ipc_per_job"] = bool(status["seccomp"]) and config["ipc_per_job"]
        zygote = Zygote(sock, config)
        # Objects that exist now are never collected in a job process: without this, the
        # first full collection there would touch (and copy-on-write) the whole heap.
        gc.collect()
        gc.freeze()
        sandbox.scrub_environment()  # once here, inherited by every job process
        zygote.send(("hello", status["proc"], hidden_ok, unreadable, view_ok, status))
        zygote.serve()
    except BaseException:  # noqa: BLE001
        code = 1
    finally:
        os._exit(code)
