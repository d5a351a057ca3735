"""The reward-to-advantage wiring of PG/PPO (issue 21) against numpy references: the KL
penalty after GRPO's normalization, the same advantages with and without ``update_rows``,
RLTF's line penalty as a per-token weight, and the config checks. No model: the scorer's
``advantages`` step runs on hand-made log-probs."""

import jax
import numpy as np
import pytest

from rlfb_jax.algos.pg_batch import Scorer, place_rewards, select_rows, training_batch
from rlfb_jax.algos.pg_config import check_config, default_config, loss_kwargs
from rlfb_jax.core.rollout import Episodes
from rlfb_jax.executor import Outcome

B, G, T = 8, 4, 6  # 2 prompts x 4 samples, 6 token positions


def _rl(**changes):
    rl = default_config("ppo").rl
    for key, value in changes.items():
        node = rl
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return rl


def _batch(seq_rewards, lengths, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros((len(lengths), T), np.float32)
    for i, n in enumerate(lengths):
        mask[i, 1 : 1 + n] = 1  # position 0 is the prompt
    r = np.asarray(seq_rewards, np.float32)
    logp = (rng.normal(-1.0, 0.5, mask.shape) * mask).astype(np.float32)
    ref = (logp + rng.normal(0.0, 0.3, mask.shape) * mask).astype(np.float32)
    batch = {"target_mask": mask, "seq_rewards": r, "baseline": np.zeros(len(r), np.float32),
             "token_rewards": place_rewards(r, np.zeros_like(mask), mask),
             "token_bonus": np.zeros_like(mask),
             "tokens": np.arange(len(r))[:, None] * np.ones((1, T + 1), np.int32)}
    return batch, logp, ref


def _kl_to_go(logp, ref, mask, beta):
    """sum_{s >= t} -beta * (logp_s - ref_s) over each row's masked tokens (gamma 1)."""
    pen = -beta * (logp - ref) * mask
    return np.cumsum(pen[:, ::-1], axis=1)[:, ::-1] * mask


def _advantages(rl, batch, logp, ref, beta):
    adv, ret, _ = Scorer(None, rl, G).advantages(batch, logp, ref, np.zeros_like(logp),
                                                 np.float32(beta))
    return np.asarray(adv), np.asarray(ret)


def test_grpo_normalizes_the_outcome_and_the_kl_penalty_is_added_after():
    """Group 0 has one success, group 1 all failures: group 1's advantages are the KL
    penalty's returns-to-go only (beta-sized), not unit-std KL noise."""
    r = [1, 0, 0, 0, 0, 0, 0, 0]
    batch, logp, ref = _batch(r, [5, 3, 4, 5, 2, 5, 4, 3])
    mask = batch["target_mask"]
    groups = np.asarray(r, np.float64).reshape(2, G)
    mean = groups.mean(axis=1, keepdims=True)
    std = groups.std(axis=1, ddof=1, keepdims=True)
    outcome = ((groups - mean) / (std + 1e-6)).reshape(-1)  # GRPO, Shao et al. 2024 (outcome)
    for beta in (0.02, 0.0002):
        adv, _ = _advantages(_rl(), batch, logp, ref, beta)
        want = outcome[:, None] * mask + _kl_to_go(logp, ref, mask, beta)
        np.testing.assert_allclose(adv, want, rtol=1e-5, atol=1e-6)
        # the all-fail group: tiny advantages that scale with beta
        assert np.abs(adv[G:]).max() < 20 * beta


def test_default_path_and_update_rows_compute_the_same_advantages():
    rl_all = _rl(**{"kl.beta": 0.05})
    rl_rows = _rl(**{"kl.beta": 0.05, "update_rows": B, "minibatches": 1})
    for estimator in ("grpo", "rloo"):
        rl_all.advantage = rl_rows.advantage = estimator
        batch, logp, ref = _batch([1, 0, 0.5, 0, -1, -1, -1, -1], [5, 3, 4, 5, 2, 5, 4, 3], 1)
        adv_all, _ = _advantages(rl_all, batch, logp, ref, 0.05)
        rows, _ = select_rows(rl_rows, batch, G)
        np.testing.assert_array_equal(rows["tokens"], batch["tokens"])  # every row, in order
        adv_rows, _ = _advantages(rl_rows, rows, logp, ref, 0.05)
        np.testing.assert_allclose(adv_all, adv_rows, rtol=1e-5, atol=1e-6)


def _np_reinforce_pp(r, mask, logp, ref, beta):
    """REINFORCE++ (Hu 2025): A_t = R - beta * sum_{s >= t} KL_s, normalized over every
    masked token of the batch."""
    g = np.asarray(r, np.float64)[:, None] * mask + _kl_to_go(logp, ref, mask, beta)
    vals = g[mask > 0]
    return (g - vals.mean()) / np.sqrt(vals.var() + 1e-8) * mask


def test_reinforce_pp_on_picked_rows_uses_the_whole_batch_normalization():
    """REINFORCE++ with ``update_rows``: the picked rows' advantages are the whole batch's
    normalization (token-weighted outcome mean and std over every row), the KL penalty
    divided by the same std: with every row picked, the path without ``update_rows`` up
    to the KL's share of the statistics (exact at beta 0); not re-normalized over the
    picked rows, and not whitened outcomes plus an unscaled KL (the old wiring)."""
    r = [1.0, -0.3, -0.3, -0.3, -1.0, -0.3, -0.6, -0.3]
    lengths = [5, 3, 4, 5, 2, 5, 4, 3]
    batch, logp, ref = _batch(r, lengths)
    mask = batch["target_mask"]
    for beta, atol in ((0.0, 1e-5), (0.05, 0.02)):
        rl_all = _rl(**{"kl.beta": beta, "advantage": "reinforce_pp"})
        rl_rows = _rl(**{"kl.beta": beta, "advantage": "reinforce_pp", "update_rows": B,
                         "minibatches": 1})
        want = _np_reinforce_pp(r, mask, logp, ref, beta)
        adv_all, _ = _advantages(rl_all, batch, logp, ref, beta)
        np.testing.assert_allclose(adv_all, want, rtol=1e-4, atol=1e-5)
        rows, _ = select_rows(rl_rows, batch, G)
        adv_rows, _ = _advantages(rl_rows, rows, logp, ref, beta)
        np.testing.assert_allclose(adv_rows, want, atol=atol)
    # 4 of 8 rows: the same statistics, so the picked rows' advantages are those rows'
    beta, k = 0.1, 4
    rl = _rl(**{"kl.beta": beta, "advantage": "reinforce_pp", "update_rows": k,
                "minibatches": 1})
    rows, _ = select_rows(rl, batch, G)
    picked = rows["tokens"][:, 0]
    w = np.asarray(lengths, np.float64)
    mu = (w * r).sum() / w.sum()
    sigma = np.sqrt((w * (np.asarray(r) - mu) ** 2).sum() / w.sum() + 1e-8)
    np.testing.assert_array_equal(picked, np.sort(np.argsort(-np.abs(np.asarray(r) - mu),
                                                             kind="stable")[:k]))
    adv, _ = _advantages(rl, rows, logp[picked], ref[picked], beta)
    m = mask[picked]
    want = ((np.asarray(r)[picked, None] - mu) / sigma * m
            + _kl_to_go(logp[picked], ref[picked], m, beta) / sigma)
    np.testing.assert_allclose(adv, want, rtol=1e-4, atol=1e-5)


def test_seq_kl_is_the_mean_over_rows_with_tokens():
    """The KL the controller tracks leaves out masked (sandbox-error) rows, which have no
    tokens: counting them as 0 would understate it."""
    batch, logp, ref = _batch([1, 0, 0, 0, 0, 1, 0, 0], [5, 3, 4, 5, 2, 5, 4, 3])
    batch["target_mask"][[1, 6]] = 0
    mask = batch["target_mask"]
    _, _, seq_kl = Scorer(None, _rl(), G).advantages(batch, logp, ref, np.zeros_like(logp),
                                                     np.float32(0.1))
    per_row = ((logp - ref) * mask).sum(axis=1)
    np.testing.assert_allclose(seq_kl, per_row[mask.any(axis=1)].mean(), rtol=1e-5)


def test_kl_in_the_loss_leaves_the_outcome_advantage_alone():
    batch, logp, ref = _batch([1, 0, 0, 0, 0, 0, 0, 0], [5, 3, 4, 5, 2, 5, 4, 3])
    adv, _ = _advantages(_rl(**{"kl.placement": "loss"}), batch, logp, ref, 0.5)
    np.testing.assert_allclose(adv[G:], 0.0, atol=1e-7)


def test_rltf_line_penalty_is_a_per_token_weight_not_a_return():
    """RLTF (Liu et al. 2023, sec. 3.3): a 30-token program with a runtime error (R = -0.6)
    on the line of completion tokens 10..21. Each token's weight is R, and R - 0.3 on the
    error line; nothing accumulates into the tokens before it (accumulating would give
    -0.6 - 0.3 * 12 = -4.2 there)."""
    n_tok, line = 30, slice(10, 22)
    eps = Episodes(prompts=[[5, 6]], tokens=np.arange(1, n_tok + 1, dtype=np.int32)[None],
                   mask=np.ones((1, n_tok), bool), logprobs=np.zeros((1, n_tok), np.float32),
                   texts=["x"], task_outcomes=[[Outcome("runtime_error", error_line=2)]],
                   rewards=np.array([-0.6], np.float32))

    def line_penalty(tasks, texts, outcomes, comp_ids, mask):  # a registered term's output
        out = np.zeros(mask.shape, np.float32)
        out[0, np.flatnonzero(mask[0])[line]] = -0.3
        return out

    batch = training_batch(eps, [None], 2, n_tok, 0, line_penalty, np.zeros(1, np.float32))
    zeros = np.zeros(batch["target_mask"].shape, np.float32)
    adv, _, _ = Scorer(None, _rl(advantage="reinforce"), 1).advantages(
        batch, zeros, zeros, zeros, np.float32(0.02))
    weights = np.full(n_tok, -0.6)
    weights[line] += -0.3  # R - 0.3 on the error line
    want = np.zeros(zeros.shape)
    want[0, 1:] = weights  # completion token i is target position 1 + i (2 prompt tokens)
    np.testing.assert_allclose(adv, want, rtol=1e-6, atol=1e-6)


def _tiny_update(rl):
    """The scanned update of ``rl.loss`` on a 1-layer model, not donating its state."""
    from rlfb_jax.core import sharding as shd
    from rlfb_jax.core.optim import make_optimizer
    from rlfb_jax.core.state import state_from_params
    from rlfb_jax.core.step import make_epoch_update
    from rlfb_jax.losses import get_loss
    from rlfb_jax.models import LanguageModel, ModelConfig

    lm = LanguageModel(ModelConfig(vocab_size=16, d_model=32, n_layers=1, n_heads=2, d_ff=64))
    params = lm.init(jax.random.key(0))
    mesh = shd.make_mesh(dict(data=1), jax.devices()[:1])
    tx, _ = make_optimizer(dict(name="adam", learning_rate=1e-3, schedule="constant"), 10)
    state, sh = state_from_params({"policy": params}, {}, tx, jax.random.key(1), mesh,
                                  {"policy": lm.logical_axes()})
    update = make_epoch_update(get_loss(rl.loss), tx, epochs=1, minibatches=1,
                               state_shardings=sh, mesh=mesh, donate=False, model=lm,
                               **loss_kwargs(rl))
    return update, state


def test_kl_in_the_loss_uses_the_controllers_beta_without_recompiling():
    """placement="loss": the beta of the batch (the adaptive controller's current value)
    is the coefficient of the loss's KL term, and a new beta does not recompile."""
    from rlfb_jax.core.step import compiled_count

    rl = _rl(**{"kl.placement": "loss", "kl.controller": "adaptive", "kl.estimator": "k3"})
    update, state = _tiny_update(rl)
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 16, (4, 9)).astype(np.int32)
    loss_mask = np.zeros((4, 9), bool)
    loss_mask[:, 4:] = True
    zeros = np.zeros((4, 8), np.float32)
    batch = {"tokens": tokens, "attention_mask": np.ones((4, 9), bool), "loss_mask": loss_mask,
             "old_logprobs": zeros - 2.0, "ref_logprobs": zeros - 2.5,
             "advantages": zeros, "returns": zeros, "old_values": zeros}
    kl = {}
    for beta in (0.1, 0.3):
        _, metrics = update(state, {**batch, "kl_beta": np.full(4, beta, np.float32)},
                            jax.random.key(2))
        kl[beta] = float(metrics["loss/kl"])
    assert kl[0.1] > 0
    np.testing.assert_allclose(kl[0.3], 3 * kl[0.1], rtol=1e-5)
    assert compiled_count(update) == 1


