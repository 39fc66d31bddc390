"""Bootstrap intervals: degenerate cases equal the point fit; resampled accuracies have the
binomial moments; shapes and errors."""

import chex
import jax
import numpy as np
import pytest

from robustml_jax import effrob


def _correct(seed, m=12, sizes=(300, 200, 500)):
    rng = np.random.default_rng(seed)
    skill = rng.uniform(0.55, 0.9, m)
    return [rng.random((m, n)) < skill[:, None] for n in sizes]


def test_no_resampling_reproduces_point_fit():
    *ids, ood = _correct(0)
    res = effrob.bootstrap_from_correct(
        jax.random.key(0), ids, ood, num_samples=5, resample_models=False, resample_examples=False
    )
    id_acc = np.stack([c.mean(1) for c in ids], 1)
    fit = effrob.fit_effective_robustness(id_acc, ood.mean(1))
    er = effrob.effective_robustness(fit, id_acc, ood.mean(1))
    chex.assert_shape(res.coef, (5, 2))
    chex.assert_shape(res.er, (5, 12))
    for b in range(5):
        np.testing.assert_allclose(res.coef[b], fit.coef, atol=1e-4)
        np.testing.assert_allclose(res.r2[b], fit.r2, atol=1e-4)
        np.testing.assert_allclose(res.er[b], er, atol=1e-5)


def test_example_resampling_has_binomial_moments():
    """Models fixed, ID sets large (negligible noise), OOD set of n = 300 (padded to 512 inside):
    per-model ER samples are centred on the point ER and spread like Binomial(n, acc) / n,
    shrunk by the refit (leverage), so between 0.3x and 1.5x the binomial variance."""
    rng = np.random.default_rng(1)
    m, n = 8, 300
    skill = np.linspace(0.6, 0.9, m)
    ids = [rng.random((m, 4000)) < skill[:, None]]
    ood = rng.random((m, n)) < (skill - 0.05)[:, None]
    res = effrob.bootstrap_from_correct(
        jax.random.key(2), ids, ood, num_samples=1000, resample_models=False
    )
    id_acc = ids[0].mean(1, keepdims=True)
    fit = effrob.fit_effective_robustness(id_acc, ood.mean(1))
    er = np.asarray(res.er)
    np.testing.assert_allclose(
        er.mean(0), effrob.effective_robustness(fit, id_acc, ood.mean(1)), atol=0.006
    )
    acc = ood.mean(1)
    ratio = er.var(0) / (acc * (1 - acc) / n)
    assert np.all(ratio > 0.3) and np.all(ratio < 1.5), ratio


def test_accuracy_bootstrap_binomial_mean_and_variance():
    m, n = 8, 250
    acc = np.linspace(0.55, 0.92, m)
    id_acc = np.stack([acc, acc[::-1]], 1)
    ood = np.clip(acc + 0.01 * np.sin(np.arange(m)), 0.01, 0.99)
    res = effrob.bootstrap_from_accuracies(
        jax.random.key(3),
        id_acc,
        ood,
        id_sizes=None,
        ood_size=n,
        num_samples=1000,
        resample_models=False,
    )
    fit = effrob.fit_effective_robustness(id_acc, ood)
    pred = np.asarray(fit.predict(id_acc))
    # ER_b = resampled_ood - pred_b; regress out the fit change via the mean over b.
    er = np.asarray(res.er)
    chex.assert_shape(er, (1000, m))
    np.testing.assert_allclose(er.mean(0), ood - pred, atol=0.01)
    assert np.all(er.std(0) > 0.3 * np.sqrt(ood * (1 - ood) / n))


def test_confidence_interval_contains_point_estimate():
    *ids, ood = _correct(4)  # same shapes and sample count as below: one compile
    res = effrob.bootstrap_from_correct(jax.random.key(5), ids, ood, num_samples=100)
    id_acc = np.stack([c.mean(1) for c in ids], 1)
    fit = effrob.fit_effective_robustness(id_acc, ood.mean(1))
    lo, hi = effrob.confidence_interval(res.coef)
    assert np.all(lo <= np.asarray(fit.coef)) and np.all(np.asarray(fit.coef) <= hi)
    assert np.all(hi > lo)
    with pytest.raises(ValueError, match="level"):
        effrob.confidence_interval(res.r2, level=1.5)


def test_same_key_same_samples_and_bad_shapes():
    *ids, ood = _correct(6)
    a = effrob.bootstrap_from_correct(jax.random.key(7), ids, ood, num_samples=100)
    b = effrob.bootstrap_from_correct(jax.random.key(7), ids, ood, num_samples=100)
    chex.assert_trees_all_close(a, b)
    with pytest.raises(ValueError, match=r"must be \[M=5, N\]"):
        effrob.bootstrap_from_correct(jax.random.key(0), [ids[0][:5]], ood, num_samples=2)
    with pytest.raises(ValueError, match="rows"):
        effrob.bootstrap_from_accuracies(jax.random.key(0), np.full((4, 1), 0.5), np.full(3, 0.5))


def test_single_and_multi_replicates_are_paired():
    """Same key and test-set ids: the single-ID and two-ID fits see the same model resample and
    the same example draws, so their difference has a narrower spread than unpaired."""
    *ids, ood = _correct(8)  # the shapes of the tests above: the two-ID fit reuses a compile
    kw = dict(num_samples=100)
    multi = effrob.bootstrap_from_correct(jax.random.key(1), ids, ood, set_ids=[0, 1, 2], **kw)
    single = effrob.bootstrap_from_correct(jax.random.key(1), ids[:1], ood, set_ids=[0, 2], **kw)
    other = effrob.bootstrap_from_correct(jax.random.key(2), ids[:1], ood, set_ids=[0, 2], **kw)
    np.testing.assert_array_equal(multi.weights, single.weights)
    paired = np.std(np.asarray(multi.r2) - np.asarray(single.r2))
    unpaired = np.std(np.asarray(multi.r2) - np.asarray(other.r2))
    assert paired < 0.7 * unpaired, (paired, unpaired)


def test_cluster_and_stratified_resampling_keep_the_design():
    m = 12
    id_acc = np.linspace(0.6, 0.9, m)[:, None]
    ood = id_acc[:, 0] - 0.1
    runs = np.arange(m) // 3  # 4 runs of 3 snapshots
    groups = np.array([0] * 6 + [1] * 6)  # 2 runs per group
    bs = effrob.bootstrap_from_accuracies(
        jax.random.key(0), id_acc, ood, num_samples=50, clusters=runs, strata=groups
    )
    w = np.asarray(bs.weights)
    chex.assert_shape(w, (50, m))
    assert np.all(w.reshape(50, 4, 3) == w.reshape(50, 4, 3)[:, :, :1])  # a run moves whole
    np.testing.assert_array_equal(w[:, :6].sum(1), 6)  # each group keeps its size
    np.testing.assert_array_equal(w[:, 6:].sum(1), 6)
    with pytest.raises(ValueError, match="one stratum"):
        effrob.bootstrap_from_accuracies(
            jax.random.key(0), id_acc, ood, num_samples=2, clusters=runs, strata=np.arange(m) % 2
        )


def test_group_means_recompute_on_the_resample():
    values = np.array([[1.0, 2.0, 3.0, 4.0]])
    weights = np.array([[2.0, 0.0, 1.0, 0.0]])
    got = effrob.group_means(values, weights, np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(got, [[1.0, 3.0]])
    got = effrob.group_means(values, np.array([[0.0, 0.0, 1.0, 1.0]]), np.array([0, 0, 1, 1]))
    assert np.isnan(got[0, 0]) and got[0, 1] == 3.5
