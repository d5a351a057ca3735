"""Every experiment config takes its documented args and refuses a mistyped one (a
``:smok`` must not silently start a full-size run)."""

import glob
import importlib
import inspect
import os

import pytest

NAMES = sorted(os.path.basename(f)[:-3] for f in glob.glob(
    os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments", "*.py"))
    if not f.endswith("__init__.py"))


@pytest.mark.parametrize("name", NAMES)
def test_experiment_args(name, tmp_path):
    """... and each config passes main's preflight (every optimizer, model, loss and mesh it
    names is built once), as `python -m rlfb_jax.main` would check it before any work."""
    from rlfb_jax.main import preflight

    module = importlib.import_module(f"experiments.{name}")
    get_config = module.get_config
    if not inspect.signature(get_config).parameters:
        preflight(get_config(), str(tmp_path / "run"))  # no variants
        return
    args = list(getattr(module, "ARGS", ()))
    if name not in ("synthetic_ppo_ablation", "synthetic_families"):  # the arg names the
        # ablation / the family: there is no default
        args.append("")
    for arg in {*args, "smoke"}:
        preflight(get_config(arg), str(tmp_path / "run"))
    with pytest.raises(ValueError, match=name):
        get_config("smok")
