"""Checkpoints with orbax: the whole TrainState plus a JSON record (config, data position).

`Checkpointer` wraps an ``ocp.CheckpointManager`` rooted at ``WORKDIR/checkpoints``: save
every N steps, keep the last K, restore the latest onto any mesh (restoring takes the
target shardings from an abstract state, so a 1-device checkpoint loads onto 8 devices).
Saves are asynchronous; `wait()` (called by `close()`) blocks until they are on disk.
"""

from __future__ import annotations

import logging

log = logging.getLogger("rlfb_jax")
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from rlfb_jax.core.state import TrainState


class CheckpointShapeError(ValueError):
    """A checkpoint does not match the model it is restored into."""


class Checkpointer:
    def __init__(self, workdir: str, *, every: int = 100, keep: int = 2, subdir="checkpoints"):
        self.directory = os.path.abspath(os.path.join(workdir, subdir))
        self.every = max(int(every), 1)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, save_interval_steps=1, create=True, enable_async_checkpointing=True
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

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

    def wait(self):
        self._manager.wait_until_finished()

    def close(self):
        self.wait()
        self._manager.close()


def _check_shapes(restored, target, where: str):
    flat_r = jax.tree_util.tree_leaves_with_path(restored)
    flat_t = dict(jax.tree_util.tree_leaves_with_path(target))
    for path, leaf in flat_r:
        want = flat_t.get(path)
        if want is not None and tuple(leaf.shape) != tuple(want.shape):
            raise CheckpointShapeError(
                f"checkpoint {where}: {jax.tree_util.keystr(path)} has shape "
                f"{tuple(leaf.shape)}, the model expects {tuple(want.shape)}"
            )


def abstract_with_shardings(state: TrainState, shardings: TrainState) -> TrainState:
    """ShapeDtypeStructs carrying target shardings, for `Checkpointer.restore`."""
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
    )
