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

Only what the runs have is shown: a column or panel no run has a value of (the KL of SFT
runs) is left out, and a figure with nothing to draw is not written.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
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
        from etils import epath  # a local directory, or a cloud run's URI (gs://...)

        where = epath.Path(path)
        if where.is_file():
            raise NotADirectoryError(f"{path!r} is a file, not a run directory (a run directory "
                                     f"holds summary.json, metrics.jsonl and config.json)")
        if not where.is_dir():
            raise FileNotFoundError(f"run directory {path!r} does not exist")
        self.path, self.label = path, label or os.path.basename(os.path.normpath(path))
        summary = where / "summary.json"
        if not summary.exists():
            raise FileNotFoundError(f"{summary} not found: is {path!r} a finished run?")
        self.summary: dict[str, Any] = json.loads(summary.read_text())
        metrics, sp = where / "metrics.jsonl", where / "eval_samples.jsonl"
        self.rows = read_jsonl(str(metrics)) if metrics.exists() else []
        self.samples = read_jsonl(str(sp)) if sp.exists() else []
        self.stats = sample_stats(self.samples)

    def curve(self, key: str, base: FinishedRun | None = None) -> tuple[list[int], list[float]]:
        """(steps, values) of `key` in metrics.jsonl; eval keys start at step 0 with the
        summary's ``<key>_base`` when the run recorded it, else with `base`'s summary."""
        # a sampled figure only from evaluations that drew samples (runs logged before
        # greedy-only evaluations stopped writing eval/sample_* have greedy values there)
        sampled = key.startswith("eval/sample_")
        pts = [(r["step"], float(r[key])) for r in self.rows
               if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool)
               and (not sampled or "eval/sampled_pass@1" in r)]
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
    """One row per run; a column no run has a value of is left out."""
    cols = [("greedy pass@1", "eval/pass@1"), ("compile rate", "eval/compile_rate"),
            ("pass@16", "eval/pass@16"), ("KL/seq", "kl/seq_kl"),
            ("distinct / task", "samples/distinct_per_task"),
            ("repeat expr.", "samples/repeat_expression_frac"),
            ("top program share", "samples/top_program_share"),
            ("passed", "samples/passed"), ("wrong answer", "samples/wrong_answer"),
            ("runtime error", "samples/runtime_error"), ("syntax error", "samples/syntax_error")]
    rows = ([base] if base else []) + list(runs)
    vals = [[r.stats.get(k) if k.startswith("samples/") else r.final(k) for _, k in cols]
            for r in rows]
    keep = [j for j in range(len(cols)) if any(v[j] is not None for v in vals)]
    lines = ["| run | " + " | ".join(cols[j][0] for j in keep) + " |",
             "| --- |" + " ---: |" * len(keep)]
    for r, v in zip(rows, vals):
        lines.append(f"| {r.label} | " + " | ".join(_fmt(v[j]) for j in keep) + " |")
    return "\n".join(lines) + "\n"


def _code(program: str) -> str:
    """A program as a markdown code block; a blank one says so instead of an empty block."""
    if not program.strip():
        return "(an empty program)\n"
    return f"```python\n{program.rstrip()}\n```\n"


def programs_report(runs: Sequence[FinishedRun], base: FinishedRun | None, top: int = 5,
                    lost_tasks: int = 5) -> str:
    out = []
    solved_by_base = ({s["task_id"] for s in base.samples if s.get("passed")}
                      if base else set())
    for r in runs:
        if not r.samples:
            out.append(f"## {r.label}\n\nno held-out samples (no eval_samples.jsonl)\n")
            continue
        out.append(f"## {r.label}\n\nMost frequent held-out programs (count of "
                   f"{len(r.samples)} samples):\n")
        for prog, n in collections.Counter(s["completion"] for s in r.samples).most_common(top):
            out.append(f"- {n}x\n\n{_code(prog)}")
        by_task: dict[str, list[dict]] = collections.defaultdict(list)
        for s in r.samples:
            by_task[s["task_id"]].append(s)
        lost = [t for t in by_task if t in solved_by_base
                and not any(s.get("passed") for s in by_task[t])]
        if base and base.samples:
            out.append(f"Tasks the base solved in some sample and this run in none: "
                       f"{len(lost)} of {len(by_task)}.\n")
        for t in lost[:lost_tasks]:
            prog, n = collections.Counter(s["completion"] for s in by_task[t]).most_common(1)[0]
            right = next(s["completion"] for s in base.samples
                         if s["task_id"] == t and s.get("passed"))
            out.append(f"- `{t}`: {n} of {len(by_task[t])} samples are\n\n{_code(prog)}\n"
                       f"  a passing base sample:\n\n{_code(right)}")
    return "\n".join(out)


