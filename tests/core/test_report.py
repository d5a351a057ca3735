"""rlfb_jax.core.report: the overview figure and report.md of a run directory, on hand-made
runs of each algorithm's shape (tests/algos/test_demo.py checks real smoke runs of each)."""

import json
import os

import pytest

from rlfb_jax.core import report


def _run_dir(path, config, summary, rows=()):
    os.makedirs(path)
    for name, obj in (("config.json", config), ("summary.json", summary)):
        with open(os.path.join(path, name), "w") as f:
            json.dump(obj, f)
    if rows:
        with open(os.path.join(path, "metrics.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(path)


def _titles(path):
    return [p.title for p in report.panels(report.load_run(path))]


@pytest.fixture
def pg_run(tmp_path):
    base = _run_dir(tmp_path / "base", {"algo": "sft"},
                    {"eval/pass@1": 0.25, "eval/errors/wrong_answer": 0.5,
                     "eval/errors/syntax_error": 0.25})
    rows = [{"step": 1, "reward/total": 0.1, "kl/seq_kl": 0.0, "train/loss": 2.0},
            {"step": 1, "eval/pass@1": 0.3},
            {"step": 2, "reward/total": 0.4, "kl/seq_kl": 0.5, "train/loss": 1.0},
            {"step": 2, "eval/pass@1": 0.45}]
    summary = {"eval/pass@1": 0.45, "eval/pass@1_base": 0.25, "eval/compile_rate": 0.9,
               "eval/compile_rate_base": 0.8, "eval/pass@4": 0.6,
               "eval/errors/wrong_answer": 0.3, "eval/errors/runtime_error": 0.1,
               "time/total_s": 90.0}
    return _run_dir(tmp_path / "pg", {"algo": "pg", "seed": 3, "base_workdir": base}, summary,
                    rows)


def test_pg_run_panels_and_table(pg_run):
    ps = {p.title: p for p in report.panels(report.load_run(pg_run))}
    assert list(ps) == ["held-out greedy pass@1", "reward and KL", "held-out sample outcomes"]
    # pass@1 per iteration from the base (iteration 0), the base also dashed
    assert ps["held-out greedy pass@1"].lines == {"pass@1": ([0, 1, 2], [0.25, 0.3, 0.45])}
    assert ps["held-out greedy pass@1"].dashed == {"base": 0.25}
    assert ps["reward and KL"].lines == {"reward": ([1, 2], [0.1, 0.4])}
    assert ps["reward and KL"].right == {"KL / sequence": ([1, 2], [0.0, 0.5])}
    shares = ps["held-out sample outcomes"].bars  # passed is what the errors leave
    assert shares["base"] == pytest.approx({"passed": 0.25, "wrong_answer": 0.5,
                                            "syntax_error": 0.25})
    assert shares["final"] == pytest.approx({"passed": 0.6, "wrong_answer": 0.3,
                                             "runtime_error": 0.1})
    paths = report.write_report(pg_run)
    assert [os.path.basename(p) for p in paths] == ["overview.png", "report.md"]
    md = open(paths[1]).read()
    assert "Algorithm `pg`, seed 3" in md
    assert "| held-out greedy pass@1 | 0.250 | 0.450 |" in md
    assert "| greedy compile rate | 0.800 | 0.900 |" in md
    assert "| pass@4 |  | 0.600 |" in md
    assert "| reward (train samples) | 0.100 | 0.400 |" in md
    assert "| training loss | 2.000 | 1.000 |" in md
    assert "Wall time: 1.5 min." in md
    assert "![overview](overview.png)" in md and "smoke" not in md
    with open(paths[0], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_sft_run_shows_its_loss_and_says_a_zero_eval_is_a_smoke_result(tmp_path):
    rows = [{"step": 5, "train/loss": 3.0}, {"step": 10, "train/loss": 2.5},
            {"step": 10, "eval/pass@1": 0.0}]
    path = _run_dir(tmp_path / "sft", {"algo": "sft"},
                    {"eval/pass@1": 0.0, "eval/compile_rate": 0.0,
                     "eval/errors/syntax_error": 1.0}, rows)
    ps = report.panels(report.load_run(path))
    assert [p.title for p in ps] == ["held-out greedy pass@1", "training loss",
                                     "held-out sample outcomes"]
    assert ps[0].lines == {"pass@1": ([10], [0.0])} and ps[0].dashed == {}  # no base
    assert ps[0].xlabel == "step" and ps[1].lines == {"loss": ([5, 10], [3.0, 2.5])}
    assert ps[2].bars == {"final": {"passed": 0.0, "syntax_error": 1.0}}
    report.write_report(path)
    md = open(os.path.join(path, "report.md")).read()
    assert "| held-out greedy pass@1 |  | 0.000 |" in md
    assert "No held-out greedy program compiles" in md and "smoke" in md


def test_lever_rest_em_and_demo_panels(tmp_path):
    lever = _run_dir(tmp_path / "lever", {"algo": "lever"},
                     {"eval/pass@1_base": 0.2, "rerank/lever@4": 0.5, "rerank/lever@1": 0.3,
                      "rerank/random@1": 0.2, "rerank/random@4": 0.25,
                      "rerank_diff/lever@4": 0.1})
    (p,) = report.panels(report.load_run(lever))
    assert p.title.startswith("LEVER") and p.logx and p.dashed == {"base greedy": 0.2}
    assert p.lines == {"lever": ([1, 4], [0.3, 0.5]), "random": ([1, 4], [0.2, 0.25])}
    report.write_report(lever)
    md = open(os.path.join(lever, "report.md")).read()
    assert "| reranker | n=1 | n=4 |" in md and "| lever | 0.300 | 0.500 |" in md

    rest = _run_dir(tmp_path / "rest", {"algo": "rest_em"},
                    {"eval/pass@1_base": 0.2, "rest_em/valid_pass@1_base": 0.1,
                     "rest_em/iter1/pass@1": 0.3, "rest_em/iter2/pass@1": 0.35,
                     "rest_em/iter1/valid_pass@1": 0.2, "rest_em/iter2/valid_pass@1": 0.15,
                     "rest_em/iter1/kept": 40, "rest_em/best_iter": 1})
    (p,) = report.panels(report.load_run(rest))
    assert p.lines == {"held-out pass@1": ([0, 1, 2], [0.2, 0.3, 0.35]),
                       "validation pass@1": ([0, 1, 2], [0.1, 0.2, 0.15])}
    report.write_report(rest)
    md = open(os.path.join(rest, "report.md")).read()
    assert "ReST-EM per iteration (best: 1)" in md and "| 1 | 0.300 | 0.200 | 40 |" in md

    demo = _run_dir(tmp_path / "demo", {"algo": "demo"},
                    {"demo/base/pass@1": 0.2, "demo/base/compile_rate": 0.9,
                     "demo/base/time_s": 60.0, "demo/ppo/pass@1": 0.4,
                     "demo/ppo/compile_rate": 1.0, "demo/ppo/time_s": 120.0})
    _run_dir(tmp_path / "demo" / "ppo", {"algo": "ppo"}, {"eval/pass@1": 0.4})
    report.write_report(os.path.join(demo, "ppo"))
    (p,) = report.panels(report.load_run(demo))
    assert p.bars == {"base": {"pass@1": 0.2, "compile rate": 0.9},
                      "ppo": {"pass@1": 0.4, "compile rate": 1.0}}
    report.write_report(demo)
    md = open(os.path.join(demo, "report.md")).read()
    assert "| ppo | 0.400 | 1.000 | 2.000 |" in md
    assert "[ppo](ppo/report.md)" in md and "[base](base/report.md)" not in md


def test_a_run_with_nothing_to_draw_gets_a_report_only(tmp_path):
    path = _run_dir(tmp_path / "r", {"algo": "sft"}, {"time/total_s": 6.0})
    assert [os.path.basename(p) for p in report.write_report(path)] == ["report.md"]
    assert "Wall time: 0.1 min." in open(os.path.join(path, "report.md")).read()


def test_not_a_run_directory(tmp_path, capsys):
    f = tmp_path / "summary.json"
    f.write_text("{}")
    with pytest.raises(NotADirectoryError, match="is a file, not a run directory"):
        report.write_report(str(f))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        report.write_report(str(tmp_path / "missing"))
    os.makedirs(tmp_path / "empty")
    assert report.main([str(tmp_path / "empty")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
