"""Sandboxed execution of untrusted programs (host only: never imports jax).

`ExecutorPool` runs `Job`s and returns `Outcome`s; see `jobs` for the contract, `sandbox`
for the isolation layers, `runner` for how verdicts are decided, and
``python -m rlfb_jax.executor.doctor`` for what this host supports.

Names are imported lazily: the zygote process imports only the few small modules it needs,
which keeps it lean and its per-job fork cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .jobs import STATUSES, Job, Outcome, TestResult
    from .pool import ExecutorPool

__all__ = ["STATUSES", "ExecutorPool", "Job", "Outcome", "TestResult"]
_HOME = {
    "ExecutorPool": ".pool",
    "Job": ".jobs",
    "Outcome": ".jobs",
    "TestResult": ".jobs",
    "STATUSES": ".jobs",
}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
