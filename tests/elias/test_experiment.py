"""The paper-7 main (smoke config) end to end, its resume after a kill between stages, the
report entry point, and the config validation."""

from __future__ import annotations

import shutil

import pytest

from experiments.elias import report, train
from experiments.elias.configs import default
from experiments.elias.configs.default import get_config
from robustml_jax.core import experiment
from robustml_jax.core.errors import ConfigError
from tests.xmc.conftest import require


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    require("bibtex")
    workdir = tmp_path_factory.mktemp("elias_smoke")
    return workdir, experiment.run(train.train_and_evaluate, get_config("smoke"), workdir)


def test_smoke_main_end_to_end(smoke_run):
    workdir, res = smoke_run
    assert (workdir / "results.json").is_file()
    s = res["bibtex"]["summary"]
    for model in ("elias1", "elias2", "tree"):
        for k in ("P@1", "P@5", "nDCG@5", "PSP@5", "R@10", "R@20", "R@100"):
            assert 0 <= s[model][k]["mean"] <= 100
    assert s["tree"]["P@1"]["mean"] > 30  # far above chance on 159 labels
    assert s["elias2"]["P@1"]["mean"] > 10  # learns in a few dozen steps
    e2 = res["bibtex"]["per_seed"][0]["elias2"]
    assert e2["num_clusters"] >= 2 and e2["K"] <= e2["beam"] * e2["kappa"]
    assert "elias2_minus_tree" in s and len(s["elias2_minus_tree"]["P@1"]) == 1
    for p in res["plots"]:
        assert (workdir / p).stat().st_size > 0


def test_resume_after_kill_between_stages(smoke_run):
    """A run killed after ELIAS-1 was saved (ELIAS-2 missing, a half-written temporary item
    left behind) reuses ELIAS-1 and the tree, refits only ELIAS-2, and gives the same
    ELIAS-1 and tree numbers."""
    workdir, first = smoke_run
    items = workdir / "bibtex" / "elias"
    e1 = items / "elias1_seed0"
    mtime = e1.stat().st_mtime_ns
    shutil.rmtree(items / "elias2_seed0")
    (items / ".tmp-elias2_seed0-dead").mkdir()
    res = experiment.run(train.train_and_evaluate, get_config("smoke"), workdir)
    assert e1.stat().st_mtime_ns == mtime
    assert (items / "elias2_seed0").is_dir() and not (items / ".tmp-elias2_seed0-dead").exists()
    for model in ("elias1", "tree"):
        assert res["bibtex"]["summary"][model]["P@1"] == first["bibtex"]["summary"][model]["P@1"]
    # The refit ELIAS-2 is the same computation (same key, same stage-1 model).
    a = res["bibtex"]["summary"]["elias2"]["P@1"]["mean"]
    b = first["bibtex"]["summary"]["elias2"]["P@1"]["mean"]
    assert abs(a - b) < 1.0


def test_report_resumes_from_saved_models(smoke_run):
    workdir, _ = smoke_run
    rep = report.run(workdir, "smoke")
    names = [r.metric for r in rep.rows]
    assert "bibtex ELIAS-2 P@1 (%)" in names
    assert any("minus tree" in n for n in names)
    pecos = next(r for r in rep.rows if r.metric == "bibtex ELIAS-2 P@1 (%)")
    assert pecos.paper == 62.19
    assert rep.plots and "tree" in rep.summary


def test_config_validation():
    for name in ("smoke", "small", "synthetic", "full"):
        default.validate(get_config(name))
    c = get_config("smoke")
    c.elias.dropout = 1.5
    with pytest.raises(ConfigError, match="dropout"):
        default.validate(c)
    c = get_config("smoke")
    c.seeds = ()
    with pytest.raises(ConfigError, match="seeds"):
        default.validate(c)
