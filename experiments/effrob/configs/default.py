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

from robustml_jax.core import configs

TASKS = ("openclip", "cifar10_1", "zoo", "csv")
TRANSFORMS = ("logit", "probit")
FEATURES = ("hashed", "minilm")

VARIANTS = {
    "smoke": {
        "num_bootstrap": 0,  # bootstrap intervals are covered by the unit tests
        "openclip.ood_columns": "ImageNet v2,ObjectNet",
        "cifar10_1.ood_splits": "v6",
        "progress": False,
        "zoo.hash_dim": 512,
        "zoo.id_test_size": 300,
        "zoo.mr_max": 300,
        "zoo.ood_sets": ("dvd", "electronics", "sst2"),
        "zoo.mixes": (1.0, 0.0, 0.5),
        "zoo.train_sizes": (100, 400),
        "zoo.l2s": (1e-3,),
        "zoo.feat_dims": (512,),
        "zoo.snapshots": (5, 15),
        "zoo.log_every": 5,
    },
    "small": {},  # the documented default
    # The zoo on frozen MiniLM sentence embeddings instead of hashed n-grams (needs the shared
    # encoder robustml_jax.models.bert.embed_sentences; embeddings are cached in the workdir).
    "small_minilm": {"zoo.features": "minilm", "zoo.feat_dims": (96, 384)},
    "full": {
        "num_bootstrap": 1000,
        "zoo.mr_max": 10662,
        "zoo.train_sizes": (50, 100, 200, 400, 800, 1300),
        "zoo.feat_dims": (256, 1024, 4096),
        "zoo.snapshots": (10, 30, 100, 300),
    },
}


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
    """The documented default is ``small``; ``smoke`` and ``full`` override a few fields."""
    c = configs.base()
    c.tasks = "openclip,cifar10_1,zoo"  # comma-separated; "csv" fits config.csv
    c.transform = "logit"
    c.num_bootstrap = 200
    c.num_folds = 5  # k of the k-fold cross-validated error (whole training runs per fold)

    c.csv = ml_collections.ConfigDict()
    c.csv.path = ""
    c.csv.id_columns = ""
    c.csv.ood_columns = ""
    c.csv.group_column = ""
    c.csv.name_column = ""
    c.csv.cluster_column = ""  # training-run labels: dependent models resampled together
    c.csv.scale = 1.0  # 100 for percentages
    c.csv.sizes = ""  # test-set sizes for the intervals: "10000" or "imagenet=50000,v2=10000"
    c.csv.fit_groups = ""  # fit the baseline on these groups only (e.g. "ImageNet"), score all

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
    z.features = "hashed"  # or "minilm": frozen MiniLM sentence embeddings (D = 384)
    z.hash_dim = 4096
    z.archs = ("linear",)
    z.mixes = (1.0, 0.0, 0.25, 0.5, 0.75)
    z.train_sizes = (100, 400, 1200)
    z.l2s = (1e-5, 1e-3)
    z.feat_dims = (512, 4096)
    z.snapshots = (10, 30, 100)  # full-batch Adam steps at which every model is evaluated
    z.learning_rate = 0.1
    z.log_every = 10  # steps between the mean training losses written to metrics.jsonl
    return configs.variant(c, arg, VARIANTS)


def _names(s: str) -> list[str]:
    return [t.strip() for t in s.split(",") if t.strip()]


def validate(c: ml_collections.ConfigDict) -> None:
    """Raises ``ConfigError`` for values a user could get wrong on the command line."""
    configs.check(
        c,
        "tasks",
        lambda v: _names(v) and set(_names(v)) <= set(TASKS),
        f"a comma-separated list of {', '.join(TASKS)}",
    )
    configs.check(c, "transform", lambda v: v in TRANSFORMS, f"one of {', '.join(TRANSFORMS)}")
    configs.check(c, "num_bootstrap", lambda v: v == 0 or v >= 2, "0 (none) or at least 2")
    configs.check(c, "num_folds", lambda v: v >= 2, "at least 2")
    configs.check(c, "csv.scale", lambda v: v > 0, "positive (100 for percentages)")
    if "csv" in _names(c.tasks):
        configs.check(c, "csv.path", bool, "the accuracy CSV to fit (task 'csv')")
        configs.check(c, "csv.id_columns", _names, "one or more comma-separated ID columns")
        configs.check(c, "csv.ood_columns", _names, "one or more comma-separated OOD columns")
    z = "zoo."
    configs.check(c, z + "id_domains", lambda v: len(v) >= 1, "one or more Blitzer domains")
    configs.check(c, z + "ood_sets", lambda v: len(v) >= 1, "one or more OOD sets")
    for f in ("id_test_size", "mr_max", "learning_rate", "log_every"):
        configs.check(c, z + f, lambda v: v > 0, "positive")
    configs.check(c, z + "features", lambda v: v in FEATURES, f"one of {', '.join(FEATURES)}")
    configs.check(c, z + "hash_dim", lambda v: v > 0 and v & (v - 1) == 0, "a power of two")
    configs.check(c, z + "mixes", lambda v: v and all(0 <= m <= 1 for m in v), "in [0, 1]")
    configs.check(c, z + "train_sizes", lambda v: v and min(v) > 0, "positive")
    configs.check(c, z + "l2s", lambda v: v and min(v) >= 0, "non-negative")
    configs.check(
        c,
        z + "feat_dims",
        lambda v: v and 0 < min(v) and max(v) <= c.zoo.hash_dim,
        "in [1, zoo.hash_dim]",
    )
    configs.check(c, z + "snapshots", lambda v: v and min(v) > 0, "positive step counts")
    configs.check(
        c,
        z + "archs",
        lambda v: v and all(a == "linear" or (a[:3] == "mlp" and a[3:].isdigit()) for a in v),
        "'linear' or 'mlp<H>' names",
    )
