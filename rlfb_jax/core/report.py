"""The run's face: one overview figure and a short ``report.md`` per run directory.

    python -m rlfb_jax.core.report RUN_DIR

Reads ``metrics.jsonl``, ``summary.json`` and ``config.json`` of a run of any algorithm (sft,
pg/ppo, lever, rest_em, demo) and writes into the run directory:

* ``overview.png``: the panels the run has data for, in this order: held-out greedy pass@1
  per step (SFT) or iteration (RL) against the base model (dashed); reward and KL to the
  reference (an SFT run: its training loss); the outcome shares of held-out samples
  (``eval/errors/*``), the base's next to the final model's; and the method's own panel:
  LEVER's accuracy of the picked program against n per reranker, ReST-EM's held-out and
  validation pass@1 per iteration, the demo's pass@1 per stage;
* ``report.md``: the summary table (each key metric of the base and the final model,
  training signals first and last, wall time), the method's table, and links to the
  overview and every other figure and report of the run.

Host only: reads files, draws with matplotlib (Agg, via `new_figure`), never imports jax.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from etils import epath

from rlfb_jax.data.jsonl import read_jsonl

ERRORS = "eval/errors/"
EVAL_KEYS = (("eval/pass@1", "held-out greedy pass@1"), ("eval/compile_rate", "greedy compile rate"),
             ("eval/sampled_pass@1", "sampled pass@1"),
             ("eval/sample_pass_rate", "sample pass rate"),
             ("eval/sample_compile_rate", "sample compile rate"))
TRAIN_KEYS = (("train/loss", "training loss"), ("reward/total", "reward (train samples)"),
              ("estep/reward/total", "reward (E-step samples)"),
              ("kl/seq_kl", "KL to the reference (nats / sequence)"),
              ("rl/pass_rate", "train sample pass rate"))


@dataclasses.dataclass
class Run:
    """What a run directory holds: metrics rows, summary and config (each may be empty)."""

    path: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    config: dict[str, Any]

    @property
    def algo(self) -> str:
        return str(self.config.get("algo", "?"))

    def curve(self, key: str) -> tuple[list[int], list[float]]:
        """(steps, values) of `key` over the metrics rows (numbers only)."""
        pts = [(r["step"], float(r[key])) for r in self.rows
               if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool)]
        return [s for s, _ in pts], [v for _, v in pts]

    def final(self, key: str):
        """The summary's value of `key`, else its last logged value, else None."""
        if key in self.summary:
            return self.summary[key]
        ys = self.curve(key)[1]
        return ys[-1] if ys else None


@dataclasses.dataclass
class Panel:
    """One panel's data: lines (label -> (xs, ys)), dashed horizontal reference lines, lines
    on a second y axis, or bars (bar -> {segment: value}; stacked shares or grouped)."""

    title: str
    xlabel: str = ""
    lines: dict[str, tuple[list, list]] = dataclasses.field(default_factory=dict)
    dashed: dict[str, float] = dataclasses.field(default_factory=dict)
    right: dict[str, tuple[list, list]] = dataclasses.field(default_factory=dict)
    bars: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    stacked: bool = False
    logx: bool = False
    rate: bool = False  # a y axis from 0


def load_run(workdir: str) -> Run:
    """Reads a run directory; raises NotADirectoryError / FileNotFoundError naming it."""
    if epath.Path(workdir).is_file():
        raise NotADirectoryError(f"{workdir!r} is a file, not a run directory (a run "
                                 "directory holds config.json, metrics.jsonl, summary.json)")
    if not epath.Path(workdir).is_dir():
        raise FileNotFoundError(f"run directory {workdir!r} does not exist")

    def read_json(name: str) -> dict[str, Any]:
        path = epath.Path(workdir, name)
        return json.loads(path.read_text()) if path.exists() else {}

    metrics = os.path.join(workdir, "metrics.jsonl")
    run = Run(workdir, read_jsonl(metrics) if epath.Path(metrics).exists() else [],
              read_json("summary.json"), read_json("config.json"))
    if not (run.rows or run.summary or run.config):
        raise FileNotFoundError(f"{workdir!r} is not a run directory: no config.json, "
                                "metrics.jsonl or summary.json")
    return run


def _base_summary(run: Run) -> dict[str, Any]:
    """The summary of the run's base model (``config.base_workdir``), if it is readable."""
    base = run.config.get("base_workdir") or ""
    path = epath.Path(base, "summary.json") if base else None
    return json.loads(path.read_text()) if path and path.exists() else {}


