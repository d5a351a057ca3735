"""The synthetic DSL and task generator: code/semantics agreement, splits, counts, speed."""

from __future__ import annotations

import ast
import dataclasses
import itertools
import json
import random

import pytest

from rlfb_jax.data import dsl, synthetic
from rlfb_jax.data.reference_check import run_jobs, run_script
from rlfb_jax.data.synthetic import GeneratorConfig, make_splits, normalized_ast


def _exec_function(program: dsl.Program, names: random.Random | None = None):
    ns: dict = {}
    exec(dsl.render_signature(program) + dsl.render_body(program, rng=names), ns)
    return ns["f"]


def test_every_op_code_matches_its_semantics():
    """For each op, parameter and template (the code and its `alt` spellings), the rendered
    Python equals the DSL's own evaluation."""
    rng = random.Random(0)
    checked = 0
    for op in dsl.OPS:
        for param, template in itertools.product(op.params, (op.code,) + op.alt):
            program = ((op.name, param),)
            dsl.validate(program)
            f = _exec_function(program)
            if template != op.code:
                alone = dataclasses.replace(op, code=template, alt=())
                ns: dict = {}
                body = alone.code.format(**alone.slots(param, dsl.VAR[op.in_type]))
                exec(f"{dsl.render_signature(program)}    return {body}\n", ns)
                f = ns["f"]
            defined = 0
            for _ in range(60):
                x = synthetic.sample_input(rng, op.in_type)
                try:
                    want = dsl.run(program, x)
                except dsl.Rejected:
                    continue
                got = f(x)
                assert got == want and type(got) is type(want), (program, x, got, want)
                defined += 1
            assert defined > 0, f"op {op.name}({param!r}) is undefined on every sampled input"
            checked += 1
    assert checked > 190


def test_random_deep_programs_match_semantics():
    """Canonical and name-varied renderings (`render_body(..., rng)`) compute the DSL's value."""
    rng = random.Random(1)
    spellings = set()
    for _ in range(300):
        program = synthetic.sample_program(rng, rng.randint(1, 4))
        dsl.validate(program)
        f = _exec_function(program)
        names = random.Random(dsl.program_key(program))
        g = _exec_function(program, names)
        spellings.add(dsl.render_body(program, rng=names) != dsl.render_body(program))
        for _ in range(5):
            x = synthetic.sample_input(rng, dsl.input_type(program))
            try:
                want = dsl.run(program, x)
            except dsl.Rejected:
                continue
            assert f(x) == want == g(x), (dsl.program_key(program), x)
    assert spellings == {True, False}


def test_validate_rejects_bad_programs():
    with pytest.raises(ValueError, match="unknown op"):
        dsl.validate((("nope", None),))
    with pytest.raises(ValueError, match="takes list, got int"):
        dsl.validate((("sum", None), ("sort", None)))
    with pytest.raises(ValueError, match="no parameter 7"):
        dsl.validate((("add", 7),))
    with pytest.raises(ValueError, match="empty"):
        dsl.validate(())


def test_rendering_and_description_example():
    program = (("add", 3), ("keep_even", None), ("sum", None))
    assert synthetic.program_code(program) == (
        "def f(xs):\n"
        "    xs = [x + 3 for x in xs]\n"
        "    xs = [x for x in xs if x % 2 == 0]\n"
        "    return sum(xs)\n"
    )
    assert dsl.describe(program) == (
        "Add 3 to each element, keep the even elements, then return the sum.")
    product = (("product", None),)
    assert synthetic.program_code(product).endswith("    return n\n")
    assert _exec_function(product)([2, 3, 4]) == 24


