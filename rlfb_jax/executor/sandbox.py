"""Isolation layers, applied by the worker (once) and by each job process (after fork).

Each layer protects against something specific; every one that this host cannot provide is
recorded in `Layers` with the reason, reported by ``python -m rlfb_jax.executor.doctor`` and
logged as a warning by the pool, which keeps working without it.

Per worker (entered once, inherited by every job of that worker):

* ``net_namespace`` - a private network namespace with no interfaces up: no connection to
  the internet, to other hosts or to loopback services of the host. Fallback: the job
  process replaces the ``socket`` module's constructors with ones that raise (best effort:
  a program using ctypes can still reach the network).
* ``mount_namespace`` + ``readonly_fs`` - every mount is remounted read-only (and nosuid)
  in a private mount namespace; a fresh size-capped tmpfs on /tmp (or on an empty directory
  of its own when Python or the project lives under /tmp) holds the job directories and
  hides the host's temp files. A program can't modify or plant files anywhere on the host,
  and nothing it writes survives the worker. When the allow-listed view can't be built and
  the job user can't read the Python installation (pyenv under /root), the zygote
  bind-mounts the import paths read-only where it can reach them; without a mount namespace
  it preloads more of the standard library instead and reports ``import_paths``.
* ``pid_namespace`` - jobs run in a PID namespace whose init is the worker's zygote; after
  each job the init sends SIGKILL to every process in the namespace, which reaches children
  that escaped the process group with setsid(), and the program can't see or signal any
  process outside. Fallback: the zygote is a child subreaper and kills every descendant it
  finds in /proc.
* ``ipc_uts_namespace`` - private System V IPC and hostname.
* ``fs_allow_list`` - the zygote moves into an allow-listed view of the file system
  (``pivot_root``; see `fsview`): system and Python directories read-only, the job
  directories, nothing else. Answer files, run directories and the project tree are not
  there at all.
* ``hidden_paths`` - paths the pool was asked to hide (benchmark files holding the expected
  answers) are masked by empty mounts, so a program can't look its answers up on disk.
* ``seccomp`` - a BPF filter on the zygote, inherited by every job (see `seccomp`): no user
  namespaces, keyrings, System V IPC, message queues, ptrace or mounts. With it no IPC
  state can cross jobs (``ipc_per_job``); without it each job gets a new IPC namespace.
* ``no_ptrace`` - the worker and the zygote are not dumpable, so a job running under the
  same uid cannot ptrace them or open their file descriptors through /proc.

Per job (in the forked child, before the program's first byte runs):

* ``process_group`` - the job is its own process group; deadlines kill the whole group.
* ``rlimits`` - CPU seconds (SIGXCPU/SIGKILL on spin loops that dodge the wall clock),
  address space (default 2 GiB: memory bombs get MemoryError), file size (huge files),
  process count (fork bombs), open files, core dumps off.
* ``drop_privileges`` + ``uid_per_worker`` - when the worker runs as root, its jobs run as
  a uid of their own (`UID_BASE` + the worker's PID) with no supplementary groups: they
  can't touch root-owned files, signal the worker or ptrace it, and per-uid accounting
  (RLIMIT_NPROC, keyrings) is per worker, never shared with another pool's jobs.
* ``scrubbed_env`` - environment replaced by a minimal fixed one (no tokens or paths leak).
* ``stdin_devnull`` - stdin is /dev/null (or the test input for stdin/stdout jobs).
* ``temp_cwd`` - a fresh private working directory, removed after the job.
* ``deadline`` - one wall-clock deadline per test and per job, enforced by the trusted side.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)  # the interpreter's own libc symbols

LAYER_NAMES = (
    "process_group",
    "rlimits",
    "deadline",
    "temp_cwd",
    "stdin_devnull",
    "scrubbed_env",
    "drop_privileges",
    "net_namespace",
    "socket_disabled",
    "mount_namespace",
    "readonly_fs",
    "pid_namespace",
    "ipc_uts_namespace",
    "no_ptrace",
    "fs_allow_list",
    "seccomp",
    "ipc_per_job",
    "uid_per_worker",
)

SAFE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": "/nonexistent",
    "PYTHONHASHSEED": "0",
    "PYTHONDONTWRITEBYTECODE": "1",
    "OMP_NUM_THREADS": "1",
}


class Layers:
    """Which isolation layers are active; ``missing`` maps a layer name to why it is off."""

    def __init__(self) -> None:
        self.active: dict[str, bool] = {}
        self.missing: dict[str, str] = {}

    def on(self, name: str) -> None:
        self.active[name] = True
        self.missing.pop(name, None)

    def off(self, name: str, reason: str) -> None:
        self.active[name] = False
        self.missing[name] = reason


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    enc = lambda s: None if s is None else s.encode()
    _check(
        _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {target}",
    )


def prctl(option: int, arg: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option})")


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            points.append(point)
    return points


def enter_worker_namespaces(tmp_root: str, tmpfs_mb: int, layers: Layers) -> bool:
    """Enter private net/mount/IPC/UTS namespaces for this worker process (must be root).

    Mounts a tmpfs of ``tmpfs_mb`` MiB on ``tmp_root`` and remounts everything else
    read-only. Returns True when ``tmp_root`` is a private tmpfs. Each failure is recorded
    in ``layers`` and the rest goes on.
    """
    if os.geteuid() != 0:
        for name in ("net_namespace", "mount_namespace", "readonly_fs", "ipc_uts_namespace"):
            layers.off(name, "needs root (the worker is not running as root)")
        return False
    try:
        unshare(CLONE_NEWNET)
        layers.on("net_namespace")
    except OSError as e:
        layers.off("net_namespace", str(e))
    try:
        unshare(CLONE_NEWIPC | CLONE_NEWUTS)
        layers.on("ipc_uts_namespace")
    except OSError as e:
        layers.off("ipc_uts_namespace", str(e))
    try:
        unshare(CLONE_NEWNS)
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        layers.on("mount_namespace")
    except OSError as e:
        layers.off("mount_namespace", str(e))
        layers.off("readonly_fs", "no mount namespace")
        return False
    private_tmp = False
    try:
        os.makedirs(tmp_root, exist_ok=True)
        mount(
            "rlfb-sandbox",
            tmp_root,
            "tmpfs",
            MS_NOSUID | MS_NODEV,
            f"size={tmpfs_mb}m,nr_inodes={TMPFS_INODES},mode=0755",
        )
        private_tmp = True
    except OSError as e:
        layers.off("readonly_fs", f"cannot mount a private tmpfs on {tmp_root}: {e}")
        return False
    failed = []
    for point in _mount_points():
        if point == tmp_root or point.startswith(("/proc", "/sys")):
            continue  # /proc is replaced per PID namespace; /sys is handled as a whole below
        try:
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
        except OSError:
            failed.append(point)
    try:
        mount(None, "/sys", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
    except OSError:
        pass  # /sys writes need root capabilities the job does not have anyway
    if "/" in failed:
        layers.off("readonly_fs", "remounting / read-only failed")
    else:
        layers.on("readonly_fs")
        if failed:
            layers.missing["readonly_fs_partial"] = "could not remount: " + ", ".join(failed)
    return private_tmp


def enter_pid_namespace(layers: Layers) -> bool:
    """Make this process's future children live in a new PID namespace (root only)."""
    if os.geteuid() != 0:
        layers.off("pid_namespace", "needs root")
        return False
    try:
        unshare(CLONE_NEWPID)
    except OSError as e:
        layers.off("pid_namespace", str(e))
        return False
    layers.on("pid_namespace")
    return True