def test_update_batch_carries_beta_only_with_the_kl_in_the_loss():
    from rlfb_jax.algos.pg_batch import update_batch

    batch = {k: np.zeros((4, 9)) for k in ("tokens", "attention_mask", "loss_mask")}
    z = np.zeros((4, 8), np.float32)
    out = update_batch(_rl(**{"kl.placement": "loss"}), batch, z, z, z, z, z, np.float32(0.25))
    np.testing.assert_array_equal(out["kl_beta"], np.full(4, 0.25, np.float32))
    assert "kl_beta" not in update_batch(_rl(), batch, z, z, z, z, z, np.float32(0.25))


def test_k1_in_the_loss_is_refused_naming_the_reason():
    """k1 = log pi - log pi_ref: as a loss its gradient is grad log pi, zero in expectation
    over the samples, so it would not pull the policy toward the reference."""
    with pytest.raises(ValueError, match="kl.estimator='k1' with config.rl.kl.placement"):
        check_config(_rl(**{"kl.placement": "loss", "kl.estimator": "k1"}))
    for estimator in ("k2", "k3"):
        check_config(_rl(**{"kl.placement": "loss", "kl.estimator": estimator}))
    check_config(_rl(**{"kl.placement": "reward", "kl.estimator": "k1"}))


@pytest.mark.parametrize("key, value", [("kl.placement", "rewards"), ("kl.estimator", "k4"),
                                        ("kl.controller", "adaptiv")])
