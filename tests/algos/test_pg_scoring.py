"""Scored distribution == sampled distribution (issue 21, item 4): PG/PPO score the sampled
tokens under softmax(logits / T), the distribution the sampler drew them from (before
top-k / top-p truncation), so at the sampling parameters the PPO ratio is exactly 1 and
k1 to an identical reference is exactly 0."""

import jax
import numpy as np
import pytest

from rlfb_jax.algos.pg_batch import Scorer
from rlfb_jax.algos.pg_config import default_config, loss_kwargs
from rlfb_jax.core.batching import make_sequence_batch
from rlfb_jax.losses import get_loss
from rlfb_jax.models import LanguageModel, ModelConfig
from rlfb_jax.models.sampler import Sampler, SamplingParams

PROMPTS = [[5, 6, 7], [1, 2, 3, 4, 5], [3]]
N, P = 3, 8


@pytest.fixture(scope="module")
def model():
    lm = LanguageModel(ModelConfig(vocab_size=61, d_model=32, n_layers=2, n_heads=4,
                                   n_kv_heads=2, d_ff=64))
    return lm, lm.init(jax.random.key(0))


def _rollout_batch(lm, params, sp):
    """Samples, then lays the rows out as PPO's training batch does."""
    r = Sampler(lm, prompt_buckets=(P,))(params, PROMPTS, jax.random.key(3), sp, n=N)
    toks, mask, slogp = jax.device_get((r.tokens, r.mask, r.sample_logprobs))
    comp = [[int(t) for t in row[m]] for row, m in zip(toks, mask)]
    batch = make_sequence_batch([p for p in PROMPTS for _ in range(N)], comp, P,
                                sp.max_new_tokens)
    batch.pop("truncated")
    batch["target_mask"] = batch["loss_mask"][:, 1:].astype(np.float32)
    return batch, mask, slogp


@pytest.mark.parametrize("temperature, top_k", [(0.7, 0), (0.7, 5), (1.5, 0)])
def test_sampler_logprobs_equal_the_scoring_the_loss_uses(model, temperature, top_k):
    lm, params = model
    sp = SamplingParams(temperature=temperature, top_k=top_k, max_new_tokens=6)
    batch, mask, slogp = _rollout_batch(lm, params, sp)
    rl = default_config("ppo").rl
    rl.temperature, rl.top_k = temperature, top_k
    logp, ref_logp, _ = Scorer(lm, rl, N).score({"policy": params}, {"reference": params},
                                                batch)
    logp, ref_logp = np.asarray(logp), np.asarray(ref_logp)
    scored = logp[:, P - 1 :]  # the completion's tokens in the [B, L-1] layout
    np.testing.assert_allclose(np.where(mask, scored, 0.0), slogp, atol=2e-5)
    assert np.abs(logp - ref_logp).max() == 0.0  # k1 = 0 against an identical reference
    # the loss at the sampling parameters: ratio 1 on every token, the same log-probs
    zeros = np.zeros_like(logp)
    train = {k: batch[k] for k in ("tokens", "attention_mask", "loss_mask")}
    train.update(old_logprobs=logp, ref_logprobs=ref_logp, advantages=zeros + 1.0,
                 returns=zeros, old_values=zeros)
    loss = jax.jit(lambda p, b: get_loss("ppo")(p, b, model=lm, **loss_kwargs(rl)))
    _, m = loss({"policy": params}, train)
    np.testing.assert_allclose(m["ppo/ratio_max"], 1.0, atol=1e-5)
    np.testing.assert_allclose(m["policy/logprob"], slogp[mask].mean(), atol=1e-5)
    np.testing.assert_allclose(m["kl/mean"], 0.0, atol=1e-7)


def test_greedy_sample_logprobs_are_the_model_logprobs(model):
    lm, params = model
    sp = SamplingParams(temperature=0.0, max_new_tokens=6)
    r = Sampler(lm, prompt_buckets=(P,))(params, PROMPTS, jax.random.key(3), sp, n=1)
    np.testing.assert_array_equal(np.asarray(r.sample_logprobs), np.asarray(r.logprobs))


def test_map_row_chunks_returns_rows_in_order():
    from rlfb_jax.algos.pg_batch import map_row_chunks

    x = np.arange(12 * 3, dtype=np.float32).reshape(12, 3)
    calls = []

    def fn(rows):
        calls.append(rows["x"].shape[0])
        return rows["x"] * 2.0, rows["x"][:, :1]

    for max_rows, chunk in [(0, 12), (12, 12), (5, 4), (4, 4), (7, 6), (1, 1)]:
        calls.clear()
        a, b = map_row_chunks(fn, {"x": x}, max_rows)
        np.testing.assert_array_equal(a, 2 * x)
        np.testing.assert_array_equal(b, x[:, :1])
        assert calls == [chunk]  # traced once, on one chunk's rows


def test_scoring_in_row_chunks_gives_the_same_values_in_bounded_memory(model):
    """A critic-PPO iteration scores every sampled row (8,192 in the RL study's gae row); all
    at once its [rows, L, vocab] logits asked a 24 GiB host for 42.7 GB. Scored in chunks of
    rl.score_rows rows, the values are the same and the scorer's temporaries shrink."""
    lm, params = model
    sp = SamplingParams(temperature=0.7, max_new_tokens=6)
    batch, _, _ = _rollout_batch(lm, params, sp)
    batch = {k: np.tile(v, (8,) + (1,) * (v.ndim - 1)) for k, v in batch.items()}  # 72 rows
    rl = default_config("ppo").rl
    rl.temperature, rl.value_slot = 0.7, "value"
    lm_v = LanguageModel(lm.config.replace(heads=("value",)))
    params_v = lm_v.init(jax.random.key(1))
    ps, fr = {"policy": params, "value": params_v}, {"reference": params}
    out, temp = {}, {}
    for rows in (0, 16):
        rl.score_rows = rows
        scorer = Scorer(lm_v, rl, N)
        out[rows] = [np.asarray(a) for a in scorer.score(ps, fr, batch)]
        mem = scorer.score.lower(ps, fr, batch).compile().memory_analysis()
        temp[rows] = mem.temp_size_in_bytes
    for a, b in zip(out[0], out[16]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert temp[16] < temp[0] / 2, temp  # 6 chunks of 12 rows (the smallest divisor of 72 >= 72 / 16)
