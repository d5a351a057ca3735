"""PPO from graded execution feedback on the synthetic task world, starting from the synthetic base.

    python -m rlfb_jax.main --config experiments/synthetic_ppo.py --workdir runs/ppo

Trains the base first (experiments/synthetic_sft.py, into WORKDIR/base) unless
``--config.base_workdir`` points at a finished base run.

The default is RL that pushes failures down: each of ITERATIONS iterations samples 2,048
training prompts x 4 programs (T=0.7, top-k 40) and rewards them with CodeRL's levels (-1
syntax error, -0.6 runtime error, -0.3 failed test, +1 pass). Leave-one-out (RLOO)
advantages are not floored. The update takes the 1,024 rows with the largest |sequence
advantage| (groups whose samples all score alike carry no outcome signal, as in DAPO's
dynamic sampling) for 2 epochs of 32 minibatches (clipped surrogate, KL beta 0.02 to the base
in the reward, lr 2e-4). It is the ``graded`` row of experiments/synthetic_rl_study.py run
for ITERATIONS iterations instead of that study's 6, with the learning rate of that row
extended twice by resuming: a cosine over iterations 1-6, then the cosine of 12 iterations
over 7-12 and that of 18 over 13-18 (``optimizer.schedule="cosine_stages"``; the rate goes
back up to 0.56 and 0.33 of its peak at iterations 7 and 13). Three seeds of this schedule
(runs resumed 6 -> 12 -> 18) reached 0.385 / 0.455 / 0.395 greedy pass@1 from the base's
0.220; one cosine over all 18 iterations (``--config.optimizer.schedule=cosine``) keeps the
rate high for longer and did less well (docs/results.md).

Args (``:ARG``; ``,smoke`` after either gives the tests' size):

* ``filtered``: the earlier setting that learns from successes only. It uses pass/fail
  rewards and RLOO advantages raised to at least 0. The update takes the 1,536 rows with the
  largest advantages, and each of 3 iterations samples 4,096 prompts x 4 programs with lr
  5e-4. That is filtered behaviour cloning inside the PPO loop. It is faster to a greedy
  gain (0.22 -> 0.37 in 3 iterations), but it narrows the samples (pass@16 falls).
* ``smoke``: the default at the tests' size.
"""

import ml_collections

from experiments import check_arg, synthetic_sft
from rlfb_jax.algos.ppo import default_config
from rlfb_jax.core.config import lock

ITERATIONS = 18
ARGS = ("", "smoke", "filtered", "filtered,smoke")


def pass_fail() -> ml_collections.ConfigDict:
    """The CodeRL levels with every failure at 0: +1 for a pass, 0 otherwise."""
    return ml_collections.ConfigDict({"coderl": ml_collections.ConfigDict(dict(
        weight=1.0, wrong_answer=0.0, syntax_error=0.0, runtime_error=0.0, timeout=0.0,
        memory_exceeded=0.0, output_exceeded=0.0))})


def one_cosine(c: ml_collections.ConfigDict) -> None:
    """Sets an unlocked config of this module to one cosine over all its iterations (the
    schedule of the RL study's 6-iteration rows, the demo's PPO stage and synthetic_pg)."""
    c.optimizer.schedule, c.optimizer.stages = "cosine", None


def get_config(arg: str = ""):
    check_arg("synthetic_ppo", arg, ARGS)
    variant = "filtered" if arg.startswith("filtered") else ""
    size = "smoke" if arg.endswith("smoke") else ""
    c = default_config("ppo")
    c.base = synthetic_sft.get_config(size)
    c.eval = c.base.eval.copy_and_resolve_references()
    c.rl.n_samples = 4
    c.rl.chunk_prompts = 64
    c.rl.temperature = 0.7
    c.rl.top_k = 40
    c.rl.max_new_tokens = c.base.data.completion_len
    c.rl.epochs = 2
    c.rl.kl.beta = 0.02
    c.optimizer.schedule = "cosine"  # over all iterations' updates (the default's below)
    c.optimizer.warmup_steps = 10
    c.train.checkpoint_every = 1
    if variant == "filtered":
        c.eval.every = 1
        c.rl.iterations, c.rl.prompts_per_iter = 3, 4096
        c.rl.rewards = pass_fail()
        c.rl.advantage, c.rl.adv_floor = "rloo", 0.0
        c.rl.update_rows, c.rl.minibatches = 1536, 48  # 32 rows each
        c.optimizer.learning_rate = 5e-4
    else:
        c.eval.every = 2
        c.rl.iterations, c.rl.prompts_per_iter = ITERATIONS, 2048
        c.rl.rewards = ml_collections.ConfigDict({"coderl": 1.0})  # the CodeRL levels
        c.rl.advantage, c.rl.adv_floor = "rloo", None
        c.rl.update_rows, c.rl.minibatches = 1024, 32  # 32 rows each
        c.optimizer.learning_rate = 2e-4
        if not size:  # the 6-iteration cosine extended to 12 and 18 iterations (docstring)
            c.optimizer.schedule, c.optimizer.stages = "cosine_stages", (1 / 3, 2 / 3)
    if size == "smoke":
        c.eval.every = 1
        c.rl.iterations, c.rl.prompts_per_iter, c.rl.n_samples, c.rl.chunk_prompts = 2, 4, 2, 2
        c.rl.update_rows, c.rl.minibatches = 4, 2
    return lock(c)
