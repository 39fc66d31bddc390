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
import numpy as np
import optax

from robustml_jax.lipschitz._bab import branch_and_bound, budgeted_branch_and_bound
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
    "BRANCHING",
    "BudgetedBound",
    "GradientBounds",
    "budgeted_lipschitz_bound",
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


def _crown_linear(net, i, lam, lowers, uppers, slopes=None):
    """CROWN back-substitution of rows lam [R, N_i] over z_i down to the input.

    ``slopes`` (alpha-CROWN): optional list, per earlier layer j, of lower-relaxation slopes at
    its unstable neurons (broadcastable to [R, N_j], clipped to [0, 1]); None: CROWN's adaptive
    slope. Any slope in [0, 1] gives a valid lower line of relu, so every choice is sound.

    Returns (coefficients over x [R, N_0], constant [R]) with lam . z_i <= coef . x + const.
    """
    const = lam @ net[i].bias
    lam = jax.vmap(functools.partial(linear_t, net[i]))(lam)
    for j in range(i - 1, -1, -1):
        su, tu, sl = _relu_relax(lowers[j], uppers[j])
        if slopes is not None:
            unstable = (lowers[j] < 0) & (uppers[j] > 0)
            sl = jnp.where(unstable, jnp.clip(slopes[j], 0.0, 1.0), sl)
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


# alpha-CROWN schedule of the official code: 20 Adam steps, lr 0.5, decay 0.98 per step.
ALPHA_STEPS, ALPHA_LR, ALPHA_DECAY = 20, 0.5, 0.98


def _share(sparse, i):
    """The row fraction of hidden layer i: ``sparse`` is one fraction or one per hidden layer."""
    return sparse[i] if isinstance(sparse, tuple | list) else sparse


