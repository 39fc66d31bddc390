"""Tests of the differentiable augmentation against the reference DiffAugment (MTT / TESLA).

The parameter distributions are read back from the outputs of one call on a batch of B images:
a per-batch draw (one transform shared by the batch) fails every distribution test.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax.distill import dsa_augment
from robustml_jax.distill._augment import DSAParams, _crop, _cutout_keep, _resample

X = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
B = 1000  # images per distribution test


def _ks_uniform(samples, lo, hi):
    """Kolmogorov-Smirnov distance of samples to U(lo, hi); 1.95 / sqrt(n) is the 0.1% level."""
    s = np.sort(np.asarray(samples, np.float64))
    cdf = np.clip((s - lo) / (hi - lo), 0, 1)
    n = len(s)
    d = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert d < 1.95 / np.sqrt(n), f"KS distance {d:.3f} to U({lo}, {hi})"
    assert s.min() >= lo - 1e-5 and s.max() <= hi + 1e-5


def _coordinate_images(n, size):
    """[n, size, size, 2]: channel 0 holds the row index, channel 1 the column index."""
    rr, cc = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return jnp.asarray(np.broadcast_to(np.stack([rr, cc], -1), (n, size, size, 2)), jnp.float32)


def _affine_of(out, size):
    """Per-image (M [n, 2, 2], shift [n, 2]) with out(p) = M (p - c) + c + shift, read off the
    pixels next to the centre c (bilinear resampling reproduces linear images exactly)."""
    k = size // 2 - 1  # (k, k) is one of the four pixels around the centre (size even)
    base = np.asarray(out[:, k, k], np.float64)
    m = np.stack([out[:, k + 1, k] - out[:, k, k], out[:, k, k + 1] - out[:, k, k]], -1)
    c = (size - 1) / 2
    shift = base - np.einsum("nij,j->ni", m, np.array([k - c, k - c])) - c
    return m, shift


@pytest.mark.parametrize("strategy", ["color", "crop", "cutout", "flip", "scale", "rotate"])
def test_each_transform_is_shape_preserving_deterministic_affine_and_differentiable(strategy):
    key = jax.random.key(1)
    f = jax.jit(lambda k, x: dsa_augment(k, x, strategy=strategy))
    out = f(key, X)
    chex.assert_shape(out, X.shape)
    np.testing.assert_array_equal(out, f(key, X))  # same key, same transforms
    v = jax.random.normal(jax.random.key(2), X.shape)
    # Every transform is affine in the images: J v = f(x + v) - f(x) (checked against the JVP).
    _, jv = jax.jvp(lambda x: f(key, x), (X,), (v,))
    np.testing.assert_allclose(jv, f(key, X + v) - out, rtol=1e-4, atol=1e-4)
    g = jax.grad(lambda x: jnp.sum(f(key, x) ** 2))(X)
    chex.assert_tree_all_finite(g)
    assert float(jnp.abs(g).sum()) > 0


def test_color_parameters_per_image_match_the_reference():
    """Brightness +U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5), per image.

    Pixels (0, 0, 0), (a, -a, 0), (d, d, d), (-d, -d, -d) have zero image mean, so the output
    is: b at the zero pixel, b + s c (a, -a, 0) and b + c (d, d, d) at the others."""
    a, d = 1.0, 0.5
    img = jnp.array([[[0, 0, 0], [a, -a, 0]], [[d, d, d], [-d, -d, -d]]], jnp.float32)
    out = np.asarray(
        dsa_augment(jax.random.key(3), jnp.broadcast_to(img, (B, 2, 2, 3)), strategy="color")
    )
    b = out[:, 0, 0, 0]
    c = (out[:, 1, 0, 0] - b) / d
    s = (out[:, 0, 1, 0] - b) / (a * c)
    _ks_uniform(b, -0.5, 0.5)
    _ks_uniform(s, 0.0, 2.0)
    _ks_uniform(c, 0.5, 1.5)


def test_crop_scale_rotate_parameters_per_image_match_the_reference():
    size = 32
    x = _coordinate_images(B, size)
    # crop: integer shifts uniform on {-4, ..., 4} per axis (int(32 * 0.125 + 0.5) = 4).
    m, shift = _affine_of(np.asarray(dsa_augment(jax.random.key(4), x, strategy="crop")), size)
    np.testing.assert_allclose(m, np.broadcast_to(np.eye(2), m.shape), atol=1e-4)
    np.testing.assert_allclose(shift, np.round(shift), atol=1e-4)
    for axis in range(2):
        counts = np.bincount(np.round(shift[:, axis]).astype(int) + 4, minlength=9)
        assert len(counts) == 9 and counts.min() > B / 9 - 5 * np.sqrt(B / 9), counts
    # scale: each axis's factor uniform on (1 / 1.2, 1.2), independently.
    m, shift = _affine_of(np.asarray(dsa_augment(jax.random.key(5), x, strategy="scale")), size)
    np.testing.assert_allclose(shift, 0.0, atol=1e-3)
    np.testing.assert_allclose(m[:, 0, 1], 0.0, atol=1e-4)
    for axis in range(2):
        _ks_uniform(m[:, axis, axis], 1 / 1.2, 1.2)
    assert abs(np.corrcoef(m[:, 0, 0], m[:, 1, 1])[0, 1]) < 0.1
    # rotate: the angle uniform on (-15, 15) degrees, M a rotation.
    m, shift = _affine_of(np.asarray(dsa_augment(jax.random.key(6), x, strategy="rotate")), size)
    np.testing.assert_allclose(
        np.einsum("nij,nkj->nik", m, m), np.broadcast_to(np.eye(2), m.shape), atol=1e-3
    )
    _ks_uniform(np.degrees(np.arctan2(m[:, 0, 1], m[:, 0, 0])), -15.0, 15.0)


def _reference_cutout_mask(h, w, offset_x, offset_y, ratio=0.5):
    """The mask of MTT's ``rand_cutout`` for one image (its index arithmetic, in numpy)."""
    size = int(h * ratio + 0.5), int(w * ratio + 0.5)
    gx = np.clip(np.arange(size[0]) + offset_x - size[0] // 2, 0, h - 1)
    gy = np.clip(np.arange(size[1]) + offset_y - size[1] // 2, 0, w - 1)
    mask = np.ones((h, w), np.float32)
    mask[np.ix_(gx, gy)] = 0
    return mask


@pytest.mark.parametrize("h, w", [(32, 32), (28, 28), (7, 9)])
def test_cutout_mask_is_the_references_for_every_offset(h, w):
    size = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
    # The reference draws offsets in [0, H + 1 - size % 2): 16x16 squares centred on 0..32.
    ox, oy = np.meshgrid(np.arange(h + 1 - size[0] % 2), np.arange(w + 1 - size[1] % 2))
    ours = np.asarray(_cutout_keep(h, w, size, jnp.asarray(ox.ravel()), jnp.asarray(oy.ravel())))
    ref = np.stack(
        [_reference_cutout_mask(h, w, a, b) for a, b in zip(ox.ravel(), oy.ravel(), strict=True)]
    )
    np.testing.assert_array_equal(ours, ref)
    assert (1 - ours).sum((1, 2)).max() == size[0] * size[1]  # 16x16 = 256 at 32x32


def test_cutout_offsets_per_image_match_the_reference():
    out = np.asarray(dsa_augment(jax.random.key(7), jnp.ones((B, 32, 32, 1)), strategy="cutout"))
    zero = out[..., 0] == 0
    rows, cols = zero.any(2), zero.any(1)
    first_r, last_r = rows.argmax(1), 31 - rows[:, ::-1].argmax(1)
    first_c, last_c = cols.argmax(1), 31 - cols[:, ::-1].argmax(1)
    center_r = np.where(first_r > 0, first_r + 8, last_r - 7)
    center_c = np.where(first_c > 0, first_c + 8, last_c - 7)
    for i in range(0, B, 97):
        np.testing.assert_array_equal(
            out[i, ..., 0], _reference_cutout_mask(32, 32, center_r[i], center_c[i])
        )
    for centers in (center_r, center_c):
        counts = np.bincount(centers, minlength=33)
        assert len(counts) == 33 and counts.min() > B / 33 - 5 * np.sqrt(B / 33), counts
    assert (zero.sum((1, 2)) == 256).mean() > 0.2  # (17/33)^2 of the squares lie inside


def test_flip_per_image_with_probability_one_half():
    x = jnp.broadcast_to(jnp.arange(8.0)[None, None, :, None], (B, 1, 8, 1))
    out = np.asarray(dsa_augment(jax.random.key(8), x, strategy="flip"))
    flipped = out[:, 0, 0, 0] == 7.0
    assert np.all(flipped | (out[:, 0, 0, 0] == 0.0))
    assert abs(flipped.mean() - 0.5) < 4 * np.sqrt(0.25 / B)
    flipped = dsa_augment(jax.random.key(0), X, strategy="flip", params=DSAParams(flip_prob=1.0))
    np.testing.assert_array_equal(flipped, X[:, :, ::-1])


def test_integer_crop_matches_numpy():
    shifted = _resample(
        X, jnp.broadcast_to(jnp.eye(2), (4, 2, 2)), jnp.tile(jnp.array([[1.0, -2.0]]), (4, 1))
    )
    ref = np.zeros_like(X)  # out[r, c] = x[r + 1, c - 2], zeros outside
    ref[:, :-1, 2:] = np.asarray(X)[:, 1:, :-2]
    np.testing.assert_allclose(shifted, ref, atol=1e-6)
    out = _crop(jax.random.key(3), X, DSAParams(crop_pad=0.0))  # no room to move: identity
    np.testing.assert_allclose(out, X, atol=1e-6)


def test_different_keys_give_different_transforms_and_bad_input():
    aug = jax.jit(dsa_augment)
    outs = [aug(jax.random.key(i), X) for i in range(6)]
    assert len({float(jnp.sum(o)) for o in outs}) > 1
    np.testing.assert_array_equal(dsa_augment(jax.random.key(0), X, strategy="none"), X)
    with pytest.raises(ValueError, match="unknown DSA transforms"):
        dsa_augment(jax.random.key(0), X, strategy="color_blur")
    with pytest.raises(ValueError, match="expects images"):
        dsa_augment(jax.random.key(0), X[0])
