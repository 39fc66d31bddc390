"""Paper 8: watermarking MiniLM with multi-task backdoors; fine-tuning, removal, extraction.

    python -m experiments.watermark.main \
      --config=experiments/watermark/configs/default.py:small --workdir=/tmp/watermark
"""

from experiments.watermark import train
from experiments.watermark.configs import default
from robustml_jax.core import experiment

main = experiment.define_main(train.train_and_evaluate, validate=default.validate)


if __name__ == "__main__":
    experiment.app_run(main)
