"""Execution-outcome rewards, RLTF's error-line spans and their token mapping (no executor)."""

import subprocess
import sys

import numpy as np
import pytest

from rlfb_jax.data.tasks import Task
from rlfb_jax.executor.jobs import STATUSES, Outcome
from rlfb_jax.executor.jobs import TestResult as Result
from rlfb_jax.rewards import (
    CODERL_LEVELS,
    error_line_span,
    get_reward,
    get_token_reward,
    sandbox_errors,
    span_token_rewards,
)

PROMPT = 'def f(x):\n    """Doc."""\n'  # program lines 1-2
COMPLETION = "    y = x + 1\n    return y[0]\n"  # program lines 3-4


def task(prompt=PROMPT, reference="    return x\n"):
    return Task(task_id="t/0", prompt=prompt, entry_point="f", reference=reference,
                tests=("assert f(1) == 1",))


def results(*passed):
    return tuple(Result(p, "passed" if p else "wrong_answer") for p in passed)


def test_coderl_levels_for_every_status():
    expected = {"passed": 1.0, "wrong_answer": -0.3, "syntax_error": -1.0,
                "runtime_error": -0.6, "timeout": -0.6, "memory_exceeded": -0.6,
                "output_exceeded": -0.6, "sandbox_error": 0.0}
    assert set(expected) == set(STATUSES) == set(CODERL_LEVELS)
    fn = get_reward("coderl")
    for status, level in expected.items():
        assert fn(task(), "", Outcome(status=status)) == level, status
    assert fn(task(), "", Outcome(status="wrong_answer"), wrong_answer=-0.5) == -0.5
    with pytest.raises(ValueError, match="unknown outcome status"):
        fn(task(), "", Outcome(status="passed"), compile_error=-1.0)
    with pytest.raises(ValueError, match="no reward level"):
        fn(task(), "", Outcome(status="crashed"))


def test_rltf_adaptive_credit():
    fn = get_reward("rltf_adaptive")
    half = Outcome(status="wrong_answer", tests=results(True, False, True, False))
    assert fn(task(), "", half) == pytest.approx(-0.3 + 1.3 * 0.5)
    most = Outcome(status="wrong_answer", tests=results(True, True, True, False))
    assert fn(task(), "", most) == pytest.approx(-0.3 + 1.3 * 0.75)
    assert fn(task(), "", Outcome(status="wrong_answer")) == pytest.approx(-0.3)  # no results
    assert fn(task(), "", Outcome(status="passed", tests=results(True))) == 1.0
    assert fn(task(), "", Outcome(status="syntax_error")) == -1.0
    assert fn(task(), "", Outcome(status="timeout"), timeout=-0.9) == -0.9


def test_compile_only_reward():
    fn = get_reward("compile")
    assert fn(task(), COMPLETION, None) == 1.0
    assert fn(task(), "    return (\n", None) == -1.0
    assert fn(task(), "    return 1\x00\n", None) == -1.0
    # It ignores the outcome entirely: a failing program that parses still gets +1.
    assert fn(task(), "    return 1 / 0\n", Outcome(status="runtime_error")) == 1.0


def test_error_line_span():
    def span(line, prompt=PROMPT, completion=COMPLETION, **kw):
        out = Outcome(status="runtime_error", error_line=line)
        return error_line_span(task(prompt), completion, out, **kw)

    start, end = span(4)
    assert COMPLETION[start:end] == "    return y[0]"
    assert (start, end) == (14, 29)
    assert span(3) == (0, 13)
    assert span(1) is None and span(2) is None  # in the prompt
    assert span(5) is None  # the empty line after the final newline
    assert span(9) is None and span(None) is None
    assert span(5, line_offset=1) == (14, 29)  # a script with one extra line before
    # A line that starts in the prompt and ends in the completion: its completion part.
    assert span(1, prompt="x = (1 +", completion=" 2)\n") == (0, 3)
    assert span(2, prompt="a = 1\r\n", completion="b = c\r\nd = 2\r\n") == (0, 5)


def test_rltf_error_line_penalty():
    fn = get_token_reward("rltf_error_line")
    err = Outcome(status="runtime_error", error_type="IndexError", error_line=4)
    assert fn(task(), COMPLETION, err) == [(14, 29, -0.3)]
    assert fn(task(), COMPLETION, err, penalty=-1.0) == [(14, 29, -1.0)]
    assert fn(task(), COMPLETION, err, ignore_error_types=("IndexError",)) == []
    wrong = Outcome(status="wrong_answer", error_type="AssertionError", error_line=4)
    assert fn(task(), COMPLETION, wrong) == []
    in_prompt = Outcome(status="runtime_error", error_type="TypeError", error_line=1)
    assert fn(task(), COMPLETION, in_prompt) == []


def _syntax_outcome(program):
    try:
        compile(program, "<program>", "exec")
    except SyntaxError as e:
        return Outcome(status="syntax_error", error_type="SyntaxError", error_line=e.lineno)
    raise AssertionError("the program compiles")


def test_rltf_penalizes_the_whole_program_when_no_line_is_to_blame():
    """RLTF's released feedback puts the penalty on every token for a timeout, a
    RecursionError and a syntax error at the program's end; other errors on their line."""
    fn = get_token_reward("rltf_error_line")
    whole = [(0, len(COMPLETION), -0.3)]
    assert fn(task(), COMPLETION, Outcome(status="timeout", error_type="Timeout")) == whole
    rec = Outcome(status="runtime_error", error_type="RecursionError", error_line=4)
    assert fn(task(), COMPLETION, rec) == whole
    assert fn(task(), COMPLETION, rec, whole_program=()) == [(14, 29, -0.3)]
    # cut off inside a bracket / a block: Python reports the last line or the one past it
    for cut in ("    y = (x +\n", "    y = (x +", "    if x:\n"):
        out = _syntax_outcome(PROMPT + cut)
        assert fn(task(), cut, out) == [(0, len(cut), -0.3)], (cut, out)
        assert fn(task(), cut, out, whole_at_end=False) in ([], [(0, len(cut.rstrip()), -0.3)])
    # a syntax error on an earlier line stays on its line
    bad = "    y = x +\n    return y\n"
    assert fn(task(), bad, _syntax_outcome(PROMPT + bad)) == [(0, 11, -0.3)]
    assert fn(task(), "", Outcome(status="timeout")) == []


def test_span_token_rewards():
    # Token character ranges of COMPLETION; the last one is a zero-width end-of-sequence token.
    offsets = [(0, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14), (14, 18), (18, 25),
               (25, 27), (27, 30), (30, 31), (31, 31)]
    out = span_token_rewards([(14, 29, -0.3)], offsets, length=14)
    expected = np.zeros(14, np.float32)
    expected[6:10] = -0.3  # (12, 14) ends where the span starts; (30, 31) starts after it
    np.testing.assert_allclose(out, expected)
    both = span_token_rewards([(14, 29, -0.3), (0, 5, 1.0)], offsets)
    assert both.shape == (12,)
    np.testing.assert_allclose(both[:2], [1.0, 1.0])
    np.testing.assert_allclose(both[6:10], -0.3)


def test_sandbox_errors_flagged():
    outcomes = [Outcome(status="sandbox_error"), Outcome(status="passed"), None]
    np.testing.assert_array_equal(sandbox_errors(outcomes), [True, False, False])


def test_rewards_never_import_jax():
    code = ("import sys, rlfb_jax.rewards; "
            "bad = [m for m in sys.modules if m == 'jax' or m.startswith('jax.')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
