"""Algorithms: one module per algorithm, each registering ``run(config, workdir) -> summary``.

`rlfb_jax.main` looks the algorithm up by ``config.algo``.
"""

from rlfb_jax.registry import Registry

ALGOS = Registry("algorithm")
register_algo = ALGOS.register


def get_algo(name: str):
    # Import lazily so that `python -m rlfb_jax.main` only pays for what it runs.
    import importlib

    if name not in ALGOS:
        try:
            importlib.import_module(f"rlfb_jax.algos.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"rlfb_jax.algos.{name}":
                raise
    return ALGOS.get(name)


__all__ = ["ALGOS", "get_algo", "register_algo"]
