"""Recent policy-gradient variants against numpy references written from the papers'
formulas: GSPO's sequence-level ratio (Zheng et al. 2025), Dr. GRPO's advantage (Liu et al.
2025), REINFORCE++'s batch-normalized advantage (Hu 2025)."""

import jax
import jax.numpy as jnp
import numpy as np

from rlfb_jax.losses import compute_advantages, get_loss
from rlfb_jax.losses.pg import gspo_objective
from rlfb_jax.losses.sequence import sequence_logprobs, target_mask
from rlfb_jax.models import LanguageModel, ModelConfig


def gspo_reference(logp, old, adv, mask, eps_low, eps_high):
    """Zheng et al. 2025, eqs. 5-7, one sequence at a time."""
    out = []
    for lp, ol, a, m in zip(logp, old, adv, mask):
        idx = np.flatnonzero(m)
        if not len(idx):
            out.append(0.0)
            continue
        s = np.exp(np.sum(lp[idx] - ol[idx]) / len(idx))  # (pi / pi_old)^(1 / |y|)
        a_i = np.mean(a[idx])
        out.append(-min(s * a_i, np.clip(s, 1 - eps_low, 1 + eps_high) * a_i))
    return np.array(out)


def test_gspo_objective_against_the_formula():
    rng = np.random.default_rng(0)
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], np.float32)
    old = rng.normal(-1.5, 0.5, mask.shape).astype(np.float32)
    # row 0: ratio up (clipped for A > 0), row 1: down (clipped for A < 0), row 2: inside
    shift = np.array([0.3, -0.3, 1e-4, 0.0], np.float32)[:, None]
    noise = rng.normal(0, 0.01, mask.shape).astype(np.float32) * mask
    noise[2] = 0.0  # row 2's ratio stays exactly inside the paper's tiny range
    logp = old + shift + noise
    adv = np.array([1.0, -2.0, 0.5, 3.0], np.float32)[:, None] * np.ones_like(mask)
    for eps_low, eps_high in ((0.2, 0.28), (3e-4, 4e-4)):
        loss, s, clipped = gspo_objective(jnp.asarray(logp), jnp.asarray(old), jnp.asarray(adv),
                                          jnp.asarray(mask), eps_low, eps_high)
        want = gspo_reference(logp, old, adv, mask, eps_low, eps_high)
        np.testing.assert_allclose(loss, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(clipped), [1, 1, 0, 0])  # at 3e-4 / 4e-4
    m3 = mask[:3]
    np.testing.assert_allclose(s[:3], np.exp(np.sum((logp - old)[:3] * m3, 1) / m3.sum(1)),
                               rtol=1e-5)


def test_gspo_loss_is_the_mean_over_sequences_and_its_gradient_is_length_normalized():
    lm = LanguageModel(ModelConfig(vocab_size=16, d_model=32, n_layers=1, n_heads=2, d_ff=64))
    params = {"policy": lm.init(jax.random.key(0))}
    tokens = np.random.default_rng(1).integers(1, 16, (3, 8)).astype(np.int32)
    loss_mask = np.zeros((3, 8), bool)
    loss_mask[0, 3:], loss_mask[1, 3:6], loss_mask[2, 5:] = True, True, True
    batch = {"tokens": tokens, "attention_mask": np.ones((3, 8), bool), "loss_mask": loss_mask}
    logp = np.asarray(sequence_logprobs(lm, params["policy"], batch)[0])
    mask = np.asarray(target_mask(batch))
    old = logp - 0.05 * mask  # every ratio above 1
    adv = np.array([1.0, -1.0, 2.0], np.float32)[:, None] * mask
    batch.update(old_logprobs=old, advantages=adv)
    loss, m = jax.jit(lambda p: get_loss("gspo")(p, batch, model=lm, clip_eps=0.2,
                                                 clip_eps_high=0.2))(params)
    want = gspo_reference(logp, old, adv, mask, 0.2, 0.2).mean()  # 1/G sum over sequences
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    np.testing.assert_allclose(m["gspo/ratio_mean"], np.exp(0.05), rtol=1e-5)
    # d loss / d logp_t = -A_i s_i / (G |y_i|) on each of the row's tokens (no clipping)
    logp_grad = jax.grad(lambda lp: jnp.mean(gspo_objective(lp, old, adv, mask, 0.2, 0.2)[0]))(
        jnp.asarray(logp))
    n = mask.sum(1)
    want_grad = -(np.array([1.0, -1.0, 2.0]) * np.exp(0.05) / (3 * n))[:, None] * mask
    np.testing.assert_allclose(logp_grad, want_grad, rtol=1e-5, atol=1e-8)


def _np_returns_to_go(r, mask):
    return np.cumsum((r * mask)[:, ::-1], axis=1)[:, ::-1] * mask


def test_dr_grpo_drops_the_std():
    r = np.zeros((6, 2), np.float32)
    r[:, 1] = [1.0, 0.0, 0.5, 2.0, 2.0, -1.0]
    adv, _ = compute_advantages("dr_grpo", r, np.ones_like(r), group_size=3)
    g = r[:, 1].reshape(2, 3)
    want = (g - g.mean(axis=1, keepdims=True)).reshape(-1)  # no division by the std
    np.testing.assert_allclose(adv, np.stack([want, want], 1), rtol=1e-6, atol=1e-7)


def test_reinforce_pp_normalizes_returns_to_go_over_the_batch():
    mask = np.array([[0, 1, 1, 1], [0, 1, 1, 0], [0, 1, 0, 0]], np.float32)
    r = np.array([[0, -0.01, -0.02, 1.0], [0, -0.03, 0.5, 0], [0, -1.0, 0, 0]], np.float32)
    adv, ret = compute_advantages("reinforce_pp", r, mask)
    g = _np_returns_to_go(r, mask)
    vals = g[mask > 0]
    want = (g - vals.mean()) / np.sqrt(vals.var() + 1e-8) * mask  # global batch stats
    np.testing.assert_allclose(adv, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ret, g, rtol=1e-6)


def test_reinforce_pp_normalizes_the_kl_penalty_with_the_outcome():
    """In the PG/PPO loop the KL penalty is part of REINFORCE++'s reward (Hu 2025): the
    batch normalization covers outcome + KL, unlike GRPO where the KL is added after."""
    from rlfb_jax.algos.pg_batch import Scorer, place_rewards
    from rlfb_jax.algos.pg_config import default_config

    rng = np.random.default_rng(0)
    mask = np.zeros((4, 5), np.float32)
    mask[:, 1:] = 1
    mask[3, 3:] = 0
    logp = (rng.normal(-1, 0.5, mask.shape) * mask).astype(np.float32)
    ref = (logp + rng.normal(0, 0.3, mask.shape) * mask).astype(np.float32)
    seq = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
    batch = {"target_mask": mask, "baseline": np.zeros(4, np.float32),
             "token_rewards": place_rewards(seq, np.zeros_like(mask), mask)}
    rl = default_config("ppo").rl
    rl.advantage, rl.kl.beta = "reinforce_pp", 0.1
    adv, _, _ = Scorer(None, rl, 2).advantages(batch, logp, ref, np.zeros_like(logp),
                                               np.float32(0.1))
    g = _np_returns_to_go(batch["token_rewards"] - 0.1 * (logp - ref) * mask, mask)
    vals = g[mask > 0]
    want = (g - vals.mean()) / np.sqrt(vals.var() + 1e-8) * mask
    np.testing.assert_allclose(adv, want, rtol=1e-4, atol=1e-5)
