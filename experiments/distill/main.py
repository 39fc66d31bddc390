"""Dataset distillation by trajectory matching (MTT / TESLA), end to end.

    python -m experiments.distill.main \
      --config=experiments/distill/configs/default.py:small --workdir=/tmp/distill

Trains (or reuses, ``--config.expert_dir``) the expert trajectories, evaluates the random-real
and full-data baselines, distils, evaluates the distilled set and writes ``results.json``, the
image grids and the curves into the workdir; re-running resumes from the last checkpoint.
"""

from absl import app, flags
from ml_collections import config_flags

from experiments.distill import train
from robustml_jax.core import experiment

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (path:arg).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    experiment.run(train.train_and_evaluate, _CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
