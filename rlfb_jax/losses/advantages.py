"""Advantage estimators for policy-gradient and PPO updates, registered by name.

Every estimator is a pure jnp function

    fn(rewards, mask, *, values=None, group_size=1, baseline=None, **hp) -> (advantages, returns)

* ``rewards`` [B, T] float32: token-level rewards. The sequence reward sits on the last
  completion token (`last_token_rewards`); per-token terms (a KL penalty from `rlfb_jax.losses.kl.kl_penalty_rewards`,
  the RLTF error-line penalty) are added where they belong.
* ``mask`` [B, T] float32 (or bool): 1 on completion tokens. On the [B, L-1] layout of
  `rlfb_jax.losses.sequence` this is ``target_mask(batch)``. A masked-out position ends the
  episode: nothing flows backwards across it, and the value after the last token is 0.
* ``values`` [B, T] float32: V(s_t), the value of the state in which token t is chosen.
* ``group_size``: rows are grouped by prompt: row ``i * group_size + j`` is sample j of
  prompt i (B must be a multiple of it).
* ``baseline`` [B] float32: a per-row baseline reward (the greedy sample's reward, CodeRL).
* ``whiten`` (every estimator): normalize the advantages to mean 0, std 1 over the masked
  tokens of the batch.

Both outputs are [B, T] float32 and zero off the mask. ``returns`` are the regression
targets of a value function (discounted returns-to-go, or GAE's lambda-returns for "gae").
A row with an empty mask (a sample masked out of the loss, e.g. a ``sandbox_error``) gets
zero advantage and does not count in the batch or group statistics of "batch_mean",
"rloo" and "grpo".

Registered: "reinforce", "value_baseline", "batch_mean", "rloo", "greedy_baseline", "grpo",
"dr_grpo", "reinforce_pp", "gae". Add one with `register_advantage`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlfb_jax.registry import Registry

ADVANTAGES = Registry("advantage estimator")
register_advantage = ADVANTAGES.register
get_advantage = ADVANTAGES.get


def compute_advantages(name: str, rewards, mask, **kwargs):
    """Looks up estimator ``name`` and applies it: ``(advantages, returns)``, both [B, T]."""
    return get_advantage(name)(rewards, mask, **kwargs)


# ---------------------------------------------------------------------------- building blocks


def discounted_returns(rewards: jax.Array, mask: jax.Array, gamma: float = 1.0) -> jax.Array:
    """Returns-to-go G_t = r_t + gamma * G_{t+1} [B, T] float32, as a reverse `lax.scan`.

    The recursion restarts at every masked-out position, so right padding contributes nothing
    and prompt positions stay 0.
    """
    rewards, mask = _f32(rewards), _f32(mask)

    def step(next_return, inputs):
        r, m = inputs
        g = (r + gamma * next_return) * m
        return g, g

    _, out = jax.lax.scan(step, jnp.zeros(rewards.shape[0]), (rewards.T, mask.T), reverse=True)
    return out.T


def gae(
    rewards: jax.Array, values: jax.Array, mask: jax.Array, gamma: float = 1.0, lam: float = 0.95
) -> jax.Array:
    """Generalized advantage estimation (Schulman et al. 2016, eq. 16) [B, T] float32.

    delta_t = r_t + gamma * V_{t+1} - V_t and A_t = delta_t + gamma * lam * A_{t+1}, computed
    right to left with a reverse `lax.scan`. V_{t+1} and A_{t+1} are 0 after the last token
    of a sequence (a masked-out position ends the episode).
    """
    rewards, values, mask = _f32(rewards), _f32(values), _f32(mask)

    def step(carry, inputs):
        next_value, next_adv = carry
        r, v, m = inputs
        delta = r + gamma * next_value - v
        adv = (delta + gamma * lam * next_adv) * m
        # Zeroing the carry off the mask is what makes "value after the last token = 0".
        return (v * m, adv), adv

    zeros = jnp.zeros(rewards.shape[0])
    _, out = jax.lax.scan(step, (zeros, zeros), (rewards.T, values.T, mask.T), reverse=True)
    return out.T


def last_token_rewards(sequence_rewards: jax.Array, mask: jax.Array) -> jax.Array:
    """Token rewards [B, T] float32 with each sequence's reward [B] on its last masked token
    (all zeros for a row with an empty mask). Add per-token terms to the result."""
    mask = _f32(mask)
    t = mask.shape[1]
    last = t - 1 - jnp.argmax(mask[:, ::-1] > 0, axis=1)
    onehot = (jnp.arange(t)[None, :] == last[:, None]) & (mask > 0)
    return onehot * _f32(sequence_rewards)[:, None]


def sequence_returns(returns: jax.Array, mask: jax.Array) -> jax.Array:
    """The return of each sequence: G at its first completion token, [B] float32 (0 if empty).

    With gamma = 1 this is the sum of the row's token rewards.
    """
    mask = _f32(mask)
    first = jnp.argmax(mask > 0, axis=1)
    g0 = jnp.take_along_axis(_f32(returns), first[:, None], axis=1)[:, 0]
    return g0 * (jnp.sum(mask, axis=1) > 0)


def whiten(x: jax.Array, mask: jax.Array, shift_mean: bool = True, eps: float = 1e-8):
    """x normalized to mean 0 (if ``shift_mean``) and std 1 over the masked entries; 0 off it."""
    x, mask = _f32(x), _f32(mask)
    n = jnp.maximum(jnp.sum(mask), 1.0)
    mean = jnp.sum(x * mask) / n
    var = jnp.sum(jnp.square(x - mean) * mask) / n
    out = (x - mean) * jax.lax.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def _f32(x) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


def _finish(adv, returns, mask, whiten_adv: bool):
    mask = _f32(mask)
    adv = whiten(adv, mask) if whiten_adv else adv * mask
    return adv, returns * mask


def _valid_rows(mask) -> jax.Array:
    """[B] float32: 1 for rows with at least one masked token."""
    return (jnp.sum(_f32(mask), axis=1) > 0).astype(jnp.float32)


def _groups(x: jax.Array, group_size: int) -> jax.Array:
    """[B] -> [B / group_size, group_size], checking the grouping statically."""
    b = x.shape[0]
    if group_size < 1 or b % group_size:
        raise ValueError(f"batch size {b} is not a multiple of group_size={group_size}")
    return x.reshape(b // group_size, group_size)


def _require(name: str, **arrays):
    for key, value in arrays.items():
        if value is None:
            raise ValueError(f"advantage estimator {name!r} needs {key}=[B, ...]")


def _minus_row_baseline(rewards, mask, b, gamma, whiten_adv):
    returns = discounted_returns(rewards, mask, gamma)
    return _finish(returns - b[:, None], returns, mask, whiten_adv)


# ---------------------------------------------------------------------------- estimators


@register_advantage("reinforce")
def reinforce(rewards, mask, *, values=None, group_size=1, baseline=None, gamma=1.0,
              whiten=False):
    """REINFORCE without a baseline (Williams 1992): A_t = G_t, the discounted return-to-go."""
    del values, group_size, baseline
    returns = discounted_returns(rewards, mask, gamma)
    return _finish(returns, returns, mask, whiten)


@register_advantage("value_baseline")
def value_baseline(rewards, mask, *, values=None, group_size=1, baseline=None, gamma=1.0,
                   whiten=False):
    """REINFORCE with a learned value baseline: A_t = G_t - V(s_t) (equals GAE with lam = 1)."""
    del group_size, baseline
    _require("value_baseline", values=values)
    returns = discounted_returns(rewards, mask, gamma)
    return _finish(returns - _f32(values), returns, mask, whiten)


@register_advantage("batch_mean")
def batch_mean(rewards, mask, *, values=None, group_size=1, baseline=None, gamma=1.0,
               whiten=False):
    """REINFORCE minus the batch mean of the sequence returns: A_t = G_t - mean_i G_0^i.

    Rows with an empty mask do not count towards the mean.
    """
    del values, group_size, baseline
    returns = discounted_returns(rewards, mask, gamma)
    seq = sequence_returns(returns, mask)
    valid = _valid_rows(mask)
    b = jnp.sum(seq * valid) / jnp.maximum(jnp.sum(valid), 1.0)
    return _finish(returns - b, returns, mask, whiten)


@register_advantage("rloo")
def rloo(rewards, mask, *, values=None, group_size=1, baseline=None, gamma=1.0, whiten=False):
    """REINFORCE leave-one-out (Kool et al. 2019; Ahmadian et al. 2024): each sample's baseline
    is the mean sequence return of the other group_size - 1 samples of its prompt.
    """
    del values, baseline
    if group_size < 2:
        raise ValueError("rloo needs group_size >= 2 (samples per prompt)")
    returns = discounted_returns(rewards, mask, gamma)
    seq = _groups(sequence_returns(returns, mask), group_size)
    valid = _groups(_valid_rows(mask), group_size)
    n = jnp.sum(valid, axis=1, keepdims=True)
    others = jnp.sum(seq * valid, axis=1, keepdims=True) - seq * valid
    # a sample alone in its group (the others masked out) has no baseline: advantage 0
    loo = jnp.where(n > 1, others / jnp.maximum(n - 1, 1.0), seq)
    return _finish(returns - loo.reshape(-1)[:, None], returns, mask, whiten)


@register_advantage("greedy_baseline")
def greedy_baseline(rewards, mask, *, values=None, group_size=1, baseline=None, gamma=1.0,
                    whiten=False):
    """CodeRL's critical-sampling baseline (Le et al. 2022, eq. 6): A_t = G_t - r(greedy), with
    ``baseline`` [B] the reward of the greedy decode of each row's prompt.
    """
    del values, group_size
    _require("greedy_baseline", baseline=baseline)
    return _minus_row_baseline(rewards, mask, _f32(baseline), gamma, whiten)


@register_advantage("grpo")
def grpo(rewards, mask, *, values=None, group_size=1, baseline=None, gamma=1.0, whiten=False,
         scale: str = "std", eps: float = 1e-6, ddof: int = 1):
    """Group-normalized advantages (GRPO, Shao et al. 2024, outcome supervision):
    A_t = (R_i - mean_group R) / (std_group R + eps) on every token of sequence i.

    ``scale="none"`` drops the division by the std (Dr. GRPO, Liu et al. 2025). ``ddof`` is
    the std's delta degrees of freedom (1: the unbiased estimate most implementations use).
    ``returns`` are the plain returns-to-go.
    """
    del values, baseline
    if scale not in ("std", "none"):
        raise ValueError(f"grpo scale must be 'std' or 'none', got {scale!r}")
    if scale == "std" and group_size - ddof < 1:
        raise ValueError(f"grpo needs group_size > ddof={ddof}, got group_size={group_size}")
    returns = discounted_returns(rewards, mask, gamma)
    seq = _groups(sequence_returns(returns, mask), group_size)
    valid = _groups(_valid_rows(mask), group_size)
    n = jnp.sum(valid, axis=1, keepdims=True)
    adv = seq - jnp.sum(seq * valid, axis=1, keepdims=True) / jnp.maximum(n, 1.0)
    if scale == "std":  # over the group's valid rows, ddof as in np.std
        var = jnp.sum(valid * jnp.square(adv), axis=1, keepdims=True) / jnp.maximum(n - ddof, 1.0)
        adv = adv / (jnp.sqrt(var) + eps)
    adv = jnp.broadcast_to(adv.reshape(-1)[:, None], returns.shape)
    return _finish(adv, returns, mask, whiten)


@register_advantage("dr_grpo")
def dr_grpo(rewards, mask, *, values=None, group_size=1, baseline=None, gamma=1.0,
            whiten=False):
    """Dr. GRPO's advantage (Liu et al. 2025, "Understanding R1-Zero-Like Training", sec. 3.2
    and eq. 3): A_i = R_i - mean_group R on every token of sequence i, without GRPO's
    division by the group std (which up-weights prompts that are nearly always or never
    solved). The paper's other half, a length-unbiased sum of token terms over a constant,
    is the loss's ``aggregation="seq_sum_norm"``."""
    return grpo(rewards, mask, values=values, group_size=group_size, baseline=baseline,
                gamma=gamma, whiten=whiten, scale="none")