def _outcome_shares(summary: dict[str, Any]) -> dict[str, float]:
    """{outcome: share} of held-out samples from ``eval/errors/*``; passed is the rest."""
    errors = {k[len(ERRORS):]: float(v) for k, v in summary.items()
              if k.startswith(ERRORS) and isinstance(v, int | float)}
    if not errors:
        return {}
    return {"passed": max(0.0, 1.0 - sum(errors.values())), **errors}


def _rerank(summary: dict[str, Any], prefix: str = "rerank/") -> dict[str, tuple[list, list]]:
    """{reranker: (ns, accuracies)} from ``rerank/<method>@<n>``."""
    out: dict[str, list[tuple[int, float]]] = {}
    for key, v in summary.items():
        m = re.fullmatch(re.escape(prefix) + r"([\w.]+)@(\d+)", key)
        if m and isinstance(v, int | float):
            out.setdefault(m.group(1), []).append((int(m.group(2)), float(v)))
    return {k: ([n for n, _ in sorted(p)], [v for _, v in sorted(p)]) for k, p in out.items()}


def _rest_em_iterations(summary: dict[str, Any]) -> list[int]:
    return sorted({int(m.group(1)) for k in summary
                   if (m := re.fullmatch(r"rest_em/iter(\d+)/pass@1", k))})


def _repair_rounds(summary: dict[str, Any]) -> list[int]:
    return sorted({int(m.group(1)) for k in summary
                   if (m := re.fullmatch(r"repair/round(\d+)/pass@1", k))})


def _demo_stages(summary: dict[str, Any]) -> list[str]:
    return [m.group(1) for k in summary if (m := re.fullmatch(r"demo/(\w+)/pass@1", k))]


def panels(run: Run) -> list[Panel]:
    """The overview's panels that have data, in order (see the module docstring)."""
    s, out = run.summary, []
    unit = "step" if run.algo == "sft" else "iteration"
    xs, ys = run.curve("eval/pass@1")
    base = s.get("eval/pass@1_base")
    if xs:
        if base is not None and xs[0] != 0:  # the base model is iteration 0
            xs, ys = [0, *xs], [float(base), *ys]
        p = Panel("held-out greedy pass@1", unit, {"pass@1": (xs, ys)}, rate=True)
        if base is not None:
            p.dashed["base"] = float(base)
        out.append(p)
    reward = next((k for k in ("reward/total", "estep/reward/total") if run.curve(k)[0]), None)
    if reward or run.curve("kl/seq_kl")[0]:
        p = Panel("reward and KL", unit)
        if reward:
            p.lines["reward"] = run.curve(reward)
        if run.curve("kl/seq_kl")[0]:
            p.right["KL / sequence"] = run.curve("kl/seq_kl")
        out.append(p)
    elif run.curve("train/loss")[0]:
        out.append(Panel("training loss", unit, {"loss": run.curve("train/loss")}))
    shares = {"base": _outcome_shares(_base_summary(run)), "final": _outcome_shares(s)}
    if shares["final"]:
        out.append(Panel("held-out sample outcomes", "share of samples",
                         bars={k: v for k, v in shares.items() if v}, stacked=True, rate=True))
    curves = _rerank(s)
    if curves:
        p = Panel("LEVER: accuracy of the picked program", "n (samples per task)", curves,
                  logx=True, rate=True)
        if base is not None:
            p.dashed["base greedy"] = float(base)
        out.append(p)
    iters = _rest_em_iterations(s)
    if iters:
        p = Panel("ReST-EM per iteration", "iteration", rate=True)
        for key, label in (("pass@1", "held-out pass@1"), ("valid_pass@1", "validation pass@1")):
            pts = [(i, s[f"rest_em/iter{i}/{key}"]) for i in iters if f"rest_em/iter{i}/{key}" in s]
            base = s.get(f"eval/{key}_base" if key == "pass@1" else f"rest_em/{key}_base")
            if base is not None:
                pts.insert(0, (0, base))
            if pts:
                p.lines[label] = ([i for i, _ in pts], [float(v) for _, v in pts])
        out.append(p)
    rounds = _repair_rounds(s)
    if rounds:
        p = Panel("repair vs resampling", "programs executed per task", rate=True)
        for m in ("repair", "resample"):
            p.lines[m] = ([float(s[f"{m}/round{r}/programs"]) for r in rounds],
                          [float(s[f"{m}/round{r}/pass@1"]) for r in rounds])
        if base is not None:
            p.dashed["base greedy"] = float(base)
        out.append(p)
    stages = _demo_stages(s)
    if stages:
        out.append(Panel("held-out greedy pass@1 per stage", bars={
            st: {"pass@1": float(s[f"demo/{st}/pass@1"]),
                 "compile rate": float(s.get(f"demo/{st}/compile_rate", 0.0))}
            for st in stages}, rate=True))
    return out


