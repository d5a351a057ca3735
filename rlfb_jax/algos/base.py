"""The base model that RL, verifier and ReST-EM experiments start from.

``config.base`` is the whole config of the SFT experiment that trains it (e.g.
``experiments/synthetic_sft.get_config()``) and ``config.base_workdir`` its run directory
(default: WORKDIR/base). `ensure_base` trains it when that directory holds no finished run
(so a fresh machine needs one command), then returns the model, its trained parameters, its
tokenizer, the task splits it was trained and evaluated on, and its summary.
"""

from __future__ import annotations

import dataclasses
import json
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


# Data settings that change what the base model was trained on: a finished base directory
# whose config.json disagrees on one of them was trained for another task world. Absent keys
# (older runs) count as the SFT default (`rlfb_jax.algos.sft.default_config`).
PROMPT_DEFINING = ("source", "path", "seed", "max_depth", "example_outputs", "code_variants")


def check_base_data(base_cfg, bdir: str):
    """Raises ValueError when the finished base in `bdir` was trained on other data than
    ``base_cfg.data`` describes (see `PROMPT_DEFINING`); a directory without a finished run
    or without config.json passes."""
    path = os.path.join(bdir, "config.json")
    if not (os.path.exists(os.path.join(bdir, "summary.json")) and os.path.exists(path)):
        return
    from rlfb_jax.algos.sft import default_config

    defaults = default_config().data
    with open(path) as f:
        saved = json.load(f).get("data", {})
    want = base_cfg.get("data", {})
    diff = {k: (saved.get(k, defaults[k]), want.get(k, defaults[k])) for k in PROMPT_DEFINING
            if saved.get(k, defaults[k]) != want.get(k, defaults[k])}
    if diff:
        detail = ", ".join(f"data.{k}: {a!r} there, {b!r} here" for k, (a, b) in diff.items())
        raise ValueError(f"base_workdir {bdir} holds a base trained on other data ({detail}); "
                         "pass a base trained with this config's data settings, or none "
                         "to train one")


def ensure_base(config, workdir: str, heads: tuple[str, ...] = ()) -> Base:
    """Trains the base if needed and loads it. `heads` adds zero-initialized scalar heads
    (e.g. ("value",)) on top of the trained backbone. A finished base trained on other data
    (`check_base_data`) is an error."""
    from rlfb_jax.algos import sft

    bdir = base_workdir(config, workdir)
    base_cfg = config.base
    check_base_data(base_cfg, bdir)
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
