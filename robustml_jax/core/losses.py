"""Classification losses every paper shares (pure, jittable; mean over the batch).

Shapes: B examples, C classes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

__all__ = ["classification_loss", "soft_cross_entropy"]


def soft_cross_entropy(
    logits: jax.Array, labels: jax.Array, *, label_smoothing: float = 0.0
) -> jax.Array:
    """Mean cross-entropy against probability targets.

    Args:
      logits: [B, C].
      labels: [B, C] probabilities (one-hot or soft).
      label_smoothing: eps; the target becomes ``(1 - eps) * labels + eps / C``.

    Returns:
      Scalar mean over the batch of ``-sum_c target * log_softmax(logits)``.
    """
    if logits.shape != labels.shape:
        raise ValueError(f"logits {logits.shape} and labels {labels.shape} must have one shape")
    if label_smoothing:
        labels = optax.smooth_labels(labels, label_smoothing)
    return -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(logits, axis=-1), axis=-1))


def classification_loss(
    logits: jax.Array, labels: jax.Array, *, label_smoothing: float = 0.0
) -> tuple[jax.Array, jax.Array]:
    """Cross-entropy and accuracy for integer or probability labels.

    Args:
      logits: [B, C].
      labels: int [B] class ids, or float [B, C] probabilities.
      label_smoothing: as in :func:`soft_cross_entropy`.

    Returns:
      (mean loss, mean accuracy against the integer label or the target's argmax).
    """
    if labels.ndim == logits.ndim - 1:
        target = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
        label_ids = labels
    else:
        target = labels
        label_ids = jnp.argmax(labels, -1)
    if label_smoothing:
        loss = soft_cross_entropy(logits, target, label_smoothing=label_smoothing)
    elif labels.ndim == logits.ndim - 1:
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    else:
        loss = soft_cross_entropy(logits, target)
    return loss, jnp.mean(jnp.argmax(logits, -1) == label_ids)
