"""Shared fixtures for the executor tests: one pool per module, data paths, helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlfb_jax.executor import ExecutorPool

REPO = Path(__file__).resolve().parents[2]
MBPP_PATH = REPO / "../shared/data/mbpp.jsonl"


@pytest.fixture(scope="module")
def pool():
    with ExecutorPool(
        num_workers=2,
        timeout=4.0,
        timeout_per_test=1.0,
        output_limit_bytes=64 << 10,
        memory_limit_mb=512,
    ) as p:
        yield p


def host_processes_matching(marker: str) -> list[int]:
    """PIDs (in the host's view) whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


def layer_active(pool: ExecutorPool, name: str) -> bool:
    return bool(pool.layers.get(name))


def require_layer(pool: ExecutorPool, name: str) -> None:
    if not layer_active(pool, name):
        pytest.skip(
            f"isolation layer {name} unavailable here: "
            f"{pool.missing_layers.get(name, 'unknown reason')}"
        )
