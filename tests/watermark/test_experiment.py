"""End-to-end: the smoke config (tiny random BERT, real data subsets) through the report entry
point, its results and plots, resuming after a kill, and config errors."""

import json
import shutil

import pytest

from experiments.watermark import report, table
from experiments.watermark.configs.default import get_config, validate
from experiments.watermark.train import task_counts, train_and_evaluate
from robustml_jax.core import configs, experiment
from robustml_jax.models import bert
from tests.smoke import require_data, smoke_run_fixture

require_data("mr", "sst2", "bbc_news", bert.minilm_dir)
smoke_run = smoke_run_fixture(report, "watermark")


def test_smoke_main_end_to_end(smoke_run):
    workdir, res, rep = smoke_run
    c = get_config("smoke")
    for p in res["plots"]:
        assert (workdir / p).read_bytes()[:4] == b"\x89PNG"
    t = res["tasks"]["mr"]
    assert len(t["clean"]["acc"]["per_seed"]) == c.clean_seeds
    assert set(t["variants"]) == set(c.wm_variants)
    assert set(t["attacks"]) == set(c.attacks)
    for d in list(t["variants"].values()) + list(t["attacks"].values()):
        assert 0 <= d["wesr"]["mean"] <= 1 and 0 < d["pvalue"]["max"] <= 1
    steps = [p["step"] for p in t["curves"]["watermarked"]]
    assert steps == [0, 2, 4]
    assert rep.rows and "WESR" in rep.summary


def test_resume_after_a_kill(smoke_run, tmp_path):
    """Finished items are reused; a missing one (the kill) is recomputed to the same numbers."""
    workdir, res, _ = smoke_run
    shutil.copytree(workdir / "items", tmp_path / "items")
    victim = tmp_path / "items" / "runs" / "mr__clean__none__s1"
    shutil.rmtree(victim)
    (tmp_path / "items" / "runs" / ".tmp-half-written").mkdir()  # a save cut short
    experiment.run(train_and_evaluate, get_config("smoke"), tmp_path)
    again = json.loads((tmp_path / "results.json").read_text())
    assert victim.is_dir() and not (tmp_path / "items" / "runs" / ".tmp-half-written").exists()
    assert again["tasks"] == res["tasks"]


def test_config_errors():
    c = get_config("smoke")
    c.tasks = ("sst2",)
    with pytest.raises(configs.ConfigError, match="tasks"):
        validate(c)
    c = get_config("smoke")
    c.clean_seeds = 1
    with pytest.raises(configs.ConfigError, match="clean_seeds"):
        validate(c)
    c = get_config("cpu_table")
    c.task_overrides.rte.clean_seeds = 1
    with pytest.raises(configs.ConfigError, match="task_overrides.rte.clean_seeds"):
        validate(c)
    for name in ("smoke", "small", "cpu_table", "full"):
        validate(get_config(name))


def test_table_from_finished_items_matches_results(smoke_run):
    """``table.partial_results`` on a finished run's items is its ``results.json``."""
    workdir, res, _ = smoke_run
    part = table.partial_results(get_config("smoke"), workdir)
    # results.json stores the curves' NaN (no eligible probe text) as null
    as_json = lambda d: json.loads(json.dumps(d), parse_constant=lambda _: None)
    assert as_json(part["tasks"]) == res["tasks"]
    text = table.markdown_table(res, 1e-3, "rare_multitask")
    assert "| mr | rare_multitask, removal: prune |" in text


def test_task_overrides_set_per_task_seeds():
    c = get_config("cpu_table")
    c.task_overrides.blitzer_electronics = {"variants": ("rare_multitask",), "attacks": ()}
    b = task_counts(c, "blitzer_electronics")
    assert b["variants"] == ("rare_multitask",) and b["attacks"] == () and b["clean_seeds"] == 6
    assert task_counts(c, "rte")["other_wm_seeds"] == 1 and task_counts(c, "mr")["wm_seeds"] == 3
    assert task_counts(c, "mr")["attacks"] == tuple(c.attacks)
    assert task_counts(get_config("small"), "mr")["wm_seeds"] == 2
