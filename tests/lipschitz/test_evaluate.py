"""evaluate_bounds resumes a killed run without lost work; summaries and tables read it right."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax import lipschitz
from robustml_jax.lipschitz import _evaluate

NET = lipschitz.from_dense(
    [
        (jax.random.normal(jax.random.key(0), (3, 5)), 0.1 * jnp.ones(5)),
        (jax.random.normal(jax.random.key(1), (5, 2)), jnp.zeros(2)),
    ]
)
POINTS = np.asarray(jax.random.normal(jax.random.key(2), (4, 3)), np.float32)
KW = dict(
    eps=0.2,
    methods=("naive", "recurjac", "ours"),
    samples=8,
    ascent_starts=1,
    ascent_steps=1,
    exact=True,
)


def test_killed_run_resumes_at_the_first_unfinished_point(tmp_path, monkeypatch):
    want = lipschitz.evaluate_bounds(NET, jax.random.key(3), POINTS, **KW)
    calls = []
    real_exact = _evaluate.exact_lipschitz

    def exact_then_kill(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # killed while computing point 2
            raise KeyboardInterrupt
        return real_exact(*args, **kwargs)

    monkeypatch.setattr(_evaluate, "exact_lipschitz", exact_then_kill)
    with pytest.raises(KeyboardInterrupt):
        lipschitz.evaluate_bounds(NET, jax.random.key(3), POINTS, directory=tmp_path, **KW)
    assert lipschitz.point_items(tmp_path).names() == ["point_00000", "point_00001"]

    def counted_exact(*args, **kwargs):
        calls.append(1)
        return real_exact(*args, **kwargs)

    calls.clear()
    monkeypatch.setattr(_evaluate, "exact_lipschitz", counted_exact)
    got = lipschitz.evaluate_bounds(NET, jax.random.key(3), POINTS, directory=tmp_path, **KW)
    assert len(calls) == 2  # points 2 and 3 only
    np.testing.assert_array_equal(got.values, want.values)
    assert len(lipschitz.point_items(tmp_path).names()) == 4
    cols = [lipschitz.ALL_METHODS.index(m) for m in ("interval", "ours_bab")]
    assert np.all(np.isnan(got.values[:, cols]))  # methods that did not run


def test_summarize_and_table():
    table = lipschitz.evaluate_bounds(NET, jax.random.key(3), POINTS, **KW)
    s = lipschitz.summarize(table)
    assert s["sound_vs_sampled"] and s["ordering_holds"] and s["sound_vs_exact"]
    assert s["exact_points"] == len(POINTS)
    assert "interval_mean" not in s and s["ours_mean"] <= s["recurjac_mean"] + 1e-6
    # A bound below the sampled value must be reported unsound, and a recurjac below ours
    # out of order.
    broken = table.values.copy()
    broken[1, lipschitz.ALL_METHODS.index("ours")] = (
        0.5 * broken[1, lipschitz.ALL_METHODS.index("sampled")]
    )
    bad = lipschitz.summarize(lipschitz.BoundTable(broken, table.times))
    assert not bad["sound_vs_sampled"] and not bad["sound_vs_exact"]
    looser = table.values.copy()
    i, j = lipschitz.ALL_METHODS.index("ours"), lipschitz.ALL_METHODS.index("recurjac")
    looser[2, i] = 1.5 * looser[2, j] + 1.0
    assert not lipschitz.summarize(lipschitz.BoundTable(looser, table.times))["ordering_holds"]
    md = lipschitz.bounds_table({"t": s, "monotone": {}})
    assert md.splitlines()[2].startswith(f"| t | {s['naive_mean']:.4g} (")
    assert "monotone" not in md and len(md.splitlines()) == 3
