"""Ensemble uncertainty: decomposition identities, beam approximation vs exact scoring and its
bound, OOD split semantics."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from robustml_jax import xmc


@pytest.fixture(scope="module")
def ensemble(members, problem):
    return members, problem[2], problem[3]


def test_label_uncertainty_matches_numpy(x64):
    h = lambda q: -(q * np.log(q) + (1 - q) * np.log(1 - q))
    for seed in range(10):
        p = np.random.default_rng(seed).random((4, 7))
        got = xmc.label_uncertainty(jnp.asarray(p, jnp.float64))
        assert got.total.dtype == jnp.float64
        np.testing.assert_allclose(got.mean, p.mean(0), rtol=1e-12)
        np.testing.assert_allclose(got.total, h(p.mean(0)), rtol=1e-9)
        np.testing.assert_allclose(got.aleatoric, h(p).mean(0), rtol=1e-9)
        np.testing.assert_allclose(got.epistemic, h(p.mean(0)) - h(p).mean(0), atol=1e-12)
        np.testing.assert_allclose(got.var, p.var(0), rtol=1e-9)


def test_label_uncertainty_hand_values():
    """Two members that disagree (0.1 vs 0.9) and two that agree (0.3, 0.3), by hand:
    H(0.5) = ln 2, H(0.1) = H(0.9) = 0.325083, H(0.3) = 0.610864."""
    out = xmc.label_uncertainty(jnp.asarray([[0.1, 0.3], [0.9, 0.3]]))
    np.testing.assert_allclose(out.mean, [0.5, 0.3], rtol=1e-6)
    np.testing.assert_allclose(out.var, [0.16, 0.0], atol=1e-6)
    np.testing.assert_allclose(out.total, [np.log(2), 0.610864], rtol=1e-5)
    np.testing.assert_allclose(out.aleatoric, [0.325083, 0.610864], rtol=1e-5)
    np.testing.assert_allclose(out.epistemic, [np.log(2) - 0.325083, 0.0], atol=1e-5)


def test_agreeing_members_have_no_epistemic_uncertainty():
    p = jnp.asarray([[0.3, 0.9]] * 5)
    out = xmc.label_uncertainty(p)
    chex.assert_trees_all_close(out.epistemic, jnp.zeros(2), atol=1e-6)
    chex.assert_trees_all_close(out.total, out.aleatoric, atol=1e-6)


def _tiny_ensemble():
    """Two members, two instances, labels 0..3. Instance 0: both members confident on label 0.
    Instance 1: flat, disagreeing scores. Member 1 misses label 3 on instance 0."""
    labels = np.array([[[0, 1, 2], [1, 2, 0]], [[0, 1, 3], [2, 1, 0]]], np.int32)  # [M=2, N=2, k=3]
    scores = np.array(
        [[[0.9, 0.1, 0.05], [0.5, 0.4, 0.3]], [[0.9, 0.1, 0.04], [0.45, 0.35, 0.2]]], np.float32
    )
    taus = np.array([[0.01, 0.2], [0.02, 0.1]], np.float32)
    return labels, scores, taus


def _numpy_instance_scores(p):
    """Reference for p: [M, K] member scores of the retrieved labels of one instance."""
    h = lambda q: -(q * np.log(q) + (1 - q) * np.log(1 - q))
    m = p.mean(0)
    q = p / p.sum(-1, keepdims=True)
    ent = lambda a: -(a * np.log(a)).sum(-1)
    return {
        "total": h(m).mean(),
        "aleatoric": h(p).mean(0).mean(),
        "epistemic": (h(m) - h(p).mean(0)).mean(),
        "var": p.var(0).mean(),
        "one_minus_top": 1 - m.max(),
        "cat_total": ent(q.mean(0)),
        "cat_epistemic": ent(q.mean(0)) - ent(q).mean(),
    }


def test_combine_members_by_hand():
    labels, scores, taus = _tiny_ensemble()
    out = jax.jit(xmc.combine_members, static_argnames="topk")(labels, scores, taus, topk=3)
    # Instance 0: means label 0: 0.9, label 1: 0.1, label 2: (0.05 + 0)/2, label 3: 0.02.
    np.testing.assert_array_equal(out.labels[0], [0, 1, 2])
    np.testing.assert_allclose(out.mean[0], [0.9, 0.1, 0.025], rtol=1e-6)
    np.testing.assert_allclose(out.member_scores[:, 0], [[0.9, 0.1, 0.05], [0.9, 0.1, 0.0]])
    # Label 2 was not returned by member 1: bound = tau_1 / M = 0.01; the others are exact.
    np.testing.assert_allclose(out.bound[0], [0.0, 0.0, 0.01], rtol=1e-6)
    # Tail: max(mean tau = 0.015, dropped label 3: mean 0.02 + bound tau_0 / 2 = 0.025).
    np.testing.assert_allclose(out.tail_bound[0], 0.025, rtol=1e-6)
    # Instance 1: label 0: (0.3 + 0.2) / 2, label 1: (0.5 + 0.35) / 2, label 2: (0.4 + 0.45) / 2.
    np.testing.assert_array_equal(out.labels[1], [1, 2, 0])
    np.testing.assert_allclose(out.mean[1], [0.425, 0.425, 0.25], rtol=1e-6)


def test_instance_uncertainty_exact_values_and_direction():
    """Every instance-level score equals its NumPy definition, and every one of them says the
    flat, disagreeing instance 1 is more uncertain than the confident instance 0 (an inverted
    or swapped score fails)."""
    p = np.array(  # [M=2, N=2, labels 0..2]
        [[[0.9, 0.1, 0.05], [0.5, 0.4, 0.3]], [[0.9, 0.1, 0.05], [0.2, 0.35, 0.45]]], np.float32
    )
    labels = np.broadcast_to(np.arange(3, dtype=np.int32), p.shape)
    taus = np.zeros((2, 2), np.float32)
    out = xmc.EnsembleOutput(*(np.asarray(a) for a in xmc.combine_members(labels, p, taus, topk=3)))
    inst = xmc.instance_uncertainty(out)
    for i in range(2):
        ref = _numpy_instance_scores(p[:, i].astype(np.float64))
        for name, want in ref.items():
            np.testing.assert_allclose(
                getattr(inst, name)[i], want, rtol=1e-4, atol=1e-6, err_msg=name
            )
    for name in inst._fields:
        v = getattr(inst, name)
        assert v[1] > v[0] + 1e-3, (name, v)
    agree = [inst.epistemic[0], inst.var[0], inst.cat_epistemic[0]]
    np.testing.assert_allclose(agree, 0, atol=1e-6)
    np.testing.assert_allclose(inst.one_minus_top, [0.1, 1 - 0.375], rtol=1e-5)


def test_beam_ensemble_with_full_beam_equals_exact(ensemble):
    members, X, _ = ensemble
    exact = xmc.ensemble_exact(members, X, topk=5)
    beam = min(m.num_leaf_clusters for m in members)
    approx = xmc.ensemble_predict(members, X, beam_size=beam, topk=5, member_topk=48)
    chex.assert_shape(approx.labels, (150, 5))
    np.testing.assert_array_equal(approx.labels, exact.labels)
    np.testing.assert_allclose(approx.mean, exact.mean, atol=1e-6)
    np.testing.assert_allclose(approx.epistemic, exact.epistemic, atol=1e-5)
    np.testing.assert_allclose(approx.bound, 0.0, atol=1e-6)


def test_bound_holds_and_error_shrinks_with_beam(ensemble):
    members, X, _ = ensemble
    _, p_all = xmc.ensemble_exact(members, X, topk=5, return_all=True)
    mean_all = p_all.mean(0)
    errs = []
    for beam in (1, 2, 4, 8):
        a = xmc.ensemble_predict(members, X, beam_size=beam, topk=5)
        ok = a.labels >= 0
        true = np.take_along_axis(mean_all, np.maximum(a.labels, 0), 1)
        assert (np.abs(a.mean - true)[ok] <= a.bound[ok] + 1e-6).all()
        hidden = np.ones_like(mean_all, bool)
        np.put_along_axis(hidden, np.maximum(a.labels, 0), False, axis=1)
        assert (np.where(hidden, mean_all, 0).max(1) <= a.tail_bound + 1e-6).all()
        errs.append(np.abs(a.mean - true)[ok].mean())
    assert errs[-1] < 0.25 * errs[0], errs


def test_ood_split_semantics():
    rng = np.random.default_rng(0)
    # Labels 0-7 co-occur with features 0-9, labels 8-15 with 10-19: two clean groups.
    rows_x, rows_y = [], []
    for i in range(400):
        g = i % 2
        labs = rng.choice(8, 2, replace=False) + 8 * g
        x = np.zeros(20, np.float32)
        x[rng.choice(10, 4, replace=False) + 10 * g] = 1
        rows_x.append(x)
        y = np.zeros(16, np.float32)
        y[labs] = 1
        rows_y.append(y)
    X = xmc.l2_normalize_rows(sp.csr_matrix(np.stack(rows_x)))
    Y = sp.csr_matrix(np.stack(rows_y))
    s = xmc.ood_split(jax.random.key(0), X[:300], Y[:300], X[300:], Y[300:], num_groups=2)
    held = set(s.held_out.tolist())
    assert held in ({*range(8)}, {*range(8, 16)})
    assert s.Y_train.shape[1] == 8 and s.is_ood.sum() == 50 and (~s.is_ood).sum() == 50
    assert sorted(set(s.kept_labels.tolist()) | held) == list(range(16))


def test_ood_and_misclassification_studies(ensemble):
    """The experiment's paired studies: OOD rows are pure noise features (far from training),
    so the instance-level scores must flag them; low mean scores must flag wrong top-1
    predictions. A score wired with the wrong sign fails."""
    from experiments.xmc import train

    members, X, Y = ensemble
    is_ood = np.arange(X.shape[0]) % 3 == 0
    rng = np.random.default_rng(0)
    noise = sp.random(int(is_ood.sum()), X.shape[1], density=0.03, random_state=rng, format="csr")
    Xo = sp.vstack([X[~is_ood], xmc.l2_normalize_rows(noise.astype(np.float32))]).tocsr()
    pos = np.r_[np.zeros((~is_ood).sum(), bool), np.ones(is_ood.sum(), bool)]
    kw = dict(beam=4, topk=10, k_sum=5, key=jax.random.key(0), num_samples=50)
    o = train.ood_study(members, Xo, pos, **kw)
    assert o["num_ood"] == 50 and o["num_id"] == 100 and o["baseline"] == "single_one_minus_max"
    for n in ("single_one_minus_max", "one_minus_max", "neg_topk_sum", "cat_entropy"):
        assert o["scores"][n]["auroc"]["estimate"] > 0.7, n
    m = train.misclassification_study(members, X, Y, **kw)
    assert 0 < m["error_rate"] < 1 and m["prediction"] == "ensemble top-1"
    for n in ("single_one_minus_score", "one_minus_mean"):
        assert m["scores"][n]["auroc"]["estimate"] > 0.6, n
    assert 0 <= m["calibration"]["ensemble_mean"]["ECE@1"] <= 1


# ----------------------------------------------------------------------------- scores and bounds


def test_uncertainty_scores_by_hand():
    """Instance 0 confident (both members 0.9 on label 0; member 0 misses label 3, member 1
    misses label 2), instance 1 flat and disagreeing (every label returned by both)."""
    labels = np.array([[[0, 1, 2], [0, 1, 2]], [[0, 1, 3], [2, 1, 0]]], np.int32)  # [M, N, k]
    scores = np.array(
        [[[0.9, 0.1, 0.05], [0.5, 0.4, 0.2]], [[0.9, 0.1, 0.04], [0.45, 0.35, 0.2]]], np.float32
    )
    taus = np.array([[0.01, 0.2], [0.02, 0.1]], np.float32)
    out = xmc.EnsembleOutput(
        *(np.asarray(a) for a in xmc.combine_members(labels, scores, taus, topk=3))
    )
    s, b = xmc.uncertainty_scores(out, k=2, num_labels=10)
    # Instance 0 means: label 0: 0.9, 1: 0.1, 2: 0.025 (bound 0.02 / 2), 3: 0.02 (dropped).
    # Instance 1 means: label 1: 0.375 (0.4, 0.35), 0: 0.35 (0.5, 0.2), 2: 0.325 (0.2, 0.45).
    np.testing.assert_array_equal(out.labels, [[0, 1, 2], [1, 0, 2]])
    np.testing.assert_allclose(s.one_minus_mean, [0.1, 0.625], rtol=1e-5)
    np.testing.assert_allclose(s.member_std, [0.0, 0.025], atol=1e-6)
    np.testing.assert_allclose(s.one_minus_max, [0.1, 0.625], rtol=1e-5)
    np.testing.assert_allclose(s.neg_topk_sum, [-1.0, -0.725], rtol=1e-5)
    q0 = np.array([0.9, 0.1, 0.025]) / 1.025
    q1 = np.array([0.375, 0.35, 0.325]) / 1.05
    ent = lambda q: -(q * np.log(q)).sum()
    np.testing.assert_allclose(s.cat_entropy, [ent(q0), ent(q1)], rtol=1e-5)
    for name in s._fields:  # every score: the flat, disagreeing instance is more uncertain
        v = getattr(s, name)
        assert v[1] > v[0], (name, v)
    # Tails: instance 0 max(mean tau 0.015, dropped label 3: 0.02 + 0.01 / 2); instance 1 0.15.
    np.testing.assert_allclose(out.tail_bound, [0.025, 0.15], rtol=1e-5)
    # The top labels were returned by both members, and nothing outside can beat them.
    for name in ("one_minus_mean", "member_std", "one_minus_max", "neg_topk_sum"):
        np.testing.assert_allclose(getattr(b, name), 0.0, atol=1e-7, err_msg=name)
    # Categorical: Delta = 0.01 on instance 0, T <= 0.01 / 1.035, bound T ln 2 + h(T).
    t = 0.01 / 1.035
    np.testing.assert_allclose(
        b.cat_entropy[0], t * np.log(2) - t * np.log(t) - (1 - t) * np.log(1 - t), rtol=1e-4
    )
    assert b.cat_entropy[1] == 0.0
    # A label the top member missed: the bound is that member's tau (std: tau / sqrt(M)).
    out2 = out._replace(member_reached=out.member_reached.copy())
    out2.member_reached[1, 0, 0] = False
    out2 = out2._replace(bound=out.bound + np.array([[0.01, 0, 0], [0, 0, 0]]))
    _, b2 = xmc.uncertainty_scores(out2, k=2, num_labels=10)
    np.testing.assert_allclose(b2.one_minus_mean[0], 0.01, rtol=1e-6)
    np.testing.assert_allclose(b2.member_std[0], 0.02 / np.sqrt(2), rtol=1e-6)


def _check_bounds(members, X, beams, k=3):
    """Every score's beam approximation is within its bound of exact scoring, for every
    instance: returns the mean bound per beam (to check it shrinks)."""
    num_labels = members[0].num_labels
    _, p_all = xmc.ensemble_exact(members, X, topk=5, return_all=True)
    means = []
    for beam in beams:
        out = xmc.ensemble_predict(members, X, beam_size=beam, topk=5)
        s, b = xmc.uncertainty_scores(out, k=k, num_labels=num_labels)
        e = xmc.exact_uncertainty(p_all, out.labels, k=k)
        for name in s._fields:
            err = np.abs(getattr(s, name) - getattr(e, name))
            bad = err > getattr(b, name) + 1e-5
            assert not bad.any(), (
                beam,
                name,
                int(bad.sum()),
                err[bad][:3],
                getattr(b, name)[bad][:3],
            )
        means.append({n: float(getattr(b, n).mean()) for n in b._fields})
    return means


def test_score_bounds_hold(ensemble):
    members, X, _ = ensemble
    means = _check_bounds(members, X, beams=(1, 2, 8))
    assert means[0]["neg_topk_sum"] > 0.01  # the bound is informative, not trivially 0
    for n in means[0]:  # wider beams prune less mass
        assert means[-1][n] <= means[0][n] + 1e-9, n


def test_score_bounds_hold_under_a_long_tail(long_tail):
    members, X, _ = long_tail
    means = _check_bounds(members, X, beams=(1, 3, 16))
    for n in means[0]:
        assert means[-1][n] <= means[0][n] + 1e-9, n


def test_paired_detection_matches_sklearn_and_orders_scores():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    pos = rng.random(300) < 0.3
    good = pos + rng.normal(0, 0.5, 300)  # informative
    noise = rng.normal(0, 1, 300)
    res = xmc.paired_detection(
        jax.random.key(0),
        {"base": noise, "good": good, "inverted": -good},
        pos,
        baseline="base",
        num_samples=200,
    )
    sc = res["scores"]
    np.testing.assert_allclose(sc["good"]["auroc"]["estimate"], roc_auc_score(pos, good), 1e-5)
    assert sc["good"]["auroc_diff"]["low"] > 0 and sc["inverted"]["auroc_diff"]["high"] < 0
    assert sc["good"]["aurc_diff"]["high"] < 0 < sc["inverted"]["aurc_diff"]["low"]
    assert sc["good"]["fpr95"]["estimate"] < sc["inverted"]["fpr95"]["estimate"]
    assert sc["base"]["auroc_diff"]["low"] == sc["base"]["auroc_diff"]["high"] == 0.0
    lo, hi = sc["good"]["auroc"]["low"], sc["good"]["auroc"]["high"]
    assert lo < sc["good"]["auroc"]["estimate"] < hi and hi - lo < 0.2
    assert res["num_positive"] == int(pos.sum())


def test_calibration_errors():
    truth = np.array([[0, -1], [1, -1], [2, -1], [3, -1]])
    labels = np.array([[0, 5], [9, 1], [2, 7], [8, 3]])
    scores = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.9, 0.1]], np.float32)
    # Top-1: confidence 0.9 in one bin, 2 of 4 right -> 0.4. Top-2: bins 0.9 (2/4 right) and
    # 0.1 (2/4 right) -> 0.5 * 0.4 + 0.5 * 0.4 = 0.4.
    got = xmc.calibration_errors(scores, labels, truth, ks=(1, 2), num_bins=10)
    np.testing.assert_allclose([got["ECE@1"], got["ECE@2"]], [0.4, 0.4], rtol=1e-5)
