"""The Task schema: executor jobs, JSON-lines round trips and format errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rlfb_jax.data.reference_check import run_jobs, run_script
from rlfb_jax.data.tasks import (
    BOS,
    EOS,
    STDIO_DRIVER,
    Task,
    TaskFormatError,
    call_to_assert,
    call_to_stdio,
    format_example,
    load_jsonl,
    save_jsonl,
)
from rlfb_jax.executor.jobs import Job


def _task(**overrides) -> Task:
    base = dict(
        task_id="toy/1",
        prompt='"""Add one to each element.\n>>> f([1])\n[2]\n"""\ndef f(xs):\n',
        entry_point="f",
        reference="    return [x + 1 for x in xs]\n",
        tests=("assert f([2, 3]) == [3, 4]", "assert f([]) == []"),
        stdio_tests=(("[2, 3]\n", "[3, 4]\n"), ("[]\n", "[]\n")),
        call_tests=((([2, 3],), [3, 4]), (([],), [])),
        examples=("assert f([1]) == [2]",),
        example_calls=((([1],), [2]),),
        difficulty=1,
        family="synthetic/list->list",
        split="train",
        metadata={"program": "add(1)"},
    )
    base.update(overrides)
    return Task(**base)


def test_jobs_of_each_kind():
    task = _task()
    completion = "    return [x + 1 for x in xs]\n"
    job = task.to_job(completion)
    assert isinstance(job, Job) and job.kind == "assert"
    assert job.program == task.prompt + completion
    assert job.tests == task.tests and job.entry_point == "f" and job.job_id == "toy/1"

    call = task.to_job(completion, "call", job_id="x", timeout=3.0)
    assert call.kind == "call" and call.tests == task.call_tests
    assert call.job_id == "x" and call.timeout == 3.0

    stdio = task.to_job(completion, "stdio")
    assert stdio.kind == "stdio" and stdio.tests == task.stdio_tests
    assert stdio.program.startswith(task.prompt + completion)
    assert stdio.program.endswith(STDIO_DRIVER.format(entry_point="f"))

    visible = task.to_job(completion, visible=True)
    assert visible.tests == task.examples
    assert task.to_job(completion, "call", visible=True).tests == task.example_calls

    results = run_jobs([job, call, stdio, visible])
    assert all(ok for ok, _ in results), results
    bad = run_jobs([task.to_job("    return xs\n", kind) for kind in ("assert", "call", "stdio")])
    assert not any(ok for ok, _ in bad)


def test_call_jobs_are_type_strict():
    task = _task(call_tests=((([2],), (3,)),))  # expects a tuple; the reference returns a list
    assert run_jobs([task.reference_job("call")]) == [
        (False, "AssertionError: f([2],) = [3], expected (3,)")]


def test_job_errors_name_the_problem():
    bench = _task(stdio_tests=(), call_tests=(), example_calls=())
    with pytest.raises(ValueError, match="no stdio tests"):
        bench.to_job("", "stdio")
    with pytest.raises(ValueError, match="no hidden call tests"):
        bench.to_job("", "call")
    with pytest.raises(ValueError, match="no visible call tests"):
        bench.to_job("", "call", visible=True)
    with pytest.raises(ValueError, match="unknown job kind 'shell'"):
        bench.to_job("", "shell")
    with pytest.raises(ValueError, match="visible examples exist in assert and call form only"):
        _task().to_job("", "stdio", visible=True)
    with pytest.raises(ValueError, match="no visible assert tests"):
        _task(examples=()).to_job("", visible=True)


def test_test_form_helpers():
    assert call_to_assert("f", ("ab", 2), [1]) == "assert f('ab', 2) == [1]"
    assert call_to_stdio(("a\nb", [1, 2]), True) == ("'a\\nb'\n[1, 2]\n", "True\n")


def test_format_example():
    task = _task()
    prompt, completion = format_example(task)
    assert prompt == BOS + task.prompt
    assert completion == task.reference + EOS


def test_jsonl_round_trip_keeps_types(tmp_path):
    tasks = [
        _task(),
        _task(task_id="toy/2", call_tests=((((1, 2), {3}), (1, "x")),), difficulty=None,
              metadata={}, tests=("assert True",), setup="import math"),
    ]
    path = tmp_path / "tasks.jsonl"
    assert save_jsonl(tasks, path) == 2
    loaded = load_jsonl(path)
    assert loaded == tasks
    args, expected = loaded[1].call_tests[0]
    assert type(args[0]) is tuple and type(args[1]) is set and type(expected) is tuple
    assert {t: 1 for t in loaded}  # hashable


def test_jsonl_unicode(tmp_path):
    task = _task(prompt='"""Ünïcode ✓ \t tab\n"""\ndef f(xs):\n')
    path = tmp_path / "u.jsonl"
    save_jsonl([task], path)
    assert load_jsonl(path) == [task]


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_malformed_line_names_file_and_line(tmp_path):
    good = json.dumps(_task().to_dict())
    path = tmp_path / "bad.jsonl"
    _write(path, [good, "", "{not json"])
    with pytest.raises(TaskFormatError, match=r"bad\.jsonl:3: malformed JSON"):
        load_jsonl(path)


def test_missing_and_bad_fields_are_named(tmp_path):
    record = _task().to_dict()
    del record["entry_point"]
    path = tmp_path / "missing.jsonl"
    _write(path, [json.dumps(_task().to_dict()), json.dumps(record)])
    with pytest.raises(TaskFormatError, match=r"missing\.jsonl:2: missing field 'entry_point'"):
        load_jsonl(path)

    bad = _task().to_dict() | {"tests": "assert True"}
    with pytest.raises(TaskFormatError, match="bad value for field 'tests'"):
        Task.from_dict(bad)
    bad = _task().to_dict() | {"call_tests": [{"args": "[1]", "expected": "1"}]}
    with pytest.raises(TaskFormatError, match="field 'call_tests'.*tuple literal"):
        Task.from_dict(bad)
    bad = _task().to_dict() | {"colour": "red"}
    with pytest.raises(TaskFormatError, match="unknown field"):
        Task.from_dict(bad)
    with pytest.raises(TaskFormatError, match="expected a JSON object"):
        Task.from_dict([1, 2])


def test_optional_fields_default(tmp_path):
    minimal = {"task_id": "m/1", "prompt": "", "entry_point": "g", "reference": "x = 1\n",
               "tests": ["assert x == 1"]}
    task = Task.from_dict(minimal)
    assert task.stdio_tests == () and task.metadata == {} and task.difficulty is None
    assert dataclasses.replace(task, split="test").split == "test"


def test_probe_job_prints_execution_results():
    task = _task(examples=("assert f([1]) == [2]", "assert f([]) == []", "x = 1"))
    job = task.probe_job(task.reference)
    assert job.kind == "stdio" and job.tests == (("", "[2]\n[]\n"),)
    assert run_script(job.program, "") == "[2]\n[]\n"
    wrong = task.probe_job("    return xs[0]\n")
    assert run_script(wrong.program, "") == "1\n!IndexError\n"
    assert run_jobs([job, wrong]) == [(True, ""), (False, run_jobs([wrong])[0][1])]
    with pytest.raises(ValueError, match="no visible examples"):
        _task(examples=()).probe_job("")
    # Equal values print as the expected text (2.0 == 2); non-literal expectations work.
    loose = _task(examples=("assert f([1.0]) == [2]", "assert set(f([1, 1])) == set([2])"))
    assert run_script(loose.probe_job(loose.reference).program, "") == "[2]\nset([2])\n"
    assert run_jobs([loose.probe_job(loose.reference)]) == [(True, "")]


def test_probe_job_of_examples_shown_without_outputs():
    """A bare call (the prompt shows the input only) prints what came back, expects
    UNKNOWN_OUTPUT and so never passes; errors print as !ErrorType; asserts still compare."""
    from rlfb_jax.data.tasks import UNKNOWN_OUTPUT

    task = _task(examples=("f([1])", "f(None)", "assert f([]) == []"))
    job = task.probe_job(task.reference)
    assert job.tests == (("", f"{UNKNOWN_OUTPUT}\n{UNKNOWN_OUTPUT}\n[]\n"),)
    assert run_script(job.program, "") == "[2]\n!TypeError\n[]\n"
    assert run_jobs([job])[0][0] is False
    # The printed value is the program's, not the expected one (no equality shortcut).
    floaty = task.probe_job("    return [x + 1.0 for x in xs]\n")
    assert run_script(floaty.program, "") == "[2.0]\n!TypeError\n[]\n"


def test_probe_jobs_of_generated_and_benchmark_tasks(splits):
    from rlfb_jax.data.benchmarks import load_humaneval

    tasks = splits["test"][:20] + [t for t in load_humaneval() if t.examples][:20]
    tasks = [t for t in tasks if t.task_id != "HumanEval/47"]
    results = run_jobs([t.probe_job(t.reference) for t in tasks])
    assert all(ok for ok, _ in results), results


def test_test_setup_runs_after_the_program():
    task = _task(prompt="class Box:\n    def __init__(self, v):\n        self.v = v\n\ndef f(b):\n",
                 reference="    return b.v + 1\n", test_setup="box = Box(41)",
                 tests=("assert f(box) == 42",), examples=("assert f(box) == 42",),
                 stdio_tests=(), call_tests=(), example_calls=())
    job = task.reference_job()
    assert job.test_setup == "box = Box(41)" and job.setup == ""
    assert run_jobs([job]) == [(True, "")]
    probe = task.probe_job(task.reference)
    assert run_script(probe.program, "") == "42\n"
    assert Task.from_dict(task.to_dict()).test_setup == task.test_setup
