"""PPO update throughput: our jitted epoch update against the same step in PyTorch.

    python benchmarks/train_step.py [--rows 256] [--minibatch-rows 32] [--repeats 3]
    python benchmarks/train_step.py --quick      # seconds: the :smoke model and batch

Ours: `rlfb_jax.core.step.make_epoch_update` with the registered "ppo" loss and the
hparams, optimizer (adamw, its learning-rate schedule, global-norm clipping), model,
sequence lengths, epochs and minibatch size of ``experiments/synthetic_ppo.py``, built
exactly as `rlfb_jax.algos.ppo` builds it: one jitted, state-donating call doing epochs x
minibatches optimizer steps. The experiment updates on 1,536 rows per iteration (48
minibatches of 32); by default this script takes 256 rows (8 minibatches of the same 32
rows), which keeps every step's shape and the whole run to a few minutes on 2 cores.

Baseline (named "torch"): transformers' ``LlamaForCausalLM`` with the same config and the
same weights (built with transformers, saved, loaded into rlfb_jax), the same PPO clipped
surrogate written in torch (token mean over completion tokens, entropy as a metric),
``loss.backward()``, ``clip_grad_norm_`` and ``torch.optim.AdamW`` (same betas, eps and
weight decay; each step's learning rate from our optax schedule), on identical minibatches
(the same per-epoch permutations as ours), torch on CPU with one thread per core; JAX with
its defaults.

Compilation and warm-up are excluded: the first call of each is untimed (and its losses are
compared, to show both do the same computation); then ``--repeats`` calls alternate between
the two so both see the same background load, and each reports the median.

Prints tokens/s and achieved FLOP/s for both, the loss agreement, and
``ratio_vs_torch=X`` (our tokens/s over torch's; > 1 means ours is faster).

FLOPs of one call (stated, not measured), with tokens = epochs x rows x seq_len (padding
included: both implementations compute on it):

    6 * N * tokens  +  12 * n_layers * n_heads * head_dim * seq_len * tokens

N counts the matmul parameters (q/k/v/o and MLP projections of every layer, plus the LM
head; the tied embedding lookup is not a matmul). The second term is attention's score and
value matmuls over the full seq_len x seq_len square (forward 4 * T * H * Dh per token and
layer, backward twice that), which both implementations compute without skipping masked
entries (the PaLM appendix-B convention).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_checkpoint(out_dir: str, mcfg):
    """A random LlamaForCausalLM with the sizes of our ``config.model``, saved to out_dir."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=mcfg.vocab_size, hidden_size=mcfg.d_model, intermediate_size=mcfg.d_ff,
        num_hidden_layers=mcfg.n_layers, num_attention_heads=mcfg.n_heads,
        num_key_value_heads=mcfg.n_kv_heads or mcfg.n_heads, rms_norm_eps=mcfg.norm_eps,
        rope_theta=mcfg.rope_theta, max_position_embeddings=mcfg.max_len,
        tie_word_embeddings=mcfg.tie_embeddings,
    )
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out_dir)
    return model.train()


