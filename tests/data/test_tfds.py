"""TFDS array_record builders: build into a temporary data_dir, read back through data sources."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from rlfb_jax.data import tfds_builders as tb  # noqa: E402
from rlfb_jax.data.benchmarks import load_humaneval, load_mbpp  # noqa: E402
from rlfb_jax.data.synthetic import make_splits  # noqa: E402


def test_synthetic_round_trip(tmp_path):
    data_dir = str(tmp_path)
    config = tb.SyntheticConfig.sized(40, 8, 8, seed=4, max_depth=3)
    tb.build("rlfb_synthetic", data_dir, config=config)
    expected = make_splits(40, 8, 8, seed=4, max_depth=3)
    for split, tasks in expected.items():
        source = tb.data_source("rlfb_synthetic", data_dir, split, config=config)
        assert len(source) == len(tasks)
        record = source[0]
        assert isinstance(record["prompt"], bytes) and record["difficulty"] in (1, 2, 3)
        loaded = tb.load_tasks("rlfb_synthetic", data_dir, split, config=config)
        by_id = {t.task_id: t for t in tasks}
        assert sorted(by_id) == sorted(t.task_id for t in loaded)
        assert all(by_id[t.task_id] == t for t in loaded)
        first = tb.task_from_record(record)
        assert [s.decode() for s in record["tests"]] == list(first.tests)
    assert config.name == "n40-8-8_s4_d3_e2_t8_program"


def test_named_config_via_tfds_data_source(tmp_path):
    data_dir = str(tmp_path)
    tb.build("rlfb_synthetic", data_dir, config="tiny")
    sources = tfds.data_source("rlfb_synthetic/tiny", data_dir=data_dir)
    assert {s: len(v) for s, v in sources.items()} == {"train": 200, "validation": 20,
                                                        "test": 20}
    assert tb.task_from_record(sources["test"][3]).split == "test"


def test_humaneval_round_trip(tmp_path):
    data_dir = str(tmp_path)
    tb.build("rlfb_humaneval", data_dir)
    loaded = {t.task_id: t for t in tb.load_tasks("rlfb_humaneval", data_dir, "test")}
    expected = {t.task_id: t for t in load_humaneval()}
    assert loaded == expected


def test_mbpp_missing_manual_file_says_where(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        tb.build("rlfb_mbpp", str(tmp_path))
    assert os.path.join(str(tmp_path), "downloads", "manual", "mbpp.jsonl") in str(info.value)


def test_mbpp_round_trip(tmp_path, mbpp_file):
    data_dir = str(tmp_path)
    tb.build("rlfb_mbpp", data_dir, manual_dir=os.path.dirname(mbpp_file))
    for split, size in {"prompt": 10, "test": 500, "validation": 90, "train": 374}.items():
        loaded = tb.load_tasks("rlfb_mbpp", data_dir, split)
        assert len(loaded) == size
        expected = {t.task_id: t for t in load_mbpp(mbpp_file, split)}
        assert all(expected[t.task_id] == t for t in loaded)


def test_data_layer_never_imports_jax():
    code = ("import sys, rlfb_jax.data, rlfb_jax.data.tfds_builders, rlfb_jax.data.tokenizer; "
            "assert 'jax' not in sys.modules, 'jax imported'")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-1000:]


def test_unknown_builder():
    with pytest.raises(ValueError, match="unknown builder 'nope'"):
        tb.build("nope", "/nonexistent")
