"""alpha-CROWN forward bounds and sparse (unstable-rows-only) intermediate bounds.

alpha: sound (pre-activation bounds contain every sampled pre-activation, the Lipschitz bound is
>= the exact value), never looser than CROWN's adaptive slopes, and strictly tighter on a net
where CROWN is loose. sparse: identical to the dense path when the row budget covers every
neuron that interval arithmetic does not prove inactive, sound (>= exact) when it does not.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax import lipschitz
from tests.lipschitz.nets import random_net


@functools.partial(jax.jit, static_argnames=("forward", "sparse", "method"))
def bound(net, x0, eps, *, forward="crown", sparse=None, method="ours"):
    return lipschitz.local_lipschitz_bound(
        net, x0, eps, forward=forward, sparse=sparse, method=method
    )


def _case(sizes, eps, seed, shift=0.0):
    """Random net (biases shifted by ``shift``: negative makes more neurons inactive)."""
    key = jax.random.key(seed)
    pairs = random_net(key, sizes)
    net = [(np.asarray(w, np.float64), np.asarray(b, np.float64) + shift) for w, b in pairs]
    x0 = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (sizes[0],)), np.float64)
    return net, x0, eps


SLOW = pytest.mark.slow
CASES = [
    pytest.param((3, 10, 10, 2), 0.3, 0, id="3-10-10-2", marks=SLOW),
    pytest.param((4, 24, 16, 3), 0.3, 47, id="4-24-16-3", marks=SLOW),
]


@pytest.mark.parametrize("sizes, eps, seed", CASES)
def test_alpha_sound_and_never_looser_than_crown(sizes, eps, seed):
    with jax.enable_x64(True):
        net, x0, eps = _case(sizes, eps, seed)
        lo_c, up_c = lipschitz.preactivation_bounds(net, x0, eps)
        lo_a, up_a = lipschitz.preactivation_bounds(net, x0, eps, forward="alpha")
        # Sampled pre-activations (uniform and vertices of the ball) lie inside alpha's bounds.
        rng = np.random.default_rng(seed)
        xs = x0 + eps * np.concatenate(
            [rng.uniform(-1, 1, (4000, x0.size)), rng.choice([-1.0, 1.0], (4000, x0.size))]
        )
        h = xs
        for k, (w, b) in enumerate(net[:-1]):
            z = h @ w + b
            assert np.all(z >= np.asarray(lo_a[k]) - 1e-9) and np.all(
                z <= np.asarray(up_a[k]) + 1e-9
            )
            h = np.maximum(z, 0)
        for la, ua, lc, uc in zip(lo_a, up_a, lo_c, up_c, strict=True):
            assert jnp.all(la >= lc - 1e-12) and jnp.all(ua <= uc + 1e-12)
        exact = lipschitz.exact_lipschitz(net, x0, eps, time_limit_s=60).value
        crown = float(bound(net, x0, eps))
        alpha = float(bound(net, x0, eps, forward="alpha"))
        assert exact - 1e-9 <= alpha <= crown + 1e-12
        if sizes != (4, 24, 16, 3):
            return
        width_c = sum(float((u - lo).sum()) for lo, u in zip(lo_c, up_c, strict=True))
        width_a = sum(float((u - lo).sum()) for lo, u in zip(lo_a, up_a, strict=True))
        assert width_a < width_c
        assert alpha < 0.6 * crown, (alpha, crown, exact)  # CROWN's slopes are far off here


def _ibp_share_not_inactive(net, x0, eps):
    """Largest share, over layers, of neurons that interval arithmetic leaves not inactive."""
    lo, up = lipschitz.preactivation_bounds(net, x0, eps, forward="interval")
    return max(float(jnp.mean(u > 0)) for u in up)


@SLOW
@pytest.mark.parametrize("method", ["ours", "recurjac"])
def test_sparse_equals_dense_when_budget_covers_unstable(method):
    with jax.enable_x64(True):
        for seed, sizes, eps in [(3, (6, 40, 30, 20, 4), 0.1), (5, (5, 30, 30, 3), 0.05)]:
            net, x0, eps = _case(sizes, eps, seed, shift=-0.6)
            share = _ibp_share_not_inactive(net, x0, eps)
            assert share < 0.5  # the sparse path really skips rows here
            dense = float(bound(net, x0, eps, method=method))
            for fw in ("crown", "alpha"):
                d = float(bound(net, x0, eps, forward=fw, method=method))
                s = float(bound(net, x0, eps, forward=fw, method=method, sparse=share))
                assert s == pytest.approx(d, rel=1e-12, abs=1e-12), (fw, s, d)
            # gradient bounds (per-feature) too
            g_d = lipschitz.gradient_bounds(net, x0, eps, c=jnp.eye(sizes[-1])[0])
            g_s = lipschitz.gradient_bounds(net, x0, eps, c=jnp.eye(sizes[-1])[0], sparse=share)
            np.testing.assert_allclose(g_s.lower, g_d.lower, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(g_s.upper, g_d.upper, rtol=1e-12, atol=1e-12)
            assert dense > 0


@SLOW
def test_sparse_small_budget_is_sound_and_looser():
    with jax.enable_x64(True):
        net, x0, eps = _case((3, 10, 10, 2), 0.3, 0)
        exact = lipschitz.exact_lipschitz(net, x0, eps, time_limit_s=60).value
        dense = float(bound(net, x0, eps))
        for frac in (0.1, 0.3, 0.6):
            s = float(bound(net, x0, eps, sparse=frac))
            assert s >= dense - 1e-12 and s >= exact - 1e-9


@SLOW
def test_sparse_on_conv_net_equals_dense():
    import flax.linen as nn

    model = nn.Sequential(
        [
            nn.Conv(4, (3, 3), padding="VALID"),
            nn.relu,
            lipschitz.Flatten(),
            nn.Dense(12),
            nn.relu,
            nn.Dense(3),
        ]
    )
    x0 = jax.random.uniform(jax.random.key(2), (7, 7, 1))
    params = model.init(jax.random.key(1), x0[None])
    net = lipschitz.from_flax(model, params, (7, 7, 1))
    flat = x0.reshape(-1)
    dense = float(bound(net, flat, 0.05))
    assert float(bound(net, flat, 0.05, sparse=1.0)) == dense
    lo, up = lipschitz.preactivation_bounds(net, flat, 0.05, forward="interval")
    share = max(float(jnp.mean(u > 0)) for u in up)
    assert float(bound(net, flat, 0.05, sparse=share)) == pytest.approx(dense, rel=1e-6)
    assert float(bound(net, flat, 0.05, sparse=0.05)) >= dense * (1 - 1e-6)


def test_bad_options_raise():
    net = random_net(jax.random.key(0), (2, 3, 2))
    with pytest.raises(ValueError, match="sparse must be"):
        lipschitz.local_lipschitz_bound(net, jnp.zeros(2), 0.1, sparse=0.0)
    with pytest.raises(ValueError, match="forward must be"):
        lipschitz.local_lipschitz_bound(net, jnp.zeros(2), 0.1, forward="beta")


def test_quick_alpha_and_sparse():
    """CI-sized: alpha's pre-activation bounds inside CROWN's and around sampled values; the
    sparse path equal to the dense one when its budget covers every neuron not inactive."""
    with jax.enable_x64(True):
        net, x0, eps = _case((3, 8, 8, 8, 2), 0.3, 4, shift=-0.3)
        lo_c, up_c = lipschitz.preactivation_bounds(net, x0, eps)
        lo_a, up_a = lipschitz.preactivation_bounds(net, x0, eps, forward="alpha")
        xs = x0 + eps * np.random.default_rng(0).uniform(-1, 1, (2000, x0.size))
        h = xs
        for k, (w, b) in enumerate(net[:-1]):
            z = h @ w + b
            assert np.all(z >= np.asarray(lo_a[k]) - 1e-9)
            assert np.all(z <= np.asarray(up_a[k]) + 1e-9)
            assert jnp.all(lo_a[k] >= lo_c[k] - 1e-12) and jnp.all(up_a[k] <= up_c[k] + 1e-12)
            h = np.maximum(z, 0)
        lo, up = lipschitz.preactivation_bounds(net, x0, eps, forward="interval")
        shares = tuple(float(jnp.mean(u > 0)) for u in up)
        assert min(shares) < 1.0
        dense = float(bound(net, x0, eps))
        assert float(bound(net, x0, eps, sparse=shares)) == pytest.approx(dense, rel=1e-12)
