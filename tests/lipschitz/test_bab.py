"""branch_and_bound against oracle bound functions whose answers are known exactly.

Each domain (a split vector s in {-1, 0, +1}^S) gets the exact max of a table of values over the
full sign patterns it contains, plus a slack that depends on the split: the tests can then tell
a correct search from one that loses domains, splits the wrong child, keeps infeasible domains
or lets a child's bound exceed its parent's.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax import lipschitz

S = 4  # neurons: 16 full patterns
PATTERNS = jnp.asarray(list(itertools.product((-1, 1), repeat=S)), jnp.int8)  # [2^S, S]


def oracle(values, *, slack_free=0.0, slack_split=0.0):
    """bound(split) = max of ``values`` over the patterns in the domain + slacks; -inf if none.

    ``slack_free`` per free neuron makes the bound loose but tightening with depth;
    ``slack_split`` per split neuron makes children looser than their parent (still sound).
    Score: free neurons by index (splits neuron 0 first), -inf for split ones.
    """

    def bound_fn(split):
        inside = jnp.all((split == 0) | (split == PATTERNS), axis=1)
        best = jnp.max(jnp.where(inside, values, -jnp.inf))
        free = (split == 0).sum()
        bound = best + slack_free * free + slack_split * (S - free)
        score = jnp.where(split == 0, S - jnp.arange(S, dtype=values.dtype), -jnp.inf)
        return jnp.where(jnp.isfinite(best), bound, -jnp.inf), score

    return bound_fn


@functools.partial(jax.jit, static_argnames=("steps", "batch", "slack_free", "slack_split"))
def run(values, *, steps, batch, slack_free=0.0, slack_split=0.0):
    return lipschitz.branch_and_bound(
        oracle(values, slack_free=slack_free, slack_split=slack_split),
        num_neurons=S,
        steps=steps,
        batch=batch,
    )


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("batch", [1, 3])
def test_reaches_the_exact_max_and_stays_above_it(seed, batch):
    """Loose bounds (1 per free neuron): enough steps must split every domain down to full
    patterns and return the max exactly; at every step the bound stays >= the max."""
    values = jnp.asarray(np.random.default_rng(seed).normal(size=2**S), jnp.float32)
    res = run(values, steps=2**S, batch=batch, slack_free=1.0)
    hist = np.asarray(res.history)
    want = float(values.max())
    np.testing.assert_allclose(hist[0], want + S, rtol=1e-6)  # the root's bound
    assert np.all(hist >= want - 1e-6), hist
    np.testing.assert_allclose(float(res.bound), want, rtol=1e-6)
    assert np.all(np.diff(hist) <= 1e-6), hist


def test_children_looser_than_parent_are_capped():
    """Children whose own bound grows with depth (sound, but looser than the parent's): the
    global bound must never rise above the root's. A BaB that took the children's bounds
    without capping them at the parent's would rise here."""
    values = jnp.asarray(np.random.default_rng(7).normal(size=2**S), jnp.float32)
    res = run(values, steps=6, batch=2, slack_split=0.5)
    hist = np.asarray(res.history)
    assert np.all(np.diff(hist) <= 1e-6), hist
    np.testing.assert_allclose(hist[-1], hist[0], rtol=1e-6)
    np.testing.assert_allclose(hist[0], float(values.max()), rtol=1e-6)


def test_infeasible_domains_are_dropped():
    """Patterns with neuron 0 active are infeasible (-inf): after splitting neuron 0 the bound
    is the max over the other half only, and the empty child is not counted as open."""
    values = jnp.arange(2.0**S, dtype=jnp.float32)  # the max (15) has neuron 0 active
    values = jnp.where(PATTERNS[:, 0] > 0, -jnp.inf, values)
    res = run(values, steps=1, batch=1, slack_free=0.0)
    want = float(values.max())  # 7: neuron 0 inactive
    np.testing.assert_allclose(float(res.bound), want)
    assert int(res.num_open) == 1


def test_one_step_splits_the_highest_scoring_neuron():
    """One step, batch 1: the root is split on neuron 0 (highest score) into two children; the
    bound is the larger child's, which the oracle gives exactly."""
    values = jnp.asarray(np.random.default_rng(3).normal(size=2**S), jnp.float32)
    res = run(values, steps=1, batch=1, slack_free=1.0)
    child = [
        float(values[PATTERNS[:, 0] == s].max()) + (S - 1) * 1.0 for s in (-1, 1)
    ]  # three free neurons left in each child
    np.testing.assert_allclose(float(res.bound), max(child), rtol=1e-6)
    assert int(res.num_open) == 2
