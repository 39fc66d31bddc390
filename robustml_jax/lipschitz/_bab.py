"""Branch-and-bound over unstable ReLUs with a fixed-capacity domain buffer (paper Sec. 3.4).

A domain is a split vector s [S] over all hidden neurons: +1 fixes z >= 0 (delta = 1), -1 fixes
z <= 0 (delta = 0), 0 leaves the neuron free. Every iteration takes the ``batch`` open domains
with the largest bounds, splits each on its highest-scoring free unstable neuron and bounds both
children in one vmapped call. A child's bound is capped by its parent's (the child's region is a
subset), so the global bound, the max over open domains, never increases. Children whose
constraints are contradictory are dropped. Everything is ``lax.fori_loop`` over fixed-size
arrays, so BaB stays jittable and vmappable over x0.

Shapes: S = hidden neurons, D = capacity = 1 + steps * batch, B = batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from robustml_jax.lipschitz._network import full_precision

__all__ = ["BaBResult", "branch_and_bound"]


class BaBResult(NamedTuple):
    """Attributes: bound (scalar), history [steps + 1] (bound after each iteration), num_open."""

    bound: jax.Array
    history: jax.Array
    num_open: jax.Array


@full_precision
def branch_and_bound(
    bound_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    *,
    num_neurons: int,
    steps: int,
    batch: int,
    dtype=jnp.float32,
) -> BaBResult:
    """Runs ``steps`` BaB iterations.

    Args:
      bound_fn: ``bound_fn(split [S] int8) -> (bound scalar, score [S])``; bound is -inf for an
        infeasible domain, score is -inf for neurons that cannot be split.
      num_neurons: S.
      steps: iterations.
      batch: B, domains split per iteration.

    Returns:
      :class:`BaBResult`.
    """
    cap = 1 + steps * batch
    splits = jnp.zeros((cap, num_neurons), jnp.int8)
    batched = jax.vmap(bound_fn)
    k = min(batch, cap)
    # The root goes through the same batched call as the children: one trace, one compile.
    root_bound, root_score = jax.tree.map(
        lambda a: a[0], batched(jnp.zeros((2 * k, num_neurons), jnp.int8))
    )
    bounds = jnp.full((cap,), -jnp.inf, dtype).at[0].set(root_bound)
    scores = jnp.full((cap, num_neurons), -jnp.inf, dtype).at[0].set(root_score)
    history = jnp.zeros((steps + 1,), dtype).at[0].set(root_bound)

    def body(t, state):
        splits, bounds, scores, history = state
        parent_bound, idx = jax.lax.top_k(bounds, k)
        parent_split, parent_score = splits[idx], scores[idx]
        neuron = jnp.argmax(parent_score, axis=-1)
        can_split = jnp.isfinite(parent_bound) & (parent_score.max(-1) > -jnp.inf)
        rows = jnp.arange(k)
        minus = parent_split.at[rows, neuron].set(-1)
        plus = parent_split.at[rows, neuron].set(1)
        child_bound, child_score = batched(jnp.concatenate([minus, plus]))
        child_bound = jnp.minimum(child_bound, jnp.concatenate([parent_bound, parent_bound]))
        mb, pb = child_bound[:k], child_bound[k:]
        ms, ps = child_score[:k], child_score[k:]
        # A parent that cannot be split stays as it is; its "plus" slot stays empty.
        mb = jnp.where(can_split, mb, parent_bound)
        ms = jnp.where(can_split[:, None], ms, parent_score)
        minus = jnp.where(can_split[:, None], minus, parent_split)
        pb = jnp.where(can_split, pb, -jnp.inf)
        new = 1 + t * k + rows
        splits = splits.at[idx].set(minus).at[new].set(plus)
        bounds = bounds.at[idx].set(mb).at[new].set(pb)
        scores = scores.at[idx].set(ms).at[new].set(ps)
        history = history.at[t + 1].set(bounds.max())
        return splits, bounds, scores, history

    splits, bounds, scores, history = jax.lax.fori_loop(
        0, steps, body, (splits, bounds, scores, history)
    )
    return BaBResult(bounds.max(), history, jnp.isfinite(bounds).sum())
