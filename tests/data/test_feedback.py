"""Feedback text and the repair prompt (rlfb_jax.data.feedback), executed for real."""

import random
import re

import pytest

from rlfb_jax.data.feedback import (
    ATTEMPT_HEADER,
    feedback_job,
    is_repair_prompt,
    mutate,
    render_feedback,
    repair_pairs,
    repair_prompt,
    repair_task,
)
from rlfb_jax.data.synthetic import make_splits
from rlfb_jax.data.tasks import Task
from rlfb_jax.executor import ExecutorPool


@pytest.fixture(scope="module")
def pool():
    with ExecutorPool(num_workers=2, timeout=6.0, timeout_per_test=1.0) as p:
        yield p


@pytest.fixture(scope="module")
def tasks():
    return make_splits(60, 1, 1, seed=3)["train"]


def _task():
    return Task(task_id="t", prompt='"""Double it.\n>>> f(2)\n4\n>>> f(5)\n10\n"""\ndef f(n):\n',
                entry_point="f", reference="    return 2 * n\n",
                tests=("assert f(7) == 14", "assert f(-3) == -6"),
                examples=("assert f(2) == 4", "assert f(5) == 10"),
                call_tests=(((7,), 14), ((-3,), -6)), example_calls=(((2,), 4), ((5,), 10)))


def _feedback(pool, task, completions):
    jobs = [feedback_job(task, c) for c in completions]
    outs = [f.result() for f in pool.submit(jobs)]
    return [render_feedback(task, c, o, j.program) for c, j, o in zip(completions, jobs, outs)]


def test_each_kind_of_failure_renders_one_stable_line(pool):
    task = _task()
    got = _feedback(pool, task, [
        "    return 2 * n\n",  # passes
        "    return n + 2\n",  # f(2) right by accident, f(5) wrong
        "    return 2 *\n",  # syntax error on the attempt's line 1
        "    x = 1\n    return n // (x - 1)\n",  # raises in every call
        "    while True:\n        pass\n",  # never returns
        "    return 'a' * (10 ** 12)\n",  # memory
    ])
    assert got[0] == ""
    assert got[1] == "f(5) returned 7, expected 10"
    assert got[2].startswith("SyntaxError at attempt line 1") and "<program>" not in got[2]
    assert got[3] == "f(2) raised ZeroDivisionError"
    assert got[4] == "timed out on the visible examples"
    assert got[5] in ("ran out of memory on the visible examples", "f(2) raised MemoryError")
    assert all("\n" not in g for g in got)


def test_feedback_never_names_a_hidden_test(pool, tasks):
    """Mutants, plus programs that print everything they can reach: no hidden input and no
    hidden expected value (unless the prompt shows it too) appears in the feedback."""
    rng = random.Random(0)
    snoop = ("    import sys, os\n    print(sorted(globals()), open(__file__).read()"
             " if '__file__' in globals() else sys.argv, os.listdir('.'))\n    return None\n")
    cases = []
    for task in tasks:
        wrong = [m for m in (mutate(task.reference, rng) for _ in range(3)) if m]
        cases += [(task, c) for c in wrong + [snoop]]
    jobs = [feedback_job(t, c) for t, c in cases]
    outs = [f.result() for f in pool.submit(jobs)]
    rendered = 0
    for (task, c), job, out in zip(cases, jobs, outs):
        text = render_feedback(task, c, out, job.program)
        rendered += bool(text)
        for args, _ in task.call_tests:
            call = f"{task.entry_point}({', '.join(map(repr, args))})"
            if call not in task.prompt:
                assert call not in text, (task.task_id, text)
        # what feedback calls expected is what the prompt shows (a returned value is the
        # program's own and may coincide with anything)
        expected = re.search(r", expected (.*)$", text)
        assert expected is None or f"\n{expected.group(1)}\n" in task.prompt, text
    assert rendered > len(cases) * 0.8  # most cases fail and say something


def test_repair_prompt_keeps_the_program_invariant_and_is_recognised(pool):
    task = _task()
    attempt = "    return n + 2\n"
    feedback = "f(5) returned 7, expected 10"
    prompt = repair_prompt(task, attempt, feedback)
    assert prompt == ('"""Double it.\n>>> f(2)\n4\n>>> f(5)\n10\n"""\n'
                      "# attempt:\n#     return n + 2\n"
                      "# feedback: f(5) returned 7, expected 10\ndef f(n):\n")
    assert is_repair_prompt(prompt) and not is_repair_prompt(task.prompt)
    fixed = repair_task(task, attempt, feedback)
    assert fixed.prompt == prompt and fixed.tests == task.tests
    assert fixed.metadata["repair_of"] == "t"
    ok, bad = (f.result() for f in pool.submit([fixed.to_job("    return 2 * n\n"),
                                                fixed.to_job(attempt)]))
    assert ok.passed and not bad.passed
    # the error line of a repair's own attempt is counted from the repair's completion
    assert _feedback(pool, fixed, ["    y = 1\n    return 2 *\n"])[0].startswith(
        "SyntaxError at attempt line 2")


def test_repair_prompt_of_a_prompt_without_def_and_of_a_docstring_after_def():
    mbpp = Task(task_id="m", prompt='"""Write f.\nassert f(1) == 2\n"""\n', entry_point="f",
                reference="def f(x):\n    return x + 1\n", tests=("assert f(1) == 2",))
    p = repair_prompt(mbpp, "def f(x):\n    return x\n", "f(1) returned 1, expected 2")
    assert p.startswith(mbpp.prompt) and p.endswith("# feedback: f(1) returned 1, expected 2\n")
    assert ATTEMPT_HEADER + "\n# def f(x):\n#     return x\n" in p
    he = Task(task_id="h", prompt='import math\n\n\ndef g(x):\n    """Doc."""\n',
              entry_point="g", reference="    return x\n", tests=())
    p = repair_prompt(he, "    return 1\n", "g(2)  returned\n1")
    assert p.endswith('# feedback: g(2) returned 1\ndef g(x):\n    """Doc."""\n')
    compile(p + "    return x\n", "p", "exec")
    long = "".join(f"    x{i} = {i}\n" for i in range(40))
    assert repair_prompt(he, long, "x").count("\n#     x") == 16  # the attempt is capped


def test_mutants_differ_and_are_deterministic(tasks):
    a = [mutate(t.reference, random.Random(i)) for i, t in enumerate(tasks)]
    b = [mutate(t.reference, random.Random(i)) for i, t in enumerate(tasks)]
    assert a == b
    made = [(m, t) for m, t in zip(a, tasks) if m is not None]
    assert len(made) > 0.8 * len(tasks)
    assert all(m.strip() != t.reference.strip() for m, t in made)


def test_repair_pairs_fail_visibly_and_target_the_reference(pool, tasks):
    pairs = repair_pairs(tasks, 40, seed=1, pool=pool)
    assert pairs == repair_pairs(tasks, 40, seed=1, pool=pool)
    refs = {t.reference for t in tasks}
    assert len(pairs) == 40 and all(c in refs for _, c in pairs)
    for prompt, _ in pairs:
        assert is_repair_prompt(prompt)
        feedback = re.search(r"# feedback: (.*)\n", prompt).group(1)
        assert feedback  # every kept attempt failed a visible example
