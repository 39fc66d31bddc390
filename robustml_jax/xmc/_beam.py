"""Beam search over a label tree with any node scorer (the tree model's level rankers here,
ELIAS's learned scorer later).

A tree has T levels; level t has P_t parents with B_t children each (P_{t+1} = P_t B_t, P_0 = 1),
and the children of the last level are the leaf slots (labels, through a slot -> label map the
caller keeps). The scorer gives log-probabilities of the children of some parents; a path's
log score is the sum down the path, so its score exp(.) is a product of factors in [0, 1].

At every level the beam's children are scored and ``lax.top_k`` keeps the best ``beam``
(the whole level when it has fewer nodes: a beam wider than a level is exact there); the last
level keeps ``topk`` slots. The search also returns the largest pruned path score: every slot
it did not return scores at most that (a path score never exceeds its ancestors'), the bound
the ensemble's beam approximation uses.

Everything here is per query, pure and jittable; the caller vmaps and jits.

Shapes: b parents in the beam, B_t children per parent at level t, S = P_T B_T leaf slots,
K = topk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["BeamOutput", "ScoreFn", "SlotBeam", "all_paths", "beam_search_slots"]

ScoreFn = Callable[[int, jax.Array, Any], jax.Array]
"""``score_fn(level, parents, query) -> [b, B_level]`` log-probabilities of the children of
``parents`` int32 [b] at level ``level`` (a Python int); -inf marks a child that does not exist.
"""


class BeamOutput(NamedTuple):
    """Top-k labels [M, K] (-1 = none), their path scores [M, K] in [0, 1], and ``tail_bound``
    [M]: the largest path score of anything pruned, which bounds every unreturned label."""

    labels: Any
    scores: Any
    tail_bound: Any


class SlotBeam(NamedTuple):
    """One query's beam result over leaf slots.

    Attributes:
      slots: int32 [K] leaf slots, best first (meaningless where ``log_scores`` is -inf).
      log_scores: float32 [K] log path scores (-inf = no slot).
      log_tail: float32 [] log of the largest pruned path score (-inf when nothing was pruned).
    """

    slots: jax.Array
    log_scores: jax.Array
    log_tail: jax.Array


def beam_search_slots(
    score_fn: ScoreFn,
    query: Any,
    *,
    branching: Sequence[int],
    beam: int,
    topk: int,
) -> SlotBeam:
    """Beam search for one query.

    Args:
      score_fn: the node scorer (:data:`ScoreFn`).
      query: whatever ``score_fn`` reads (a pytree of arrays for one query).
      branching: B_t of every level, static.
      beam: beam width (>= 1), static; wider than a level means the whole level.
      topk: K slots returned, static; slots beyond those the beam reaches come back with log
        score -inf.

    Returns:
      :class:`SlotBeam`.
    """
    if beam < 1 or topk < 1:
        raise ValueError(f"beam and topk must be >= 1, got {beam}, {topk}")
    parents = jnp.zeros((1,), jnp.int32)
    logp = jnp.zeros((1,), jnp.float32)
    pruned = jnp.float32(-jnp.inf)
    last = len(branching) - 1
    for t, nb in enumerate(branching):
        lp = logp[:, None] + score_fn(t, parents, query)
        child = (parents[:, None] * nb + jnp.arange(nb)[None, :]).reshape(-1)
        flat = lp.reshape(-1)
        k = min(topk if t == last else beam, flat.shape[0])
        kk = min(k + 1, flat.shape[0])
        top, idx = jax.lax.top_k(flat, kk)
        if kk > k:
            pruned = jnp.maximum(pruned, top[k])
        parents, logp = child[idx[:k]], top[:k]
    if parents.shape[0] < topk:  # fewer slots reachable than asked: pad with "no slot"
        pad = topk - parents.shape[0]
        parents = jnp.concatenate([parents, jnp.zeros((pad,), parents.dtype)])
        logp = jnp.concatenate([logp, jnp.full((pad,), -jnp.inf, logp.dtype)])
    return SlotBeam(parents, logp, pruned)


def all_paths(score_fn: ScoreFn, query: Any, *, num_parents: Sequence[int]) -> jax.Array:
    """Exact log path scores of every leaf slot (no beam) for one query.

    Args:
      score_fn: the node scorer.
      query: one query.
      num_parents: P_t of every level, static.

    Returns:
      float32 [S] log path score of each slot (-inf for slots that do not exist).
    """
    logp = jnp.zeros((1,), jnp.float32)
    for t, p in enumerate(num_parents):
        logp = (logp[:, None] + score_fn(t, jnp.arange(p), query)).reshape(-1)
    return logp
