"""`make_step`: turn a pure loss into a jitted, sharded, donating train step.

    step = make_step(loss_fn, tx, model=lm, schedule=sched, state_shardings=sh, mesh=mesh)
    state, metrics = step(state, batch)

The returned metrics hold the loss's own metrics plus ``train/loss``, ``train/grad_norm``,
``train/param_norm`` and ``train/lr``. A compiled step is reused as long as batch shapes stay
the same; `compiled_count(step)` tells how many programs were compiled (a silent
recompilation is a performance bug: tests check this number).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rlfb_jax.core import sharding as shd
from rlfb_jax.core.state import TrainState


def _update(state: TrainState, batch, *, loss_fn, tx, hparams, schedule):
    def objective(params):
        return loss_fn(params, batch, **hparams)

    (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics)
    metrics["train/loss"] = loss
    metrics["train/grad_norm"] = optax.global_norm(grads)
    metrics["train/param_norm"] = optax.global_norm(params)
    if schedule is not None:
        metrics["train/lr"] = schedule(state.step)
    rng = jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step))
    new_state = state.replace(step=state.step + 1, rng=rng, params=params, opt_state=opt_state)
    return new_state, metrics


def make_step(
    loss_fn: Callable[..., tuple[jax.Array, dict[str, jax.Array]]],
    tx: optax.GradientTransformation,
    *,
    schedule: optax.Schedule | None = None,
    state_shardings: TrainState | None = None,
    mesh: Mesh | None = None,
    rules=shd.DEFAULT_RULES,
    donate: bool = True,
    **hparams: Any,
) -> Callable[[TrainState, Any], tuple[TrainState, dict[str, jax.Array]]]:
    """Builds ``step(state, batch) -> (state, metrics)``.

    hparams (e.g. ``model=lm``, ``beta=0.05``) are bound into the loss as keyword arguments
    and are static: changing one means a new step. With ``state_shardings`` and ``mesh`` the
    step is jitted with in/out shardings (batch split along its leading dim over the mesh's
    batch axes) and the state is donated, so its buffers are reused in place.
    """
    fn = functools.partial(_update, loss_fn=loss_fn, tx=tx, hparams=hparams, schedule=schedule)
    kwargs: dict[str, Any] = {"donate_argnums": (0,) if donate else ()}
    if state_shardings is not None:
        if mesh is None:
            raise ValueError("make_step: state_shardings given without the mesh")
        kwargs["in_shardings"] = (state_shardings, shd.batch_sharding(mesh, rules))
        kwargs["out_shardings"] = (state_shardings, shd.replicated(mesh))
    return jax.jit(fn, **kwargs)


def _shards(sharding: NamedSharding) -> int:
    """Number of pieces dimension 1 of `sharding`'s arrays is split into."""
    axes = sharding.spec[1] if len(sharding.spec) > 1 else None
    axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    return math.prod(sharding.mesh.shape[a] for a in axes)


def _epochs_update(state: TrainState, batch, rng, *, update, epochs: int, minibatches: int,
                   minibatch_sharding=None):
    """K epochs x M minibatches of `update` as nested lax.scans (one compiled program).

    `minibatch_sharding` keeps each minibatch split over the batch axes after the shuffle
    (without it the gathered rows end up replicated, and every device computes every row).
    """
    b = jax.tree.leaves(batch)[0].shape[0]
    if b % minibatches:
        raise ValueError(f"batch of {b} rows does not split into {minibatches} minibatches")

    def epoch(state, key):
        perm = jax.random.permutation(key, b)
        shuffled = jax.tree.map(lambda x: x[perm].reshape((minibatches, -1) + x.shape[1:]),
                                batch)
        if minibatch_sharding is not None and (b // minibatches) % _shards(minibatch_sharding) == 0:
            shuffled = jax.lax.with_sharding_constraint(shuffled, minibatch_sharding)
        return jax.lax.scan(update, state, shuffled)

    state, metrics = jax.lax.scan(epoch, state, jax.random.split(rng, epochs))
    # Mean over all minibatch updates, plus the values of the very last one.
    out = {k: jnp.mean(v) for k, v in metrics.items()}
    out.update({f"{k}@last": v[-1, -1] for k, v in metrics.items() if k.startswith("train/")})
    return state, out


def make_epoch_update(
    loss_fn: Callable[..., tuple[jax.Array, dict[str, jax.Array]]],
    tx: optax.GradientTransformation,
    *,
    epochs: int,
    minibatches: int,
    schedule: optax.Schedule | None = None,
    state_shardings: TrainState | None = None,
    mesh: Mesh | None = None,
    rules=shd.DEFAULT_RULES,
    donate: bool = True,
    **hparams: Any,
):
    """``update(state, batch, rng) -> (state, metrics)``: the PPO-style inner loop.

    Each of `epochs` passes shuffles the batch (with `rng`) and applies one optimizer step
    per minibatch, all inside one jitted function (lax.scan over epochs and minibatches), so
    the host dispatches once per iteration. Metrics are means over all updates.
    """
    update = functools.partial(_update, loss_fn=loss_fn, tx=tx, hparams=hparams,
                               schedule=schedule)
    mb_sharding = None
    if mesh is not None:  # minibatches [M, B/M, ...]: rows split like the batch
        spec = shd.batch_sharding(mesh, rules).spec
        mb_sharding = NamedSharding(mesh, P(None, *spec))
    fn = functools.partial(_epochs_update, update=update, epochs=int(epochs),
                           minibatches=int(minibatches), minibatch_sharding=mb_sharding)
    kwargs: dict[str, Any] = {"donate_argnums": (0,) if donate else ()}
    if state_shardings is not None:
        if mesh is None:
            raise ValueError("make_epoch_update: state_shardings given without the mesh")
        rep = shd.replicated(mesh)
        kwargs["in_shardings"] = (state_shardings, shd.batch_sharding(mesh, rules), rep)
        kwargs["out_shardings"] = (state_shardings, rep)
    return jax.jit(fn, **kwargs)


def compiled_count(jitted) -> int:
    """How many programs a jitted function has compiled so far."""
    return jitted._cache_size()


def check_finite(metrics: dict[str, Any], step: int, keys=("train/loss", "train/grad_norm")):
    """Raises FloatingPointError naming the metric when a loss or gradient is NaN/Inf."""
    for key in keys:
        if key in metrics:
            value = float(metrics[key])
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"{key} is {value} at step {step}; stopping (the last good checkpoint is "
                    "kept). Lower the learning rate or check the data."
                )
