"""Host-side data layer (never imports jax): tasks, synthetic world, benchmarks, tokenizers.

Modules:
  tasks          `Task` schema, executor jobs from completions, JSON-lines storage, SFT format
  dsl            the typed pipeline DSL of the synthetic tasks (ops, code, phrasings)
  synthetic      task generator, program-disjoint splits, CLI
  benchmarks     HumanEval and MBPP as tasks
  tokenizer      byte-level BPE training / loading (Hugging Face files)
  pairs          SFT (prompt, completion) pairs from pair or task JSON lines
  tfds_builders  array_record TFDS builders (imports tensorflow_datasets; import it directly)
"""

import importlib

# Public names -> defining module, imported on first use (PEP 562) so that
# ``python -m rlfb_jax.data.synthetic`` does not import its own module twice.
_EXPORTS = {
    "BOS": "tasks",
    "EOS": "tasks",
    "PAD": "tasks",
    "Task": "tasks",
    "TaskFormatError": "tasks",
    "format_example": "tasks",
    "load_jsonl": "tasks",
    "save_jsonl": "tasks",
    "GeneratorConfig": "synthetic",
    "iter_tasks": "synthetic",
    "make_splits": "synthetic",
    "load_humaneval": "benchmarks",
    "load_mbpp": "benchmarks",
    "encode_example": "tokenizer",
    "load_tokenizer": "tokenizer",
    "train_tokenizer": "tokenizer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rlfb_jax.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rlfb_jax.data.{_EXPORTS[name]}"), name)


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
