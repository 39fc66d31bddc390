"""WESR exact on tiny cases; the watermark test's calibration on simulated clean models."""

import numpy as np
import pytest
from scipy import stats

from robustml_jax import watermark as wm


def test_wesr_exact():
    clean = np.array([0, 1, 1, 0, 2, 1])
    trig = np.array([1, 1, 1, 1, 1, 0])
    # target 1: eligible = clean != 1 -> indices 0, 3, 4; flipped to 1 -> 0, 3, 4
    assert wm.wesr(clean, trig, 1) == (3, 3)
    # target 0: eligible -> 1, 2, 4, 5; flipped -> only 5
    assert wm.wesr(clean, trig, 0) == (1, 4)
    assert wm.wesr(np.array([1, 1]), np.array([1, 1]), 1) == (0, 0)
    with pytest.raises(ValueError, match="shape"):
        wm.wesr(clean, trig[:3], 1)
    with pytest.raises(TypeError, match="integer"):
        wm.wesr(clean.astype(float), trig, 1)


def test_choose_target_and_flip_stats_split_halves():
    assert wm.choose_target(np.array([2, 0, 2, 0, 1]), 3) == 0  # tie -> lowest id
    assert wm.choose_target(np.array([2, 2, 1]), 3) == 2
    clean = np.array([0, 0, 1, 0, 1, 1, 0, 0])
    trig = np.array([1, 1, 1, 0, 1, 1, 1, 0])
    # calibration = even indices: trig [1, 1, 1, 1] -> target 1
    # evaluation = odd indices: clean [0, 0, 1, 0], trig [1, 0, 1, 0]: eligible 3, flipped 1
    fs = wm.flip_stats(clean, trig, 2)
    assert fs == wm.FlipStats(1, 1, 3, 1 / 3)
    with pytest.raises(ValueError, match="at least 2"):
        wm.flip_stats(clean[:1], trig[:1], 2)


def _simulate(rng, trials, m, n, a, b):
    """Clean models whose flip rates vary between fine-tuning runs (Beta(a, b)), each measured
    on n eligible probe texts: (reference rates [trials, m], fresh model's flips [trials])."""
    rates = rng.beta(a, b, size=(trials, m + 1))
    flips = rng.binomial(n, rates)
    return flips[:, :m] / n, flips[:, m]


@pytest.mark.parametrize("m", [4, 8])
def test_pvalue_holds_its_level_on_clean_models_and_naive_binomial_does_not(m):
    rng = np.random.default_rng(0)
    n, trials = 120, 3000
    ref, k = _simulate(rng, trials, m, n, a=4.0, b=60.0)  # mean 6%, between-model sd ~3%
    p = np.array([wm.watermark_pvalue(k[i] / n, ref[i], n) for i in range(trials)])
    naive = np.array([wm.binomial_pvalue(k[i], n, ref[i].mean()) for i in range(trials)])
    se = np.sqrt(0.05 * 0.95 / trials)
    for alpha in (0.05, 0.01):
        assert np.mean(p < alpha) <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / trials)
    # the naive test ignores the spread between clean models: far above its level (an
    # anti-conservative test fails the check above)
    assert np.mean(naive < 0.05) > 0.05 + 10 * se
    # and ours is not trivially conservative: most of its level is used
    assert np.mean(p < 0.05) > 0.02


def test_pvalue_detects_a_watermark_and_exact_formula():
    ref = [0.04, 0.07, 0.05, 0.06, 0.03]
    p = wm.watermark_pvalue(0.9, ref, 150)
    assert p < 1e-3
    g = np.arcsin(np.sqrt(ref))
    s = max(np.std(g, ddof=1), 0.5 / np.sqrt(150))
    t = (np.arcsin(np.sqrt(0.9)) - g.mean()) / (s * np.sqrt(1 + 1 / 5))
    assert p == pytest.approx(stats.t.sf(t, 4), rel=1e-12)
    assert wm.watermark_pvalue(0.05, ref, 150) > 0.3
    with pytest.raises(ValueError, match=">= 2 clean"):
        wm.watermark_pvalue(0.5, [0.1], 100)
    with pytest.raises(ValueError, match="finite"):
        wm.watermark_pvalue(float("nan"), ref, 100)
    assert wm.binomial_pvalue(3, 10, 0.5) == pytest.approx(stats.binom.sf(2, 10, 0.5))
