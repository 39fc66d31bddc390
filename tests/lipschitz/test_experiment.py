"""The experiment main (smoke config) end to end, then the report on the same workdir (resume)."""

from __future__ import annotations

import json
import shutil

import pytest

from experiments.lipschitz import report, train
from experiments.lipschitz.configs import default
from robustml_jax.core import experiment
from robustml_jax.core.errors import ConfigError
from robustml_jax.core.results import MetricsLogger


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("lipschitz_smoke")


def test_main_smoke(workdir):
    res = experiment.run(train.train_and_evaluate, default.get_config("smoke"), workdir)
    on_disk = json.loads((workdir / "results.json").read_text())
    assert on_disk["all_sound"] is True and on_disk["all_ordered"] is True
    task = res["tasks"]["synthetic_w8_d2"]
    assert task["exact_points"] == 2
    assert task["ours_bab_mean"] <= task["ours_mean"] + 1e-6 <= task["naive_mean"]
    assert task["sampled_mean"] <= task["exact_mean"] + 1e-6
    assert res["tasks"]["monotone"]["sound"] is True
    for p in res["plots"]:
        assert (workdir / p).is_file()
    points = workdir / "synthetic_w8_d2" / "points"
    assert sorted(p.name for p in points.iterdir()) == ["point_00000", "point_00001"]
    logged = {r["split"] for r in MetricsLogger(workdir).read()}
    assert logged == {"synthetic_w8_d2", "monotone"}
    assert any((workdir / "tensorboard").glob("events.out.tfevents*"))


def test_report_smoke_resumes(workdir):
    """The report re-runs the smoke workdir: trained models and finished points are reused, a
    point whose item is gone is recomputed to the same values."""
    first = json.loads((workdir / "results.json").read_text())
    shutil.rmtree(workdir / "synthetic_w8_d2" / "points" / "point_00001")
    rep = report.run(workdir, "smoke")
    assert rep.rows and rep.summary
    by_metric = {r.metric: r.ours for r in rep.rows}
    gap = by_metric["tiny MLPs: mean gap of ours+BaB to the exact value (%)"]
    assert gap == f"{first['mean_gap_ours_bab_pct']:.3g}"
    again = json.loads((workdir / "results.json").read_text())
    for key in ("ours_mean", "ours_bab_mean", "exact_mean", "sampled_mean", "test_accuracy"):
        assert again["tasks"]["synthetic_w8_d2"][key] == first["tasks"]["synthetic_w8_d2"][key]
    assert all((workdir / p).is_file() for p in rep.plots)


def test_unknown_config():
    with pytest.raises(ConfigError, match="unknown config 'huge'"):
        default.get_config("huge")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("synthetic.eps", 0.0, "synthetic.eps=0.0: must be positive"),
        ("monotone.eps", -0.1, "monotone.eps=-0.1: must be positive"),
        ("methods", ("ours", "lipsdp"), "methods=.*must be a non-empty subset"),
        ("num_points", 0, "num_points=0: must be positive"),
        ("synthetic.widths", (8, 0), "widths=.*positive sizes"),
        ("bab_steps", -1, "bab_steps=-1: must be a non-negative integer"),
    ],
)
def test_validate_rejects_bad_values(field, value, message):
    c = default.get_config("smoke")
    default.validate(c)  # every variant is valid as shipped
    node = c
    *parents, leaf = field.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ConfigError, match=message):
        default.validate(c)


def test_variants_are_valid():
    for arg in default.VARIANTS:
        default.validate(default.get_config(arg))
