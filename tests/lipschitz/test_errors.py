"""Bad input gives clear errors naming the problem."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from robustml_jax import lipschitz

NET = [(jnp.ones((3, 4)), jnp.zeros(4)), (jnp.ones((4, 2)), jnp.zeros(2))]


def test_negative_eps():
    with pytest.raises(ValueError, match="eps must be >= 0"):
        lipschitz.local_lipschitz_bound(NET, jnp.zeros(3), -0.1)


def test_negative_traced_eps_gives_nan():
    got = jax.jit(lambda e: lipschitz.local_lipschitz_bound(NET, jnp.zeros(3), e))(-0.1)
    assert jnp.isnan(got)


def test_wrong_x0_length():
    with pytest.raises(ValueError, match=r"x0 has shape \(5,\) but the first layer takes 3"):
        lipschitz.local_lipschitz_bound(NET, jnp.zeros(5), 0.1)
    with pytest.raises(ValueError, match="x0 has shape"):
        lipschitz.local_lipschitz_bound(NET, jnp.zeros((2, 3)), 0.1)


def test_shapes_do_not_chain():
    bad = [(jnp.ones((3, 4)), jnp.zeros(4)), (jnp.ones((5, 2)), jnp.zeros(2))]
    with pytest.raises(ValueError, match="layer shapes do not chain: layer 0 has 4 outputs"):
        lipschitz.local_lipschitz_bound(bad, jnp.zeros(3), 0.1)


def test_bias_shape_mismatch():
    with pytest.raises(ValueError, match=r"layer 0: W must be \[in, out\] and b \[out\]"):
        lipschitz.local_lipschitz_bound([(jnp.ones((3, 4)), jnp.zeros(3))], jnp.zeros(3), 0.1)


def test_unsupported_activation():
    with pytest.raises(ValueError, match="activation 'tanh' is not supported.*ReLU only"):
        lipschitz.local_lipschitz_bound(NET, jnp.zeros(3), 0.1, activation="tanh")
    model = nn.Sequential([nn.Dense(4), nn.tanh, nn.Dense(2)])
    params = model.init(jax.random.key(0), jnp.zeros((1, 3)))["params"]
    with pytest.raises(ValueError, match="activation 'tanh' is not supported"):
        lipschitz.from_flax(model, params, (3,))


def test_max_pool_rejected():
    model = nn.Sequential(
        [nn.Conv(2, (3, 3)), nn.relu, lambda x: nn.max_pool(x, (2, 2), (2, 2)), nn.Dense(2)]
    )
    params = model.init(jax.random.key(0), jnp.zeros((1, 6, 6, 1)))["params"]
    with pytest.raises(ValueError, match="not supported"):
        lipschitz.from_flax(model, params, (6, 6, 1))


def test_unknown_method_and_bad_c():
    with pytest.raises(ValueError, match="method must be one of"):
        lipschitz.local_lipschitz_bound(NET, jnp.zeros(3), 0.1, method="lipsdp")
    with pytest.raises(ValueError, match=r"c must have shape \(2,\)"):
        lipschitz.local_lipschitz_bound(NET, jnp.zeros(3), 0.1, c=jnp.ones(3))


def test_exact_refuses_conv_and_gives_up_on_budget():
    model = nn.Sequential([nn.Conv(2, (3, 3)), nn.relu, lipschitz.Flatten(), nn.Dense(2)])
    params = model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))["params"]
    net = lipschitz.from_flax(model, params, (4, 4, 1))
    with pytest.raises(ValueError, match="dense"):
        lipschitz.exact_lipschitz(net, jnp.zeros(16), 0.1)
    wide = [
        (jax.random.normal(jax.random.key(1), (8, 64)), jnp.zeros(64)),
        (jax.random.normal(jax.random.key(2), (64, 2)), jnp.zeros(2)),
    ]
    with pytest.raises(RuntimeError, match="too large for enumeration"):
        lipschitz.exact_lipschitz(wide, jnp.zeros(8), 1.0, max_regions=5)
