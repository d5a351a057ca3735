"""Length shaping of sequence rewards (host only: numpy).

DAPO's soft overlong punishment (Yu et al. 2025, sec. 3.4, eq. 13): with L_max the longest
completion allowed and a buffer of L_cache tokens before it, a completion of |y| tokens gets

    R_length(y) = 0                                   if |y| <= L_max - L_cache
                = ((L_max - L_cache) - |y|) / L_cache  if L_max - L_cache < |y| <= L_max
                = -1                                  if |y| > L_max

added to its outcome reward, so that running into the length limit (a truncated program
that cannot pass) is discouraged smoothly instead of by a cliff. PG/PPO apply it with
``config.rl.overlong_cache = L_cache`` (0: off) and L_max = ``rl.max_new_tokens``.
"""

from __future__ import annotations

import numpy as np


def overlong_penalty(lengths, max_len: int, cache: int) -> np.ndarray:
    """R_length [B] float32 of completions with ``lengths`` [B] tokens (eq. 13 above).

    ``max_len`` is L_max and ``cache`` L_cache (0 < cache <= max_len).
    """
    if not 0 < cache <= max_len:
        raise ValueError(f"overlong shaping needs 0 < cache <= max_len, got cache={cache}, "
                         f"max_len={max_len}")
    n = np.asarray(lengths, np.float64)
    soft = max_len - cache
    out = np.where(n <= soft, 0.0, (soft - n) / cache)
    return np.where(n > max_len, -1.0, out).astype(np.float32)
