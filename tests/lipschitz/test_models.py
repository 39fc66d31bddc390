"""The paper's model builders convert to the layer form with the right sizes and outputs."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import pytest

from robustml_jax import lipschitz


def _converted(model, shape):
    params = model.init(jax.random.key(0), jnp.zeros((1, *shape)))["params"]
    return params, lipschitz.from_flax(model, params, shape)


@pytest.mark.slow
def test_official_mnist_cnn_has_the_papers_hidden_sizes():
    """mnist_cnn_4layer of the official code: 8x25x25 + 8x22x22 + 100 = 8,972 hidden ReLUs."""
    _, net = _converted(lipschitz.cnn((8, 8), 100, 10, strides=(1, 1)), (28, 28, 1))
    assert [layer.out_size for layer in net] == [5000, 3872, 100, 10]
    _, small = _converted(lipschitz.cnn((8, 16), 100, 10), (28, 28, 1))
    assert [layer.out_size for layer in small] == [8 * 13 * 13, 16 * 5 * 5, 100, 10]


def test_mlp_converts_to_the_same_function():
    model = lipschitz.mlp((7, 5), 3)
    params, net = _converted(model, (4,))
    assert [layer.out_size for layer in net] == [7, 5, 3]
    x = jax.random.normal(jax.random.key(1), (6, 4))
    chex.assert_trees_all_close(
        jax.vmap(lambda v: lipschitz.forward(net, v))(x),
        model.apply({"params": params}, x),
        rtol=1e-5,
        atol=1e-6,
    )
