"""Byte-level BPE tokenizers for rlfb_jax, trained with Hugging Face ``tokenizers``.

Design:

* byte-level BPE (GPT-2 style): every string, whatever its unicode, tabs or odd whitespace,
  encodes without unknown tokens and decodes back exactly (no normalizer);
* GPT-2's pre-tokenization (a space stays attached to the following word or number), so
  ``" 3"`` in a description and in ``x + 3`` is the same token (``split_digits=True``
  spells numbers digit by digit instead);
* special tokens ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2; nothing is added
  automatically (no post-processor): `rlfb_jax.data.tasks.format_example` writes ``<bos>``
  and ``<eos>`` into the texts, and the tokenizer matches them as single special tokens.

Training corpus (`training_corpus`): the prompts and references of the given tasks plus some
generic Python source read at training time (the standard library's own ``.py`` files, and
MBPP's reference code if a path is given); nothing of it is stored in the repository.

Saved layout (`train_tokenizer`): ``tokenizer.json``, ``tokenizer_config.json`` and
``special_tokens_map.json``, so ``transformers.AutoTokenizer.from_pretrained(out_dir)``
loads it; `load_tokenizer` does exactly that, for ours and for a Hugging Face checkpoint's.

Helpers every algorithm uses on a loaded tokenizer: `encode_batch`, `encode_pairs`,
`decode_completions`, `token_offsets`, `pad_id`, `eos_id`.

CLI: ``python -m rlfb_jax.data.tokenizer --out DIR [--vocab-size 2048] [--num-tasks 20000]
[--tasks FILE.jsonl] [--mbpp PATH]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import sysconfig
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from rlfb_jax.data.tasks import BOS, EOS, PAD, Task, format_example, load_jsonl

SPECIAL_TOKENS = (PAD, BOS, EOS)  # ids 0, 1, 2
DEFAULT_VOCAB_SIZE = 2048
# Recorded as model_max_length; informational only (benchmark prompts reach ~3k tokens).
DEFAULT_MAX_LENGTH = 4096

log = logging.getLogger("rlfb_jax")


def python_source_texts(max_bytes: int = 1_000_000, root: str | None = None) -> Iterator[str]:
    """Python files of the standard library (sorted by path, deterministic) up to ``max_bytes``.

    Test suites and third-party packages are skipped; unreadable files are ignored.
    """
    root = root or sysconfig.get_paths()["stdlib"]
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames
                             if d not in ("test", "tests", "site-packages", "idlelib", "__pycache__"))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError):
                continue
            yield text
            total += len(text.encode("utf-8"))
            if total >= max_bytes:
                return


def mbpp_code_texts(path: str) -> Iterator[str]:
    """The reference solutions of an MBPP jsonl file (line endings normalized)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)["code"].replace("\r\n", "\n")


def training_corpus(
    tasks: Iterable[Task],
    python_source_bytes: int = 1_000_000,
    mbpp_path: str | None = None,
    extra_texts: Iterable[str] = (),
) -> Iterator[str]:
    """Texts to train on: prompt + reference of each task, then generic Python source."""
    for task in tasks:
        yield task.prompt + task.reference
    if python_source_bytes > 0:
        yield from python_source_texts(python_source_bytes)
    if mbpp_path:
        yield from mbpp_code_texts(mbpp_path)
    yield from extra_texts


