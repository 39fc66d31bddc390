"""Lipschitz bounds for networks with residual Add and smooth (tanh, sigmoid) activations.

The chain form of :mod:`_bounds` (affine, ReLU, affine, ...) cannot express a skip connection or
a smooth activation. Here a network is a DAG of :class:`GraphNode` s: node 0 is the input x,
``nodes[j]`` is node j + 1 and the last node is the output. Kinds: ``"affine"`` (an
:class:`Affine` layer on one input node), ``"relu"`` / ``"tanh"`` / ``"sigmoid"`` (elementwise,
one input node) and ``"add"`` (the sum of two input nodes of equal size: a residual connection).

Clarke Jacobian. The gradient of ``c . f`` w.r.t. every node value, g_n, satisfies g_out = c and
``g_src = sum over the consumers n of src of T_n(g_n)`` with T = A^T for an affine node, the
identity for an add node (into both inputs) and ``T(g) = d * g`` for an activation node, where
d is in the (Clarke) derivative of the activation at its input z: for ReLU {1} (z > 0), {0}
(z < 0) or [0, 1]; for tanh / sigmoid the range of sigma'(z) over the forward bounds [l, u] of z,
i.e. [min(sigma'(l), sigma'(u)), sigma'(clip(0, l, u))] (both derivatives are unimodal with
their peak at 0). As in the paper's ReLU case, d is relaxed to this interval (independent of x).

Relaxation of an activation edge. For y = d * a with d in [d_lo, d_up] (d_lo >= 0), a linear
bound ``lam . y`` is at most ``phi(a) = max(lam d_lo a, lam d_up a)`` per entry, a convex
function of a; its chord on the interval of a is the tightest linear upper bound (for ReLU this
is exactly the chord of :mod:`_bounds`, so on chain ReLU nets both modules give the same bound).
Bounds on g at every activation node are computed by back-substitution up to the constant c
(intersected with interval arithmetic), then v = g_0 the same way and the final l1 node by its
chord, as in :mod:`_bounds`.

Forward bounds: interval arithmetic on every node, intersected with CROWN on every node that
feeds an activation. The linear relaxation of tanh / sigmoid on [l, u] uses two lines of the
chord's slope s through the max and the min of ``sigma(z) - s z`` on [l, u] (attained at l, u
or where sigma'(z) = s, which has a closed form), padded by a rounding margin: sound for any
interval, exact at the interval's ends.

Branch-and-bound, alpha-CROWN and sparse rows stay chain-only (:mod:`_bounds`).

Shapes: N_n = size of node n (flattened), N_0 = input size, K = outputs, R = rows.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from robustml_jax.lipschitz._network import (
    Affine,
    abs_linear,
    abs_linear_t,
    from_dense,
    full_precision,
    input_box,
    linear,
    linear_t,
)

__all__ = [
    "GRAPH_ACTIVATIONS",
    "GraphNode",
    "activation_derivative_range",
    "activation_relaxation",
    "chain_graph",
    "graph_forward",
    "graph_gradient_bounds",
    "graph_lipschitz_bound",
    "graph_network",
]

GRAPH_ACTIVATIONS = ("relu", "tanh", "sigmoid")
_TINY = 1e-12
_REL = 1e-6  # relative rounding margin of the smooth activations' relaxations (float32)


@flax.struct.dataclass
class GraphNode:
    """One node of a DAG network (see the module docstring).

    Attributes:
      kind: "affine", "relu", "tanh", "sigmoid" or "add" (static).
      inputs: ids of the input nodes (static; 0 is the network input, node j + 1 is
        ``nodes[j]``).
      layer: the :class:`Affine` layer of an affine node, else None.
      size: number of values of this node (static).
    """

    kind: str = flax.struct.field(pytree_node=False)
    inputs: tuple = flax.struct.field(pytree_node=False)
    layer: Affine | None = None
    size: int = flax.struct.field(pytree_node=False, default=0)


# ----------------------------------------------------------------------------- construction


def graph_network(input_size: int, spec: Sequence[tuple]) -> tuple[GraphNode, ...]:
    """Builds a DAG network from a list of node specs, checking every shape.

    Args:
      input_size: N_0, the size of one flat input example.
      spec: one tuple per node, in order (node ids start at 1; 0 is the input):
        ``("dense", W [in, out], b [out])``, ``("affine", layer)`` (an :class:`Affine`, e.g.
        from ``from_flax``), ``("relu",)``, ``("tanh",)``, ``("sigmoid",)`` (each on the
        previous node; append ``src=`` as a last element ``int`` to read another node) and
        ``("add", src_a, src_b)``.

    Returns:
      A tuple of :class:`GraphNode`; the last one is the output.

    Example (a residual block)::

        graph_network(4, [("dense", W1, b1), ("relu",), ("dense", W2, b2), ("add", 3, 0),
                          ("tanh",), ("dense", W3, b3)])
    """
    sizes = [int(input_size)]
    nodes = []
    for j, item in enumerate(spec):
        if not isinstance(item, tuple | list) or not item or not isinstance(item[0], str):
            raise ValueError(f"node {j + 1}: a spec item must be a tuple starting with its kind")
        kind, args = item[0], list(item[1:])
        prev = j  # id of the previous node
        if kind == "add":
            if len(args) != 2:
                raise ValueError(f"node {j + 1}: ('add', src_a, src_b) needs two node ids")
            srcs = tuple(int(a) for a in args)
        elif kind in ("dense", "affine") or kind in GRAPH_ACTIVATIONS:
            n_args = {"dense": 2, "affine": 1}.get(kind, 0)
            srcs = (int(args[n_args]),) if len(args) > n_args else (prev,)
            args = args[:n_args]
        else:
            raise ValueError(
                f"node {j + 1}: unknown kind {kind!r} (dense, affine, add, {GRAPH_ACTIVATIONS})"
            )
        for s in srcs:
            if not 0 <= s <= j:
                raise ValueError(f"node {j + 1}: input node {s} must be an earlier node (0..{j})")
        if kind in ("dense", "affine"):
            layer = from_dense([(args[0], args[1])])[0] if kind == "dense" else args[0]
            if not isinstance(layer, Affine):
                raise ValueError(f"node {j + 1}: ('affine', layer) needs an Affine layer")
            if layer.in_size != sizes[srcs[0]]:
                raise ValueError(
                    f"node {j + 1}: layer takes {layer.in_size} inputs but node {srcs[0]} has "
                    f"{sizes[srcs[0]]} values"
                )
            nodes.append(GraphNode("affine", srcs, layer, layer.out_size))
        elif kind == "add":
            if sizes[srcs[0]] != sizes[srcs[1]]:
                raise ValueError(
                    f"node {j + 1}: add of nodes {srcs} with sizes {sizes[srcs[0]]} and "
                    f"{sizes[srcs[1]]}"
                )
            nodes.append(GraphNode("add", srcs, None, sizes[srcs[0]]))
        else:
            nodes.append(GraphNode(kind, srcs, None, sizes[srcs[0]]))
        sizes.append(nodes[-1].size)
    if not nodes:
        raise ValueError("spec is empty: give at least one node")
    return tuple(nodes)


def chain_graph(layers: Sequence[Affine], activation: str = "relu") -> tuple[GraphNode, ...]:
    """The chain network of :mod:`_bounds` (activation after every layer but the last)."""
    if activation not in GRAPH_ACTIVATIONS:
        raise ValueError(f"activation must be one of {GRAPH_ACTIVATIONS}, got {activation!r}")
    spec = []
    for i, layer in enumerate(layers):
        spec.append(("affine", layer))
        if i < len(layers) - 1:
            spec.append((activation,))
    return graph_network(layers[0].in_size, spec)


def _sizes(net) -> list[int]:
    first = net[0]
    n0 = first.layer.in_size if first.kind == "affine" else first.size
    return [n0] + [node.size for node in net]


def _consumers(net) -> list[list[int]]:
    cons = [[] for _ in range(len(net) + 1)]
    for j, node in enumerate(net):
        for s in node.inputs:
            cons[s].append(j + 1)
    return cons


# ----------------------------------------------------------------------------- activations


def _act(kind, z):
    return {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}[kind](z)


def _act_grad(kind, z):
    if kind == "tanh":
        return 1.0 - jnp.tanh(z) ** 2
    if kind == "sigmoid":
        s = jax.nn.sigmoid(z)
        return s * (1.0 - s)
    return (z > 0).astype(z.dtype)


@full_precision
def graph_forward(net: Sequence[GraphNode], x: jax.Array) -> jax.Array:
    """The network's output for one flat example x [N_0] -> [N_out]."""
    vals = [x]
    for node in net:
        src = vals[node.inputs[0]]
        if node.kind == "affine":
            vals.append(linear(node.layer, src) + node.layer.bias)
        elif node.kind == "add":
            vals.append(src + vals[node.inputs[1]])
        else:
            vals.append(_act(node.kind, src))
    return vals[-1]


