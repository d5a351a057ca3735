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

import builtins
import collections
import json
import os
import pickle
import struct
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

    def pop(self) -> bytes | None:
        if len(self._buf) < _HEADER.size:
            return None
        (n,) = _HEADER.unpack_from(self._buf)
        if n > self.max_bytes:
            raise DecodeError(f"message of {n} bytes exceeds the limit of {self.max_bytes}")
        if len(self._buf) < _HEADER.size + n:
            return None
        payload = bytes(self._buf[_HEADER.size : _HEADER.size + n])
        del self._buf[: _HEADER.size + n]
        return payload


# ---------------------------------------------------------------------- strict values


def encode_value(value: Any, depth: int = 0) -> Any:
    """Turn a value made of exact builtin types into tagged JSON data.

    Raises `Unencodable` for anything else: subclasses of builtins, user classes, generators,
    numpy arrays, cycles (via the depth bound).
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
    if t is list:
        return {"l": [encode_value(v, d) for v in value]}
    if t is tuple:
        return {"t": [encode_value(v, d) for v in value]}
    if t is dict:
        return {"d": [[encode_value(k, d), encode_value(v, d)] for k, v in value.items()]}
    if t is set:
        return {"s": [encode_value(v, d) for v in value]}
    if t is frozenset:
        return {"f": [encode_value(v, d) for v in value]}
    if t is bytes:
        return {"b": value.decode("latin-1")}
    if t is complex:
        return {"c": [value.real, value.imag]}
    if t is Ref:
        return {"r": value.name}
    # Standard-library containers whose equality is the builtin one; the receiver rebuilds
    # them with its own (trusted) classes.
    if t is collections.Counter:
        return {"C": encode_value(dict(value), d)["d"]}
    if t is collections.OrderedDict:
        return {"O": encode_value(dict(value), d)["d"]}
    if t is collections.defaultdict:
        return {"D": encode_value(dict(value), d)["d"]}
    if t is collections.deque:
        return {"Q": [encode_value(v, d) for v in value]}
    if t is type and getattr(builtins, value.__name__, None) is value:
        return {"T": value.__name__}
    if t is Handle:
        return {"h": value.id}
    raise Unencodable(f"values of type {t.__name__!r} cannot cross the sandbox boundary")


_DICTS = {
    "d": dict,
    "C": collections.Counter,
    "O": collections.OrderedDict,
    "D": collections.defaultdict,
}


def _decode(data: Any, depth: int, handle_type: dict[int, str] | None) -> Any:
    if depth > MAX_DEPTH + 2:
        raise DecodeError("value nests too deep")
    t = type(data)
    if data is None or t is bool or t is str or t is int or t is float:
        return data
    if t is not dict or len(data) != 1:
        raise DecodeError(f"malformed value node of type {t.__name__}")
    ((tag, body),) = data.items()
    d = depth + 1
    if tag == "I" and type(body) is str:
        return int(body, 16)
    if tag == "b" and type(body) is str:
        return body.encode("latin-1")
    if tag == "c" and type(body) is list and len(body) == 2:
        re_, im = body
        if type(re_) in (int, float) and type(im) in (int, float):
            return complex(re_, im)
    if tag == "r" and type(body) is str:
        return Ref(body)
    if tag == "T" and type(body) is str:
        obj = getattr(builtins, body, None)
        if type(obj) is type:
            return obj
        raise DecodeError(f"{body!r} is not a builtin type")
    if tag == "h" and type(body) is int and handle_type is not None:
        return Handle(body, handle_type.get(body, "object"))
    if type(body) is list:
        if tag == "l":
            return [_decode(v, d, handle_type) for v in body]
        if tag == "t":
            return tuple(_decode(v, d, handle_type) for v in body)
        if tag == "s":
            return {_decode(v, d, handle_type) for v in body}
        if tag == "f":
            return frozenset(_decode(v, d, handle_type) for v in body)
        if tag in _DICTS:
            out = _DICTS[tag]()
            for pair in body:
                if type(pair) is not list or len(pair) != 2:
                    raise DecodeError("malformed dict item")
                out[_decode(pair[0], d, handle_type)] = _decode(pair[1], d, handle_type)
            return out
        if tag == "Q":
            return collections.deque(_decode(v, d, handle_type) for v in body)
    raise DecodeError(f"unknown value tag {tag!r}")


def decode_value(data: Any, handle_type: dict[int, str] | None = None) -> Any:
    """Rebuild a value from tagged JSON data produced by `encode_value`, validating it.

    Any malformation (including forged data that would make an unhashable set member) raises
    `DecodeError`; nothing from the other side is ever called.
    """
    try:
        return _decode(data, 0, handle_type)
    except DecodeError:
        raise
    except (TypeError, ValueError, RecursionError, OverflowError) as e:
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
    False here; a list never equals a tuple.
    """
    ta, tb = type(a), type(b)
    if ta is not tb:
        return False
    if ta is float:
        return a == b or (a != a and b != b)
    if ta in (list, tuple):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b))
    if ta is dict:
        if a.keys() != b.keys():
            return False
        return all(strict_equal(v, b[k]) and _same_key_type(k, b) for k, v in a.items())
    if ta in (set, frozenset):
        # Sets of builtin values: equal sets whose members also agree on type.
        return a == b and sorted(map(_type_tag, a)) == sorted(map(_type_tag, b))
    return a == b


def _same_key_type(key: Any, other: dict) -> bool:
    return any(k == key and type(k) is type(key) for k in other)


def _type_tag(v: Any) -> str:
    return f"{type(v).__name__}:{v!r}"
