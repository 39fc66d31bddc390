"""Data-parallel sharding helpers (``jax.sharding``; no ``pmap``).

A 1-D mesh with axis ``"data"`` spans every device (of every process). Batches are split along
their leading axis; parameters and optimizer state are replicated. In a multi-process run each
process passes only its own rows (see :func:`process_rows`) and :func:`shard_batch` assembles
the global array.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "batch_sharding",
    "data_mesh",
    "process_rows",
    "replicate",
    "replicated_sharding",
    "shard_batch",
]

DATA_AXIS = "data"


def data_mesh(num_devices: int | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D ``("data",)`` mesh over the first ``num_devices`` devices (default: all)."""
    devs = list(devices) if devices is not None else jax.devices()
    if num_devices is not None and num_devices > 0:
        if num_devices > len(devs):
            raise ValueError(f"mesh wants {num_devices} devices but only {len(devs)} exist")
        devs = devs[:num_devices]
    return Mesh(np.asarray(devs), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def replicate(tree, mesh: Mesh):
    """Places every leaf of ``tree`` on all devices of ``mesh`` (of every process).

    Every process must pass the same values. With several processes ``jax.device_put`` refuses
    PRNG key arrays and committed arrays for a sharding that spans other processes' devices, so
    each process builds its own (full) copies of the leaves with
    ``jax.make_array_from_callback`` instead; arrays that are already global pass through
    ``device_put``.
    """
    sharding = replicated_sharding(mesh)
    if jax.process_count() == 1 or mesh.devices.size == mesh.local_mesh.devices.size:
        return jax.device_put(tree, sharding)

    def put(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return jax.device_put(x, sharding)
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = put(jax.random.key_data(x))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        value = np.asarray(x)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(put, tree)


def shard_batch(batch, mesh: Mesh):
    """Splits every leaf of ``batch`` (a pytree of [B, ...] arrays) over the data axis.

    Single process: ``batch`` is the global batch. Several processes: ``batch`` is this process's
    rows, and the global batch is their concatenation in process order.

    Raises:
      ValueError: if a leaf's leading dimension is not divisible by the number of devices.
    """
    sharding = batch_sharding(mesh)
    n_local = mesh.local_mesh.devices.size if jax.process_count() > 1 else mesh.devices.size

    def put(x):
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[0] % n_local:
            raise ValueError(
                f"batch leaf of shape {x.shape} cannot be split over {n_local} devices: "
                "the leading (batch) dimension must be divisible by the device count"
            )
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(put, batch)


def process_rows(num_rows: int) -> slice:
    """The contiguous slice of ``num_rows`` global rows that this process feeds."""
    n, i = jax.process_count(), jax.process_index()
    if num_rows % n:
        raise ValueError(f"global batch of {num_rows} rows is not divisible by {n} processes")
    per = num_rows // n
    return slice(i * per, (i + 1) * per)