def activation_derivative_range(kind: str, lo, up):
    """Bounds [d_lo, d_up] on the Clarke derivative of the activation over z in [lo, up].

    ReLU: 1 where lo > 0, 0 where up < 0, else [0, 1]. tanh / sigmoid: sigma' is unimodal with
    its peak at 0, so the max is sigma'(clip(0, lo, up)) and the min is at an end; both are
    padded by a relative rounding margin.
    """
    if kind == "relu":
        d_lo = (lo > 0).astype(lo.dtype)
        d_up = (up >= 0).astype(lo.dtype)
        return d_lo, d_up
    if kind not in ("tanh", "sigmoid"):
        raise ValueError(f"activation must be one of {GRAPH_ACTIVATIONS}, got {kind!r}")
    d_up = _act_grad(kind, jnp.clip(0.0, lo, up))
    d_lo = jnp.minimum(_act_grad(kind, lo), _act_grad(kind, up))
    return jnp.maximum(d_lo * (1 - 4 * _REL) - _TINY, 0.0), d_up * (1 + 4 * _REL) + _TINY


def activation_relaxation(kind: str, lo, up):
    """Linear bounds ``sl z + tl <= sigma(z) <= su z + tu`` on [lo, up] (elementwise).

    ReLU: CROWN's (upper chord, adaptive lower slope). tanh / sigmoid: both lines have the
    chord's slope s and pass through the max / min of ``sigma(z) - s z`` on [lo, up], found at
    the ends and at the points where sigma'(z) = s (closed form), padded by a rounding margin.

    Returns:
      (su, tu, sl, tl), each shaped like lo.
    """
    if kind == "relu":
        active, inactive = lo >= 0, up <= 0
        unstable = ~active & ~inactive
        su = jnp.where(active, 1.0, jnp.where(unstable, up / jnp.maximum(up - lo, _TINY), 0.0))
        tu = jnp.where(unstable, -su * lo, 0.0)
        sl = jnp.where(active, 1.0, jnp.where(unstable, (up > -lo).astype(lo.dtype), 0.0))
        return su, tu, sl, jnp.zeros_like(lo)
    if kind not in ("tanh", "sigmoid"):
        raise ValueError(f"activation must be one of {GRAPH_ACTIVATIONS}, got {kind!r}")
    width = up - lo
    f_lo, f_up = _act(kind, lo), _act(kind, up)
    s = jnp.where(
        width > 1e-4, (f_up - f_lo) / jnp.maximum(width, 1e-4), _act_grad(kind, (lo + up) / 2)
    )
    if kind == "tanh":
        t = jnp.sqrt(jnp.clip(1.0 - s, 0.0, 1.0 - 1e-7))
        crit = jnp.arctanh(t)
    else:
        p = (1.0 + jnp.sqrt(jnp.clip(1.0 - 4.0 * s, 0.0, 1.0 - 1e-7))) / 2.0
        crit = jnp.log(p) - jnp.log1p(-p)
    cands = jnp.stack([lo, up, jnp.clip(crit, lo, up), jnp.clip(-crit, lo, up)])
    h = _act(kind, cands) - s * cands
    scale = 1.0 + jnp.abs(s) * jnp.maximum(jnp.abs(lo), jnp.abs(up))
    # Between candidate points h varies by at most |h'| * gap; the candidates include every
    # stationary point (up to the rounding of crit), so a margin covers the rounding only.
    margin = 16 * _REL * scale
    return s, h.max(0) + margin, s, h.min(0) - margin


