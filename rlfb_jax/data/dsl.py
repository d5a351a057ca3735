"""A typed pipeline DSL over ints, lists of ints and strings, for synthetic Python tasks.

A *program* is a tuple of steps ``((op_name, param), ...)`` applied left to right to one
argument; each step maps a value of its op's input type to its output type, and the output
type of one step is the input type of the next. The composition depth (the number of
steps, 1-4) is the task's difficulty.

Types and the variable that holds a value of that type in generated code:

    int -> ``n``     list (of ints) -> ``xs``     str -> ``s``     bool -> ``b`` (final only)

Every op has three faces that are kept in lockstep:

* ``code``: a Python expression template over the input variable ``{v}`` (or, for the
  product fold, a block of statements assigning ``{o}``); e.g. ``[x + {k} for x in {v}]``.
* ``phrases``: a few interchangeable English phrasings with the same slots, e.g.
  ``"add {k} to each element"``; descriptions are these clauses joined in order with
  ``", "`` and ``", then "`` (phrases contain no commas, so clauses are easy to delimit).
* ``fn``: the same computation in Python, used to compute test outputs quickly.

Some ops also list ``alt`` templates that compute the same (``{k} + {v}`` for ``{v} + {k}``);
`render_steps` draws among them, and among element-variable names, when given an rng.

Rendered function (one line per step, the last one returns; this regularity is deliberate so
a small model can learn the clause-to-line mapping and compose held-out programs)::

    def f(xs):
        xs = [x + 3 for x in xs]
        xs = [x for x in xs if x % 2 == 0]
        return sum(xs)

String parameters appear in code and text with Python quotes (``'a'``), so they can be
copied verbatim from the description.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

INT, LIST, STR, BOOL = "int", "list", "str", "bool"
TYPES = (INT, LIST, STR, BOOL)
INPUT_TYPES = (INT, LIST, STR)  # bool values are results only
VAR = {INT: "n", LIST: "xs", STR: "s", BOOL: "b"}

# Bounds that keep every value small enough to print in a short prompt. An op that would
# build a larger value raises `Rejected`; the generator then draws another input.
MAX_LIST_LEN = 8
MAX_STR_LEN = 16
MAX_ABS_INT = 99_999


class Rejected(ValueError):
    """An input on which a program is undefined or produces an oversized value."""


Step = tuple[str, Any]
Program = tuple[Step, ...]


@dataclasses.dataclass(frozen=True)
class Op:
    """One DSL operation. ``params`` lists its parameter values (``(None,)``: no parameter)."""

    name: str
    in_type: str
    out_type: str
    code: str | tuple[str, ...]  # expression, or block lines assigning {o}
    phrases: tuple[str, ...]
    fn: Callable[[Any, Any], Any]
    params: tuple[Any, ...] = (None,)
    alt: tuple[str, ...] = ()  # equivalent expression templates (`render_steps` with an rng)
    idempotent: bool = False  # applying it twice in a row equals applying it once
    involution: bool = False  # applying it twice in a row is the identity

    def slots(self, param: Any, v: str, o: str = "") -> dict[str, str]:
        """Template slots: ``{v}`` input var, ``{o}`` output var, ``{k}``/``{a}``/``{b}``."""
        s = {"v": v, "o": o}
        if isinstance(param, tuple):
            s["a"], s["b"] = repr(param[0]), repr(param[1])
        elif param is not None:
            s["k"] = repr(param)
        return s


def _check(value: Any) -> Any:
    t = type(value)
    if t is list:
        if len(value) > MAX_LIST_LEN:
            raise Rejected("list too long")
        if value and (max(value) > MAX_ABS_INT or min(value) < -MAX_ABS_INT):
            raise Rejected("element too large")
    elif t is int:
        if abs(value) > MAX_ABS_INT:
            raise Rejected("int too large")
    elif t is str and len(value) > MAX_STR_LEN:
        raise Rejected("string too long")
    return value


def _nonempty(xs: Sequence[Any]) -> Sequence[Any]:
    if not xs:
        raise Rejected("empty sequence")
    return xs


def _bounded_range(n: int, start: int = 0) -> list[int]:
    if n - start > MAX_LIST_LEN:
        raise Rejected("range too long")
    return list(range(start, n))


def _product(xs: list[int]) -> int:
    p = 1
    for x in xs:
        p *= x
        if abs(p) > MAX_ABS_INT:
            raise Rejected("product too large")
    return p


def _repeat(s: str, n: int) -> str:
    if len(s) * max(n, 0) > MAX_STR_LEN:
        raise Rejected("string too long")
    return s * n


SMALL = (1, 2, 3, 4, 5)
CHARS = ("a", "e", "o", "s", "t")


def _ops() -> list[Op]:
    L, N, S, B = LIST, INT, STR, BOOL
    ops = [
        # ---- list -> list: maps
        Op("add", L, L, "[x + {k} for x in {v}]",
           ("add {k} to each element", "increase every number by {k}"),
           lambda xs, k: [x + k for x in xs], params=(1, 2, 3, 5, 10)),
        Op("sub", L, L, "[x - {k} for x in {v}]",
           ("subtract {k} from each element", "decrease every number by {k}"),
           lambda xs, k: [x - k for x in xs], params=SMALL),
        Op("mul", L, L, "[x * {k} for x in {v}]",
           ("multiply each element by {k}", "multiply every number by {k}"),
           lambda xs, k: [x * k for x in xs], params=(2, 3, 4, 5, 10)),
        Op("floordiv", L, L, "[x // {k} for x in {v}]",
           ("divide each element by {k} rounding down", "floor-divide every number by {k}"),
           lambda xs, k: [x // k for x in xs], params=(2, 3, 4)),
        Op("mod", L, L, "[x % {k} for x in {v}]",
           ("take each element modulo {k}", "replace every number by its remainder mod {k}"),
           lambda xs, k: [x % k for x in xs], params=(2, 3, 4, 5, 10)),
        Op("square", L, L, "[x * x for x in {v}]",
           ("square each element", "replace every number by its square"),
           lambda xs, _: [x * x for x in xs], alt=("[x ** 2 for x in {v}]",)),
        Op("neg", L, L, "[-x for x in {v}]",
           ("negate each element", "flip the sign of every number"),
           lambda xs, _: [-x for x in xs], involution=True),
        Op("abs", L, L, "[abs(x) for x in {v}]",
           ("take the absolute value of each element",
            "replace every number by its absolute value"),
           lambda xs, _: [abs(x) for x in xs], idempotent=True),
        Op("atleast", L, L, "[max(x, {k}) for x in {v}]",
           ("raise each element below {k} to {k}", "replace every number smaller than {k} by {k}"),
           lambda xs, k: [max(x, k) for x in xs], params=(0, 1, 2), idempotent=True,
           alt=("[max({k}, x) for x in {v}]",)),
        Op("halve_even", L, L, "[x // 2 if x % 2 == 0 else x for x in {v}]",
           ("halve the even elements", "divide every even number by 2"),
           lambda xs, _: [x // 2 if x % 2 == 0 else x for x in xs]),
        # ---- list -> list: filters
        Op("keep_gt", L, L, "[x for x in {v} if x > {k}]",
           ("keep the elements greater than {k}", "keep only the numbers above {k}"),
           lambda xs, k: [x for x in xs if x > k], params=(0, 1, 2, 3, 5), idempotent=True),
        Op("keep_lt", L, L, "[x for x in {v} if x < {k}]",
           ("keep the elements less than {k}", "keep only the numbers below {k}"),
           lambda xs, k: [x for x in xs if x < k], params=(0, 1, 2, 3, 5), idempotent=True),
        Op("keep_even", L, L, "[x for x in {v} if x % 2 == 0]",
           ("keep the even elements", "remove the odd numbers"),
           lambda xs, _: [x for x in xs if x % 2 == 0], idempotent=True,
           alt=("[x for x in {v} if not x % 2]",)),
        Op("keep_odd", L, L, "[x for x in {v} if x % 2 == 1]",
           ("keep the odd elements", "remove the even numbers"),
           lambda xs, _: [x for x in xs if x % 2 == 1], idempotent=True),
        Op("remove", L, L, "[x for x in {v} if x != {k}]",
           ("remove every {k}", "drop all occurrences of {k}"),
           lambda xs, k: [x for x in xs if x != k], params=(0, 1, 2, 3), idempotent=True),
        # ---- list -> list: order and slices
        Op("sort", L, L, "sorted({v})",
           ("sort the list", "sort the numbers in ascending order"),
           lambda xs, _: sorted(xs), idempotent=True),
        Op("sort_desc", L, L, "sorted({v}, reverse=True)",
           ("sort the list in descending order", "sort the numbers from largest to smallest"),
           lambda xs, _: sorted(xs, reverse=True), idempotent=True),
        Op("reverse", L, L, "{v}[::-1]",
           ("reverse the list", "reverse the order of the elements"),
           lambda xs, _: xs[::-1], involution=True, alt=("list(reversed({v}))",)),
        Op("unique", L, L, "sorted(set({v}))",
           ("sort the distinct elements", "remove duplicates and sort"),
           lambda xs, _: sorted(set(xs)), idempotent=True),
        Op("take", L, L, "{v}[:{k}]",
           ("keep the first {k} elements", "take the first {k} numbers"),
           lambda xs, k: xs[:k], params=(1, 2, 3, 4), idempotent=True),
        Op("drop", L, L, "{v}[{k}:]",
           ("drop the first {k} elements", "skip the first {k} numbers"),
           lambda xs, k: xs[k:], params=(1, 2, 3)),
        Op("append", L, L, "{v} + [{k}]",
           ("append {k} to the list", "put {k} at the end"),
           lambda xs, k: xs + [k], params=(0, 1, 5)),
        # ---- list -> int: folds and selections
        Op("sum", L, N, "sum({v})",
           ("return the sum", "add up the numbers"),
           lambda xs, _: sum(xs)),
        Op("product", L, N, ("{o} = 1", "for x in {v}:", "    {o} *= x"),
           ("return the product", "multiply the numbers together"),
           lambda xs, _: _product(xs)),
        Op("len", L, N, "len({v})",
           ("count the elements", "return the length of the list"),
           lambda xs, _: len(xs)),
        Op("max", L, N, "max({v})",
           ("return the largest element", "find the maximum"),
           lambda xs, _: max(_nonempty(xs))),
        Op("min", L, N, "min({v})",
           ("return the smallest element", "find the minimum"),
           lambda xs, _: min(_nonempty(xs))),
        Op("first", L, N, "{v}[0]",
           ("return the first element", "take the first number"),
           lambda xs, _: _nonempty(xs)[0]),
        Op("last", L, N, "{v}[-1]",
           ("return the last element", "take the last number"),
           lambda xs, _: _nonempty(xs)[-1]),
        Op("count", L, N, "{v}.count({k})",
           ("count how many times {k} occurs", "count the occurrences of {k}"),
           lambda xs, k: xs.count(k), params=(0, 1, 2)),
        # ---- list -> bool / str
        Op("contains", L, B, "{k} in {v}",
           ("check whether {k} is in the list", "tell whether the list contains {k}"),
           lambda xs, k: k in xs, params=(0, 1, 2, 3),
           alt=("{v}.count({k}) > 0",)),
        Op("is_sorted", L, B, "{v} == sorted({v})",
           ("check whether the list is sorted", "tell whether the numbers are in ascending order"),
           lambda xs, _: xs == sorted(xs)),
        Op("all_pos", L, B, "all(x > 0 for x in {v})",
           ("check whether every element is positive", "tell whether all numbers are above 0"),
           lambda xs, _: all(x > 0 for x in xs)),
        Op("any_even", L, B, "any(x % 2 == 0 for x in {v})",
           ("check whether some element is even", "tell whether any number is even"),
           lambda xs, _: any(x % 2 == 0 for x in xs)),
        Op("join", L, S, "''.join(str(x) for x in {v})",
           ("join the numbers into a string", "concatenate the numbers as text"),
           lambda xs, _: "".join(str(x) for x in xs)),
        Op("join_comma", L, S, "','.join(str(x) for x in {v})",
           ("join the numbers with commas", "write the numbers separated by commas"),
           lambda xs, _: ",".join(str(x) for x in xs)),
        # ---- int -> int
        Op("iadd", N, N, "{v} + {k}",
           ("add {k} to the number", "increase it by {k}"),
           lambda n, k: n + k, params=(1, 2, 3, 5, 10), alt=("{k} + {v}",)),
        Op("isub", N, N, "{v} - {k}",
           ("subtract {k} from the number", "decrease it by {k}"),
           lambda n, k: n - k, params=SMALL),
        Op("imul", N, N, "{v} * {k}",
           ("multiply the number by {k}", "multiply it by {k}"),
           lambda n, k: n * k, params=(2, 3, 4, 5, 10), alt=("{k} * {v}",)),
        Op("ifloordiv", N, N, "{v} // {k}",
           ("divide the number by {k} rounding down", "floor-divide it by {k}"),
           lambda n, k: n // k, params=(2, 3, 4, 10)),
        Op("imod", N, N, "{v} % {k}",
           ("take the number modulo {k}", "replace it by its remainder mod {k}"),
           lambda n, k: n % k, params=(2, 3, 4, 5, 10)),
        Op("isquare", N, N, "{v} * {v}",
           ("square the number", "multiply it by itself"),
           lambda n, _: n * n, alt=("{v} ** 2",)),
        Op("ineg", N, N, "-{v}",
           ("negate the number", "flip its sign"),
           lambda n, _: -n, involution=True),
        Op("iabs", N, N, "abs({v})",
           ("take the absolute value", "drop the sign of the number"),
           lambda n, _: abs(n), idempotent=True),
        Op("imax", N, N, "max({v}, {k})",
           ("raise the number to at least {k}", "replace it by {k} if it is smaller"),
           lambda n, k: max(n, k), params=(0, 1, 5), idempotent=True,
           alt=("max({k}, {v})",)),
        Op("imin", N, N, "min({v}, {k})",
           ("cap the number at {k}", "replace it by {k} if it is larger"),
           lambda n, k: min(n, k), params=(0, 5, 10), idempotent=True,
           alt=("min({k}, {v})",)),
        Op("digit_sum", N, N, "sum(int(d) for d in str(abs({v})))",
           ("sum the digits of the number", "add up its digits"),
           lambda n, _: sum(int(d) for d in str(abs(n)))),
        Op("collatz", N, N, "{v} // 2 if {v} % 2 == 0 else {v} * 3 + 1",
           ("halve the number if it is even or else triple it and add 1",
            "divide it by 2 when even and otherwise multiply it by 3 and add 1"),
           lambda n, _: n // 2 if n % 2 == 0 else n * 3 + 1),
        # ---- int -> list / str / bool
        Op("range", N, L, "list(range({v}))",
           ("list the numbers from 0 below it", "count from 0 to one below it"),
           lambda n, _: _bounded_range(n)),
        Op("range1", N, L, "list(range(1, {v} + 1))",
           ("list the numbers from 1 up to it", "count from 1 to it"),
           lambda n, _: _bounded_range(n + 1, 1)),
        Op("digits", N, L, "[int(d) for d in str(abs({v}))]",
           ("list the digits of the number", "split it into its digits"),
           lambda n, _: [int(d) for d in str(abs(n))]),
        Op("to_str", N, S, "str({v})",
           ("convert the number to a string", "write it as text"),
           lambda n, _: str(n)),
        Op("repeat", N, S, "{k} * {v}",
           ("repeat {k} that many times", "make a string of that many copies of {k}"),
           lambda n, k: _repeat(k, n), params=("a", "ab", "x")),
        Op("is_even", N, B, "{v} % 2 == 0",
           ("check whether the number is even", "tell whether it is even"),
           lambda n, _: n % 2 == 0, alt=("not {v} % 2",)),
        Op("is_gt", N, B, "{v} > {k}",
           ("check whether the number is greater than {k}", "tell whether it is above {k}"),
           lambda n, k: n > k, params=(0, 5, 10)),
        Op("divisible", N, B, "{v} % {k} == 0",
           ("check whether the number is divisible by {k}", "tell whether {k} divides it"),
           lambda n, k: n % k == 0, params=(3, 4, 5)),
        # ---- str -> str
        Op("upper", S, S, "{v}.upper()",
           ("convert the string to upper case", "make every letter uppercase"),
           lambda s, _: s.upper(), idempotent=True),
        Op("lower", S, S, "{v}.lower()",
           ("convert the string to lower case", "make every letter lowercase"),
           lambda s, _: s.lower(), idempotent=True),
        Op("swapcase", S, S, "{v}.swapcase()",
           ("swap the case of every letter", "swap uppercase and lowercase letters"),
           lambda s, _: s.swapcase(), involution=True),
        Op("sreverse", S, S, "{v}[::-1]",
           ("reverse the string", "write the characters in reverse order"),
           lambda s, _: s[::-1], involution=True, alt=("''.join(reversed({v}))",)),
        Op("replace", S, S, "{v}.replace({a}, {b})",
           ("replace every {a} with {b}", "change each {a} into {b}"),
           lambda s, p: s.replace(p[0], p[1]),
           params=(("a", "e"), ("e", "a"), ("o", "0"), ("s", "z"), (" ", "-"), ("t", "T"))),
        Op("sremove", S, S, "{v}.replace({k}, '')",
           ("remove every {k}", "delete all {k} characters"),
           lambda s, k: s.replace(k, ""), params=CHARS + (" ",), idempotent=True),
        Op("stake", S, S, "{v}[:{k}]",
           ("keep the first {k} characters", "take the first {k} letters"),
           lambda s, k: s[:k], params=(1, 2, 3, 4), idempotent=True),
        Op("sdrop", S, S, "{v}[{k}:]",
           ("drop the first {k} characters", "skip the first {k} letters"),
           lambda s, k: s[k:], params=(1, 2, 3)),
        Op("suffix", S, S, "{v} + {k}",
           ("append {k}", "add {k} at the end"),
           lambda s, k: s + k, params=("!", "ab", "x")),
        Op("prefix", S, S, "{k} + {v}",
           ("prepend {k}", "put {k} in front"),
           lambda s, k: k + s, params=("!", "ab", "x")),
        Op("strip", S, S, "{v}.strip()",
           ("strip the surrounding spaces", "remove leading and trailing spaces"),
           lambda s, _: s.strip(), idempotent=True),
        Op("ssort", S, S, "''.join(sorted({v}))",
           ("sort the characters", "put the characters in sorted order"),
           lambda s, _: "".join(sorted(s)), idempotent=True),
        Op("double", S, S, "{v} * 2",
           ("repeat the string twice", "concatenate the string with itself"),
           lambda s, _: s * 2, alt=("{v} + {v}",)),
        # ---- str -> int / list / bool
        Op("slen", S, N, "len({v})",
           ("return the length of the string", "count the characters"),
           lambda s, _: len(s)),
        Op("scount", S, N, "{v}.count({k})",
           ("count the occurrences of {k}", "count how many {k} characters there are"),
           lambda s, k: s.count(k), params=CHARS),
        Op("find", S, N, "{v}.find({k})",
           ("find the position of the first {k} or -1", "return the index of {k} or -1 if absent"),
           lambda s, k: s.find(k), params=CHARS),
        Op("words", S, N, "len({v}.split())",
           ("count the words", "return the number of words"),
           lambda s, _: len(s.split())),
        Op("vowels", S, N, "sum(1 for c in {v} if c in 'aeiou')",
           ("count the vowels", "count the letters that are vowels"),
           lambda s, _: sum(1 for c in s if c in "aeiou")),
        Op("word_lens", S, L, "[len(w) for w in {v}.split()]",
           ("list the lengths of the words", "measure the length of each word"),
           lambda s, _: [len(w) for w in s.split()]),
        Op("positions", S, L, "[i for i, c in enumerate({v}) if c == {k}]",
           ("list the positions of {k}", "find every index where {k} occurs"),
           lambda s, k: [i for i, c in enumerate(s) if c == k], params=CHARS),
        Op("is_palindrome", S, B, "{v} == {v}[::-1]",
           ("check whether the string is a palindrome", "tell whether it reads the same reversed"),
           lambda s, _: s == s[::-1]),
        Op("startswith", S, B, "{v}.startswith({k})",
           ("check whether the string starts with {k}", "tell whether it begins with {k}"),
           lambda s, k: s.startswith(k), params=CHARS),
        Op("scontains", S, B, "{k} in {v}",
           ("check whether the string contains {k}", "tell whether {k} occurs in it"),
           lambda s, k: k in s, params=CHARS),
    ]
    return ops


OPS: tuple[Op, ...] = tuple(_ops())
OPS_BY_NAME: dict[str, Op] = {op.name: op for op in OPS}
assert len(OPS_BY_NAME) == len(OPS), "duplicate op names"
OPS_BY_INPUT: dict[str, tuple[Op, ...]] = {
    t: tuple(op for op in OPS if op.in_type == t) for t in TYPES
}


# ---------------------------------------------------------------------------- programs


def input_type(program: Program) -> str:
    return OPS_BY_NAME[program[0][0]].in_type


def output_type(program: Program) -> str:
    return OPS_BY_NAME[program[-1][0]].out_type


def validate(program: Program) -> None:
    """Raises ValueError unless ``program`` is non-empty, well-typed and uses known params."""
    if not program:
        raise ValueError("empty program")
    current = None
    for i, (name, param) in enumerate(program):
        op = OPS_BY_NAME.get(name)
        if op is None:
            raise ValueError(f"step {i}: unknown op {name!r}")
        if param not in op.params:
            raise ValueError(f"step {i}: op {name!r} takes no parameter {param!r}")
        if current is not None and op.in_type != current:
            raise ValueError(f"step {i}: op {name!r} takes {op.in_type}, got {current}")
        if current == BOOL:
            raise ValueError(f"step {i}: nothing may follow a bool-valued step")
        current = op.out_type


def run(program: Program, value: Any) -> Any:
    """Evaluates ``program`` on one input; raises `Rejected` where undefined or oversized.

    Exceptions Python would raise (e.g. ``max([])``) surface as `Rejected` too, because
    the generator uses inputs on which the reference is defined.
    """
    for name, param in program:
        try:
            value = _check(OPS_BY_NAME[name].fn(value, param))
        except (ValueError, IndexError, ZeroDivisionError, TypeError) as e:
            if isinstance(e, Rejected):
                raise
            raise Rejected(f"{name}: {e}") from e
    return value


# Equivalent spellings for `render_steps(..., rng)`: the element variable of comprehensions
# and loops (the first is the canonical one). Names of values that live across lines stay
# canonical: drawing those too left the synthetic base at pass@1 0.07 instead of 0.2 (its
# samples lost track of which name holds the current value).
ELEMENT_CHOICES = ("x", "v", "e")
_ELEMENT = re.compile(r"\bx\b")


def render_steps(program: Program, rng: random.Random | None = None) -> list[str]:
    """The unindented source of each step (a block step spans several lines, and the last
    step ends in a ``return``), joined by `render_body`.

    With ``rng``, each step's template is drawn among the op's code and its ``alt`` ones,
    and its element variable from `ELEMENT_CHOICES`: the same behavior, another string
    (``[v + 3 for v in xs]``, ``3 + n``, ``list(reversed(xs))``). Without, the canonical
    template and ``x``.
    """
    chunks = []
    var = VAR[input_type(program)]
    for i, (name, param) in enumerate(program):
        op = OPS_BY_NAME[name]
        out = VAR[op.out_type]
        last = i == len(program) - 1
        code = op.code
        if rng is not None:
            code = rng.choice((code,) + op.alt)
            element = rng.choice(ELEMENT_CHOICES)
            code = (tuple(_ELEMENT.sub(element, c) for c in code) if isinstance(code, tuple)
                    else _ELEMENT.sub(element, code))
        if isinstance(code, tuple):
            slots = op.slots(param, var, out)
            lines = [line.format(**slots) for line in code]
            if last:
                lines.append(f"return {out}")
            chunks.append("\n".join(lines))
        else:
            expr = code.format(**op.slots(param, var))
            chunks.append(f"return {expr}" if last else f"{out} = {expr}")
        var = out
    return chunks


def render_body(program: Program, indent: str = "    ", rng: random.Random | None = None) -> str:
    """The function body (each line ending in a newline): one line per step, last returns.
    ``rng``: draw equivalent spellings (see `render_steps`)."""
    return "".join(indent + line + "\n"
                   for chunk in render_steps(program, rng) for line in chunk.split("\n"))


def render_signature(program: Program, name: str = "f") -> str:
    return f"def {name}({VAR[input_type(program)]}):\n"


def describe(program: Program, choose: Callable[[Sequence[str]], str] | None = None) -> str:
    """An English description: one clause per step, in order, as one sentence.

    ``choose`` picks among an op's phrasings (e.g. ``rng.choice``); default: the first.
    One step: ``"Sort the list."``; two: ``"A, then b."``; more: ``"A, b, then c."``.
    """
    choose = choose or (lambda options: options[0])
    clauses = []
    for name, param in program:
        op = OPS_BY_NAME[name]
        clauses.append(choose(op.phrases).format(**op.slots(param, "")))
    if len(clauses) == 1:
        text = clauses[0]
    else:
        text = ", ".join(clauses[:-1]) + ", then " + clauses[-1]
    return text[0].upper() + text[1:] + "."


def program_to_json(program: Program) -> list[list[Any]]:
    """``[[op_name, param], ...]`` with tuple parameters as lists (JSON round-trips it)."""
    return [[n, list(p) if isinstance(p, tuple) else p] for n, p in program]


def program_from_json(steps: Sequence[Sequence[Any]]) -> Program:
    """Inverse of `program_to_json` (e.g. of a synthetic task's ``metadata["steps"]``)."""
    return tuple((n, tuple(p) if isinstance(p, list) else p) for n, p in steps)


def program_key(program: Program) -> str:
    """A canonical string of a program, e.g. ``"add(3)|sum"``."""
    return "|".join(n if p is None else f"{n}({p!r})" for n, p in program)


def skeleton_key(program: Program) -> str:
    """The op names only, without parameters, e.g. ``"add|sum"``."""
    return "|".join(n for n, _ in program)
