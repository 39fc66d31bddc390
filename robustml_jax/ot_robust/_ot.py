"""The defence's regulariser: an entropic OT cost, with a label-aware ground cost, between the
embedded clean batch and the embedded perturbed batch (solved by ott-jax's Sinkhorn).

Formulation (NOTES.md, "Formulation"). Embeddings are l_2-normalised, ``u = z / ||z||``. Clean
points ``(u_j, y_j)``, j = 1..M, carry mass ``b_j = 1/M``; perturbed points ``(v_i, s_i)``,
i = 1..P, carry the label they should have (a sensitivity perturbation keeps its clean label; an
invariance perturbation gets its new class) and a weight ``w_i >= 0`` (0 drops a point). The
ground cost is

    C_ij = ||v_i - u_j||^2 + lambda * [s_i != y_j],

and the perturbed masses are class-balanced to the clean batch,
``a_i = w_i * b(s_i) / sum_{i': s_i' = s_i} w_i'`` with ``b(c)`` the clean mass of class ``c``
(then renormalised), so that an exact within-class plan exists and ``lambda`` only penalises
mass that cannot stay in its class. The regulariser is the entropic OT cost

    OT_eps(a, b; C) = min_{P in U(a, b)} <P, C> - eps H(P)   (ott's ``reg_ot_cost``),

differentiated through Sinkhorn by implicit differentiation of its fixed point (ott's
``ImplicitDiff``, the solver default). Its gradient moves each perturbed embedding towards the
clean embeddings of its target label: sensitivity perturbations are pulled onto their clean
class, invariance perturbations towards the class they became.

Shapes: M = clean points, P = perturbed points, E = embedding size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

__all__ = ["class_balanced_weights", "label_aware_cost", "ot_regulariser"]


def _normalise(z):
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-8)


def label_aware_cost(
    z_pert: jax.Array,
    s_pert: jax.Array,
    z_clean: jax.Array,
    y_clean: jax.Array,
    *,
    label_cost: float,
) -> jax.Array:
    """The ground cost ``C_ij = ||v_i - u_j||^2 + label_cost [s_i != y_j]`` [P, M] on
    l_2-normalised embeddings ``v = z_pert / ||z_pert||`` [P, E], ``u = z_clean / ||.||`` [M, E].
    """
    v, u = _normalise(z_pert), _normalise(z_clean)
    sq = jnp.sum((v[:, None, :] - u[None, :, :]) ** 2, -1)
    return sq + label_cost * (s_pert[:, None] != y_clean[None, :]).astype(sq.dtype)


def class_balanced_weights(
    s_pert: jax.Array, y_clean: jax.Array, weights: jax.Array | None, *, num_classes: int
) -> jax.Array:
    """Perturbed masses ``a`` [P] (sum 1): each label's total equals its clean mass."""
    p = s_pert.shape[0]
    w = jnp.ones((p,)) if weights is None else weights.astype(jnp.float32)
    clean_mass = jnp.bincount(y_clean, length=num_classes) / y_clean.shape[0]
    per_label = jax.ops.segment_sum(w, s_pert, num_segments=num_classes)
    a = w * clean_mass[s_pert] / jnp.maximum(per_label[s_pert], 1e-12)
    # labels with no clean counterpart (or all-zero weights) get a negligible mass, never 0,
    # which keeps Sinkhorn's log-domain updates and their gradients finite
    a = jnp.maximum(a, 1e-6 / p)
    return a / jnp.sum(a)


def ot_regulariser(
    z_clean: jax.Array,
    y_clean: jax.Array,
    z_pert: jax.Array,
    s_pert: jax.Array,
    weights: jax.Array | None = None,
    *,
    epsilon: float = 0.05,
    label_cost: float = 4.0,
    num_classes: int = 10,
    max_iterations: int = 200,
    threshold: float = 1e-3,
) -> jax.Array:
    """The entropic, label-aware OT cost between clean and perturbed embeddings (scalar).

    Args:
      z_clean: [M, E] embeddings of the clean batch.
      y_clean: [M] int their labels.
      z_pert: [P, E] embeddings of the perturbed batch (sensitivity and invariance examples).
      s_pert: [P] int the labels they should keep (sensitivity) or take (invariance).
      weights: optional [P] non-negative weights (0 drops an example, e.g. an invariance
        example whose label oracle disagrees with its target).
      epsilon: Sinkhorn's entropic regularisation (absolute; normalised costs lie in [0, 4]).
      label_cost: the ground cost's penalty ``lambda`` for moving mass across labels.
      num_classes: K.
      max_iterations, threshold: Sinkhorn's stopping rule.

    Returns:
      ``OT_eps(a, b; C)`` (ott's ``reg_ot_cost``).
    """
    if z_clean.ndim != 2 or z_pert.ndim != 2 or z_clean.shape[1] != z_pert.shape[1]:
        raise ValueError(
            f"z_clean [M, E] and z_pert [P, E] must share E, got {z_clean.shape} and {z_pert.shape}"
        )
    if y_clean.shape != z_clean.shape[:1] or s_pert.shape != z_pert.shape[:1]:
        raise ValueError(
            f"labels must match the embeddings: y_clean {y_clean.shape} for {z_clean.shape}, "
            f"s_pert {s_pert.shape} for {z_pert.shape}"
        )
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
    cost = label_aware_cost(z_pert, s_pert, z_clean, y_clean, label_cost=label_cost)
    a = class_balanced_weights(s_pert, y_clean, weights, num_classes=num_classes)
    b = jnp.full((z_clean.shape[0],), 1.0 / z_clean.shape[0])
    geom = geometry.Geometry(cost_matrix=cost, epsilon=epsilon)
    solver = sinkhorn.Sinkhorn(max_iterations=max_iterations, threshold=threshold)
    out = solver(linear_problem.LinearProblem(geom, a=a, b=b))
    return out.reg_ot_cost
