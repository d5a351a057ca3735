"""The one entry point: ``python -m rlfb_jax.main --config experiments/NAME.py --workdir DIR``.

Any config key can be overridden on the command line (``--config.optimizer.name=lion``,
``--config.train.steps=50``); an unknown key or a value of the wrong type fails before any
compute, naming the key. Re-running with the same ``--workdir`` resumes from the latest
checkpoint; a finished run (summary.json present) does no work.

Multi-host (TPU pods, GPU clusters): pass ``--multihost`` (or set RLFB_MULTIHOST=1) on every
host; `jax.distributed.initialize()` then finds the coordinator from the environment, or
from ``--coordinator``, ``--num_processes`` and ``--process_id`` when given.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

log = logging.getLogger("rlfb_jax")

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config module (get_config).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (created; reused to resume).")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize().")
_COORD = flags.DEFINE_string("coordinator", None, "host:port of process 0 (multi-host).")
_NPROC = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
_PID = flags.DEFINE_integer("process_id", None, "This process's index (multi-host).")


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


def configure_logging(level=logging.INFO):
    """Our messages at INFO on stderr; library chatter (orbax, absl) at WARNING."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    logger = logging.getLogger("rlfb_jax")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None or _WORKDIR.value is None:
        raise app.UsageError("--config and --workdir are required")
    if _MULTIHOST.value or os.environ.get("RLFB_MULTIHOST") == "1":
        initialize_distributed(_COORD.value, _NPROC.value, _PID.value)
    configure_logging()
    from rlfb_jax.algos.driver import run  # after initialize_distributed: no backend before it

    summary = run(_CONFIG.value, _WORKDIR.value)
    print(json.dumps(summary, indent=2, sort_keys=True), file=sys.stdout)


if __name__ == "__main__":
    app.run(main)
