"""Bounds over the ball intersected with a data range, [max(x0 - eps, lo), min(x0 + eps, hi)]."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax import lipschitz
from tests.lipschitz import nets

SIZES = (3, 6, 5, 2)


def random_net(key, sizes=SIZES):
    return nets.random_net(key, sizes)


@functools.partial(jax.jit, static_argnames=("method", "bab_steps"))
def bound(net, x0, eps, x_min, x_max, *, method="ours", bab_steps=0):
    return lipschitz.local_lipschitz_bound(
        net, x0, eps, method=method, bab_steps=bab_steps, x_min=x_min, x_max=x_max
    )


@jax.jit
def partials(net, x0, eps, x_min, x_max):
    res = lipschitz.gradient_bounds(
        net, x0, eps, c=jnp.array([1.0, -1.0]), x_min=x_min, x_max=x_max
    )
    return res.lower, res.upper


def test_a_clipped_box_is_the_ball_it_equals(x64):
    """x0 = 0, eps = 0.5 clipped to x >= 0 is the box [0, 0.5]^3: the ball of radius 0.25 around
    0.25. Every bound, and the exact value, must be the same for both descriptions. (An
    infinite range is no range: one compile serves every call.)"""
    net = random_net(jax.random.key(0))
    zero, quarter, inf = jnp.zeros(SIZES[0]), jnp.full(SIZES[0], 0.25), jnp.inf
    for method in ("ours", "recurjac"):
        clipped = float(bound(net, zero, 0.5, 0.0, inf, method=method))
        ball = float(bound(net, quarter, 0.25, -inf, inf, method=method))
        np.testing.assert_allclose(clipped, ball, rtol=1e-12, err_msg=method)
        unclipped = float(bound(net, zero, 0.5, -inf, inf, method=method))
        assert clipped < unclipped  # the data range did tighten the bound
    for a, b in zip(
        partials(net, zero, 0.5, 0.0, inf), partials(net, quarter, 0.25, -inf, inf), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)
    exact_clipped = lipschitz.exact_lipschitz(net, np.zeros(SIZES[0]), 0.5, x_min=0.0).value
    exact_ball = lipschitz.exact_lipschitz(net, np.full(SIZES[0], 0.25), 0.25).value
    np.testing.assert_allclose(exact_clipped, exact_ball, rtol=1e-12)


@pytest.mark.slow
def test_a_clipped_box_is_the_ball_it_equals_with_bab(x64):
    net = random_net(jax.random.key(0))
    zero, quarter, inf = jnp.zeros(SIZES[0]), jnp.full(SIZES[0], 0.25), jnp.inf
    np.testing.assert_allclose(
        float(bound(net, zero, 0.5, 0.0, inf, bab_steps=4)),
        float(bound(net, quarter, 0.25, -inf, inf, bab_steps=4)),
        rtol=1e-12,
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_box_bounds_are_sound_and_no_looser_than_the_ball(seed):
    """Centres near the edge of [0, 1]^3: each bound on the box is >= the box's exact value and
    sampled lower bound, and <= the same bound on the whole ball."""
    key = jax.random.key(10 + seed)
    net = random_net(key)
    x0 = jax.random.uniform(jax.random.fold_in(key, 1), (SIZES[0],), maxval=0.2)
    eps, lo, hi = 0.3, 0.0, 1.0
    exact = lipschitz.exact_lipschitz(net, np.asarray(x0, np.float64), eps, x_min=lo, x_max=hi)
    exact_ball = lipschitz.exact_lipschitz(net, np.asarray(x0, np.float64), eps)
    sampled = lipschitz.sampled_lower_bound(
        net, jax.random.fold_in(key, 2), x0, eps, num_samples=64, x_min=lo, x_max=hi
    )
    assert float(sampled) <= exact.value * (1 + 1e-5) + 1e-6
    assert exact.value <= exact_ball.value + 1e-9
    for method in ("ours", "recurjac", "interval"):
        b = float(bound(net, x0, eps, lo, hi, method=method))
        assert b >= exact.value * (1 - 1e-5) - 1e-6, (method, b, exact)
        assert b <= float(bound(net, x0, eps, None, None, method=method)) * (1 + 1e-5) + 1e-6
    b = float(bound(net, x0, eps, lo, hi, bab_steps=4))
    assert exact.value * (1 - 1e-5) - 1e-6 <= b <= float(bound(net, x0, eps, lo, hi)) + 1e-5


def test_per_feature_ranges_and_empty_box():
    net = random_net(jax.random.key(3))
    x0 = jnp.array([0.5, 0.5, 0.5])
    lo, hi = jnp.array([0.0, 0.45, 0.0]), jnp.array([1.0, 1.0, 0.52])
    got = lipschitz.local_lipschitz_bound(net, x0, 0.1, x_min=lo, x_max=hi)
    # The same box as a ball: centre (0.5, 0.525, 0.46), radius per feature (0.1, 0.075, 0.06)
    # is not a cube, so compare with the preactivation bounds of the box instead.
    lowers, uppers = lipschitz.preactivation_bounds(net, x0, 0.1, x_min=lo, x_max=hi)
    pts = jax.random.uniform(
        jax.random.key(4),
        (256, 3),
        minval=jnp.maximum(x0 - 0.1, lo),
        maxval=jnp.minimum(x0 + 0.1, hi),
    )
    z = pts @ net[0][0] + net[0][1]
    assert bool(jnp.all(z >= lowers[0] - 1e-5) & jnp.all(z <= uppers[0] + 1e-5))
    assert float(got) <= float(lipschitz.local_lipschitz_bound(net, x0, 0.1)) * (1 + 1e-6)
    with pytest.raises(ValueError, match="input box .* is empty"):
        lipschitz.local_lipschitz_bound(net, x0, 0.1, x_min=0.7)
