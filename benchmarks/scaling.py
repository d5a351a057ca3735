"""Device scaling: SFT steps and PPO updates on 1, 2, 4 and 8 devices, same batch and seed.

    python benchmarks/scaling.py [--devices 1,2,4,8] [--steps 6] [--fsdp]
    python benchmarks/scaling.py --quick        # seconds per device count: :smoke model, 1 and 8
    python benchmarks/scaling.py --gpu          # on a real GPU: MFU and sampling, ~0.5B model

CPU mode (default). Each device count runs in a fresh subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (fake CPU devices sharing the
machine's cores) and the mesh of ``config.mesh`` (`rlfb_jax.core.sharding.make_mesh`):
data parallel over all devices, or with ``--fsdp`` all devices on the fsdp axis (parameters
and optimizer moments sharded). Each subprocess trains the synthetic base model
(experiments/synthetic_sft.py's ``config.model``, random init from the same seed) for
``--steps`` SFT steps (`make_step`, the "sft" loss) on the same global batches, then does
``--steps`` PPO update calls (`make_epoch_update`, the "ppo" loss, synthetic_ppo.py's
epochs and minibatch size of 32 rows: 2 minibatches of the default 64 rows) on one fixed
PPO batch. The parent checks that every device count
gives the losses and final parameters of the 1-device run (prints the max abs differences
and asserts ``--tol``) and records tokens/s (the first step of each phase, which compiles,
is not timed). Baseline: the 1-device run. Prints ``ratio_8_vs_1=X`` = tokens/s on 8
devices / on 1 (SFT and PPO phases together; each phase's ratio is printed too). Fake
devices share the same cores, so on CPU X <= 1 is expected; it measures the cost of the
partitioned program and its collectives, not a speedup.

GPU mode (``--gpu``; measured once on an H100: benchmarks/RESULTS.md). On the first
accelerator, with a ~0.5B-parameter model shaped like Qwen2.5-0.5B (`gpu_model_config`;
random weights, bfloat16 compute, float32 parameters and optimizer moments), reports the PPO update step's tokens/s and MFU
(FLOPs as in benchmarks/train_step.py: 6 N + 12 L H Dh T per token, over the chip's dense
bf16 peak, from ``--peak-tflops`` or a table of known chips) and sampling tokens/s of our
jitted sampler at batch 64 (128-token prompts, 256 new tokens, temperature 1, no stop).
``--gpu-rows``, ``--gpu-minibatches`` and ``--gpu-sample-batch`` change the sizes (64 rows
in one minibatch does not fit an 80 GB card: full-vocabulary logits).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

# Dense bf16 peak FLOP/s by jax device_kind prefix (vendor data sheets, without sparsity).
PEAK_BF16 = {
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
    "NVIDIA GH200": 989e12,
    "NVIDIA A100": 312e12,
    "NVIDIA L4": 121e12,
    "NVIDIA A10G": 70e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
}


def gpu_model_config():
    """A ~0.5B-parameter decoder with Qwen2.5-0.5B's shape (494M parameters)."""
    from rlfb_jax.models.config import ModelConfig

    return ModelConfig(vocab_size=151936, d_model=896, n_layers=24, n_heads=14, n_kv_heads=2,
                       d_ff=4864, max_len=2048, arch="llama", rope_theta=1e6, norm_eps=1e-6,
                       qkv_bias=True, tie_embeddings=True, param_dtype="float32",
                       dtype="bfloat16")


# -- one device count (runs in its own process) --------------------------------------------

