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
def test_experiment_args(name):
    get_config = importlib.import_module(f"experiments.{name}").get_config
    if not inspect.signature(get_config).parameters:
        get_config()  # no variants
        return
    if name not in ("synthetic_ppo_ablation", "synthetic_families"):  # the arg names the
        # ablation / the family: there is no default
        get_config("")
    get_config("smoke")
    with pytest.raises(ValueError, match=name):
        get_config("smok")
