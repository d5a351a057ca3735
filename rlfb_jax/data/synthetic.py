"""Synthetic Python function-synthesis tasks from the DSL in `rlfb_jax.data.dsl`.

Each task is a random well-typed pipeline program of depth 1-4 (its difficulty), rendered as
a one-argument function ``f``. Prompt format (the completion is the function body)::

    \"\"\"Add 3 to each element, keep the even elements, then return the sum.
    >>> f([1, 2, 3])
    10
    >>> f([5, -3])
    8
    \"\"\"
    def f(xs):

Reference completion (then ``<eos>`` in `format_example`)::

        xs = [x + 3 for x in xs]
        xs = [x for x in xs if x % 2 == 0]
        return sum(xs)

Tests: the visible examples (2 by default) appear in the prompt; 8 further hidden
input/output pairs (distinct inputs) are stored in assert, stdin/stdout and call form.
With ``GeneratorConfig(example_outputs=False)`` the prompt lists the example calls without
their outputs (``>>> f([1, 2, 3])``) and those pairs are tested too.

Splits are disjoint by program: a program's split is a fixed function of the hash of its
name-normalized statements (`split_key`, a coarsening of `normalized_ast`: the AST with
bound names renamed by first appearance), 80% train / 10% validation / 10% test. So a
program lands in the same split whatever the seed or sizes, and no test program's
normalized AST occurs in train. With ``holdout="skeleton"`` the hash is of the op names
without parameters instead (held-out op combinations, a harder test split). Every op
occurs in a train split of a few thousand tasks, and every clause (phrasing with its
parameter, 378 in all) in one of 20k, so held-out programs are new compositions of parts
seen in training.

Generation is deterministic: draw ``i`` of seed ``s`` uses its own ``random.Random(f"{s}:{i}")``,
so the train list of a small call is a prefix of that of a larger call with the same seed.
Rejected draws (duplicate program, a step with no observable effect on the inputs,
constant output, too few inputs on which the program is defined, prompt or reference too
long) are skipped.

Size of the world (`count_programs`, well-typed programs before those filters): 190 of
depth 1, 10,472 of depth 2, 592,799 of depth 3, 34,310,427 of depth 4; about 96% / 69% /
43% / 25% of drawn programs of each depth pass the filters. Shallow depths run out first:
a 20k-task train split is about 1% / 21% / 47% / 31% depth 1 / 2 / 3 / 4.

CLI: ``python -m rlfb_jax.data.synthetic --out DIR --num-train N --seed S [--check]`` writes
``DIR/{train,validation,test}.jsonl`` and ``DIR/stats.json``; ``--check`` also runs every
reference against all its tests (`rlfb_jax.data.reference_check`) and fails unless all pass.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import dataclasses
import functools
import hashlib
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from rlfb_jax.data import dsl
from rlfb_jax.data.tasks import Task, call_to_assert, call_to_stdio, save_jsonl

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Knobs of the synthetic world.

    depth_weights: relative weight of each depth ``min_depth..max_depth`` (default uniform).
    num_examples: visible examples in the prompt; num_tests: hidden tests (distinct inputs).
    examples_in_tests: judge programs on the visible examples too (``tests`` = examples +
      hidden tests, as HumanEval and MBPP do). Off, a program that contradicts the prompt's
      examples can pass: the examples take the inputs with distinct outputs, so the hidden
      tests alone are weaker (8.5% of the synthetic base's passing samples fail an example).
      Prompts, references and the random stream are the same either way.
    example_outputs: show the visible examples' outputs in the prompt (doctest form). Off,
      the prompt shows the example calls only (``>>> f([1, 2, 3])``), the task's
      ``examples`` are those bare calls (no ``example_calls``), and their input/output pairs
      join the hidden tests. Execution results on the visible inputs are then evidence to
      weigh, not answers to check: LEVER's setting (NL-to-SQL, table QA), where programs
      with equal results can be pooled. The same tasks either way (the length filter
      measures the prompt with outputs).
    code_variants: write each reference with element variables drawn per program
      (`dsl.render_steps` with an rng: ``xs = [v + 3 for v in xs]`` for
      ``xs = [x + 3 for x in xs]``), as real code varies. A model trained on them spreads
      one behavior over several strings, which is what pooling equal execution results
      (LEVER) and AST-level dedupe address; with canonical names a behavior is nearly always
      one string. The same tasks and splits either way (filters measure the canonical text).
    holdout: ``"program"`` (split by normalized AST) or ``"skeleton"`` (by op names).
    split_fractions: (train, validation, test) shares of the program space.
    """

    max_depth: int = 4
    min_depth: int = 1
    depth_weights: tuple[float, ...] | None = None
    num_examples: int = 2
    num_tests: int = 8
    examples_in_tests: bool = False
    example_outputs: bool = True
    code_variants: bool = False
    holdout: str = "program"
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    entry_point: str = "f"
    max_list_len: int = 4  # of generated inputs
    # Tasks with longer texts are rejected (about 96 / 64 tokens with the default tokenizer).
    max_prompt_chars: int = 220
    max_reference_chars: int = 150

    def __post_init__(self):
        if not 1 <= self.min_depth <= self.max_depth:
            raise ValueError(f"need 1 <= min_depth <= max_depth, got {self.min_depth}, "
                             f"{self.max_depth}")
        n = self.max_depth - self.min_depth + 1
        if self.depth_weights is not None and len(self.depth_weights) != n:
            raise ValueError(f"depth_weights needs {n} entries (depths {self.min_depth}.."
                             f"{self.max_depth}), got {len(self.depth_weights)}")
        if self.holdout not in ("program", "skeleton"):
            raise ValueError(f"holdout must be 'program' or 'skeleton', got {self.holdout!r}")
        if abs(sum(self.split_fractions) - 1.0) > 1e-9 or min(self.split_fractions) < 0:
            raise ValueError(f"split_fractions must be >= 0 and sum to 1: {self.split_fractions}")
        if self.num_tests < 1 or self.num_examples < 0:
            raise ValueError("need num_tests >= 1 and num_examples >= 0")


