"""SFT pairs: what the data CLI writes is what ``data.source=jsonl`` reads."""

import json
import os

import pytest

from experiments import smoke
from rlfb_jax.algos.datasets import load_sft_data
from rlfb_jax.data import load_jsonl, synthetic, tokenizer
from rlfb_jax.data.pairs import read_pairs


def test_data_cli_files_train_an_sft_run(tmp_path):
    """CLI -> tasks jsonl + tokenizer -> the SFT loader of ``data.source=jsonl``: every train
    task becomes (prompt, reference), and ``eval.tasks`` reads the test split."""
    out, tok = str(tmp_path / "synth"), str(tmp_path / "tokenizer")
    assert synthetic.main(["--out", out, "--num-train", "40", "--num-valid", "4",
                           "--num-test", "6", "--max-depth", "2"]) == 0
    train = os.path.join(out, "train.jsonl")
    assert tokenizer.main(["--out", tok, "--tasks", train, "--vocab-size", "300",
                           "--python-source-bytes", "0"]) == 0
    config = smoke.get_config()
    config.data.source, config.data.path, config.data.tokenizer = "jsonl", train, tok
    config.eval.tasks = os.path.join(out, "test.jsonl")
    data = load_sft_data(config, str(tmp_path / "run"))
    tasks = load_jsonl(train)
    assert len(tasks) == 40
    assert data.prompts == [t.prompt for t in tasks]
    assert data.completions == [t.reference for t in tasks]
    assert [t.task_id for t in data.eval_tasks] == [
        t.task_id for t in load_jsonl(os.path.join(out, "test.jsonl"))]
    assert len(data.eval_tasks) == 6
    assert data.tokenizer.convert_tokens_to_ids("<eos>") is not None


def test_pairs_and_tasks_mix_and_bad_lines_name_their_line(tmp_path):
    p = tmp_path / "mixed.jsonl"
    rows = [{"prompt": "a", "completion": "b"},
            {"task_id": "t", "prompt": "def f(x):\n", "reference": "    return x\n",
             "entry_point": "f", "tests": []}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_pairs(p) == (["a", "def f(x):\n"], ["b", "    return x\n"])
    p.write_text(json.dumps(rows[0]) + "\n\n" + json.dumps({"prompt": "a"}) + "\n")
    with pytest.raises(ValueError, match=r"mixed\.jsonl:3: missing or non-string field "
                                         r"'completion' \(a line is a \{prompt, completion\}"):
        read_pairs(p)
    p.write_text(json.dumps({"prompt": "a", "reference": 3}) + "\n")
    with pytest.raises(ValueError, match=r"mixed\.jsonl:1: missing or non-string field 'reference'"):
        read_pairs(p)
    p.write_text(json.dumps(rows[1]) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"mixed\.jsonl:2: malformed JSON"):
        read_pairs(p)
    p.write_text("\n")
    with pytest.raises(ValueError, match="no examples"):
        read_pairs(p)
