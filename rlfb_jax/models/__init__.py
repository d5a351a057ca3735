"""Models: the NNX decoder LM, its KV-cache sampler and Hugging Face checkpoint import."""

from rlfb_jax.models.config import ModelConfig, count_params
from rlfb_jax.models.lm import LanguageModel, entropy, token_logprobs
from rlfb_jax.models.transformer import KVCache, ModelOutput, Transformer

__all__ = [
    "KVCache",
    "LanguageModel",
    "ModelConfig",
    "ModelOutput",
    "Transformer",
    "count_params",
    "entropy",
    "token_logprobs",
]
