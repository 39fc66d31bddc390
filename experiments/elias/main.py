"""Paper 7: ELIAS, an end-to-end learned cluster-to-label index for XMC.

    python -m experiments.elias.main \
      --config=experiments/elias/configs/default.py:small --workdir=/tmp/elias
"""

from experiments.elias import train
from experiments.elias.configs import default
from robustml_jax.core import experiment

main = experiment.define_main(train.train_and_evaluate, validate=default.validate)


if __name__ == "__main__":
    experiment.app_run(main)
