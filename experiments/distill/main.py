"""Dataset distillation by trajectory matching (MTT / TESLA), end to end.

    python -m experiments.distill.main \
      --config=experiments/distill/configs/default.py:small --workdir=/tmp/distill

Trains (or reuses, ``--config.expert_dir``) the expert trajectories, evaluates the random-real
and full-data baselines, distils, evaluates the distilled set and writes ``results.json``, the
image grids and the curves into the workdir; re-running resumes from the last checkpoint.
"""

from experiments.distill import train
from experiments.distill.configs import default
from robustml_jax.core import experiment

main = experiment.define_main(train.train_and_evaluate, validate=default.validate)


if __name__ == "__main__":
    experiment.app_run(main)
