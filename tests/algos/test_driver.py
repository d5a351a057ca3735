"""The driver around a registered toy algorithm: the loop logs and checkpoints every step, a
resumed run continues from the checkpoint's record, a finished run does no work, and a
NaN loss stops the run with the last finite checkpoint kept."""

import json

import jax.numpy as jnp
import optax
import pytest

from rlfb_jax.algos import register_algo
from rlfb_jax.algos.driver import run
from rlfb_jax.core.checkpoint import Checkpointer
from rlfb_jax.core.config import experiment_config

CALLS: list[dict] = []


@register_algo("driver_test_count")
def train(driver):
    """Adds 1 to a parameter per step for config.train.steps steps; the loss is the step
    index, NaN at step config.nan_at."""
    config = driver.config
    state, _ = driver.create_state({"policy": {"w": jnp.zeros(2)}}, {}, optax.sgd(0.1),
                                   {"policy": {"w": (None,)}})
    start = int(driver.meta.get("step", 0))
    CALLS.append({"start": start})

    def step(state, i):
        w = state.params["policy"]["w"] + 1
        loss = jnp.float32(float("nan") if i == config.nan_at else i)
        return state.replace(step=state.step + 1, params={"policy": {"w": w}}), {
            "train/loss": loss}

    total = int(config.train.steps)
    state = driver.loop(state, step, start=start, total=total, desc="count",
                        meta=lambda i: {"step": i})
    return driver.finish({"w": float(state.params["policy"]["w"][0])}, step=total,
                         state=state, meta={"step": total})


def _config(steps, nan_at=-1):
    c = experiment_config()
    c.algo = "driver_test_count"
    c.nan_at = nan_at
    c.train.steps, c.train.log_every, c.train.checkpoint_every = steps, 1, 1
    return c


def test_loop_resume_and_the_finished_shortcut(tmp_path):
    CALLS.clear()
    wd = str(tmp_path / "run")
    with pytest.raises(FloatingPointError, match="train/loss is nan at step 3"):
        run(_config(5, nan_at=2), wd)
    ckpt = Checkpointer(wd)
    assert ckpt.latest_step() == 2  # the NaN step was never saved
    ckpt.close()
    summary = run(_config(5), wd, allow_config_change=True)  # resumes after step 2, NaN fixed
    assert [c["start"] for c in CALLS] == [0, 2]
    assert summary["w"] == 5.0
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [(r["step"], r["train/loss"]) for r in rows] == [(1, 0), (2, 1), (3, 2), (4, 3),
                                                             (5, 4)]
    assert run(_config(5), wd) == summary and len(CALLS) == 2  # finished: no work
