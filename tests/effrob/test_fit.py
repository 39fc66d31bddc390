"""The effective-robustness fit against independent least-squares references."""

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from robustml_jax import effrob


def _random_table(seed, m, k, noise=0.2):
    rng = np.random.default_rng(seed)
    z_id = rng.normal(0.0, 1.0, (m, k))
    z_ood = z_id @ rng.uniform(0.3, 1.2, k) - 0.4 + noise * rng.normal(size=m)
    return scipy.special.expit(z_id), scipy.special.expit(z_ood)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_fit_matches_numpy_lstsq(x64, k):
    id_acc, ood_acc = _random_table(k, 40, k)
    fit = effrob.fit_effective_robustness(jnp.asarray(id_acc), jnp.asarray(ood_acc))
    x = np.column_stack([np.ones(40), scipy.special.logit(id_acc)])
    y = scipy.special.logit(ood_acc)
    beta, res, *_ = np.linalg.lstsq(x, y, rcond=None)
    np.testing.assert_allclose(float(fit.intercept), beta[0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(fit.coef), beta[1:], atol=1e-6)
    r2 = 1 - res[0] / np.sum((y - y.mean()) ** 2)
    np.testing.assert_allclose(float(fit.r2), r2, atol=1e-6)
    pred = scipy.special.expit(x @ beta)
    np.testing.assert_allclose(np.asarray(fit.predict(jnp.asarray(id_acc))), pred, atol=1e-6)
    er = effrob.effective_robustness(fit, jnp.asarray(id_acc), jnp.asarray(ood_acc))
    chex.assert_shape(er, (40,))
    np.testing.assert_allclose(np.asarray(er), ood_acc - pred, atol=1e-6)
    np.testing.assert_allclose(float(fit.mae), np.mean(np.abs(ood_acc - pred)), atol=1e-6)


def test_single_id_matches_scipy_linregress_probit(x64):
    id_acc, ood_acc = _random_table(7, 25, 1)
    fit = effrob.fit_effective_robustness(id_acc, ood_acc, transform="probit")
    ref = scipy.stats.linregress(scipy.stats.norm.ppf(id_acc[:, 0]), scipy.stats.norm.ppf(ood_acc))
    np.testing.assert_allclose(float(fit.coef[0]), ref.slope, atol=1e-6)
    np.testing.assert_allclose(float(fit.intercept), ref.intercept, atol=1e-6)
    np.testing.assert_allclose(float(fit.r2), ref.rvalue**2, atol=1e-6)


def test_weights_equal_duplicated_rows(x64):
    id_acc, ood_acc = _random_table(3, 12, 2)
    counts = np.array([0, 1, 2, 3, 1, 0, 1, 2, 1, 1, 2, 1])
    a = effrob.fit_effective_robustness(id_acc, ood_acc, weights=counts)
    rep = np.repeat(np.arange(12), counts)
    b = effrob.fit_effective_robustness(id_acc[rep], ood_acc[rep])
    chex.assert_trees_all_close(a, b, atol=1e-9)


def test_exactly_linear_data_has_zero_er_and_unit_r2():
    z = np.linspace(-2, 2, 10)
    id_acc = scipy.special.expit(np.stack([z, z**2], axis=1))
    ood_acc = scipy.special.expit(0.3 + 0.8 * z - 0.5 * z**2)
    fit = effrob.fit_effective_robustness(id_acc, ood_acc)
    er = effrob.effective_robustness(fit, id_acc, ood_acc)
    np.testing.assert_allclose(np.asarray(er), 0.0, atol=2e-5)
    np.testing.assert_allclose(float(fit.r2), 1.0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(fit.coef), [0.8, -0.5], atol=1e-3)


def test_multi_id_removes_spurious_single_id_er():
    """Two groups trained on different data: OOD depends on both ID accuracies. A single-ID fit
    gives the groups opposite ER; the two-ID fit gives both zero."""
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(0.5, 2.0, 20), rng.uniform(-1.0, 0.5, 20)])
    b = np.concatenate([rng.uniform(-1.0, 0.5, 20), rng.uniform(0.5, 2.0, 20)])
    id_acc = scipy.special.expit(np.stack([a, b], 1))
    ood = scipy.special.expit(0.5 * a + 0.5 * b)
    single = effrob.fit_effective_robustness(id_acc[:, :1], ood)
    er1 = np.asarray(effrob.effective_robustness(single, id_acc[:, :1], ood))
    multi = effrob.fit_effective_robustness(id_acc, ood)
    er2 = np.asarray(effrob.effective_robustness(multi, id_acc, ood))
    assert er1[20:].mean() > 0.02 and er1[:20].mean() < -0.02
    assert np.abs(er2).max() < 1e-4
    assert float(multi.r2) == pytest.approx(1.0, abs=1e-4)  # the plane, not only "higher"


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(1e-4, 1 - 1e-4), min_size=16, max_size=16),
    st.sampled_from(effrob.TRANSFORMS),
)
def test_transforms_round_trip(ps, transform):
    p = np.asarray(ps, np.float32)
    back = effrob.inverse(effrob.forward(p, transform), transform)
    np.testing.assert_allclose(np.asarray(back), p, rtol=2e-4, atol=1e-6)


