"""Reranking selectors, LEVER's aggregation over equal execution results, and the rank AUC,
checked against hand-computed numbers."""

import math

import numpy as np
import pytest

from rlfb_jax.eval import rerank as rr


def test_execution_key_and_groups():
    assert rr.execution_key("wrong_answer", " 10 \n[1, 2]\n") == "10\n[1, 2]"
    assert rr.execution_key("passed", "True\nFalse\n") == "True\nFalse"
    assert rr.execution_key("syntax_error", "", "SyntaxError") == "!syntax_error:SyntaxError"
    assert rr.execution_key("timeout", "") == "!timeout"
    np.testing.assert_array_equal(rr.group_ids(["b", "a", "b", "c", "a"]), [0, 1, 0, 2, 1])
    np.testing.assert_array_equal(rr.first_occurrences(["x", "y", "x", "x", "z"]),
                                  [True, True, False, False, True])


def test_likelihood_with_and_without_length_normalization():
    logprob = np.array([-4.0, -3.0, -9.0])
    length = np.array([8, 2, 30])
    assert rr.select_likelihood(logprob, length) == 1  # -3 is the largest total
    # per token: -0.5, -1.5, -0.3
    assert rr.select_likelihood(logprob, length, length_norm=True) == 2
    np.testing.assert_allclose(rr.lm_scores(logprob, length, 0.5, True), [-0.25, -0.75, -0.15])
    assert rr.select_likelihood(np.array([-1.0, -1.0]), np.array([1, 1])) == 0  # tie: first


def test_majority_vote_counts_samples_and_skips_programs_that_crashed():
    keys = ["!syntax_error", "1", "!syntax_error", "2", "1", "!syntax_error"]
    logprob = np.array([-1.0, -5.0, -1.0, -0.5, -4.0, -1.0])
    length = np.ones(6)
    # "!syntax_error" has 3 votes but did not run; "1" (2 votes) wins over "2" (1 vote);
    # its more likely member is index 4 (-4 > -5).
    assert rr.select_majority_vote(keys, logprob, length) == 4
    # When nothing ran, the crashed groups vote.
    assert rr.select_majority_vote(["!a", "!b", "!b"], np.array([0.0, -1, -2]), np.ones(3)) == 1


def test_majority_vote_ties_go_to_the_likelier_group_then_the_earlier():
    keys = ["a", "b", "a", "b"]
    assert rr.select_majority_vote(keys, np.array([-3.0, -2, -3, -2]), np.ones(4)) == 1
    assert rr.select_majority_vote(keys, np.array([-2.0, -2, -3, -3]), np.ones(4)) == 0


def test_lever_sums_over_programs_with_equal_execution_results():
    # Three distinct programs. Individually the best is p0 (0.5 * 0.6 = 0.30), but p1 and
    # p2 give the same execution result and together score 0.2 * 0.8 + 0.25 * 0.8 = 0.36.
    keys = ["A", "B", "B"]
    programs = ["p0", "p1", "p2"]
    logprob = np.log([0.5, 0.2, 0.25])
    log_pv = np.log([0.6, 0.8, 0.8])
    length = np.ones(3)
    assert rr.select_verifier(logprob, length, log_pv) == 0  # no aggregation
    gid, group, own = rr.lever_group_scores(keys, programs, logprob, length, log_pv)
    np.testing.assert_array_equal(gid, [0, 1, 1])
    np.testing.assert_allclose(np.exp(group), [0.30, 0.36])
    np.testing.assert_allclose(np.exp(own), [0.30, 0.16, 0.20])
    assert rr.select_lever(keys, programs, logprob, length, log_pv) == 2  # best of group B


def test_lever_counts_a_program_once_however_often_it_was_sampled():
    keys = ["A", "B", "B", "B"]
    programs = ["p0", "p1", "p1", "p1"]  # p1 sampled three times
    logprob = np.log([0.5, 0.2, 0.2, 0.2])
    log_pv = np.log([0.6, 0.8, 0.8, 0.8])
    _, group, _ = rr.lever_group_scores(keys, programs, logprob, np.ones(4), log_pv)
    np.testing.assert_allclose(np.exp(group), [0.30, 0.16])
    assert rr.select_lever(keys, programs, logprob, np.ones(4), log_pv) == 0


def test_lever_alpha_weights_the_language_model():
    keys, programs = ["A", "B"], ["p0", "p1"]
    logprob = np.log([0.9, 0.1])
    log_pv = np.log([0.2, 0.9])
    # alpha=1: 0.18 vs 0.09 -> p0; alpha=0 (verifier only): 0.2 vs 0.9 -> p1
    assert rr.select_lever(keys, programs, logprob, np.ones(2), log_pv, alpha=1.0) == 0
    assert rr.select_lever(keys, programs, logprob, np.ones(2), log_pv, alpha=0.0) == 1