@register_advantage("reinforce_pp")
def reinforce_pp(rewards, mask, *, values=None, group_size=1, baseline=None, gamma=1.0,
                 whiten=True):
    """REINFORCE++ (Hu 2025, sec. 3): A_t = sum_{s >= t} gamma^(s-t) r_s, the outcome plus
    the per-token KL penalty -beta KL_s (which `rlfb_jax.algos.pg_batch.Scorer` puts in this
    estimator's reward), normalized to mean 0 and std 1 over the masked tokens of the whole
    batch: global batch normalization in place of a critic or a per-prompt baseline.
    Always whitened; ``returns`` are the returns-to-go."""
    del values, group_size, baseline, whiten
    returns = discounted_returns(rewards, mask, gamma)
    return _finish(returns, returns, mask, True)


@register_advantage("gae")
def gae_advantages(rewards, mask, *, values=None, group_size=1, baseline=None, gamma=1.0,
                   lam=0.95, whiten=False):
    """Token-level GAE(gamma, lam) with a learned value; returns = A + V (lambda-returns), the
    PPO value target. Whitening applies to the advantages only, after the returns are formed.
    """
    del group_size, baseline
    _require("gae", values=values)
    adv = gae(rewards, values, mask, gamma, lam)
    returns = adv + _f32(values)
    return _finish(adv, returns, mask, whiten)
