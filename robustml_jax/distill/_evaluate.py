"""Evaluation of a (distilled or real) training set: train fresh networks on it.

The protocol of MTT/TESLA's ``evaluate_synset``: SGD with momentum 0.9, weight decay 5e-4,
step size ``lr`` (the learned alpha for distilled sets) divided by 10 at half of training, batch
``min(B, S)``, DSA augmentation on every batch, cross-entropy against the (one-hot or soft)
labels. The networks (seeds) are trained by :func:`robustml_jax.core.train.train_many`: each
whole run is one ``lax.scan`` and the runs are ``lax.map``-ped inside one compiled program (the
sets are tiny, a run takes seconds, nothing needs checkpointing). Test accuracy of the trained
networks is :func:`robustml_jax.core.metrics.stacked_accuracy`.

Shapes: R = networks (seeds), S = training examples, C = classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from robustml_jax.core import train
from robustml_jax.core.losses import soft_cross_entropy
from robustml_jax.distill._matching import minibatch_indices

__all__ = ["train_networks"]


def train_networks(
    keys: jax.Array,
    x: jax.Array,
    y: jax.Array,
    lr: jax.Array,
    *,
    init_fn: Callable[[jax.Array], Any],
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    num_epochs: int,
    batch_size: int,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    augment_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> Any:
    """Trains one fresh network per key on (x, y); pure and jittable.

    Each key is split into (initialisation, batch order, augmentation) keys as in
    :func:`robustml_jax.core.train.scan_train`; step i augments with ``fold_in(aug_key, i)``.

    Args:
      keys: [R] PRNG keys.
      x: training images [S, H, W, Ch].
      y: labels [S, C] (probabilities).
      lr: scalar step size.
      init_fn: ``init_fn(key) -> params``.
      apply_fn: ``apply_fn(params, x) -> logits [B, C]``.
      num_epochs: passes over the set; the step size drops 10x at half.
      batch_size: examples per step (clipped to S).
      momentum, weight_decay: of the SGD optimizer.
      augment_fn: optional ``augment_fn(key, x) -> x`` applied to every minibatch.

    Returns:
      Parameters with a leading axis R.
    """
    if jnp.ndim(y) != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x [S, ...] and y [S, C] must have one S, got {x.shape} and {y.shape}")
    if jnp.ndim(lr) != 0:
        raise ValueError(f"lr must be a scalar, got shape {jnp.shape(lr)}")
    num_examples = x.shape[0]
    batch = min(batch_size, num_examples)
    num_steps = num_epochs * (num_examples // batch)

    def make_tx(_):
        schedule = optax.piecewise_constant_schedule(1.0, {num_steps // 2: 0.1})
        return optax.chain(
            optax.add_decayed_weights(weight_decay),
            optax.sgd(lambda step: lr * schedule(step), momentum=momentum),
        )

    def loss_fn(params, i_b, key, _):
        xb = x[i_b]
        if augment_fn is not None:
            xb = augment_fn(key, xb)
        return soft_cross_entropy(apply_fn(params, xb), y[i_b])

    params, _ = train.train_many(
        keys,
        lift="map",  # vmapping a conv over R kernels is a grouped conv, slow on XLA:CPU
        init_fn=lambda key, _: init_fn(key),
        loss_fn=loss_fn,
        make_tx=make_tx,
        num_steps=num_steps,
        step_inputs_fn=lambda key, _: minibatch_indices(
            key, num_examples=num_examples, num_steps=num_steps, batch_size=batch
        ),
    )
    return params
