"""Hugging Face checkpoint import: a local HF model directory becomes our NNX model.

Supported ``model_type``s: ``llama``, ``qwen2``, ``mistral`` (-> ``arch="llama"``) and
``gpt2`` (-> ``arch="gpt2"``). A checkpoint directory holds ``config.json`` and either
``model.safetensors`` or shards listed in ``model.safetensors.index.json``; tokenizer files
are optional. Torch is never imported: tensors are read straight from the safetensors files.

Layout conversions (HF -> ours):

- torch ``nn.Linear`` weights are [out, in]; our kernels are [in, out] (transposed).
- GPT-2 uses ``Conv1D`` weights, already [in, out]; its fused ``c_attn`` [D, 3D] is split
  into our q/k/v kernels [D, D] (and its bias [3D] into three [D]).
- Rotary embeddings use the same half-split ("rotate_half") layout as HF Llama/Qwen2, so
  q/k weights are copied without permutation.

Export back to HF format lives in `rlfb_jax.models.hf_export`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from rlfb_jax.models.config import ModelConfig
from rlfb_jax.models.lm import LanguageModel, Params
from rlfb_jax.models.transformer import Transformer

HEADS_FILE = "rlfb_heads.safetensors"  # value/score heads, which HF models do not have
SAFE_FILE = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")

LLAMA_TYPES = ("llama", "qwen2", "mistral")
MODEL_TYPES = (*LLAMA_TYPES, "gpt2")

# Buffers some exporters leave in the file; they hold no learned weights.
_IGNORABLE_SUFFIXES = (".rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias")

# safetensors dtype codes -> numpy dtypes (ml_dtypes supplies the ones numpy lacks).
_ST_DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_DTYPE_NAMES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


class CheckpointError(ValueError):
    """A checkpoint's tensors do not fit the model its config describes."""


# ------------------------------------------------------------------------------------------
# Reading safetensors files


class SafetensorsFile:
    """Read-only, memory-mapped view of one ``.safetensors`` file.

    The format is an 8-byte little-endian header length, a JSON header
    ``{name: {dtype, shape, data_offsets}}`` and the raw tensor bytes. The file is mapped
    rather than read through ``safetensors.numpy``, which has no bfloat16: `read` returns a
    zero-copy numpy view whose dtype comes from ml_dtypes where numpy has none.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        self.metadata: dict[str, str] = header.pop("__metadata__", None) or {}
        self.entries: dict[str, dict[str, Any]] = header
        self._start = 8 + n
        self._buf: np.memmap | None = None

    def keys(self) -> list[str]:
        return list(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.entries[name]["shape"])

    def read(self, name: str) -> np.ndarray:
        entry = self.entries[name]
        code = entry["dtype"]
        if code not in _ST_DTYPES:
            raise CheckpointError(f"{self.path}: tensor {name!r} has unsupported dtype {code}")
        dtype, shape = _ST_DTYPES[code], tuple(entry["shape"])
        begin, end = entry["data_offsets"]
        if begin == end:
            return np.zeros(shape, dtype)
        if self._buf is None:
            self._buf = np.memmap(self.path, dtype=np.uint8, mode="r")
        raw = self._buf[self._start + begin : self._start + end]
        return raw.view(dtype.newbyteorder("<")).reshape(shape)


def _require_dir(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise NotADirectoryError(f"checkpoint path {str(path)!r} is not a directory")
    return path


def read_hf_config(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint directory."""
    file = _require_dir(path) / "config.json"
    if not file.is_file():
        raise FileNotFoundError(f"no config.json in checkpoint directory {str(path)!r}")
    with open(file) as f:
        return json.load(f)


