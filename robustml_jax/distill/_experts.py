"""Expert trajectories (MTT's ``buffer.py``): K networks trained with plain SGD, every epoch saved.

Each expert trains with the core train loop (``robustml_jax.core.train.train_loop``) in its own
folder ``<dir>/expert_<k>``; its orbax checkpoints are taken once per epoch and all kept, so the
checkpoint folder *is* the trajectory (step e * steps_per_epoch = epoch e, step 0 = the
initialisation). A killed run resumes inside the expert it was training.

Shapes: K = experts, E = epochs, P = flattened parameters.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from robustml_jax.core import train
from robustml_jax.core.checkpoint import Checkpointer, CheckpointError
from robustml_jax.distill._matching import soft_cross_entropy

__all__ = ["expert_dir", "load_trajectories", "stack_trajectories", "train_experts"]


def expert_dir(directory: str | pathlib.Path, k: int) -> pathlib.Path:
    return pathlib.Path(directory) / f"expert_{k:03d}"


def _sgd(lr: float) -> optax.GradientTransformation:
    return optax.sgd(lr)  # MTT's experts: no momentum, no weight decay


def train_experts(
    directory: str | pathlib.Path,
    key: jax.Array,
    train_data: dict,
    *,
    init_fn: Callable[[jax.Array], Any],
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    num_experts: int,
    num_epochs: int,
    lr: float,
    batch_size: int,
    num_classes: int,
    augment_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    eval_fn: Callable[[Any], dict] | None = None,
    mesh=None,
    progress: bool = True,
) -> list[dict]:
    """Trains (or resumes) K experts and saves every epoch's parameters.

    Args:
      directory: where ``expert_<k>/checkpoints`` go.
      key: base key; expert k uses ``fold_in(key, k)``.
      train_data: ``{"image": float32 [N, H, W, Ch], "label": int32 [N]}`` (preprocessed).
      init_fn: ``init_fn(key) -> params``.
      apply_fn: ``apply_fn(params, x) -> logits``.
      num_epochs: E; epochs 0..E are saved.
      lr: SGD step size (MTT: 0.01).
      eval_fn: ``eval_fn(params) -> metrics`` run on each finished expert.

    Returns:
      One metrics dict per expert (its final eval metrics).
    """
    if num_experts <= 0 or num_epochs <= 0:
        raise ValueError(
            f"need num_experts > 0 and num_epochs > 0, got {num_experts}, {num_epochs}"
        )
    tx = _sgd(lr)

    def loss_fn(params, batch, rng):
        x = batch["image"] if augment_fn is None else augment_fn(rng, batch["image"])
        logits = apply_fn(params, x)
        loss = soft_cross_entropy(logits, jax.nn.one_hot(batch["label"], num_classes))
        return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}

    out = []
    for k in range(num_experts):
        k_key = jax.random.fold_in(key, k)
        init_key, data_key, train_key = jax.random.split(k_key, 3)
        folder = expert_dir(directory, k)
        batch_fn = train.epoch_batches(train_data, batch_size, data_key)
        per_epoch = batch_fn.steps_per_epoch
        state = train.create_train_state(init_fn(init_key), tx)
        ckpt = Checkpointer(folder / "checkpoints", max_to_keep=num_epochs + 1)
        if ckpt.latest_step() is None:
            ckpt.save(0, state, force=True)  # epoch 0 = the initialisation
        ckpt.close()
        loop = train.LoopConfig(
            num_steps=num_epochs * per_epoch,
            log_every=max(per_epoch // 4, 1),
            checkpoint_every=per_epoch,
            max_to_keep=num_epochs + 1,
            progress=progress,
        )
        _, metrics = train.train_loop(
            state,
            loss_fn=loss_fn,
            tx=tx,
            batch_fn=batch_fn,
            key=train_key,
            workdir=folder,
            config=loop,
            eval_fn=eval_fn,
            mesh=mesh,
            desc=f"expert {k}",
        )
        out.append(metrics)
    return out


def stack_trajectories(trajectories: Sequence[Sequence[Any]]) -> jax.Array:
    """Stacks K trajectories of E + 1 parameter pytrees into one flat buffer.

    Raises:
      ValueError: trajectories of different lengths, or parameter trees / shapes / dtypes
        that differ from the first expert's first epoch.
    """
    if not trajectories or not trajectories[0]:
        raise ValueError("no expert trajectories given")
    ref = trajectories[0][0]
    ref_def = jax.tree.structure(ref)
    ref_shapes = [(np.shape(a), np.asarray(a).dtype) for a in jax.tree.leaves(ref)]
    rows = []
    for k, traj in enumerate(trajectories):
        if len(traj) != len(trajectories[0]):
            raise ValueError(
                f"expert {k} has {len(traj)} epochs, expert 0 has {len(trajectories[0])}"
            )
        flat_traj = []
        for e, params in enumerate(traj):
            shapes = [(np.shape(a), np.asarray(a).dtype) for a in jax.tree.leaves(params)]
            if jax.tree.structure(params) != ref_def or shapes != ref_shapes:
                raise ValueError(
                    f"expert {k} epoch {e}: parameter tree {jax.tree.structure(params)} "
                    f"{shapes} is inconsistent with expert 0 epoch 0: {ref_def} {ref_shapes}"
                )
            flat_traj.append(ravel_pytree(params)[0])
        rows.append(jnp.stack(flat_traj))
    return jnp.stack(rows)


def load_trajectories(
    directory: str | pathlib.Path,
    template_params: Any,
    *,
    num_experts: int,
    epochs: int,
) -> jax.Array:
    """Loads epochs 0..``epochs`` of experts 0..K-1 as a flat buffer [K, epochs + 1, P].

    Raises:
      FileNotFoundError: an expert folder or one of its epochs is missing.
      ValueError: a saved parameter tree does not match ``template_params``.
    """
    trajectories = []
    for k in range(num_experts):
        folder = expert_dir(directory, k) / "checkpoints"
        if not folder.is_dir():
            raise FileNotFoundError(
                f"expert {k}: no trajectory at {folder} (train the experts first, or point "
                f"expert_dir at a folder holding {num_experts} experts)"
            )
        ckpt = Checkpointer(folder, max_to_keep=10**6)
        steps = sorted(ckpt.all_steps())
        if len(steps) < 2:
            raise FileNotFoundError(f"expert {k}: {folder} holds {len(steps)} epoch(s), need > 1")
        per_epoch = steps[1] - steps[0]
        wanted = [e * per_epoch for e in range(epochs + 1)]
        missing = [s // per_epoch for s in wanted if s not in steps]
        if missing:
            raise FileNotFoundError(
                f"expert {k}: epochs {missing} missing in {folder} (have steps {steps}); was "
                "its training interrupted?"
            )
        target = train.create_train_state(template_params, _sgd(0.0))
        traj = []
        for s in wanted:
            try:
                traj.append(ckpt.restore(target, step=s).params)
            except CheckpointError as e:
                raise ValueError(
                    f"expert {k} epoch {s // per_epoch}: parameter tree inconsistent with the "
                    f"model: {e}"
                ) from e
        ckpt.close()
        trajectories.append(traj)
    return stack_trajectories(trajectories)
