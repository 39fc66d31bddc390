"""Reference values: a sampled lower bound (any network) and the exact value (tiny MLPs).

The exact value enumerates the activation regions of a dense ReLU network that meet the ball
with a depth-first search; each partial activation pattern is kept only if a linear program
(``scipy.optimize.linprog``, HiGHS) finds a point of the ball strictly inside it. In a region
the network is affine, so its gradient is one vector; the max over regions of its l1 norm is
the max over the ball of the l1 norm of the Clarke gradient (the l1 norm is convex, so its max
over a Clarke set, a convex hull of region gradients, is at a region gradient).

Shapes: N_0 = input size, K = outputs, P = sampled points.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linprog

from robustml_jax.lipschitz._network import (
    as_network,
    forward,
    full_precision,
    input_box,
    linear,
    validate_input,
)

__all__ = ["ExactLipschitz", "exact_lipschitz", "gradient_norm", "sampled_lower_bound"]


class ExactLipschitz(NamedTuple):
    """Result of :func:`exact_lipschitz`.

    Attributes:
      value: the exact max over the ball of ||d(c.f)/dx||_1 (float).
      regions: activation regions meeting the ball (int).
      lps: linear programs solved (int).
      time_s: seconds spent.
    """

    value: float
    regions: int
    lps: int
    time_s: float


@full_precision
def gradient_norm(layers, x, *, c=None) -> jax.Array:
    """||d(c.f)/dx||_1 at x [N_0] (max over one-hot c when c is None), relu'(0) = 0."""
    net = as_network(layers)
    jac = jax.jacrev(lambda v: forward(net, v))(x)  # [K, N_0]
    if c is not None:
        return jnp.abs(jnp.asarray(c, x.dtype) @ jac).sum()
    return jnp.abs(jac).sum(-1).max()


