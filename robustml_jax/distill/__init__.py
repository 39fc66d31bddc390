"""Dataset distillation by trajectory matching: MTT (Cazenavette et al. 2022) and TESLA
(Cui et al., ICML 2023: constant-memory gradients and soft labels).

The core is :func:`trajectory_matching_loss`, one jittable function with three gradients
(``"unrolled"``, ``"tesla"``, ``"remat"``); the rest (DSA augmentation, expert trajectories,
soft labels, evaluation by training fresh networks, figures) is used by ``experiments/distill``.
Test accuracy of trained networks is :func:`robustml_jax.core.metrics.stacked_accuracy`.
"""

from robustml_jax.distill._archs import ARCHITECTURES, VGG11, AlexNet, ResNet18, make_model
from robustml_jax.distill._augment import DSA_STRATEGY, DSAParams, dsa_augment
from robustml_jax.distill._data import Preprocessor, fit_preprocessor, load_split, real_subset
from robustml_jax.distill._evaluate import train_networks
from robustml_jax.distill._experts import (
    Expert,
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
    student_trajectory,
    trajectory_matching_loss,
)
from robustml_jax.distill._plots import curves, image_grid
from robustml_jax.distill._scale import gradient_memory, synthetic_sharding
from robustml_jax.distill._stream import (
    ImageStore,
    StreamingImages,
    TrajectoryBuffer,
    channel_stats,
    open_trajectories,
    store_from_registry,
    store_from_tfds,
    write_image_store,
)

__all__ = [
    "ARCHITECTURES",
    "AlexNet",
    "ResNet18",
    "VGG11",
    "make_model",
    "DSAParams",
    "DSA_STRATEGY",
    "Expert",
    "GRADIENT_MODES",
    "ImageStore",
    "StreamingImages",
    "TrajectoryBuffer",
    "channel_stats",
    "gradient_memory",
    "open_trajectories",
    "store_from_registry",
    "store_from_tfds",
    "synthetic_sharding",
    "write_image_store",
    "LABEL_MODES",
    "Preprocessor",
    "curves",
    "dsa_augment",
    "fit_preprocessor",
    "image_grid",
    "init_label_logits",
    "learned_labels",
    "load_split",
    "load_trajectories",
    "minibatch_indices",
    "real_subset",
    "soft_label_assignment",
    "stack_trajectories",
    "student_trajectory",
    "train_experts",
    "train_networks",
    "trajectory_matching_loss",
]
