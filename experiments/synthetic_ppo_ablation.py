"""Ablations of `experiments/synthetic_ppo.py:filtered`: that run with one change, named by the arg.

    python -m rlfb_jax.main --config experiments/synthetic_ppo_ablation.py:compile_nokl \\
        --workdir runs/ppo_compile_nokl --config.base_workdir runs/ppo/base

Every variant keeps the PPO experiment's batches, advantages, optimizer and evaluation, so
its results compare directly with that run's (pass/fail reward, KL beta 0.02). Point
``--config.base_workdir`` at a finished base run to share one base across the variants.

=============  ===================================================================
arg            change
=============  ===================================================================
compile_nokl   reward: +1 if the program compiles, -1 if not (tests ignored); beta 0
compile_kl     the same reward, with the KL penalty kept at beta 0.02
compile_beta1  the same reward, KL beta 1; any ``compile_beta<float>`` works
compile_loss_beta1  the same reward, with the KL (k3 estimator, beta 1) in the loss rather
               than the reward, so that it acts from the first update (a reward penalty
               is 0 in the first iteration, whose samples come from the reference itself)
ast_dfg        pass/fail + 0.5 x R_ast + 0.5 x R_dfg (syntax and data-flow match to
               the task's reference, as in PPOCoder)
beta0          KL beta 0 (no penalty)
beta0.1        KL beta 0.1 (five times the default); any ``beta<float>`` works
smoke          compile_nokl at smoke size (for the tests)
=============  ===================================================================
"""

import ml_collections

from experiments import synthetic_ppo
from rlfb_jax.core.config import lock

VARIANTS = ("compile_nokl", "compile_kl", "ast_dfg", "beta0", "beta0.1")


def _reward(weight: float = 1.0, **kwargs) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(weight=weight, **kwargs))


def get_config(arg: str = ""):
    smoke = arg == "smoke"
    variant = "compile_nokl" if smoke else arg
    prefixes = ("beta", "compile_beta", "compile_loss_beta")
    if not (variant in VARIANTS or variant.startswith(prefixes)):
        raise ValueError(f"synthetic_ppo_ablation: unknown variant {arg!r}; expected one of "
                         f"{', '.join(VARIANTS)}, [compile_[loss_]]beta<float> or smoke")
    c = synthetic_ppo.get_config("filtered,smoke" if smoke else "filtered")
    c.unlock()
    c.ablation = variant
    if variant.startswith("compile"):
        c.rl.rewards = ml_collections.ConfigDict({"compile": _reward()})
    if variant.startswith("compile_loss"):
        c.rl.kl.placement, c.rl.kl.estimator = "loss", "k3"
    if variant == "compile_nokl":
        c.rl.kl.beta = 0.0
    elif variant == "ast_dfg":
        c.rl.rewards.ast_match = _reward(0.5)
        c.rl.rewards.dfg_match = _reward(0.5)
    elif variant.startswith(prefixes):
        try:
            c.rl.kl.beta = float(variant.split("beta", 1)[1])
        except ValueError:
            raise ValueError(f"synthetic_ppo_ablation: {arg!r} is not "
                             "[compile_[loss_]]beta<float>, e.g. beta0.05") from None
    return lock(c)
