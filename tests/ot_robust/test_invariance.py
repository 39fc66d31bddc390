"""The invariance attack: transforms, exact recovery of a transformed neighbour, the ball, the
1-NN oracle against brute force, and the oracle rate on real data."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax import ot_robust
from robustml_jax.core import datasets
from robustml_jax.core.datasets import DatasetNotFoundError


def _blobs(n, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 12, 12, 1), np.float32)
    for i in range(n):
        r, c = rng.integers(3, 8, 2)
        x[i, r : r + 3, c : c + 2] = 1.0
        x[i, rng.integers(0, 12), rng.integers(0, 12)] = rng.uniform()
    return x


def test_transforms_invert_and_shift_exactly():
    x = jnp.asarray(_blobs(4))
    g = jnp.array([[1.0, 2.0, 0.0], [-2.0, 1.0, 0.0], [0.0, 0.0, 90.0], [1.0, -1.0, 180.0]])
    back = ot_robust.transform_images(ot_robust.transform_images(x, g), g, inverse=True)
    inner = (slice(None), slice(3, 9), slice(3, 9))  # away from the zero-filled border
    np.testing.assert_allclose(back[inner], x[inner], atol=1e-5)
    moved = ot_robust.transform_images(x[:1], g[:1])  # content moves down 1, right 2
    np.testing.assert_allclose(moved[0, 1:, 2:], x[0, :-1, :-2], atol=1e-6)
    rot = ot_robust.transform_images(x[2:3], jnp.array([[0.0, 0.0, 180.0]]))
    np.testing.assert_allclose(rot[0], x[2, ::-1, ::-1], atol=1e-5)


def test_attack_recovers_a_transformed_neighbour_exactly():
    """The training set holds a shifted copy of x in another class among distractors: the
    attack must find it, undo the shift, and (at eps = 1) return x's aligned copy itself."""
    x = _blobs(3, seed=1)
    y = np.array([0, 0, 0], np.int32)
    g = np.array([[1.0, -1.0, 0.0]], np.float32)
    copies = np.asarray(ot_robust.transform_images(jnp.asarray(x), jnp.tile(g, (3, 1))))
    train_x = np.concatenate([copies, _blobs(20, seed=2)])
    train_y = np.concatenate([np.full(3, 1), np.full(20, 2)]).astype(np.int32)
    grid = ot_robust.affine_grid(max_shift=1, max_angle=0.0)
    r = ot_robust.invariance_attack(
        jnp.asarray(x),
        jnp.asarray(y),
        jnp.asarray(train_x),
        jnp.asarray(train_y),
        eps=1.0,
        transforms=grid,
        select="residual",
        num_classes=3,
    )
    np.testing.assert_array_equal(r.neighbour_index, [0, 1, 2])
    np.testing.assert_array_equal(r.target, [1, 1, 1])
    np.testing.assert_allclose(r.transform, np.tile(g, (3, 1)))
    inner = (slice(None), slice(2, 10), slice(2, 10))
    np.testing.assert_allclose(r.neighbour[inner], x[inner], atol=1e-5)


@pytest.mark.parametrize("select", ["residual", "oracle_margin"])
def test_attack_stays_in_the_ball_and_respects_allowed_targets(select):
    x, train_x = _blobs(8, seed=3), _blobs(40, seed=4)
    y = np.arange(8, dtype=np.int32) % 4
    train_y = np.arange(40, dtype=np.int32) % 4
    allowed = np.zeros((4, 4), bool)
    allowed[np.arange(4), (np.arange(4) + 1) % 4] = True  # only y -> y + 1
    f = jax.jit(
        functools.partial(
            ot_robust.invariance_attack,
            eps=0.25,
            num_classes=4,
            allowed=allowed,
            select=select,
            transforms=ot_robust.affine_grid(1, 1, 5.0, 5.0),
        )
    )
    r = f(jnp.asarray(x), jnp.asarray(y), jnp.asarray(train_x), jnp.asarray(train_y))
    assert float(jnp.abs(r.x_adv - x).max()) <= 0.25 + 1e-6
    assert float(r.x_adv.min()) >= 0 and float(r.x_adv.max()) <= 1
    np.testing.assert_array_equal(r.target, (y + 1) % 4)
    assert float(jnp.abs(r.x_adv - x).max()) > 0.2  # it moved


def test_nearest_neighbour_oracle_matches_brute_force():
    rng = np.random.default_rng(0)
    q, t = rng.uniform(size=(7, 5, 5, 1)), rng.uniform(size=(30, 5, 5, 1))
    ty = rng.integers(0, 3, 30).astype(np.int32)
    d = ((q.reshape(7, 1, -1) - t.reshape(1, 30, -1)) ** 2).sum(-1)
    got = ot_robust.nearest_neighbour_labels(
        jnp.asarray(q, jnp.float32), jnp.asarray(t, jnp.float32), jnp.asarray(ty)
    )
    np.testing.assert_array_equal(got, ty[d.argmin(1)])
    excl = jnp.asarray(d.argmin(1))
    d2 = d.copy()
    d2[np.arange(7), d.argmin(1)] = np.inf
    got = ot_robust.nearest_neighbour_labels(
        jnp.asarray(q, jnp.float32), jnp.asarray(t, jnp.float32), jnp.asarray(ty), exclude=excl
    )
    np.testing.assert_array_equal(got, ty[d2.argmin(1)])


def test_bad_input():
    x = jnp.zeros((2, 6, 6, 1))
    with pytest.raises(ValueError, match="x must lie in"):
        ot_robust.invariance_attack(x + 2, jnp.array([0, 1]), x, jnp.array([0, 1]), eps=0.3)
    with pytest.raises(ValueError, match="eps must be"):
        ot_robust.invariance_attack(x, jnp.array([0, 1]), x, jnp.array([0, 1]), eps=-1.0)
    with pytest.raises(ValueError, match="y must be labels"):
        ot_robust.invariance_attack(x, jnp.array([0]), x, jnp.array([0, 1]), eps=0.3)
    with pytest.raises(ValueError, match="train_x's image shape"):
        ot_robust.invariance_attack(
            x, jnp.array([0, 1]), jnp.zeros((2, 5, 5, 1)), jnp.array([0, 1]), eps=0.3
        )


@pytest.mark.slow
def test_oracle_assigns_most_targets_on_mnist_at_eps04():
    try:
        tr, te = datasets.load("mnist_5k", "train"), datasets.load("mnist_5k", "test")
    except DatasetNotFoundError as e:
        pytest.skip(f"mnist_5k not found ({e.how})")
    tx, ty = jnp.asarray(tr["image"] / 255.0, jnp.float32), jnp.asarray(tr["label"])
    x, y = jnp.asarray(te["image"][::10] / 255.0, jnp.float32), jnp.asarray(te["label"][::10])
    r = jax.jit(functools.partial(ot_robust.invariance_attack, eps=0.4))(x, y, tx, ty)
    rate = float(jnp.mean(ot_robust.nearest_neighbour_labels(r.x_adv, tx, ty) == r.target))
    assert rate > 0.5, rate
