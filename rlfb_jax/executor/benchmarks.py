"""Benchmark tasks -> executor `Job`s (HumanEval and MBPP, in their published formats).

Plain functions over the problem dicts, so data loaders can reuse them:

* HumanEval (``task_id, prompt, entry_point, test``): the program is prompt + completion;
  the single test is the ``check`` function followed by ``check(<entry_point>)``. Helper
  functions and imports that the *prompt* defines (``poly`` in HumanEval/32,
  ``encode_cyclic`` in /38) are copied into the trusted test snippet, so a completion
  that redefines them can't change what the test computes.
* MBPP (``task_id, text, code, test_list, test_setup_code``): the program is the
  completion; each ``test_list`` entry is one test; ``test_setup_code`` (fixtures built
  from the program's own classes) becomes `Job.test_setup`.
"""

from __future__ import annotations

import ast
from typing import Any

from .jobs import Job


def prompt_helpers(prompt: str, entry_point: str) -> str:
    """Source of the prompt's complete top-level imports and helper functions."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return ""
    keep = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            keep.append(node)
        elif isinstance(node, ast.FunctionDef) and node.name != entry_point:
            keep.append(node)
    parts = [ast.get_source_segment(prompt, node) for node in keep]
    return "\n".join(p for p in parts if p)


def called_function(test: str) -> str | None:
    """Name of the first function an MBPP test calls (``assert f(...) == ...`` -> ``f``)."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id not in ("set", "sorted", "list", "tuple", "abs", "round", "len"):
                return node.func.id
    return None


def split_check(test: str) -> list[str] | None:
    """HumanEval's ``check(candidate)`` as one snippet per assert, or None when its body is
    not a plain list of asserts (7 of 164 tasks loop or define locals). Each snippet keeps
    the test module's other top-level statements (imports, ``METADATA``)."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return None
    checks = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if len(checks) != 1 or [a.arg for a in checks[0].args.args] != ["candidate"]:
        return None
    asserts = []
    for node in checks[0].body:
        if isinstance(node, ast.Assert):
            asserts.append(ast.get_source_segment(test, node))
        elif not (
            isinstance(node, ast.Pass)
            or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
        ):
            return None
    prelude = "\n".join(
        ast.get_source_segment(test, n) or "" for n in tree.body if n is not checks[0]
    )
    return [f"{prelude}\n{a}" for a in asserts if a] or None


def humaneval_job(
    problem: dict[str, Any],
    completion: str,
    job_id: str | None = None,
    split_asserts: bool = False,
    **job_kwargs: Any,
) -> Job:
    """A HumanEval problem and one completion (the text after the prompt) -> Job.

    By default the whole ``check`` is one test, as in the official harness. With
    ``split_asserts=True`` each assert of ``check`` becomes its own test (where its body is a
    plain list of asserts), so `Outcome.pass_ratio` gives partial credit (e.g. for rewards);
    each assert then gets the per-test time limit.
    """
    entry = problem["entry_point"]
    helpers = prompt_helpers(problem["prompt"], entry)
    parts = split_check(problem["test"]) if split_asserts else None
    if parts:
        tests = tuple(f"{helpers}\n\ncandidate = {entry}\n{part}\n" for part in parts)
    else:
        tests = (f"{helpers}\n\n{problem['test']}\n\ncheck({entry})\n",)
    return Job(
        kind="assert",
        program=problem["prompt"] + completion,
        tests=tests,
        entry_point=entry,
        job_id=job_id or problem["task_id"],
        **job_kwargs,
    )


def mbpp_job(
    problem: dict[str, Any],
    completion: str,
    job_id: str | None = None,
    challenge: bool = False,
    **job_kwargs: Any,
) -> Job:
    """An MBPP problem and one completion (a whole program) -> Job."""
    tests = list(problem["test_list"])
    if challenge:
        tests += list(problem.get("challenge_test_list") or ())
    return Job(
        kind="assert",
        program=completion,
        tests=tuple(tests),
        test_setup=problem.get("test_setup_code") or "",
        entry_point=called_function(tests[0]) if tests else None,
        job_id=job_id or str(problem["task_id"]),
        **job_kwargs,
    )


def task_job(
    problem: dict[str, Any], completion: str, job_id: str | None = None, **job_kwargs: Any
) -> Job:
    """Dispatch on the problem's format (HumanEval fields or MBPP fields)."""
    if "prompt" in problem and "test" in problem and "entry_point" in problem:
        return humaneval_job(problem, completion, job_id, **job_kwargs)
    if "test_list" in problem:
        return mbpp_job(problem, completion, job_id, **job_kwargs)
    raise ValueError(
        f"problem {problem.get('task_id')!r} is neither in HumanEval format "
        "(prompt, test, entry_point) nor in MBPP format (test_list)"
    )
