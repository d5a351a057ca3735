"""CodeRL's critic on the synthetic world: outcome classes of the base's own programs.

    python -m rlfb_jax.main --config experiments/synthetic_critic.py --workdir runs/critic \\
        --config.base_workdir runs/base

The base is experiments/synthetic_sft.py's. 2,048 training tasks x 4 samples (T=0.7,
top-k 40) labelled by the hidden tests, 300 steps of 32 rows; held out: 200 test tasks x 4
samples. PG/PPO use the result with ``--config.rl.critic_workdir runs/critic``.

``:repair`` (``repair,smoke``) trains it on experiments/synthetic_repair.py's base instead, for
CodeRL's critical sampling in the repair experiment:

    python -m rlfb_jax.main --config experiments/synthetic_critic.py:repair \
        --workdir runs/critic_repair --config.base_workdir runs/repair/base
    python -m rlfb_jax.main --config experiments/synthetic_repair.py --workdir runs/critical \
        --config.base_workdir runs/repair/base --config.repair.critic_workdir runs/critic_repair
"""

from experiments import check_arg, synthetic_repair, synthetic_sft
from rlfb_jax.algos.critic import default_config
from rlfb_jax.core.config import lock


def get_config(arg: str = ""):
    check_arg("synthetic_critic", arg, ("", "smoke", "repair", "repair,smoke"))
    repair, size = arg.startswith("repair"), "smoke" if arg.endswith("smoke") else ""
    c = default_config()
    c.base = synthetic_repair.get_config(size).base if repair else synthetic_sft.get_config(size)
    c.critic.max_new_tokens = c.base.data.completion_len
    if size:
        c.critic.train_tasks, c.critic.n_samples, c.critic.test_tasks = 16, 2, 8
        c.critic.test_samples, c.critic.steps, c.critic.sample_batch = 2, 4, 32
        c.critic.batch_size = 8
        c.train.log_every, c.train.checkpoint_every = 2, 2
    return lock(c)
