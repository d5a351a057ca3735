"""Algorithms: one module per algorithm, each registering its ``train(driver) -> summary``.

    @register_algo("ppo", pool="rl")      # its executor pool is configured by config.rl
    def train(driver): ...

`rlfb_jax.algos.driver.run` looks the algorithm up by ``config.algo``, builds its `Driver`
and calls it (a finished run does no work).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from rlfb_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class Algo:
    train: Callable  # train(driver) -> summary
    pool: str | None  # the config section with the executor pool's workers and timeout


ALGOS: Registry[Algo] = Registry("algorithm")


def register_algo(name: str, *, pool: str | None = None):
    """Registers ``train(driver) -> summary`` as algorithm `name`; `pool` names the config
    section of its executor pool (None: ``config.eval``)."""

    def decorator(train: Callable) -> Callable:
        ALGOS.register(name)(Algo(train, pool))
        return train

    return decorator


def get_algo(name: str) -> Algo:
    # Import lazily so that `python -m rlfb_jax.main` only pays for what it runs.
    import importlib

    if name not in ALGOS:
        module = {"pg": "ppo"}.get(name, name)
        try:
            importlib.import_module(f"rlfb_jax.algos.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"rlfb_jax.algos.{module}":
                raise
    return ALGOS.get(name)


__all__ = ["ALGOS", "Algo", "get_algo", "register_algo"]
