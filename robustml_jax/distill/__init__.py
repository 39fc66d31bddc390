"""Dataset distillation by trajectory matching: MTT (Cazenavette et al. 2022) and TESLA
(Cui et al., ICML 2023: constant-memory gradients and soft labels).

The core is :func:`trajectory_matching_loss`, one jittable function with three gradients
(``"unrolled"``, ``"tesla"``, ``"remat"``); the rest (DSA augmentation, expert trajectories,
soft labels, evaluation by training fresh networks) is used by ``experiments/distill``.
"""

from robustml_jax.distill._augment import DSA_STRATEGY, DSAParams, dsa_augment
from robustml_jax.distill._data import Preprocessor, fit_preprocessor, load_split, real_subset
from robustml_jax.distill._evaluate import accuracy, train_networks
from robustml_jax.distill._experts import (
    expert_dir,
    load_trajectories,
    stack_trajectories,
    train_experts,
)
from robustml_jax.distill._labels import (
    LABEL_MODES,
    init_label_logits,
    learned_labels,
    soft_label_assignment,
)
from robustml_jax.distill._matching import (
    GRADIENT_MODES,
    minibatch_indices,
    soft_cross_entropy,
    student_trajectory,
    trajectory_matching_loss,
)

__all__ = [
    "DSAParams",
    "DSA_STRATEGY",
    "GRADIENT_MODES",
    "LABEL_MODES",
    "Preprocessor",
    "accuracy",
    "dsa_augment",
    "expert_dir",
    "fit_preprocessor",
    "init_label_logits",
    "learned_labels",
    "load_split",
    "load_trajectories",
    "minibatch_indices",
    "real_subset",
    "soft_cross_entropy",
    "soft_label_assignment",
    "stack_trajectories",
    "student_trajectory",
    "train_experts",
    "train_networks",
    "trajectory_matching_loss",
]
