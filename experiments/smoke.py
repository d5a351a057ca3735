"""Smoke test of the whole core path in under a minute on CPU: synthetic tasks, a BPE
tokenizer, a tiny model, SFT steps with checkpoints, and a small execution-based eval.

    python -m rlfb_jax.main --config experiments/smoke.py --workdir /tmp/smoke
"""

from rlfb_jax.algos.sft import default_config
from rlfb_jax.core.config import lock


def get_config():
    c = default_config()
    c.data.num_train = 512
    c.data.num_valid = 16
    c.data.num_test = 16
    c.data.max_depth = 2
    c.data.vocab_size = 512
    c.data.prompt_len = 96
    c.data.completion_len = 48
    c.model.d_model = 64
    c.model.n_layers = 2
    c.model.n_heads = 4
    c.model.n_kv_heads = 2
    c.model.d_ff = 128
    c.model.vocab_size = 512
    c.optimizer.learning_rate = 3e-3
    c.optimizer.warmup_steps = 5
    c.train.steps = 40
    c.train.batch_size = 16
    c.train.log_every = 5
    c.train.checkpoint_every = 20
    c.eval.num_tasks = 16
    c.eval.n_samples = 4
    c.eval.ks = (1, 4)
    c.eval.max_new_tokens = 32
    return lock(c)
