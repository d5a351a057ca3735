"""Checks that reference solutions pass their own tests, with a plain local subprocess.

TRUSTED CODE ONLY: this runner has none of the executor's sandboxing (no limits, no
isolation); it exists to validate datasets (every reference must pass its hidden tests
and visible examples) without the executor pool. Model samples go through
`rlfb_jax.executor`.

Jobs are pickled to a child Python process that runs each one in a fresh namespace with the
executor's semantics (assert: setup, program, test_setup, then each test snippet; call: strict
value and type equality; stdio: the script with stdin fed, stdout compared whitespace-tolerantly) and
reports ``(passed, error)`` per job.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rlfb_jax.data.tasks import Task
from rlfb_jax.executor.jobs import Job

_CHILD = r'''
import contextlib, io, pickle, sys, traceback

def same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b

def run(job):
    kind, program, tests, setup, entry, test_setup = job
    if kind == "assert":
        ns = {"__name__": "__job__"}
        exec(compile(setup + "\n" + program, "<program>", "exec"), ns)
        exec(compile(test_setup, "<test_setup>", "exec"), ns)
        for t in tests:
            exec(compile(t, "<test>", "exec"), ns)
        return
    if kind == "call":
        ns = {"__name__": "__job__"}
        exec(compile(setup + "\n" + program, "<program>", "exec"), ns)
        exec(compile(test_setup, "<test_setup>", "exec"), ns)
        for args, expected in tests:
            got = ns[entry](*args)
            if not same(got, expected):
                raise AssertionError(f"{entry}{args!r} = {got!r}, expected {expected!r}")
        return
    if kind == "stdio":
        code = compile(program, "<program>", "exec")
        for stdin, expected in tests:
            out = io.StringIO()
            sys.stdin = io.StringIO(stdin)
            try:
                with contextlib.redirect_stdout(out):
                    exec(code, {"__name__": "__main__"})
            finally:
                sys.stdin = sys.__stdin__
            if out.getvalue().split() != expected.split():
                raise AssertionError(f"stdin {stdin!r}: got {out.getvalue()!r}, "
                                     f"expected {expected!r}")
        return
    raise ValueError(kind)

results = []
for job in pickle.load(sys.stdin.buffer):
    try:
        run(job)
        results.append((True, ""))
    except BaseException as e:
        results.append((False, "".join(traceback.format_exception_only(type(e), e)).strip()))
sys.stdout.buffer.write(pickle.dumps(results))
'''


def run_jobs(jobs: Sequence[Job], timeout: float = 120.0) -> list[tuple[bool, str]]:
    """``(passed, error_message)`` for each job, run in one child process (trusted code)."""
    payload = pickle.dumps([(j.kind, j.program, list(j.tests), j.setup, j.entry_point,
                             j.test_setup) for j in jobs])
    proc = subprocess.run([sys.executable, "-c", _CHILD], input=payload,
                          capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"runner crashed: {proc.stderr.decode(errors='replace')[-2000:]}")
    return pickle.loads(proc.stdout)


def run_script(program: str, stdin: str, timeout: float = 30.0) -> str:
    """Runs one stdio program as a real ``python -c`` process; returns its stdout."""
    proc = subprocess.run([sys.executable, "-c", program], input=stdin, text=True,
                          capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return proc.stdout


def check_references(
    tasks: Iterable[Task], kinds: Sequence[str] = ("assert", "call", "stdio"),
    visible: bool = True, chunk: int = 500,
) -> dict[str, Any]:
    """Runs every task's reference against its tests of the given kinds (those it has) and,
    with ``visible``, its visible examples. Returns ``{"jobs", "passed", "pass_rate",
    "failures": [(job_id, kind, error), ...]}``; the pass rate must be 1.0 for a sound set.
    """
    jobs = []
    for task in tasks:
        for kind in kinds:
            if kind == "assert" or (kind == "call" and task.call_tests) or (
                    kind == "stdio" and task.stdio_tests):
                jobs.append(task.reference_job(kind))
        if visible and task.examples:
            jobs.append(task.to_job(task.reference, visible=True,
                                    job_id=f"{task.task_id}#visible"))
    failures = []
    for start in range(0, len(jobs), chunk):
        part = jobs[start:start + chunk]
        for job, (ok, error) in zip(part, run_jobs(part, timeout=60.0 + 0.5 * len(part))):
            if not ok:
                failures.append((job.job_id, job.kind, error))
    n = len(jobs)
    return {"jobs": n, "passed": n - len(failures),
            "pass_rate": (n - len(failures)) / n if n else 1.0, "failures": failures}
