"""LEVER: verifier data (dedupe, execution, labels, rendering, batches), and end-to-end runs
of the synthetic smoke config (resumed by stage) and of MBPP with a tiny random HF
checkpoint."""

import json
import os

import numpy as np
import pytest
from main_runner import run_main, summary

from rlfb_jax.algos import verifier_data as vd
from rlfb_jax.executor.jobs import Outcome

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_dedupe_keeps_counts_and_the_sample_order():
    progs, index = vd.dedupe(["a", "b", "a", "c", "a", "b"])
    assert [p.completion for p in progs] == ["a", "b", "c"]
    assert [p.count for p in progs] == [3, 2, 1]
    assert index == [0, 1, 0, 2, 0, 1]
    s = vd.TaskSamples(7, [-1.0] * 6, [3] * 6, index, progs)
    assert s.completions == ["a", "b", "a", "c", "a", "b"]
    assert vd.TaskSamples.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_probe_lines_and_rendering():
    expected = "10\nTrue\n[1, 2]\n"
    out = Outcome("wrong_answer", stdout="10\n!ZeroDivisionError\n[2, 1]\n")
    lines = vd.probe_lines(out, expected)
    assert lines == ("ok 10", "error ZeroDivisionError", "wrong [2, 1]")
    assert vd.render_execution(lines, "wrong_answer") == (
        "\n# exec: ok 10 | error ZeroDivisionError | wrong [2, 1]\n")
    assert vd.probe_lines(Outcome("syntax_error"), expected) == ()
    assert vd.render_execution((), "syntax_error") == "\n# exec: syntax_error\n"
    assert vd.probe_lines(Outcome("wrong_answer", stdout="10\n"), expected)[1:] == (
        "error NoOutput", "error NoOutput")
    # examples shown without their outputs: the value only, never "ok" or "wrong"
    unknown = "?\n?\n"
    assert vd.probe_lines(Outcome("wrong_answer", stdout="10\n!KeyError\n"), unknown) == (
        "out 10", "error KeyError")
    long = ("wrong " + "x" * 100,) * 5
    text = vd.render_execution(long, "wrong_answer", max_chars=60, max_value_chars=20)
    assert len(text) == 61 and text.endswith("\n") and "wrong " + "x" * 11 + "... |" in text


