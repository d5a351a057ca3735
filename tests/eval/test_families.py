"""The equal-budget comparison of every family (`rlfb_jax.eval.families`): what it reads
from each family's run, its statistics over seeds, and the command end to end."""

import json
import math
import os
import subprocess
import sys

import pytest
from main_runner import REPO, main_env

from rlfb_jax.eval import families as fam


def _run(root, name, summary, config):
    d = root / name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "config.json").write_text(json.dumps(config))
    return str(d)


def _world(tmp_path, pass1=(0.60, 0.64, 0.68)):
    """Finished runs of every family over 3 seeds, as the algorithms write them."""
    base = _run(tmp_path, "base", {"eval/pass@1": 0.58, "eval/pass@8": 0.78},
                {"eval": {"num_tasks": 200}})
    for s, p in enumerate(pass1):
        _run(tmp_path, f"ppo_s{s}", {"eval/pass@1": p, "eval/pass@8": p + 0.2,
                                     "time/total_s": 400.0 + s},
             {"rl": {"iterations": 1, "prompts_per_iter": 1024, "n_samples": 4}})
        _run(tmp_path, f"ilf_s{s}", {"eval/pass@1": p - 0.1, "eval/pass@8": p,
                                     "rest_em/iter1/programs": 4000.0 + s,
                                     "rest_em/iter1/pass@1": p - 0.2,
                                     "rest_em/iter2/programs": 99.0,  # not run: 1 iteration
                                     "time/total_s": 300.0},
             {"rest_em": {"iterations": 1}})
        _run(tmp_path, f"expert_iteration_s{s}",
             {"eval/pass@1": p, "rest_em/iter1/programs": 2048.0,
              "rest_em/iter2/programs": 2048.0, "time/total_s": 500.0},
             {"rest_em": {"iterations": 2}})
        _run(tmp_path, f"lever_s{s}", {"rerank/lever@1": 0.1, "rerank/lever@4": 0.2,
                                       "rerank/lever@8": p + 0.05, "rerank/greedy@8": 0.5,
                                       "time/total_s": 600.0},
             {"lever": {"train_tasks": 512, "train_samples": 8}})
        _run(tmp_path, f"repair_s{s}",
             {"repair/round1/pass@1": 0.1, "repair/round2/pass@1": p + 0.1,
              "repair/round2/programs": 5.5, "resample/round2/pass@1": p + 0.11,
              "resample/round2/programs": 5.25, "time/total_s": 200.0},
             {"repair": {"rounds": 2}})
    return base


def test_rows_are_each_familys_own_measure(tmp_path):
    base = _world(tmp_path)
    rows = fam.collect(str(tmp_path), base, [0, 1, 2])
    assert list(rows) == ["base", "ppo", "expert_iteration", "ilf", "lever", "repair",
                          "resample"]
    assert "rest_em" not in rows  # no finished run: absent, not zero
    assert rows["base"] == [{"train_programs": 0, "test_programs_per_task": 1, "pass@1": 0.58,
                             "trained_pass@1": None, "pass@8": 0.78, "time_s": None,
                             "seed": None}]
    ppo = rows["ppo"][1]
    assert (ppo["train_programs"], ppo["test_programs_per_task"], ppo["pass@1"],
            ppo["pass@8"], ppo["seed"]) == (4096, 1, 0.64, 0.64 + 0.2, 1)
    # only the iterations the run was configured for count
    assert [r["train_programs"] for r in rows["ilf"]] == [4000.0, 4001.0, 4002.0]
    # the pick (validation's iterate) and the trained model's own pass@1 are both kept
    assert rows["ilf"][0]["pass@1"] == pytest.approx(0.5)
    assert rows["ilf"][0]["trained_pass@1"] == pytest.approx(0.4)
    assert rows["ppo"][0]["trained_pass@1"] == rows["ppo"][0]["pass@1"]
    assert rows["expert_iteration"][0]["train_programs"] == 4096.0
    lever = rows["lever"][2]  # the largest n is the pick's budget
    assert (lever["train_programs"], lever["test_programs_per_task"], lever["pass@1"],
            lever["pass@8"]) == (4096, 8, pytest.approx(0.73), None)
    rep, res = rows["repair"][0], rows["resample"][0]
    assert (rep["train_programs"], rep["test_programs_per_task"], rep["pass@1"]) == \
        (0, 5.5, pytest.approx(0.70))
    assert (res["test_programs_per_task"], res["pass@1"]) == (5.25, pytest.approx(0.71))


