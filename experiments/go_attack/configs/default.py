"""GoAttack (paper 3): AlphaZero-like 7x7 Go / NoGo agents and the meaningless-stone attack.

Launch (CPU, ``small``)::

    python -m experiments.go_attack.main \
      --config=experiments/go_attack/configs/default.py:small --workdir=/tmp/go_attack

Variants:
- ``smoke``: the tests' end-to-end run (5x5 NoGo and Go, a few self-play iterations, 2 games).
- ``small`` (measured Dec 2: 42 min on the idle 2 cores from scratch, agents included): the
  suite's CPU report: 7x7 Go and NoGo agents (16 channels x 2 blocks) trained by
  self-play for at most ``train_time_budget_s`` each, or loaded from ``workdir/agents/<game>``
  when a finished checkpoint is there (``trained.json``); strength vs random (and GNU Go for
  Go); the attack on ``num_attack_games`` self-play games per game, targets PV-NN and MCTS
  1/5/25 (plus 10/50 for the NoGo value attack), policy and value attacks, 1 and 2 stones,
  both placements.
- ``full``: 9x9 agents (GPU), longer training, examiner 800 simulations, 50 games.
The longer CPU training used for NOTES.md: ``python -m experiments.go_attack.train_agent``.
"""

import ml_collections

from robustml_jax.core import configs

VARIANTS = {
    "smoke": {
        "size": 5,
        "channels": 8,
        "blocks": 1,
        "train_iterations": 2,
        "train_games": 8,
        "train_max_steps": 8,
        "train_simulations": 2,
        "train_batch": 32,
        "train_epochs": 1,
        "train_time_budget_s": 0.0,
        "eval_games": 16,
        "gnugo_games": 0,
        "num_attack_games": 2,
        "examiner_sims": 4,
        "target_sims": (0, 2),
        "eta_adv": 0.3,
        "max_pairs": 16,
        "max_verify": 4,
        "reduction_games": 1,
        "extra_targets": (),
        "more_games": (("nogo", "value", 0.3, 3),),  # one extra game: exercises the path
        "reverify_repeats": 4,
        "strong_examiner_sims": 8,
        "strong_examiner_repeats": 2,
        "progress": False,
    },
    "small": {},
    "full": {
        "size": 9,
        "channels": 64,
        "blocks": 6,
        "history_length": 8,
        "go_max_moves": 0,
        "train_iterations": 2000,
        "train_games": 512,
        "train_max_steps": 96,
        "train_simulations": 64,
        "train_time_budget_s": 4 * 3600.0,
        "eval_games": 1000,
        "gnugo_games": 50,
        "num_attack_games": 50,
        "examiner_sims": 800,
        "target_sims": (0, 1, 5, 10, 25, 50),
        "extra_targets": (),
        "more_games": (),
        "reduction_games": 5,
        "reduction_for": ("go", "nogo"),
        "strong_examiner_sims": 3200,
        "strong_examiner_repeats": 4,
    },
}


