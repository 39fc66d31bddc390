"""Adversarial states for AlphaZero-like Go / NoGo agents (paper 3).

Not implemented yet: so far this package only registers the paper's Go game records with the
dataset registry (``robustml_jax.go_attack._datasets``).
"""

__all__: list[str] = []
