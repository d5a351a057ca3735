"""benchmarks/train_step.py: its FLOP formula and that the torch baseline sees our minibatches."""

from __future__ import annotations

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np

from rlfb_jax.core.step import _epochs_update
from rlfb_jax.models.config import ModelConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _train_step_module():
    path = os.path.join(REPO, "benchmarks", "train_step.py")
    spec = importlib.util.spec_from_file_location("bench_train_step", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_flops_per_token_by_hand():
    cfg = ModelConfig(vocab_size=10, d_model=8, n_layers=3, n_heads=2, n_kv_heads=1,
                      head_dim=4, d_ff=16)
    # per layer: q 8*8 + k,v 2*8*4 + o 8*8 + MLP 3*8*16 = 576; N = 3*576 + LM head 10*8 = 1808
    # attention: 12 * layers 3 * heads 2 * head_dim 4 * T 5 = 1440
    assert _train_step_module().flops_per_token(cfg, 5) == 6 * 1808 + 1440


def test_permutations_match_the_epoch_update_minibatches():
    """The torch baseline replays exactly the minibatches `make_epoch_update` draws."""
    rows, epochs, minibatches = 12, 2, 3

    def record(state, mb):
        i, seen = state
        return (i + 1, seen.at[i].set(mb["ids"])), {"train/x": jnp.float32(0)}

    init = (jnp.int32(0), jnp.zeros((epochs * minibatches, rows // minibatches), jnp.int32))
    rng = jax.random.key(3)
    (_, seen), _ = jax.jit(lambda s, b, r: _epochs_update(
        s, b, r, update=record, epochs=epochs, minibatches=minibatches))(
        init, {"ids": jnp.arange(rows)}, rng)
    perms = _train_step_module().permutations(rng, rows, epochs)
    expected = np.concatenate([np.split(p, minibatches) for p in perms])
    np.testing.assert_array_equal(np.asarray(seen), expected)