def test_transforms_match_scipy():
    p = np.linspace(0.01, 0.99, 50)
    np.testing.assert_allclose(effrob.forward(p, "logit"), scipy.special.logit(p), rtol=1e-5)
    np.testing.assert_allclose(effrob.forward(p, "probit"), scipy.stats.norm.ppf(p), atol=1e-5)


def test_fit_is_jittable_and_traces_once():
    id_acc, ood_acc = _random_table(1, 20, 2)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(i, o):
        fit = effrob.fit_effective_robustness(i, o)
        return effrob.effective_robustness(fit, i, o), fit.r2

    er, r2 = run(jnp.asarray(id_acc, jnp.float32), jnp.asarray(ood_acc, jnp.float32))
    run(jnp.asarray(id_acc[::-1], jnp.float32), jnp.asarray(ood_acc[::-1], jnp.float32))
    eager = effrob.fit_effective_robustness(id_acc, ood_acc)
    np.testing.assert_allclose(float(r2), float(eager.r2), rtol=1e-5)
    chex.assert_tree_all_finite(er)


@pytest.mark.parametrize(
    ("id_acc", "ood_acc", "match"),
    [
        (np.full((5, 1), 0.5), np.array([0.5, 0.6, 1.2, 0.5, 0.5]), r"fractions in \[0, 1\]"),
        (np.full((5, 1), 50.0), np.full(5, 0.5), "not percentages"),
        (np.array([[0.5], [np.nan], [0.6], [0.7]]), np.full(4, 0.5), "NaN"),
        (np.full((5, 1), 0.5), np.full(4, 0.5), "rows"),
        (np.full((2, 2), 0.5), np.full(2, 0.5), "fewer models"),
        (np.full((5, 1, 1), 0.5), np.full(5, 0.5), "dimension"),
    ],
)
def test_bad_input_raises(id_acc, ood_acc, match):
    with pytest.raises(ValueError, match=match):
        effrob.fit_effective_robustness(id_acc, ood_acc)


def test_unknown_transform_and_k_mismatch():
    id_acc, ood_acc = _random_table(2, 10, 2)
    with pytest.raises(ValueError, match="unknown transform"):
        effrob.fit_effective_robustness(id_acc, ood_acc, transform="arcsin")
    with pytest.raises(ValueError, match="non-negative"):
        effrob.fit_effective_robustness(id_acc, ood_acc, weights=-np.ones(10))
    with pytest.raises(ValueError, match="weights must be 10"):
        effrob.fit_effective_robustness(id_acc, ood_acc, weights=np.ones(9))
    fit = effrob.fit_effective_robustness(id_acc, ood_acc)
    with pytest.raises(ValueError, match="2 ID test set"):
        fit.predict(id_acc[:, :1])


def test_exact_zero_and_one_are_clipped_with_warning():
    id_acc, ood_acc = _random_table(4, 10, 1)
    id_acc[0, 0], ood_acc[1] = 1.0, 0.0
    with pytest.warns(UserWarning, match="exactly 0 or 1"):
        fit = effrob.fit_effective_robustness(id_acc, ood_acc)
    chex.assert_tree_all_finite((fit.coef, fit.intercept, fit.r2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        effrob.fit_effective_robustness(id_acc[2:], ood_acc[2:])
