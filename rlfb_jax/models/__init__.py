"""Models: the NNX decoder LM, its KV-cache sampler and Hugging Face checkpoint import."""

from rlfb_jax.models.config import ModelConfig, count_params
from rlfb_jax.models.hf import CheckpointError, load_checkpoint, load_params, load_pretrained
from rlfb_jax.models.hf_config import config_from_hf, hf_config_for
from rlfb_jax.models.hf_export import save_pretrained
from rlfb_jax.models.lm import LanguageModel, entropy, token_logprobs
from rlfb_jax.models.transformer import KVCache, ModelOutput, Transformer

__all__ = [
    "CheckpointError",
    "KVCache",
    "LanguageModel",
    "ModelConfig",
    "ModelOutput",
    "Transformer",
    "config_from_hf",
    "count_params",
    "entropy",
    "hf_config_for",
    "load_checkpoint",
    "load_params",
    "load_pretrained",
    "save_pretrained",
    "token_logprobs",
]
