"""ReST-EM on MBPP's train split (ids 601-974) from a local Hugging Face checkpoint.

    python -m rlfb_jax.main --config experiments/mbpp_rest_em.py --workdir runs/mbpp_rest_em \
        --config.base.model.hf_path=/path/to/checkpoint --config.base.data.path=/path/to/mbpp.jsonl

The base is the checkpoint as it is (``config.base.train.steps=0``: WORKDIR/base only
evaluates it on MBPP's test split; steps > 0 would first fine-tune it on the train split's
reference solutions). E-steps sample the train split, early stopping uses the validation
split (511-600), held-out results are on the test split (11-510). The paper's defaults:
every train problem, N=32, T=0.7, top-k 40, cap 10, restart from the base.
"""

import os

from experiments import check_arg
from rlfb_jax.algos.rest_em import default_config
from rlfb_jax.algos.sft import default_config as sft_config
from rlfb_jax.core.config import lock

# The shared copy of the original mbpp.jsonl next to the repository, when there is one.
MBPP = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                     "mbpp.jsonl"))


def get_config(arg: str = ""):
    check_arg("mbpp_rest_em", arg)
    c = default_config()
    b = sft_config()
    b.data.source = "mbpp"
    b.data.path = MBPP if os.path.exists(MBPP) else ""
    b.data.prompt_len = 512
    b.data.completion_len = 256
    b.model.hf_path = ""  # required: --config.base.model.hf_path=DIR
    b.train.steps = 0
    b.optimizer.learning_rate = 1e-5
    b.eval.num_tasks = 500
    b.eval.n_samples = 16
    b.eval.temperature = 0.8
    b.eval.max_new_tokens = 256
    b.eval.batch_size = 128
    b.eval.ks = (1, 2, 4, 8, 16)
    c.base = b
    c.eval = b.eval.copy_and_resolve_references()
    c.rest_em.max_new_tokens = 256
    c.rest_em.sample_batch = 256
    c.optimizer.learning_rate = 1e-5
    c.optimizer.warmup_steps = 10
    c.train.batch_size = 16
    if arg == "smoke":  # a tiny random checkpoint, a handful of problems: for tests
        b.data.prompt_len = 256  # M-step batches keep a prompt's last 256 tokens
        b.eval.num_tasks, b.eval.n_samples, b.eval.ks = 4, 1, (1,)  # greedy only
        b.eval.max_new_tokens, b.eval.batch_size = 16, 8
        c.eval = b.eval.copy_and_resolve_references()
        c.rest_em.iterations = 1
        c.rest_em.problems_per_iter, c.rest_em.n_samples, c.rest_em.sample_batch = 4, 2, 8
        c.rest_em.max_new_tokens = 16
        c.rest_em.valid_tasks = 4
        c.rest_em.mstep.max_steps = 2
        c.optimizer.learning_rate = 1e-3
        c.train.batch_size = 4
        c.train.log_every, c.train.checkpoint_every = 1, 1
    return lock(c)
