"""The synthetic base model: SFT of a ~3M-parameter decoder on synthetic train-split tasks.

    python -m rlfb_jax.main --config experiments/synthetic_sft.py --workdir runs/base

Deliberately imperfect (a short budget on held-out compositions) so that execution feedback
has something to fix; later experiments start from it through ``config.base_workdir``.
Re-running with a finished workdir does no work.
"""

from experiments import check_arg
from rlfb_jax.algos.sft import default_config
from rlfb_jax.core.config import lock


def get_config(arg: str = ""):
    check_arg("synthetic_sft", arg)
    c = default_config()
    c.data.source = "synthetic"
    c.data.num_train = 20000
    c.data.num_valid = 200
    c.data.num_test = 200
    c.data.max_depth = 3
    c.data.vocab_size = 2048
    c.data.prompt_len = 80
    c.data.completion_len = 48
    c.model.vocab_size = 2048
    c.model.d_model = 256
    c.model.n_layers = 4
    c.model.n_heads = 4
    c.model.d_ff = 688
    c.model.max_len = 256
    c.optimizer.learning_rate = 2e-3
    c.optimizer.warmup_steps = 50
    c.optimizer.weight_decay = 0.01
    c.train.steps = 170
    c.train.batch_size = 32
    c.train.log_every = 20
    c.train.checkpoint_every = 100
    c.eval.num_tasks = 200
    c.eval.n_samples = 16
    c.eval.temperature = 0.8
    c.eval.max_new_tokens = 48
    c.eval.batch_size = 256
    c.eval.ks = (1, 2, 4, 8, 16)
    if arg == "smoke":  # the same pipeline in seconds, for tests
        c.data.num_train, c.data.num_test, c.data.vocab_size = 256, 8, 512
        c.model.vocab_size, c.model.d_model, c.model.n_layers, c.model.d_ff = 512, 64, 2, 128
        c.train.steps, c.train.log_every = 10, 5
        c.eval.num_tasks, c.eval.n_samples, c.eval.ks = 8, 2, (1, 2)
    return lock(c)