def test_table_gives_mean_and_t_interval_over_seeds(tmp_path):
    base = _world(tmp_path, pass1=(0.60, 0.64, 0.68))
    rows = fam.collect(str(tmp_path), base, [0, 1, 2])
    text = fam.table_md(rows, num_tasks=200)
    half = 4.302653 * 0.04 / math.sqrt(3)  # t_{0.975, 2} x sd / sqrt(n)
    ppo_line = next(line for line in text.splitlines() if line.startswith("| PPO"))
    cells = [c.strip() for c in ppo_line.strip("|").split("|")]
    assert cells[1] == "0,1,2"
    assert cells[2:5] == ["4096", "1.00", str(4096 + 200)]
    assert cells[5] == f"0.640 ± {half:.3f}"
    base_line = next(line for line in text.splitlines() if line.startswith("| base"))
    assert "0.580" in base_line and "±" not in base_line  # one deterministic run
    png = fam.figure_png(rows, 200)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_of_another_kind_is_named(tmp_path):
    base = _world(tmp_path)
    (tmp_path / "lever_s1" / "summary.json").write_text(json.dumps({"eval/pass@1": 0.5}))
    with pytest.raises(ValueError, match="lever_s1: not a finished lever run"):
        fam.collect(str(tmp_path), base, [0, 1, 2])


def test_a_run_without_summary_is_named(tmp_path):
    (tmp_path / "ppo_s0").mkdir()
    with pytest.raises(FileNotFoundError, match="ppo_s0: no summary.json"):
        fam.run_row("ppo", str(tmp_path / "ppo_s0"))
    with pytest.raises(FileNotFoundError, match="the base is not trained"):
        fam.base_row(str(tmp_path / "nothing"))


def _families(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "rlfb_jax.eval.families", *args],
                          env=main_env(), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_dry_run_prints_every_command_seed_major(tmp_path):
    out = _families("--workdir", str(tmp_path), "--seeds", "3", "4", "--families", "ilf",
                    "lever", "--dry_run")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split("--workdir=")[1].split()[0].rsplit("/", 1)[1] for line in lines] == \
        ["ilf_s3", "lever_s3", "ilf_s4", "lever_s4"]
    assert all("synthetic_families.py:" in line and "--config.base_workdir=" in line
               for line in lines)
    bad = _families("--workdir", str(tmp_path), "--families", "ppx", "--dry_run")
    assert bad.returncode == 2 and "ppx" in bad.stderr


def test_runs_from_any_working_directory(tmp_path):
    """The families' config is found beside the package, not only under the working
    directory, and the runs it launches get an absolute path to it."""
    out = subprocess.run([sys.executable, "-m", "rlfb_jax.eval.families", "--workdir", "fam",
                          "--seeds", "0", "--families", "ilf", "--dry_run"],
                         env=main_env(), cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    config = out.stdout.split("--config=")[1].split(":ilf")[0]
    assert os.path.isabs(config) and os.path.isfile(config), config


def test_smoke_end_to_end_resumes_and_reports_a_failed_run(tmp_path):
    """Two families at smoke size from one freshly trained base; a second call runs
    nothing; a run that fails is named, the others' rows stand, the exit status is 1.
    (Every family at smoke size: `test_every_family_smoke`, slow.)"""
    wd = tmp_path / "fam"
    out = _families("--workdir", str(wd), "--seeds", "0", "--families", "repair", "ilf",
                    "--smoke")
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-2000:]
    md = (wd / "families.md").read_text()
    for label in ("base (greedy)", "ILF", "repair at inference", "resample at inference"):
        assert f"| {label} |" in md
    assert (wd / "families.png").stat().st_size > 1000
    assert os.path.isfile(wd / "logs" / "ilf_s0.log")
    again = _families("--workdir", str(wd), "--seeds", "0", "--families", "repair", "ilf",
                      "--smoke", timeout=120)
    assert again.returncode == 0
    assert "ilf_s0: finished" in again.stdout and "running" not in again.stdout
    # seed 1 against a base trained on other data: refused by the run, named by the command
    other = tmp_path / "other_base"
    other.mkdir()
    cfg = json.loads((wd / "base" / "config.json").read_text())
    cfg["data"]["repair_pairs"] = 3
    (other / "config.json").write_text(json.dumps(cfg))
    (other / "summary.json").write_text(json.dumps({"eval/pass@1": 0.0}))
    failed = _families("--workdir", str(wd), "--seeds", "1", "--families", "repair",
                       "--smoke", "--base_workdir", str(other))
    assert failed.returncode == 1
    assert "repair_s1: FAILED" in failed.stdout and "1 run(s) failed: repair_s1" in failed.stderr
    assert "trained on other data" in (wd / "logs" / "repair_s1.log").read_text()


@pytest.mark.slow
def test_every_family_smoke(tmp_path):
    out = _families("--workdir", str(tmp_path), "--seeds", "0", "--smoke")
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-2000:]
    rows = json.loads((tmp_path / "families.json").read_text())
    assert set(rows) == {"base", *fam.FAMILIES, "resample"}
