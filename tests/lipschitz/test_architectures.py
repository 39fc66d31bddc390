"""Soundness against exact enumeration on several architectures, on low-dimensional inputs.

Includes nets with more than 256 hidden neurons (where BaB skips its per-neuron stability
certificates and relies on box tightening and the emptiness certificate alone) and a
convolutional net, whose exact value is enumerated on its equivalent dense layers.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax import lipschitz
from robustml_jax.lipschitz import _network
from tests.lipschitz.nets import random_net


@functools.partial(jax.jit, static_argnames=("method", "bab_steps"))
def bound(net, x0, eps, *, method="ours", bab_steps=0):
    return lipschitz.local_lipschitz_bound(
        net, x0, eps, method=method, bab_steps=bab_steps, bab_batch=4
    )


def check_against_exact(net, dense, x0, eps, *, bab_steps=4):
    """Every method >= exact; ours <= interval <= naive; BaB between exact and ours."""
    exact = lipschitz.exact_lipschitz(dense, np.asarray(x0, np.float64), eps, time_limit_s=60)
    tol = 1e-5 * (1 + exact.value)
    b = {m: float(bound(net, x0, eps, method=m)) for m in lipschitz.METHODS}
    b["bab"] = float(bound(net, x0, eps, bab_steps=bab_steps))
    for m, v in b.items():
        assert v >= exact.value - tol, (m, b, exact)
    assert b["bab"] <= b["ours"] + tol
    assert b["ours"] <= b["interval"] + tol <= b["naive"] + 2 * tol
    return exact, b


SLOW = pytest.mark.slow
ARCHS = [  # (sizes, eps); the ball meets 19 / 7 / 17 / 31 activation regions
    pytest.param((2, 300, 2), 0.05, id="2-300-2 wide"),
    pytest.param((2, 140, 140, 3), 0.2, id="2-140-140-3 280 hidden", marks=SLOW),
    pytest.param((2, 12, 12, 12, 12, 2), 0.2, id="2-12x4-2 deep", marks=SLOW),
    pytest.param((4, 24, 16, 3), 0.2, id="4-24-16-3", marks=SLOW),
]


@pytest.mark.parametrize("sizes, eps", ARCHS)
def test_dense_architectures_against_exact(sizes, eps):
    key = jax.random.key(sum(sizes))
    net = random_net(key, sizes)
    x0 = jax.random.normal(jax.random.fold_in(key, 1), (sizes[0],))
    exact, b = check_against_exact(lipschitz.as_network(net), net, x0, eps)
    assert exact.regions > 1, exact  # the ball crosses activation boundaries
    assert b["ours"] < b["naive"]


def _dense_equivalent(net):
    """Each converted layer as an explicit (W [in, out], b) pair (its linear map's Jacobian)."""
    pairs = []
    for layer in net:
        w = jax.jacfwd(functools.partial(_network.linear, layer))(jnp.zeros(layer.in_size))
        pairs.append((w.T, layer.bias))
    return pairs


@pytest.mark.slow
def test_conv_net_against_exact_on_its_dense_equivalent():
    model = nn.Sequential(
        [
            nn.Conv(3, (2, 2), strides=(1, 1), padding="VALID"),
            nn.relu,
            lipschitz.AvgPool((2, 2), strides=(1, 1)),
            nn.Conv(4, (2, 2), strides=(1, 1), padding="SAME"),
            nn.relu,
            lipschitz.Flatten(),
            nn.Dense(2),
        ]
    )
    shape = (3, 3, 1)
    key = jax.random.key(5)
    params = model.init(key, jnp.zeros((1, *shape)))["params"]
    net = lipschitz.from_flax(model, params, shape)
    dense = _dense_equivalent(net)
    x0 = jax.random.uniform(jax.random.fold_in(key, 1), (9,))
    np.testing.assert_allclose(
        lipschitz.forward(lipschitz.as_network(dense), x0),
        lipschitz.forward(net, x0),
        rtol=1e-5,
        atol=1e-6,
    )
    exact, _ = check_against_exact(net, dense, x0, 0.05)
    assert exact.regions > 1, exact
