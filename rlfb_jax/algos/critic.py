"""CodeRL's critic (``config.algo = "critic"``; Le et al. 2022): a model that predicts a
program's outcome class (compile error, runtime error, failed test, passed) from the task
and the program, at every program token.

    1. samples   ``critic.n_samples`` programs per training task from the base (T, top-k as
                 configured), run against the hidden tests: the class labels
    2. critic    the base + a ``critic`` head (4 logits), fine-tuned in the TrainState's
                 "critic" slot with the "critic" loss (`rlfb_jax.losses.critic`)
    3. held out  the same on samples of the held-out tasks: outcome-class accuracy at the
                 last program token, against always predicting the most frequent class
                 (training weights the classes equally, ``critic.balance``: about 3 of 4
                 programs fail a test, and an unweighted critic learned to say only that)

Outputs: summary.json (``critic/acc``, ``critic/acc_majority``, ``critic/balanced_acc`` (the
mean recall over classes: 0.25 for a constant answer), ``critic/recall/<class>``,
``critic/pass_auc``: how well P(passed) ranks the passing programs), critic.md (the
confusion matrix of the held-out samples), the sample files, and the checkpoint whose
"critic" slot PG/PPO load with ``rl.critic_workdir`` to weight each token by the critic's probability of the outcome
its program had.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from rlfb_jax.algos import register_algo
from rlfb_jax.algos.driver import Driver
from rlfb_jax.algos.sft import default_config as sft_config
from rlfb_jax.core import sharding as shd
from rlfb_jax.core.batching import epoch_order, make_sequence_batch
from rlfb_jax.core.config import experiment_config
from rlfb_jax.core.optim import make_optimizer
from rlfb_jax.core.rollout import rollout
from rlfb_jax.core.state import named_key
from rlfb_jax.core.step import make_step
from rlfb_jax.data.tokenizer import encode_batch
from rlfb_jax.losses import get_loss
from rlfb_jax.losses.critic import CRITIC_CLASSES, critic_logits, outcome_class
from rlfb_jax.losses.verifier import last_token_index


def default_config() -> ml_collections.ConfigDict:
    c = experiment_config()
    del c.model  # the critic is the base's architecture + a head
    c.algo = "critic"
    c.base = sft_config()
    c.base_workdir = ""
    c.critic = ml_collections.ConfigDict(dict(
        train_tasks=2048, n_samples=4, test_tasks=200, test_samples=4, temperature=0.7,
        top_k=40, top_p=1.0, max_new_tokens=48, sample_batch=256, steps=300, batch_size=32,
        score_batch=256, workers=2, timeout=2.0,
        balance=True))  # class-balanced loss weights (most programs fail their tests)
    c.optimizer.learning_rate = 1e-4
    c.optimizer.warmup_steps = 20
    c.optimizer.schedule = "cosine"
    c.train.log_every = 20
    c.train.checkpoint_every = 100
    return c


def _samples(driver: Driver, base, tasks, n: int, key, name: str) -> list[dict]:
    """n programs per task with their outcome class; read back from WORKDIR/<name>.jsonl."""
    path = epath.Path(driver.workdir) / f"{name}.jsonl"
    if path.exists():
        return [json.loads(line) for line in path.read_text().splitlines() if line]
    cc = driver.config.critic
    sampling = base.policy.sampling(cc.temperature, cc.top_k, cc.top_p, cc.max_new_tokens)
    eps = rollout(base.policy, base.params, tasks, sampling, n, key, driver.pool,
                  chunk_rows=int(cc.sample_batch), desc=name)
    ids = eps.completion_ids()
    rows = [{"task": i // n, "completion": eps.texts[i], "ids": ids[i], "status": o.status,
             "label": outcome_class(o.status)} for i, o in enumerate(eps.outcomes)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def critic_batch(tokenizer, tasks, rows, prompt_len: int, completion_len: int, pad: int,
                 eos: int) -> dict[str, np.ndarray]:
    """Sequence batch (prompt, program + eos) with ``labels`` [N] int32 (-1: no verdict)."""
    prompts = encode_batch(tokenizer, [tasks[r["task"]].prompt for r in rows])
    comps = [list(r["ids"]) + ([] if r["ids"] and r["ids"][-1] == eos else [eos]) for r in rows]
    batch = make_sequence_batch(prompts, comps, prompt_len, completion_len + 1, pad)
    batch.pop("truncated")
    batch["labels"] = np.array([r["label"] for r in rows], np.int32)
    return batch


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-row weights [N] float32 giving every present class the same total weight (mean 1
    over labelled rows; 0 for rows without a label)."""
    keep = labels >= 0
    counts = np.bincount(labels[keep], minlength=len(CRITIC_CLASSES)).astype(np.float64)
    present = counts > 0
    per_class = np.where(present, keep.sum() / (present.sum() * np.maximum(counts, 1)), 0.0)
    return np.where(keep, per_class[np.maximum(labels, 0)], 0.0).astype(np.float32)


