"""The paper-6 main (smoke config) end to end, its resume, the report entry point, and the
config validation."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from experiments.xmc import report, train
from experiments.xmc.configs import default
from experiments.xmc.configs.default import get_config
from robustml_jax.core import experiment
from robustml_jax.core.errors import ConfigError
from tests.xmc.conftest import REPO, require


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    require("bibtex")
    workdir = tmp_path_factory.mktemp("xmc_smoke")
    return workdir, experiment.run(train.train_and_evaluate, get_config("smoke"), workdir)


def test_smoke_main_end_to_end(smoke_run):
    workdir, res = smoke_run
    assert (workdir / "results.json").is_file()
    b = res["bibtex"]
    for part in ("single", "ensemble"):
        assert 0 < b[part]["P@1"] <= 100 and math.isfinite(b[part]["PSP@5"])
    assert b["single"]["P@1"] > 30  # far above chance on 159 labels
    assert all(v["bound_violations"] == 0 for v in b["approx"]["beams"].values())
    m = b["miscls"]["scores"]
    assert 0.5 < m["single_one_minus_score"]["auroc"]["estimate"] <= 1
    assert 0.5 < m["one_minus_mean"]["auroc"]["estimate"] <= 1
    o = b["ood"]  # the smoke config runs OOD detection on held-out labels
    assert o["num_ood"] > 20 and 0.5 < o["scores"]["neg_topk_sum"]["auroc"]["estimate"] <= 1
    for v in b["approx"]["beams"].values():
        assert all(s["violations"] == 0 for s in v["scores"].values())
    for p in res["plots"]:
        assert (workdir / p).stat().st_size > 0
    assert len(list((workdir / "bibtex" / "members").glob("member_*/meta.json"))) == 2


def test_report_resumes_from_saved_members(smoke_run):
    workdir, first = smoke_run
    rep = report.run(workdir, "smoke")
    second = experiment.run(train.train_and_evaluate, get_config("smoke"), workdir)
    # Members are reloaded, not retrained: no fit time recorded, identical predictions.
    assert second["bibtex"]["fit_seconds_per_member"] is None
    assert second["bibtex"]["ensemble"] == first["bibtex"]["ensemble"]
    names = [r.metric for r in rep.rows]
    assert "bibtex single tree P@1 (%)" in names
    row = next(r for r in rep.rows if r.metric == "bibtex single tree P@1 (%)")
    assert row.paper == 62.19 and row.ours == round(first["bibtex"]["single"]["P@1"], 2)
    assert rep.plots and rep.summary


def test_unknown_config():
    with pytest.raises(ValueError, match="unknown config 'huge'"):
        get_config("huge")


@pytest.mark.parametrize("arg", ["smoke", "small", "full"])
def test_variants_validate(arg):
    default.validate(get_config(arg))


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("beam_size", -3, r"config.beam_size=-3: must be a positive integer"),
        ("nr_splits", 3, r"config.nr_splits=3: must be a power of two"),
        ("loss", "hinge", r"config.loss='hinge': must be one of"),
        ("topk_sum", 11, r"config.topk_sum=11: must be in \[1, topk=10\]"),
        ("feature_fraction", 1.5, r"config.feature_fraction=1.5: must be a probability"),
        ("ood_datasets", ("eurlex",), r"must be a subset of datasets"),
    ],
)
def test_validate_rejects(field, value, match):
    c = get_config("smoke")
    c[field] = value
    with pytest.raises(ConfigError, match=match):
        default.validate(c)


def test_bad_override_is_one_line(tmp_path):
    """``--config.beam_size=-3`` ends in one clear line and exit status 2, before any work."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.xmc.main",
            "--config=experiments/xmc/configs/default.py:smoke",
            "--config.beam_size=-3",
            f"--workdir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "error: config.beam_size=-3: must be a positive integer"
    assert not (tmp_path / "results.json").exists()
