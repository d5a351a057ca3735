"""pass@k against exact binomial ratios."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from rlfb_jax.eval.passk import mean_pass_at_k, pass_at_k


def exact(n: int, c: int, k: int) -> float:
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


@pytest.mark.parametrize("n", [1, 2, 5, 10, 37, 200])
def test_matches_exact_binomials(n):
    for c in range(n + 1):
        for k in sorted({1, 2, 5, 10, n} & set(range(1, n + 1))):
            assert pass_at_k(n, c, k) == pytest.approx(exact(n, c, k), rel=1e-12, abs=1e-15)


def test_edge_cases():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 10) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 1, 10) == 1.0  # k draws exhaust the samples: the correct one is in
    assert pass_at_k(10, 2, 9) == 1.0


def test_stable_for_large_n():
    # C(2000, 1000) overflows float; the product form does not.
    value = pass_at_k(2000, 3, 1000)
    assert value == pytest.approx(exact(2000, 3, 1000), rel=1e-12)
    assert np.isfinite(value)


def test_rejects_invalid_arguments():
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
    with pytest.raises(ValueError):
        pass_at_k(5, 2, 6)
    with pytest.raises(ValueError):
        pass_at_k(5, 2, 0)


def test_mean_over_tasks():
    assert mean_pass_at_k([10, 10], [0, 10], 1) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        mean_pass_at_k([], [], 1)
