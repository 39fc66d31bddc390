"""Labels of the synthetic set: hard, TESLA's soft label assignment (SLA), or learned.

Shapes: S = synthetic examples, C = classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["LABEL_MODES", "init_label_logits", "learned_labels", "soft_label_assignment"]

LABEL_MODES = ("hard", "sla", "learned")


def soft_label_assignment(
    expert_params: Any,
    syn_x: jax.Array,
    *,
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    temperature: float = 1.0,
    chunk_size: int = 0,
) -> jax.Array:
    """TESLA's SLA (Sec. 4.3): the expert's softmax on the synthetic images as labels.

    TESLA labels the current synthetic images with the expert at the *end* of the matched
    segment (epoch t + M), recomputed every iteration for the sampled expert. The labels are
    targets, not a path for gradients, so they are ``stop_gradient``-ed.

    Args:
      expert_params: the expert at the target epoch.
      syn_x: synthetic images [S, H, W, Ch].
      apply_fn: ``apply_fn(params, x) -> logits [S, C]`` (evaluation mode).
      temperature: softmax temperature (1 in the paper).
      chunk_size: if > 0 and S > chunk_size, the expert runs on ``chunk_size`` images at a
        time (``lax.map`` over chunks; ImageNet IPC 50 is 50,000 images), so the activation
        memory is that of one chunk.

    Returns:
      Probabilities [S, C].
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 0:
        raise ValueError(f"chunk_size must be >= 0, got {chunk_size}")
    x = jax.lax.stop_gradient(syn_x)
    num = x.shape[0]
    if chunk_size and num > chunk_size:
        pad = -num % chunk_size
        xp = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
        chunks = xp.reshape(-1, chunk_size, *x.shape[1:])
        logits = jax.lax.map(lambda c: apply_fn(expert_params, c), chunks)
        logits = logits.reshape(-1, logits.shape[-1])[:num]
    else:
        logits = apply_fn(expert_params, x)
    return jax.lax.stop_gradient(jax.nn.softmax(logits / temperature, axis=-1))


def learned_labels(logits: jax.Array) -> jax.Array:
    """Learnable labels: ``softmax`` of free logits [S, C] (optimised with the images)."""
    return jax.nn.softmax(logits, axis=-1)


def init_label_logits(labels: jax.Array, *, num_classes: int, scale: float = 3.0) -> jax.Array:
    """Initial logits [S, C] for learned labels (int ``labels`` [S]): ``scale`` on the true
    class, 0 elsewhere."""
    return scale * jax.nn.one_hot(labels, num_classes)
