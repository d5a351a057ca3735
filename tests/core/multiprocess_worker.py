"""One process of the 2-process CPU test (see test_multiprocess.py). Prints a JSON result.

Usage: python multiprocess_worker.py PORT NUM_PROCESSES PROCESS_ID
(NUM_PROCESSES=1 runs the single-process reference.)
"""

import json
import sys

import jax
import numpy as np


def main(port: int, nproc: int, pid: int):
    if nproc > 1:
        from rlfb_jax.main import initialize_distributed

        initialize_distributed(f"127.0.0.1:{port}", nproc, pid)
    from rlfb_jax.core import sharding as shd
    from rlfb_jax.core.optim import make_optimizer
    from rlfb_jax.core.state import create_state
    from rlfb_jax.core.step import make_step
    from rlfb_jax.losses import get_loss
    from rlfb_jax.models import LanguageModel, ModelConfig

    cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, d_ff=64)
    lm = LanguageModel(cfg)
    tx, sched = make_optimizer(dict(name="adamw", learning_rate=1e-2), 4)
    mesh = shd.make_mesh(dict(data=-1, fsdp=2))
    state, sh = create_state(lambda r: ({"policy": lm.init(r)}, {}), tx, jax.random.key(0),
                             mesh, {"policy": lm.logical_axes()})
    step = make_step(get_loss("sft"), tx, schedule=sched, state_shardings=sh, mesh=mesh, model=lm)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(4):
        toks = rng.integers(1, 64, (8, 12)).astype(np.int32)
        batch = {"tokens": toks, "attention_mask": np.ones_like(toks, bool),
                 "loss_mask": np.ones_like(toks, bool)}
        per = 8 // jax.process_count()
        local = {k: v[pid * per : (pid + 1) * per] for k, v in batch.items()}
        state, m = step(state, shd.shard_batch(local, mesh))
        losses.append(float(m["train/loss"]))
    norm = float(jax.jit(lambda p: sum(jax.numpy.sum(x * x) for x in jax.tree.leaves(p)),
                         out_shardings=shd.replicated(mesh))(state.params))
    print(json.dumps({"devices": jax.device_count(), "losses": losses, "param_sq": norm}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
