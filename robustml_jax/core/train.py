"""The shared train state, train step and resumable train/eval loop.

The model interface follows t5x: ``loss_fn(params, batch, rng) -> (loss, metrics)`` where
``metrics`` is a dict of scalars. Per-step randomness is ``jax.random.fold_in(key, step)`` and
batches are a pure function of the step (:func:`epoch_batches`), so a run resumed from a
checkpoint reproduces the uninterrupted run bit for bit on the same device configuration.

Shapes: B = global batch size, N = dataset size.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from robustml_jax.core import checkpoint as ckpt_lib
from robustml_jax.core import sharding
from robustml_jax.core.results import MetricsLogger

__all__ = [
    "LoopConfig",
    "TrainState",
    "create_train_state",
    "epoch_batches",
    "make_train_step",
    "train_loop",
]

LossFn = Callable[[Any, Mapping[str, Any], jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]


@flax.struct.dataclass
class TrainState:
    """Immutable training state: what a checkpoint holds."""

    step: jax.Array
    params: Any
    opt_state: Any

    @property
    def num_params(self) -> int:
        return int(sum(np.prod(x.shape) for x in jax.tree.leaves(self.params)))


def create_train_state(params, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation):
    """Builds ``train_step(state, batch, key) -> (state, metrics)`` (pure; caller jits).

    ``key`` is the run's base key; the step's key is ``fold_in(key, state.step)``.
    """

    def train_step(state: TrainState, batch, key: jax.Array):
        step_key = jax.random.fold_in(key, state.step)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, batch, step_key
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, **metrics, "grad_norm": optax.tree.norm(grads)}
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return train_step


def epoch_batches(data: Mapping[str, np.ndarray], batch_size: int, key: jax.Array):
    """Returns ``batch_fn(step) -> batch``: shuffled epochs without replacement, drop remainder.

    The permutation of epoch e is ``jax.random.permutation(fold_in(key, e), N)``, so the batch at
    a given step does not depend on what ran before (resumable).

    Args:
      data: dict of arrays with the same leading size N.
      batch_size: B <= N.
    """
    sizes = {k: len(v) for k, v in data.items()}
    n = next(iter(sizes.values()))
    if len(set(sizes.values())) != 1:
        raise ValueError(f"arrays have different leading sizes: {sizes}")
    if not 0 < batch_size <= n:
        raise ValueError(
            f"batch_size must be in [1, {n}] for a dataset of {n} rows, got {batch_size}"
        )
    per_epoch = n // batch_size
    cache: dict[int, np.ndarray] = {}

    def batch_fn(step: int):
        epoch, i = divmod(int(step), per_epoch)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))
        idx = cache[epoch][i * batch_size : (i + 1) * batch_size]
        return {k: v[idx] for k, v in data.items()}

    batch_fn.steps_per_epoch = per_epoch
    return batch_fn


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Static loop settings."""

    num_steps: int
    log_every: int = 50
    eval_every: int = 0
    checkpoint_every: int = 100
    max_to_keep: int = 3
    progress: bool = True


def train_loop(
    state: TrainState,
    *,
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    batch_fn: Callable[[int], Any],
    key: jax.Array,
    workdir: str | os.PathLike,
    config: LoopConfig,
    eval_fn: Callable[[Any], Mapping[str, Any]] | None = None,
    mesh: Mesh | None = None,
    desc: str = "train",
) -> tuple[TrainState, dict[str, Any]]:
    """Runs (or resumes) training for ``config.num_steps`` steps.

    Checkpoints go to ``<workdir>/checkpoints`` every ``checkpoint_every`` steps and at the end;
    metrics (train means over each ``log_every`` window, eval results) are appended to
    ``<workdir>/metrics.jsonl``. If a checkpoint exists, training resumes from it and the log is
    truncated to that step, so the files end up as an uninterrupted run's.

    Args:
      state: the initial state (also the structure checkpoints are restored into).
      loss_fn: ``loss_fn(params, batch, rng) -> (loss, metrics)``.
      tx: the optimizer that built ``state.opt_state``.
      batch_fn: ``batch_fn(step) -> batch`` of global batches (numpy pytrees).
      key: base PRNG key.
      eval_fn: ``eval_fn(params) -> metrics``, run every ``eval_every`` steps and at the end.
      mesh: data-parallel mesh; default a mesh over all devices.

    Returns:
      The final state and the last eval metrics (plus ``train_time_s``).
    """
    workdir = pathlib.Path(workdir)
    mesh = mesh if mesh is not None else sharding.data_mesh()
    ckpt = ckpt_lib.Checkpointer(
        workdir / "checkpoints", max_to_keep=config.max_to_keep, save_every=config.checkpoint_every
    )
    logger = MetricsLogger(workdir)
    start = 0
    if ckpt.latest_step() is not None:
        state = ckpt.restore(state)
        start = int(state.step)
        logger.truncate_after(start)
    elif logger.path.exists():
        logger.truncate_after(-1)

    repl = sharding.replicated_sharding(mesh)
    state = jax.device_put(state, repl)
    step_fn = jax.jit(
        make_train_step(loss_fn, tx),
        in_shardings=(repl, sharding.batch_sharding(mesh), repl),
        out_shardings=(repl, repl),
        donate_argnums=(0,),
    )
    key = jax.device_put(key, repl)
    window: list[Mapping[str, jax.Array]] = []
    last_eval: dict[str, Any] = {}
    t0 = time.perf_counter()
    bar = _progress(config, start, desc)
    for step in range(start, config.num_steps):
        batch = _process_local(batch_fn(step))
        batch = sharding.shard_batch(batch, mesh)
        state, metrics = step_fn(state, batch, key)
        window.append(metrics)
        done = step + 1
        if done % config.log_every == 0 or done == config.num_steps:
            means = {k: float(np.mean([float(m[k]) for m in window])) for k in window[0]}
            logger.write(done, split="train", **means)
            window = []
            if bar is not None:
                bar.set_postfix(loss=f"{means['loss']:.4f}")
        if eval_fn is not None and (
            (config.eval_every and done % config.eval_every == 0) or done == config.num_steps
        ):
            last_eval = {k: _scalar(v) for k, v in eval_fn(state.params).items()}
            logger.write(done, split="eval", **last_eval)
        ckpt.save(done, state, force=done == config.num_steps)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    ckpt.close()
    if eval_fn is not None and not last_eval:  # resumed after the final step: re-evaluate
        last_eval = {k: _scalar(v) for k, v in eval_fn(state.params).items()}
    return state, {**last_eval, "train_time_s": time.perf_counter() - t0}


def _process_local(batch):
    """This process's rows of a global batch (the whole batch when single-process)."""
    if jax.process_count() == 1:
        return batch
    rows = sharding.process_rows(len(jax.tree.leaves(batch)[0]))
    return jax.tree.map(lambda x: x[rows], batch)


def _scalar(v):
    arr = np.asarray(v)
    return arr.item() if arr.ndim == 0 else arr.tolist()


def _progress(config: LoopConfig, start: int, desc: str):
    if not config.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.num_steps, initial=start, desc=desc, mininterval=2.0, leave=False)
