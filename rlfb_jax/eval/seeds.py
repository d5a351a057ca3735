"""Results over seeds: one table row per setting, mean and 95% interval of each metric.

    python -m rlfb_jax.eval.seeds runs/rl_study/graded_s0 runs/rl_study/graded_s1 \\
        runs/rl_study/filtered_bc_s0 ... [--metrics eval/pass@1 eval/compile_rate] \\
        [--out table.md] [--plot table.png] [--paired graded]

Runs are grouped by their directory name without the ``_s<seed>`` suffix; each group's
row gives, per metric of summary.json (a metric summary.json lacks: its last logged value
in metrics.jsonl; ``kl`` is the last logged ``kl/seq_kl``, the KL to the base per sequence
of the last iteration's samples, measured when they were drawn; ``<metric>:gain`` is the
metric minus its ``<metric>_base`` in summary.json, the run's gain over the model it started
from, for comparing runs whose bases differ), the mean over its runs and
a 95% Student-t interval (mean +- t_{0.975, n-1} * sd / sqrt(n)), plus n and the seeds. A
group of one run gets no interval: a single run is not a result. A run directory that has
started but not finished (a config.json or metrics.jsonl, no summary.json) is left out of
the table and named on stderr, so ``runs/study/*`` can be tabulated while runs go on.

``--paired REF`` adds a second table: each other setting minus setting REF, seed by seed
(runs with the same seed share their first samples when they start from one base, so
the difference of a pair cancels what the seeds share), over the seeds both have, with
the mean, its 95% t interval and the per-seed differences. Settings with no seed in
common with REF get no row.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Sequence

DEFAULT_METRICS = ("eval/pass@1", "eval/pass@16", "eval/compile_rate", "kl", "time/total_s")
KL_KEY = "kl/seq_kl"  # logged by PG/PPO each iteration, from the rollout (before the update)
_SEED = re.compile(r"^(.*)_s(\d+)$")
GAIN = ":gain"  # "eval/pass@1:gain" = eval/pass@1 - eval/pass@1_base


def _last_logged(path: str, key: str) -> float | None:
    value = None
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if key in row:
                    value = row[key]
    return value


def run_values(run: str, metrics: Sequence[str]) -> dict[str, float]:
    """The metrics of one finished run (``kl``: the last logged ``kl/seq_kl``;
    ``<metric>:gain``: the metric minus ``<metric>_base``; a metric summary.json lacks: its
    last logged value)."""
    path = os.path.join(run, "summary.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{run}: no summary.json (not a finished run directory)")
    with open(path) as f:
        summary = json.load(f)

    def value(key):
        v = summary.get(key)
        if v is None:
            v = _last_logged(os.path.join(run, "metrics.jsonl"), key)
        return v

    out = {}
    for m in metrics:
        if m.endswith(GAIN):
            key = m[:-len(GAIN)]
            v, base = value(key), value(key + "_base")
            v = None if v is None or base is None else float(v) - float(base)
        else:
            v = value(KL_KEY if m == "kl" else m)
        if v is not None:
            out[m] = float(v)
    return out


def interval(values: Sequence[float]) -> tuple[float, float | None]:
    """(mean, half-width of the 95% Student-t interval; None for fewer than 2 values)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    from scipy.stats import t

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def group_runs(runs: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """{group: [(seed, run)]} by the ``_s<seed>`` suffix of each run's directory name."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for run in runs:
        name = os.path.basename(os.path.normpath(run))
        m = _SEED.match(name)
        group, seed = (m.group(1), m.group(2)) if m else (name, "?")
        groups.setdefault(group, []).append((seed, run))
    return groups


def collect(runs: Sequence[str], metrics: Sequence[str],
            read: dict[str, dict[str, float]] | None = None) -> dict[str, dict]:
    """{group: {"seeds": [seed], m: [value per run that has m]}} in the order given;
    ``read`` maps runs to their `run_values` when the caller has them already."""
    read = read or {run: run_values(run, metrics) for run in runs}
    out = {}
    for group, members in group_runs(runs).items():
        values = [read[run] for _, run in members]
        out[group] = {"seeds": [s for s, _ in members],
                      **{m: [v[m] for v in values if m in v] for m in metrics}}
    return out


def _number_format(metric: str, sign: bool = False) -> str:
    """Seconds as whole numbers, everything else to 3 decimals."""
    return "{:" + ("+" if sign else "") + (".0f}" if metric.startswith("time/") else ".3f}")


def table(runs: Sequence[str], metrics: Sequence[str] = DEFAULT_METRICS,
          collected: dict[str, dict] | None = None) -> str:
    """The markdown table (see the module docstring); `collected` is `collect(runs, metrics)`
    when the caller has it already."""
    got_all = collect(runs, metrics) if collected is None else collected
    head = "| setting | n | seeds | " + " | ".join(metrics) + " |"
    lines = [head, "|" + " --- |" * (3 + len(metrics))]
    for group, got in got_all.items():
        cells = []
        for m in metrics:
            vs = got[m]
            if not vs:
                cells.append("-")
                continue
            mean, half = interval(vs)
            fmt = _number_format(m)
            cells.append(fmt.format(mean) + ("" if half is None else " ± " + fmt.format(half)))
        seeds = ",".join(got["seeds"])
        lines.append(f"| {group} | {len(got['seeds'])} | {seeds} | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines) + "\n"


def paired_table(runs: Sequence[str], metrics: Sequence[str], ref: str,
                 read: dict[str, dict[str, float]] | None = None) -> str:
    """The markdown table of ``--paired ref`` (see the module docstring)."""
    groups = group_runs(runs)
    if ref not in groups:
        raise ValueError(f"--paired {ref}: no run of that setting among "
                         f"{', '.join(groups)} (runs are named <setting>_s<seed>)")
    read = read or {run: run_values(run, metrics) for run in runs}
    by_seed = {g: {seed: read[run] for seed, run in members if seed != "?"}
               for g, members in groups.items()}
    lines = [f"| setting minus {ref} | n | seeds | " + " | ".join(metrics) + " |",
             "|" + " --- |" * (3 + len(metrics))]
    for g, vals in by_seed.items():
        seeds = sorted(set(vals) & set(by_seed[ref]), key=int)
        if g == ref or not seeds:
            continue
        cells = []
        for m in metrics:
            diffs = [vals[s][m] - by_seed[ref][s][m] for s in seeds
                     if m in vals[s] and m in by_seed[ref][s]]
            if not diffs:
                cells.append("-")
                continue
            mean, half = interval(diffs)
            fmt, signed = _number_format(m), _number_format(m, sign=True)
            cells.append(signed.format(mean) + ("" if half is None else " ± " + fmt.format(half))
                         + (" (" + ", ".join(signed.format(d) for d in diffs) + ")"
                            if len(diffs) > 1 else ""))
        lines.append(f"| {g} | {len(seeds)} | {','.join(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(runs: Sequence[str], metrics: Sequence[str], path: str,
         collected: dict[str, dict] | None = None) -> None:
    """One panel per metric: a bar per setting at its mean, the 95% t interval as a whisker
    (none for a single run) and every seed's value as a dot, so one run is seen as one run."""
    from rlfb_jax.core.metrics import new_figure, save_figure

    got = collect(runs, metrics) if collected is None else collected
    groups = list(got)[::-1]  # the first setting on top
    fig, axes = new_figure(1, len(metrics), figsize=(3.2 * len(metrics) + 1.5,
                                                     0.45 * len(groups) + 1.2),
                           sharey=True, squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for y, g in enumerate(groups):
            vs = got[g][m]
            if not vs:
                continue
            mean, half = interval(vs)
            ax.barh(y, mean, color="#9ecae1", height=0.6)
            if half is not None:
                ax.errorbar(mean, y, xerr=half, color="black", capsize=3, lw=1)
            ax.plot(vs, [y] * len(vs), "o", color="#08519c", ms=3)
        ax.set_title(m, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(groups)),
                          [f"{g} (n={len(got[g]['seeds'])})" for g in groups], fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def unfinished(run: str) -> bool:
    """Whether `run` is a run directory that has started and not finished."""
    return (not os.path.isfile(os.path.join(run, "summary.json"))
            and any(os.path.isfile(os.path.join(run, f))
                    for f in ("config.json", "metrics.jsonl")))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="finished run directories named <setting>_s<seed>")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS))
    p.add_argument("--out", default="", help="also write the table to this file")
    p.add_argument("--plot", default="", help="also draw the settings per metric (a .png)")
    p.add_argument("--paired", default="", metavar="REF",
                   help="also print each setting minus setting REF, seed by seed")
    args = p.parse_args(argv)
    pending = [r for r in args.runs if unfinished(r)]
    runs = [r for r in args.runs if r not in pending]  # each run's files read once
    if pending:
        print(f"left out, not finished: {', '.join(pending)}", file=sys.stderr)
    if not runs:
        print("error: none of the runs has finished (no summary.json)", file=sys.stderr)
        return 2
    try:
        read = {r: run_values(r, args.metrics) for r in runs}  # each run read once
        got = collect(runs, args.metrics, read)
        text = table(runs, args.metrics, got)
        if args.paired:
            text += "\n" + paired_table(runs, args.metrics, args.paired, read)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(text, end="")
    if args.plot:
        plot(runs, args.metrics, args.plot, got)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
