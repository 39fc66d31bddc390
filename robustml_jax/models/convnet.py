"""The ConvNet of the dataset-distillation literature (DC, DSA, MTT, TESLA), in Flax Linen.

``depth`` blocks of Conv(3x3, ``width``) - InstanceNorm - ReLU - AvgPool(2), then a linear
classifier. ``ConvNetD4`` is the depth-4 variant the papers use for 64x64 images
(Tiny-ImageNet, ImageNet-1K at 64x64).

Shapes: B = batch, H, W = image size, C = channels, K = classes.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["ConvNet", "ConvNetD4"]


class ConvNet(nn.Module):
    """ConvNet-``depth`` with instance norm and average pooling.

    Attributes:
      num_classes: K.
      width: channels of every conv block (128 in the papers).
      depth: number of conv blocks (3 for 32x32, 4 for 64x64).
      norm: ``"instance"`` (the papers' default) or ``"none"``.
    """

    num_classes: int = 10
    width: int = 128
    depth: int = 3
    norm: str = "instance"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps images [B, H, W, C] (floats) to logits [B, K]."""
        if x.ndim != 4:
            raise ValueError(f"ConvNet expects images [B, H, W, C], got shape {x.shape}")
        if self.norm not in ("instance", "none"):
            raise ValueError(f"norm must be 'instance' or 'none', got {self.norm!r}")
        for _ in range(self.depth):
            x = nn.Conv(self.width, (3, 3), padding=1)(x)
            if self.norm == "instance":
                # Instance norm = group norm with one channel per group (affine, like
                # torch's GroupNorm(C, C) used by the reference ConvNet).
                x = nn.GroupNorm(num_groups=None, group_size=1, epsilon=1e-5)(x)
            x = nn.relu(x)
            x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_classes)(x).astype(jnp.result_type(x))


ConvNetD4 = functools.partial(ConvNet, depth=4)
ConvNetD4.__doc__ = "ConvNet with depth 4 (for 64x64 images)."
