"""Mesh and shardings from the config: sharding is configuration, models name logical axes.

Config (``config.mesh``)::

    data: -1     # size of each mesh axis; one axis may be -1 (all remaining devices)
    fsdp: 1
    model: 1
    rules: (("batch", ("data", "fsdp")), ("embed", "fsdp"), ("heads", "model"),
            ("mlp", "model"), ("vocab", "model"))

A parameter dimension whose size is not divisible by its mesh axes is replicated instead
(small models on many devices stay correct, just less sharded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXES = ("data", "fsdp", "model")

DEFAULT_RULES = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("heads", "model"),
    ("mlp", "model"),
    ("vocab", "model"),
)


def make_mesh(cfg: Mapping[str, Any] | None = None, devices: Sequence[Any] | None = None) -> Mesh:
    """A Mesh over all (or the given) devices with axes (data, fsdp, model)."""
    cfg = dict(cfg or {})
    devices = list(devices if devices is not None else jax.devices())
    sizes = [int(cfg.get(a, -1 if a == "data" else 1)) for a in AXES]
    if sizes.count(-1) > 1:
        raise ValueError(f"config.mesh: at most one axis may be -1, got {dict(zip(AXES, sizes))}")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(
                f"config.mesh: {len(devices)} devices are not divisible by {known} "
                f"({dict(zip(AXES, sizes))})"
            )
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise ValueError(
            f"config.mesh: axes {dict(zip(AXES, sizes))} need {int(np.prod(sizes))} devices, "
            f"but {len(devices)} are available"
        )
    return Mesh(np.asarray(devices).reshape(sizes), AXES)


def describe_mesh(mesh: Mesh) -> str:
    """One line for the log: axis sizes, devices and processes."""
    axes = " ".join(f"{a}={n}" for a, n in mesh.shape.items())
    kind = mesh.devices.flat[0].platform
    return (f"mesh {axes} over {mesh.devices.size} {kind} device(s) in "
            f"{jax.process_count()} process(es)")


def _mesh_axes(name, rules: Mapping[str, Any]):
    if name is None:
        return None
    return rules.get(name)


def logical_to_spec(
    logical: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules
) -> P:
    """PartitionSpec for one array from its logical axis names and the rules."""
    rules = dict(rules)
    used: set[str] = set()
    spec = []
    for name, dim in zip(logical, shape):
        axes = _mesh_axes(name, rules)
        if axes is None:
            spec.append(None)
            continue
        axes = (axes,) if isinstance(axes, str) else tuple(axes)
        axes = tuple(a for a in axes if a not in used and mesh.shape[a] > 1)
        size = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
        if not axes or dim % size:
            spec.append(None)
            continue
        used.update(axes)
        spec.append(axes[0] if len(axes) == 1 else axes)
    return P(*spec)


def tree_shardings(abstract_tree, logical_tree, mesh: Mesh, rules=DEFAULT_RULES):
    """NamedShardings for a tree of arrays given a matching tree of logical-axis tuples."""
    return jax.tree.map(
        lambda x, names: NamedSharding(mesh, logical_to_spec(names, x.shape, mesh, rules)),
        abstract_tree,
        logical_tree,
        is_leaf=lambda x: isinstance(x, tuple) and all(isinstance(n, str | None) for n in x),
    )


def batch_sharding(mesh: Mesh, rules=DEFAULT_RULES) -> NamedSharding:
    """Sharding of batch arrays: leading dim over the 'batch' rule's mesh axes."""
    axes = dict(rules).get("batch", ("data", "fsdp"))
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    return NamedSharding(mesh, P(axes))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def shard_batch(batch, mesh: Mesh, rules=DEFAULT_RULES):
    """Places a host batch (dict of numpy arrays, leading dim B) on the mesh, split along B.

    On several hosts every process passes its own slice of the global batch.
    """
    sharding = batch_sharding(mesh, rules)
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
    )
