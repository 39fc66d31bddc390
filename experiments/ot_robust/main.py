"""Paper 4: robustness to sensitivity and invariance attacks with metric learning and OT.

    python -m experiments.ot_robust.main \
      --config=experiments/ot_robust/configs/default.py:small --workdir=/tmp/ot_robust
"""

from experiments.ot_robust import train
from experiments.ot_robust.configs import default
from robustml_jax.core import experiment

main = experiment.define_main(train.train_and_evaluate, validate=default.validate)


if __name__ == "__main__":
    experiment.app_run(main)
