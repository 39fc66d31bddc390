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

import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from robustml_jax.lipschitz._network import full_precision

__all__ = ["BaBResult", "BudgetedBaB", "branch_and_bound", "budgeted_branch_and_bound"]


class BaBResult(NamedTuple):
    """Attributes: bound (scalar), history [steps + 1] (bound after each iteration), num_open."""

    bound: jax.Array
    history: jax.Array
    num_open: jax.Array


class _State(NamedTuple):
    splits: jax.Array  # [D, S] int8
    bounds: jax.Array  # [D]
    scores: jax.Array  # [D, S]
    used: jax.Array  # int scalar: slots filled so far


def _init(batched, num_neurons, cap, k, dtype) -> _State:
    # The root goes through the same batched call as the children: one trace, one compile.
    # The barrier keeps XLA from constant-folding everything that depends only on the all-zero
    # root splits (seconds to minutes of compile time on 784-input nets).
    zeros = jax.lax.optimization_barrier(jnp.zeros((2 * k, num_neurons), jnp.int8))
    root_bound, root_score = jax.tree.map(lambda a: a[0], batched(zeros))
    return _State(
        jnp.zeros((cap, num_neurons), jnp.int8),
        jnp.full((cap,), -jnp.inf, dtype).at[0].set(root_bound),
        jnp.full((cap, num_neurons), -jnp.inf, dtype).at[0].set(root_score),
        jnp.ones((), jnp.int32),
    )


def _step(batched, k, state: _State) -> _State:
    """Splits the k open domains with the largest bounds (if the buffer has room for them)."""
    splits, bounds, scores, used = state
    cap = bounds.shape[0]
    parent_bound, idx = jax.lax.top_k(bounds, k)
    parent_split, parent_score = splits[idx], scores[idx]
    neuron = jnp.argmax(parent_score, axis=-1)
    rows = jnp.arange(k)
    room = used + k <= cap
    can_split = jnp.isfinite(parent_bound) & (parent_score.max(-1) > -jnp.inf) & room
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
    new = jnp.minimum(used + rows, cap - 1)
    # Slots are only written when there is room (otherwise the step changes nothing).
    keep_new = room
    splits = splits.at[idx].set(minus)
    bounds = bounds.at[idx].set(mb)
    scores = scores.at[idx].set(ms)
    splits = splits.at[new].set(jnp.where(keep_new, plus, splits[new]))
    bounds = bounds.at[new].set(jnp.where(keep_new, pb, bounds[new]))
    scores = scores.at[new].set(jnp.where(keep_new, ps, scores[new]))
    return _State(splits, bounds, scores, jnp.where(room, used + k, used))


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
    batched = jax.vmap(bound_fn)
    k = min(batch, cap)
    state = _init(batched, num_neurons, cap, k, dtype)
    history = jnp.zeros((steps + 1,), dtype).at[0].set(state.bounds.max())

    def body(t, carry):
        state, history = carry
        state = _step(batched, k, state)
        return state, history.at[t + 1].set(state.bounds.max())

    state, history = jax.lax.fori_loop(0, steps, body, (state, history))
    return BaBResult(state.bounds.max(), history, jnp.isfinite(state.bounds).sum())


class BudgetedBaB(NamedTuple):
    """Result of :func:`budgeted_branch_and_bound` (host values).

    Attributes: bound (float), history (list of the bound after each chunk), domains (slots
    used), steps (iterations run), seconds (wall time, compilation included), stopped ("time",
    "domains" or "done": no open domain can be split).
    """

    bound: float
    history: list
    domains: int
    steps: int
    seconds: float
    stopped: str


def budgeted_branch_and_bound(
    bound_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    *,
    num_neurons: int,
    batch: int = 128,
    max_domains: int = 200_000,
    time_budget_s: float = 60.0,
    chunk_steps: int = 4,
    dtype=jnp.float32,
) -> BudgetedBaB:
    """BaB under a wall-time and a domain budget, as the official code runs it.

    A host loop calls a jitted chunk of ``chunk_steps`` iterations (each splits ``batch``
    domains) until ``time_budget_s`` is spent (checked between chunks, so it can overrun by one
    chunk), the buffer of ``max_domains`` domains is full, or no open domain can be split.
    Not jittable itself (it reads the clock); the bound is sound whenever it stops.

    Args:
      bound_fn: as in :func:`branch_and_bound` (traced once).
      num_neurons: S.
      batch: domains split per iteration (the official code: 128).
      max_domains: buffer capacity (the official code: up to 200,000 domains); the buffer
        holds [max_domains, S] int8 splits and float scores, so size it to the memory.
      time_budget_s: wall-time budget (the official code: 60 s per class).
      chunk_steps: iterations per jitted call between clock checks.

    Returns:
      :class:`BudgetedBaB`.
    """
    if batch < 1 or max_domains < 1 + 2 * batch or chunk_steps < 1:
        raise ValueError(
            f"need batch >= 1, max_domains >= 1 + 2 * batch, chunk_steps >= 1; got {batch}, "
            f"{max_domains}, {chunk_steps}"
        )
    start = time.perf_counter()
    batched = jax.vmap(full_precision(bound_fn))
    k = batch
    init = jax.jit(lambda: _init(batched, num_neurons, max_domains, k, dtype))

    @jax.jit
    def chunk(state):
        return jax.lax.fori_loop(0, chunk_steps, lambda _, st: _step(batched, k, st), state)

    state = init()
    history = [float(state.bounds.max())]
    steps, stopped = 0, "time"
    while time.perf_counter() - start < time_budget_s:
        if int(state.used) + k > max_domains:
            stopped = "domains"
            break
        before = np.asarray(state.bounds)
        state = chunk(state)
        steps += chunk_steps
        history.append(float(state.bounds.max()))
        if np.array_equal(before, np.asarray(state.bounds)) and int(state.used) + k <= max_domains:
            stopped = "done"
            break
    return BudgetedBaB(
        history[-1], history, int(state.used), steps, time.perf_counter() - start, stopped
    )
