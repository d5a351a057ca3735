"""What a run tells its user: each start-up phase and the mesh on stderr, throughput over the
last logging interval, and the model actually trained in config.json."""

import json
import subprocess

import pytest
from main_runner import main_cmd, main_env

from rlfb_jax.algos.sft import Throughput

SMOKE = "experiments/smoke.py"
TINY = ("--config.train.steps=3", "--config.train.log_every=1", "--config.eval.num_tasks=0")


def _run(workdir, *overrides, devices=1):
    out = subprocess.run(main_cmd(SMOKE, workdir, *TINY, *overrides), env=main_env(devices),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_throughput_is_over_the_last_interval_without_the_first_step():
    now = [0.0]
    meter = Throughput(clock=lambda: now[0])
    meter.add(1000)  # the compiling first step: not counted
    now[0] = 30.0
    assert meter.rate() is None
    meter.start()
    for _ in range(4):  # 4 steps of 100 tokens in 2 s
        meter.add(100)
        now[0] += 0.5
    assert meter.rate() == pytest.approx(200.0)
    meter.add(300)  # the next interval alone: 300 tokens in 1 s
    now[0] += 1.0
    assert meter.rate() == pytest.approx(300.0)


def test_phases_and_the_fsdp_mesh_are_reported(tmp_path):
    wd = tmp_path / "fsdp"
    out = _run(wd, "--config.mesh.data=2", "--config.mesh.fsdp=2", devices=4)
    phases = ["generating 544 synthetic tasks...", "generated in", "training a BPE tokenizer",
              "tokenizer trained in", "data ready in", "mesh data=2 fsdp=2 model=1 over 4 cpu",
              "train state ready in", "compiling the train step (loss 'sft')...",
              "compiled and ran the first step in"]
    at = [out.stderr.find(p) for p in phases]
    assert -1 not in at and at == sorted(at), out.stderr
    summary = json.loads((wd / "summary.json").read_text())
    assert (summary["mesh/data"], summary["mesh/fsdp"], summary["mesh/model"]) == (2, 2, 1)
    rows = [json.loads(line) for line in open(wd / "metrics.jsonl")]
    # the first (compiling) step has no throughput; later ones measure only their interval
    assert [("perf/tokens_per_s" in r) for r in rows] == [False, True, True]


def test_a_hugging_face_checkpoint_is_recorded_as_the_model_trained(tmp_path):
    import jax
    from conftest import PAIRS, build_tokenizer

    from rlfb_jax.models.config import ModelConfig
    from rlfb_jax.models.hf_export import save_pretrained
    from rlfb_jax.models.lm import LanguageModel

    ckpt = tmp_path / "hf"
    lm = LanguageModel(ModelConfig(vocab_size=600, d_model=32, n_layers=1, n_heads=2, d_ff=64,
                                   max_len=160, tie_embeddings=False))
    save_pretrained(lm, lm.init(jax.random.key(0)), ckpt)
    build_tokenizer(str(ckpt), [p + c for p, c in PAIRS])
    wd = tmp_path / "run"
    _run(wd, f"--config.model.hf_path={ckpt}")
    model = json.loads((wd / "config.json").read_text())["model"]
    assert (model["vocab_size"], model["tie_embeddings"], model["d_model"], model["n_layers"],
            model["max_len"]) == (600, False, 32, 1, 160)