# ---------------------------------------------------------------------------- programs


def sample_program(rng: random.Random, depth: int) -> dsl.Program:
    """A random well-typed program of exactly ``depth`` steps (bool only as the last type).

    Consecutive repeats of an idempotent op or an involution are never drawn.
    """
    current = rng.choice(dsl.INPUT_TYPES)
    steps: list[dsl.Step] = []
    for i in range(depth):
        last = i == depth - 1
        while True:
            op = rng.choice(dsl.OPS_BY_INPUT[current])
            if not last and op.out_type == dsl.BOOL:
                continue
            if steps and steps[-1][0] == op.name and (op.idempotent or op.involution):
                continue
            break
        steps.append((op.name, rng.choice(op.params)))
        current = op.out_type
    return tuple(steps)


def count_programs(depth: int) -> int:
    """The number of well-typed programs of exactly ``depth`` steps (counting parameters).

    The same rules as `sample_program` (bool last; no repeated idempotent op/involution),
    before the behavioural filters of task generation.
    """
    # ways[t][name]: programs of the current length ending in op ``name`` with output type t.
    ways: dict[str, int] = {}
    for op in dsl.OPS:
        if op.in_type in dsl.INPUT_TYPES and (depth == 1 or op.out_type != dsl.BOOL):
            ways[op.name] = len(op.params)
    for i in range(1, depth):
        last = i == depth - 1
        nxt: dict[str, int] = {}
        for op in dsl.OPS:
            if not last and op.out_type == dsl.BOOL:
                continue
            total = 0
            for prev_name, count in ways.items():
                prev = dsl.OPS_BY_NAME[prev_name]
                if prev.out_type != op.in_type:
                    continue
                if prev_name == op.name and (op.idempotent or op.involution):
                    continue
                total += count
            if total:
                nxt[op.name] = total * len(op.params)
        ways = nxt
    return sum(ways.values())


def enumerate_programs(depth: int) -> Iterator[dsl.Program]:
    """All programs counted by `count_programs` (use for depth <= 2; the space is large)."""

    def extend(prefix: tuple, current: str | None, remaining: int):
        if remaining == 0:
            yield prefix
            return
        candidates = dsl.OPS_BY_INPUT[current] if current else [
            op for op in dsl.OPS if op.in_type in dsl.INPUT_TYPES]
        for op in candidates:
            if remaining > 1 and op.out_type == dsl.BOOL:
                continue
            if prefix and prefix[-1][0] == op.name and (op.idempotent or op.involution):
                continue
            for p in op.params:
                yield from extend(prefix + ((op.name, p),), op.out_type, remaining - 1)

    yield from extend((), None, depth)


_BUILTIN_NAMES = frozenset(dir(builtins))


