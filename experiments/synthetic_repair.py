"""Repair with execution feedback at inference (CodeRL's critical sampling / self-repair)
against plain resampling, on the synthetic world.

    python -m rlfb_jax.main --config experiments/synthetic_repair.py --workdir runs/repair

The base is the synthetic base's recipe (experiments/synthetic_sft.py) with repair examples
in its data: 10,000 mutated references with their feedback on the visible examples ->
the reference (`rlfb_jax.data.feedback`), and prompts long enough for the attempt and the
feedback (176 tokens). One model generates and repairs. Then, on the 200 held-out tasks,
4 samples, up to 3 rounds of repair or of resampling for tasks whose samples all fail the
visible examples, 3 seeds; see `rlfb_jax.algos.repair` for the outputs.
"""

from experiments import check_arg, synthetic_sft
from rlfb_jax.algos.repair import default_config
from rlfb_jax.core.config import lock


def get_config(arg: str = ""):
    check_arg("synthetic_repair", arg)
    c = default_config()
    c.base = synthetic_sft.get_config(arg)
    c.base.unlock()
    c.base.data.repair_pairs = 10000 if arg != "smoke" else 64
    c.base.data.prompt_len = 176
    c.base.train.steps = 300 if arg != "smoke" else c.base.train.steps
    c.repair.max_new_tokens = c.base.data.completion_len
    c.repair.temperature = c.base.eval.temperature
    if arg == "smoke":
        c.repair.num_tasks, c.repair.n, c.repair.rounds, c.repair.seeds = 4, 2, 2, 2
        c.repair.chunk_rows = 8
    return lock(c)
