"""Robustness to sensitivity and invariance attacks with metric learning and optimal transport
(paper 4), in JAX.

Only the paper's abstract is public; the formulation implemented here is ours (NOTES.md in
``experiments/ot_robust``). Pieces:

- sensitivity attacks, shared with other papers through :mod:`robustml_jax.core.attacks` and
  re-exported here: :func:`fgsm`, :func:`pgd_attack`, :func:`apgd_ce`;
- the invariance attack of Tramer et al. (2020) (:func:`invariance_attack`) with its 1-NN label
  oracle (:func:`nearest_neighbour_labels`);
- the defence's regulariser, an entropic label-aware OT cost between embedded clean and
  perturbed batches on ott-jax's Sinkhorn (:func:`ot_regulariser`);
- the training losses of the compared methods (:func:`make_loss_fn`, :data:`METHODS`) and the
  embedding CNN (:class:`EmbedCNN`).
"""

from robustml_jax.core.attacks import (
    apgd_ce,
    apgd_checkpoints,
    check_attack_inputs,
    fgsm,
    pgd_ascent,
    pgd_attack,
    project,
)
from robustml_jax.ot_robust._defence import METHODS, DefenceConfig, EmbedCNN, make_loss_fn
from robustml_jax.ot_robust._invariance import (
    InvarianceResult,
    affine_grid,
    invariance_attack,
    nearest_neighbour_labels,
    transform_images,
)
from robustml_jax.ot_robust._ot import class_balanced_weights, label_aware_cost, ot_regulariser

__all__ = [
    "METHODS",
    "DefenceConfig",
    "EmbedCNN",
    "InvarianceResult",
    "affine_grid",
    "apgd_ce",
    "apgd_checkpoints",
    "check_attack_inputs",
    "class_balanced_weights",
    "fgsm",
    "invariance_attack",
    "label_aware_cost",
    "make_loss_fn",
    "nearest_neighbour_labels",
    "ot_regulariser",
    "pgd_ascent",
    "pgd_attack",
    "project",
    "transform_images",
]
