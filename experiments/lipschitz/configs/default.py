"""Paper 9: local Lipschitz constants by bound propagation on the Clarke Jacobian, with BaB.

Launch (CPU; `small` needs about 4 minutes of CPU time on 2 cores, `smoke` about 40 s; both
took 3-5x longer in wall time on the shared development machine)::

    python -m experiments.lipschitz.main \
      --config=experiments/lipschitz/configs/default.py:small --workdir=/tmp/lipschitz

Hardware: any; `full` (more points, wider/deeper nets, CIFAR-10, longer BaB) is sized for one
GPU or a long CPU run. Targets: every bound >= the sampled lower bound; ours <= recurjac <=
naive; ours + BaB within 10% of the exact value on the tiny synthetic MLPs; bounds on the
MNIST CNN far below the naive product. Monotonicity: fraction of test points where the
diabetes MLP is certified monotone in each feature.

The documented default is `small` (below); `smoke` (tests) and `full` override a few fields.
"""

import ml_collections

from robustml_jax.core import configs
from robustml_jax.lipschitz import BOUND_METHODS

VARIANTS = {
    "smoke": {
        "progress": False,
        "train_steps": 30,
        "num_points": 2,
        "bab_steps": 2,
        "methods": ("naive", "recurjac", "ours", "ours_bab"),
        "samples": 32,
        "ascent_starts": 2,
        "ascent_steps": 3,
        "synthetic.widths": (8,),
        "synthetic.depths": (2,),
        "synthetic.depth_width": 8,
        "synthetic.num_train": 256,
        "mnist.enabled": False,
        "monotone.num_points": 8,
        "monotone.hidden": (8,),
        "monotone.bab_steps": 2,
    },
    "small": {},
    # The paper's MNIST CNN (mnist_cnn_4layer of the official code: 4x4 convolutions with stride
    # 1, 8,972 hidden ReLUs) in place of the stride-2 one; ours takes about 6 s of CPU per
    # point on it (benchmarks/results/lipschitz_speed_official.json, NOTES.md).
    "official_cnn": {"mnist.cnn_features": (8, 8), "mnist.cnn_strides": (1, 1)},
    # The paper's CIFAR-10 models (cnn_4layer / cnn_6layer_stride1_padding0 of the official
    # code: 3x3 convolutions of width 32, stride 1, no padding, fc256; 54,144 and 94,208 hidden
    # ReLUs): a GPU-scale run, several minutes per point on 2 CPU cores.
    "paper_cifar": {
        "synthetic.enabled": False,
        "mnist.enabled": False,
        "monotone.enabled": False,
        "cifar.enabled": True,
        "cifar.cnn_features": (32, 32),
        "cifar.cnn6_features": (32, 32, 32, 32),
        "cifar.cnn_strides": (1, 1),
        "cifar.cnn_kernel": (3, 3),
        "cifar.cnn_hidden": 256,
    },
    "full": {
        "train_steps": 3000,
        "num_points": 20,
        "bab_steps": 50,
        "bab_batch": 8,
        "samples": 2048,
        "ascent_starts": 32,
        "ascent_steps": 30,
        "exact_time_limit_s": 600.0,
        "synthetic.widths": (8, 16, 32, 64, 128),
        "synthetic.depths": (1, 2, 3, 4, 6),
        "synthetic.depth_width": 32,
        "synthetic.exact_max_neurons": 64,
        "mnist.num_points": 100,
        "mnist.bab_steps": 50,
        "mnist.cnn_bab_steps": 5,
        "mnist.cnn_features": (8, 8),  # the paper's models (see official_cnn, paper_cifar)
        "mnist.cnn_strides": (1, 1),
        "cifar.enabled": True,
        "cifar.num_points": 20,
        "cifar.cnn_features": (32, 32),
        "cifar.cnn6_features": (32, 32, 32, 32),
        "cifar.cnn_strides": (1, 1),
        "cifar.cnn_kernel": (3, 3),
        "cifar.cnn_hidden": 256,
        "monotone.bab_steps": 50,
        "monotone.bab_points": 10_000,
        "monotone.samples": 512,
    },
}


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
    c = configs.base()
    c.learning_rate = 1e-3  # the paper's training recipe: Adam, lr 1e-3
    c.batch_size = 64
    c.train_steps = 400
    c.num_points = 5  # test points per synthetic task
    c.methods = BOUND_METHODS
    c.bab_steps = 10  # BaB iterations of "ours_bab" (synthetic tasks)
    c.bab_batch = 4  # domains split per iteration
    c.samples = 256  # sampled lower bound: uniform + vertex samples per point
    c.ascent_starts = 8
    c.ascent_steps = 10
    c.exact_time_limit_s = 60.0  # give up on the exact value of one point after this
    c.synthetic = ml_collections.ConfigDict(
        {
            "enabled": True,
            "dim": 16,
            "num_classes": 10,
            "clusters": 40,
            "num_train": 2000,
            "widths": (8, 16, 32),  # width sweep at depth `depth`
            "depth": 2,
            "depth_width": 16,  # depth sweep at this width
            "depths": (1, 2, 3),
            "eps": 0.05,
            "exact_max_neurons": 32,  # exact values for nets with width * depth <= this
        }
    )
    c.mnist = ml_collections.ConfigDict(
        {
            "enabled": True,
            "num_train": 4000,
            "mlp_hidden": (20, 20),
            "cnn_features": (8, 16),
            "cnn_strides": (2, 2),  # (1, 1) with features (8, 8): the paper's MNIST CNN
            "cnn_hidden": 100,
            "eps": 0.01,
            "num_points": 3,
            "bab_steps": 0,  # 5 steps cost ~35 s per point on 2 cores for a 1% gain
            "cnn_bab_steps": 0,
        }
    )
    c.cifar = ml_collections.ConfigDict(
        {
            "enabled": False,
            "num_train": 5000,
            "cnn_features": (8, 16),
            "cnn_strides": (2, 2),
            "cnn_kernel": (4, 4),
            "cnn6_features": (),  # () skips the 6-layer CNN
            "cnn_hidden": 100,
            "eps": 2.0 / 255,
            "num_points": 2,
            "bab_steps": 0,
            "cnn_bab_steps": 0,
        }
    )
    c.monotone = ml_collections.ConfigDict(
        {
            "enabled": True,
            "hidden": (32, 32),
            "eps": 0.1,
            "num_points": 89,
            "samples": 64,
            "bab_steps": 5,
            "bab_points": 30,  # BaB only at the first bab_points test points
        }
    )
    return configs.variant(c, arg, VARIANTS)


