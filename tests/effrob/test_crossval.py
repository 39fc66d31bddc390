"""Out-of-fold predictions against an independent per-fold least-squares reference."""

import jax
import numpy as np
import pytest
from scipy.special import expit, logit

from robustml_jax import effrob


def _plane(m=30, seed=0, noise=0.0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(m, 2))
    ood = expit(0.3 + 0.8 * z[:, 0] + 0.5 * z[:, 1] + noise * rng.normal(size=m))
    return expit(z), ood


def test_matches_numpy_refit_per_fold():
    id_acc, ood = _plane(noise=0.3)
    folds = effrob.kfold_assignment(jax.random.key(0), 30, 5)
    assert np.bincount(folds).tolist() == [6] * 5
    got = np.asarray(effrob.out_of_fold_predictions(id_acc, ood, folds))
    x = np.concatenate([np.ones((30, 1)), logit(id_acc)], 1)
    for f in range(5):
        held = folds == f
        beta = np.linalg.lstsq(x[~held], logit(ood[~held]), rcond=None)[0]
        np.testing.assert_allclose(got[held], expit(x[held] @ beta), atol=2e-5)


def test_plane_is_predicted_out_of_fold_only_with_both_id_sets():
    id_acc, ood = _plane()
    groups = np.repeat(np.arange(3), 10)  # leave-one-group-out
    multi = np.asarray(effrob.out_of_fold_predictions(id_acc, ood, groups))
    single = np.asarray(effrob.out_of_fold_predictions(id_acc[:, 0], ood, groups))
    np.testing.assert_allclose(multi, ood, atol=1e-4)
    assert np.mean(np.abs(single - ood)) > 0.03


def test_errors():
    id_acc, ood = _plane(m=6)
    with pytest.raises(ValueError, match="at least 3 models"):
        effrob.out_of_fold_predictions(id_acc, ood, np.array([0, 0, 0, 0, 1, 1]))
    with pytest.raises(ValueError, match="must be"):
        effrob.out_of_fold_predictions(id_acc, ood, np.zeros(5, int))
    with pytest.raises(ValueError, match="num_folds"):
        effrob.kfold_assignment(jax.random.key(0), 6, 7)
