"""The one entry point: ``python -m rlfb_jax.main --config experiments/NAME.py --workdir DIR``.

Any config key can be overridden on the command line (``--config.optimizer.name=lion``,
``--config.train.steps=50``); an unknown key or a value of the wrong type fails before any
compute, naming the key (``kwargs`` sections take new keys: a part's hyperparameters). The
modules ``config.imports`` names are imported first (from the working directory, or .py
paths), so parts they register can be named. Before anything is written, the config is
checked as far as it can be without data: every ``optimizer`` section builds, every ``model``
section is a valid model (with ``hf_path``, the checkpoint's architecture is written into it,
so config.json records the model actually trained), every ``loss`` names a registered loss
that takes its ``kwargs``, every ``mesh`` fits the devices, and the workdir is not a file. A
bad input ends with a few lines naming it on stderr and exit status 2. Re-running with the
same ``--workdir`` resumes from the latest checkpoint; a finished run (summary.json
present) does no work.

Multi-host (TPU pods, GPU clusters): pass ``--multihost`` (or set RLFB_MULTIHOST=1) on every
host; `jax.distributed.initialize()` then finds the coordinator from the environment, or
from ``--coordinator``, ``--num_processes`` and ``--process_id`` when given.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import re
import sys

from absl import app, flags
from ml_collections import config_flags

log = logging.getLogger("rlfb_jax")
# Our models are JAX; transformers serves tokenizers and checkpoints only, so its note that
# PyTorch is missing (printed at its import on a machine without torch) is noise here.
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

# Experiments lock their configs themselves (`rlfb_jax.core.config.lock`), leaving ``kwargs``
# sections open for new keys; unlocked configs would accept typos.
_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config module (get_config).",
                                          lock_config=False, accept_new_attributes=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (created; reused to resume).")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize().")
_COORD = flags.DEFINE_string("coordinator", None, "host:port of process 0 (multi-host).")
_NPROC = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
_PID = flags.DEFINE_integer("process_id", None, "This process's index (multi-host).")
_ALLOW_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False,
    "Resume a run with a config that differs from the one it was made with (recorded in "
    "WORKDIR/config_changes.jsonl); without it such a re-run is refused.")


def initialize_distributed(coordinator=None, num_processes=None, process_id=None):
    import jax

    # Only affects CPU collectives (several processes on one machine); harmless elsewhere.
    # Must run before any backend is initialized, so no jax.devices() call before it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {}
    if coordinator:
        kwargs = dict(coordinator_address=coordinator, num_processes=num_processes,
                      process_id=process_id)
    jax.distributed.initialize(**kwargs)


class _ProgressSafeHandler(logging.StreamHandler):
    """Writes through tqdm, so a message logged while a progress bar runs gets a line of its
    own instead of being appended to the bar."""

    def emit(self, record):
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging's own convention
            self.handleError(record)


def configure_logging(level=logging.INFO):
    """Our messages at INFO on stderr; library chatter (orbax, absl) at WARNING."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    logger = logging.getLogger("rlfb_jax")
    if not logger.handlers:
        handler = _ProgressSafeHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


class ConfigError(Exception):
    """A bad command line or config, reported in a few lines (exit status 2)."""


def _config_path(argv: list[str]) -> str | None:
    """The file of ``--config FILE[:arg]`` / ``--config=FILE[:arg]`` in `argv`, if any."""
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            return a.split("=", 1)[1].split(":")[0]
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1].split(":")[0]
    return None


def add_config_package_root(argv: list[str]) -> None:
    """A config file inside a package (``experiments/x.py`` importing its siblings as
    ``experiments.y``) loads from any working directory: the package's parent directory goes
    on ``sys.path``, as if run from there (the repository root, for ``experiments/``)."""
    path = _config_path(argv)
    if not path:
        return
    folder = top = os.path.dirname(os.path.abspath(path))
    while os.path.isfile(os.path.join(top, "__init__.py")):
        top = os.path.dirname(top)
    if top != folder and top not in sys.path:
        sys.path.insert(0, top)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a bad override or config file reported in a line or two
    (exit status 2) instead of a traceback."""
    add_config_package_root(argv)
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = _clean(e)
    except OSError as e:  # the config module could not be loaded
        message = _config_file_error(e)
    except ImportError as e:  # ... or imports what is not there
        message = f"--config {_config_path(argv)}: {type(e).__name__}: {_clean(e)}"
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # a key that is not there
        message = _clean(e)
        locked = re.match(r'Key "([^"]+)" does not exist and cannot be added', message)
        if locked:  # a new key in a locked section: its name and the suggestion, not the dump
            hint = re.search(r"Did you mean [^?]*\?", message)
            message = f"'{locked.group(1)}' {hint.group(0) if hint else 'is not a config key'}"
        overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
        named = re.match(r"'([^']+)'", message)
        bad = [a for a in overrides if named and a.split(".")[-1] == named.group(1)]
        message = f"bad --config override {(bad or overrides or [''])[0]}: {message}"
    print(f"rlfb_jax.main: error: {message}", file=sys.stderr)
    sys.exit(2)


def load_config():
    """The experiment config with its overrides applied, or ConfigError naming the problem."""
    try:
        config = _CONFIG.value
        if config is None:
            raise ConfigError("--config and --workdir are required")
        config.keys()  # a module that failed to load raises here
    except OSError as e:
        raise ConfigError(_config_file_error(e)) from None
    return config


def _config_file_error(e: OSError) -> str:
    message = _clean(e)
    missing = re.search(r"No such file or directory: '([^']+)'", message)
    if missing:
        return f"--config {missing.group(1)}: no such file"
    return f"cannot load --config: {message}"


def _clean(e: BaseException) -> str:
    """An exception's message on one line, without the quoting ml_collections adds."""
    while e.args and isinstance(e.args[0], BaseException):
        e = e.args[0]
    text = str(e.args[0]) if len(e.args) == 1 else str(e)
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    lines = [ln.strip() for ln in text.replace("\\'", "'").splitlines()]
    keep = [ln for ln in lines if ln and "earlier failure" not in ln and "config_config" not in ln]
    return " ".join(keep)