def test_task_format(splits):
    for task in splits["train"][:200] + splits["test"][:50]:
        assert task.prompt.startswith('"""')
        steps = dsl.program_from_json(task.metadata["steps"])
        dsl.validate(steps)
        assert task.prompt.endswith(dsl.render_signature(steps))
        assert task.reference == dsl.render_body(steps)
        ast.parse(task.prompt + task.reference)
        assert task.reference.startswith("    ") and task.reference.endswith("\n")
        assert 1 <= task.difficulty <= 4
        assert task.difficulty == len(task.metadata["steps"])
        assert len(task.examples) == len(task.example_calls) == 2
        assert len(task.tests) == len(task.stdio_tests) == len(task.call_tests) == 8
        for example in task.examples:
            call = example.removeprefix("assert ").split(" == ")[0]
            assert f">>> {call}\n" in task.prompt
        hidden_inputs = {repr(a) for a, _ in task.call_tests}
        assert not hidden_inputs & {repr(a) for a, _ in task.example_calls}
        assert len(hidden_inputs) == 8
        assert len(task.prompt) <= 220 and len(task.reference) <= 150


def test_references_pass_all_test_forms(splits):
    """Each sampled task's reference passes its hidden tests (assert, call, stdio) and its
    visible examples; a wrong completion fails."""
    rng = random.Random(2)
    tasks = rng.sample(splits["train"], 60) + rng.sample(splits["test"], 40)
    jobs = []
    for t in tasks:
        jobs += [t.reference_job("assert"), t.reference_job("call"), t.reference_job("stdio"),
                 t.to_job(t.reference, "assert", visible=True),
                 t.to_job(t.reference, "call", visible=True)]
    results = run_jobs(jobs)
    failures = [(j.job_id, j.kind, err) for j, (ok, err) in zip(jobs, results) if not ok]
    assert not failures, failures[:5]
    wrong = [t.to_job("    return None\n", "assert") for t in tasks[:20]]
    assert not any(ok for ok, _ in run_jobs(wrong))


def test_examples_in_tests_judges_the_prompts_examples_too():
    """examples_in_tests: the same tasks (prompts, references, hidden tests), with the
    visible examples added to every test form; a program that returns the first example's
    expected value for the hidden inputs only is judged wrong."""
    loose = make_splits(60, 5, 5, seed=3)
    strict = make_splits(60, 5, 5, seed=3, config=GeneratorConfig(examples_in_tests=True))
    jobs, expected = [], []
    for a, b in zip(loose["train"], strict["train"]):
        assert (a.task_id, a.prompt, a.reference, a.examples) == (
            b.task_id, b.prompt, b.reference, b.examples)
        assert b.tests == a.examples + a.tests and len(b.stdio_tests) == 10
        assert b.call_tests == a.example_calls + a.call_tests
        # answers every hidden test, contradicts the first visible example
        (x0,), y0 = a.example_calls[0]
        table = {repr(x): y for (x,), y in a.call_tests}
        var = dsl.VAR[dsl.input_type(dsl.program_from_json(a.metadata["steps"]))]
        cheat = (f"    _t = {table!r}\n    if repr({var}) == {repr(x0)!r}:\n"
                 f"        return {('wrong', y0)!r}\n    return _t[repr({var})]\n")
        jobs += [a.to_job(cheat, "assert"), b.to_job(cheat, "assert"), b.reference_job("call")]
        expected += [True, False, True]
    assert [ok for ok, _ in run_jobs(jobs)] == expected


