"""Side-by-side report of finished run directories: learning curves, outcomes, degeneration.

    python -m rlfb_jax.eval.compare runs/ppo runs/ppo_compile_nokl runs/ppo_beta0.1 \\
        --base runs/ppo/base --out runs/ppo_ablations

Reads each run's ``metrics.jsonl``, ``summary.json`` and (when present) the held-out samples
``eval_samples.jsonl``; the optional ``--base`` run is drawn as iteration 0. Writes to
``--out``:

* ``compare.md``: one row per run: greedy pass@1 and compile rate, pass@k, the outcome
  fractions of held-out samples, the final KL, and three signs of a degenerate policy
  measured on the held-out samples: distinct programs per task, the fraction of programs
  that repeat an expression (``x = e`` then ``return e``, or ``e`` twice), and the share of
  each task's samples taken by its most frequent program;
* ``compare_curves.png``: held-out greedy pass@1, compile rate, sample pass rate and KL to
  the reference against the iteration;
* ``compare_outcomes.png``: the outcome distribution of held-out samples per run (as in
  RLTF's error-type figure);
* ``compare_programs.md``: per run, the most frequent held-out programs, and for tasks the
  base solved but the run no longer does, the run's most frequent program there.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from rlfb_jax.core.metrics import read_jsonl
from rlfb_jax.executor import STATUSES  # the verdicts of held-out samples

CURVES = (("eval/pass@1", "held-out greedy pass@1"), ("eval/compile_rate", "greedy compile rate"),
          ("eval/sample_pass_rate", "held-out sample pass rate"),
          ("kl/seq_kl", "KL to the reference (nats / sequence)"))

_RETURN = re.compile(r"^return\s+")
_ASSIGN = re.compile(r"^[A-Za-z_]\w*\s*=(?!=)\s*")


def repeats_expression(completion: str) -> bool:
    """Whether a program computes the same expression twice: each line is reduced to its
    expression (``return e`` -> ``e``, ``name = e`` -> ``e``) and blank lines dropped."""
    exprs = []
    for line in completion.splitlines():
        line = _ASSIGN.sub("", _RETURN.sub("", line.strip()))
        if line:
            exprs.append(line)
    return len(exprs) != len(set(exprs))


def sample_stats(samples: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Statistics of held-out samples (rows of ``eval_samples.jsonl``)."""
    if not samples:
        return {}
    by_task: dict[str, list[str]] = collections.defaultdict(list)
    status = collections.Counter()
    for s in samples:
        by_task[s["task_id"]].append(s["completion"])
        status[s.get("status", "passed" if s.get("passed") else "wrong_answer")] += 1
    n = len(samples)
    out = {
        "samples/distinct_per_task": float(np.mean([len(set(c)) for c in by_task.values()])),
        "samples/per_task": n / len(by_task),
        "samples/repeat_expression_frac": float(np.mean([repeats_expression(s["completion"])
                                                         for s in samples])),
        "samples/top_program_share": float(np.mean([
            collections.Counter(c).most_common(1)[0][1] / len(c) for c in by_task.values()])),
        "samples/mean_lines": float(np.mean([len(s["completion"].strip("\n").splitlines())
                                             for s in samples])),
    }
    for st in STATUSES:
        out[f"samples/{st}"] = status.get(st, 0) / n
    return out


class FinishedRun:
    """A finished run directory: its metrics rows, summary and held-out samples."""

    def __init__(self, path: str, label: str | None = None):
        if not os.path.isdir(path):
            raise FileNotFoundError(f"run directory {path!r} does not exist")
        self.path, self.label = path, label or os.path.basename(os.path.normpath(path))
        metrics = os.path.join(path, "metrics.jsonl")
        summary = os.path.join(path, "summary.json")
        if not os.path.exists(summary):
            raise FileNotFoundError(f"{summary} not found: is {path!r} a finished run?")
        with open(summary) as f:
            self.summary: dict[str, Any] = json.load(f)
        self.rows = read_jsonl(metrics) if os.path.exists(metrics) else []
        sp = os.path.join(path, "eval_samples.jsonl")
        self.samples = read_jsonl(sp) if os.path.exists(sp) else []
        self.stats = sample_stats(self.samples)

    def curve(self, key: str, base: FinishedRun | None = None) -> tuple[list[int], list[float]]:
        """(steps, values) of `key` in metrics.jsonl; eval keys start at step 0 with the
        summary's ``<key>_base`` when the run recorded it, else with `base`'s summary."""
        pts = [(r["step"], float(r[key])) for r in self.rows
               if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool)]
        base = self.summary.get(f"{key}_base", base.summary.get(key) if base else None)
        if base is not None and pts and pts[0][0] != 0:
            pts.insert(0, (0, float(base)))
        return [p[0] for p in pts], [p[1] for p in pts]

    def final(self, key: str):
        """The summary's value of `key`, else its last value in metrics.jsonl, else None."""
        if key in self.summary:
            return self.summary[key]
        ys = self.curve(key)[1]
        return ys[-1] if ys else None


def _fmt(v) -> str:
    return "" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))


