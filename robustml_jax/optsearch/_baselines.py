"""Hand-designed optimizers ENOS compares with, as optax transforms.

Adam, SGD with momentum 0.9 and RMSProp are optax's own. AddSign and PowSign (Bello et al.,
2017, "Neural optimizer search with reinforcement learning") are not in optax; they are built
here from optax's ``ema``: with m the moving average of g (decay 0.9),
AddSign: ``-lr * (1 + sign(g) sign(m)) g``, PowSign: ``-lr * exp(sign(g) sign(m)) g``.
In ENOS's language AddSign is ``mul(add(one, mul(sign_g, sign_m1)), g)`` (sign(m1) = sign(m)
since ENOS's momentum sum is 10 m).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

__all__ = ["BASELINES", "addsign", "powsign"]


def _sign_rule(
    learning_rate, combine: Callable[[jax.Array], jax.Array], decay: float
) -> optax.GradientTransformation:
    ema = optax.ema(decay, debias=False)

    def update_fn(updates, state, params=None):
        del params
        m, state = ema.update(updates, state)
        out = jax.tree.map(
            lambda g, mi: -learning_rate * combine(jnp.sign(g) * jnp.sign(mi)) * g, updates, m
        )
        return out, state

    return optax.GradientTransformation(ema.init, update_fn)


def addsign(learning_rate, *, decay: float = 0.9) -> optax.GradientTransformation:
    """AddSign: update = -lr (1 + sign(g) sign(m)) g, m = EMA_0.9(g)."""
    return _sign_rule(learning_rate, lambda s: 1.0 + s, decay)


def powsign(learning_rate, *, decay: float = 0.9) -> optax.GradientTransformation:
    """PowSign (base e): update = -lr exp(sign(g) sign(m)) g, m = EMA_0.9(g)."""
    return _sign_rule(learning_rate, jnp.exp, decay)


BASELINES: dict[str, Callable[[jax.Array], optax.GradientTransformation]] = {
    "adam": lambda lr: optax.adam(lr),
    "sgd_momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "rmsprop": lambda lr: optax.rmsprop(lr),
    "addsign": addsign,
    "powsign": powsign,
}
