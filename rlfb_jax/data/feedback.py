"""Execution feedback as text, and the repair prompt that conditions a model on it (host only).

Feedback comes from the *visible* examples only: `feedback_job` is the task's probe job
(`Task.probe_job`: the program is run on the examples shown in the prompt and prints what it
returned), and `render_feedback` turns its `Outcome` into one short line:

    f(40) returned 'aaaaaaaa', expected 'aaaa'
    f([]) raised IndexError
    SyntaxError at attempt line 2: invalid syntax
    timed out on the visible examples

Hidden tests never reach the feedback: nothing here reads ``task.tests``, ``call_tests`` or
``stdio_tests``, and the probe job does not contain them (tests/data/test_feedback.py checks
that no hidden input or expected value appears in any rendering).

The repair prompt (`repair_prompt`) keeps the invariant of every task: ``prompt +
completion`` is the program. The failed attempt and its feedback go in as comments before
the task's last top-level ``def`` (synthetic tasks, HumanEval) or after the prompt (MBPP,
whose completion is the whole function)::

    '''Divide the number by 10 rounding down, then ...'''
    # attempt:
    #     n = n // 5
    #     return 'a' * n
    # feedback: f(40) returned 'aaaaaaaa', expected 'aaaa'
    def f(n):

so one model does generation and repair, told apart by the ``# attempt:`` block, and a
repair's completion runs exactly like a fresh sample's.
"""

from __future__ import annotations

import ast
import dataclasses
import random
import re

ATTEMPT_HEADER = "# attempt:"
FEEDBACK_PREFIX = "# feedback: "
MAX_ATTEMPT_LINES = 16
MAX_VALUE_CHARS = 48
MAX_MESSAGE_CHARS = 60

_STATUS_TEXT = {
    "timeout": "timed out on the visible examples",
    "memory_exceeded": "ran out of memory on the visible examples",
    "output_exceeded": "printed too much output",
    "sandbox_error": "could not be run",
}


def feedback_job(task, completion: str, *, timeout: float | None = None, job_id=None):
    """The job whose outcome `render_feedback` reads: the program on the visible examples."""
    return task.probe_job(completion, timeout=timeout, job_id=job_id)


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _attempt_line(task, completion: str, script: str | None, error_line: int | None):
    """The 1-based line of the completion where the error sits, or None if it is not there."""
    if error_line is None or script is None:
        return None
    start = script.find(task.prompt + completion)
    if start < 0:
        return None
    first = script[:start].count("\n") + task.prompt.count("\n") + 1
    line = error_line - first + 1
    return line if 1 <= line <= completion.count("\n") + 1 else None


def render_feedback(task, completion: str, outcome, script: str | None = None) -> str:
    """One line of feedback on ``prompt + completion`` from the `Outcome` of its
    `feedback_job` (``script``: that job's program, to place a syntax error in the attempt).
    "" when every visible example passes."""
    status = outcome.status
    if status == "passed":
        return ""
    if status in _STATUS_TEXT:
        return _STATUS_TEXT[status]
    if status in ("syntax_error", "runtime_error"):  # raised outside the example calls
        kind = outcome.error_type or ("SyntaxError" if status == "syntax_error" else "Error")
        line = _attempt_line(task, completion, script, outcome.error_line)
        where = f" at attempt line {line}" if line else ""
        message = _clip(_WHERE.sub("", outcome.error_message or ""), MAX_MESSAGE_CHARS)
        return f"{kind}{where}" + (f": {message}" if message else "")
    printed = outcome.stdout.splitlines()
    probed = task.probed_examples()
    if len(printed) != len(probed):
        return (f"printed {len(printed)} lines of its own while running "
                f"{len(probed)} visible examples")
    for (_, call, _, expected), got in zip(probed, printed):
        if expected is not None and got == expected:
            continue
        if got.startswith("!"):
            return f"{_clip(call, MAX_VALUE_CHARS)} raised {got[1:]}"
        if expected is None:  # the example's output is not shown: only errors are news
            continue
        return (f"{_clip(call, MAX_VALUE_CHARS)} returned {_clip(got, MAX_VALUE_CHARS)}, "
                f"expected {_clip(expected, MAX_VALUE_CHARS)}")
    return "failed the visible examples"


_WHERE = re.compile(r"\s*\(<[^>]*>, line \d+\)")  # the line is given as the attempt's
_LAST_DEF = re.compile(r"^(?:async\s+)?def\s", re.M)


def repair_prompt(task, completion: str, feedback: str) -> str:
    """The task's prompt with the failed ``completion`` and its ``feedback`` as comments
    (see the module docstring): the prompt of a repair."""
    lines = completion.rstrip("\n").splitlines()[:MAX_ATTEMPT_LINES] or [""]
    block = "".join(f"# {line}".rstrip() + "\n" for line in [ATTEMPT_HEADER[2:], *lines])
    block += FEEDBACK_PREFIX + " ".join(feedback.split()) + "\n"
    prompt = task.prompt
    defs = [m.start() for m in _LAST_DEF.finditer(prompt)]
    if defs:
        at = defs[-1]
        return prompt[:at] + block + prompt[at:]
    return prompt + ("" if prompt.endswith("\n") or not prompt else "\n") + block