def table(runs: Sequence[FinishedRun], base: FinishedRun | None) -> str:
    cols = [("greedy pass@1", "eval/pass@1"), ("compile rate", "eval/compile_rate"),
            ("pass@16", "eval/pass@16"), ("KL/seq", "kl/seq_kl"),
            ("distinct / task", "samples/distinct_per_task"),
            ("repeat expr.", "samples/repeat_expression_frac"),
            ("top program share", "samples/top_program_share"),
            ("passed", "samples/passed"), ("wrong answer", "samples/wrong_answer"),
            ("runtime error", "samples/runtime_error"), ("syntax error", "samples/syntax_error")]
    lines = ["| run | " + " | ".join(c for c, _ in cols) + " |",
             "| --- |" + " ---: |" * len(cols)]
    for r in ([base] if base else []) + list(runs):
        vals = [r.stats.get(k) if k.startswith("samples/") else r.final(k) for _, k in cols]
        lines.append(f"| {r.label} | " + " | ".join(_fmt(v) for v in vals) + " |")
    return "\n".join(lines) + "\n"


def programs_report(runs: Sequence[FinishedRun], base: FinishedRun | None, top: int = 5,
                    lost_tasks: int = 5) -> str:
    out = []
    solved_by_base = ({s["task_id"] for s in base.samples if s.get("passed")}
                      if base else set())
    for r in runs:
        if not r.samples:
            continue
        out.append(f"## {r.label}\n\nMost frequent held-out programs (count of "
                   f"{len(r.samples)} samples):\n")
        for prog, n in collections.Counter(s["completion"] for s in r.samples).most_common(top):
            out.append(f"- {n}x\n\n```python\n{prog.rstrip()}\n```\n")
        by_task: dict[str, list[dict]] = collections.defaultdict(list)
        for s in r.samples:
            by_task[s["task_id"]].append(s)
        lost = [t for t in by_task if t in solved_by_base
                and not any(s.get("passed") for s in by_task[t])]
        if base:
            out.append(f"Tasks the base solved in some sample and this run in none: "
                       f"{len(lost)} of {len(by_task)}.\n")
        for t in lost[:lost_tasks]:
            prog, n = collections.Counter(s["completion"] for s in by_task[t]).most_common(1)[0]
            right = next(s["completion"] for s in base.samples
                         if s["task_id"] == t and s.get("passed"))
            out.append(f"- `{t}`: {n} of {len(by_task[t])} samples are\n\n```python\n"
                       f"{prog.rstrip()}\n```\n\n  a passing base sample:\n\n```python\n"
                       f"{right.rstrip()}\n```\n")
    return "\n".join(out)


def plot_curves(path: str, runs: Sequence[FinishedRun], base: FinishedRun | None = None) -> None:
    from matplotlib.ticker import MaxNLocator

    from rlfb_jax.core.metrics import new_figure

    fig, axes = new_figure(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.4))
    for ax, (key, title) in zip(axes, CURVES):
        for r in runs:
            xs, ys = r.curve(key, base if key.startswith("eval/") else None)
            if xs:
                ax.plot(xs, ys, marker="o", ms=3, label=r.label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def plot_outcomes(path: str, runs: Sequence[FinishedRun]) -> None:
    from rlfb_jax.core.metrics import new_figure

    shown = [s for s in STATUSES if any(r.stats.get(f"samples/{s}", 0) > 0 for r in runs)]
    width = 0.8 / max(len(runs), 1)
    fig, ax = new_figure(figsize=(1.6 + 1.3 * len(shown), 3.4))
    x = np.arange(len(shown))
    for i, r in enumerate(runs):
        ax.bar(x + i * width, [r.stats.get(f"samples/{s}", 0.0) for s in shown], width,
               label=r.label)
    ax.set_xticks(x + width * (len(runs) - 1) / 2, [s.replace("_", " ") for s in shown],
                  fontsize=8)
    ax.set_ylabel("fraction of held-out samples")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def compare(paths: Sequence[str], out: str, labels: Sequence[str] | None = None,
            base: str | None = None) -> dict[str, str]:
    """Writes the report files into `out`; returns {name: path}."""
    if labels and len(labels) != len(paths):
        raise ValueError(f"{len(labels)} labels for {len(paths)} runs")
    runs = [FinishedRun(p, labels[i] if labels else None) for i, p in enumerate(paths)]
    base_run = FinishedRun(base, "base") if base else None
    os.makedirs(out, exist_ok=True)
    files = {"table": os.path.join(out, "compare.md"),
             "programs": os.path.join(out, "compare_programs.md"),
             "curves": os.path.join(out, "compare_curves.png"),
             "outcomes": os.path.join(out, "compare_outcomes.png")}
    with open(files["table"], "w") as f:
        f.write(table(runs, base_run))
    with open(files["programs"], "w") as f:
        f.write(programs_report(runs, base_run))
    plot_curves(files["curves"], runs, base_run)
    plot_outcomes(files["outcomes"], ([base_run] if base_run else []) + runs)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="finished run directories")
    ap.add_argument("--out", required=True, help="directory for the report")
    ap.add_argument("--labels", default="", help="comma-separated names, one per run")
    ap.add_argument("--base", default="", help="the base run (drawn as iteration 0)")
    args = ap.parse_args(argv)
    labels = args.labels.split(",") if args.labels else None
    files = compare(args.runs, args.out, labels, args.base or None)
    print(open(files["table"]).read())
    for name, path in files.items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
