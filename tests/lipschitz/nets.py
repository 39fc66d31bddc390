"""Random dense ReLU nets shared by the Lipschitz tests."""

from __future__ import annotations

import jax
import numpy as np


def random_net(key, sizes, scale=1.0):
    """``(W [a, b], b [b])`` pairs for the layer sizes ``sizes``; W ~ N(0, scale^2 / a)."""
    keys = jax.random.split(key, 2 * len(sizes))
    return [
        (
            scale * jax.random.normal(keys[2 * i], (a, b)) / np.sqrt(a),
            0.5 * jax.random.normal(keys[2 * i + 1], (b,)),
        )
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False))
    ]
