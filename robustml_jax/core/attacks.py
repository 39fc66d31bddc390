"""Sensitivity (norm-bounded) attacks shared by the papers: FGSM, PGD and APGD-CE.

Every attack takes ``apply_fn(params, x) -> logits`` and images ``x`` in [0, 1] of any shape
``[B, ...]`` with integer labels ``y`` ``[B]``; it returns ``x_adv`` of the same shape, inside the
``eps``-ball around ``x`` (l_inf, or l_2 taken per example over all non-batch axes) and inside
[0, 1]. The functions are pure and batched; the caller jits them (``eps``, ``step_size``,
``num_steps``, ``norm``, ``restarts`` are static keywords, so use ``functools.partial`` or
``static_argnames``).

- :func:`fgsm`: one signed-gradient (l_inf) / normalised-gradient (l_2) step of size ``eps``
  (Goodfellow et al. 2015).
- :func:`pgd_attack`: projected gradient ascent on the cross-entropy from a random start in the
  ball (Madry et al. 2018), optional restarts keeping the worst one per example.
- :func:`apgd_ce`: Auto-PGD on the cross-entropy (Croce & Hein 2020, Algorithm 1): step size
  2 eps halved at the checkpoints ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} -
  0.03, 0.06)`` when fewer than ``rho = 0.75`` of the steps since the last checkpoint increased
  the loss, or when neither the step size nor the best loss changed; restarts from the best point;
  momentum ``alpha = 0.75``; returns a misclassified iterate when one was found, else the
  iterate of highest loss.

Bad input (shape, labels, values outside [0, 1], eps < 0, zero steps) raises one-line
``ValueError``s at the boundary; value checks are skipped for traced arrays (inside ``jit``).

Shapes: B = batch, ``...`` = the image axes (any number), K = classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "apgd_ce",
    "apgd_checkpoints",
    "check_attack_inputs",
    "fgsm",
    "pgd_ascent",
    "pgd_attack",
    "project",
]

ApplyFn = Callable[[Any, jax.Array], jax.Array]
_NORMS = ("linf", "l2")
_TINY = 1e-12


def check_attack_inputs(x, y, *, eps: float, num_steps: int | None = None, norm: str = "linf"):
    """Raises a one-line ``ValueError`` for bad attack input (see the module docstring)."""
    if norm not in _NORMS:
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if not isinstance(eps, jax.core.Tracer):
        if jnp.ndim(eps) != 0 or not float(eps) >= 0:
            raise ValueError(f"eps must be a number >= 0, got {eps!r}")
    if num_steps is not None and (int(num_steps) != num_steps or num_steps < 1):
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if jnp.ndim(x) < 2:
        raise ValueError(f"x must be a batch of images [B, ...], got shape {jnp.shape(x)}")
    if jnp.ndim(y) != 1 or jnp.shape(y)[0] != jnp.shape(x)[0]:
        raise ValueError(
            f"y must be labels [B] with B = {jnp.shape(x)[0]} (x's batch), got shape {jnp.shape(y)}"
        )
    if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
        raise ValueError(f"y must be integer labels, got dtype {jnp.result_type(y)}")
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise ValueError(f"x must be floating images in [0, 1], got dtype {jnp.result_type(x)}")
    if not isinstance(x, jax.core.Tracer):
        lo, hi = float(jnp.min(x)), float(jnp.max(x))
        if lo < 0.0 or hi > 1.0 or not np.isfinite(lo + hi):
            raise ValueError(f"x must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")


def _per_example_norm(v: jax.Array) -> jax.Array:
    """l_2 norm over the non-batch axes, shaped [B, 1, ..., 1] for broadcasting."""
    axes = tuple(range(1, v.ndim))
    return jnp.sqrt(jnp.sum(v * v, axis=axes, keepdims=True))


def project(x_adv: jax.Array, x: jax.Array, *, eps: float, norm: str = "linf") -> jax.Array:
    """Projects ``x_adv`` [B, ...] onto the ``eps``-ball around ``x`` intersected with [0, 1]."""
    delta = x_adv - x
    if norm == "linf":
        delta = jnp.clip(delta, -eps, eps)
        return jnp.clip(x + delta, 0.0, 1.0)
    # l_2: scale into the ball, clip to the box, and scale again (clipping never increases the
    # norm, so the result lies in both sets)
    delta = delta * jnp.minimum(1.0, eps / jnp.maximum(_per_example_norm(delta), _TINY))
    delta = jnp.clip(x + delta, 0.0, 1.0) - x
    delta = delta * jnp.minimum(1.0, eps / jnp.maximum(_per_example_norm(delta), _TINY))
    return jnp.clip(x + delta, 0.0, 1.0)


def _direction(g: jax.Array, norm: str) -> jax.Array:
    """Steepest-ascent direction of unit norm: sign(g) for l_inf, g / ||g||_2 for l_2."""
    if norm == "linf":
        return jnp.sign(g)
    return g / jnp.maximum(_per_example_norm(g), _TINY)


def _random_start(key, x, *, eps, norm):
    if norm == "linf":
        return x + jax.random.uniform(key, x.shape, x.dtype, -eps, eps)
    k_dir, k_rad = jax.random.split(key)
    d = jax.random.normal(k_dir, x.shape, x.dtype)
    r = jax.random.uniform(k_rad, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype)
    return x + eps * r ** (1.0 / np.prod(x.shape[1:])) * d / _per_example_norm(d)


def _ce(apply_fn, params, x, y):
    """Per-example cross-entropy [B] and logits [B, K]."""
    logits = apply_fn(params, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y), logits


def _ce_grad(apply_fn, params, x, y):
    """(per-example loss [B], logits [B, K], d sum(loss) / dx [B, ...])."""

    def total(xa):
        loss, logits = _ce(apply_fn, params, xa, y)
        return jnp.sum(loss), (loss, logits)

    (_, (loss, logits)), g = jax.value_and_grad(total, has_aux=True)(x)
    return loss, logits, g


def fgsm(
    apply_fn: ApplyFn, params, x: jax.Array, y: jax.Array, *, eps: float, norm: str = "linf"
) -> jax.Array:
    """Fast gradient (sign) method: ``P(x + eps * direction(grad CE))``.

    Args:
      apply_fn: ``apply_fn(params, x) -> logits [B, K]``.
      params: the model's parameters.
      x: clean images [B, ...] in [0, 1].
      y: integer labels [B].
      eps: the ball's radius (>= 0).
      norm: ``'linf'`` or ``'l2'``.

    Returns:
      x_adv [B, ...] in the ball and in [0, 1].
    """
    check_attack_inputs(x, y, eps=eps, norm=norm)
    _, _, g = _ce_grad(apply_fn, params, x, y)
    return project(x + eps * _direction(g, norm), x, eps=eps, norm=norm)


def pgd_attack(
    apply_fn: ApplyFn,
    params,
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
    *,
    eps: float,
    step_size: float,
    num_steps: int,
    norm: str = "linf",
    random_start: bool = True,
    restarts: int = 1,
) -> jax.Array:
    """Projected gradient ascent on the cross-entropy (Madry et al. 2018).

    Each step is ``x <- P(x + step_size * direction(grad CE))`` with ``direction`` the sign of
    the gradient (l_inf) or the gradient over its per-example l_2 norm, and ``P`` the projection
    onto the ``eps``-ball around ``x`` and [0, 1]. With ``restarts > 1`` the attack is repeated
    from independent random starts and, per example, the first misclassified result is kept (else
    the one of highest loss).

    Args:
      apply_fn: ``apply_fn(params, x) -> logits [B, K]``.
      params: the model's parameters.
      key: PRNG key for the random start(s).
      x: clean images [B, ...] in [0, 1].
      y: integer labels [B].
      eps: radius (>= 0); ``step_size``: step length; ``num_steps``: >= 1 steps.
      norm: ``'linf'`` or ``'l2'`` (per example over all non-batch axes).
      random_start: start uniformly in the l_inf ball / the l_2 ball (else at ``x``).
      restarts: number of independent runs (>= 1).

    Returns:
      x_adv [B, ...]: inside the ball and inside [0, 1].
    """
    check_attack_inputs(x, y, eps=eps, num_steps=num_steps, norm=norm)
    if int(restarts) != restarts or restarts < 1:
        raise ValueError(f"restarts must be a positive integer, got {restarts!r}")
    if not isinstance(step_size, jax.core.Tracer) and not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size!r}")

    def one_run(k):
        x0 = _random_start(k, x, eps=eps, norm=norm) if random_start else x
        xa = pgd_ascent(
            lambda v: _ce(apply_fn, params, v, y)[0], x, x0,
            eps=eps, step_size=step_size, num_steps=num_steps, norm=norm,
        )  # fmt: skip
        loss, logits = _ce(apply_fn, params, xa, y)
        return xa, loss, jnp.argmax(logits, -1) != y

    best, best_loss, best_wrong = one_run(jax.random.fold_in(key, 0))
    for r in range(1, restarts):
        xa, loss, wrong = one_run(jax.random.fold_in(key, r))
        take = (wrong & ~best_wrong) | ((wrong == best_wrong) & (loss > best_loss))
        best = jnp.where(take.reshape((-1,) + (1,) * (x.ndim - 1)), xa, best)
        best_loss = jnp.where(take, loss, best_loss)
        best_wrong = best_wrong | wrong
    return best


def pgd_ascent(
    loss_fn: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    x0: jax.Array,
    *,
    eps,
    step_size,
    num_steps: int,
    norm: str = "linf",
) -> jax.Array:
    """The PGD loop on any per-example objective, without input checks (for training losses,
    e.g. TRADES' KL, where ``eps`` may be a traced schedule value).

    Args:
      loss_fn: ``loss_fn(x_adv [B, ...]) -> [B]`` per-example objective to maximise.
      x: [B, ...] the ball's centres; ``x0``: [B, ...] the start (projected first).
      eps, step_size: radius and step (floats or traced scalars); ``num_steps``: static.
      norm: ``'linf'`` or ``'l2'``.

    Returns:
      [B, ...] the last iterate, inside the ball and [0, 1].
    """

    def step(xa, _):
        g = jax.grad(lambda v: jnp.sum(loss_fn(v)))(xa)
        return project(xa + step_size * _direction(g, norm), x, eps=eps, norm=norm), None

    xa, _ = jax.lax.scan(step, project(x0, x, eps=eps, norm=norm), None, length=num_steps)
    return xa


def apgd_checkpoints(num_steps: int) -> np.ndarray:
    """Croce & Hein's checkpoint iterations ``w_j = ceil(p_j * N)`` (sorted, unique, >= 1)."""
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    w = np.unique(np.ceil(np.round(np.asarray(p[1:]) * num_steps, 6)).astype(int))
    return w[(w >= 1) & (w < num_steps)]


def apgd_ce(
    apply_fn: ApplyFn,
    params,
    key: jax.Array,
    x: jax.Array,
    y: jax.Array,
    *,
    eps: float,
    num_steps: int = 100,
    norm: str = "linf",
    rho: float = 0.75,
    momentum: float = 0.75,
    restarts: int = 1,
) -> jax.Array:
    """Auto-PGD on the cross-entropy (Croce & Hein 2020, Algorithm 1), per example.

    Args:
      apply_fn: ``apply_fn(params, x) -> logits [B, K]``.
      params: the model's parameters.
      key: PRNG key for the random start(s) (uniform in the ball, as AutoAttack).
      x: clean images [B, ...] in [0, 1].
      y: integer labels [B].
      eps: radius (>= 0); ``num_steps``: iterations N (>= 1).
      norm: ``'linf'`` or ``'l2'``.
      rho: the checkpoint condition's fraction of loss-increasing steps.
      momentum: ``alpha`` in ``x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}))``.
      restarts: independent runs; per example the first misclassified result is kept.

    Returns:
      x_adv [B, ...]: inside the ball and [0, 1]; a misclassified iterate where one was found,
      else the iterate of highest loss.
    """
    check_attack_inputs(x, y, eps=eps, num_steps=num_steps, norm=norm)
    if int(restarts) != restarts or restarts < 1:
        raise ValueError(f"restarts must be a positive integer, got {restarts!r}")
    bshape = (-1,) + (1,) * (x.ndim - 1)
    ckpt = np.zeros(num_steps + 1, bool)
    ckpt[apgd_checkpoints(num_steps)] = True
    ckpt = jnp.asarray(ckpt)

    def bc(v):
        return v.reshape(bshape)

    def one_run(k):
        x0 = project(_random_start(k, x, eps=eps, norm=norm), x, eps=eps, norm=norm)
        eta = jnp.full((x.shape[0],), 2.0 * eps, x.dtype)
        loss0, logits0, g0 = _ce_grad(apply_fn, params, x0, y)
        x1 = project(x0 + bc(eta) * _direction(g0, norm), x, eps=eps, norm=norm)
        loss1, logits1, g1 = _ce_grad(apply_fn, params, x1, y)
        better = loss1 > loss0
        x_max = jnp.where(bc(better), x1, x0)
        g_max = jnp.where(bc(better), g1, g0)
        f_max = jnp.maximum(loss1, loss0)
        wrong0 = jnp.argmax(logits0, -1) != y
        wrong1 = jnp.argmax(logits1, -1) != y
        x_adv = jnp.where(bc(wrong0), x0, jnp.where(bc(wrong1), x1, x_max))
        found = wrong0 | wrong1
        state = dict(
            x=x1, x_prev=x0, g=g1, loss=loss1, eta=eta, x_max=x_max, g_max=g_max, f_max=f_max,
            x_adv=x_adv, found=found,
            n_inc=better.astype(jnp.int32),  # loss increases since the last checkpoint
            eta_ck=eta, f_max_ck=f_max, last_ck=jnp.zeros((), jnp.int32),
        )  # fmt: skip

        def step(s, k):  # produces x_{k+1} from x_k (k = 1..N-1)
            z = project(s["x"] + bc(s["eta"]) * _direction(s["g"], norm), x, eps=eps, norm=norm)
            xn = s["x"] + momentum * (z - s["x"]) + (1.0 - momentum) * (s["x"] - s["x_prev"])
            xn = project(xn, x, eps=eps, norm=norm)
            loss, logits, g = _ce_grad(apply_fn, params, xn, y)
            wrong = jnp.argmax(logits, -1) != y
            x_adv = jnp.where(bc(wrong & ~s["found"]), xn, s["x_adv"])
            found = s["found"] | wrong
            improved = loss > s["f_max"]
            x_max = jnp.where(bc(improved), xn, s["x_max"])
            g_max = jnp.where(bc(improved), g, s["g_max"])
            f_max = jnp.maximum(loss, s["f_max"])
            n_inc = s["n_inc"] + (loss > s["loss"]).astype(jnp.int32)
            is_ck = ckpt[k + 1]
            interval = (k + 1 - s["last_ck"]).astype(x.dtype)
            cond1 = n_inc.astype(x.dtype) < rho * interval
            cond2 = (s["eta_ck"] == s["eta"]) & (s["f_max_ck"] == f_max)
            halve = is_ck & (cond1 | cond2)
            # where the step size is halved, the next step starts from the best point so far
            new = dict(
                x=jnp.where(bc(halve), x_max, xn),
                x_prev=jnp.where(bc(halve), x_max, s["x"]),
                g=jnp.where(bc(halve), g_max, g),
                loss=jnp.where(halve, f_max, loss),
                eta=jnp.where(halve, s["eta"] / 2.0, s["eta"]),
                x_max=x_max, g_max=g_max, f_max=f_max, x_adv=x_adv, found=found,
                n_inc=jnp.where(is_ck, 0, n_inc),
                eta_ck=jnp.where(is_ck, s["eta"], s["eta_ck"]),
                f_max_ck=jnp.where(is_ck, f_max, s["f_max_ck"]),
                last_ck=jnp.where(is_ck, k + 1, s["last_ck"]),
            )  # fmt: skip
            return new, None

        s, _ = jax.lax.scan(step, state, jnp.arange(1, num_steps))
        x_out = jnp.where(bc(s["found"]), s["x_adv"], s["x_max"])
        return x_out, s["f_max"], s["found"]

    best, best_loss, best_wrong = one_run(jax.random.fold_in(key, 0))
    for r in range(1, restarts):
        xa, loss, wrong = one_run(jax.random.fold_in(key, r))
        take = (wrong & ~best_wrong) | ((wrong == best_wrong) & (loss > best_loss))
        best = jnp.where(bc(take), xa, best)
        best_loss = jnp.where(take, loss, best_loss)
        best_wrong = best_wrong | wrong
    return best
