"""Weighted sums of registered rewards, built from the config (host only: numpy).

A spec is either a mapping ``{"coderl": 1.0, "ast_match": 0.5}`` (a value may also be a
mapping ``{"weight": 0.5, **kwargs}`` to pass options), or a sequence of ``(name, weight)``
/ ``(name, weight, kwargs)`` entries. `make_reward` checks every name up front, so a typo in
the config fails before any sampling, with the list of registered rewards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rlfb_jax.registry import check_options
from rlfb_jax.rewards.execution import sandbox_errors
from rlfb_jax.rewards.registry import REWARDS, RewardFn, get_reward

Component = tuple[str, float, dict[str, Any], RewardFn]


def parse_spec(spec) -> list[tuple[str, float, dict[str, Any]]]:
    """The spec as a list of (name, weight, kwargs); see the module docstring."""
    entries = []
    if isinstance(spec, str):
        spec = {spec: 1.0}
    if isinstance(spec, Mapping) or hasattr(spec, "items"):
        for name, value in spec.items():
            if isinstance(value, Mapping) or hasattr(value, "items"):
                kwargs = dict(value)
                weight = kwargs.pop("weight", 1.0)
                entries.append((name, float(weight), kwargs))
            else:
                entries.append((name, float(value), {}))
    elif isinstance(spec, Sequence):
        for entry in spec:
            if isinstance(entry, str):
                entries.append((entry, 1.0, {}))
            elif len(entry) == 2:
                entries.append((entry[0], float(entry[1]), {}))
            elif len(entry) == 3:
                entries.append((entry[0], float(entry[1]), dict(entry[2])))
            else:
                raise ValueError(f"reward entry {entry!r}: expected (name, weight[, kwargs])")
    else:
        raise TypeError(f"reward spec must be a mapping or a sequence, got {type(spec).__name__}")
    if not entries:
        raise ValueError("reward spec is empty")
    names = [name for name, _, _ in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"reward spec names a reward twice: {names}")
    return entries


class WeightedReward:
    """``fn(tasks, completions, outcomes) -> (rewards [B] float32, metrics)``.

    ``rewards[i] = sum_k weight_k * reward_k(tasks[i], completions[i], outcomes[i], **kwargs_k)``.
    ``metrics`` (flat, slash names): ``reward/<name>`` the batch mean of each unweighted
    component, ``reward/total`` the mean of the sum, and ``reward/sandbox_error_frac``.
    """

    def __init__(self, spec):
        self.components: list[Component] = [
            (name, weight, kwargs, get_reward(name)) for name, weight, kwargs in parse_spec(spec)
        ]

    def __call__(self, tasks: Sequence, completions: Sequence[str], outcomes: Sequence
                 ) -> tuple[np.ndarray, dict[str, float]]:
        if not len(tasks) == len(completions) == len(outcomes):
            raise ValueError(f"got {len(tasks)} tasks, {len(completions)} completions and "
                             f"{len(outcomes)} outcomes")
        total = np.zeros(len(tasks), np.float64)
        metrics: dict[str, float] = {}
        for name, weight, kwargs, fn in self.components:
            values = np.array([fn(t, c, o, **kwargs)
                               for t, c, o in zip(tasks, completions, outcomes)], np.float64)
            total += weight * values
            metrics[f"reward/{name}"] = float(values.mean()) if len(values) else 0.0
        metrics["reward/total"] = float(total.mean()) if len(total) else 0.0
        bad = sandbox_errors(outcomes)
        metrics["reward/sandbox_error_frac"] = float(bad.mean()) if len(bad) else 0.0
        return total.astype(np.float32), metrics

    def __repr__(self) -> str:
        parts = ", ".join(f"{w:g} * {n}" for n, w, _, _ in self.components)
        return f"WeightedReward({parts})"


def make_reward(spec) -> WeightedReward:
    """The weighted-sum reward of ``spec`` (see the module docstring and `WeightedReward`)."""
    return WeightedReward(spec)


def check_reward_spec(spec, where: str = "config.rl.rewards") -> None:
    """ValueError, before any work, naming an unregistered reward of `spec` or an option its
    function does not take."""
    for name, _, kwargs in parse_spec(spec):
        check_options(REWARDS, name, kwargs, f"{where}.{name}", skip=3)
