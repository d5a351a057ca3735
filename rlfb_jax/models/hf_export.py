"""Hugging Face checkpoint export: our params -> a directory `transformers` loads.

``save_pretrained(lm, params, out_dir)`` writes ``config.json`` (``model_type`` and
``architectures`` set), ``model.safetensors`` (or shards plus ``model.safetensors.index.json``
above `max_shard_size`), the tokenizer when given, and ``rlfb_heads.safetensors`` for
value/score heads, which HF models lack (`rlfb_jax.models.hf.load_checkpoint` reads them
back). It is the inverse of the import in `rlfb_jax.models.hf`, sharing its name map.

Biases that our model lacks but the HF architecture requires (GPT-2's attention biases,
Llama's ``attention_bias`` covering q/k/v and o together) are written as zeros, which is exact.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jax
import numpy as np
from safetensors.numpy import save_file

from rlfb_jax.models.config import ModelConfig
from rlfb_jax.models.hf import (
    HEADS_FILE,
    SAFE_FILE,
    SAFE_INDEX,
    param_at,
    weight_map,
)
from rlfb_jax.models.hf_config import hf_config_for
from rlfb_jax.models.lm import LanguageModel, Params

_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10,
               "MIB": 2**20, "GIB": 2**30}


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMG]I?B|B)?\s*", size.upper())
    if not match:
        raise ValueError(f"max_shard_size must be bytes or like '2GB', got {size!r}")
    return int(float(match[1]) * _SIZE_UNITS[match[2] or ""])


def _to_host(x) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x))


def hf_state_dict(config: ModelConfig, params: Params, model_type: str | None = None
                  ) -> dict[str, np.ndarray]:
    """Our params as HF-named host arrays (torch Linear layout, fused GPT-2 c_attn)."""
    _, out_cfg = hf_config_for(config, model_type)
    ours = {m.ours for m in weight_map(config)}
    abstract = LanguageModel(out_cfg).abstract_params()
    groups: dict[str, list] = {}
    for m in weight_map(out_cfg):
        leaf = param_at(abstract, m.ours)
        if m.ours in ours:
            try:
                x = _to_host(param_at(params, m.ours))
            except KeyError:
                raise ValueError(f"params lack {m.path} (HF: {m.hf!r})") from None
        else:  # a bias the HF architecture forces and ours lacks: zeros are exact
            x = np.zeros(leaf.shape, leaf.dtype)
        want = tuple(leaf.shape)
        if x.shape != want:
            raise ValueError(f"param {m.path} (HF: {m.hf!r}): expected shape {want}, got {x.shape}")
        groups.setdefault(m.hf, []).append((m, x))
    state = {}
    for name, parts in groups.items():
        m = parts[0][0]
        x = np.concatenate([x for _, x in parts], axis=-1) if m.parts > 1 else parts[0][1]
        state[name] = np.ascontiguousarray(x.T if m.transpose else x)
    return state


def _write_shards(state: dict[str, np.ndarray], out: Path, max_bytes: int) -> list[str]:
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, x in state.items():
        if shards[-1] and size + x.nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = x
        size += x.nbytes
    meta = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], str(out / SAFE_FILE), metadata=meta)
        return [SAFE_FILE]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    where = {}
    for fname, shard in zip(names, shards):
        save_file(shard, str(out / fname), metadata=meta)
        where.update(dict.fromkeys(shard, fname))
    index = {"metadata": {"total_size": sum(x.nbytes for x in state.values())},
             "weight_map": dict(sorted(where.items()))}
    (out / SAFE_INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return names


def save_pretrained(
    lm_or_config: LanguageModel | ModelConfig,
    params: Params,
    out_dir: str | os.PathLike,
    tokenizer=None,
    *,
    model_type: str | None = None,
    max_shard_size: int | str = "2GB",
    extra_config: dict[str, Any] | None = None,
) -> Path:
    """Writes a HF checkpoint directory that ``AutoModelForCausalLM.from_pretrained`` loads.

    params: our pure dict (any dtype among float32/bfloat16/float16; written as stored).
    tokenizer: a `transformers` tokenizer, saved alongside; its bos/eos/pad token ids go into
    config.json. extra_config: fields merged last into config.json (e.g. ``eos_token_id``).
    On several hosts every process must call this (arrays are gathered); process 0 writes.
    Returns the output directory.
    """
    cfg = lm_or_config.config if isinstance(lm_or_config, LanguageModel) else lm_or_config
    hf, _ = hf_config_for(cfg, model_type)
    state = hf_state_dict(cfg, params, model_type)
    heads = {f"{h}_head/{leaf}": np.ascontiguousarray(_to_host(params[f"{h}_head"][leaf]))
             for h in cfg.heads for leaf in ("kernel", "bias")}
    out = Path(out_dir)
    if jax.process_index() != 0:
        return out
    out.mkdir(parents=True, exist_ok=True)
    for stale in [out / SAFE_FILE, out / SAFE_INDEX, out / HEADS_FILE,
                  *out.glob("model-*-of-*.safetensors")]:
        stale.unlink(missing_ok=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(tokenizer, key, None) is not None:
                hf[key] = getattr(tokenizer, key)
    hf.update(extra_config or {})
    _write_shards(state, out, _parse_size(max_shard_size))
    if heads:
        save_file(heads, str(out / HEADS_FILE),
                  metadata={"format": "rlfb_heads", "heads": ",".join(cfg.heads)})
    (out / "config.json").write_text(json.dumps(hf, indent=2, sort_keys=True) + "\n")
    return out
