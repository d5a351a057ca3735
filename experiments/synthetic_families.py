"""Every family at one budget, from one base: the runs of the equal-budget comparison.

    python -m rlfb_jax.eval.families --workdir runs/families         # all of them, 3 seeds

runs, for each family and seed,

    python -m rlfb_jax.main --config experiments/synthetic_families.py:FAMILY \\
        --workdir runs/families/FAMILY_s<seed> --config.seed=<seed> \\
        --config.base_workdir runs/families/base

Every family starts from the same base: experiments/synthetic_repair.py's (the synthetic
recipe with repair examples, so one model samples and repairs), and spends about
``TRAIN_PROGRAMS`` programs sampled *and executed on training tasks* (verifier data for
LEVER, rollouts for PPO, E-step samples for ReST-EM / expert iteration, samples + repairs
for ILF, nothing for repair at inference). Held-out: the base's 200 test tasks, with
``EVAL_SAMPLES`` samples per task for pass@k.

=================  ========================================================================
FAMILY             its TRAIN_PROGRAMS, and what it does with them
=================  ========================================================================
ppo                1 iteration, 1,024 prompts x 4 programs: the graded setting of
                   experiments/synthetic_rl_study.py (CodeRL levels, RLOO, no floor, KL 0.02,
                   the 1,024 rows with the largest |advantage|, lr 2e-4)
rest_em            1 iteration, 512 problems x 8 samples, M-step from the base (ReST-EM)
expert_iteration   2 iterations of 512 problems x 4, each M-step from the last iterate
ilf                1 iteration, 672 problems x 4 samples + one repair per failure that fails a
                   visible example (~4,100 programs in all; ``rest_em/iter1/programs``)
lever              512 training tasks x 8 samples label the verifier's data; at test time
                   LEVER reranks 8 samples per held-out task (8 programs executed per task)
repair             none: 4 samples per held-out task, up to 2 rounds of repair of the
                   failures, selected by the visible examples (<= 12 per task; measured)
=================  ========================================================================

Append ``,smoke`` for the tests' size (``ppo,smoke``; plain ``smoke`` is ``ppo,smoke``).
There is no default family: the arg names one.
"""

from experiments import synthetic_lever, synthetic_repair, synthetic_rest_em, synthetic_rl_study
from rlfb_jax.core.config import lock

FAMILIES = ("ppo", "rest_em", "expert_iteration", "ilf", "lever", "repair")
TRAIN_PROGRAMS = 4096
EVAL_SAMPLES = 8


def _base(size: str):
    return synthetic_repair.get_config(size).base


def _eval(base, size: str):
    e = base.eval.copy_and_resolve_references()
    if not size:
        e.n_samples, e.ks = EVAL_SAMPLES, (1, 2, 4, 8)
    return e


def get_config(arg: str = ""):
    family, _, size = ("ppo,smoke" if arg == "smoke" else arg).partition(",")
    if family not in FAMILIES or size not in ("", "smoke"):
        raise ValueError(f"synthetic_families: unknown arg {arg!r}; expected one of "
                         f"{', '.join(FAMILIES)}, optionally followed by ',smoke'")
    full = not size
    if family == "ppo":
        c = synthetic_rl_study.get_config("graded" + ("," + size if size else ""))
        c.unlock()
        c.base = _base(size)
        c.eval = _eval(c.base, size)
        if full:
            c.rl.iterations, c.rl.prompts_per_iter, c.rl.n_samples = 1, 1024, 4
            c.rl.update_rows, c.rl.minibatches = 1024, 32
    elif family in ("rest_em", "expert_iteration", "ilf"):
        c = synthetic_rest_em.get_config(size)
        c.unlock()
        c.base = _base(size)
        c.eval = _eval(c.base, size)
        r = c.rest_em
        r.restart_from_base = family != "expert_iteration"
        if family == "ilf":
            r.feedback_repair, r.repairs_per_problem = "ilf", 4
        if full:
            r.iterations = 2 if family == "expert_iteration" else 1
            r.problems_per_iter = {"rest_em": 512, "expert_iteration": 512, "ilf": 672}[family]
            r.n_samples = 8 if family == "rest_em" else 4
    elif family == "lever":
        c = synthetic_lever.get_config("loose" + (",smoke" if size else ""))
        c.unlock()
        c.base = _base(size)
        c.verifier.prompt_len = c.base.data.prompt_len
        if full:
            c.lever.train_tasks, c.lever.train_samples = 512, 8
            c.lever.ns = (1, 4, EVAL_SAMPLES)
            c.verifier.no_exec_steps = 1  # the no-execution ablation is not compared here
    else:  # repair
        c = synthetic_repair.get_config(size)
        c.unlock()
        c.repair.seeds = 1  # one seed per run: the comparison's seeds are separate runs
        if full:
            c.repair.rounds = 2
    c.family = family
    return lock(c)
