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
"""

import ml_collections

from robustml_jax.core.experiment import unknown_config


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.progress = True
    c.learning_rate = 1e-3  # the paper's training recipe: Adam, lr 1e-3
    c.batch_size = 64
    c.train_steps = 400
    c.num_points = 5
    c.methods = ("naive", "interval", "recurjac", "ours", "ours_bab")
    c.bab_steps = 10
    c.bab_batch = 4
    c.samples = 256
    c.ascent_starts = 8
    c.ascent_steps = 10
    c.exact_time_limit_s = 60.0
    c.distributed = ml_collections.ConfigDict(
        {"coordinator_address": "", "num_processes": 1, "process_id": 0}
    )
    c.synthetic = ml_collections.ConfigDict(
        {
            "enabled": True,
            "dim": 16,
            "num_classes": 10,
            "clusters": 40,
            "num_train": 2000,
            "widths": (8, 16, 32),
            "depth": 2,
            "depth_width": 16,
            "depths": (1, 2, 3),
            "eps": 0.05,
            "exact_max_neurons": 32,
        }
    )
    c.mnist = ml_collections.ConfigDict(
        {
            "enabled": True,
            "num_train": 4000,
            "mlp_hidden": (20, 20),
            "cnn_features": (8, 16),
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
            "bab_points": 30,
        }
    )
    if arg == "smoke":
        c.progress = False
        c.train_steps = 30
        c.num_points = 2
        c.bab_steps = 2
        c.methods = ("naive", "recurjac", "ours", "ours_bab")
        c.samples = 32
        c.ascent_starts = 2
        c.ascent_steps = 3
        c.synthetic.widths = (8,)
        c.synthetic.depths = (2,)
        c.synthetic.depth_width = 8
        c.synthetic.num_train = 256
        c.mnist.enabled = False
        c.monotone.num_points = 8
        c.monotone.hidden = (8,)
        c.monotone.bab_steps = 2
    elif arg == "small":
        pass
    elif arg == "full":
        c.train_steps = 3000
        c.num_points = 20
        c.bab_steps = 50
        c.bab_batch = 8
        c.samples = 2048
        c.ascent_starts = 32
        c.ascent_steps = 30
        c.exact_time_limit_s = 600.0
        c.synthetic.widths = (8, 16, 32, 64, 128)
        c.synthetic.depths = (1, 2, 3, 4, 6)
        c.synthetic.depth_width = 32
        c.synthetic.exact_max_neurons = 64
        c.mnist.num_points = 100
        c.mnist.bab_steps = 50
        c.mnist.cnn_bab_steps = 5
        c.cifar.enabled = True
        c.cifar.num_points = 20
        c.monotone.bab_steps = 50
        c.monotone.bab_points = 10_000
        c.monotone.samples = 512
    else:
        raise unknown_config(arg)
    return c
