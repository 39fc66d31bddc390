"""The core's worked example: a small Flax CNN on MNIST-5k with the shared train loop.

Launch (CPU, about a minute for `small`)::

    python -m experiments.mnist_cnn.main \
      --config=experiments/mnist_cnn/configs/default.py:small --workdir=/tmp/mnist_cnn

Hardware: any; `full` is the same model trained longer. Target: test accuracy on the held-out
20% of MNIST-5k (about 95% after `small`).
"""

import ml_collections

from robustml_jax.core import configs

VARIANTS = {
    "smoke": {
        "num_steps": 40,
        "features": (4, 8),
        "hidden": 16,
        "checkpoint_every": 5,
        "log_every": 5,
        "progress": False,
    },
    "small": {},
    "full": {"num_steps": 5000, "checkpoint_every": 500, "eval_every": 500},
}


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
    """The documented default is `small`; the other variants override a few fields."""
    c = configs.base()
    c.dataset = "mnist_5k"
    c.batch_size = 64
    c.learning_rate = 3e-3
    c.features = (16, 32)
    c.hidden = 64
    c.num_steps = 600
    c.log_every = 20
    c.eval_every = 0
    c.checkpoint_every = 100
    return configs.variant(c, arg, VARIANTS)


def validate(c: ml_collections.ConfigDict) -> None:
    configs.check(c, "num_steps", lambda v: v > 0, "a positive integer")
    configs.check(c, "batch_size", lambda v: v > 0, "a positive integer")
    configs.check(c, "learning_rate", lambda v: v > 0, "positive")
    configs.check(c, "features", lambda v: len(v) > 0 and min(v) > 0, "positive channel counts")
