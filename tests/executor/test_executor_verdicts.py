"""Classification of honest (and plainly wrong) programs in the three job forms."""

from __future__ import annotations

from rlfb_jax.executor import STATUSES, Job

ADD = "def add(a, b):\n    return a + b\n"


def run1(pool, job):
    (outcome,) = pool.run([job])
    assert outcome.status in STATUSES
    return outcome


def test_assert_pass_and_per_test_results(pool):
    o = run1(
        pool,
        Job(
            program=ADD,
            tests=[
                "assert add(1, 2) == 3",
                "assert add(2, 2) == 5",
                "assert add('a', 'b') == 'ab'",
            ],
        ),
    )
    assert o.status == "wrong_answer" and not o.passed
    assert [t.status for t in o.tests] == ["passed", "wrong_answer", "passed"]
    assert o.pass_ratio == 2 / 3 and o.error_type == "AssertionError"


def test_syntax_error_found_without_running(pool):
    program = "print('side effect')\ndef f(x):\n    return (x\n\nx = 1\n"
    o = run1(pool, Job(program=program, tests=["assert f(1) == 1"]))
    assert o.status == "syntax_error" and o.tests == ()
    assert o.error_type == "SyntaxError" and o.error_line in (3, 4, 5)
    assert "side effect" not in o.stdout


def test_runtime_error_reports_type_message_and_program_line(pool):
    program = "def f(x):\n    y = x + 1\n    return [1][y]\n"
    o = run1(pool, Job(program=program, tests=["assert f(1) == 1"]))
    assert (o.status, o.error_type, o.error_line) == ("runtime_error", "IndexError", 3)
    assert "out of range" in o.error_message
    assert o.tests[0].error_line == 3


def test_runtime_error_at_import_time(pool):
    o = run1(pool, Job(program="x = 1\nimport nonexistent_module_xyz\n", tests=["assert 1"]))
    assert (o.status, o.error_type, o.error_line) == ("runtime_error", "ModuleNotFoundError", 2)


def test_exception_expected_by_the_test_is_fine(pool):
    program = "def f(x):\n    if x < 0:\n        raise ValueError('neg')\n    return x\n"
    test = "try:\n    f(-1)\n    assert False\nexcept ValueError:\n    pass\nassert f(2) == 2"
    assert run1(pool, Job(program=program, tests=[test])).passed


def test_timeout_and_memory(pool):
    spin = Job(program="def f():\n    while True:\n        pass\n", tests=["assert f()"])
    mem = Job(program="def f():\n    return bytearray(3 << 30)\n", tests=["assert f()"])
    o_spin, o_mem = pool.run([spin, mem])
    assert o_spin.status == "timeout"
    # The MemoryError is the program's own report: a runtime error labelled MemoryError.
    assert o_mem.status == "runtime_error" and o_mem.error_type == "MemoryError"


def test_output_cap(pool):
    o = run1(
        pool,
        Job(program="def f():\n    while True:\n        print('x' * 1000)\n", tests=["assert f()"]),
    )
    assert o.status == "output_exceeded"
    assert 0 < len(o.stdout) <= 4096


def test_setup_runs_first_and_test_setup_after(pool):
    job = Job(
        program="def g(x):\n    return helper(x) * 2\nclass Node:\n"
        "    def __init__(self, v):\n        self.v = v\n"
        "def value(n):\n    return n.v\n",
        setup="def helper(x):\n    return x + 1\n",
        test_setup="root = Node(7)\n",
        tests=["assert g(1) == 4", "assert value(root) == 7"],
    )
    assert run1(pool, job).passed


def test_returned_objects_travel_as_handles(pool):
    program = (
        "class Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
        "def total(pairs):\n    return sum(p.a + p.b for p in pairs)\n"
    )
    o = run1(
        pool,
        Job(
            program=program,
            tests=[
                "assert total([Pair(1, 2), Pair(3, 4)]) == 10",
                "assert Pair(1, 2) != Pair(1, 2)",
            ],
        ),
    )
    assert o.passed


def test_stdlib_containers_and_module_names_in_tests(pool):
    program = (
        "import sys\nfrom collections import Counter\n"
        "def count(xs):\n    return Counter(xs)\n"
        "def size(t):\n    return sys.getsizeof(t)\n"
    )
    o = run1(
        pool,
        Job(
            program=program,
            tests=[
                "assert count('aab') == {'a': 2, 'b': 1}",
                "assert size((1, 2)) == sys.getsizeof((1, 2))",
            ],
        ),
    )
    assert o.passed


def test_entry_point_may_shadow_a_builtin_but_other_builtins_stay_trusted(pool):
    program = "def sum(a, b):\n    return a * b\ndef len(x):\n    return 3\n"
    ok = Job(program=program, entry_point="sum", tests=["assert sum(2, 5) == 10"])
    hack = Job(program=program, entry_point="sum", tests=["assert len([1]) == 3"])
    o_ok, o_hack = pool.run([ok, hack])
    assert o_ok.passed and o_hack.status == "wrong_answer"


