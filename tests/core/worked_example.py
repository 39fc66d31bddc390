"""Runs of the core's worked example (``python -m experiments.mnist_cnn.main``) as subprocesses,
for the tests that need a real main: a device count set through XLA_FLAGS, a SIGKILL mid-run,
several processes."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = "experiments/mnist_cnn/configs/default.py:smoke"
# Long enough to kill it halfway; the smoke config checkpoints every 5 steps otherwise.
OVERRIDES = ("--config.num_steps=120", "--config.checkpoint_every=10", "--config.log_every=10")


def cmd(workdir, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "experiments.mnist_cnn.main",
        f"--config={CONFIG}",
        f"--workdir={workdir}",
        *OVERRIDES,
        *extra,
    ]


def env(devices: int) -> dict[str, str]:
    out = dict(os.environ)
    out["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    out["JAX_PLATFORMS"] = "cpu"
    return out


def run(workdir, devices: int, *extra: str) -> None:
    proc = subprocess.run(
        cmd(workdir, *extra), cwd=REPO, env=env(devices), capture_output=True, timeout=300
    )
    if proc.returncode:
        tail = "\n".join(proc.stderr.decode(errors="replace").splitlines()[-15:])
        pytest.fail(f"worked example failed (exit {proc.returncode}):\n{tail}")


def outputs(workdir: pathlib.Path):
    """(final params as a list of arrays, metrics.jsonl records, results.json)."""
    with np.load(workdir / "final_params.npz") as z:
        params = [z[k] for k in sorted(z.files, key=lambda k: int(k.split("_")[1]))]
    metrics = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    res = json.loads((workdir / "results.json").read_text())
    return params, metrics, res


def checkpoint_steps(workdir: pathlib.Path) -> list[int]:
    """Finished checkpoint steps (orbax writes `<step>.orbax-checkpoint-tmp` first)."""
    ck = workdir / "checkpoints"
    return sorted(int(p.name) for p in ck.glob("[0-9]*") if p.name.isdigit()) if ck.exists() else []


def kill_midway(workdir: pathlib.Path, devices: int, after_step: int = 40) -> int:
    """Starts a run, SIGKILLs it once a checkpoint at or past ``after_step`` exists, and returns
    the last finished checkpoint's step (where a re-run resumes)."""
    proc = subprocess.Popen(
        cmd(workdir),
        cwd=REPO,
        env=env(devices),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            steps = checkpoint_steps(workdir)
            if steps and max(steps) >= after_step:
                break
            if proc.poll() is not None:
                pytest.fail("run finished before it could be killed; raise num_steps")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    steps = checkpoint_steps(workdir)
    assert steps and steps[-1] < 120, steps
    return steps[-1]
