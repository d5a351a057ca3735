"""PG/PPO: token-reward placement and row selection by hand, the real iteration compiling
each jitted function once, and 2-iteration smoke runs of both algorithms sharing one tiny
base model."""

import json
import os

import ml_collections
import numpy as np
import pytest
from main_runner import run_main, summary

from rlfb_jax.algos.pg_batch import largest_rows, place_rewards, select_rows, sequence_advantages

PPO = "experiments/synthetic_ppo.py:smoke"
GENERIC = "tests/algos/ppo_generic_config.py"  # the algorithm's defaults, smoke size
ABLATION = "experiments/synthetic_ppo_ablation.py:smoke"  # compile-only reward
PG = "experiments/synthetic_pg.py:smoke"


def test_sequence_reward_goes_on_the_last_completion_token():
    mask = np.array([[0, 1, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], np.float32)
    extra = np.zeros_like(mask)
    extra[0, 1] = -0.3
    out = place_rewards(np.array([1.0, -0.6, 5.0], np.float32), extra, mask)
    np.testing.assert_allclose(out, [[0, -0.3, 0, 1.0, 0], [0, 0, -0.6, 0, 0], [0, 0, 0, 0, 0]])


def _rl(advantage, adv_floor=None):
    return ml_collections.ConfigDict(dict(advantage=advantage, whiten=False,
                                          adv_floor=adv_floor,
                                          advantage_kwargs=ml_collections.ConfigDict()))


def test_sequence_advantages_and_the_informative_rows():
    # two prompts x 4 samples, binary rewards: prompt 0 has one success, prompt 1 none
    r = np.array([0, 1, 0, 0, 0, 0, 0, 0], np.float32)
    adv = sequence_advantages(_rl("rloo"), r, 4, None)
    np.testing.assert_allclose(adv, [-1 / 3, 1, -1 / 3, -1 / 3, 0, 0, 0, 0], atol=1e-6)
    assert list(largest_rows(adv, 4)) == [0, 1, 2, 3]  # the all-fail group carries nothing
    floored = sequence_advantages(_rl("rloo", 0.0), r, 4, None)
    np.testing.assert_allclose(floored, [0, 1, 0, 0, 0, 0, 0, 0], atol=1e-6)
    assert list(largest_rows(floored, 2)) == [0, 1]  # the success, then the first tie
    g = sequence_advantages(_rl("greedy_baseline"), r, 4, np.array([1, 1, 1, 1, 0, 0, 0, 0]))
    np.testing.assert_allclose(g, [-1, 0, -1, -1, 0, 0, 0, 0])
    assert list(largest_rows(g, 3)) == [0, 2, 3]


def test_select_rows_keeps_the_informative_rows_with_their_advantage():
    rl = _rl("rloo", 0.0)
    rl.update_rows = 2
    mask = np.zeros((8, 5), np.float32)
    mask[:, 1:4] = 1
    batch = {"target_mask": mask, "seq_rewards": np.array([0, 1, 0, 0, 0, 0, 0, 0], np.float32),
             "baseline": np.zeros(8, np.float32), "tokens": np.arange(8)[:, None] * np.ones(6)}
    out, informative = select_rows(rl, batch, 4)
    assert list(out["tokens"][:, 0]) == [0, 1]  # the success, then the first tie
    assert informative == 1 / 8  # after the floor only the success carries a signal
    want = np.zeros((2, 5), np.float32)
    want[1, 3] = 1.0  # rloo 1, floored at 0: on the last completion token
    np.testing.assert_allclose(out["token_rewards"], want, atol=1e-6)
    rl.update_rows = 0
    assert select_rows(rl, batch, 4) == (batch, 1.0)


def test_the_real_iteration_compiles_each_jitted_function_once(tmp_path, base_dir):
    """Three calls of `rlfb_jax.algos.ppo.iteration` itself on the parts `ppo.setup` builds:
    the sampler, the scorer's two functions and the scanned update compile once each."""
    from experiments import synthetic_ppo
    from rlfb_jax.algos import ppo
    from rlfb_jax.algos.driver import Driver
    from rlfb_jax.core.step import compiled_count

    if not os.path.exists(os.path.join(base_dir, "summary.json")):
        run_main("experiments/synthetic_sft.py:smoke", base_dir)
    config = synthetic_ppo.get_config("smoke")
    config.base_workdir = base_dir
    # 4 prompts x 2 samples = 8 rows, one per fake device; all of them kept
    config.rl.iterations, config.rl.update_rows, config.rl.minibatches = 3, 8, 1
    with Driver(config, str(tmp_path / "ppo"), pool=config.rl) as driver:
        p, state = ppo.setup(driver)
        for it in range(3):
            state, metrics = ppo.iteration(p, state, it)
            assert np.isfinite(metrics["train/loss"]) and metrics["kl/beta"] == np.float32(0.02)
        counts = {"sampler": p.policy.sampler(p.prompt_len).compiled_count(),
                  "score": compiled_count(p.scorer.score),
                  "advantages": compiled_count(p.scorer.advantages),
                  "update": compiled_count(p.update)}
    assert counts == dict.fromkeys(counts, 1)
    assert int(state.step) == 3 * int(config.rl.epochs)  # one minibatch per epoch


def test_resuming_between_iterations_is_bit_identical(tmp_path, base_dir):
    """The RNG and the adaptive KL controller live in the TrainState: two iterations in one
    go equal one iteration, a checkpoint, a fresh process state and the second."""
    import jax

    from experiments import synthetic_ppo
    from rlfb_jax.algos import ppo
    from rlfb_jax.algos.driver import Driver

    if not os.path.exists(os.path.join(base_dir, "summary.json")):
        run_main("experiments/synthetic_sft.py:smoke", base_dir)
    config = synthetic_ppo.get_config("smoke")
    config.base_workdir = base_dir
    config.rl.update_rows, config.rl.minibatches = 8, 1  # 8 rows, one per fake device
    config.rl.kl.controller = "adaptive"

    def iterations(workdir, its):
        with Driver(config, str(workdir), pool=config.rl) as driver:
            p, state = ppo.setup(driver)
            for it in its:
                state, _ = ppo.iteration(p, state, it)
            driver.save(its[-1] + 1, state, {"iteration": its[-1] + 1})
            return jax.device_get(state)

    straight = iterations(tmp_path / "straight", [0, 1])
    iterations(tmp_path / "resumed", [0])
    resumed = iterations(tmp_path / "resumed", [1])
    assert straight.aux["kl"].beta != np.float32(config.rl.kl.beta)  # the controller moved
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _run(workdir, *extra, config=PPO):
    run_main(config, workdir, *extra, timeout=600)
    return summary(workdir)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("base"))


