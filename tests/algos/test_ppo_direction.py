"""End-to-end direction check of the RL update path: sample with the jitted sampler, reward
"the first completion token is X", build the training batch exactly as the ppo loop does,
GRPO advantages, PPO epochs x minibatches. The probability of X must rise."""

import jax
import jax.numpy as jnp
import numpy as np

from rlfb_jax.algos.pg_batch import place_rewards
from rlfb_jax.core import sharding as shd
from rlfb_jax.core.batching import make_sequence_batch
from rlfb_jax.core.optim import make_optimizer
from rlfb_jax.core.state import state_from_params
from rlfb_jax.core.step import make_epoch_update
from rlfb_jax.losses import compute_advantages, get_loss
from rlfb_jax.losses.sequence import sequence_logprobs
from rlfb_jax.models import LanguageModel, ModelConfig
from rlfb_jax.models.sampler import Sampler, SamplingParams

X = 7


def test_ppo_raises_the_probability_of_rewarded_tokens():
    lm = LanguageModel(ModelConfig(vocab_size=16, d_model=32, n_layers=1, n_heads=2, d_ff=64))
    params = lm.init(jax.random.key(0))
    mesh = shd.make_mesh(dict(data=1), jax.devices()[:1])
    tx, _ = make_optimizer(dict(name="adam", learning_rate=1e-2, schedule="constant"), 100)
    state, sh = state_from_params({"policy": params}, {}, tx, jax.random.key(1), mesh,
                                  {"policy": lm.logical_axes()})
    update = make_epoch_update(get_loss("ppo"), tx, epochs=2, minibatches=2,
                               state_shardings=sh, mesh=mesh, model=lm)
    sampler = Sampler(lm, prompt_buckets=(8,))
    sp = SamplingParams(temperature=1.0, max_new_tokens=4)
    prompts = [[1, 2, 3], [4, 5]]
    n = 8

    def p_x(p):
        logits = lm(p, jnp.asarray([[1, 2, 3]]))
        return float(jax.nn.softmax(logits[0, -1])[X])

    before = p_x(state.params["policy"])
    for it in range(15):
        r = sampler(state.params["policy"], prompts, jax.random.key(100 + it), sp, n=n)
        toks, mask = jax.device_get((r.tokens, r.mask))
        comp = [[int(t) for t, m in zip(row, mr) if m] for row, mr in zip(toks, mask)]
        rewards = np.array([1.0 if c and c[0] == X else 0.0 for c in comp], np.float32)
        batch = make_sequence_batch([p for p in prompts for _ in range(n)], comp, 8, 4)
        batch.pop("truncated")
        tmask = batch["loss_mask"][:, 1:].astype(np.float32)
        logp, _, _ = sequence_logprobs(lm, state.params["policy"], batch)
        adv, ret = compute_advantages("grpo", jnp.asarray(place_rewards(rewards, 0 * tmask,
                                                                        tmask)),
                                      jnp.asarray(tmask), group_size=n)
        batch.update(old_logprobs=logp, advantages=adv, returns=ret)
        state, _ = update(state, batch, jax.random.key(it))
    after = p_x(state.params["policy"])
    assert after > max(2 * before, 0.3), (before, after)
