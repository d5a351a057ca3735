"""Sampler throughput: our jitted KV-cache sampler against transformers' PyTorch `generate`.

Both decode greedily, 128 new tokens, from the same random tiny Llama weights (built with
transformers, saved, loaded into rlfb_jax) and the same prompts, at batch 1, 8 and 32.
Compilation is excluded (one warm-up call each); each timing is the median of
``--repeats`` calls, ours and transformers' alternating so both see the same background
load. Torch uses one thread per core. Prints tokens/s for both, whether the greedy tokens
agree, and ``ratio_vs_transformers@B=X`` (our tokens/s over transformers') for every batch
size; the headline number is ``ratio_vs_transformers@32``.

    python benchmarks/sampler.py [--batches 1,8,32] [--new-tokens 128] [--repeats 3]
    python benchmarks/sampler.py --quick     # seconds: batches 1,8, 16 new tokens, 1 repeat
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_checkpoint(out_dir: str, vocab: int = 2048):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=256, intermediate_size=688,
                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=512, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(out_dir)
    return model


def _ours(sampler, params, prompts, sp):
    import jax

    return jax.block_until_ready(sampler(params, prompts, jax.random.key(0), sp))


def _ref(hf, ids, kw):
    import torch

    with torch.no_grad():
        return hf.generate(ids, **kw)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="smoke check in seconds (batches 1,8; 16 new tokens; 1 repeat)")
    args = ap.parse_args(argv)
    if args.quick:
        args.batches, args.new_tokens, args.repeats = "1,8", 16, 1
    import jax
    import torch

    from rlfb_jax.models import load_checkpoint
    from rlfb_jax.models.sampler import Sampler, SamplingParams

    torch.set_num_threads(os.cpu_count() or 1)
    tmp = tempfile.mkdtemp()
    hf = build_checkpoint(tmp)
    lm, params, _ = load_checkpoint(tmp, tokenizer=False)
    shutil.rmtree(tmp)
    sampler = Sampler(lm, prompt_buckets=(args.prompt_len,), batch_multiple=1)
    sp = SamplingParams(temperature=0.0, max_new_tokens=args.new_tokens)
    rng = np.random.default_rng(0)
    print(f"devices: {jax.devices()}  torch threads: {torch.get_num_threads()}")
    for b in [int(x) for x in args.batches.split(",")]:
        prompts = rng.integers(3, lm.config.vocab_size, (b, args.prompt_len))
        ids = torch.tensor(prompts)
        kw = dict(attention_mask=torch.ones_like(ids), do_sample=False,
                  max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, pad_token_id=0)

        run_ours = functools.partial(_ours, sampler, params, prompts.tolist(), sp)
        run_ref = functools.partial(_ref, hf, ids, kw)
        ours, ref = run_ours(), run_ref()  # compile / warm up
        t_ours, t_ref = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            ours = run_ours()
            t_ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            ref = run_ref()
            t_ref.append(time.perf_counter() - t)
        t_ours, t_ref = float(np.median(t_ours)), float(np.median(t_ref))
        same = np.array_equal(np.asarray(ours.tokens), ref[:, args.prompt_len:].numpy())
        n_tok = b * args.new_tokens
        print(f"batch {b:3d}: ours {n_tok / t_ours:9.1f} tok/s   transformers "
              f"{n_tok / t_ref:9.1f} tok/s   same tokens: {same}")
        print(f"ratio_vs_transformers@{b}={t_ref / t_ours:.2f}")


if __name__ == "__main__":
    main()
