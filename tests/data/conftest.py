"""Fixtures of the data tests: MBPP's location and small synthetic splits."""

from __future__ import annotations

import os

import pytest

from rlfb_jax.data.synthetic import make_splits

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MBPP_PATH = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "mbpp.jsonl"))


@pytest.fixture(scope="session")
def mbpp_file() -> str:
    """The original MBPP jsonl next to the repository (../shared/data/mbpp.jsonl)."""
    if not os.path.exists(MBPP_PATH):
        pytest.skip(f"MBPP not available: expected the original mbpp.jsonl at {MBPP_PATH}")
    return MBPP_PATH


@pytest.fixture(scope="session")
def splits() -> dict:
    """Synthetic splits shared by several tests (seed 0; 3000 / 300 / 300 tasks)."""
    return make_splits(3000, 300, 300, seed=0)
