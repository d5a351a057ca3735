"""Wire formats: length-prefixed frames and the strict value codec.

Two channels use frames (a 4-byte big-endian length, then the payload):

* pool <-> worker: pickled messages. Both ends are our own trusted code.
* trusted test runner <-> program process: JSON built by the *strict value codec* below. The
  program process is untrusted, so what it sends is decoded without ever running its code:
  only exact builtin types survive (``type(v) is int``, never a subclass), containers are
  rebuilt recursively, and nesting depth is bounded. An object whose ``__eq__`` always answers
  True therefore never reaches the comparison; it cannot be encoded and crosses the boundary
  as an opaque handle that equals nothing.
"""

from __future__ import annotations

import binascii
import builtins
import collections
import json
import os
import pickle
import re
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

_HEADER = struct.Struct(">I")
MAX_DEPTH = 100
# Ints beyond this magnitude travel as hex strings (JSON text of huge ints is slow/limited).
_SMALL_INT = 1 << 62


class DecodeError(ValueError):
    """A frame or value from the other side is malformed."""


class Unencodable(TypeError):
    """A value is not made only of exact builtin types (or nests too deep)."""


class Ref:
    """A name in the program's namespace, passed by reference (e.g. an MBPP fixture ``root``)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name


class Handle:
    """An opaque program object that could not be sent as a value.

    It equals nothing but itself, has no truth value and no attributes, so a test can pass it
    back to the program but never be fooled by it.
    """

    __slots__ = ("id", "type_name")

    def __init__(self, id: int, type_name: str):
        self.id = id
        self.type_name = type_name

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __bool__(self) -> bool:
        raise TypeError(
            f"the program returned an object of type {self.type_name!r}, "
            "which has no trusted truth value"
        )

    def __repr__(self) -> str:
        return f"<program object of type {self.type_name}>"


# ---------------------------------------------------------------------------- frames


def frame_bytes(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


def write_frame(fd: int, payload: bytes) -> None:
    """Write one frame to a blocking file descriptor."""
    data = frame_bytes(payload)
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_exact(fd: int, n: int) -> bytes | None:
    """Read exactly ``n`` bytes from a blocking fd; None on EOF before the first byte."""
    chunks = []
    got = 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            if got == 0:
                return None
            raise EOFError(f"frame truncated after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, max_bytes: int = 1 << 30) -> bytes | None:
    """Read one frame from a blocking fd; None on a clean EOF."""
    header = read_exact(fd, _HEADER.size)
    if header is None:
        return None
    (n,) = _HEADER.unpack(header)
    if n > max_bytes:
        raise DecodeError(f"frame of {n} bytes exceeds the limit of {max_bytes}")
    payload = read_exact(fd, n) if n else b""
    if payload is None:
        raise EOFError("frame truncated after its header")
    return payload


def send_message(fd: int, message: Any) -> None:
    """Pickle a message between trusted processes (pool <-> worker)."""
    write_frame(fd, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def recv_message(fd: int) -> Any:
    """Counterpart of `send_message`; None on EOF."""
    payload = read_frame(fd)
    return None if payload is None else pickle.loads(payload)


class FrameBuffer:
    """Incremental frame parser for non-blocking reads of untrusted data."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > self.max_bytes + _HEADER.size:
            raise DecodeError(f"message larger than {self.max_bytes} bytes")

    @property
    def pending(self) -> int:
        """Bytes received that are not a whole frame yet."""
        return len(self._buf)

    def pop(self) -> bytes | None:
        if len(self._buf) < _HEADER.size:
            return None
        (n,) = _HEADER.unpack_from(self._buf)
        # A length beyond the limit is only a claim: `feed` raises once the bytes really
        # arrive, and a process that ends before that broke the protocol.
        if len(self._buf) < _HEADER.size + n:
            return None
        payload = bytes(self._buf[_HEADER.size : _HEADER.size + n])
        del self._buf[: _HEADER.size + n]
        return payload


# ---------------------------------------------------------------------- strict values

_KEYS, _VALUES, _ITEMS = type({}.keys()), type({}.values()), type({}.items())
# numpy arrays and scalars cross when their items are plain: bool, ints, floats, complex,
# fixed-width str and bytes.
_ARRAY_KINDS = "biufcUS"
_ARRAY_DTYPE = re.compile(r"[<>|=]?[biufcUS][0-9]{1,3}")
Fallback = Callable[[Any, Callable[[Any], Any]], Any]


def _std_type(module: str, name: str) -> type | None:
    """A standard-library class, if its module is loaded (never imported here: the zygote
    and every job process stay lean)."""
    mod = sys.modules.get(module)
    return getattr(mod, name, None) if mod is not None else None


