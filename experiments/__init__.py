"""Experiment configs: ``python -m rlfb_jax.main --config experiments/NAME.py[:ARG]``."""


def check_arg(name: str, arg: str, known=("", "smoke")) -> str:
    """`arg` if it is one of `known`, else a ValueError naming the experiment and the choices
    (a mistyped ``:smok`` must not silently start the full-size run)."""
    if arg not in known:
        shown = ", ".join(repr(k) if k else "'' (full size)" for k in known)
        raise ValueError(f"{name}: unknown argument {arg!r}; expected one of {shown}")
    return arg