def test_stdio_whitespace_tolerant(pool):
    program = "n = int(input())\nprint(*range(n))\nprint()\n"
    job = Job(
        kind="stdio",
        program=program,
        tests=[("3\n", "0 1 2\n"), ("2", "0   1"), ("4\n", "0\n1\n2\n3\n\n\n"), ("1\n", "1\n")],
    )
    o = run1(pool, job)
    assert [t.status for t in o.tests] == ["passed", "passed", "passed", "wrong_answer"]
    assert o.status == "wrong_answer"


def test_stdio_exit_codes_and_errors(pool):
    ok_exit = Job(kind="stdio", program="print(42)\nimport sys\nsys.exit(0)\n", tests=[("", "42")])
    bad_exit = Job(kind="stdio", program="print(42)\nimport sys\nsys.exit(3)\n", tests=[("", "42")])
    crash = Job(kind="stdio", program="print(42)\nx = 1 / 0\n", tests=[("", "42")])
    syntax = Job(kind="stdio", program="print(42\n", tests=[("", "42"), ("", "42")])
    o_ok, o_bad, o_crash, o_syntax = pool.run([ok_exit, bad_exit, crash, syntax])
    assert o_ok.passed
    assert o_bad.status == "runtime_error"
    assert (o_crash.status, o_crash.error_type, o_crash.error_line) == (
        "runtime_error",
        "ZeroDivisionError",
        2,
    )
    assert "ZeroDivisionError" in o_crash.stderr
    assert o_syntax.status == "syntax_error" and o_syntax.error_line == 1


def test_call_form_compares_value_and_type(pool):
    program = "def f(x):\n    return x * 2\ndef g(x):\n    return [x, (x,)]\n"
    job = Job(
        kind="call",
        program=program,
        entry_point="f",
        tests=[((2,), 4), ((2,), 4.0), ((1.5,), 3.0), (("ab",), "abab")],
    )
    o = run1(pool, job)
    assert [t.passed for t in o.tests] == [True, False, True, True]
    nested = Job(
        kind="call",
        program=program,
        entry_point="g",
        tests=[((1,), [1, (1,)]), ((1,), [1, [1]]), ((1,), (1, (1,)))],
    )
    assert [t.passed for t in run1(pool, nested).tests] == [True, False, False]


def test_job_ids_and_order(pool):
    jobs = [
        Job(program=ADD, tests=[f"assert add({i}, 0) == {i if i % 3 else -1}"], job_id=f"j{i}")
        for i in range(12)
    ]
    outcomes = pool.run(jobs)
    assert [o.job_id for o in outcomes] == [f"j{i}" for i in range(12)]
    assert [o.passed for o in outcomes] == [bool(i % 3) for i in range(12)]


def test_bad_job_specs_are_sandbox_errors(pool):
    bad_test = Job(program=ADD, tests=["assert add(1, 2) =="])
    bad_arg = Job(program=ADD, tests=["assert add(lambda: 1, 2)"])
    no_entry = Job(kind="call", program=ADD, tests=[((1, 2), 3)])
    outcomes = pool.run([bad_test, bad_arg, no_entry])
    assert [o.status for o in outcomes] == ["sandbox_error"] * 3


def test_a_test_looping_over_fast_wrong_answers_times_out(pool):
    job = Job(program="def f(x):\n    return 0\n", tests=["x = 0\nwhile f(x) != 1:\n    x += 1"])
    assert run1(pool, job).status == "timeout"


def test_cpu_limit_follows_the_job_timeout(pool):
    program = "import resource\ndef f():\n    return resource.getrlimit(resource.RLIMIT_CPU)[0]\n"
    short, longer = pool.run(
        [
            Job(program=program, tests=["assert f() <= 6"]),
            Job(program=program, tests=["assert f() >= 20"], timeout=20.0),
        ]
    )
    assert short.passed and longer.passed


def test_too_many_open_files(pool):
    program = "def f():\n    return [open('/dev/null') for _ in range(1000)]\n"
    o = run1(pool, Job(program=program, tests=["assert f()"]))
    assert o.status == "runtime_error" and o.error_type == "OSError"
    assert "Too many open files" in o.error_message


def test_huge_return_value_is_output_exceeded(pool):
    o = run1(
        pool,
        Job(
            program="def f():\n    return 'x' * (20 << 20)\n",
            tests=["assert f()"],
            timeout_per_test=3.0,
        ),
    )
    assert o.status == "output_exceeded", (o.error_type, o.error_message)


def test_sources_compile_rejects_are_syntax_errors(pool):
    nul, surrogate = pool.run(
        [
            Job(program="x = 1\x00\n", tests=["assert x == 1"]),
            Job(program="x = '\ud800'\n", tests=["assert x"]),
        ]
    )
    assert nul.status == "syntax_error" and surrogate.status == "syntax_error"


def test_stdio_accepts_bytes(pool):
    job = Job(kind="stdio", program="print(input()[::-1])\n", tests=[(b"abc\n", b"cba\n")])
    assert run1(pool, job).passed
