"""The experiment config every algorithm extends (`experiment_config`), and config checks.

Experiments are Python modules with ``get_config()`` returning a *locked*
``ml_collections.ConfigDict``: assigning a key that does not exist (a typo in an experiment
or on the command line, ``--config.optimizer.nmae=lion``) fails at once with the key's name,
and ml_collections rejects a value of the wrong type before any compute. The exceptions are
the hyperparameters of a part chosen by name (sections named ``kwargs`` or ``*_kwargs``,
e.g. ``--config.loss.kwargs.temperature=2.0``, ``--config.rl.loss_kwargs.clip_eps_high=0.28``)
and the names and weights of rewards (``--config.rl.rewards.ast_match=1.0``; a reward's own
options stay locked): they stay open, and the entry point checks their names against the
part's signature or registry before any work.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from rlfb_jax.core.sharding import DEFAULT_RULES
from rlfb_jax.models.config import ModelConfig


def model_config(**overrides) -> ml_collections.ConfigDict:
    """``config.model``: the fields of `ModelConfig` plus ``hf_path`` (a local HF checkpoint
    directory; when set, its architecture replaces these fields: `set_model_from_checkpoint`)."""
    d = ModelConfig(**overrides).to_dict()
    d["heads"] = tuple(d["heads"])
    d["hf_path"] = ""
    return ml_collections.ConfigDict(d)


def experiment_config() -> ml_collections.ConfigDict:
    """The sections every experiment has: algo, seed, model, optimizer, mesh, train."""
    c = ml_collections.ConfigDict()
    c.algo = "sft"
    c.seed = 0
    # modules imported before the run, comma-separated ("my_losses,lab.rewards" or
    # "path/to/file.py"), so that the parts they register can be named in the config
    c.imports = ""
    c.model = model_config()
    c.optimizer = ml_collections.ConfigDict(
        dict(
            name="adamw",
            learning_rate=3e-4,
            schedule="cosine",
            # cosine_stages only: where the cosine's horizon is extended, e.g. (1/3, 2/3)
            stages=config_dict.placeholder(tuple),
            warmup_steps=0,
            decay_steps=0,
            end_lr_factor=0.1,
            clip_norm=1.0,
            grad_accum=1,
            weight_decay=0.0,
            b1=config_dict.placeholder(float),
            b2=config_dict.placeholder(float),
            eps=config_dict.placeholder(float),
            kwargs=ml_collections.ConfigDict(),
        )
    )
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1, rules=DEFAULT_RULES))
    c.train = ml_collections.ConfigDict(
        dict(
            steps=100,
            batch_size=32,
            log_every=10,
            checkpoint_every=100,
            keep_checkpoints=2,
        )
    )
    return c


def model_from_config(cfg) -> ModelConfig:
    """`ModelConfig` from ``config.model`` (ignoring ``hf_path``), naming unknown keys."""
    d = dict(cfg)
    d.pop("hf_path", None)
    return ModelConfig.from_dict(d)


# With ``hf_path`` these come from the config (how to train); the rest from the checkpoint.
TRAINING_FIELDS = ("dtype", "param_dtype", "heads", "init_std", "logits_chunk", "remat")


def set_model_from_checkpoint(cfg) -> None:
    """With ``cfg.hf_path`` set, writes the checkpoint's architecture (vocabulary, tying,
    shapes, ...) into ``config.model``, so that config.json records the model actually
    trained; `TRAINING_FIELDS` stay as configured."""
    from rlfb_jax.models.hf import read_hf_config
    from rlfb_jax.models.hf_config import config_from_hf

    arch = config_from_hf(read_hf_config(cfg.hf_path), dtype=cfg.dtype,
                          param_dtype=cfg.param_dtype)
    for key, value in arch.to_dict().items():
        if key not in TRAINING_FIELDS:
            cfg[key] = value


def lock(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Locks `config` except its sections named ``kwargs``, ``*_kwargs`` or ``rewards``
    (see the module docstring)."""
    config.lock()

    def open_kwargs(node):
        for key, value in node.items():
            if isinstance(value, ml_collections.ConfigDict):
                if key in ("kwargs", "rewards") or key.endswith("_kwargs"):
                    value.unlock()
                    if key == "rewards":  # new names and weights; a reward's options stay
                        for option in value.values():  # locked (typos in them are refused)
                            if isinstance(option, ml_collections.ConfigDict):
                                option.lock()
                else:
                    open_kwargs(value)

    open_kwargs(config)
    return config
