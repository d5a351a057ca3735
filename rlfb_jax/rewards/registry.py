"""The reward registries and the two function types a user implements (host only: no jax).

Sequence rewards, registered in `REWARDS` with `register_reward`::

    reward_fn(task, completion: str, outcome, **kwargs) -> float

* ``task``: a `rlfb_jax.data.Task` (the functions here read ``prompt`` and ``reference``);
* ``completion``: the decoded completion, without the end-of-sequence token; the executed
  program is ``task.prompt + completion``;
* ``outcome``: the executor's `rlfb_jax.executor.Outcome` for that program (status, per-test
  results, error type / line, pass ratio);
* ``kwargs``: the reward's options, from the config (e.g. ``{"passed": 2.0}``).

The value goes on the sequence's last completion token (see `rlfb_jax.losses.advantages`).

Token-level terms, registered in `TOKEN_REWARDS` with `register_token_reward`::

    token_reward_fn(task, completion: str, outcome, **kwargs) -> list[tuple[int, int, float]]

Each ``(start, end, value)`` adds ``value`` to every completion token whose characters
overlap ``completion[start:end]``; `rlfb_jax.rewards.execution.span_token_rewards` does that
mapping from a tokenizer's character offsets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlfb_jax.registry import Registry

RewardFn = Callable[..., float]
TokenRewardFn = Callable[..., list[tuple[int, int, float]]]

REWARDS: Registry[RewardFn] = Registry("reward")
register_reward = REWARDS.register
get_reward = REWARDS.get

TOKEN_REWARDS: Registry[TokenRewardFn] = Registry("token reward")
register_token_reward = TOKEN_REWARDS.register
get_token_reward = TOKEN_REWARDS.get

Span = tuple[int, int]
Task = Any  # rlfb_jax.data.Task; duck-typed so that this layer imports nothing heavy
