"""The training losses of every method on a tiny model: finite values and gradients, and the
OT-invariance loss really depends on the invariance examples' new labels."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from robustml_jax import ot_robust


@pytest.fixture(scope="module")
def setup():
    model = ot_robust.EmbedCNN(num_classes=3, features=(4,), embed_dim=8)
    x = jax.random.uniform(jax.random.key(0), (6, 8, 8, 1))
    params = model.init(jax.random.key(1), x)
    batch = {
        "image": x,
        "label": jnp.array([0, 1, 2, 0, 1, 2]),
        "eps": jnp.full((6,), 0.3),
        "inv_image": jnp.clip(x[::-1] + 0.1, 0, 1),
        "inv_label": jnp.array([1, 2, 0, 1, 2, 0]),
        "inv_weight": jnp.array([1.0, 1, 1, 0, 1, 1]),
    }
    return model, params, batch


@pytest.mark.parametrize("method", ot_robust.METHODS)
def test_losses_and_gradients_are_finite(setup, method):
    model, params, batch = setup
    cfg = ot_robust.DefenceConfig(method=method, num_steps=2, num_classes=3)
    (loss, metrics), g = jax.jit(
        jax.value_and_grad(ot_robust.make_loss_fn(model, cfg), has_aux=True)
    )(params, batch, jax.random.key(2))
    assert np.isfinite(float(loss)) and float(optax.tree.norm(g)) > 0
    assert all(np.isfinite(float(v)) for v in metrics.values())


def test_ot_inv_uses_the_new_labels(setup):
    model, params, batch = setup
    f = ot_robust.make_loss_fn(
        model, ot_robust.DefenceConfig(method="ot_inv", num_steps=2, num_classes=3)
    )
    a, _ = f(params, batch, jax.random.key(2))
    b, _ = f(params, {**batch, "inv_label": batch["label"][::-1]}, jax.random.key(2))
    assert abs(float(a) - float(b)) > 1e-4


def test_unknown_method():
    with pytest.raises(ValueError, match="method must be one of"):
        ot_robust.make_loss_fn(ot_robust.EmbedCNN(), ot_robust.DefenceConfig(method="mixup"))
