"""The shared train state, step, loop, checkpointing and results writing."""

from __future__ import annotations

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from robustml_jax.core import checkpoint, results, train


def _linear_problem(n=64, d=3, seed=0):
    rng = np.random.default_rng(seed)  # test data only
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = np.arange(1, d + 1, dtype=np.float32)
    return {"x": x, "y": x @ w}


def _loss_fn(params, batch, rng):
    del rng
    pred = batch["x"] @ params["w"] + params["b"]
    return jnp.mean((pred - batch["y"]) ** 2), {"mae": jnp.mean(jnp.abs(pred - batch["y"]))}


def _params():
    return {"w": jnp.zeros(3), "b": jnp.zeros(())}


def test_epoch_batches_deterministic_and_resumable():
    data = _linear_problem(10)
    f1 = train.epoch_batches(data, 4, jax.random.key(0))
    f2 = train.epoch_batches(data, 4, jax.random.key(0))
    assert f1.steps_per_epoch == 2
    seq = [f1(s)["x"] for s in range(6)]
    np.testing.assert_array_equal(f2(5)["x"], seq[5])  # no dependence on history
    epoch0 = np.concatenate([f1(0)["y"], f1(1)["y"]])
    assert len(set(epoch0.tolist())) == 8  # without replacement
    with pytest.raises(ValueError, match="batch_size must be in"):
        train.epoch_batches(data, 11, jax.random.key(0))
    with pytest.raises(ValueError, match="different leading sizes"):
        train.epoch_batches({"a": np.zeros(3), "b": np.zeros(4)}, 1, jax.random.key(0))


def test_train_step_is_pure_and_traced_once():
    tx = optax.sgd(0.1)
    step = jax.jit(chex.assert_max_traces(train.make_train_step(_loss_fn, tx), n=1))
    state = train.create_train_state(_params(), tx)
    batch = {k: jnp.asarray(v[:8]) for k, v in _linear_problem().items()}
    s1, m1 = step(state, batch, jax.random.key(1))
    s2, m2 = step(state, batch, jax.random.key(1))
    chex.assert_trees_all_close(s1.params, s2.params)
    assert int(s1.step) == 1 and set(m1) == {"loss", "mae", "grad_norm"}
    s3, m3 = step(s1, batch, jax.random.key(1))
    assert float(m3["loss"]) < float(m1["loss"])


def test_train_loop_learns_and_resumes_identically(tmp_path):
    data = _linear_problem()
    tx = optax.adam(0.1)
    key = jax.random.key(3)

    def run(workdir, num_steps):
        state = train.create_train_state(_params(), tx)
        cfg = train.LoopConfig(
            num_steps=num_steps, log_every=5, checkpoint_every=10, progress=False
        )
        return train.train_loop(
            state,
            loss_fn=_loss_fn,
            tx=tx,
            batch_fn=train.epoch_batches(data, 16, key),
            key=key,
            workdir=workdir,
            config=cfg,
            eval_fn=lambda p: {"w0": p["w"][0]},
        )

    full, m_full = run(tmp_path / "a", 60)
    run(tmp_path / "b", 30)  # "interrupted" after 30 steps
    resumed, m_res = run(tmp_path / "b", 60)
    chex.assert_trees_all_equal(full.params, resumed.params)
    assert m_full["w0"] == m_res["w0"]
    assert float(full.params["w"][2]) == pytest.approx(3.0, abs=0.3)
    log_a = [r for r in results.MetricsLogger(tmp_path / "a").read()]
    log_b = [r for r in results.MetricsLogger(tmp_path / "b").read()]
    assert [r for r in log_a if r["split"] == "train"] == [
        r for r in log_b if r["split"] == "train"
    ]


def test_corrupt_checkpoint_gives_clear_error_and_keeps_files(tmp_path):
    ck = checkpoint.Checkpointer(tmp_path / "ck")
    state = train.create_train_state(_params(), optax.sgd(0.1))
    ck.save(1, state, force=True)
    ck.close()
    step_dir = tmp_path / "ck" / "1"
    files = [p for p in step_dir.rglob("*") if p.is_file() and p.stat().st_size > 0]
    for p in files:
        p.write_bytes(b"\x00corrupt")
    before = sorted(str(p) for p in step_dir.rglob("*"))
    ck2 = checkpoint.Checkpointer(tmp_path / "ck")
    with pytest.raises(
        checkpoint.CheckpointError, match=r"checkpoint step 1 in .* cannot be restored"
    ):
        ck2.restore(state)
    assert sorted(str(p) for p in step_dir.rglob("*")) == before


def test_restore_into_mismatched_structure_is_clear(tmp_path):
    ck = checkpoint.Checkpointer(tmp_path / "ck")
    ck.save(5, {"w": jnp.zeros(3)}, force=True)
    with pytest.raises(checkpoint.CheckpointError, match="step 5"):
        ck.restore({"w": jnp.zeros(3), "extra": jnp.zeros(2)})
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.Checkpointer(tmp_path / "empty").restore({"w": jnp.zeros(3)})


def test_write_results_atomic_and_jsonable(tmp_path):
    results.write_results(tmp_path, {"a": np.float32(1.5), "b": jnp.arange(2), "c": float("nan")})
    assert json.loads((tmp_path / "results.json").read_text()) == {"a": 1.5, "b": [0, 1], "c": None}
    with pytest.raises(TypeError, match="cannot write a value of type object"):
        results.write_results(tmp_path, {"bad": object()})
    # The failed write left the previous file intact and no temp files behind.
    assert json.loads((tmp_path / "results.json").read_text())["a"] == 1.5
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_atomic_open_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "f.txt"
    results.atomic_write_text(p, "old")
    with pytest.raises(RuntimeError), results.atomic_open(p) as f:
        f.write("new, half")
        raise RuntimeError("crash mid-write")
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_metrics_logger_truncates_torn_and_future_lines(tmp_path):
    log = results.MetricsLogger(tmp_path)
    for s in (1, 2, 3):
        log.write(s, loss=float(s))
    with open(log.path, "a") as f:
        f.write('{"step": 4, "lo')  # torn line from a kill
    log.truncate_after(2)
    assert [r["step"] for r in log.read()] == [1, 2]


def test_save_figure_atomic(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    path = results.save_figure(fig, tmp_path / "p.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
