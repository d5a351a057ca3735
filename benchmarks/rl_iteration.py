"""RL iteration time split and hiding ratio: the real PPO loop, overlapped vs serial execution.

    python benchmarks/rl_iteration.py [--base_workdir DIR] [--prompts 256] [--iterations 4]
    python benchmarks/rl_iteration.py --prompts 4096 --iterations 6   # the experiment's size
    python benchmarks/rl_iteration.py --quick     # about a minute: :smoke sizes, own smoke base

Runs ``python -m rlfb_jax.main --config experiments/synthetic_ppo.py`` (the real loop of
`rlfb_jax.algos.ppo`, as a user runs it) twice per round, in fresh workdirs:

* ours ("overlapped"): the experiment's own ``rl.chunk_prompts``, so chunk i's programs run
  in the executor pool while chunk i+1 is sampled;
* baseline ("serial"): ``--config.rl.chunk_prompts`` = ``rl.prompts_per_iter``, one
  sampling call for the whole iteration, so execution cannot overlap sampling.

Both take ``--prompts`` prompts per iteration (default 256 of the experiment's 4,096, so
that the whole script takes a few minutes on 2 cores) with the experiment's chunk size,
samples per prompt and minibatch size; the update keeps the experiment's share of the rows
(``update_rows`` / (prompts x samples)), so sampling, execution and update keep their
proportions.

Intermediate evaluation is off and the final one shrunk to greedy on 8 tasks (it is outside
the iterations either way). The loop logs ``time/*`` per iteration to metrics.jsonl; this
script reads them, skipping the first iteration of each run (``--skip``: it compiles),
and reports the split sample / execute_wait / update / other (other = iteration - the
three: submitting, decoding, rewards, batch building; the loop's own checkpointing and
logging come after the iteration clock stops) and

    hiding ratio = sum(iteration time) / sum(sample + update time)   (target <= 1.15)

Prints ``hiding_ratio=X`` (ours) and ``ratio_vs_serial=Y`` = serial mean iteration time /
ours (> 1: overlapping helps).

The sampler compiles once per prompt-length bucket, so an iteration whose chunk has a
longer longest prompt than any before compiles again: with the full config that happens in
iteration 1 (buckets 64 and 80) and next at iteration 9 (96), so the default 6 iterations
measure steady state at that size; at the default 256 prompts a later iteration may still
meet a new bucket (its sample time then stands out in the per-iteration lines). The :smoke
sizes (2 prompts a chunk) hit new buckets in every iteration, so ``--quick`` numbers include
compile time and only check that the script works.

The base model: ``--base_workdir`` is a finished run of experiments/synthetic_sft.py (the
same config as synthetic_ppo.py's ``config.base``; checked); it is copied into the temp dir
so the original is never written to. Without it the base is trained first, without its
final evaluation (about 2 minutes on 2 cores; ``--quick`` trains the :smoke base in seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

PARTS = ("sample", "execute_wait", "update")


def main_cmd(config: str, workdir: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "rlfb_jax.main", f"--config={os.path.join(REPO, config)}",
            f"--workdir={workdir}", *overrides]


def run_main(cmd: list[str], log_path: str) -> float:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    t = time.perf_counter()
    with open(log_path, "w") as log:
        out = subprocess.run(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if out.returncode:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{tail}")
    return time.perf_counter() - t


def _json(config) -> dict:
    return json.loads(config.to_json_best_effort())


def check_base(base_dir: str, arg: str) -> None:
    """The base run must be synthetic_sft.py's config (the PPO run regenerates its data and
    loads its checkpoint by that config)."""
    from experiments import synthetic_sft

    path = os.path.join(base_dir, "config.json")
    if not os.path.exists(os.path.join(base_dir, "summary.json")) or not os.path.exists(path):
        sys.exit(f"--base_workdir {base_dir}: not a finished run (no summary.json/config.json)")
    with open(path) as f:
        theirs = json.load(f)
    ours = _json(synthetic_sft.get_config(arg))
    for key in ("model", "data"):
        if theirs.get(key) != ours[key]:
            sys.exit(f"--base_workdir {base_dir}: its config.{key} differs from "
                     f"experiments/synthetic_sft.py{':' + arg if arg else ''}")


def iteration_times(workdir: str, skip: int = 1) -> list[dict[str, float]]:
    """Per-iteration time/* records of a run, without the first `skip` (compiling) ones."""
    from rlfb_jax.core.metrics import read_jsonl

    rows = [r for r in read_jsonl(os.path.join(workdir, "metrics.jsonl"))
            if "time/iteration_s" in r]
    rows.sort(key=lambda r: r["step"])
    return [{p: float(r.get(f"time/{p}_s", 0.0)) for p in PARTS}
            | {"iteration": float(r["time/iteration_s"])} for r in rows[skip:]]


def summarize(name: str, its: list[dict[str, float]]) -> dict[str, float]:
    mean = {k: float(np.mean([it[k] for it in its])) for k in (*PARTS, "iteration")}
    mean["other"] = mean["iteration"] - sum(mean[p] for p in PARTS)
    mean["hiding"] = mean["iteration"] / max(mean["sample"] + mean["update"], 1e-9)
    split = "  ".join(f"{k} {mean[k]:6.2f}s ({100 * mean[k] / mean['iteration']:4.1f}%)"
                      for k in (*PARTS, "other"))
    print(f"{name:10s} iteration {mean['iteration']:6.2f}s over {len(its)} iterations: {split}  "
          f"hiding ratio {mean['hiding']:.3f}")
    return mean


def scale_iteration(rl, prompts: int):
    """(rl with `prompts` per iteration, the overrides that make it): the experiment's chunk
    size, samples per prompt and minibatch size, and its share of the rows in the update."""
    rows = int(rl.prompts_per_iter) * int(rl.n_samples)
    update = int(rl.update_rows) or rows
    mb_rows = update // int(rl.minibatches)
    new_update = round(update * prompts / int(rl.prompts_per_iter) / mb_rows) * mb_rows
    if prompts < int(rl.chunk_prompts) or new_update < mb_rows:
        sys.exit(f"--prompts {prompts}: at least {int(rl.chunk_prompts)} (one chunk) and "
                 f"enough for one minibatch of {mb_rows} update rows")
    scaled = {"prompts_per_iter": prompts, "update_rows": new_update,
              "minibatches": new_update // mb_rows}
    rl = rl.copy_and_resolve_references()
    rl.unlock()
    rl.update(scaled)
    return rl, scaled


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base_workdir", default="",
                    help="a finished experiments/synthetic_sft.py run (default: train one)")
    ap.add_argument("--iterations", type=int, default=4, help="PPO iterations per run "
                    "(the first is compile time and not counted)")
    ap.add_argument("--prompts", type=int, default=256,
                    help="prompts per iteration (the experiment: 4096)")
    ap.add_argument("--skip", type=int, default=1,
                    help="leading iterations of each run not counted (compilation)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run ours and the serial baseline alternately this many times")
    ap.add_argument("--keep", default="", help="keep the run directories here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke check: synthetic_ppo.py:smoke, its own smoke base, 2 iterations")
    args = ap.parse_args(argv)
    from experiments import synthetic_ppo

    arg = "smoke" if args.quick else ""
    iterations = 2 if args.quick else args.iterations
    if iterations <= args.skip:
        sys.exit(f"--iterations must be > --skip ({args.skip}): those iterations compile")
    rl = synthetic_ppo.get_config(arg).rl
    root = args.keep or tempfile.mkdtemp(prefix="rl_iteration_")
    os.makedirs(root, exist_ok=True)
    base = os.path.join(root, "base")
    if args.base_workdir and not args.quick:
        check_base(args.base_workdir, arg)
        if not os.path.exists(base):
            shutil.copytree(args.base_workdir, base)
    else:
        sft = "experiments/synthetic_sft.py" + (":smoke" if args.quick else "")
        print(f"training the base ({sft}) into {base} ...", flush=True)
        run_main(main_cmd(sft, base, "--config.eval.num_tasks=0"), os.path.join(root, "base.log"))

    config = "experiments/synthetic_ppo.py" + (":smoke" if args.quick else "")
    common = [f"--config.base_workdir={base}", f"--config.rl.iterations={iterations}",
              "--config.eval.every=0", "--config.eval.num_tasks=8", "--config.eval.n_samples=1"]
    if not args.quick:
        rl, scaled = scale_iteration(rl, args.prompts)
        common += [f"--config.rl.{k}={v}" for k, v in scaled.items()]
    variants = {
        "overlapped": [],
        "serial": [f"--config.rl.chunk_prompts={int(rl.prompts_per_iter)}"],
    }
    times: dict[str, list] = {k: [] for k in variants}
    for r in range(args.rounds):
        for name, extra in variants.items():
            wd = os.path.join(root, f"{name}{r}")
            shutil.rmtree(wd, ignore_errors=True)
            wall = run_main(main_cmd(config, wd, *common, *extra), wd + ".log")
            times[name] += iteration_times(wd, args.skip)
            print(f"round {r} {name}: {wall:.0f} s wall for the whole run", flush=True)

    print(f"{config}: {int(rl.prompts_per_iter)} prompts x {int(rl.n_samples)} samples per "
          f"iteration, chunks of {int(rl.chunk_prompts)} prompts (serial: all at once), "
          f"{int(rl.workers)} executor workers; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}")
    ours = summarize("overlapped", times["overlapped"])
    serial = summarize("serial", times["serial"])
    print(f"hiding_ratio={ours['hiding']:.3f}")
    print(f"ratio_vs_serial={serial['iteration'] / ours['iteration']:.3f}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