def _cands(passed, keys, logprob, log_pv, log_pv_ne=None):
    n = len(passed)
    return rr.TaskCandidates(np.asarray(logprob, float), np.ones(n), list(keys),
                             [f"prog{i}" for i in range(n)], np.asarray(log_pv, float),
                             np.asarray(log_pv if log_pv_ne is None else log_pv_ne, float),
                             np.asarray(passed, bool))


def test_select_all_scores_each_method_on_hidden_verdicts():
    c = _cands(passed=[0, 1, 1, 0], keys=["x", "y", "y", "x"],
               logprob=np.log([0.4, 0.2, 0.1, 0.3]), log_pv=np.log([0.5, 0.9, 0.9, 0.1]),
               log_pv_ne=np.log([0.9, 0.1, 0.1, 0.1]))
    acc = rr.select_all(c)
    # no_agg: 0.4*0.5 = 0.20 beats 0.2*0.9 = 0.18 (wrong); LEVER: x = 0.20 + 0.03 = 0.23,
    # y = 0.18 + 0.09 = 0.27 (right). Majority: a 2-2 tie, x holds the likelier 0.4.
    assert acc == {"likelihood": 0.0, "majority_vote": 0.0, "verifier_no_exec": 0.0,
                   "verifier_no_agg": 0.0, "lever": 1.0, "random": 0.5}


def test_compile_rate_of_the_selections():
    c = _cands(passed=[0, 1, 1, 0], keys=["x", "y", "y", "x"],
               logprob=np.log([0.4, 0.2, 0.1, 0.3]), log_pv=np.log([0.5, 0.9, 0.9, 0.1]),
               log_pv_ne=np.log([0.9, 0.1, 0.1, 0.1]))
    c.compiled = np.array([False, True, True, True])
    comp = rr.select_all(c, field="compiled")
    # likelihood picks prog0 (does not compile); LEVER picks group y (compiles)
    assert comp["likelihood"] == 0.0 and comp["lever"] == 1.0 and comp["random"] == 0.75
    out = rr.rerank_accuracy([c], greedy_passed=[False], ns=[4])
    assert out["rerank_compile/lever@4"] == 1.0 and out["rerank_compile/likelihood@4"] == 0.0
    assert out["rerank/lever@4"] == 1.0
    c.compiled = None
    assert not any(k.startswith("rerank_compile/") for k in rr.rerank_accuracy(
        [c], greedy_passed=[False], ns=[4]))


def test_rerank_accuracy_over_n_and_subsets():
    tasks = [
        _cands([1, 0, 0, 0], ["a", "b", "b", "b"], np.log([0.1, 0.5, 0.2, 0.2]),
               np.log([0.99, 0.1, 0.1, 0.1])),
        _cands([0, 0, 0, 0], ["a", "a", "b", "c"], np.log([0.25] * 4), np.log([0.5] * 4)),
    ]
    out = rr.rerank_accuracy(tasks, greedy_passed=[True, False], ns=[1, 4], num_subsets=50,
                             seed=0)
    assert set(out) == {f"rerank/{m}@{n}" for m in rr.METHODS for n in (1, 4)}
    assert out["rerank/greedy@1"] == out["rerank/greedy@4"] == 0.5
    # n = N: one draw with everything. Task 1: likelihood picks p1 (wrong), majority "b"
    # (wrong), LEVER: a = 0.099 vs b = 0.05 + 0.02 + 0.02 = 0.09 -> p0 (right).
    assert out["rerank/likelihood@4"] == 0.0
    assert out["rerank/majority_vote@4"] == 0.0
    assert out["rerank/lever@4"] == 0.5
    assert out["rerank/random@4"] == pytest.approx(0.125)
    # n = 1: every method picks the only candidate; expected accuracy 1/4 on task 1.
    for m in ("random", "likelihood", "majority_vote", "lever", "verifier_no_agg"):
        assert out[f"rerank/{m}@1"] == pytest.approx(0.125, abs=0.06), m
    assert out["rerank/random@1"] == out["rerank/lever@1"]  # the same subsets
    with pytest.raises(ValueError, match="only 4 candidates"):
        rr.rerank_accuracy(tasks, [True, False], ns=[8])


