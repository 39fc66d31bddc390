"""Paper 8: watermarking all-MiniLM-L6-v2 with multi-task backdoors, and extracting it.

Launch (CPU)::

    python -m experiments.watermark.main \
      --config=experiments/watermark/configs/default.py:small --workdir=/tmp/watermark

Variants:
- ``smoke``: the tests' end-to-end run on a tiny random BERT (2 layers, H = 32) with MiniLM's
  tokenizer and tiny data subsets (seconds plus compilation).
- ``small``: the suite's CPU report: real MiniLM-L6, T = 24 tokens, proxy tasks SST-2 + BBC
  news (2,000 + 1,781 texts), 240 watermarking steps; downstream MR (480 train, 2 epochs),
  6 clean reference seeds, 2 seeds fine-tuned from the unwatermarked multi-task reference
  encoder, 2 watermarked seeds (rare words), 1 (common-word combinations), every removal
  attempt once.
- ``cpu_table``: the table: downstream MR, Blitzer electronics and RTE with ``small``'s
  watermark (240 steps) and the Embedding Poisoning variant; per task 6 clean and 2 reference
  seeds, 3 rare-word, 2 common-word and 2 Embedding Poisoning seeds (1 each on RTE,
  ``task_overrides``), every removal attempt once (~40 CPU-s per suspect, 58 suspects).
- ``full``: GPU scale: T = 64, longer watermarking, 5 downstream tasks, 8 clean seeds.

The protocol is written down in ``experiments/watermark/NOTES.md``.
"""

import re

import ml_collections

from robustml_jax.core import configs

WM_VARIANTS = ("rare_multitask", "common_multitask", "rare_embedding_poisoning")
ATTACKS = ("longer", "high_lr", "reinit_top", "prune", "trigger_data")
TASKS = ("mr", "blitzer_books", "blitzer_dvd", "blitzer_electronics", "blitzer_kitchen", "rte")
PROXY = ("sst2", "bbc_news")

VARIANTS = {
    "smoke": {
        "model": "tiny",
        "max_len": 16,
        "proxy_size": 64,
        "wm_steps": 4,
        "wm_batch": 2,
        "wm_variants": ("rare_multitask", "rare_embedding_poisoning"),
        "tasks": ("mr",),
        "ft_train": 32,
        "ft_test": 16,
        "ft_steps": 4,
        "ft_batch": 8,
        "clean_seeds": 2,
        "reference_seeds": 0,
        "wm_seeds": 1,
        "attacks": ("longer", "prune"),
        "longer_factor": 2,
        "probe_size": 16,
        "curve_every": 2,
        "curve_probe": 8,
        "progress": False,
    },
    "small": {},
    "cpu_table": {
        # small's settings (240-step watermark, T = 24, 480 texts x 2 epochs) on three tasks;
        # the encoders are watermarked once and shared by every task's suspects
        "wm_variants": WM_VARIANTS,
        "tasks": ("mr", "blitzer_electronics", "rte"),
        "clean_seeds": 6,
        "wm_seeds": 3,
        "other_wm_seeds": 2,
        # RTE (chance-level accuracy at T = 24) gets one common-word and one Embedding Poisoning
        # seed; everything else as above on all three tasks (~40 CPU-s per suspect)
        "task_overrides": {
            "rte": {"other_wm_seeds": 1},
        },
    },
    "full": {
        "max_len": 64,
        "proxy_size": 8000,
        "wm_steps": 2000,
        "wm_batch": 16,
        "wm_variants": WM_VARIANTS,
        "tasks": ("mr", "blitzer_books", "blitzer_electronics", "blitzer_kitchen", "rte"),
        "ft_train": 4000,
        "ft_test": 1000,
        "ft_steps": 375,
        "ft_batch": 32,
        "clean_seeds": 8,
        "wm_seeds": 3,
        "other_wm_seeds": 3,
        "removal_seeds": 3,
        "probe_size": 600,
    },
}


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
    """The documented default is ``small``; the other variants override a few fields."""
    c = configs.base()
    c.model = "minilm"  # or "tiny": a random 2-layer BERT with MiniLM's tokenizer (tests)
    c.max_len = 24  # word pieces per text incl. [CLS]/[SEP]
    # owner: proxy tasks, triggers, watermarking
    c.proxy_tasks = PROXY
    c.proxy_size = 2000  # examples per proxy task (BBC news has 1,781 train articles)
    c.rare_triggers = ("cf", "mn", "bb")
    c.common_triggers = ("window coffee", "river piano")
    c.wm_variants = ("rare_multitask", "common_multitask")
    # 240, not 80: at 80 steps single rare-word triggers fell to 54-72% WESR after downstream
    # fine-tuning (the target representation had not collapsed yet); paired ablation in NOTES.md.
    c.wm_steps = 240
    c.wm_batch = 4  # clean and triggered examples per proxy task per step
    c.wm_lr = 1e-4
    c.emb_lr = 1e-2
    c.head_lr = 1e-3
    c.rep_weight = 1.0
    c.target_scale = 1.0  # norm of the forced representations / clean mean norm
    c.max_position = 8  # triggers are inserted within the first 8 words
    # suspect: downstream fine-tuning (ordinary hyper-parameters) and removal attempts
    c.tasks = ("mr",)
    c.ft_train = 480
    c.ft_test = 400
    c.ft_steps = 60  # 2 epochs of 480 at batch 16
    c.ft_batch = 16
    c.ft_lr = 5e-5
    c.clean_seeds = 6  # the valid test is a t tail with clean_seeds - 1 d.o.f.
    c.reference_seeds = 2  # suspects from the multi-task encoder trained without triggers
    c.wm_seeds = 2  # seeds of the main variant (the first of wm_variants)
    c.other_wm_seeds = 1
    c.attacks = ATTACKS
    c.removal_seeds = 1
    # {task: {field: value}} overriding the five *_seeds fields and ``attacks`` for one task,
    # and ``variants`` (the watermark variants fine-tuned on that task; default wm_variants)
    c.task_overrides = ml_collections.ConfigDict()
    c.longer_factor = 2
    c.high_lr = 2e-4
    c.prune_fraction = 0.3
    c.trigger_data_fraction = 0.1
    # "" = the whole plan; else a regex on item names (``<task>__<encoder>__<attack>__s<seed>``):
    # an extra worker computes only those items (no summary), e.g. into a symlinked items folder
    c.only_items = ""
    # extraction
    c.probe_size = 200  # owner's probe texts per task (half calibrates c*, half measures)
    c.curve_every = 20
    c.curve_probe = 100
    c.alpha = 1e-3
    return configs.variant(c, arg, VARIANTS)


