"""Differentiable Siamese augmentation (DSA; Zhao & Bilen 2021), as used by MTT and TESLA.

One call draws one transform family uniformly from the strategy (DSA's "S" mode) and one set
of random parameters for the whole batch (Siamese: every image of the batch, and any other
batch augmented with the same key, gets the same transform). Every transform is
differentiable w.r.t. the images (bilinear resampling for crop/scale/rotate, masks for
cutout, selects for flip), so gradients reach synthetic pixels.

Shapes: B = batch, H, W = image size, Ch = channels.
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


def _color(key, x, p: DSAParams):
    kb, ks, kc = jax.random.split(key, 3)
    x = x + (jax.random.uniform(kb) - 0.5) * p.brightness
    mean_ch = jnp.mean(x, axis=-1, keepdims=True)
    x = (x - mean_ch) * (jax.random.uniform(ks) * p.saturation) + mean_ch
    mean_img = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    return (x - mean_img) * (jax.random.uniform(kc) + p.contrast) + mean_img


def _resample(x, matrix, shift):
    """out[b, r, c] = x[b, M @ ([r, c] - center) + center + shift] (bilinear, zeros outside)."""
    h, w = x.shape[1], x.shape[2]
    rr, cc = jnp.meshgrid(jnp.arange(h, dtype=x.dtype), jnp.arange(w, dtype=x.dtype), indexing="ij")
    center = jnp.array([(h - 1) / 2, (w - 1) / 2], x.dtype)
    grid = jnp.stack([rr.ravel(), cc.ravel()]) - center[:, None]
    src = matrix.astype(x.dtype) @ grid + center[:, None] + shift.astype(x.dtype)[:, None]

    def one_channel(img):  # [H, W]
        return ndimage.map_coordinates(
            img, [src[0], src[1]], order=1, mode="constant", cval=0.0
        ).reshape(h, w)

    per_image = jax.vmap(one_channel, in_axes=-1, out_axes=-1)
    return jax.vmap(per_image)(x)


def _crop(key, x, p: DSAParams):
    h, w = x.shape[1], x.shape[2]
    pad = jnp.array([int(h * p.crop_pad + 0.5), int(w * p.crop_pad + 0.5)])
    shift = jax.random.randint(key, (2,), -pad, pad + 1)
    return _resample(x, jnp.eye(2), shift)


def _cutout(key, x, p: DSAParams):
    h, w = x.shape[1], x.shape[2]
    ch, cw = int(h * p.cutout + 0.5), int(w * p.cutout + 0.5)
    ky, kx = jax.random.split(key)
    cy = jax.random.randint(ky, (), 0, h)
    cx = jax.random.randint(kx, (), 0, w)
    rows = jnp.abs(jnp.arange(h) - cy) < (ch + 1) // 2
    cols = jnp.abs(jnp.arange(w) - cx) < (cw + 1) // 2
    keep = 1.0 - (rows[:, None] & cols[None, :]).astype(x.dtype)
    return x * keep[None, :, :, None]


def _flip(key, x, p: DSAParams):
    return jnp.where(jax.random.uniform(key) < p.flip_prob, x[:, :, ::-1, :], x)


def _scale(key, x, p: DSAParams):
    s = jax.random.uniform(key, (2,)) * (p.scale - 1.0 / p.scale) + 1.0 / p.scale
    return _resample(x, jnp.diag(s), jnp.zeros(2))


def _rotate(key, x, p: DSAParams):
    theta = (jax.random.uniform(key) - 0.5) * 2 * p.rotate_deg * math.pi / 180
    c, s = jnp.cos(theta), jnp.sin(theta)
    return _resample(x, jnp.array([[c, -s], [s, c]]), jnp.zeros(2))


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
    """Applies one random DSA transform, shared by the whole batch.

    Args:
      key: PRNG key; the same key gives the same transform (Siamese augmentation).
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