def test_a_kl_typo_fails_before_any_work_naming_the_key(key, value):
    with pytest.raises(ValueError, match=f"config.rl.{key}='{value}'"):
        check_config(_rl(**{key: value}))


@pytest.mark.parametrize("changes", [
    dict(update_rows=8, minibatches=1, advantage="value_baseline", value_slot="policy"),
    dict(update_rows=8, minibatches=1, advantage="grpo", value_slot="policy"),
])
def test_update_rows_refuses_a_critic(changes):
    """update_rows picks rows by an outcome advantage computed on the host before any value
    exists (value_baseline crashed there), and sets the returns to those advantages: a
    value head would be trained toward advantages."""
    with pytest.raises(ValueError, match="config.rl.update_rows=8 takes a critic-free"):
        check_config(_rl(**changes))


def test_random_row_select_draws_whole_prompts_and_keeps_their_rewards():
    """row_select='random': update_rows / n prompts, each with all its rows in order, drawn
    uniformly by the rng (the same draw for the same seed), rewards untouched."""
    rl = _rl(update_rows=8, minibatches=1, row_select="random")
    r = np.arange(24, dtype=np.float32)  # 6 prompts x 4 samples: a row's reward is its index
    batch = {"seq_rewards": r, "tokens": np.arange(24)[:, None] * np.ones((1, 3), np.int32),
             "token_rewards": np.outer(r, np.ones(3)).astype(np.float32)}
    counts = np.zeros(6)
    for seed in range(300):
        out, informative = select_rows(rl, batch, G, np.random.default_rng(seed))
        assert informative == 1.0 and len(out["seq_rewards"]) == 8
        prompts = out["seq_rewards"].reshape(2, G) // G
        assert (prompts == prompts[:, :1]).all() and prompts[0, 0] < prompts[1, 0]
        np.testing.assert_array_equal(out["seq_rewards"].reshape(2, G) % G, [[0, 1, 2, 3]] * 2)
        np.testing.assert_array_equal(out["token_rewards"][:, 0], out["seq_rewards"])
        counts[prompts[:, 0].astype(int)] += 1
    assert counts.min() > 60, counts  # each prompt drawn about 300 * 2 / 6 = 100 times
    a, _ = select_rows(rl, batch, G, np.random.default_rng(7))
    b, _ = select_rows(rl, batch, G, np.random.default_rng(7))
    np.testing.assert_array_equal(a["seq_rewards"], b["seq_rewards"])
    with pytest.raises(ValueError, match="needs an rng"):
        select_rows(rl, batch, G)


