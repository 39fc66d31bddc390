"""A small CNN for 28x28 / 32x32 images (the core's worked example and quick baselines).

Shapes: B = batch, H, W = image size, C = channels, K = classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax


class SmallCNN(nn.Module):
    """Conv(3x3)-ReLU-AvgPool blocks, then a dense classifier.

    Attributes:
      num_classes: K.
      features: channels of each conv block.
      hidden: width of the dense layer before the classifier.
    """

    num_classes: int = 10
    features: Sequence[int] = (16, 32)
    hidden: int = 64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps images [B, H, W, C] (floats) to logits [B, K]."""
        if x.ndim != 4:
            raise ValueError(f"SmallCNN expects images [B, H, W, C], got shape {x.shape}")
        for f in self.features:
            x = nn.relu(nn.Conv(f, (3, 3))(x))
            x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.num_classes)(x)
