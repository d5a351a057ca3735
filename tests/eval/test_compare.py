"""rlfb_jax.eval.compare: run-directory reports (curves, outcome bars, degeneration)."""

import json
import os

import pytest

from rlfb_jax.eval import compare


def _run(path, pass1, pass1_base, samples, kl=(1.0, 2.0)):
    """A finished run directory; ``kl=None`` logs no KL (an SFT run)."""
    os.makedirs(path)
    rows = [row for step in (1, 2) for row in
            ([{"step": step, "kl/seq_kl": kl[step - 1]}] if kl else [])
            + [{"step": step, "eval/pass@1": pass1[step - 1]}]]
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(os.path.join(path, "summary.json"), "w") as f:
        json.dump({"eval/pass@1": pass1[-1], "eval/pass@1_base": pass1_base}, f)
    with open(os.path.join(path, "eval_samples.jsonl"), "w") as f:
        for task, comp, status in samples:
            f.write(json.dumps({"task_id": task, "completion": comp,
                                "passed": status == "passed", "status": status}) + "\n")
    return str(path)


RIGHT = "    return xs + [0]\n"
COPIED = "    xs = xs + [0]\n    return xs + [0]\n"


@pytest.mark.parametrize("code,expected", [
    (COPIED, True),
    ("    n = n * 2\n\n    n = n * 2\n    return n\n", True),  # the same statement twice
    (RIGHT, False),
    ("    n = n + 1\n    return n * 2\n", False),
    ("    if n == 1:\n        return n\n    return -n\n", False),
])
def test_repeats_expression(code, expected):
    assert compare.repeats_expression(code) is expected


def test_sample_stats_hand_computed():
    samples = [{"task_id": "a", "completion": RIGHT, "status": "passed"},
               {"task_id": "a", "completion": RIGHT, "status": "passed"},
               {"task_id": "a", "completion": COPIED, "status": "wrong_answer"},
               {"task_id": "b", "completion": COPIED, "status": "syntax_error"}]
    s = compare.sample_stats(samples)
    assert s["samples/distinct_per_task"] == pytest.approx((2 + 1) / 2)
    assert s["samples/per_task"] == 2
    assert s["samples/repeat_expression_frac"] == pytest.approx(0.5)
    assert s["samples/top_program_share"] == pytest.approx((2 / 3 + 1) / 2)
    assert s["samples/passed"] == 0.5 and s["samples/syntax_error"] == 0.25
    assert s["samples/mean_lines"] == pytest.approx(1.5)


def test_compare_writes_table_plots_and_lost_tasks(tmp_path):
    base = _run(tmp_path / "base", (0.2, 0.2), 0.2,
                [("a", RIGHT, "passed"), ("b", RIGHT, "passed")])
    good = _run(tmp_path / "good", (0.3, 0.4), 0.2,
                [("a", RIGHT, "passed"), ("b", RIGHT, "passed")])
    bad = _run(tmp_path / "bad", (0.15, 0.1), 0.2,
               [("a", COPIED, "wrong_answer"), ("b", RIGHT, "passed")], kl=(3.0, 5.0))
    files = compare.compare([good, bad], str(tmp_path / "out"), ["good", "bad"], base)
    for path in files.values():
        assert os.path.getsize(path) > 0
    md = open(files["table"]).read().splitlines()
    assert md[2].startswith("| base | 0.200")
    assert md[3].startswith("| good | 0.400") and md[4].startswith("| bad | 0.100")
    assert "| 5.000 |" in md[4]  # the last KL
    progs = open(files["programs"]).read()
    assert "Tasks the base solved in some sample and this run in none: 1 of 2" in progs
    assert COPIED.rstrip() in progs
    # eval curves start from the base value at iteration 0
    assert compare.FinishedRun(bad).curve("eval/pass@1") == ([0, 1, 2], [0.2, 0.15, 0.1])
    # a key the run has no base value of starts from the base run's summary
    with open(os.path.join(base, "summary.json"), "w") as f:
        json.dump({"kl/seq_kl": 0.0}, f)
    assert compare.FinishedRun(bad).curve("kl/seq_kl", compare.FinishedRun(base)) == ([0, 1, 2], [0.0, 3.0, 5.0])


