"""ReST-EM / expert iteration: E-step selection (filter, dedupe, cap) and M-step parts by
hand, the restart-from-base switch, and 1-iteration runs end to end (synthetic base; MBPP
from a tiny random Hugging Face checkpoint)."""

import json
import os

import jax
import numpy as np
import pytest
from main_runner import run_main, summary

from rlfb_jax.algos import rest_em_data as red
from rlfb_jax.algos.rest_em import MStep, mstep_batch
from rlfb_jax.algos.rest_em import default_config as rest_em_config
from rlfb_jax.algos.rest_em_data import Sample

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYNTH = os.path.join(REPO, "experiments", "synthetic_rest_em.py")
MBPP = os.path.join(REPO, "experiments", "mbpp_rest_em.py")


# ------------------------------------------------------------------------------ E-step


def test_filter_keeps_rewards_strictly_above_the_threshold():
    s = [Sample(0, "a", 1.0), Sample(0, "b", -0.3), Sample(1, "c", 0.0), Sample(1, "d", 0.6)]
    # binary / CodeRL rewards with threshold 0: exactly the passing programs
    assert [x.completion for x in red.filter_by_reward(s, 0.0)] == ["a", "d"]
    # graded rewards with a threshold
    assert [x.completion for x in red.filter_by_reward(s, 0.6)] == ["a"]
    assert [x.completion for x in red.filter_by_reward(s, -0.5)] == ["a", "b", "c", "d"]


def test_program_key_modes():
    a, b = "    return x+1\n", "    return  x+1   \n\n"
    assert red.program_key(a, "whitespace") == red.program_key(b, "whitespace")
    assert red.program_key(a, "exact") != red.program_key(b, "exact")
    # indentation is kept by the whitespace key (it is part of Python's syntax) ...
    assert red.program_key("  return x", "whitespace") != red.program_key("    return x",
                                                                           "whitespace")
    # ... while the AST key ignores all formatting and comments
    pre = "def f(x):\n"
    assert (red.program_key("  return x + 1  # inc", "ast", pre)
            == red.program_key("    return x+1", "ast", pre))
    assert red.program_key("    return x+2", "ast", pre) != red.program_key("    return x+1",
                                                                            "ast", pre)
    with pytest.raises(ValueError, match="dedupe mode"):
        red.program_key("x", "fuzzy")


def test_dedupe_is_per_problem_and_keeps_the_best_copy():
    s = [Sample(0, "    return x+1\n", 0.5, (1,)),
         Sample(0, "    return x+1", 1.0, (2,)),  # same program, higher reward: kept
         Sample(1, "    return x+1", 1.0, (3,)),  # same text, other problem: kept
         Sample(0, "    return  x+1 ", 1.0, (4,)),  # whitespace variant of the 2nd: dropped
         Sample(0, "    return x + 1", 1.0, (5,))]  # different text: kept (not "ast")
    out = red.dedupe(s, "whitespace")
    assert [x.token_ids for x in out] == [(2,), (3,), (5,)]
    assert len(red.dedupe(s, "exact")) == 5  # every text differs exactly
    assert [x.token_ids for x in red.dedupe(s, "ast", ["def f(x):\n"] * 2)] == [(2,), (3,)]
    assert red.dedupe(s, "none") == s


def test_cap_per_problem_keeps_the_highest_rewards_then_a_seeded_choice():
    s = [Sample(0, f"p{i}", 1.0 if i < 12 else 2.0) for i in range(15)] + [
        Sample(1, f"q{i}", 1.0) for i in range(3)]
    out = red.cap_per_problem(s, 10, seed=0)
    p0 = [x for x in out if x.task_index == 0]
    assert len(p0) == 10 and {"p12", "p13", "p14"} <= {x.completion for x in p0}
    assert len([x for x in out if x.task_index == 1]) == 3
    assert out == red.cap_per_problem(s, 10, seed=0)  # deterministic
    picks = {tuple(x.completion for x in red.cap_per_problem(s, 10, seed=k)) for k in range(6)}
    assert len(picks) > 1  # ties broken by the seed
    assert [x.completion for x in out] == [x.completion for x in s if x in out]  # order kept
    assert red.cap_per_problem(s, 0) == s


