"""Verdicts and blame come from what the trusted side observes (issue 16, classes 1 and 5).

A program can write anything on its reply channel (fd 4), raise anything, and have its
functions raise exceptions that trusted code might treat as control flow. None of that may
give it ``sandbox_error`` (masked out of the losses, so worth more than any failure), a
status of its choosing (memory_exceeded, output_exceeded), an error line outside its own
text, or a pass.
"""

from __future__ import annotations

import pytest

from rlfb_jax.executor import ExecutorPool, Job

T = ["assert f(1) == 2", "assert f(2) == 3"]
FAIL = {"wrong_answer", "runtime_error", "timeout"}


def frame(message: str) -> str:
    """Program text that writes ``message`` (a Python literal) as one frame on fd 4."""
    return (
        "import json as _j, os as _o\n"
        f"_d = _j.dumps({message}).encode()\n"
        "_o.write(4, len(_d).to_bytes(4, 'big') + _d)\n"
    )


SETUP_ERROR_OLD = (
    "['error', {'type': 'ImportError', 'message': 'x', 'line': None, 'where': 'setup'}]"
)
SYNTAX_SETUP_OLD = "['syntax_error', {'type': 'SyntaxError', 'message': 'x', 'where': 'setup'}]"
FORGED = {
    "old_setup_error_then_exit": frame(SETUP_ERROR_OLD) + "_o._exit(0)\n",
    "old_setup_syntax_error_then_exit": frame(SYNTAX_SETUP_OLD) + "_o._exit(0)\n",
    "setup_error_frame": frame("['setup_error', {'type': 'E', 'message': 'x'}]") + "_o._exit(0)\n",
    "compile_error_of_setup": frame(
        "['compile_error', '<setup>', {'type': 'SyntaxError', 'message': 'x', 'syntax': True}]"
    )
    + "_o._exit(0)\n",
    "started_twice": frame("['started']") + "def f(x):\n    return x + 1\n",
    "garbage_length": "import os\nos.write(4, b'\\xff\\xff\\xff\\xffjunk')\nos._exit(0)\n",
    "truncated_frame": "import os\nos.write(4, b'\\x00\\x00\\x00\\x10ab')\nos._exit(0)\n",
    "not_json": "import os\nos.write(4, b'\\x00\\x00\\x00\\x03{{{')\nos._exit(0)\n",
    "json_not_list": frame("{'ready': True}") + "import os\nos._exit(0)\n",
    "ready_with_bad_names": frame("['ready', [[1, 2], 'x', None]]") + "import os\nos._exit(0)\n",
    "forged_setup_error_in_call": "def f(x):\n"
    + "".join("    " + line + "\n" for line in frame(SETUP_ERROR_OLD).splitlines())
    + "    _o._exit(0)\n",
}


@pytest.mark.parametrize("name", sorted(FORGED))
def test_forged_or_malformed_frames_are_the_programs_failure(pool, name):
    (o,) = pool.run([Job(program=FORGED[name], tests=T, setup="import math\n")])
    assert o.status in FAIL, (name, o.status, o.error_type, o.error_message)


def test_forged_frames_in_stdio_jobs(pool):
    programs = [
        # right output, but junk on the result channel
        "import os\nos.write(4, b'\\x00\\x00\\x00\\x03abc')\nprint(2)\n",
        frame(SETUP_ERROR_OLD) + "print(2)\n",
        frame(SYNTAX_SETUP_OLD) + "print(2)\n",
        frame("['compile_error', '<setup>', {'type': 'S', 'message': '', 'syntax': True}]")
        + "print(2)\n",
        "import os\nos.write(4, b'\\xff\\xff\\xff\\xff')\nprint(2)\n",
    ]
    outcomes = pool.run([Job(kind="stdio", program=p, tests=[("", "2")]) for p in programs])
    assert [o.status for o in outcomes] == ["runtime_error"] * len(programs), [
        (o.status, o.error_type, o.error_message) for o in outcomes
    ]


def test_a_value_too_deep_to_send_back_is_the_programs_failure(pool):
    """The test passes a returned value back to the program; however deep the program made
    it, that is never the executor's failure."""
    outcomes = pool.run(
        [
            Job(
                program=f"def f(x):\n    v = 0\n    for _ in range({depth}):\n        v = [v]\n"
                "    return v\n"
                "def g(v):\n    return 1\n",
                tests=["assert g(f(0)) == 1"],
            )
            for depth in (98, 99, 100, 101, 102, 150)
        ]
    )
    statuses = [o.status for o in outcomes]
    assert "sandbox_error" not in statuses, [(o.status, o.error_message) for o in outcomes]
    assert statuses[:2] == ["passed", "passed"]  # ordinary depths still work


