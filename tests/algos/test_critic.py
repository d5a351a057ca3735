"""CodeRL's critic: the loss by hand, the class mapping, the held-out evaluation, the token
weights in the PG advantages, and the smoke run feeding a PPO smoke run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from main_runner import run_main, summary

from rlfb_jax.algos.critic import _auc, balanced_weights, evaluate
from rlfb_jax.losses import get_loss
from rlfb_jax.losses.critic import CRITIC_CLASSES, outcome_class, token_class_probs
from rlfb_jax.models import LanguageModel, ModelConfig

CRITIC = "experiments/synthetic_critic.py:smoke"
PPO = "experiments/synthetic_ppo.py:smoke"


def test_outcome_classes():
    got = [outcome_class(s) for s in ("syntax_error", "runtime_error", "timeout",
                                      "memory_exceeded", "output_exceeded", "wrong_answer",
                                      "passed", "sandbox_error")]
    assert got == [0, 1, 1, 1, 1, 2, 3, -1]
    assert CRITIC_CLASSES[3] == "passed"


def test_critic_loss_by_hand():
    lm = LanguageModel(ModelConfig(vocab_size=16, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                                   max_len=16, heads=("critic",)))
    params = {"critic": lm.init(jax.random.key(0))}
    tokens = jnp.array([[1, 5, 6, 7, 2, 0], [1, 5, 9, 2, 0, 0], [1, 4, 4, 2, 0, 0]])
    loss_mask = jnp.array([[0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 0, 0], [0, 1, 1, 1, 0, 0]], bool)
    batch = {"tokens": tokens, "attention_mask": tokens > 0, "loss_mask": loss_mask,
             "labels": jnp.array([3, 0, -1])}
    ce, m = get_loss("critic")(params, batch, model=lm)
    # a zero head: uniform over the 4 classes on the 5 labelled tokens (row 3 is ignored)
    np.testing.assert_allclose(ce, np.log(4.0), rtol=1e-6)
    assert float(m["critic/tokens"]) == 5 and float(m["critic/rows"]) == 2
    grads = jax.grad(lambda p: get_loss("critic")(p, batch, model=lm)[0])(params)
    assert float(jnp.abs(grads["critic"]["critic_head"]["kernel"]).sum()) > 0
    # row weights, with a random head: weights (1, 0, 5) count row 0 alone (row 2 has no
    # label), which is the loss of row 0 labelled on its own
    head = params["critic"]["critic_head"]
    head["kernel"] = jax.random.normal(jax.random.key(1), head["kernel"].shape)
    loss = lambda b: float(get_loss("critic")(params, b, model=lm)[0])
    ce_w = loss(dict(batch, weights=jnp.array([1.0, 0.0, 5.0])))
    assert ce_w == pytest.approx(loss(dict(batch, labels=jnp.array([3, -1, -1]))), rel=1e-6)
    assert ce_w != pytest.approx(loss(batch), rel=1e-3)
    logits = jnp.log(jnp.array([[[0.1, 0.2, 0.3, 0.4]] * 2, [[0.4, 0.3, 0.2, 0.1]] * 2]))
    np.testing.assert_allclose(token_class_probs(logits, jnp.array([3, -1])),
                               [[0.4, 0.4], [0.0, 0.0]], rtol=1e-6)


def test_held_out_evaluation():
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.6, 0.2], [0.1, 0.1, 0.2, 0.6],
                      [0.1, 0.1, 0.7, 0.1], [0.25] * 4])
    labels = np.array([0, 2, 3, 3, -1])
    m, confusion = evaluate(probs, labels)
    assert m["critic/acc"] == 0.75 and m["critic/acc_majority"] == 0.5
    assert m["critic/balanced_acc"] == (1 + 1 + 0.5) / 3
    assert m["critic/recall/passed"] == 0.5 and m["critic/recall/compile_error"] == 1.0
    assert confusion[3].tolist() == [0, 0, 1, 1] and confusion.sum() == 4
    # P(passed): passing rows 0.6, 0.1 against failing 0.1, 0.2: 1 win + 1 tie of 4 pairs
    assert m["critic/pass_auc"] == pytest.approx((2 + 0.5) / 4)
    assert _auc(np.array([0.9, 0.1]), np.array([True, False])) == 1.0


@pytest.fixture(scope="module")
def critic_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("critic") / "run"
    run_main(CRITIC, wd)
    return wd


def test_critic_smoke_and_ppo_weighted_by_it(critic_run, tmp_path):
    s = summary(critic_run)
    assert 0 <= s["critic/acc"] <= 1 and s["critic/test_rows"] > 0
    assert (critic_run / "critic.md").read_text().count("\n|") >= 5
    wd = tmp_path / "ppo"
    run_main(PPO, wd, f"--config.base_workdir={critic_run / 'base'}",
             f"--config.rl.critic_workdir={critic_run}")
    assert "eval/pass@1" in summary(wd)
    bad = run_main(PPO, tmp_path / "bad", f"--config.base_workdir={critic_run / 'base'}",
                   f"--config.rl.critic_workdir={tmp_path}", check=False)
    assert bad.returncode != 0 and "no finished critic run" in bad.stderr
    assert not (tmp_path / "bad" / "metrics.jsonl").exists()
    rows = [json.loads(line) for line in open(wd / "metrics.jsonl")]
    assert any("rl/pass_rate" in r for r in rows)


def test_balanced_weights_give_each_class_the_same_total():
    labels = np.array([2, 2, 2, 2, 2, 2, 3, 3, 0, -1])
    w = balanced_weights(labels)
    assert w[-1] == 0 and np.isclose(w[labels >= 0].mean(), 1.0)
    totals = [w[labels == c].sum() for c in (0, 2, 3)]
    np.testing.assert_allclose(totals, [3.0, 3.0, 3.0])
