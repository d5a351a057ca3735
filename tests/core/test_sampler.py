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
    kth = jax.jit(kth_largest)  # k traced: one compilation per width, not per (width, k)
    widths = (1, 2, 3, 17, 64, 101, 256, 299)
    for trial in range(200):
        v = widths[trial % len(widths)]
        k = int(rng.integers(1, v + 1))
        x = rng.normal(size=(3, v)) * rng.choice([1e-3, 1.0, 30.0])
        if trial % 3 == 0:
            x = np.round(x)  # many ties
        if trial % 5 == 0:
            x[:, : v // 2] = np.finfo(np.float32).min  # already filtered logits
        if trial % 7 == 0:
            x[0, 0], x[1, :] = 0.0, -0.0
        x = x.astype(np.float32)
        got = np.asarray(kth(jnp.asarray(x), k))
        np.testing.assert_array_equal(got, np.sort(x, axis=-1)[:, -k][:, None])


# Context-free logits: every position of every row sees the same logits, so each generated
# token is an independent draw from one filtered distribution that numpy computes exactly.
FIXED = np.array([3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0] + [-1.0] * 54, np.float32)


def _fixed_logits_model():
    """A model whose logits are FIXED at every position: the blocks add nothing (zero output
    projections), every token embeds to the same vector, and the untied head reads it."""
    cfg = ModelConfig(vocab_size=FIXED.size, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                      tie_embeddings=False)
    lm = LanguageModel(cfg)
    params = jax.tree.map(jnp.zeros_like, lm.init(jax.random.key(0)))
    params["embed"]["embedding"] = jnp.zeros((FIXED.size, 16)).at[:, 0].set(1.0)
    params["final_norm"]["scale"] = jnp.ones((16,))
    # final RMSNorm maps e_0 to sqrt(16) e_0 (eps aside), so row 0 of the head sets the logits
    params["lm_head"]["kernel"] = jnp.zeros((16, FIXED.size)).at[0].set(FIXED / 4.0)
    return lm, params


def exact_filtered_probs(logits: np.ndarray, temperature: float, top_k: int, top_p: float):
    """The sampling distribution by definition: softmax(logits / T) restricted to the top_k
    largest, then to the smallest prefix (by probability) whose mass before each kept token
    is below top_p, renormalized."""
    z = logits.astype(np.float64) / temperature
    order = np.argsort(-z, kind="stable")[:top_k]
    p = np.exp(z[order] - z[order].max())
    p /= p.sum()
    before = np.cumsum(p) - p
    keep = order[before < top_p]
    out = np.zeros_like(z)
    out[keep] = np.exp(z[keep] - z[keep].max())
    return out / out.sum()


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.5, 5, 0.9), (0.5, 0, 1.0),
                                                     (1.5, 4, 1.0)])
def test_sampling_frequencies_match_the_exact_filtered_softmax(temperature, top_k, top_p):
    """A few thousand draws at T != 1 with top-k / top-p against the exact distribution:
    temperature applied twice (or not at all), or a filter off by one, moves the
    frequencies far outside these bounds."""
    lm, params = _fixed_logits_model()
    logits = np.asarray(lm(params, jnp.array([[5, 9, 9]]))[0])
    np.testing.assert_allclose(logits, np.broadcast_to(FIXED, logits.shape), atol=1e-3)
    sp = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p,
                        max_new_tokens=64)
    r = Sampler(lm, prompt_buckets=(8,))(params, [[5]] * 64, jax.random.key(7), sp)
    draws = np.asarray(r.tokens).ravel()
    assert draws.size == 4096 and bool(np.all(np.asarray(r.mask)))
    expected = exact_filtered_probs(FIXED, temperature, top_k or FIXED.size, top_p)
    freq = np.bincount(draws, minlength=FIXED.size) / draws.size
    assert set(np.flatnonzero(freq)) <= set(np.flatnonzero(expected))  # filtered never drawn
    bound = 5 * np.sqrt(expected * (1 - expected) / draws.size) + 1e-3  # 5 sigma
    assert np.all(np.abs(freq - expected) <= bound), np.c_[freq, expected][:8]
    # and the logprobs the sampler returns stay those of the unfiltered T=1 model
    logp = FIXED - np.log(np.exp(FIXED).sum())
    np.testing.assert_allclose(np.asarray(r.logprobs).ravel(), logp[draws], atol=1e-4)