def repair_task(task, completion: str, feedback: str):
    """``task`` with the repair prompt: its hidden tests run ``repair prompt + repair``."""
    return dataclasses.replace(task, prompt=repair_prompt(task, completion, feedback),
                               metadata={**task.metadata, "repair_of": task.task_id})


def is_repair_prompt(prompt: str) -> bool:
    return f"\n{ATTEMPT_HEADER}\n" in f"\n{prompt}"


# ------------------------------------------------------------------ wrong programs to repair

_SWAPS = {ast.Add: (ast.Sub, ast.Mult), ast.Sub: (ast.Add,), ast.Mult: (ast.Add, ast.FloorDiv),
          ast.FloorDiv: (ast.Mod, ast.Mult), ast.Mod: (ast.FloorDiv,), ast.Lt: (ast.LtE, ast.Gt),
          ast.LtE: (ast.Lt,), ast.Gt: (ast.GtE, ast.Lt), ast.GtE: (ast.Gt,), ast.Eq: (ast.NotEq,),
          ast.NotEq: (ast.Eq,), ast.And: (ast.Or,), ast.Or: (ast.And,)}


def mutate(completion: str, rng: random.Random) -> str | None:
    """A wrong variant of a (correct) completion, or None if nothing applies: an operator or
    comparison swapped, an integer constant moved, a statement dropped, a name misspelt
    (NameError) or a character cut (SyntaxError). For repair training data."""
    kind = rng.choices(("semantic", "name", "syntax"), (0.7, 0.15, 0.15))[0]
    if kind == "syntax":
        spots = [i for i, ch in enumerate(completion) if ch in "():[]"]
        if not spots:
            return None
        i = rng.choice(spots)
        return completion[:i] + completion[i + 1:]
    try:
        tree = ast.parse("def _f():\n" + completion if completion.startswith((" ", "\t"))
                         else completion)
    except SyntaxError:
        return None
    nodes = list(ast.walk(tree))
    if kind == "name":
        names = [n for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
        if not names:
            return None
        rng.choice(names).id += "_"
    else:
        edits = [n for n in nodes if isinstance(n, (ast.BinOp, ast.BoolOp, ast.Compare))
                 or (isinstance(n, ast.Constant) and type(n.value) is int)]
        bodies = [n.body for n in nodes if isinstance(n, ast.FunctionDef) and len(n.body) > 1]
        if not edits and not bodies:
            return None
        pick = rng.randrange(len(edits) + (1 if bodies else 0))
        if pick == len(edits):
            body = rng.choice(bodies)
            body.pop(rng.randrange(len(body) - 1))  # keep the return
        else:
            node = edits[pick]
            if isinstance(node, ast.Constant):
                node.value += rng.choice((-1, 1, 2))
            else:
                ops = node.ops if isinstance(node, ast.Compare) else [node.op]
                i = rng.randrange(len(ops))
                choices = _SWAPS.get(type(ops[i]))
                if not choices:
                    return None
                ops[i] = rng.choice(choices)()
                if not isinstance(node, ast.Compare):
                    node.op = ops[0]
    text = ast.unparse(tree)
    if completion.startswith((" ", "\t")):  # a function body: drop the wrapper again
        text = "\n".join(line[4:] if line.startswith("    ") else line
                         for line in text.splitlines()[1:])
        text = "\n".join("    " + line for line in text.splitlines())
    text += "\n"
    return None if text.strip() == completion.strip() else text


def repair_pairs(tasks, count: int, seed: int, pool) -> list[tuple[str, str]]:
    """``count`` repair examples ``(repair prompt, reference)`` from the world itself: a
    task's reference is mutated (`mutate`) and run on the visible examples; attempts that
    fail them are kept with their feedback, the reference as the target. Deterministic in
    (tasks, count, seed)."""
    rng = random.Random(f"repair:{seed}")
    out: list[tuple[str, str]] = []
    while len(out) < count:
        batch = []
        for _ in range(2 * (count - len(out)) + 16):
            task = tasks[rng.randrange(len(tasks))]
            wrong = mutate(task.reference, rng)
            if wrong is not None:
                batch.append((task, wrong, feedback_job(task, wrong)))
        if not batch:
            raise ValueError("repair_pairs: no reference of these tasks can be mutated")
        for (task, wrong, job), fut in zip(batch, pool.submit([j for _, _, j in batch])):
            text = render_feedback(task, wrong, fut.result(), job.program)
            if text and len(out) < count and fut.result().status != "sandbox_error":
                out.append((repair_prompt(task, wrong, text), task.reference))
    return out
