"""Expert trajectories (MTT's ``buffer.py``): K networks trained with plain SGD, every epoch saved.

Each expert is one :class:`~robustml_jax.core.workitems.WorkItems` item
``<dir>/trajectories/expert_<k>``: its parameters after every epoch as a flat float array
``trajectory.npy`` [E + 1, P] (row 0 = the initialisation) and ``meta.json`` (the parameter
tree's layout, the final eval metrics). An item is written atomically once its expert has
finished, so a finished expert is never retrained. The expert itself trains with
:func:`robustml_jax.core.train.fit` in ``<dir>/training/expert_<k>``, whose orbax checkpoints
(one per epoch, all kept) are both the resume point of a killed run and the source of the
trajectory; they are deleted once the item is saved.

Shapes: K = experts, E = epochs, P = flattened parameters, N = training examples.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from robustml_jax.core import train
from robustml_jax.core.checkpoint import Checkpointer
from robustml_jax.core.losses import soft_cross_entropy
from robustml_jax.core.workitems import WorkItems

__all__ = ["Expert", "load_trajectories", "stack_trajectories", "train_experts"]


class Expert(NamedTuple):
    """One finished expert (the value of its work item).

    Attributes:
      trajectory: float [E + 1, P], the flat parameters after epochs 0..E.
      layout: ``[[path, shape, dtype], ...]`` of the parameter tree's leaves, in ravel order.
      metrics: the final eval metrics (plus ``train_time_s``).
    """

    trajectory: np.ndarray
    layout: list
    metrics: dict


def _layout(params: Any) -> list:
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    return [
        [jax.tree_util.keystr(path), list(np.shape(a)), str(np.asarray(a).dtype)]
        for path, a in leaves
    ]


def _save(folder: pathlib.Path, expert: Expert) -> None:
    folder.mkdir(parents=True)
    np.save(folder / "trajectory.npy", np.asarray(expert.trajectory))
    meta = {"layout": expert.layout, "metrics": expert.metrics}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def _load(folder: pathlib.Path) -> Expert:
    meta = json.loads((folder / "meta.json").read_text())
    trajectory = np.load(folder / "trajectory.npy", mmap_mode="r")  # read only the epochs used
    return Expert(trajectory, meta["layout"], meta["metrics"])


def _items(directory: str | pathlib.Path) -> WorkItems:
    return WorkItems(pathlib.Path(directory) / "trajectories", save=_save, load=_load)


def _name(k: int) -> str:
    return f"expert_{k:03d}"


def _sgd(lr: float) -> optax.GradientTransformation:
    return optax.sgd(lr)  # MTT's experts: no momentum, no weight decay


def train_experts(
    key: jax.Array,
    train_data: dict,
    *,
    directory: str | pathlib.Path,
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
    """Trains (or finds, or resumes) K experts and saves every epoch's parameters.

    Args:
      key: base key; expert k uses ``fold_in(key, k)``, split into (init, batch order, steps).
      train_data: ``{"image": float32 [N, H, W, Ch], "label": int32 [N]}`` (preprocessed).
      directory: where the ``trajectories`` items (and ``training`` folders) go.
      init_fn: ``init_fn(key) -> params``.
      apply_fn: ``apply_fn(params, x) -> logits``.
      num_experts: K.
      num_epochs: E; epochs 0..E are saved.
      lr: SGD step size (MTT: 0.01).
      batch_size: examples per step.
      num_classes: C.
      augment_fn: optional ``augment_fn(key, x) -> x`` on every batch (the step's key).
      eval_fn: ``eval_fn(params) -> metrics`` run on each finished expert.
      mesh: the data-parallel mesh of the train loop.
      progress: show progress bars.

    Returns:
      One metrics dict per expert (its final eval metrics, plus ``train_time_s``).

    Raises:
      ValueError: ``num_experts`` or ``num_epochs`` not positive, or a saved expert with fewer
        than ``num_epochs`` epochs.
    """
    if num_experts <= 0 or num_epochs <= 0:
        raise ValueError(
            f"need num_experts > 0 and num_epochs > 0, got {num_experts}, {num_epochs}"
        )
    tx = _sgd(lr)
    items = _items(directory)

    def loss_fn(params, batch, rng):
        x = batch["image"] if augment_fn is None else augment_fn(rng, batch["image"])
        logits = apply_fn(params, x)
        loss = soft_cross_entropy(logits, jax.nn.one_hot(batch["label"], num_classes))
        return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}

    def compute(k: int, workdir: pathlib.Path) -> Expert:
        init_key, data_key, train_key = jax.random.split(jax.random.fold_in(key, k), 3)
        batch_fn = train.epoch_batches(train_data, batch_size, data_key)
        per_epoch = batch_fn.steps_per_epoch
        params0 = init_fn(init_key)
        epoch0 = jax.tree.map(np.array, params0)  # host copy: the train loop donates params0
        _, metrics = train.fit(
            params0,
            tx=tx,
            loss_fn=loss_fn,
            batch_fn=batch_fn,
            key=train_key,
            workdir=workdir,
            num_steps=num_epochs * per_epoch,
            eval_fn=eval_fn,
            mesh=mesh,
            desc=f"expert {k}",
            log_every=max(per_epoch // 4, 1),
            checkpoint_every=per_epoch,
            max_to_keep=num_epochs,
            progress=progress,
        )
        ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=num_epochs)
        target = train.create_train_state(epoch0, tx)
        epochs = [epoch0] + [
            ckpt.restore(target, step=e * per_epoch).params for e in range(1, num_epochs + 1)
        ]
        ckpt.close()
        return Expert(np.asarray(stack_trajectories([epochs])[0]), _layout(epoch0), metrics)

    out = []
    for k in range(num_experts):
        workdir = pathlib.Path(directory) / "training" / _name(k)
        expert = items.get(_name(k), lambda k=k, w=workdir: compute(k, w))
        shutil.rmtree(workdir / "checkpoints", ignore_errors=True)  # the item holds them now
        if len(expert.trajectory) < num_epochs + 1:
            raise ValueError(
                f"expert {k} in {items.path(_name(k))} has {len(expert.trajectory) - 1} epochs, "
                f"fewer than the {num_epochs} asked for (delete it or point expert_dir elsewhere)"
            )
        out.append(expert.metrics)
    return out


def stack_trajectories(trajectories: Sequence[Sequence[Any]]) -> jax.Array:
    """Stacks K trajectories of E + 1 parameter pytrees into one flat buffer [K, E + 1, P].

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


def expert_trajectories(
    template_params: Any, *, directory: str | pathlib.Path, num_experts: int, epochs: int
) -> list:
    """The saved trajectories of experts 0..K-1 (each [>= epochs + 1, P], as loaded: arrays
    stay memory-mapped), checked against ``template_params`` and the epochs needed.

    Raises:
      FileNotFoundError: an expert, or one of its epochs, is missing.
      ValueError: a saved parameter tree does not match ``template_params``.
    """
    items = _items(directory)
    layout = _layout(template_params)
    trajectories = []
    for k in range(num_experts):
        if not items.done(_name(k)):
            raise FileNotFoundError(
                f"expert {k}: no trajectory at {items.path(_name(k))} (train the experts first, "
                f"or point expert_dir at a folder holding {num_experts} experts)"
            )
        expert = items.load(_name(k))
        if expert.layout != layout:
            raise ValueError(
                f"expert {k}: parameter tree inconsistent with the model: saved {expert.layout}, "
                f"model {layout}"
            )
        if len(expert.trajectory) < epochs + 1:
            raise FileNotFoundError(
                f"expert {k}: {items.path(_name(k))} holds epochs 0..{len(expert.trajectory) - 1}, "
                f"need 0..{epochs}"
            )
        trajectories.append(expert.trajectory)
    return trajectories


def load_trajectories(
    template_params: Any,
    *,
    directory: str | pathlib.Path,
    num_experts: int,
    epochs: int,
) -> np.ndarray:
    """Loads epochs 0..``epochs`` of experts 0..K-1 as a flat buffer float [K, epochs + 1, P].

    Args:
      template_params: parameters of the model the experts must match (structure, shapes).
      directory: the ``directory`` given to :func:`train_experts`.
      num_experts: K.
      epochs: the last epoch needed.

    Raises:
      FileNotFoundError: an expert, or one of its epochs, is missing.
      ValueError: a saved parameter tree does not match ``template_params``.
    """
    trajectories = expert_trajectories(
        template_params, directory=directory, num_experts=num_experts, epochs=epochs
    )
    return np.stack([np.asarray(t[: epochs + 1]) for t in trajectories])
