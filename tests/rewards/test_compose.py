"""Weighted sums of rewards from config specs."""

import numpy as np
import pytest

from rlfb_jax.data.tasks import Task
from rlfb_jax.executor.jobs import Outcome
from rlfb_jax.rewards import REWARDS, make_reward, parse_spec, register_reward

SUM = Task(task_id="t/0", prompt="def f(a, b):\n", entry_point="f",
           reference="    s = a + b\n    t = s * 2\n    return t\n", tests=("assert True",))
COMPLETIONS = [
    SUM.reference,                                  # passes; R_ast 1, R_dfg 1
    "    s = a + b\n    t = a * 2\n    return t\n",  # same AST shape (1.0), R_dfg 3/4
    "    return (\n",                               # does not parse: 0, 0
]
OUTCOMES = [Outcome(status="passed"), Outcome(status="wrong_answer"),
            Outcome(status="syntax_error")]


def test_weighted_sum_and_metrics():
    fn = make_reward({"coderl": 1.0, "ast_match": 0.5, "dfg_match": 0.5})
    rewards, metrics = fn([SUM] * 3, COMPLETIONS, OUTCOMES)
    assert rewards.dtype == np.float32 and rewards.shape == (3,)
    np.testing.assert_allclose(rewards, [1 + 0.5 + 0.5, -0.3 + 0.5 + 0.375, -1.0], rtol=1e-6)
    assert metrics["reward/coderl"] == pytest.approx((1 - 0.3 - 1) / 3)
    assert metrics["reward/ast_match"] == pytest.approx(2 / 3)
    assert metrics["reward/dfg_match"] == pytest.approx(1.75 / 3)
    assert metrics["reward/total"] == pytest.approx(float(np.mean(rewards)), rel=1e-6)
    assert metrics["reward/sandbox_error_frac"] == 0.0


def test_spec_forms_and_kwargs():
    as_list = make_reward([("coderl", 1.0, {"wrong_answer": -0.5}), ("compile", 0.1)])
    as_map = make_reward({"coderl": {"weight": 1.0, "wrong_answer": -0.5}, "compile": 0.1})
    for fn in (as_list, as_map):
        rewards, _ = fn([SUM] * 3, COMPLETIONS, OUTCOMES)
        np.testing.assert_allclose(rewards, [1.1, -0.4, -1.1], rtol=1e-6)
    assert parse_spec("coderl") == [("coderl", 1.0, {})]
    assert parse_spec(["coderl", ("ast_match", 2)]) == [("coderl", 1.0, {}),
                                                         ("ast_match", 2.0, {})]


def test_spec_errors():
    with pytest.raises(KeyError, match="unknown reward 'nope'; registered: ast_match, coderl"):
        make_reward({"coderl": 1.0, "nope": 1.0})
    with pytest.raises(ValueError, match="twice"):
        make_reward([("coderl", 1.0), ("coderl", 2.0)])
    with pytest.raises(ValueError, match="empty"):
        make_reward({})
    with pytest.raises(ValueError, match="expected"):
        make_reward([("coderl", 1.0, {}, "extra")])
    with pytest.raises(ValueError, match="3 completions"):
        make_reward("coderl")([SUM], COMPLETIONS, OUTCOMES)


def test_user_reward_and_sandbox_errors():
    @register_reward("test_only_length")
    def length(task, completion, outcome, per_char=1.0):
        return per_char * len(completion)

    assert "test_only_length" in REWARDS
    fn = make_reward({"test_only_length": {"weight": 2.0, "per_char": 0.5}, "coderl": 1.0})
    outcomes = [Outcome(status="sandbox_error"), Outcome(status="passed")]
    rewards, metrics = fn([SUM] * 2, ["abcd", ""], outcomes)
    np.testing.assert_allclose(rewards, [4.0, 1.0])
    assert metrics["reward/test_only_length"] == pytest.approx(1.0)
    assert metrics["reward/sandbox_error_frac"] == 0.5
