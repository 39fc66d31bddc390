"""Multi-host set-up shared by every experiment main.

Every main calls :func:`setup` first. It initialises ``jax.distributed`` when the config names a
coordinator (``config.distributed.coordinator_address``, with ``num_processes`` and
``process_id``) or when the platform provides one (Cloud TPU pods, SLURM, Open MPI: JAX detects
these itself once ``jax.distributed.initialize()`` is called with no arguments), then builds the
data-parallel mesh. On a single machine with no such settings it does nothing but build the
mesh: that is the path the tests run.

Cluster launch (one command per process, same config)::

    python -m experiments.<paper>.main --config=...:full --workdir=gs://... \\
      --config.distributed.coordinator_address=10.0.0.1:1234 \\
      --config.distributed.num_processes=4 --config.distributed.process_id=$RANK
"""

from __future__ import annotations

import dataclasses
import os

import jax
from jax.sharding import Mesh

from robustml_jax.core import sharding

__all__ = ["Runtime", "platform_provides_coordinator", "setup"]

# Variables through which cluster platforms announce a multi-process job; JAX's own cluster
# detection reads them when `jax.distributed.initialize()` gets no arguments.
_CLUSTER_ENV = ("TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS", "OMPI_COMM_WORLD_SIZE")


@dataclasses.dataclass(frozen=True)
class Runtime:
    """What a main needs to know about the devices it runs on."""

    mesh: Mesh
    process_index: int
    process_count: int

    @property
    def is_main_process(self) -> bool:
        return self.process_index == 0


def platform_provides_coordinator() -> bool:
    if any(k in os.environ for k in _CLUSTER_ENV):
        return True
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1


def _get(cfg, name, default=None):
    if cfg is None:
        return default
    return cfg.get(name, default) if hasattr(cfg, "get") else getattr(cfg, name, default)


def setup(config=None) -> Runtime:
    """Initialises multi-process JAX if configured, and returns the runtime with its mesh.

    Args:
      config: the experiment config. Reads ``config.distributed.{coordinator_address,
        num_processes, process_id}`` and ``config.num_devices`` (0 or absent: all devices).
    """
    dist = _get(config, "distributed")
    address = _get(dist, "coordinator_address")
    if not jax.distributed.is_initialized() and (address or platform_provides_coordinator()):
        if address:
            jax.distributed.initialize(
                coordinator_address=address,
                num_processes=_get(dist, "num_processes"),
                process_id=_get(dist, "process_id"),
            )
        else:
            jax.distributed.initialize()
    mesh = sharding.data_mesh(_get(config, "num_devices", 0) or None)
    return Runtime(mesh=mesh, process_index=jax.process_index(), process_count=jax.process_count())
