"""The internal network form: a chain of affine layers with a ReLU after every layer but the last.

Each :class:`Affine` holds a composition of linear operations (dense, convolution, average
pooling, flatten) plus a bias, acting on one example flattened to a vector. Every bound in this
package works on flat vectors and touches a layer only through :func:`linear` (the layer's
linear map A), :func:`linear_t` (its transpose A^T, from ``jax.linear_transpose``) and
:func:`abs_linear` (the map with absolute-valued weights, an entrywise upper bound on |A|), so a
layer type is supported as soon as it can be written as such an operation.

Shapes: N_k = width of layer k's output (flattened), N_0 = input size.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "full_precision",
    "Affine",
    "AvgPool",
    "Flatten",
    "as_network",
    "forward",
    "from_dense",
    "from_flax",
    "input_box",
    "validate_input",
]

SUPPORTED_ACTIVATIONS = ("relu",)


@flax.struct.dataclass
class Affine:
    """One affine layer ``z = A(x) + bias`` on flattened examples.

    Attributes:
      weights: one array per op (an empty array for parameter-free ops).
      bias: [N_out].
      ops: static op descriptors: ``("dense",)``, ``("conv", strides, padding)``,
        ``("avgpool", window, strides)``, ``("flatten",)``.
      in_shape: static shape of one example entering the layer (e.g. ``(28, 28, 1)``).
    """

    weights: tuple
    bias: jax.Array
    ops: tuple = flax.struct.field(pytree_node=False)
    in_shape: tuple = flax.struct.field(pytree_node=False)

    @property
    def in_size(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def out_size(self) -> int:
        return int(self.bias.shape[-1])


def _op(op: tuple, w, x: jax.Array) -> jax.Array:
    """One linear op on one unflattened example."""
    kind = op[0]
    if kind == "dense":
        return x @ w
    if kind == "conv":
        return jax.lax.conv_general_dilated(
            x[None], w, op[1], op[2], dimension_numbers=("NHWC", "HWIO", "NHWC")
        )[0]
    if kind == "avgpool":
        return nn.avg_pool(x[None], op[1], strides=op[2], padding="VALID")[0]
    if kind == "flatten":
        return x.reshape(-1)
    raise ValueError(f"unknown op {kind!r}")  # pragma: no cover - ops are built here only


def full_precision(fn):
    """Runs ``fn`` with every matmul and convolution traced at ``Precision.HIGHEST``.

    Soundness needs it: on GPUs the default float32 matmul precision may use TF32 (10-bit
    mantissa), whose rounding error exceeds the slack between a bound and the true value.
    The setting is recorded in the traced program, so it holds under the caller's ``jit``.
    """

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fn(*args, **kwargs)

    return wrapped


def _apply_ops(layer: Affine, x: jax.Array, weights) -> jax.Array:
    x = x.reshape(layer.in_shape)
    for op, w in zip(layer.ops, weights, strict=True):
        x = _op(op, w, x)
    return x.reshape(-1)


def linear(layer: Affine, x: jax.Array) -> jax.Array:
    """A(x) without the bias: [N_in] -> [N_out]."""
    return _apply_ops(layer, x, layer.weights)


def abs_linear(layer: Affine, x: jax.Array) -> jax.Array:
    """|A|(x): the ops with absolute weights; entrywise >= the matrix |A| (equal for one op)."""
    return _apply_ops(layer, x, jax.tree.map(jnp.abs, layer.weights))


def linear_t(layer: Affine, y: jax.Array) -> jax.Array:
    """A^T(y): [N_out] -> [N_in], the transpose of :func:`linear`."""
    zeros = jnp.zeros((layer.in_size,), y.dtype)
    return jax.linear_transpose(functools.partial(linear, layer), zeros)(y)[0]


def abs_linear_t(layer: Affine, y: jax.Array) -> jax.Array:
    """|A|^T(y)."""
    zeros = jnp.zeros((layer.in_size,), y.dtype)
    return jax.linear_transpose(functools.partial(abs_linear, layer), zeros)(y)[0]


@full_precision
def forward(layers: Sequence[Affine], x: jax.Array) -> jax.Array:
    """The network's output f(x) for one flat example x [N_0] -> [N_L]."""
    for i, layer in enumerate(layers):
        x = linear(layer, x) + layer.bias
        if i < len(layers) - 1:
            x = jax.nn.relu(x)
    return x