_LINESTYLES, _HATCHES = ("-", "--", ":", "-."), ("", "//", "..", "xx")


def run_style(i: int) -> dict[str, Any]:
    """Run i's line style: matplotlib's ten default colours, then the same colours dashed,
    dotted and dash-dotted, so up to 40 runs stay apart (the colour cycle alone repeats
    after ten); ``hatch`` is the bars' counterpart of the line style."""
    return {"color": f"C{i % 10}", "linestyle": _LINESTYLES[i // 10 % 4],
            "hatch": _HATCHES[i // 10 % 4]}


def plot_curves(path: str, runs: Sequence[FinishedRun],
                base: FinishedRun | None = None) -> list[str]:
    """Draws one panel per curve that some run logged (an SFT run has no KL: no KL panel);
    returns the keys drawn, and writes nothing when there are none."""
    from matplotlib.ticker import MaxNLocator

    from rlfb_jax.core.metrics import new_figure

    curves = {key: [(r.label, r.curve(key, base if key.startswith("eval/") else None))
                    for r in runs] for key, _ in CURVES}
    shown = [(key, title) for key, title in CURVES if any(xs for _, (xs, _) in curves[key])]
    if not shown:
        return []
    fig, axes = new_figure(1, len(shown), figsize=(4.2 * len(shown), 3.4), squeeze=False)
    for ax, (key, title) in zip(axes[0], shown):
        for i, (label, (xs, ys)) in enumerate(curves[key]):
            if xs:
                style = run_style(i)
                ax.plot(xs, ys, marker="o", ms=3, label=label, color=style["color"],
                        linestyle=style["linestyle"])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return [key for key, _ in shown]


def plot_outcomes(path: str, runs: Sequence[FinishedRun]) -> list[str]:
    """Bars of the held-out samples' outcomes of the runs that have samples; returns the
    statuses drawn (none: no runs with samples, nothing written)."""
    from rlfb_jax.core.metrics import new_figure

    runs = [r for r in runs if r.stats]
    shown = [s for s in STATUSES if any(r.stats.get(f"samples/{s}", 0) > 0 for r in runs)]
    if not shown:
        return []
    width = 0.8 / len(runs)
    fig, ax = new_figure(figsize=(1.6 + 1.3 * len(shown), 3.4))
    x = np.arange(len(shown))
    for i, r in enumerate(runs):
        style = run_style(i)
        ax.bar(x + i * width, [r.stats.get(f"samples/{s}", 0.0) for s in shown], width,
               label=r.label, color=style["color"], hatch=style["hatch"])
    ax.set_xticks(x + width * (len(runs) - 1) / 2, [s.replace("_", " ") for s in shown],
                  fontsize=8)
    ax.set_ylabel("fraction of held-out samples")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return shown


def compare(paths: Sequence[str], out: str, labels: Sequence[str] | None = None,
            base: str | None = None) -> dict[str, str]:
    """Writes the report files into `out`; returns {name: path} of those written (no curves
    figure when no run logged any curve, no outcomes figure when none has samples)."""
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
    for name, drawn in (("curves", plot_curves(files["curves"], runs, base_run)),
                        ("outcomes", plot_outcomes(files["outcomes"],
                                                   ([base_run] if base_run else []) + runs))):
        if not drawn:
            del files[name]
    return files


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="finished run directories")
    ap.add_argument("--out", required=True, help="directory for the report")
    ap.add_argument("--labels", default="", help="comma-separated names, one per run")
    ap.add_argument("--base", default="", help="the base run (drawn as iteration 0)")
    args = ap.parse_args(argv)
    labels = args.labels.split(",") if args.labels else None
    try:
        files = compare(args.runs, args.out, labels, args.base or None)
    except (OSError, ValueError) as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    print(open(files["table"]).read())
    for name, path in files.items():
        print(f"{name}: {path}")
    for name, missing in (("curves", "no run logged a learning curve"),
                          ("outcomes", "no held-out samples (eval_samples.jsonl)")):
        if name not in files:
            print(f"{name}: none, {missing}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
