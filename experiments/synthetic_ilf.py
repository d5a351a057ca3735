"""ILF (Chen et al. 2023, learning from feedback text) against ReST-EM at the same budget,
on the synthetic world.

    python -m rlfb_jax.main --config experiments/synthetic_ilf.py --workdir runs/ilf
    python -m rlfb_jax.main --config experiments/synthetic_ilf.py:rest_em \\
        --workdir runs/ilf_rest_em --config.base_workdir runs/ilf/base

The base is experiments/synthetic_repair.py's (the synthetic recipe with repair examples:
one model samples and repairs), so ``--config.base_workdir`` can share one base between the
two and with the repair experiment. One iteration (a second lowered pass@1 further: 0.455 ->
0.390, docs/results.md; ``--config.rest_em.iterations=N`` runs more): 1,024 training
problems x 4 samples; each failure that fails a visible example gets its feedback text and
one repair (at most 4 per problem); the repairs that pass the training tests are the
M-step's data, as (task -> repair), from the base (ReST-EM's restart). ``:rest_em`` is
plain ReST-EM with 8 samples per problem: at least as many programs sampled and executed as ILF's 4 + repairs
(``estep/programs`` in metrics.jsonl holds both counts). ``:both`` keeps the passing samples
as well as the passing repairs.
"""

from experiments import synthetic_repair, synthetic_rest_em
from rlfb_jax.core.config import lock

VARIANTS = ("ilf", "both", "rest_em")


def get_config(arg: str = ""):
    variant, _, size = (arg or "ilf").partition(",")
    if arg == "smoke":
        variant, size = "ilf", "smoke"
    if variant not in VARIANTS or size not in ("", "smoke"):
        raise ValueError(f"synthetic_ilf: unknown arg {arg!r}; expected one of "
                         f"{', '.join(VARIANTS)}, optionally followed by ',smoke' (or smoke)")
    c = synthetic_rest_em.get_config(size)
    c.unlock()
    c.base = synthetic_repair.get_config(size).base
    c.eval = c.base.eval.copy_and_resolve_references()
    c.rest_em.iterations = 1
    c.rest_em.problems_per_iter = 1024 if not size else c.rest_em.problems_per_iter
    c.rest_em.feedback_repair = "off" if variant == "rest_em" else variant
    c.rest_em.repairs_per_problem = 4
    c.rest_em.n_samples = 8 if variant == "rest_em" else 4
    return lock(c)