def _dump(node: Any, names: dict[str, str]) -> str:
    """A compact AST dump with non-builtin identifiers renamed through ``names``."""

    def canon(name: str) -> str:
        if name in _BUILTIN_NAMES:
            return name
        return names.setdefault(name, f"v{len(names)}")

    def dump(node) -> str:
        if isinstance(node, ast.AST):
            if isinstance(node, ast.expr_context):
                return ""
            kind = type(node).__name__
            if isinstance(node, ast.Name):
                return f"Name({canon(node.id)})"
            if isinstance(node, ast.arg):
                return f"arg({canon(node.arg)},{dump(node.annotation)})"
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                first = canon(node.name)
                fields = [first] + [dump(getattr(node, f, None)) for f in node._fields[1:]]
            else:
                fields = [dump(getattr(node, f, None)) for f in node._fields]
            return kind + "(" + ",".join(fields) + ")"
        if isinstance(node, list):
            return "[" + ",".join(dump(x) for x in node) + "]"
        return repr(node)

    return dump(node)


def normalized_ast(code: str) -> str:
    """A dump of the AST of ``code`` with identifiers renamed by order of first appearance.

    Function, argument and variable names become ``v0, v1, ...`` (builtins such as ``sum``
    or ``len`` keep their names); constants, operators and structure are kept, and
    contexts and positions are dropped. Two programs that differ only in the names they
    bind map to the same string.
    """
    return _dump(ast.parse(code), {})


@functools.lru_cache(maxsize=65536)
def _statements_key(chunk: str) -> str:
    return ";".join(_dump(stmt, {}) for stmt in ast.parse(chunk).body)


def split_key(program: dsl.Program) -> str:
    """The normalized statements of a program's body, each renamed on its own.

    Coarser than `normalized_ast` of the whole function (names are not linked across
    statements), so programs with equal normalized ASTs have equal keys and share a
    split; and fast, since each step's statements are normalized once and cached.
    """
    return "|".join(_statements_key(chunk) for chunk in dsl.render_steps(program))


def program_code(program: dsl.Program, entry_point: str = "f") -> str:
    """The whole reference function of ``program``."""
    return dsl.render_signature(program, entry_point) + dsl.render_body(program)


def split_of(program: dsl.Program, config: GeneratorConfig = GeneratorConfig()) -> str:
    """The split a program belongs to (a fixed function of the program; see module doc)."""
    if config.holdout == "skeleton":
        key = dsl.skeleton_key(program)
    else:
        key = split_key(program)
    u = int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2.0**64
    f_train, f_valid, _ = config.split_fractions
    if u < f_train:
        return "train"
    return "validation" if u < f_train + f_valid else "test"


# ---------------------------------------------------------------------------- inputs and tests


_LETTERS = "abcdeilnorst"


def sample_input(rng: random.Random, type_: str, max_list_len: int = 4) -> Any:
    """A small random input of DSL type ``type_`` (int, list or str)."""
    if type_ == dsl.INT:
        return rng.randint(0, 9) if rng.random() < 0.5 else rng.randint(-20, 40)
    if type_ == dsl.LIST:
        length = rng.choice([0] + [rng.randint(1, max_list_len)] * 6)
        return [rng.randint(-5, 9) for _ in range(length)]
    if type_ == dsl.STR:
        words = []
        for _ in range(rng.choice((1, 1, 1, 2))):
            word = "".join(rng.choice(_LETTERS) for _ in range(rng.randint(1, 5)))
            if rng.random() < 0.3:
                i = rng.randrange(len(word))
                word = word[:i] + word[i].upper() + word[i + 1:]
            words.append(word)
        s = " ".join(words)
        if rng.random() < 0.1:
            s = " " + s + " "
        return s
    raise ValueError(f"no inputs of type {type_!r}")


def _outputs(program: dsl.Program, inputs: list[Any]) -> list[Any] | None:
    out = []
    for x in inputs:
        try:
            out.append(dsl.run(program, x))
        except dsl.Rejected:
            return None
    return out


def sample_tests(
    rng: random.Random, program: dsl.Program, count: int, max_list_len: int = 4
) -> list[tuple[Any, Any]] | None:
    """``count`` (input, output) pairs with distinct inputs, or None if the program is rejected.

    Rejected: fewer than ``count`` defined inputs found in ``8 * count`` draws; a constant
    output; or a type-preserving step that can be removed without changing any output
    (the step is unobservable, so its description would be untestable).
    """
    in_type = dsl.input_type(program)
    pairs: list[tuple[Any, Any]] = []
    seen: set[str] = set()
    for _ in range(8 * count):
        x = sample_input(rng, in_type, max_list_len)
        key = repr(x)
        if key in seen:
            continue
        seen.add(key)
        try:
            y = dsl.run(program, x)
        except dsl.Rejected:
            continue
        pairs.append((x, y))
        if len(pairs) == count:
            break
    else:
        return None
    outputs = [y for _, y in pairs]
    if len({repr(y) for y in outputs}) < 2:
        return None
    inputs = [x for x, _ in pairs]
    for i, (name, _) in enumerate(program):
        op = dsl.OPS_BY_NAME[name]
        if op.in_type == op.out_type and len(program) > 1:
            if _outputs(program[:i] + program[i + 1:], inputs) == outputs:
                return None
    return pairs