# ----------------------------------------------------------------------------- forward bounds


def _crown_upper(net, node_id, rows, bounds, x_c, x_r):
    """Upper bounds of rows [R, N_node] . value(node_id) over the box, by back-substitution."""
    lams = {node_id: rows}
    const = jnp.zeros(rows.shape[:1], rows.dtype)
    for nid in range(node_id, 0, -1):
        if nid not in lams:
            continue
        lam = lams.pop(nid)
        node = net[nid - 1]
        if node.kind == "affine":
            const = const + lam @ node.layer.bias
            pushes = [(node.inputs[0], jax.vmap(functools.partial(linear_t, node.layer))(lam))]
        elif node.kind == "add":
            pushes = [(node.inputs[0], lam), (node.inputs[1], lam)]
        else:
            lo, up = bounds[node.inputs[0]]
            su, tu, sl, tl = activation_relaxation(node.kind, lo, up)
            pos, neg = jnp.maximum(lam, 0.0), jnp.minimum(lam, 0.0)
            const = const + pos @ tu + neg @ tl
            pushes = [(node.inputs[0], pos * su + neg * sl)]
        for src, coef in pushes:
            lams[src] = lams[src] + coef if src in lams else coef
    coef = lams.get(0, jnp.zeros((rows.shape[0], x_c.shape[0]), rows.dtype))
    return coef @ x_c + jnp.abs(coef) @ x_r + const


