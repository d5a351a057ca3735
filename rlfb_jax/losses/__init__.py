"""Pure loss functions, registered by name (see `rlfb_jax.losses.registry`), plus the
advantage estimators (`rlfb_jax.losses.advantages`) and KL estimators / controllers
(`rlfb_jax.losses.kl`) that policy-gradient algorithms pick by name."""

from rlfb_jax.losses import (  # noqa: F401  (registers "sft", "pg", "ppo", "verifier", "critic")
    critic,
    pg,
    sft,
    verifier,
)
from rlfb_jax.losses.advantages import (
    ADVANTAGES,
    compute_advantages,
    get_advantage,
    register_advantage,
)
from rlfb_jax.losses.kl import (
    KL_CONTROLLERS,
    KL_ESTIMATORS,
    KLController,
    KLControlState,
    get_kl_estimator,
    kl_penalty_rewards,
    make_kl_controller,
    register_kl_controller,
    register_kl_estimator,
    sequence_kl,
)
from rlfb_jax.losses.registry import LOSSES, get_loss, register_loss

__all__ = [
    "ADVANTAGES",
    "KL_CONTROLLERS",
    "KL_ESTIMATORS",
    "LOSSES",
    "KLControlState",
    "KLController",
    "compute_advantages",
    "get_advantage",
    "get_kl_estimator",
    "get_loss",
    "kl_penalty_rewards",
    "make_kl_controller",
    "register_advantage",
    "register_kl_controller",
    "register_kl_estimator",
    "register_loss",
    "sequence_kl",
]
