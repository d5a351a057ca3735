"""rlfb_jax: train code-generating language models from execution feedback."""