def _forward_bounds(net, x_lo, x_up, forward):
    """Interval bounds [lo, up] of every node value (CROWN-tightened where an activation reads)."""
    x_c, x_r = (x_lo + x_up) / 2, (x_up - x_lo) / 2
    feeds_act = {node.inputs[0] for node in net if node.kind in GRAPH_ACTIVATIONS}
    bounds = [(x_lo, x_up)]
    for j, node in enumerate(net):
        lo, up = bounds[node.inputs[0]]
        if node.kind == "affine":
            c = linear(node.layer, (lo + up) / 2) + node.layer.bias
            r = abs_linear(node.layer, (up - lo) / 2)
            lo, up = c - r, c + r
        elif node.kind == "add":
            lo2, up2 = bounds[node.inputs[1]]
            lo, up = lo + lo2, up + up2
        else:
            lo, up = _act(node.kind, lo), _act(node.kind, up)  # monotone activations
        if forward == "crown" and (j + 1) in feeds_act and j + 1 > 0:
            eye = jnp.eye(node.size, dtype=x_c.dtype)
            rows = jax.lax.optimization_barrier(jnp.concatenate([eye, -eye]))
            ub = _crown_upper(net, j + 1, rows, bounds, x_c, x_r)
            lo, up = jnp.maximum(lo, -ub[node.size :]), jnp.minimum(up, ub[: node.size])
        bounds.append((lo, up))
    return bounds


# ----------------------------------------------------------------------------- backward graph


