"""Repair at inference (rlfb_jax.algos.repair): the selection rule, the paired summary, and
the smoke run end to end (a base trained with repair examples, both methods, resume)."""

import json
import os

import numpy as np
import pytest
from main_runner import run_main, summary

from rlfb_jax.algos.critic import prefix_cut
from rlfb_jax.algos.repair import Attempt, _selected, summarize

REPAIR = "experiments/synthetic_repair.py:smoke"
CRITIC = "experiments/synthetic_critic.py:repair,smoke"
ILF = "experiments/synthetic_ilf.py:smoke"


def _a(visible, hidden):
    return Attempt("x", "", visible, hidden, "passed" if hidden else "wrong_answer", "sample")


def test_selection_keeps_the_first_visible_pass_else_the_first_sample():
    assert _selected([_a(False, True), _a(True, False), _a(True, True)]) is False
    assert _selected([_a(False, True), _a(False, False)]) is True
    assert _selected([_a(False, False), _a(False, True), _a(True, True)]) is True


def _seed(repair, resample, programs):
    return {"sampled_pass": 0.1,
            "repair": {"pass": repair, "programs": programs},
            "resample": {"pass": resample, "programs": programs}}


def test_summary_pairs_the_methods_over_tasks_and_seeds():
    # 4 tasks, rounds 0..1; seed A: repair fixes tasks 0 and 1, resampling task 0 only
    a = _seed([[0, 0, 0, 0], [1, 1, 0, 0]], [[0, 0, 0, 0], [1, 0, 0, 0]],
              [[2, 2, 2, 2], [4, 4, 4, 4]])
    b = _seed([[0, 0, 0, 0], [1, 0, 0, 0]], [[0, 0, 0, 0], [1, 0, 0, 0]],
              [[2, 2, 2, 2], [4, 4, 2, 4]])
    s = summarize([a, b], rounds=1, draws=500)
    assert s["repair/round1/pass@1"] == 3 / 8 and s["resample/round1/pass@1"] == 2 / 8
    assert s["diff/round0/pass@1"] == 0 and s["diff/round1/pass@1"] == 1 / 8
    assert s["diff/round1/pass@1_lo"] <= 1 / 8 <= s["diff/round1/pass@1_hi"]
    assert s["repair/round1/programs"] == np.mean([4] * 7 + [2])
    assert s["repair/round1/pass@1_seed_std"] == np.std([0.5, 0.25])


@pytest.fixture(scope="module")
def repair_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("repair") / "run"
    run_main(REPAIR, wd)
    return wd


def test_repair_smoke_end_to_end(repair_run):
    wd = repair_run
    s = summary(wd)
    rounds = 2
    for method in ("repair", "resample"):
        progs = [s[f"{method}/round{r}/programs"] for r in range(rounds + 1)]
        # 2 samples per task, fewer where a repeat stayed a repeat after 3 redraws
        assert 1 <= progs[0] <= 2 and all(a <= b for a, b in zip(progs, progs[1:]))
        assert all(0 <= s[f"{method}/round{r}/pass@1"] <= 1 for r in range(rounds + 1))
    assert s["repair/round0/pass@1"] == s["resample/round0/pass@1"]  # one shared round 0
    assert "eval/pass@1_base" in s and (wd / "repair.png").exists()
    with open(wd / "base" / "config.json") as f:
        assert json.load(f)["data"]["repair_pairs"] == 64
    with open(wd / "base" / "repair_pairs.jsonl") as f:
        assert sum(1 for _ in f) == 64
    rows = [json.loads(line) for line in open(wd / "repair_samples.jsonl")]
    kinds = {a["prompt_kind"] for r in rows if r["method"] == "repair" for a in r["attempts"]}
    assert kinds <= {"sample", "repair"} and len(rows) == 2 * 4
    for r in rows:  # no program of a task is executed twice
        texts = [a["text"] for a in r["attempts"]]
        assert len(texts) == len(set(texts)), texts
    # a killed run resumes at the next seed: drop the summary and one seed's results
    os.remove(wd / "summary.json")
    os.remove(wd / "seed1.json")
    run_main(REPAIR, wd)
    assert summary(wd)["repair/round0/pass@1"] == s["repair/round0/pass@1"]
    assert summary(wd)["resample/round2/programs"] == s["resample/round2/programs"]


