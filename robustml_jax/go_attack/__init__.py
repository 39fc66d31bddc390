"""Adversarial states for AlphaZero-like Go / NoGo agents (paper 3, GoAttack).

* :mod:`~robustml_jax.go_attack.nogo`: ``make_nogo(size)``, NoGo with pgx's interface.
* :mod:`~robustml_jax.go_attack.records`: SGF read/write, replay into pgx Go, SVG/PNG boards.
* :mod:`~robustml_jax.go_attack.agent`: residual policy-value-ownership net, mctx search,
  AlphaZero self-play training, checkpoints.
* :mod:`~robustml_jax.go_attack.attack`: the attack (meaningless stones, examiner/target).
* :mod:`~robustml_jax.go_attack.gtp`: a GNU Go driver over GTP.

The paper's game records are registered with the dataset registry (``_datasets``).
"""

from robustml_jax.go_attack.nogo import NoGo, NoGoState, make_nogo

__all__ = ["NoGo", "NoGoState", "make_nogo"]