def test_example_outputs_off_shows_the_inputs_only():
    """example_outputs=False: the same tasks, prompts list the example calls without outputs,
    `examples` are those calls, and the example pairs join every test form; the reference
    passes them all, and no prompt contains an example's output line."""
    shown = make_splits(60, 5, 5, seed=3)
    hidden = make_splits(60, 5, 5, seed=3, config=GeneratorConfig(example_outputs=False))
    jobs = []
    for a, b in zip(shown["train"] + shown["test"], hidden["train"] + hidden["test"]):
        assert (a.task_id, a.reference, a.split) == (b.task_id, b.reference, b.split)
        calls = tuple(f"f({x!r})" for (x,), _ in a.example_calls)
        assert b.examples == calls and b.example_calls == ()
        assert b.prompt == a.prompt.replace(
            "".join(f">>> {c}\n{y!r}\n" for c, (_, y) in zip(calls, a.example_calls)),
            "".join(f">>> {c}\n" for c in calls))
        assert b.tests == a.examples + a.tests and b.call_tests == a.example_calls + a.call_tests
        assert len(b.stdio_tests) == 10
        jobs += [b.reference_job(k) for k in ("assert", "call", "stdio")]
        jobs.append(b.to_job(b.reference, visible=True))
    assert all(ok for ok, _ in run_jobs(jobs))
    # The outputs differ from the inputs' reprs in most tasks, so a leak would show.
    assert sum(repr(y) not in b.prompt for b, (_, y) in zip(
        hidden["train"], [a.example_calls[0] for a in shown["train"]])) >= 30


def test_code_variants_write_the_same_programs_with_other_names():
    """code_variants: the same tasks and prompts; most references are spelled differently
    (names drawn per program, deterministically) and every one passes all its tests."""
    canon = make_splits(80, 5, 5, seed=4)
    varied = make_splits(80, 5, 5, seed=4, config=GeneratorConfig(code_variants=True))
    again = make_splits(80, 5, 5, seed=4, config=GeneratorConfig(code_variants=True))
    assert [t.reference for t in varied["train"]] == [t.reference for t in again["train"]]
    changed = 0
    for a, b in zip(canon["train"], varied["train"]):
        assert (a.task_id, a.prompt, a.tests, a.split) == (b.task_id, b.prompt, b.tests, b.split)
        changed += a.reference != b.reference
    assert changed >= 0.3 * len(canon["train"])  # many ops have one spelling
    jobs = [t.reference_job(k) for t in varied["train"] for k in ("assert", "stdio")]
    assert all(ok for ok, _ in run_jobs(jobs))


def test_stdio_script_runs_as_a_real_process(splits):
    for task in splits["validation"][:3]:
        job = task.reference_job("stdio")
        stdin, expected = job.tests[0]
        assert run_script(job.program, stdin).split() == expected.split()


def test_deterministic_and_prefix_stable():
    a = make_splits(200, 20, 20, seed=5)
    b = make_splits(200, 20, 20, seed=5)
    assert a == b
    bigger = make_splits(400, 40, 40, seed=5)
    for split in synthetic.SPLITS:
        assert bigger[split][: len(a[split])] == a[split]
    other = make_splits(200, 20, 20, seed=6)
    assert [t.task_id for t in other["train"]] != [t.task_id for t in a["train"]]


def test_splits_are_disjoint_by_normalized_ast(splits):
    # Keys from the stored text (the function after the docstring), not from the generator.
    keys = {
        name: {normalized_ast(t.prompt.split('"""\n')[-1] + t.reference) for t in tasks}
        for name, tasks in splits.items()
    }
    # Programs on different types can share a normalized AST (``s * 2`` / ``n * 2``): they
    # are distinct tasks, in the same split.
    assert len(keys["train"]) > 0.95 * len(splits["train"])
    assert not keys["train"] & keys["test"]
    assert not keys["train"] & keys["validation"]
    assert not keys["validation"] & keys["test"]
    for name, tasks in splits.items():
        assert all(t.split == name for t in tasks)


def test_normalized_ast_ignores_names_only():
    a = "def f(xs):\n    ys = [x + 1 for x in xs]\n    return sum(ys)\n"
    b = "def g(q):\n    r = [z + 1 for z in q]\n    return sum(r)\n"
    c = "def f(xs):\n    ys = [x + 2 for x in xs]\n    return sum(ys)\n"
    d = "def f(xs):\n    ys = [x + 1 for x in xs]\n    return len(ys)\n"
    assert normalized_ast(a) == normalized_ast(b)
    assert normalized_ast(a) != normalized_ast(c)
    assert normalized_ast(a) != normalized_ast(d)  # builtins keep their names
    assert normalized_ast("def f(a, b):\n    return a - b\n") != normalized_ast(
        "def f(a, b):\n    return b - a\n")


