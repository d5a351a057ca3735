"""Checkpoints: kill -9 then resume equals an uninterrupted run; restore onto another mesh;
shape mismatches are named; a NaN stops the run and keeps the last good checkpoint."""

import os
import signal
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from main_runner import REPO, main_cmd, main_env

from rlfb_jax.core import sharding as shd
from rlfb_jax.core.checkpoint import Checkpointer, CheckpointShapeError, abstract_with_shardings
from rlfb_jax.core.optim import make_optimizer
from rlfb_jax.core.rundir import RunDir
from rlfb_jax.core.state import create_state
from rlfb_jax.core.step import make_step
from rlfb_jax.losses import get_loss
from rlfb_jax.models import LanguageModel, ModelConfig

CFG = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64)
SMOKE = "experiments/smoke.py"
ARGS = ["--config.eval.num_tasks=0", "--config.train.steps=40",
        "--config.train.checkpoint_every=4", "--config.train.keep_checkpoints=3"]


def _main(workdir, *extra):
    return main_cmd(SMOKE, workdir, *ARGS, *extra)


def _final_params(workdir):
    ckpt = Checkpointer(str(workdir))
    step = ckpt.latest_step()
    state, _ = ckpt.restore_raw(step)
    ckpt.close()
    return step, state["params"]


def test_kill9_then_resume_equals_uninterrupted(tmp_path):
    ref_dir, killed_dir = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(_main(ref_dir), check=True, env=main_env(), capture_output=True, cwd=REPO)
    proc = subprocess.Popen(_main(killed_dir), env=main_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt_dir = killed_dir / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline:
        steps = [int(p) for p in os.listdir(ckpt_dir) if p.isdigit()] if ckpt_dir.exists() else []
        if steps and max(steps) >= 8:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "summary.json").exists(), "the run finished before the kill"
    out = subprocess.run(_main(killed_dir), check=True, env=main_env(), capture_output=True,
                         cwd=REPO, text=True)
    assert "resuming from step" in out.stderr
    s1, p1 = _final_params(ref_dir)
    s2, p2 = _final_params(killed_dir)
    assert s1 == s2 == 40
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    steps = [r for r in open(killed_dir / "metrics.jsonl")]
    assert len(steps) == len(set(steps))  # no step logged twice after the resume


def _state(mesh, cfg=CFG):
    lm = LanguageModel(cfg)
    tx, _ = make_optimizer(dict(name="adamw", learning_rate=1e-3), 10)
    state, sh = create_state(lambda r: ({"policy": lm.init(r)}, {}), tx, jax.random.key(0),
                             mesh, {"policy": lm.logical_axes()})
    return state, sh


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")
def test_restore_onto_a_different_mesh(tmp_path):
    one = shd.make_mesh(dict(data=1), jax.devices()[:1])
    state1, _ = _state(one)
    ck = Checkpointer(str(tmp_path))
    ck.save(3, state1, {"step": 3})
    ck.close()
    eight = shd.make_mesh(dict(data=2, fsdp=4))
    target, sh8 = _state(eight)
    ck = Checkpointer(str(tmp_path))
    restored, meta = ck.restore(abstract_with_shardings(target, sh8))
    ck.close()
    assert meta == {"step": 3}
    k = restored.params["policy"]["layers"][1]["attn"]["q_proj"]["kernel"]
    assert k.sharding.spec[0] == "fsdp" and len(k.sharding.device_set) == 8
    for a, b in zip(jax.tree.leaves(state1), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_shape_mismatch_names_the_array(tmp_path):
    mesh = shd.make_mesh(dict(data=1), jax.devices()[:1])
    state, _ = _state(mesh)
    ck = Checkpointer(str(tmp_path))
    ck.save(1, state, {})
    ck.close()
    bigger, sh = _state(mesh, CFG.replace(d_ff=96))
    ck = Checkpointer(str(tmp_path))
    with pytest.raises(CheckpointShapeError, match="mlp|d_ff|shape"):
        ck.restore(abstract_with_shardings(bigger, sh))
    ck.close()


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    import ml_collections

    config = ml_collections.ConfigDict(dict(train=dict(log_every=100, checkpoint_every=2,
                                                       keep_checkpoints=5)))
    mesh = shd.make_mesh(dict(data=1), jax.devices()[:1])
    lm = LanguageModel(CFG)
    tx, _ = make_optimizer(dict(name="sgd", learning_rate=1e-2), 10)
    state, sh = create_state(lambda r: ({"policy": lm.init(r)}, {}), tx, jax.random.key(0),
                             mesh, {"policy": lm.logical_axes()})

    def poisoned(params, batch, *, model):
        loss, m = get_loss("sft")(params, batch, model=model)
        return loss * batch["scale"][0], m

    step = make_step(poisoned, tx, model=lm)
    run = RunDir(config, str(tmp_path))
    state, _ = run.resume(state, sh)
    toks = np.arange(16, dtype=np.int32)[None].repeat(2, 0)
    batch = {"tokens": toks, "attention_mask": np.ones((2, 16), bool),
             "loss_mask": np.ones((2, 16), bool)}
    with pytest.raises(FloatingPointError, match="train/loss is nan at step 6"):
        for i in range(10):
            scale = np.full((2,), np.nan if i == 5 else 1.0, np.float32)
            state, m = step(state, {**batch, "scale": jnp.asarray(scale)})
            run.after_step(i + 1, state, m, {"step": i + 1})
    run.close()
    assert Checkpointer(str(tmp_path)).latest_step() == 4
