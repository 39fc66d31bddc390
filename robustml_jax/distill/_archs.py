"""MTT's cross-architecture evaluation pool at a configurable width (Flax Linen).

MTT (Table 4) and TESLA evaluate a set distilled with ConvNet on other architectures: ResNet-18,
VGG-11 and AlexNet, in the versions of the DC/DSA code base (``utils.get_network``): instance
norm instead of batch norm for ResNet-18 and VGG-11 (no running statistics, so a network is a
pure function of its parameters), AlexNet without normalisation. ``width`` scales every layer's
channels (the reference widths are ``width=64`` for ResNet-18 / VGG-11 and ``width=128`` for
AlexNet's first layer); at CPU size the widths are divided by 4-8.

* ``ResNet18``: conv3x3 stem, 4 stages of 2 BasicBlocks (channels w, 2w, 4w, 8w; stride 1, 2,
  2, 2; a 1x1 projection shortcut where the shape changes), global average pool, linear.
  17 conv3x3 + 3 conv1x1 + 1 dense.
* ``VGG11``: configuration "A" (8 conv3x3 of w, M, 2w, M, 4w, 4w, M, 8w, 8w, M, 8w, 8w, M),
  instance norm + ReLU after every conv, max pool, linear classifier; the first conv pads
  28x28 images by 3 (to 32x32), as the reference.
* ``AlexNet``: DC's 32x32 AlexNet: conv5x5(w) - pool - conv5x5(1.5w) - pool - conv3x3(2w) -
  conv3x3(1.5w) - conv3x3(1.5w) - pool, ReLU after each conv, linear classifier.

Shapes: B = batch, H, W = image size, C = channels, K = classes.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from robustml_jax.models.convnet import ConvNet

__all__ = ["ARCHITECTURES", "AlexNet", "ResNet18", "VGG11", "make_model"]

ARCHITECTURES = ("convnet", "resnet18", "vgg11", "alexnet")


def _check(name: str, x: jax.Array) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} expects images [B, H, W, C], got shape {x.shape}")


def _instance_norm(x: jax.Array) -> jax.Array:
    return nn.GroupNorm(num_groups=None, group_size=1, epsilon=1e-5)(x)


class _BasicBlock(nn.Module):
    channels: int
    stride: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s = (self.stride, self.stride)
        y = nn.Conv(self.channels, (3, 3), strides=s, padding=1, use_bias=False)(x)
        y = nn.relu(_instance_norm(y))
        y = nn.Conv(self.channels, (3, 3), padding=1, use_bias=False)(y)
        y = _instance_norm(y)
        if self.stride != 1 or x.shape[-1] != self.channels:
            x = _instance_norm(nn.Conv(self.channels, (1, 1), strides=s, use_bias=False)(x))
        return nn.relu(y + x)


class ResNet18(nn.Module):
    """ResNet-18 (BasicBlock [2, 2, 2, 2]) with instance norm; ``width`` = first stage's
    channels (64 in the reference)."""

    num_classes: int = 10
    width: int = 64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps images [B, H, W, C] (floats) to logits [B, K]."""
        _check("ResNet18", x)
        x = nn.Conv(self.width, (3, 3), padding=1, use_bias=False)(x)
        x = nn.relu(_instance_norm(x))
        for stage, stride in enumerate((1, 2, 2, 2)):
            for block in range(2):
                x = _BasicBlock(self.width * 2**stage, stride if block == 0 else 1)(x)
        x = x.mean(axis=(1, 2))
        return nn.Dense(self.num_classes)(x)


_VGG11 = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")


class VGG11(nn.Module):
    """VGG-11 (configuration A) with instance norm; ``width`` = first conv's channels (64 in
    the reference; the others are multiples of it)."""

    num_classes: int = 10
    width: int = 64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps images [B, H, W, C] (floats) to logits [B, K]."""
        _check("VGG11", x)
        pad = 3 if x.shape[1] == 28 else 1  # as the reference: 28x28 is padded to 32x32
        for v in _VGG11:
            if v == "M":
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            else:
                x = nn.relu(_instance_norm(nn.Conv(self.width * v, (3, 3), padding=pad)(x)))
                pad = 1
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_classes)(x)


class AlexNet(nn.Module):
    """The DC/DSA code base's AlexNet for 32x32 images (no normalisation); ``width`` = first
    conv's channels (128 in the reference: 128, 192, 256, 192, 192)."""

    num_classes: int = 10
    width: int = 128

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps images [B, H, W, C] (floats) to logits [B, K]."""
        _check("AlexNet", x)
        w = self.width
        pad = 4 if x.shape[1] == 28 else 2
        x = nn.relu(nn.Conv(w, (5, 5), padding=pad)(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(w * 3 // 2, (5, 5), padding=2)(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(w * 2, (3, 3), padding=1)(x))
        x = nn.relu(nn.Conv(w * 3 // 2, (3, 3), padding=1)(x))
        x = nn.relu(nn.Conv(w * 3 // 2, (3, 3), padding=1)(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_classes)(x)


def make_model(
    arch: str, *, num_classes: int, width: int, depth: int = 3, norm: str = "instance"
) -> nn.Module:
    """The module for ``arch`` in :data:`ARCHITECTURES`.

    ``width`` is the ConvNet's width; the other architectures get the same first-layer width
    (ResNet-18 / VGG-11: channels w..8w; AlexNet: w..2w). ``depth`` / ``norm`` apply to the
    ConvNet only.
    """
    if arch == "convnet":
        return ConvNet(num_classes=num_classes, width=width, depth=depth, norm=norm)
    if arch == "resnet18":
        return ResNet18(num_classes=num_classes, width=width)
    if arch == "vgg11":
        return VGG11(num_classes=num_classes, width=width)
    if arch == "alexnet":
        return AlexNet(num_classes=num_classes, width=width)
    raise ValueError(f"arch must be one of {ARCHITECTURES}, got {arch!r}")
