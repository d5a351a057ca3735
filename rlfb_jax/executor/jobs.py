"""What the executor runs and what it returns: `Job` in, `Outcome` out.

This module is the contract between the executor pool, the data loaders (which turn tasks
into jobs) and the rewards (which turn outcomes into numbers). It is host-only and never
imports jax.

Three job forms (``Job.kind``):

* ``"assert"``: HumanEval / MBPP style. ``program`` defines the function(s); ``setup`` runs
  first (imports, helper definitions); ``test_setup`` runs after the program (MBPP's
  ``test_setup_code``: fixtures built from the program's own classes); each entry of
  ``tests`` is one Python test snippet (usually one ``assert`` statement, or a HumanEval
  ``check`` body followed by ``check(entry_point)``). A test passes when its snippet runs
  without raising. The snippets run in the trusted worker, not next to the program: names
  they take from the program are proxies whose calls return strictly decoded values (see
  ``runner.py``), so an object with a rigged ``__eq__`` never reaches a comparison.
* ``"stdio"``: APPS / CodeContests style. ``program`` is a script; each entry of ``tests``
  is a ``(stdin_text, expected_stdout_text)`` pair, compared whitespace-tolerantly.
* ``"call"``: strict function-call tests. ``entry_point`` names the function; each entry of
  ``tests`` is ``(args, expected)`` where ``args`` is a tuple of positional arguments and
  ``expected`` a plain Python value (None, bool, int, float, str, list, tuple, dict, set);
  the result must equal ``expected`` by value *and* by type, recursively.

Statuses are described in ``runner.py``; "passed" is the only success, and a job with no
tests passes when its program (and setups) run without error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

JobKind = Literal["assert", "stdio", "call"]

# Every status an Outcome can carry. "passed" is the only success.
STATUSES = (
    "passed",
    "wrong_answer",
    "syntax_error",
    "runtime_error",
    "timeout",
    "memory_exceeded",
    "output_exceeded",
    "sandbox_error",
)


@dataclasses.dataclass(frozen=True)
class Job:
    """One program and its tests. See the module docstring for the three forms."""

    program: str
    tests: Sequence[Any] = ()
    kind: JobKind = "assert"
    setup: str = ""
    entry_point: str | None = None
    # Trusted fixtures run in the program's namespace *after* the program and before the
    # tests (MBPP's test_setup_code builds trees from the program's own Node class); names
    # it defines are passed to the program by reference.
    test_setup: str = ""
    # Per-test and whole-job wall-clock limits in seconds; None means the pool's default.
    timeout_per_test: float | None = None
    timeout: float | None = None
    job_id: str | None = None


@dataclasses.dataclass(frozen=True)
class TestResult:
    """The verdict of one test of a job."""

    passed: bool
    status: str  # one of STATUSES
    error_type: str | None = None
    error_message: str | None = None
    duration: float = 0.0
    error_line: int | None = None  # 1-based line in Job.program, when the error is there


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The verdict of one job.

    ``status`` summarizes the job: "passed" only if every test passed. ``error_line`` is the
    1-based line in ``Job.program`` where the first error was raised (or the syntax error
    sits), for line-level feedback; None when the error is not inside the program.
    """

    status: str
    tests: tuple[TestResult, ...] = ()
    error_type: str | None = None
    error_message: str | None = None
    error_line: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    job_id: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def pass_ratio(self) -> float:
        """Fraction of tests passed (0.0 when there are no per-test results)."""
        if not self.tests:
            return 1.0 if self.passed else 0.0
        return sum(t.passed for t in self.tests) / len(self.tests)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (tests as a list of dicts)."""
        return dataclasses.asdict(self)
