"""Jit-compiled batched sampling with a KV cache; the whole decode loop is one `while_loop`.

Layout (shared with the losses, so a rollout is a training batch as it stands):
prompts are left-padded to P slots, completions right-padded to N slots; the sequence is
``concat(prompt, completion)`` [B, P+N] with ``attention_mask`` False on padding.

Two log-probs of each sampled token come back, both exactly what teacher forcing the same
tokens gives: ``logprobs`` under the model's own distribution (temperature 1; LEVER's
p_LM), and ``sample_logprobs`` under softmax(logits / T), the distribution the token was
drawn from before top-k / top-p truncation (what PG/PPO score with:
``rlfb_jax.losses.sequence.sequence_logprobs(..., temperature=T)``). With top-k / top-p the
sampler's own probability of a token is q(x) = p_T(x) / M, M the p_T-mass of the kept
tokens at that step; ``sample_logprobs`` leave out the -log M (the choice of the usual RL
stacks: truncation belongs to the sampler, the policy is p_T; see `rlfb_jax.losses.pg`).
Greedy decoding (T = 0) has ``sample_logprobs == logprobs``. The stop token that ends a
completion is part of the completion (mask True): the model must learn to emit it.

Compilations: one per (batch, prompt bucket, max_new_tokens, SamplingParams). `Sampler`
pads the batch and the prompt length to buckets so that steady-state calls never recompile.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rlfb_jax.models.lm import LanguageModel, Params, token_logprobs
from rlfb_jax.models.transformer import KVCache


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """How to pick each token. temperature 0 means greedy (top_k/top_p then unused)."""

    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    max_new_tokens: int = 64
    stop_tokens: tuple[int, ...] = ()
    pad_id: int = 0

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or self.max_new_tokens < 1:
            raise ValueError("top_k must be >= 0 and max_new_tokens >= 1")


class Rollout(NamedTuple):
    """Output of `sample`. All arrays have leading dim B (prompts x samples per prompt)."""

    prompt_tokens: jax.Array  # [B, P] int32, left-padded
    prompt_mask: jax.Array  # [B, P] bool
    tokens: jax.Array  # [B, N] int32 completion, pad after the end
    logprobs: jax.Array  # [B, N] float32 log p(token) under the model (T=1), 0 on padding
    mask: jax.Array  # [B, N] bool, True on generated tokens (including the stop token)
    # [B, N] float32 log softmax(logits / T)(token), before top-k/top-p; 0 on padding
    sample_logprobs: jax.Array

    @property
    def lengths(self) -> jax.Array:
        return jnp.sum(self.mask, axis=1)


def kth_largest(x: jax.Array, k: int) -> jax.Array:
    """The k-th largest value of each row of x [B, V] (float32), as [B, 1]; exact.

    Bisection over the order-preserving unsigned-integer image of the floats: 32 rounds of
    compare-and-count, each O(V), instead of `lax.top_k`'s sort (on CPU at [256, 2048] and
    k=40: about 2 ms against 57 ms per decode step).
    """
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    sign = jnp.uint32(0x80000000)
    key = jnp.where(bits >= sign, ~bits, bits | sign)  # larger float -> larger key

    def body(_, bounds):  # invariant: count(key >= lo) >= k > count(key >= hi)
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        ok = jnp.sum(key >= mid, axis=-1, keepdims=True) >= k
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo = jnp.zeros(x.shape[:-1] + (1,), jnp.uint32)
    hi = jnp.max(key, axis=-1, keepdims=True) + 1  # finite floats never reach 0xFFFFFFFF
    lo, _ = jax.lax.fori_loop(0, 32, body, (lo, hi))
    back = jnp.where(lo >= sign, lo & ~sign, ~lo)
    return jax.lax.bitcast_convert_type(back, jnp.float32)


def filter_logits(logits: jax.Array, params: SamplingParams) -> jax.Array:
    """Temperature, top-k and top-p (nucleus) applied to logits [B, V] (float32)."""
    logits = logits / params.temperature
    neg = jnp.finfo(jnp.float32).min
    if params.top_k:
        kth = kth_largest(logits, min(params.top_k, logits.shape[-1]))
        logits = jnp.where(logits < kth, neg, logits)
    if params.top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        # keep a token if the mass strictly before it is below top_p (the first always stays)
        before = jnp.cumsum(probs, axis=-1) - probs
        keep = before < params.top_p
        cutoff = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, neg, logits)
    return logits


def _pick(rng, logits, params: SamplingParams):
    if params.temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(rng, filter_logits(logits, params), axis=-1).astype(jnp.int32)


def sample(
    lm: LanguageModel,
    params: Params,
    prompt_tokens: jax.Array,
    prompt_mask: jax.Array,
    rng: jax.Array,
    sampling: SamplingParams,
) -> Rollout:
    """Samples completions for left-padded prompts [B, P]. Pure; jit with `sampling` static."""
    b, p = prompt_tokens.shape
    n = sampling.max_new_tokens
    model = lm.bind(params)
    cache = KVCache.empty(lm.config, b, p + n)
    # The prompt pass needs the logits of its last position only (left padding puts every
    # row's last prompt token there): [B, 1, V] instead of [B, P, V].
    out = model.forward(prompt_tokens, attention_mask=prompt_mask, cache=cache,
                        compute_logits=False)
    stops = jnp.asarray(sampling.stop_tokens or (-1,), jnp.int32)

    def cond(carry):
        i, _, _, done, *_ = carry
        return (i < n) & ~jnp.all(done)

    def body(carry):
        i, last_logits, cache, done, toks, logps, mask, slogps = carry
        tok = _pick(jax.random.fold_in(rng, i), last_logits, sampling)
        tok = jnp.where(done, sampling.pad_id, tok)
        logp = jnp.where(done, 0.0, token_logprobs(last_logits, tok))
        if sampling.temperature > 0:
            slogp = jnp.where(done, 0.0,
                              token_logprobs(last_logits / sampling.temperature, tok))
        else:
            slogp = logp
        toks = toks.at[:, i].set(tok)
        logps = logps.at[:, i].set(logp)
        slogps = slogps.at[:, i].set(slogp)
        mask = mask.at[:, i].set(~done)
        done = done | jnp.isin(tok, stops)
        step = model.forward(tok[:, None], attention_mask=mask[:, i, None], cache=cache)
        return i + 1, step.logits[:, 0], step.cache, done, toks, logps, mask, slogps

    init = (
        jnp.zeros((), jnp.int32),
        model.logits(out.hidden[:, -1:])[:, 0],
        out.cache,
        jnp.zeros((b,), jnp.bool_),
        jnp.full((b, n), sampling.pad_id, jnp.int32),
        jnp.zeros((b, n), jnp.float32),
        jnp.zeros((b, n), jnp.bool_),
        jnp.zeros((b, n), jnp.float32),
    )
    _, _, _, _, toks, logps, mask, slogps = jax.lax.while_loop(cond, body, init)
    return Rollout(prompt_tokens, prompt_mask.astype(jnp.bool_), toks, logps, mask, slogps)


def left_pad(
    seqs: Sequence[Sequence[int]], length: int, pad_id: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Left-pads token lists to `length` -> (tokens [B, length] int32, mask [B, length] bool).

    Prompts longer than `length` keep their last `length` tokens.
    """
    toks = np.full((len(seqs), length), pad_id, np.int32)
    mask = np.zeros((len(seqs), length), bool)
    for i, s in enumerate(seqs):
        s = list(s)[-length:]
        if s:
            toks[i, length - len(s):] = s
            mask[i, length - len(s):] = True
    return toks, mask


