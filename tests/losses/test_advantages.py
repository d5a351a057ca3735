"""Advantage estimators against numbers computed by hand (written out below)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlfb_jax.losses import ADVANTAGES, compute_advantages, get_advantage
from rlfb_jax.losses.advantages import (
    discounted_returns,
    gae,
    last_token_rewards,
    sequence_returns,
    whiten,
)

# Row 0: prompt token, then 3 completion tokens; row 1: prompt, 2 completion tokens, padding.
# The 7.0 on row 1's padding must never leak into its returns.
MASK = np.array([[0, 1, 1, 1], [0, 1, 1, 0]], np.float32)
REWARDS = np.array([[0.0, 0.1, 0.0, 1.0], [0.0, 0.0, 0.5, 7.0]], np.float32)


def close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b, np.float32), rtol=tol, atol=tol)


def test_registered_names():
    assert ADVANTAGES.names() == ["batch_mean", "dr_grpo", "gae", "greedy_baseline", "grpo",
                                  "reinforce", "reinforce_pp", "rloo", "value_baseline"]
    with pytest.raises(KeyError, match="registered: batch_mean, dr_grpo, gae"):
        get_advantage("nope")


def test_reinforce_discounted_returns_to_go():
    adv, ret = compute_advantages("reinforce", REWARDS, MASK, gamma=0.5)
    # row 0: G3 = 1, G2 = 0 + .5 * 1 = .5, G1 = .1 + .5 * .5 = .35
    # row 1: G2 = .5, G1 = 0 + .5 * .5 = .25; the padding reward is ignored
    expected = [[0, 0.35, 0.5, 1.0], [0, 0.25, 0.5, 0]]
    close(adv, expected)
    close(ret, expected)
    close(sequence_returns(ret, MASK), [0.35, 0.25])


def test_batch_mean_baseline():
    adv, ret = compute_advantages("batch_mean", REWARDS, MASK)
    # gamma 1: returns-to-go [0, 1.1, 1, 1] and [0, .5, .5, 0]; sequence returns 1.1 and .5,
    # batch mean .8
    close(ret, [[0, 1.1, 1.0, 1.0], [0, 0.5, 0.5, 0]])
    close(adv, [[0, 0.3, 0.2, 0.2], [0, -0.3, -0.3, 0]])


def _outcome_rewards(seq_rewards):
    """Two completion tokens per row, the sequence reward on the last one."""
    r = np.zeros((len(seq_rewards), 2), np.float32)
    r[:, 1] = seq_rewards
    return r, np.ones_like(r)


def test_rloo_leave_one_out():
    rewards, mask = _outcome_rewards([1.0, 0.0, 0.5, 2.0, 2.0, -1.0])
    adv, ret = compute_advantages("rloo", rewards, mask, group_size=3)
    # group 0: baselines (0 + .5) / 2 = .25, (1 + .5) / 2 = .75, (1 + 0) / 2 = .5
    # group 1: baselines (2 - 1) / 2 = .5, .5, (2 + 2) / 2 = 2
    expected = np.array([0.75, -0.75, 0.0, 1.5, 1.5, -3.0])
    close(adv, np.stack([expected, expected], 1))
    close(ret[:, 1], rewards[:, 1])
    with pytest.raises(ValueError, match="group_size >= 2"):
        compute_advantages("rloo", rewards, mask, group_size=1)
    with pytest.raises(ValueError, match="not a multiple"):
        compute_advantages("rloo", rewards, mask, group_size=4)


def test_greedy_baseline():
    rewards, mask = _outcome_rewards([1.0, -0.3, -1.0])
    adv, _ = compute_advantages("greedy_baseline", rewards, mask,
                                baseline=np.array([-0.3, -0.3, 1.0]))
    close(adv[:, 0], [1.3, 0.0, -2.0])
    with pytest.raises(ValueError, match="needs baseline"):
        compute_advantages("greedy_baseline", rewards, mask)


def test_grpo_group_normalized():
    rewards, mask = _outcome_rewards([1.0, 0.0, 0.5, 2.0, 2.0, 2.0])
    adv, _ = compute_advantages("grpo", rewards, mask, group_size=3)
    # group 0: mean .5, unbiased std sqrt((.25 + .25 + 0) / 2) = .5; group 1: all equal -> 0
    close(adv[:, 1], [1.0, -1.0, 0.0, 0.0, 0.0, 0.0], tol=1e-5)
    close(adv[:, 0], adv[:, 1])  # the same advantage on every token of the sequence
    adv, _ = compute_advantages("grpo", rewards, mask, group_size=3, ddof=0)
    close(adv[:3, 1], np.array([0.5, -0.5, 0.0]) / np.sqrt(1 / 6), tol=1e-5)
    adv, _ = compute_advantages("grpo", rewards, mask, group_size=3, scale="none")  # Dr. GRPO
    close(adv[:, 1], [0.5, -0.5, 0.0, 0.0, 0.0, 0.0])


def test_masked_out_rows_leave_the_group_statistics():
    """Row 1 is masked out (a sandbox error scored 0): it gets no advantage, and the other
    rows get what they would get in a group without it (not a group where it is a 0)."""
    rewards, mask = _outcome_rewards([1.0, 0.0, -0.6, 0.4, 2.0, 2.0])
    mask[1] = 0
    rloo, _ = compute_advantages("rloo", rewards, mask, group_size=3)
    # group 0 without row 1: {1.0, -0.6}: baselines -0.6 and 1.0
    close(rloo[:3, 1], [1.6, 0.0, -1.6])
    close(rloo[3:, 1], [-1.6, 0.8, 0.8])  # group 1: baselines (2 + 2) / 2, (.4 + 2) / 2
    grpo, _ = compute_advantages("grpo", rewards, mask, group_size=3)
    # group 0 without row 1: mean 0.2, unbiased std sqrt(2 * 0.64 / 1) = 0.8 * sqrt(2)
    close(grpo[:3, 1], [1 / np.sqrt(2), 0.0, -1 / np.sqrt(2)])
    mean = np.mean([0.4, 2.0, 2.0])
    std = np.std([0.4, 2.0, 2.0], ddof=1)
    close(grpo[3:, 1], (np.array([0.4, 2.0, 2.0]) - mean) / std)
    # a sample whose group-mates are all masked out has no baseline: advantage 0
    mask[2] = 0
    close(compute_advantages("rloo", rewards, mask, group_size=3)[0][:3, 1], [0, 0, 0])
    close(compute_advantages("grpo", rewards, mask, group_size=3)[0][:3, 1], [0, 0, 0])


def test_gae_by_hand_with_padding():
    values = np.array([[5.0, 0.5, 0.6, 0.7], [0.4, 0.3, 9.0, 9.0]], np.float32)
    mask = np.array([[0, 1, 1, 1], [1, 1, 0, 0]], np.float32)
    rewards = np.array([[0.0, 0.0, 0.0, 1.0], [0.2, 1.0, 9.0, 9.0]], np.float32)
    adv, ret = compute_advantages("gae", rewards, mask, values=values, gamma=0.9, lam=0.8)
    # row 0: d3 = 1 - .7 = .3;  d2 = .9 * .7 - .6 = .03;  d1 = .9 * .6 - .5 = .04
    #        A3 = .3, A2 = .03 + .72 * .3 = .246, A1 = .04 + .72 * .246 = .21712
    # row 1: the value after the last token is 0 (not the 9.0 on the padding):
    #        d1 = 1 - .3 = .7, d0 = .2 + .9 * .3 - .4 = .07; A0 = .07 + .72 * .7 = .574
    close(adv, [[0, 0.21712, 0.246, 0.3], [0.574, 0.7, 0, 0]])
    close(ret, [[0, 0.71712, 0.846, 1.0], [0.974, 1.0, 0, 0]])
    with pytest.raises(ValueError, match="needs values"):
        compute_advantages("gae", rewards, mask)


def test_gae_lambda_one_is_value_baseline_and_lambda_zero_is_td():
    k1, k2 = jax.random.split(jax.random.key(0))
    rewards = jax.random.normal(k1, (3, 6))
    values = jax.random.normal(k2, (3, 6))
    mask = jnp.array([[0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], jnp.float32)
    a1, _ = compute_advantages("gae", rewards, mask, values=values, gamma=0.7, lam=1.0)
    vb, vb_ret = compute_advantages("value_baseline", rewards, mask, values=values, gamma=0.7)
    close(a1, vb)
    close(vb_ret, discounted_returns(rewards, mask, 0.7))
    td = gae(rewards, values, mask, gamma=0.7, lam=0.0)
    next_v = jnp.concatenate([values[:, 1:] * mask[:, 1:], jnp.zeros((3, 1))], axis=1)
    close(td, (rewards + 0.7 * next_v - values) * mask)


def test_whitening():
    x = jnp.array([[9.0, 1.0, 2.0, 3.0], [9.0, 4.0, 9.0, 9.0]])
    mask = jnp.array([[0, 1, 1, 1], [0, 1, 0, 0]], jnp.float32)
    w = whiten(x, mask)
    vals = np.asarray(w)[np.asarray(mask) > 0]
    close(vals, (np.array([1, 2, 3, 4]) - 2.5) / np.sqrt(1.25), tol=1e-4)
    assert float(jnp.sum(jnp.abs(w * (1 - mask)))) == 0.0
    adv, ret = compute_advantages("reinforce", x, mask, whiten=True)
    close(np.mean(np.asarray(adv)[np.asarray(mask) > 0]), 0.0)
    close(np.std(np.asarray(adv)[np.asarray(mask) > 0]), 1.0, tol=1e-4)
    close(ret, discounted_returns(x, mask))  # returns are not whitened


def test_estimators_jit():
    fn = jax.jit(functools.partial(get_advantage("gae"), gamma=0.9, lam=0.8))
    adv, _ = fn(jnp.asarray(REWARDS), jnp.asarray(MASK), values=jnp.zeros((2, 4)))
    # With V = 0, GAE is the return discounted by gamma * lam.
    close(adv, discounted_returns(REWARDS, MASK, 0.72))


def test_last_token_rewards():
    mask = np.array([[0, 1, 1, 1], [0, 1, 1, 0], [0, 0, 0, 0]], np.float32)
    out = last_token_rewards(jnp.array([1.0, -0.3, 5.0]), mask)
    close(out, [[0, 0, 0, 1.0], [0, 0, -0.3, 0], [0, 0, 0, 0]])
