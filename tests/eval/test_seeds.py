"""Tables over seeds (rlfb_jax.eval.seeds): grouping, the t interval, missing values."""

import json

import pytest

from rlfb_jax.eval.seeds import interval, main, table


def _run(root, name, summary, kls=()):
    d = root / name
    d.mkdir()
    (d / "summary.json").write_text(json.dumps(summary))
    rows = [{"step": i, "kl/seq_kl": k, "kl/mean": -k, "extra/x": 2 * k}
            for i, k in enumerate(kls)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(d)


def test_interval_is_the_student_t_half_width():
    mean, half = interval([0.30, 0.34, 0.38])
    assert mean == pytest.approx(0.34)
    assert half == pytest.approx(4.302653 * 0.04 / 3 ** 0.5, rel=1e-5)
    assert interval([0.5]) == (0.5, None)


def test_table_groups_by_seed_suffix_and_reads_the_last_kl(tmp_path, capsys):
    runs = [_run(tmp_path, "graded_s0", {"eval/pass@1": 0.3}, kls=(0.5, 0.1)),
            _run(tmp_path, "graded_s1", {"eval/pass@1": 0.4}, kls=(0.2,)),
            _run(tmp_path, "bc_s0", {"eval/pass@1": 0.37, "time/total_s": 61.2})]
    text = table(runs, ["eval/pass@1", "kl", "time/total_s"])
    rows = text.splitlines()
    assert rows[0] == "| setting | n | seeds | eval/pass@1 | kl | time/total_s |"
    half = 12.7062 * 0.05 * 2 ** 0.5 / 2 ** 0.5
    assert rows[2] == f"| graded | 2 | 0,1 | 0.350 ± {half:.3f} | 0.150 ± {12.7062 * 0.05:.3f} | - |"
    assert rows[3] == "| bc | 1 | 0 | 0.370 | - | 61 |"
    out = tmp_path / "t.md"
    assert main([*runs, "--metrics", "eval/pass@1", "kl", "time/total_s", "--out", str(out)]) == 0
    assert out.read_text() == text == capsys.readouterr().out
    # a metric summary.json lacks is read from the last logged row that has it
    assert table(runs[:1], ["extra/x"]).splitlines()[2] == "| graded | 1 | 0 | 0.200 |"


def test_gain_is_the_metric_minus_its_base(tmp_path):
    """Runs from different bases compare by their gain: pass@1 - pass@1_base per run."""
    runs = [_run(tmp_path, "pg_s0", {"eval/pass@1": 0.36, "eval/pass@1_base": 0.22}),
            _run(tmp_path, "pg_s1", {"eval/pass@1": 0.33, "eval/pass@1_base": 0.165}),
            _run(tmp_path, "old_s0", {"eval/pass@1": 0.3})]  # no base recorded: no gain
    rows = table(runs, ["eval/pass@1", "eval/pass@1:gain"]).splitlines()
    assert rows[0] == "| setting | n | seeds | eval/pass@1 | eval/pass@1:gain |"
    mean, half = interval([0.36 - 0.22, 0.33 - 0.165])
    assert rows[2] == f"| pg | 2 | 0,1 | 0.345 ± {interval([0.36, 0.33])[1]:.3f} | {mean:.3f} ± {half:.3f} |"
    assert mean == pytest.approx(0.1525)
    assert rows[3] == "| old | 1 | 0 | 0.300 | - |"


def test_a_directory_without_summary_is_named(tmp_path, capsys):
    (tmp_path / "half_s0").mkdir()
    assert main([str(tmp_path / "half_s0")]) == 2
    assert "half_s0: no summary.json" in capsys.readouterr().err


def test_a_run_still_going_is_left_out_and_named(tmp_path, capsys):
    done = _run(tmp_path, "graded_s0", {"eval/pass@1": 0.3})
    going = tmp_path / "graded_s1"
    going.mkdir()
    (going / "config.json").write_text("{}")
    (going / "metrics.jsonl").write_text(json.dumps({"step": 1, "eval/pass@1": 0.9}) + "\n")
    assert main([done, str(going), "--metrics", "eval/pass@1"]) == 0
    out, err = capsys.readouterr()
    assert "| graded | 1 | 0 | 0.300 |" in out and "not finished: " + str(going) in err
    assert main([str(going)]) == 2
    assert "none of the runs has finished" in capsys.readouterr().err


def test_plot_draws_every_setting_and_metric(tmp_path):
    runs = [_run(tmp_path, "graded_s0", {"eval/pass@1": 0.3}, kls=(0.5,)),
            _run(tmp_path, "graded_s1", {"eval/pass@1": 0.4}, kls=(0.2,)),
            _run(tmp_path, "bc_s0", {"eval/pass@1": 0.37})]  # no kl: an empty bar
    out = tmp_path / "t.png"
    assert main([*runs, "--metrics", "eval/pass@1", "kl", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paired_differences_are_taken_seed_by_seed(tmp_path, capsys):
    """--paired REF: each setting minus REF on the same seed, over the seeds both have;
    the interval is the t interval of the differences, not of either setting."""
    runs = [_run(tmp_path, "graded_s0", {"eval/pass@1": 0.30}),
            _run(tmp_path, "graded_s1", {"eval/pass@1": 0.40}),
            _run(tmp_path, "graded_s2", {"eval/pass@1": 0.20}),
            _run(tmp_path, "gspo_s0", {"eval/pass@1": 0.35}),
            _run(tmp_path, "gspo_s1", {"eval/pass@1": 0.44}),
            _run(tmp_path, "gspo_s2", {"eval/pass@1": 0.26}),
            _run(tmp_path, "bc_s1", {"eval/pass@1": 0.30}),   # one shared seed: no interval
            _run(tmp_path, "other_s7", {"eval/pass@1": 0.9})]  # no shared seed: no row
    assert main([*runs, "--metrics", "eval/pass@1", "--paired", "graded"]) == 0
    out = capsys.readouterr().out.split("\n\n")[1].splitlines()
    assert out[0] == "| setting minus graded | n | seeds | eval/pass@1 |"
    mean, half = interval([0.05, 0.04, 0.06])
    assert mean == pytest.approx(0.05) and half < interval([0.35, 0.44, 0.26])[1] / 5
    assert out[2] == f"| gspo | 3 | 0,1,2 | +0.050 ± {half:.3f} (+0.050, +0.040, +0.060) |"
    assert out[3] == "| bc | 1 | 1 | -0.100 |"
    assert len(out) == 4
    assert main([*runs, "--paired", "grpo"]) == 2
    assert "--paired grpo: no run of that setting" in capsys.readouterr().err
