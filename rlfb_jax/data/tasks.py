"""The task schema shared by every part of rlfb_jax, and its JSON-lines storage.

A `Task` is one programming problem: the text the model is conditioned on (``prompt``), a
reference completion, hidden tests in the executor's job forms (see
`rlfb_jax.executor.jobs`), and the visible examples shown in the prompt.

The one invariant every task keeps: ``task.prompt + completion`` is the whole program that
is executed. For the synthetic tasks and HumanEval the prompt ends with the function
signature (plus docstring for HumanEval) and the completion is the function body; for MBPP
the prompt is a Python docstring holding the description and the example asserts, and the
completion is the whole function. ``task.prompt + task.reference`` passes every test.

Test forms (all hidden from the model; LEVER-style reranking may only run ``examples``,
e.g. through `Task.probe_job`, which prints a program's results on them):

* ``tests``: assert snippets, each run after ``setup``, the program and ``test_setup``
  (executor kind ``"assert"``). Every task has them.
* ``stdio_tests``: ``(stdin, expected_stdout)`` pairs for kind ``"stdio"``; the program
  becomes a script by appending `STDIO_DRIVER`, which reads one Python literal per stdin
  line (one per positional argument), calls ``entry_point`` and prints ``repr`` of the
  result. Synthetic tasks only.
* ``call_tests``: ``(args_tuple, expected_value)`` pairs for kind ``"call"`` (strict value
  and type equality). Synthetic tasks only.

JSON-lines format (`save_jsonl` / `load_jsonl`): one JSON object per line with the field
names of `Task`; ``call_tests`` / ``example_calls`` entries are stored as
``{"args": repr(args), "expected": repr(expected)}`` and read back with
`ast.literal_eval`, so tuples, sets and exact types survive the round trip.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rlfb_jax.executor.jobs import Job

# Special tokens of rlfb_jax tokenizers (see rlfb_jax.data.tokenizer); defined here so that
# formatting code does not need the tokenizer module.
PAD = "<pad>"
BOS = "<bos>"
EOS = "<eos>"

# Appended to ``prompt + completion`` to turn a function into a stdin/stdout script.
# Kept to trailing lines so that error line numbers inside the program are unchanged.
STDIO_DRIVER = """

if __name__ == "__main__":
    import ast as _ast
    import sys as _sys
    _args = [_ast.literal_eval(_line) for _line in _sys.stdin.read().splitlines() if _line]
    print(repr({entry_point}(*_args)))
"""

# Appended by `Task.probe_job`. A result equal (==) to the example's expected value prints
# as the expected text, so the job passes iff all examples pass; any other value prints as
# its repr, and a raised error as !ErrorType.
PROBE_HELPER = """


def _rlfb_probe(call, expected, text):
    try:
        value = call()
    except BaseException as e:  # the error type is the execution result
        return "!" + type(e).__name__
    if expected is None:  # an example shown without its output
        return repr(value)
    try:
        if value == expected():
            return text
    except BaseException:
        pass
    return repr(value)


