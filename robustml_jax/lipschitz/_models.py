"""The paper's model families as Flax ``nn.Sequential`` chains (what :func:`from_flax` converts),
and their training with the shared core loop.

Shapes: B = batch, N_0 = input size (flattened), H, W, C = image size, K = outputs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from robustml_jax.core import losses, train
from robustml_jax.lipschitz._network import Flatten

__all__ = ["cnn", "mlp", "train_model"]


def mlp(hidden: Sequence[int], num_out: int) -> nn.Sequential:
    """Dense-ReLU layers of widths ``hidden``, then a dense head: [B, N_0] -> [B, K]."""
    items = []
    for w in hidden:
        items += [nn.Dense(w), nn.relu]
    return nn.Sequential([*items, nn.Dense(num_out)])


def cnn(
    features: Sequence[int],
    hidden: int,
    num_out: int,
    *,
    kernel_size: tuple[int, int] = (4, 4),
    strides: tuple[int, int] = (2, 2),
    padding: str | Sequence[tuple[int, int]] = "VALID",
) -> nn.Sequential:
    """Conv-ReLU blocks, a dense hidden layer and the head: [B, H, W, C] -> [B, K].

    The default is the experiment's small CNN (4x4 convolutions with stride 2, no padding). The
    paper's MNIST CNN (``mnist_cnn_4layer`` in the official code: 5,000 + 3,872 + 100 hidden
    ReLUs) is ``cnn((8, 8), 100, 10, strides=(1, 1))``.
    """
    items = []
    for f in features:
        items += [nn.Conv(f, kernel_size, strides=strides, padding=padding), nn.relu]
    return nn.Sequential([*items, Flatten(), nn.Dense(hidden), nn.relu, nn.Dense(num_out)])


def train_model(
    model: nn.Module,
    key: jax.Array,
    data: Mapping[str, np.ndarray],
    *,
    input_shape: Sequence[int],
    learning_rate: float,
    batch_size: int,
    num_steps: int,
    workdir: str | os.PathLike,
    regression: bool = False,
    progress: bool = False,
    mesh=None,
    desc: str = "train",
):
    """Trains ``model`` with Adam through :func:`robustml_jax.core.train.fit` (checkpointed).

    A killed run resumes from ``<workdir>/checkpoints``; a finished one only reloads its state.

    Args:
      model: a Flax module mapping [B, *input_shape] to [B, K].
      key: PRNG key; split into (init, data order, train steps).
      data: ``{"image": [N, *input_shape] float, "label": [N] int (classes) or float (targets)}``.
      input_shape: shape of one example.
      learning_rate: Adam's learning rate.
      batch_size: rows per step (capped at N).
      num_steps: Adam steps.
      workdir: the folder of checkpoints and ``metrics.jsonl``.
      regression: squared error on ``out[:, 0]`` (K = 1) instead of cross-entropy.

    Returns:
      The trained ``params`` (host arrays).
    """
    k_init, k_data, k_train = jax.random.split(key, 3)
    params = model.init(k_init, jnp.zeros((1, *input_shape)))["params"]

    def loss_fn(params, batch, rng):
        del rng  # deterministic models
        out = model.apply({"params": params}, batch["image"])
        if regression:
            return jnp.mean((out[:, 0] - batch["label"]) ** 2), {}
        loss, accuracy = losses.classification_loss(out, batch["label"])
        return loss, {"accuracy": accuracy}

    batch = min(batch_size, len(data["label"]))
    state, _ = train.fit(
        params,
        tx=optax.adam(learning_rate),
        loss_fn=loss_fn,
        batch_fn=train.epoch_batches(data, batch, k_data),
        key=k_train,
        workdir=workdir,
        num_steps=num_steps,
        log_every=max(num_steps // 4, 1),
        checkpoint_every=max(num_steps // 2, 1),
        progress=progress,
        mesh=mesh,
        desc=desc,
    )
    return jax.device_get(state.params)
