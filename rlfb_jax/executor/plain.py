"""On the program's side of the boundary: make returned values plain before they cross.

Models write ordinary Python that returns enum members, named tuples, str or int subclasses
and the like (numpy scalars and arrays the codec carries itself); compared with plain values they behave like those values, and
the official harnesses (which compare inside the program's process) accept them. The strict
codec only carries exact builtin types, so this module converts such values to their plain
equivalents here, in the job process, where nothing is trusted anyway: a program can
already return any plain value it likes, so converting can't fake a pass. A class that
overrides ``__eq__``/``__ne__`` is never converted: its comparisons are not the plain ones,
and it crosses as an opaque handle that equals nothing.

numpy arrays of plain dtypes (bool, numbers, fixed-width str) cross as dtype, shape and
bytes, and the trusted side rebuilds them with its own numpy (see `codec`), so tests get
numpy's semantics as in-process. What can't be converted (user objects, functions,
generators, object arrays) is kept in the job process and crosses as a handle: the tests
may call it, iterate it or pass it back to the program, but never compare it equal to
anything.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

# Plain base types, most specific first; a subclass converts to the first one it derives from.
_BASES: tuple[tuple[type, Callable[[Any], Any]], ...] = (
    (bool, bool),
    (int, int.__int__),
    (float, float.__float__),
    (complex, complex),
    (str, str.__str__),
    (bytes, bytes),
    (bytearray, bytearray),
    (collections.OrderedDict, collections.OrderedDict),
    (collections.Counter, collections.Counter),
    (collections.defaultdict, lambda v: collections.defaultdict(v.default_factory, v)),
    (dict, dict),
    (list, list),
    (tuple, tuple),
    (set, set),
    (frozenset, frozenset),
    (collections.deque, collections.deque),
)


def _own_equality(cls: type, base: type) -> bool:
    """Does ``cls`` (a subclass of ``base``) define equality of its own?"""
    for klass in cls.__mro__:
        if klass is base:
            return False
        if "__eq__" in klass.__dict__ or "__ne__" in klass.__dict__:
            return True
    return True


class Converter:
    """The fallback `codec.encode_value` calls on the program's side. Values it can't make
    plain are kept in ``objects`` and cross as handles."""

    def __init__(self) -> None:
        self.objects: dict[int, Any] = {}

    def keep(self, value: Any) -> dict:
        handle = len(self.objects)
        self.objects[handle] = value
        return {"h": [handle, type(value).__name__[:200]]}

    def __call__(self, value: Any, encode: Callable[[Any], Any]) -> Any:
        cls = type(value)
        fields = getattr(cls, "_fields", None)
        if (
            issubclass(cls, tuple)
            and type(fields) is tuple
            and all(type(f) is str for f in fields)
            and not _own_equality(cls, tuple)
        ):
            return {"N": [cls.__name__, list(fields), [encode(v) for v in value]]}
        for base, convert in _BASES:
            if isinstance(value, base):
                if _own_equality(cls, base):
                    break
                try:
                    plain = convert(value)
                except Exception:  # noqa: BLE001
                    break
                if type(plain) is base:
                    return encode(plain)
                break
        return self.keep(value)
