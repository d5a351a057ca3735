"""Shared fixtures: a tiny byte-level BPE tokenizer and a tiny (prompt, completion) corpus."""

from __future__ import annotations

import json
import os

# Eight fake CPU devices for sharding tests; must be set before jax is first imported.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))

PAIRS = [
    (f"def add_{k}(x):\n    \"\"\"Return x plus {k}.\"\"\"\n", f"    return x + {k}\n")
    for k in range(40)
] + [
    (f"def mul_{k}(x):\n    \"\"\"Return x times {k}.\"\"\"\n", f"    return x * {k}\n")
    for k in range(40)
]


def build_tokenizer(out_dir: str, texts, vocab_size: int = 300) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>")
    fast.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("tokenizer"))
    return build_tokenizer(out, [p + c for p, c in PAIRS])


@pytest.fixture(scope="session")
def tiny_pairs_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    with open(path, "w") as f:
        for p, c in PAIRS:
            f.write(json.dumps({"prompt": p, "completion": c}) + "\n")
    return str(path)


@pytest.fixture(scope="session")
def mbpp_path() -> str:
    path = os.path.join(SHARED_DATA, "mbpp.jsonl")
    if not os.path.exists(path):
        pytest.skip(f"MBPP not found at {path}")
    return path
