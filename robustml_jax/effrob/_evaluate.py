"""Batched evaluation: many models of one architecture on several test sets in one jitted call.

Parameters of the M models are stacked on a leading axis and the per-model apply function is
lifted with ``jax.vmap``. All test sets are concatenated, padded to a multiple of the chunk size
and scanned chunk by chunk (``lax.map``) inside one ``jit``, so memory stays at
``M * chunk * C`` logits. With several devices the model axis is sharded when M divides by the
device count, else the example axis is.

Shapes: M = models, N = examples (all sets), B = chunk, C = classes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from robustml_jax.core import sharding

__all__ = ["batched_correct", "stack_params"]


def stack_params(params: Sequence[Any]) -> Any:
    """Stacks a list of M same-structure pytrees into one pytree with leading axis M."""
    if not params:
        raise ValueError("need at least one parameter tree to stack")
    return jax.tree.map(lambda *xs: jnp.stack(xs), *params)


@functools.lru_cache(maxsize=32)
def _compiled(apply_fn: Callable[[Any, jax.Array], jax.Array]):
    """The jitted scan for one ``apply_fn`` (cached, so repeated calls do not recompile)."""

    def predict(stacked, x):
        logits = jax.vmap(apply_fn, in_axes=(0, None))(stacked, x)
        if logits.ndim == 2:  # one logit per example: binary classifier
            return (logits > 0).astype(jnp.int32)
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)

    @jax.jit
    def run(stacked, x, y):
        def body(xy):
            return predict(stacked, xy[0]) == xy[1][None, :]

        return jax.lax.map(body, (x, y))  # [S, M, B]

    return run


def batched_correct(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    stacked_params: Any,
    test_sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    chunk: int = 2048,
    mesh: Mesh | None = None,
) -> dict[str, np.ndarray]:
    """Per-example correctness of every model on every test set.

    Args:
      apply_fn: ``apply_fn(params_m, x [B, ...]) -> logits [B, C]`` (or [B] for a binary logit,
        where a positive logit predicts class 1) for ONE model.
      stacked_params: pytree with leading axis M on every leaf (:func:`stack_params`).
      test_sets: {name: (x [N_s, ...], y [N_s])}, all with the same feature shape.
      chunk: B, examples per step of the scan.
      mesh: devices to shard over (default: all).

    Returns:
      {name: bool [M, N_s]}.
    """
    names = list(test_sets)
    sizes = [len(test_sets[nm][1]) for nm in names]
    n = sum(sizes)
    chunk = max(1, min(chunk, n))
    num_chunks = -(-n // chunk)
    # One host copy: every set written into a zero-padded [S * B, ...] buffer.
    first = np.asarray(test_sets[names[0]][0])
    x = np.zeros((num_chunks * chunk, *first.shape[1:]), first.dtype)
    y = np.zeros((num_chunks * chunk,), np.int32)
    start = 0
    for nm, size in zip(names, sizes, strict=True):
        x[start : start + size] = test_sets[nm][0]
        y[start : start + size] = test_sets[nm][1]
        start += size
    x = x.reshape(num_chunks, chunk, *x.shape[1:])
    y = y.reshape(num_chunks, chunk)
    run = _compiled(apply_fn)

    mesh = mesh if mesh is not None else sharding.data_mesh()
    num_models = jax.tree.leaves(stacked_params)[0].shape[0]
    ndev = mesh.devices.size
    if ndev > 1 and num_models % ndev == 0:
        stacked_params = jax.device_put(
            stacked_params, NamedSharding(mesh, PartitionSpec(sharding.DATA_AXIS))
        )
    elif ndev > 1 and chunk % ndev == 0:
        spec = NamedSharding(mesh, PartitionSpec(None, sharding.DATA_AXIS))
        x, y = jax.device_put(x, spec), jax.device_put(y, spec)
    out = np.asarray(run(stacked_params, x, y))  # [S, M, B]
    out = np.moveaxis(out, 1, 0).reshape(num_models, -1)[:, :n]
    bounds = np.cumsum([0, *sizes])
    return {nm: out[:, bounds[i] : bounds[i + 1]] for i, nm in enumerate(names)}
