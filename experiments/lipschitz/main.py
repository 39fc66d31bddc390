"""Paper 9: local Lipschitz constants by bound propagation (Shi et al., NeurIPS 2022).

    python -m experiments.lipschitz.main \
      --config=experiments/lipschitz/configs/default.py:small --workdir=/tmp/lipschitz
"""

from absl import app, flags
from ml_collections import config_flags

from experiments.lipschitz import train
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
