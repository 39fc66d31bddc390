"""The zoo: features, training-set draws, masking, and that the vmapped scan trainer trains each
model exactly as it would train alone."""

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


@jax.default_matmul_precision("highest")  # the two trainings differ only by rounding
def test_vmapped_training_is_each_models_own_training():
    """train_zoo_models (core.train_many over the models) gives every model exactly what Adam on
    that model's own objective (independent reference, written out here) gives."""
    hidden, m, d, n, steps = 3, 4, 6, 10, 5
    model = effrob.BowClassifier(hidden=hidden)
    init = jax.vmap(lambda k: model.init(k, jnp.zeros((1, d)))["params"])(
        jax.random.split(jax.random.key(0), m)
    )
    rng = np.random.default_rng(0)
    hp = {
        "init": init,
        "mask": (jnp.arange(d)[None] < jnp.array([[2], [6], [4], [6]])).astype(jnp.float32),
        "l2": jnp.array([0.0, 0.1, 0.01, 1.0]),
        "weights": jnp.asarray(rng.random((m, n)) < 0.6, jnp.float32),
    }
    x = jnp.asarray(rng.normal(size=(n, d)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 2, n))
    params, losses = jax.jit(
        effrob.train_zoo_models, static_argnames=("hidden", "learning_rate", "num_steps")
    )(
        jax.random.split(jax.random.key(1), m),
        hp,
        x,
        y,
        hidden=hidden,
        learning_rate=0.1,
        num_steps=steps,
    )
    chex.assert_shape(losses, (m, steps))

    def alone(p, i):
        p = _zoo.mask_features(p, hp["mask"][i])
        logits = model.apply({"params": p}, x)
        nll = optax.sigmoid_binary_cross_entropy(logits, y.astype(jnp.float32))
        w = hp["weights"][i]
        reg = jnp.sum(p["hidden"]["kernel"] ** 2) + jnp.sum(p["out"]["kernel"] ** 2)
        return jnp.sum(w * nll) / w.sum() + hp["l2"][i] * reg

    tx = optax.adam(0.1)
    for i in range(m):
        p = jax.tree.map(lambda a, i=i: a[i], init)
        opt = tx.init(p)
        for step in range(steps):
            loss, g = jax.value_and_grad(alone)(p, i)
            np.testing.assert_allclose(losses[i, step], loss, rtol=1e-5)
            upd, opt = tx.update(g, opt, p)
            p = optax.apply_updates(p, upd)
        chex.assert_trees_all_close(jax.tree.map(lambda a, i=i: a[i], params), p, atol=1e-5)


def test_model_grid_and_unknown_arch():
    grid = effrob.model_grid(
        archs=("linear", "mlp8"), mixes=(1.0, 0.0), train_sizes=(5,), l2s=(0.1,), feat_dims=(4, 8)
    )
    assert len(grid) == 8 and len({g.name for g in grid}) == 8
    with pytest.raises(ValueError, match="unknown zoo architecture"):
        _zoo._hidden("cnn")


def test_sentence_features_are_cached_on_disk(tmp_path):
    """The MiniLM hook: an embedding function's output is a work item keyed by the texts, so a
    second run (or a second featurizer) does not encode again."""
    calls = []

    def embed(texts):
        calls.append(len(texts))
        return np.stack([[len(t), t.count("o")] for t in texts]).astype(np.float32)

    f = _zoo._featurizer("fake", 0, embed, tmp_path)
    a = f("dvd", ["good", "not good", "boo"])
    b = _zoo._featurizer("fake", 0, embed, tmp_path)("dvd", ["good", "not good", "boo"])
    c = f("dvd", ["other texts"])
    np.testing.assert_array_equal(a, b)
    assert calls == [3, 1] and c.shape == (1, 2)
    with pytest.raises(ValueError, match="needs an embed_fn"):
        _zoo._featurizer("minilm", 0, None, tmp_path)


def test_minilm_option_says_what_it_needs():
    from experiments.effrob import train

    assert train.sentence_encoder("hashed") is None
    try:
        import robustml_jax.models.bert as bert

        has_encoder = hasattr(bert, "embed_sentences")
    except ImportError:
        has_encoder = False
    if has_encoder:
        assert callable(train.sentence_encoder("minilm"))
    else:
        with pytest.raises(ValueError, match="embed_sentences"):
            train.sentence_encoder("minilm")
