"""Effective robustness with multiple ID test sets: fits, ER tables and plots.

    python -m experiments.effrob.main \
      --config=experiments/effrob/configs/default.py:small --workdir=/tmp/effrob

Or on any CSV of per-model accuracies (see the config docstring)::

    python -m experiments.effrob.main --config=experiments/effrob/configs/default.py:small \
      --workdir=/tmp/t --config.tasks=csv --config.csv.path=acc.csv \
      --config.csv.id_columns=a,b --config.csv.ood_columns=c --config.csv.group_column=group
"""

from experiments.effrob import train
from experiments.effrob.configs import default
from robustml_jax.core import experiment

main = experiment.define_main(train.train_and_evaluate, validate=default.validate)


if __name__ == "__main__":
    experiment.app_run(main)