def bucket(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= n (or n rounded up to a multiple of the last bucket)."""
    for b in buckets:
        if n <= b:
            return b
    last = buckets[-1]
    return -(-n // last) * last


class Sampler:
    """Host-facing sampler: token lists in, padded `Rollout` out, one compile per bucket.

    Prompt lengths are padded up to `prompt_buckets` and the batch (prompts x n) up to a
    multiple of `batch_multiple`, so varied inputs reuse a few compiled programs.
    """

    def __init__(
        self,
        lm: LanguageModel,
        prompt_buckets: Sequence[int] = (32, 48, 64, 80, 96, 128, 192, 256, 384, 512),
        batch_multiple: int = 8,
        out_shardings=None,
    ):
        self.lm = lm
        self.prompt_buckets = tuple(prompt_buckets)
        self.batch_multiple = batch_multiple
        self._fn = jax.jit(functools.partial(sample, lm), static_argnames=("sampling",))

    def compiled_count(self) -> int:
        """Number of programs compiled so far (for recompilation checks)."""
        return self._fn._cache_size()

    def __call__(
        self,
        params: Params,
        prompts: Sequence[Sequence[int]],
        rng: jax.Array,
        sampling: SamplingParams,
        n: int = 1,
    ) -> Rollout:
        """Samples `n` completions for each prompt; row i*n + j is sample j of prompt i."""
        if not prompts:
            raise ValueError("no prompts to sample from")
        seqs = [p for p in prompts for _ in range(n)]
        rows = len(seqs)
        padded_rows = bucket(rows, [self.batch_multiple]) if self.batch_multiple else rows
        length = bucket(max(len(s) for s in seqs), self.prompt_buckets)
        seqs = seqs + [seqs[-1]] * (padded_rows - rows)
        toks, mask = left_pad(seqs, length, sampling.pad_id)
        out = self._fn(params, jnp.asarray(toks), jnp.asarray(mask), rng, sampling=sampling)
        if padded_rows != rows:
            out = jax.tree.map(lambda x: x[:rows], out)
        return out