def _draw(ax, p: Panel) -> None:
    from matplotlib.ticker import MaxNLocator

    colors = iter(f"C{i}" for i in range(10))
    for label, (xs, ys) in p.lines.items():
        ax.plot(xs, ys, marker="o", ms=3, label=label, color=next(colors))
    for label, y in p.dashed.items():
        ax.axhline(y, ls="--", color="gray", lw=1, label=label)
    if p.right:
        ax2 = ax.twinx()
        for label, (xs, ys) in p.right.items():
            ax2.plot(xs, ys, marker="s", ms=3, ls=":", label=label, color=next(colors))
        ax2.set_ylabel("KL", fontsize=8)
        ax2.legend(fontsize=7, loc="lower right")
    if p.bars and p.stacked:
        segments = list(dict.fromkeys(seg for v in p.bars.values() for seg, x in v.items() if x))
        left = [0.0] * len(p.bars)
        for seg in segments:
            widths = [v.get(seg, 0.0) for v in p.bars.values()]
            ax.barh(list(p.bars), widths, left=left, label=seg.replace("_", " "))
            left = [a + b for a, b in zip(left, widths)]
        ax.set_xlim(0, 1)
    elif p.bars:
        groups = list(next(iter(p.bars.values())))
        width = 0.8 / len(groups)
        for j, g in enumerate(groups):
            ax.bar([i + j * width for i in range(len(p.bars))],
                   [v[g] for v in p.bars.values()], width, label=g)
        ax.set_xticks([i + width * (len(groups) - 1) / 2 for i in range(len(p.bars))],
                      list(p.bars), fontsize=8)
    xs = sorted({x for xs, _ in [*p.lines.values(), *p.right.values()] for x in xs})
    if p.logx:
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
    elif xs and len(xs) <= 12:
        ax.set_xticks(xs)
    elif xs:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if p.rate and not p.stacked:
        top = max([y for _, ys in p.lines.values() for y in ys] + list(p.dashed.values())
                  + [v for b in p.bars.values() for v in b.values()] + [0.0])
        ax.set_ylim(0, max(0.05, min(1.0, 1.15 * top)))
    ax.set_title(p.title, fontsize=9)
    ax.set_xlabel(p.xlabel, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def overview_png(run: Run) -> bytes | None:
    """The overview figure as PNG bytes; None when no panel has data."""
    from rlfb_jax.core.metrics import new_figure

    ps = panels(run)
    if not ps:
        return None
    fig, axes = new_figure(1, len(ps), figsize=(4.4 * len(ps), 3.6), squeeze=False)
    for ax, p in zip(axes[0], ps):
        _draw(ax, p)
    fig.suptitle(f"{os.path.basename(os.path.normpath(run.path))} ({run.algo})", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _fmt(v) -> str:
    if v is None:
        return ""
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1),
            *("| " + " | ".join(_fmt(v) if i else str(v) for i, v in enumerate(r)) + " |"
              for r in rows), ""]


def report_md(run: Run, figures: Sequence[str]) -> str:
    """The text of report.md; `figures` are file names in the run directory to link."""
    s = run.summary
    name = os.path.basename(os.path.normpath(run.path))
    out = [f"# {name}", "", f"Algorithm `{run.algo}`, seed {run.config.get('seed', '?')}; "
           "the config is `config.json`, every logged metric `metrics.jsonl`.", ""]
    ks = sorted({int(m.group(1)) for k in s if (m := re.fullmatch(r"eval/pass@(\d+)", k))})
    keys = list(EVAL_KEYS) + [(f"eval/pass@{k}", f"pass@{k}") for k in ks if k != 1]
    rows = [(label, s.get(f"{key}_base"), run.final(key)) for key, label in keys
            if run.final(key) is not None or f"{key}_base" in s]
    if rows:
        out += ["Held-out evaluation of the base model and the final model:", ""]
        out += _table(("metric", "base", "final"), rows)
    train = [(label, run.curve(key)[1][0], run.curve(key)[1][-1]) for key, label in TRAIN_KEYS
             if run.curve(key)[0]]
    if train:
        out += _table(("training signal", "first logged", "last logged"), train)
    out += _method_md(run)
    if isinstance(s.get("time/total_s"), int | float):
        out += [f"Wall time: {s['time/total_s'] / 60:.1f} min.", ""]
    if s.get("eval/compile_rate") == 0 or s.get("demo/base/compile_rate") == 0:
        out += ["> No held-out greedy program compiles, so every pass rate is 0. That is what a "
                "smoke-sized run (`:smoke`, `experiments/smoke.py`: a tiny model trained for "
                "seconds) scores: its numbers test the pipeline and mean nothing about the "
                "method.", ""]
    if "overview.png" in figures:
        out += ["![overview](overview.png)", ""]
    others = [f for f in figures if f != "overview.png"]
    if others:
        out += ["Figures and reports: " + ", ".join(f"[{f}]({f})" for f in others) + ".", ""]
    return "\n".join(out)


