"""The core's worked example: a small Flax CNN on MNIST-5k with the shared train loop.

Launch (CPU, about a minute for `small`)::

    python -m experiments.mnist_cnn.main \
      --config=experiments/mnist_cnn/configs/default.py:small --workdir=/tmp/mnist_cnn

Hardware: any; `full` is the same model trained longer. Target: test accuracy on the held-out
20% of MNIST-5k (about 95% after `small`).
"""

import ml_collections

from robustml_jax.core.experiment import unknown_config


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.dataset = "mnist_5k"
    c.batch_size = 64
    c.learning_rate = 3e-3
    c.features = (16, 32)
    c.hidden = 64
    c.num_devices = 0  # 0 = all devices
    c.distributed = ml_collections.ConfigDict(
        {"coordinator_address": "", "num_processes": 1, "process_id": 0}
    )
    c.log_every = 20
    c.eval_every = 0
    c.checkpoint_every = 20
    c.progress = True
    if arg == "smoke":
        c.num_steps = 40
        c.features = (4, 8)
        c.hidden = 16
        c.checkpoint_every = 5
        c.log_every = 5
        c.progress = False
    elif arg == "small":
        c.num_steps = 600
        c.checkpoint_every = 100
    elif arg == "full":
        c.num_steps = 5000
        c.checkpoint_every = 500
        c.eval_every = 500
    else:
        raise unknown_config(arg)
    return c
