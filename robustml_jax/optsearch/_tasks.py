"""Tasks on which a rule is evaluated, and the vmapped learning-rate grid x seeds trainer.

Tasks (ENOS section 5): ``mnistnet`` (784-20-10 sigmoid MLP, NLL; the L2L MNISTNet) and its
transfer variants ``mnistnet_relu``, ``mnistnet_2layer`` (two hidden layers of 20),
``mnistnet_wide`` (width 40); ``conv`` (the suite's ConvNet on 32x32 images, width and depth
configurable); ``text`` (a one-hidden-layer classifier on hashed bag-of-words features, for
SST-2). Data is a dict ``{"x": float32 [N, ...], "y": int32 [N]}`` passed as an argument (not
baked into the compiled program).

:func:`train_losses` trains every (learning rate, seed) pair of one optimizer in ONE program:
``core.train.train_many`` over L x R models, each a ``lax.scan`` of S steps on random
minibatches of B examples; seed r fixes the initialisation, the minibatches and the
optimizer's noise for every learning rate (paired comparison across the grid).

Shapes: N examples, L learning rates, R seeds, S steps, B batch size, V hashed vocabulary.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from robustml_jax.core import train as core_train
from robustml_jax.models import ConvNet
from robustml_jax.optsearch._language import OP_NAMES
from robustml_jax.optsearch._optimizer import Program, program_to_optax

__all__ = [
    "TASKS",
    "Task",
    "get_task",
    "hashed_bag_of_words",
    "make_program_evaluator",
    "search_score",
    "train_losses",
]


class _MLP(nn.Module):
    hidden: Sequence[int]
    activation: str
    num_classes: int

    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        act = {"sigmoid": nn.sigmoid, "relu": nn.relu}[self.activation]
        for h in self.hidden:
            x = act(nn.Dense(h)(x))
        return nn.Dense(self.num_classes)(x)


class Task(NamedTuple):
    """A training task.

    Attributes:
      name: the task's name.
      model: the Flax module (logits from inputs).
      input_shape: shape of one example (without the batch axis).
      num_classes: K.
    """

    name: str
    model: nn.Module
    input_shape: tuple[int, ...]
    num_classes: int

    def init(self, key: jax.Array) -> Any:
        return self.model.init(key, jnp.zeros((1,) + self.input_shape))["params"]

    def loss(self, params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        """Mean NLL of the softmax on a batch x [B, ...], y int [B]."""
        logits = self.model.apply({"params": params}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


TASKS = ("mnistnet", "mnistnet_relu", "mnistnet_2layer", "mnistnet_wide", "conv", "text")


def get_task(
    name: str,
    *,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int = 10,
    conv_width: int = 16,
    conv_depth: int = 2,
    text_hidden: int = 32,
) -> Task:
    """The task called ``name`` (one of :data:`TASKS`).

    Args:
      name: task name.
      input_shape: shape of one example; defaults: (784,) for MNISTNet, (32, 32, 3) for conv;
        required for ``text`` ((V,)).
      num_classes: K.
      conv_width, conv_depth: the ConvNet's size (``conv``).
      text_hidden: hidden width of the text classifier (``text``).

    Raises:
      ValueError: unknown task name, or ``text`` without ``input_shape``.
    """
    mlp = {
        "mnistnet": ((20,), "sigmoid"),
        "mnistnet_relu": ((20,), "relu"),
        "mnistnet_2layer": ((20, 20), "sigmoid"),
        "mnistnet_wide": ((40,), "sigmoid"),
    }
    if name in mlp:
        hidden, act = mlp[name]
        return Task(name, _MLP(hidden, act, num_classes), input_shape or (784,), num_classes)
    if name == "conv":
        model = ConvNet(num_classes=num_classes, width=conv_width, depth=conv_depth, norm="none")
        return Task(name, model, input_shape or (32, 32, 3), num_classes)
    if name == "text":
        if input_shape is None:
            raise ValueError("task 'text' needs input_shape=(V,), the hashed vocabulary size")
        return Task(name, _MLP((text_hidden,), "relu", num_classes), input_shape, num_classes)
    raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")


def hashed_bag_of_words(texts: Sequence[str], *, dim: int = 2048) -> np.ndarray:
    """L2-normalised counts of lower-cased words hashed (crc32) into V = ``dim`` buckets.

    Returns:
      float32 [N, V].
    """
    out = np.zeros((len(texts), dim), np.float32)
    for i, t in enumerate(texts):
        for word in t.lower().split():
            out[i, zlib.crc32(word.encode("utf-8")) % dim] += 1.0
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norm, 1.0)


def train_losses(
    key: jax.Array,
    data: dict,
    learning_rates: jax.Array,
    *,
    task: Task,
    make_tx: Callable[[jax.Array, jax.Array], optax.GradientTransformation],
    num_seeds: int,
    num_steps: int,
    batch_size: int,
    lift: str = "vmap",
) -> jax.Array:
    """Training losses of one optimizer over a learning-rate grid and seeds (pure; jit it).

    Args:
      key: PRNG key; seed r uses ``fold_in(key, r)`` for init, minibatches and optimizer noise.
      data: ``{"x": [N, ...], "y": int [N]}``.
      learning_rates: float [L].
      task: the :class:`Task`.
      make_tx: ``make_tx(learning_rate, key) -> optax.GradientTransformation``.
      num_seeds: R.
      num_steps: S.
      batch_size: B.
      lift: ``"vmap"`` or ``"map"`` (see ``core.train.train_many``).

    Returns:
      float [L, R, S], the minibatch training loss at every step (NaN/inf kept).
    """
    lrs = jnp.asarray(learning_rates, jnp.float32)
    if lrs.ndim != 1:
        raise ValueError(f"learning_rates must be [L], got shape {lrs.shape}")
    n_lr = lrs.shape[0]
    n = data["y"].shape[0]
    seed_keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(num_seeds))
    keys = jnp.tile(seed_keys, n_lr)  # [L*R]: lr-major, seed-minor
    hp = {
        "lr": jnp.repeat(lrs, num_seeds),
        "tx_key": jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys),
    }

    def loss_fn(params, idx, step_key, hp):
        del step_key, hp
        return task.loss(params, data["x"][idx], data["y"][idx])

    _, losses = core_train.train_many(
        keys,
        hp,
        lift=lift,
        init_fn=lambda k, hp: task.init(k),
        loss_fn=loss_fn,
        make_tx=lambda hp: make_tx(hp["lr"], hp["tx_key"]),
        num_steps=num_steps,
        step_inputs_fn=lambda k, hp: jax.random.randint(k, (num_steps, batch_size), 0, n),
    )
    return losses.reshape(n_lr, num_seeds, num_steps)


def make_program_evaluator(
    task: Task,
    *,
    num_seeds: int,
    num_steps: int,
    batch_size: int,
    lift: str = "vmap",
    vocabulary: tuple[str, ...] = OP_NAMES,
) -> Callable[[Program, jax.Array, dict, jax.Array], jax.Array]:
    """A jitted ``evaluate(program, key, data, learning_rates) -> losses [L, R, S]``.

    The rule is an argument (an interpreted :class:`Program`), so the function compiles once
    per data / grid shape and serves every rule of at most ``MAX_NODES`` nodes. Evaluators are
    cached by their arguments, so asking twice returns the same compiled function. Programs
    must be encoded with the same ``vocabulary`` (e.g. the search space's ``ops``).
    """
    return _program_evaluator(task, num_seeds, num_steps, batch_size, lift, tuple(vocabulary))


@functools.lru_cache(maxsize=32)
def _program_evaluator(task, num_seeds, num_steps, batch_size, lift, vocabulary):

    def evaluate(program: Program, key: jax.Array, data: dict, learning_rates: jax.Array):
        return train_losses(
            key,
            data,
            learning_rates,
            task=task,
            make_tx=lambda lr, k: program_to_optax(
                program, lr, total_steps=num_steps, key=k, vocabulary=vocabulary
            ),
            num_seeds=num_seeds,
            num_steps=num_steps,
            batch_size=batch_size,
            lift=lift,
        )

    return jax.jit(evaluate)


def search_score(losses: np.ndarray) -> tuple[float, int]:
    """ENOS's search metric from losses [L, R, S]: the mean training loss (over steps and
    seeds) at the best learning rate; NaN/inf runs count as +inf.

    Returns:
      (score, index of the best learning rate); score is inf when every rate diverged.
    """
    losses = np.asarray(losses, np.float64)
    with np.errstate(all="ignore"):
        per_lr = losses.mean(axis=(1, 2))
    per_lr = np.where(np.isfinite(per_lr), per_lr, np.inf)
    best = int(np.argmin(per_lr))
    return float(per_lr[best]), best