def test_random_row_select_runs_the_configured_estimator_on_the_drawn_rows():
    """The drawn rows get the estimator of a rollout made of them only (here GRPO on their
    groups, plus the KL penalty), not the plain returns-to-go of rows picked by advantage."""
    beta = 0.05
    rl_all = _rl(**{"kl.beta": beta})
    rl_rand = _rl(**{"kl.beta": beta, "update_rows": G, "minibatches": 1,
                     "row_select": "random"})
    batch, logp, ref = _batch([1, 0, 0.5, 0, -1, 1, -1, -1], [5, 3, 4, 5, 2, 5, 4, 3], 2)
    rows, _ = select_rows(rl_rand, batch, G, np.random.default_rng(0))
    first = int(rows["tokens"][0, 0])
    sl = slice(first, first + G)
    adv_rand, _ = _advantages(rl_rand, rows, logp[sl], ref[sl], beta)
    sub = {k: v[sl] for k, v in batch.items()}
    adv_sub, _ = _advantages(rl_all, sub, logp[sl], ref[sl], beta)
    np.testing.assert_allclose(adv_rand, adv_sub, rtol=1e-5, atol=1e-6)
    # the advantage-picked path would have placed the sequence advantage as a reward instead
    picked, _ = select_rows(_rl(update_rows=G, minibatches=1), sub, G)
    assert not np.allclose(picked["token_rewards"], rows["token_rewards"])


