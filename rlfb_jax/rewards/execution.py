"""Rewards from execution outcomes: CodeRL's levels, RLTF's adaptive and line-level feedback,
and the compile-only reward (host only: numpy and the standard library).

Registered sequence rewards: "coderl", "rltf_adaptive", "compile". Registered token reward:
"rltf_error_line". See `rlfb_jax.rewards.registry` for the signatures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from rlfb_jax.rewards.registry import Span, register_reward, register_token_reward

# CodeRL (Le et al. 2022, eq. 4): -1 compile error, -0.6 runtime error, -0.3 failed test,
# +1 pass. Timeouts and resource limits are runtime errors of the program. A sandbox error is
# the harness's fault, not the program's: it gets 0 and is counted by `make_reward` so the
# algorithm can drop those samples (see `sandbox_errors`).
CODERL_LEVELS = {
    "passed": 1.0,
    "wrong_answer": -0.3,
    "syntax_error": -1.0,
    "runtime_error": -0.6,
    "timeout": -0.6,
    "memory_exceeded": -0.6,
    "output_exceeded": -0.6,
    "sandbox_error": 0.0,
}

_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the line ends Python's tokenizer counts


def _levels(overrides: dict[str, float]) -> dict[str, float]:
    unknown = sorted(set(overrides) - set(CODERL_LEVELS))
    if unknown:
        raise ValueError(f"unknown outcome status(es) {unknown}; known: {sorted(CODERL_LEVELS)}")
    return {**CODERL_LEVELS, **{k: float(v) for k, v in overrides.items()}}


def _level(levels: dict[str, float], status: str) -> float:
    try:
        return levels[status]
    except KeyError:
        raise ValueError(f"outcome status {status!r} has no reward level; "
                         f"known: {sorted(levels)}") from None


@register_reward("coderl")
def coderl_reward(task, completion: str, outcome, **levels: float) -> float:
    """CodeRL's execution-outcome levels (Le et al. 2022, eq. 4), one per ``outcome.status``.

    Defaults in `CODERL_LEVELS`; any status's level can be overridden by keyword, e.g.
    ``coderl_reward(task, c, o, wrong_answer=-0.5)``.
    """
    del task, completion
    return _level(_levels(levels), outcome.status)


@register_reward("rltf_adaptive")
def rltf_adaptive_reward(task, completion: str, outcome, base: float = -0.3, scale: float = 1.3,
                         **levels: float) -> float:
    """RLTF's adaptive feedback (Liu et al. 2023, sec. 3.3): a program that runs but fails some
    tests gets ``base + scale * pass_ratio`` (-0.3 + 1.3 x the fraction of tests passed),
    so partial solutions earn partial credit; every other status gets its CodeRL level.
    """
    del task, completion
    if outcome.status == "wrong_answer":
        return base + scale * float(outcome.pass_ratio)
    return _level(_levels(levels), outcome.status)


@register_reward("compile")
def compile_reward(task, completion: str, outcome=None, success: float = 1.0,
                   failure: float = -1.0) -> float:
    """+1 if ``task.prompt + completion`` compiles to Python bytecode, else -1; the outcome is
    ignored. This rewards syntax only, for the reward-hacking ablation.
    """
    del outcome
    return success if compiles(task.prompt + completion) else failure


def compiles(program: str) -> bool:
    """Whether ``program`` compiles (parsing only; nothing is executed)."""
    try:
        compile(program, "<candidate>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False  # ValueError: null bytes; Recursion/MemoryError: absurdly deep nesting
    return True


def sandbox_errors(outcomes: Sequence) -> np.ndarray:
    """[B] bool: which outcomes are sandbox errors (no verdict on the program)."""
    return np.array([getattr(o, "status", None) == "sandbox_error" for o in outcomes], bool)


# ---------------------------------------------------------------------------- error lines


def error_line_span(task, completion: str, outcome, line_offset: int = 0) -> Span | None:
    """The characters ``(start, end)`` of ``completion`` on the line where the error was raised.

    ``outcome.error_line`` is 1-based in the executed program ``task.prompt + completion``,
    preceded by ``line_offset`` extra lines when the job prepends some (a stdio job of a task
    with ``setup`` runs ``setup + "\\n" + program``: pass ``(task.setup + "\\n").count("\\n")``).
    The span excludes the line break. Returns None when there is no error line, when it
    falls in the prompt or past the end, or when the line's completion part is empty.
    A line that starts in the prompt and ends in the completion gives its completion part.
    """
    line = getattr(outcome, "error_line", None)
    if line is None:
        return None
    line -= line_offset
    program = task.prompt + completion
    starts = [0] + [m.end() for m in _LINE_BREAK.finditer(program)]
    if not 1 <= line <= len(starts):
        return None
    start = starts[line - 1]
    brk = _LINE_BREAK.search(program, start)
    end = brk.start() if brk else len(program)
    offset = len(task.prompt)
    start, end = max(start - offset, 0), end - offset
    return (start, end) if end > start else None


def _at_program_end(task, completion: str, outcome, line_offset: int) -> bool:
    """Whether ``outcome.error_line`` is the executed program's last line or past it (a
    syntax error found at the end of the input: an unclosed bracket or block, a program
    cut off mid-statement)."""
    if outcome.error_line is None:
        return False
    program = task.prompt + completion
    lines = len(_LINE_BREAK.split(program.rstrip("\r\n")))
    return outcome.error_line - line_offset >= lines


@register_token_reward("rltf_error_line")
def rltf_error_line_penalty(task, completion: str, outcome, penalty: float = -0.3,
                            statuses: Iterable[str] = ("syntax_error", "runtime_error"),
                            ignore_error_types: Iterable[str] = (),
                            whole_program: Iterable[str] = ("timeout", "RecursionError"),
                            whole_at_end: bool = True,
                            line_offset: int = 0) -> list[tuple[int, int, float]]:
    """RLTF's fine-grained feedback (Liu et al. 2023, sec. 3.3): ``penalty`` on the tokens of
    the line that raised the error, when the status is in ``statuses`` and the error type is
    not in ``ignore_error_types`` (RLTF leaves out errors whose line is not to blame).

    Errors no single line is to blame for put ``penalty`` on every completion token, as
    RLTF's released feedback code does: a status or error type in ``whole_program`` (a
    timeout, unbounded recursion), and, with ``whole_at_end``, a syntax error raised on the
    program's last line or past it (the input ended inside a statement or block).
    """
    whole = tuple(whole_program)
    everything = [(0, len(completion), float(penalty))] if completion else []
    if outcome.status in whole or outcome.error_type in whole:
        return everything
    if outcome.status not in tuple(statuses) or outcome.error_type in tuple(ignore_error_types):
        return []
    if (whole_at_end and outcome.status == "syntax_error"
            and _at_program_end(task, completion, outcome, line_offset)):
        return everything
    span = error_line_span(task, completion, outcome, line_offset)
    return [] if span is None else [(span[0], span[1], float(penalty))]


def span_token_rewards(spans: Iterable[tuple[int, int, float]],
                       token_offsets: Sequence[tuple[int, int]], length: int | None = None
                       ) -> np.ndarray:
    """Token rewards [T] float32 from character spans of the completion.

    ``token_offsets[i] = (start, end)`` are the characters of completion token i (a Hugging
    Face tokenizer's ``offset_mapping``); a token gets every span's value whose characters it
    overlaps. Zero-width tokens (special tokens) get nothing. ``length`` pads to T >= the
    number of tokens.
    """
    offsets = np.asarray(token_offsets, dtype=np.int64).reshape(-1, 2)
    out = np.zeros(len(offsets) if length is None else length, np.float32)
    tok_start, tok_end = offsets[:, 0], offsets[:, 1]
    for start, end, value in spans:
        overlap = (tok_start < end) & (tok_end > start) & (tok_end > tok_start)
        out[: len(offsets)][overlap] += value
    return out
