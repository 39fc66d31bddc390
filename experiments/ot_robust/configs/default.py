"""Paper 4: OT metric learning against sensitivity and invariance attacks vs standard training,
PGD adversarial training and TRADES, on MNIST-5k (and Fashion-MNIST).

Launch (CPU, ``small``)::

    python -m experiments.ot_robust.main \
      --config=experiments/ot_robust/configs/default.py:small --workdir=/tmp/ot_robust

Variants:
- ``smoke``: the tests' end-to-end run (tiny subsets, 2 methods, 1 seed, seconds plus compiles).
- ``small``: the suite's CPU report, sized for 2 cores shared by many jobs: EmbedCNN (8, 16
  channels, 64-d embedding) on MNIST-5k (2,000 of the 4,000 train images / 200 evaluated test
  images), 6 epochs of batch 100 (Adam 2e-3), l_inf eps 0.3 (ramped over the first 30% of
  steps), 3-step PGD in training, 5 methods x 3 seeds (same init and batch order per seed);
  evaluation PGD-10 and APGD-CE-25 at eps 0.1 / 0.2 / 0.3, FGSM, Tramer et al.'s human-
  labelled invariance examples, and our invariance attack (27 transforms) at eps 0.3 / 0.4 on
  100 test images.
- ``fashion_small``: the same on Fashion-MNIST (4,000 train images drawn from the 60k, eps 0.1:
  Fashion-MNIST's usual radius; the Tramer examples are MNIST-only and are skipped).
- ``full``: GPU: (16, 32) channels, 128-d embedding, Fashion-MNIST 60k (MNIST-5k for the MNIST
  rows), 30 epochs, 10-step PGD, 5 seeds, 1,000 evaluated test images, PGD-40 / APGD-100.

Hardware: ``small`` any CPU (each adversarial training run ~1-3 min on 2 loaded cores);
``full`` one GPU. Target (the abstract's claim): ``ot_inv`` above ``pgd_at`` in both
sensitivity (robust accuracy under APGD) and invariance (agreement with human labels on
Tramer's examples / with the oracle on ours) robustness, paired over seeds.
"""

import ml_collections

from robustml_jax.core import configs
from robustml_jax.ot_robust import METHODS

VARIANTS = {
    "smoke": {
        "train_limit": 256,
        "eval_limit": 64,
        "inv_eval_limit": 32,
        "num_epochs": 1,
        "batch_size": 64,
        "methods": ("pgd_at", "ot_inv"),
        "num_seeds": 1,
        "train_pgd_steps": 2,
        "eval_eps": (0.3,),
        "pgd_steps": 5,
        "apgd_steps": 8,
        "tramer": True,
        "inv_max_shift": 1,
        "inv_shift_step": 1,
        "inv_max_angle": 0.0,
        "progress": False,
    },
    "small": {},
    "fashion_small": {
        "dataset": "fashion_mnist",
        "eps": 0.1,
        "eval_eps": (0.05, 0.1, 0.15),
        "inv_eps": (0.1, 0.2),
        "tramer": False,
    },
    "full": {
        "dataset": "fashion_mnist",
        "train_limit": 0,
        "inv_pool": 20000,
        "eval_limit": 1000,
        "inv_eval_limit": 300,
        "inv_shift_step": 1,
        "inv_angle_step": 5.0,
        "features": (16, 32),
        "embed_dim": 128,
        "num_epochs": 30,
        "train_pgd_steps": 10,
        "num_seeds": 5,
        "pgd_steps": 40,
        "apgd_steps": 100,
        "eps": 0.1,
        "eval_eps": (0.05, 0.1, 0.15),
        "inv_eps": (0.1, 0.2),
        "tramer": False,
    },
}


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
    """The documented default is ``small``; the other variants override a few fields."""
    c = configs.base()
    c.dataset = "mnist_5k"
    c.train_limit = 2000  # 0 = the whole training split (drawn at random when smaller)
    c.inv_pool = 0  # training images searched by the invariance attack (0 = the training set)
    c.eval_limit = 200  # test images evaluated (the first ones of a fixed permutation)
    c.inv_eval_limit = 100  # test images given to our invariance attack
    c.features = (8, 16)
    c.embed_dim = 64
    c.methods = ("pgd_at", "ot_inv", "standard", "trades", "ot_sens")
    c.num_seeds = 3
    c.num_epochs = 6
    c.batch_size = 100
    c.learning_rate = 2e-3
    c.eps = 0.3  # l_inf training radius (sensitivity and invariance examples)
    c.eps_warmup = 0.3  # fraction of the steps over which the radius ramps from 0 to eps
    c.train_pgd_steps = 3
    c.trades_beta = 6.0
    c.ot_weight = 1.0
    c.ot_epsilon = 0.05
    c.label_cost = 4.0
    c.inv_select = "oracle_margin"
    c.inv_max_shift = 2  # the invariance attack's grid: shifts -2..2 (pixels), angles -10..10
    c.inv_shift_step = 2
    c.inv_max_angle = 10.0
    c.inv_angle_step = 10.0
    c.eval_eps = (0.1, 0.2, 0.3)
    c.inv_eps = (0.3, 0.4)
    c.pgd_steps = 10
    c.apgd_steps = 25
    c.tramer = True  # evaluate on Tramer et al.'s human-labelled MNIST invariance examples
    return configs.variant(c, arg, VARIANTS)


def validate(c: ml_collections.ConfigDict) -> None:
    for name in ("num_seeds", "num_epochs", "batch_size", "train_pgd_steps", "pgd_steps"):
        configs.check(c, name, lambda v: int(v) == v and v > 0, "a positive integer")
    for name in ("apgd_steps", "eval_limit", "inv_eval_limit", "embed_dim"):
        configs.check(c, name, lambda v: int(v) == v and v > 0, "a positive integer")
    for name in ("train_limit", "inv_pool"):
        configs.check(c, name, lambda v: int(v) == v and v >= 0, "an integer >= 0")
    configs.check(c, "dataset", lambda v: v in ("mnist_5k", "fashion_mnist"), "a known dataset")
    configs.check(c, "methods", lambda v: len(v) > 0 and all(m in METHODS for m in v),
                  f"names in {METHODS}")  # fmt: skip
    configs.check(c, "eps", lambda v: 0 <= v <= 1, "in [0, 1]")
    configs.check(c, "eps_warmup", lambda v: 0 <= v < 1, "in [0, 1)")
    configs.check(c, "eval_eps", lambda v: len(v) > 0 and all(0 <= e <= 1 for e in v),
                  "radii in [0, 1]")  # fmt: skip
    configs.check(c, "inv_eps", lambda v: all(0 <= e <= 1 for e in v), "radii in [0, 1]")
    for name in ("inv_shift_step", "inv_angle_step"):
        configs.check(c, name, lambda v: v > 0, "> 0")
    configs.check(c, "ot_epsilon", lambda v: v > 0, "> 0")
    configs.check(c, "learning_rate", lambda v: v > 0, "> 0")
    configs.check(c, "inv_select", lambda v: v in ("oracle_margin", "residual"),
                  "'oracle_margin' or 'residual'")  # fmt: skip
