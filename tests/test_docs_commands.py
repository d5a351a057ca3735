"""Every command in README.md and docs/*.md runs as written, or is skipped on purpose.

A command is a line of a fenced ```bash / ```sh block, or a line of an indented code block
that starts with ``python -m`` or ``pip`` (a line ending in ``\\`` continues on the next).
`SKIP` lists, with the reason, the commands that are not run: templates with placeholders,
the full experiments and the demo (minutes to hours), installs and the test suite itself.
Any other command is run, so a newly documented command is either run or consciously
skipped here:

* `test_every_command_is_run_or_skipped` (fast) checks the list: every skipped command is
  still in the docs, every module a command runs exists, every config it names loads
  (with its ``:arg``), every file a command writes to is relative or under /tmp;
* `test_commands_run_as_written` (slow: five smoke-sized trainings, 2 CPU-minutes; 5.5
  minutes on a busy 2-core machine) runs the others in document order (README first, then docs/ by name) in one
  scratch directory that links ``experiments/``, so relative paths work as from the
  repository root; ``/tmp/`` in a command becomes the scratch directory's ``tmp/``, and a
  fenced block after "Save this as `FILE`" is written to FILE first.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import subprocess
import sys

import pytest
from main_runner import REPO, main_env

DOCS = ["README.md", *sorted(os.path.relpath(p, REPO)
                             for p in glob.glob(os.path.join(REPO, "docs", "*.md")))]

FULL = "a full experiment (minutes to hours on CPU); its :smoke variant runs in the tests"
SKIP = {
    "pip install -e . && python -m rlfb_jax.main --config experiments/demo.py --workdir runs/demo":
        "installs, then the demo (23 minutes); tests/algos/test_demo.py runs demo.py:smoke",
    "pip install -r requirements-dev.txt -e . && python -m pytest":
        "installs, then the whole test suite (.ci/run)",
    "python -m rlfb_jax.main --config experiments/NAME.py --workdir DIR [--config.KEY=VALUE ...]":
        "template",
    "python -m rlfb_jax.evaluate SAMPLES.jsonl --benchmark humaneval|mbpp|PATH "
    "[--problem-file PATH] [--k 1,10,100]":
        "template; tests/executor/test_evaluate.py runs the CLI",
    "python -m rlfb_jax.evaluate SAMPLES.jsonl --benchmark humaneval|mbpp|PATH "
    "[--problem-file PATH] [--k 1,10,100] [--workers N] [--timeout S]":
        "template; tests/executor/test_evaluate.py runs the CLI",
    "python -m rlfb_jax.main --config experiments/synthetic_ppo.py --workdir runs/ppo "
    "# PPO (synthetic_pg.py: PG)": FULL,
    "python -m rlfb_jax.main --config experiments/synthetic_lever.py --workdir runs/lever "
    "# verifier + LEVER": FULL,
    "python -m rlfb_jax.main --config experiments/synthetic_rest_em.py --workdir runs/rest "
    "# ReST-EM": FULL,
    "python -m rlfb_jax.main --config experiments/synthetic_ppo.py --workdir runs/ppo": FULL,
    "python -m rlfb_jax.eval.compare runs/ppo_filtered runs/ppo_compile_nokl "
    "--base runs/ppo_filtered/base --labels filtered,compile_nokl --out runs/compare":
        "needs two full PPO runs; README's compare of two smoke runs runs",
    "python -m rlfb_jax.main --config experiments/synthetic_lever.py --workdir runs/lever "
    "[--config.base_workdir=runs/base]": FULL,
    "python -m rlfb_jax.main --config experiments/synthetic_lever.py:variants "
    "--workdir runs/lever_variants": FULL,
    "python -m rlfb_jax.main --config experiments/synthetic_rest_em.py --workdir runs/rest_em "
    "[--config.base_workdir=runs/base]": FULL,
    "python -m rlfb_jax.main --config experiments/synthetic_repair.py --workdir runs/repair": FULL,
    "python -m rlfb_jax.main --config experiments/synthetic_critic.py:repair "
    "--workdir runs/critic_repair --config.base_workdir=runs/repair/base":
        "needs the full repair base; tests/algos/test_repair.py runs repair,smoke",
    "python -m rlfb_jax.main --config experiments/synthetic_repair.py --workdir runs/critical "
    "--config.base_workdir=runs/repair/base --config.repair.critic_workdir=runs/critic_repair":
        FULL,
    "python -m rlfb_jax.eval.families --workdir runs/families":
        "18 full runs (hours on CPU); tests/eval/test_families.py runs it at smoke size",
    "python -m rlfb_jax.main --config experiments/synthetic_repair.py --workdir runs/repair "
    "# repair with feedback text": FULL,
    "python -m rlfb_jax.eval.families --workdir runs/families --base_workdir runs/repair/base":
        "18 full runs from the full repair base; tests/eval/test_families.py runs it at smoke "
        "size",
    "python -m rlfb_jax.main --config experiments/synthetic_rl_study.py:ROW --workdir "
    "runs/study/ROW_sS --config.seed=S --config.base_workdir=runs/fresh/pg_s1/base":
        "template (ROW, S); tests/algos/test_ppo.py runs every row at smoke size",
    "python -m rlfb_jax.eval.seeds runs/study/{gspo,reinforce_pp,filtered_bc,clip_higher,"
    "graded,overlong,pg,rltf,dr_grpo,grpo,gae}_s? --metrics eval/pass@1:gain eval/pass@16 "
    "eval/compile_rate kl --paired graded --plot rl_table.png":
        "needs the study's finished runs; tests/eval/test_seeds.py runs the CLI",
    "python -m rlfb_jax.main --config experiments/synthetic_ilf.py --workdir runs/ilf "
    "--config.base_workdir=runs/repair/base": FULL,
    "python -m rlfb_jax.main --config experiments/synthetic_ilf.py:rest_em --workdir "
    "runs/ilf_rest_em --config.base_workdir=runs/repair/base": FULL,
    "python -m rlfb_jax.main --config experiments/synthetic_critic.py --workdir runs/critic "
    "--config.base_workdir=runs/base": FULL,
}


def extract(path: str) -> list[str]:
    """The commands of one markdown file, continuation lines joined, spaces collapsed."""
    commands, fence, pending = [], None, ""
    for line in open(os.path.join(REPO, path)).read().splitlines():
        m = re.match(r"\s*```(\w*)", line)
        if m:
            fence = None if fence is not None else m.group(1)
            continue
        text = line.strip()
        shell = fence in ("bash", "sh", "shell", "console")
        if pending or (shell and text and not text.startswith("#")) or (
                fence is None and line.startswith("    ") and re.match(r"(python -m|pip) ", text)):
            pending += " " + text.removeprefix("$ ")
            if not pending.endswith("\\"):
                commands.append(" ".join(pending.split()))
                pending = ""
            else:
                pending = pending[:-1]
    return commands


def saved_files(path: str) -> dict[str, str]:
    """{file: text} of the fenced blocks that follow "Save this as `FILE`"."""
    text = open(os.path.join(REPO, path)).read()
    return {m.group(1): m.group(2) for m in re.finditer(
        r"[Ss]ave (?:this|it) as `([^`]+)`.*?```\w*\n(.*?)```", text, re.S)}


ALL = [(doc, cmd) for doc in DOCS for cmd in extract(doc)]


def test_every_command_is_run_or_skipped():
    commands = [cmd for _, cmd in ALL]
    assert len(commands) >= 15, commands  # the extraction finds the docs' commands
    assert not set(SKIP) - set(commands), "skipped but no longer in the docs"
    assert [c for c in commands if c not in SKIP], "nothing left to run"
    for doc, cmd in ALL:
        for module in re.findall(r"python -m ([\w.]+)", cmd):
            assert importlib.util.find_spec(module), f"{doc}: {cmd}: no module {module}"
        if SKIP.get(cmd, "").startswith("template"):
            continue
        for config in re.findall(r"--config[ =](experiments/\S+)", cmd):
            file, _, arg = config.partition(":")
            spec = importlib.util.spec_from_file_location("doc_config", os.path.join(REPO, file))
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.get_config(arg) if arg else module.get_config()  # an unknown arg raises
        for out in re.findall(r"--(?:workdir|out)[ =](\S+)", cmd):
            assert not os.path.isabs(out) or out.startswith("/tmp/"), f"{doc}: {cmd}"


@pytest.mark.slow
def test_commands_run_as_written(tmp_path):
    os.symlink(os.path.join(REPO, "experiments"), tmp_path / "experiments")
    for doc in DOCS:
        for name, text in saved_files(doc).items():
            (tmp_path / name).write_text(text)
    env = main_env()
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    for doc, cmd in ALL:
        if cmd in SKIP:
            continue
        run = subprocess.run(["bash", "-c", cmd.replace("/tmp/", f"{tmp_path}/tmp/")],
                             cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=900)
        assert run.returncode == 0, f"{doc}: {cmd}\n{run.stderr[-3000:]}"
