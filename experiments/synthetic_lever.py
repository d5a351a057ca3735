"""LEVER on the synthetic task world: a learned verifier reranks samples of the base model.

    python -m rlfb_jax.main --config experiments/synthetic_lever.py --workdir runs/lever

Trains the base first (experiments/synthetic_sft.py, into WORKDIR/base) unless
``--config.base_workdir`` points at a finished base run. Writes the held-out accuracy of
every selection method for n in {1, 4, 16, 64} (summary.json ``rerank/<method>@<n>``,
rerank.md, rerank_accuracy.png) and the verifier's AUC with and without execution results.
"""

from experiments import synthetic_sft
from rlfb_jax.algos.lever import default_config
from rlfb_jax.core.config import lock


def get_config(arg: str = ""):
    c = default_config()
    c.base = synthetic_sft.get_config(arg)
    d = c.base.data
    c.lever.train_tasks = 512
    c.lever.train_samples = 8
    c.lever.temperature = 0.8
    c.lever.max_new_tokens = d.completion_len
    c.lever.test_tasks = d.num_test
    c.lever.ns = (1, 4, 16, 64)
    c.lever.select_tasks = 64  # alpha and length_norm chosen on 64 held-out training tasks
    c.verifier.prompt_len = d.prompt_len
    c.verifier.completion_len = d.completion_len
    c.verifier.exec_len = 24
    c.verifier.steps = 120
    c.verifier.batch_size = 32
    c.optimizer.learning_rate = 2e-4
    if arg == "smoke":  # the whole pipeline in well under a minute, for tests
        c.lever.train_tasks, c.lever.train_samples, c.lever.test_tasks = 16, 2, 4
        c.lever.select_tasks = 4
        c.lever.ns, c.lever.num_subsets, c.lever.batch_size = (1, 2, 4), 2, 16
        c.verifier.steps, c.verifier.no_exec_steps, c.verifier.batch_size = 3, 2, 8
        c.verifier.score_batch = 16
        c.train.checkpoint_every, c.train.log_every = 2, 1
    return lock(c)
