"""All three method families from one base model, in one command (``config.algo = "demo"``).

    python -m rlfb_jax.main --config experiments/demo.py --workdir runs/demo

Stages, each an ordinary experiment config in the demo config and an ordinary run directory
under WORKDIR:

    base      SFT of the synthetic base model           (config.base     -> WORKDIR/base)
    lever     verifier training + reranking of the base (config.lever    -> WORKDIR/lever)
    ppo       PPO from execution feedback               (config.ppo      -> WORKDIR/ppo)
    rest_em   ReST-EM (expert iteration)                (config.rest_em  -> WORKDIR/rest_em)

Every later stage starts from WORKDIR/base. A finished stage (its summary.json exists) is
read back instead of re-run, so re-running the demo after an interruption continues where
it stopped; each stage also resumes from its own checkpoints. Any stage key can be
overridden on the command line, e.g. ``--config.ppo.rl.iterations=10``; a stage listed in
``--config.skip`` (comma-separated) is left out.

Writes demo.md (the table), demo.png (pass@1 and compile rate per stage) and summary.json
with ``demo/<stage>/pass@1``, ``demo/<stage>/compile_rate`` and ``demo/<stage>/time_s``.
"""

from __future__ import annotations

import logging
import os
import time

from etils import epath

from rlfb_jax.algos import register_algo
from rlfb_jax.algos.driver import Driver, run
from rlfb_jax.core.rundir import is_main_process

log = logging.getLogger("rlfb_jax")

STAGES = ("base", "lever", "ppo", "rest_em")
LABELS = {"base": "base (greedy)", "lever": "base + LEVER @{n}", "ppo": "PPO",
          "rest_em": "ReST-EM"}


def stage_result(stage: str, summary: dict, n: int = 16) -> dict[str, float]:
    """(pass@1, compile_rate) of a stage's summary: the greedy program's, or for LEVER the
    reranked pick among n samples."""
    if stage == "lever":
        return {"pass@1": summary.get(f"rerank/lever@{n}", float("nan")),
                "compile_rate": summary.get(f"rerank_compile/lever@{n}", float("nan"))}
    return {"pass@1": summary.get("eval/pass@1", float("nan")),
            "compile_rate": summary.get("eval/compile_rate", float("nan"))}


def _fmt(v) -> str:
    return "-" if v is None or v != v else f"{v:.3f}"


def label(stage: str, n: int = 16, rl=None) -> str:
    """The stage's row name; for PPO with its ``rl`` config, what it learns from: successes
    only (advantages floored, filtered behaviour cloning inside the loop) or graded rewards
    with failures pushed down."""
    name = LABELS[stage].format(n=n)
    if stage == "ppo" and rl is not None:
        floor = rl.get("adv_floor")
        name += (f", successes only (advantages >= {floor:g})" if floor is not None
                 else ", failures pushed down")
    return name


def markdown_table(rows: list[tuple[str, dict, float]], n: int = 16, rl=None) -> str:
    lines = ["| stage | held-out greedy pass@1 | compile rate | wall time |",
             "| --- | ---: | ---: | ---: |"]
    for stage, res, secs in rows:
        lines.append(f"| {label(stage, n, rl)} | {_fmt(res['pass@1'])} | {_fmt(res['compile_rate'])} "
                     f"| {secs / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def plot(path: str, rows: list[tuple[str, dict, float]], n: int = 16, rl=None) -> None:
    import numpy as np

    from rlfb_jax.core.metrics import new_figure, save_figure

    names = [label(s, n, rl) for s, _, _ in rows]
    x = np.arange(len(rows))
    fig, axes = new_figure(1, 2, figsize=(10, 3.6))
    for ax, key, title in ((axes[0], "pass@1", "held-out pass@1"),
                           (axes[1], "compile_rate", "compile rate")):
        vals = [r[key] for _, r, _ in rows]
        ax.bar(x, [0 if v != v else v for v in vals], color="C0")
        for i, v in enumerate(vals):
            ax.text(i, (0 if v != v else v) + 0.01, _fmt(v), ha="center", fontsize=8)
        ax.set_xticks(x, names, rotation=15, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def _stage_config(config, stage: str, base_dir: str):
    sub = config[stage]
    sub.base = config.base  # every stage starts from the same base model
    sub.base_workdir = base_dir
    return sub


@register_algo("demo")
def run_stages(driver: Driver) -> dict:
    """Every stage not in ``config.skip``, in order; then the table and the plot."""
    config, workdir = driver.config, driver.workdir
    skip = {s.strip() for s in str(config.get("skip", "")).split(",") if s.strip()}
    unknown = skip - set(STAGES)
    if unknown:
        raise ValueError(f"config.skip: unknown stage(s) {sorted(unknown)}; stages: {STAGES}")
    base_dir = os.path.join(workdir, "base")
    ns = tuple(config.lever.lever.ns)
    n = 16 if 16 in ns else max(ns)  # the LEVER row: n = 16 samples per task
    rows, summary = [], {}
    t_start = time.time()
    for i, stage in enumerate(s for s in STAGES if s not in skip):
        sdir = os.path.join(workdir, stage)
        cfg = config.base if stage == "base" else _stage_config(config, stage, base_dir)
        algo = "sft" if stage == "base" else cfg.algo
        done = epath.Path(sdir, "summary.json").exists()
        log.info("demo stage %d/%d: %s (%s)%s", i + 1, len(STAGES) - len(skip), stage, algo,
                 " - finished earlier, reading it back" if done else "")
        t0 = time.time()
        s = run(cfg, sdir)
        secs = float(s.get("time/total_s", time.time() - t0))  # the stage's own clock
        res = stage_result(stage, s, n)
        rows.append((stage, res, secs))
        summary.update({f"demo/{stage}/{k}": v for k, v in res.items()})
        summary[f"demo/{stage}/time_s"] = secs
        log.info("demo stage %s: pass@1 %s, compile rate %s, %.1f min", stage,
                 _fmt(res["pass@1"]), _fmt(res["compile_rate"]), secs / 60)
    summary["demo/total_s"] = sum(secs for _, _, secs in rows)
    summary["demo/wall_s"] = time.time() - t_start
    table = markdown_table(rows, n, config.ppo.rl)
    if is_main_process():
        n_test = int(config.base.eval.num_tasks)
        epath.Path(workdir, "demo.md").write_text(
            f"Held-out synthetic test split ({n_test} tasks); every method starts from the "
            f"same base model.\n\n{table}\nTotal: {summary['demo/total_s'] / 60:.1f} min.\n")
        plot(os.path.join(workdir, "demo.png"), rows, n, config.ppo.rl)
    print("\n" + table, flush=True)
    return driver.finish(summary)