def test_ilf_smoke_trains_on_passing_repairs_of_the_shared_base(repair_run, tmp_path):
    wd = tmp_path / "ilf"
    run_main(ILF, wd, f"--config.base_workdir={repair_run / 'base'}")
    rows = [json.loads(line) for line in open(wd / "metrics.jsonl")]
    it = next(r for r in rows if "ilf/repairs" in r)
    # 8 problems x 4 samples, then one repair per failure that fails a visible example
    assert it["estep/programs"] == 32 + it["ilf/repairs"]
    assert it["ilf/repairs"] <= it["ilf/failed"] <= 32
    assert it["estep/samples"] == it["ilf/repairs"]  # ILF selects among the repairs only
    assert "eval/pass@1" in summary(wd) and "eval/pass@1_base" in summary(wd)
    bad = run_main(ILF, tmp_path / "bad", f"--config.base_workdir={repair_run / 'base'}",
                   "--config.rest_em.feedback_repair=ilff", check=False)
    assert bad.returncode != 0 and "feedback_repair='ilff'" in bad.stderr


def test_prefix_cut_keeps_the_prefix_the_critic_values_most():
    mask = np.array([0, 0, 1, 1, 1, 1, 1], bool)  # 2 prompt tokens, 4 program tokens + stop
    # candidates: after program token 1 (keep 1), 2 (keep 2), 3 (keep 3); not after the
    # prompt (the critic is not trained there), nor after token 4 or the stop token
    assert prefix_cut(np.array([.1, .3, .2, .5, .4, .9, .95]), mask) == 2
    assert prefix_cut(np.array([.1, .99, .2, .5, .4, .9, .95]), mask) == 2
    assert prefix_cut(np.array([.1, .3, .2, .5, .6, .9, .95]), mask) == 3
    assert prefix_cut(np.array([.1, .3, .7, .3, .3, .9, .95]), mask) == 1
    assert prefix_cut(np.array([.1, .3, .3, .3, .3, .9, .95]), mask) == 1  # ties: shortest
    assert prefix_cut(np.array([.1, .3, .9, .9]), np.array([0, 0, 1, 1], bool)) == 0


def test_critical_sampling_smoke(repair_run, tmp_path):
    """CodeRL's critical sampling as a third arm: a critic trained on the repair base, then
    repair / resample / critical from one round 0, each program executed once per task."""
    base = f"--config.base_workdir={repair_run / 'base'}"
    critic = tmp_path / "critic"
    run_main(CRITIC, critic, base)
    wd = tmp_path / "critical"
    run_main(REPAIR, wd, base, f"--config.repair.critic_workdir={critic}")
    s = summary(wd)
    for r in range(3):
        assert 0 <= s[f"critical/round{r}/pass@1"] <= 1
        assert s[f"diff_critical/round{r}/pass@1_lo"] <= s[f"diff_critical/round{r}/pass@1"]
    assert s["critical/round0/pass@1"] == s["repair/round0/pass@1"] == s["resample/round0/pass@1"]
    assert 0 <= s["critical/kept_frac"] < 1
    rows = [json.loads(line) for line in open(wd / "repair_samples.jsonl")]
    assert {r["method"] for r in rows} == {"repair", "resample", "critical"}
    for r in rows:
        texts = [a["text"] for a in r["attempts"]]
        assert len(texts) == len(set(texts)), texts
        if r["method"] == "critical":
            assert {a["prompt_kind"] for a in r["attempts"]} <= {"sample", "critical"}
    # a critic of another base's data, or no finished critic, is refused before any work
    other = tmp_path / "other_critic"
    other.mkdir()
    cfg = json.loads((critic / "config.json").read_text())
    cfg["base"]["data"]["repair_pairs"] = 7
    (other / "config.json").write_text(json.dumps(cfg))
    (other / "summary.json").write_text("{}")
    bad = run_main(REPAIR, tmp_path / "bad", base, f"--config.repair.critic_workdir={other}",
                   check=False)
    assert bad.returncode != 0 and "another base's data (data.repair_pairs" in bad.stderr
    bad = run_main(REPAIR, tmp_path / "bad2", base,
                   f"--config.repair.critic_workdir={tmp_path / 'none'}", check=False)
    assert bad.returncode != 0 and "no finished critic run" in bad.stderr