def _method_md(run: Run) -> list[str]:
    s, out = run.summary, []
    curves = _rerank(s)
    if curves:
        ns = sorted({n for xs, _ in curves.values() for n in xs})
        out += ["Accuracy of the picked program (held-out) per reranker and n:", ""]
        out += _table(["reranker", *(f"n={n}" for n in ns)],
                      [(m, *(dict(zip(xs, ys)).get(n) for n in ns)) for m, (xs, ys) in curves.items()])
    iters = _rest_em_iterations(s)
    if iters:
        cols = ("pass@1", "valid_pass@1", "kept", "train_solve_rate", "time/iteration_s")
        out += [f"ReST-EM per iteration (best: {s.get('rest_em/best_iter', '?')}):", ""]
        out += _table(("iteration", *cols), [(i, *(s.get(f"rest_em/iter{i}/{c}") for c in cols))
                                             for i in iters])
    rounds = _repair_rounds(s)
    if rounds:
        out += ["Repair vs resampling (means over seeds; diff = repair - resample, 95% "
                "bootstrap interval over tasks):", ""]
        out += _table(("round", "repair pass@1", "programs", "resample pass@1", "programs",
                       "diff", "low", "high"),
                      [(r, *(s.get(f"{m}/round{r}/{c}") for m in ("repair", "resample")
                             for c in ("pass@1", "programs")),
                        *(s.get(f"diff/round{r}/pass@1{x}") for x in ("", "_lo", "_hi")))
                       for r in rounds])
    if "critic/acc" in s:
        out += ["Critic on held-out samples (outcome class at the last program token):", ""]
        keys = sorted(k for k in s if k.startswith("critic/") and k != "critic/acc")
        out += _table(("metric", "value"), [("critic/acc", s["critic/acc"]),
                                            *((k, s[k]) for k in keys)])
        if epath.Path(run.path, "critic.md").exists():
            out += ["Confusion matrix: [critic.md](critic.md).", ""]
    stages = _demo_stages(s)
    if stages:
        out += _table(("stage", "greedy pass@1", "compile rate", "wall time (min)"), [
            (st, s[f"demo/{st}/pass@1"], s.get(f"demo/{st}/compile_rate"),
             s[f"demo/{st}/time_s"] / 60 if f"demo/{st}/time_s" in s else None)
            for st in stages])
        subs = [st for st in stages if epath.Path(run.path, st, "report.md").exists()]
        if subs:
            out += ["Each stage's report: " + ", ".join(f"[{st}]({st}/report.md)" for st in subs)
                    + ".", ""]
    return out


def _write(path: str, data: bytes | str) -> str:
    """The one place this module writes a file (whole, replacing it); returns `path`."""
    epath.Path(path).write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def write_report(workdir: str) -> list[str]:
    """Writes ``overview.png`` (when a panel has data) and ``report.md`` into `workdir`;
    returns the paths written."""
    run = load_run(workdir)
    written = []
    png = overview_png(run)
    if png is not None:
        written.append(_write(os.path.join(workdir, "overview.png"), png))
    figures = sorted(f.name for f in epath.Path(workdir).iterdir()
                     if f.name.endswith((".png", ".md")) and f.name != "report.md")
    written.append(_write(os.path.join(workdir, "report.md"), report_md(run, figures)))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlfb_jax.core.report",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="a run directory (config.json, metrics.jsonl, summary.json)")
    args = ap.parse_args(argv)
    try:
        paths = write_report(args.run_dir)
    except (OSError, ValueError) as e:
        print(f"report: {e}", file=sys.stderr)
        return 2
    print("\n".join(paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
