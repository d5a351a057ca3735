"""The README's extension points as a user follows them: a loss of one's own in a module of
one's own, named, imported and tuned from the command line; bad names and settings refused
before any work."""

import json
import math
import os
import re
import shlex
import subprocess
import sys

import pytest
from main_runner import REPO, main_env

SMOKE_SIZE = ("--config.train.steps=2", "--config.train.log_every=1", "--config.eval.num_tasks=0")


def _readme_section(title: str) -> str:
    text = open(os.path.join(REPO, "README.md")).read()
    start = text.index(f"### {title}\n")
    end = text.find("\n#", start + 1)
    return text[start:end]


def _readme_loss() -> tuple[str, list[str]]:
    """The "Write a loss" section's Python snippet and its command line (as argv)."""
    section = _readme_section("Write a loss")
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    command = re.search(r"^    (python -m rlfb_jax\.main .*?)\n\n", section, re.S | re.M).group(1)
    return snippet, shlex.split(command.replace("\\\n", " "))


def _main(argv: list[str], cwd, workdir, *extra: str) -> subprocess.CompletedProcess:
    """`argv` (a README command) run in `cwd` with its --workdir replaced by `workdir` and
    its --config taken from the repository."""
    args = [a.replace("experiments/", os.path.join(REPO, "experiments/")) for a in argv[1:]]
    i = args.index("--workdir")
    args[i + 1] = str(workdir)
    return subprocess.run([sys.executable, *args, *extra], cwd=cwd, env=main_env(),
                          capture_output=True, text=True, timeout=300)


def test_write_a_loss_works_as_the_readme_says(tmp_path):
    snippet, argv = _readme_loss()
    module = next(a.split("=", 1)[1] for a in argv if a.startswith("--config.imports="))
    (tmp_path / f"{module}.py").write_text(snippet)
    name = next(a.split("=", 1)[1] for a in argv if a.startswith("--config.loss.name="))
    temperature = float(next(a.split("=", 1)[1] for a in argv
                             if a.startswith("--config.loss.kwargs.temperature=")))
    assert f'@register_loss("{name}")' in snippet and temperature != 1.0

    out = _main(argv, tmp_path, tmp_path / "run", *SMOKE_SIZE)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    first = rows[0]
    assert first["step"] == 1 and first["train/loss"] == first[f"loss/{name}"]
    # At initialization the model predicts nearly uniformly: its NLL is about log(vocab), and
    # the loss divides it by the temperature given on the command line.
    vocab = json.load(open(tmp_path / "run" / "config.json"))["model"]["vocab_size"]
    assert first[f"loss/{name}"] * temperature == pytest.approx(math.log(vocab), abs=0.1)
    config = json.load(open(tmp_path / "run" / "config.json"))
    assert config["loss"] == {"name": name, "kwargs": {"temperature": temperature}}
    assert config["imports"] == module


@pytest.mark.parametrize("overrides, message", [
    (["--config.imports=no_such_module"],
     "config.imports: cannot import 'no_such_module': ModuleNotFoundError"),
    (["--config.loss.name=scaled_sft"], "config.loss: unknown loss 'scaled_sft'"),
    (["--config.imports=mine/my_losses.py", "--config.loss.name=scaled_sft",
      "--config.loss.kwargs.temprature=2.0"],
     "loss 'scaled_sft' has no hyperparameter(s) ['temprature']; it takes ['temperature']"),
    (["--config.optimizer.name=sgd", "--config.optimizer.kwargs.nesterv=True"],
     "optax.sgd has no argument(s)"),
])
def test_bad_imports_and_hyperparameters_fail_before_anything_is_written(tmp_path, overrides,
                                                                          message):
    snippet, _ = _readme_loss()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "my_losses.py").write_text(snippet)  # imported by path, not by name
    argv = shlex.split("python -m rlfb_jax.main --config experiments/smoke.py --workdir w")
    out = _main(argv, tmp_path, tmp_path / "run", *overrides)
    assert out.returncode == 2, out.stderr[-2000:]
    assert message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "run").exists()