def encode_value(value: Any, depth: int = 0, fallback: Fallback | None = None) -> Any:
    """Turn a value made of exact builtin (and a few standard-library) types into tagged JSON.

    Anything else goes to ``fallback(value, encode)`` (the program's side uses it to make
    values plain, see `plain`), or raises `Unencodable`: subclasses of builtins, user
    classes, generators, numpy arrays, cycles (via the depth bound).
    """
    if depth > MAX_DEPTH:
        raise Unencodable("value nests deeper than the limit")
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        return value if -_SMALL_INT < value < _SMALL_INT else {"I": format(value, "x")}
    if t is float:
        return value
    d = depth + 1

    def enc(v: Any) -> Any:
        return encode_value(v, d, fallback)

    if t is list:
        return {"l": [enc(v) for v in value]}
    if t is tuple:
        return {"t": [enc(v) for v in value]}
    if t is dict:
        return {"d": [[enc(k), enc(v)] for k, v in value.items()]}
    if t is set:
        return {"s": [enc(v) for v in value]}
    if t is frozenset:
        return {"f": [enc(v) for v in value]}
    if t is bytes:
        return {"b": value.decode("latin-1")}
    if t is bytearray:
        return {"B": value.decode("latin-1")}
    if t is complex:
        return {"c": [value.real, value.imag]}
    if t is range:
        return {"R": [enc(value.start), enc(value.stop), enc(value.step)]}
    if t is _KEYS:
        return {"K": [enc(k) for k in value]}
    if t is _VALUES:
        return {"V": [enc(v) for v in value]}
    if t is _ITEMS:
        return {"A": [[enc(k), enc(v)] for k, v in value]}
    if t is Ref:
        return {"r": value.name}
    # Standard-library types whose equality is plain; the receiver rebuilds them with its
    # own (trusted) classes.
    if t is collections.Counter:
        return {"C": [[enc(k), enc(v)] for k, v in value.items()]}
    if t is collections.OrderedDict:
        return {"O": [[enc(k), enc(v)] for k, v in value.items()]}
    if t is collections.defaultdict:
        items = [[enc(k), enc(v)] for k, v in value.items()]
        factory = value.default_factory
        if factory is None:
            return {"D": items}
        try:  # a builtin type, or (on the program's side) a function kept as a handle
            return {"G": [enc(factory), items]}
        except Unencodable:
            return {"D": items}  # a factory that can't cross is dropped
    if t is collections.deque:
        return {"Q": [enc(v) for v in value]}
    if t is _std_type("fractions", "Fraction"):
        return {"F": [enc(value.numerator), enc(value.denominator)]}
    if t is _std_type("decimal", "Decimal"):
        return {"M": str(value)}
    if t is type and getattr(builtins, value.__name__, None) is value:
        return {"T": value.__name__}
    if t is _std_type("numpy", "ndarray") and value.dtype.kind in _ARRAY_KINDS:
        data = binascii.b2a_base64(value.tobytes(), newline=False).decode()
        return {"nd": [value.dtype.str, list(value.shape), data]}
    generic = _std_type("numpy", "generic")
    if generic is not None and isinstance(value, generic) and value.dtype.kind in _ARRAY_KINDS:
        return enc(value.item())  # a numpy scalar (an array's item, say) as its plain value
    if isinstance(value, Handle):
        return {"h": [value.id, value.type_name]}
    if _NAMEDTUPLES.get((t.__name__, getattr(t, "_fields", None))) is t:  # one we decoded
        return {"N": [t.__name__, list(t._fields), [enc(v) for v in value]]}
    if fallback is not None:
        return fallback(value, enc)
    raise Unencodable(f"values of type {t.__name__!r} cannot cross the sandbox boundary")


_DICTS = {
    "d": dict,
    "C": collections.Counter,
    "O": collections.OrderedDict,
    "D": collections.defaultdict,
}
# Limits of the trusted decoder, beyond the frame size: elements sharing one hash value in a
# set or dict (colliding ints make building them quadratic), named-tuple classes made.
MAX_SAME_HASH = 64
# Numbers whose mere size would make trusted test code hang on them (``int(Decimal('1e99999
# 9999'))``, the gcd of two megabit Fraction terms): refused, a runtime error of the program.
MAX_INT_BITS = 1 << 20
MAX_DECIMAL_EXPONENT = 10_000
_NAMEDTUPLES: dict[tuple, type] = {}
HandleFactory = Callable[[int, str], Any]


