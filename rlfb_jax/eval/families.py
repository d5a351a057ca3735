"""Every family at an equal budget, over seeds, in one figure and one table.

    python -m rlfb_jax.eval.families --workdir runs/families [--seeds 0 1 2]
        [--families ppo rest_em ...] [--base_workdir DIR] [--smoke] [--dry_run]

Runs ``experiments/synthetic_families.py:FAMILY`` for each family and seed as its own
process (``python -m rlfb_jax.main``, log in ``WORKDIR/logs/``), seed 0 of every family
first, all from one base (``WORKDIR/base``, trained by the first run, or ``--base_workdir``).
A finished run is read back, not rerun; a killed command resumes with the runs it had not
finished; a run that fails is reported and the others go on. Then it writes, from every
finished run it finds:

* ``families.md``: per family, the programs sampled and executed on training tasks, the
  programs executed per held-out task at test time, held-out pass@1 of the program the
  method picks (greedy for a trained policy, which for ReST-EM / expert iteration / ILF is
  the iterate validation keeps, possibly the base; LEVER's top program; the first sample or
  repair that passes the visible examples), the trained model's own greedy pass@1 (the last
  iterate, kept or not), sampled pass@8 where the family has a policy to sample, and wall
  time: mean and 95% Student-t interval over seeds (`rlfb_jax.eval.seeds`);
* ``families.png``: held-out pass@1 against programs executed in all (training + test) and
  against wall time, one point per family with its interval (hollow: the last iterate,
  where validation kept an earlier one), the base dashed;
* ``families.json``: every run's row.

The base row is the base's own evaluation (greedy: deterministic); ``resample`` is the
repair runs' other arm: the same number of test-time programs spent on fresh samples.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from etils import epath

from rlfb_jax.eval.seeds import interval

EXPERIMENT = "experiments/synthetic_families.py"


def experiment_path() -> str:
    """The families' config file: ``EXPERIMENT`` under the working directory, else the one
    beside the installed package (a checkout's ``experiments/``), so the command runs from
    any directory of a checkout or an editable install."""
    here = os.path.abspath(EXPERIMENT)
    beside = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           os.pardir, os.pardir, EXPERIMENT))
    for path in (here, beside):
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"{EXPERIMENT} not found under the working directory ({os.getcwd()}) nor beside "
        f"the installed rlfb_jax ({beside}): run from a checkout of the "
        "repository")


FAMILIES = ("ppo", "rest_em", "expert_iteration", "ilf", "lever", "repair")
LABELS = {"base": "base (greedy)", "ppo": "PPO (graded)", "rest_em": "ReST-EM",
          "expert_iteration": "expert iteration", "ilf": "ILF", "lever": "LEVER rerank",
          "repair": "repair at inference", "resample": "resample at inference"}
COLUMNS = ("train_programs", "test_programs_per_task", "pass@1", "trained_pass@1", "pass@8",
           "time_s")


def _read_json(path: epath.Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def run_row(family: str, run: str) -> dict[str, float | None]:
    """One finished run's figures (see the module docstring), measured from its summary.json
    and config.json."""
    s = _read_json(epath.Path(run, "summary.json"))
    c = _read_json(epath.Path(run, "config.json"))
    if not s:
        raise FileNotFoundError(f"{run}: no summary.json (not a finished run)")
    row: dict[str, float | None] = {"time_s": s.get("time/total_s"), "pass@8": None,
                                    "trained_pass@1": None}
    if family == "ppo":
        rl = c["rl"]
        row["train_programs"] = rl["iterations"] * rl["prompts_per_iter"] * rl["n_samples"]
    elif family in ("rest_em", "expert_iteration", "ilf"):
        # the iterations that ran (early stopping may end a run before its configured count)
        iters = int(s.get("rest_em/iterations_run", c["rest_em"]["iterations"]))
        row["train_programs"] = sum(s.get(f"rest_em/iter{i}/programs", 0.0)
                                    for i in range(1, iters + 1))
        # the last iterate, whether or not validation kept it (eval/pass@1 is the pick)
        row["trained_pass@1"] = s.get(f"rest_em/iter{iters}/pass@1")
    elif family == "lever":
        row["train_programs"] = c["lever"]["train_tasks"] * c["lever"]["train_samples"]
        ns = [int(k.rsplit("@", 1)[1]) for k in s if k.startswith("rerank/lever@")]
        if not ns:
            raise KeyError("rerank/lever@<n>")
        n = max(ns)
        row["test_programs_per_task"], row["pass@1"] = n, s[f"rerank/lever@{n}"]
        return row
    elif family in ("repair", "resample"):
        r = int(c["repair"]["rounds"])
        row["train_programs"] = 0
        row["test_programs_per_task"] = s[f"{family}/round{r}/programs"]
        row["pass@1"] = s[f"{family}/round{r}/pass@1"]
        return row
    else:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    row["test_programs_per_task"] = 1
    row["pass@1"], row["pass@8"] = s.get("eval/pass@1"), s.get("eval/pass@8")
    if row["trained_pass@1"] is None:
        row["trained_pass@1"] = row["pass@1"]
    return row


def base_row(base: str) -> dict[str, float | None]:
    s = _read_json(epath.Path(base, "summary.json"))
    if not s:
        raise FileNotFoundError(f"{base}: no summary.json (the base is not trained yet)")
    return {"train_programs": 0, "test_programs_per_task": 1, "pass@1": s.get("eval/pass@1"),
            "trained_pass@1": None, "pass@8": s.get("eval/pass@8"), "time_s": None}


def collect(workdir: str, base: str, seeds: Sequence[int],
            families: Sequence[str] = FAMILIES) -> dict[str, list[dict]]:
    """{family: [row + {"seed": s}]} over the finished runs among `families` x `seeds`
    (repair runs also give the ``resample`` rows), with the base first."""
    out: dict[str, list[dict]] = {}
    if epath.Path(base, "summary.json").exists():
        out["base"] = [dict(base_row(base), seed=None)]
    for family in families:
        for seed in seeds:
            run = os.path.join(workdir, f"{family}_s{seed}")
            if not epath.Path(run, "summary.json").exists():
                continue
            names = (family, "resample") if family == "repair" else (family,)
            for name in names:
                try:
                    row = run_row(name, run)
                except KeyError as e:  # a run of another algorithm, or of an older version
                    raise ValueError(f"{run}: not a finished {family} run of "
                                     f"{EXPERIMENT} (no {e} in its files)") from None
                out.setdefault(name, []).append(dict(row, seed=seed))
    return out


def _stat(rows: list[dict], key: str) -> tuple[float, float | None] | None:
    vs = [float(r[key]) for r in rows if r.get(key) is not None]
    return interval(vs) if vs else None


def _cell(stat, fmt: str, zero_spread: bool = True) -> str:
    """mean ± half-width; a budget that is the same in every seed (``zero_spread=False``)
    is shown alone."""
    if stat is None:
        return "-"
    mean, half = stat
    if half is None or (not zero_spread and half == 0):
        return fmt.format(mean)
    return fmt.format(mean) + " ± " + fmt.format(half)


def table_md(rows: dict[str, list[dict]], num_tasks: int) -> str:
    lines = ["| family | seeds | train programs | test programs / task | programs in all | "
             "held-out pass@1 | trained model's pass@1 | pass@8 | wall time (s) |",
             "| --- | --- |" + " ---: |" * 7]
    for family, rs in rows.items():
        seeds = ",".join(str(r["seed"]) for r in rs if r["seed"] is not None) or "-"
        train, test = _stat(rs, "train_programs"), _stat(rs, "test_programs_per_task")
        total = (train[0] + test[0] * num_tasks, None) if train and test else None
        lines.append(
            f"| {LABELS.get(family, family)} | {seeds} | {_cell(train, '{:.0f}', False)} | "
            f"{_cell(test, '{:.2f}', False)} | {_cell(total, '{:.0f}')} | "
            f"{_cell(_stat(rs, 'pass@1'), '{:.3f}')} | "
            f"{_cell(_stat(rs, 'trained_pass@1'), '{:.3f}')} | {_cell(_stat(rs, 'pass@8'), '{:.3f}')} | "
            f"{_cell(_stat(rs, 'time_s'), '{:.0f}')} |")
    return "\n".join(lines) + "\n"


def figure_png(rows: dict[str, list[dict]], num_tasks: int) -> bytes:
    from rlfb_jax.core.metrics import new_figure

    fig, (a, b) = new_figure(1, 2, figsize=(11, 4.2))
    for family, rs in rows.items():
        p1 = _stat(rs, "pass@1")
        if p1 is None:
            continue
        if family == "base":
            for ax in (a, b):
                ax.axhline(p1[0], ls="--", color="grey", lw=1, label=LABELS["base"])
            continue
        train, test = _stat(rs, "train_programs"), _stat(rs, "test_programs_per_task")
        x = train[0] + test[0] * num_tasks
        err = None if p1[1] is None else p1[1]
        line = a.errorbar([x], [p1[0]], yerr=err, fmt="o", capsize=3,
                          label=LABELS.get(family, family))
        trained = _stat(rs, "trained_pass@1")
        if trained is not None and abs(trained[0] - p1[0]) > 1e-9:  # validation kept the base
            a.errorbar([x], [trained[0]], yerr=trained[1], fmt="o", mfc="none", capsize=3,
                       color=line[0].get_color())
        t = _stat(rs, "time_s")
        if t is not None:
            b.errorbar([t[0]], [p1[0]], yerr=err, xerr=t[1], fmt="o", capsize=3,
                       label=LABELS.get(family, family))
    a.set(xlabel=f"programs executed (training + {num_tasks} held-out tasks)",
          ylabel="held-out pass@1 (the method's pick)", title="pass@1 against programs executed")
    b.set(xlabel="wall time of the run (s; the shared base not counted)",
          title="pass@1 against wall time")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    a.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def write_outputs(workdir: str, base: str, seeds: Sequence[int],
                  families: Sequence[str] = FAMILIES, num_tasks: int = 200) -> str:
    """Writes families.md / .png / .json into `workdir`; returns the table."""
    rows = collect(workdir, base, seeds, families)
    text = table_md(rows, num_tasks)
    w = epath.Path(workdir)
    w.mkdir(parents=True, exist_ok=True)
    (w / "families.json").write_text(json.dumps(rows, indent=1))
    (w / "families.md").write_text(
        "# Every family at an equal budget\n\n"
        f"`python -m rlfb_jax.eval.families --workdir {workdir} --seeds "
        f"{' '.join(map(str, seeds))}` (configs: `{EXPERIMENT}`). Intervals: 95% Student-t "
        f"over seeds; a family with one finished seed has none.\n\n" + text +
        "\n![families](families.png)\n")
    if any(f != "base" for f in rows):
        (w / "families.png").write_bytes(figure_png(rows, num_tasks))
    return text


def command(family: str, seed: int, workdir: str, base: str, smoke: bool) -> list[str]:
    arg = family + (",smoke" if smoke else "")
    return [sys.executable, "-m", "rlfb_jax.main", f"--config={experiment_path()}:{arg}",
            f"--workdir={os.path.join(workdir, f'{family}_s{seed}')}", f"--config.seed={seed}",
            f"--config.base_workdir={base}"]


def run_all(workdir: str, base: str, seeds: Sequence[int], families: Sequence[str],
            smoke: bool = False, dry_run: bool = False) -> list[str]:
    """Runs every unfinished (family, seed), seed-major; returns the names that failed."""
    todo = [(f, s) for s in seeds for f in families]
    failed = []
    logs = epath.Path(workdir, "logs")
    for i, (family, seed) in enumerate(todo, 1):
        name = f"{family}_s{seed}"
        cmd = command(family, seed, workdir, base, smoke)
        if epath.Path(workdir, name, "summary.json").exists():
            print(f"[{i}/{len(todo)}] {name}: finished", flush=True)
            continue
        if dry_run:
            print(" ".join(cmd), flush=True)
            continue
        logs.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        print(f"[{i}/{len(todo)}] {name}: running (log {logs / (name + '.log')})", flush=True)
        with open(logs / f"{name}.log", "w") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
        if rc:
            failed.append(name)
            print(f"[{i}/{len(todo)}] {name}: FAILED (exit {rc}; see its log)", flush=True)
        else:
            row = run_row("repair" if family == "repair" else family,
                          os.path.join(workdir, name))
            print(f"[{i}/{len(todo)}] {name}: done in {time.time() - t0:.0f} s, held-out "
                  f"pass@1 {row['pass@1']:.3f}", flush=True)
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES,
                   metavar="FAMILY", help=f"a subset of {', '.join(FAMILIES)}")
    p.add_argument("--base_workdir", default="",
                   help="a finished base of experiments/synthetic_repair.py (default: "
                        "WORKDIR/base, trained by the first run)")
    p.add_argument("--smoke", action="store_true", help="the tests' sizes")
    p.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--report_only", action="store_true",
                   help="write the table and figure from the finished runs, run nothing")
    args = p.parse_args(argv)
    base = os.path.abspath(args.base_workdir or os.path.join(args.workdir, "base"))
    failed = [] if args.report_only else run_all(args.workdir, base, args.seeds,
                                                 args.families, args.smoke, args.dry_run)
    if args.dry_run:
        return 0
    num_tasks = int(_read_json(epath.Path(base, "config.json")).get("eval", {}).get(
        "num_tasks", 200))
    print(write_outputs(args.workdir, base, args.seeds, args.families, num_tasks), end="")
    print(f"written: {os.path.join(args.workdir, 'families.md')} and families.png")
    if failed:
        print(f"error: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