_POSITIVE = (
    "learning_rate",
    "batch_size",
    "train_steps",
    "num_points",
    "bab_batch",
    "samples",
    "ascent_starts",
    "exact_time_limit_s",
    "synthetic.eps",
    "synthetic.dim",
    "synthetic.num_classes",
    "synthetic.clusters",
    "synthetic.num_train",
    "synthetic.depth",
    "synthetic.depth_width",
    "mnist.eps",
    "mnist.num_train",
    "mnist.cnn_hidden",
    "mnist.num_points",
    "cifar.eps",
    "cifar.num_train",
    "cifar.cnn_hidden",
    "cifar.num_points",
    "monotone.eps",
    "monotone.num_points",
    "monotone.samples",
)
_NON_NEGATIVE = (
    "ascent_steps",
    "bab_steps",
    "mnist.bab_steps",
    "mnist.cnn_bab_steps",
    "cifar.bab_steps",
    "cifar.cnn_bab_steps",
    "monotone.bab_steps",
    "monotone.bab_points",
)
_SIZES = (
    "synthetic.widths",
    "synthetic.depths",
    "mnist.mlp_hidden",
    "mnist.cnn_features",
    "mnist.cnn_strides",
    "cifar.cnn_features",
    "cifar.cnn_strides",
    "monotone.hidden",
)


def validate(c: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for a radius <= 0, an unknown method name or a size <= 0."""
    configs.check(
        c,
        "methods",
        lambda v: len(v) > 0 and set(v) <= set(BOUND_METHODS),
        f"a non-empty subset of {BOUND_METHODS}",
    )
    checks = (
        (_POSITIVE, lambda v: v > 0, "positive"),
        (_NON_NEGATIVE, lambda v: v >= 0, "a non-negative integer"),
        (_SIZES, lambda v: len(v) > 0 and min(v) > 0, "a non-empty tuple of positive sizes"),
    )
    for names, ok, what in checks:
        for name in names:
            configs.check(c, name, ok, what)
