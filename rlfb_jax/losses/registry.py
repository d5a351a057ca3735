"""The loss registry. A loss is ``loss_fn(params, batch, *, model, **hparams) -> (loss, metrics)``:
``params`` is the dict of trainable slots of the TrainState, ``batch`` a dict of arrays,
``model`` the static `LanguageModel`; ``metrics`` is a flat dict of scalars with slash names."""

from rlfb_jax.registry import Registry

LOSSES = Registry("loss")
register_loss = LOSSES.register
get_loss = LOSSES.get
