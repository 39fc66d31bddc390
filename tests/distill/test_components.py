"""Tests of experts, soft labels, evaluation training and data preparation."""

import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax.core.metrics import stacked_accuracy as accuracy
from robustml_jax.distill import (
    fit_preprocessor,
    load_split,
    load_trajectories,
    real_subset,
    soft_label_assignment,
    stack_trajectories,
    train_experts,
    train_networks,
    trajectory_matching_loss,
)
from robustml_jax.models.convnet import ConvNet, ConvNetD4

MODEL = ConvNet(num_classes=3, width=4, depth=1)


def init_fn(key):
    return MODEL.init(key, jnp.zeros((1, 6, 6, 1)))["params"]


def apply_fn(params, x):
    return MODEL.apply({"params": params}, x)


def _toy(n=60, seed=0):
    """Three classes that differ in mean brightness (learnable by a tiny ConvNet)."""
    labels = np.arange(n) % 3
    noise = np.asarray(jax.random.normal(jax.random.key(seed), (n, 6, 6, 1)))
    return (noise * 0.3 + labels[:, None, None, None] - 1.0).astype(np.float32), labels


def test_convnet_shapes():
    x = jnp.zeros((2, 16, 16, 3))
    model = ConvNetD4(num_classes=7, width=4)
    p = jax.jit(model.init)(jax.random.key(0), x)["params"]
    chex.assert_shape(jax.jit(model.apply)({"params": p}, x), (2, 7))
    assert "Conv_3" in p and "Conv_4" not in p
    with pytest.raises(ValueError, match="expects images"):
        MODEL.init(jax.random.key(0), jnp.zeros((6, 6, 1)))