def make_batch(rows: int, prompt_len: int, completion_len: int, vocab: int, seed: int = 0):
    """A PPO-shaped host batch: left-padded prompts of random length, right-padded
    completions of random length, random tokens, and per-sequence advantages (the GRPO
    shape) broadcast over the completion tokens. old/ref log-probs are filled in later."""
    from rlfb_jax.core.batching import make_sequence_batch

    rng = np.random.default_rng(seed)
    prompts = [rng.integers(3, vocab, rng.integers(prompt_len // 2, prompt_len + 1)).tolist()
               for _ in range(rows)]
    comps = [rng.integers(3, vocab, rng.integers(completion_len // 4, completion_len + 1)).tolist()
             for _ in range(rows)]
    batch = make_sequence_batch(prompts, comps, prompt_len, completion_len)
    batch.pop("truncated")
    tmask = batch["loss_mask"][:, 1:].astype(np.float32)
    adv = rng.standard_normal((rows, 1)).astype(np.float32) * tmask
    batch.update(advantages=adv, returns=adv.copy(), old_values=np.zeros_like(adv))
    return batch


def flops_per_token(cfg, seq_len: int) -> float:
    """6 N + 12 L H Dh T (see the module docstring)."""
    d, h, k, dh, f = cfg.d_model, cfg.n_heads, cfg.num_kv_heads, cfg.dim_per_head, cfg.d_ff
    per_layer = d * h * dh + 2 * d * k * dh + h * dh * d + 3 * d * f
    n_matmul = cfg.n_layers * per_layer + cfg.vocab_size * d
    return 6.0 * n_matmul + 12.0 * cfg.n_layers * h * dh * seq_len


def permutations(rng, rows: int, epochs: int) -> list[np.ndarray]:
    """The per-epoch permutations `make_epoch_update` draws from `rng` (rlfb_jax/core/step.py)."""
    import jax

    return [np.array(jax.random.permutation(key, rows)) for key in jax.random.split(rng, epochs)]


class TorchPPO:
    """The baseline: the same PPO update in PyTorch (token-mean clipped surrogate, no critic)."""

    def __init__(self, model, rl, opt_cfg, schedule, batch):
        import torch

        self.torch, self.model, self.rl = torch, model, rl
        self.schedule, self.steps = schedule, 0  # ours: the same optax schedule by step
        self.clip = float(opt_cfg.clip_norm or 0.0)
        wd = opt_cfg.weight_decay
        self.opt = torch.optim.AdamW(
            model.parameters(), lr=float(opt_cfg.learning_rate),
            betas=(opt_cfg.b1 or 0.9, opt_cfg.b2 or 0.999), eps=opt_cfg.eps or 1e-8,
            weight_decay=0.0 if wd is None else float(wd))
        attn = np.asarray(batch["attention_mask"])
        pos = np.maximum(np.cumsum(attn, axis=1) - 1, 0)  # as ours: left padding aware
        self.batch = {
            "tokens": torch.from_numpy(np.asarray(batch["tokens"], np.int64)),
            "attention_mask": torch.from_numpy(attn.astype(np.int64)),
            "positions": torch.from_numpy(pos.astype(np.int64)),
            "mask": torch.from_numpy(np.asarray(batch["loss_mask"])[:, 1:].astype(np.float32)),
            "old": torch.from_numpy(np.array(batch["old_logprobs"], np.float32)),
            "adv": torch.from_numpy(np.array(batch["advantages"], np.float32)),
        }

    def loss(self, mb):
        torch = self.torch
        out = self.model(input_ids=mb["tokens"], attention_mask=mb["attention_mask"],
                         position_ids=mb["positions"], use_cache=False)
        # scored at the sampling temperature, as ours (rlfb_jax/losses/pg.py)
        logp_all = torch.log_softmax(out.logits[:, :-1].float() / float(self.rl.temperature),
                                     dim=-1)
        logp = logp_all.gather(-1, mb["tokens"][:, 1:, None])[..., 0]
        mask = mb["mask"]
        ratio = torch.exp(logp - mb["old"])
        eps = float(self.rl.loss_kwargs.clip_eps)
        obj = torch.minimum(ratio * mb["adv"], torch.clamp(ratio, 1 - eps, 1 + eps) * mb["adv"])
        count = mask.sum().clamp(min=1.0)
        loss = -(obj * mask).sum() / count
        with torch.no_grad():  # ours reports the entropy too
            entropy = (-(logp_all.exp() * logp_all).sum(-1) * mask).sum() / count
        return loss, entropy

    def update(self, perms, minibatches: int) -> list[float]:
        """One call: for each epoch's permutation, one optimizer step per minibatch."""
        torch = self.torch
        losses = []
        for perm in perms:
            for idx in np.split(perm, minibatches):
                mb = {k: v[torch.from_numpy(idx)] for k, v in self.batch.items()}
                self.opt.zero_grad(set_to_none=True)
                loss, _ = self.loss(mb)
                loss.backward()
                if self.clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
                for group in self.opt.param_groups:
                    group["lr"] = float(self.schedule(self.steps))
                self.opt.step()
                self.steps += 1
                losses.append(float(loss.detach()))
        return losses


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=256, help="sequences per update call")
    ap.add_argument("--minibatch-rows", type=int, default=0,
                    help="sequences per optimizer step (default: the experiment's, "
                         "update_rows / minibatches)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="smoke check in seconds (synthetic_ppo.py:smoke sizes, 1 repeat)")
    args = ap.parse_args(argv)
    import jax
    import torch

    from experiments import synthetic_ppo
    from rlfb_jax.algos.pg_config import loss_kwargs
    from rlfb_jax.core import sharding as shd
    from rlfb_jax.core.optim import make_optimizer
    from rlfb_jax.core.state import state_from_params
    from rlfb_jax.core.step import make_epoch_update
    from rlfb_jax.losses import get_loss
    from rlfb_jax.losses.sequence import sequence_logprobs
    from rlfb_jax.models import load_checkpoint

    config = synthetic_ppo.get_config("smoke" if args.quick else "")
    repeats = 1 if args.quick else args.repeats
    rl, mcfg = config.rl, config.base.model
    if (rl.loss != "ppo" or rl.loss_kwargs.aggregation != "token_mean" or rl.value_slot
            or rl.loss_kwargs.ent_coef or rl.kl.placement != "reward"):
        sys.exit("the torch baseline implements the token-mean PPO loss without critic, "
                 "entropy bonus or KL in the loss; the config asks for more")
    torch.set_num_threads(os.cpu_count() or 1)
    exp_rows = int(rl.update_rows) or int(rl.prompts_per_iter) * int(rl.n_samples)
    mb_rows = args.minibatch_rows or exp_rows // int(rl.minibatches)
    rows = min(args.rows, exp_rows) if args.quick else args.rows
    if mb_rows < 1 or rows < mb_rows or rows % mb_rows:
        sys.exit(f"--rows {rows} does not split into minibatches of {mb_rows} rows "
                 f"(--minibatch-rows); pick a multiple of it")
    epochs, minibatches = int(rl.epochs), rows // mb_rows
    prompt_len, completion_len = int(config.base.data.prompt_len), int(rl.max_new_tokens)
    seq_len = prompt_len + completion_len

    tmp = tempfile.mkdtemp()
    hf = build_checkpoint(tmp, mcfg)
    lm, params, _ = load_checkpoint(tmp, tokenizer=False)
    shutil.rmtree(tmp)
    batch = make_batch(rows, prompt_len, completion_len, lm.config.vocab_size)
    # Rollout log-probs as the PPO loop has them: the sampling policy is the one being trained.
    temperature = float(rl.temperature)  # the loop scores at the sampling temperature
    old, _, _ = jax.jit(lambda p, b: sequence_logprobs(lm, p, b, temperature=temperature))(
        params, batch)
    batch["old_logprobs"] = batch["ref_logprobs"] = np.asarray(old)

    # -- ours, as rlfb_jax/algos/ppo.py builds it
    tx, schedule = make_optimizer(config.optimizer, int(rl.iterations) * epochs * minibatches)
    mesh, rules = shd.make_mesh(config.mesh), shd.DEFAULT_RULES
    logical = {"policy": lm.logical_axes(), "reference": lm.logical_axes()}
    state, shardings = state_from_params({"policy": params}, {"reference": params}, tx,
                                         jax.random.key(config.seed), mesh, logical, rules)
    hparams = loss_kwargs(rl)
    update = make_epoch_update(get_loss("ppo"), tx, epochs=epochs, minibatches=minibatches,
                               schedule=schedule, state_shardings=shardings, mesh=mesh,
                               rules=rules, model=lm, **hparams)
    dev_batch = shd.shard_batch(batch, mesh, rules)
    theirs = TorchPPO(hf, rl, config.optimizer, schedule, batch)

    def ours_call(state, r):
        state, metrics = update(state, dev_batch, jax.random.key(r))
        return state, jax.device_get(metrics)

    # First call of each: compile / warm up, and check both compute the same losses.
    state, m = ours_call(state, 0)
    t_losses = theirs.update(permutations(jax.random.key(0), rows, epochs), minibatches)
    d_mean = abs(float(m["train/loss"]) - float(np.mean(t_losses)))
    d_last = abs(float(m["train/loss@last"]) - t_losses[-1])

    t_ours, t_torch = [], []
    for r in range(1, repeats + 1):
        t = time.perf_counter()
        state, _ = ours_call(state, r)
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        theirs.update(permutations(jax.random.key(r), rows, epochs), minibatches)
        t_torch.append(time.perf_counter() - t)
    t_ours, t_torch = float(np.median(t_ours)), float(np.median(t_torch))

    tokens = epochs * rows * seq_len
    fpt = flops_per_token(lm.config, seq_len)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    print(f"devices: {jax.devices()}  torch threads: {torch.get_num_threads()}  "
          f"cores: {os.cpu_count()}  load average: {os.getloadavg()[0]:.1f}")
    print(f"model: {n_params / 1e6:.2f}M params (d={mcfg.d_model}, {mcfg.n_layers} layers, "
          f"vocab {mcfg.vocab_size}); batch {rows} x {seq_len} tokens, {epochs} epoch(s) x "
          f"{minibatches} minibatches; {fpt / 1e6:.1f} MFLOP/token; median of {repeats}")
    print(f"first-call loss |ours - torch|: mean {d_mean:.2e}, last {d_last:.2e}")
    for name, t in (("ours (jax)", t_ours), ("torch", t_torch)):
        print(f"{name:11s} {t:8.3f} s/update  {tokens / t:10.1f} tokens/s  "
              f"{fpt * tokens / t / 1e9:8.2f} GFLOP/s")
    print(f"ratio_vs_torch={t_torch / t_ours:.2f}")


if __name__ == "__main__":
    main()