def test_exception_type_claims_do_not_pick_the_status(pool):
    """A MemoryError the program raises itself, an OSError that reads like the file-size
    limit: labels of a runtime error, never memory_exceeded / output_exceeded."""
    programs = [
        "def f(x):\n    raise MemoryError('fake')\n",
        "class MemoryError(Exception):\n    pass\ndef f(x):\n    raise MemoryError()\n",
        "def f(x):\n    raise OSError(27, 'File too large')\n",
        frame("['error', {'type': 'MemoryError', 'message': '', 'line': 1}]") + "_o._exit(0)\n",
    ]
    outcomes = pool.run([Job(program=p, tests=T) for p in programs])
    assert [o.status for o in outcomes] == ["runtime_error"] * 4, [
        (o.status, o.error_type) for o in outcomes
    ]
    assert outcomes[0].error_type == "MemoryError"  # the label stays, for feedback text


def test_error_lines_and_types_are_bounded_labels(pool):
    program = (
        "def f(x):\n    exec(compile('\\n' * 500 + 'raise ValueError(1)', '<program>', 'exec'))\n"
    )
    forged = (
        frame("['error', {'type': 'Bad Name\\n<script>', 'message': 'm', 'line': 10**9}]")
        + "_o._exit(0)\n"
    )
    o_line, o_forged = pool.run([Job(program=program, tests=T), Job(program=forged, tests=T)])
    assert o_line.status == "runtime_error" and o_line.error_line in (None, 2)
    assert o_forged.status == "runtime_error"
    assert o_forged.error_line is None and o_forged.error_type == "ProgramError"


def test_a_real_setup_failure_is_still_a_sandbox_error(pool):
    """The trusted side's own view: the job's setup fails before any program code runs."""
    broken_setup = Job(program="def f(x):\n    return x + 1\n", tests=T, setup="import no_such_mod")
    bad_syntax = Job(program="def f(x):\n    return x + 1\n", tests=T, test_setup="x = (")
    real_syntax = Job(program="def f(x):\n    return (x\n", tests=T)
    o1, o2, o3 = pool.run([broken_setup, bad_syntax, real_syntax])
    assert (o1.status, o2.status, o3.status) == ("sandbox_error", "sandbox_error", "syntax_error")
    assert o3.error_line == 2


# ------------------------------------------------------------------ class 5


STEERING = [
    # StopIteration from the program's function ends map() early: all([]) is True.
    ("def f(x):\n    raise StopIteration\n", "assert all(map(f, [1, 2, 3]))"),
    ("def f(x):\n    raise StopIteration\n", "assert sum(map(f, [1, 2])) == 0"),
    ("def f(x):\n    raise StopIteration\n", "assert list(filter(f, [1, 2])) == []"),
    ("def f(x):\n    raise StopIteration\n", "assert sorted(map(f, [3, 1])) == []"),
    ("def f(x):\n    raise StopAsyncIteration\n", "assert all(map(f, [1]))"),
    ("def f():\n    raise StopIteration\n", "assert list(iter(f, 0)) == []"),
    (
        "def f(x):\n    raise StopIteration\n",
        "def check(candidate):\n    assert all(map(candidate, [1, 2]))\ncheck(f)",
    ),
]


@pytest.mark.parametrize("program, test", STEERING)
def test_program_exceptions_do_not_steer_trusted_test_code(pool, program, test):
    (o,) = pool.run([Job(program=program, tests=[test])])
    assert o.status == "runtime_error", (o.status, o.error_type, o.error_message)
    assert o.error_type in ("StopIteration", "StopAsyncIteration")


def test_a_returned_iterator_still_ends_normally(pool):
    program = "def f(n):\n    return (i * i for i in range(n))\n"
    (o,) = pool.run([Job(program=program, tests=["assert list(f(3)) == [0, 1, 4]"])])
    assert o.passed, (o.status, o.error_type, o.error_message)


