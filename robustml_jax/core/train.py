"""The shared train state, train step, resumable train/eval loop, and scan-based trainers.

Two ways to train, one model interface:

- :func:`train_loop`: one (possibly large, sharded) model, a Python loop over jitted steps with
  orbax checkpoints, metrics (JSON lines + TensorBoard) and a progress bar. Parameter subsets
  can be frozen (:func:`freeze`) and optimizers switched in phases (:func:`phases`), e.g.
  ProMoT's prompt tuning then model tuning.
- :func:`scan_train` / :func:`train_many`: many small models (seeds, learning rates, model
  variants), each trained entirely inside one ``lax.scan`` and lifted over a leading axis with
  ``vmap`` or ``lax.map``; for thousands of short trainings (distillation evaluation, model zoos,
  optimizer search) where a Python loop and checkpoints would dominate.

The model interface follows t5x: ``loss_fn(params, batch, rng) -> (loss, metrics)`` where
``metrics`` is a dict of scalars. Per-step randomness is ``jax.random.fold_in(key, step)`` and
batches are a pure function of the step (:func:`epoch_batches`), so a run resumed from a
checkpoint reproduces the uninterrupted run bit for bit on the same device configuration.

Shapes: B = global batch size, N = dataset size.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

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
    "fit",
    "freeze",
    "make_train_step",
    "phases",
    "scan_train",
    "train_loop",
    "train_many",
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
    shard_batches: bool = True  # False: every device sees the whole batch (replicated)


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
      batch_fn: ``batch_fn(step) -> batch`` of global batches (numpy pytrees). With
        ``config.shard_batches`` (default) rows are split over the mesh's devices; otherwise the
        batch is replicated (for batches whose size does not divide by the device count, or
        full-batch training where the model axis is what is vectorised).
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
    state = sharding.replicate(state, mesh)
    batch_spec = sharding.batch_sharding(mesh) if config.shard_batches else repl
    step_fn = jax.jit(
        make_train_step(loss_fn, tx),
        in_shardings=(repl, batch_spec, repl),
        out_shardings=(repl, repl),
        donate_argnums=(0,),
    )
    key = sharding.replicate(key, mesh)
    window: list[Mapping[str, jax.Array]] = []
    last_eval: dict[str, Any] = {}
    t0 = time.perf_counter()
    bar = _progress(config, start, desc)
    for step in range(start, config.num_steps):
        if config.shard_batches:
            batch = sharding.shard_batch(_process_local(batch_fn(step)), mesh)
        else:
            batch = sharding.replicate(batch_fn(step), mesh)
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
    logger.close()
    if eval_fn is not None and not last_eval:  # resumed after the final step: re-evaluate
        last_eval = {k: _scalar(v) for k, v in eval_fn(state.params).items()}
    return state, {**last_eval, "train_time_s": time.perf_counter() - t0}


def fit(
    params: Any,
    *,
    tx: optax.GradientTransformation,
    loss_fn: LossFn,
    batch_fn: Callable[[int], Any],
    key: jax.Array,
    workdir: str | os.PathLike,
    num_steps: int,
    eval_fn: Callable[[Any], Mapping[str, Any]] | None = None,
    mesh: Mesh | None = None,
    desc: str = "train",
    **loop: Any,
) -> tuple[TrainState, dict[str, Any]]:
    """Creates the train state from ``params`` and runs (or resumes) :func:`train_loop`.

    The one call every experiment makes to train one model; ``**loop`` are the other
    :class:`LoopConfig` fields (``log_every``, ``eval_every``, ``checkpoint_every``,
    ``max_to_keep``, ``progress``, ``shard_batches``).

    Returns:
      The final state and the last eval metrics (plus ``train_time_s``).
    """
    return train_loop(
        create_train_state(params, tx),
        loss_fn=loss_fn,
        tx=tx,
        batch_fn=batch_fn,
        key=key,
        workdir=workdir,
        config=LoopConfig(num_steps=num_steps, **loop),
        eval_fn=eval_fn,
        mesh=mesh,
        desc=desc,
    )


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


# ----------------------------------------------------------------------------- optimizers


def freeze(tx: optax.GradientTransformation, trainable: Any) -> optax.GradientTransformation:
    """``tx`` on the trainable leaves; frozen leaves get zero updates and no optimizer state.

    Args:
      tx: the optimizer of the trainable parameters.
      trainable: a pytree of bools with the parameters' structure (or a prefix of it), or a
        function ``params -> such a pytree`` (e.g. ``lambda p: {"prompt": True, "model": False}``).
    """

    def to_label(t):
        return "train" if t else "freeze"

    if callable(trainable):
        labels = lambda params: jax.tree.map(to_label, trainable(params))
    else:
        labels = jax.tree.map(to_label, trainable)
    return optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)


class PhasesState(NamedTuple):
    count: jax.Array
    inner: tuple


def phases(
    txs: Sequence[optax.GradientTransformation], boundaries: Sequence[int]
) -> optax.GradientTransformation:
    """Runs ``txs[i]`` for the steps in ``[boundaries[i-1], boundaries[i])``.

    Each phase keeps its own state (initialised up front; only the active phase's state
    advances), so phase 2 starts fresh rather than inheriting phase 1's moments, as in ProMoT's
    prompt tuning followed by model tuning: ``phases([freeze(adam_a, only_prompt),
    freeze(adam_b, only_model)], [num_prompt_steps])``.

    Args:
      txs: P optimizers.
      boundaries: P - 1 increasing step counts at which the next phase starts.
    """
    txs = tuple(txs)
    bounds = tuple(int(b) for b in boundaries)
    if len(bounds) != len(txs) - 1:
        raise ValueError(f"{len(txs)} phases need {len(txs) - 1} boundaries, got {len(bounds)}")
    if list(bounds) != sorted(bounds) or any(b < 0 for b in bounds):
        raise ValueError(f"boundaries must be non-negative and increasing, got {bounds}")

    def init(params):
        return PhasesState(jnp.zeros((), jnp.int32), tuple(tx.init(params) for tx in txs))

    def update(updates, state, params=None):
        index = jnp.searchsorted(jnp.asarray(bounds, jnp.int32), state.count, side="right")

        def branch(i):
            def run(operands):
                upd, inner = operands
                new_upd, new_state = txs[i].update(upd, inner[i], params)
                return new_upd, inner[:i] + (new_state,) + inner[i + 1 :]

            return run

        new_updates, inner = jax.lax.switch(
            index, [branch(i) for i in range(len(txs))], (updates, state.inner)
        )
        return new_updates, PhasesState(state.count + 1, inner)

    return optax.GradientTransformation(init, update)


# ----------------------------------------------------------------------------- scan trainers


def scan_train(
    key: jax.Array,
    hparams: Any = None,
    *,
    init_fn: Callable[[jax.Array, Any], Any],
    loss_fn: Callable[[Any, Any, jax.Array, Any], jax.Array],
    make_tx: Callable[[Any], optax.GradientTransformation],
    num_steps: int,
    step_inputs_fn: Callable[[jax.Array, Any], Any] | None = None,
) -> tuple[Any, jax.Array]:
    """Trains one model entirely inside a ``lax.scan`` (pure; jit and lift it with vmap/map).

    The key is split into ``(init_key, data_key, step_key)``: ``init_fn(init_key, hparams)``
    makes the parameters, ``step_inputs_fn(data_key, hparams)`` the per-step inputs (a pytree
    with leading axis ``num_steps``, e.g. minibatch indices), and step ``i`` gets the key
    ``fold_in(step_key, i)``.

    Args:
      key: PRNG key of this model.
      hparams: pytree of this model's hyper-parameters (e.g. a learning rate), passed to every
        callback; traced, so a ``vmap`` over it trains a sweep.
      init_fn: ``init_fn(key, hparams) -> params``.
      loss_fn: ``loss_fn(params, step_input, key, hparams) -> scalar loss``.
      make_tx: ``make_tx(hparams) -> optax.GradientTransformation``.
      num_steps: S, steps of training (static).
      step_inputs_fn: ``step_inputs_fn(key, hparams) -> pytree [S, ...]``; None: no inputs.

    Returns:
      (final params, losses float [S]).
    """
    init_key, data_key, step_key = jax.random.split(key, 3)
    params = init_fn(init_key, hparams)
    tx = make_tx(hparams)
    xs = None if step_inputs_fn is None else step_inputs_fn(data_key, hparams)

    def step(carry, inputs):
        params, opt_state = carry
        i, x = inputs
        loss, grads = jax.value_and_grad(loss_fn)(
            params, x, jax.random.fold_in(step_key, i), hparams
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), (jnp.arange(num_steps), xs))
    return params, losses


def train_many(
    keys: jax.Array,
    hparams: Any = None,
    *,
    lift: str = "vmap",
    **kwargs: Any,
) -> tuple[Any, jax.Array]:
    """:func:`scan_train` for R models at once (pure; the caller jits).

    Args:
      keys: [R] PRNG keys, one per model.
      hparams: pytree with leading axis R on every leaf, or None.
      lift: ``"vmap"`` (one batched program: best for small dense models and on accelerators)
        or ``"map"`` (``lax.map``, one model after another inside one compiled program: vmapping
        a convolution over R kernels makes a grouped convolution that XLA's CPU backend runs an
        order of magnitude slower than R plain ones).
      **kwargs: the keyword arguments of :func:`scan_train`.

    Returns:
      (params with leading axis R on every leaf, losses float [R, S]).
    """
    one = functools.partial(scan_train, **kwargs)
    if lift == "vmap":
        return jax.vmap(one)(keys, hparams)
    if lift == "map":
        return jax.lax.map(lambda kh: one(*kh), (keys, hparams))
    raise ValueError(f"lift must be 'vmap' or 'map', got {lift!r}")
