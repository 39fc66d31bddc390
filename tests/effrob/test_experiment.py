"""End to end: the report (which runs the main's train_and_evaluate) on the smoke config,
resume without retraining, and the CSV path of the CLI."""

import json
import pathlib

import numpy as np
import pytest

from experiments.effrob import report, train
from experiments.effrob.configs.default import get_config
from robustml_jax.core import experiment


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("effrob_report")
    return workdir, report.run(workdir, "smoke")


def test_report_smoke(smoke_report):
    workdir, rep = smoke_report
    res = json.loads((workdir / "results.json").read_text())
    assert set(res) >= {"openclip", "cifar10_1", "zoo"}
    assert res["openclip"]["num_models"] >= 100
    assert res["cifar10_1"]["num_models"] == 30
    zoo = res["zoo"]
    assert zoo["groups"] == {"books": 4, "kitchen": 4, "books+kitchen": 4}
    assert set(zoo["claim"]) == {"dvd", "electronics", "sst2"}
    for fits in zoo["fits"].values():
        assert set(fits) == {"single:books", "single:kitchen", "multi:books+kitchen"}
        assert fits["multi:books+kitchen"]["r2"] >= fits["single:books"]["r2"] - 1e-6
    assert rep.rows and rep.summary
    for p in rep.plots:
        assert (workdir / p).is_file(), p
    # CIFAR-10.1 fit on real predictions: every published model is within a few points.
    v6 = res["cifar10_1"]["fits"]["CIFAR-10.1 v6"]["single:CIFAR-10"]
    assert v6["r2"] > 0.9 and v6["mae_pp"] < 2.0


def test_main_resumes_without_retraining(smoke_report):
    workdir, _ = smoke_report
    snaps = sorted((workdir / "zoo" / "train" / "linear").glob("snapshot_*.npz"))
    before = {p: p.stat().st_mtime_ns for p in snaps}
    config = get_config("smoke")
    config.tasks = "zoo"
    res = experiment.run(train.train_and_evaluate, config, workdir)
    assert {p: p.stat().st_mtime_ns for p in snaps} == before
    old = json.loads((workdir / "zoo" / "zoo_fits.json").read_text())
    assert res["zoo"]["fits"]["dvd"]["single:books"]["r2"] == pytest.approx(
        old["fits"]["dvd"]["single:books"]["r2"]
    )
    # Snapshot files lost after training moved on (the last one: killed before it was written;
    # an earlier one: deleted) are rebuilt from the checkpoint at exactly their step.
    by_step = sorted(snaps, key=lambda p: int(p.stem.split("_")[1]))
    for snap in (by_step[-1], by_step[0]):
        lost = dict(np.load(snap))
        snap.unlink()
        experiment.run(train.train_and_evaluate, config, workdir)
        for name, arr in np.load(snap).items():
            np.testing.assert_array_equal(arr, lost[name])


def test_csv_task_reads_the_zoo_table(smoke_report, tmp_path):
    workdir, _ = smoke_report
    config = get_config("smoke")
    config.tasks = "csv"
    config.num_bootstrap = 0
    config.csv.path = str(workdir / "zoo" / "accuracies.csv")
    config.csv.id_columns = "books,kitchen"
    config.csv.ood_columns = "dvd"
    config.csv.group_column = "group"
    config.csv.name_column = "model"
    res = experiment.run(train.train_and_evaluate, config, tmp_path)
    zoo = json.loads((workdir / "results.json").read_text())["zoo"]
    got = res["csv"]["fits"]["dvd"]["multi:books+kitchen"]
    assert got["r2"] == pytest.approx(zoo["fits"]["dvd"]["multi:books+kitchen"]["r2"], abs=1e-4)
    assert pathlib.Path(tmp_path / "csv" / "csv_dvd.png").is_file()
    config.csv.ood_columns = "nope"
    with pytest.raises(ValueError, match="missing column"):
        experiment.run(train.train_and_evaluate, config, tmp_path / "bad")


def test_unknown_config_and_task():
    with pytest.raises(ValueError, match="unknown config"):
        get_config("huge")
    config = get_config("smoke")
    config.tasks = "mnist"
    with pytest.raises(ValueError, match="unknown task 'mnist'"):
        experiment.run(train.train_and_evaluate, config, "/tmp/effrob_unused")