CALL_TYPES = [
    ("{(True, 2.0): 'x'}", "{(1, 2): 'x'}", False),
    ("{(1, 2): 'x'}", "{(1, 2): 'x'}", True),
    ("frozenset({(True,)})", "frozenset({(1,)})", False),
    ("{(1.0, 'a')}", "{(1, 'a')}", False),
    ("[{1: [True]}]", "[{1: [1]}]", False),
    ("{1: {2: (3, 4.0)}}", "{1: {2: (3, 4)}}", False),
    ("{True: 1}", "{1: 1}", False),
    ("{frozenset({1, 2}): [0.5]}", "{frozenset({1, 2}): [0.5]}", True),
]


@pytest.mark.parametrize("returned, expected, equal", CALL_TYPES)
def test_call_form_checks_types_recursively(pool, returned, expected, equal):
    job = Job(
        kind="call",
        entry_point="f",
        program=f"def f():\n    return {returned}\n",
        tests=[((), eval(expected))],
    )
    (o,) = pool.run([job])
    assert o.passed is equal, (o.status, o.error_message)


# ------------------------------------------- trusted test code hung on a program's value


HONEST = Job(program="def f(x):\n    return x + 1\n", tests=["assert f(1) == 2"])


def test_a_test_looping_over_a_huge_returned_value_times_out(pool):
    """The trusted test loops in Python over what the program returned; the job's deadline
    holds there too, as it would in a harness that runs the test in-process."""
    program = "def f():\n    return 10**15\n"
    (o, after) = pool.run(
        [Job(program=program, tests=["assert sum(1 for _ in range(f())) == 0"]), HONEST]
    )
    assert o.status == "timeout", (o.status, o.error_type, o.error_message)
    assert after.passed, (after.status, after.error_message)  # the worker still serves


def test_a_test_stuck_in_one_long_c_operation_is_a_timeout_not_a_sandbox_error():
    program = "def f():\n    return 10**15\n"
    with ExecutorPool(num_workers=1, timeout=1.0, timeout_per_test=1.0) as p:
        (o,) = p.run([Job(program=program, tests=["assert sum(range(f())) == 0"])])
        (after,) = p.run([Job(program="def f():\n    return 1\n", tests=["assert f() == 1"])])
    assert o.status == "timeout", (o.status, o.error_type, o.error_message)
    assert after.passed  # a fresh worker took over


def forged_reply(message: str) -> str:
    """A program whose f() answers with a forged reply frame instead of returning."""
    body = "".join("    " + line + "\n" for line in frame(message).splitlines())
    return "def f():\n" + body + "    import time\n    time.sleep(30)\n"


def test_numbers_too_big_for_trusted_code_are_refused(pool):
    programs = [
        "from decimal import Decimal\ndef f():\n    return Decimal('1e999999999')\n",
        forged_reply("['value', {'I': 'f' * 300000}]"),  # a 1.2-million-bit int
        forged_reply("['value', {'F': [{'I': 'f' * 300000}, {'I': 'e' * 300000}]}]"),
        forged_reply("['value', {'r': 'f'}]"),  # a name only the trusted side may send
    ]
    tests = ["assert int(f()) == 1"] + ["assert f() == 1"] * 3
    outcomes = pool.run([Job(program=p, tests=[t]) for p, t in zip(programs, tests)])
    # each refused by a decoder check (the forged ones sleep 30 s after sending, so a
    # decoder that worked on them past the 1 s per-test limit would give a timeout)
    assert [o.status for o in outcomes] == ["runtime_error"] * 4, [
        (o.status, o.error_message) for o in outcomes
    ]
    reasons = ("exponent beyond", "more than 1048576 bits", "more than 1048576 bits",
               "unknown value tag")
    for o, reason in zip(outcomes, reasons):
        assert reason in o.error_message, o.error_message


def test_a_malformed_error_report_in_stdio_is_the_programs(pool):
    program = frame("['error']") + "import sys\nsys.stdout.flush()\n_o._exit(1)\n"
    (o,) = pool.run([Job(kind="stdio", program=program, tests=[("", "")])])
    assert o.status == "runtime_error", (o.status, o.error_type, o.error_message)


def test_a_test_allocating_by_a_programs_value_fails_without_killing_the_worker(pool):
    program = "def f():\n    return 6 * 10**8\n"  # 4.8 GB of list: beyond the worker's limit
    outcomes = pool.run(
        [
            Job(program=program, tests=["assert len([0] * f()) == 0"]),
            Job(program="def f():\n    return 1\n", tests=["assert f() == 1"]),
        ]
    )
    assert [o.status for o in outcomes] == ["wrong_answer", "passed"], [
        (o.status, o.error_type, o.error_message) for o in outcomes
    ]
    assert outcomes[0].error_type == "MemoryError"
