"""The SFT loss against hand-computed values, and the loss registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlfb_jax.losses import LOSSES, get_loss, register_loss
from rlfb_jax.models import LanguageModel, ModelConfig


class FixedLogits:
    """Stands in for a LanguageModel: returns given logits whatever the params."""

    config = ModelConfig()  # logits_chunk 0: the head runs on the whole sequence

    def __init__(self, logits):
        self._logits = jnp.asarray(logits, jnp.float32)

    def forward(self, params, tokens, positions=None, attention_mask=None, cache=None):
        class Out:
            logits = self._logits
            hidden = jnp.zeros(self._logits.shape[:2] + (1,))

        return Out()


def test_sft_counts_only_completion_tokens():
    # vocab 2; at each position the model puts p(token 1) = 0.8.
    logits = jnp.log(jnp.array([[[0.2, 0.8]] * 4]))
    batch = {
        "tokens": jnp.array([[0, 1, 0, 1]]),
        "attention_mask": jnp.ones((1, 4), bool),
        "loss_mask": jnp.array([[False, False, True, True]]),  # predict tokens 2 and 3
    }
    loss, m = get_loss("sft")({"policy": None}, batch, model=FixedLogits(logits))
    expected = -(np.log(0.2) + np.log(0.8)) / 2
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    assert float(m["sft/tokens"]) == 2.0
    np.testing.assert_allclose(m["sft/nll_sum"], expected * 2, rtol=1e-6)


def test_sft_weights_scale_examples():
    logits = jnp.log(jnp.array([[[0.5, 0.5]] * 3, [[0.1, 0.9]] * 3]))
    batch = {
        "tokens": jnp.array([[0, 1, 1], [0, 1, 1]]),
        "attention_mask": jnp.ones((2, 3), bool),
        "loss_mask": jnp.array([[False, True, True]] * 2),
        "weights": jnp.array([1.0, 0.0]),
    }
    loss, _ = get_loss("sft")({"policy": None}, batch, model=FixedLogits(logits))
    np.testing.assert_allclose(loss, -np.log(0.5), rtol=1e-6)


def test_sft_gradient_flows_and_loss_falls():
    import optax

    lm = LanguageModel(ModelConfig(vocab_size=32, d_model=32, n_layers=1, n_heads=2, d_ff=64))
    params = {"policy": lm.init(jax.random.key(0))}
    batch = {"tokens": jnp.tile(jnp.arange(10)[None], (4, 1)),
             "attention_mask": jnp.ones((4, 10), bool),
             "loss_mask": jnp.tile(jnp.arange(10)[None] >= 4, (4, 1))}
    tx = optax.adam(1e-2)
    opt = tx.init(params)
    loss_fn = jax.jit(lambda p: get_loss("sft")(p, batch, model=lm)[0])
    first = float(loss_fn(params))
    for _ in range(20):
        g = jax.grad(loss_fn)(params)
        u, opt = tx.update(g, opt)
        params = optax.apply_updates(params, u)
    assert float(loss_fn(params)) < 0.5 * first


def test_registry_names_known_losses():
    assert "sft" in LOSSES
    with pytest.raises(KeyError, match="registered: .*sft"):
        get_loss("nope")

    @register_loss("test_only_loss")
    def f(params, batch, *, model):
        return 0.0, {}

    assert get_loss("test_only_loss") is f
    with pytest.raises(ValueError, match="already registered"):
        register_loss("test_only_loss")(lambda *a, **k: None)
