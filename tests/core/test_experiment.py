"""Experiment plumbing: config loading, bad config names, the single-process runtime."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import pytest

from robustml_jax.core import distributed, experiment


def test_unknown_config_name_is_clear():
    with pytest.raises(
        ValueError, match="unknown config 'huge'; choose one of: smoke, small, full"
    ):
        experiment.get_config("experiments.mnist_cnn.configs.default", "huge")
    with pytest.raises(ValueError, match="no config module"):
        experiment.get_config("experiments.nope.configs.default", "smoke")


def test_main_with_bad_config_exits_with_one_line_error(repo_root, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.mnist_cnn.main",
            "--config=experiments/mnist_cnn/configs/default.py:huge",
            f"--workdir={tmp_path}",
        ],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "unknown config 'huge'" in proc.stderr
    assert not (tmp_path / "results.json").exists()


def test_single_process_runtime():
    rt = distributed.setup(None)
    assert rt.process_count == 1 and rt.is_main_process
    assert rt.mesh.devices.size == jax.device_count()
    with pytest.raises(ValueError, match="only 1 exist"):
        distributed.setup({"num_devices": jax.device_count() + 1})


def test_run_writes_config_and_results(tmp_path):
    cfg = experiment.get_config("experiments.mnist_cnn.configs.default", "smoke")
    cfg.num_steps = 3

    def tae(config, workdir, runtime):
        assert runtime.mesh is not None
        return {"metric": 0.5, "steps": config.num_steps}

    res = experiment.run(tae, cfg, tmp_path)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["metric"] == 0.5 == res["metric"] and on_disk["steps"] == 3
    assert json.loads((tmp_path / "config.json").read_text())["num_steps"] == 3
    with pytest.raises(ValueError, match="--config is required"):
        experiment.run(tae, None, tmp_path)
