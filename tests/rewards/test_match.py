"""Syntax match R_ast and data-flow match R_dfg on hand-made pairs (exact fractions)."""

from collections import Counter

import pytest

from rlfb_jax.data.tasks import Task
from rlfb_jax.rewards import get_reward
from rlfb_jax.rewards.dataflow import dataflow_edges
from rlfb_jax.rewards.syntax import prompt_end

ast_match = get_reward("ast_match")
dfg_match = get_reward("dfg_match")


def task(prompt, reference):
    return Task(task_id="t/0", prompt=prompt, entry_point="f", reference=reference,
                tests=("assert True",))


INC = task("def f(x):\n", "    y = x + 1\n    return y\n")
# Reference subtrees rooted in the completion (7): Assign, Name y (store), BinOp, Name x,
# Constant 1, Return, Name y (load). Normalized, the two loads of x and y are one key.


def test_ast_identical_and_unparseable():
    assert ast_match(INC, INC.reference) == 1.0
    assert ast_match(INC, "    return (\n") == 0.0
    assert ast_match(INC, "") == 0.0  # "def f(x):" without a body does not parse


def test_ast_partial_overlap_exact_fraction():
    # "return x + 1" shares BinOp, Name x (load), Constant 1; its Return holds a BinOp, not
    # a Name, so it differs from the reference's Return: 3 of 7.
    assert ast_match(INC, "    return x + 1\n") == pytest.approx(3 / 7)
    # Repeating it: the second Name load matches the reference's second one (y), but BinOp
    # and Constant occur once in the reference, so their copies do not count (multiset): 4/7.
    assert ast_match(INC, "    return x + 1\n    return x + 1\n") == pytest.approx(4 / 7)


def test_ast_normalization_of_names():
    renamed = "    z = x + 1\n    return z\n"
    assert ast_match(INC, renamed) == 1.0
    # Keeping names: Assign, Name z (store), Return and Name z (load) no longer match.
    assert ast_match(INC, renamed, normalize=False) == pytest.approx(3 / 7)
    assert ast_match(INC, "    y = x + 2\n    return y\n", normalize=False) == pytest.approx(4 / 7)


def test_ast_prompt_is_not_counted():
    # MBPP style: the prompt is a docstring and the completion the whole function.
    mbpp = task('"""Add one."""\n', "def f(x):\n    return x + 1\n")
    assert ast_match(mbpp, "") == 0.0  # parses, but none of the reference's subtrees
    assert ast_match(mbpp, mbpp.reference) == 1.0
    # FunctionDef, arg, Return, BinOp, Name, Constant: the body differs, so only the leaves
    # match (arg x, Name x, Constant): 3 of 6.
    assert ast_match(mbpp, "def f(x):\n    return x - 1\n") == pytest.approx(3 / 6)
    assert prompt_end('"""Add one."""\n') == (2, 0)
    assert prompt_end("def é(x):\n    ") == (2, 4)


def test_bad_reference_raises():
    with pytest.raises(ValueError, match="reference solution does not parse"):
        ast_match(task("def f(x):\n", "    return (\n"), "    return 1\n")
    with pytest.raises(ValueError, match="reference solution does not parse"):
        dfg_match(task("def f(x):\n", "    return (\n"), "    return 1\n")


SUM = task("def f(a, b):\n", "    s = a + b\n    t = s * 2\n    return t\n")
# a = var_0, b = var_1, s = var_2, t = var_3. Edges: s <- a, s <- b, t <- s, out <- t.


def test_dfg_reference_edges():
    edges = dataflow_edges(SUM.prompt + SUM.reference, prompt_end(SUM.prompt))
    assert edges == Counter({("computed_from", "var_2", "var_0"): 1,
                             ("computed_from", "var_2", "var_1"): 1,
                             ("computed_from", "var_3", "var_2"): 1,
                             ("returned", "out", "var_3"): 1})


def test_dfg_renaming_does_not_change_the_score():
    assert dfg_match(SUM, SUM.reference) == 1.0
    assert dfg_match(SUM, "    total = a + b\n    d = total * 2\n    return d\n") == 1.0


def test_dfg_changed_flow_exact_fractions():
    # t is computed from a instead of s: 3 of the 4 edges remain.
    assert dfg_match(SUM, "    s = a + b\n    t = a * 2\n    return t\n") == pytest.approx(0.75)
    # No intermediate variables: out <- a and out <- b match nothing.
    assert dfg_match(SUM, "    return a + b\n") == 0.0
    # The same statements in another order rename the variables, as in CodeBLEU.
    assert dfg_match(SUM, "    s = a + b\n    t = s * 2\n    return t\n    s = t\n") == 1.0
    assert dfg_match(SUM, "    return (\n") == 0.0


def test_dfg_reference_without_edges():
    noop = task("def f(a):\n", "    pass\n")
    assert dfg_match(noop, "    return a\n") == 1.0
    assert dfg_match(noop, "    return a\n", no_edges=0.0) == 0.0
    assert dfg_match(noop, "    return (\n") == 0.0


def test_dfg_edges_of_loops_updates_and_comprehensions():
    prompt = "def f(xs):\n"
    body = ("    out = []\n"
            "    for x in xs:\n"
            "        out.append(x * 2)\n"
            "    total = 0\n"
            "    total += len(out)\n"
            "    return [y for y in out if y], total\n")
    # xs = var_0, out = var_1, x = var_2, total = var_3, y = var_4 (len is not a variable).
    assert dataflow_edges(prompt + body, prompt_end(prompt)) == Counter({
        ("computed_from", "var_2", "var_0"): 1,  # for x in xs
        ("computed_from", "var_1", "var_2"): 1,  # out.append(x * 2)
        ("computed_from", "var_3", "var_3"): 1,  # total += ...
        ("computed_from", "var_3", "var_1"): 1,  # ... len(out)
        ("computed_from", "var_4", "var_1"): 1,  # y in out
        ("returned", "out", "var_4"): 1,
        ("returned", "out", "var_1"): 1,
        ("returned", "out", "var_3"): 1,
    })
