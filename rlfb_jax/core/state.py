"""The one train state shared by every algorithm, created already sharded.

``TrainState.params`` holds the *trainable* slots, ``TrainState.frozen`` the rest:

=============  =====================================================================
slot           what it is
=============  =====================================================================
"policy"       the language model being trained (SFT, PG/PPO, ReST-EM)
"value"        PPO critic (a model with a value head), when it is not shared
"verifier"     the verifier (a model with a score head), LEVER
frozen         "reference" (KL anchor), "best" (ReST-EM's best iterate so far)
=============  =====================================================================

One optax optimizer covers all trainable slots, so a step is one pure function
``step(state, batch) -> (state, metrics)``. The state holds arrays only; graph
definitions and optimizer objects live on the algorithm.

``TrainState.aux`` holds the algorithm's other state that must survive a resume, as arrays
(PPO: the KL controller's state), so it is checkpointed with everything else.

Randomness comes from ``TrainState.rng`` (folded with the step by every update): an
algorithm draws the key for each purpose with ``state.key("rollout")``, ``state.key("update")``
and so on (`named_key`), never from offsets of the config seed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding

from rlfb_jax.core import sharding as shd

Params = dict[str, Any]


@struct.dataclass
class TrainState:
    step: jax.Array  # [] int32, number of optimizer updates applied
    rng: jax.Array  # PRNG key (raw uint32 [2] so checkpoints stay plain arrays)
    params: dict[str, Params]  # trainable slots
    opt_state: Any
    frozen: dict[str, Params]  # frozen slots (no gradients, no optimizer state)
    aux: dict[str, Any] = struct.field(default_factory=dict)  # e.g. {"kl": KLControlState}

    @property
    def policy(self) -> Params:
        return self.params.get("policy", self.frozen.get("policy"))

    def key(self, name: str) -> jax.Array:
        """The PRNG key for purpose `name` at this state (`named_key` of ``rng``)."""
        return named_key(jax.random.wrap_key_data(self.rng), name)


def named_key(key: jax.Array, name: str) -> jax.Array:
    """`key` folded with a stable 31-bit hash of `name`: independent streams per purpose
    ("rollout", "update", "eval", ...) that stay the same across runs and processes."""
    return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def _logical_tree(slots: Mapping[str, Params], logical: Mapping[str, Any]):
    return {k: logical[k] for k in slots}


def state_shardings(
    abstract: TrainState,
    logical: Mapping[str, Any],
    tx: optax.GradientTransformation,
    mesh: Mesh,
    rules=shd.DEFAULT_RULES,
) -> TrainState:
    """NamedShardings for every leaf of a TrainState (optimizer moments follow their params).

    ``logical`` maps slot name -> tree of logical-axis tuples (`LanguageModel.logical_axes`).
    """
    rep = shd.replicated(mesh)
    params_sh = shd.tree_shardings(abstract.params, _logical_tree(abstract.params, logical),
                                   mesh, rules)
    frozen_sh = shd.tree_shardings(abstract.frozen, _logical_tree(abstract.frozen, logical),
                                   mesh, rules)

    opt_sh = optax.tree_map_params(
        tx,
        lambda _, sh: sh,
        abstract.opt_state,
        params_sh,
        transform_non_params=lambda _: rep,
        is_leaf=lambda x: isinstance(x, NamedSharding),
    )
    # Factored optimizers (adafactor) keep moments whose shapes differ from the params;
    # a sharding that no longer fits the shape falls back to replication.
    opt_sh = jax.tree.map(
        lambda x, sh: sh if _fits(x, sh) else rep, abstract.opt_state, opt_sh
    )
    aux_sh = jax.tree.map(lambda _: rep, abstract.aux)
    return TrainState(step=rep, rng=rep, params=params_sh, opt_state=opt_sh, frozen=frozen_sh,
                      aux=aux_sh)


def _fits(x, sh: NamedSharding) -> bool:
    spec = tuple(sh.spec)
    if len(spec) > len(x.shape):
        return False
    for dim, axes in zip(x.shape, spec):
        if axes is None:
            continue
        axes = (axes,) if isinstance(axes, str) else axes
        size = 1
        for a in axes:
            size *= sh.mesh.shape[a]
        if dim % size:
            return False
    return True


def _fresh(params, frozen, rng, tx, aux=None) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), rng=jax.random.key_data(rng),
                      params=params, opt_state=tx.init(params), frozen=frozen,
                      aux={} if aux is None else aux)


def _placed(make, args, tx, mesh, logical, rules, arg_shardings=None
            ) -> tuple[TrainState, TrainState]:
    """Runs `make(*args)` once under jit with the state's shardings as out_shardings.
    ``arg_shardings(shardings)`` first moves the arguments onto the mesh (arrays committed
    to one device, e.g. restored from a checkpoint, cannot enter a jit over all of them)."""
    abstract = jax.eval_shape(make, *args)
    shardings = state_shardings(abstract, logical, tx, mesh, rules)
    if arg_shardings is not None:
        args = jax.device_put(args, arg_shardings(shardings))
    return jax.jit(make, out_shardings=shardings)(*args), shardings


def create_state(
    init_fn: Callable[[jax.Array], tuple[dict[str, Params], dict[str, Params]]],
    tx: optax.GradientTransformation,
    rng: jax.Array,
    mesh: Mesh,
    logical: Mapping[str, Any],
    rules=shd.DEFAULT_RULES,
) -> tuple[TrainState, TrainState]:
    """Initializes a TrainState directly into its shardings (never whole on one device).

    init_fn(rng) -> (trainable slots, frozen slots). Returns (state, shardings).
    """

    def make(rng):
        init_rng, state_rng = jax.random.split(rng)
        return _fresh(*init_fn(init_rng), state_rng, tx)

    return _placed(make, (rng,), tx, mesh, logical, rules)


def state_from_params(
    params: dict[str, Params],
    frozen: dict[str, Params],
    tx: optax.GradientTransformation,
    rng: jax.Array,
    mesh: Mesh,
    logical: Mapping[str, Any],
    rules=shd.DEFAULT_RULES,
    aux: dict[str, Any] | None = None,
) -> tuple[TrainState, TrainState]:
    """A fresh TrainState around existing parameters (a pretrained or base model), placed
    into its shardings, with `aux` (replicated arrays) as its ``aux``. The arrays are
    passed as arguments, never baked into the program. Returns (state, shardings)."""
    make = lambda params, frozen, rng, aux: _fresh(params, frozen, rng, tx, aux)
    return _placed(make, (params, frozen, rng, aux or {}), tx, mesh, logical, rules,
                   lambda sh: (sh.params, sh.frozen, sh.rng, sh.aux))
