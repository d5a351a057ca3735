"""The byte-level BPE tokenizer: special ids, HF loading, exact round trips, lengths, speed."""

from __future__ import annotations

import os

import pytest

from rlfb_jax.data import tokenizer as tk
from rlfb_jax.data.tasks import format_example

ODD_SOURCE = (
    "# -*- coding: utf-8 -*-\n"
    "def gr\u00fc\u00dfe(name: str) -> str:\n"
    "\treturn f'H\u00e9llo {name} \u2603 \U0001f600'  \t \n"
    "\n\n\r\n"
    "x\u00a0=\u20031\u000b\u000c\n"
    "s = '\\x00 \u200b\u4e2d\u6587 \u0645\u0631\u062d\u0628\u0627'\n"
    "    \t  trailing   \n"
    "<bos> not special inside code? <eos>"
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, splits):
    """The default 2048-token tokenizer trained on 3000 train tasks + 1 MB of stdlib."""
    out = str(tmp_path_factory.mktemp("tok"))
    tk.train_tokenizer(splits["train"], out_dir=out)
    return out


def test_files_and_special_ids(trained):
    out = trained
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert os.path.exists(os.path.join(out, name)), name
    hf = tk.load_tokenizer(out)
    assert (hf.pad_token_id, hf.bos_token_id, hf.eos_token_id) == (0, 1, 2)
    assert len(hf) == tk.DEFAULT_VOCAB_SIZE
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(out)
    assert auto("def f(xs):\n")["input_ids"] == hf("def f(xs):\n")["input_ids"]
    assert auto("x")["input_ids"][0] != 1  # no <bos> added implicitly


def test_round_trip_arbitrary_source(trained):
    from tokenizers import Tokenizer

    out = trained
    hf = tk.load_tokenizer(out)
    raw = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    texts = [ODD_SOURCE, "", " ", "\t\t", "\n\n\n", "\U0010ffff"]
    texts += [t[:3000] for t in tk.python_source_texts(200_000, root=os.path.dirname(os.__file__))]
    for text in texts:
        ids = tk.encode(hf, text)
        assert ids == tk.encode(raw, text)
        assert hf.decode(ids) == text
        assert raw.decode(ids, skip_special_tokens=False) == text
        assert hf.unk_token_id is None or hf.unk_token_id not in ids


def test_examples_encode_with_bos_and_eos(trained, splits):
    out = trained
    hf = tk.load_tokenizer(out)
    prompt_lens, completion_lens = [], []
    for task in splits["test"]:
        prompt_ids, completion_ids = tk.encode_example(hf, task)
        assert prompt_ids[0] == hf.bos_token_id and prompt_ids.count(hf.bos_token_id) == 1
        assert completion_ids[-1] == hf.eos_token_id
        assert completion_ids.count(hf.eos_token_id) == 1
        prompt, completion = format_example(task)
        assert hf.decode(prompt_ids + completion_ids) == prompt + completion
        assert hf.decode(completion_ids, skip_special_tokens=True) == task.reference
        prompt_lens.append(len(prompt_ids))
        completion_lens.append(len(completion_ids))
    # Short sequences for the small base model: about 56 / 31 tokens on average.
    assert sum(prompt_lens) / len(prompt_lens) < 70 and max(prompt_lens) <= 110
    assert sum(completion_lens) / len(completion_lens) < 40 and max(completion_lens) <= 72


def test_small_vocab_and_errors(tmp_path, splits):
    tok = tk.build_tokenizer((t.prompt + t.reference for t in splits["train"][:300]), 300)
    assert tok.get_vocab_size() <= 300
    assert tok.decode(tok.encode(ODD_SOURCE).ids, skip_special_tokens=False) == ODD_SOURCE
    digits = tk.build_tokenizer(["x = 12345 + 678\n"] * 10, 300, split_digits=True)
    assert digits.encode("99").tokens == ["9", "9"]
    with pytest.raises(ValueError, match="vocab_size"):
        tk.build_tokenizer(["x"], 100)
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        tk.load_tokenizer(str(tmp_path))


def test_cli(tmp_path, splits):
    from rlfb_jax.data.tasks import save_jsonl

    path = tmp_path / "train.jsonl"
    save_jsonl(splits["train"][:200], path)
    out = tmp_path / "tok"
    assert tk.main(["--out", str(out), "--tasks", str(path), "--vocab-size", "512",
                    "--python-source-bytes", "50000"]) == 0
    assert len(tk.load_tokenizer(str(out))) == 512
