"""Coverage of the bootstrap intervals on simulated zoos with a known truth.

Nominal 95% percentile intervals of the per-group ER of the two-ID fit must cover the truth in
90-99% of simulations, and be no wider than needed: their mean width is compared with the
width an oracle would use, 2 x 1.96 x the estimate's standard deviation over simulations.
The statistic is recomputed on every resample (the models a replicate drew, weighted by their
counts), models are resampled within their training group (a designed zoo fixes the group
sizes) and, where snapshots of one training run are in the zoo, by whole runs.

- ``fixed``: the issue's set-up, 60 models exactly on a logit plane, 600 examples per test
  set; only the test examples are random. Truth = the statistic on the true accuracies.
- ``population``: 60 models drawn from three training groups (20 each) plus example noise;
  truth = the statistic of the population (a 200,000-model sample without example noise).
- ``cluster``: 60 training runs (20 per group) x 3 correlated snapshots; resampling the 180
  snapshots as independent models gives intervals that are too narrow; resampling runs covers.

Models-only resampling covers all three: each model's test-example noise is independent
across models here and already shows in the spread between models (adding a binomial example
resample on top counts it twice, about 1.3x too wide in ``population``).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.special import expit

from robustml_jax import effrob

G, N = 3, 600
COEF, INTERCEPT = np.array([0.7, 0.5]), 0.3
CENTRES = np.array([[1.2, -0.4], [-0.4, 1.2], [0.4, 0.4]])
SHIFT = np.array([0.15, 0.0, -0.1])  # true group effect in logit space


def _draw(rng, design, m):
    """Latent ID logits z [m, 2], group ids, OOD logit, training-run ids."""
    if design == "cluster":  # m // 3 runs x 3 snapshots sharing a run effect
        r = m // 3
        run_groups = np.arange(r) % G
        base = CENTRES[run_groups] + 0.6 * rng.normal(size=(r, 2))
        z = np.repeat(base, 3, 0) + 0.05 * rng.normal(size=(m, 2))
        groups = np.repeat(run_groups, 3)
        ood = z @ COEF + INTERCEPT + SHIFT[groups] + np.repeat(0.25 * rng.normal(size=r), 3)
        return z, groups, ood + 0.02 * rng.normal(size=m), np.arange(m) // 3
    groups = np.arange(m) % G
    z = CENTRES[groups] + 0.6 * rng.normal(size=(m, 2))
    ood = z @ COEF + INTERCEPT + SHIFT[groups] + 0.15 * rng.normal(size=m)
    return z, groups, ood, np.arange(m)


def _group_er(id_acc, ood_acc, groups):
    fit = effrob.fit_effective_robustness(id_acc, ood_acc)
    er = np.asarray(effrob.effective_robustness(fit, id_acc, ood_acc), np.float64)
    return np.array([er[groups == g].mean() for g in range(G)])


def simulate(design, num_sims, *, clusters=True, num_boot=200):
    """Returns (covered [S, G], widths [S, G], estimates [S, G])."""
    rng = np.random.default_rng(0)
    m = 180 if design == "cluster" else 60
    if design == "fixed":
        z, groups, _, runs = _draw(rng, "population", m)
        true_id, true_ood = expit(z), expit(z @ COEF + INTERCEPT)  # exactly on the plane
        truth = _group_er(true_id, true_ood, groups)
    else:
        big = 200_001 if design == "cluster" else 200_000
        z, g_big, ood, _ = _draw(np.random.default_rng(123), design, big - big % 3)
        truth = _group_er(expit(z), expit(ood), g_big)
    covered, widths, estimates = [], [], []
    for s in range(num_sims):
        if design != "fixed":
            z, groups, ood, runs = _draw(rng, design, m)
            true_id, true_ood = expit(z), expit(ood)
        id_acc = rng.binomial(N, true_id) / N
        ood_acc = rng.binomial(N, true_ood) / N
        bs = effrob.bootstrap_from_accuracies(
            jax.random.key(s),
            id_acc,
            ood_acc,
            num_samples=num_boot,
            clusters=runs if clusters else None,
            strata=groups,
        )
        lo, hi = effrob.confidence_interval(effrob.group_means(bs.er, bs.weights, groups))
        covered.append((lo <= truth) & (truth <= hi))
        widths.append(hi - lo)
        estimates.append(_group_er(id_acc, ood_acc, groups))
    return np.array(covered), np.array(widths), np.array(estimates)


def _check(covered, widths, estimates, *, max_width_ratio=1.25):
    rate = covered.mean()
    ratio = widths.mean(axis=0) / (2 * 1.96 * estimates.std(axis=0))
    assert 0.90 <= rate <= 0.99, (rate, covered.mean(axis=0))
    assert np.all(ratio < max_width_ratio) and np.all(ratio > 0.8), ratio


def test_group_er_intervals_cover():
    _check(*simulate("population", 100))


@pytest.mark.slow
def test_run_bootstrap_covers_snapshot_zoos():
    _check(*simulate("cluster", 100))


@pytest.mark.slow
def test_iid_bootstrap_of_snapshots_is_too_narrow():
    covered, widths, estimates = simulate("cluster", 100, clusters=False)
    assert covered.mean() < 0.88
    assert np.all(widths.mean(axis=0) < 0.8 * 2 * 1.96 * estimates.std(axis=0))


@pytest.mark.slow
@pytest.mark.parametrize("design", ["fixed", "population", "cluster"])
def test_group_er_intervals_cover_many_simulations(design):
    _check(*simulate(design, 500), max_width_ratio=1.2)
