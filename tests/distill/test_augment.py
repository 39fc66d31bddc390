"""Tests of the differentiable Siamese augmentation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax.distill import dsa_augment
from robustml_jax.distill._augment import DSAParams, _crop, _resample

X = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))


@pytest.mark.parametrize("strategy", ["color", "crop", "cutout", "flip", "scale", "rotate"])
def test_each_transform_is_siamese_shape_preserving_and_differentiable(strategy):
    key = jax.random.key(1)
    f = jax.jit(lambda k, x: dsa_augment(k, x, strategy=strategy))
    out = f(key, X)
    chex.assert_shape(out, X.shape)
    np.testing.assert_array_equal(out, f(key, X))  # same key, same transform
    # Siamese: the batch shares one transform, so halves augment like the whole batch.
    np.testing.assert_allclose(f(key, X[:2]), out[:2], rtol=1e-5, atol=1e-6)
    v = jax.random.normal(jax.random.key(2), X.shape)
    # Every transform is affine in the images: J v = f(x + v) - f(x) (checked against the JVP).
    _, jv = jax.jvp(lambda x: f(key, x), (X,), (v,))
    np.testing.assert_allclose(jv, f(key, X + v) - out, rtol=1e-4, atol=1e-4)
    g = jax.grad(lambda x: jnp.sum(f(key, x) ** 2))(X)
    chex.assert_tree_all_finite(g)
    assert float(jnp.abs(g).sum()) > 0


def test_flip_and_integer_crop_match_numpy():
    flipped = dsa_augment(jax.random.key(0), X, strategy="flip", params=DSAParams(flip_prob=1.0))
    np.testing.assert_array_equal(flipped, X[:, :, ::-1])
    shifted = _resample(X, jnp.eye(2), jnp.array([1.0, -2.0]))  # out[r, c] = x[r + 1, c - 2]
    ref = np.zeros_like(X)
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
