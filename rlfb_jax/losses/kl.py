"""KL to the frozen reference model: per-token estimators and the KL coefficient controllers.

Estimators (Schulman, "Approximating KL divergence", 2020), registered in `KL_ESTIMATORS`.
Tokens are sampled from the policy pi, and with r = p_ref(x) / pi(x) each estimator's mean
over those samples estimates KL(pi || p_ref):

* "k1" = -log r = log pi - log p_ref: unbiased, high variance, can be negative per token;
* "k2" = (log r)^2 / 2: biased (low for close distributions), low variance, >= 0;
* "k3" = (r - 1) - log r: unbiased (E_pi[r] = 1) and >= 0 per token.

An estimator is ``fn(logprobs, ref_logprobs) -> [...]`` (elementwise, float32). The KL term
goes either into the reward (`kl_penalty_rewards`, as in Ziegler et al. 2019 and PPOCoder)
or into the loss (``batch["kl_beta"]`` or the ``kl_in_loss_beta`` hparam of the "pg" / "ppo"
losses, as in GRPO).

Controllers pick the coefficient beta, optax style: a `KLController` is a pair of pure
functions ``init() -> KLControlState`` and ``update(state, kl, n_steps) -> KLControlState``;
the state is a NamedTuple of arrays, so it can live in the train state and be jitted.
Registered in `KL_CONTROLLERS`: "fixed" and "adaptive" (Ziegler et al. 2019, section 2.2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rlfb_jax.registry import Registry

KL_ESTIMATORS = Registry("KL estimator")
register_kl_estimator = KL_ESTIMATORS.register
get_kl_estimator = KL_ESTIMATORS.get

# exp(log r) in k3 overflows float32 near log r = 88; tokens whose log-ratio is this far out
# are numerically meaningless anyway, so k3 clips it.
_K3_MAX_LOG_RATIO = 20.0


@register_kl_estimator("k1")
def k1(logprobs: jax.Array, ref_logprobs: jax.Array) -> jax.Array:
    """k1 = log pi(x) - log p_ref(x) = -log r."""
    return jnp.asarray(logprobs, jnp.float32) - jnp.asarray(ref_logprobs, jnp.float32)


@register_kl_estimator("k2")
def k2(logprobs: jax.Array, ref_logprobs: jax.Array) -> jax.Array:
    """k2 = (log r)^2 / 2."""
    return 0.5 * jnp.square(k1(logprobs, ref_logprobs))


@register_kl_estimator("k3")
def k3(logprobs: jax.Array, ref_logprobs: jax.Array) -> jax.Array:
    """k3 = (r - 1) - log r with log r = log p_ref - log pi, clipped to +-20."""
    log_r = jnp.clip(-k1(logprobs, ref_logprobs), -_K3_MAX_LOG_RATIO, _K3_MAX_LOG_RATIO)
    return jnp.expm1(log_r) - log_r


def kl_penalty_rewards(
    logprobs: jax.Array,
    ref_logprobs: jax.Array,
    mask: jax.Array,
    beta: float | jax.Array,
    estimator: str = "k1",
) -> jax.Array:
    """Per-token KL penalty -beta * k(x_t) [B, T] float32, to add to the token rewards.

    Ziegler et al. 2019 (eq. 2) and PPOCoder (Shojaee et al. 2023) put -beta * KL in the reward.
    Inputs are [B, T] log-probabilities of the sampled tokens under the policy (at sampling
    time) and the frozen reference; ``mask`` [B, T] zeroes non-completion tokens. No
    gradient flows through the result (it is a reward).
    """
    k = get_kl_estimator(estimator)(logprobs, ref_logprobs)
    out = -jnp.asarray(beta, jnp.float32) * k * jnp.asarray(mask, jnp.float32)
    return jax.lax.stop_gradient(out)


def sequence_kl(
    logprobs: jax.Array, ref_logprobs: jax.Array, mask: jax.Array, estimator: str = "k1"
) -> jax.Array:
    """KL of each whole sequence: the sum over its tokens of the estimator, [B] float32.

    Its batch mean is the KL that the adaptive controller compares with its target.
    """
    k = get_kl_estimator(estimator)(logprobs, ref_logprobs)
    return jnp.sum(k * jnp.asarray(mask, jnp.float32), axis=-1)


# ---------------------------------------------------------------------------- controllers


class KLControlState(NamedTuple):
    beta: jax.Array  # [] float32, the current KL coefficient


class KLController(NamedTuple):
    """``init() -> state``; ``update(state, kl, n_steps) -> state``, with ``kl`` the observed
    KL (per sequence, e.g. the mean of `sequence_kl`) and ``n_steps`` the number of samples
    (or steps) it was measured over."""

    init: Callable[[], KLControlState]
    update: Callable[[KLControlState, jax.Array, int | jax.Array], KLControlState]


KL_CONTROLLERS = Registry("KL controller")
register_kl_controller = KL_CONTROLLERS.register


def make_kl_controller(name: str, **kwargs) -> KLController:
    """The controller ``name`` ("fixed" or "adaptive", or a registered one) built from kwargs."""
    return KL_CONTROLLERS.get(name)(**kwargs)


@register_kl_controller("fixed")
def fixed_kl_controller(beta: float) -> KLController:
    """A constant beta."""

    def init() -> KLControlState:
        return KLControlState(jnp.asarray(beta, jnp.float32))

    def update(state: KLControlState, kl, n_steps) -> KLControlState:
        del kl, n_steps
        return state

    return KLController(init, update)


def adaptive_kl_update(
    state: KLControlState, kl, n_steps, *, target: float, horizon: float, clip: float = 0.2
) -> KLControlState:
    """Ziegler et al. 2019, section 2.2: e = clip(KL / target - 1, -clip, clip) and
    beta <- beta * (1 + e * min(n_steps / horizon, 1)).

    ``n_steps`` counts what the paper's K_beta = n / horizon counts: the sampled sequences
    (episodes) the KL was measured on in this update (the reference implementation passes
    its rollout batch size). The gain is capped at 1, so one update moves beta by at most
    a factor 1 +- clip and beta stays positive however large the batch (uncapped, n = 16,384
    rows at horizon 2,000 and KL 0 would give 0.02 * (1 - 0.2 * 8.2) = -0.0128).
    """
    error = jnp.clip(jnp.asarray(kl, jnp.float32) / target - 1.0, -clip, clip)
    gain = jnp.minimum(jnp.asarray(n_steps, jnp.float32) / horizon, 1.0)
    return KLControlState(state.beta * (1.0 + error * gain))


@register_kl_controller("adaptive")
def adaptive_kl_controller(
    init_beta: float, target: float, horizon: float, clip: float = 0.2
) -> KLController:
    """Adaptive beta steering the observed KL towards ``target`` (see `adaptive_kl_update`)."""
    if target <= 0 or horizon <= 0:
        raise ValueError(f"adaptive KL needs target > 0 and horizon > 0, got {target}, {horizon}")
    if not 0 < clip < 1:
        raise ValueError(f"adaptive KL needs 0 < clip < 1 (beta stays positive), got {clip}")

    def init() -> KLControlState:
        return KLControlState(jnp.asarray(init_beta, jnp.float32))

    def update(state: KLControlState, kl, n_steps) -> KLControlState:
        return adaptive_kl_update(state, kl, n_steps, target=target, horizon=horizon, clip=clip)

    return KLController(init, update)
