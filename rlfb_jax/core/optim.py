"""`make_optimizer(config)`: any optax optimizer by name, plus schedule, clipping, accumulation.

Config (``config.optimizer``)::

    name: "adamw"            # any optax optimizer taking learning_rate: adamw, adafactor, lion, sgd...
    learning_rate: 3e-4      # peak value
    schedule: "cosine"       # constant | linear | cosine | cosine_stages (each with linear warmup)
    stages: (1/3, 2/3)       # cosine_stages only: where the cosine's horizon is extended
    warmup_steps: 0
    decay_steps: 0           # 0: the run's total steps (filled in by the trainer)
    end_lr_factor: 0.1       # final lr = learning_rate * end_lr_factor
    clip_norm: 1.0           # global-norm clipping; 0 disables
    grad_accum: 1            # optax.MultiSteps: one optimizer update every this many steps
    weight_decay: 0.0        # common knobs, passed only where the optimizer takes them
    b1, b2, eps: None        # None: the optimizer's default
    kwargs: {}               # passed verbatim; an unknown argument is an error

``cosine_stages`` is the schedule of a cosine run extended by resuming it with a longer
horizon: with ``stages`` (f_1 < f_2 < ... < 1, fractions of the total steps T) and
stage ends T_j = round(f_j * T) (T_k = T), a step s in stage j (T_{j-1} <= s < T_j) gets
the rate of the warmup cosine over T_j steps (stages that would end inside the warmup, or
at one step, merge). Each stage ends at the final rate, and the
next starts part-way down a longer cosine (stages (1/3, 2/3): back up to about 0.56 and
then 0.33 of the peak), a warm restart with decaying peaks.

With ``grad_accum = k`` the optimizer updates once every k train steps, so the schedule
runs over ``ceil(total_steps / k)`` updates (``warmup_steps`` and ``decay_steps`` count
updates too), and the returned schedule maps a train step to the learning rate of the update
that step's gradients go into (``schedule_of_updates(step // k)``): what ``train/lr`` logs is
the rate actually applied.

Swapping adamw -> adafactor -> lion is a command-line override of ``name`` only: the common
knobs are matched to each optimizer's own argument names (``weight_decay`` becomes
``weight_decay_rate`` for adafactor) and silently skipped where an optimizer has no such knob.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

import optax

log = logging.getLogger("rlfb_jax")

_ALIASES = {"weight_decay": ("weight_decay", "weight_decay_rate"), "b1": ("b1", "momentum"),
            "b2": ("b2", "decay"), "eps": ("eps",)}


def make_schedule(cfg: Mapping[str, Any], total_steps: int) -> optax.Schedule:
    """Learning-rate schedule with linear warmup, from ``config.optimizer``."""
    peak = float(cfg["learning_rate"])
    warmup = int(cfg.get("warmup_steps", 0))
    decay = int(cfg.get("decay_steps", 0)) or max(total_steps, warmup + 1)
    end = peak * float(cfg.get("end_lr_factor", 0.1))
    kind = cfg.get("schedule", "constant")
    if kind == "constant":
        main = optax.constant_schedule(peak)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, peak, warmup), main], [warmup]
        ) if warmup else main
    if kind == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, decay, end)
    if kind == "cosine_stages":
        fractions = [float(f) for f in cfg.get("stages", ()) or ()]
        if not fractions or fractions != sorted(fractions) or not 0 < fractions[0] \
                or fractions[-1] >= 1:
            raise ValueError(f"config.optimizer.stages={tuple(fractions)}: cosine_stages needs "
                             "increasing fractions of the run in (0, 1), e.g. (1/3, 2/3)")
        # in a run too short for its stages (inside the warmup, or two ending at one step)
        # the stages merge: at the extreme, one cosine
        ends = sorted({e for f in fractions
                       if (e := max(round(f * decay), warmup + 1)) < decay}) + [decay]
        pieces = [optax.warmup_cosine_decay_schedule(0.0, peak, warmup, t, end) for t in ends]
        # join_schedules passes each piece the steps since its boundary; undo that shift
        shifted = [pieces[0]] + [lambda s, f=f, b=b: f(s + b) for f, b in zip(pieces[1:], ends)]
        return optax.join_schedules(shifted, ends[:-1])
    if kind == "linear":
        return optax.join_schedules(
            [optax.linear_schedule(0.0, peak, warmup),
             optax.linear_schedule(peak, end, max(decay - warmup, 1))],
            [warmup],
        )
    raise ValueError(
        f"config.optimizer.schedule: unknown schedule {kind!r}; use constant, linear, cosine "
        "or cosine_stages"
    )


def make_optimizer(
    cfg: Mapping[str, Any], total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Builds (optimizer, schedule) from ``config.optimizer``. See the module docstring."""
    name = cfg["name"]
    factory = getattr(optax, name, None)
    if factory is None or not callable(factory):
        raise ValueError(f"config.optimizer.name: optax has no optimizer {name!r}")
    try:
        accepted = set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        accepted = set()
    if "learning_rate" not in accepted:
        raise ValueError(f"config.optimizer.name: optax.{name} takes no learning_rate")
    accum = int(cfg.get("grad_accum", 1) or 1)
    if accum < 1:
        raise ValueError(f"config.optimizer.grad_accum must be >= 1, got {accum}")
    schedule = make_schedule(cfg, -(-total_steps // accum))  # over optimizer updates
    args: dict[str, Any] = {"learning_rate": schedule}
    skipped = []
    for key, names in _ALIASES.items():
        value = cfg.get(key)
        if value is None:
            continue
        target = next((n for n in names if n in accepted), None)
        if target is None:
            if value:
                skipped.append(key)
            continue
        args[target] = value
    extra = dict(cfg.get("kwargs", {}) or {})
    unknown = sorted(set(extra) - accepted)
    if unknown:
        raise ValueError(
            f"config.optimizer.kwargs: optax.{name} has no argument(s) {unknown}; "
            f"it takes {sorted(accepted)}"
        )
    args.update(extra)
    if skipped:
        log.info("optax.%s has no %s; ignoring those config.optimizer keys", name, skipped)
    tx = factory(**args)
    clip = float(cfg.get("clip_norm", 0.0) or 0.0)
    if clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(clip), tx)
    if accum > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accum)
        updates_schedule = schedule

        def schedule(step):  # train step -> the rate its accumulated update is applied with
            return updates_schedule(step // accum)

    return tx, schedule
