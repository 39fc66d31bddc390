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
    more = {(g, a): n for g, a, _, n in c.more_games}
    for key, r in res["attack"].items():  # "game|placement|attack|sims"
        g, _, a, _ = key.split("|")[:4]
        assert r["games"] == more.get((g, a), c.num_attack_games), key
    for r in res["attack"].values():
        assert r["success_2"] >= r["success_1"]  # two stones include the one-stone pass
        # every found example is re-checked by both the noise check and the stronger examiner
        assert len(r["strong_rates"]) == len(r["reverify_rates"])
        assert all(0.0 <= x <= 1.0 for x in r["strong_rates"])
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
    c = get_config("small")
    c.more_games = (("nogo", "value", 0.3, 2),)  # fewer than num_attack_games
    with pytest.raises(configs.ConfigError, match="more_games"):
        validate(c)
    c = get_config("small")
    c.strong_examiner_sims = c.examiner_sims  # not stronger
    with pytest.raises(configs.ConfigError, match="strong_examiner_sims"):
        validate(c)


def test_attack_settings_order_and_extra_targets():
    from experiments.go_attack.train import attack_settings

    c = get_config("small")
    c.target_sims = (0, 5)
    c.attacks = ("policy", "value")
    c.placements = ("appended",)
    c.eta_adv_extra = (0.3,)
    c.extra_targets = (("nogo", "value", 10), ("nogo", "value", 5), ("go", "value", 50))
    base = [
        (s, e, "appended", a) for s in (0, 5) for e in (c.eta_adv, 0.3) for a in ("policy", "value")
    ]
    # Go: the NoGo-only extras are skipped, its own (go, value, 50) column comes last
    assert list(attack_settings(c, "go")) == base + [
        (50, e, "appended", "value") for e in (c.eta_adv, 0.3)
    ]
    # NoGo: MCTS-10 value column appended; (nogo, value, 5) is already a main target
    assert list(attack_settings(c, "nogo")) == base + [
        (10, e, "appended", "value") for e in (c.eta_adv, 0.3)
    ]
    c.attacks = ("policy",)  # an extra target whose attack is not run is dropped
    assert all(a == "policy" for *_, a in attack_settings(c, "nogo"))


def test_shape_text_counts_falls_and_rises():
    def cell(s1, s2):
        return {"success_1": s1, "success_2": s2}

    attack = {
        "nogo|appended|value|0": cell(0.5, 0.6),
        "nogo|appended|value|50": cell(0.1, 0.2),  # falls with search
        "nogo|inserted|value|0": cell(0.1, 0.1),
        "nogo|inserted|value|50": cell(0.5, 0.8),  # rises with search
        "go|appended|policy|0": cell(0.0, 0.0),
        "go|appended|policy|5": cell(0.0, 0.0),  # flat
    }
    text = report.shape_text(attack)
    assert "in 1 of 3 settings and lower in 1" in text
    assert "in every setting" in text
    attack["go|appended|policy|5"] = cell(0.3, 0.1)  # two stones below one: reported
    assert "not every" in report.shape_text(attack)
