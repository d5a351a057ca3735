"""The base model: a finished base directory trained on other data is refused by name."""

import json

import pytest


def test_a_base_trained_on_other_data_is_refused(tmp_path):
    """A finished base of the default world (config.json from an older run, without the
    newer data keys) serves the LEVER experiment, which only judges programs differently,
    but not its variants whose base sees other references or prompts: those are refused by
    name. A directory without a finished run passes (it will be trained)."""
    from experiments import synthetic_lever
    from rlfb_jax.algos.base_model import check_base_data

    lever = synthetic_lever.get_config("smoke")
    check_base_data(lever.base, str(tmp_path))  # nothing there yet
    saved = {k: v for k, v in lever.base.data.to_dict().items()
             if k not in ("example_outputs", "code_variants", "examples_in_tests")}
    (tmp_path / "config.json").write_text(json.dumps({"data": saved}))
    varied = synthetic_lever.get_config("variants,smoke").base
    check_base_data(varied, str(tmp_path))  # not finished
    (tmp_path / "summary.json").write_text("{}")
    check_base_data(lever.base, str(tmp_path))
    check_base_data(synthetic_lever.get_config("loose,smoke").base, str(tmp_path))
    with pytest.raises(ValueError, match=r"data.code_variants: False there, True here"):
        check_base_data(varied, str(tmp_path))
    with pytest.raises(ValueError, match=r"data.example_outputs: True there, False here"):
        check_base_data(synthetic_lever.get_config("inputs,smoke").base, str(tmp_path))
    with pytest.raises(ValueError, match="unknown argument"):
        synthetic_lever.get_config("smoke,fast")
