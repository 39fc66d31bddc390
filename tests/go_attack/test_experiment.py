"""End-to-end: the smoke config through the report entry point, resume, and bad configs."""

import json

import pytest

from experiments.go_attack import report
from experiments.go_attack.configs.default import get_config, validate
from robustml_jax.core import configs


@pytest.mark.slow
def test_smoke_end_to_end_and_resume(tmp_path):
    rep = report.run(tmp_path, "smoke")
    res = json.loads((tmp_path / "results.json").read_text())
    c = get_config("smoke")
    assert set(res["strength"]) == set(c.games)
    assert (tmp_path / "success_rate.png").read_bytes()[:4] == b"\x89PNG"
    n_settings = len(c.games) * len(c.placements) * len(c.target_sims) * len(c.attacks)
    assert len(res["attack"]) == n_settings
    for r in res["attack"].values():
        assert r["success_2"] >= r["success_1"]  # two stones include the one-stone pass
    for g in res["reduction"].values():
        b, r = g["brute_force"], g["reduced"]
        if b["successes"] == r["successes"] == 0:  # with dense examples brute force can be cheaper
            assert b["examiner_mcts_evals"] >= r["examiner_mcts_evals"]
        for m in (b, r):  # the natural-state searches are accounted in both modes
            assert min(m["per_game_candidate_mcts_evals"]) >= 0
            assert (
                m["candidate_mcts_evals"] + m["natural_state_mcts_evals"]
                == m["examiner_mcts_evals"]
            )
    assert rep.rows
    # resume: everything is cached (agents, games, attack items) -> same results
    rep2 = report.run(tmp_path, "smoke")
    res2 = json.loads((tmp_path / "results.json").read_text())
    assert res2["attack"] == res["attack"] and len(rep2.rows) == len(rep.rows)


def test_configs_validate():
    for name in ("smoke", "small", "full"):
        validate(get_config(name))
    c = get_config("smoke")
    c.eta_adv = 1.5
    with pytest.raises(configs.ConfigError, match="eta_adv"):
        validate(c)