def _edge_chord(lam, d_lo, d_up, a_lo, a_up):
    """Chord of phi(a) = max(lam d_lo a, lam d_up a) on [a_lo, a_up]: (coef [R, N], const [R])."""

    def phi(a):
        return jnp.maximum(lam * d_lo * a, lam * d_up * a)

    p_lo, p_up = phi(a_lo), phi(a_up)
    width = a_up - a_lo
    slope = jnp.where(width > _TINY, (p_up - p_lo) / jnp.maximum(width, _TINY), lam * d_up)
    # With a_lo = a_up, phi is evaluated at one point: any slope works if the constant matches.
    slope = jnp.where(d_lo == d_up, lam * d_up, slope)
    const = jnp.where(d_lo == d_up, 0.0, p_lo - slope * a_lo)
    return slope, const.sum(-1)


def _grad_upper(net, cons, start, rows, c, d_range, g_bounds):
    """Upper bounds of rows [R, N_start] . g_start by substitution up to g_out = c."""
    last = len(net)
    lams = {start: rows}
    const = jnp.zeros(rows.shape[:1], rows.dtype)
    for nid in range(start, last):
        if nid not in lams:
            continue
        lam = lams.pop(nid)
        for k in cons[nid]:
            node = net[k - 1]
            if node.kind == "affine":
                coef = jax.vmap(functools.partial(linear, node.layer))(lam)
            elif node.kind == "add":
                coef = lam
            else:
                d_lo, d_up = d_range[k]
                a_lo, a_up = g_bounds[k]
                coef, t = _edge_chord(lam, d_lo, d_up, a_lo, a_up)
                const = const + t
            lams[k] = lams[k] + coef if k in lams else coef
    return lams[last] @ c + const


def _interval_product(d_lo, d_up, a_lo, a_up):
    prods = jnp.stack([d_lo * a_lo, d_lo * a_up, d_up * a_lo, d_up * a_up])
    return prods.min(0), prods.max(0)


def _backward(net, c, d_range, method):
    """Bounds (lo, up) of g_n for every node n (v = g_0), interval then linear where needed."""
    cons = _consumers(net)
    last = len(net)
    g_bounds: dict = {last: (c, c)}
    for nid in range(last - 1, -1, -1):
        lo = up = None
        for k in cons[nid]:
            node = net[k - 1]
            a_lo, a_up = g_bounds[k]
            if node.kind == "affine":
                center, radius = (a_lo + a_up) / 2, (a_up - a_lo) / 2
                mid = linear_t(node.layer, center)
                rad = abs_linear_t(node.layer, radius)
                t_lo, t_up = mid - rad, mid + rad
            elif node.kind == "add":
                t_lo, t_up = a_lo, a_up
            else:
                t_lo, t_up = _interval_product(*d_range[k], a_lo, a_up)
            lo = t_lo if lo is None else lo + t_lo
            up = t_up if up is None else up + t_up
        if method == "ours" and (nid == 0 or net[nid - 1].kind in GRAPH_ACTIVATIONS):
            n = lo.shape[0]
            eye = jnp.eye(n, dtype=c.dtype)
            rows = jax.lax.optimization_barrier(jnp.concatenate([eye, -eye]))
            ub = _grad_upper(net, cons, nid, rows, c, d_range, g_bounds)
            lo, up = jnp.maximum(lo, -ub[n:]), jnp.minimum(up, ub[:n])
        g_bounds[nid] = (lo, up)
    return g_bounds, cons


def _bound_for_c(net, c, d_range, method):
    g_bounds, cons = _backward(net, c, d_range, method)
    v_lo, v_up = g_bounds[0]
    lip = jnp.maximum(jnp.abs(v_lo), jnp.abs(v_up)).sum()
    if method == "ours":
        width = v_up - v_lo
        s = jnp.where(
            width > _TINY, (jnp.abs(v_up) - jnp.abs(v_lo)) / jnp.maximum(width, _TINY), 0.0
        )
        t = jnp.abs(v_lo) - s * v_lo
        chord = _grad_upper(net, cons, 0, s[None], c, d_range, g_bounds)[0] + t.sum()
        lip = jnp.minimum(lip, chord)
    return lip, v_lo, v_up


