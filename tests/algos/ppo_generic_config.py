"""PG/PPO at smoke size with the algorithm's own defaults (GRPO, CodeRL levels, every row
trained), for smoke tests of options that experiments/synthetic_ppo.py's tuned settings
(successes only, `rl.update_rows`) rule out, such as GAE with a critic and RLTF's
error-line penalty (a registered token reward)."""

from experiments import synthetic_sft
from rlfb_jax.algos.ppo import default_config
from rlfb_jax.core.config import lock


def get_config(arg: str = ""):
    c = default_config("ppo")
    c.base = synthetic_sft.get_config("smoke")
    c.eval = c.base.eval.copy_and_resolve_references()
    c.rl.iterations, c.rl.prompts_per_iter, c.rl.n_samples, c.rl.chunk_prompts = 2, 4, 2, 2
    c.rl.minibatches = 2
    c.rl.token_rewards = {"rltf_error_line": {"penalty": -0.3}}
    c.rl.max_new_tokens = c.base.data.completion_len
    c.train.checkpoint_every = 1
    return lock(c)