def open_tensors(path: str | os.PathLike) -> dict[str, SafetensorsFile]:
    """Maps every tensor name of a checkpoint directory to the file holding it.

    Uses ``model.safetensors.index.json`` when present (sharded checkpoints), else
    ``model.safetensors``.
    """
    path = _require_dir(path)
    index = path / SAFE_INDEX
    if index.is_file():
        with open(index) as f:
            weight_map: dict[str, str] = json.load(f)["weight_map"]
        files: dict[str, SafetensorsFile] = {}
        for fname in sorted(set(weight_map.values())):
            if not (path / fname).is_file():
                raise FileNotFoundError(f"{index} lists shard {str(path / fname)!r}, not found")
            files[fname] = SafetensorsFile(path / fname)
        return {name: files[fname] for name, fname in weight_map.items()}
    single = path / SAFE_FILE
    if not single.is_file():
        others = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
        hint = f" (found {others}: only safetensors checkpoints are supported)" if others else ""
        raise FileNotFoundError(f"no {SAFE_FILE} or {SAFE_INDEX} in {str(path)!r}{hint}")
    st = SafetensorsFile(single)
    return {name: st for name in st.keys()}


# ------------------------------------------------------------------------------------------
# Config


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
# Tensor name mapping


@dataclasses.dataclass(frozen=True)
class TensorMap:
    """One of our parameters and where it lives in a HF state dict.

    ours = part ``part`` (of ``parts`` equal slices along the last axis) of the HF tensor
    ``hf``, transposed first when ``transpose`` (torch Linear [out, in] -> our [in, out]).
    """

    hf: str
    ours: tuple[str | int, ...]
    transpose: bool = False
    part: int = 0
    parts: int = 1

    @property
    def path(self) -> str:
        return "/".join(map(str, self.ours))


def weight_map(cfg: ModelConfig, prefix: str | None = None) -> list[TensorMap]:
    """Every backbone parameter of `cfg` with its HF tensor (heads excluded).

    prefix: the base-model prefix of HF names (default ``model.`` for Llama/Qwen2,
    ``transformer.`` for GPT-2; ``""`` for checkpoints saved from the bare base model).
    """
    maps: list[TensorMap] = []

    def add(hf, ours, transpose, bias, **kw):
        """A dense layer: HF ``{hf}.weight`` / ``.bias`` -> our ``kernel`` / ``bias``."""
        maps.append(TensorMap(hf + ".weight", (*ours, "kernel"), transpose, **kw))
        if bias:
            maps.append(TensorMap(hf + ".bias", (*ours, "bias"), **kw))

    if cfg.arch == "gpt2":
        p = "transformer." if prefix is None else prefix
        maps += [TensorMap(p + "wte.weight", ("embed", "embedding")),
                 TensorMap(p + "wpe.weight", ("pos_embed", "embedding"))]
        for i in range(cfg.n_layers):
            h, o = f"{p}h.{i}.", ("layers", i)
            for hf_norm, norm in (("ln_1", "attn_norm"), ("ln_2", "mlp_norm")):
                maps += [TensorMap(f"{h}{hf_norm}.weight", (*o, norm, "scale")),
                         TensorMap(f"{h}{hf_norm}.bias", (*o, norm, "bias"))]
            for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
                add(h + "attn.c_attn", (*o, "attn", name), False, cfg.qkv_bias, part=j, parts=3)
            add(h + "attn.c_proj", (*o, "attn", "o_proj"), False, cfg.out_bias)
            add(h + "mlp.c_fc", (*o, "mlp", "up_proj"), False, True)
            add(h + "mlp.c_proj", (*o, "mlp", "down_proj"), False, True)
        maps += [TensorMap(p + "ln_f.weight", ("final_norm", "scale")),
                 TensorMap(p + "ln_f.bias", ("final_norm", "bias"))]
    else:
        p = "model." if prefix is None else prefix
        maps.append(TensorMap(p + "embed_tokens.weight", ("embed", "embedding")))
        for i in range(cfg.n_layers):
            h, o = f"{p}layers.{i}.", ("layers", i)
            maps += [TensorMap(h + "input_layernorm.weight", (*o, "attn_norm", "scale")),
                     TensorMap(h + "post_attention_layernorm.weight", (*o, "mlp_norm", "scale"))]
            for name in ("q_proj", "k_proj", "v_proj"):
                add(f"{h}self_attn.{name}", (*o, "attn", name), True, cfg.qkv_bias)
            add(h + "self_attn.o_proj", (*o, "attn", "o_proj"), True, cfg.out_bias)
            for name in ("gate_proj", "up_proj", "down_proj"):
                add(f"{h}mlp.{name}", (*o, "mlp", name), True, cfg.mlp_bias)
        maps.append(TensorMap(p + "norm.weight", ("final_norm", "scale")))
    if not cfg.tie_embeddings:
        add("lm_head", ("lm_head",), True, False)
    return maps


