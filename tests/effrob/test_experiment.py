"""End to end: the report (which runs the main's train_and_evaluate) on the smoke config,
resume without retraining, held-out fit quality on the smoke zoo, and the CSV path of the CLI.
Skipped, with the how-to-get message, when a dataset is absent."""

import json
import pathlib

import jax
import numpy as np
import pytest

from experiments.effrob import report, train
from experiments.effrob.configs.default import get_config, validate
from robustml_jax import effrob
from robustml_jax.core import experiment
from robustml_jax.core.errors import ConfigError
from tests.effrob._data import skip_without_data


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    skip_without_data(get_config("smoke"))
    workdir = tmp_path_factory.mktemp("effrob_report")
    return workdir, report.run(workdir, "smoke")


def _zoo_table(workdir):
    return effrob.read_accuracy_csv(
        workdir / "zoo" / "accuracies.csv",
        id_columns="books,kitchen",
        ood_columns="dvd,electronics,sst2",
        group_column="group",
        name_column="model",
    )


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
    assert rep.rows and rep.summary
    for p in rep.plots:
        assert (workdir / p).is_file(), p
    # CIFAR-10.1 fit on real predictions: every published model is within a few points.
    v6 = res["cifar10_1"]["fits"]["CIFAR-10.1 v6"]["single:CIFAR-10"]
    assert v6["r2"] > 0.9 and v6["mae_pp"] < 2.0


def test_multi_id_fit_predicts_held_out_groups(smoke_report):
    """Out of sample (each training group predicted by a fit on the other groups, and 4-fold):
    the two-ID baseline is within 0.5 pp of the best single-ID baseline's error and at least
    0.5 pp better than the worst one's on every OOD set. A fit that ignored one ID set, or
    predicted badly, fails this (in-sample R^2 of nested fits could not)."""
    workdir, _ = smoke_report
    t = _zoo_table(workdir)
    gn = t.group_names()
    by_group = np.array([gn.index(g) for g in t.groups])
    kfold = effrob.kfold_assignment(jax.random.key(0), t.num_models, 4)
    for folds in (by_group, kfold):
        for j, ood in enumerate(t.ood_names):
            err = {}
            for cols in ([0], [1], [0, 1]):
                pred = effrob.out_of_fold_predictions(t.id_acc[:, cols], t.ood_acc[:, j], folds)
                err[len(cols), cols[0]] = 100 * np.mean(np.abs(t.ood_acc[:, j] - pred))
            singles = [err[1, 0], err[1, 1]]
            assert err[2, 0] <= min(singles) + 0.5, (ood, err)
            assert err[2, 0] <= max(singles) - 0.5, (ood, err)


def test_main_resumes_without_retraining(smoke_report):
    workdir, _ = smoke_report
    items = sorted((workdir / "zoo" / "train" / "snapshots").iterdir())
    assert [p.name for p in items] == ["linear_step15", "linear_step5"]
    before = {p: (p / "item.npz").stat().st_mtime_ns for p in items}
    config = get_config("smoke")
    config.tasks = "zoo"
    res = experiment.run(train.train_and_evaluate, config, workdir)
    assert {p: (p / "item.npz").stat().st_mtime_ns for p in items} == before
    old = json.loads((workdir / "zoo" / "zoo_fits.json").read_text())
    assert res["zoo"]["fits"]["dvd"]["single:books"]["r2"] == pytest.approx(
        old["fits"]["dvd"]["single:books"]["r2"]
    )
    # An item lost (killed before it was saved, or deleted) is retrained to the same result;
    # a stale temporary folder of a killed save is ignored and cleaned.
    lost = dict(np.load(items[0] / "item.npz"))
    (items[0] / "item.npz").unlink()
    items[0].rmdir()
    (items[0].parent / ".tmp-linear_step15-dead").mkdir()
    experiment.run(train.train_and_evaluate, config, workdir)
    for name, arr in np.load(items[0] / "item.npz").items():
        if name.startswith("correct/"):
            np.testing.assert_array_equal(arr, lost[name])
    assert (items[1] / "item.npz").stat().st_mtime_ns == before[items[1]]
    assert not (items[0].parent / ".tmp-linear_step15-dead").exists()


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
    # Taori-style: the baseline fitted on the books models only, every model scored.
    config.csv.fit_groups = "books"
    config.csv.sizes = "books=300,kitchen=300,dvd=1954"
    res = experiment.run(train.train_and_evaluate, config, tmp_path / "subset")
    got = res["csv"]["fits"]["dvd"]["multi:books+kitchen"]
    assert got["num_fit"] == zoo["groups"]["books"] and got["num_models"] == 12
    config.csv.sizes = "books=300,nope=3"
    with pytest.raises(ConfigError, match="csv.sizes"):
        experiment.run(train.train_and_evaluate, config, tmp_path / "bad_sizes")
    config.csv.sizes = ""
    config.csv.ood_columns = "nope"
    with pytest.raises(ValueError, match="missing column"):
        experiment.run(train.train_and_evaluate, config, tmp_path / "bad")


def test_csv_sizes_spec():
    cols = ["books", "kitchen", "dvd"]
    assert train.csv_sizes("", cols) is None
    assert train.csv_sizes("600", cols) == {"books": 600, "kitchen": 600, "dvd": 600}
    assert train.csv_sizes("books=300, dvd=1954", cols) == {"books": 300, "dvd": 1954}
    for bad in ("books=0", "nope=3", "many", "books=3=4"):
        with pytest.raises(ConfigError, match="csv.sizes"):
            train.csv_sizes(bad, cols)


def test_unknown_config_task_and_bad_values():
    with pytest.raises(ConfigError, match="unknown config"):
        get_config("huge")
    config = get_config("smoke")
    config.tasks = "mnist"
    with pytest.raises(ConfigError, match="unknown task 'mnist'"):
        experiment.run(train.train_and_evaluate, config, "/tmp/effrob_unused")
    with pytest.raises(ConfigError, match="config.tasks='mnist'"):
        validate(config)
    for field, value, what in (
        ("zoo.hash_dim", 100, "power of two"),
        ("zoo.mixes", (0.5, 1.5), r"in \[0, 1\]"),
        ("zoo.feat_dims", (8192,), "zoo.hash_dim"),
        ("transform", "log", "logit, probit"),
        ("num_bootstrap", 1, "at least 2"),
    ):
        c = get_config("smoke")
        node, *rest = field.split(".")
        if rest:
            c[node][rest[0]] = value
        else:
            c[node] = value
        with pytest.raises(ConfigError, match=what):
            validate(c)
    c = get_config("smoke")
    c.tasks = "csv"
    with pytest.raises(ConfigError, match="csv.path"):
        validate(c)
    validate(get_config("small"))
