"""DAPO's soft overlong punishment (Yu et al. 2025, eq. 13) by hand."""

import numpy as np
import pytest

from rlfb_jax.rewards import overlong_penalty


def test_overlong_penalty_by_hand():
    # L_max = 20, L_cache = 4: free up to 16 tokens, then -1/4 per token, -1 past 20
    lengths = [0, 10, 16, 17, 18, 20, 21, 40]
    want = [0, 0, 0, -0.25, -0.5, -1.0, -1.0, -1.0]
    np.testing.assert_allclose(overlong_penalty(lengths, 20, 4), want, rtol=1e-6)
    assert overlong_penalty(lengths, 20, 4).dtype == np.float32
    for cache in (0, 21):
        with pytest.raises(ValueError, match="0 < cache <= max_len"):
            overlong_penalty(lengths, 20, cache)
