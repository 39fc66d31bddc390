"""Batched evaluation of stacked models (``core.metrics.stacked_correct``, moved from effrob)
against a per-model loop."""

import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import numpy as np
import pytest

from robustml_jax import effrob
from robustml_jax.core import metrics


class _Mlp(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3)(nn.tanh(nn.Dense(8)(x)))


def _setup(m=5):
    model = _Mlp()
    keys = jax.random.split(jax.random.key(0), m)
    params = [model.init(k, np.zeros((1, 4), np.float32))["params"] for k in keys]
    rng = np.random.default_rng(0)
    sets = {
        "a": (rng.normal(size=(37, 4)).astype(np.float32), rng.integers(0, 3, 37)),
        "b": (rng.normal(size=(20, 4)).astype(np.float32), rng.integers(0, 3, 20)),
    }
    return model, params, sets


def test_matches_per_model_loop():
    model, params, sets = _setup()
    out = metrics.stacked_correct(
        effrob.stack_params(params),
        sets,
        apply_fn=lambda p, x: model.apply({"params": p}, x),
        chunk=16,
    )
    for name, (x, y) in sets.items():
        assert out[name].shape == (5, len(y)) and out[name].dtype == bool
        for i, p in enumerate(params):
            ref = np.argmax(np.asarray(model.apply({"params": p}, x)), -1) == y
            np.testing.assert_array_equal(out[name][i], ref)


def test_binary_logit_and_errors():
    bow = effrob.BowClassifier()
    params = jax.vmap(lambda k: bow.init(k, np.zeros((1, 6), np.float32))["params"])(
        jax.random.split(jax.random.key(1), 3)
    )
    x = np.random.default_rng(1).normal(size=(11, 6)).astype(np.float32)
    y = np.arange(11) % 2
    out = metrics.stacked_correct(
        params, {"s": (x, y)}, apply_fn=lambda p, x: bow.apply({"params": p}, x)
    )
    for i in range(3):
        p = jax.tree.map(lambda a, i=i: a[i], params)
        np.testing.assert_array_equal(out["s"][i], (bow.apply({"params": p}, x) > 0) == (y == 1))
    with pytest.raises(ValueError, match="at least one"):
        effrob.stack_params([])
    with pytest.raises(ValueError, match="empty"):
        metrics.stacked_correct(params, {}, apply_fn=lambda p, x: bow.apply({"params": p}, x))


def test_sharded_over_four_devices_matches(tmp_path):
    """Model axis sharded over 4 fake CPU devices gives the 1-device result."""
    code = textwrap.dedent(
        """
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        os.environ["JAX_PLATFORMS"] = "cpu"  # fake devices are CPU ones, also on a GPU host
        import jax, numpy as np
        from tests.effrob.test_evaluate import _setup
        from robustml_jax import effrob
        from robustml_jax.core import metrics, sharding
        assert jax.device_count() == 4
        model, params, sets = _setup(m=8)
        f = lambda p, x: model.apply({"params": p}, x)
        st = effrob.stack_params(params)
        run = metrics.stacked_correct
        a = run(st, sets, apply_fn=f, mesh=sharding.data_mesh(4))
        b = run(st, sets, apply_fn=f, mesh=sharding.data_mesh(1))
        c = run(effrob.stack_params(params[:6]), sets, apply_fn=f, chunk=8,
                mesh=sharding.data_mesh(4))  # examples sharded instead
        for n in sets:
            np.testing.assert_array_equal(a[n], b[n])
            np.testing.assert_array_equal(c[n], b[n][:6])
        print("OK")
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="."
    )
    assert "OK" in r.stdout, r.stderr[-2000:]
