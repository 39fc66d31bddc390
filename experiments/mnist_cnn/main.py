"""Worked example of the shared core: a small CNN on MNIST-5k, checkpointed and resumable.

    python -m experiments.mnist_cnn.main \
      --config=experiments/mnist_cnn/configs/default.py:small --workdir=/tmp/mnist_cnn
"""

from experiments.mnist_cnn import train
from experiments.mnist_cnn.configs import default
from robustml_jax.core import experiment

main = experiment.define_main(train.train_and_evaluate, validate=default.validate)


if __name__ == "__main__":
    experiment.app_run(main)
