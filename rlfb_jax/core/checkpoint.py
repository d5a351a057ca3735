"""Checkpoints with orbax: the whole TrainState plus a JSON record (config, data position).

`Checkpointer` wraps an ``ocp.CheckpointManager`` rooted at ``WORKDIR/checkpoints``: save
every N steps, keep the last K, restore the latest onto any mesh (restoring takes the
target shardings from an abstract state, so a 1-device checkpoint loads onto 8 devices).
Saves are asynchronous; `wait()` (called by `close()`) blocks until they are on disk.
WORKDIR may be a URI (``gs://bucket/run``): orbax writes there itself.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from rlfb_jax.core.metrics import absolute_path
from rlfb_jax.core.state import TrainState

log = logging.getLogger("rlfb_jax")


class CheckpointShapeError(ValueError):
    """A checkpoint does not match the model it is restored into."""


class Checkpointer:
    def __init__(self, workdir: str, *, every: int = 100, keep: int = 2, subdir="checkpoints"):
        self.directory = absolute_path(workdir, subdir)
        self.every = max(int(every), 1)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, save_interval_steps=1, create=True, enable_async_checkpointing=True
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()},
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def should_save(self, step: int) -> bool:
        return step % self.every == 0

    def save(self, step: int, state: TrainState, meta: dict[str, Any], force: bool = False):
        """Saves `state` and the JSON-serializable `meta` at `step` (async)."""
        if self._manager.latest_step() == step:
            return
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=force,
        )

    def restore(self, abstract_state: TrainState, step: int | None = None):
        """Restores (state, meta) at `step` (default latest) into `abstract_state`'s shardings.

        `abstract_state` is a TrainState of jax.ShapeDtypeStruct with `.sharding` set (e.g.
        from `jax.eval_shape` + the state's shardings). Raises CheckpointShapeError naming the
        first mismatching array.
        """
        step = self._manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        stored = self._manager.item_metadata(step)["state"]
        if stored is not None:
            _check_shapes(stored, abstract_state, f"{self.directory}/{step}")
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
                ),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointShapeError(
                f"checkpoint {self.directory}/{step} does not match the model: {e}"
            ) from e
        _check_shapes(restored["state"], abstract_state, f"{self.directory}/{step}")
        log.info("restored checkpoint %s/%d", self.directory, step)
        return restored["state"], restored["meta"]

    def restore_raw(self, step: int | None = None):
        """(state as a nested dict of host arrays, meta) without a target: for inspection,
        export and comparisons. Arrays land on the default device."""
        step = self._manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                          meta=ocp.args.JsonRestore()),
        )
        return restored["state"], restored["meta"]

    def wait(self):
        self._manager.wait_until_finished()

    def close(self):
        self.wait()
        self._manager.close()


def _key(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                    for k in path)


def _check_shapes(stored, target, where: str):
    """Compares shapes leaf by leaf (by path), naming the first mismatch or missing array."""
    flat_s = {_key(p): x for p, x in jax.tree_util.tree_leaves_with_path(stored)}
    for path, want in jax.tree_util.tree_leaves_with_path(target):
        key = _key(path)
        leaf = flat_s.get(key)
        if leaf is None:
            if flat_s and not any(k.startswith(key) for k in flat_s):
                raise CheckpointShapeError(f"checkpoint {where}: no array for {key}")
            continue
        if tuple(leaf.shape) != tuple(want.shape):
            raise CheckpointShapeError(
                f"checkpoint {where}: {key} has shape "
                f"{tuple(leaf.shape)}, the model expects {tuple(want.shape)}"
            )


def params_from_checkpoint(workdir: str, like, slot: str = "policy", frozen: bool = False,
                           step: int | None = None):
    """Parameters of one slot of the latest checkpoint (or the one at `step`) in
    WORKDIR/checkpoints, rebuilt in the structure of `like` (e.g. ``lm.abstract_params()``);
    arrays in `like` that the checkpoint lacks (e.g. a new value head) are taken from `like`
    itself, so pass real arrays there when some may be missing. Shapes are checked and
    mismatches named."""
    ckpt = Checkpointer(workdir)
    try:
        if step is not None and step not in ckpt.all_steps():
            raise FileNotFoundError(f"{workdir}: no checkpoint at step {step} (there are: "
                                    f"{', '.join(map(str, ckpt.all_steps())) or 'none'})")
        state, _ = ckpt.restore_raw(step)
    finally:
        ckpt.close()
    stored = state["frozen" if frozen else "params"].get(slot)
    if stored is None:
        raise CheckpointShapeError(f"checkpoint in {workdir} has no {slot!r} slot")
    flat = {_key(p): x for p, x in jax.tree_util.tree_leaves_with_path(stored)}
    where = os.path.join(workdir, "checkpoints")

    def pick(path, want):
        key = _key(path)
        if key not in flat:
            if isinstance(want, jax.ShapeDtypeStruct):
                raise CheckpointShapeError(f"checkpoint {where}: no array for {slot}/{key}")
            return want
        got = flat[key]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointShapeError(
                f"checkpoint {where}: {slot}/{key} has shape {tuple(got.shape)}, "
                f"the model expects {tuple(want.shape)}")
        return jax.numpy.asarray(got, dtype=want.dtype)

    return jax.tree_util.tree_map_with_path(pick, like)


def abstract_with_shardings(state: TrainState, shardings: TrainState) -> TrainState:
    """ShapeDtypeStructs carrying target shardings, for `Checkpointer.restore`."""
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
    )