def test_rank_auc_matches_pair_counting():
    scores = np.array([0.9, 0.8, 0.8, 0.3, 0.1, 0.8])
    labels = np.array([1, 1, 0, 1, 0, 0], bool)
    # pairs (pos, neg): positives 0.9, 0.8, 0.3; negatives 0.8, 0.1, 0.8
    # 0.9 beats 3; 0.8 ties 2 and beats 1 -> 2; 0.3 beats 1 -> 1; total 6 of 9
    assert rr.rank_auc(scores, labels) == pytest.approx(6 / 9)
    assert rr.rank_auc([1, 2, 3], [0, 1, 1]) == 1.0
    assert rr.rank_auc([3, 2, 1], [0, 1, 1]) == 0.0
    assert math.isnan(rr.rank_auc([1, 2], [1, 1]))
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=200).round(1), rng.random(200) < 0.4
    pairs = [(a > b) + 0.5 * (a == b) for a in s[y] for b in s[~y]]
    assert rr.rank_auc(s, y) == pytest.approx(np.mean(pairs))


def test_markdown_table_and_plot(tmp_path):
    metrics = {f"rerank/{m}@{n}": 0.25 for m in rr.METHODS for n in (1, 4)}
    metrics["rerank/lever@4"] = 0.5
    table = rr.markdown_table(metrics, [1, 4])
    lines = table.strip().splitlines()
    assert lines[0] == "| method | n=1 | n=4 |" and len(lines) == 2 + len(rr.METHODS)
    assert "| lever | 0.250 | 0.500 |" in lines
    import sys

    import matplotlib
    import matplotlib.image

    backend = matplotlib.get_backend()
    rr.plot_accuracy(str(tmp_path / "r.png"), metrics, [1, 4])
    image = matplotlib.image.imread(str(tmp_path / "r.png"))  # [H, W, RGBA] floats
    assert image.shape[:2] == (360, 540)  # figsize (6, 4) x 90 dpi
    colours = {tuple(px) for px in (image[..., :3] * 255).astype(int).reshape(-1, 3)[::7]}
    assert image[..., :3].min() < 0.3 and len(colours) > len(rr.METHODS)  # lines were drawn
    # the plot neither switches the caller's backend nor leaves a pyplot figure open
    assert matplotlib.get_backend() == backend
    if "matplotlib.pyplot" in sys.modules:
        assert not sys.modules["matplotlib.pyplot"].get_fignums()


def test_paired_differences_and_their_interval():
    """Per-task rows from rerank_accuracy average to its accuracies; the paired difference
    is the mean of ref - m, inside its bootstrap interval; identical methods give exactly 0
    with a zero-width interval; the table prints signed cells."""
    tasks = [
        _cands([1, 0, 0, 0], ["a", "b", "b", "b"], np.log([0.1, 0.5, 0.2, 0.2]),
               np.log([0.99, 0.1, 0.1, 0.1])),
        _cands([0, 0, 0, 0], ["a", "a", "b", "c"], np.log([0.25] * 4), np.log([0.5] * 4)),
        _cands([0, 1, 1, 1], ["a", "b", "b", "b"], np.log([0.3, 0.2, 0.2, 0.2]),
               np.log([0.5, 0.5, 0.5, 0.5])),
    ]
    rows: dict = {}
    out = rr.rerank_accuracy(tasks, [True, False, False], ns=[4], per_task=rows)
    for m, v in rows[4].items():
        assert v.shape == (3,) and out[f"rerank/{m}@4"] == pytest.approx(v.mean()), m
    np.testing.assert_allclose(rows[4]["likelihood"], [0, 0, 0])
    np.testing.assert_allclose(rows[4]["lever"], [1, 0, 1])
    d = rr.paired_differences(rows, num_boot=500)
    assert d["rerank_diff/likelihood@4"] == pytest.approx(2 / 3)
    assert d["rerank_diff_lo/likelihood@4"] <= 2 / 3 <= d["rerank_diff_hi/likelihood@4"]
    assert 0.0 <= d["rerank_diff_lo/likelihood@4"] and d["rerank_diff_hi/likelihood@4"] <= 1.0
    assert d["rerank_diff/greedy@4"] == pytest.approx(1 / 3)
    assert "rerank_diff/lever@4" not in d
    same = rr.paired_differences({4: {"lever": rows[4]["lever"], "x": rows[4]["lever"]}})
    assert same == {"rerank_diff/x@4": 0.0, "rerank_diff_lo/x@4": 0.0, "rerank_diff_hi/x@4": 0.0}
    table = rr.difference_table(d, [4])
    assert "| likelihood | +0.667 [" in table and "| lever |" not in table