class DecodeTimeout(DecodeError):
    """Decoding a reply ran past the deadline it was given."""


class _Decoder:
    def __init__(self, handles: HandleFactory | None, deadline: float | None, refs: bool):
        self.handles = handles
        self.deadline = deadline
        self.refs = refs
        self.nodes = 0

    def __call__(self, data: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:  # what the encoder accepts, so a decoded value can go back
            raise DecodeError("value nests too deep")
        self.nodes += 1
        if self.deadline is not None and not self.nodes & 4095:
            if time.monotonic() > self.deadline:
                raise DecodeTimeout("decoding the reply ran past the deadline")
        t = type(data)
        if data is None or t is bool or t is str or t is int or t is float:
            return data
        if t is not dict or len(data) != 1:
            raise DecodeError(f"malformed value node of type {t.__name__}")
        ((tag, body),) = data.items()
        if type(body) is str:
            return self.scalar(tag, body)
        if type(body) is not list:
            raise DecodeError(f"malformed value node {tag!r}")
        d = depth + 1
        if tag == "l":
            return [self(v, d) for v in body]
        if tag == "t":
            return tuple(self(v, d) for v in body)
        if tag in ("s", "f", "K"):
            members = [self(v, d) for v in body]
            _check_hashes(members)
            if tag == "K":
                return dict.fromkeys(members).keys()
            return set(members) if tag == "s" else frozenset(members)
        if tag in _DICTS or tag in ("A", "G"):
            factory = None
            if tag == "G":
                if len(body) != 2 or type(body[1]) is not list:
                    raise DecodeError("malformed defaultdict")
                node, body = body[0], body[1]
                factory = self(node, d)
                # Only a builtin type, or the program's own function (a handle: its calls
                # run in the job process), may make the missing values.
                if not (type(factory) is type or (type(node) is dict and "h" in node)):
                    raise DecodeError("a defaultdict factory must be a builtin type or a function")
            pairs = [self.pair(p, d) for p in body]
            _check_hashes([k for k, _ in pairs])
            if tag == "A":
                return dict(pairs).items()
            out = collections.defaultdict(factory) if tag == "G" else _DICTS[tag]()
            for k, v in pairs:
                out[k] = v
            return out
        if tag == "V":
            return dict(enumerate(self(v, d) for v in body)).values()
        if tag == "Q":
            return collections.deque(self(v, d) for v in body)
        return self.special(tag, body, d)

    def pair(self, item: Any, depth: int) -> tuple[Any, Any]:
        if type(item) is not list or len(item) != 2:
            raise DecodeError("malformed dict item")
        return self(item[0], depth), self(item[1], depth)

    def scalar(self, tag: str, body: str) -> Any:
        if tag == "I":
            if len(body) > MAX_INT_BITS // 4 + 1:
                raise DecodeError(f"an integer of more than {MAX_INT_BITS} bits")
            return int(body, 16)
        if tag == "b":
            return body.encode("latin-1")
        if tag == "B":
            return bytearray(body.encode("latin-1"))
        if tag == "r" and self.refs:
            return Ref(body)
        if tag == "T":
            return _builtin_type(body)
        if tag == "M":
            import decimal

            if len(body) > 10_000:
                raise DecodeError("decimal literal too long")
            value = decimal.Decimal(body)
            if value.is_finite() and abs(value.adjusted()) > MAX_DECIMAL_EXPONENT:
                raise DecodeError(f"a decimal with an exponent beyond {MAX_DECIMAL_EXPONENT}")
            return value
        raise DecodeError(f"unknown value tag {tag!r}")

    def special(self, tag: str, body: list, d: int) -> Any:
        if tag == "c" and len(body) == 2:
            re_, im = body
            if type(re_) in (int, float) and type(im) in (int, float):
                return complex(re_, im)
        if tag == "R" and len(body) == 3:
            start, stop, step = (self(v, d) for v in body)
            if type(start) is type(stop) is type(step) is int:
                return range(start, stop, step)
        if tag == "F" and len(body) == 2:
            import fractions

            num, den = (self(v, d) for v in body)
            if type(num) is int and type(den) is int and den > 0:
                return fractions.Fraction(num, den)
        if tag == "N" and len(body) == 3:
            return self.named_tuple(*body, d)
        if tag == "nd" and len(body) == 3:
            return _array(*body)
        if tag == "h" and len(body) == 2 and self.handles is not None:
            if type(body[0]) is int and type(body[1]) is str:
                return self.handles(body[0], body[1][:200])
        raise DecodeError(f"malformed value node {tag!r}")

    def named_tuple(self, name: Any, fields: Any, items: Any, d: int) -> tuple:
        if type(name) is not str or type(fields) is not list or type(items) is not list:
            raise DecodeError("malformed named tuple")
        if len(fields) != len(items) or len(fields) > 255 or len(name) > 100:
            raise DecodeError("malformed named tuple")
        if not all(type(f) is str for f in fields):
            raise DecodeError("malformed named tuple")
        key = (name, tuple(fields))
        cls = _NAMEDTUPLES.get(key)
        if cls is None:
            if len(_NAMEDTUPLES) >= 1024:
                _NAMEDTUPLES.clear()
            # namedtuple() validates the names as identifiers (else ValueError).
            cls = _NAMEDTUPLES[key] = collections.namedtuple(name, fields, rename=True)
            _NAMEDTUPLES[(name, cls._fields)] = cls  # as the encoder looks it up
        return cls(*(self(v, d) for v in items))


def _array(dtype: Any, shape: Any, data: Any) -> Any:
    """A numpy array rebuilt by the trusted side from its dtype, shape and bytes."""
    if type(dtype) is not str or not _ARRAY_DTYPE.fullmatch(dtype) or type(data) is not str:
        raise DecodeError("malformed array")
    if type(shape) is not list or len(shape) > 32:
        raise DecodeError("malformed array shape")
    if not all(type(n) is int and 0 <= n < 1 << 40 for n in shape):
        raise DecodeError("malformed array shape")
    import numpy

    kind = numpy.dtype(dtype)
    raw = binascii.a2b_base64(data)
    count = 1
    for n in shape:
        count *= n
    if count * kind.itemsize != len(raw):
        raise DecodeError("array data does not match its shape")
    return numpy.frombuffer(raw, dtype=kind).reshape(shape).copy()


def _builtin_type(name: str) -> type:
    obj = getattr(builtins, name, None)
    if type(obj) is type:
        return obj
    raise DecodeError(f"{name!r} is not a builtin type")


def _check_hashes(members: list) -> None:
    """Refuse sets/dicts whose members share a hash value beyond `MAX_SAME_HASH` (building
    them would take quadratic time; an honest program's set never looks like that)."""
    if len(members) <= MAX_SAME_HASH:
        return
    counts = collections.Counter(map(hash, members))
    worst = max(counts.values())
    if worst > MAX_SAME_HASH:
        raise DecodeError(f"{worst} members of one set or dict share a hash value")


def decode_value(
    data: Any,
    handles: HandleFactory | None = None,
    deadline: float | None = None,
    refs: bool = True,
) -> Any:
    """Rebuild a value from tagged JSON data produced by `encode_value`, validating it.

    Any malformation (including forged data that would make an unhashable set member) raises
    `DecodeError`; nothing from the other side is ever called. ``handles(id, type_name)``
    makes the objects that stand for program values that could not cross; ``deadline``
    (`time.monotonic`) bounds the work (`DecodeTimeout`); ``refs=False`` refuses names of
    the program's namespace (only the trusted side sends those).
    """
    try:
        return _Decoder(handles, deadline, refs)(data, 0)
    except DecodeError:
        raise
    except (
        TypeError,
        ValueError,
        RecursionError,
        OverflowError,
        ArithmeticError,
        binascii.Error,
        ImportError,
    ) as e:
        raise DecodeError(f"malformed value: {type(e).__name__}: {e}") from None


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def loads(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, RecursionError) as e:
        raise DecodeError(f"malformed message: {e}") from None


def strict_equal(a: Any, b: Any) -> bool:
    """Equality by value *and* exact type, recursively (the strict form of call tests).

    Floats compare exactly, except that NaN equals NaN. ``1 == 1.0`` and ``True == 1`` are
    False here, at any depth: in list items, dict keys and values, set members (so
    ``{(True, 2.0): 'x'}`` differs from ``{(1, 2): 'x'}``); a list never equals a tuple.
    """
    ta, tb = type(a), type(b)
    if ta is not tb:
        return False
    if ta is float:
        return a == b or (a != a and b != b)
    if ta in (list, tuple, collections.deque):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b))
    if ta in _DICTS.values():
        if len(a) != len(b) or a.keys() != b.keys():
            return False
        if ta is collections.OrderedDict and list(a) != list(b):
            return False
        keys_b = {k: k for k in b}  # b's own key objects, found through a's keys
        return all(strict_equal(k, keys_b[k]) and strict_equal(v, b[k]) for k, v in a.items())
    if ta in (set, frozenset):
        if a != b:
            return False
        members_b = {x: x for x in b}
        return all(strict_equal(x, members_b[x]) for x in a)
    return a == b
