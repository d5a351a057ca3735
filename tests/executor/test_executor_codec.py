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


# ------------------------------------------------ issue 16: limits of the trusted decoder


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def wire(value):
    return codec.loads(codec.dumps(codec.encode_value(value)))


def test_whatever_decodes_can_be_encoded_again():
    """Depth limits agree: a decoded value never becomes a value the trusted side cannot send
    back (which would have been blamed on the executor)."""
    deepest = nested(codec.MAX_DEPTH)
    assert codec.encode_value(codec.decode_value(wire(deepest))) == codec.encode_value(deepest)
    too_deep = {"l": [wire(deepest)]}
    with pytest.raises(codec.DecodeError):
        codec.decode_value(too_deep)


def test_colliding_hashes_are_refused_quickly():
    modulus = (1 << 61) - 1  # ints that are multiples of it all hash to 0
    members = [codec.encode_value(modulus * i) for i in range(1, 5000)]
    with pytest.raises(codec.DecodeError, match="share a hash"):
        codec.decode_value({"s": members})
    with pytest.raises(codec.DecodeError, match="share a hash"):
        codec.decode_value({"d": [[m, 0] for m in members]})
    ordinary = set(range(5000))
    assert codec.decode_value(wire(ordinary)) == ordinary


def test_decoding_stops_at_its_deadline():
    big = wire(list(range(100_000)))
    with pytest.raises(codec.DecodeTimeout):
        codec.decode_value(big, deadline=0.0)


def test_number_sizes_and_names_from_the_program_are_bounded():
    with pytest.raises(codec.DecodeError):
        codec.decode_value({"I": "f" * (codec.MAX_INT_BITS // 4 + 8)})
    with pytest.raises(codec.DecodeError):
        codec.decode_value({"M": "1e100000"})
    with pytest.raises(codec.DecodeError):
        codec.decode_value({"r": "candidate"}, refs=False)
    assert type(codec.decode_value({"r": "candidate"})) is codec.Ref


def test_a_claimed_frame_length_is_not_an_overflow():
    frames = codec.FrameBuffer(max_bytes=16)
    frames.feed(b"\xff\xff\xff\xffab")  # claims 4 GiB, sends 2 bytes
    assert frames.pop() is None and frames.pending == 6
    with pytest.raises(codec.DecodeError):
        frames.feed(b"x" * 32)  # bytes really beyond the limit


def test_standard_library_values_round_trip_with_their_types():
    import decimal
    import fractions

    factory = collections.defaultdict(list, {1: [2]})
    values = [
        fractions.Fraction(1, 3),
        decimal.Decimal("1.10"),
        bytearray(b"\x00ab"),
        range(1, 9, 3),
        {"a": 1, "b": 2}.keys(),
        {"a": 1}.items(),
        factory,
    ]
    for value in values:
        back = codec.decode_value(wire(value))
        assert type(back) is type(value) and back == value
    assert codec.decode_value(wire(factory))["new"] == []  # the factory crossed too
    point = codec.decode_value({"N": ["P", ["x", "_y"], [1, 2]]})  # renamed like rename=True
    assert point == (1, 2) and point.x == 1 and point._fields == ("x", "_1")
    assert codec.decode_value(wire(point)) == point  # and it can be sent back


@pytest.mark.parametrize(
    "a, b",
    [
        ({(True, 2.0): "x"}, {(1, 2): "x"}),
        ([{1: [True]}], [{1: [1]}]),
        ({frozenset({(True,)})}, {frozenset({(1,)})}),
        (collections.OrderedDict([(1, True)]), collections.OrderedDict([(1, 1)])),
        (collections.Counter({1.0: 1}), collections.Counter({1: 1})),
        (collections.deque([1]), collections.deque([1.0])),
    ],
)
def test_strict_equality_checks_types_at_every_depth(a, b):
    assert a == b  # Python's equality says yes
    assert not codec.strict_equal(a, b) and not codec.strict_equal(b, a)
    assert codec.strict_equal(a, a)