def test_split_key_is_coarser_than_normalized_ast():
    rng = random.Random(7)
    programs = [synthetic.sample_program(rng, rng.randint(1, 3)) for _ in range(3000)]
    programs += [(("imul", 2),), (("double", None),), (("reverse", None),), (("sreverse", None),)]
    by_ast: dict[str, set] = {}
    for p in programs:
        by_ast.setdefault(normalized_ast(synthetic.program_code(p)), set()).add(
            synthetic.split_key(p))
    assert all(len(keys) == 1 for keys in by_ast.values())
    assert synthetic.split_key((("imul", 2),)) == synthetic.split_key((("double", None),))
    assert synthetic.split_of((("reverse", None),)) == synthetic.split_of((("sreverse", None),))
    assert synthetic.split_key((("add", 1),)) != synthetic.split_key((("add", 2),))


def test_skeleton_holdout_keeps_op_combinations_apart():
    config = GeneratorConfig(holdout="skeleton")
    s = make_splits(1000, 100, 100, seed=0, config=config)
    train = {t.metadata["skeleton"] for t in s["train"]}
    assert not train & {t.metadata["skeleton"] for t in s["test"]}


def test_every_op_is_seen_in_training(splits):
    seen = {name for t in splits["train"] for name, _ in t.metadata["steps"]}
    assert seen == set(dsl.OPS_BY_NAME)
    test_ops = {name for t in splits["test"] for name, _ in t.metadata["steps"]}
    assert test_ops <= seen


def _clauses(description: str) -> list[str]:
    text = description[0].lower() + description[1:-1]
    parts = text.split(", ")
    parts[-1] = parts[-1].removeprefix("then ") if len(parts) > 1 else parts[-1]
    return parts


def _clause_texts(op: dsl.Op, param) -> list[str]:
    return [phrase.format(**op.slots(param, "")) for phrase in op.phrases]


def test_every_clause_names_one_step():
    """Each phrasing of each (op, parameter) is a distinct, comma-free clause, so a
    description determines its program."""
    owner: dict[str, dsl.Step] = {}
    for op in dsl.OPS:
        for param in op.params:
            for text in _clause_texts(op, param):
                assert ", " not in text and text not in owner, (text, owner.get(text))
                owner[text] = (op.name, param)


def test_test_split_is_solvable_by_composing_training_clauses(splits):
    """A lookup table of clause -> step read off the train split alone, composed clause by
    clause, reproduces the reference of every held-out task whose clauses all occur in
    train (nearly all of them): held-out programs are new compositions of seen parts."""
    table: dict[str, set] = {}
    for task in splits["train"]:
        steps = dsl.program_from_json(task.metadata["steps"])
        clauses = _clauses(task.metadata["description"])
        assert len(clauses) == len(steps)
        for clause, step in zip(clauses, steps):
            table.setdefault(clause, set()).add(step)
    assert all(len(steps) == 1 for steps in table.values())
    solved = 0
    for task in splits["test"]:
        clauses = _clauses(task.prompt[3:].split("\n")[0])
        if all(c in table for c in clauses):
            program = tuple(next(iter(table[c])) for c in clauses)
            assert dsl.render_body(program) == task.reference, task.task_id
            solved += 1
    assert solved >= 0.97 * len(splits["test"]), solved


