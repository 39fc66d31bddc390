"""Stacking models for batched evaluation.

Per-example correctness of stacked models on several test sets is
:func:`robustml_jax.core.metrics.stacked_correct`; this module only builds the stacked pytree.

Shapes: M = models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["stack_params"]


def stack_params(params: Sequence[Any]) -> Any:
    """Stacks a list of M same-structure pytrees into one pytree with leading axis M."""
    if not params:
        raise ValueError("need at least one parameter tree to stack")
    return jax.tree.map(lambda *xs: jnp.stack(xs), *params)
