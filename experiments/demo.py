"""The main job: the synthetic base model, then LEVER reranking, PPO and ReST-EM from it, and
one table of held-out greedy pass@1 and compile rate per method (43.7 minutes on 2 CPU
cores shared with one other run, 2026-12-01: base 4.1, LEVER 7.9, PPO 24.0, ReST-EM 7.6).

    python -m rlfb_jax.main --config experiments/demo.py --workdir runs/demo

Each stage is its experiment's config (experiments/synthetic_*.py) with a smaller budget;
the full-budget runs are those experiments. A
re-run reuses finished stages. `--config.skip=lever,rest_em` leaves stages out; any stage
key can be overridden, e.g. ``--config.rest_em.rest_em.iterations=3``.
``experiments/demo.py:smoke`` runs the same pipeline in about a minute (tests).
"""


from experiments import (
    check_arg,
    synthetic_lever,
    synthetic_ppo,
    synthetic_rest_em,
    synthetic_rl_study,
    synthetic_sft,
)
from rlfb_jax.core.config import experiment_config, lock


def get_config(arg: str = ""):
    check_arg("demo", arg)
    c = experiment_config()
    del c.model
    c.algo = "demo"
    c.skip = ""
    c.base = synthetic_sft.get_config(arg)
    stages = {"lever": synthetic_lever, "ppo": synthetic_ppo, "rest_em": synthetic_rest_em}
    for name, module in stages.items():
        sub = module.get_config(arg)
        sub.unlock()
        c[name] = sub
    if arg != "smoke":
        # LEVER: n = 16 only (the table's column) instead of 1..64, and half the verifier
        # data and steps of experiments/synthetic_lever.py
        c.lever.lever.ns = (1, 4, 16)
        c.lever.lever.train_tasks, c.lever.verifier.steps = 512, 120
        # PPO: the graded setting of experiments/synthetic_ppo.py (failures pushed down, no
        # advantage floor) for 6 of its iterations, the RL study's protocol (about 24 min)
        c.ppo.rl.iterations = synthetic_rl_study.ITERATIONS
        synthetic_ppo.one_cosine(c.ppo)  # the study's schedule: one cosine over the 6
        # ReST-EM: one iteration (iterations 2-3 are in experiments/synthetic_rest_em.py)
        c.rest_em.rest_em.iterations = 1
    for name in stages:
        c[name].lock()
    return lock(c)
