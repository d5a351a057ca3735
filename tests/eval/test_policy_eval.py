"""Policy evaluation: the summary of outcomes, by hand."""

import matplotlib.image
import numpy as np

from rlfb_jax.eval.policy_eval import eval_metrics, plot_eval, summarize
from rlfb_jax.executor import Outcome


def _o(status):
    return Outcome(status=status)


def test_summarize_pass_at_k_and_error_fractions(tmp_path):
    outcomes = [
        [_o("passed"), _o("wrong_answer"), _o("syntax_error"), _o("passed")],  # c = 2
        [_o("runtime_error"), _o("wrong_answer"), _o("timeout"), _o("wrong_answer")],  # c = 0
    ]
    m = summarize(outcomes, [1, 2, 4, 8], "eval")
    np.testing.assert_allclose(m["eval/pass@1"], (0.5 + 0.0) / 2)
    # task 1: 1 - C(2,2)/C(4,2) = 1 - 1/6
    np.testing.assert_allclose(m["eval/pass@2"], (1 - 1 / 6) / 2)
    assert m["eval/pass@4"] == 0.5 and "eval/pass@8" not in m
    assert m["eval/sample_pass_rate"] == 2 / 8
    assert m["eval/sample_compile_rate"] == 7 / 8
    assert m["eval/errors/wrong_answer"] == 3 / 8
    assert m["eval/errors/timeout"] == 1 / 8 and m["eval/errors/memory_exceeded"] == 0
    total = m["eval/sample_pass_rate"] + sum(v for k, v in m.items() if "/errors/" in k)
    np.testing.assert_allclose(total, 1.0)
    m["eval/pass@1"] = 0.3
    plot_eval(str(tmp_path / "eval.png"), m, "eval")
    image = matplotlib.image.imread(str(tmp_path / "eval.png"))  # [H, W, RGBA] floats
    assert image.shape[:2] == (280, 800)  # figsize x dpi
    left, right = image[:, : 800 // 2, :3], image[:, 800 // 2 :, :3]
    assert left.min() < 0.5 and right.min() < 0.5  # both panels drew dark lines or bars


def test_greedy_only_evaluations_log_no_sampled_figures(tmp_path):
    """A greedy-only evaluation (the learning curves') must not write eval/sample_* keys:
    they would repeat pass@1 under a sampled figure's name, and a run's curve of the sample
    pass rate would switch from greedy to sampled values at the final evaluation."""
    greedy = [[_o("passed")], [_o("syntax_error")], [_o("wrong_answer")], [_o("passed")]]
    m = eval_metrics(greedy, None, [1, 2, 16], "eval")
    assert m["eval/pass@1"] == 0.5 and m["eval/compile_rate"] == 0.75
    assert not [k for k in m if "sample" in k or k == "eval/pass@2"]
    assert m["eval/errors/syntax_error"] == 0.25 and m["eval/errors/wrong_answer"] == 0.25
    plot_eval(str(tmp_path / "greedy.png"), m, "eval")  # the passed bar is greedy pass@1
    sampled = [[_o("passed"), _o("wrong_answer")], [_o("syntax_error"), _o("syntax_error")],
               [_o("wrong_answer")] * 2, [_o("passed")] * 2]
    m = eval_metrics(greedy, sampled, [1, 2, 16], "eval")
    assert m["eval/pass@1"] == 0.5  # greedy
    assert m["eval/sampled_pass@1"] == m["eval/sample_pass_rate"] == 3 / 8
    assert m["eval/sample_compile_rate"] == 6 / 8 and m["eval/errors/syntax_error"] == 2 / 8
    np.testing.assert_allclose(m["eval/pass@2"], (1 + 0 + 0 + 1) / 4)  # n = k: any pass
    assert "eval/pass@16" not in m  # k > n
