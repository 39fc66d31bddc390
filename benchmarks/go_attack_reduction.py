"""GoAttack search-space reduction: examiner evaluations with the reduction vs brute force.

On the same natural states (the agent's self-play games, scanned from the end), one-stone
attacks run twice: ``reduced`` (ownership filter for Go, examiner-NN meaningless screen and the
cheap target screen before any examiner search, at most ``max_verify`` searched per state) and
``brute_force`` (every legal single stone of either colour gets the examiner's searches). Both
stop at the first verified success per game. Two-stone brute force (every ordered pair of empty
points) is too expensive to run on CPU; its count is computed (not run) from the states the
reduced two-stone attack scanned, and labelled so.

    python -m benchmarks.go_attack_reduction --agent_dir=/tmp/goattack_agents/go7 --games=2

Writes ``benchmarks/results/go_attack_reduction.json``. Without ``--agent_dir`` a randomly
initialised 5x5 NoGo agent is used (a plumbing check, not a measurement).
"""

from __future__ import annotations

import pathlib
import time

import jax
import numpy as np
from absl import app, flags

from robustml_jax.core.results import write_results
from robustml_jax.go_attack import agent, attack

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

_DIR = flags.DEFINE_string("agent_dir", "", "agent checkpoint folder (train_agent's workdir)")
_GAMES = flags.DEFINE_integer("games", 2, "self-play games attacked")
_EXAMINER = flags.DEFINE_integer("examiner_sims", 32, "examiner simulations")
_ETA = flags.DEFINE_float("eta_adv", 0.5, "eta_adv")
_OUT = flags.DEFINE_string("out", "go_attack_reduction.json", "file in benchmarks/results")
_SCALE = flags.DEFINE_float("value_scale", 1.0, "win-rate stretch (Attacker(value_scale=))")
_OWN = flags.DEFINE_float("own_threshold", 0.8, "ownership filter threshold (Go)")
_ATTACKS = flags.DEFINE_list("attacks", ["value", "policy"], "attack types")


def main(argv):
    del argv
    if _DIR.value:
        spec, ts = agent.load_agent(_DIR.value)
        params = ts.params
    else:
        spec = agent.AgentSpec("nogo", 5, 2, 8, 1)
        init_fn, _ = agent.make_trainer(spec, num_games=1, max_steps=1, num_simulations=2)
        params = init_fn(jax.random.key(0)).params
    games = attack.selfplay_games(
        spec, params, jax.random.key(1), num_games=_GAMES.value, num_simulations=16
    )
    att = attack.Attacker(spec, params, examiner_sims=_EXAMINER.value, value_scale=_SCALE.value)
    out = {"spec": spec._asdict(), "games": _GAMES.value, "examiner_sims": _EXAMINER.value}
    for att_type in _ATTACKS.value:
        row = {}
        for mode in ("reduced", "brute_force"):
            cfg = attack.AttackConfig(
                attack=att_type,
                stones=1,
                eta_adv=_ETA.value,
                reduce=mode == "reduced",
                own_threshold=_OWN.value,
            )
            t0 = time.perf_counter()
            rs = [
                attack.attack_game(att, g, cfg, jax.random.key(10 + j)) for j, g in enumerate(games)
            ]
            row[mode] = {
                "examiner_mcts_evals": int(sum(r["mcts_evals"] for r in rs)),
                "examiner_nn_evals": int(sum(r["nn_evals"] for r in rs)),
                "successes": int(sum(r["success_1"] for r in rs)),
                "seconds": time.perf_counter() - t0,
            }
        row["factor"] = row["brute_force"]["examiner_mcts_evals"] / max(
            row["reduced"]["examiner_mcts_evals"], 1
        )
        # two stones, counted: brute force would search every ordered pair of empty points
        # (2 examiner searches each) on every state passing the preconditions
        cfg = attack.AttackConfig(
            attack=att_type, stones=2, eta_adv=_ETA.value, own_threshold=_OWN.value
        )
        rs = [attack.attack_game(att, g, cfg, jax.random.key(10 + j)) for j, g in enumerate(games)]
        red2 = int(sum(r["mcts_evals"] for r in rs))
        empties = [np.mean([(len(g) and spec.size**2 - k) for k in range(len(g))]) for g in games]
        pairs = sum(r["states_precond"] * e * (e - 1) * 2 for r, e in zip(rs, empties, strict=True))
        row["two_stones"] = {
            "reduced_run": red2,
            "brute_force_counted_not_run": int(pairs),
            "factor": pairs / max(red2, 1),
        }
        out[att_type] = row
        print(att_type, row)
    RESULTS.mkdir(exist_ok=True)
    write_results(RESULTS, out, name=_OUT.value)


if __name__ == "__main__":
    app.run(main)
