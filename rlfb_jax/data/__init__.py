"""Host-side data layer (never imports jax): tasks, synthetic world, benchmarks, tokenizers.

Modules:
  tasks          `Task` schema, executor jobs from completions, JSON-lines storage, SFT format
  dsl            the typed pipeline DSL of the synthetic tasks (ops, code, phrasings)
  synthetic      task generator, program-disjoint splits, CLI
  benchmarks     HumanEval and MBPP as tasks
  tokenizer      byte-level BPE training / loading (Hugging Face files)
  tfds_builders  array_record TFDS builders (imports tensorflow_datasets; import it directly)
"""

from rlfb_jax.data.benchmarks import load_humaneval, load_mbpp
from rlfb_jax.data.synthetic import GeneratorConfig, iter_tasks, make_splits
from rlfb_jax.data.tasks import (
    BOS,
    EOS,
    PAD,
    Task,
    TaskFormatError,
    format_example,
    load_jsonl,
    save_jsonl,
)
from rlfb_jax.data.tokenizer import encode_example, load_tokenizer, train_tokenizer

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "GeneratorConfig",
    "Task",
    "TaskFormatError",
    "encode_example",
    "format_example",
    "iter_tasks",
    "load_humaneval",
    "load_jsonl",
    "load_mbpp",
    "load_tokenizer",
    "make_splits",
    "save_jsonl",
    "train_tokenizer",
]
