"""The jitted KV-cache sampler: logprobs, greedy, filtering, stops, padding, compile counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlfb_jax.models import LanguageModel, ModelConfig, token_logprobs
from rlfb_jax.models.sampler import Sampler, SamplingParams, filter_logits, left_pad

CFG = ModelConfig(vocab_size=61, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64)


@pytest.fixture(scope="module")
def model():
    lm = LanguageModel(CFG)
    return lm, lm.init(jax.random.key(0))


PROMPTS = [[5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [3]]


def teacher_forced(lm, params, r):
    seq = jnp.concatenate([r.prompt_tokens, r.tokens], 1)
    mask = jnp.concatenate([r.prompt_mask, r.mask], 1)
    logits = lm(params, seq, attention_mask=mask)
    p = r.prompt_tokens.shape[1]
    return token_logprobs(logits[:, p - 1 : -1], r.tokens)


@pytest.mark.parametrize("sp", [
    SamplingParams(temperature=1.0, max_new_tokens=10),
    SamplingParams(temperature=0.7, top_k=5, top_p=0.9, max_new_tokens=10, stop_tokens=(3, 4)),
    SamplingParams(temperature=0.0, max_new_tokens=10),
])
def test_sampled_logprobs_equal_teacher_forced(model, sp):
    lm, params = model
    r = Sampler(lm, prompt_buckets=(16,))(params, PROMPTS, jax.random.key(1), sp, n=3)
    assert r.tokens.shape == (9, 10) and r.logprobs.shape == (9, 10)
    tf = teacher_forced(lm, params, r)
    err = jnp.max(jnp.abs(jnp.where(r.mask, tf - r.logprobs, 0.0)))
    assert float(err) < 1e-5
    assert bool(jnp.all(jnp.where(r.mask, True, r.logprobs == 0.0)))


def test_greedy_equals_argmax_loop_and_ignores_padding(model):
    lm, params = model
    sp = SamplingParams(temperature=0.0, max_new_tokens=8)
    r = Sampler(lm, prompt_buckets=(16,))(params, PROMPTS, jax.random.key(0), sp)
    forward = jax.jit(lambda t, m: lm(params, t, attention_mask=m))
    for i, prompt in enumerate(PROMPTS):
        seq = list(prompt)
        for _ in range(8):  # full forward on a right-padded buffer of fixed shape
            buf = np.zeros((1, 24), np.int32)
            buf[0, : len(seq)] = seq
            logits = forward(buf, (np.arange(24) < len(seq))[None])
            seq.append(int(jnp.argmax(logits[0, len(seq) - 1])))
        assert list(np.asarray(r.tokens[i])) == seq[len(prompt):]


def test_stop_tokens_end_completions_and_mask(model):
    lm, params = model
    # Make token 7 the stop token and find a prompt whose greedy continuation hits it.
    sp = SamplingParams(temperature=1.0, max_new_tokens=20, stop_tokens=(7,))
    r = Sampler(lm, prompt_buckets=(16,))(params, [[1, 2]], jax.random.key(3), sp, n=16)
    toks, mask = np.asarray(r.tokens), np.asarray(r.mask)
    stopped = 0
    for row, m in zip(toks, mask):
        hits = np.where(row == 7)[0]
        if len(hits):
            stopped += 1
            end = hits[0]
            assert m[: end + 1].all() and not m[end + 1 :].any()
            assert (row[end + 1 :] == 0).all()
        else:
            assert m.all()
    assert stopped > 0


def test_n_samples_differ_and_rows_are_grouped(model):
    lm, params = model
    sp = SamplingParams(temperature=1.0, max_new_tokens=6)
    r = Sampler(lm, prompt_buckets=(16,))(params, [[1, 2, 3], [9, 9]], jax.random.key(5), sp, n=4)
    toks = np.asarray(r.tokens)
    assert toks.shape == (8, 6)
    assert len({tuple(t) for t in toks[:4]}) > 1
    np.testing.assert_array_equal(np.asarray(r.prompt_tokens[0]), np.asarray(r.prompt_tokens[3]))


def test_no_recompilation_within_buckets(model):
    lm, params = model
    sampler = Sampler(lm, prompt_buckets=(8, 16), batch_multiple=8)
    sp = SamplingParams(temperature=1.0, max_new_tokens=5)
    sampler(params, [[1, 2, 3]], jax.random.key(0), sp, n=2)
    assert sampler.compiled_count() == 1
    # Different prompt lengths within the bucket, different batch sizes within the multiple,
    # different rngs and params values: no new program.
    sampler(params, [[4, 5], [1, 2, 3, 4, 5, 6, 7]], jax.random.key(1), sp, n=3)
    params2 = jax.tree.map(lambda x: x * 1.01, params)
    sampler(params2, [[7]], jax.random.key(2), sp, n=8)
    assert sampler.compiled_count() == 1
    sampler(params, [list(range(1, 12))], jax.random.key(2), sp)  # next prompt bucket
    assert sampler.compiled_count() == 2


def test_filter_logits_top_k_and_top_p():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    neg = jnp.finfo(jnp.float32).min
    k2 = filter_logits(logits, SamplingParams(top_k=2))
    assert bool(jnp.all(k2[0, 2:] == neg)) and bool(jnp.all(k2[0, :2] > neg))
    p = filter_logits(logits, SamplingParams(top_p=0.7))  # 0.5 + 0.3 covers 0.7
    assert bool(jnp.all(p[0, :2] > neg)) and bool(jnp.all(p[0, 2:] == neg))
    p1 = filter_logits(logits, SamplingParams(top_p=0.1))  # the top token always stays
    assert bool(p1[0, 0] > neg) and bool(jnp.all(p1[0, 1:] == neg))


def test_left_pad_and_bad_params():
    toks, mask = left_pad([[1, 2], [3, 4, 5, 6]], 3)
    np.testing.assert_array_equal(toks, [[0, 1, 2], [4, 5, 6]])
    np.testing.assert_array_equal(mask, [[False, True, True], [True, True, True]])
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)


def test_kth_largest_matches_a_sort_with_ties_signed_zeros_and_masked_values():
    from rlfb_jax.models.sampler import kth_largest

    rng = np.random.default_rng(0)
    for trial in range(200):
        v = int(rng.integers(1, 300))
        k = int(rng.integers(1, v + 1))
        x = rng.normal(size=(3, v)) * rng.choice([1e-3, 1.0, 30.0])
        if trial % 3 == 0:
            x = np.round(x)  # many ties
        if trial % 5 == 0:
            x[:, : v // 2] = np.finfo(np.float32).min  # already filtered logits
        if trial % 7 == 0:
            x[0, 0], x[1, :] = 0.0, -0.0
        x = x.astype(np.float32)
        got = np.asarray(kth_largest(jnp.asarray(x), k))
        np.testing.assert_array_equal(got, np.sort(x, axis=-1)[:, -k][:, None])
