"""Memory options of `ModelConfig`: ``logits_chunk`` (the vocabulary head in chunks) and
``remat`` (blocks recomputed in the backward pass) give the same log-probs, entropies and
gradients as the defaults, with a fraction of the compiled program's temporary memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlfb_jax.losses import get_loss
from rlfb_jax.losses.sequence import sequence_logprobs
from rlfb_jax.models import LanguageModel, ModelConfig

CFG = ModelConfig(vocab_size=97, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64,
                  max_len=64)


def _batch(b=3, length=12, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, CFG.vocab_size, (b, length)).astype(np.int32)
    attn = np.ones((b, length), bool)
    attn[0, :3] = False  # left padding
    loss = np.zeros((b, length), bool)
    loss[:, 6:] = True
    loss[1, -2:] = False  # right padding of a shorter completion
    attn[1, -2:] = False
    return {"tokens": jnp.asarray(tokens), "attention_mask": jnp.asarray(attn),
            "loss_mask": jnp.asarray(loss)}


def _objective_grads(model, params, batch):
    def f(p):
        lp, ent, _ = sequence_logprobs(model, p, batch, with_entropy=True)
        return jnp.sum(lp * batch["loss_mask"][:, 1:]) + 0.1 * jnp.sum(ent)
    return jax.jit(jax.grad(f))(params)


@pytest.fixture(scope="module")
def whole():
    """The whole-sequence head's log-probs, entropies, hidden states and gradients, once."""
    lm = LanguageModel(CFG)
    params, batch = lm.init(jax.random.key(0)), _batch()
    outs = jax.jit(lambda p: sequence_logprobs(lm, p, batch, True))(params)
    return params, batch, outs, _objective_grads(lm, params, batch)


@pytest.mark.parametrize("chunk", [1, 4, 5, 10])  # 11 positions: ragged and exact splits
def test_chunked_head_matches_whole_sequence(chunk, whole):
    params, batch, (lp0, ent0, h0), g0 = whole
    chunked = LanguageModel(CFG.replace(logits_chunk=chunk))
    lp1, ent1, h1 = jax.jit(lambda p: sequence_logprobs(chunked, p, batch, True))(params)
    np.testing.assert_allclose(lp1, lp0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ent1, ent0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(h1, h0, rtol=1e-6, atol=1e-6)
    assert jax.eval_shape(lambda p: sequence_logprobs(chunked, p, batch), params)[1] is None
    g1 = _objective_grads(chunked, params, batch)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6), g0, g1)


def test_chunked_losses_match():
    params = LanguageModel(CFG).init(jax.random.key(1))
    batch = _batch(seed=1)
    for name in ("sft", "pg"):
        extra = {} if name == "sft" else {
            "advantages": jnp.linspace(-1.0, 1.0, 3 * 11).reshape(3, 11),
            "old_logprobs": jnp.zeros((3, 11)), "ref_logprobs": jnp.zeros((3, 11))}
        out = [get_loss(name)({"policy": params}, {**batch, **extra}, model=LanguageModel(c))
               for c in (CFG, CFG.replace(logits_chunk=3))]
        np.testing.assert_allclose(out[1][0], out[0][0], rtol=1e-5, atol=1e-6)


def test_remat_matches_and_saves_memory():
    batch = _batch(b=2)
    params = LanguageModel(CFG).init(jax.random.key(2))

    def grads(model):
        def f(p):
            lp, ent, _ = sequence_logprobs(model, p, batch, with_entropy=True)
            return jnp.sum(lp * batch["loss_mask"][:, 1:]) + 0.1 * jnp.sum(ent)
        return jax.jit(jax.value_and_grad(f))(params)

    (v0, g0), (v1, g1) = grads(LanguageModel(CFG)), grads(LanguageModel(CFG.replace(remat=True)))
    np.testing.assert_allclose(v1, v0, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6), g0, g1)
    # What the backward pass keeps: without remat every block's MLP activations
    # [B, L, d_ff]; with it only each block's input (XLA decides the final schedule).
    import contextlib
    import io

    from jax.ad_checkpoint import print_saved_residuals

    def mlp_sized(model):
        def f(p):
            return jnp.sum(sequence_logprobs(model, p, batch)[0])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            print_saved_residuals(f, params)
        text = out.getvalue()  # the MLP runs on [B * L, d_ff] rows (transformer._rows)
        return text.count(f"[2,12,{CFG.d_ff}]") + text.count(f"[24,{CFG.d_ff}]")

    assert mlp_sized(LanguageModel(CFG)) >= CFG.n_layers
    assert mlp_sized(LanguageModel(CFG.replace(remat=True))) == 0


def _temp_bytes(model, params, batch):
    def loss(p):
        lp, _, _ = sequence_logprobs(model, p, batch)
        return -jnp.sum(lp * batch["loss_mask"][:, 1:])
    compiled = jax.jit(jax.grad(loss)).lower(params).compile()
    stats = compiled.memory_analysis()
    if stats is None:
        pytest.skip("this backend reports no memory analysis")
    return stats.temp_size_in_bytes


def test_chunked_head_needs_less_memory():
    # vocab 16384, 4 x 256 positions: one float32 copy of the logits is 16.8 MB.
    cfg = CFG.replace(vocab_size=16384, max_len=512)
    batch = {"tokens": jnp.zeros((4, 257), jnp.int32),
             "attention_mask": jnp.ones((4, 257), bool),
             "loss_mask": jnp.ones((4, 257), bool)}
    params = jax.eval_shape(LanguageModel(cfg).init, jax.random.key(0))
    whole = _temp_bytes(LanguageModel(cfg), params, batch)
    chunked = _temp_bytes(LanguageModel(cfg.replace(logits_chunk=32)), params, batch)
    logits_bytes = 4 * 256 * cfg.vocab_size * 4
    assert whole > logits_bytes  # at least one full copy of the logits
    # 165 MB whole vs 48 MB chunked (300 MB vs 65 MB before the head's one-hot select and
    # 2-D matmuls, issue 19, shrank the whole head's copies more than the chunks')
    assert chunked < whole / 3, (chunked, whole)
