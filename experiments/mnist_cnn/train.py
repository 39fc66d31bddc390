"""Library side of the worked example: ``train_and_evaluate(config, workdir, runtime)``."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from robustml_jax.core import datasets, losses, train
from robustml_jax.core.distributed import Runtime
from robustml_jax.models import SmallCNN


def _prepare(d):
    return {"image": d["image"].astype(np.float32) / 255.0, "label": d["label"].astype(np.int32)}


def train_and_evaluate(config, workdir: pathlib.Path, runtime: Runtime) -> dict:
    train_data = _prepare(datasets.load(config.dataset, "train"))
    test_data = _prepare(datasets.load(config.dataset, "test"))
    model = SmallCNN(num_classes=10, features=tuple(config.features), hidden=config.hidden)
    root = jax.random.key(config.seed)
    init_key, data_key, train_key = jax.random.split(root, 3)
    params = model.init(init_key, train_data["image"][:1])["params"]
    tx = optax.adam(config.learning_rate)

    def loss_fn(params, batch, rng):
        del rng  # deterministic model
        logits = model.apply({"params": params}, batch["image"])
        loss, accuracy = losses.classification_loss(logits, batch["label"])
        return loss, {"accuracy": accuracy}

    @jax.jit
    def predict(params, x):
        return jnp.argmax(model.apply({"params": params}, x), -1)

    def eval_fn(params):
        pred = np.concatenate(
            [
                predict(params, test_data["image"][i : i + 500])
                for i in range(0, len(test_data["label"]), 500)
            ]
        )
        return {"test_accuracy": float(np.mean(pred == test_data["label"]))}

    state, metrics = train.fit(
        params,
        tx=tx,
        loss_fn=loss_fn,
        batch_fn=train.epoch_batches(train_data, config.batch_size, data_key),
        key=train_key,
        workdir=workdir,
        num_steps=config.num_steps,
        log_every=config.log_every,
        eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
        progress=config.progress,
        eval_fn=eval_fn,
        mesh=runtime.mesh,
        desc="mnist_cnn",
    )
    if runtime.is_main_process:
        leaves = [np.asarray(x) for x in jax.tree.leaves(state.params)]
        np.savez(workdir / "final_params.npz", *leaves)
    return {**metrics, "num_params": state.num_params, "steps": int(state.step)}