@pytest.mark.parametrize("algo, extra", [
    ("ppo_generic", ["--config.rl.value_slot=policy", "--config.rl.advantage=gae",
             "--config.rl.kl.controller=adaptive"]),
    ("ppo_generic", ["--config.rl.value_slot=value", "--config.rl.advantage=gae"]),
    ("pg", ["--config.rl.kl.placement=loss", "--config.rl.kl.estimator=k2",
            "--config.rl.minibatches=1"]),
    ("ppo", ["--config.rl.update_rows=4", "--config.rl.advantage=rloo"]),
    ("ablation", ["--config.rl.kl.placement=loss", "--config.rl.kl.estimator=k3",
                  "--config.rl.kl.beta=1.0"]),
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
    if any(x.startswith("--config.rl.value_slot=") for x in extra):
        assert "value/explained_variance" in it_rows[-1]
    assert (wd / "eval.png").exists()
    if algo == "ablation":  # the compile-only reward replaced the pass/fail one
        assert "reward/compile" in it_rows[-1] and "reward/coderl" not in it_rows[-1]
    if "--config.rl.update_rows=4" in extra:
        # RLOO over pairs floored at 0: at most the better sample of each of the 4 pairs
        assert it_rows[-1]["rl/informative_frac"] * 8 in (0, 1, 2, 3, 4)


STUDY_ROWS = ("graded", "filtered_bc", "grpo", "dr_grpo", "reinforce_pp", "rltf",
              "clip_higher", "overlong", "gspo", "gae", "ppocoder", "pg")


@pytest.mark.parametrize("row", [
    # GSPO's sequence ratio and Dr. GRPO's fixed-length sum are the updates the smoke runs
    # above do not take; every other row of the study is in the slow run
    pytest.param(row, marks=() if row in ("gspo", "dr_grpo") else pytest.mark.slow)
    for row in STUDY_ROWS])
def test_every_rl_study_row_runs_at_smoke_size(tmp_path, base_dir, row):
    """Each row of docs/results.md's RL table, one iteration at smoke size end to end."""
    from experiments import synthetic_rl_study

    assert row in synthetic_rl_study.VARIANTS
    wd = tmp_path / row
    s = _run(wd, f"--config.base_workdir={base_dir}", "--config.rl.iterations=1",
             config=f"experiments/synthetic_rl_study.py:{row},smoke")
    assert {"eval/pass@1", "eval/pass@1_base", "eval/compile_rate"} <= set(s)
    it = [json.loads(line) for line in open(wd / "metrics.jsonl")]
    it = [r for r in it if "rl/pass_rate" in r]
    assert len(it) == 1 and np.isfinite(it[0]["train/loss"]) and "kl/seq_kl" in it[0]
    if row == "gae":
        assert "value/explained_variance" in it[0]
    assert 0 <= it[0]["rl/max_len_frac"] <= 1
    assert json.load(open(wd / "config.json"))["study"] == row


def test_the_rl_study_rows_in_the_tests_are_all_of_them():
    from experiments import synthetic_rl_study

    assert set(STUDY_ROWS) == set(synthetic_rl_study.VARIANTS)


def test_update_rows_is_checked_before_any_work(tmp_path, base_dir):
    out = run_main(PPO, tmp_path / "bad", f"--config.base_workdir={base_dir}",
                   "--config.rl.update_rows=3", check=False)
    assert out.returncode != 0 and "config.rl.update_rows=3" in out.stderr


def test_the_shipped_rl_configs_push_failures_down():
    """synthetic_ppo's and synthetic_pg's defaults, and the demo's PPO stage, are the graded
    setting (CodeRL levels, no advantage floor, a KL penalty): the RL study's ``graded`` row
    run longer, not filtered behaviour cloning; ``:filtered`` keeps the pass/fail setting."""
    from experiments import demo, synthetic_pg, synthetic_ppo, synthetic_rl_study

    ppo, pg = synthetic_ppo.get_config(), synthetic_pg.get_config()
    for c in (ppo, pg, demo.get_config().ppo):
        assert c.rl.adv_floor is None and c.rl.kl.beta > 0 and c.rl.advantage == "rloo"
        assert c.rl.rewards.to_dict() == {"coderl": 1.0}  # the levels, failures below 0
    study = synthetic_rl_study.get_config("graded").to_dict()
    same = lambda d: ({k: v for k, v in d.items() if k != "study"}  # noqa: E731
                      | {"rl": 0, "optimizer": 0})
    assert same(study) == same(ppo.to_dict())
    assert study["rl"] | {"iterations": 0} == ppo.rl.to_dict() | {"iterations": 0}
    # the schedule: the study's one cosine over 6 iterations, extended to 12 and 18
    assert study["optimizer"] | {"schedule": "cosine_stages", "stages": (1 / 3, 2 / 3)} \
        == ppo.optimizer.to_dict()
    assert ppo.rl.iterations == 3 * synthetic_rl_study.ITERATIONS  # stages end at 6, 12, 18
    assert demo.get_config().ppo.optimizer.to_dict() == study["optimizer"]
    assert ppo.rl.iterations > synthetic_rl_study.ITERATIONS
    assert demo.get_config().ppo.rl.iterations == synthetic_rl_study.ITERATIONS
    assert (pg.rl.loss, pg.rl.epochs, pg.optimizer.learning_rate) == ("pg", 1, 5e-5)
    for c in (synthetic_ppo.get_config("filtered"), synthetic_pg.get_config("filtered,smoke")):
        assert c.rl.adv_floor == 0.0 and c.rl.rewards.coderl.wrong_answer == 0.0
    assert synthetic_ppo.get_config("filtered,smoke").rl.prompts_per_iter == 4
    with pytest.raises(ValueError, match="synthetic_ppo"):
        synthetic_ppo.get_config("graded")


def test_rl_study_rows_share_the_sample_budget_and_the_step_size():
    """Every row of the RL study samples the same programs and, except PG's one pass, takes
    the same number of optimizer steps per iteration on 32-row device steps, on the same
    1,024 update rows: the `gae` row draws its rows as whole prompts at random (a critic's
    advantages exist only after scoring), and its advantages are whitened (with an untrained
    critic they are otherwise nearly all negative: the row collapsed)."""
    from experiments import synthetic_pg
    from experiments import synthetic_rl_study as study
    from rlfb_jax.algos.pg_config import check_config

    for variant in study.VARIANTS:
        c = study.get_config(variant)
        check_config(c.rl)
        rows = c.rl.update_rows or c.rl.prompts_per_iter * c.rl.n_samples
        accum = c.optimizer.grad_accum
        assert (c.rl.iterations, c.rl.prompts_per_iter, c.rl.n_samples) == (6, 2048, 4), variant
        assert rows // c.rl.minibatches == 32, variant
        steps = c.rl.epochs * c.rl.minibatches // accum
        assert steps == (32 if variant == "pg" else 64), variant
    assert study.get_config("pg").optimizer.learning_rate \
        == synthetic_pg.get_config().optimizer.learning_rate  # PG's own step size
    overlong = study.get_config("overlong")
    assert overlong.rl.overlong_cache == 9 and study.get_config("graded").rl.overlong_cache == 0
    gae = study.get_config("gae")
    assert (gae.rl.update_rows, gae.rl.row_select, gae.rl.whiten, gae.rl.value_slot) \
        == (1024, "random", True, "value")
    assert {study.get_config(v).rl.update_rows for v in study.VARIANTS} == {1024}
    assert {study.get_config(v).optimizer.grad_accum for v in study.VARIANTS} == {1}


def test_ablation_variants_change_one_thing():
    from experiments import synthetic_ppo
    from experiments import synthetic_ppo_ablation as abl

    main = synthetic_ppo.get_config("filtered")

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


def test_an_earlier_base_checkpoint_is_evaluated_once_and_reported_as_the_base(tmp_path,
                                                                                base_dir):
    wd = tmp_path / "early"
    s = _run(wd, f"--config.base_workdir={base_dir}", "--config.base_step=10",
             "--config.rl.iterations=1", config="experiments/synthetic_rl_study.py:ppocoder,smoke")
    early = json.loads((wd / "base_step_eval.json").read_text())
    assert s["eval/pass@1_base"] == early["eval/pass@1"]
    assert s["eval/compile_rate_base"] == early["eval/compile_rate"]
    out = run_main("experiments/synthetic_rl_study.py:ppocoder,smoke", tmp_path / "bad",
                   f"--config.base_workdir={base_dir}", "--config.base_step=3", check=False)
    assert out.returncode != 0 and "no checkpoint at step 3 (there are: 10)" in out.stderr


def test_the_runs_own_held_out_tasks_replace_the_bases(tmp_path, base_dir):
    """``--config.eval.tasks`` on a method that starts from a base was accepted and ignored:
    every evaluation used the base's held-out tasks. Now the run evaluates on its own tasks,
    and its ``*_base`` figures are the base evaluated on them (made once, kept)."""
    from rlfb_jax.data import save_jsonl
    from rlfb_jax.data.synthetic import make_splits

    tasks = make_splits(3, 0, 0, seed=7, max_depth=1)["train"]
    save_jsonl(tasks, tmp_path / "mine.jsonl")
    wd = tmp_path / "own_tasks"
    s = _run(wd, f"--config.base_workdir={base_dir}", "--config.rl.iterations=1",
             f"--config.eval.tasks={tmp_path / 'mine.jsonl'}")
    seen = {json.loads(line)["task_id"] for line in open(wd / "eval_samples.jsonl")}
    assert seen == {t.task_id for t in tasks}
    base = json.loads((wd / "base_eval.json").read_text())
    assert base["eval_tasks"] == [str(tmp_path / "mine.jsonl"), ""]
    assert s["eval/pass@1_base"] == base["eval/pass@1"]
    assert s["eval/compile_rate_base"] == base["eval/compile_rate"]