def _row_selection(priority, fraction):
    """Indices [m] of the m = ceil(fraction * N) neurons of highest priority (static m)."""
    n = priority.shape[0]
    m = max(1, min(n, int(-(-fraction * n // 1))))
    if m == n:
        return jnp.arange(n)
    return jax.lax.top_k(priority, m)[1]


def _layer_rows(net, i, lowers, uppers, x_c, x_r, idx, forward, weight):
    """CROWN (or alpha-CROWN) upper bounds of z_i[idx] and -z_i[idx] over the box.

    ``weight`` [m]: each selected neuron's weight in alpha's objective (0 for neurons that
    interval arithmetic already proves inactive: their bounds never matter).

    Returns (ub [2m] (first m rows: z, last m: -z), coef [2m, N_0], const [2m]).
    """
    n, m = net[i].out_size, idx.shape[0]
    dtype = x_c.dtype
    sel = jax.nn.one_hot(idx, n, dtype=dtype)
    rows = jax.lax.optimization_barrier(jnp.concatenate([sel, -sel]))

    def evaluate(slopes):
        coef, const = _crown_linear(net, i, rows, lowers, uppers, slopes)
        return coef @ x_c + jnp.abs(coef) @ x_r + const, coef, const

    ub, coef, const = evaluate(None)
    if forward != "alpha" or i == 0:
        return ub, coef, const
    # alpha-CROWN: one slope vector per earlier layer for the z rows and one for the -z rows,
    # optimised by Adam on the sum of the row bounds (rows of neurons that interval arithmetic
    # proves inactive left out, so the sparse path optimises the same objective), initialised
    # at CROWN's adaptive slope;
    # every row keeps its best bound over the iterations (CROWN's included), so the result is
    # never looser than CROWN.
    init = [jnp.stack([_relu_relax(lowers[j], uppers[j])[2]] * 2) for j in range(i)]

    def per_row(a):  # [2, N_j] -> [2m, N_j]
        return jnp.repeat(a, m, axis=0)

    row_weight = jnp.concatenate([weight, weight])

    def loss(params):
        return evaluate([per_row(a) for a in params])[0] @ row_weight

    opt = optax.adam(optax.exponential_decay(ALPHA_LR, 1, ALPHA_DECAY))

    def step(carry, _):
        params, state, best_ub, best_coef, best_const = carry
        grads = jax.grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        params = [jnp.clip(p, 0.0, 1.0) for p in optax.apply_updates(params, updates)]
        new_ub, new_coef, new_const = evaluate([per_row(a) for a in params])
        better = new_ub < best_ub
        return (
            params,
            state,
            jnp.where(better, new_ub, best_ub),
            jnp.where(better[:, None], new_coef, best_coef),
            jnp.where(better, new_const, best_const),
        ), None

    carry = (init, opt.init(init), ub, coef, const)
    carry, _ = jax.lax.scan(step, carry, None, length=ALPHA_STEPS)
    return carry[2], carry[3], carry[4]


def _bounds_on_box(net, x_lo, x_up, split, forward, sparse=None):
    """Pre-activation bounds over the box [x_lo, x_up] and, for CROWN, their linear forms.

    ``sparse`` (a fraction in (0, 1], or None for all rows): CROWN rows are computed only for
    the ceil(sparse * N_k) neurons of each layer that interval arithmetic leaves unstable first,
    then active (an inactive neuron's bounds never matter: relu is 0 on them either way); the
    rest keep their interval bounds. When the budget covers every neuron that interval
    arithmetic does not prove inactive, the bounds equal the dense ones. ``forms`` holds, per
    layer, (coef [N_k, N_0], const [N_k]) of the upper bounds of z and of -z in [2, ...] stacks
    (rows without a CROWN bound hold their interval bound as a constant).
    """
    if forward == "alpha":
        # CROWN is not monotone in the earlier layers' bounds, so alpha's bounds are also
        # intersected with a plain CROWN pass: never looser than CROWN, layer by layer.
        crown_lo, crown_up, _ = _bounds_on_box(net, x_lo, x_up, split, "crown", sparse)
    lowers, uppers, forms = [], [], []
    center, radius = (x_lo + x_up) / 2, (x_up - x_lo) / 2
    x_c, x_r = center, radius
    offset = 0
    for i in range(len(net) - 1):
        n = net[i].out_size
        zc = linear(net[i], center) + net[i].bias
        zr = abs_linear(net[i], radius)
        lo, up = zc - zr, zc + zr
        if forward == "alpha":
            lo, up = jnp.maximum(lo, crown_lo[i]), jnp.minimum(up, crown_up[i])
        if forward in ("crown", "alpha"):
            priority = jnp.where(lo >= 0, 1.0, jnp.where(up <= 0, 0.0, 2.0))
            idx = jnp.arange(n) if sparse is None else _row_selection(priority, _share(sparse, i))
            m = idx.shape[0]
            weight = (priority[idx] > 0).astype(x_c.dtype)
            ub, coef, const = _layer_rows(net, i, lowers, uppers, x_c, x_r, idx, forward, weight)
            if sparse is not None:
                lo = lo.at[idx].max(-ub[m:])
                up = up.at[idx].min(ub[:m])
                coef_u = jnp.zeros((n, x_c.shape[0]), coef.dtype).at[idx].set(coef[:m])
                coef_l = jnp.zeros((n, x_c.shape[0]), coef.dtype).at[idx].set(coef[m:])
                const_u = up.at[idx].set(const[:m])
                const_l = (-lo).at[idx].set(const[m:])
                coef = jnp.concatenate([coef_u, coef_l])
                const = jnp.concatenate([const_u, const_l])
            else:
                lo, up = jnp.maximum(lo, -ub[n:]), jnp.minimum(up, ub[:n])
            forms.append((coef, const))
        elif forward != "interval":
            raise ValueError(f"forward must be 'crown', 'alpha' or 'interval', got {forward!r}")
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


def _domain_box_bounds(
    net, box, split, forward, passes: int = 1, dual_steps: int = 30, sparse=None
):
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
    lowers, uppers, forms = _bounds_on_box(net, x_lo, x_up, split, forward, sparse)
    empty = jnp.zeros((), bool)
    if split is None or forward == "interval":
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
        lowers, uppers, forms = _bounds_on_box(net, x_lo, x_up, eff, forward, sparse)
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
    sparse=None,
) -> tuple[list[jax.Array], list[jax.Array]]:
    """Bounds on every hidden pre-activation z_k over {x : ||x - x0||_inf <= eps}.

    Args:
      net: ``(W, b)`` pairs or converted layers.
      x0: [N_0].
      eps: radius.
      split: optional [S] int array of branch constraints (+1: z >= 0, -1: z <= 0, 0: free);
        the bounds then hold on the part of the ball that satisfies them.
      forward: "interval" (IBP), "crown" (CROWN, intersected with IBP) or "alpha"
        (alpha-CROWN: CROWN's lower slopes optimised, 20 Adam steps, lr 0.5, decay 0.98).
      x_min, x_max: optional data range (scalars or [N_0]): the ball is intersected with it.
      sparse: None (CROWN rows for every neuron) or a fraction in (0, 1]: rows only for that
        share of each layer, unstable neurons first (see ``local_lipschitz_bound``).

    Returns:
      (lowers, uppers): lists of [N_k] for the hidden layers k = 0..L-2.
    """
    net = as_network(net)
    x0 = jnp.asarray(x0)
    validate_input(net, x0, eps)
    box = input_box(x0, eps, x_min, x_max)
    _check_options(forward, sparse)
    lowers, uppers, _, _ = _domain_box_bounds(net, box, split, forward, sparse=sparse)
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

    Returns (coefficients over a [R, N], constant [R, N] per neuron: sum it for the bound).
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
    return coef, const


def _grad_upper(net, i, lam, c, status, a_lo, a_up, mode, intercepts=False):
    """Upper bound of ``lam . g_i`` (rows lam [R, N_i]) by back-substitution down to g_{L-1} = c.

    With ``intercepts``, also returns, per layer j >= i, (the intercepts [R, N_j] that each
    neuron's relaxation adds to the bound (0 where the relaxation is exact), the coefficients
    [R, N_j] on y_j before relaxing it): the inputs of the BaBSR and area heuristics.
    """
    last = len(net) - 1
    const = jnp.zeros(lam.shape[:1], lam.dtype)
    per_neuron = []
    for j in range(i, last):
        active, inactive = status[j]
        coef_in = lam
        lam, t = _relax_grad(lam, active, inactive, a_lo[j], a_up[j], mode)
        const = const + t.sum(-1)
        per_neuron.append((t, coef_in))
        lam = jax.vmap(functools.partial(linear, net[j + 1]))(lam)
    if intercepts:
        return lam @ c + const, per_neuron
    return lam @ c + const


def _g_interval(active, inactive, lo, up):
    g_lo = jnp.where(active, lo, jnp.where(inactive, 0.0, jnp.minimum(lo, 0.0)))
    g_up = jnp.where(active, up, jnp.where(inactive, 0.0, jnp.maximum(up, 0.0)))
    return g_lo, g_up


def _interval_t(layer, g_lo, g_up):
    center, radius = (g_lo + g_up) / 2, (g_up - g_lo) / 2
    ac, ar = linear_t(layer, center), abs_linear_t(layer, radius)
    return ac - ar, ac + ar


def _backward_bounds(net, c, status, mode, sparse=None):
    """Bounds on every a_k and on v; ``mode`` in {"chord", "recurjac", "interval"}.

    ``sparse``: linear-bound rows for a_k only at a share of the neurons, unstable then active
    first; an inactive neuron's a_k bound is never used (g_k = 0 there), so the result equals
    the dense one whenever the share covers every neuron that is not inactive.
    """
    last = len(net) - 1
    a_lo: list = [None] * last
    a_up: list = [None] * last
    g_lo, g_up = c, c
    for i in range(last - 1, -1, -1):
        lo, up = _interval_t(net[i + 1], g_lo, g_up)
        if mode != "interval":
            n = net[i].out_size
            if sparse is None:
                eye = _signed_eye(n, c.dtype)
            else:
                active, inactive = status[i]
                priority = jnp.where(inactive, 0.0, jnp.where(active, 1.0, 2.0))
                idx = _row_selection(priority, _share(sparse, i))
                sel = jax.nn.one_hot(idx, n, dtype=c.dtype)
                eye = jax.lax.optimization_barrier(jnp.concatenate([sel, -sel]))
            rows = jax.vmap(functools.partial(linear, net[i + 1]))(eye)
            ub = _grad_upper(net, i + 1, rows, c, status, a_lo, a_up, mode)
            if sparse is None:
                lo, up = jnp.maximum(lo, -ub[n:]), jnp.minimum(up, ub[:n])
            else:
                m = idx.shape[0]
                lo, up = lo.at[idx].max(-ub[m:]), up.at[idx].min(ub[:m])
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


def _forward_part(net, box, split, forward, sparse=None):
    """Forward bounds and neuron status of one domain (shared by every output direction)."""
    lowers, uppers, split, empty = _domain_box_bounds(net, box, split, forward, sparse=sparse)
    status = _status(lowers, uppers, split, net)
    infeasible = empty
    for lo, up in zip(lowers, uppers, strict=True):
        infeasible = infeasible | jnp.any(lo > up + 1e-6 * (1.0 + jnp.abs(lo)))
    return lowers, uppers, status, infeasible


BRANCHING = ("score", "babsr", "area", "index")


def _bound_for_c(
    net,
    c,
    lowers,
    uppers,
    status,
    infeasible,
    method,
    sparse=None,
    branching="score",
    norm_split=None,
) -> GradientBounds:
    """Bounds for one direction c; ``norm_split`` [N_0] (optional) fixes signs of v's entries.

    With ``norm_split`` (BaB on the gradient-norm nodes, +1: v_i >= 0, -1: v_i <= 0, 0: free),
    the bounds hold on the part of the domain where the signs hold: v's bounds are clamped
    (the domain is empty if a clamp crosses), so |v_i| of a split node is linear and its chord
    exact; the score vector gets N_0 more entries, the chord's excess over |v_i| at 0
    (2 |v_lo| v_up / (v_up - v_lo), what splitting the node removes) for free straddling nodes.
    """
    mode = {"ours": "chord", "recurjac": "recurjac", "interval": "interval"}[method]
    a_lo, a_up, v_lo, v_up = _backward_bounds(net, c, status, mode, sparse)
    if norm_split is not None:
        # Empty only if a split sign is impossible by more than rounding: where every neuron
        # is fixed, v is a constant and its two bounds may cross by an ulp.
        tol = 1e-6 * (1.0 + jnp.maximum(jnp.abs(v_lo), jnp.abs(v_up)))
        wrong_sign = ((norm_split > 0) & (v_up < -tol)) | ((norm_split < 0) & (v_lo > tol))
        infeasible = infeasible | jnp.any(wrong_sign)
        v_lo = jnp.where(norm_split > 0, jnp.maximum(v_lo, 0.0), v_lo)
        v_up = jnp.where(norm_split < 0, jnp.minimum(v_up, 0.0), v_up)
        v_up = jnp.maximum(v_up, v_lo)
    lip = jnp.maximum(jnp.abs(v_lo), jnp.abs(v_up)).sum()
    slack = None
    if mode != "interval" and len(net) > 1:
        # Chord of |v_i| on [v_lo, v_up] (the l1 dual norm node, one relaxation for every
        # method as in the official code's gradient-norm node), then back-substitution.
        width = v_up - v_lo
        s = jnp.where(
            width > _TINY, (jnp.abs(v_up) - jnp.abs(v_lo)) / jnp.maximum(width, _TINY), 0.0
        )
        t = jnp.abs(v_lo) - s * v_lo
        row = linear(net[0], s)[None]
        chord, slack = _grad_upper(net, 0, row, c, status, a_lo, a_up, mode, intercepts=True)
        chord = chord[0] + t.sum()
        lip = jnp.minimum(lip, chord)
    # Branching scores (split-able neurons only), all on the backward graph as in the official
    # code's heuristics:
    #   "score": how wide the gradient through the neuron can be, times how balanced its
    #     forward interval is;
    #   "babsr": the intercept that the neuron's relaxation adds to the final (l1 chord) bound,
    #     i.e. what splitting it removes from that bound (BaBSR), plus a small "score" term to
    #     break ties between neurons with zero intercept;
    #   "area": the official "area": (a_lo^2 + a_up^2) (the relaxation's area on the incoming
    #     gradient's interval, up to 1/2) times |coefficient| of the neuron in the final bound;
    #   "index": the first free neuron (no information: a weak baseline for the tests).
    if branching not in BRANCHING:
        raise ValueError(f"branching must be one of {BRANCHING}, got {branching!r}")
    scores = []
    for j, ((active, inactive), lo, up, alo, aup) in enumerate(
        zip(status, lowers, uppers, a_lo, a_up, strict=True)
    ):
        free = ~active & ~inactive
        balance = jnp.minimum(up, -lo) / jnp.maximum(up - lo, _TINY)
        sc = jnp.maximum(jnp.abs(alo), jnp.abs(aup)) * balance
        if branching == "index":
            sc = -jnp.arange(lo.shape[0], dtype=lo.dtype) - 1e6 * j
        elif branching == "area" and slack is not None:
            sc = (alo**2 + aup**2) * jnp.abs(slack[j][1][0]) + 1e-3 * sc
        elif branching == "babsr" and slack is not None:
            sc = slack[j][0][0] + 1e-3 * sc
        scores.append(jnp.where(free, sc, -jnp.inf))
    score = jnp.concatenate(scores) if scores else jnp.zeros((0,), c.dtype)
    if norm_split is not None:
        free = (norm_split == 0) & (v_lo < 0) & (v_up > 0)
        excess = 2.0 * (-v_lo) * v_up / jnp.maximum(v_up - v_lo, _TINY)
        score = jnp.concatenate([score, jnp.where(free, excess, -jnp.inf)])
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


def _check_options(forward, sparse):
    if forward not in ("crown", "alpha", "interval"):
        raise ValueError(f"forward must be 'crown', 'alpha' or 'interval', got {forward!r}")
    shares = sparse if isinstance(sparse, tuple | list) else [sparse]
    if sparse is not None and not all(0.0 < float(f) <= 1.0 for f in shares):
        raise ValueError(
            f"sparse must be None, a fraction in (0, 1] or a tuple of them, got {sparse}"
        )


def _domain_bound(
    net, box, cs, split, method, forward, sparse=None, branching="score", norm_nodes=False
):
    """Max over directions cs [K', K] of the bound on one domain; score of the argmax direction.

    ``norm_nodes``: the split vector is [S + N_0], its last N_0 entries sign splits of the
    gradient-norm nodes v_i of the (single) direction (``cs`` must then have one row).
    """
    norm_split = None
    if norm_nodes and split is not None:
        num = sum(layer.out_size for layer in net[:-1])
        split, norm_split = split[:num], split[num:]
    fwd = _forward_part(net, box, split, forward, sparse)
    res = jax.lax.map(
        lambda c: _bound_for_c(net, c, *fwd, method, sparse, branching, norm_split), cs
    )
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
    sparse=None,
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
      forward: pre-activation bounds, "crown", "alpha" or "interval".
      x_min, x_max, sparse: as in :func:`local_lipschitz_bound`.

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
    _check_options(forward, sparse)
    fwd = _forward_part(net, box, None, forward, sparse)
    return _bound_for_c(net, cs[0], *fwd, method, sparse)


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
    sparse=None,
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
      forward, x_min, x_max, sparse: as in :func:`local_lipschitz_bound`.

    Returns:
      Scalar lower bound of ``sign * d(c.f)/dx_feature``.
    """
    net = as_network(layers)
    x0 = jnp.asarray(x0)
    validate_input(net, x0, eps)
    _check_options(forward, sparse)
    cs = _directions(net, c, x0.dtype)
    box = input_box(x0, eps, x_min, x_max)

    def bound_fn(split):
        fwd = _forward_part(net, box, split, forward, sparse)
        res = _bound_for_c(net, cs[0], *fwd, "ours", sparse)
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
    sparse=None,
    branching: str = "score",
    bab_per_class: bool = False,
    bab_norm_nodes: bool = False,
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
      forward: pre-activation bounds: "crown" (CROWN's adaptive lower slopes, intersected with
        interval bounds), "alpha" (alpha-CROWN: per layer, the lower slopes of the earlier
        unstable ReLUs, one vector for the z rows and one for the -z rows, optimised by Adam
        on the sum of the bounds with the official schedule, 20 steps, lr 0.5, decay 0.98;
        each bound is the best over the steps, so never looser than "crown") or "interval".
      activation: must be "relu" (the only activation the relaxation supports).
      x_min, x_max: optional data range (scalars or [N_0]); the bound then holds over the
        box ``[max(x0 - eps, x_min), min(x0 + eps, x_max)]``, the ball intersected with the
        data domain as in the official code.
      sparse: None, or a fraction in (0, 1] or a tuple of one per hidden layer (static):
        linear-bound rows (forward pre-activation
        bounds and backward-graph bounds) are computed only for that share of each layer's
        neurons, unstable first, then active; the others keep interval bounds. Sound for any
        fraction; equal to the dense result when the share covers every neuron not proven
        inactive (interval bounds for the forward rows, final status for the backward rows).
      branching: BaB's branching heuristic: "score" (gradient width x balance), "babsr" (the
        intercept each neuron's relaxation adds to the final bound), "area" (the official
        area score: (a_lo^2 + a_up^2) x |coefficient|) or "index" (first free neuron).
      bab_per_class: with ``c=None``, run a separate BaB (``bab_steps`` each) for every output
        class, as the official code does, instead of one BaB on the max over classes.
      bab_norm_nodes: BaB may also split the gradient-norm nodes |v_i| (v = the gradient) by
        the sign of v_i, as the official code can: on each side |v_i| is linear, so its chord
        relaxation becomes exact. Each node's score is the chord's excess at 0. Needs a single
        direction (``c`` given, a one-output net, or ``bab_per_class=True``).

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
    _check_options(forward, sparse)
    box = input_box(x0, eps, x_min, x_max)
    if method == "naive":
        return naive_bound(net, None if c is None else jnp.asarray(c, dtype))
    cs = _directions(net, c, dtype)
    if branching not in BRANCHING:
        raise ValueError(f"branching must be one of {BRANCHING}, got {branching!r}")
    num = sum(layer.out_size for layer in net[:-1])
    if bab_norm_nodes:
        if cs.shape[0] > 1 and not bab_per_class:
            raise ValueError(
                "bab_norm_nodes needs one output direction: give c, or bab_per_class=True"
            )
        num += net[0].in_size

    def run_bab(directions):
        return branch_and_bound(
            lambda split: _domain_bound(
                net, box, directions, split, method, forward, sparse, branching, bab_norm_nodes
            ),
            num_neurons=num,
            steps=bab_steps,
            batch=bab_batch,
            dtype=dtype,
        ).bound

    if bab_steps == 0 or len(net) == 1:
        lip, _ = _domain_bound(net, box, cs, None, method, forward, sparse)
    elif bab_per_class:
        lip = jax.lax.map(lambda c: run_bab(c[None]), cs).max()
    else:
        lip = run_bab(cs)
    # A traced eps cannot raise; a negative one gives NaN rather than a meaningless bound.
    return jnp.where(jnp.asarray(eps) < 0, jnp.nan, lip)


class BudgetedBound(NamedTuple):
    """Result of :func:`budgeted_lipschitz_bound` (host values).

    Attributes:
      bound: the Lipschitz bound (max over classes).
      root: [K] per-class bounds before BaB.
      per_class: [K] per-class bounds after BaB (= root for classes BaB skipped).
      domains: [K] domains used per class (0: skipped).
      seconds: [K] wall time of each class's BaB (compilation included).
      stopped: [K] why each class's BaB stopped: "time", "domains", "done" or "skipped" (its
        root bound was already below the bound of a class finished before it).
    """

    bound: float
    root: np.ndarray
    per_class: np.ndarray
    domains: np.ndarray
    seconds: np.ndarray
    stopped: list


def budgeted_lipschitz_bound(
    layers,
    x0,
    eps,
    *,
    c=None,
    method: str = "ours",
    forward: str = "crown",
    branching: str = "babsr",
    batch: int = 128,
    max_domains: int = 200_000,
    time_budget_s: float = 60.0,
    chunk_steps: int = 4,
    x_min=None,
    x_max=None,
    sparse=None,
) -> BudgetedBound:
    """Per-class BaB under time and domain budgets, the official code's protocol (host loop).

    Each output class (or the single direction ``c``) gets its own BaB
    (:func:`budgeted_branch_and_bound`, ``time_budget_s`` and ``max_domains`` each). Classes run
    in decreasing order of their root bound, and a class whose root bound is already at or
    below the best bound finished so far is skipped: the max over classes cannot change. Not
    jittable (it reads the clock); sound whenever it stops.

    Args:
      layers, x0, eps, c, method, forward, x_min, x_max, sparse: as in
        :func:`local_lipschitz_bound` (``method`` "ours" or "recurjac").
      branching: "babsr" (default), "score", "area" or "index".
      batch, max_domains, time_budget_s, chunk_steps: as in
        :func:`budgeted_branch_and_bound` (the official: 128, 200,000, 60 s).

    Returns:
      :class:`BudgetedBound`.
    """
    net = as_network(layers)
    x0 = jnp.asarray(x0)
    validate_input(net, x0, eps)
    if method not in ("ours", "recurjac"):
        raise ValueError(f"budgeted BaB: method must be 'ours' or 'recurjac', got {method!r}")
    if branching not in BRANCHING:
        raise ValueError(f"branching must be one of {BRANCHING}, got {branching!r}")
    _check_options(forward, sparse)
    dtype = x0.dtype if jnp.issubdtype(x0.dtype, jnp.floating) else jnp.float32
    x0 = x0.astype(dtype)
    box = input_box(x0, eps, x_min, x_max)
    cs = _directions(net, c, dtype)
    num = sum(layer.out_size for layer in net[:-1])

    @jax.jit
    @full_precision
    def roots(box):
        fwd = _forward_part(net, box, None, forward, sparse)
        return jax.lax.map(lambda d: _bound_for_c(net, d, *fwd, method, sparse).lipschitz, cs)

    root = np.asarray(roots(box), np.float64)
    k = cs.shape[0]
    per_class, domains = root.copy(), np.zeros(k, np.int64)
    seconds, stopped = np.zeros(k), ["skipped"] * k
    best = -np.inf
    for i in np.argsort(-root):
        if root[i] <= best or len(net) == 1:
            continue
        direction = cs[i][None]

        def bound_fn(split, direction=direction):
            return _domain_bound(net, box, direction, split, method, forward, sparse, branching)

        res = budgeted_branch_and_bound(
            bound_fn,
            num_neurons=num,
            batch=batch,
            max_domains=max_domains,
            time_budget_s=time_budget_s,
            chunk_steps=chunk_steps,
            dtype=dtype,
        )
        per_class[i] = min(res.bound, root[i])
        domains[i], seconds[i], stopped[i] = res.domains, res.seconds, res.stopped
        best = max(best, per_class[i])
    return BudgetedBound(float(per_class.max()), root, per_class, domains, seconds, stopped)