def _pick_visible(pairs: list, k: int) -> tuple[list, list]:
    """Splits pairs into k visible and the rest hidden, preferring visible pairs whose
    outputs differ (more informative examples); order is otherwise kept."""
    visible: list = []
    outputs: set[str] = set()
    for pair in pairs:
        if len(visible) < k and repr(pair[1]) not in outputs:
            visible.append(pair)
            outputs.add(repr(pair[1]))
    for pair in pairs:
        if len(visible) >= k:
            break
        if pair not in visible:
            visible.append(pair)
    hidden = [p for p in pairs if p not in visible]
    return visible, hidden


def _example_text(entry_point: str, x: Any, y: Any) -> str:
    return f">>> {entry_point}({x!r})\n{y!r}\n"


def make_task(
    program: dsl.Program,
    rng: random.Random,
    config: GeneratorConfig = GeneratorConfig(),
    split: str | None = None,
) -> Task | None:
    """The task of ``program`` (tests and phrasing drawn from ``rng``), or None if rejected."""
    ep = config.entry_point
    pairs = sample_tests(rng, program, config.num_examples + config.num_tests, config.max_list_len)
    if pairs is None:
        return None
    visible, hidden = _pick_visible(pairs, config.num_examples)
    shown = config.example_outputs
    judged = visible + hidden if config.examples_in_tests or not shown else hidden
    description = dsl.describe(program, rng.choice)
    head, tail = '"""' + description + "\n", '"""\n' + dsl.render_signature(program, ep)
    with_outputs = "".join(_example_text(ep, x, y) for x, y in visible)
    reference = dsl.render_body(program)
    # Measured with outputs and canonical names, so that every rendering keeps the same tasks.
    if (len(head + with_outputs + tail) > config.max_prompt_chars
            or len(reference) > config.max_reference_chars):
        return None
    key = dsl.program_key(program)
    if config.code_variants:  # its own stream, so the task stream is unchanged
        reference = dsl.render_body(program, rng=random.Random("names:" + key))
    calls = [f"{ep}({x!r})" for x, _ in visible]
    prompt = head + (with_outputs if shown else "".join(f">>> {c}\n" for c in calls)) + tail
    split = split or split_of(program, config)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    in_t, out_t = dsl.input_type(program), dsl.output_type(program)
    return Task(
        task_id=f"synthetic/{digest}",
        prompt=prompt,
        entry_point=ep,
        reference=reference,
        tests=tuple(call_to_assert(ep, (x,), y) for x, y in judged),
        stdio_tests=tuple(call_to_stdio((x,), y) for x, y in judged),
        call_tests=tuple(((x,), y) for x, y in judged),
        examples=(tuple(call_to_assert(ep, (x,), y) for x, y in visible) if shown
                  else tuple(calls)),
        example_calls=tuple(((x,), y) for x, y in visible) if shown else (),
        difficulty=len(program),
        family=f"synthetic/{in_t}->{out_t}",
        split=split,
        metadata={"program": key, "skeleton": dsl.skeleton_key(program),
                  "steps": dsl.program_to_json(program), "description": description},
    )


# ---------------------------------------------------------------------------- streams and splits


def _depth(rng: random.Random, config: GeneratorConfig) -> int:
    depths = list(range(config.min_depth, config.max_depth + 1))
    if config.depth_weights is None:
        return rng.choice(depths)
    return rng.choices(depths, weights=config.depth_weights)[0]


