"""Paper 6: ensemble uncertainty for tree-based XMC (plus the XR-Linear-style tree model).

    python -m experiments.xmc.main \
      --config=experiments/xmc/configs/default.py:small --workdir=/tmp/xmc
"""

from experiments.xmc import train
from experiments.xmc.configs import default
from robustml_jax.core import experiment

main = experiment.define_main(train.train_and_evaluate, validate=default.validate)


if __name__ == "__main__":
    experiment.app_run(main)
