"""ProMoT (paper 5): prompt tuning, then model tuning with the soft prompt attached.

    python -m experiments.promot.main \
      --config=experiments/promot/configs/default.py:small --workdir=/tmp/promot
"""

from experiments.promot import train
from experiments.promot.configs import default
from robustml_jax.core import experiment

main = experiment.define_main(train.train_and_evaluate, validate=default.validate)


if __name__ == "__main__":
    experiment.app_run(main)
