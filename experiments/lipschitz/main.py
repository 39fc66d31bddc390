"""Paper 9: local Lipschitz constants by bound propagation (Shi et al., NeurIPS 2022).

    python -m experiments.lipschitz.main \
      --config=experiments/lipschitz/configs/default.py:small --workdir=/tmp/lipschitz
"""

from experiments.lipschitz import train
from experiments.lipschitz.configs import default
from robustml_jax.core import experiment

main = experiment.define_main(train.train_and_evaluate, validate=default.validate)


if __name__ == "__main__":
    experiment.app_run(main)
