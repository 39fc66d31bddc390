"""ProMoT (paper 5): prompt tuning, then model tuning with the soft prompt attached.

Launch (CPU, ``small``; needs the cached pre-trained model, else pre-trains a short one)::

    python -m experiments.promot.main \
      --config=experiments/promot/configs/default.py:small --workdir=/tmp/promot

Variants:
- ``smoke``: the tests' end-to-end run on the shipped tiny t5x checkpoint (T5.1.1 2+2 layers,
  emb 4, trained 3 steps: a format fixture, not a language model) with T5's vocabulary.
- ``small`` (measured Dec 2: about 9 min wall on the idle 2 cores (4 min 44 s for finetune /
  ProMoT x 3 seeds and one seed of the rest, 3 min 52 s for the other seeds), after the cached
  pre-training ``python -m experiments.promot.pretrain --steps=3000``, 17 min once): the CPU
  reproduction: a small T5 (emb 128, 2+2 layers, vocab 4096) pre-trained from scratch here
  (span corruption + sentiment episodes with the canonical words negative / positive or
  random label words + string tasks; cached under ``pretrain_dir``), fine-tuned on GLUE RTE
  with every method over 3 seeds; accuracy on held-out tasks (MR,
  Blitzer electronics / kitchen sentiment, the ``first_word`` string task) at 0 and 1 shot
  before and after. Target metric: the True/False share of held-out answers and the held-out
  accuracy after RTE, ProMoT vs vanilla fine-tuning (paired by seed).
- ``full``: the paper's protocol on an mT5 t5x checkpoint (``checkpoint`` and ``vocab`` must
  point to e.g. mT5-XXL and its SentencePiece model): prompt length 100, Adafactor lr 0.2 for
  5000 prompt steps, lr 1e-3 for 1000 model steps, dropout 0.1, label smoothing 0.1, batch 64,
  evaluation every 100 steps with keep-best. Needs accelerators with enough memory for the
  model (the shared trainer replicates parameters over a data mesh; XXL needs model sharding,
  which this config does not set up).
"""

import ml_collections

from robustml_jax.core import configs
from robustml_jax.promot import METHODS

