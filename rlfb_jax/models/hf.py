"""Hugging Face checkpoint import: a local HF model directory becomes our NNX model.

Supported ``model_type``s: ``llama``, ``qwen2``, ``mistral`` (-> ``arch="llama"``) and
``gpt2`` (-> ``arch="gpt2"``); config translation is in `rlfb_jax.models.hf_config`.
A checkpoint directory holds ``config.json`` and either ``model.safetensors`` or shards
listed in ``model.safetensors.index.json``; tokenizer files are optional. Torch is never
imported: tensors are read straight from the safetensors files.

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
from rlfb_jax.models.hf_config import config_from_hf
from rlfb_jax.models.lm import LanguageModel, Params
from rlfb_jax.models.transformer import Transformer

HEADS_FILE = "rlfb_heads.safetensors"  # value/score heads, which HF models do not have
SAFE_FILE = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")

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
            where: dict[str, str] = json.load(f)["weight_map"]
        files: dict[str, SafetensorsFile] = {}
        for fname in sorted(set(where.values())):
            if not (path / fname).is_file():
                raise FileNotFoundError(f"{index} lists shard {str(path / fname)!r}, not found")
            files[fname] = SafetensorsFile(path / fname)
        return {name: files[fname] for name, fname in where.items()}
    single = path / SAFE_FILE
    if not single.is_file():
        others = sorted(p.name for pat in ("*.bin", "*.pt", "*.pth") for p in path.glob(pat))
        hint = f" (found {others}: only safetensors checkpoints are supported)" if others else ""
        raise FileNotFoundError(f"no {SAFE_FILE} or {SAFE_INDEX} in {str(path)!r}{hint}")
    st = SafetensorsFile(single)
    return {name: st for name in st.keys()}


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
    """(path, host array) -> device array, placed by `shardings` (see `load_params`)."""
    if shardings is None:
        return lambda path, x: jnp.asarray(x)

    def place(path, x):
        sharding = shardings if isinstance(shardings, jax.sharding.Sharding) else param_at(
            shardings, path)
        # Each device (on every host) receives only its own slice of the host copy.
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return place


def load_params(
    path: str | os.PathLike, lm: LanguageModel, *, shardings=None, strict: bool = True
) -> Params:
    """Reads a checkpoint directory's tensors into our params dict for `lm.config`.

    Tensors are converted to ``lm.config.param_dtype`` on the host, then placed one at a
    time by `shardings`: None for the default device, one `jax.sharding.Sharding`, or a
    pytree of them shaped like the params (e.g. from `rlfb_jax.core.sharding.tree_shardings`);
    each device then gets only its slice, so every host needs the files. Value/score heads
    come from ``rlfb_heads.safetensors`` when the directory has one, else start at zero
    (their initialisation). Raises CheckpointError naming the HF tensor and our path on a
    missing tensor or a shape mismatch, and (when `strict`) listing the checkpoint's tensors
    the model has no place for (known buffers such as rotary ``inv_freq`` are skipped).
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

    for m in maps:  # all shapes from the headers first: fail before reading any data
        expect = hf_shape(m, tuple(param_at(abstract, m.ours).shape))
        src = tensors[m.hf]
        if src.shape(m.hf) != expect:
            raise CheckpointError(
                f"tensor {m.hf!r} (ours: {m.path}) in {src.path.name}: expected shape "
                f"{expect}, got {src.shape(m.hf)}"
            )

    cache: dict[str, np.ndarray] = {}
    for m in maps:
        src = tensors[m.hf]
        if m.hf not in cache:
            cache = {m.hf: src.read(m.hf)}  # fused tensors are read once for all parts
        x = cache[m.hf]
        if m.transpose:
            x = x.T
        if m.parts > 1:
            n = x.shape[-1] // m.parts
            x = x[..., m.part * n : (m.part + 1) * n]
        # A copy, never a view of the mapped file: JAX may alias host memory on CPU, and
        # the file can be rewritten later (e.g. by save_pretrained into the same dir).
        _set_leaf(params, m.ours, place(m.ours, np.array(x, dtype=pdtype, order="C")))

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
            _set_leaf(params, ours, place(ours, np.array(x, dtype=want.dtype)))
    return params


def stored_heads(path: str | os.PathLike) -> tuple[str, ...]:
    """Names of the extra heads saved in a checkpoint directory's ``rlfb_heads.safetensors``."""
    file = Path(path) / HEADS_FILE
    if not file.is_file():
        return ()
    keys = SafetensorsFile(file).keys()
    return tuple(h for h in ("value", "score", "critic") if f"{h}_head/kernel" in keys)


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
    strict: bool = True,
) -> tuple[LanguageModel, Params, Any]:
    """A HF checkpoint directory as ``(LanguageModel, params, tokenizer or None)``.

    params is our pure nested dict (what the train state holds). The model gets the heads
    in `heads` plus any saved in ``rlfb_heads.safetensors``. The tokenizer comes from
    ``transformers.AutoTokenizer`` when the directory has tokenizer files and `tokenizer`.
    See `config_from_hf` for the dtype and max_len defaults and `load_params` for
    `shardings` and `strict`.
    """
    hf = read_hf_config(path)
    heads = tuple(dict.fromkeys((*heads, *stored_heads(path))))
    cfg = config_from_hf(hf, dtype=dtype, param_dtype=param_dtype, heads=heads, max_len=max_len)
    lm = LanguageModel(cfg)
    params = load_params(path, lm, shardings=shardings, strict=strict)
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