def test_class_weights_balance_classes_and_counts():
    labels = np.array([1, 0, 0, 0], bool)
    np.testing.assert_allclose(vd.class_weights(labels), [2.0, 2 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(vd.class_weights(labels, balance=False), [1, 1, 1, 1])
    w = vd.class_weights(labels, counts=np.array([1, 3, 1, 1]))
    np.testing.assert_allclose(w, [2.0, 1.2, 0.4, 0.4])  # negatives split 3:1:1
    np.testing.assert_allclose(vd.class_weights(np.zeros(3, bool)), [1, 1, 1])


def test_verifier_batch_layout(tiny_tokenizer_dir):
    from rlfb_jax.data.tokenizer import encode_batch, eos_id, load_tokenizer

    tok = load_tokenizer(tiny_tokenizer_dir)
    prompts = ["def add_1(x):\n", "def mul_2(x):\n    \"\"\"Return x times 2.\"\"\"\n"]
    comps = ["    return x + 1\n", "    return x * 2 + 0 + 0 + 0 + 0 + 0\n"]
    renders = ["\n# exec: ok 2\n", "\n# exec: wrong 5 | wrong 7 | wrong 9\n"]
    P, C, E = 12, 8, 6
    b = vd.verifier_batch(tok, prompts, comps, renders, P, C, E, labels=[1, 0])
    assert b["tokens"].shape == (2, P + C + E) and b["attention_mask"].dtype == bool
    c0, r0 = encode_batch(tok, comps[:1])[0], encode_batch(tok, renders[:1])[0][:E]
    # row 0: program + eos right after the prompt, then the rendering, then padding
    prog = c0 + [eos_id(tok)]
    assert list(b["tokens"][0, P : P + len(prog)]) == prog
    assert list(b["tokens"][0, P + len(prog) : P + len(prog) + len(r0)]) == r0
    last = np.flatnonzero(b["attention_mask"][0])[-1]
    assert last == P + len(prog) + len(r0) - 1  # the score is read on the rendering's end
    assert list(np.flatnonzero(b["loss_mask"][0])) == list(range(P, P + len(prog)))
    # row 1: the program is cut to C (no eos), the rendering to E tokens
    assert b["loss_mask"][1].sum() == C and b["attention_mask"][1, P + C :].sum() == E
    np.testing.assert_array_equal(b["labels"], [1.0, 0.0])
    np.testing.assert_array_equal(b["weights"], [1.0, 1.0])
    nb = vd.verifier_batch(tok, prompts, comps, None, P, C, E)
    assert nb["tokens"].shape == (2, P + C)
    np.testing.assert_array_equal(nb["tokens"], b["tokens"][:, : P + C] * nb["attention_mask"])


def test_execution_labels_and_results_on_a_synthetic_task():
    from rlfb_jax.data.synthetic import make_splits
    from rlfb_jax.executor import ExecutorPool

    task = make_splits(num_train=8, num_valid=1, num_test=1, seed=0, max_depth=2)["train"][0]
    texts = [task.reference, "    return None\n", task.reference, "    retur n\n"]
    programs, index = vd.dedupe(texts)
    jobs = vd.program_jobs()(task, texts)  # hidden + probe per distinct program
    assert len(jobs) == 6 and [j.program for j in jobs[::2]] == [
        task.prompt + p.completion for p in programs]
    with ExecutorPool(num_workers=2, timeout=8.0, timeout_per_test=2.0).start() as pool:
        vd.label(task, programs, pool.run(jobs), None)
    ref, wrong, broken = programs
    assert (ref.passed, ref.count, ref.probe_status) == (True, 2, "passed")
    assert all(x.startswith("ok ") for x in ref.exec_lines)
    assert len(ref.exec_lines) == len(task.examples)
    assert not wrong.passed and wrong.exec_lines == ("wrong None",) * len(task.examples)
    assert wrong.key == "\n".join(["None"] * len(task.examples))
    assert not broken.passed and broken.exec_lines == ()
    assert broken.key.startswith("!syntax_error")
    prompts, comps, renders, labels, counts, rows = vd.flatten(
        [vd.TaskSamples(0, [0.0] * 4, [1] * 4, index, programs)], [task])
    assert comps == [p.completion for p in programs] and prompts == [task.prompt] * 3
    np.testing.assert_array_equal(labels, [True, False, False])
    np.testing.assert_array_equal(counts, [2, 1, 1])
    assert renders[2] == "\n# exec: syntax_error\n"


def _main(config, workdir, *extra):
    run_main(config, workdir, *extra, timeout=900)
    return summary(workdir)


def _untimed(summary):
    return {k: v for k, v in summary.items() if "time/" not in k}


def test_synthetic_smoke_run_resumes_by_stage(tmp_path):
    wd = tmp_path / "lever"
    config = os.path.join(REPO, "experiments", "synthetic_lever.py") + ":smoke"
    summary = _main(config, wd)
    ns = (1, 2, 4)
    methods = ("greedy", "random", "likelihood", "majority_vote", "verifier_no_exec",
               "verifier_no_agg", "lever")
    # one candidate leaves every selector the same pick; greedy does not depend on n
    for m in methods[1:]:
        assert summary[f"rerank/{m}@1"] == pytest.approx(summary["rerank/random@1"]), m
    assert {summary[f"rerank/greedy@{n}"] for n in ns} == {summary["rerank/greedy@1"]}
    assert "verifier/auc" in summary and "verifier/auc_no_exec" in summary
    assert summary["lever/alpha"] in (1.0, 0.5, 2.0, 0.0)  # chosen on 4 held-out train tasks
    for f in ("rerank.md", "rerank_accuracy.png", "test_samples.jsonl",
              "verifier_train_samples.jsonl",
              "greedy_samples.jsonl", "verifier_exec/summary.json",
              "verifier_no_exec/summary.json"):
        assert (wd / f).exists(), f
    assert "| lever |" in (wd / "rerank.md").read_text()
    rows = [json.loads(x) for x in open(wd / "verifier_exec" / "metrics.jsonl")]
    assert [r["step"] for r in rows if "train/loss" in r] == [1, 2, 3]
    samples = vd.load_samples(str(wd / "test_samples.jsonl"))
    assert len(samples) == 4 and all(len(s.index) == 4 for s in samples)
    # Resume after the last stage was lost: samples and verifiers are reused, not redone,
    # and the numbers come out the same.
    stamp = (wd / "test_samples.jsonl").stat().st_mtime
    os.remove(wd / "summary.json")
    again = _main(config, wd)
    assert _untimed(again) == pytest.approx(_untimed(summary), nan_ok=True)
    assert (wd / "test_samples.jsonl").stat().st_mtime == stamp
    assert len(rows) == len([json.loads(x) for x in open(wd / "verifier_exec" / "metrics.jsonl")])


def test_mbpp_with_a_tiny_random_hf_checkpoint(tmp_path, tiny_tokenizer_dir, mbpp_path):
    import jax

    from rlfb_jax.data.tokenizer import load_tokenizer
    from rlfb_jax.models import LanguageModel, ModelConfig, save_pretrained

    tok = load_tokenizer(tiny_tokenizer_dir)
    lm = LanguageModel(ModelConfig(vocab_size=len(tok), d_model=32, n_layers=1, n_heads=2,
                                   d_ff=64))
    ckpt = tmp_path / "tiny_hf"
    save_pretrained(lm, lm.init(jax.random.key(0)), str(ckpt), tok)
    wd = tmp_path / "mbpp"
    summary = _main(os.path.join(REPO, "experiments", "mbpp_lever.py") + ":tiny", wd,
                    f"--config.base.model.hf_path={ckpt}", f"--config.base.data.path={mbpp_path}")
    assert summary["data/test_programs"] >= 3
    for m in ("majority_vote", "lever"):  # one candidate: every selector picks it
        assert summary[f"rerank/{m}@1"] == pytest.approx(summary["rerank/random@1"]), m
    assert summary["rerank/greedy@2"] == summary["rerank/greedy@1"]
    samples = vd.load_samples(str(wd / "test_samples.jsonl"))
    assert len(samples) == 3 and all(p.key for s in samples for p in s.programs)


def test_prior_offset_undoes_class_balancing():
    from rlfb_jax.algos.lever import prior_offset

    labels = np.array([1, 0, 0, 0], bool)
    w = vd.class_weights(labels)  # the weighted positive rate is 1/2, the true one 1/4
    assert prior_offset(labels, w) == pytest.approx(np.log(1 / 3))
    logit = 0.7  # a balanced verifier's logit, shifted back to the data's prior
    p_balanced = 1 / (1 + np.exp(-logit))
    p = 1 / (1 + np.exp(-(logit + prior_offset(labels, w))))
    assert p / (1 - p) == pytest.approx(p_balanced / (1 - p_balanced) / 3)
    assert prior_offset(labels, np.ones(4)) == 0.0  # unweighted: nothing to undo
    assert prior_offset(np.zeros(3, bool), np.ones(3)) == 0.0  # one class only


def test_scoring_is_chosen_by_lever_accuracy_on_held_out_training_tasks():
    from rlfb_jax.algos.lever import choose_scoring
    from rlfb_jax.eval.rerank import TaskCandidates

    def cands(passed, keys, logprob, log_pv):
        n = len(passed)
        return TaskCandidates(np.log(logprob), np.ones(n), keys, [f"p{i}" for i in range(n)],
                              np.log(log_pv), np.log(log_pv), np.array(passed, bool))

    # the verifier alone (alpha 0) finds the right program, p_LM x p_verifier does not
    c = cands([1, 0], ["a", "b"], [0.1, 0.9], [0.9, 0.5])
    alpha, length_norm, table = choose_scoring([c], (1.0, 0.0), (False,))
    assert (alpha, length_norm) == (0.0, False)
    assert table == {"select/lever_acc/alpha=1.0/length_norm=False": 0.0,
                     "select/lever_acc/alpha=0.0/length_norm=False": 1.0}
    # a tie keeps the first grid entry
    assert choose_scoring([c], (2.0, 3.0), (False,))[0] == 2.0
