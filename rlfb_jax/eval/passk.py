"""pass@k: the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models
Trained on Code", eq. 1), in its numerically stable product form.

    pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n - c + 1}^{n} (1 - k / i)

where n samples were drawn for a task and c of them passed. The product never forms the
huge binomials, so it stays accurate for n in the thousands. Host-only (numpy).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples (drawn without replacement from n samples
    of which c are correct) is correct."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def mean_pass_at_k(num_samples: Iterable[int], num_correct: Iterable[int], k: int) -> float:
    """pass@k averaged over tasks ([num tasks] counts in, a scalar out)."""
    values = [pass_at_k(int(n), int(c), k) for n, c in zip(num_samples, num_correct)]
    if not values:
        raise ValueError("no tasks")
    return float(np.mean(values))