def _prepare(net, x0, eps, method, forward, x_min, x_max):
    net = tuple(net)
    if not net or not all(isinstance(n, GraphNode) for n in net):
        raise ValueError("net must be a non-empty tuple of GraphNode (build it with graph_network)")
    if method not in ("ours", "interval"):
        raise ValueError(f"method must be 'ours' or 'interval' on graph networks, got {method!r}")
    if forward not in ("crown", "interval"):
        raise ValueError(
            f"forward must be 'crown' or 'interval' on graph networks, got {forward!r}"
        )
    x0 = jnp.asarray(x0)
    dtype = x0.dtype if jnp.issubdtype(x0.dtype, jnp.floating) else jnp.float32
    x0 = x0.astype(dtype)
    n0 = _sizes(net)[0]
    if x0.ndim != 1 or x0.shape[0] != n0:
        raise ValueError(f"x0 has shape {tuple(x0.shape)} but the network takes {n0} inputs")
    if not isinstance(eps, jax.core.Tracer) and float(np.min(np.asarray(eps))) < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    x_lo, x_up = input_box(x0, eps, x_min, x_max)
    bounds = _forward_bounds(net, x_lo, x_up, forward)
    d_range = {
        j + 1: activation_derivative_range(node.kind, *bounds[node.inputs[0]])
        for j, node in enumerate(net)
        if node.kind in GRAPH_ACTIVATIONS
    }
    return net, x0, dtype, d_range


@full_precision
def graph_lipschitz_bound(
    net: Sequence[GraphNode],
    x0,
    eps,
    *,
    c=None,
    method: str = "ours",
    forward: str = "crown",
    x_min=None,
    x_max=None,
) -> jax.Array:
    """Upper bound on max over the l_inf ball of ||d(c . f)/dx||_1 for a DAG network.

    Pure and jittable (``method``, ``forward`` static; the net is a pytree), vmappable over x0.

    Args:
      net: nodes from :func:`graph_network`.
      x0: [N_0] centre; eps: radius >= 0.
      c: [K] output direction, or None for the max over the one-hot outputs.
      method: "ours" (linear bounds on the backward graph) or "interval".
      forward: "crown" or "interval" bounds on the activations' inputs.
      x_min, x_max: optional data range, as in ``local_lipschitz_bound``.

    Returns:
      Scalar upper bound.
    """
    net, x0, dtype, d_range = _prepare(net, x0, eps, method, forward, x_min, x_max)
    k = net[-1].size
    if c is None:
        cs = jnp.eye(k, dtype=dtype)
    else:
        cs = jnp.asarray(c, dtype)
        if cs.shape != (k,):
            raise ValueError(f"c must have shape ({k},), got {cs.shape}")
        cs = cs[None]
    lips = jax.lax.map(lambda d: _bound_for_c(net, d, d_range, method)[0], cs)
    return jnp.where(jnp.asarray(eps) < 0, jnp.nan, lips.max())


@full_precision
def graph_gradient_bounds(
    net: Sequence[GraphNode],
    x0,
    eps,
    *,
    c,
    method: str = "ours",
    forward: str = "crown",
    x_min=None,
    x_max=None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Bounds on each partial derivative d(c.f)/dx_i over the ball for a DAG network.

    Returns:
      (lipschitz scalar, lower [N_0], upper [N_0]).
    """
    net, x0, dtype, d_range = _prepare(net, x0, eps, method, forward, x_min, x_max)
    c = jnp.asarray(c, dtype)
    if c.shape != (net[-1].size,):
        raise ValueError(f"c must have shape ({net[-1].size},), got {c.shape}")
    return _bound_for_c(net, c, d_range, method)
