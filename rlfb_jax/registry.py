"""Registries of named parts (losses, advantage estimators, KL estimators, rewards, algorithms).

A config chooses a part with a string; a user adds one with a decorator:

    from rlfb_jax.losses import register_loss

    @register_loss("my_loss")
    def my_loss(params, batch, *, model, alpha=0.1):
        ...
        return loss, {"loss/my": loss}

This module imports nothing heavy, so host-only layers (rewards, executor) can use it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, *, overwrite: bool = False) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items and not overwrite and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(sorted(self._items))}"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)


def check_options(registry: Registry, name: str, options: Iterable[str], where: str, *,
                  skip: int, passed: Iterable[str] = ()) -> None:
    """ValueError, before any work, when `name` is not registered in `registry` or its
    function takes no keyword of one of the names in `options` (after its first `skip`
    positional parameters); a function with ``**kwargs`` takes any. `passed` names the
    keywords the caller sets itself: giving one of them as an option is an error too."""
    if name not in registry:
        raise ValueError(f"{where}: unknown {registry.kind} {name!r}; registered: "
                         f"{', '.join(registry.names())} (one of your own needs its module "
                         "in config.imports)")
    options, passed = set(options), set(passed)
    if options & passed:
        raise ValueError(f"{where}.{sorted(options & passed)[0]}: set by the trainer itself; "
                         "remove it")
    params = list(inspect.signature(registry.get(name)).parameters.values())[skip:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = sorted(p.name for p in params
                   if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in passed)
    unknown = sorted(options - set(known))
    if unknown:
        raise ValueError(f"{where}: {registry.kind} {name!r} has no option(s) {unknown}; it "
                         f"takes {known or 'none'}")
