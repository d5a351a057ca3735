"""Host-side rewards (never imports jax): execution outcomes, syntax and data-flow match to the
reference, and weighted sums of them chosen by name in the config.

Modules:
  registry   `REWARDS` / `TOKEN_REWARDS` and the two function signatures users implement
  execution  "coderl", "rltf_adaptive", "compile"; RLTF's error-line penalty "rltf_error_line"
  syntax     "ast_match" (R_ast)
  dataflow   "dfg_match" (R_dfg)
  compose    `make_reward(spec)`: a weighted sum with per-component metrics
  length     DAPO's soft overlong punishment `overlong_penalty`
"""

from rlfb_jax.rewards import dataflow, execution, syntax  # noqa: F401  (registers the rewards)
from rlfb_jax.rewards.compose import WeightedReward, check_reward_spec, make_reward, parse_spec
from rlfb_jax.rewards.execution import (
    CODERL_LEVELS,
    compiles,
    error_line_span,
    sandbox_errors,
    span_token_rewards,
)
from rlfb_jax.rewards.length import overlong_penalty
from rlfb_jax.rewards.registry import (
    REWARDS,
    TOKEN_REWARDS,
    get_reward,
    get_token_reward,
    register_reward,
    register_token_reward,
)

__all__ = [
    "CODERL_LEVELS",
    "REWARDS",
    "TOKEN_REWARDS",
    "WeightedReward",
    "compiles",
    "error_line_span",
    "get_reward",
    "get_token_reward",
    "make_reward",
    "overlong_penalty",
    "parse_spec",
    "check_reward_spec",
    "register_reward",
    "register_token_reward",
    "sandbox_errors",
    "span_token_rewards",
]
