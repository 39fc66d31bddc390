"""End-to-end: the smoke config through the report entry point (which runs the main's
``experiment.run``), its results and plot, resuming from saved evaluations, and bad input."""

import shutil

import pytest

from experiments.optsearch import report
from experiments.optsearch.configs.default import get_config, validate
from experiments.optsearch.train import train_and_evaluate
from robustml_jax import optsearch
from robustml_jax.core import configs, experiment
from tests.smoke import require_data, smoke_run_fixture

require_data("mnist_5k")
smoke_run = smoke_run_fixture(report, "optsearch")


def test_smoke_main_end_to_end(smoke_run):
    workdir, res, rep = smoke_run
    c = get_config("smoke")
    assert (workdir / "search_curve.png").read_bytes()[:4] == b"\x89PNG"
    for m in ("mcts", "random"):
        assert len(res["search_curves"][m]) == c.num_search_runs
        assert all(0 < n <= c.budget for n in res["search"][m]["num_evaluations"])
        for text in res["search"][m]["best_rules"]:
            optsearch.parse_rule(text)  # every emitted rule parses back
    assert set(res["baselines"]) == set(c.baselines)
    for t in res["top_rules"]:
        assert optsearch.parse_rule(t["rule"]).formula == t["formula"]
        assert len(t["per_seed"]) == c.eval_seeds
    assert set(res["transfer"]) == set(c.transfer_tasks)
    assert res["throughput"]["evaluations_per_minute"] > 0
    assert rep.rows and "MCTS" in rep.summary


def test_resume_reuses_saved_evaluations(smoke_run, tmp_path):
    """A killed run keeps its finished evaluations: re-running replays the searches against
    them (no new evaluation) and reaches the same results."""
    workdir, res, _ = smoke_run
    shutil.copytree(workdir / "evaluations", tmp_path / "evaluations")
    c = get_config("smoke")
    c.transfer_tasks = ()
    again = experiment.run(train_and_evaluate, c, tmp_path)
    assert again["throughput"]["new_evaluations_this_run"] == 0
    assert again["search_curves"] == res["search_curves"]


def test_bad_config_values():
    c = get_config("smoke")
    c.task = "imagenet"
    with pytest.raises(configs.ConfigError, match="task"):
        validate(c)
    c = get_config("smoke")
    c.space = "nope"
    with pytest.raises(configs.ConfigError, match="space"):
        validate(c)