def validate(c: ml_collections.ConfigDict) -> None:
    positive = ("max_len", "proxy_size", "wm_steps", "wm_batch", "ft_train", "ft_test")
    positive += ("ft_steps", "ft_batch", "clean_seeds", "wm_seeds", "other_wm_seeds")
    positive += ("removal_seeds", "longer_factor", "probe_size", "curve_every", "curve_probe")
    for name in positive:
        configs.check(c, name, lambda v: int(v) == v and v > 0, "a positive integer")
    configs.check(c, "reference_seeds", lambda v: int(v) == v and v >= 0, "an integer >= 0")
    configs.check(c, "model", lambda v: v in ("minilm", "tiny"), "'minilm' or 'tiny'")
    configs.check(c, "max_len", lambda v: v >= 8, ">= 8")
    configs.check(c, "clean_seeds", lambda v: v >= 2, ">= 2 (the test needs a spread)")
    configs.check(c, "probe_size", lambda v: v >= 4, ">= 4")
    configs.check(c, "ft_batch", lambda v: v <= c.ft_train, "<= ft_train")
    configs.check(
        c,
        "wm_variants",
        lambda v: len(v) > 0 and set(v) <= set(WM_VARIANTS),
        f"a non-empty subset of {WM_VARIANTS}",
    )
    configs.check(c, "attacks", lambda v: set(v) <= set(ATTACKS), f"a subset of {ATTACKS}")
    configs.check(
        c, "tasks", lambda v: len(v) > 0 and set(v) <= set(TASKS), f"a non-empty subset of {TASKS}"
    )
    configs.check(
        c,
        "proxy_tasks",
        lambda v: len(v) > 0 and set(v) <= set(PROXY),
        f"a non-empty subset of {PROXY}",
    )
    configs.check(
        c, "tasks", lambda v: not set(v) & set(c.proxy_tasks), "disjoint from proxy_tasks"
    )
    for name in ("wm_lr", "emb_lr", "head_lr", "ft_lr", "high_lr", "target_scale"):
        configs.check(c, name, lambda v: v > 0, "positive")
    fields = {"clean_seeds", "reference_seeds", "wm_seeds", "other_wm_seeds", "removal_seeds"}
    for task, over in c.task_overrides.items():
        ok = lambda v, t=task: t in c.tasks
        configs.check(c, "task_overrides", ok, f"keyed by the config's tasks, not {task!r}")
        configs.check(
            c,
            f"task_overrides.{task}",
            lambda v: set(v) <= fields | {"attacks", "variants"},
            f"a subset of {sorted(fields | {'attacks', 'variants'})}",
        )
        for k in over:
            low = {"clean_seeds": 2, "wm_seeds": 1}.get(k, 0)
            if k == "attacks":
                ok, what = (lambda v: set(v) <= set(ATTACKS)), f"a subset of {ATTACKS}"
            elif k == "variants":
                ok = lambda v: c.wm_variants[0] in v and set(v) <= set(c.wm_variants)
                what = f"a subset of wm_variants holding {c.wm_variants[0]!r}"
            else:
                ok, what = (lambda v, low=low: int(v) == v and v >= low), f"an integer >= {low}"
            configs.check(c, f"task_overrides.{task}.{k}", ok, what)
    configs.check(c, "only_items", lambda v: re.compile(v) is not None, "a regular expression")
    configs.check(c, "prune_fraction", lambda v: 0 <= v < 1, "in [0, 1)")
    configs.check(c, "trigger_data_fraction", lambda v: 0 < v <= 1, "in (0, 1]")
    configs.check(c, "alpha", lambda v: 0 < v < 1, "in (0, 1)")
