"""Effective robustness with multiple ID test sets (Shi et al. 2023, arXiv 2302.01381).

Three tasks, each in its own sub-folder of the workdir:

- ``openclip``: single-ID fits (ImageNet -> ImageNet-V2/-R/-Sketch/ObjectNet) over the ~120
  published OpenCLIP zero-shot results, grouped by pre-training data.
- ``cifar10_1``: single-ID fits (CIFAR-10 -> CIFAR-10.1 v6/v4) over the 30 published models'
  predictions, with an exact (per-example) bootstrap.
- ``zoo``: our own zoo of 100+ bag-of-n-grams sentiment classifiers trained (vmapped) on
  Blitzer books, kitchen and books+kitchen mixtures; ID = held-out books and kitchen reviews,
  OOD = dvd, electronics, SST-2, MR. Single-ID vs multi-ID effective robustness per group.

Launch::

    python -m experiments.effrob.main \
      --config=experiments/effrob/configs/default.py:small --workdir=/tmp/effrob

Any accuracy CSV instead (one row per model)::

    python -m experiments.effrob.main --config=experiments/effrob/configs/default.py:small \
      --workdir=/tmp/effrob_csv --config.tasks=csv --config.csv.path=table.csv \
      --config.csv.id_columns=books,kitchen --config.csv.ood_columns=dvd \
      --config.csv.group_column=group --config.csv.name_column=model

Hardware: CPU. Expected runtime on 2 shared CPU cores: smoke about 40 s, small about 2.5 min
(180 zoo models), full (720 zoo models, 1000 bootstrap replicates) see NOTES.md. An MLP zoo is
one override away (``--config.zoo.archs='("linear", "mlp16")'``); its first layer costs H times
the linear model's, so it is meant for a GPU. Target: the fits match an independent least-squares
reference (tests); on the zoo, per-group |ER| shrinks and R^2 rises from single- to multi-ID.
"""

import ml_collections

from robustml_jax.core.experiment import unknown_config


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.tasks = "openclip,cifar10_1,zoo"  # comma-separated; "csv" fits config.csv
    c.transform = "logit"
    c.num_bootstrap = 200
    c.num_devices = 0  # 0 = all devices
    c.distributed = ml_collections.ConfigDict(
        {"coordinator_address": "", "num_processes": 1, "process_id": 0}
    )
    c.progress = True

    c.csv = ml_collections.ConfigDict()
    c.csv.path = ""
    c.csv.id_columns = ""
    c.csv.ood_columns = ""
    c.csv.group_column = ""
    c.csv.name_column = ""
    c.csv.scale = 1.0  # 100 for percentages

    c.openclip = ml_collections.ConfigDict()
    c.openclip.id_column = "ImageNet 1k"
    c.openclip.ood_columns = "ImageNet v2,ImageNet-R,ImageNet Sketch,ObjectNet"
    # Test-set sizes for the binomial example bootstrap (ImageNet val, V2 matched-frequency,
    # -R, -Sketch, ObjectNet's 113 ImageNet classes); the CSV itself does not give them.
    c.openclip.sizes = ml_collections.ConfigDict(
        {
            "ImageNet 1k": 50000,
            "ImageNet v2": 10000,
            "ImageNet-R": 30000,
            "ImageNet Sketch": 50889,
            "ObjectNet": 18574,
        }
    )

    c.cifar10_1 = ml_collections.ConfigDict()
    c.cifar10_1.ood_splits = "v6,v4"

    c.zoo = ml_collections.ConfigDict()
    z = c.zoo
    z.id_domains = ("books", "kitchen")
    z.ood_sets = ("dvd", "electronics", "sst2", "mr")
    z.id_test_size = 600
    z.mr_max = 2000
    z.hash_dim = 4096
    z.archs = ("linear",)
    z.mixes = (1.0, 0.0, 0.25, 0.5, 0.75)
    z.train_sizes = (100, 400, 1200)
    z.l2s = (1e-5, 1e-3)
    z.feat_dims = (512, 4096)
    z.snapshots = (10, 30, 100)
    z.learning_rate = 0.1
    z.log_every = 10
    z.checkpoint_every = 50

    if arg == "smoke":
        c.num_bootstrap = 0  # bootstrap intervals are covered by the unit tests
        c.openclip.ood_columns = "ImageNet v2,ObjectNet"
        c.cifar10_1.ood_splits = "v6"
        c.progress = False
        z.hash_dim = 512
        z.id_test_size = 300
        z.mr_max = 300
        z.ood_sets = ("dvd", "electronics", "sst2")
        z.mixes = (1.0, 0.0, 0.5)
        z.train_sizes = (100, 400)
        z.l2s = (1e-3,)
        z.feat_dims = (512,)
        z.snapshots = (5, 15)
        z.checkpoint_every = 5
        z.log_every = 5
    elif arg == "small":
        pass
    elif arg == "full":
        c.num_bootstrap = 1000
        z.mr_max = 10662
        z.train_sizes = (50, 100, 200, 400, 800, 1300)
        z.l2s = (1e-5, 1e-3)
        z.feat_dims = (256, 1024, 4096)
        z.snapshots = (10, 30, 100, 300)
        z.checkpoint_every = 50
    else:
        raise unknown_config(arg)
    return c
