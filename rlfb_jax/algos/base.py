"""The base model that RL, verifier and ReST-EM experiments start from.

``config.base`` is the whole config of the SFT experiment that trains it (e.g.
``experiments/synthetic_sft.get_config()``) and ``config.base_workdir`` its run directory
(default: WORKDIR/base). `ensure_base` trains it when that directory holds no finished run
(so a fresh machine needs one command), then returns the model, its trained parameters, its
tokenizer, the task splits it was trained and evaluated on, and its summary.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from rlfb_jax.algos import common
from rlfb_jax.algos.datasets import SFTData, load_sft_data
from rlfb_jax.core.checkpoint import params_from_checkpoint

log = logging.getLogger("rlfb_jax")


@dataclasses.dataclass
class Base:
    policy: common.Policy  # lm (with any extra heads requested) + tokenizer
    params: Any  # trained parameters (pure dict)
    data: SFTData  # tasks: train_tasks, valid_tasks, eval_tasks (held-out test)
    summary: dict[str, Any]
    workdir: str


def base_workdir(config, workdir: str) -> str:
    return config.get("base_workdir") or os.path.join(workdir, "base")


def ensure_base(config, workdir: str, heads: tuple[str, ...] = ()) -> Base:
    """Trains the base if needed and loads it. `heads` adds zero-initialized scalar heads
    (e.g. ("value",)) on top of the trained backbone."""
    from rlfb_jax.algos import sft

    bdir = base_workdir(config, workdir)
    base_cfg = config.base
    summary = sft.run(base_cfg, bdir)  # does no work when the base is finished
    data = load_sft_data(base_cfg, bdir)
    policy = common.build_policy(base_cfg, data.tokenizer)
    if heads:
        cfg = policy.lm.config.replace(heads=tuple(sorted(set(policy.lm.config.heads) | set(heads))))
        policy = common.Policy(common.LanguageModel(cfg), None, policy.tokenizer)
    import jax

    like = policy.lm.init(jax.random.key(0)) if heads else policy.lm.abstract_params()
    params = params_from_checkpoint(bdir, like)
    log.info("base model from %s (pass@1 %.3f)", bdir, summary.get("eval/pass@1", float("nan")))
    return Base(policy, params, data, summary, bdir)
