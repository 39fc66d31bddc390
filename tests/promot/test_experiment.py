"""End-to-end: the smoke config (tiny t5x checkpoint) through the report entry point, its
results and plot, resuming from saved work items, bad checkpoints and config validation."""

import shutil

import pytest

from experiments.promot import report
from experiments.promot.configs.default import get_config, validate
from experiments.promot.train import load_model
from robustml_jax.core import configs, experiment
from tests.smoke import require_data, smoke_run_fixture

require_data("t5x_tiny_checkpoint", "rte", "sst2", "mr", "blitzer_books")
smoke_run = smoke_run_fixture(report, "promot")


# The experiment end to end costs ~100 s of CPU (compilations of the tiny model's stages,
# decoders and gradient probes); the notebook test (tests/test_colab.py) runs the same
# library path (finetune and ProMoT on the smoke config) in CI, so these two are slow.
@pytest.mark.slow
def test_smoke_end_to_end(smoke_run):
    workdir, res, rep = smoke_run
    c = get_config("smoke")
    assert (workdir / "specialisation.png").read_bytes()[:4] == b"\x89PNG"
    assert set(res["methods"]) == set(c.methods)
    for d in res["methods"].values():
        assert 0.0 <= d["rte_accuracy"]["mean"] <= 1.0
        assert 0.0 <= d["label_share"]["mean"] <= 1.0
    assert set(res["heldout_tasks"]) >= {"mr_sentiment", "first_word"}
    curve = res["finetune_curve_seed0"]
    assert [h["step"] for h in curve] == [0, c.model_steps]
    assert {"cos_mlp", "cos_query", "cos_key", "cos_value"} <= set(curve[0])
    assert rep.rows and "ProMoT" in rep.summary


@pytest.mark.slow
def test_resume_reuses_finished_runs(smoke_run, tmp_path):
    workdir, res, _ = smoke_run
    copy = tmp_path / "w"
    shutil.copytree(workdir, copy)
    (copy / "results.json").unlink()
    # Remove a run's training folders: a resumed experiment must not need them.
    shutil.rmtree(copy / "runs")
    res2 = experiment.run(report.train_and_evaluate, get_config("smoke"), copy)
    assert res2["methods"] == res["methods"]


def test_checkpoint_of_another_size_is_one_line():
    c = get_config("smoke")
    c.preset = "t5_1_1_small"
    with pytest.raises(ValueError, match=r"does not fit preset t5_1_1_small: .*parameter '"):
        load_model(c)


def test_validate_rejects_bad_configs():
    c = get_config("small")
    c.prompt_length = 200
    with pytest.raises(configs.ConfigError, match="prompt_length"):
        validate(c)
    c = get_config("small")
    c.methods = ("finetune", "lora")
    with pytest.raises(configs.ConfigError, match="methods"):
        validate(c)
    for bad in ((), (1, 1), (-1,)):
        c = get_config("small")
        c.shots = bad
        with pytest.raises(configs.ConfigError, match="shots"):
            validate(c)
    with pytest.raises(configs.ConfigError, match="unknown config"):
        get_config("medium")
