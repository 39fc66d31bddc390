"""Effective robustness with multiple ID test sets: fits, ER tables and plots.

    python -m experiments.effrob.main \
      --config=experiments/effrob/configs/default.py:small --workdir=/tmp/effrob

Or on any CSV of per-model accuracies (see the config docstring)::

    python -m experiments.effrob.main --config=experiments/effrob/configs/default.py:small \
      --workdir=/tmp/t --config.tasks=csv --config.csv.path=acc.csv \
      --config.csv.id_columns=a,b --config.csv.ood_columns=c --config.csv.group_column=group
"""

from absl import app, flags
from ml_collections import config_flags

from experiments.effrob import train
from robustml_jax.core import experiment

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (path:arg).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, fits, tables, plots.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    experiment.run(train.train_and_evaluate, _CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
