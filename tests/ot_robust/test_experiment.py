"""End-to-end: the smoke config through the report entry point, its results and plots, resuming
from the saved evaluations, and bad config values."""

import shutil

import pytest

from experiments.ot_robust import report
from experiments.ot_robust.configs.default import get_config, validate
from experiments.ot_robust.train import train_and_evaluate
from robustml_jax.core import configs, experiment
from tests.smoke import require_data, smoke_run_fixture

require_data("mnist_5k", "mnist_invariance")
smoke_run = smoke_run_fixture(report, "ot_robust")


def test_smoke_main_end_to_end(smoke_run):
    workdir, res, rep = smoke_run
    c = get_config("smoke")
    for p in res["plots"]:
        assert (workdir / p).read_bytes()[:4] == b"\x89PNG"
    assert set(res["table"]) == set(c.methods)
    for t in res["table"].values():
        for k in ("clean", "pgd@0.3", "apgd@0.3", "fgsm@0.3", "tramer_linf_eps03", "tramer_l0"):
            assert 0.0 <= t[k]["mean"] <= 1.0
            assert len(t[k]["per_seed"]) == c.num_seeds
    assert "ot_inv-pgd_at" in res["paired"]
    assert 0.0 <= res["inv_train_oracle_rate"] <= 1.0
    assert rep.rows and "claim" in rep.summary


def test_resume_reuses_saved_runs(smoke_run, tmp_path):
    """A killed run keeps its finished trainings and evaluations: re-running in a copy of the
    workdir trains nothing and reproduces the results."""
    workdir, res, _ = smoke_run
    for sub in ("arrays", "evals"):
        shutil.copytree(workdir / sub, tmp_path / sub)
    again = experiment.run(train_and_evaluate, get_config("smoke"), tmp_path)
    assert not (tmp_path / "runs").exists()  # nothing was retrained
    assert again["per_run"] == res["per_run"]


@pytest.mark.parametrize(
    "field,value", [("eps", -0.1), ("methods", ("mixup",)), ("num_seeds", 0), ("ot_epsilon", 0.0)]
)
def test_bad_config_values(field, value):
    c = get_config("smoke")
    c[field] = value
    with pytest.raises(configs.ConfigError, match=field):
        validate(c)
