"""Data sources of the algorithms: SFT pairs, held-out task sets for evaluation."""

import json

import pytest

from rlfb_jax.algos.datasets import eval_tasks_from, read_pairs
from rlfb_jax.data import save_jsonl
from rlfb_jax.data.synthetic import make_splits


def test_eval_task_sets(tmp_path, mbpp_path):
    assert len(eval_tasks_from("humaneval")) == 164
    mbpp = eval_tasks_from("mbpp", mbpp_path)
    assert len(mbpp) == 500 and mbpp[0].task_id.lower().startswith("mbpp/")
    with pytest.raises(ValueError, match="eval.path"):
        eval_tasks_from("mbpp")
    tasks = make_splits(5, 0, 0, seed=1, max_depth=2)["train"]
    save_jsonl(tasks, tmp_path / "t.jsonl")
    assert [t.task_id for t in eval_tasks_from(str(tmp_path / "t.jsonl"))] == [
        t.task_id for t in tasks]
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        eval_tasks_from(str(tmp_path / "nope.jsonl"))


def test_pairs_errors_name_file_and_line(tmp_path):
    p = tmp_path / "pairs.jsonl"
    p.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n\n{oops\n")
    with pytest.raises(ValueError, match=r"pairs\.jsonl:3: malformed JSON"):
        read_pairs(str(p))
    p.write_text(json.dumps({"prompt": "a"}) + "\n")
    with pytest.raises(ValueError, match=r"pairs\.jsonl:1: missing or non-string field 'completion'"):
        read_pairs(str(p))
    with pytest.raises(FileNotFoundError, match="config.data.path"):
        read_pairs(str(tmp_path / "missing.jsonl"))
