"""Sharded steps on 8 fake CPU devices equal the one-device step; params really are sharded."""

import functools

import jax
import numpy as np
import pytest

from rlfb_jax.core import sharding as shd
from rlfb_jax.core.optim import make_optimizer
from rlfb_jax.core.state import create_state
from rlfb_jax.core.step import compiled_count, make_step
from rlfb_jax.losses import get_loss
from rlfb_jax.models import LanguageModel, ModelConfig

CFG = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64)

needs8 = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")


def _batches(n=6, b=8, length=16):
    rng = np.random.default_rng(0)
    for _ in range(n):
        toks = rng.integers(1, 64, (b, length)).astype(np.int32)
        attn = np.ones((b, length), bool)
        attn[:, :3] = rng.random((b, 3)) < 0.5  # some left padding
        loss = np.zeros((b, length), bool)
        loss[:, 8:] = True
        yield {"tokens": toks, "attention_mask": attn, "loss_mask": loss}


def _train(mesh_cfg, devices, optimizer="adamw"):
    lm = LanguageModel(CFG)
    tx, sched = make_optimizer(dict(name=optimizer, learning_rate=1e-2, clip_norm=1.0,
                                    schedule="cosine", warmup_steps=2), 6)
    mesh = shd.make_mesh(mesh_cfg, devices)
    state, sh = create_state(lambda r: ({"policy": lm.init(r)}, {}), tx, jax.random.key(0),
                             mesh, {"policy": lm.logical_axes()})
    step = make_step(get_loss("sft"), tx, schedule=sched, state_shardings=sh, mesh=mesh, model=lm)
    losses = []
    for batch in _batches():
        state, m = step(state, shd.shard_batch(batch, mesh))
        losses.append(float(m["train/loss"]))
    return state, losses, step


@functools.lru_cache(maxsize=1)
def _single_device():
    state, losses, _ = _train(dict(data=1), jax.devices()[:1])
    return jax.device_get(state.params), losses


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@needs8
@pytest.mark.parametrize("mesh_cfg", [dict(data=8), dict(data=2, fsdp=4), dict(data=2, fsdp=2,
                                                                               model=2)])
def test_sharded_step_equals_single_device(mesh_cfg):
    one_params, l1 = _single_device()
    many, l8, step = _train(mesh_cfg, jax.devices())
    assert _max_diff(one_params, many.params) < 1e-5
    np.testing.assert_allclose(l1, l8, rtol=1e-5)
    assert compiled_count(step) == 1
    kernel = many.params["policy"]["layers"][0]["mlp"]["up_proj"]["kernel"]
    if mesh_cfg.get("fsdp", 1) > 1:
        assert kernel.sharding.spec[0] == "fsdp"
        assert len(kernel.addressable_shards) == 8
        assert kernel.addressable_shards[0].data.shape[0] == kernel.shape[0] // mesh_cfg["fsdp"]
    if mesh_cfg.get("model", 1) > 1:
        assert kernel.sharding.spec[1] == "model"
        # optimizer moments follow their parameters
        mu = many.opt_state[1][0].mu["policy"]["layers"][0]["mlp"]["up_proj"]["kernel"]
        assert mu.sharding.spec == kernel.sharding.spec


@needs8
def test_factored_optimizer_state_shards_safely():
    _, losses, _ = _train(dict(data=2, fsdp=4), jax.devices(), optimizer="adafactor")
    assert np.isfinite(losses).all()


def test_mesh_errors_name_the_problem():
    with pytest.raises(ValueError, match="at most one axis"):
        shd.make_mesh(dict(data=-1, fsdp=-1))
    with pytest.raises(ValueError, match="need 3 devices"):
        shd.make_mesh(dict(data=3), jax.devices()[:2])


@needs8
def test_indivisible_dims_are_replicated():
    def spec(shape, **axes):
        mesh = shd.make_mesh(dict(data=1, **axes), jax.devices()[:8])
        return tuple(shd.logical_to_spec(("embed", "mlp"), shape, mesh, shd.DEFAULT_RULES))

    assert spec((8, 16), fsdp=8) == ("fsdp", None)  # embed -> fsdp; a size-1 axis is dropped
    assert spec((7, 16), fsdp=8) == (None, None)  # 7 rows do not split 8 ways
    assert spec((8, 16), fsdp=2, model=4) == ("fsdp", "model")
    assert spec((7, 6), fsdp=2, model=4) == (None, None)
    assert spec((7, 16), fsdp=2, model=4) == (None, "model")  # each dimension on its own