@full_precision
def sampled_lower_bound(
    layers,
    key: jax.Array,
    x0,
    eps,
    *,
    c=None,
    num_samples: int = 256,
    ascent_starts: int = 16,
    ascent_steps: int = 20,
    smoothing: float = 10.0,
    x_min=None,
    x_max=None,
) -> jax.Array:
    """Lower bound: the max of the true gradient's l1 norm over points of the ball.

    Points: uniform samples, random vertices, and gradient ascent on the l1 norm of the gradient
    of a softplus-smoothed network (the ReLU net's gradient norm is piecewise constant, so it
    has no useful gradient itself); the true norm is evaluated at every visited point.

    Args:
      layers: ``(W, b)`` pairs or converted layers.
      key: PRNG key.
      x0: [N_0].
      eps: radius.
      c: [K] or None (max over one-hot outputs).
      num_samples: uniform and vertex samples (half each).
      ascent_starts, ascent_steps: signed-gradient ascent runs and their length.
      smoothing: softplus sharpness beta of the surrogate.
      x_min, x_max: optional data range; every point is clipped into the box
        ``[max(x0 - eps, x_min), min(x0 + eps, x_max)]`` (unchanged without them).
    """
    net = as_network(layers)
    x0 = jnp.asarray(x0)
    validate_input(net, x0, eps)
    if x_min is None and x_max is None:
        clip = lambda x: x
    else:
        lo, up = input_box(x0, eps, x_min, x_max)
        clip = lambda x: jnp.clip(x, lo, up)
    k_unif, k_vert, k_start = jax.random.split(key, 3)
    n0 = x0.shape[0]
    half = max(num_samples // 2, 1)
    unif = clip(x0 + eps * jax.random.uniform(k_unif, (half, n0), x0.dtype, -1.0, 1.0))
    vert = clip(x0 + eps * jax.random.rademacher(k_vert, (half, n0), x0.dtype))
    norm = jax.vmap(lambda x: gradient_norm(net, x, c=c))
    best = jnp.maximum(norm(unif).max(), norm(vert).max())
    best = jnp.maximum(best, gradient_norm(net, clip(x0), c=c))

    def smooth_norm(x):
        def f(v):
            for i, layer in enumerate(net):
                v = linear(layer, v) + layer.bias
                if i < len(net) - 1:
                    v = jax.nn.softplus(smoothing * v) / smoothing
            return v

        jac = jax.jacrev(f)(x)
        if c is not None:
            return jnp.abs(jnp.asarray(c, x.dtype) @ jac).sum()
        return jax.nn.logsumexp(10.0 * jnp.abs(jac).sum(-1)) / 10.0

    step = eps / 4.0

    def ascend(x):
        def body(_, carry):
            x, best = carry
            g = jax.grad(smooth_norm)(x)
            x = clip(jnp.clip(x + step * jnp.sign(g), x0 - eps, x0 + eps))
            return x, jnp.maximum(best, gradient_norm(net, x, c=c))

        return jax.lax.fori_loop(0, ascent_steps, body, (x, gradient_norm(net, x, c=c)))[1]

    starts = x0 + eps * jax.random.uniform(k_start, (ascent_starts, n0), x0.dtype, -1.0, 1.0)
    starts = clip(starts)
    return jnp.maximum(best, jax.vmap(ascend)(starts).max())


def exact_lipschitz(
    layers,
    x0,
    eps,
    *,
    c=None,
    max_regions: int = 200_000,
    time_limit_s: float = 120.0,
    x_min=None,
    x_max=None,
) -> ExactLipschitz:
    """Exact max over the ball of the l1 norm of the Clarke gradient, for small dense MLPs.

    Args:
      layers: ``(W [in, out], b [out])`` pairs (dense only).
      x0: [N_0].
      eps: radius >= 0.
      c: [K] or None (max over one-hot outputs).
      max_regions: give up (RuntimeError) after this many regions.
      time_limit_s: give up (RuntimeError) after this many seconds.
      x_min, x_max: optional data range: the max is over the box
        ``[max(x0 - eps, x_min), min(x0 + eps, x_max)]``.

    Returns:
      :class:`ExactLipschitz`.
    """
    net = as_network(layers)
    if any(layer.ops != (("dense",),) for layer in net):
        raise ValueError("exact_lipschitz supports dense (W, b) layers only")
    x0 = np.asarray(x0, np.float64)
    validate_input(net, jnp.asarray(x0), eps)
    ws = [np.asarray(layer.weights[0], np.float64) for layer in net]
    bs = [np.asarray(layer.bias, np.float64) for layer in net]
    n0, k = x0.shape[0], ws[-1].shape[1]
    cmat = np.eye(k) if c is None else np.asarray(c, np.float64)[None]
    lo_x, hi_x = x0 - eps, x0 + eps
    boxed = x_min is not None or x_max is not None
    if boxed:
        lo_x = lo_x if x_min is None else np.maximum(lo_x, np.asarray(x_min, np.float64))
        hi_x = hi_x if x_max is None else np.minimum(hi_x, np.asarray(x_max, np.float64))
        if np.any(lo_x > hi_x):
            raise ValueError("the input box is empty: x0 lies more than eps outside the range")
    t0 = time.perf_counter()
    stats = {"regions": 0, "lps": 0}
    best = [0.0]
    tol = 1e-9

    def interior(cons_a, cons_b):
        """Is there x in the box with cons_a @ x + cons_b > 0 (all rows, with margin)?"""
        if not cons_a:
            return True
        stats["lps"] += 1
        a = np.array(cons_a)
        b = np.array(cons_b)
        # variables (x, t): maximise t s.t. -(a x + b) + t <= 0, t <= 1.
        a_ub = np.hstack([-a, np.ones((len(a), 1))])
        res = linprog(
            np.r_[np.zeros(n0), -1.0],
            A_ub=a_ub,
            b_ub=b,
            bounds=[*zip(lo_x, hi_x, strict=True), (None, 1.0)],
            method="highs",
        )
        return res.status == 0 and -res.fun > tol

    def dfs(layer, m, mb, cons_a, cons_b):
        """On the region so far the input h of ``layer`` is x @ m + mb (m [N_0, n] = dh/dx)."""
        if time.perf_counter() - t0 > time_limit_s or stats["regions"] > max_regions:
            raise RuntimeError(
                f"exact_lipschitz gave up after {stats['regions']} regions / "
                f"{time.perf_counter() - t0:.0f}s: the network is too large for enumeration"
            )
        if layer == len(net) - 1:
            g = m @ ws[-1] @ cmat.T  # [N_0, K'] gradients of the region
            stats["regions"] += 1
            best[0] = max(best[0], float(np.abs(g).sum(0).max()))
            return
        za = m @ ws[layer]  # z = x @ za + zb on the region
        zb = mb @ ws[layer] + bs[layer]
        if boxed:
            center = (lo_x + hi_x) / 2 @ za + zb
            radius = (hi_x - lo_x) / 2 @ np.abs(za)
        else:
            center = x0 @ za + zb
            radius = eps * np.abs(za).sum(0)
        lo, hi = center - radius, center + radius
        n = zb.shape[0]

        def assign(i, pattern, cons_a, cons_b):
            if i == n:
                d = np.array(pattern, np.float64)
                dfs(layer + 1, za * d, zb * d, cons_a, cons_b)
                return
            if lo[i] > 0:
                assign(i + 1, [*pattern, 1.0], cons_a, cons_b)
            elif hi[i] < 0:
                assign(i + 1, [*pattern, 0.0], cons_a, cons_b)
            else:
                for sign in (1.0, -1.0):
                    na, nb = [*cons_a, sign * za[:, i]], [*cons_b, sign * zb[i]]
                    if interior(na, nb):
                        assign(i + 1, [*pattern, 1.0 if sign > 0 else 0.0], na, nb)

        assign(0, [], cons_a, cons_b)

    dfs(0, np.eye(n0), np.zeros(n0), [], [])
    return ExactLipschitz(best[0], stats["regions"], stats["lps"], time.perf_counter() - t0)
