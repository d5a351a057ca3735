"""Ordinary correct Python is judged correct (issue 16, class 6).

Each probe is a correct program in the style models write, with an MBPP-style test. The
verdict must equal the official harnesses' (program and test executed in one namespace),
which these tests compute in-process for each probe (they are our own, benign programs).
Hostile look-alikes (rigged ``__eq__``) must still fail.
"""

from __future__ import annotations

import pytest

from rlfb_jax.executor import Job

PROBES = {
    "numpy_int": ("import numpy as np\ndef f():\n    return np.int64(3)\n", "assert f() == 3"),
    "numpy_float": (
        "import numpy as np\ndef f():\n    return np.float64(0.5)\n",
        "assert f() == 0.5",
    ),
    "numpy_bool": (
        "import numpy as np\ndef f():\n    return np.bool_(True)\n",
        "assert f() == True",
    ),
    "numpy_str": ("import numpy as np\ndef f():\n    return np.str_('ab')\n", "assert f() == 'ab'"),
    "numpy_sum": (
        "import numpy as np\ndef f(xs):\n    return np.array(xs).sum()\n",
        "assert f([1, 2, 3]) == 6",
    ),
    "numpy_in_list": (
        "import numpy as np\ndef f():\n    return [np.int32(1), np.float32(2.0)]\n",
        "assert f() == [1, 2.0]",
    ),
    "numpy_array_all": (
        "import numpy as np\ndef f(n):\n    return np.arange(n) * 2\n",
        "assert (f(3) == [0, 2, 4]).all() and f(3).shape == (3,)",
    ),
    "numpy_array_tolist": (
        "import numpy as np\ndef f():\n    return np.array([[1.5, 2.0]])\n",
        "assert f().tolist() == [[1.5, 2.0]] and list(f()[0]) == [1.5, 2.0]",
    ),
    "numpy_array_argument": (
        "import numpy as np\ndef f(n):\n    return np.ones(n)\ndef total(a):\n"
        "    return float(a.sum())\n",
        "assert total(f(4)) == 4.0",
    ),
    "numpy_items_back_to_the_program": (
        "import numpy as np\ndef f():\n    return np.array([1, 2])\n"
        "def total(xs):\n    return sum(xs)\n",
        "assert total([x for x in f()]) == 3 and total(list(f() * 2)) == 6",
    ),
    "fraction": (
        "from fractions import Fraction\ndef f():\n    return Fraction(1, 2)\n",
        "assert f() == 0.5",
    ),
    "fraction_exact": (
        "from fractions import Fraction\ndef f():\n    return Fraction(1, 3)\n",
        "from fractions import Fraction\nassert f() == Fraction(2, 6)",
    ),
    "decimal": (
        "from decimal import Decimal\ndef f():\n    return Decimal('1.10')\n",
        "from decimal import Decimal\nassert f() == Decimal('1.1')",
    ),
    "int_enum": (
        "import enum\nclass C(enum.IntEnum):\n    RED = 2\ndef f():\n    return C.RED\n",
        "assert f() == 2",
    ),
    "str_enum": (
        "import enum\nclass C(str, enum.Enum):\n    A = 'a'\ndef f():\n    return C.A\n",
        "assert f() == 'a'",
    ),
    "namedtuple": (
        "from collections import namedtuple\nP = namedtuple('P', 'x y')\n"
        "def f():\n    return P(1, 2)\n",
        "assert f() == (1, 2) and f().x == 1",
    ),
    "keys_view": ("def f():\n    return {'a': 1, 'b': 2}.keys()\n", "assert f() == {'a', 'b'}"),
    "keys_view_order": (
        "def f():\n    return {'b': 1, 'a': 2}.keys()\n",
        "assert list(f()) == ['b', 'a']",
    ),
    "values_view": ("def f():\n    return {'a': 1}.values()\n", "assert list(f()) == [1]"),
    "items_view": ("def f():\n    return {'a': 1}.items()\n", "assert f() == {('a', 1)}"),
    "bytearray": ("def f():\n    return bytearray(b'ab')\n", "assert f() == b'ab'"),
    "defaultdict": (
        "from collections import defaultdict\ndef f():\n    d = defaultdict(int)\n"
        "    d['a'] += 1\n    return d\n",
        "d = f()\nassert d['missing'] == 0 and d['a'] == 1",
    ),
    "defaultdict_lambda": (
        "from collections import defaultdict\ndef f():\n    d = defaultdict(lambda: 7)\n"
        "    d['a'] += 1\n    return d\n",
        "d = f()\nassert d['missing'] == 7 and d['a'] == 8",
    ),
    "returned_function": (
        "def f(n):\n    def add(x):\n        return x + n\n    return add\n",
        "assert f(1)(3) == 4",
    ),
    "returned_lambda_list": (
        "def f():\n    return [lambda x: x * 2, lambda x: x + 1]\n",
        "g, h = f()\nassert g(3) == 6 and h(3) == 4",
    ),
    "generator": (
        "def f(n):\n    return (i * i for i in range(n))\n",
        "assert list(f(3)) == [0, 1, 4]",
    ),
    "map_object": ("def f(xs):\n    return map(str, xs)\n", "assert list(f([1, 2])) == ['1', '2']"),
    "range": (
        "def f():\n    return range(3)\n",
        "assert f() == range(3) and list(f()) == [0, 1, 2]",
    ),
    "file_name": (
        "import os\ndef f():\n    return os.path.basename(__file__)\n",
        "assert f().endswith('.py')",
    ),
    "read_own_source": (
        "def f():\n    with open(__file__) as fh:\n        return 'def f' in fh.read()\n",
        "assert f()",
    ),
    "str_subclass": ("class S(str):\n    pass\ndef f():\n    return S('x')\n", "assert f() == 'x'"),
    "list_subclass": (
        "class L(list):\n    pass\ndef f():\n    return L([1, 2])\n",
        "assert f() == [1, 2]",
    ),
    "counter_subclass": (
        "from collections import Counter\nclass C(Counter):\n    pass\n"
        "def f(s):\n    return C(s)\n",
        "assert f('aab') == {'a': 2, 'b': 1}",
    ),
    "fraction_argument": (
        "def f(x):\n    return x * 2\n",
        "from fractions import Fraction\nassert f(Fraction(1, 4)) == Fraction(1, 2)",
    ),
    "nested_plain": (
        "import numpy as np\nfrom collections import namedtuple\nP = namedtuple('P', 'a b')\n"
        "def f():\n    return {'k': [P(np.int64(1), (2, 3))]}\n",
        "assert f() == {'k': [(1, (2, 3))]}",
    ),
}

