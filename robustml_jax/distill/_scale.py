"""The synthetic set sharded over devices, and the memory a distillation step needs per device.

At ImageNet-1K IPC 50 the synthetic set alone is 50,000 x 64 x 64 x 3 float32 = 2.5 GB (plus
its gradient and two momentum buffers of the same size). :func:`synthetic_sharding` splits it
along the example axis over a mesh axis, so each device holds S / D images; the matching loss
is then jitted with that input sharding and XLA inserts the gathers of the minibatch rows.
:func:`gradient_memory` compiles one update's gradient for abstract inputs (nothing is
allocated) and reads XLA's compile-time memory analysis: the numbers the ImageNet configs quote
as their expected memory per device.

Shapes: S = synthetic images, C = classes, P = parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from robustml_jax.distill._labels import soft_label_assignment
from robustml_jax.distill._matching import trajectory_matching_loss

__all__ = ["gradient_memory", "synthetic_sharding"]


def synthetic_sharding(mesh: Mesh, ndim: int, *, axis: str = "data") -> NamedSharding:
    """Shards an array [S, ...] of rank ``ndim`` along S over the mesh axis ``axis``
    (S must be divisible by that axis' size when the array is placed)."""
    if axis not in mesh.axis_names:
        raise ValueError(f"mesh has no axis {axis!r} (axes {mesh.axis_names})")
    return NamedSharding(mesh, PartitionSpec(axis, *([None] * (ndim - 1))))


def gradient_memory(
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    *,
    num_syn: int,
    image_shape: tuple[int, ...],
    num_classes: int,
    num_steps: int,
    batch_size: int,
    gradient: str = "tesla",
    soft_labels: bool = True,
    label_chunk: int = 0,
    mesh: Mesh | None = None,
) -> dict:
    """Compile-time memory of one distillation gradient w.r.t. (images, alpha), per device.

    Compiles ``jax.grad`` of the trajectory-matching loss (with TESLA's soft labels from the
    target expert if ``soft_labels``) for abstract inputs: ``num_syn`` images of
    ``image_shape``, sharded over ``mesh``'s ``"data"`` axis when a mesh is given. Nothing is
    allocated; ``params`` is used only for its shapes.

    Returns:
      ``{"argument_bytes", "output_bytes", "temp_bytes", "total_bytes", "devices"}`` from XLA's
      ``memory_analysis()`` of the compiled program (per device).
    """
    concrete = jax.tree.map(lambda a: jnp.zeros(jnp.shape(a), a.dtype), params)  # shapes only
    flat, unravel = ravel_pytree(concrete)
    x_spec = jax.ShapeDtypeStruct((num_syn, *image_shape), jnp.float32)
    p_spec = jax.ShapeDtypeStruct(flat.shape, flat.dtype)
    y_spec = jax.ShapeDtypeStruct((num_syn, num_classes), jnp.float32)

    def loss(x, lr, y, start, target, key):
        target_p = unravel(target)
        if soft_labels:
            y = soft_label_assignment(target_p, x, apply_fn=apply_fn, chunk_size=label_chunk)
        return trajectory_matching_loss(
            x, y, lr, key, unravel(start), target_p, apply_fn=apply_fn,
            num_steps=num_steps, batch_size=batch_size, gradient=gradient,
        )  # fmt: skip

    grad = jax.grad(loss, argnums=(0, 1))
    if mesh is not None:
        xs = synthetic_sharding(mesh, len(x_spec.shape))
        rep = NamedSharding(mesh, PartitionSpec())
        grad = jax.jit(
            grad,
            in_shardings=(xs, rep, synthetic_sharding(mesh, 2), rep, rep, rep),
            out_shardings=(xs, rep),
        )
    else:
        grad = jax.jit(grad)
    key = jax.eval_shape(lambda: jax.random.key(0))
    lowered = grad.lower(x_spec, jax.ShapeDtypeStruct((), jnp.float32), y_spec, p_spec, p_spec, key)
    m = lowered.compile().memory_analysis()
    out = {
        "argument_bytes": int(m.argument_size_in_bytes),
        "output_bytes": int(m.output_size_in_bytes),
        "temp_bytes": int(m.temp_size_in_bytes),
        "devices": 1 if mesh is None else int(mesh.devices.size),
    }
    out["total_bytes"] = out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"]
    return out
