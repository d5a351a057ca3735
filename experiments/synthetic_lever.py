"""LEVER on the synthetic task world: a learned verifier reranks samples of the base model.

    python -m rlfb_jax.main --config experiments/synthetic_lever.py --workdir runs/lever

Trains the base first (experiments/synthetic_sft.py, into WORKDIR/base) unless
``--config.base_workdir`` points at a finished base run. Writes the held-out accuracy of
every selection method for n in {1, 4, 16, 64} (summary.json ``rerank/<method>@<n>``,
rerank.md, rerank_accuracy.png) and the verifier's AUC with and without execution results.

The task world is the default one judged on the prompt's examples too
(``data.examples_in_tests=True``: a program that contradicts an example is never labeled
correct). Comma-separated arguments change it:
* ``loose``: judged on the hidden tests only (the default world; 8.5% of the base's passing
  samples contradict an example).
* ``variants``: the base learns references with equivalent spellings drawn per program
  (``data.code_variants``), so one behavior reaches the sampler as several strings.
* ``inputs``: the prompt shows the examples' inputs without outputs
  (``data.example_outputs=False``, LEVER's NL-to-SQL setting).
* ``smoke``: the tests' tiny budget.
What each changed is in the README (LEVER results).
"""

from experiments import synthetic_sft
from rlfb_jax.algos.lever import default_config
from rlfb_jax.core.config import lock

ARGS = ("loose", "variants", "inputs", "smoke")


def get_config(arg: str = ""):
    args = {a for a in arg.split(",") if a}
    if args - set(ARGS):
        raise ValueError(f"synthetic_lever: unknown argument(s) {sorted(args - set(ARGS))}; "
                         f"expected a comma-separated subset of {', '.join(ARGS)}")
    smoke = "smoke" in args
    c = default_config()
    c.base = synthetic_sft.get_config("smoke" if smoke else "")
    d = c.base.data
    d.code_variants = "variants" in args
    d.examples_in_tests = "loose" not in args
    d.example_outputs = "inputs" not in args
    c.lever.train_tasks = 1024
    c.lever.train_samples = 8
    c.lever.temperature = 0.8
    c.lever.max_new_tokens = d.completion_len
    c.lever.test_tasks = d.num_test
    c.lever.ns = (1, 4, 16, 64)
    c.lever.select_tasks = 64  # alpha chosen on 64 held-out training tasks
    # Per-token likelihoods are not probabilities of programs, so LEVER's sum over a group
    # of them counts distinct programs more than their mass (0.005 lower at n=64, measured).
    c.lever.length_norm_grid = (False,)
    c.verifier.prompt_len = d.prompt_len
    c.verifier.completion_len = d.completion_len
    c.verifier.exec_len = 24
    c.verifier.steps = 240
    c.verifier.batch_size = 32
    c.optimizer.learning_rate = 2e-4
    if smoke:  # the whole pipeline in well under a minute, for tests
        c.lever.train_tasks, c.lever.train_samples, c.lever.test_tasks = 16, 2, 4
        c.lever.select_tasks = 4
        c.lever.ns, c.lever.num_subsets, c.lever.batch_size = (1, 2, 4), 2, 16
        c.verifier.steps, c.verifier.no_exec_steps, c.verifier.batch_size = 3, 2, 8
        c.verifier.score_batch = 16
        c.train.checkpoint_every, c.train.log_every = 2, 1
    return lock(c)