HOSTILE = {
    "eq_always_true_int": (
        "class I(int):\n    def __eq__(self, o):\n        return True\n    __hash__ = int.__hash__\n"
        "def f():\n    return I(0)\n",
        "assert f() == 3",
    ),
    "eq_always_true_str": (
        "class S(str):\n    def __eq__(self, o):\n        return True\n    __hash__ = str.__hash__\n"
        "def f():\n    return S('')\n",
        "assert f() == 'x'",
    ),
    "eq_in_base_mixin": (
        "class M:\n    def __eq__(self, o):\n        return True\n"
        "class L(M, list):\n    pass\ndef f():\n    return L()\n",
        "assert f() == [1]",
    ),
    "ne_false_tuple": (
        "from collections import namedtuple\n"
        "class P(namedtuple('P', 'x')):\n    def __eq__(self, o):\n        return True\n"
        "    __hash__ = tuple.__hash__\n"
        "def f():\n    return P(0)\n",
        "assert f() == (5,)",
    ),
}


def official_verdict(program: str, test: str) -> bool:
    """The official harnesses' way: program and test in one namespace, pass = no exception."""
    namespace: dict = {"__name__": "__main__", "__file__": __file__}
    try:
        exec(program, namespace)
        exec(test, namespace)
    except Exception:  # noqa: BLE001
        return False
    return True


def test_ordinary_correct_programs_pass_as_in_the_official_harness(pool):
    names = sorted(PROBES)
    outcomes = pool.run(
        [Job(program=PROBES[n][0], tests=[PROBES[n][1]], timeout_per_test=3.0) for n in names]
    )
    official = {n: official_verdict(*PROBES[n]) for n in names}
    assert all(official.values()), official  # the probes are correct programs
    ours = {n: o.passed for n, o in zip(names, outcomes)}
    assert ours == official, {
        n: (o.status, o.error_type, o.error_message)
        for n, o in zip(names, outcomes)
        if not o.passed
    }


def test_rigged_equality_still_fails(pool):
    names = sorted(HOSTILE)
    outcomes = pool.run([Job(program=HOSTILE[n][0], tests=[HOSTILE[n][1]]) for n in names])
    assert {n: official_verdict(*HOSTILE[n]) for n in names} == dict.fromkeys(names, True)
    assert {n: o.status for n, o in zip(names, outcomes)} == dict.fromkeys(names, "wrong_answer")


@pytest.mark.parametrize(
    "program, test, official",
    [
        # exactness is kept: Fraction(1, 3) is not the float 1/3, Decimal('0.1') not 0.1
        (
            "from fractions import Fraction\ndef f():\n    return Fraction(1, 3)\n",
            "assert f() == 1 / 3",
            False,
        ),
        (
            "from decimal import Decimal\ndef f():\n    return Decimal('0.1')\n",
            "assert f() == 0.1",
            False,
        ),
        # a dict's values view equals nothing, as in Python
        ("def f():\n    return {'a': 1}.values()\n", "assert f() == [1]", False),
        ("def f():\n    return bytearray(b'a')\n", "assert type(f()) is bytearray", True),
        # numpy's own semantics, as in-process: an array compared to a list is ambiguous
        (
            "import numpy as np\ndef f():\n    return np.array([1, 2])\n",
            "assert f() == [1, 2]",
            False,
        ),
    ],
)
def test_plain_values_keep_their_semantics(pool, program, test, official):
    assert official_verdict(program, test) is official
    (o,) = pool.run([Job(program=program, tests=[test])])
    assert o.passed is official, (o.status, o.error_message)
