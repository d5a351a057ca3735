"""The loss registry. A loss is ``loss_fn(params, batch, *, model, **hparams) -> (loss, metrics)``:
``params`` is the dict of trainable slots of the TrainState, ``batch`` a dict of arrays,
``model`` the static `LanguageModel`; ``metrics`` is a flat dict of scalars with slash names."""

import inspect

from rlfb_jax.registry import Registry

LOSSES = Registry("loss")
register_loss = LOSSES.register
get_loss = LOSSES.get


def check_loss(name: str, hparams, where: str = "config.loss") -> None:
    """Raises ValueError when no loss `name` is registered or it takes no hyperparameter of
    one of the names in `hparams` (so a typo fails before any work, not at the first step)."""
    if name not in LOSSES:
        raise ValueError(f"{where}: unknown loss {name!r} (registered: {', '.join(LOSSES)}); "
                         "a loss of your own needs its module in config.imports")
    params = list(inspect.signature(LOSSES.get(name)).parameters.values())[2:]  # after batch
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = [p.name for p in params if p.kind is not p.VAR_POSITIONAL and p.name != "model"]
    unknown = sorted(set(hparams) - set(known))
    if unknown:
        raise ValueError(f"{where}: loss {name!r} has no hyperparameter(s) {unknown}; it "
                         f"takes {known or 'none'}")
