"""GoAttack (paper 3): agents by self-play, then the meaningless-stone attack.

    python -m experiments.go_attack.main \
      --config=experiments/go_attack/configs/default.py:small --workdir=/tmp/go_attack
"""

from experiments.go_attack import train
from experiments.go_attack.configs import default
from robustml_jax.core import experiment

main = experiment.define_main(train.train_and_evaluate, validate=default.validate)


if __name__ == "__main__":
    experiment.app_run(main)
