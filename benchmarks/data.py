"""Data pipeline speed: synthetic task generation and the tokenizer, against the rate at
which the synthetic base model's SFT consumes examples, measured in the same process.

    python benchmarks/data.py [--tasks 20000] [--repeats 3]
    python benchmarks/data.py --quick       # seconds: the :smoke sizes, 1 repeat

Ours, with ``experiments/synthetic_sft.py``'s data and model config:
  - generation: `rlfb_jax.data.synthetic.make_splits` (sample programs, run them on inputs,
    keep the distinct ones, split by composition), tasks/s;
  - tokenizer: `train_tokenizer` on the generated train split (seconds; it also reads 1 MB
    of the standard library), then encoding every task's prompt and reference, examples/s.
Baseline (named "sft"): the jitted forward + backward of the "sft" loss on one training
batch of the base model (batch_size x (prompt_len + completion_len) tokens), without the
optimizer update, so an upper bound on the examples/s training consumes; compilation is
excluded. Each figure is the median of ``--repeats`` runs.

Prints ``ratio_vs_sft=X`` (tasks generated per second over examples trained per second;
generation stays ahead of training while X > 1) and ``encode_ratio_vs_sft=Y``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _median_seconds(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def sft_examples_per_s(config, repeats: int) -> float:
    """The baseline: examples/s of the sft loss's jitted value-and-grad at the config's sizes."""
    import jax

    from rlfb_jax.core.batching import make_sequence_batch
    from rlfb_jax.core.config import model_from_config
    from rlfb_jax.losses import get_loss
    from rlfb_jax.models import LanguageModel

    lm = LanguageModel(model_from_config(config.model))
    params = {"policy": lm.init(jax.random.key(0))}
    bs = int(config.train.batch_size)
    p_len, c_len = int(config.data.prompt_len), int(config.data.completion_len)
    rng = np.random.default_rng(0)
    vocab = int(config.model.vocab_size)
    batch = make_sequence_batch(
        [rng.integers(3, vocab, p_len // 2).tolist() for _ in range(bs)],
        [rng.integers(3, vocab, c_len // 2).tolist() for _ in range(bs)], p_len, c_len)
    batch.pop("truncated")
    loss = get_loss("sft")
    grad = jax.jit(jax.value_and_grad(lambda p, b: loss(p, b, model=lm)[0]))
    jax.block_until_ready(grad(params, batch))  # compile
    seconds, _ = _median_seconds(lambda: jax.block_until_ready(grad(params, batch)),
                                 max(repeats, 3))
    return bs / seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=0,
                    help="train tasks to generate (default: synthetic_sft.py's num_train)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smoke check: :smoke sizes, 1 repeat")
    args = ap.parse_args(argv)

    from experiments import synthetic_sft
    from rlfb_jax.data import tokenizer as tk
    from rlfb_jax.data.synthetic import make_splits

    config = synthetic_sft.get_config("smoke" if args.quick else "")
    repeats = 1 if args.quick else args.repeats
    d = config.data
    n = args.tasks or int(d.num_train)

    gen_s, splits = _median_seconds(
        lambda: make_splits(n, int(d.num_valid), int(d.num_test), seed=int(d.seed),
                            max_depth=int(d.max_depth)), repeats)
    total = sum(len(v) for v in splits.values())
    with tempfile.TemporaryDirectory() as out:
        tok_s, _ = _median_seconds(
            lambda: tk.train_tokenizer(splits["train"], out_dir=out,
                                       vocab_size=int(d.vocab_size)), repeats)
        tokenizer = tk.load_tokenizer(out)
    tasks = splits["train"]
    texts = [t.prompt for t in tasks] + [t.reference for t in tasks]
    enc_s, _ = _median_seconds(lambda: tokenizer(texts, add_special_tokens=False), repeats)
    sft_rate = sft_examples_per_s(config, repeats)

    gen_rate, enc_rate = total / gen_s, len(tasks) / enc_s
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; median of {repeats}")
    print(f"generation: {total} tasks ({n} train) in {gen_s:.2f} s = {gen_rate:,.0f} tasks/s")
    print(f"tokenizer:  trained on {len(tasks)} tasks in {tok_s:.2f} s (vocab {int(d.vocab_size)});"
          f" encode {enc_rate:,.0f} examples/s")
    print(f"sft (baseline): forward + backward at batch {int(config.train.batch_size)}: "
          f"{sft_rate:,.1f} examples/s")
    print(f"ratio_vs_sft={gen_rate / sft_rate:.1f}")
    print(f"encode_ratio_vs_sft={enc_rate / sft_rate:.1f}")


if __name__ == "__main__":
    main()
