"""ENOS (paper 10): optimizer search by MCTS over a super-tree of update rules.

    python -m experiments.optsearch.main \
      --config=experiments/optsearch/configs/default.py:small --workdir=/tmp/optsearch
"""

from experiments.optsearch import train
from experiments.optsearch.configs import default
from robustml_jax.core import experiment

main = experiment.define_main(train.train_and_evaluate, validate=default.validate)


if __name__ == "__main__":
    experiment.app_run(main)
