"""KL estimators on known distributions and the KL coefficient controllers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlfb_jax.losses import (
    KL_CONTROLLERS,
    KL_ESTIMATORS,
    get_kl_estimator,
    kl_penalty_rewards,
    make_kl_controller,
    sequence_kl,
)


def test_estimators_on_one_token():
    logp, ref = jnp.log(0.5), jnp.log(0.25)  # r = p_ref / pi = 0.5
    np.testing.assert_allclose(get_kl_estimator("k1")(logp, ref), np.log(2), rtol=1e-6)
    np.testing.assert_allclose(get_kl_estimator("k2")(logp, ref), 0.5 * np.log(2) ** 2,
                               rtol=1e-6)
    np.testing.assert_allclose(get_kl_estimator("k3")(logp, ref), -0.5 + np.log(2), rtol=1e-6)
    assert KL_ESTIMATORS.names() == ["k1", "k2", "k3"]


def test_monte_carlo_means_approach_the_true_kl():
    p = np.array([0.5, 0.3, 0.2])
    q = np.array([0.2, 0.3, 0.5])  # the reference
    true_kl = float(np.sum(p * np.log(p / q)))  # 0.3 * ln 2.5 = 0.27489
    x = np.random.default_rng(0).choice(3, size=200_000, p=p)
    logp, ref = jnp.log(p[x]), jnp.log(q[x])
    k1 = np.asarray(get_kl_estimator("k1")(logp, ref))
    k2 = np.asarray(get_kl_estimator("k2")(logp, ref))
    k3 = np.asarray(get_kl_estimator("k3")(logp, ref))
    assert abs(k1.mean() - true_kl) < 0.005
    assert abs(k3.mean() - true_kl) < 0.005
    assert k3.min() >= 0.0 and k1.min() < 0.0
    # k2 is biased: its expectation is E_p[(log p/q)^2] / 2 = 0.7 * ln(2.5)^2 / 2 = 0.29386
    assert abs(k2.mean() - 0.35 * np.log(2.5) ** 2) < 0.005
    assert abs(k2.mean() - true_kl) > 0.01


def test_k3_is_finite_for_extreme_ratios():
    out = get_kl_estimator("k3")(jnp.array([-200.0, 0.0]), jnp.array([0.0, -200.0]))
    assert np.all(np.isfinite(np.asarray(out)))


def test_kl_penalty_rewards_and_sequence_kl():
    logp = jnp.log(jnp.array([[0.5, 0.5, 0.5], [0.25, 0.5, 0.9]]))
    ref = jnp.log(jnp.array([[0.25, 0.5, 0.5], [0.5, 0.5, 0.1]]))
    mask = jnp.array([[1, 1, 0], [1, 1, 1]], jnp.float32)
    pen = kl_penalty_rewards(logp, ref, mask, beta=0.1, estimator="k1")
    expected = -0.1 * np.array([[np.log(2), 0, 0], [np.log(0.5), 0, np.log(9)]])
    np.testing.assert_allclose(pen, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sequence_kl(logp, ref, mask), [np.log(2), np.log(0.5 * 9)],
                               rtol=1e-5)
    # A reward: no gradient reaches the policy through it.
    g = jax.grad(lambda lp: jnp.sum(kl_penalty_rewards(lp, ref, mask, 0.1, "k3")))(logp)
    assert float(jnp.sum(jnp.abs(g))) == 0.0


def test_adaptive_controller_update():
    ctl = make_kl_controller("adaptive", init_beta=0.1, target=6.0, horizon=10_000)
    state = ctl.init()
    np.testing.assert_allclose(state.beta, 0.1)
    update = jax.jit(ctl.update)
    # KL 9 vs target 6: error clip(0.5, -.2, .2) = .2 -> beta * (1 + .2 * 256 / 10000)
    np.testing.assert_allclose(update(state, 9.0, 256).beta, 0.1 * 1.00512, rtol=1e-6)
    # KL 6.6: error .1 -> beta * (1 + .1 * .0256)
    np.testing.assert_allclose(update(state, 6.6, 256).beta, 0.1 * 1.00256, rtol=1e-6)
    # KL 0: error clipped to -.2
    np.testing.assert_allclose(update(state, 0.0, 256).beta, 0.1 * 0.99488, rtol=1e-6)
    # On target: unchanged.
    np.testing.assert_allclose(update(state, 6.0, 256).beta, 0.1, rtol=1e-6)
    with pytest.raises(ValueError, match="target > 0"):
        make_kl_controller("adaptive", init_beta=0.1, target=0.0, horizon=10)


def test_adaptive_beta_stays_positive_when_the_batch_outgrows_the_horizon():
    """16,384 sequences at horizon 2,000 and KL 0: uncapped, 1 + e n / horizon = -0.64
    (beta 0.02 -> -0.0128, a KL bonus). The gain n / horizon is capped at 1: one update
    moves beta by at most the factor 1 - 0.2."""
    ctl = make_kl_controller("adaptive", init_beta=0.02, target=2.0, horizon=2000)
    state = ctl.init()
    np.testing.assert_allclose(ctl.update(state, 0.0, 16_384).beta, 0.02 * 0.8, rtol=1e-6)
    np.testing.assert_allclose(ctl.update(state, 100.0, 16_384).beta, 0.02 * 1.2, rtol=1e-6)
    for _ in range(200):
        state = ctl.update(state, 0.0, 16_384)
    assert 0.0 < float(state.beta) <= 0.02 * 0.8**200 * 1.001
    with pytest.raises(ValueError, match="0 < clip < 1"):
        make_kl_controller("adaptive", init_beta=0.1, target=1.0, horizon=10, clip=1.0)


def test_adaptive_controller_converges_towards_target():
    # A toy world where the observed KL is inversely proportional to beta.
    ctl = make_kl_controller("adaptive", init_beta=0.01, target=1.0, horizon=100)
    state = ctl.init()
    for _ in range(300):
        state = ctl.update(state, 0.05 / state.beta, 10)
    np.testing.assert_allclose(0.05 / state.beta, 1.0, rtol=0.05)


def test_fixed_controller_and_registry():
    ctl = make_kl_controller("fixed", beta=0.05)
    state = ctl.init()
    assert float(ctl.update(state, 100.0, 512).beta) == pytest.approx(0.05)
    assert KL_CONTROLLERS.names() == ["adaptive", "fixed"]
    with pytest.raises(KeyError, match="registered: adaptive, fixed"):
        make_kl_controller("pid")
