"""The strict value codec: only exact builtin values cross the sandbox boundary."""

from __future__ import annotations

import collections
import math

import pytest

from rlfb_jax.executor import codec

VALUES = [
    None,
    True,
    False,
    0,
    -5,
    1 << 70,
    -(1 << 200),
    1.5,
    float("inf"),
    "x\u00e9\ud800",
    b"\x00\xff",
    3 + 4j,
    [1, [2, (3,)]],
    (1, "a", None),
    {"a": [1], 2: (3,)},
    {1, 2},
    frozenset({"a"}),
    [],
    (),
    {},
    set(),
    collections.Counter("abca"),
    collections.OrderedDict(a=1),
    collections.deque([1, 2]),
    int,
    str,
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_roundtrip_keeps_value_and_type(value):
    wire = codec.loads(codec.dumps(codec.encode_value(value)))
    back = codec.decode_value(wire)
    assert back == value and type(back) is type(value)
    if isinstance(value, (list, tuple)):
        assert [type(v) for v in back] == [type(v) for v in value]


def test_nan_roundtrip():
    back = codec.decode_value(codec.loads(codec.dumps(codec.encode_value(float("nan")))))
    assert math.isnan(back)


class AlwaysEqual:
    def __eq__(self, other):
        return True


class EvilInt(int):
    def __eq__(self, other):
        return True


class EvilStr(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        AlwaysEqual(),
        EvilInt(3),
        EvilStr("x"),
        [1, AlwaysEqual()],
        {"k": EvilInt(1)},
        (x for x in ()),
    ],
    ids=repr,
)
def test_rejects_everything_but_exact_builtins(value):
    with pytest.raises(codec.Unencodable):
        codec.encode_value(value)


def test_rejects_cycles():
    a: list = []
    a.append(a)
    with pytest.raises(codec.Unencodable):
        codec.encode_value(a)


@pytest.mark.parametrize(
    "forged",
    [
        [1, 2],
        {"l": [1], "t": [2]},
        {"zz": 1},
        {"s": [{"l": [1]}]},
        {"d": [[1]]},
        {"T": "open"},
        {"c": ["a", 1]},
        {"I": "zz"},
        {"h": 1},
    ],
)
def test_forged_data_is_rejected_without_running_anything(forged):
    with pytest.raises(codec.DecodeError):
        codec.decode_value(forged)


def test_handles_are_opaque():
    h = codec.Handle(0, "Weird")
    assert h != 1 and h != h.__class__(0, "Weird")
    with pytest.raises(TypeError):
        bool(h)


def test_strict_equal():
    se = codec.strict_equal
    assert se([1, (2.0, "a")], [1, (2.0, "a")])
    assert not se(1, 1.0) and not se(True, 1) and not se([1], (1,))
    assert not se({"a": 1}, {"a": 1.0}) and not se({1: "a"}, {1.0: "a"})
    assert se(float("nan"), float("nan")) and not se(0.1 + 0.2, 0.3)
    assert se({1, 2}, {2, 1}) and not se({1}, {1.0}) and not se({1}, frozenset({1}))


def test_frames():
    buf = codec.FrameBuffer(100)
    buf.feed(codec.frame_bytes(b"abc") + codec.frame_bytes(b"")[:2])
    assert buf.pop() == b"abc" and buf.pop() is None
    with pytest.raises(codec.DecodeError):
        codec.FrameBuffer(10).feed(codec.frame_bytes(b"x" * 50))
