"""HumanEval and MBPP loaders: sizes, splits, prompt formats, references pass their tests."""

from __future__ import annotations

import ast
import json
import re

import pytest

from rlfb_jax.data import benchmarks
from rlfb_jax.data.benchmarks import load_humaneval, load_mbpp
from rlfb_jax.data.reference_check import run_jobs


def test_humaneval_tasks_and_references():
    tasks = load_humaneval()
    assert len(tasks) == 164 and tasks[0].task_id == "HumanEval/0"
    for t in tasks:
        assert f"def {t.entry_point}(" in t.prompt
        assert t.tests[0].rstrip().endswith(f"check({t.entry_point})")
        ast.parse(t.prompt + t.reference)
    results = run_jobs([t.reference_job() for t in tasks])
    assert all(ok for ok, _ in results), [e for ok, e in results if not ok][:3]


def test_humaneval_docstring_examples():
    assert benchmarks.humaneval_examples(
        "def f(x):\n    \"\"\"\n    >>> f(1)\n    2\n    >>> f(\n    \"\"\"\n"
    ) == ("assert f(1) == 2",)
    tasks = [t for t in load_humaneval() if t.examples]
    assert len(tasks) >= 60
    results = run_jobs([t.to_job(t.reference, visible=True) for t in tasks])
    failing = {t.task_id for t, (ok, _) in zip(tasks, results) if not ok}
    assert failing <= {"HumanEval/47"}  # its docstring example is wrong in the original


def test_mbpp_splits_and_format(mbpp_file):
    sizes = {s: len(load_mbpp(mbpp_file, s)) for s in ("prompt", "test", "validation", "train")}
    assert sizes == {"prompt": 10, "test": 500, "validation": 90, "train": 374}
    test = load_mbpp(mbpp_file, "test")
    assert test[0].task_id == "mbpp/11" and test[-1].task_id == "mbpp/510"
    first = load_mbpp(mbpp_file, "prompt")[1]
    assert first.task_id == "mbpp/2" and first.entry_point == "similar_elements"
    assert first.prompt == (
        '"""Write a function to find the similar elements from the given two tuple lists.\n'
        "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n"
        "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)\n"
        "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)\n"
        '"""\n')
    assert "\r" not in first.reference and first.examples == first.tests
    for t in load_mbpp(mbpp_file, "all"):
        ast.parse(t.prompt)
        assert re.search(rf"^def\s+{t.entry_point}\s*\(", t.reference, re.M), t.task_id


def test_mbpp_references_pass(mbpp_file):
    tasks = load_mbpp(mbpp_file, "all", include_challenge=True)
    jobs = [t.reference_job() for t in tasks] + [
        t.to_job(t.reference, visible=True, job_id=t.task_id + "/visible") for t in tasks]
    results = run_jobs(jobs)
    failing = [(j.job_id, e) for j, (ok, e) in zip(jobs, results) if not ok]
    assert not failing, failing[:3]


def test_mbpp_setup_code_runs_after_the_program(mbpp_file):
    by_id = {t.task_id: t for t in load_mbpp(mbpp_file, "all")}
    task = by_id["mbpp/367"]  # its test_setup_code builds trees of the program's Node class
    assert task.setup == "" and "root = Node(" in task.test_setup
    assert task.reference_job().test_setup == task.test_setup
    assert run_jobs([task.reference_job(), task.to_job(task.reference, visible=True)]) == [
        (True, ""), (True, "")]


def test_mbpp_few_shot(mbpp_file):
    plain = load_mbpp(mbpp_file, "test")[0]
    shot = load_mbpp(mbpp_file, "test", num_shots=3)[0]
    assert shot.prompt.endswith(plain.prompt)
    prefix = shot.prompt[: -len(plain.prompt)]
    assert prefix.count('"""Write') == 3 and "def similar_elements(" in prefix
    ast.parse(shot.prompt + shot.reference)


def test_mbpp_errors(tmp_path):
    missing = tmp_path / "nowhere" / "mbpp.jsonl"
    with pytest.raises(FileNotFoundError, match="nowhere/mbpp.jsonl"):
        load_mbpp(str(missing))
    with pytest.raises(ValueError, match="unknown MBPP split 'dev'"):
        load_mbpp(str(missing), "dev")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"task_id": 11, "text": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: not an MBPP record"):
        load_mbpp(str(bad))


def test_mbpp_probe_jobs_pass_with_references(mbpp_file):
    """Probe jobs compare by ==, so dict order or int/float reprs don't fail them."""
    tasks = load_mbpp(mbpp_file, "all")
    results = run_jobs([t.probe_job(t.reference) for t in tasks])
    assert all(ok for ok, _ in results), [e for ok, e in results if not ok][:3]