def child(args) -> dict:
    import jax
    from train_step import make_batch  # benchmarks/train_step.py

    from experiments import synthetic_ppo
    from rlfb_jax.algos.pg_config import loss_kwargs
    from rlfb_jax.core import sharding as shd
    from rlfb_jax.core.batching import epoch_order, make_sequence_batch
    from rlfb_jax.core.config import model_from_config
    from rlfb_jax.core.optim import make_optimizer
    from rlfb_jax.core.state import create_state, state_from_params
    from rlfb_jax.core.step import make_epoch_update, make_step
    from rlfb_jax.losses import get_loss
    from rlfb_jax.losses.sequence import sequence_logprobs
    from rlfb_jax.models.lm import LanguageModel

    config = synthetic_ppo.get_config("smoke" if args.quick else "")
    base, rl = config.base, config.rl
    lm = LanguageModel(model_from_config(base.model))
    mesh = shd.make_mesh({"data": 1, "fsdp": -1} if args.fsdp else {"data": -1})
    rules = shd.DEFAULT_RULES
    logical = {"policy": lm.logical_axes()}
    p_len, c_len = int(base.data.prompt_len), int(base.data.completion_len)
    seq = p_len + c_len
    steps = int(args.steps)

    # -- SFT: the same global batches (random tokens, fixed seed) on every device count
    tx, schedule = make_optimizer(base.optimizer, steps)
    state, sh = create_state(lambda rng: ({"policy": lm.init(rng)}, {}), tx,
                             jax.random.key(config.seed), mesh, logical, rules)
    step = make_step(get_loss("sft"), tx, schedule=schedule, state_shardings=sh, mesh=mesh,
                     rules=rules, model=lm)
    rng = np.random.default_rng(0)
    n_ex, bs = 4 * args.batch, args.batch
    vocab = lm.config.vocab_size
    prompts = [rng.integers(3, vocab, rng.integers(p_len // 2, p_len + 1)).tolist()
               for _ in range(n_ex)]
    comps = [rng.integers(3, vocab, rng.integers(c_len // 4, c_len + 1)).tolist()
             for _ in range(n_ex)]
    batches = []
    for i in range(steps):
        idx = epoch_order(n_ex, i, bs, 0)
        b = make_sequence_batch([prompts[j] for j in idx], [comps[j] for j in idx], p_len, c_len)
        b.pop("truncated")
        batches.append(shd.shard_batch(b, mesh, rules))
    sft_metrics = []
    state, m = step(state, batches[0])  # compiles
    sft_metrics.append(m)
    jax.block_until_ready(state)
    t = time.perf_counter()
    for b in batches[1:]:
        state, m = step(state, b)
        sft_metrics.append(m)
    jax.block_until_ready(state)
    t_sft = time.perf_counter() - t
    sft_losses = [float(m["train/loss"]) for m in jax.device_get(sft_metrics)]
    params = state.params["policy"]

    # -- PPO updates from the SFT parameters, on one fixed PPO-shaped batch
    rows = args.ppo_rows
    # the experiment's minibatch size (32 rows); the :smoke config's own split in --quick
    mb_rows = (int(rl.update_rows) or int(rl.prompts_per_iter) * int(rl.n_samples)) // int(
        rl.minibatches)
    epochs = int(rl.epochs)
    minibatches = int(rl.minibatches) if args.quick else max(rows // mb_rows, 1)
    if rows % minibatches:
        sys.exit(f"--ppo-rows {rows} does not split into {minibatches} minibatches of "
                 f"{mb_rows} rows")
    tx, schedule = make_optimizer(config.optimizer, steps * epochs * minibatches)
    logical["reference"] = logical["policy"]
    state, sh = state_from_params({"policy": params}, {"reference": params}, tx,
                                  jax.random.key(config.seed), mesh, logical, rules)
    host = make_batch(rows, p_len, int(rl.max_new_tokens), vocab, seed=1)
    dev = shd.shard_batch(host, mesh, rules)
    old, _, _ = jax.jit(lambda p, b: sequence_logprobs(lm, p, b))(state.params["policy"], dev)
    host["old_logprobs"] = host["ref_logprobs"] = np.asarray(old)
    dev = shd.shard_batch(host, mesh, rules)
    update = make_epoch_update(get_loss("ppo"), tx, epochs=epochs, minibatches=minibatches,
                               schedule=schedule, state_shardings=sh, mesh=mesh, rules=rules,
                               model=lm, **loss_kwargs(rl))
    ppo_metrics = []
    state, m = update(state, dev, jax.random.key(0))  # compiles
    ppo_metrics.append(m)
    jax.block_until_ready(state)
    t = time.perf_counter()
    for i in range(1, steps):
        state, m = update(state, dev, jax.random.key(i))
        ppo_metrics.append(m)
    jax.block_until_ready(state)
    t_ppo = time.perf_counter() - t
    ppo_losses = [float(m["train/loss"]) for m in jax.device_get(ppo_metrics)]
    leaves = jax.tree.leaves(jax.device_get(state.params["policy"]))
    np.save(args.params_out, np.concatenate([np.ravel(x) for x in leaves]))
    return {
        "devices": jax.device_count(),
        "mesh": dict(mesh.shape),
        "sft_losses": sft_losses,
        "ppo_losses": ppo_losses,
        "sft_tokens_per_s": (steps - 1) * bs * seq / t_sft,
        "ppo_tokens_per_s": (steps - 1) * epochs * rows * seq / t_ppo,
        "sft_s": t_sft,
        "ppo_s": t_ppo,
    }


# -- the parent: one subprocess per device count -------------------------------------------

def run_child(n: int, args, tmp: str) -> tuple[dict, np.ndarray]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={n}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    out_json = os.path.join(tmp, f"{n}.json")
    params = os.path.join(tmp, f"{n}.npy")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", out_json,
           "--params-out", params, "--steps", str(args.steps), "--batch", str(args.batch),
           "--ppo-rows", str(args.ppo_rows)]
    cmd += ["--quick"] * args.quick + ["--fsdp"] * args.fsdp
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{n} devices failed:\n{out.stderr[-4000:]}")
    with open(out_json) as f:
        return json.load(f), np.load(params)


def cpu_main(args) -> None:
    counts = [int(x) for x in args.devices.split(",")]
    if counts[0] != 1:
        sys.exit("--devices must start with 1 (the baseline)")
    for n in counts:
        if args.batch % n or args.ppo_rows % n:
            sys.exit(f"--batch {args.batch} / --ppo-rows {args.ppo_rows} not divisible by {n}")
    res, params = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            res[n], params[n] = run_child(n, args, tmp)
            r = res[n]
            print(f"{n} device(s), mesh {r['mesh']}: SFT {r['sft_tokens_per_s']:9.1f} tokens/s, "
                  f"PPO update {r['ppo_tokens_per_s']:9.1f} tokens/s", flush=True)
    ref = res[1]
    worst = 0.0
    for n in counts[1:]:
        d_sft = float(np.max(np.abs(np.subtract(res[n]["sft_losses"], ref["sft_losses"]))))
        d_ppo = float(np.max(np.abs(np.subtract(res[n]["ppo_losses"], ref["ppo_losses"]))))
        d_par = float(np.max(np.abs(params[n] - params[1])))
        worst = max(worst, d_sft, d_ppo, d_par)
        print(f"{n} vs 1 device: max |loss diff| SFT {d_sft:.2e}, PPO {d_ppo:.2e}; "
              f"max |param diff| {d_par:.2e}")
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; "
          f"{args.steps} steps per phase (first untimed), global SFT batch {args.batch}, "
          f"PPO batch {args.ppo_rows} rows; {'fsdp' if args.fsdp else 'data parallel'}")
    assert worst <= args.tol, f"device counts disagree: max difference {worst:.2e} > {args.tol}"
    last = counts[-1]
    for phase in ("sft", "ppo"):
        ratio = res[last][f"{phase}_tokens_per_s"] / ref[f"{phase}_tokens_per_s"]
        print(f"{phase}_ratio_{last}_vs_1={ratio:.3f}")

    def total_rate(r):
        return (r["sft_tokens_per_s"] * r["sft_s"] + r["ppo_tokens_per_s"] * r["ppo_s"]) / (
            r["sft_s"] + r["ppo_s"])

    print(f"ratio_{last}_vs_1={total_rate(res[last]) / total_rate(ref):.3f}")


# -- GPU mode --------------------------------------------------------------------------------

def peak_flops(args, device) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops * 1e12
    for prefix, peak in PEAK_BF16.items():
        if device.device_kind.startswith(prefix):
            return peak
    return None


def _ppo_update(cfg, rows, seq, minibatches, device):
    """`gpu_main`'s PPO update: (model, optimizer, mesh, logical axes, jitted update,
    abstract TrainState, abstract batch). The update runs on a state built with the same
    optimizer, mesh and logical axes (`state_from_params`), or compiles on the abstract one."""
    import jax
    import jax.numpy as jnp
    from ml_collections import ConfigDict

    from rlfb_jax.core import sharding as shd
    from rlfb_jax.core.optim import make_optimizer
    from rlfb_jax.core.state import _fresh, state_shardings
    from rlfb_jax.core.step import make_epoch_update
    from rlfb_jax.losses import get_loss
    from rlfb_jax.models.lm import LanguageModel

    lm = LanguageModel(cfg)
    mesh = shd.make_mesh({"data": 1, "fsdp": -1}, devices=[device])
    rules = shd.DEFAULT_RULES
    opt = ConfigDict(dict(name="adamw", learning_rate=1e-6, schedule="constant", warmup_steps=0,
                          clip_norm=1.0, weight_decay=0.0))
    tx, schedule = make_optimizer(opt, 100)
    logical = {"policy": lm.logical_axes(), "reference": lm.logical_axes()}

    def build(key):  # the TrainState's shapes, from abstract parameters
        params = lm.init(key)
        return _fresh({"policy": params}, {"reference": params}, key, tx)

    state = jax.eval_shape(build, jax.random.key(0))
    shardings = state_shardings(state, logical, tx, mesh, rules)
    f32 = jax.ShapeDtypeStruct((rows, seq - 1), jnp.float32)
    batch = {"tokens": jax.ShapeDtypeStruct((rows, seq), jnp.int32),
             "attention_mask": jax.ShapeDtypeStruct((rows, seq), jnp.bool_),
             "loss_mask": jax.ShapeDtypeStruct((rows, seq), jnp.bool_),
             "advantages": f32, "old_logprobs": f32, "ref_logprobs": f32}
    update = make_epoch_update(get_loss("ppo"), tx, epochs=1, minibatches=minibatches,
                               schedule=schedule, state_shardings=shardings, mesh=mesh,
                               rules=rules, model=lm, aggregation="token_mean", value_slot=None,
                               clip_eps=0.2)
    return lm, tx, mesh, logical, update, state, batch


def memory_report(cfg, rows, seq, minibatches, chunk) -> None:
    """Compiles (does not run) the PPO update three ways: as configured by default, with
    the vocabulary head in chunks of `chunk` positions (``model.logits_chunk``), and with
    that plus per-block rematerialization (``model.remat``); prints XLA's memory analysis
    of each."""
    import jax

    device = jax.devices()[0]
    chunk = chunk or 128
    print(f"device: {device.device_kind} ({device.platform}); PPO update of {rows} x {seq} "
          f"tokens in {minibatches} minibatches, compiled only")
    temps = []
    for c, remat in ((0, False), (chunk, False), (chunk, True)):
        t = time.perf_counter()
        *_, update, state, batch = _ppo_update(cfg.replace(logits_chunk=c, remat=remat),
                                               rows, seq, minibatches, device)
        stats = update.lower(state, batch, jax.random.key(0)).compile().memory_analysis()
        if stats is None:
            sys.exit("this backend reports no memory analysis")
        temps.append(stats.temp_size_in_bytes)
        print(f"logits_chunk={c} remat={remat}: temp {stats.temp_size_in_bytes / 2**30:.2f} "
              f"GiB, arguments {stats.argument_size_in_bytes / 2**30:.2f} GiB, outputs "
              f"{stats.output_size_in_bytes / 2**30:.2f} GiB (compiled in "
              f"{time.perf_counter() - t:.0f} s)")
    print(f"temp_ratio_chunked_vs_whole={temps[1] / temps[0]:.3f}  "
          f"temp_ratio_chunked_remat_vs_whole={temps[2] / temps[0]:.3f}")


def gpu_main(args) -> None:
    import jax
    from train_step import flops_per_token, make_batch  # benchmarks/train_step.py

    from rlfb_jax.core import sharding as shd
    from rlfb_jax.core.state import state_from_params
    from rlfb_jax.losses.sequence import sequence_logprobs
    from rlfb_jax.models.config import count_params
    from rlfb_jax.models.sampler import Sampler, SamplingParams

    device = jax.devices()[0]
    if device.platform == "cpu" and not (args.quick or args.memory):
        sys.exit("--gpu needs an accelerator (jax sees only CPUs); --gpu --quick runs a "
                 "shrunken model on CPU to check the script")
    cfg = gpu_model_config()
    rows, p_len, c_len, new = args.gpu_rows, 128, 384, 256
    minibatches = args.gpu_minibatches
    if args.quick:  # the same code path with a toy model, for a check on CPU
        cfg = cfg.replace(vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                          d_ff=128)
        rows, p_len, c_len, new, minibatches = 8, 16, 16, 8, 2
    if args.memory:
        return memory_report(cfg, rows, p_len + c_len, minibatches, args.gpu_logits_chunk)
    cfg = cfg.replace(logits_chunk=args.gpu_logits_chunk, remat=args.gpu_remat)
    seq = p_len + c_len
    lm, tx, mesh, logical, update, _, _ = _ppo_update(cfg, rows, seq, minibatches, device)
    rules = shd.DEFAULT_RULES
    params = jax.jit(lm.init)(jax.random.key(0))
    n_params = count_params(params)
    state, _ = state_from_params({"policy": params}, {"reference": params}, tx,
                                 jax.random.key(1), mesh, logical, rules)
    del params
    host = make_batch(rows, p_len, c_len, cfg.vocab_size)
    dev = shd.shard_batch(host, mesh, rules)
    old, _, _ = jax.jit(lambda p, b: sequence_logprobs(lm, p, b))(state.params["policy"], dev)
    host["old_logprobs"] = host["ref_logprobs"] = np.asarray(old)
    dev = shd.shard_batch(host, mesh, rules)
    state, m = update(state, dev, jax.random.key(0))  # compiles
    jax.block_until_ready((state, m))
    times = []
    for i in range(1, args.gpu_repeats + 1):
        t = time.perf_counter()
        state, m = update(state, dev, jax.random.key(i))
        jax.block_until_ready((state, m))
        times.append(time.perf_counter() - t)
    t_upd = float(np.median(times))
    tokens = rows * seq
    achieved = flops_per_token(cfg, seq) * tokens / t_upd
    peak = peak_flops(args, device)
    print(f"device: {device.device_kind} ({device.platform}); model {n_params / 1e6:.0f}M "
          f"params, compute {cfg.dtype}, params {cfg.param_dtype}")
    print(f"PPO update: {rows} x {seq} tokens in {minibatches} minibatches: {t_upd:.3f} s, "
          f"{tokens / t_upd:.0f} tokens/s, {achieved / 1e12:.2f} TFLOP/s")
    if peak:
        print(f"update_mfu={achieved / peak:.3f}  (peak {peak / 1e12:.0f} TFLOP/s)")
    else:
        print("update_mfu=unknown (pass --peak-tflops for this chip)")
    mem = (device.memory_stats() or {}).get("peak_bytes_in_use")
    if mem:  # the process's peak: parameters, Adam state, batch, old-logprob pass, update
        print(f"peak_device_memory_gib={mem / 2**30:.1f}  (logits_chunk={cfg.logits_chunk}, "
              f"remat={cfg.remat})")
    if args.gpu_sample_batch <= 0:
        return

    sampler = Sampler(lm, prompt_buckets=(p_len,), batch_multiple=1)
    sp = SamplingParams(temperature=1.0, max_new_tokens=new)
    sb = args.gpu_sample_batch if not args.quick else 8
    prompts = np.random.default_rng(0).integers(3, cfg.vocab_size, (sb, p_len)).tolist()
    params = state.params["policy"]
    jax.block_until_ready(sampler(params, prompts, jax.random.key(0), sp))  # compiles
    times = []
    for i in range(1, args.gpu_repeats + 1):
        t = time.perf_counter()
        out = jax.block_until_ready(sampler(params, prompts, jax.random.key(i), sp))
        times.append(time.perf_counter() - t)
    t_s = float(np.median(times))
    print(f"sampling_tokens_per_s@{sb}={int(np.asarray(out.mask).sum()) / t_s:.0f}  "
          f"({new} new tokens after {p_len}-token prompts, median of {args.gpu_repeats})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="", help="device counts (default 1,2,4,8; --quick: 1,8)")
    ap.add_argument("--steps", type=int, default=6, help="steps per phase (first untimed)")
    ap.add_argument("--batch", type=int, default=32, help="global SFT batch")
    ap.add_argument("--ppo-rows", type=int, default=64, help="rows of the PPO batch")
    ap.add_argument("--fsdp", action="store_true", help="all devices on the fsdp mesh axis")
    ap.add_argument("--tol", type=float, default=1e-4,
                    help="max abs loss / parameter difference from the 1-device run")
    ap.add_argument("--quick", action="store_true",
                    help="smoke check: :smoke model, 3 steps, 1 and 8 devices")
    ap.add_argument("--gpu", action="store_true", help="MFU and sampling on a real GPU")
    ap.add_argument("--peak-tflops", type=float, default=0.0)
    ap.add_argument("--gpu-repeats", type=int, default=5)
    ap.add_argument("--gpu-rows", type=int, default=64, help="--gpu: rows of the PPO batch")
    ap.add_argument("--gpu-minibatches", type=int, default=4, help="--gpu: minibatches per update")
    ap.add_argument("--gpu-sample-batch", type=int, default=64, help="--gpu: sampling batch (0: no sampling)")
    ap.add_argument("--gpu-logits-chunk", type=int, default=0,
                    help="--gpu: model.logits_chunk (0: the head on the whole sequence)")
    ap.add_argument("--gpu-remat", action="store_true", help="--gpu: model.remat")
    ap.add_argument("--memory", action="store_true",
                    help="with --gpu: compile the update only (any backend, CPU included) and "
                         "print its memory with the head whole and in --gpu-logits-chunk chunks")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--params-out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.devices = args.devices or ("1,8" if args.quick else "1,2,4,8")
    if args.quick:
        args.steps = min(args.steps, 3)
        args.gpu_repeats = min(args.gpu_repeats, 2)
    if args.child:
        with open(args.child, "w") as f:
            json.dump(child(args), f)
    elif args.gpu:
        gpu_main(args)
    else:
        cpu_main(args)


if __name__ == "__main__":
    main()
