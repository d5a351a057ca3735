"""Pure loss functions, registered by name (see `rlfb_jax.losses.registry`)."""

from rlfb_jax.losses import sft  # noqa: F401  (registers "sft")
from rlfb_jax.losses.registry import LOSSES, get_loss, register_loss

__all__ = ["LOSSES", "get_loss", "register_loss"]
