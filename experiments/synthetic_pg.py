"""Policy gradient (REINFORCE with a leave-one-out baseline) on the synthetic task world.

    python -m rlfb_jax.main --config experiments/synthetic_pg.py --workdir runs/pg

The PPO experiment's samples, rewards, advantages and optimizer
(`experiments/synthetic_ppo.py`: 4,096 prompts x 4 programs per iteration, pass/fail,
RLOO floored at 0, the 1,536 rows with the largest advantages, KL beta 0.02 in the
reward, lr 5e-4 cosine), with the plain policy-gradient loss -A log pi in place of the
clipped surrogate, and one pass over the rows per iteration: without PPO's ratio and
clipping, a second epoch would reuse samples as if they were on-policy.
"""

from experiments import check_arg, synthetic_ppo
from rlfb_jax.algos.ppo import default_config
from rlfb_jax.core.config import lock


def get_config(arg: str = ""):
    check_arg("synthetic_pg", arg)
    c = synthetic_ppo.get_config(arg)
    c.unlock()
    c.algo = "pg"
    c.rl.loss = "pg"
    c.rl.loss_kwargs = default_config("pg").rl.loss_kwargs  # pg's own: no clipping range
    c.rl.epochs = 1
    return lock(c)
