"""The RL study on the synthetic world: every PG/PPO variant of the docs' RL table, one arg each.

    python -m rlfb_jax.main --config experiments/synthetic_rl_study.py:graded \\
        --workdir runs/rl_study/graded_s0 --config.seed=0 --config.base_workdir runs/ppo/base

Every variant starts from the same base and spends the same sample budget: ITERATIONS
iterations of 2,048 training prompts x 4 programs (T=0.7, top-k 40), an update on the 1,024
rows with the largest |sequence advantage| (groups whose samples all score alike carry no
outcome signal, as in DAPO's dynamic sampling), 2 epochs of 32-row minibatches, a KL penalty
to the base, lr 2e-4 cosine: experiments/synthetic_ppo.py's default setting, for 6 of its
18 iterations (its first stage of the learning rate). Append ``,smoke`` for the smoke
size (``graded,smoke``; plain ``smoke`` is ``graded,smoke``).

==============  ===========================================================================
arg             what differs from ``graded``
==============  ===========================================================================
graded          CodeRL levels (-1 syntax error, -0.6 runtime error, -0.3 failed test,
                +1 pass), RLOO advantages, no floor: failures are pushed down
filtered_bc     pass/fail, RLOO raised to >= 0 (learns from successes only): the setting
                the README's first PPO figure came from
grpo            GRPO advantages (group mean and std), with the rows' token-mean
                aggregation (DAPO's; GRPO's paper averages each sequence first, which
                ``--config.rl.loss_kwargs.aggregation=seq_mean`` gives)
dr_grpo         Dr. GRPO: group mean only, sequence-sum aggregation over a fixed length
reinforce_pp    REINFORCE++: outcome + KL penalty as the reward, normalised over the whole
                batch's tokens (no per-prompt baseline)
rltf            RLTF: -0.3 + 1.3 x pass ratio, -0.3 weight on the error line's tokens
clip_higher     DAPO's asymmetric clip (0.2 low, 0.28 high)
overlong        DAPO's soft overlong punishment on top of ``graded``: a completion longer
                than max_new_tokens - L_cache loses up to 1 (L_cache = max_new_tokens / 5,
                DAPO's proportion: 4,096 of 20,480; here 9 of 48 tokens)
gspo            GSPO: sequence-level importance ratio, clip range 3e-4 / 4e-4
                (both on the rows' RLOO advantages, so that only the ratio / clip
                differs from ``graded``; their papers use GRPO's group-normalised ones:
                ``--config.rl.advantage=grpo``)
gae             PPO with a GAE critic (lambda 0.95; a separate critic network, a copy of
                the base with a value head), advantages whitened over the batch, on the
                other rows' 1,024 update rows in the same 32 minibatches an epoch, drawn
                as 256 whole prompts at random (``rl.row_select="random"``: a critic's
                advantages exist only after scoring, so rows cannot be picked by them).
                Updating all 8,192 rows instead cost 13x the other rows' update (docs/
                results.md); without the whitening it collapsed in 2 iterations: the
                critic starts at 0, so nearly every advantage was negative
ppocoder        PPOCoder's setting (Shojaee et al. 2023): from an earlier, weaker checkpoint
                of the base (step 100 of 170), R = CodeRL levels + R_ast + R_dfg (each
                weight 1), KL beta 0.1 in the reward
pg              the "pg" loss (REINFORCE with the RLOO baseline), one epoch, at PG's own
                lr 5e-5 (`experiments/synthetic_pg.py`'s): with no ratio and no clip, the
                other rows' 2e-4 collapsed it (seed 0: KL 5.8 nats after the first update,
                greedy compile rate 0.50 at iteration 2; docs/results.md)
==============  ===========================================================================
"""

import ml_collections

from experiments import synthetic_pg, synthetic_ppo
from rlfb_jax.algos.ppo import default_config
from rlfb_jax.core.config import lock

ITERATIONS = 6
VARIANTS = ("graded", "filtered_bc", "grpo", "dr_grpo", "reinforce_pp", "rltf",
            "clip_higher", "overlong", "gspo", "gae", "ppocoder", "pg")


def get_config(arg: str = ""):
    variant, _, size = ("graded,smoke" if arg == "smoke" else arg or "graded").partition(",")
    if variant not in VARIANTS or size not in ("", "smoke"):
        raise ValueError(f"synthetic_rl_study: unknown arg {arg!r}; expected one of "
                         f"{', '.join(VARIANTS)}, optionally followed by ',smoke'")
    c = synthetic_ppo.get_config(size)  # the graded setting
    c.unlock()
    c.study = variant
    if not size:
        c.rl.iterations = ITERATIONS
    synthetic_ppo.one_cosine(c)  # over the study's 6 iterations: synthetic_ppo's first stage
    if variant == "filtered_bc":
        c.rl.rewards = synthetic_ppo.pass_fail()
        c.rl.adv_floor = 0.0
        c.optimizer.learning_rate = 5e-4
    elif variant == "grpo":
        c.rl.advantage = "grpo"
    elif variant == "dr_grpo":
        c.rl.advantage = "dr_grpo"
        c.rl.loss_kwargs.aggregation = "seq_sum_norm"
    elif variant == "reinforce_pp":
        c.rl.advantage = "reinforce_pp"
    elif variant == "rltf":
        c.rl.rewards = ml_collections.ConfigDict({"rltf_adaptive": 1.0})
        c.rl.token_rewards = ml_collections.ConfigDict(
            {"rltf_error_line": ml_collections.ConfigDict({"penalty": -0.3})})
    elif variant == "clip_higher":
        c.rl.loss_kwargs.clip_eps_high = 0.28
    elif variant == "overlong":
        c.rl.overlong_cache = max(1, int(c.rl.max_new_tokens) // 5)
    elif variant == "gspo":
        c.rl.loss = "gspo"
        c.rl.loss_kwargs.clip_eps, c.rl.loss_kwargs.clip_eps_high = 3e-4, 4e-4
        c.rl.loss_kwargs.aggregation = "seq_mean"
    elif variant == "gae":
        c.rl.advantage, c.rl.value_slot = "gae", "value"
        c.rl.advantage_kwargs.lam = 0.95
        c.rl.whiten = True
        # the other rows' update_rows and minibatches, drawn as whole prompts at random
        # (a critic's advantages exist only after scoring, so rows cannot be picked by them)
        c.rl.row_select = "random"
    elif variant == "ppocoder":
        c.base_step = 100 if not size else c.base.train.steps
        c.rl.rewards = ml_collections.ConfigDict({"coderl": 1.0, "ast_match": 1.0,
                                                  "dfg_match": 1.0})
        c.rl.kl.beta = 0.1
    elif variant == "pg":
        c.algo = "pg"
        c.rl.loss = "pg"
        c.rl.loss_kwargs = default_config("pg").rl.loss_kwargs
        c.rl.epochs = 1
        c.optimizer.learning_rate = synthetic_pg.LEARNING_RATE
    return lock(c)
