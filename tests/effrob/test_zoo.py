"""The zoo: features, training-set draws, masking, and that one summed loss trains each model
exactly as it would train alone."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from robustml_jax import effrob
from robustml_jax.effrob import _zoo


def test_hashed_ngrams_deterministic_and_normalised():
    texts = ["Great book, loved it!", "terrible. don't buy", ""]
    a = effrob.hashed_ngrams(texts, dim=256)
    b = effrob.hashed_ngrams(list(texts), dim=256)
    np.testing.assert_array_equal(a, b)
    chex.assert_shape(a, (3, 256))
    np.testing.assert_allclose(np.linalg.norm(a[:2], axis=1), 1.0, rtol=1e-6)
    assert not a[2].any()
    assert (a[0] != 0).sum() >= 5  # 5 unigrams (great, book, loved, it, !) + bigrams
    with pytest.raises(ValueError, match="power of two"):
        effrob.hashed_ngrams(texts, dim=100)


def test_example_weights_draw_mixture_and_size():
    specs = [
        effrob.ZooModel("linear", 1.0, 10, 0.0, 8),
        effrob.ZooModel("linear", 0.0, 7, 0.0, 8),
        effrob.ZooModel("linear", 0.5, 12, 0.0, 8),
    ]
    dom = np.array([0] * 20 + [1] * 15 + [-1])
    w = _zoo._example_weights(specs, dom, jax.random.key(0))
    np.testing.assert_array_equal(w.sum(0), [10, 7, 12])
    assert w[dom == 1, 0].sum() == 0 and w[dom == 0, 1].sum() == 0
    assert w[dom == 0, 2].sum() == 6 and w[dom == -1].sum() == 0
    with pytest.raises(ValueError, match="wants 30 training examples"):
        _zoo._example_weights([effrob.ZooModel("linear", 1.0, 30, 0.0, 8)], dom, jax.random.key(0))
    assert specs[2].group(("books", "kitchen")) == "books+kitchen"
    assert specs[1].group(("books", "kitchen")) == "kitchen"


@pytest.mark.parametrize("hidden", [0, 4])
def test_mask_features_equals_masked_input(hidden):
    model = effrob.BowClassifier(hidden=hidden)
    params = model.init(jax.random.key(0), jnp.zeros((1, 8)))["params"]
    mask = (jnp.arange(8) < 5).astype(jnp.float32)
    x = jax.random.normal(jax.random.key(1), (3, 8))
    a = model.apply({"params": _zoo.mask_features(params, mask)}, x)
    b = model.apply({"params": params}, x * mask)
    chex.assert_trees_all_close(a, b, atol=1e-6)


@jax.default_matmul_precision("highest")  # the two gradients differ only by rounding
def test_summed_loss_gradient_is_each_models_own_gradient():
    model = effrob.BowClassifier(hidden=3)
    m, d, n = 4, 6, 10
    params = jax.vmap(lambda k: model.init(k, jnp.zeros((1, d)))["params"])(
        jax.random.split(jax.random.key(0), m)
    )
    masks = (jnp.arange(d)[None] < jnp.array([[2], [6], [4], [6]])).astype(jnp.float32)
    l2s = jnp.array([0.0, 0.1, 0.01, 1.0])
    rng = np.random.default_rng(0)
    batch = {
        "x": jnp.asarray(rng.normal(size=(n, d)), jnp.float32),
        "y": jnp.asarray(rng.integers(0, 2, n)),
        "w": jnp.asarray(rng.random((n, m)) < 0.6, jnp.float32),
    }
    loss_fn = _zoo._make_loss(model, masks, l2s)
    grads = jax.jit(jax.grad(lambda p: loss_fn(p, batch, None)[0]))(params)

    @jax.jit
    def alone_grad(p, i):
        def alone(p):
            p = _zoo.mask_features(p, masks[i])
            logits = model.apply({"params": p}, batch["x"])
            nll = optax.sigmoid_binary_cross_entropy(logits, batch["y"].astype(jnp.float32))
            w = batch["w"][:, i]
            reg = jnp.sum(p["hidden"]["kernel"] ** 2) + jnp.sum(p["out"]["kernel"] ** 2)
            return jnp.sum(w * nll) / w.sum() + l2s[i] * reg

        return jax.grad(alone)(p)

    for i in range(m):
        p_i = jax.tree.map(lambda a, i=i: a[i], params)
        chex.assert_trees_all_close(
            jax.tree.map(lambda a, i=i: a[i], grads), alone_grad(p_i, i), atol=1e-5
        )


def test_model_grid_and_unknown_arch():
    import ml_collections

    c = ml_collections.ConfigDict(
        dict(
            archs=("linear", "mlp8"),
            mixes=(1.0, 0.0),
            train_sizes=(5,),
            l2s=(0.1,),
            feat_dims=(4, 8),
        )
    )
    grid = effrob.model_grid(c)
    assert len(grid) == 8 and len({g.name for g in grid}) == 8
    with pytest.raises(ValueError, match="unknown zoo architecture"):
        _zoo._hidden("cnn")
