"""The rollout: rows in task order whatever the chunking, each chunk's programs submitted
before the next chunk is sampled, outcomes and rewards aligned with their rows."""

import concurrent.futures

import jax
import numpy as np
import pytest

from rlfb_jax.core.policy import Policy
from rlfb_jax.core.rollout import rollout
from rlfb_jax.data.tokenizer import decode_completions, load_tokenizer
from rlfb_jax.executor import Outcome
from rlfb_jax.models import LanguageModel, ModelConfig


class Task:
    def __init__(self, prompt):
        self.prompt = prompt

    def to_job(self, completion, kind="assert"):
        return (self.prompt + completion, kind)


class RecordingPool:
    """Completes every job at once; remembers each job and how many chunks were sampled
    when it was submitted."""

    def __init__(self, sampler_calls):
        self.sampler_calls = sampler_calls
        self.submitted = []  # (program, kind, chunks sampled so far)

    def submit(self, jobs):
        futures = []
        for program, kind in jobs:
            self.submitted.append((program, kind, len(self.sampler_calls)))
            f = concurrent.futures.Future()
            f.set_result(Outcome(status="passed", stdout=program))
            futures.append(f)
        return futures


@pytest.fixture(scope="module")
def policy(tiny_tokenizer_dir):
    tok = load_tokenizer(tiny_tokenizer_dir)
    lm = LanguageModel(ModelConfig(vocab_size=len(tok), d_model=16, n_layers=1, n_heads=2,
                                   d_ff=32, max_len=64))
    return Policy(lm, None, tok), lm.init(jax.random.key(0))


def test_rows_follow_the_tasks_and_execution_overlaps_sampling(policy):
    policy, params = policy
    # longest prompt first, so the shortest-first chunking reorders them
    tasks = [Task("def mul_3(x):\n    \"\"\"Return x times 3.\"\"\"\n"), Task("def f(x):\n"),
             Task("def add_1(x):\n")]
    sampler = policy.sampler(None)
    calls = []
    real_call = sampler.__call__

    class Counting:
        def __call__(self, *args, **kwargs):
            calls.append(args[1])  # the chunk's prompts
            return real_call(*args, **kwargs)

    policy._samplers[None] = Counting()
    pool = RecordingPool(calls)
    n = 3
    reward_fn = lambda ts, texts, outs: (np.array([len(t) for t in texts], np.float32),
                                         {"reward/total": 0.0})
    eps = rollout(policy, params, tasks, policy.sampling(1.0, max_new_tokens=6), n,
                  jax.random.key(1), pool, reward_fn, chunk_rows=n)  # one task per chunk
    assert len(calls) == 3 and [len(c[0]) for c in calls] == sorted(len(c[0]) for c in calls)
    # chunk c's jobs went to the pool after chunk c was sampled, before chunk c + 1
    assert [k for _, _, k in pool.submitted] == [1] * n + [2] * n + [3] * n
    programs = [t.prompt + x for t, x in zip([t for t in tasks for _ in range(n)], eps.texts)]
    assert [o.stdout for o in eps.outcomes] == programs  # row i * n + j: sample j of task i
    assert sorted(p for p, _, _ in pool.submitted) == sorted(programs)
    assert eps.tokens.shape == eps.mask.shape == eps.logprobs.shape == (3 * n, 6)
    assert decode_completions(policy.tokenizer, eps.tokens, eps.mask) == eps.texts
    assert np.all(eps.logprobs[~eps.mask] == 0) and np.all(eps.logprobs[eps.mask] < 0)
    np.testing.assert_array_equal(eps.rewards, [len(x) for x in eps.texts])
    assert [len(p) for p in eps.prompts] == [len(policy.tokenizer(t.prompt)["input_ids"])
                                             for t in tasks]
    assert set(eps.times) == {"time/sample_s", "time/submit_s", "time/execute_wait_s"}


def test_prompt_len_cuts_prompts_to_one_compiled_length(policy):
    policy, params = policy
    tasks = [Task("def add_1(x):\n"), Task("def mul_3(x):\n    \"\"\"Return x times 3.\"\"\"\n")]
    eps = rollout(policy, params, tasks, policy.sampling(0.0, max_new_tokens=4), 1,
                  jax.random.key(0), RecordingPool([]), chunk_rows=1, prompt_len=5)
    full = [policy.tokenizer(t.prompt)["input_ids"] for t in tasks]
    assert eps.prompts == [p[-5:] for p in full]
    assert policy.sampler(5).prompt_buckets == (5,)
    assert policy.sampler(5).compiled_count() == 1  # both chunks: one program


def test_rewards_need_one_job_per_row(policy):
    policy, params = policy
    two_jobs = lambda task, texts: [task.to_job(t) for t in texts for _ in range(2)]
    with pytest.raises(ValueError, match="one outcome per row"):
        rollout(policy, params, [Task("def f(x):\n")], policy.sampling(0.0, max_new_tokens=2),
                1, jax.random.key(0), RecordingPool([]), lambda *a: (np.zeros(1), {}),
                jobs=two_jobs)


def test_prompt_ids_replace_the_prompts_encoding(policy):
    """Given ids are what the sampler sees (a prompt + the start of a program to continue,
    encoded apart); the encoding of task.prompt gives the same samples as no ids."""
    from rlfb_jax.data.tokenizer import encode_batch

    policy, params = policy
    tasks = [Task("def f(x):\n"), Task("def add_1(x):\n")]
    sampling, key = policy.sampling(1.0, max_new_tokens=5), jax.random.key(3)
    pool = RecordingPool([])
    plain = rollout(policy, params, tasks, sampling, 2, key, pool)
    ids = encode_batch(policy.tokenizer, [t.prompt for t in tasks])
    same = rollout(policy, params, tasks, sampling, 2, key, pool, prompt_ids=ids)
    assert same.texts == plain.texts and same.prompts == plain.prompts
    start = encode_batch(policy.tokenizer, ["    return"])[0]
    longer = rollout(policy, params, tasks, sampling, 2, key, pool,
                     prompt_ids=[p + start for p in ids])
    assert longer.prompts == [p + start for p in ids]
    with pytest.raises(ValueError, match="1 prompt_ids for 2 tasks"):
        rollout(policy, params, tasks, sampling, 2, key, pool, prompt_ids=ids[:1])
