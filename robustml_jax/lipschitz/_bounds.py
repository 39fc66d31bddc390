"""Bounds on the Clarke gradient of ``c . f(x)`` over an l_inf ball (Shi et al., NeurIPS 2022).

The network is ``z_k = A_k(h_{k-1}) + b_k``, ``h_k = relu(z_k)`` for hidden layers k = 0..L-2 and
``f = z_{L-1}``. Its gradient is the *backward graph* (paper Sec. 3.1)::

    g_{L-1} = c,   a_k = A_{k+1}^T g_{k+1},   g_k = delta_k * a_k,   v = A_0^T g_0,

with delta_k in the Clarke derivative of relu at z_k: 1 if z_k > 0, 0 if z_k < 0, [0, 1] if the
forward bounds of z_k contain 0 (an *unstable* neuron). The local Lipschitz constant is bounded
by the max over the ball of ``||v||_1`` (l1 is the dual of l_inf).

Relaxation (paper Sec. 3.2). For an unstable neuron the product y = delta * a lies in
[min(a, 0), max(a, 0)]. A linear bound ``Lambda * y`` is therefore at most
``phi(a) = Lambda^+ relu(a) + Lambda^- relu(-a)``, which is convex in a, and at least
``-phi_{-Lambda}(a)``, which is concave. The tightest linear upper bound of a convex function on
[l, u] is its chord, so the relaxation below is the chord of phi (and |v| is relaxed by its
chord for the final l1 norm). No slope is left free: alpha-CROWN's optimisable slopes only
matter for lower bounds of convex functions, which this backward graph never needs (see
NOTES.md). "recurjac" (the paper's RecurJac baseline, by the official code's rule) replaces y
by the constant interval of a wherever a's sign is unknown, active neurons included.

Every linear bound is propagated row by row with ``jax.vmap`` over the layer's linear map A
(backward-graph bounds) or its transpose ``jax.linear_transpose`` (forward CROWN bounds).

Shapes: N_k = width of hidden layer k, N_0 = input size (for v), K = number of outputs,
R = rows of a linear bound, S = total number of hidden neurons (sum of N_k).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from robustml_jax.lipschitz._bab import branch_and_bound
from robustml_jax.lipschitz._network import (
    Affine,
    abs_linear,
    abs_linear_t,
    as_network,
    full_precision,
    input_box,
    linear,
    linear_t,
    validate_input,
)

__all__ = [
    "METHODS",
    "GradientBounds",
    "gradient_bounds",
    "local_lipschitz_bound",
    "naive_bound",
    "partial_derivative_bound",
    "preactivation_bounds",
]

METHODS = ("ours", "recurjac", "interval", "naive")
_TINY = 1e-12


class GradientBounds(NamedTuple):
    """Result of one bound computation for one output direction c.

    Attributes:
      lipschitz: scalar upper bound on max ||v||_1 over the ball.
      lower: [N_0] lower bounds on each partial derivative dv_i = d(c.f)/dx_i.
      upper: [N_0] upper bounds on each partial derivative.
      score: [S] branching score of each hidden neuron (-inf where it cannot be split).
      infeasible: bool, the domain's split constraints are contradictory (empty region).
    """

    lipschitz: jax.Array
    lower: jax.Array
    upper: jax.Array
    score: jax.Array
    infeasible: jax.Array


# ----------------------------------------------------------------------------- forward bounds


def _signed_eye(n: int, dtype) -> jax.Array:
    """Rows [I; -I] ([2n, n]): upper bounds of z and of -z in one pass.

    The optimisation barrier keeps XLA from constant-folding products with this large constant,
    which took seconds of compile time per layer on CPU.
    """
    eye = jnp.eye(n, dtype=dtype)
    return jax.lax.optimization_barrier(jnp.concatenate([eye, -eye]))


def _relu_relax(lo, up):
    """CROWN relaxation of relu on [lo, up]: upper slope/intercept and adaptive lower slope."""
    active, inactive = lo >= 0, up <= 0
    unstable = ~active & ~inactive
    su = jnp.where(active, 1.0, jnp.where(unstable, up / jnp.maximum(up - lo, _TINY), 0.0))
    tu = jnp.where(unstable, -su * lo, 0.0)
    sl = jnp.where(active, 1.0, jnp.where(unstable, (up > -lo).astype(lo.dtype), 0.0))
    return su, tu, sl


def _crown_linear(net, i, lam, lowers, uppers):
    """CROWN back-substitution of rows lam [R, N_i] over z_i down to the input.

    Returns (coefficients over x [R, N_0], constant [R]) with lam . z_i <= coef . x + const.
    """
    const = lam @ net[i].bias
    lam = jax.vmap(functools.partial(linear_t, net[i]))(lam)
    for j in range(i - 1, -1, -1):
        su, tu, sl = _relu_relax(lowers[j], uppers[j])
        pos, neg = jnp.maximum(lam, 0.0), jnp.minimum(lam, 0.0)
        const = const + pos @ tu
        lam = pos * su + neg * sl
        const = const + lam @ net[j].bias
        lam = jax.vmap(functools.partial(linear_t, net[j]))(lam)
    return lam, const


def _clamp(lo, up, split):
    """Applies branch-and-bound split constraints (-1: z <= 0, +1: z >= 0) to bounds."""
    if split is None:
        return lo, up
    lo = jnp.where(split > 0, jnp.maximum(lo, 0.0), lo)
    return lo, jnp.where(split < 0, jnp.minimum(up, 0.0), up)


def _bounds_on_box(net, x_lo, x_up, split, forward):
    """Pre-activation bounds over the box [x_lo, x_up] and, for CROWN, their linear forms."""
    lowers, uppers, forms = [], [], []
    center, radius = (x_lo + x_up) / 2, (x_up - x_lo) / 2
    x_c, x_r = center, radius
    offset = 0
    for i in range(len(net) - 1):
        n = net[i].out_size
        zc = linear(net[i], center) + net[i].bias
        zr = abs_linear(net[i], radius)
        lo, up = zc - zr, zc + zr
        if forward == "crown":
            coef, const = _crown_linear(net, i, _signed_eye(n, x_lo.dtype), lowers, uppers)
            ub = coef @ x_c + jnp.abs(coef) @ x_r + const
            lo, up = jnp.maximum(lo, -ub[n:]), jnp.minimum(up, ub[:n])
            forms.append((coef, const))
        elif forward != "interval":
            raise ValueError(f"forward must be 'crown' or 'interval', got {forward!r}")
        sp = None if split is None else split[offset : offset + n]
        lo, up = _clamp(lo, up, sp)
        lowers.append(lo)
        uppers.append(up)
        offset += n
        h_lo, h_up = jax.nn.relu(lo), jax.nn.relu(up)
        center, radius = (h_lo + h_up) / 2, (h_up - h_lo) / 2
    return lowers, uppers, forms


def _tighten_box(x_lo, x_up, a, b, active):
    """One pass of bound tightening of the box with the constraints a @ x + b >= 0 (rows active).

    Args:
      x_lo, x_up: [N_0] box.
      a: [C, N_0], b: [C] constraint rows; active: [C] bool, which rows apply.
    """
    pos, neg = jnp.maximum(a, 0.0), jnp.minimum(a, 0.0)
    term_max = pos * x_up + neg * x_lo  # [C, N_0], max of a_j x_j over the box
    rest = b[:, None] + term_max.sum(-1, keepdims=True) - term_max  # max of the other terms + b
    safe = jnp.where(a == 0, 1.0, a)
    lim = -rest / safe  # a_j x_j >= -rest  ->  x_j >= lim (a_j > 0) or x_j <= lim (a_j < 0)
    use = active[:, None] & (a != 0)
    new_lo = jnp.where(use & (a > 0), lim, -jnp.inf).max(0)
    new_up = jnp.where(use & (a < 0), lim, jnp.inf).min(0)
    return jnp.maximum(x_lo, new_lo), jnp.minimum(x_up, new_up)


def _dual_certificate(a, b, act, x_lo, x_up, steps: int):
    """Min over multipliers of the Lagrangian dual of {x in box : a @ x + b >= 0 (act rows)}.

    d(lam) = max_{x in box} lam . (a x + b) for lam >= 0 on the simplex. Any lam with d < 0 proves
    the set empty (beta-CROWN's multipliers on split constraints, Wang et al. 2021), however
    roughly lam was optimised; it is minimised by mirror descent (exponentiated gradient).

    Args:
      a: [C, N_0], b: [C], act: [C] bool.

    Returns:
      Scalar: the smallest d found (normalised rows); < 0 means infeasible.
    """
    center, radius = (x_lo + x_up) / 2, (x_up - x_lo) / 2
    scale = jnp.abs(a) @ radius + jnp.abs(b + a @ center) + 1e-9
    a, b = a / scale[:, None], (b + a @ center) / scale  # rows about the box centre
    mask = act.astype(a.dtype)

    def dual_and_grad(lam):
        w = lam @ a  # [N_0]
        return lam @ b + jnp.abs(w) @ radius, b + a @ (jnp.sign(w) * radius)

    lam0 = mask / jnp.maximum(mask.sum(), 1.0)

    def body(t, carry):
        lam, best = carry
        val, g = dual_and_grad(lam)
        lam = lam * jnp.exp(-2.0 * g / jnp.sqrt(t + 1.0)) * mask
        lam = lam / jnp.maximum(lam.sum(), 1e-30)
        return lam, jnp.minimum(best, val)

    lam, best = jax.lax.fori_loop(0, steps, body, (lam0, dual_and_grad(lam0)[0]))
    best = jnp.minimum(best, dual_and_grad(lam)[0])
    return jnp.where(act.any(), best, jnp.inf)


def _phase_certificate(a, b, act, x_lo, x_up, extra_a, extra_b, extra_on, *, steps):
    """Dual certificate of the domain's constraints plus one row extra_a @ x + extra_b >= 0."""
    return _dual_certificate(
        jnp.concatenate([a, extra_a[None]]),
        jnp.concatenate([b, extra_b[None]]),
        jnp.concatenate([act, extra_on[None]]),
        x_lo,
        x_up,
        steps,
    )


def _domain_box_bounds(net, box, split, forward, passes: int = 1, dual_steps: int = 30):
    """Pre-activation bounds over {x in the ball : split constraints}.

    With splits and CROWN, each split neuron's linear bound gives a linear constraint on x
    (z >= 0 needs U(x) >= 0, z <= 0 needs L(x) <= 0). The ball is shrunk to a box that still
    contains the domain by bound tightening with these constraints; a Lagrangian dual
    certificate proves the domain empty, and (for up to 256 hidden neurons) proves free neurons
    stable on the domain by adding their opposite phase as one more constraint. Stable neurons
    found so are treated as split, and the bounds are recomputed.

    Returns:
      (lowers, uppers, effective split [S] or None, empty: bool scalar).
    """
    x_lo, x_up = box
    lowers, uppers, forms = _bounds_on_box(net, x_lo, x_up, split, forward)
    empty = jnp.zeros((), bool)
    if split is None or forward != "crown":
        return lowers, uppers, split, empty
    eff = split
    for _ in range(passes):
        rows_a, rows_b, sizes = [], [], []
        for (coef, const), lo in zip(forms, lowers, strict=True):
            n = lo.shape[0]
            # z <= coef[:n] x + const[:n]  and  -z <= coef[n:] x + const[n:].
            rows_a += [coef[:n], coef[n:]]
            rows_b += [const[:n], const[n:]]
            sizes.append(n)
        up_a, lo_a = jnp.concatenate(rows_a[0::2]), jnp.concatenate(rows_a[1::2])
        up_b, lo_b = jnp.concatenate(rows_b[0::2]), jnp.concatenate(rows_b[1::2])
        a_all, b_all = jnp.concatenate([up_a, lo_a]), jnp.concatenate([up_b, lo_b])
        act = jnp.concatenate([split > 0, split < 0])
        x_lo, x_up = _tighten_box(x_lo, x_up, a_all, b_all, act)
        empty = empty | jnp.any(x_lo > x_up)
        x_up = jnp.maximum(x_up, x_lo)
        s_total = up_a.shape[0]
        # One batched dual solve: the domain itself (extra row switched off) and, for small
        # nets, the domain plus the opposite phase of every neuron.
        extra_a, extra_b = jnp.zeros_like(a_all[:1]), jnp.zeros_like(b_all[:1])
        extra_on = jnp.zeros((1,), bool)
        if s_total <= 256:
            extra_a = jnp.concatenate([extra_a, lo_a, up_a])
            extra_b = jnp.concatenate([extra_b, lo_b, up_b])
            extra_on = jnp.ones((1 + 2 * s_total,), bool).at[0].set(False)
        test = functools.partial(
            _phase_certificate, a_all, b_all, act, x_lo, x_up, steps=dual_steps
        )
        d = jax.vmap(test)(extra_a, extra_b, extra_on)
        empty = empty | (d[0] < -1e-6)
        if s_total <= 256:
            free = (eff == 0) & (jnp.concatenate(lowers) <= 0) & (jnp.concatenate(uppers) >= 0)
            # z_j <= 0 impossible -> active; z_j >= 0 impossible -> inactive.
            d_active, d_inactive = d[1 : 1 + s_total], d[1 + s_total :]
            eff = jnp.where(free & (d_active < -1e-6), 1, eff)
            eff = jnp.where(free & (d_inactive < -1e-6) & (eff == 0), -1, eff).astype(split.dtype)
        lowers, uppers, forms = _bounds_on_box(net, x_lo, x_up, eff, forward)
    return lowers, uppers, eff, empty


@full_precision
def preactivation_bounds(
    net: Sequence[Affine],
    x0,
    eps,
    *,
    split=None,
    forward: str = "crown",
    x_min=None,
    x_max=None,
) -> tuple[list[jax.Array], list[jax.Array]]:
    """Bounds on every hidden pre-activation z_k over {x : ||x - x0||_inf <= eps}.

    Args:
      net: ``(W, b)`` pairs or converted layers.
      x0: [N_0].
      eps: radius.
      split: optional [S] int array of branch constraints (+1: z >= 0, -1: z <= 0, 0: free);
        the bounds then hold on the part of the ball that satisfies them.
      forward: "interval" (IBP) or "crown" (CROWN, intersected with IBP).
      x_min, x_max: optional data range (scalars or [N_0]): the ball is intersected with it.

    Returns:
      (lowers, uppers): lists of [N_k] for the hidden layers k = 0..L-2.
    """
    net = as_network(net)
    x0 = jnp.asarray(x0)
    validate_input(net, x0, eps)
    box = input_box(x0, eps, x_min, x_max)
    lowers, uppers, _, _ = _domain_box_bounds(net, box, split, forward)
    return lowers, uppers


# ----------------------------------------------------------------------------- backward graph


def _phi_ends(lam, lo, up):
    """phi(lo), phi(up) for phi(a) = lam^+ relu(a) + lam^- relu(-a); lam [R, N], lo/up [N]."""
    pos, neg = jnp.maximum(lam, 0.0), jnp.maximum(-lam, 0.0)
    phi_l = pos * jax.nn.relu(lo) + neg * jax.nn.relu(-lo)
    phi_u = pos * jax.nn.relu(up) + neg * jax.nn.relu(-up)
    return phi_l, phi_u


def _relax_grad(lam, active, inactive, lo, up, mode):
    """Upper-bounds ``lam . y`` with y = delta * a by a linear function of a on [lo, up].

    "chord": the chord of phi at unstable neurons, ``lam`` at active ones (paper Sec. 3.2).
    "recurjac": the rule of the official RecurJac baseline (auto_LiRPA's ``BoundReluGrad``
    with ``recurjac=True``): wherever the sign of a is unknown (lo < 0 < up) and the neuron is
    not inactive, y is replaced by the constant interval [lo, up] (active neurons included);
    elsewhere as "chord" (exact there, since relu of a sign-definite a is linear).

    Returns (coefficients over a [R, N], constant [R]).
    """
    phi_l, phi_u = _phi_ends(lam, lo, up)
    width = up - lo
    slope = jnp.where(width > _TINY, (phi_u - phi_l) / jnp.maximum(width, _TINY), 0.0)
    unstable = ~active & ~inactive
    coef = jnp.where(active, lam, jnp.where(unstable, slope, 0.0))
    const = jnp.where(unstable, phi_l - slope * lo, 0.0)
    if mode == "recurjac":
        mixed = (lo < 0) & (up > 0) & ~inactive
        coef = jnp.where(mixed, 0.0, coef)
        const = jnp.where(mixed, jnp.maximum(lam, 0.0) * up + jnp.minimum(lam, 0.0) * lo, const)
    elif mode != "chord":
        raise ValueError(f"mode must be 'chord' or 'recurjac', got {mode!r}")
    return coef, const.sum(-1)


def _grad_upper(net, i, lam, c, status, a_lo, a_up, mode):
    """Upper bound of ``lam . g_i`` (rows lam [R, N_i]) by back-substitution down to g_{L-1} = c."""
    last = len(net) - 1
    const = jnp.zeros(lam.shape[:1], lam.dtype)
    for j in range(i, last):
        active, inactive = status[j]
        lam, t = _relax_grad(lam, active, inactive, a_lo[j], a_up[j], mode)
        const = const + t
        lam = jax.vmap(functools.partial(linear, net[j + 1]))(lam)
    return lam @ c + const


def _g_interval(active, inactive, lo, up):
    g_lo = jnp.where(active, lo, jnp.where(inactive, 0.0, jnp.minimum(lo, 0.0)))
    g_up = jnp.where(active, up, jnp.where(inactive, 0.0, jnp.maximum(up, 0.0)))
    return g_lo, g_up


def _interval_t(layer, g_lo, g_up):
    center, radius = (g_lo + g_up) / 2, (g_up - g_lo) / 2
    ac, ar = linear_t(layer, center), abs_linear_t(layer, radius)
    return ac - ar, ac + ar


def _backward_bounds(net, c, status, mode):
    """Bounds on every a_k and on v; ``mode`` in {"chord", "recurjac", "interval"}."""
    last = len(net) - 1
    a_lo: list = [None] * last
    a_up: list = [None] * last
    g_lo, g_up = c, c
    for i in range(last - 1, -1, -1):
        lo, up = _interval_t(net[i + 1], g_lo, g_up)
        if mode != "interval":
            n = net[i].out_size
            rows = jax.vmap(functools.partial(linear, net[i + 1]))(_signed_eye(n, c.dtype))
            ub = _grad_upper(net, i + 1, rows, c, status, a_lo, a_up, mode)
            lo, up = jnp.maximum(lo, -ub[n:]), jnp.minimum(up, ub[:n])
        a_lo[i], a_up[i] = lo, up
        g_lo, g_up = _g_interval(*status[i], lo, up)
    v_lo, v_up = _interval_t(net[0], g_lo, g_up)
    if mode != "interval" and last > 0:
        n0 = net[0].in_size
        rows = jax.vmap(functools.partial(linear, net[0]))(_signed_eye(n0, c.dtype))
        ub = _grad_upper(net, 0, rows, c, status, a_lo, a_up, mode)
        v_lo, v_up = jnp.maximum(v_lo, -ub[n0:]), jnp.minimum(v_up, ub[:n0])
    return a_lo, a_up, v_lo, v_up


def _status(lowers, uppers, split, net):
    status, offset = [], 0
    for lo, up in zip(lowers, uppers, strict=True):
        n = lo.shape[0]
        sp = None if split is None else split[offset : offset + n]
        active = lo > 0 if sp is None else (lo > 0) | (sp > 0)
        inactive = up < 0 if sp is None else (up < 0) | (sp < 0)
        inactive = inactive & ~active
        status.append((active, inactive))
        offset += n
    return status


def _forward_part(net, box, split, forward):
    """Forward bounds and neuron status of one domain (shared by every output direction)."""
    lowers, uppers, split, empty = _domain_box_bounds(net, box, split, forward)
    status = _status(lowers, uppers, split, net)
    infeasible = empty
    for lo, up in zip(lowers, uppers, strict=True):
        infeasible = infeasible | jnp.any(lo > up + 1e-6 * (1.0 + jnp.abs(lo)))
    return lowers, uppers, status, infeasible


def _bound_for_c(net, c, lowers, uppers, status, infeasible, method) -> GradientBounds:
    mode = {"ours": "chord", "recurjac": "recurjac", "interval": "interval"}[method]
    a_lo, a_up, v_lo, v_up = _backward_bounds(net, c, status, mode)
    lip = jnp.maximum(jnp.abs(v_lo), jnp.abs(v_up)).sum()
    if mode != "interval" and len(net) > 1:
        # Chord of |v_i| on [v_lo, v_up] (the l1 dual norm node, one relaxation for every
        # method as in the official code's gradient-norm node), then back-substitution.
        width = v_up - v_lo
        s = jnp.where(
            width > _TINY, (jnp.abs(v_up) - jnp.abs(v_lo)) / jnp.maximum(width, _TINY), 0.0
        )
        t = jnp.abs(v_lo) - s * v_lo
        row = linear(net[0], s)[None]
        chord = _grad_upper(net, 0, row, c, status, a_lo, a_up, mode)[0] + t.sum()
        lip = jnp.minimum(lip, chord)
    # Branching score: how wide the gradient through an unstable neuron can be, times how
    # balanced its forward interval is (split-able neurons only).
    scores = []
    for (active, inactive), lo, up, alo, aup in zip(
        status, lowers, uppers, a_lo, a_up, strict=True
    ):
        free = ~active & ~inactive
        balance = jnp.minimum(up, -lo) / jnp.maximum(up - lo, _TINY)
        sc = jnp.maximum(jnp.abs(alo), jnp.abs(aup)) * balance
        scores.append(jnp.where(free, sc, -jnp.inf))
    score = jnp.concatenate(scores) if scores else jnp.zeros((0,), c.dtype)
    return GradientBounds(lip, v_lo, v_up, score, infeasible)


# ----------------------------------------------------------------------------- public API


@full_precision
def naive_bound(net: Sequence[Affine], c=None) -> jax.Array:
    """Product of induced inf-norms (max row l1) of the layers: a global Lipschitz bound."""
    prod = jnp.ones((), net[0].bias.dtype)
    for layer in net[:-1]:
        prod = prod * abs_linear(layer, jnp.ones((layer.in_size,), prod.dtype)).max()
    last = net[-1]
    if c is None:
        head = abs_linear(last, jnp.ones((last.in_size,), prod.dtype)).max()
    else:
        head = jnp.abs(linear_t(last, c)).sum()
    return prod * head


def _directions(net, c, dtype):
    k = net[-1].out_size
    if c is None:
        return jnp.eye(k, dtype=dtype)
    c = jnp.asarray(c, dtype)
    if c.shape != (k,):
        raise ValueError(f"c must have shape ({k},) (one weight per network output), got {c.shape}")
    return c[None]


def _domain_bound(net, box, cs, split, method, forward):
    """Max over directions cs [K', K] of the bound on one domain; score of the argmax direction."""
    fwd = _forward_part(net, box, split, forward)
    res = jax.lax.map(lambda c: _bound_for_c(net, c, *fwd, method), cs)
    best = jnp.argmax(res.lipschitz)
    lip = jnp.where(res.infeasible[best], -jnp.inf, res.lipschitz.max())
    return lip, res.score[best]


@full_precision
def gradient_bounds(
    layers,
    x0,
    eps,
    *,
    c,
    method: str = "ours",
    forward: str = "crown",
    x_min=None,
    x_max=None,
) -> GradientBounds:
    """Bounds on each partial derivative d(c.f)/dx_i over the l_inf ball (monotonicity).

    A lower bound >= 0 for feature i certifies that c.f is non-decreasing in x_i on the ball
    (paper Sec. 5.4).

    Args:
      layers: ``(W [in, out], b [out])`` pairs or converted layers.
      x0: [N_0] centre.
      eps: radius >= 0.
      c: [K] output direction.
      method: "ours", "recurjac" or "interval".
      forward: pre-activation bounds, "crown" or "interval".
      x_min, x_max: optional data range, as in :func:`local_lipschitz_bound`.

    Returns:
      :class:`GradientBounds` of the whole ball (``lower`` / ``upper`` [N_0] are the partial
      derivative bounds, ``lipschitz`` the bound on ||d(c.f)/dx||_1).
    """
    net = as_network(layers)
    x0 = jnp.asarray(x0)
    validate_input(net, x0, eps)
    if method not in ("ours", "recurjac", "interval"):
        raise ValueError(f"gradient_bounds: method must be ours/recurjac/interval, got {method!r}")
    cs = _directions(net, c, x0.dtype)
    box = input_box(x0, eps, x_min, x_max)
    return _bound_for_c(net, cs[0], *_forward_part(net, box, None, forward), method)


@full_precision
def partial_derivative_bound(
    layers,
    x0,
    eps,
    feature,
    *,
    c,
    sign: float = 1.0,
    bab_steps: int = 0,
    bab_batch: int = 4,
    forward: str = "crown",
    x_min=None,
    x_max=None,
) -> jax.Array:
    """Lower bound of ``sign * d(c.f)/dx_feature`` over the ball, tightened by branch-and-bound.

    ``> 0`` (sign +1) certifies that c.f is increasing in ``x_feature`` on the ball; sign -1
    certifies decreasing. BaB splits unstable ReLUs as for the Lipschitz bound; the domain value
    is ``-sign * (derivative bound)`` so the max over open domains only decreases.

    Args:
      layers: ``(W, b)`` pairs or converted layers.
      x0: [N_0].
      eps: radius.
      feature: int index (may be traced, so one compile serves every feature).
      c: [K] output direction.
      sign: +1.0 or -1.0 (may be traced).
      bab_steps, bab_batch: as in :func:`local_lipschitz_bound`.
      forward, x_min, x_max: as in :func:`local_lipschitz_bound`.

    Returns:
      Scalar lower bound of ``sign * d(c.f)/dx_feature``.
    """
    net = as_network(layers)
    x0 = jnp.asarray(x0)
    validate_input(net, x0, eps)
    cs = _directions(net, c, x0.dtype)
    box = input_box(x0, eps, x_min, x_max)

    def bound_fn(split):
        fwd = _forward_part(net, box, split, forward)
        res = _bound_for_c(net, cs[0], *fwd, "ours")
        worst = jnp.where(sign > 0, -res.lower[feature], res.upper[feature])
        return jnp.where(fwd[3], -jnp.inf, worst), res.score

    if bab_steps == 0 or len(net) == 1:
        return -bound_fn(None)[0]
    num = sum(layer.out_size for layer in net[:-1])
    return -branch_and_bound(
        bound_fn, num_neurons=num, steps=bab_steps, batch=bab_batch, dtype=x0.dtype
    ).bound


@full_precision
def local_lipschitz_bound(
    layers,
    x0,
    eps,
    *,
    c=None,
    method: str = "ours",
    bab_steps: int = 0,
    bab_batch: int = 4,
    forward: str = "crown",
    activation: str = "relu",
    x_min=None,
    x_max=None,
) -> jax.Array:
    """Upper bound on max_{||x - x0||_inf <= eps} ||d(c . f)/dx||_1 over Clarke gradients.

    Pure and jittable (``method``, ``bab_steps``, ``bab_batch``, ``forward``, ``activation``
    static) and vmappable over ``x0`` and ``eps``.

    Args:
      layers: a sequence of ``(W [in, out], b [out])`` pairs with ReLU after every layer but the
        last, or layers converted by :func:`from_flax`.
      x0: [N_0] centre of the ball.
      eps: radius >= 0.
      c: [K] output direction, or None for the max over the one-hot outputs.
      method: "ours" (linear bounds on the backward graph), "recurjac" (the RecurJac
        baseline: the incoming gradient's interval wherever its sign is unknown), "interval"
        (pure interval arithmetic) or "naive" (product of induced inf-norms; ignores x0 and
        eps).
      bab_steps: branch-and-bound iterations (0: none); each splits ``bab_batch`` domains.
      bab_batch: domains split per iteration.
      forward: pre-activation bounds, "crown" or "interval".
      activation: must be "relu" (the only activation the relaxation supports).
      x_min, x_max: optional data range (scalars or [N_0]); the bound then holds over the
        box ``[max(x0 - eps, x_min), min(x0 + eps, x_max)]``, the ball intersected with the
        data domain as in the official code.

    Returns:
      Scalar upper bound.
    """
    net = as_network(layers, activation=activation)
    x0 = jnp.asarray(x0)
    validate_input(net, x0, eps)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if bab_steps < 0 or bab_batch < 1:
        raise ValueError(f"bab_steps must be >= 0 and bab_batch >= 1, got {bab_steps}, {bab_batch}")
    dtype = x0.dtype if jnp.issubdtype(x0.dtype, jnp.floating) else jnp.float32
    x0 = x0.astype(dtype)
    box = input_box(x0, eps, x_min, x_max)
    if method == "naive":
        return naive_bound(net, None if c is None else jnp.asarray(c, dtype))
    cs = _directions(net, c, dtype)
    if bab_steps == 0 or len(net) == 1:
        lip, _ = _domain_bound(net, box, cs, None, method, forward)
    else:
        lip = branch_and_bound(
            lambda split: _domain_bound(net, box, cs, split, method, forward),
            num_neurons=sum(layer.out_size for layer in net[:-1]),
            steps=bab_steps,
            batch=bab_batch,
            dtype=dtype,
        ).bound
    # A traced eps cannot raise; a negative one gives NaN rather than a meaningless bound.
    return jnp.where(jnp.asarray(eps) < 0, jnp.nan, lip)
