"""Per-class BaB, branching heuristics and time / domain budgets on real bound functions.

Checks that can fail: every BaB result stays >= the exact value (sound under any budget or
heuristic), a larger budget never gives a looser bound than a smaller one, the informed
heuristics (BaBSR, area) are, summed over three nets, at least as tight as splitting neurons in
index order at the same budget (BaBSR strictly), and budgets stop the search where they should.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from robustml_jax import lipschitz
from tests.lipschitz.nets import random_net


@functools.partial(jax.jit, static_argnames=("steps", "branching", "per_class"))
def bab(net, x0, eps, *, steps, branching, per_class=False):
    return lipschitz.local_lipschitz_bound(
        net, x0, eps, bab_steps=steps, bab_batch=2, branching=branching, bab_per_class=per_class
    )


NETS = [((3, 10, 10, 2), 0.3, 0), ((4, 24, 16, 3), 0.3, 47), ((2, 12, 12, 12, 2), 0.3, 9)]


def _case(sizes, eps, seed):
    key = jax.random.key(seed)
    net = random_net(key, sizes)
    x0 = jax.random.normal(jax.random.fold_in(key, 1), (sizes[0],))
    exact = lipschitz.exact_lipschitz(net, np.asarray(x0, np.float64), eps, time_limit_s=60)
    return net, x0, eps, exact.value


@pytest.mark.slow
def test_heuristics_budgets_and_soundness():
    excess = {"babsr": 0.0, "area": 0.0, "index": 0.0}
    for sizes, eps, seed in NETS:
        net, x0, eps, exact = _case(sizes, eps, seed)
        tol = 1e-5 * (1 + exact)
        root = float(bab(net, x0, eps, steps=0, branching="score"))
        res = {
            (h, n): float(bab(net, x0, eps, steps=n, branching=h))
            for h in ("babsr", "area", "index")
            for n in (2, 6)
        }
        for (h, n), v in res.items():
            assert exact - tol <= v <= root + tol, (sizes, h, n, v, exact, root)
        for h in excess:
            assert res[(h, 6)] <= res[(h, 2)] + tol  # more budget, never looser
            excess[h] += res[(h, 6)] - exact
        per_class = float(bab(net, x0, eps, steps=6, branching="babsr", per_class=True))
        assert exact - tol <= per_class <= root + tol
    assert excess["babsr"] < excess["index"] and excess["area"] <= excess["index"], excess


@pytest.mark.slow
def test_budgeted_bab_budgets_and_soundness():
    net, x0, eps, exact = _case((4, 24, 16, 3), 0.3, 47)
    tol = 1e-5 * (1 + exact)
    none = lipschitz.budgeted_lipschitz_bound(net, x0, eps, time_budget_s=0.0, batch=4)
    assert none.bound == pytest.approx(float(none.root.max()))
    small = lipschitz.budgeted_lipschitz_bound(
        net, x0, eps, batch=4, max_domains=9, chunk_steps=1, time_budget_s=60.0
    )
    big = lipschitz.budgeted_lipschitz_bound(
        net, x0, eps, batch=4, max_domains=200, chunk_steps=2, time_budget_s=60.0
    )
    for r in (small, big):
        assert exact - tol <= r.bound <= none.bound + tol
        assert np.all(r.per_class <= r.root + tol)
    assert "domains" in small.stopped
    assert big.bound <= small.bound + tol
    assert big.bound < none.bound - tol  # BaB does something within the budget
    # Classes whose root is below a finished class's bound are skipped, not lost.
    for i, why in enumerate(big.stopped):
        if why == "skipped":
            assert big.root[i] <= big.bound + tol


def test_bad_branching_raises():
    net = random_net(jax.random.key(0), (2, 3, 2))
    with pytest.raises(ValueError, match="branching must be"):
        lipschitz.local_lipschitz_bound(net, np.zeros(2), 0.1, branching="random")
    with pytest.raises(ValueError, match="max_domains"):
        lipschitz.budgeted_lipschitz_bound(net, np.zeros(2), 0.1, batch=8, max_domains=4)


@pytest.mark.slow
def test_budgeted_bab_on_a_tiny_net():
    """CI-sized: the domain budget stops the search, the bound stays in [exact, root]."""
    net, x0, eps, exact = _case((3, 10, 10, 2), 0.3, 0)
    res = lipschitz.budgeted_lipschitz_bound(
        net, x0, eps, batch=2, max_domains=7, chunk_steps=1, time_budget_s=1e6
    )
    tol = 1e-5 * (1 + exact)
    assert exact - tol <= res.bound <= float(res.root.max()) + tol
    assert set(res.stopped) <= {"domains", "done", "skipped"}
