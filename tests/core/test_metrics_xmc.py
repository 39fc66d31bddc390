"""Generic metrics appended for paper 6 (XMC uncertainty): calibration error."""

from __future__ import annotations

import numpy as np
import pytest

from robustml_jax.core import metrics


def _ece_numpy(conf, correct, num_bins):
    b = np.minimum((conf * num_bins).astype(int), num_bins - 1)
    total = 0.0
    for i in range(num_bins):
        sel = b == i
        if sel.any():
            total += sel.sum() / len(conf) * abs(correct[sel].mean() - conf[sel].mean())
    return total


def test_ece_by_hand():
    # Bin [0.8, 1]: confidences 0.9, 0.9 with one hit -> |0.5 - 0.9| * 2/4; bin [0, 0.2):
    # 0.1, 0.1 with no hit -> |0 - 0.1| * 2/4. ECE = 0.2 + 0.05.
    conf = np.array([0.9, 0.9, 0.1, 0.1], np.float32)
    correct = np.array([True, False, False, False])
    np.testing.assert_allclose(
        float(metrics.expected_calibration_error(conf, correct, num_bins=5)), 0.25, rtol=1e-6
    )


@pytest.mark.parametrize("seed", range(5))
def test_ece_matches_numpy_and_detects_inversion(seed):
    rng = np.random.default_rng(seed)
    conf = rng.random(500).astype(np.float32)
    correct = rng.random(500) < conf  # calibrated by construction
    got = float(metrics.expected_calibration_error(conf, correct, num_bins=10))
    np.testing.assert_allclose(got, _ece_numpy(conf, correct, 10), rtol=1e-5, atol=1e-6)
    assert got < 0.08
    inverted = float(metrics.expected_calibration_error(1 - conf, correct, num_bins=10))
    assert inverted > 0.3