# ----------------------------------------------------------------------------- constructors


def from_dense(pairs: Sequence[tuple[Any, Any]]) -> tuple[Affine, ...]:
    """Converts ``(W [in, out], b [out])`` pairs into the internal form, checking the chain."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("layers is empty: give at least one (W, b) pair")
    out = []
    prev = None
    for i, pair in enumerate(pairs):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"layer {i} must be a (W [in, out], b [out]) pair, got {type(pair)}")
        w, b = jnp.asarray(pair[0]), jnp.asarray(pair[1])
        if w.ndim != 2 or b.ndim != 1 or b.shape[0] != w.shape[1]:
            raise ValueError(
                f"layer {i}: W must be [in, out] and b [out]; got W {w.shape}, b {b.shape}"
            )
        if prev is not None and w.shape[0] != prev:
            raise ValueError(
                f"layer shapes do not chain: layer {i - 1} has {prev} outputs but layer {i} "
                f"has W of shape {w.shape} ({w.shape[0]} inputs)"
            )
        prev = w.shape[1]
        out.append(Affine(weights=(w,), bias=b, ops=(("dense",),), in_shape=(w.shape[0],)))
    return tuple(out)


class Flatten(nn.Module):
    """Flattens one example's [H, W, C] (or a batch's [B, H, W, C]) to vectors."""

    @nn.compact
    def __call__(self, x):
        return x.reshape(x.shape[0], -1) if x.ndim == 4 else x.reshape(-1)


class AvgPool(nn.Module):
    """Average pooling (VALID padding) on [B, H, W, C]; a linear map, so bounds stay exact."""

    window: tuple[int, int] = (2, 2)
    strides: tuple[int, int] | None = None

    @nn.compact
    def __call__(self, x):
        return nn.avg_pool(x, self.window, strides=self.strides or self.window, padding="VALID")


def _activation_name(fn) -> str | None:
    """Name of a recognised activation function, or None if ``fn`` is not an activation."""
    relus = (nn.relu, jax.nn.relu)
    if any(fn is r for r in relus):
        return "relu"
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return name


def from_flax(module: nn.Sequential, params, input_shape: Sequence[int]) -> tuple[Affine, ...]:
    """Converts a Flax ``nn.Sequential`` of Dense/Conv/ReLU/Flatten/AvgPool into the layer form.

    Linear modules between two ReLUs are composed into one :class:`Affine` layer.

    Args:
      module: ``nn.Sequential`` whose items are ``nn.Dense``, ``nn.Conv``, ``nn.relu``,
        :class:`Flatten` and :class:`AvgPool`.
      params: the module's ``params`` collection (``variables["params"]``).
      input_shape: shape of one example, e.g. ``(28, 28, 1)``.

    Raises:
      ValueError: for any other item (e.g. ``nn.tanh`` or max pooling), naming it.
    """
    if not isinstance(module, nn.Sequential):
        raise ValueError(f"from_flax expects a flax.linen.Sequential, got {type(module).__name__}")
    params = params.get("params", params)
    shape = tuple(int(s) for s in input_shape)
    layers: list[Affine] = []
    ops: list[tuple] = []
    weights: list[jax.Array] = []
    bias = None  # bias of the current block, as an array of the current shape
    block_in = shape
    x = jnp.zeros(shape, jnp.float32)  # shape tracer (concrete, one example)

    def close_block():
        nonlocal ops, weights, bias, block_in
        if not ops:
            raise ValueError("two ReLUs in a row or a ReLU before any linear layer")
        b = jnp.zeros(x.shape) if bias is None else bias
        layers.append(
            Affine(weights=tuple(weights), bias=b.reshape(-1), ops=tuple(ops), in_shape=block_in)
        )
        ops, weights, bias, block_in = [], [], None, tuple(x.shape)

    for i, item in enumerate(module.layers):
        name = f"layers_{i}"
        if isinstance(item, nn.Dense):
            p = params[name]
            op, w, b = ("dense",), p["kernel"], p.get("bias")
        elif isinstance(item, nn.Conv):
            p = params[name]
            if item.kernel_dilation not in (None, 1) or item.feature_group_count != 1:
                raise ValueError(f"item {i}: dilated or grouped nn.Conv is not supported")
            strides = item.strides or 1
            strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
            pad = item.padding
            if not isinstance(pad, str):
                pad = tuple((p_, p_) if isinstance(p_, int) else tuple(p_) for p_ in pad)
            op, w, b = ("conv", strides, pad), p["kernel"], p.get("bias")
        elif isinstance(item, Flatten):
            op, w, b = ("flatten",), jnp.zeros((0,)), None
        elif isinstance(item, AvgPool):
            window = tuple(item.window)
            op, w, b = ("avgpool", window, tuple(item.strides or window)), jnp.zeros((0,)), None
        elif callable(item) and not isinstance(item, nn.Module):
            act = _activation_name(item)
            if act not in SUPPORTED_ACTIVATIONS:
                raise ValueError(
                    f"item {i}: activation '{act}' is not supported: the Clarke-Jacobian "
                    f"relaxation handles ReLU only (supported: {SUPPORTED_ACTIVATIONS})"
                )
            close_block()
            continue
        else:
            raise ValueError(
                f"item {i}: unsupported layer {type(item).__name__} (supported: Dense, Conv, "
                "relu, lipschitz.Flatten, lipschitz.AvgPool; max pooling is not supported)"
            )
        new_x = _op(op, w, x)
        if bias is not None:  # push the running bias through the linear op
            bias = _op(op, w, bias)
        if b is not None:
            bias = (jnp.zeros(new_x.shape) if bias is None else bias) + b
        ops.append(op)
        weights.append(w)
        x = new_x
    close_block()
    return tuple(layers)


def as_network(layers, *, activation: str = "relu") -> tuple[Affine, ...]:
    """Accepts ``(W, b)`` pairs or already converted :class:`Affine` layers."""
    if activation not in SUPPORTED_ACTIVATIONS:
        raise ValueError(
            f"activation '{activation}' is not supported: the Clarke-Jacobian relaxation "
            f"handles ReLU only (supported: {SUPPORTED_ACTIVATIONS})"
        )
    layers = tuple(layers)
    if layers and all(isinstance(x, Affine) for x in layers):
        for i in range(1, len(layers)):
            if layers[i].in_size != layers[i - 1].out_size:
                raise ValueError(
                    f"layer shapes do not chain: layer {i - 1} has {layers[i - 1].out_size} "
                    f"outputs but layer {i} takes {layers[i].in_size} inputs"
                )
        return layers
    return from_dense(layers)


def validate_input(net: Sequence[Affine], x0: jax.Array, eps) -> None:
    """Raises ValueError for an x0 of the wrong size or a (concrete) negative eps."""
    n0 = net[0].in_size
    if x0.ndim != 1 or x0.shape[0] != n0:
        raise ValueError(
            f"x0 has shape {tuple(x0.shape)} but the first layer takes {n0} inputs "
            f"(pass one flat example of length {n0}; use jax.vmap for a batch)"
        )
    if not isinstance(eps, jax.core.Tracer) and float(np.min(np.asarray(eps))) < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")


def input_box(x0: jax.Array, eps, x_min=None, x_max=None) -> tuple[jax.Array, jax.Array]:
    """The input region ``[max(x0 - eps, x_min), min(x0 + eps, x_max)]`` as (lower, upper) [N_0].

    ``x_min`` / ``x_max`` (scalars or [N_0]; None: unbounded) are the data range, e.g. 0 and 1
    for images: the official code intersects the l_inf ball with it. Raises ValueError (when
    the values are concrete) if the region is empty.
    """
    lo, up = x0 - eps, x0 + eps
    if x_min is not None:
        lo = jnp.maximum(lo, jnp.asarray(x_min, x0.dtype))
    if x_max is not None:
        up = jnp.minimum(up, jnp.asarray(x_max, x0.dtype))
    if (x_min is not None or x_max is not None) and not any(
        isinstance(a, jax.core.Tracer) for a in (lo, up)
    ):
        if bool(jnp.any(lo > up)):
            raise ValueError(
                "the input box [max(x0 - eps, x_min), min(x0 + eps, x_max)] is empty: x0 lies "
                f"more than eps={eps} outside the data range [{x_min}, {x_max}]"
            )
    return lo, up
