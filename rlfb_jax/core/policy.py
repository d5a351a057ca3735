"""`Policy`: a language model, its initial parameters and its tokenizer, and how to sample.

    policy = build_policy(config, tokenizer)          # config.model: fresh or a HF checkpoint
    sampling = policy.sampling(temperature=0.7, top_k=40, max_new_tokens=64)
    sampler = policy.sampler(prompt_len=96)           # compiled once per prompt bucket

Trained parameters live in the `TrainState`; ``Policy.params`` is only where they start
(None: initialize with ``lm.init``).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from rlfb_jax.core.config import model_from_config
from rlfb_jax.data.tokenizer import eos_id, pad_id
from rlfb_jax.models.lm import LanguageModel, Params
from rlfb_jax.models.sampler import Sampler, SamplingParams

log = logging.getLogger("rlfb_jax")


@dataclasses.dataclass
class Policy:
    """A language model, its initial parameters and its tokenizer."""

    lm: LanguageModel
    params: Params | None  # None: initialize randomly with lm.init
    tokenizer: Any
    _samplers: dict[int | None, Sampler] = dataclasses.field(default_factory=dict, repr=False)

    def sampler(self, prompt_len: int | None = None) -> Sampler:
        """The policy's `Sampler`, one per prompt layout so compiled programs are reused:
        ``prompt_len=None`` pads prompts to the sampler's default buckets, an int pads every
        prompt to that one length (callers cut prompts to their last `prompt_len` tokens)."""
        if prompt_len not in self._samplers:
            buckets = {} if prompt_len is None else {"prompt_buckets": (int(prompt_len),)}
            self._samplers[prompt_len] = Sampler(self.lm, **buckets)
        return self._samplers[prompt_len]

    def sampling(self, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=64) -> SamplingParams:
        """Sampling settings that stop at the tokenizer's eos and pad with its pad id."""
        return SamplingParams(temperature=float(temperature), top_k=int(top_k),
                              top_p=float(top_p), max_new_tokens=int(max_new_tokens),
                              stop_tokens=(self.eos_id,), pad_id=self.pad_id)

    def with_heads(self, heads: tuple[str, ...]) -> Policy:
        """The same backbone with extra zero-initialized scalar heads (e.g. ("value",));
        the parameters must be re-made for the new model (``params`` is None)."""
        names = tuple(sorted(set(self.lm.config.heads) | set(heads)))
        return Policy(LanguageModel(self.lm.config.replace(heads=names)), None, self.tokenizer)

    @property
    def pad_id(self) -> int:
        return pad_id(self.tokenizer)

    @property
    def eos_id(self) -> int:
        return eos_id(self.tokenizer)


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
        # training settings, not the checkpoint's
        lm = LanguageModel(lm.config.replace(logits_chunk=int(mcfg.get("logits_chunk", 0)),
                                             remat=bool(mcfg.get("remat", False))))
        return Policy(lm, params, tok)
    model_cfg = model_from_config(mcfg)
    if tokenizer is not None and len(tokenizer) > model_cfg.vocab_size:
        log.info("model.vocab_size %d -> %d to fit the tokenizer",
                 model_cfg.vocab_size, len(tokenizer))
        model_cfg = model_cfg.replace(vocab_size=len(tokenizer))
    return Policy(LanguageModel(model_cfg), None, tokenizer)
