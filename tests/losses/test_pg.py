"""REINFORCE and PPO losses against hand-computed values; value loss; aggregation; gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlfb_jax.losses import get_loss
from rlfb_jax.losses.pg import aggregate, clipped_value_loss, explained_variance, ppo_clip_objective
from rlfb_jax.models import LanguageModel, ModelConfig

LN2 = float(np.log(2.0))


class ParamLogits:
    """Stands in for a LanguageModel whose params are the logits [B, L, V] and the values
    [B, L] themselves, so losses are exact functions of numbers written in the test."""

    config = ModelConfig(heads=("value",))  # logits_chunk 0: the head on the whole sequence

    def forward(self, params, tokens, positions=None, attention_mask=None, cache=None):
        class Out:
            logits = params["logits"]
            hidden = params.get("values", jnp.zeros(tokens.shape))[..., None]

        return Out()

    def bind(self, params):
        class Bound:
            @staticmethod
            def value(hidden):
                return hidden[..., 0]

        return Bound()


def run(name, params, batch, **hparams):
    """The loss ``name`` on the ParamLogits model, jitted (one compile instead of many eager
    ops)."""
    return jax.jit(lambda p, b: get_loss(name)(p, b, model=ParamLogits(), **hparams))(params, batch)


def one_row_batch(n_completion=4, **extra):
    """One row: a prompt token then ``n_completion`` completion tokens (all token 0)."""
    length = n_completion + 1
    batch = {
        "tokens": jnp.zeros((1, length), jnp.int32),
        "attention_mask": jnp.ones((1, length), bool),
        "loss_mask": jnp.arange(length)[None] >= 1,
    }
    batch.update({k: jnp.asarray(v, jnp.float32)[None] for k, v in extra.items()})
    return batch


def uniform_params(length, vocab=2, values=None):
    """Uniform logits: every token has log-prob log(1/vocab) and entropy log(vocab)."""
    p = {"logits": jnp.zeros((1, length, vocab))}
    if values is not None:
        p["values"] = jnp.asarray(values, jnp.float32)[None]
    return {"policy": p}


def test_ppo_clipping_by_hand():
    ratios = np.array([1.5, 0.5, 1.5, 0.5])
    adv = np.array([1.0, 1.0, -1.0, -1.0])
    batch = one_row_batch(advantages=adv, old_logprobs=np.log(0.5) - np.log(ratios))
    loss, m = run("ppo", uniform_params(5), batch, clip_eps=0.2)
    # r=1.5, A=+1: min(1.5, 1.2) = 1.2 (clipped)    r=.5, A=+1: min(.5, .8) = .5
    # r=1.5, A=-1: min(-1.5, -1.2) = -1.5            r=.5, A=-1: min(-.5, -.8) = -.8 (clipped)
    np.testing.assert_allclose(loss, -(1.2 + 0.5 - 1.5 - 0.8) / 4, rtol=1e-5)
    np.testing.assert_allclose(m["loss/pg"], 0.15, rtol=1e-5)
    np.testing.assert_allclose(m["ppo/clip_frac"], 0.5)
    np.testing.assert_allclose(m["ppo/clip_count"], 2.0)
    np.testing.assert_allclose(m["ppo/ratio_mean"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(m["ppo/ratio_max"], 1.5, rtol=1e-5)
    approx_kl = np.mean((ratios - 1) - np.log(ratios))
    np.testing.assert_allclose(m["ppo/approx_kl"], approx_kl, rtol=1e-5)
    np.testing.assert_allclose(m["policy/entropy"], LN2, rtol=1e-6)
    assert float(m["tokens/count"]) == 4.0


def test_kl_metrics_k1_can_be_negative_k3_cannot():
    """On tokens the policy now finds less likely than the reference does, k1's mean is
    negative; the logged k3 mean stays >= 0 and equals (r - 1) - log r."""
    batch = one_row_batch(advantages=np.zeros(4), ref_logprobs=np.full(4, np.log(0.75)))
    _, m = run("pg", uniform_params(5), batch)
    np.testing.assert_allclose(m["kl/mean"], np.log(0.5 / 0.75), rtol=1e-5)
    assert m["kl/mean"] < 0
    np.testing.assert_allclose(m["kl/k3_mean"], (1.5 - 1) - np.log(1.5), rtol=1e-5)


def test_ppo_asymmetric_and_dual_clip():
    ratio = jnp.array([1.5, 4.0, 2.0, 4.0])
    adv = jnp.array([1.0, -1.0, -1.0, 1.0])
    loss, _, clipped = ppo_clip_objective(jnp.log(ratio), jnp.zeros(4), adv, clip_eps=0.2,
                                          clip_eps_high=0.28, dual_clip=3.0)
    # r=1.5, A=+1: clipped at 1.28.  r=4, A=-1: min(-4, -1.2) = -4, dual clip max(-4, -3) = -3.
    # r=2, A=-1: -2 is above -3, unchanged.  r=4, A=+1: clipped at 1.28 (dual clip only for A<0)
    np.testing.assert_allclose(loss, [-1.28, 3.0, 2.0, -1.28], rtol=1e-5)
    np.testing.assert_allclose(clipped, [1.0, 1.0, 0.0, 1.0])


def test_pg_loss_entropy_and_kl_in_loss():
    adv = np.array([1.0, -1.0, 2.0, 0.0])
    batch = one_row_batch(advantages=adv, ref_logprobs=np.full(4, np.log(0.25)))
    loss, m = run("pg", uniform_params(5), batch)
    # -A * log(1/2) averaged over 4 tokens: (1 - 1 + 2 + 0) / 4 * ln 2
    np.testing.assert_allclose(loss, 0.5 * LN2, rtol=1e-5)
    np.testing.assert_allclose(m["kl/mean"], LN2, rtol=1e-5)  # log .5 - log .25 per token
    np.testing.assert_allclose(m["kl/k3_mean"], LN2 - 0.5, rtol=1e-5)  # r = 1/2: (r-1) - log r
    np.testing.assert_allclose(m["kl/sum"], 4 * LN2, rtol=1e-5)
    np.testing.assert_allclose(m["kl/seq_mean"], 4 * LN2, rtol=1e-5)
    loss2, m2 = run("pg", uniform_params(5), batch, ent_coef=0.1, kl_in_loss_beta=0.5,
                    kl_estimator="k1")
    np.testing.assert_allclose(loss2, 0.5 * LN2 - 0.1 * LN2 + 0.5 * LN2, rtol=1e-5)
    np.testing.assert_allclose(m2["loss/kl"], 0.5 * LN2, rtol=1e-5)
    np.testing.assert_allclose(m2["loss/entropy"], -0.1 * LN2, rtol=1e-5)
    with pytest.raises(ValueError, match="ref_logprobs"):
        get_loss("pg")(uniform_params(5), one_row_batch(advantages=adv), model=ParamLogits(),
                       kl_in_loss_beta=0.1)


def test_value_clipping_by_hand():
    values = jnp.array([1.0, 1.0, 0.2, 1.0])
    old = jnp.array([0.5, 0.9, 0.5, 0.5])
    returns = jnp.array([2.0, 0.0, 0.0, 0.0])
    loss, clipped = clipped_value_loss(values, returns, old, value_clip=0.2)
    # 1: V_clip = .7, max(1, 1.69) -> .845   2: in range -> .5
    # 3: V_clip = .3, max(.04, .09) -> .045  4: V_clip = .7, max(1, .49) -> .5
    np.testing.assert_allclose(loss, [0.845, 0.5, 0.045, 0.5], rtol=1e-5)
    np.testing.assert_allclose(clipped, [1, 0, 1, 0])
    plain, _ = clipped_value_loss(values, returns, None, value_clip=None)
    np.testing.assert_allclose(plain, [0.5, 0.5, 0.02, 0.5], rtol=1e-5)
    with pytest.raises(ValueError, match="old_values"):
        clipped_value_loss(values, returns, None, value_clip=0.2)


def test_ppo_with_value_head_by_hand():
    # Token t is chosen at position t, whose value is values[t]: the row's last value is unused.
    values = [7.0, 1.0, 1.0, 0.2, 1.0, 7.0]
    batch = one_row_batch(5, advantages=np.zeros(5), old_logprobs=np.full(5, np.log(0.5)),
                          returns=[9.0, 2.0, 0.0, 0.0, 0.0], old_values=[9.0, 0.5, 0.9, 0.5, 0.5])
    batch["loss_mask"] = jnp.arange(6)[None] >= 2  # the first value is a prompt position
    loss, m = run("ppo", uniform_params(6, values=values), batch, value_slot="policy",
                  vf_coef=2.0, value_clip=0.2)
    v_loss = (0.845 + 0.5 + 0.045 + 0.5) / 4
    np.testing.assert_allclose(m["loss/value"], v_loss, rtol=1e-5)
    np.testing.assert_allclose(loss, 2.0 * v_loss, rtol=1e-5)
    np.testing.assert_allclose(m["value/clip_frac"], 0.5)
    np.testing.assert_allclose(m["value/mean"], 0.8, rtol=1e-5)


def test_explained_variance():
    r = jnp.array([[1.0, 2.0, 3.0, 100.0]])
    mask = jnp.array([[1.0, 1.0, 1.0, 0.0]])
    np.testing.assert_allclose(explained_variance(r, r, mask), 1.0)
    np.testing.assert_allclose(explained_variance(jnp.zeros_like(r), r, mask), 0.0, atol=1e-6)
    np.testing.assert_allclose(explained_variance(r + 5.0, r, mask), 1.0)  # bias is not variance
    np.testing.assert_allclose(explained_variance(r, jnp.ones_like(r), mask), 0.0)


def test_aggregation_modes():
    x = jnp.array([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0], [5.0, 5.0, 5.0, 5.0]])
    mask = jnp.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], jnp.float32)
    np.testing.assert_allclose(aggregate(x, mask, "token_mean"), 10 / 4)
    np.testing.assert_allclose(aggregate(x, mask, "seq_mean"), (2 + 4) / 2)  # empty row skipped
    np.testing.assert_allclose(aggregate(x, mask, "seq_sum_norm"), 10 / (3 * 4))
    np.testing.assert_allclose(aggregate(x, mask, "seq_sum_norm", norm_len=5), 10 / 15)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(x, mask, "sum")


def test_aggregation_reaches_the_loss():
    # Rows with 1 and 3 completion tokens; advantages 1 on row 0, 2 on row 1.
    batch = {
        "tokens": jnp.zeros((2, 4), jnp.int32),
        "attention_mask": jnp.ones((2, 4), bool),
        "loss_mask": jnp.array([[0, 1, 0, 0], [0, 1, 1, 1]], bool),
        "advantages": jnp.array([[1.0, 0, 0], [2.0, 2.0, 2.0]]),
    }
    params = {"policy": {"logits": jnp.zeros((2, 4, 2))}}
    tok, _ = run("pg", params, batch)
    seq, _ = run("pg", params, batch, aggregation="seq_mean")
    np.testing.assert_allclose(tok, (1 + 6) / 4 * LN2, rtol=1e-5)
    np.testing.assert_allclose(seq, (1 + 2) / 2 * LN2, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown aggregation"):
        get_loss("pg")(params, batch, model=ParamLogits(), aggregation="mean")


def _random_batch(b=3, length=8, vocab=16):
    tokens = jax.random.randint(jax.random.key(1), (b, length), 0, vocab)
    return {
        "tokens": tokens,
        "attention_mask": jnp.ones((b, length), bool).at[0, 0].set(False),
        "loss_mask": jnp.array([[0, 0, 0, 1, 1, 1, 1, 1]] * 2 + [[0, 0, 0, 1, 1, 0, 0, 0]], bool),
        "advantages": jax.random.normal(jax.random.key(2), (b, length - 1)),
    }


def test_ppo_at_ratio_one_has_the_reinforce_gradient():
    batch = _random_batch()
    params = {"policy": {"logits": jax.random.normal(jax.random.key(0), (3, 8, 16))}}
    logp = jax.nn.log_softmax(params["policy"]["logits"][:, :-1])
    batch["old_logprobs"] = jnp.take_along_axis(logp, batch["tokens"][:, 1:, None], -1)[..., 0]
    model = ParamLogits()

    @jax.jit
    def grads(params, batch):
        def grad(name, b):
            g = jax.grad(lambda p: get_loss(name)(p, b, model=model)[0])(params)
            return g["policy"]["logits"]

        # Far from ratio 1 the clipped tokens stop contributing, so that gradient differs.
        far = dict(batch, old_logprobs=batch["old_logprobs"] - 1.0)
        return grad("pg", batch), grad("ppo", batch), grad("ppo", far)

    g_pg, g_ppo, g_far = grads(params, batch)
    assert float(jnp.sum(jnp.abs(g_pg))) > 0
    np.testing.assert_allclose(g_ppo, g_pg, rtol=1e-5, atol=1e-8)
    assert not np.allclose(g_far, g_pg, atol=1e-6)


@pytest.mark.parametrize("slot", ["policy", "value"])
def test_value_function_slots_train(slot):
    lm = LanguageModel(ModelConfig(vocab_size=16, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                                   max_len=16, heads=("value",)))
    params = {"policy": lm.init(jax.random.key(0))}
    if slot == "value":
        params["value"] = lm.init(jax.random.key(3))
    batch = _random_batch()
    batch["old_logprobs"] = jnp.full((3, 7), -np.log(16.0))
    batch["returns"] = jnp.ones((3, 7))
    batch["old_values"] = jnp.zeros((3, 7))
    fn = jax.jit(jax.value_and_grad(
        lambda p: get_loss("ppo")(p, batch, model=lm, value_slot=slot, ent_coef=0.01), has_aux=True))
    (loss, m), g = fn(params)
    assert np.isfinite(float(loss))
    # The value head starts at zero: loss/value = 0.5 * (0 - 1)^2 on every token.
    np.testing.assert_allclose(m["loss/value"], 0.5, rtol=1e-5)
    head = g[slot]["value_head"]["kernel"]
    assert float(jnp.sum(jnp.abs(head))) > 0
    if slot == "value":  # the critic's gradient does not come from the policy loss alone
        assert float(jnp.sum(jnp.abs(g["policy"].get("value_head", {}).get("kernel", 0.0)))) == 0


def test_value_slot_needs_a_value_head():
    lm = LanguageModel(ModelConfig(vocab_size=16, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                                   max_len=16))
    batch = _random_batch()
    batch["old_logprobs"] = jnp.zeros((3, 7))
    batch["returns"] = jnp.zeros((3, 7))
    params = {"policy": lm.abstract_params()}
    with pytest.raises(ValueError, match="heads=\\('value',\\)"):
        jax.eval_shape(lambda p: get_loss("ppo")(p, batch, model=lm, value_slot="policy"), params)
    with pytest.raises(ValueError, match="value_slot must be"):
        jax.eval_shape(lambda p: get_loss("pg")(p, batch, model=ParamLogits(), value_slot="v"),
                       {"policy": {"logits": jnp.zeros((3, 8, 16))}})


def test_rollout_quantities_get_no_gradient():
    batch = one_row_batch(advantages=np.ones(4), old_logprobs=np.full(4, np.log(0.4)))

    def loss_of(adv, old):
        b = dict(batch, advantages=adv, old_logprobs=old)
        return get_loss("ppo")(uniform_params(5), b, model=ParamLogits())[0]

    g_adv, g_old = jax.jit(jax.grad(loss_of, argnums=(0, 1)))(batch["advantages"],
                                                               batch["old_logprobs"])
    assert float(jnp.sum(jnp.abs(g_adv))) == 0.0 and float(jnp.sum(jnp.abs(g_old))) == 0.0
