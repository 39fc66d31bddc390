"""core.metrics against independent references (sklearn, numpy) and coverage simulations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from robustml_jax.core import metrics


def _scores(seed, n=300, sep=1.0):
    rng = np.random.default_rng(seed)
    pos = rng.random(n) < 0.4
    s = rng.normal(size=n) + sep * pos
    return s.astype(np.float32), pos


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_ap_match_sklearn(seed):
    s, pos = _scores(seed)
    s = np.round(s, 1)  # ties
    np.testing.assert_allclose(metrics.auroc(s, pos), roc_auc_score(pos, s), atol=1e-5)
    np.testing.assert_allclose(
        metrics.average_precision(s, pos), average_precision_score(pos, s), atol=1e-5
    )
    # An inverted score must give the complementary AUROC.
    np.testing.assert_allclose(metrics.auroc(-s, pos), 1 - roc_auc_score(pos, s), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 3])
def test_fpr_at_tpr_matches_roc_curve(seed):
    s, pos = _scores(seed)
    fpr, tpr, _ = roc_curve(pos, s)
    want = fpr[np.searchsorted(tpr, 0.95, side="left")]
    np.testing.assert_allclose(metrics.fpr_at_tpr(s, pos, tpr=0.95), want, atol=1e-6)
    assert float(metrics.fpr_at_tpr(s + 10 * pos, pos)) == 0.0  # perfect separation


def test_risk_coverage_exact_on_tiny_case():
    unc = jnp.array([0.9, 0.1, 0.5, 0.3])
    err = jnp.array([True, False, True, False])
    rc = metrics.risk_coverage(unc, err)
    # kept order: 0.1 (ok), 0.3 (ok), 0.5 (err), 0.9 (err)
    np.testing.assert_allclose(rc.risk, [0, 0, 1 / 3, 0.5])
    np.testing.assert_allclose(rc.coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(rc.aurc, np.mean([0, 0, 1 / 3, 0.5]))
    assert float(metrics.risk_coverage(-unc, err).aurc) > float(rc.aurc)  # inverted is worse


def test_stacked_accuracy_matches_numpy():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 4, 3)).astype(np.float32)  # R=5 linear models
    x = rng.normal(size=(37, 4)).astype(np.float32)
    y = rng.integers(0, 3, 37)
    acc = metrics.stacked_accuracy(w, x, y, apply_fn=lambda p, xb: xb @ p, chunk=10)
    want = [(np.argmax(x @ w[r], -1) == y).mean() for r in range(5)]
    np.testing.assert_allclose(acc, want)
    with pytest.raises(ValueError, match="37 rows but labels has 36"):
        metrics.stacked_accuracy(w, x, y[:-1], apply_fn=lambda p, xb: xb @ p)


def test_bootstrap_interval_covers_the_mean_at_nominal_rate():
    """Nominal 95% percentile intervals of a mean cover the truth 90-99% of the time and are
    about as wide as the normal-theory interval (not wider than needed)."""
    rng = np.random.default_rng(0)
    hits, widths = 0, []
    for i in range(200):
        x = rng.normal(size=60).astype(np.float32)
        iv = metrics.bootstrap_interval(jax.random.key(i), jnp.mean, x, num_samples=400)
        hits += float(iv.low) <= 0.0 <= float(iv.high)
        widths.append(float(iv.high - iv.low))
    assert 0.90 <= hits / 200 <= 0.99
    ideal = 2 * 1.96 / np.sqrt(60)
    assert 0.8 * ideal < np.mean(widths) < 1.1 * ideal


def test_paired_bootstrap_of_a_difference_is_narrower_than_unpaired():
    s, pos = _scores(0, n=400)
    noise = np.random.default_rng(1).normal(size=400).astype(np.float32) * 0.3
    a, b = s, s + noise  # two strongly correlated scores

    def diff(a, b, pos):
        return metrics.auroc(a, pos) - metrics.auroc(b, pos)

    paired = metrics.bootstrap_interval(jax.random.key(0), diff, a, b, pos, num_samples=300)
    ia = metrics.bootstrap_interval(jax.random.key(1), metrics.auroc, a, pos, num_samples=300)
    ib = metrics.bootstrap_interval(jax.random.key(2), metrics.auroc, b, pos, num_samples=300)
    unpaired_width = np.hypot(ia.high - ia.low, ib.high - ib.low)
    assert paired.low <= paired.estimate <= paired.high
    assert (paired.high - paired.low) < 0.6 * unpaired_width


def test_cluster_bootstrap_widens_for_correlated_rows():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(20), 3)  # 20 runs x 3 snapshots that share the run's effect
    x = (np.repeat(rng.normal(size=20), 3) + 0.1 * rng.normal(size=60)).astype(np.float32)
    iid = metrics.bootstrap_interval(jax.random.key(0), jnp.mean, x, num_samples=500)
    clus = metrics.bootstrap_interval(
        jax.random.key(0), jnp.mean, x, num_samples=500, groups=groups
    )
    assert (clus.high - clus.low) > 1.4 * (iid.high - iid.low)
    with pytest.raises(ValueError, match="groups must have shape"):
        metrics.bootstrap_interval(jax.random.key(0), jnp.mean, x, groups=groups[:-1])