def test_select_samples_filters_dedupes_then_caps():
    s = ([Sample(0, f"    return {i}", 1.0) for i in range(12)]
         + [Sample(0, "    return 0 ", 1.0), Sample(0, "    return 99", -0.3)]
         + [Sample(1, "    return 1", -1.0), Sample(2, "    return 2", 1.0)])
    kept, stats = red.select_samples(s, threshold=0.0, dedupe_mode="whitespace", cap=10,
                                     num_problems=4)
    assert stats == {"samples": 16.0, "positive": 14.0, "unique": 13.0, "kept": 11.0,
                     "covered": 2.0, "coverage": 0.5}
    assert sorted({x.task_index for x in kept}) == [0, 2]


def test_reward_weights_and_mstep_length():
    np.testing.assert_allclose(red.sample_weights([1.0, 0.5]), [1.0, 0.5])
    np.testing.assert_allclose(red.sample_weights([1.0, -0.3], "uniform"), [1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        red.sample_weights([1.0, -0.3])
    assert red.mstep_steps(0, 32) == 0
    assert red.mstep_steps(100, 32, epochs=2.0) == 7  # ceil(200 / 32)
    assert red.mstep_steps(100, 32, epochs=2.0, max_steps=5) == 5
    assert red.mstep_steps(3, 32, epochs=1.0, min_steps=4) == 4
    assert red.mstep_steps(3, 32, steps=9) == 9


def test_early_stopping_on_validation():
    assert red.early_stopping([0.2, 0.3, 0.25], patience=1) == (1, True)
    assert red.early_stopping([0.2, 0.3, 0.25], patience=2) == (1, False)
    assert red.early_stopping([0.2, 0.3, 0.35], patience=1) == (2, False)
    assert red.early_stopping([0.2, 0.2], patience=1) == (0, True)  # a tie is no improvement
    assert red.early_stopping([0.2, 0.21], patience=1, min_delta=0.05) == (0, True)
    assert red.early_stopping([0.5, 0.1, 0.1], patience=0) == (0, False)


# ------------------------------------------------------------------------------ M-step


def test_mstep_batch_rows_carry_their_own_weights():
    prompts = [[5, 6], [7], [8, 9, 10]]
    comps = [[11, 2], [12, 13, 2], [14, 2]]
    weights = [0.25, 0.5, 1.0]
    b = mstep_batch(prompts, comps, weights, step=0, batch_size=3, seed=3, prompt_len=3,
                    completion_len=4, pad_id=0)
    assert b["tokens"].shape == (3, 7) and b["weights"].shape == (3,)
    for row in range(3):
        k = [int(t) for t in b["tokens"][row, :3][b["attention_mask"][row, :3]]]
        i = prompts.index(k)
        assert b["weights"][row] == weights[i]
        np.testing.assert_array_equal(b["tokens"][row][b["loss_mask"][row]], comps[i])
    assert not b["loss_mask"][:, :3].any()  # no loss on prompt tokens


def _tiny_lm():
    from rlfb_jax.models.config import ModelConfig
    from rlfb_jax.models.lm import LanguageModel

    return LanguageModel(ModelConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                                     max_len=16))


@pytest.mark.parametrize("restart_from_base", [True, False])
def test_mstep_starts_from_base_or_from_the_last_iterate(restart_from_base):
    from rlfb_jax.core.sharding import DEFAULT_RULES, make_mesh

    lm = _tiny_lm()
    base, last = lm.init(jax.random.key(0)), lm.init(jax.random.key(1))
    config = rest_em_config()
    config.rest_em.restart_from_base = restart_from_base
    mesh = make_mesh(config.mesh, devices=jax.devices()[:1])
    mstep = MStep(config, lm, mesh, DEFAULT_RULES)
    # before iteration 1 there is no last iterate: both modes start from the base
    assert red.mstep_init(restart_from_base, base, None) is base
    start = red.mstep_init(config.rest_em.restart_from_base, base, last)
    state, shardings = mstep.init_state(start, base, 4, jax.random.key(2))
    want = base if restart_from_base else last
    other = last if restart_from_base else base
    for got, w in zip(jax.tree.leaves(state.params["policy"]), jax.tree.leaves(want)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(w))
    assert any(not np.array_equal(np.asarray(g), np.asarray(o)) for g, o in
               zip(jax.tree.leaves(state.params["policy"]), jax.tree.leaves(other)))
    assert int(state.step) == 0  # a fresh optimizer state every iteration
    # one reward-weighted step moves the policy, not the frozen best iterate
    batch = mstep_batch([[3, 4]] * 2, [[5, 6, 2], [7, 2]], [1.0, 0.5], 0, 2, 0, 4, 4, 0)
    step = mstep.step_fn(4, shardings)
    new, metrics = step(state, batch)
    assert np.isfinite(float(metrics["train/loss"])) and int(new.step) == 1
    moved = [not np.allclose(np.asarray(a), np.asarray(b))
             for a, b in zip(jax.tree.leaves(new.params["policy"]), jax.tree.leaves(want))]
    assert any(moved)
    for a, b in zip(jax.tree.leaves(new.frozen["best"]), jax.tree.leaves(base)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert mstep.step_fn(9, shardings) is step  # constant schedule: one compiled step


# ------------------------------------------------------------------------------ end to end


def _run(config, workdir, *extra):
    run_main(f"{config}:smoke", workdir, *extra, timeout=600)
    return summary(workdir)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("base"))


def _check_one_iteration(wd, summary):
    for key in ("eval/pass@1_base", "rest_em/iter1/pass@1", "rest_em/iter1/kept", "rest_em/iter1/train_solve_rate",
                "rest_em/iter1/valid_pass@1", "rest_em/iter1/time/estep_s",
                "rest_em/iter1/time/mstep_s", "rest_em/iter1/time/eval_s", "rest_em/best_iter",
                "eval/pass@1"):
        assert key in summary, key
    assert summary["rest_em/iter1/kept"] > 0 and summary["rest_em/iter1/mstep_steps"] > 0
    rows = [json.loads(line) for line in open(wd / "metrics.jsonl")]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert losses and all(np.isfinite(losses))
    kept = [json.loads(line) for line in open(wd / "iter1" / "kept.jsonl")]
    assert len(kept) == summary["rest_em/iter1/kept"]
    assert (wd / "rest_em.png").exists() and (wd / "iter1" / "eval.png").exists()


def test_one_iteration_synthetic_smoke(tmp_path, base_dir):
    # A near-random smoke base rarely passes: keep every sample (uniform weights) so that
    # the M-step runs on real sampled tokens.
    wd = tmp_path / "rest_em"
    args = [f"--config.base_workdir={base_dir}", "--config.rest_em.threshold=-2",
            "--config.rest_em.weighting=uniform"]
    summary = _run(SYNTH, wd, *args)
    _check_one_iteration(wd, summary)
    assert summary["rest_em/iter1/kept"] <= 8 * 4 and "rest_em/iter1/pass@2" in summary
    # a finished workdir does no work (in-process: no sampling, no compilation)
    from experiments.synthetic_rest_em import get_config
    from rlfb_jax.algos.driver import run

    mtime = os.path.getmtime(wd / "summary.json")
    config = get_config("smoke")  # with the overrides of the finished run (same config)
    config.base_workdir, config.rest_em.threshold = str(base_dir), -2.0
    config.rest_em.weighting = "uniform"
    assert run(config, str(wd)) == summary
    assert os.path.getmtime(wd / "summary.json") == mtime


@pytest.fixture(scope="module")
def tiny_hf_checkpoint(tmp_path_factory, mbpp_path):
    """A seeded random Llama + a byte-level BPE tokenizer trained on MBPP text."""
    torch = pytest.importorskip("torch")
    import transformers as tf
    from conftest import build_tokenizer

    out = str(tmp_path_factory.mktemp("tiny_llama"))
    texts = [json.loads(line) for line in open(mbpp_path)][:300]
    build_tokenizer(out, [r["text"] + "\n" + r["code"] + "\n".join(r["test_list"])
                          for r in texts], vocab_size=400)
    tok = tf.AutoTokenizer.from_pretrained(out)
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=True)
    tf.LlamaForCausalLM(cfg).save_pretrained(out)
    return out


def test_one_iteration_mbpp_from_a_hf_checkpoint(tmp_path, tiny_hf_checkpoint, mbpp_path):
    wd = tmp_path / "mbpp"
    summary = _run(MBPP, wd, f"--config.base.model.hf_path={tiny_hf_checkpoint}",
                   f"--config.base.data.path={mbpp_path}", "--config.rest_em.threshold=-2",
                   "--config.rest_em.weighting=uniform")
    _check_one_iteration(wd, summary)
    est = json.load(open(wd / "iter1" / "estep.json"))
    assert all(t.startswith("mbpp/") and 601 <= int(t.split("/")[1]) <= 974
               for t in est["task_ids"])
