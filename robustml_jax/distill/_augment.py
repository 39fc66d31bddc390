"""Differentiable Siamese augmentation (DSA; Zhao & Bilen 2021) as MTT and TESLA use it.

A port of the reference ``DiffAugment`` / ``ParamDiffAug`` (``utils.py`` of MTT and TESLA) in
its "S" mode without a seed, which is how MTT/TESLA call it in distillation, expert training and
evaluation: one call draws one transform family uniformly from the strategy for the whole batch,
and that transform's random parameters **per image**. Ranges are the reference's: brightness
``+U(-0.5, 0.5)``, saturation ``x U(0, 2)``, contrast ``x U(0.5, 1.5)``, integer crop shifts in
``[-int(0.125 H + 0.5), +...]`` with zero fill, a ``int(0.5 H + 0.5)``-square cutout (16x16 at
32x32) centred at ``U{0, ..., H - (size % 2)}``, flip with probability 0.5, per-axis scale
``U(1/1.2, 1.2)``, rotation ``U(-15, 15)`` degrees. Every transform is differentiable w.r.t. the
images (bilinear resampling with zero padding for crop/scale/rotate, as ``grid_sample``; masks
for cutout; selects for flip), so gradients reach synthetic pixels. The same key gives the same
transforms (the trajectory-matching loss relies on this to replay a step).

Shapes: B = batch, H, W = image size (square for rotate, like the reference's normalised
coordinates), Ch = channels.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy import ndimage

__all__ = ["DSA_STRATEGY", "DSAParams", "dsa_augment"]

DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"


@dataclasses.dataclass(frozen=True)
class DSAParams:
    """DSA's ranges (the defaults of the reference ``ParamDiffAug``)."""

    brightness: float = 1.0
    saturation: float = 2.0
    contrast: float = 0.5
    crop_pad: float = 0.125
    cutout: float = 0.5
    scale: float = 1.2
    rotate_deg: float = 15.0
    flip_prob: float = 0.5


def _per_image(key, x):
    """One uniform draw per image, broadcastable against x [B, H, W, Ch]."""
    return jax.random.uniform(key, (x.shape[0], 1, 1, 1), x.dtype)


def _color(key, x, p: DSAParams):
    kb, ks, kc = jax.random.split(key, 3)
    x = x + (_per_image(kb, x) - 0.5) * p.brightness
    mean_ch = jnp.mean(x, axis=-1, keepdims=True)
    x = (x - mean_ch) * (_per_image(ks, x) * p.saturation) + mean_ch
    mean_img = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    return (x - mean_img) * (_per_image(kc, x) + p.contrast) + mean_img


def _resample(x, matrix, shift):
    """out[b, r, c] = x[b, M_b @ ([r, c] - center) + center + shift_b] (bilinear, zeros outside).

    Args:
      x: [B, H, W, Ch].
      matrix: [B, 2, 2] acting on (row, col) offsets from the image centre.
      shift: [B, 2] (rows, cols).
    """
    h, w = x.shape[1], x.shape[2]
    rr, cc = jnp.meshgrid(jnp.arange(h, dtype=x.dtype), jnp.arange(w, dtype=x.dtype), indexing="ij")
    center = jnp.array([(h - 1) / 2, (w - 1) / 2], x.dtype)
    grid = jnp.stack([rr.ravel(), cc.ravel()]) - center[:, None]

    def one_image(img, m, s):  # [H, W, Ch], [2, 2], [2]
        src = m.astype(x.dtype) @ grid + (center + s.astype(x.dtype))[:, None]

        def one_channel(ch):  # [H, W]
            return ndimage.map_coordinates(
                ch, [src[0], src[1]], order=1, mode="constant", cval=0.0
            ).reshape(h, w)

        return jax.vmap(one_channel, in_axes=-1, out_axes=-1)(img)

    return jax.vmap(one_image)(x, matrix, shift)


def _crop(key, x, p: DSAParams):
    b, h, w = x.shape[:3]
    pad = jnp.array([int(h * p.crop_pad + 0.5), int(w * p.crop_pad + 0.5)])
    shift = jax.random.randint(key, (b, 2), -pad, pad + 1)
    return _resample(x, jnp.broadcast_to(jnp.eye(2), (b, 2, 2)), shift)


