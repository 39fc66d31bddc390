"""Evaluation of a (distilled or real) training set: train fresh networks on it, test them.

The protocol of MTT/TESLA's ``evaluate_synset``: SGD with momentum 0.9, weight decay 5e-4,
step size ``lr`` (the learned alpha for distilled sets) divided by 10 at half of training, batch
``min(B, S)``, DSA augmentation on every batch, cross-entropy against the (one-hot or soft)
labels. Several networks (seeds) are trained in one compiled ``lax.map``; the whole training run
is one ``lax.scan``, which is why this does not go through the core train loop: the sets are
tiny (S <= a few thousand), a run takes seconds, and nothing needs checkpointing.

Shapes: R = networks (seeds), S = training examples, C = classes, T = test examples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from robustml_jax.distill._matching import minibatch_indices, soft_cross_entropy

__all__ = ["accuracy", "train_networks"]


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

    Args:
      keys: [R] PRNG keys (initialisation, batch order, augmentation).
      x: training images [S, H, W, Ch].
      y: labels [S, C] (probabilities).
      lr: scalar step size.
      init_fn: ``init_fn(key) -> params``.
      apply_fn: ``apply_fn(params, x) -> logits``.
      num_epochs: passes over the set; the step size drops 10x at half.
      batch_size: examples per step (clipped to S).

    Returns:
      Parameters with a leading axis R.
    """
    num_examples = x.shape[0]
    batch = min(batch_size, num_examples)
    per_epoch = num_examples // batch
    num_steps = num_epochs * per_epoch

    def train_one(key):
        init_key, batch_key, aug_key = jax.random.split(key, 3)
        params = init_fn(init_key)
        schedule = optax.piecewise_constant_schedule(1.0, {num_steps // 2: 0.1})
        tx = optax.chain(
            optax.add_decayed_weights(weight_decay),
            optax.sgd(lambda step: lr * schedule(step), momentum=momentum),
        )
        idx = minibatch_indices(batch_key, num_examples, num_steps, batch)

        def step(carry, inputs):
            params, opt_state = carry
            i, i_b = inputs

            def loss(params):
                xb = x[i_b]
                if augment_fn is not None:
                    xb = augment_fn(jax.random.fold_in(aug_key, i), xb)
                return soft_cross_entropy(apply_fn(params, xb), y[i_b])

            grads = jax.grad(loss)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, _), _ = lax.scan(step, (params, tx.init(params)), (jnp.arange(num_steps), idx))
        return params

    # lax.map, not vmap: vmapping a conv over R kernels makes a grouped convolution, which XLA's
    # CPU backend runs an order of magnitude slower than R plain ones.
    return lax.map(train_one, keys)


def accuracy(
    params: Any,
    x: np.ndarray,
    labels: np.ndarray,
    *,
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    chunk: int = 1000,
) -> np.ndarray:
    """Test accuracy of each of R networks (params with a leading axis R).

    Args:
      x: test images [T, H, W, Ch] (numpy, evaluated in chunks).
      labels: int [T].

    Returns:
      float [R] accuracies.
    """
    predict = jax.jit(lambda ps, xb: lax.map(lambda p: jnp.argmax(apply_fn(p, xb), -1), ps))
    correct = 0
    for i in range(0, len(labels), chunk):
        pred = np.asarray(predict(params, jnp.asarray(x[i : i + chunk])))
        correct = correct + (pred == labels[None, i : i + chunk]).sum(axis=1)
    return correct / len(labels)
