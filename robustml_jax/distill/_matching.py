"""The trajectory-matching loss of MTT (Cazenavette et al. 2022) and its three gradients.

A student starts at an expert's parameters at epoch t (``start_params``), takes N SGD steps on
minibatches of the synthetic set with step size ``syn_lr``, and is compared with the expert at
epoch t + M (``target_params``) (MTT Eq. 2; TESLA Eq. 3)::

    theta_{i+1} = theta_i - alpha * g_i,   g_i = grad_theta CE(f(A_i(X_{b_i}); theta_i), Y_{b_i})
    L = ||theta_N - theta*||^2 / ||theta_0 - theta*||^2

``jax.grad`` of the loss w.r.t. the synthetic images X, the labels Y and alpha is computed in
one of three ways (``gradient=``):

* ``"unrolled"``: plain reverse-mode through the ``lax.scan`` of N steps (MTT). Every step's
  activations are kept, so memory grows linearly in N.
* ``"remat"``: the same exact gradient, with each step wrapped in ``jax.checkpoint``: only the
  parameter trajectory (N flat vectors) is kept and each step's activations are recomputed in
  the backward pass.
* ``"tesla"``: TESLA's constant-memory gradient (Cui et al. 2023, Sec. 4.1, Eqs. 5-7), a
  ``jax.custom_vjp``. With G = sum_i g_i, theta_N = theta_0 - alpha * G, so the cotangent of
  every g_i is the same vector ``-alpha * dL/dtheta_N``; the backward pass replays the
  trajectory one step at a time and pulls that vector back through g_i w.r.t. (X_{b_i}, Y_{b_i})
  only. Like the official code it treats theta_i as a constant inside g_i: the cross-step terms
  (X_{b_i} -> theta_j -> g_j for j > i, and alpha -> theta_i) are dropped. It is therefore the
  exact gradient only for N = 1; ``BUILD_NOTES.md`` / ``experiments/distill/NOTES.md`` report
  how far it is from the exact one as a function of N and alpha.

Shapes: S = synthetic examples, C = classes, N = ``num_steps``, B = ``batch_size``,
P = number of model parameters; images are [S, H, W, Ch] (any trailing shape works).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from robustml_jax.core.losses import soft_cross_entropy

__all__ = [
    "GRADIENT_MODES",
    "minibatch_indices",
    "student_trajectory",
    "trajectory_matching_loss",
]

GRADIENT_MODES = ("unrolled", "tesla", "remat")

ApplyFn = Callable[[Any, jax.Array], jax.Array]
AugmentFn = Callable[[jax.Array, jax.Array], jax.Array]


def minibatch_indices(
    key: jax.Array, *, num_examples: int, num_steps: int, batch_size: int
) -> jax.Array:
    """The student's minibatches: consecutive chunks of fresh permutations (as MTT samples them).

    Args:
      key: PRNG key; the permutation of pass e is ``permutation(fold_in(key, e), S)``.
      num_examples: S.
      num_steps: N.
      batch_size: B <= S.

    Returns:
      int32 [N, B] indices into the synthetic set; every pass over the set (S // B steps) uses
      each example at most once.
    """
    per_pass = num_examples // batch_size
    num_passes = -(-num_steps // per_pass)
    perms = jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(key, e), num_examples))(
        jnp.arange(num_passes)
    )
    chunks = perms[:, : per_pass * batch_size].reshape(num_passes * per_pass, batch_size)
    return chunks[:num_steps].astype(jnp.int32)


class _Student(NamedTuple):
    """Static description of one student step (hashable: used as a ``nondiff_argnum``)."""

    apply_fn: ApplyFn
    unravel: Callable[[jax.Array], Any]
    augment_fn: AugmentFn | None

    def grad(self, flat, x_b, y_b, key):
        """g_i: gradient of the minibatch loss w.r.t. the flat parameters [P]."""

        def loss(flat):
            x = x_b if self.augment_fn is None else self.augment_fn(key, x_b)
            return soft_cross_entropy(self.apply_fn(self.unravel(flat), x), y_b)

        return jax.grad(loss)(flat)


def _unroll(student: _Student, flat0, syn_x, syn_y, syn_lr, idx, keys, *, remat: bool):
    """theta_N by a scan of N SGD steps (plain autodiff; ``remat`` checkpoints each step)."""

    def step(flat, inputs):
        i_b, key = inputs
        g = student.grad(flat, syn_x[i_b], syn_y[i_b], key)
        return flat - syn_lr * g, None

    if remat:
        step = jax.checkpoint(step)
    final, _ = lax.scan(step, flat0, (idx, keys))
    return final


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _tesla_unroll(student: _Student, flat0, syn_x, syn_y, syn_lr, idx, keys):
    """theta_N with TESLA's constant-memory vector-Jacobian product.

    Residuals: theta_0 [P], G = sum_i g_i [P], the synthetic set, alpha, the minibatch indices
    [N, B] and the augmentation keys [N]. None of them holds a per-step activation or parameter
    vector, so the memory of the backward pass does not grow with N (the indices and keys are
    N small integers rows). The backward pass replays the trajectory from theta_0, recomputing
    one step (and its pullback) at a time.
    """
    return _unroll(student, flat0, syn_x, syn_y, syn_lr, idx, keys, remat=False)


def _tesla_unroll_fwd(student, flat0, syn_x, syn_y, syn_lr, idx, keys):
    def step(carry, inputs):
        flat, gsum = carry
        i_b, key = inputs
        g = student.grad(flat, syn_x[i_b], syn_y[i_b], key)
        return (flat - syn_lr * g, gsum + g), None

    (final, gsum), _ = lax.scan(step, (flat0, jnp.zeros_like(flat0)), (idx, keys))
    return final, (flat0, gsum, syn_x, syn_y, syn_lr, idx, keys)


def _tesla_unroll_bwd(student, residuals, ct_final):
    flat0, gsum, syn_x, syn_y, syn_lr, idx, keys = residuals
    # theta_N = theta_0 - alpha * G: every g_i receives the same cotangent (TESLA Eq. 6).
    ct_g = -syn_lr * ct_final

    def step(carry, inputs):
        flat, d_x, d_y = carry
        i_b, key = inputs
        g, pullback = jax.vjp(
            lambda x_b, y_b: student.grad(flat, x_b, y_b, key), syn_x[i_b], syn_y[i_b]
        )
        dx_b, dy_b = pullback(ct_g.astype(g.dtype))
        return (flat - syn_lr * g, d_x.at[i_b].add(dx_b), d_y.at[i_b].add(dy_b)), None

    init = (flat0, jnp.zeros_like(syn_x), jnp.zeros_like(syn_y))
    (_, d_x, d_y), _ = lax.scan(step, init, (idx, keys))
    # alpha enters theta_N directly through -alpha * G (G held constant, as in the paper), and
    # theta_0 through the identity (its Hessian terms are the dropped cross-step terms).
    d_lr = -jnp.vdot(ct_final, gsum).astype(jnp.result_type(syn_lr))
    return ct_final, d_x, d_y, d_lr, None, None


_tesla_unroll.defvjp(_tesla_unroll_fwd, _tesla_unroll_bwd)


def _check_inputs(
    syn_x, syn_y, syn_lr, start_params, target_params, apply_fn, num_steps, batch_size, gradient
):
    if gradient not in GRADIENT_MODES:
        raise ValueError(f"gradient must be one of {GRADIENT_MODES}, got {gradient!r}")
    if not isinstance(num_steps, int) or num_steps <= 0:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    if jnp.ndim(syn_y) != 2:
        raise ValueError(f"syn_y must be [S, C] (one-hot or soft labels), got shape {syn_y.shape}")
    if jnp.ndim(syn_x) < 2 or syn_x.shape[0] != syn_y.shape[0]:
        raise ValueError(
            f"syn_x and syn_y must have the same number of examples S: syn_x {syn_x.shape}, "
            f"syn_y {syn_y.shape}"
        )
    num_examples = syn_x.shape[0]
    if not isinstance(batch_size, int) or not 0 < batch_size <= num_examples:
        raise ValueError(f"batch_size must be an int in [1, S={num_examples}], got {batch_size!r}")
    if jnp.ndim(syn_lr) != 0:
        raise ValueError(f"syn_lr must be a scalar, got shape {jnp.shape(syn_lr)}")
    s_def, t_def = jax.tree.structure(start_params), jax.tree.structure(target_params)
    s_shapes = [jnp.shape(a) for a in jax.tree.leaves(start_params)]
    t_shapes = [jnp.shape(a) for a in jax.tree.leaves(target_params)]
    if s_def != t_def or s_shapes != t_shapes:
        raise ValueError(
            "start_params and target_params must have the same tree structure and shapes "
            f"(got {s_def} with {s_shapes} vs {t_def} with {t_shapes})"
        )
    try:
        out = jax.eval_shape(apply_fn, start_params, syn_x[:batch_size])
    except Exception as e:  # any failure of the model on these inputs is a shape mismatch
        raise ValueError(
            f"apply_fn(start_params, x) fails on synthetic images of shape "
            f"{tuple(syn_x.shape[1:])} ({type(e).__name__}: {e})"
        ) from e
    if out.shape != (batch_size, syn_y.shape[1]):
        raise ValueError(
            f"apply_fn returns logits of shape {out.shape} for a batch of {batch_size}, but "
            f"syn_y has C={syn_y.shape[1]} classes: expected ({batch_size}, {syn_y.shape[1]})"
        )


def _plan(key, num_examples, num_steps, batch_size):
    batch_key, aug_key = jax.random.split(key)
    idx = minibatch_indices(
        batch_key, num_examples=num_examples, num_steps=num_steps, batch_size=batch_size
    )
    keys = jax.vmap(lambda i: jax.random.fold_in(aug_key, i))(jnp.arange(num_steps))
    return idx, keys


def student_trajectory(
    syn_x: jax.Array,
    syn_y: jax.Array,
    syn_lr: jax.Array,
    key: jax.Array,
    start_params: Any,
    *,
    apply_fn: ApplyFn,
    num_steps: int,
    batch_size: int,
    augment_fn: AugmentFn | None = None,
) -> jax.Array:
    """All student parameters theta_0..theta_N as flat vectors [N + 1, P] (for analysis/tests).

    Uses exactly the minibatches and augmentations of :func:`trajectory_matching_loss` for the
    same ``key``.
    """
    _check_inputs(
        syn_x,
        syn_y,
        syn_lr,
        start_params,
        start_params,
        apply_fn,
        num_steps,
        batch_size,
        "unrolled",
    )
    flat0, unravel = ravel_pytree(start_params)
    student = _Student(apply_fn, unravel, augment_fn)
    idx, keys = _plan(key, syn_x.shape[0], num_steps, batch_size)

    def step(flat, inputs):
        i_b, k = inputs
        nxt = flat - syn_lr * student.grad(flat, syn_x[i_b], syn_y[i_b], k)
        return nxt, nxt

    _, traj = lax.scan(step, flat0, (idx, keys))
    return jnp.concatenate([flat0[None], traj], axis=0)


def trajectory_matching_loss(
    syn_x: jax.Array,
    syn_y: jax.Array,
    syn_lr: jax.Array,
    key: jax.Array,
    start_params: Any,
    target_params: Any,
    *,
    apply_fn: ApplyFn,
    num_steps: int,
    batch_size: int,
    gradient: str = "unrolled",
    augment_fn: AugmentFn | None = None,
) -> jax.Array:
    """The normalised trajectory-matching loss (MTT Eq. 2 / TESLA Eq. 3).

    Args:
      syn_x: synthetic images [S, H, W, Ch].
      syn_y: labels [S, C], one-hot or soft (probabilities).
      syn_lr: the student's step size alpha (scalar, learnable).
      key: PRNG key for the minibatches (and the augmentation, if any); the same key gives the
        same minibatches and augmentations in every gradient mode.
      start_params: expert parameters at epoch t (pytree accepted by ``apply_fn``).
      target_params: expert parameters at epoch t + M (same tree and shapes).
      apply_fn: ``apply_fn(params, x) -> logits [B, C]``.
      num_steps: N > 0 student steps.
      batch_size: B in [1, S] synthetic examples per step.
      gradient: ``"unrolled"``, ``"tesla"`` or ``"remat"`` (see the module docstring).
      augment_fn: optional differentiable augmentation ``augment_fn(key, x) -> x`` applied to
        every minibatch with the step's key (DSA, :func:`robustml_jax.distill.dsa_augment`).

    Returns:
      Scalar ``||theta_N - target||^2 / ||start - target||^2``.

    Raises:
      ValueError: on shape mismatches between ``syn_x``, ``syn_y`` and ``apply_fn``, parameter
        trees that differ, ``num_steps <= 0``, ``batch_size`` outside [1, S] or an unknown
        ``gradient``.
    """
    _check_inputs(
        syn_x, syn_y, syn_lr, start_params, target_params, apply_fn, num_steps, batch_size, gradient
    )
    flat0, unravel = ravel_pytree(start_params)
    target, _ = ravel_pytree(target_params)
    student = _Student(apply_fn, unravel, augment_fn)
    idx, keys = _plan(key, syn_x.shape[0], num_steps, batch_size)
    syn_lr = jnp.asarray(syn_lr, flat0.dtype)
    if gradient == "tesla":
        final = _tesla_unroll(student, flat0, syn_x, syn_y, syn_lr, idx, keys)
    else:
        final = _unroll(student, flat0, syn_x, syn_y, syn_lr, idx, keys, remat=gradient == "remat")
    return jnp.sum(jnp.square(final - target)) / jnp.sum(jnp.square(flat0 - target))
