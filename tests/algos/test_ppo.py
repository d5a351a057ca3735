"""PG/PPO: token-reward placement by hand, and 2-iteration smoke runs of both algorithms
sharing one tiny base model."""

import json

import ml_collections
import numpy as np
import pytest
from main_runner import run_main, summary

from rlfb_jax.algos.ppo import _token_rewards, select_rows, sequence_advantages

PPO = "experiments/synthetic_ppo.py:smoke"
GENERIC = "tests/algos/ppo_generic_config.py"  # the algorithm's defaults, smoke size
ABLATION = "experiments/synthetic_ppo_ablation.py:smoke"  # compile-only reward
PG = "experiments/synthetic_pg.py:smoke"


def test_sequence_reward_goes_on_the_last_completion_token():
    mask = np.array([[0, 1, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], np.float32)
    extra = np.zeros_like(mask)
    extra[0, 1] = -0.3
    out = _token_rewards(np.array([1.0, -0.6, 5.0], np.float32), extra, mask)
    np.testing.assert_allclose(out, [[0, -0.3, 0, 1.0, 0], [0, 0, -0.6, 0, 0], [0, 0, 0, 0, 0]])


def _rl(advantage, adv_floor=None):
    return ml_collections.ConfigDict(dict(advantage=advantage, whiten=False,
                                          adv_floor=adv_floor))


def test_sequence_advantages_and_the_informative_rows():
    # two prompts x 4 samples, binary rewards: prompt 0 has one success, prompt 1 none
    r = np.array([0, 1, 0, 0, 0, 0, 0, 0], np.float32)
    adv = sequence_advantages(_rl("rloo"), r, 4, None)
    np.testing.assert_allclose(adv, [-1 / 3, 1, -1 / 3, -1 / 3, 0, 0, 0, 0], atol=1e-6)
    assert list(select_rows(adv, 4)) == [0, 1, 2, 3]  # the all-fail group carries nothing
    floored = sequence_advantages(_rl("rloo", 0.0), r, 4, None)
    np.testing.assert_allclose(floored, [0, 1, 0, 0, 0, 0, 0, 0], atol=1e-6)
    assert list(select_rows(floored, 2)) == [0, 1]  # the success, then the first tie
    g = sequence_advantages(_rl("greedy_baseline"), r, 4, np.array([1, 1, 1, 1, 0, 0, 0, 0]))
    np.testing.assert_allclose(g, [-1, 0, -1, -1, 0, 0, 0, 0])
    assert list(select_rows(g, 3)) == [0, 2, 3]


def _run(workdir, *extra, config=PPO):
    run_main(config, workdir, *extra, timeout=600)
    return summary(workdir)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("base"))


@pytest.mark.parametrize("algo, extra", [
    ("ppo_generic", ["--config.rl.value_slot=policy", "--config.rl.advantage=gae",
             "--config.rl.line_penalty=-0.3", "--config.rl.kl.controller=adaptive"]),
    ("pg", ["--config.rl.kl.placement=loss", "--config.rl.minibatches=1"]),
    ("ppo", ["--config.rl.update_rows=4", "--config.rl.advantage=rloo"]),
    ("ablation", ["--config.rl.kl.placement=loss", "--config.rl.kl.beta=1.0"]),
])
def test_two_iteration_smoke(tmp_path, base_dir, algo, extra):
    wd = tmp_path / algo
    config = {"ppo_generic": GENERIC, "ablation": ABLATION, "pg": PG}.get(algo, PPO)
    summary = _run(wd, f"--config.base_workdir={base_dir}", *extra, config=config)
    for key in ("eval/pass@1", "eval/pass@1_base", "eval/compile_rate",
                "eval/compile_rate_base"):
        assert key in summary
    rows = [json.loads(line) for line in open(wd / "metrics.jsonl")]
    it_rows = [r for r in rows if "rl/pass_rate" in r]
    assert [r["step"] for r in it_rows] == [1, 2]
    for key in ("reward/total", "kl/seq_kl", "policy/entropy", "train/grad_norm",
                "time/sample_s", "time/update_s", "perf/programs_per_s", "exec/syntax_error_frac"):
        assert key in it_rows[-1], key
    assert all(np.isfinite(r["train/loss"]) for r in it_rows)
    if algo.startswith("ppo"):
        assert "ppo/clip_frac" in it_rows[-1]
    assert json.load(open(wd / "config.json"))["algo"] == ("pg" if algo == "pg" else "ppo")
    if "--config.rl.value_slot=policy" in extra:
        assert "value/explained_variance" in it_rows[-1]
    assert (wd / "eval.png").exists()
    if algo == "ablation":  # the compile-only reward replaced the pass/fail one
        assert "reward/compile" in it_rows[-1] and "reward/coderl" not in it_rows[-1]
    if "--config.rl.update_rows=4" in extra:
        assert 0 <= it_rows[-1]["rl/informative_frac"] <= 1


def test_update_rows_is_checked_before_any_work(tmp_path, base_dir):
    out = run_main(PPO, tmp_path / "bad", f"--config.base_workdir={base_dir}",
                   "--config.rl.update_rows=3", check=False)
    assert out.returncode != 0 and "config.rl.update_rows=3" in out.stderr


def test_ablation_variants_change_one_thing():
    from experiments import synthetic_ppo
    from experiments import synthetic_ppo_ablation as abl

    main = synthetic_ppo.get_config()

    def diff(variant):
        c = abl.get_config(variant)
        rl, ref = c.rl, main.rl
        return (sorted(rl.rewards.keys()), rl.kl.beta, rl.kl.placement, rl.kl.estimator,
                rl.to_dict() | {"rewards": 0, "kl": 0} == ref.to_dict() | {"rewards": 0, "kl": 0})

    assert diff("compile_nokl") == (["compile"], 0.0, "reward", "k1", True)
    assert diff("compile_kl") == (["compile"], 0.02, "reward", "k1", True)
    assert diff("compile_beta0.2") == (["compile"], 0.2, "reward", "k1", True)
    assert diff("compile_loss_beta1") == (["compile"], 1.0, "loss", "k3", True)
    assert diff("ast_dfg") == (["ast_match", "coderl", "dfg_match"], 0.02, "reward", "k1", True)
    assert diff("beta0.1") == (["coderl"], 0.1, "reward", "k1", True)
    for bad, match in (("foo", "unknown variant 'foo'"), ("betax", "is not")):
        with pytest.raises(ValueError, match=match):
            abl.get_config(bad)
