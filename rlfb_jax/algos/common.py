"""Building blocks every algorithm shares: mesh, model, tokenizer and text encoding.

Kept small on purpose: an algorithm module reads top to bottom as "build parts, loop".
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

from rlfb_jax.core import sharding as shd
from rlfb_jax.core.config import model_from_config
from rlfb_jax.models.lm import LanguageModel, Params

log = logging.getLogger("rlfb_jax")


@dataclasses.dataclass
class Policy:
    """A language model, its initial parameters and its tokenizer."""

    lm: LanguageModel
    params: Params | None  # None: initialize randomly with lm.init
    tokenizer: Any

    _sampler: Any = None

    @property
    def sampler(self):
        """One `Sampler` per policy, so its compiled programs are reused across calls."""
        if self._sampler is None:
            from rlfb_jax.models.sampler import Sampler

            self._sampler = Sampler(self.lm)
        return self._sampler

    def sampling(self, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=64):
        from rlfb_jax.models.sampler import SamplingParams

        return SamplingParams(temperature=float(temperature), top_k=int(top_k),
                              top_p=float(top_p), max_new_tokens=int(max_new_tokens),
                              stop_tokens=(self.eos_id,), pad_id=self.pad_id)

    @property
    def pad_id(self) -> int:
        return pad_id(self.tokenizer)

    @property
    def eos_id(self) -> int:
        return eos_id(self.tokenizer)


def pad_id(tokenizer) -> int:
    pid = tokenizer.pad_token_id
    return 0 if pid is None else int(pid)


def eos_id(tokenizer) -> int:
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token; completions could never stop")
    return int(tokenizer.eos_token_id)


def load_tokenizer(path: str):
    """A Hugging Face tokenizer from a local directory (tokenizer.json etc.)."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"tokenizer directory not found: {path}")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def encode(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def encode_pairs(tokenizer, prompts: Sequence[str], completions: Sequence[str]):
    """(prompt ids, completion ids + eos) for SFT-style training."""
    eos = eos_id(tokenizer)
    return encode(tokenizer, prompts), [c + [eos] for c in encode(tokenizer, completions)]


def decode(tokenizer, ids_batch, masks) -> list[str]:
    """Completion texts from token rows and masks (stop tokens removed)."""
    eos = eos_id(tokenizer)
    out = []
    for ids, m in zip(ids_batch, masks):
        ids = [int(t) for t, keep in zip(ids, m) if keep and int(t) != eos]
        out.append(tokenizer.decode(ids, skip_special_tokens=True))
    return out


def build_policy(config, tokenizer=None) -> Policy:
    """The policy model from ``config.model``: a local HF checkpoint when ``hf_path`` is set
    (architecture, weights and tokenizer come from it), else a fresh model whose vocabulary
    is sized to `tokenizer`."""
    mcfg = config.model
    if mcfg.get("hf_path"):
        from rlfb_jax.models.hf import load_checkpoint

        lm, params, hf_tok = load_checkpoint(
            mcfg.hf_path, dtype=mcfg.dtype, param_dtype=mcfg.param_dtype, heads=tuple(mcfg.heads)
        )
        tok = tokenizer if tokenizer is not None else hf_tok
        if tok is None:
            raise FileNotFoundError(f"no tokenizer files in {mcfg.hf_path}")
        if int(mcfg.get("logits_chunk", 0)):  # a training setting, not the checkpoint's
            lm = LanguageModel(lm.config.replace(logits_chunk=int(mcfg.logits_chunk)))
        return Policy(lm, params, tok)
    model_cfg = model_from_config(mcfg)
    if tokenizer is not None and len(tokenizer) > model_cfg.vocab_size:
        log.info("model.vocab_size %d -> %d to fit the tokenizer",
                     model_cfg.vocab_size, len(tokenizer))
        model_cfg = model_cfg.replace(vocab_size=len(tokenizer))
    return Policy(LanguageModel(model_cfg), None, tokenizer)


def make_mesh(config):
    return shd.make_mesh(config.mesh)


def rules(config):
    return tuple((k, tuple(v) if isinstance(v, list | tuple) else v) for k, v in config.mesh.rules)