def get_config(arg: str = "small") -> ml_collections.ConfigDict:
    c = configs.base()
    c.games = ("go", "nogo")
    c.size = 7
    c.channels = 16
    c.blocks = 2
    c.history_length = 2
    c.komi = 7.5
    c.go_max_moves = 60
    c.pooled_heads = ("nogo",)  # games whose PVNet has the pooled heads (NOTES.md)
    # self-play training (AlphaZero with Gumbel MuZero search)
    c.train_iterations = 400
    c.train_games = 32
    c.train_max_steps = 60
    c.train_simulations = 8
    c.train_time_budget_s = 300.0
    c.train_epochs = 2
    c.train_batch = 128
    c.learning_rate = 1e-3
    # strength
    c.eval_games = 200
    c.eval_simulations = 16
    c.gnugo_games = 10
    c.gnugo_level = 1
    # attack
    c.num_attack_games = 3
    c.selfplay_simulations = 16
    c.examiner_sims = 64
    c.target_sims = (0, 25, 5, 1)  # every game and attack
    # MCTS 10 and 50 only where anything succeeded (NoGo value attack; NOTES.md): (game, attack,
    # sims) triples, both placements and every eta_adv; Go and policy cells were 0 at MCTS 1-25
    c.extra_targets = (("nogo", "value", 10), ("nogo", "value", 50))
    c.attacks = ("policy", "value")
    c.placements = ("appended", "inserted")
    # (game, attack, eta_adv, games): cells (every target, both placements) measured on more
    # self-play games than num_attack_games; the NoGo value attack at eta 0.3 is the only one
    # with successes, and 3 games gave intervals ~0.5 wide
    c.more_games = (("nogo", "value", 0.3, 10),)
    # each verified example re-checked under this many fresh examiner searches (attack.reverify;
    # 0 = off): the share of draws on which the success criterion still holds
    c.reverify_repeats = 16
    # every found example re-checked by a stronger search of the same network (0 = off):
    # the share of `strong_examiner_repeats` fresh searches on which the criterion holds
    c.strong_examiner_sims = 512
    c.strong_examiner_repeats = 8
    c.eta_adv = 0.5
    c.eta_eq = 0.1
    c.eta_correct = 0.2
    c.max_pairs = 32
    c.max_verify = 8
    c.min_ply = 4
    # The Go ownership head is not calibrated to +-1: over 3 self-play games, 6 of 3569 empty
    # points have |own| > 0.8 (the paper's threshold), so no candidate survived; 0.5 keeps ~13%.
    c.own_threshold = 0.5
    # Win-rate stretch about 1/2 per game (``Attacker(value_scale=)``, NOTES.md): the NoGo
    # value is compressed (the examiner's V lies in [0.3, 0.7] on most natural states), so the
    # paper's eta_adv = 0.5 asked for a drop no examiner value can show.
    c.value_scale = "go:1,nogo:2.5"
    # a second, lower eta_adv (the paper sets it per run: 0.5-0.9): with a same-network examiner
    # no target move was rated 0.5 worse (NOTES.md); items and keys get an "_eta0.3" tag
    c.eta_adv_extra = (0.3,)
    # measured where successes exist (NoGo value attack at eta 0.3, PV-NN); Go had none there
    c.reduction_for = ("nogo",)
    c.reduction_setting = (
        ("attack", "value"),
        ("target_sims", 0),
        ("placement", "appended"),
        ("eta_adv", 0.3),
    )
    c.reduction_games = 3
    c.gallery_max = 8
    c.progress = True
    return configs.variant(c, arg, VARIANTS)


def validate(c: ml_collections.ConfigDict) -> None:
    for name in ("size", "channels", "blocks", "history_length", "train_games", "eval_games"):
        configs.check(c, name, lambda v: int(v) == v and v > 0, "a positive integer")
    configs.check(c, "games", lambda v: all(g in ("go", "nogo") for g in v), "'go'/'nogo' names")
    configs.check(c, "size", lambda v: 5 <= v <= 19, "in [5, 19]")
    configs.check(c, "target_sims", lambda v: all(int(s) >= 0 for s in v), "sims >= 0")
    configs.check(c, "eta_adv", lambda v: 0 < v < 1, "in (0, 1)")
    configs.check(c, "attacks", lambda v: all(a in ("policy", "value") for a in v), "policy/value")
    configs.check(
        c, "placements", lambda v: all(p in ("appended", "inserted") for p in v), "placements"
    )
    configs.check(
        c,
        "strong_examiner_sims",
        lambda v: v == 0 or (int(v) == v and v > c.examiner_sims),
        f"0 (off) or an integer above examiner_sims={c.examiner_sims}",
    )
    configs.check(c, "strong_examiner_repeats", lambda v: int(v) == v and v >= 2, "an int >= 2")
    configs.check(
        c,
        "more_games",
        lambda v: all(
            len(t) == 4
            and t[0] in ("go", "nogo")
            and t[1] in ("policy", "value")
            and 0 < float(t[2]) < 1
            and int(t[3]) == t[3]
            and int(t[3]) >= c.num_attack_games
            for t in v
        ),
        f"(game, attack, eta_adv, games) tuples with games >= num_attack_games="
        f"{c.num_attack_games}",
    )
