"""Data-flow match R_dfg (PPOCoder, Shojaee et al. 2023, after CodeBLEU's data-flow match;
host only: the standard library's `ast`).

R_dfg = |Count(E_ref) & Count(E_cand)| / |E_ref| over multisets of data-flow edges.

Variables are the names the program binds: function parameters, assignment / augmented /
annotated / walrus targets, ``for`` and comprehension targets, ``with ... as`` and ``except
... as`` names. Names that are only read (builtins, globals, functions, modules) are not
variables. Each variable is renamed ``var_k`` in order of first appearance in the source of
``task.prompt + completion`` (scopes are not distinguished), so consistently renaming
variables leaves the edges unchanged.

Edges, for statements and comprehensions that start in the completion (the prompt is shared
and would inflate the match):

* ``("computed_from", t, s)``: the value of variable t is computed from variable s:
  ``t = f(s)``, ``t += s`` (and t from itself), ``for t in s``, ``[... for t in s]``,
  ``with s as t``, ``t := s``; ``t[i] = s`` and ``t.x = s`` update t from s and i;
  ``t.method(s)`` as a statement (``lst.append(x)``) updates t from s. Each (t, s) pair is
  counted once per statement.
* ``("returned", "out", s)``: variable s flows into a ``return`` / ``yield`` value.

0 if the candidate does not parse; ``no_edges`` (default 1.0: nothing to miss) if the
reference has no edges, so such tasks reward only parsing. Raises ValueError if the task's
own reference does not parse.
"""

from __future__ import annotations

import ast
import functools
from collections import Counter

from rlfb_jax.rewards.registry import register_reward
from rlfb_jax.rewards.syntax import in_completion, match_fraction, parse, prompt_end

Edge = tuple[str, str, str]


def _bound_names(tree: ast.AST) -> set[str]:
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound


def _normalizer(tree: ast.AST, bound: set[str]) -> dict[str, str]:
    """var_k by order of first appearance (line, column) of each bound name."""
    seen = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in bound:
            seen.append((node.lineno, node.col_offset, node.id))
        elif isinstance(node, ast.arg):
            seen.append((node.lineno, node.col_offset, node.arg))
        elif isinstance(node, ast.ExceptHandler) and node.name:
            seen.append((node.lineno, node.col_offset, node.name))
    names: dict[str, str] = {}
    for _, _, name in sorted(seen):
        names.setdefault(name, f"var_{len(names)}")
    return names


def _reads(node: ast.AST | None, bound: set[str]) -> list[str]:
    """Variables read inside ``node``, in source order, each once."""
    if node is None:
        return []
    found = [(n.lineno, n.col_offset, n.id) for n in ast.walk(node)
             if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in bound]
    return list(dict.fromkeys(name for *_, name in sorted(found)))


def _targets(target: ast.AST, bound: set[str]) -> tuple[list[str], list[str]]:
    """(variables written by assigning to ``target``, variables read to locate the write)."""
    if isinstance(target, ast.Name):
        return [target.id], []
    if isinstance(target, ast.Tuple | ast.List):
        written, read = [], []
        for elt in target.elts:
            w, r = _targets(elt, bound)
            written += w
            read += r
        return written, read
    if isinstance(target, ast.Starred):
        return _targets(target.value, bound)
    if isinstance(target, ast.Subscript | ast.Attribute):
        base = target.value
        while isinstance(base, ast.Subscript | ast.Attribute):
            base = base.value
        written = [base.id] if isinstance(base, ast.Name) and base.id in bound else []
        return written, [r for r in _reads(target, bound) if r not in written]
    return [], []


def _flows(node: ast.AST, bound: set[str]) -> list[tuple[list[str], list[str]]]:
    """The (targets, sources) pairs of one node; [] for nodes that move no data."""
    if isinstance(node, ast.Assign):
        out = []
        for target in node.targets:
            written, located = _targets(target, bound)
            out.append((written, located + _reads(node.value, bound)))
        return out
    if isinstance(node, ast.AnnAssign) and node.value is not None:
        written, located = _targets(node.target, bound)
        return [(written, located + _reads(node.value, bound))]
    if isinstance(node, ast.AugAssign):
        written, located = _targets(node.target, bound)
        return [(written, written + located + _reads(node.value, bound))]
    if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
        written, located = _targets(node.target, bound)
        return [(written, located + _reads(node.iter, bound))]
    if isinstance(node, ast.NamedExpr):
        return [([node.target.id], _reads(node.value, bound))]
    if isinstance(node, ast.With | ast.AsyncWith):
        out = []
        for item in node.items:
            if item.optional_vars is not None:
                written, located = _targets(item.optional_vars, bound)
                out.append((written, located + _reads(item.context_expr, bound)))
        return out
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        func = node.value.func  # v.method(args) mutates v from args (lst.append(x))
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                and func.value.id in bound:
            args = node.value.args + [k.value for k in node.value.keywords]
            sources = [s for a in args for s in _reads(a, bound)]
            return [([func.value.id], list(dict.fromkeys(sources)))]
    return []


def dataflow_edges(program: str, start: tuple[int, int] = (1, 0)) -> Counter | None:
    """Multiset of normalized data-flow edges of the nodes starting at or after ``start``
    (see the module docstring); None if the program does not parse."""
    tree = parse(program)
    if tree is None:
        return None
    bound = _bound_names(tree)
    norm = _normalizer(tree, bound)
    edges: Counter = Counter()
    for node in ast.walk(tree):
        # comprehensions have no position of their own: use their target's
        where = node.target if isinstance(node, ast.comprehension) else node
        if not in_completion(where, start):
            continue
        if isinstance(node, ast.Return | ast.Yield | ast.YieldFrom):
            for s in _reads(node.value, bound):
                edges[("returned", "out", norm[s])] += 1
            continue
        for written, sources in _flows(node, bound):
            pairs = {(t, s) for t in written for s in sources}
            for t, s in pairs:
                edges[("computed_from", norm[t], norm[s])] += 1
    return edges


@functools.lru_cache(maxsize=4096)
def _reference_edges(prompt: str, reference: str) -> Counter:
    edges = dataflow_edges(prompt + reference, prompt_end(prompt))
    if edges is None:
        raise ValueError("the reference solution does not parse (prompt + reference)")
    return edges


@register_reward("dfg_match")
def dfg_match_reward(task, completion: str, outcome=None, no_edges: float = 1.0) -> float:
    """R_dfg in [0, 1] (see the module docstring). The outcome is ignored."""
    del outcome
    ref = _reference_edges(task.prompt, task.reference)
    cand = dataflow_edges(task.prompt + completion, prompt_end(task.prompt))
    if cand is None:
        return 0.0
    return match_fraction(ref, cand, empty=no_edges)
