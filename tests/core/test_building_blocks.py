"""core.losses, core.workitems, core.configs, core.plotting and the train-module optimizers."""

from __future__ import annotations

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from robustml_jax.core import configs, losses, plotting, train, workitems
from robustml_jax.core.errors import ConfigError


def test_soft_cross_entropy_and_smoothing():
    logits = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    y = jnp.array([0, 2])
    onehot = jax.nn.one_hot(y, 3)
    ref = -np.mean(np.log(jax.nn.softmax(logits)[np.arange(2), y]))
    np.testing.assert_allclose(losses.soft_cross_entropy(logits, onehot), ref, rtol=1e-6)
    loss, acc = losses.classification_loss(logits, y)
    np.testing.assert_allclose(loss, ref, rtol=1e-6)
    assert float(acc) == 0.5
    eps = 0.3
    smoothed = (1 - eps) * onehot + eps / 3
    ref_s = -np.mean(np.sum(smoothed * jax.nn.log_softmax(logits), -1))
    np.testing.assert_allclose(
        losses.soft_cross_entropy(logits, onehot, label_smoothing=eps), ref_s, rtol=1e-6
    )
    with pytest.raises(ValueError, match="must have one shape"):
        losses.soft_cross_entropy(logits, onehot[:, :2])


def test_workitems_compute_once_and_survive_a_killed_save(tmp_path):
    items = workitems.WorkItems(tmp_path / "items")
    calls = []

    def compute():
        calls.append(1)
        return {"w": np.arange(3.0), "b": np.float32(2.0)}

    a = items.get("m0", compute)
    b = workitems.WorkItems(tmp_path / "items").get("m0", compute)
    assert len(calls) == 1
    chex.assert_trees_all_close(jax.tree.map(np.asarray, a), jax.tree.map(np.asarray, b))
    assert items.names() == ["m0"]

    def broken_save(path, value):
        os.makedirs(path)
        (path / "half").write_text("x")
        raise KeyboardInterrupt  # killed mid-save

    bad = workitems.WorkItems(tmp_path / "items", save=broken_save)
    with pytest.raises(KeyboardInterrupt):
        bad.get("m1", compute)
    assert not bad.done("m1") and bad.names() == ["m0"]
    assert items.get("m1", compute) is not None and len(calls) == 3
    with pytest.raises(ValueError, match="bad work item name"):
        items.get("../x", compute)


def test_workitems_accept_a_relative_folder(tmp_path, monkeypatch):
    # orbax refuses relative checkpoint paths; a relative workdir (paper 6's tree items, found
    # by paper 7) must still save and reload.
    monkeypatch.chdir(tmp_path)
    items = workitems.WorkItems("rel/items")
    a = items.get("m0", lambda: {"w": np.arange(3.0)})
    b = workitems.WorkItems("rel/items").get("m0", lambda: 1 / 0)
    np.testing.assert_array_equal(np.asarray(a["w"]), np.asarray(b["w"]))
    assert (tmp_path / "rel" / "items").is_dir()


def test_config_variants_and_checks():
    def get(arg):
        c = configs.base(num_steps=10)
        c.data = configs.base(limit=5)  # any nested ConfigDict
        return configs.variant(c, arg, {"smoke": {"num_steps": 2, "data.limit": 1}, "small": {}})

    assert get("smoke").num_steps == 2 and get("smoke").data.limit == 1
    assert get("small").num_steps == 10 and get("small").seed == 0
    with pytest.raises(ConfigError, match="unknown config 'huge'; choose one of: smoke, small"):
        get("huge")
    c = get("small")
    c.num_steps = -3
    with pytest.raises(ConfigError, match=r"config.num_steps=-3: must be a positive integer"):
        configs.check(c, "num_steps", lambda v: v > 0, "a positive integer")


def test_freeze_leaves_frozen_params_untouched():
    params = {"prompt": jnp.ones(3), "model": jnp.ones(2)}
    tx = train.freeze(optax.sgd(0.1), {"prompt": True, "model": False})
    grads = {"prompt": jnp.ones(3), "model": jnp.ones(2)}
    upd, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(upd["prompt"], -0.1)
    np.testing.assert_allclose(upd["model"], 0.0)


def test_phases_switch_optimizer_and_keep_separate_state():
    params = {"prompt": jnp.zeros(()), "model": jnp.zeros(())}
    p1 = train.freeze(optax.sgd(1.0), {"prompt": True, "model": False})
    p2 = train.freeze(optax.sgd(10.0), {"prompt": False, "model": True})
    tx = jax.jit(train.phases([p1, p2], [2]).update)
    state = train.phases([p1, p2], [2]).init(params)
    grads = {"prompt": jnp.ones(()), "model": jnp.ones(())}
    seen = []
    for _ in range(4):
        upd, state = tx(grads, state, params)
        seen.append((float(upd["prompt"]), float(upd["model"])))
    assert seen == [(-1.0, 0.0), (-1.0, 0.0), (0.0, -10.0), (0.0, -10.0)]
    with pytest.raises(ValueError, match="2 phases need 1 boundaries"):
        train.phases([p1, p2], [])


def test_train_many_equals_separate_runs_and_vmap_equals_map():
    x = jax.random.normal(jax.random.key(0), (32, 3))
    w_true = jnp.array([1.0, -2.0, 0.5])
    y = x @ w_true

    kwargs = dict(
        init_fn=lambda k, lr: 0.1 * jax.random.normal(k, (3,)),
        loss_fn=lambda w, idx, k, lr: jnp.mean((x[idx] @ w - y[idx]) ** 2),
        make_tx=lambda lr: optax.sgd(lr),
        num_steps=50,
        step_inputs_fn=lambda k, lr: jax.random.randint(k, (50, 8), 0, 32),
    )
    keys = jax.random.split(jax.random.key(1), 3)
    lrs = jnp.array([0.01, 0.05, 0.1])
    pv, lv = jax.jit(lambda k, h: train.train_many(k, h, lift="vmap", **kwargs))(keys, lrs)
    pm, _ = jax.jit(lambda k, h: train.train_many(k, h, lift="map", **kwargs))(keys, lrs)
    chex.assert_shape(pv, (3, 3))
    chex.assert_shape(lv, (3, 50))
    chex.assert_trees_all_close(pv, pm, atol=1e-6)
    for r in range(3):
        p1, _ = train.scan_train(keys[r], lrs[r], **kwargs)
        chex.assert_trees_all_close(p1, pv[r], atol=1e-6)
    # More learning rate, more progress in 50 steps; the largest gets close to the truth.
    final = [float(jnp.mean((x @ pv[r] - y) ** 2)) for r in range(3)]
    assert final[0] > final[1] > final[2] and final[2] < 1e-2


def test_plotting_is_pyplot_free(tmp_path):
    import sys

    had_pyplot = "matplotlib.pyplot" in sys.modules
    fig, ax = plotting.subplots(1, 2, figsize=(4, 2))
    ax[0].plot([0, 1], [1, 0])
    path = plotting.save(fig, tmp_path / "f.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot
    plotting.show(fig)  # no IPython kernel: a no-op, not an error
