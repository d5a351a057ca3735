"""LEVER on MBPP (or HumanEval) with a local Hugging Face checkpoint.

    python -m rlfb_jax.main --config experiments/mbpp_lever.py --workdir runs/mbpp_lever \\
        --config.base.model.hf_path=PATH/TO/CHECKPOINT --config.base.data.path=PATH/mbpp.jsonl

The checkpoint is used as it is (``base.train.steps = 0``: the "base" run only records it);
the verifier is trained on samples for MBPP's train split (601-974) and reranks samples for
its test split (11-510), or for HumanEval with ``--config.lever.test_benchmark=humaneval``.
Prompts are zero-shot: MBPP's description with its three asserts, the asserts being the
visible examples that the execution results come from.
"""

from rlfb_jax.algos.lever import default_config
from rlfb_jax.algos.sft import default_config as sft_config
from rlfb_jax.core.config import lock


def get_config(arg: str = ""):
    c = default_config()
    b = c.base = sft_config()
    b.data.source = "mbpp"
    b.data.path = "../shared/data/mbpp.jsonl"
    b.data.prompt_len = 512
    b.data.completion_len = 256
    b.train.steps = 0  # the checkpoint as it is
    b.optimizer.schedule = "constant"
    b.eval.num_tasks = 0
    c.lever.train_tasks = 374
    c.lever.train_samples = 16
    c.lever.temperature = 0.8
    c.lever.max_new_tokens = 256
    c.lever.test_tasks = 500
    c.lever.ns = (1, 4, 16, 64)
    c.lever.batch_size = 64
    c.lever.timeout = 5.0
    c.verifier.prompt_len = 512
    c.verifier.completion_len = 256
    c.verifier.exec_len = 64
    c.verifier.steps = 1000
    c.verifier.batch_size = 16
    c.verifier.lm_coef = 0.1
    c.verifier.score_batch = 32
    c.optimizer.learning_rate = 1e-5
    if arg not in ("", "smoke", "tiny"):
        raise ValueError(f"mbpp_lever: unknown argument {arg!r}; use smoke (or tiny, the same)")
    if arg in ("smoke", "tiny"):  # a tiny random checkpoint end to end, for tests
        b.data.prompt_len, b.data.completion_len = 128, 16
        c.lever.train_tasks, c.lever.train_samples, c.lever.test_tasks = 4, 2, 3
        c.lever.ns, c.lever.num_subsets, c.lever.batch_size = (1, 2), 2, 8
        c.lever.max_new_tokens = 8
        c.verifier.prompt_len, c.verifier.completion_len, c.verifier.exec_len = 64, 8, 16
        c.verifier.steps, c.verifier.batch_size, c.verifier.score_batch = 2, 4, 8
        c.train.checkpoint_every, c.train.log_every = 1, 1
    return lock(c)