def private_mounts() -> None:
    """A mount namespace of the zygote's own (for its /proc and import-path binds)."""
    unshare(CLONE_NEWNS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def hide_paths(paths: list[str]) -> list[str]:
    """Mask files and directories (benchmark data with the expected answers, say) inside the
    zygote's mount namespace: an empty read-only tmpfs over a directory, /dev/null over a
    file. Returns the paths that could not be hidden."""
    failed = []
    for path in paths:
        try:
            if os.path.isdir(path):
                mount(
                    "rlfb-hidden",
                    path,
                    "tmpfs",
                    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    "size=4k,mode=0",
                )
            elif os.path.exists(path):
                mount("/dev/null", path, None, MS_BIND)
                mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        except OSError:
            failed.append(path)
    return failed


def mount_private_proc() -> None:
    """Inside the new PID namespace: a /proc that shows only the namespace's processes."""
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def traversable(path: str, uid: int, gid: int) -> bool:
    """Can ``uid:gid`` reach and list ``path`` (every ancestor searchable)?"""
    current = "/"
    for part in [p for p in os.path.realpath(path).split("/") if p] + [None]:
        try:
            st = os.stat(current)
        except OSError:
            return False
        if st.st_uid == uid:
            bits = st.st_mode >> 6
        elif st.st_gid == gid:
            bits = st.st_mode >> 3
        else:
            bits = st.st_mode
        if not bits & 1 or (part is None and not bits & 4):
            return False
        if part is not None:
            current = os.path.join(current, part)
    return True


def expose_paths(paths: list[str], ids: tuple[int, int], mount_root: str) -> dict[str, str]:
    """Make import paths the unprivileged job user can't reach (a Python installed under
    /root, say) visible to it through read-only bind mounts under ``mount_root``.

    Runs in the zygote's own mount namespace; returns {original path: visible path} for the
    paths that had to be moved.
    """
    moved = {}
    for i, path in enumerate(paths):
        if not os.path.isdir(path) or traversable(path, *ids):
            continue
        target = os.path.join(mount_root, f"path{i}")
        os.makedirs(target, 0o755, exist_ok=True)
        mount(path, target, None, MS_BIND | MS_REC)
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
        moved[path] = target
    return moved


def remap_import_paths(moved: dict[str, str]) -> None:
    """Point sys.path and every imported package's __path__ at the visible copies."""
    import importlib
    import sys

    def remap(entry: str) -> str:
        for old, new in moved.items():
            if entry == old or entry.startswith(old + os.sep):
                return new + entry[len(old) :]
        return entry

    sys.path[:] = [remap(p) for p in sys.path]
    for module in list(sys.modules.values()):
        path = getattr(module, "__path__", None)
        if isinstance(path, list):
            path[:] = [remap(p) for p in path]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()


def harden_trusted_process(layers: Layers | None = None) -> None:
    """Die with our parent, and refuse ptrace / /proc fd access from job processes."""
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        prctl(PR_SET_DUMPABLE, 0)
        if layers is not None:
            layers.on("no_ptrace")
    except OSError as e:
        if layers is not None:
            layers.off("no_ptrace", str(e))


def descendants(root: int) -> list[int]:
    """Every process whose parent chain leads to ``root`` (read from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, frontier = [], [root]
    while frontier:
        kids = parents.get(frontier.pop(), [])
        found.extend(kids)
        frontier.extend(kids)
    return found


def become_subreaper() -> None:
    prctl(PR_SET_CHILD_SUBREAPER, 1)


# Files and directories a worker's tmpfs can hold (job directories and what jobs write):
# enough for any honest program, and few enough that removing a job's leftovers takes well
# under a second, however the job arranged them.
TMPFS_INODES = 65536

# Job uids are UID_BASE + the worker's PID: no account uses them, and no two live workers on
# this host share one, so per-uid accounting (RLIMIT_NPROC, keyrings, signals) is per worker,
# and a worker runs one job at a time and kills all of it before the next.
UID_BASE = 0x10000000


def sandbox_user() -> tuple[int, int] | None:
    """(uid, gid) for this worker's jobs when we are root and can drop privileges, else None."""
    if os.geteuid() != 0:
        return None
    ident = UID_BASE + os.getpid()
    return ident, ident


DEFAULT_LIMITS = {
    "cpu_seconds": 10,
    "memory_bytes": 2 << 30,
    "file_bytes": 16 << 20,
    "processes": 32,
    "open_files": 64,
}


def rlimit_pairs(limits: dict[str, int]) -> list[tuple[int, int]]:
    """(resource, value) pairs for `apply_rlimit_pairs` (keys as in DEFAULT_LIMITS)."""
    limits = {**DEFAULT_LIMITS, **limits}
    return [
        (resource.RLIMIT_CPU, limits["cpu_seconds"]),
        (resource.RLIMIT_AS, limits["memory_bytes"]),
        (resource.RLIMIT_FSIZE, limits["file_bytes"]),
        (resource.RLIMIT_NPROC, limits["processes"]),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_CORE, 0),
    ]


def apply_rlimit_pairs(pairs: list[tuple[int, int]]) -> None:
    """setrlimit in the job process; soft = hard so the program can't raise them back."""
    for which, value in pairs:
        resource.setrlimit(which, (value, value))


def apply_rlimits(limits: dict[str, int]) -> None:
    """setrlimit from a dict with the keys of DEFAULT_LIMITS."""
    apply_rlimit_pairs(rlimit_pairs(limits))


def drop_privileges(ids: tuple[int, int] | None) -> None:
    if ids is None:
        return
    uid, gid = ids
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def scrub_environment() -> None:
    os.environ.clear()
    os.environ.update(SAFE_ENV)


def disable_sockets() -> None:
    """Fallback for hosts without a network namespace: refuse to create sockets."""
    import _socket
    import socket

    def refuse(*args, **kwargs):
        raise PermissionError(1, "network access is disabled in the sandbox")

    class _NoSocket(_socket.socket):
        def __init__(self, *args, **kwargs):
            refuse()

    socket.socket = _NoSocket  # type: ignore[misc]
    _socket.socket = _NoSocket  # type: ignore[misc]
    for name in ("create_connection", "socketpair", "fromfd", "getaddrinfo", "create_server"):
        setattr(socket, name, refuse)
