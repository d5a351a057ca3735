"""The verifier loss: BCE at the last real token, weights, the joint LM term, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlfb_jax.losses import get_loss
from rlfb_jax.losses.verifier import binary_cross_entropy, last_token_index
from rlfb_jax.models import LanguageModel, ModelConfig


def test_bce_against_hand_values():
    logits = jnp.array([0.0, 2.0, -1.0, 30.0])
    labels = jnp.array([1.0, 0.0, 0.0, 1.0])
    sig = 1 / (1 + np.exp(-np.array([0.0, 2.0, -1.0, 30.0])))
    expected = [-np.log(sig[0]), -np.log(1 - sig[1]), -np.log(1 - sig[2]), -np.log(sig[3])]
    np.testing.assert_allclose(binary_cross_entropy(logits, labels), expected, rtol=1e-5,
                               atol=1e-7)


def test_last_token_index_with_left_and_right_padding():
    mask = jnp.array([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [0, 1, 0, 0, 0, 0],
                      [0, 0, 0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(last_token_index(mask), [4, 5, 1, 0])


class FixedModel:
    """Stands in for a LanguageModel: fixed logits, and hidden states whose first feature
    is the score (the bound model's `score` reads it)."""

    config = ModelConfig()

    def __init__(self, logits, scores):
        self.logits = jnp.asarray(logits, jnp.float32)
        self.scores = jnp.asarray(scores, jnp.float32)

    def bind(self, params):
        outer = self

        class Bound:
            def forward(self, tokens, positions=None, attention_mask=None, cache=None):
                class Out:
                    logits = outer.logits
                    hidden = outer.scores[..., None]

                return Out()

            def score(self, hidden):
                return hidden[..., 0]

        return Bound()


def _batch():
    return {
        "tokens": jnp.array([[0, 1, 1, 0], [0, 0, 1, 1]]),
        "attention_mask": jnp.array([[1, 1, 1, 0], [0, 1, 1, 1]], bool),
        "loss_mask": jnp.array([[0, 1, 1, 0], [0, 0, 1, 0]], bool),
        "labels": jnp.array([1.0, 0.0]),
    }


def test_score_is_read_at_the_last_real_token_and_weighted():
    # Row 0 ends at position 2 (score 1.5), row 1 at position 3 (score 0.5); the other
    # positions hold values that would change the loss if they were read.
    scores = [[9.0, -9.0, 1.5, -9.0], [9.0, 9.0, -9.0, 0.5]]
    model = FixedModel(jnp.zeros((2, 4, 2)), scores)
    loss_fn = get_loss("verifier")
    l0 = -np.log(1 / (1 + np.exp(-1.5)))  # label 1, logit 1.5
    l1 = -np.log(1 - 1 / (1 + np.exp(-0.5)))  # label 0, logit 0.5
    loss, m = loss_fn({"verifier": None}, _batch(), model=model)
    np.testing.assert_allclose(loss, (l0 + l1) / 2, rtol=1e-5)
    np.testing.assert_allclose(m["verifier/bce_sum"], l0 + l1, rtol=1e-5)
    assert float(m["verifier/accuracy"]) == 0.5  # row 1 is predicted positive, label 0
    batch = {**_batch(), "weights": jnp.array([3.0, 1.0])}
    loss, m = loss_fn({"verifier": None}, batch, model=model)
    np.testing.assert_allclose(loss, (3 * l0 + l1) / 4, rtol=1e-5)
    assert float(m["verifier/weight_sum"]) == 4.0
    batch["weights"] = jnp.array([1.0, 0.0])  # weight 0: a padding row
    loss, _ = loss_fn({"verifier": None}, batch, model=model)
    np.testing.assert_allclose(loss, l0, rtol=1e-5)


def test_joint_lm_term_is_the_token_nll_of_the_program():
    logits = jnp.log(jnp.array([[[0.2, 0.8]] * 4] * 2))  # p(token 1) = 0.8 everywhere
    model = FixedModel(logits, jnp.zeros((2, 4)))
    bce = np.log(2.0)
    # predicted program tokens: row 0 tokens 1, 2 (both 1s), row 1 token 2 (a 1)
    nll = -np.log(0.8)
    loss, m = get_loss("verifier")({"verifier": None}, _batch(), model=model, lm_coef=0.5)
    np.testing.assert_allclose(loss, bce + 0.5 * nll, rtol=1e-5)
    assert float(m["verifier/tokens"]) == 3.0
    loss0, m0 = get_loss("verifier")({"verifier": None}, _batch(), model=model)
    np.testing.assert_allclose(loss0, bce, rtol=1e-5)
    assert "loss/verifier_lm" not in m0


@pytest.mark.parametrize("labels", [[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
def test_zero_initialized_head_learns_and_uses_the_verifier_slot(labels):
    import optax

    lm = LanguageModel(ModelConfig(vocab_size=32, d_model=32, n_layers=1, n_heads=2, d_ff=64,
                                   heads=("score",)))
    params = lm.init(jax.random.key(0))
    assert float(jnp.abs(params["score_head"]["kernel"]).sum()) == 0.0
    tokens = jnp.array([[3, 4, 5, 6], [3, 7, 8, 9], [0, 3, 4, 6]])
    batch = {"tokens": tokens, "attention_mask": tokens > 0,
             "loss_mask": jnp.zeros((3, 4), bool), "labels": jnp.array(labels)}
    loss_fn = jax.jit(lambda p: get_loss("verifier")({"verifier": p, "policy": None}, batch,
                                                     model=lm)[0])
    # A zero head starts at p = 1/2; its gradient must not vanish there (even one class).
    np.testing.assert_allclose(loss_fn(params), np.log(2.0), rtol=1e-6)
    tx = optax.adam(1e-2)

    @jax.jit
    def step(params, opt):
        grads = jax.grad(loss_fn)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt

    opt = tx.init(params)
    start = float(loss_fn(params))
    for _ in range(20):
        params, opt = step(params, opt)
    assert float(loss_fn(params)) < 0.5 * start
