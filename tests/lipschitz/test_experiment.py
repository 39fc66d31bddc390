"""The experiment main (smoke config) end to end, then the report on the same workdir (resume)."""

from __future__ import annotations

import json

import pytest

from experiments.lipschitz import report, train
from experiments.lipschitz.configs.default import get_config
from robustml_jax.core import experiment


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("lipschitz_smoke")


def test_main_smoke(workdir):
    res = experiment.run(train.train_and_evaluate, get_config("smoke"), workdir)
    on_disk = json.loads((workdir / "results.json").read_text())
    assert on_disk["all_sound"] is True and on_disk["all_ordered"] is True
    task = res["tasks"]["synthetic_w8_d2"]
    assert task["exact_points"] == 2
    assert task["ours_bab_mean"] <= task["ours_mean"] + 1e-6 <= task["naive_mean"]
    assert task["sampled_mean"] <= task["exact_mean"] + 1e-6
    assert res["tasks"]["monotone"]["sound"] is True
    for p in res["plots"]:
        assert (workdir / p).is_file()
    assert (workdir / "synthetic_w8_d2" / "eval_ckpt").is_dir()


def test_report_smoke_resumes(workdir):
    first = json.loads((workdir / "results.json").read_text())
    rep = report.run(workdir, "smoke")
    assert rep.rows and rep.summary
    by_metric = {r.metric: r.ours for r in rep.rows}
    gap = by_metric["tiny MLPs: mean gap of ours+BaB to the exact value (%)"]
    assert gap == f"{first['mean_gap_ours_bab_pct']:.3g}"  # resumed: same numbers
    assert all((workdir / p).is_file() for p in rep.plots)


def test_unknown_config():
    with pytest.raises(ValueError, match="unknown config 'huge'"):
        get_config("huge")