@pytest.mark.parametrize("changes, message", [
    (dict(row_select="randm"), "row_select='randm': expected 'advantage' or 'random'"),
    (dict(row_select="random"), "update_rows=0 must be a positive multiple of n_samples"),
    (dict(row_select="random", update_rows=6, minibatches=1),
     "update_rows=6 must be a positive multiple of n_samples=8"),
    (dict(row_select="random", update_rows=8, minibatches=1, adv_floor=0.0),
     "adv_floor needs config.rl.update_rows > 0 with config.rl.row_select='advantage'"),
])
def test_random_row_select_config_errors(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_config(_rl(**changes))


def test_random_row_select_takes_a_critic():
    check_config(_rl(update_rows=16, minibatches=2, row_select="random", advantage="gae",
                     value_slot="value"))


def test_reinforce_pp_refuses_a_sequence_advantage_floor():
    """The floor applies to sequence advantages; REINFORCE++'s are per token, normalized
    with the KL after the rows are picked: a floor would be silently ignored."""
    with pytest.raises(ValueError, match="adv_floor floors sequence advantages"):
        check_config(_rl(update_rows=8, minibatches=1, advantage="reinforce_pp", adv_floor=0.0))
    check_config(_rl(update_rows=8, minibatches=1, advantage="reinforce_pp"))


def test_value_baseline_needs_a_critic():
    """Without a value head the scorer's values are zeros: value_baseline would silently be
    plain REINFORCE."""
    with pytest.raises(ValueError, match="'value_baseline' needs a critic"):
        check_config(_rl(advantage="value_baseline"))
    check_config(_rl(advantage="value_baseline", value_slot="policy"))  # fine without rows


def _episodes(statuses, rewards, n_tok=5):
    """Episodes of 2 prompts x 4 samples with the given outcome statuses and rewards."""
    rng = np.random.default_rng(4)
    b = len(statuses)
    outcomes = [Outcome(s) for s in statuses]
    return Episodes(prompts=[[5, 6], [7]], tokens=rng.integers(1, 16, (b, n_tok)).astype(np.int32),
                    mask=np.ones((b, n_tok), bool), logprobs=np.zeros((b, n_tok), np.float32),
                    texts=["x"] * b, task_outcomes=[outcomes[:G], outcomes[G:]],
                    rewards=np.asarray(rewards, np.float32))


def _no_terms(tasks, texts, outcomes, comp_ids, mask):
    return np.zeros(mask.shape, np.float32)


def test_sandbox_errors_are_masked_out_of_the_loss_and_the_group_statistics():
    statuses = ["passed", "sandbox_error", "wrong_answer", "syntax_error",
                "passed", "passed", "runtime_error", "sandbox_error"]
    rewards = [1.0, 0.0, -0.3, -1.0, 1.0, 1.0, -0.6, 0.0]
    eps = _episodes(statuses, rewards)
    batch = training_batch(eps, [None, None], 2, 5, 0, _no_terms, np.zeros(B, np.float32))
    bad = np.array([s == "sandbox_error" for s in statuses])
    assert not batch["loss_mask"][bad].any() and not batch["target_mask"][bad].any()
    assert batch["target_mask"][~bad].sum(axis=1).tolist() == [5] * 6
    zeros = np.zeros(batch["target_mask"].shape, np.float32)
    adv, _, _ = Scorer(None, _rl(), G).advantages(batch, zeros, zeros, zeros, np.float32(0.0))
    adv = np.asarray(adv)
    assert np.all(adv[bad] == 0.0)
    # GRPO over the judged rows only: {1, -.3, -1} and {1, 1, -.6}
    for rows, r in (([0, 2, 3], [1.0, -0.3, -1.0]), ([4, 5, 6], [1.0, 1.0, -0.6])):
        r = np.asarray(r)
        want = (r - r.mean()) / (r.std(ddof=1) + 1e-6)
        np.testing.assert_allclose(adv[rows][:, -1], want, rtol=1e-5)
    # CodeRL's greedy baseline: a prompt whose greedy sample had no verdict (NaN) has no
    # baseline, so its rows are masked out too
    greedy = np.array([1.0] * G + [np.nan] * G, np.float32)
    masked = training_batch(eps, [None, None], 2, 5, 0, _no_terms, greedy)
    assert masked["target_mask"][G:].sum() == 0 and np.all(np.isfinite(masked["baseline"]))
    assert masked["target_mask"][:G].sum(axis=1).tolist() == [5, 0, 5, 5]
    # update_rows: a masked row carries no outcome advantage either
    rl = _rl(update_rows=B, minibatches=1)
    rows, _ = select_rows(rl, batch, G)
    assert np.all(rows["token_rewards"][bad] == 0.0)


def test_sandbox_rows_get_zero_weight_in_the_loss():
    """Whatever tokens a masked-out row holds, the loss and its gradient do not change."""
    from rlfb_jax.losses import get_loss
    from rlfb_jax.models import LanguageModel, ModelConfig

    statuses = ["passed", "sandbox_error", "wrong_answer", "syntax_error"] * 2
    eps = _episodes(statuses, [1.0, 0.0, -0.3, -1.0] * 2)
    batch = training_batch(eps, [None, None], 2, 5, 0, _no_terms, np.zeros(B, np.float32))
    lm = LanguageModel(ModelConfig(vocab_size=16, d_model=32, n_layers=1, n_heads=2, d_ff=64))
    params = {"policy": lm.init(jax.random.key(0))}
    adv = np.where(batch["target_mask"] > 0, 1.0, 0.0).astype(np.float32)
    adv[1] = 5.0  # even a (wrongly) nonzero advantage on the masked row does nothing

    def loss_and_grad(tokens):
        b = {"tokens": tokens, "attention_mask": batch["attention_mask"],
             "loss_mask": batch["loss_mask"], "advantages": adv}
        fn = lambda p: get_loss("pg")(p, b, model=lm)[0]  # noqa: E731
        return jax.value_and_grad(fn)(params)

    other = batch["tokens"].copy()
    other[1, 2:] = (other[1, 2:] + 3) % 16  # row 1's completion changed
    (l1, g1), (l2, g2) = loss_and_grad(batch["tokens"]), loss_and_grad(other)
    np.testing.assert_allclose(l1, l2, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_sandbox_errors_are_logged_and_not_counted_as_failures():
    from rlfb_jax.algos.pg_batch import iteration_metrics

    statuses = ["passed", "sandbox_error", "wrong_answer", "syntax_error",
                "passed", "passed", "runtime_error", "sandbox_error"]
    eps = _episodes(statuses, [0.0] * B)
    m = iteration_metrics(eps, {}, {"time/sample_s": 1.0, "time/update_s": 1.0}, 0.0, 0.0,
                          1.0, 2.0)
    assert m["exec/sandbox_error_frac"] == 2 / 8
    assert m["rl/pass_rate"] == 3 / 6 and m["rl/compile_rate"] == 1 - 1 / 6
    assert m["rl/max_len_frac"] == 1.0  # every row of _episodes fills its completion
    eps.mask[1:, -1] = False
    m = iteration_metrics(eps, {}, {"time/sample_s": 1.0, "time/update_s": 1.0}, 0.0, 0.0,
                          1.0, 2.0)
    assert m["rl/max_len_frac"] == 1 / 8


def test_overlong_shaping_joins_the_sequence_reward():
    """DAPO's soft overlong punishment with L_max = 5 completion tokens and L_cache = 2:
    lengths 5, 4, 3 get -1, -0.5, 0 on top of their outcome reward; a masked row nothing."""
    statuses = ["passed", "wrong_answer", "passed", "sandbox_error"] * 2
    eps = _episodes(statuses, [1.0, -0.3, 1.0, 0.0] * 2)
    for row, n in enumerate([5, 4, 3, 5] * 2):
        eps.mask[row, n:] = False
    batch = training_batch(eps, [None, None], 2, 5, 0, _no_terms, np.zeros(B, np.float32), 2)
    np.testing.assert_allclose(batch["seq_rewards"], [0.0, -0.8, 1.0, 0.0] * 2, atol=1e-6)
    last = batch["token_rewards"].sum(axis=1)  # the reward sits on the last token
    np.testing.assert_allclose(last, [0.0, -0.8, 1.0, 0.0] * 2, atol=1e-6)


@pytest.mark.parametrize("key, value", [("loss", "gspoo"), ("advantage", "reinforce++"),
                                        ("overlong_cache", 999)])
def test_loss_advantage_and_shaping_typos_fail_in_check_config(key, value):
    with pytest.raises(ValueError, match=f"config.rl.{key}="):
        check_config(_rl(**{key: value}))
    check_config(_rl(loss="gspo", advantage="reinforce_pp", overlong_cache=8))


def test_the_loop_feeds_the_adaptive_beta_to_the_loss_with_one_compile(tmp_path):
    """Three real iterations with the KL in the loss and an adaptive controller (a short
    horizon, so beta moves every iteration): the update compiles once, and each
    iteration's loss/kl is that iteration's beta times its k3 token mean (kl/k3_mean)."""
    from main_runner import run_main

    from experiments import synthetic_ppo
    from rlfb_jax.algos import ppo
    from rlfb_jax.algos.driver import Driver
    from rlfb_jax.core.step import compiled_count

    base = tmp_path / "base"
    run_main("experiments/synthetic_sft.py:smoke", base)
    config = synthetic_ppo.get_config("smoke")
    config.base_workdir = str(base)
    config.rl.update_rows, config.rl.minibatches = 8, 1  # 8 rows, one per fake device
    config.rl.kl.placement, config.rl.kl.controller, config.rl.kl.horizon = "loss", "adaptive", 8.0
    config.rl.kl.estimator = "k3"  # so that loss/kl = beta * kl/k3_mean (token_mean)
    betas, kl_loss, kl_mean = [], [], []
    with Driver(config, str(tmp_path / "ppo"), pool=config.rl) as driver:
        p, state = ppo.setup(driver)
        for it in range(3):
            beta = float(state.aux["kl"].beta)
            state, metrics = ppo.iteration(p, state, it)
            betas.append(beta)
            kl_loss.append(metrics["loss/kl"])
            kl_mean.append(metrics["kl/k3_mean"])
        assert compiled_count(p.update) == 1
    assert len(set(betas)) == 3 and min(betas) > 0  # it moved, and the loss saw each value
    assert betas[0] == np.float32(config.rl.kl.beta)
    assert kl_mean[-1] != 0.0  # the policy has left the reference (lr warms up from 0)
    np.testing.assert_allclose(kl_loss, np.array(betas) * np.array(kl_mean), rtol=1e-3,
                               atol=1e-12)


def test_critic_weights_scale_the_outcome_advantage_not_the_kl_penalty():
    """CodeRL: -(r - b) q(u | w_<=t) grad log p(w_t); the KL penalty is not the critic's."""
    rl = _rl(**{"kl.beta": 0.05})
    rl.advantage = "rloo"
    batch, logp, ref = _batch([1, 0, 0, 0, 0, 1, 0.5, 0], [5, 3, 4, 5, 2, 5, 4, 3], 2)
    mask = batch["target_mask"]
    plain, _ = _advantages(rl, batch, logp, ref, 0.05)
    w = np.random.default_rng(3).uniform(0, 1, mask.shape).astype(np.float32) * mask
    weighted, _ = _advantages(rl, dict(batch, critic_weights=w), logp, ref, 0.05)
    kl = _kl_to_go(logp, ref, mask, 0.05)
    np.testing.assert_allclose(weighted - kl, (plain - kl) * w, rtol=1e-5, atol=1e-6)
