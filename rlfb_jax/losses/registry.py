"""The loss registry. A loss is ``loss_fn(params, batch, *, model, **hparams) -> (loss, metrics)``:
``params`` is the dict of trainable slots of the TrainState, ``batch`` a dict of arrays,
``model`` the static `LanguageModel`; ``metrics`` is a flat dict of scalars with slash names."""

import inspect

from rlfb_jax.registry import Registry

LOSSES = Registry("loss")
register_loss = LOSSES.register
get_loss = LOSSES.get


def loss_hparams(fn) -> list[str] | None:
    """The hyperparameter names loss ``fn`` takes, or None if it takes any (``**hparams``).

    A loss whose ``**hparams`` all go on to one function says so by setting
    ``fn.hparams_to = that_function``: then the names that function takes count as the
    loss's own (PG/PPO's losses pass theirs on to one shared helper)."""
    params = list(inspect.signature(fn).parameters.values())[2:]  # after params, batch
    known = [p.name for p in params
             if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "model"]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        target = getattr(fn, "hparams_to", None)
        if target is None:
            return None
        known += [p.name for p in inspect.signature(target).parameters.values()
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return known


def check_loss(name: str, hparams, where: str = "config.loss") -> None:
    """Raises ValueError when no loss `name` is registered or it takes no hyperparameter of
    one of the names in `hparams` (so a typo fails before any work, not at the first step)."""
    if name not in LOSSES:
        raise ValueError(f"{where}: unknown loss {name!r} (registered: {', '.join(LOSSES)}); "
                         "a loss of your own needs its module in config.imports")
    known = loss_hparams(LOSSES.get(name))
    if known is None:
        return
    unknown = sorted(set(hparams) - set(known))
    if unknown:
        raise ValueError(f"{where}: loss {name!r} has no hyperparameter(s) {unknown}; it "
                         f"takes {sorted(set(known)) or 'none'}")
