"""PG/PPO's named parts as a user tunes them: loss hyperparameters and reward weights added
from the command line, a loss of one's own, and every bad name refused before any work with
the key it is about."""

import subprocess
import sys
import textwrap

import ml_collections
import pytest
from main_runner import REPO, main_env

from experiments import synthetic_rl_study
from rlfb_jax.main import ConfigError, import_modules, preflight

STUDY = f"{REPO}/experiments/synthetic_rl_study.py:smoke"


def _config(**changes):
    c = synthetic_rl_study.get_config("smoke")
    for key, value in changes.items():
        node, (*path, last) = c, key.split(".")
        for p in path:
            node = node[p]
        setattr(node, last, value)  # as the command line does: refused where locked
    return c


@pytest.mark.parametrize("override", [
    "--config.rl.loss_kwargs.clip_eps_high=0.28",  # a key the default config does not have
    "--config.rl.rewards.ast_match=1.0",
    "--config.rl.advantage_kwargs.lam=0.9",  # (for gae: the preflight checks the name)
])
def test_part_hyperparameters_and_reward_weights_can_be_added_from_the_command_line(
        override, tmp_path):
    """They were locked like the rest of the config: ml_collections refused the key as a
    typo. The workdir is a file here, so the run stops at its first check, after the config
    (and its override) loaded."""
    (tmp_path / "file").write_text("")
    out = subprocess.run([sys.executable, "-m", "rlfb_jax.main", f"--config={STUDY}", override,
                          f"--workdir={tmp_path / 'file'}"], env=main_env(), cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "is a file, not a directory" in out.stderr, out.stderr


def test_added_hyperparameters_pass_the_preflight(tmp_path):
    c = _config(**{"rl.loss_kwargs.clip_eps_high": 0.28, "rl.rewards.ast_match": 1.0})
    preflight(c, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_the_rest_of_the_rl_config_stays_locked():
    with pytest.raises(AttributeError, match="clip_eps_hgh"):
        _config(**{"rl.clip_eps_hgh": 0.28})
    with pytest.raises(AttributeError, match="betta"):
        _config(**{"rl.kl.betta": 0.1})
    graded = synthetic_rl_study.get_config("filtered_bc,smoke")  # coderl with its levels
    with pytest.raises(AttributeError, match="wrong_answr"):
        graded.rl.rewards.coderl.wrong_answr = 0.0  # a reward's options stay locked


@pytest.mark.parametrize("config, key, message", [
    # ReST-EM's rewards are open too, and checked
    ("synthetic_rest_em", "rest_em.rewards.codrl", "config.rest_em.rewards.codrl: unknown reward"),
    # a nested PPO stage's errors name its own path
    ("demo", "ppo.rl.loss_kwargs.clip_eps_hgh",
     "config.ppo.rl.loss_kwargs: loss 'ppo' has no hyperparameter(s) ['clip_eps_hgh']"),
])
def test_errors_in_other_sections_name_their_path(config, key, message, tmp_path):
    import importlib

    c = importlib.import_module(f"experiments.{config}").get_config("smoke")
    node, (*path, last) = c, key.split(".")
    for p in path:
        node = node[p]
    setattr(node, last, 1.0)
    with pytest.raises(ConfigError) as e:
        preflight(c, str(tmp_path / "run"))
    assert message in str(e.value)


@pytest.mark.parametrize("changes, message", [
    ({"rl.loss_kwargs.clip_eps_hgh": 0.28},
     "config.rl.loss_kwargs: loss 'ppo' has no hyperparameter(s) ['clip_eps_hgh']"),
    # pg's **hparams go on to the shared helper, which takes no clip range: caught here, not
    # by a TypeError at the first update
    ({"algo": "pg", "rl.loss": "pg"},
     "config.rl.loss_kwargs: loss 'pg' has no hyperparameter(s) ['clip_eps']"),
    ({"rl.loss": "gspo", "rl.loss_kwargs.aggregaton": "seq_mean"},
     "loss 'gspo' has no hyperparameter(s) ['aggregaton']"),
    ({"rl.rewards.ast_mach": 1.0},
     "config.rl.rewards.ast_mach: unknown reward 'ast_mach'; registered: ast_match"),
    ({"rl.loss_kwargs.temperature": 0.5},
     "config.rl.loss_kwargs.temperature: set by the PG/PPO update from config.rl.temperature"),
    ({"rl.loss_kwargs.kl_in_loss_beta": 0.1}, "config.rl.loss_kwargs.kl_in_loss_beta: set by"),
    ({"rl.advantage_kwargs.lam": 0.9},  # a gae option on the default rloo: a TypeError at
     # the first iteration, after the base and the samples
     "config.rl.advantage_kwargs: advantage estimator 'rloo' has no option(s) ['lam']; it takes "
     "none"),
    ({"rl.advantage_kwargs.gamma": 0.9}, "config.rl.advantage_kwargs.gamma: set by the trainer"),
    ({"rl.rewards.ast_match": ml_collections.ConfigDict({"weight": 1.0, "normalise": False})},
     "config.rl.rewards.ast_match: reward 'ast_match' has no option(s) ['normalise']"),
    ({"eval.tasks": "/no/such/tasks.jsonl"},
     "config.eval.tasks='/no/such/tasks.jsonl': no such file"),
    ({"eval.tasks": "mbpp"}, "config.eval.tasks='mbpp' needs config.eval.path"),
])
def test_bad_names_fail_in_the_preflight_naming_the_key(changes, message, tmp_path):
    with pytest.raises(ConfigError) as e:
        preflight(_config(**changes), str(tmp_path / "run"))
    assert message in str(e.value)
    assert not (tmp_path / "run").exists()


OWN_LOSSES = textwrap.dedent('''
    from rlfb_jax.losses import get_loss, register_loss

    @register_loss("test_pg_scaled", overwrite=True)
    def scaled(params, batch, *, model, scale=1.0, value_slot=None, temperature=1.0,
               **hparams):
        loss, metrics = get_loss("pg")(params, batch, model=model, value_slot=value_slot,
                                       temperature=temperature, **hparams)
        return scale * loss, metrics

    @register_loss("test_pg_bare", overwrite=True)
    def bare(params, batch, *, model, scale=1.0):
        return scale, {}
''')


def test_a_loss_of_ones_own_is_checked_against_what_the_update_passes(tmp_path):
    (tmp_path / "own_rl_losses.py").write_text(OWN_LOSSES)
    base = {"algo": "pg", "imports": str(tmp_path / "own_rl_losses.py"),
            "rl.loss_kwargs": synthetic_rl_study.default_config("pg").rl.loss_kwargs}
    good = _config(**base, **{"rl.loss": "test_pg_scaled"})
    import_modules(good)
    good.rl.loss_kwargs.scale = 2.0
    preflight(good, str(tmp_path / "run"))  # the documented signature: accepted

    bare = _config(**base, **{"rl.loss": "test_pg_bare"})
    bare.rl.loss_kwargs = {"scale": 2.0}
    with pytest.raises(ConfigError) as e:
        preflight(bare, str(tmp_path / "run"))
    assert ("config.rl.loss='test_pg_bare': the PG/PPO update passes every loss "
            "['temperature', 'value_slot']") in str(e.value)
