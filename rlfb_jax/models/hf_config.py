"""Translation between HF ``config.json`` dicts and our `ModelConfig`, both directions.

Import (`config_from_hf`) accepts ``model_type`` llama, qwen2, mistral (-> ``arch="llama"``)
and gpt2 (-> ``arch="gpt2"``), in both the older (``rope_theta`` / ``rope_scaling``) and the
newer (``rope_parameters``) layout, and refuses with a ValueError naming the field anything
our model would compute differently: RoPE scaling, sliding windows in effect, other
activations. Export (`hf_config_for`) picks the HF architecture that holds a config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from rlfb_jax.models.config import ModelConfig

LLAMA_TYPES = ("llama", "qwen2", "mistral")
MODEL_TYPES = (*LLAMA_TYPES, "gpt2")
_DTYPE_NAMES = ("float32", "bfloat16", "float16")


# ------------------------------------------------------------------------------------------
# Import: HF config.json -> our config


def _dtype_name(dtype) -> str:
    name = jnp.dtype(dtype).name
    if name not in _DTYPE_NAMES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPE_NAMES)}, got {name!r}")
    return name


def _get(hf: Mapping[str, Any], key: str, default: Any = ...) -> Any:
    if key in hf and hf[key] is not None:
        return hf[key]
    if default is ...:
        raise ValueError(f"HF config ({hf.get('model_type')}) lacks required field {key!r}")
    return default


def _rope_theta(hf: Mapping[str, Any]) -> float:
    """rope_theta from either the old (rope_theta / rope_scaling) or new (rope_parameters)
    config layout; any scaling scheme other than plain RoPE is refused."""
    params = hf.get("rope_parameters") or {}
    for field, spec in (("rope_parameters", params), ("rope_scaling", hf.get("rope_scaling"))):
        if spec:
            kind = spec.get("rope_type", spec.get("type", "default"))
            if kind != "default":
                raise ValueError(
                    f"HF config field {field!r} asks for rope_type={kind!r}; only plain RoPE "
                    "('default') is implemented"
                )
    factor = params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if factor not in (None, 1, 1.0):
        raise ValueError(f"HF config field 'partial_rotary_factor'={factor} is not supported")
    return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def _check_sliding_window(hf: Mapping[str, Any], max_len: int) -> None:
    window = hf.get("sliding_window")
    if window is None:
        return
    if hf["model_type"] == "qwen2":
        types = hf.get("layer_types")
        if types is not None:
            in_use = "sliding_attention" in types
        else:
            in_use = bool(hf.get("use_sliding_window", False)) and hf.get(
                "max_window_layers", 0
            ) < hf.get("num_hidden_layers", 0)
        if not in_use:
            return
    if window < max_len:
        raise ValueError(
            f"HF config field 'sliding_window'={window} is smaller than max_len={max_len}: "
            "our attention is full, so outputs would differ past the window. Pass "
            f"max_len<={window} to use the model on sequences that fit in the window."
        )


def config_from_hf(
    hf_config: Mapping[str, Any],
    *,
    dtype=None,
    param_dtype=None,
    heads: tuple[str, ...] = (),
    max_len: int | None = None,
) -> ModelConfig:
    """Our `ModelConfig` for a HF ``config.json`` (as a dict).

    dtype / param_dtype default to the checkpoint's ``torch_dtype`` (or ``dtype``) when it is
    float32/bfloat16/float16, else float32; dtype defaults to param_dtype. max_len defaults to
    ``max_position_embeddings`` (``n_positions`` for GPT-2). Raises ValueError naming the field
    for architectures or options we do not implement.
    """
    hf = dict(hf_config)
    model_type = hf.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"HF config field 'model_type'={model_type!r} is not supported; "
            f"supported: {', '.join(MODEL_TYPES)}"
        )
    stored = hf.get("torch_dtype") or hf.get("dtype")
    if param_dtype is None:
        param_dtype = stored if stored in _DTYPE_NAMES else "float32"
    param_dtype = _dtype_name(param_dtype)
    dtype = param_dtype if dtype is None else _dtype_name(dtype)
    common = dict(dtype=dtype, param_dtype=param_dtype, heads=tuple(heads))

    if model_type == "gpt2":
        act = hf.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
            raise ValueError(
                f"HF config field 'activation_function'={act!r} is not supported; "
                "only the tanh GELU (gelu_new) is implemented"
            )
        for field, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                          ("add_cross_attention", False)):
            if bool(hf.get(field, ok)) != ok:
                raise ValueError(f"HF config field {field!r}={hf[field]} is not supported")
        d = _get(hf, "n_embd")
        return ModelConfig(
            vocab_size=_get(hf, "vocab_size"),
            d_model=d,
            n_layers=_get(hf, "n_layer"),
            n_heads=_get(hf, "n_head"),
            d_ff=_get(hf, "n_inner", 4 * d),
            max_len=max_len or _get(hf, "n_positions", 1024),
            arch="gpt2",
            norm_eps=float(_get(hf, "layer_norm_epsilon", 1e-5)),
            qkv_bias=True,
            out_bias=True,
            mlp_bias=True,
            tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
            **common,
        )

    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"HF config field 'hidden_act'={act!r} is not supported (only 'silu')")
    d, h = _get(hf, "hidden_size"), _get(hf, "num_attention_heads")
    head_dim, kv = hf.get("head_dim"), _get(hf, "num_key_value_heads", h)
    max_len = max_len or _get(hf, "max_position_embeddings", 2048)
    _check_sliding_window(hf, max_len)
    if model_type == "qwen2":
        qkv_bias, out_bias, mlp_bias = True, False, False
    else:
        qkv_bias = out_bias = bool(hf.get("attention_bias", False))
        mlp_bias = bool(hf.get("mlp_bias", False))
    return ModelConfig(
        vocab_size=_get(hf, "vocab_size"),
        d_model=d,
        n_layers=_get(hf, "num_hidden_layers"),
        n_heads=h,
        n_kv_heads=None if kv == h else kv,
        head_dim=None if head_dim in (None, d // h) else head_dim,
        d_ff=_get(hf, "intermediate_size"),
        max_len=max_len,
        arch="llama",
        rope_theta=_rope_theta(hf),
        norm_eps=float(_get(hf, "rms_norm_eps", 1e-6)),
        qkv_bias=qkv_bias,
        out_bias=out_bias,
        mlp_bias=mlp_bias,
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        **common,
    )


# ------------------------------------------------------------------------------------------
# Export: our config -> HF config.json

_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "mistral": "MistralForCausalLM",
    "gpt2": "GPT2LMHeadModel",
}


def _default_model_type(cfg: ModelConfig) -> str:
    if cfg.arch == "gpt2":
        return "gpt2"
    if cfg.qkv_bias and not cfg.out_bias and not cfg.mlp_bias:
        return "qwen2"
    return "llama"


def hf_config_for(
    config: ModelConfig, model_type: str | None = None
) -> tuple[dict[str, Any], ModelConfig]:
    """The HF ``config.json`` dict for `config`, and the config of what is actually written.

    The second value differs from `config` only in biases the HF architecture forces
    (they are written as zeros). model_type defaults to ``gpt2`` for ``arch="gpt2"``,
    ``qwen2`` when only q/k/v have biases, else ``llama``; ValueError names what a chosen
    model_type cannot express.
    """
    cfg = config
    model_type = model_type or _default_model_type(cfg)
    if model_type not in _ARCHITECTURES:
        raise ValueError(f"model_type must be one of {sorted(_ARCHITECTURES)}, got {model_type!r}")
    if (model_type == "gpt2") != (cfg.arch == "gpt2"):
        raise ValueError(f"model_type={model_type!r} cannot hold a model with arch={cfg.arch!r}")
    hf: dict[str, Any] = {
        "architectures": [_ARCHITECTURES[model_type]],
        "model_type": model_type,
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": cfg.tie_embeddings,
        "torch_dtype": cfg.param_dtype,
        # HF's per-architecture defaults (e.g. GPT-2's 50256) may lie outside our vocabulary;
        # save_pretrained fills these from the tokenizer.
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
    }
    if model_type == "gpt2":
        if cfg.num_kv_heads != cfg.n_heads or cfg.dim_per_head * cfg.n_heads != cfg.d_model:
            raise ValueError(
                "GPT-2 needs n_kv_heads == n_heads and head_dim == d_model // n_heads; got "
                f"n_kv_heads={cfg.num_kv_heads}, head_dim={cfg.dim_per_head}"
            )
        out = cfg.replace(qkv_bias=True, out_bias=True, mlp_bias=True)
        hf.update(
            n_embd=cfg.d_model, n_layer=cfg.n_layers, n_head=cfg.n_heads, n_inner=cfg.d_ff,
            n_positions=cfg.max_len, layer_norm_epsilon=cfg.norm_eps,
            activation_function="gelu_new", scale_attn_weights=True,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,  # we train without dropout
        )
        return hf, out
    hf.update(
        hidden_size=cfg.d_model, intermediate_size=cfg.d_ff, num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.num_kv_heads,
        head_dim=cfg.dim_per_head, hidden_act="silu", max_position_embeddings=cfg.max_len,
        rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
    )
    if model_type == "qwen2":
        if cfg.out_bias or cfg.mlp_bias:
            raise ValueError("model_type='qwen2' has no o_proj or MLP biases (out_bias/mlp_bias)")
        out = cfg.replace(qkv_bias=True)
        hf.update(use_sliding_window=False, sliding_window=None)
        return hf, out
    if model_type == "mistral" and (cfg.qkv_bias or cfg.out_bias or cfg.mlp_bias):
        raise ValueError("model_type='mistral' has no biases; use model_type='llama'")
    attention_bias = cfg.qkv_bias or cfg.out_bias
    out = cfg.replace(qkv_bias=attention_bias, out_bias=attention_bias)
    if model_type == "mistral":
        hf["sliding_window"] = None
    else:
        hf.update(attention_bias=attention_bias, mlp_bias=cfg.mlp_bias)
    return hf, out
