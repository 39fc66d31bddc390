"""Pre-trains (or resumes, or exports) the small from-scratch T5 of the CPU reproduction.

    python -m experiments.promot.pretrain --steps=3000            # resumable; nice it
    python -m experiments.promot.pretrain --export_only           # stop early: export latest

The model goes to ``<cache dir>/promot/<PRETRAIN_CACHE_NAME>/t5x/checkpoint_<step>`` (or
``--workdir``), where the ``small`` config finds it.
"""

from absl import app, flags

from robustml_jax import promot
from robustml_jax.core import paths

_WORKDIR = flags.DEFINE_string("workdir", "", "Pre-training folder ('' = cache dir).")
_STEPS = flags.DEFINE_integer("steps", 3000, "Pre-training steps.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_EXPORT = flags.DEFINE_bool("export_only", False, "Export the newest checkpoint and stop.")


def main(argv):
    del argv
    workdir = _WORKDIR.value or str(paths.cache_dir() / "promot" / promot.PRETRAIN_CACHE_NAME)
    cfg = promot.small_t5_config()
    if _EXPORT.value:
        print(promot.export_latest(workdir, config=cfg))
        return
    sampler = promot.EpisodeSampler(promot.small_tokenizer())
    print(
        promot.pretrain(
            workdir, sampler, config=cfg, num_steps=_STEPS.value, batch_size=_BATCH.value
        )
    )


if __name__ == "__main__":
    app.run(main)