def test_program_counts():
    """The closed-form count agrees with enumeration at small depth; the space is large."""
    for depth in (1, 2):
        programs = list(synthetic.enumerate_programs(depth))
        assert len(programs) == len(set(programs)) == synthetic.count_programs(depth)
        for p in programs[:: max(1, len(programs) // 200)]:
            dsl.validate(p)
    assert synthetic.count_programs(1) == 190
    assert synthetic.count_programs(4) > 10_000_000
    total = sum(synthetic.count_programs(d) for d in range(1, 5))
    assert total > 30_000_000


def test_many_distinct_tasks_and_depths(splits):
    tasks = [t for ts in splits.values() for t in ts]
    assert len({t.task_id for t in tasks}) == len(tasks)
    assert len({t.metadata["program"] for t in tasks}) == len(tasks)
    depths = {t.difficulty for t in tasks}
    assert depths == {1, 2, 3, 4}
    shallow = make_splits(300, 0, 0, seed=0, max_depth=2)
    assert {t.difficulty for t in shallow["train"]} == {1, 2}
    deep = make_splits(100, 0, 0, seed=0, config=GeneratorConfig(min_depth=3, max_depth=4))
    assert {t.difficulty for t in deep["train"]} == {3, 4}


def test_small_space_raises_clearly():
    with pytest.raises(RuntimeError, match="too small"):
        make_splits(1000, 0, 0, seed=0, max_depth=1)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="depth_weights"):
        GeneratorConfig(max_depth=3, depth_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="holdout"):
        GeneratorConfig(holdout="nope")
    with pytest.raises(ValueError, match="min_depth"):
        GeneratorConfig(min_depth=0)


def test_jsonl_round_trip_of_generated_tasks(tmp_path, splits):
    from rlfb_jax.data.tasks import load_jsonl, save_jsonl

    tasks = [t for ts in splits.values() for t in ts]
    assert any(name == "replace" for t in tasks for name, _ in t.metadata["steps"])
    save_jsonl(tasks, tmp_path / "all.jsonl")
    assert load_jsonl(tmp_path / "all.jsonl") == tasks


def test_cli_writes_splits_and_stats(tmp_path):
    out = tmp_path / "synth"
    assert synthetic.main(["--out", str(out), "--num-train", "50", "--seed", "3", "--check"]) == 0
    from rlfb_jax.data.tasks import load_jsonl

    expected = make_splits(50, 5, 5, seed=3)
    for name in synthetic.SPLITS:
        assert load_jsonl(out / f"{name}.jsonl") == expected[name]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["train"]["num_tasks"] == 50 and stats["test"]["num_tasks"] == 5
    assert stats["reference_check"]["pass_rate"] == 1.0
    assert stats["reference_check"]["jobs"] == 60 * 4  # assert, call, stdio, visible


def test_reference_check_reports_failures(splits):
    import dataclasses

    from rlfb_jax.data.reference_check import check_references

    good = splits["test"][:5]
    bad = dataclasses.replace(good[0], task_id="broken", reference="    return 0\n")
    report = check_references(good + [bad])
    assert report["jobs"] == 24 and report["passed"] == 20
    assert {f[0] for f in report["failures"]} == {"broken", "broken#visible"}
    assert {f[1] for f in report["failures"]} == {"assert", "call", "stdio"}


def test_data_config_example_options_reach_the_tasks():
    from rlfb_jax.algos import datasets, sft

    c = sft.default_config()
    c.data.num_train, c.data.num_valid, c.data.num_test = 20, 2, 2
    loose = datasets.synthetic_tasks(c)["test"]
    c.data.examples_in_tests = True
    strict = datasets.synthetic_tasks(c)["test"]
    assert [t.tests for t in strict] == [t.examples + t.tests for t in loose]
    c.data.examples_in_tests, c.data.example_outputs = False, False
    inputs_only = datasets.synthetic_tasks(c)["test"]
    assert [t.tests for t in inputs_only] == [t.tests for t in strict]
    assert all(t.example_calls == () and "==" not in t.examples[0] for t in inputs_only)
    c.data.example_outputs, c.data.code_variants = True, True
    varied = datasets.synthetic_tasks(c)["train"]
    c.data.code_variants = False
    canonical = datasets.synthetic_tasks(c)["train"]
    assert [t.task_id for t in varied] == [t.task_id for t in canonical]
    assert [t.reference for t in varied] != [t.reference for t in canonical]