VARIANTS = {
    "smoke": {
        "model_source": "t5x",
        "checkpoint": "t5x_tiny_checkpoint/test_t5_1_1_tiny/checkpoint_3",
        "vocab": "t5x_tiny_checkpoint/t5_vocab",
        "preset": "t5_1_1_tiny",
        "methods": ("finetune", "promot"),
        "seeds": (0,),
        "single_seed_methods": (),
        "prompt_length": 3,
        "prompt_steps": 2,
        "model_steps": 2,
        "eval_every": 2,
        "batch_size": 4,
        "num_train": 16,
        "num_dev": 4,
        "num_heldout": 2,
        "shots": (1,),
        "max_input_len": 96,
        "grad_batch": 2,
        "progress": False,
        "compilation_cache": "",
    },
    "small": {},
    "full": {
        "model_source": "t5x",
        "checkpoint": "",
        "vocab": "",
        "preset": "mt5_xxl",
        "methods": METHODS,
        "seeds": (0,),
        "single_seed_methods": (),
        "prompt_length": 100,
        "prompt_steps": 5000,
        "model_steps": 1000,
        "eval_every": 100,
        "batch_size": 64,
        "num_train": 0,
        "num_dev": 0,
        "num_heldout": 500,
        "shots": (1,),  # the paper's 1-shot normalised average
        "max_input_len": 512,
        "dropout": 0.1,
        "grad_batch": 64,
    },
}


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
    """The documented default is ``small``; the other variants override a few fields."""
    c = configs.base()
    # model: 'pretrain' = the cached from-scratch small T5 (pre-trained if absent);
    # 't5x' = a t5x checkpoint (paths relative to the data dir or absolute) with its vocab.
    c.model_source = "pretrain"
    c.checkpoint = ""
    c.vocab = ""
    c.preset = ""
    c.pretrain_dir = ""  # '' = <cache dir>/promot/<promot.PRETRAIN_CACHE_NAME>
    # pre-training steps when no cached model exists: 3000 = the recorded model (recipe v6,
    # batch 32, ~17 min on 2 cores, the same as `python -m experiments.promot.pretrain`)
    c.pretrain_steps_if_missing = 3000
    # every method but multitask_finetune, the main comparison first
    c.methods = (
        "finetune",
        "promot",
        "prompt_tuning",
        "promot_1shot",
        "joint",
        "fixed_random_prompt",
        "multitask_promot",
    )
    c.seeds = (0, 1, 2)
    # methods run with the first seed only (the CPU budget); () = every method on every seed.
    # prompt_tuning leaves the model unchanged (its held-out answers are the pre-trained ones).
    c.single_seed_methods = ("prompt_tuning",)
    # fine-tuning (paper: P 100, prompt lr 0.2, model lr 1e-3, 5000 / 1000 steps, batch 64)
    c.prompt_length = 20
    c.prompt_init = "vocab"
    c.prompt_lr = 0.2
    c.model_lr = 1e-3
    c.prompt_steps = 30
    c.model_steps = 80
    c.eval_every = 20
    c.batch_size = 16
    c.label_smoothing = 0.1
    c.dropout = 0.1
    c.num_train = 0  # RTE training rows (0 = all 2,490)
    c.num_dev = 128  # RTE dev rows (0 = all 277)
    # in-context evaluation on held-out tasks
    c.num_heldout = 64  # queries per held-out task (sentiment: half of each class)
    # demonstrations per held-out query; several counts = every held-out task once per count
    # (named <task>_<k>shot). 0: the small pre-trained model's skill is answering in a known
    # format without demonstrations; 1: the paper's 1-shot normalised average.
    c.shots = (0, 1)
    c.max_input_len = 128
    c.max_target_len = 8
    c.grad_batch = 16  # RTE rows for the full / format gradient cosines
    # JAX's persistent compilation cache for this run's process ('' = off, 'auto' = <cache
    # dir>/jax_promot): identical stage programs (another seed, ProMoT+1-shot) then load instead
    # of recompiling. Off in `smoke`: it is process-global, and tests share one process.
    c.compilation_cache = "auto"
    return configs.variant(c, arg, VARIANTS)


def validate(c: ml_collections.ConfigDict) -> None:
    for name in ("prompt_length", "batch_size", "max_input_len", "max_target_len", "eval_every"):
        configs.check(c, name, lambda v: int(v) == v and v > 0, "a positive integer")
    for name in ("prompt_steps", "model_steps", "num_train", "num_dev", "num_heldout"):
        configs.check(c, name, lambda v: int(v) == v and v >= 0, "a non-negative integer")
    configs.check(
        c,
        "shots",
        lambda v: len(v) > 0 and len(set(v)) == len(v) and all(int(k) == k and k >= 0 for k in v),
        "a non-empty tuple of distinct non-negative integers, e.g. (0, 1)",
    )
    configs.check(c, "methods", lambda v: set(v) <= set(METHODS) and v, f"a subset of {METHODS}")
    configs.check(c, "model_source", lambda v: v in ("pretrain", "t5x"), "'pretrain' or 't5x'")
    configs.check(
        c,
        "prompt_init",
        lambda v: v in ("vocab", "class_labels", "uniform"),
        "'vocab', 'class_labels' or 'uniform'",
    )
    configs.check(
        c,
        "prompt_length",
        lambda v: v < c.max_input_len,
        f"smaller than max_input_len={c.max_input_len} (the prompt is part of it)",
    )
    if c.model_source == "t5x":
        configs.check(c, "checkpoint", bool, "a t5x checkpoint directory for model_source='t5x'")
        configs.check(c, "vocab", bool, "a SentencePiece model for model_source='t5x'")
