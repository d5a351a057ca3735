"""The per-test limit: a test that would finish, only later than its own limit, times out
there, well before the job's deadline; tests within their limits pass however long the job
takes in all. (An endless loop cannot tell the per-test limit from the job deadline: these
calls end by themselves, so a per-test limit that is ignored lets them pass.)"""

from __future__ import annotations

import pytest

from rlfb_jax.executor import Job

SLEEP = 8.0  # what one slow call takes; far above the per-test limit, far below the job's
PER_TEST, JOB = 1.0, 30.0

SLOW_FN = f"import time\ndef f(x):\n    time.sleep({SLEEP})\n    return x + 1\n"
SLOW_SCRIPT = f"import time\nx = int(input())\ntime.sleep({SLEEP})\nprint(x + 1)\n"

SLOW_JOBS = {
    "assert": Job(program=SLOW_FN, tests=["assert f(1) == 2"], entry_point="f"),
    "call": Job(kind="call", program=SLOW_FN, tests=[((1,), 2)], entry_point="f"),
    "stdio": Job(kind="stdio", program=SLOW_SCRIPT, tests=[("1\n", "2\n")]),
}


@pytest.mark.parametrize("kind", sorted(SLOW_JOBS))
def test_a_call_slower_than_the_per_test_limit_times_out_at_that_limit(pool, kind):
    job = SLOW_JOBS[kind]
    (o,) = pool.run([Job(**{**job.__dict__, "timeout": JOB, "timeout_per_test": PER_TEST})])
    assert o.status == "timeout", (o.status, o.error_type, o.error_message)
    assert o.tests[0].status == "timeout"
    # Stopped at its own limit: the call it cut short would have needed SLEEP seconds.
    assert o.duration < SLEEP, o.duration


@pytest.mark.parametrize("kind", sorted(SLOW_JOBS))
def test_the_same_call_passes_when_its_limit_allows(pool, kind):
    job = SLOW_JOBS[kind]
    fast = job.program.replace(f"time.sleep({SLEEP})", "time.sleep(0.01)")
    (o,) = pool.run(
        [Job(**{**job.__dict__, "program": fast, "timeout": JOB, "timeout_per_test": PER_TEST})]
    )
    assert o.passed, (o.status, o.error_type, o.error_message)


def test_the_limit_is_per_test_not_per_job(pool):
    """Four tests of 0.5 s each pass under a 1.5 s per-test limit (2 s in all)."""
    program = "import time\ndef f(x):\n    time.sleep(0.5)\n    return x + 1\n"
    tests = [f"assert f({i}) == {i + 1}" for i in range(4)]
    (o,) = pool.run([Job(program=program, tests=tests, timeout=JOB, timeout_per_test=1.5)])
    assert o.passed and [t.status for t in o.tests] == ["passed"] * 4