def build_tokenizer(
    texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE, split_digits: bool = False
) -> Tokenizer:
    """Trains a byte-level BPE `tokenizers.Tokenizer` on ``texts`` (see module docstring).

    ``split_digits`` spells every number digit by digit (longer sequences; off by default).
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must cover the 256 bytes and {len(SPECIAL_TOKENS)} special "
                         f"tokens, got {vocab_size}")
    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        if split_digits else byte_level
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    for i, token in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(token) == i, (token, tok.token_to_id(token))
    return tok


def save_tokenizer(tok: Tokenizer, out_dir: str, max_length: int = DEFAULT_MAX_LENGTH) -> str:
    """Writes the Hugging Face files into ``out_dir``; returns ``out_dir``."""
    from transformers import PreTrainedTokenizerFast  # slow import, only needed to save

    os.makedirs(out_dir, exist_ok=True)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
    )
    hf.save_pretrained(out_dir)
    special_map = os.path.join(out_dir, "special_tokens_map.json")
    if not os.path.exists(special_map):  # recent transformers fold it into tokenizer_config
        with open(special_map, "w") as f:
            json.dump({"pad_token": PAD, "bos_token": BOS, "eos_token": EOS}, f, indent=2)
    return out_dir


def train_tokenizer(
    tasks: Iterable[Task],
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    out_dir: str = "tokenizer",
    python_source_bytes: int = 1_000_000,
    mbpp_path: str | None = None,
    extra_texts: Iterable[str] = (),
    max_length: int = DEFAULT_MAX_LENGTH,
) -> str:
    """Trains on `training_corpus` and saves to ``out_dir``; returns the directory path."""
    t0 = time.time()
    log.info("training a BPE tokenizer (vocabulary %d)...", vocab_size)
    corpus = training_corpus(tasks, python_source_bytes, mbpp_path, extra_texts)
    path = save_tokenizer(build_tokenizer(corpus, vocab_size), out_dir, max_length)
    log.info("tokenizer trained in %.1f s (%s)", time.time() - t0, path)
    return path


def load_tokenizer(path: str) -> Any:
    """The tokenizer saved in directory ``path`` (ours, or a Hugging Face checkpoint's) as a
    ``transformers`` fast tokenizer (``AutoTokenizer``). The one loader every algorithm uses."""
    from transformers import AutoTokenizer

    files = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
    if not any(os.path.exists(os.path.join(path, f)) for f in files):
        raise FileNotFoundError(f"no tokenizer.json (nor other tokenizer files) in {path!r}; "
                                f"train one with `python -m rlfb_jax.data.tokenizer --out {path}`")
    return AutoTokenizer.from_pretrained(path)


def pad_id(tokenizer: Any) -> int:
    """The padding token id (0 when the tokenizer defines none)."""
    pid = tokenizer.pad_token_id
    return 0 if pid is None else int(pid)


def eos_id(tokenizer: Any) -> int:
    """The end-of-sequence id; a tokenizer without one is an error (completions could never
    stop)."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token; completions could never stop")
    return int(tokenizer.eos_token_id)


def encode_batch(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens (a ``transformers`` tokenizer)."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def encode_pairs(tokenizer: Any, prompts: Sequence[str], completions: Sequence[str]
                 ) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, completion ids + eos) for training on completions."""
    eos = eos_id(tokenizer)
    return (encode_batch(tokenizer, prompts),
            [c + [eos] for c in encode_batch(tokenizer, completions)])


def decode_completions(tokenizer: Any, ids_batch, masks) -> list[str]:
    """Completion texts from token rows [B, T] and their masks [B, T] (stop tokens removed)."""
    eos = eos_id(tokenizer)
    out = []
    for ids, m in zip(ids_batch, masks):
        ids = [int(t) for t, keep in zip(ids, m) if keep and int(t) != eos]
        out.append(tokenizer.decode(ids, skip_special_tokens=True))
    return out


def token_offsets(tokenizer: Any, ids: Sequence[int]) -> list[tuple[int, int]]:
    """Character span ``(start, end)`` of each token of a completion in its decoded text, by
    incremental decoding (exact for byte-level BPE, whose tokens may split characters)."""
    offsets, prev = [], 0
    for i in range(len(ids)):
        cur = len(tokenizer.decode(list(ids[: i + 1]), skip_special_tokens=True))
        offsets.append((prev, cur))
        prev = cur
    return offsets


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` without added special tokens, for a `tokenizers.Tokenizer` or a
    ``transformers`` tokenizer."""
    if isinstance(tokenizer, Tokenizer):
        return tokenizer.encode(text, add_special_tokens=False).ids
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_example(tokenizer: Any, task: Task) -> tuple[list[int], list[int]]:
    """``(prompt_ids, completion_ids)`` of `format_example`: ``<bos>`` prompt | reference
    ``<eos>``. Train on their concatenation with the loss on the completion ids."""
    prompt, completion = format_example(task)
    return encode(tokenizer, prompt), encode(tokenizer, completion)


def main(argv: list[str] | None = None) -> int:
    from rlfb_jax.data.synthetic import make_splits

    parser = argparse.ArgumentParser(
        prog="python -m rlfb_jax.data.tokenizer",
        description="Train the byte-level BPE tokenizer and save it for AutoTokenizer.")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    parser.add_argument("--tasks", action="append", default=[],
                        help="task jsonl file(s) to train on (default: fresh synthetic tasks)")
    parser.add_argument("--num-tasks", type=int, default=20_000,
                        help="synthetic train tasks to generate when --tasks is not given")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--python-source-bytes", type=int, default=1_000_000,
                        help="bytes of standard-library source to add")
    parser.add_argument("--mbpp", default=None, help="MBPP jsonl; its reference code is added")
    args = parser.parse_args(argv)
    if args.tasks:
        tasks = [t for path in args.tasks for t in load_jsonl(path)]
    else:
        tasks = make_splits(args.num_tasks, 0, 0, seed=args.seed)["train"]
    start = time.perf_counter()
    out = train_tokenizer(tasks, args.vocab_size, args.out, args.python_source_bytes, args.mbpp)
    print(f"trained a {args.vocab_size}-token tokenizer on {len(tasks)} tasks in "
          f"{time.perf_counter() - start:.1f}s -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