def _cutout_keep(h: int, w: int, size: tuple[int, int], center_r, center_c):
    """The reference's cutout mask: 0 on rows [cr - size_r // 2, cr - size_r // 2 + size_r)
    x the same for columns (clipped to the image), 1 elsewhere.

    Args:
      center_r, center_c: int [B].

    Returns:
      float [B, H, W].
    """
    top = center_r - size[0] // 2
    left = center_c - size[1] // 2
    r, c = jnp.arange(h), jnp.arange(w)
    rows = (r[None] >= top[:, None]) & (r[None] < top[:, None] + size[0])
    cols = (c[None] >= left[:, None]) & (c[None] < left[:, None] + size[1])
    return 1.0 - (rows[:, :, None] & cols[:, None, :]).astype(jnp.float32)


def _cutout(key, x, p: DSAParams):
    b, h, w = x.shape[:3]
    size = (int(h * p.cutout + 0.5), int(w * p.cutout + 0.5))
    kr, kc = jax.random.split(key)
    center_r = jax.random.randint(kr, (b,), 0, h + 1 - size[0] % 2)
    center_c = jax.random.randint(kc, (b,), 0, w + 1 - size[1] % 2)
    keep = _cutout_keep(h, w, size, center_r, center_c).astype(x.dtype)
    return x * keep[..., None]


def _flip(key, x, p: DSAParams):
    return jnp.where(_per_image(key, x) < p.flip_prob, x[:, :, ::-1, :], x)


def _scale(key, x, p: DSAParams):
    b = x.shape[0]
    s = jax.random.uniform(key, (b, 2), x.dtype) * (p.scale - 1.0 / p.scale) + 1.0 / p.scale
    return _resample(x, s[:, :, None] * jnp.eye(2, dtype=x.dtype), jnp.zeros((b, 2), x.dtype))


def _rotate(key, x, p: DSAParams):
    b = x.shape[0]
    theta = (jax.random.uniform(key, (b,), x.dtype) - 0.5) * 2 * p.rotate_deg * math.pi / 180
    c, s = jnp.cos(theta), jnp.sin(theta)
    # The reference's [[cos, -sin], [sin, cos]] on (x = col, y = row), written on (row, col).
    matrix = jnp.stack([jnp.stack([c, s], -1), jnp.stack([-s, c], -1)], -2)
    return _resample(x, matrix, jnp.zeros((b, 2), x.dtype))


_TRANSFORMS = {
    "color": _color,
    "crop": _crop,
    "cutout": _cutout,
    "flip": _flip,
    "scale": _scale,
    "rotate": _rotate,
}


def dsa_augment(
    key: jax.Array,
    x: jax.Array,
    *,
    strategy: str = DSA_STRATEGY,
    params: DSAParams = DSAParams(),
) -> jax.Array:
    """Applies one random DSA transform family to the batch, with per-image parameters.

    Args:
      key: PRNG key; the same key (and batch size) gives the same transforms.
      x: images [B, H, W, Ch] (float).
      strategy: ``"_"``-separated transform names from color, crop, cutout, flip, scale,
        rotate; one of them is drawn per call. ``""`` or ``"none"`` returns ``x`` unchanged.
      params: the transforms' ranges.

    Returns:
      Augmented images [B, H, W, Ch], differentiable w.r.t. ``x``.
    """
    if x.ndim != 4:
        raise ValueError(f"dsa_augment expects images [B, H, W, Ch], got shape {x.shape}")
    if strategy in ("", "none"):
        return x
    names = strategy.split("_")
    unknown = [n for n in names if n not in _TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown DSA transforms {unknown}; choose from {sorted(_TRANSFORMS)}")
    choice_key, param_key = jax.random.split(key)
    branches = [lambda k, v, f=_TRANSFORMS[n]: f(k, v, params) for n in names]
    if len(branches) == 1:
        return branches[0](param_key, x)
    which = jax.random.randint(choice_key, (), 0, len(branches))
    return lax.switch(which, branches, param_key, x)