def _train_toy_experts(d, **kwargs):
    x, y = _toy()
    kwargs = {"num_experts": 2, "num_epochs": 2, **kwargs}
    return train_experts(
        jax.random.key(0),
        {"image": x, "label": y},
        directory=d,
        init_fn=init_fn,
        apply_fn=apply_fn,
        lr=0.1,
        batch_size=20,
        num_classes=3,
        progress=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def experts(tmp_path_factory):
    d = tmp_path_factory.mktemp("experts")
    return d, _train_toy_experts(d)


def test_experts_save_every_epoch_and_resume(experts):
    d, _ = experts
    buf = load_trajectories(init_fn(jax.random.key(0)), directory=d, num_experts=2, epochs=2)
    n_params = sum(a.size for a in jax.tree.leaves(init_fn(jax.random.key(0))))
    chex.assert_shape(buf, (2, 3, n_params))
    assert float(jnp.linalg.norm(buf[:, 1] - buf[:, 0])) > 0  # experts moved
    assert float(jnp.linalg.norm(buf[0, 0] - buf[1, 0])) > 0  # different initialisations
    # Re-running finds the finished trajectories and leaves them unchanged.
    _train_toy_experts(d)
    again = load_trajectories(init_fn(jax.random.key(0)), directory=d, num_experts=2, epochs=2)
    np.testing.assert_array_equal(buf, again)


def test_expert_killed_after_training_resumes_from_its_checkpoints(experts, tmp_path):
    """A run killed after expert 1 trained but before its item was saved (here: its eval
    raises) keeps expert 0's item and rebuilds expert 1 from the train loop's checkpoints, equal
    to the uninterrupted run."""
    d, _ = experts
    # Expert 0 is done (its item copied from the uninterrupted run); expert 1 gets "killed".
    shutil.copytree(d / "trajectories" / "expert_000", tmp_path / "trajectories" / "expert_000")
    calls = [1]

    def eval_fn(params):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # "killed" at the end of expert 1
        return {"test_accuracy": 0.5}

    with pytest.raises(KeyboardInterrupt):
        _train_toy_experts(tmp_path, eval_fn=eval_fn)
    assert sorted(p.name for p in (tmp_path / "trajectories").iterdir()) == ["expert_000"]
    assert (tmp_path / "training" / "expert_001" / "checkpoints").is_dir()
    metrics = _train_toy_experts(tmp_path, eval_fn=eval_fn)
    assert metrics[1]["test_accuracy"] == 0.5 and len(calls) == 3
    assert not (tmp_path / "training" / "expert_001" / "checkpoints").exists()
    template = init_fn(jax.random.key(0))
    np.testing.assert_array_equal(
        load_trajectories(template, directory=tmp_path, num_experts=2, epochs=2),
        load_trajectories(template, directory=d, num_experts=2, epochs=2),
    )
    with pytest.raises(ValueError, match="expert 0 .* has 2 epochs, fewer than the 3"):
        _train_toy_experts(tmp_path, num_epochs=3)


def test_expert_errors(experts, tmp_path):
    d, _ = experts
    with pytest.raises(FileNotFoundError, match="expert 2: no trajectory"):
        load_trajectories(init_fn(jax.random.key(0)), directory=d, num_experts=3, epochs=2)
    with pytest.raises(FileNotFoundError, match=r"holds epochs 0\.\.2, need 0\.\.3"):
        load_trajectories(init_fn(jax.random.key(0)), directory=d, num_experts=1, epochs=3)
    wrong = ConvNet(num_classes=3, width=5, depth=1).init(
        jax.random.key(0), jnp.zeros((1, 6, 6, 1))
    )["params"]
    with pytest.raises(ValueError, match="inconsistent with the model"):
        load_trajectories(wrong, directory=d, num_experts=1, epochs=1)
    p = init_fn(jax.random.key(0))
    with pytest.raises(ValueError, match="inconsistent with expert 0 epoch 0"):
        stack_trajectories([[p, p], [p, wrong]])
    with pytest.raises(ValueError, match="expert 1 has 1 epochs"):
        stack_trajectories([[p, p], [p]])
    with pytest.raises(FileNotFoundError, match="no trajectory"):
        load_trajectories(p, directory=tmp_path, num_experts=1, epochs=1)


def test_soft_label_assignment_and_learned_labels(experts):
    d, _ = experts
    buf = load_trajectories(init_fn(jax.random.key(0)), directory=d, num_experts=1, epochs=2)
    from jax.flatten_util import ravel_pytree

    unravel = ravel_pytree(init_fn(jax.random.key(0)))[1]
    start, target = unravel(buf[0, 1]), unravel(buf[0, 2])
    x, _ = _toy(9, seed=1)
    labels = soft_label_assignment(target, jnp.asarray(x), apply_fn=apply_fn)
    chex.assert_shape(labels, (9, 3))
    np.testing.assert_allclose(labels.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(labels, jax.nn.softmax(apply_fn(target, x)), rtol=1e-6)
    # Labels are targets: no gradient flows through SLA into the images.
    g = jax.grad(lambda v: jnp.sum(soft_label_assignment(target, v, apply_fn=apply_fn) ** 2))(x)
    np.testing.assert_array_equal(g, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        soft_label_assignment(target, x, apply_fn=apply_fn, temperature=0.0)

    # Learned labels: the matching loss has a nonzero gradient w.r.t. the label logits.
    def loss(logits):
        return trajectory_matching_loss(
            jnp.asarray(x),
            jax.nn.softmax(logits),
            0.1,
            jax.random.key(0),
            start,
            target,
            apply_fn=apply_fn,
            num_steps=2,
            batch_size=3,
            gradient="tesla",
        )

    g = jax.grad(loss)(jnp.zeros((9, 3)))
    assert float(jnp.abs(g).sum()) > 0


def test_train_networks_learns_and_accuracy():
    x, y = _toy(30)
    keys = jax.random.split(jax.random.key(0), 2)
    fit = jax.jit(
        lambda k, xx, yy, lr: train_networks(
            k, xx, yy, lr, init_fn=init_fn, apply_fn=apply_fn, num_epochs=30, batch_size=10
        )
    )
    params = fit(keys, jnp.asarray(x), jax.nn.one_hot(y, 3), jnp.float32(0.05))
    chex.assert_shape(jax.tree.leaves(params)[0], (2, *jax.tree.leaves(init_fn(keys[0]))[0].shape))
    xt, yt = _toy(60, seed=5)
    acc = accuracy(params, xt, yt, apply_fn=apply_fn, chunk=25)
    chex.assert_shape(acc, (2,))
    assert acc.min() > 0.9  # chance is 1/3
    untrained = jax.vmap(init_fn)(keys)
    assert accuracy(untrained, xt, yt, apply_fn=apply_fn).max() < acc.min()


def test_preprocessor_and_zca():
    imgs = np.asarray(jax.random.randint(jax.random.key(0), (300, 4, 4, 2), 0, 256), np.uint8)
    pre = fit_preprocessor(imgs, zca=False)
    x = pre(imgs)
    np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(0, 1, 2)), 1.0, atol=1e-4)
    # ZCA with a tiny eps whitens: the covariance becomes the identity.
    zpre = fit_preprocessor(imgs, zca=True, zca_eps=1e-6)
    z = zpre(imgs).reshape(300, -1)
    cov = np.cov(z, rowvar=False)
    np.testing.assert_allclose(cov, np.eye(32), atol=1e-3)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        fit_preprocessor(imgs, zca=True, zca_fit_examples=10)


def test_real_subset():
    labels = np.repeat(np.arange(4), 5)
    idx = real_subset(jax.random.key(0), labels, per_class=3, num_classes=4)
    chex.assert_shape(idx, (12,))
    np.testing.assert_array_equal(labels[idx], np.repeat(np.arange(4), 3))
    assert len(set(idx.tolist())) == 12
    with pytest.raises(ValueError, match="fewer than 6"):
        real_subset(jax.random.key(0), labels, per_class=6, num_classes=4)


@pytest.mark.parametrize("name, size", [("cifar100", 32), ("imagenet64", 64)])
def test_full_config_datasets_through_tfds_mock_data(name, size):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        d = load_split(name, "test")
    chex.assert_shape(d["image"], (6, size, size, 3))
    assert d["image"].dtype == np.uint8 and d["label"].dtype == np.int32


def test_tfds_only_dataset_missing_is_a_clear_error(tmp_path, monkeypatch):
    from robustml_jax.core.datasets import DatasetNotFoundError

    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="cifar100"):
        load_split("cifar100", "train")
