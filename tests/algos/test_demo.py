"""The main job (experiments/demo.py) end to end at smoke size: four stages from one base,
one table, and a re-run that reuses every finished stage."""

import os

import numpy as np
import pytest
from main_runner import run_main, summary

from rlfb_jax.algos import demo
from rlfb_jax.core import report

# The overview's panels of each stage's algorithm (sft, lever, ppo, rest_em) and the demo's.
PANELS = {
    "base": ["held-out greedy pass@1", "training loss", "held-out sample outcomes"],
    "lever": ["LEVER: accuracy of the picked program"],
    "ppo": ["held-out greedy pass@1", "reward and KL", "held-out sample outcomes"],
    "rest_em": ["held-out greedy pass@1", "reward and KL", "ReST-EM per iteration"],
    ".": ["held-out greedy pass@1 per stage"],
}


def test_demo_smoke_runs_every_stage_then_reuses_them(tmp_path):
    wd = tmp_path / "demo"
    out = run_main("experiments/demo.py:smoke", wd)
    s = summary(wd)
    for stage in demo.STAGES:  # the table's numbers are each stage's own
        stage_summary = summary(wd / stage)
        assert demo.stage_result(stage, stage_summary, 4) == {
            k: s[f"demo/{stage}/{k}"] for k in ("pass@1", "compile_rate")}, stage
        assert s[f"demo/{stage}/time_s"] == stage_summary["time/total_s"], stage
        assert demo.label(stage, 4) in out.stdout
    # every later stage used the demo's base run, not a base of its own
    for stage in ("lever", "ppo", "rest_em"):
        assert not os.path.exists(wd / stage / "base")
    assert s["demo/base/pass@1"] == summary(wd / "base")["eval/pass@1"]
    assert s["demo/lever/pass@1"] == summary(wd / "lever")["rerank/lever@4"]
    assert s["demo/total_s"] == pytest.approx(sum(s[f"demo/{st}/time_s"] for st in demo.STAGES))
    assert os.path.exists(wd / "demo.png") and os.path.exists(wd / "demo.md")
    # the run's face of every algorithm, from the real runs' files
    for stage, titles in PANELS.items():
        run = report.load_run(str(wd / stage))
        assert [p.title for p in report.panels(run)] == titles, stage
        assert [os.path.basename(p) for p in report.write_report(str(wd / stage))] == [
            "overview.png", "report.md"], stage
        md = (wd / stage / "report.md").read_text()
        if "eval/pass@1" in run.summary:
            assert (f"| held-out greedy pass@1 | {report._fmt(run.summary.get('eval/pass@1_base'))}"
                    f" | {run.summary['eval/pass@1']:.3f} |") in md, stage
    assert f"| lever | {summary(wd / 'lever')['rerank/lever@1']:.3f} |" in (
        wd / "lever" / "report.md").read_text()
    assert "[rest_em](rest_em/report.md)" in (wd / "report.md").read_text()
    # re-running reads every stage back (no training: no new checkpoints, same numbers)
    os.remove(wd / "summary.json")
    mtimes = {p: os.path.getmtime(p) for p in (wd / "ppo" / "summary.json",
                                                wd / "base" / "summary.json")}
    run_main("experiments/demo.py:smoke", wd)
    again = summary(wd)
    assert {k: v for k, v in again.items() if "time" not in k and "wall" not in k} == \
        {k: v for k, v in s.items() if "time" not in k and "wall" not in k}
    assert all(os.path.getmtime(p) == m for p, m in mtimes.items())


def test_demo_table_and_stage_results():
    res = demo.stage_result("lever", {"rerank/lever@16": 0.5, "rerank_compile/lever@16": 1.0})
    assert res["pass@1"] == 0.5 and res["compile_rate"] == 1.0
    res = demo.stage_result("ppo", {"eval/pass@1": 0.3})
    assert res["pass@1"] == 0.3 and np.isnan(res["compile_rate"])
    table = demo.markdown_table([("base", {"pass@1": 0.2, "compile_rate": 0.9}, 60.0),
                                 ("ppo", res, 120.0)])
    assert "| base (greedy) | 0.200 | 0.900 | 1.0 min |" in table
    assert "| PPO | 0.300 | - | 2.0 min |" in table
    # the PPO row says what it learns from (the demo's default: failures pushed down)
    from experiments import demo as demo_config

    rl = demo_config.get_config().ppo.rl
    assert "| PPO, failures pushed down | 0.300 |" in demo.markdown_table(
        [("ppo", res, 120.0)], rl=rl)
    rl.unlock()
    rl.adv_floor = 0.0
    assert demo.label("ppo", rl=rl) == "PPO, successes only (advantages >= 0)"
