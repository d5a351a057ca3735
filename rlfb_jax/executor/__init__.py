"""Sandboxed execution of untrusted programs (host only: never imports jax).

`ExecutorPool` runs `Job`s and returns `Outcome`s; see `jobs` for the contract, `sandbox`
for the isolation layers, `runner` for how verdicts are decided, and
``python -m rlfb_jax.executor.doctor`` for what this host supports.
"""

from .jobs import STATUSES, Job, Outcome, TestResult
from .pool import ExecutorPool

__all__ = ["STATUSES", "ExecutorPool", "Job", "Outcome", "TestResult"]
