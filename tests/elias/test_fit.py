"""fit_elias / predict_elias on tiny synthetic problems: shapes, quality above popularity,
save/load, and the library defaults on 10, 100 and 1000 labels (slow)."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from robustml_jax import xmc
from tests.xmc.conftest import REPO

FAST = {
    "dim": 64,
    "epochs": (1, 2, 2),
    "min_steps": (10, 80, 80),
    "eval_every": 40,
    "batch_size": 128,
    "lr": 2e-2,
    "lr_wl": 2e-2,
    "lr_enc": 2e-2,
    "kmeans_iters": 5,
}


def _problem(L, n_train=400, n_test=200, seed=0):
    d = xmc.synthetic_xmc(
        jax.random.key(seed),
        n_train,
        n_test,
        300,
        L,
        nnz_per_row=12,
        labels_per_row=2.0,
        power=0.7,
    )
    return d["train"]["X"], d["train"]["Y"], d["test"]["X"], d["test"]["Y"]


def _p1(labels, Y):
    inv = np.ones(Y.shape[1], np.float32)
    return float(xmc.ranking_metrics(labels, xmc.labels_to_padded(Y), inv, ks=(1,))["P@1"])


def _popularity_p1(Ytr, Yte):
    top = int(np.asarray(Ytr.sum(0)).ravel().argmax())
    return _p1(np.full((Yte.shape[0], 1), top), Yte)


@pytest.fixture(scope="module")
def fitted():
    X, Y, Xt, Yt = _problem(48)
    model = xmc.fit_elias(X, Y, jax.random.key(0), **FAST)
    return model, X, Y, Xt, Yt


def test_fit_predict_contract_and_quality(fitted, tmp_path):
    model, X, Y, Xt, Yt = fitted
    assert model.stage == 2 and model.num_clusters >= 2
    labels, scores = xmc.predict_elias(model, Xt, 5)  # positional, as the contract says
    assert labels.shape == (Xt.shape[0], 5) and scores.shape == (Xt.shape[0], 5)
    assert labels.dtype == np.int32 and scores.dtype == np.float32
    valid = labels >= 0
    assert valid[:, 0].all() and np.all((scores >= 0) & (scores <= 1))
    assert np.all(np.diff(np.where(valid, scores, -1), axis=1) <= 1e-6)  # best first
    for row in labels:  # no label twice
        r = row[row >= 0]
        assert len(set(r.tolist())) == len(r)
    assert _p1(labels, Yt) > _popularity_p1(Y, Yt) + 0.1
    # Stage 2 reached labels in more than one cluster (a graph, not a tree).
    counts = np.bincount(model.a_inds.ravel(), minlength=model.num_labels + 1)[:-1]
    assert counts.max() > 1
    # A topk larger than the shortlist: padded with -1 / 0.
    big, big_s = xmc.predict_elias(model, Xt[:3], model.config["K"] + 4)
    assert np.all(big[:, -4:] == -1) and np.all(big_s[:, -4:] == 0)
    # Save / load round trip gives the same predictions.
    path = xmc.save_elias(model, tmp_path / "m")
    again = xmc.load_elias(path)
    l2, s2 = xmc.predict_elias(again, Xt, 5)
    np.testing.assert_array_equal(l2, labels)
    np.testing.assert_allclose(s2, scores, rtol=1e-6)
    with pytest.raises(ValueError, match="feature dimension mismatch"):
        xmc.predict_elias(model, Xt[:, :10], 5)


@pytest.mark.slow
@pytest.mark.parametrize("num_labels", [10, 100, 1000])
def test_library_defaults_on_tiny_sets(num_labels):
    """The defaults (no overrides) learn on 10 / 100 / 1000 labels with a few hundred rows."""
    X, Y, Xt, Yt = _problem(num_labels, n_train=500, n_test=200, seed=num_labels)
    model = xmc.fit_elias(X, Y, jax.random.key(0))
    assert model.num_clusters >= 2
    labels, _ = xmc.predict_elias(model, Xt, 5)
    assert _p1(labels, Yt) > _popularity_p1(Y, Yt) + 0.05


@pytest.mark.slow
def test_sharded_data_parallel_on_8_host_devices():
    code = (
        "import jax, numpy as np\n"
        "from robustml_jax import xmc\n"
        "assert jax.device_count() == 8\n"
        "d = xmc.synthetic_xmc(jax.random.key(0), 200, 50, 100, 16, nnz_per_row=8)\n"
        "m = xmc.fit_elias(d['train']['X'], d['train']['Y'], jax.random.key(0), stages=1,"
        " dim=16, epochs=(1, 1, 1), min_steps=(2, 4, 4), batch_size=64, eval_every=4)\n"
        "l, s = xmc.predict_elias(m, d['test']['X'], 3)\n"
        "assert l.shape == (50, 3)\n"
        "print('ok')\n"
    )
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "PYTHONPATH": str(REPO),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600, cwd=REPO
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ok" in out.stdout