def hf_shape(m: TensorMap, ours_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The HF tensor shape that yields our parameter of shape `ours_shape` under `m`."""
    shape = (*ours_shape[:-1], ours_shape[-1] * m.parts) if m.parts > 1 else tuple(ours_shape)
    return shape[::-1] if m.transpose else shape


def param_at(tree: Mapping, path: tuple) -> Any:
    for k in path:
        # layer keys are ints in fresh params; some checkpoint libraries restore them as str
        tree = tree[str(k)] if isinstance(k, int) and k not in tree and str(k) in tree else tree[k]
    return tree


def _set_leaf(tree: dict, path: tuple, value: Any) -> None:
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def _base_prefix(cfg: ModelConfig, names: set[str]) -> str | None:
    """Detects checkpoints saved without the usual ``model.`` / ``transformer.`` prefix."""
    default = "transformer." if cfg.arch == "gpt2" else "model."
    first = "wte.weight" if cfg.arch == "gpt2" else "embed_tokens.weight"
    if default + first not in names and first in names:
        return ""
    return None


def _placer(shardings):
    if shardings is None:
        return lambda path, x: jnp.asarray(x)
    if isinstance(shardings, jax.sharding.Sharding):
        return lambda path, x: jax.device_put(x, shardings)
    return lambda path, x: jax.device_put(x, param_at(shardings, path))


def load_params(
    path: str | os.PathLike, lm: LanguageModel, *, shardings=None, strict: bool = True
) -> Params:
    """Reads a checkpoint directory's tensors into our params dict for `lm.config`.

    Tensors are converted to ``lm.config.param_dtype`` on the host, then placed one at a
    time (by `shardings`: None for the default device, one `jax.sharding.Sharding`, or a
    pytree of them shaped like the params). Value/score heads come from ``rlfb_heads.safetensors``
    when the directory has one, else start at zero (their initialisation).
    Raises CheckpointError naming the HF tensor and our path on a missing tensor or a shape
    mismatch, and (when `strict`) listing tensors the model has no place for.
    """
    cfg = lm.config
    tensors = open_tensors(path)
    abstract = lm.abstract_params()
    maps = weight_map(cfg, _base_prefix(cfg, set(tensors)))
    place = _placer(shardings)
    pdtype = cfg.jnp_param_dtype
    params: dict = {}

    missing = [m for m in maps if m.hf not in tensors]
    if missing:
        listed = "; ".join(f"{m.hf!r} (ours: {m.path})" for m in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise CheckpointError(f"checkpoint {str(path)!r} lacks tensor(s) {listed}{more}")
    used = {m.hf for m in maps}
    if strict:
        ignorable = {"lm_head.weight"} if cfg.tie_embeddings else set()
        extra = sorted(n for n in tensors if n not in used and n not in ignorable
                       and not n.endswith(_IGNORABLE_SUFFIXES))
        if extra:
            raise CheckpointError(
                f"checkpoint {str(path)!r} has tensor(s) the {cfg.arch} model has no place "
                f"for: {extra[:8]}{' ...' if len(extra) > 8 else ''}"
            )

    cache: dict[str, np.ndarray] = {}
    for m in maps:
        want = tuple(param_at(abstract, m.ours).shape)
        src = tensors[m.hf]
        expect = hf_shape(m, want)
        if src.shape(m.hf) != expect:
            raise CheckpointError(
                f"tensor {m.hf!r} (ours: {m.path}) in {src.path.name}: expected shape "
                f"{expect}, got {src.shape(m.hf)}"
            )
        if m.hf not in cache:
            cache = {m.hf: src.read(m.hf)}  # fused tensors are read once for all parts
        x = cache[m.hf]
        if m.transpose:
            x = x.T
        if m.parts > 1:
            n = x.shape[-1] // m.parts
            x = x[..., m.part * n : (m.part + 1) * n]
        _set_leaf(params, m.ours, place(m.ours, np.ascontiguousarray(x, dtype=pdtype)))

    heads_file = Path(path) / HEADS_FILE
    stored = SafetensorsFile(heads_file) if heads_file.is_file() else None
    for head in cfg.heads:
        for leaf in ("kernel", "bias"):
            ours = (f"{head}_head", leaf)
            want = param_at(abstract, ours)
            key = "/".join(ours)
            if stored is not None and key in stored.entries:
                x = stored.read(key)
                if x.shape != want.shape:
                    raise CheckpointError(
                        f"tensor {key!r} in {heads_file}: expected shape {want.shape}, "
                        f"got {x.shape}"
                    )
            else:
                x = np.zeros(want.shape)
            _set_leaf(params, ours, place(ours, np.asarray(x, dtype=want.dtype)))
    return params


def stored_heads(path: str | os.PathLike) -> tuple[str, ...]:
    """Names of the extra heads saved in a checkpoint directory's ``rlfb_heads.safetensors``."""
    file = Path(path) / HEADS_FILE
    if not file.is_file():
        return ()
    keys = SafetensorsFile(file).keys()
    return tuple(h for h in ("value", "score") if f"{h}_head/kernel" in keys)


def load_tokenizer(path: str | os.PathLike):
    """``transformers.AutoTokenizer`` for the directory, or None when it has no tokenizer files."""
    path = _require_dir(path)
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer  # heavy import, only when there is a tokenizer

    return AutoTokenizer.from_pretrained(str(path))


def load_checkpoint(
    path: str | os.PathLike,
    *,
    dtype=None,
    param_dtype=None,
    heads: tuple[str, ...] = (),
    max_len: int | None = None,
    shardings=None,
    tokenizer: bool = True,
) -> tuple[LanguageModel, Params, Any]:
    """A HF checkpoint directory as ``(LanguageModel, params, tokenizer or None)``.

    params is our pure nested dict (what the train state holds). The model gets the heads
    in `heads` plus any saved in ``rlfb_heads.safetensors``. See `config_from_hf` for the
    dtype and max_len defaults and `load_params` for `shardings`.
    """
    hf = read_hf_config(path)
    heads = tuple(dict.fromkeys((*heads, *stored_heads(path))))
    cfg = config_from_hf(hf, dtype=dtype, param_dtype=param_dtype, heads=heads, max_len=max_len)
    lm = LanguageModel(cfg)
    params = load_params(path, lm, shardings=shardings)
    return lm, params, load_tokenizer(path) if tokenizer else None


def load_pretrained(
    path: str | os.PathLike,
    *,
    dtype=None,
    param_dtype=None,
    heads: tuple[str, ...] = (),
    max_len: int | None = None,
) -> Transformer:
    """A HF checkpoint directory as a live NNX `Transformer`.

    Call the result on int32 tokens [B, T] (optionally positions [B, T] and attention_mask
    [B, T]) to get float32 logits [B, T, V].
    """
    lm, params, _ = load_checkpoint(
        path, dtype=dtype, param_dtype=param_dtype, heads=heads, max_len=max_len, tokenizer=False
    )
    return lm.bind(params)