"""

CallTest = tuple[tuple[Any, ...], Any]

# The expected probe line of a visible example shown without its output (no repr equals it).
UNKNOWN_OUTPUT = "?"


@dataclasses.dataclass(frozen=True)
class Task:
    """One programming problem. See the module docstring for the test forms.

    Fields:
      task_id: unique id, e.g. ``"synthetic/train/12"``, ``"HumanEval/0"``, ``"mbpp/11"``.
      prompt: the text the model is conditioned on; ``prompt + completion`` is the program.
      entry_point: name of the function under test.
      reference: a completion that passes all tests (``prompt + reference`` is a solution).
      tests: hidden tests, assert form (executor kind ``"assert"``).
      setup: code run before the program in assert jobs (imports, helpers); often empty.
      test_setup: trusted fixtures run after the program, before the tests (MBPP's
        ``test_setup_code``, which builds objects of the program's own classes).
      stdio_tests: hidden tests, ``(stdin, expected_stdout)`` pairs (kind ``"stdio"``).
      call_tests: hidden tests, ``(args_tuple, expected)`` pairs (kind ``"call"``).
      examples: visible examples shown in the prompt, assert form; or bare calls
        (``f([1, 2])``) where the prompt shows the inputs only.
      example_calls: visible examples with outputs, call form (synthetic tasks only).
      difficulty: composition depth for synthetic tasks (1-4), None for benchmarks.
      family: ``"synthetic/<input type>-><output type>"``, ``"humaneval"`` or ``"mbpp"``.
      split: ``"train"``, ``"validation"``, ``"test"`` or ``"prompt"`` (MBPP few-shot).
      metadata: anything else (JSON-serializable), e.g. the DSL program of a synthetic task.
    """

    task_id: str
    prompt: str
    entry_point: str
    reference: str
    tests: tuple[str, ...]
    setup: str = ""
    test_setup: str = ""
    stdio_tests: tuple[tuple[str, str], ...] = ()
    call_tests: tuple[CallTest, ...] = ()
    examples: tuple[str, ...] = ()
    example_calls: tuple[CallTest, ...] = ()
    difficulty: int | None = None
    family: str = ""
    split: str = ""
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __hash__(self) -> int:  # fields hold lists and dicts; the id and prompt identify a task
        return hash((self.task_id, self.prompt))

    # ------------------------------------------------------------------ programs and jobs

    def program(self, completion: str) -> str:
        """The program that is executed for ``completion``: ``prompt + completion``."""
        return self.prompt + completion

    def to_job(
        self,
        completion: str,
        kind: str = "assert",
        *,
        visible: bool = False,
        job_id: str | None = None,
        timeout_per_test: float | None = None,
        timeout: float | None = None,
    ) -> Job:
        """An executor `Job` running ``prompt + completion`` against this task's tests.

        Args:
          completion: the model's completion (without the end-of-sequence token).
          kind: ``"assert"``, ``"stdio"`` or ``"call"``; the task must have tests of that form.
          visible: run the visible ``examples`` / ``example_calls`` (what a reranker may
            execute at test time) instead of the hidden tests. Not available for stdio.
          job_id: defaults to the task id.
        """
        program = self.program(completion)
        job_id = self.task_id if job_id is None else job_id
        common = dict(
            entry_point=self.entry_point,
            timeout_per_test=timeout_per_test,
            timeout=timeout,
            job_id=job_id,
        )
        if kind == "assert":
            tests = self.examples if visible else self.tests
            if not tests:
                raise ValueError(f"task {self.task_id} has no {_which(visible)} assert tests")
            return Job(program=program, tests=tuple(tests), kind="assert", setup=self.setup,
                       test_setup=self.test_setup, **common)
        if kind == "call":
            tests = self.example_calls if visible else self.call_tests
            if not tests:
                raise ValueError(
                    f"task {self.task_id} has no {_which(visible)} call tests "
                    "(only synthetic tasks have call-form tests)"
                )
            return Job(program=program, tests=tuple(tests), kind="call", setup=self.setup,
                       test_setup=self.test_setup, **common)
        if kind == "stdio":
            if visible:
                raise ValueError("visible examples exist in assert and call form only, not stdio")
            if not self.stdio_tests:
                raise ValueError(
                    f"task {self.task_id} has no stdio tests "
                    "(only synthetic tasks have stdin/stdout tests)"
                )
            script = self.setup + ("\n" if self.setup else "") + program + self._test_setup_lines()
            script += STDIO_DRIVER.format(entry_point=self.entry_point)
            return Job(program=script, tests=tuple(self.stdio_tests), kind="stdio", **common)
        raise ValueError(f"unknown job kind {kind!r}; expected 'assert', 'stdio' or 'call'")

    def probe_job(
        self,
        completion: str,
        *,
        job_id: str | None = None,
        timeout_per_test: float | None = None,
        timeout: float | None = None,
    ) -> Job:
        """A stdio job that prints what ``prompt + completion`` returns on the visible examples.

        For execution-result features and grouping (LEVER): the script prints one line per
        visible example: the expected text if the returned value equals (==) the expected
        one, else ``repr`` of the value, or ``!ErrorType`` if the call raised. So
        ``Outcome.stdout`` is the program's execution result, and the single stdio test
        (expecting the expected texts) passes iff every visible example passes. Only the
        examples of the form ``assert CALL == EXPECTED`` or ``CALL`` are probed. All
        examples run in one test, so give slow programs a ``timeout_per_test`` that covers
        them all.

        Examples that are bare calls (``f([1, 2])``: the prompt shows the input only) print
        the value's ``repr`` (or ``!ErrorType``) and expect `UNKNOWN_OUTPUT`, so such a probe
        never passes and its stdout is purely what the program did.
        """
        body, expected = [], []
        for pre, call, rhs, text in self.probed_examples():
            body += pre
            rhs = "None" if rhs is None else f"lambda: {rhs}"
            body.append(f"print(_rlfb_probe(lambda: {call}, {rhs}, {text!r}))")
            expected.append(UNKNOWN_OUTPUT if text is None else text)
        if not body:
            raise ValueError(f"task {self.task_id} has no visible examples of the form "
                             "'assert CALL == EXPECTED' or 'CALL' to probe")
        script = (self.setup + ("\n" if self.setup else "") + self.program(completion)
                  + self._test_setup_lines() + PROBE_HELPER + "\n".join(body) + "\n")
        stdout = "".join(line + "\n" for line in expected)
        return Job(program=script, tests=(("", stdout),), kind="stdio",
                   entry_point=self.entry_point, timeout_per_test=timeout_per_test,
                   timeout=timeout, job_id=self.task_id if job_id is None else job_id)

    def probed_examples(self) -> list[tuple[list[str], str, str | None, str | None]]:
        """The visible examples `probe_job` runs, in its order (its stdout has one line per
        entry): ``(statements before the call, call source, expected-value source or None,
        expected text or None)``; None for a bare call (the prompt shows its input only)."""
        out = []
        for example in self.examples:
            try:
                statements = ast.parse(example).body
            except SyntaxError:
                continue
            if not statements:
                continue
            *pre, last = statements
            pre = [ast.unparse(s) for s in pre]
            if isinstance(last, ast.Expr) and isinstance(last.value, ast.Call):
                out.append((pre, ast.unparse(last.value), None, None))
                continue
            test = getattr(last, "test", None)
            if not (isinstance(last, ast.Assert) and isinstance(test, ast.Compare)
                    and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
                continue
            rhs = test.comparators[0]
            try:
                text = repr(ast.literal_eval(rhs))
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                text = ast.unparse(rhs)
            out.append((pre, ast.unparse(test.left), ast.unparse(rhs), text))
        return out

    def _test_setup_lines(self) -> str:
        # Appended after the program in scripts, so program line numbers stay unchanged.
        return "\n\n" + self.test_setup + "\n" if self.test_setup else ""

    def reference_job(self, kind: str = "assert") -> Job:
        """The job of the reference solution (it must pass)."""
        return self.to_job(self.reference, kind)

    # ------------------------------------------------------------------ serialization

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (see the module docstring for the call-test encoding)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _CALL_FIELDS:
                value = [{"args": repr(tuple(a)), "expected": repr(e)} for a, e in value]
            elif f.name == "stdio_tests":
                value = [[i, o] for i, o in value]
            elif f.name in ("tests", "examples"):
                value = list(value)
            elif f.name == "metadata":
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Task:
        """Inverse of `to_dict`; raises `TaskFormatError` naming a missing or bad field."""
        if not isinstance(d, Mapping):
            raise TaskFormatError(f"expected a JSON object, got {type(d).__name__}")
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                if f.name in _REQUIRED:
                    raise TaskFormatError(f"missing field {f.name!r}")
                continue
            value = d[f.name]
            try:
                kwargs[f.name] = _decode_field(f.name, value)
            except (TypeError, ValueError, SyntaxError, KeyError) as e:
                raise TaskFormatError(f"bad value for field {f.name!r}: {e}") from e
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TaskFormatError(f"unknown field(s) {sorted(unknown)}")
        return cls(**kwargs)


_REQUIRED = ("task_id", "prompt", "entry_point", "reference", "tests")
_CALL_FIELDS = ("call_tests", "example_calls")
_STR_FIELDS = ("task_id", "prompt", "entry_point", "reference", "setup", "test_setup", "family",
               "split")


def _which(visible: bool) -> str:
    return "visible" if visible else "hidden"


def _decode_field(name: str, value: Any) -> Any:
    if name in _STR_FIELDS:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {type(value).__name__}")
        return value
    if name in ("tests", "examples"):
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise TypeError("expected a list of strings")
        return tuple(value)
    if name == "stdio_tests":
        pairs = []
        for pair in value:
            if not (isinstance(pair, list | tuple) and len(pair) == 2
                    and all(isinstance(s, str) for s in pair)):
                raise TypeError("expected a list of [stdin, stdout] string pairs")
            pairs.append((pair[0], pair[1]))
        return tuple(pairs)
    if name in _CALL_FIELDS:
        calls = []
        for entry in value:
            args = ast.literal_eval(entry["args"])
            if not isinstance(args, tuple):
                raise TypeError(f"args must be a tuple literal, got {entry['args']!r}")
            calls.append((args, ast.literal_eval(entry["expected"])))
        return tuple(calls)
    if name == "difficulty":
        if value is not None and not isinstance(value, int):
            raise TypeError(f"expected an int or null, got {type(value).__name__}")
        return value
    if name == "metadata":
        if not isinstance(value, dict):
            raise TypeError("expected a JSON object")
        return value
    raise KeyError(name)


class TaskFormatError(ValueError):
    """A task record that cannot be read; the message names the field (and file:line)."""


def save_jsonl(tasks: Iterable[Task], path: str | os.PathLike) -> int:
    """Writes tasks as JSON lines (UTF-8, one task per line); returns the number written."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for task in tasks:
            f.write(json.dumps(task.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n


def load_jsonl(path: str | os.PathLike) -> list[Task]:
    """Reads tasks written by `save_jsonl`. Blank lines are skipped.

    Raises:
      FileNotFoundError: no such file.
      TaskFormatError: a line is not JSON or not a task; the message is ``"FILE:LINE: why"``.
    """
    from rlfb_jax.data.jsonl import JSONLError, iter_jsonl

    tasks = []
    try:
        for lineno, record in iter_jsonl(path):
            try:
                tasks.append(Task.from_dict(record))
            except TaskFormatError as e:
                raise TaskFormatError(f"{path}:{lineno}: {e}") from e
    except JSONLError as e:
        raise TaskFormatError(str(e)) from None
    return tasks


def format_example(task: Task, bos: str = BOS, eos: str = EOS) -> tuple[str, str]:
    """The SFT pair of a task: ``(bos + prompt, reference + eos)``.

    Tokenize the two texts separately (``add_special_tokens=False``; the special-token
    strings are matched by the tokenizer) and concatenate the ids, so that the prompt ids
    seen in training are exactly those the sampler is given; sampling stops at ``eos``.
    """
    return bos + task.prompt, task.reference + eos


def call_to_assert(entry_point: str, args: Sequence[Any], expected: Any) -> str:
    """``assert f(a, b) == expected`` for one call-form test (values rendered with repr)."""
    call = f"{entry_point}({', '.join(repr(a) for a in args)})"
    return f"assert {call} == {expected!r}"


def call_to_stdio(args: Sequence[Any], expected: Any) -> tuple[str, str]:
    """The stdio form of one call-form test: one literal per argument line; repr output."""
    return "".join(repr(a) + "\n" for a in args), repr(expected) + "\n"
