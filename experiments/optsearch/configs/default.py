"""ENOS (paper 10): MCTS over the super-tree of update rules, searched on MNISTNet.

Launch (CPU, ``small``: 122 s measured on 2 idle cores, fresh workdir; 23 min on 2 cores shared
with ~8 other jobs at load 27)::

    python -m experiments.optsearch.main \
      --config=experiments/optsearch/configs/default.py:small --workdir=/tmp/optsearch

Variants:
- ``smoke``: the tests' end-to-end run (seconds plus compilation).
- ``small``: the suite's CPU report: budget 32 (4 levels x 8 MC samples), 6 learning rates,
  60-step search runs, 3 search seeds per method, evaluation 300 steps x 5 seeds, transfer to
  the MNISTNet variants and SST-2 (hashed bag of words).
- ``cpu_budget128``: the paper's budget and lr grid on CPU with shorter search runs (100 steps),
  3 search seeds, evaluation 1000 steps x 10 seeds (63 min measured on 2 cores shared with
  other jobs at load 15-22; results in NOTES.md).
- ``full``: the paper's protocol (GPU): budget 128, 32 MC samples, depth 10, lr grid of 10
  values 6e-4..1, search 100 steps batch 128, evaluation 1000 steps x 10 seeds, mean training
  loss; 5 search seeds; transfer to ReLU / 2-layer / width-40 MNISTNet, SST-2 and a CIFAR-10
  ConvNet.

Hardware: ``small`` any CPU; ``full`` one GPU (every candidate's lr grid x seeds is one vmapped
program; the interpreter compiles once per shape). Target: the best rule's mean training loss
below tuned Adam's on MNISTNet (evaluation protocol), and MCTS's best search score below random
search's at the same budget over several search seeds.
"""

import ml_collections

from robustml_jax.core import configs
from robustml_jax.optsearch import BASELINES, SPACES, TASKS

VARIANTS = {
    "smoke": {
        # search and evaluation protocols share their shapes so that the tests compile each
        # trainer once (evaluators are cached by shape)
        "budget": 6,
        "num_mc_samples": 3,
        "max_depth": 6,
        "num_lrs": 3,
        "search_steps": 10,
        "search_batch": 32,
        "search_train_seeds": 2,
        "num_search_runs": 2,
        "eval_steps": 10,
        "eval_seeds": 2,
        "eval_batch": 32,
        "top_n": 2,
        "transfer_tasks": ("mnistnet_relu",),
        "transfer_steps": 10,
        "transfer_seeds": 2,
        "baselines": ("adam",),
        "progress": False,
    },
    "small": {},
    "cpu_budget128": {
        "budget": 128,
        "num_mc_samples": 32,
        "num_lrs": 10,
        "lr_min": 6e-4,
        "search_steps": 100,
        "search_batch": 128,
        "num_search_runs": 3,
        "eval_steps": 1000,
        "eval_seeds": 10,
        "top_n": 5,
        "transfer_steps": 500,
        "transfer_seeds": 5,
    },
    "full": {
        "budget": 128,
        "num_mc_samples": 32,
        "num_lrs": 10,
        "lr_min": 6e-4,
        "search_steps": 100,
        "search_batch": 128,
        "num_search_runs": 5,
        "eval_steps": 1000,
        "eval_seeds": 10,
        "top_n": 10,
        "transfer_tasks": (
            "mnistnet_relu",
            "mnistnet_2layer",
            "mnistnet_wide",
            "text",
            "conv",
        ),
        "transfer_steps": 1000,
        "transfer_baselines": ("adam", "sgd_momentum", "rmsprop", "addsign", "powsign"),
        "transfer_seeds": 10,
        "conv_examples": 0,
    },
}


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
    """The documented default is ``small``; the other variants override a few fields."""
    c = configs.base()
    c.task = "mnistnet"
    c.space = "gnn_v1"  # the official MNISTNet script's space (mc-mnistnet.sh: dsl gnn-v1)
    # search (ENOS: budget 128, 32 MC samples, depth 10, bound 15, score clipping)
    c.budget = 32
    c.num_mc_samples = 8
    c.max_depth = 10
    c.bound = 15.0
    c.max_sampled_factor = 3.5
    c.num_search_runs = 3  # search seeds per method (MCTS and random search)
    # the learning-rate grid every candidate and baseline is tuned on (log-spaced)
    c.lr_min = 1e-3
    c.lr_max = 1.0
    c.num_lrs = 6
    # one candidate's evaluation during the search (ENOS: 100 steps, batch 128, 1 seed)
    c.search_steps = 60
    c.search_batch = 128
    c.search_train_seeds = 1
    # the evaluation protocol of the best rules and the baselines (ENOS: 1000 steps, 10 seeds)
    c.eval_steps = 300
    c.eval_seeds = 5
    c.eval_batch = 128
    c.top_n = 3  # best distinct MCTS rules evaluated with the evaluation protocol
    c.baselines = ("adam", "sgd_momentum", "rmsprop", "addsign", "powsign")
    # transfer of the best rule (and the baselines) to other tasks
    c.transfer_tasks = ("mnistnet_relu", "mnistnet_2layer", "mnistnet_wide", "text")
    c.transfer_baselines = ("adam",)  # every baseline costs one compilation per task
    c.transfer_steps = 200
    c.transfer_seeds = 3
    c.text_vocab = 2048
    c.text_examples = 8000
    c.conv_examples = 5000
    c.conv_width = 16
    c.lift = "vmap"
    return configs.variant(c, arg, VARIANTS)


def validate(c: ml_collections.ConfigDict) -> None:
    positive = ("budget", "num_mc_samples", "max_depth", "num_search_runs", "num_lrs")
    positive += ("search_steps", "search_batch", "search_train_seeds", "eval_steps")
    positive += ("eval_seeds", "eval_batch", "top_n", "transfer_steps", "transfer_seeds")
    for name in positive:
        configs.check(c, name, lambda v: int(v) == v and v > 0, "a positive integer")
    configs.check(c, "task", lambda v: v in TASKS and v != "text", f"one of {TASKS[:5]}")
    configs.check(c, "space", lambda v: v in SPACES, f"one of {tuple(SPACES)}")
    configs.check(c, "lr_min", lambda v: 0 < v <= c.lr_max, "in (0, lr_max]")
    configs.check(c, "transfer_tasks", lambda v: all(t in TASKS for t in v), f"names in {TASKS}")
    for name in ("baselines", "transfer_baselines"):
        configs.check(
            c, name, lambda v: all(b in BASELINES for b in v), f"names in {tuple(BASELINES)}"
        )
    configs.check(c, "bound", lambda v: v > 0, "positive")
    configs.check(c, "lift", lambda v: v in ("vmap", "map"), "'vmap' or 'map'")