def test_sampled_curves_skip_greedy_only_evaluations(tmp_path):
    """Runs logged before greedy-only evaluations stopped writing eval/sample_*: their
    learning-curve rows hold greedy values under that name; the curve keeps only the
    evaluations that drew samples (and the base)."""
    run = _run(tmp_path / "run", (0.3, 0.4), 0.2, [("a", RIGHT, "passed")])
    with open(os.path.join(run, "metrics.jsonl"), "w") as f:
        for row in ({"step": 1, "eval/pass@1": 0.3, "eval/sample_pass_rate": 0.3},
                    {"step": 2, "eval/pass@1": 0.4, "eval/sample_pass_rate": 0.25,
                     "eval/sampled_pass@1": 0.25}):
            f.write(json.dumps(row) + "\n")
    with open(os.path.join(run, "summary.json"), "w") as f:
        json.dump({"eval/pass@1": 0.4, "eval/sample_pass_rate_base": 0.1}, f)
    r = compare.FinishedRun(run)
    assert r.curve("eval/sample_pass_rate") == ([0, 2], [0.1, 0.25])
    assert r.curve("eval/pass@1") == ([1, 2], [0.3, 0.4])


def test_sft_runs_show_only_what_they_have(tmp_path, capsys):
    """SFT runs log no KL, may have blank programs (an untrained model) or no samples: no KL
    column or panel, no empty code blocks, and each absence said in words."""
    a = _run(tmp_path / "a", (0.1, 0.2), 0.0, [("t", "", "syntax_error"),
                                                ("t", "  \n", "syntax_error")], kl=None)
    b = _run(tmp_path / "b", (0.3, 0.4), 0.0, [], kl=None)
    os.remove(os.path.join(b, "eval_samples.jsonl"))
    files = compare.compare([a, b], str(tmp_path / "out"))
    header = open(files["table"]).read().splitlines()[0]
    assert "KL/seq" not in header and "greedy pass@1" in header
    assert "pass@16" not in header  # neither run has it
    progs = open(files["programs"]).read()
    assert "```python\n\n```" not in progs and "```" not in progs
    assert progs.count("(an empty program)") == 2
    assert "## b\n\nno held-out samples" in progs
    runs = [compare.FinishedRun(a), compare.FinishedRun(b)]
    assert compare.plot_curves(str(tmp_path / "c.png"), runs) == ["eval/pass@1"]
    assert compare.plot_outcomes(str(tmp_path / "o.png"), runs[1:]) == []
    assert not os.path.exists(tmp_path / "o.png")
    assert compare.plot_outcomes(str(tmp_path / "o.png"), runs) == ["syntax_error"]
    # no samples anywhere: no outcomes figure, and the CLI says why
    os.remove(os.path.join(a, "eval_samples.jsonl"))
    assert compare.main([a, b, "--out", str(tmp_path / "out2")]) == 0
    out = capsys.readouterr().out
    assert "outcomes: none, no held-out samples" in out
    assert not os.path.exists(tmp_path / "out2" / "compare_outcomes.png")


def test_compare_names_the_problem(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        compare.FinishedRun(str(tmp_path / "missing"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(NotADirectoryError, match="is a file, not a run directory .*summary.json"):
        compare.FinishedRun(str(tmp_path / "config.json"))
    assert compare.main([str(tmp_path / "config.json"), "--out", str(tmp_path / "o")]) == 2
    assert "is a file, not a run directory" in capsys.readouterr().err
    os.makedirs(tmp_path / "unfinished")
    with pytest.raises(FileNotFoundError, match="finished run"):
        compare.FinishedRun(str(tmp_path / "unfinished"))
    run = _run(tmp_path / "r", (0.1, 0.1), 0.1, [("a", RIGHT, "passed")])
    with pytest.raises(ValueError, match="1 labels for 2 runs"):
        compare.compare([run, run], str(tmp_path / "out"), ["x"])
    with open(os.path.join(run, "metrics.jsonl"), "a") as f:
        f.write("{not json\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl:5: malformed JSON"):
        compare.FinishedRun(run)


def test_run_styles_stay_apart_beyond_the_ten_colours():
    """Eleven runs (the RL study's seed-0 curves) drew the eleventh in the first run's
    colour: styles now pair each colour with a line style (and hatch for bars)."""
    lines = [(st["color"], st["linestyle"]) for st in map(compare.run_style, range(40))]
    bars = [(st["color"], st["hatch"]) for st in map(compare.run_style, range(40))]
    assert len(set(lines)) == len(set(bars)) == 40
    assert compare.run_style(0)["linestyle"] == "-" and compare.run_style(10)["linestyle"] != "-"
