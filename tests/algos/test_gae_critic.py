"""The GAE critic learns what it should, through the real scorer and epoch update of PPO.

Each row's reward is f(prompt) + g(completion token 2): a value at a position before token
2 can only know the mean reward of the rows sharing its prefix, a value after it knows the
whole reward. A critic whose
values were shifted by one position (reading the token it should predict), whose returns
were the advantages, or whose value targets ignored the mask, would not reach both."""

import jax
import numpy as np
import optax
import pytest

from rlfb_jax.algos.pg_batch import Scorer, place_rewards, update_batch
from rlfb_jax.algos.pg_config import default_config, loss_kwargs
from rlfb_jax.core import sharding as shd
from rlfb_jax.core.batching import make_sequence_batch
from rlfb_jax.core.state import state_from_params
from rlfb_jax.core.step import make_epoch_update
from rlfb_jax.losses import get_loss
from rlfb_jax.models import LanguageModel, ModelConfig

P, N, B = 2, 5, 64


def _rows(rng):
    prompts = [[1, int(p)] for p in rng.integers(3, 5, B)]  # f: +0.5 (token 3) / -0.5 (4)
    completions = [list(rng.integers(5, 9, N - 1)) + [2] for _ in range(B)]
    f = np.array([0.5 if p[1] == 3 else -0.5 for p in prompts])
    g = np.array([1.0 if c[2] in (5, 6) else -1.0 for c in completions])  # completion token 2
    return prompts, completions, (f + g).astype(np.float32), f


@pytest.mark.parametrize("slot", ["value", "policy"])
def test_gae_critic_learns_the_return_at_the_right_positions(slot):
    """With a separate critic ("value") next to a policy trained by PPO on the same batch,
    and with a value head on the policy's backbone ("policy") trained by the value loss
    alone (the policy term zeroed: 60 PPO passes over one fixed batch push a shared
    backbone's log-probs far from anything a critic could fit)."""
    rl = default_config("ppo").rl
    rl.advantage, rl.value_slot = "gae", slot
    rl.advantage_kwargs.lam = 1.0
    rl.kl.beta, rl.temperature = 0.0, 1.0
    rl.epochs, rl.minibatches = 4, 2
    rl.loss_kwargs.vf_coef = 1.0
    lm = LanguageModel(ModelConfig(vocab_size=16, d_model=32, n_layers=2, n_heads=2, d_ff=64,
                                   max_len=16, heads=("value",)))
    params = lm.init(jax.random.key(0))
    mesh = shd.make_mesh(default_config("ppo").mesh)
    tx = optax.adam(3e-3)
    slots = {"policy": params}
    if slot == "value":
        slots["value"] = lm.init(jax.random.key(2))
    state, shardings = state_from_params(
        slots, {"reference": params}, tx, jax.random.key(1), mesh,
        {**{k: lm.logical_axes() for k in slots}, "reference": lm.logical_axes()})
    update = make_epoch_update(get_loss("ppo"), tx, epochs=rl.epochs, minibatches=rl.minibatches,
                               state_shardings=shardings, mesh=mesh, model=lm, **loss_kwargs(rl))
    scorer = Scorer(lm, rl, group_size=4)
    prompts, completions, reward, f = _rows(np.random.default_rng(0))
    batch = make_sequence_batch(prompts, completions, P, N)
    batch.pop("truncated")
    tmask = batch["loss_mask"][:, 1:]
    batch.update(target_mask=tmask.astype(np.float32), seq_rewards=reward,
                 token_rewards=place_rewards(reward, np.zeros(tmask.shape, np.float32), tmask),
                 token_bonus=np.zeros(tmask.shape, np.float32), baseline=np.zeros(B, np.float32))
    shard = lambda b: shd.shard_batch(dict(b), mesh, shd.DEFAULT_RULES)
    for it in range(60):
        logp, ref, values = scorer.score(state.params, state.frozen, shard(batch))
        adv, ret, _ = scorer.advantages(shard(batch), logp, ref, values, np.float32(0.0))
        adv = adv if slot == "value" else adv * 0.0
        state, metrics = update(
            state, shard(update_batch(rl, batch, logp, ref, adv, ret, values, 0.0)),
            jax.random.key(it))
    _, _, values = scorer.score(state.params, state.frozen, shard(batch))
    values = np.asarray(values)
    # position i of the [B, L-1] arrays predicts token i + 1; completion token k sits at
    # token P + k, so its value (the state before it) is at column P + k - 1
    # before completion token k (k <= 2) the least-squares value is the batch's mean reward
    # over rows sharing the prefix (prompt, tokens < k); after token 2 it is the reward
    for k in range(3):
        key = [(p[1], *c[:k]) for p, c in zip(prompts, completions)]
        want = np.array([np.mean([r for kk, r in zip(key, reward) if kk == x]) for x in key])
        np.testing.assert_allclose(values[:, P - 1 + k], want, atol=0.3, err_msg=f"k={k}")
    after = values[:, P + 2 : P + N - 1]
    np.testing.assert_allclose(after, np.repeat(reward[:, None], after.shape[1], 1), atol=0.3)
    _, ret, _ = scorer.advantages(batch, *scorer.score(state.params, state.frozen, batch)[:2],
                                  values, np.float32(0.0))
    # GAE(lambda=1, gamma=1) returns are the reward-to-go: the sequence reward on every token
    np.testing.assert_allclose(np.asarray(ret)[tmask], np.repeat(reward, N)[:], atol=1e-5)
    assert float(metrics["value/explained_variance"]) > 0.6