def make_splits(
    num_train: int,
    num_valid: int,
    num_test: int,
    seed: int = 0,
    max_depth: int = 4,
    config: GeneratorConfig | None = None,
    max_draws: int | None = None,
) -> dict[str, list[Task]]:
    """``{"train": [...], "validation": [...], "test": [...]}`` of distinct-program tasks.

    ``max_depth`` overrides ``config.max_depth``. Raises RuntimeError if the program space
    (e.g. depth 1 only: a few hundred programs) cannot fill the requested sizes within
    ``max_draws`` draws (default ``50 * total + 10_000``).
    """
    config = dataclasses.replace(config or GeneratorConfig(), max_depth=max_depth)
    wanted = {"train": num_train, "validation": num_valid, "test": num_test}
    out: dict[str, list[Task]] = {s: [] for s in SPLITS}
    seen: set[dsl.Program] = set()
    total = sum(wanted.values())
    max_draws = max_draws if max_draws is not None else 50 * total + 10_000
    draw = 0
    while any(len(out[s]) < wanted[s] for s in SPLITS):
        if draw >= max_draws:
            have = {s: len(v) for s, v in out.items()}
            raise RuntimeError(
                f"only {have} distinct tasks after {draw} draws (wanted {wanted}); the program "
                f"space of depths {config.min_depth}..{config.max_depth} is too small")
        rng = random.Random(f"{seed}:{draw}")
        draw += 1
        program = sample_program(rng, _depth(rng, config))
        if program in seen:
            continue
        split = split_of(program, config)
        if len(out[split]) >= wanted[split]:
            continue
        seen.add(program)  # rejected programs stay rejected for this seed
        task = make_task(program, rng, config, split)
        if task is not None:
            out[split].append(task)
    return out


def iter_tasks(
    seed: int = 0, config: GeneratorConfig = GeneratorConfig(), split: str | None = None
) -> Iterator[Task]:
    """An endless stream of distinct-program tasks (of one split, if given)."""
    seen: set[dsl.Program] = set()
    draw = 0
    while True:
        rng = random.Random(f"{seed}:{draw}")
        draw += 1
        program = sample_program(rng, _depth(rng, config))
        if program in seen:
            continue
        seen.add(program)
        s = split_of(program, config)
        if split is not None and s != split:
            continue
        task = make_task(program, rng, config, s)
        if task is not None:
            yield task


def split_stats(tasks: list[Task]) -> dict[str, Any]:
    """Counts by difficulty and family, and mean prompt/reference lengths in characters."""
    n = max(len(tasks), 1)
    return {
        "num_tasks": len(tasks),
        "by_difficulty": dict(sorted(Counter(t.difficulty for t in tasks).items())),
        "by_family": dict(sorted(Counter(t.family for t in tasks).items())),
        "mean_prompt_chars": sum(len(t.prompt) for t in tasks) / n,
        "mean_reference_chars": sum(len(t.reference) for t in tasks) / n,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rlfb_jax.data.synthetic",
        description="Write synthetic task splits as DIR/{train,validation,test}.jsonl + stats.json.")
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.add_argument("--num-train", type=int, default=20_000)
    parser.add_argument("--num-valid", type=int, default=None, help="default: num_train // 10")
    parser.add_argument("--num-test", type=int, default=None, help="default: num_train // 10")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-depth", type=int, default=4)
    parser.add_argument("--min-depth", type=int, default=1)
    parser.add_argument("--num-examples", type=int, default=2)
    parser.add_argument("--num-tests", type=int, default=8)
    parser.add_argument("--holdout", choices=("program", "skeleton"), default="program")
    parser.add_argument("--check", action="store_true",
                        help="run every reference against its tests in a local subprocess "
                             "(trusted code) and record the pass rate in stats.json")
    args = parser.parse_args(argv)
    num_valid = args.num_train // 10 if args.num_valid is None else args.num_valid
    num_test = args.num_train // 10 if args.num_test is None else args.num_test
    config = GeneratorConfig(min_depth=args.min_depth, max_depth=args.max_depth,
                             num_examples=args.num_examples, num_tests=args.num_tests,
                             holdout=args.holdout)
    start = time.perf_counter()
    splits = make_splits(args.num_train, num_valid, num_test, args.seed, args.max_depth, config)
    seconds = time.perf_counter() - start
    os.makedirs(args.out, exist_ok=True)
    stats: dict[str, Any] = {"seed": args.seed, "config": dataclasses.asdict(config),
                             "generation_seconds": round(seconds, 3)}
    for name, tasks in splits.items():
        save_jsonl(tasks, os.path.join(args.out, f"{name}.jsonl"))
        stats[name] = split_stats(tasks)
    total = sum(len(t) for t in splits.values())
    print(f"wrote {total} tasks to {args.out} in {seconds:.1f}s "
          f"({total / max(seconds, 1e-9):.0f} tasks/s)", file=sys.stderr)
    ok = True
    if args.check:
        from rlfb_jax.data.reference_check import check_references

        report = check_references(t for tasks in splits.values() for t in tasks)
        stats["reference_check"] = report
        ok = report["pass_rate"] == 1.0
        print(f"references: {report['passed']}/{report['jobs']} jobs passed", file=sys.stderr)
        for failure in report["failures"][:10]:
            print("  FAILED", *failure, file=sys.stderr)
    with open(os.path.join(args.out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
