"""ReST-EM's records: the E-step's selection on disk (resumable), the summary and the
per-iteration plot (`rlfb_jax.algos.rest_em`)."""

from __future__ import annotations

import json
import os

import numpy as np
from etils import epath

from rlfb_jax.algos import rest_em_data as red
from rlfb_jax.core.rundir import is_main_process


def _write_json(path: str, obj) -> None:
    tmp = epath.Path(path + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)  # atomic: a killed run never leaves half a file


def save_estep(idir: str, tasks, kept, metrics) -> None:
    """``iter<i>/kept.jsonl`` (one kept sample per line) and ``iter<i>/estep.json``."""
    if not is_main_process():
        return
    epath.Path(idir).mkdir(parents=True, exist_ok=True)
    with epath.Path(idir, "kept.jsonl").open("w") as f:
        for s in kept:
            f.write(json.dumps({"task_id": tasks[s.task_index].task_id,
                                "task_index": s.task_index, "reward": s.reward,
                                "completion": s.completion,
                                "token_ids": list(s.token_ids)}) + "\n")
    _write_json(os.path.join(idir, "estep.json"),
                {"metrics": metrics, "task_ids": [t.task_id for t in tasks],
                 "kept": [[s.task_index, s.completion, s.reward, list(s.token_ids)]
                          for s in kept]})


def load_estep(idir: str, tasks):
    """(kept, metrics) of a finished E-step, or None when there is none for these tasks."""
    path = os.path.join(idir, "estep.json")
    if not epath.Path(path).exists():
        return None
    d = json.loads(epath.Path(path).read_text())
    if d["task_ids"] != [t.task_id for t in tasks]:
        return None
    kept = [red.Sample(int(i), c, float(r), tuple(ids)) for i, c, r, ids in d["kept"]]
    return kept, d["metrics"]


# ------------------------------------------------------------------------------------ loop


def iteration_metrics(i: int, entry: dict) -> dict:
    """Summary keys of iteration i: ``rest_em/iter<i>/<name>`` (pass@1, pass@16, kept,
    train_solve_rate, valid_pass@1, time/estep_s, ...)."""
    out = {}
    for k, v in entry.items():
        if k == "valid/pass@1":
            name = "valid_pass@1"
        elif k.startswith(("eval/", "estep/", "rest_em/")):
            name = k.split("/", 1)[1]
        else:
            name = k
        out[f"rest_em/iter{i}/{name}"] = v
    return out


def summarize(base_summary: dict, history: list[dict], base_valid: float, best: int,
             stopped: bool, iterations: int) -> dict:
    out: dict = {}
    for k, v in base_summary.items():
        if k.startswith("eval/") and "/errors/" not in k:
            out[f"{k}_base"] = v
    out["rest_em/valid_pass@1_base"] = base_valid
    for i, entry in enumerate(history, start=1):
        out.update(iteration_metrics(i, entry))
    out["rest_em/best_iter"] = best
    out["rest_em/iterations_run"] = len(history)
    out["rest_em/stopped_early"] = bool(stopped and len(history) < iterations)
    # The result: the held-out metrics of the iterate chosen by validation.
    chosen = history[best - 1] if best > 0 else {k: v for k, v in base_summary.items()}
    for k, v in chosen.items():
        if k.startswith("eval/") and "/errors/" not in k:
            out[k] = v
    return out


def plot_iterations(path: str, base_summary: dict, history: list[dict], base_valid: float):
    """rest_em.png: pass rates per iteration (0 = base), kept samples, held-out pass@k per
    iteration, and time per phase."""
    from rlfb_jax.core.metrics import new_figure, save_figure

    its = list(range(len(history) + 1))
    fig, axes = new_figure(1, 4, figsize=(18, 3.8))
    a = axes[0]
    a.plot(its, [base_summary.get("eval/pass@1", np.nan)] + [h["eval/pass@1"] for h in history],
           marker="o", label="held-out greedy pass@1")
    a.plot(its, [base_valid] + [h["valid/pass@1"] for h in history], marker="s",
           label="validation greedy pass@1")
    a.plot(its[1:], [h["rest_em/train_solve_rate"] for h in history], marker="^",
           label="train solve rate (E-step)")
    a.set_xlabel("iteration (0: base)")
    a.set_ylim(0, 1)
    a.set_xticks(its)
    a.legend(fontsize=7)
    a.grid(alpha=0.3)
    b = axes[1]
    b.bar(its[1:], [h["rest_em/kept"] for h in history], label="kept")
    b.plot(its[1:], [h["estep/positive"] for h in history], "k.-", label="positive")
    b.set_xlabel("iteration")
    b.set_title("E-step samples", fontsize=9)
    b.set_xticks(its[1:])
    b.legend(fontsize=7)
    c = axes[2]
    rows = [("base", base_summary)] + [(f"iter {i}", h) for i, h in enumerate(history, 1)]
    for name, m in rows:
        ks = sorted(int(k.split("@")[1]) for k in m
                    if k.startswith("eval/pass@") and k != "eval/pass@1")
        if not ks:
            continue
        vals = [m.get("eval/sampled_pass@1", np.nan)] + [m[f"eval/pass@{k}"] for k in ks]
        c.plot([1] + ks, vals, marker="o", label=name,
               ls="--" if name == "base" else "-")
    c.set_xscale("log", base=2)
    c.set_xlabel("k")
    c.set_ylabel("held-out pass@k (sampled)")
    c.set_ylim(0, 1)
    c.legend(fontsize=7)
    c.grid(alpha=0.3)
    d = axes[3]
    phases = ["estep_s", "mstep_s", "valid_s", "eval_s"]
    bottom = np.zeros(len(history))
    for ph in phases:
        vals = np.array([h.get(f"time/{ph}", 0.0) for h in history])
        d.bar(its[1:], vals, bottom=bottom, label=ph[:-2])
        bottom += vals
    d.set_xlabel("iteration")
    d.set_ylabel("seconds")
    d.set_xticks(its[1:])
    d.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
