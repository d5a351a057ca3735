"""Host-side construction of sequence batches (numpy only; see `rlfb_jax.losses.sequence`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def make_sequence_batch(
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    prompt_len: int,
    completion_len: int,
    pad_id: int = 0,
) -> dict[str, np.ndarray]:
    """Left-pads prompts to `prompt_len`, right-pads completions to `completion_len`.

    Prompts that are too long keep their last tokens; completions that are too long are cut
    (their stop token is then lost, which the caller can count with `truncated`).
    Returns tokens [B, P+N] int32, attention_mask and loss_mask [B, P+N] bool, and
    truncated [B] bool.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    b, length = len(prompts), prompt_len + completion_len
    tokens = np.full((b, length), pad_id, np.int32)
    attn = np.zeros((b, length), bool)
    loss = np.zeros((b, length), bool)
    truncated = np.zeros((b,), bool)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        p = list(p)[-prompt_len:]
        c = list(c)
        truncated[i] = len(c) > completion_len
        c = c[:completion_len]
        tokens[i, prompt_len - len(p) : prompt_len] = p
        attn[i, prompt_len - len(p) : prompt_len] = True
        tokens[i, prompt_len : prompt_len + len(c)] = c
        attn[i, prompt_len : prompt_len + len(c)] = True
        loss[i, prompt_len : prompt_len + len(c)] = True
    return {"tokens": tokens, "attention_mask": attn, "loss_mask": loss, "truncated": truncated}


def epoch_order(n: int, step: int, batch_size: int, seed: int) -> np.ndarray:
    """Indices of the examples in batch number `step`: a fresh permutation every epoch.

    Depends only on (n, step, batch_size, seed), so a resumed run sees the same data as an
    uninterrupted one (the data position is the step).
    """
    per_epoch = max(n // batch_size, 1)
    epoch, offset = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    idx = perm[offset * batch_size : (offset + 1) * batch_size]
    if len(idx) < batch_size:  # fewer examples than one batch: wrap around
        idx = np.resize(perm, batch_size)
    return idx
