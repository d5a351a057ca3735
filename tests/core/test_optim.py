"""make_optimizer: optax optimizers by name, schedules, clipping, accumulation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rlfb_jax.core.config import experiment_config
from rlfb_jax.core.optim import make_optimizer, make_schedule


def _fit(cfg, steps=60):
    """Minimizes ||w - 3||^2 from w = 1 (loss 4); returns the final loss."""
    tx, _ = make_optimizer(cfg, steps)
    w = {"w": jnp.ones((4, 8))}
    state = tx.init(w)

    @jax.jit
    def step(w, state):
        loss, g = jax.value_and_grad(lambda w: jnp.mean((w["w"] - 3.0) ** 2))(w)
        updates, state = tx.update(g, state, w)
        return optax.apply_updates(w, updates), state, loss

    for _ in range(steps):
        w, state, loss = step(w, state)
    return float(loss)


@pytest.mark.parametrize("name", ["adamw", "adafactor", "lion", "sgd", "adam"])
def test_swapping_optimizers_is_a_name_change(name):
    cfg = experiment_config().optimizer
    cfg.name = name
    cfg.learning_rate = 0.1 if name != "lion" else 0.05
    cfg.weight_decay = 0.0
    cfg.schedule = "constant"
    assert _fit(cfg) < 2.0  # started at 4


def test_unknown_optimizer_and_kwargs_are_named():
    cfg = experiment_config().optimizer
    cfg.name = "adamq"
    with pytest.raises(ValueError, match="adamq"):
        make_optimizer(cfg, 10)
    cfg.name = "adamw"
    cfg.kwargs = {"nesterovv": True}
    with pytest.raises(ValueError, match="nesterovv"):
        make_optimizer(cfg, 10)


def test_schedules_warmup_and_decay():
    cfg = dict(learning_rate=1.0, warmup_steps=10, schedule="cosine", end_lr_factor=0.1)
    s = make_schedule(cfg, 110)
    assert float(s(0)) == 0.0 and abs(float(s(10)) - 1.0) < 1e-6
    assert abs(float(s(110)) - 0.1) < 1e-6
    lin = make_schedule({**cfg, "schedule": "linear"}, 110)
    assert abs(float(lin(60)) - 0.55) < 1e-6
    const = make_schedule({**cfg, "schedule": "constant"}, 110)
    assert float(const(5)) == 0.5 and float(const(100)) == 1.0
    with pytest.raises(ValueError, match="schedule"):
        make_schedule({**cfg, "schedule": "exp"}, 10)


def test_cosine_stages_is_a_cosine_run_extended_by_resuming():
    """Steps 0..383 follow the 384-step cosine, 384..767 the 768-step one, 768..1151 the
    1152-step one: the rates a run of 6 iterations (64 steps each) gets when it is resumed
    with iterations=12 and then 18. Each stage ends at the final rate."""
    cfg = dict(learning_rate=2e-4, warmup_steps=10, schedule="cosine", end_lr_factor=0.1)
    staged = make_schedule({**cfg, "schedule": "cosine_stages", "stages": (1 / 3, 2 / 3)}, 1152)
    for lo, hi in ((0, 384), (384, 768), (768, 1152)):
        plain = make_schedule(cfg, hi)
        for step in (lo, lo + 1, (lo + hi) // 2, hi - 1):
            assert abs(float(staged(step)) - float(plain(step))) < 1e-9, step
    assert float(staged(383)) < float(staged(384))  # the restarts
    assert float(staged(767)) < float(staged(768))
    assert abs(float(staged(1152)) - 2e-5) < 1e-9
    # a run shorter than its stages (the preflight builds every optimizer for 1 step):
    # the stages merge into one cosine
    short = make_schedule({**cfg, "schedule": "cosine_stages", "stages": (1 / 3, 2 / 3)}, 1)
    assert [float(short(k)) for k in range(12)] == [float(make_schedule(cfg, 1)(k))
                                                    for k in range(12)]
    for bad in ((), (0.5, 0.4), (0.0, 0.5), (0.5, 1.0)):
        with pytest.raises(ValueError, match="config.optimizer.stages"):
            make_schedule({**cfg, "schedule": "cosine_stages", "stages": bad}, 1152)


def test_every_config_can_set_stages_and_old_runs_still_match():
    """``stages`` is in every experiment's optimizer section (it was only in synthetic_ppo's,
    so ``--config.optimizer.stages`` elsewhere was refused), unset by default: a run directory
    written before it existed (no such key) compares equal on resume."""
    from rlfb_jax.core.rundir import config_dict, config_diff

    cfg = experiment_config()
    assert cfg.optimizer.stages is None
    old = config_dict(cfg)
    del old["optimizer"]["stages"]
    assert config_diff(old, config_dict(cfg)) == {}
    cfg.optimizer.schedule, cfg.optimizer.stages = "cosine_stages", (0.5,)
    staged = make_schedule(cfg.optimizer, 100)
    assert float(staged(49)) < float(staged(50))  # restarted at the stage


def test_clipping_and_gradient_accumulation():
    cfg = dict(name="sgd", learning_rate=1.0, schedule="constant", clip_norm=1.0, grad_accum=2)
    tx, _ = make_optimizer(cfg, 10)
    p = {"w": jnp.zeros(3)}
    st = tx.init(p)
    g = {"w": jnp.array([30.0, 40.0, 0.0])}
    u1, st = tx.update(g, st, p)
    np.testing.assert_allclose(u1["w"], 0.0)  # accumulating
    u2, st = tx.update(g, st, p)
    np.testing.assert_allclose(u2["w"], [-0.6, -0.8, 0.0], atol=1e-6)  # clipped to norm 1


def test_gradient_accumulation_runs_the_whole_schedule_and_logs_the_applied_rate():
    """16 train steps with grad_accum=4 are 4 optimizer updates: warmup (1 update) and the
    cosine decay span those 4, and the schedule returned for logging gives, at every train
    step, the rate the update of its window is applied with (sgd with gradient 1 moves the
    parameter by exactly that rate)."""
    cfg = dict(name="sgd", learning_rate=1.0, schedule="cosine", warmup_steps=1,
               end_lr_factor=0.0, grad_accum=4)
    tx, schedule = make_optimizer(cfg, 16)
    p = {"w": jnp.zeros(())}
    st = tx.init(p)
    applied, logged = [], []
    for step in range(16):
        logged.append(float(schedule(step)))
        u, st = tx.update({"w": jnp.ones(())}, st, p)
        if (step + 1) % 4 == 0:
            applied.append(-float(u["w"]))
        else:
            assert float(u["w"]) == 0.0
    inner = optax.warmup_cosine_decay_schedule(0.0, 1.0, 1, 4, 0.0)
    np.testing.assert_allclose(applied, [float(inner(i)) for i in range(4)], atol=1e-6)
    np.testing.assert_allclose(applied, [0.0, 1.0, 0.75, 0.25], atol=1e-6)  # by hand
    np.testing.assert_allclose(logged, np.repeat(applied, 4), atol=1e-6)
