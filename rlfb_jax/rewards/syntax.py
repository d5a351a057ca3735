"""Syntax match R_ast (PPOCoder, Shojaee et al. 2023, after CodeBLEU's syntactic AST match;
host only: the standard library's `ast`).

R_ast is the fraction of the reference's AST subtrees found in the candidate:

    R_ast = |Count(S_ref) & Count(S_cand)| / |S_ref|     (multiset intersection)

Subtrees: every node of Python's `ast` that has a source position (statements, expressions,
arguments, keywords, aliases, exception handlers, patterns) *rooted in the completion*, each
standing for the whole subtree below it. Both programs are parsed whole (``task.prompt +
completion``: a completion is often a function body that does not parse alone), and nodes
that start inside the shared prompt are left out, so the prompt cannot inflate the match.

Subtrees are compared by shape, as CodeBLEU compares tree-sitter subtrees without their
leaves: with ``normalize=True`` (the default) identifiers (variable, function, attribute,
argument and imported names) are dropped and constants are replaced by their type
(``1`` -> int), so renaming a variable does not change the score; ``normalize=False`` keeps
names and values. Node types, operators and load/store contexts always count.
"""

from __future__ import annotations

import ast
import functools
import re
from collections import Counter

from rlfb_jax.rewards.registry import register_reward

# Fields holding identifiers (str, or lists of str for Global / Nonlocal).
_NAME_FIELDS = frozenset({"id", "arg", "name", "attr", "module", "names", "asname"})
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def parse(program: str) -> ast.Module | None:
    """`ast.parse`, or None when the program does not parse."""
    try:
        return ast.parse(program)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def prompt_end(prompt: str) -> tuple[int, int]:
    """The (1-based line, UTF-8 byte column) where the completion starts, as `ast` counts
    positions; a node starts in the completion iff (lineno, col_offset) >= this."""
    lines = _LINE_BREAK.split(prompt)
    return len(lines), len(lines[-1].encode("utf-8"))


def in_completion(node: ast.AST, start: tuple[int, int]) -> bool:
    lineno = getattr(node, "lineno", None)
    return lineno is not None and (lineno, node.col_offset) >= start


def subtree_counts(program: str, start: tuple[int, int] = (1, 0),
                   normalize: bool = True) -> Counter | None:
    """Multiset of subtree keys of the positioned nodes starting at or after ``start``.

    A key is a hash computed bottom-up from the node type, its non-identifier fields and
    its children's keys (one pass, linear in the tree size). None if the program does not
    parse.
    """
    tree = parse(program)
    if tree is None:
        return None
    counts: Counter = Counter()

    def leaf(field: str, value):
        if normalize and field in _NAME_FIELDS:
            return None
        if normalize and field == "value":  # ast.Constant.value
            return type(value).__name__
        return value if isinstance(value, str | int | float | bool | bytes | None) else repr(value)

    def key(node: ast.AST) -> int:
        parts: list = [type(node).__name__]
        for field, value in ast.iter_fields(node):
            if field in ("kind", "type_comment"):  # u"" prefixes and comments are not syntax
                continue
            if isinstance(value, ast.AST):
                parts.append(key(value))
            elif isinstance(value, list):
                parts.append(tuple(key(v) if isinstance(v, ast.AST) else leaf(field, v)
                                   for v in value))
            else:
                parts.append(leaf(field, value))
        h = hash(tuple(parts))
        if in_completion(node, start):
            counts[h] += 1
        return h

    try:
        key(tree)
    except RecursionError:
        return None
    return counts


@functools.lru_cache(maxsize=4096)
def _reference_counts(prompt: str, reference: str, normalize: bool) -> Counter:
    counts = subtree_counts(prompt + reference, prompt_end(prompt), normalize)
    if counts is None:
        raise ValueError("the reference solution does not parse (prompt + reference)")
    return counts


def match_fraction(ref: Counter, cand: Counter, empty: float = 1.0) -> float:
    """|ref & cand| / |ref| over multisets; ``empty`` when ref is empty."""
    total = sum(ref.values())
    if total == 0:
        return empty
    return sum((ref & cand).values()) / total


@register_reward("ast_match")
def ast_match_reward(task, completion: str, outcome=None, normalize: bool = True) -> float:
    """R_ast in [0, 1]: the fraction of the reference's subtrees (rooted in the reference
    completion) found in the candidate's, as multisets; 0 if ``prompt + completion`` does not
    parse, 1 if the reference completion has no positioned node. The outcome is ignored.
    Raises ValueError if the task's own reference does not parse.
    """
    del outcome
    ref = _reference_counts(task.prompt, task.reference, normalize)
    cand = subtree_counts(task.prompt + completion, prompt_end(task.prompt), normalize)
    if cand is None:
        return 0.0
    return match_fraction(ref, cand)