def _in_chunks(fn, params, batch, keys, mesh, rules, batch_size: int) -> np.ndarray:
    """``fn(params, part)`` over ``batch``'s rows in chunks of exactly ``batch_size`` rows
    (the last one padded by repeating the last row, so one compilation serves every
    chunk), sharded over the mesh; the results concatenated on the host, padding dropped."""
    n, out = len(batch["tokens"]), []
    for s in range(0, n, batch_size):
        idx = np.arange(s, s + batch_size).clip(max=n - 1)
        part = {k: batch[k][idx] for k in keys}
        out.append(jax.device_get(fn(params, shd.shard_batch(part, mesh, rules)))[
            : min(batch_size, n - s)])
    return np.concatenate(out)


def class_probs(lm, params, batch, mesh, rules, batch_size: int) -> np.ndarray:
    """Softmax of the critic at each row's last program token, [N, C]."""

    @jax.jit
    def last_probs(params, part):
        logits = critic_logits(lm, params, part)
        last = last_token_index(part["loss_mask"])
        return jax.nn.softmax(jnp.take_along_axis(logits, last[:, None, None], axis=1)[:, 0])

    return _in_chunks(last_probs, params, batch, ("tokens", "attention_mask", "loss_mask"),
                      mesh, rules, batch_size)


def passed_probs_fn(lm):
    """A jitted ``(params, batch) -> P(passed) [B, L]`` of the critic at every position
    (position t has read tokens <= t); build it once per critic (each call of the result
    with the same batch shape reuses one compilation)."""
    passed = CRITIC_CLASSES.index("passed")

    @jax.jit
    def probs(params, part):
        return jax.nn.softmax(critic_logits(lm, params, part).astype(jnp.float32))[..., passed]

    return probs


def passed_probs(probs_fn, params, batch, mesh, rules, batch_size: int) -> np.ndarray:
    """`probs_fn` (`passed_probs_fn`) over `batch` in fixed-size chunks, [N, L]."""
    return _in_chunks(probs_fn, params, batch, ("tokens", "attention_mask"), mesh, rules,
                      batch_size)


def prefix_cut(pass_prob: np.ndarray, loss_mask: np.ndarray) -> int:
    """How many program tokens CodeRL's critical sampling keeps for one row: the k in
    1 .. m-2 (m program tokens with the stop token) whose P(passed | prompt, w_1..w_k) is
    highest, so at least the first token is kept (the critic is trained on program tokens
    only) and the last program token and the stop token are sampled again. Programs of
    fewer than 3 tokens keep nothing. Ties: the shortest prefix."""
    pos = np.flatnonzero(loss_mask)
    if len(pos) < 3:
        return 0
    return 1 + int(np.argmax(pass_prob[pos[: len(pos) - 2]]))


