"""PPO from execution feedback on the synthetic task world, starting from the synthetic base.

    python -m rlfb_jax.main --config experiments/synthetic_ppo.py --workdir runs/ppo

Trains the base first (experiments/synthetic_sft.py, into WORKDIR/base) unless
``--config.base_workdir`` points at a finished base run.
"""

from experiments import synthetic_sft
from rlfb_jax.algos.ppo import default_config
from rlfb_jax.core.config import lock


def get_config(arg: str = ""):
    c = default_config("ppo")
    c.base = synthetic_sft.get_config(arg)
    c.eval = c.base.eval.copy_and_resolve_references()
    c.eval.every = 10
    c.rl.iterations = 40
    c.rl.prompts_per_iter = 32
    c.rl.n_samples = 8
    c.rl.chunk_prompts = 8
    c.rl.max_new_tokens = c.base.data.completion_len
    c.rl.epochs = 1  # one pass of two minibatches: most of the gain at a third of the update cost
    c.rl.minibatches = 2
    c.optimizer.learning_rate = 1e-4
    if arg == "smoke":
        c.rl.iterations, c.rl.prompts_per_iter, c.rl.n_samples, c.rl.chunk_prompts = 2, 4, 2, 2
        c.rl.minibatches = 2
        c.train.checkpoint_every = 1
    return lock(c)
