"""The base model that RL, verifier and ReST-EM experiments start from.

"Base" means one thing in rlfb_jax: the SFT model every method starts from. ``config.base``
is the whole config of the SFT experiment that trains it (e.g.
``experiments/synthetic_sft.get_config()``) and ``config.base_workdir`` its run directory
(default: WORKDIR/base). `load_base_model` trains it when that directory holds no finished
run (so a fresh machine needs one command), then returns the model, its trained
parameters, its tokenizer, the task splits it was trained and evaluated on, and its
summary. Algorithms reach it through `rlfb_jax.algos.driver.Driver.base_model`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import jax
from etils import epath

from rlfb_jax.algos.datasets import SFTData, data_config, load_sft_data
from rlfb_jax.core.checkpoint import params_from_checkpoint
from rlfb_jax.core.policy import Policy, build_policy

log = logging.getLogger("rlfb_jax")


@dataclasses.dataclass
class BaseModel:
    policy: Policy  # lm (with any extra heads requested) + tokenizer
    params: Any  # trained parameters (pure dict)
    data: SFTData  # tasks: train_tasks, valid_tasks, eval_tasks (held-out test)
    summary: dict[str, Any]
    workdir: str


def base_workdir(config, workdir: str) -> str:
    return config.get("base_workdir") or os.path.join(workdir, "base")


# Data settings that change what the base model was trained on: a finished base directory
# whose config.json disagrees on one of them was trained for another task world. Absent keys
# (older runs) count as the default (`rlfb_jax.algos.datasets.data_config`).
PROMPT_DEFINING = ("source", "path", "seed", "max_depth", "example_outputs", "code_variants",
                   "repair_pairs")


def check_base_data(base_cfg, bdir: str):
    """Raises ValueError when the finished base in `bdir` was trained on other data than
    ``base_cfg.data`` describes (see `PROMPT_DEFINING`); a directory without a finished run
    or without config.json passes."""
    path = epath.Path(bdir, "config.json")
    if not (epath.Path(bdir, "summary.json").exists() and path.exists()):
        return
    defaults = data_config()
    saved = json.loads(path.read_text()).get("data", {})
    want = base_cfg.get("data", {})
    diff = {k: (saved.get(k, defaults[k]), want.get(k, defaults[k])) for k in PROMPT_DEFINING
            if saved.get(k, defaults[k]) != want.get(k, defaults[k])}
    if diff:
        detail = ", ".join(f"data.{k}: {a!r} there, {b!r} here" for k, (a, b) in diff.items())
        raise ValueError(f"base_workdir {bdir} holds a base trained on other data ({detail}); "
                         "pass a base trained with this config's data settings, or none "
                         "to train one")


def load_base_model(config, workdir: str, run: Callable[..., dict],
                    heads: tuple[str, ...] = ()) -> BaseModel:
    """Trains the base with ``run(config.base, base_workdir)`` (`rlfb_jax.algos.driver.run`,
    which does no work for a finished base) and loads it. `heads` adds zero-initialized
    scalar heads (e.g. ("value",)) on top of the trained backbone. A finished base trained
    on other data (`check_base_data`) is an error."""
    bdir = base_workdir(config, workdir)
    base_cfg = config.base
    check_base_data(base_cfg, bdir)
    # its data and model are checked above; other settings (e.g. its own eval) may differ
    summary = run(base_cfg, bdir, allow_config_change=True)
    data = load_sft_data(base_cfg, bdir)
    policy = build_policy(base_cfg, data.tokenizer)
    if heads:
        policy = policy.with_heads(heads)
    like = policy.lm.init(jax.random.key(0)) if heads else policy.lm.abstract_params()
    step = int(config.get("base_step", 0) or 0)  # > 0: an earlier checkpoint of the base
    params = params_from_checkpoint(bdir, like, step=step or None)
    if step:  # the base's own evaluation is of its final weights, not of these
        summary = {"base/step": step}
    log.info("base model from %s (pass@1 %.3f)", bdir, summary.get("eval/pass@1", float("nan")))
    return BaseModel(policy, params, data, summary, bdir)