def critical_prefixes(probs_fn, params, tokenizer, tasks, completions, prompt_len: int,
                      completion_len: int, pad: int, eos: int, mesh, rules,
                      batch_size: int) -> list[tuple[str, list[int]]]:
    """For each (task, failed completion): the prefix to keep and sample on from, as (text,
    token ids) (`prefix_cut` of the critic's values; Le et al. 2022, critical sampling).
    The ids are the completion's own encoding, as training encodes completions."""
    if not completions:
        return []
    ids = encode_batch(tokenizer, list(completions))
    rows = [{"task": i, "ids": r, "label": -1} for i, r in enumerate(ids)]
    batch = critic_batch(tokenizer, tasks, rows, prompt_len, completion_len, pad, eos)
    probs = passed_probs(probs_fn, params, batch, mesh, rules, batch_size)
    cuts = [prefix_cut(p, m) for p, m in zip(probs, batch["loss_mask"])]
    # a prefix is the completion's own text (decoding may normalise a boundary's spaces)
    return [(os.path.commonprefix([tokenizer.decode(r[:k], skip_special_tokens=True), text])
             if k else "", r[:k]) for r, k, text in zip(ids, cuts, completions)]


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties half."""
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="stable")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    allv = np.concatenate([pos, neg])
    for v in np.unique(allv):  # average ranks of ties
        ranks[allv == v] = ranks[allv == v].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)
                 / (len(pos) * len(neg)))


def evaluate(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, per-class recall, the confusion matrix and P(passed)'s AUC over rows with a
    label, against the majority class."""
    keep = labels >= 0
    probs, labels = probs[keep], labels[keep]
    pred = probs.argmax(axis=1)
    counts = np.bincount(labels, minlength=len(CRITIC_CLASSES))
    confusion = np.zeros((len(CRITIC_CLASSES),) * 2, int)
    np.add.at(confusion, (labels, pred), 1)
    recalls = [confusion[c, c] / counts[c] for c in range(len(counts)) if counts[c]]
    out = {"critic/acc": float(np.mean(pred == labels)),
           "critic/balanced_acc": float(np.mean(recalls)),
           "critic/acc_majority": float(counts.max() / max(counts.sum(), 1)),
           "critic/test_rows": float(len(labels))}
    auc = _auc(probs[:, -1], labels == len(CRITIC_CLASSES) - 1)
    if np.isfinite(auc):  # both passing and failing programs among the held-out samples
        out["critic/pass_auc"] = auc
    for c, name in enumerate(CRITIC_CLASSES):
        out[f"critic/share/{name}"] = float(counts[c] / max(counts.sum(), 1))
        if counts[c]:
            out[f"critic/recall/{name}"] = float(confusion[c, c] / counts[c])
    return out, confusion


def confusion_table(confusion: np.ndarray) -> str:
    """Markdown: rows the true class, columns the predicted one."""
    lines = ["| true \\ predicted | " + " | ".join(CRITIC_CLASSES) + " |",
             "|" + " --- |" * (len(CRITIC_CLASSES) + 1)]
    lines += [f"| {name} | " + " | ".join(str(int(x)) for x in row) + " |"
              for name, row in zip(CRITIC_CLASSES, confusion)]
    return "\n".join(lines) + "\n"


@register_algo("critic", pool="critic")
def train(driver: Driver) -> dict:
    config, cc = driver.config, driver.config.critic
    base = driver.base_model(heads=("critic",))
    lm, tok = base.policy.lm, base.policy.tokenizer
    key = named_key(jax.random.key(int(config.seed)), "critic")
    t0 = time.time()
    train_tasks = list(base.data.train_tasks)[: int(cc.train_tasks)]
    test_tasks = list(base.data.eval_tasks)[: int(cc.test_tasks)]
    fit = _samples(driver, base, train_tasks, int(cc.n_samples), jax.random.fold_in(key, 0),
                   "critic_train_samples")
    test = _samples(driver, base, test_tasks, int(cc.test_samples), jax.random.fold_in(key, 1),
                    "critic_test_samples")
    t_samples = time.time() - t0
    shape = (int(config.base.data.prompt_len), int(cc.max_new_tokens), base.policy.pad_id,
             base.policy.eos_id)
    batch = critic_batch(tok, train_tasks, [r for r in fit if r["label"] >= 0], *shape)
    if cc.balance:
        batch["weights"] = balanced_weights(batch["labels"])
    steps = int(cc.steps)
    tx, schedule = make_optimizer(config.optimizer, steps)
    state, shardings = driver.create_state({"critic": jax.tree.map(jnp.copy, base.params)}, {},
                                           tx, {"critic": lm.logical_axes()})
    step_fn = make_step(get_loss("critic"), tx, schedule=schedule, state_shardings=shardings,
                        mesh=driver.mesh, rules=driver.rules, model=lm)
    n, bs = len(batch["labels"]), int(cc.batch_size)

    def step(state, i):
        idx = epoch_order(n, i, bs, int(config.seed))
        return step_fn(state, driver.shard({k: v[idx] for k, v in batch.items()}))

    t0 = time.time()
    state = driver.loop(state, step, start=int(jax.device_get(state.step)), total=steps,
                        desc="critic", meta=lambda i: {"step": i})
    t_train = time.time() - t0
    tbatch = critic_batch(tok, test_tasks, test, *shape)
    probs = class_probs(lm, state.params["critic"], tbatch, driver.mesh, driver.rules,
                        int(cc.score_batch))
    metrics, confusion = evaluate(probs, tbatch["labels"])
    summary = {**metrics, "critic/train_rows": float(n), "time/samples_s": t_samples,
               "time/train_s": t_train}
    (epath.Path(driver.workdir) / "critic.md").write_text(
        "# Critic: held-out outcome classes\n\n" + confusion_table(confusion))
    return driver.finish(summary, step=steps, state=state, meta={"step": steps})