def import_modules(config) -> None:
    """Imports every module named in an ``imports`` key of the config (at any depth): module
    names (comma-separated) found from the working directory or ``sys.path``, or paths of
    ``.py`` files. ConfigError naming the module if one fails."""
    names = []

    def walk(node, path):
        for key in sorted(node.keys()):
            value = node[key]
            if key == "imports" and isinstance(value, str):
                names.extend((f"{path}.{key}", n.strip()) for n in value.split(",") if n.strip())
            elif hasattr(value, "keys"):
                walk(value, f"{path}.{key}")

    walk(config, "config")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for where, name in names:
        try:
            if name.endswith(".py"):
                module_name = os.path.splitext(os.path.basename(name))[0]
                spec = importlib.util.spec_from_file_location(module_name, os.path.abspath(name))
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - any failure of user code, in one line
            raise ConfigError(f"{where}: cannot import {name!r}: {type(e).__name__}: "
                              f"{_clean(e)}") from None


def preflight(config, workdir: str) -> None:
    """Checks what can be checked before any data, compute or file: ConfigError if not."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir} is a file, not a directory")
    from rlfb_jax.core import sharding
    from rlfb_jax.core.config import model_from_config, set_model_from_checkpoint
    from rlfb_jax.core.optim import make_optimizer
    from rlfb_jax.losses.registry import check_loss

    def walk(node, path):
        for key in sorted(node.keys()):
            value, where = node[key], f"{path}.{key}"
            if not hasattr(value, "keys"):
                continue
            try:
                if key == "optimizer":
                    make_optimizer(value, 1)
                elif key == "model" and "d_model" in value:
                    if value.get("hf_path"):
                        set_model_from_checkpoint(value)
                    model_from_config(value)
                elif key == "loss" and "kwargs" in value:
                    check_loss(value.name, value.kwargs, where)
                elif key == "rl" and "loss_kwargs" in value:
                    from rlfb_jax.algos.pg_config import check_config
                    check_config(value, where)
                elif key == "rewards" and not path.endswith(".rl"):  # e.g. ReST-EM's
                    from rlfb_jax.rewards import check_reward_spec
                    check_reward_spec(value, where)
                elif key == "eval" and value.get("tasks"):
                    from rlfb_jax.algos.datasets import check_eval_tasks
                    check_eval_tasks(value.tasks, value.get("path", ""), where)
                elif key == "mesh":
                    sharding.make_mesh(value)
            except (OSError, TypeError, ValueError) as e:
                message = _clean(e)
                if not message.startswith("config."):
                    message = f"{where}: {message}"
                raise ConfigError(message) from None
            walk(value, where)

    if "base" in config and "model" in config:  # a method that starts from a base
        from rlfb_jax.core.config import model_config
        from rlfb_jax.core.rundir import config_dict, config_diff

        changed = config_diff(config_dict(model_config()), config_dict(config.model))
        if changed:
            key = sorted(changed)[0]
            raise ConfigError(f"config.model.{key}: not used by algo {config.get('algo')!r}, "
                              f"whose policy is its base's model: set config.base.model.{key} "
                              "(a change of shape needs a new base, not a finished one)")
    walk(config, "config")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _MULTIHOST.value or os.environ.get("RLFB_MULTIHOST") == "1":
        initialize_distributed(_COORD.value, _NPROC.value, _PID.value)
    configure_logging()
    try:
        config = load_config()
        if _WORKDIR.value is None:
            raise ConfigError("--config and --workdir are required")
        import_modules(config)
        preflight(config, _WORKDIR.value)
    except ConfigError as e:
        print(f"rlfb_jax.main: error: {e}", file=sys.stderr)
        sys.exit(2)
    from rlfb_jax.algos.driver import run  # after initialize_distributed: no backend before it
    from rlfb_jax.core.rundir import ConfigChanged

    try:
        summary = run(config, _WORKDIR.value, allow_config_change=_ALLOW_CHANGE.value)
    except ConfigChanged as e:
        print(f"rlfb_jax.main: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(summary, indent=2, sort_keys=True), file=sys.stdout)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
