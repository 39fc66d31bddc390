"""Tree model: clustering, the per-level solver against liblinear, beam search against exact
scoring, save/load, and bad inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.svm import LinearSVC

from robustml_jax import xmc
from robustml_jax.xmc import _tree


def test_balanced_kmeans_sizes_and_separation():
    # Two well separated groups of directions, 9 labels each (plus one odd label).
    rng = np.random.default_rng(0)
    a = np.abs(rng.normal(size=(9, 20))) * (np.arange(20) < 10)
    b = np.abs(rng.normal(size=(10, 20))) * (np.arange(20) >= 10)
    Z = xmc.l2_normalize_rows(sp.csr_matrix(np.vstack([a, b]).astype(np.float32)))
    leaf = xmc.balanced_kmeans(jax.random.key(0), Z, 2)
    sizes = np.bincount(leaf, minlength=4)
    assert sizes.max() - sizes.min() <= 1
    top = leaf >> 1
    assert len(set(top[:9])) == 1 and (top[9:] != top[0]).sum() >= 9


def test_tree_structure(model, problem):
    _, Y, _, _ = problem
    # depth = ceil(log2(48 / 6)) = 3 binary levels -> 8 leaf clusters of 6 labels.
    assert [lv.branching for lv in model.levels] == [2, 2, 2, 6]
    assert model.num_leaf_clusters == 8
    sl = np.asarray(model.slot_label)
    assert sorted(sl[sl >= 0].tolist()) == list(range(Y.shape[1]))


def test_level_solver_matches_liblinear():
    """One parent, three children: each child's weights equal LinearSVC (squared hinge, C=1,
    bias as a regularised feature of value 1 = liblinear's objective)."""
    rng = np.random.default_rng(0)
    n, dim = 80, 6
    X = xmc.l2_normalize_rows(sp.csr_matrix(rng.normal(size=(n, dim)).astype(np.float32)))
    y = np.where(rng.random((n, 3)) < 0.4, 1.0, -1.0).astype(np.float32)
    problem = xmc.level_problem(X, np.arange(n), np.zeros(n, np.int64), y, np.ones((1, 3), bool))
    level = xmc.solve_level(
        problem,
        dim,
        buckets=tuple(xmc.bucket_size(s) for s in problem.sizes),
        num_parents=1,
        pad_parents=0,
        c_pos=1.0,
        newton_iters=15,
        cg_iters=30,
        loss="squared-hinge",
        threshold=0.0,
    )
    w = np.zeros((dim, 3), np.float32)
    w[np.asarray(level.feat)] = np.asarray(level.w)
    for j in range(3):
        ref = LinearSVC(
            loss="squared_hinge", C=1.0, intercept_scaling=1.0, tol=1e-8, max_iter=100_000
        ).fit(X.toarray(), y[:, j])
        np.testing.assert_allclose(w[:, j], ref.coef_[0], atol=2e-3)
        np.testing.assert_allclose(np.asarray(level.bias)[0, j], ref.intercept_[0], atol=2e-3)


@pytest.mark.parametrize("beam", [8, 10])  # 8 leaf clusters: 10 is wider than the level
def test_full_beam_equals_exact_scoring(model, problem, beam):
    _, _, Xte, _ = problem
    exact = xmc.score_all_labels(model, Xte)
    out = xmc.beam_search(model, Xte, beam_size=beam, topk=5)
    order = np.argsort(-exact, axis=1, kind="stable")[:, :5]
    np.testing.assert_allclose(out.scores, np.take_along_axis(exact, order, 1), rtol=1e-5)
    np.testing.assert_allclose(out.scores, np.take_along_axis(exact, out.labels, 1), rtol=1e-5)


def test_pruned_labels_stay_under_the_tail_bound(model, problem):
    _, _, Xte, _ = problem
    exact = xmc.score_all_labels(model, Xte)
    for beam in (1, 2, 4):
        out = xmc.beam_search(model, Xte, beam_size=beam, topk=4)
        hidden = np.ones_like(exact, bool)
        np.put_along_axis(hidden, np.maximum(out.labels, 0), False, axis=1)
        assert (np.where(hidden, exact, 0).max(1) <= out.tail_bound + 1e-6).all()
        assert (out.tail_bound > 0).any()  # the bound is informative, not trivially 0


def test_quality_beats_label_frequency(model, problem):
    X, Y, Xte, Yte = problem
    labels, scores = xmc.predict(model, Xte, beam_size=4, topk=5)
    assert labels.shape == (150, 5) and scores.shape == (150, 5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    inv = xmc.inverse_propensity(Y)
    truth = xmc.labels_to_padded(Yte)
    p1 = float(xmc.ranking_metrics(labels, truth, inv)["P@1"])
    top = np.argsort(-np.asarray(Y.sum(0)).ravel())[:5]
    base = float(xmc.ranking_metrics(np.tile(top, (150, 1)), truth, inv)["P@1"])
    assert p1 > base + 0.2, (p1, base)


def test_topk_beyond_reach_is_padded(model, problem):
    """Beam 2 reaches 2 leaf clusters of 6 labels: asking for 40 gives 12 labels and 28 empty
    slots (label -1, score 0) instead of an error."""
    _, _, Xte, _ = problem
    labels, scores = xmc.predict(model, Xte[:10], beam_size=2, topk=40)
    assert labels.shape == (10, 40)
    assert ((labels >= 0).sum(1) == 12).all() and (scores[labels < 0] == 0).all()
    ref, _ = xmc.predict(model, Xte[:10], beam_size=2, topk=12)
    np.testing.assert_array_equal(labels[:, :12], ref)


def test_compact_lookup_equals_dense(model, problem):
    _, _, Xte, _ = problem
    a = xmc.beam_search(model, Xte, beam_size=3, topk=5)
    b = xmc.beam_search(model, Xte, beam_size=3, topk=5, dense_limit=0)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)


def test_no_retrace_on_repeat(model, problem):
    _, _, Xte, _ = problem
    xmc.predict(model, Xte, beam_size=2, topk=3)
    n = _tree._beam_batch._cache_size()
    xmc.predict(model, Xte, beam_size=2, topk=3)
    assert _tree._beam_batch._cache_size() == n


def test_save_load_roundtrip(model, problem, tmp_path):
    _, _, Xte, _ = problem
    xmc.save_model(model, tmp_path / "m")
    loaded = xmc.load_model(tmp_path / "m")
    a, b = xmc.predict(model, Xte[:20], beam_size=2), xmc.predict(loaded, Xte[:20], beam_size=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary left behind
    with pytest.raises(FileNotFoundError, match="no saved tree model"):
        xmc.load_model(tmp_path / "nothing")
    with pytest.raises(FileExistsError, match="new folder"):
        xmc.save_model(model, tmp_path / "m")


def test_save_is_atomic(model, tmp_path, monkeypatch):
    """A save killed half-way leaves no folder that looks like a model."""
    from robustml_jax.xmc import _io

    def dies(model, path):
        (path / "arrays").mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(_io, "_write", dies)
    with pytest.raises(KeyboardInterrupt):
        xmc.save_model(model, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_model_items_resume(model, tmp_path):
    """Members are computed once: a second run loads them instead of calling ``fit``."""
    calls = []
    items = xmc.model_items(tmp_path / "members")
    got = items.get("member_00", lambda: calls.append(1) or model)
    again = xmc.model_items(tmp_path / "members").get("member_00", lambda: calls.append(1))
    assert calls == [1] and items.names() == ["member_00"]
    np.testing.assert_array_equal(np.asarray(again.slot_label), np.asarray(got.slot_label))
    assert (tmp_path / "members" / "member_00" / "meta.json").is_file()


def test_beam_search_with_a_custom_scorer():
    """The generic beam search (reused by ELIAS) on a hand-made 2-level tree: 2 parents x 3
    children; path log-scores are sums, the pruned maximum bounds every unreturned slot."""
    root = jnp.log(jnp.asarray([[0.9, 0.5]]))
    leaves = jnp.log(jnp.asarray([[0.2, 0.8, 0.5], [1.0, 0.1, 0.3]]))

    def score(t, parents, query):
        del query
        return (root if t == 0 else leaves)[parents]

    exact = np.exp(np.asarray(xmc.all_paths(score, None, num_parents=(1, 2))))
    np.testing.assert_allclose(exact, [0.18, 0.72, 0.45, 0.5, 0.05, 0.15], rtol=1e-6)
    out = jax.jit(lambda: xmc.beam_search_slots(score, None, branching=(2, 3), beam=1, topk=2))()
    np.testing.assert_array_equal(out.slots, [1, 2])  # beam 1 keeps parent 0 only
    np.testing.assert_allclose(np.exp(out.log_scores), [0.72, 0.45], rtol=1e-6)
    # Pruned: parent 1 (0.5) at level 0 and slot 0 (0.18) at the last level.
    np.testing.assert_allclose(np.exp(out.log_tail), 0.5, rtol=1e-6)
    wide = xmc.beam_search_slots(score, None, branching=(2, 3), beam=5, topk=3)
    np.testing.assert_array_equal(wide.slots, [1, 3, 2])
    np.testing.assert_allclose(np.exp(wide.log_tail), 0.18, rtol=1e-6)


def test_bad_inputs(model, problem):
    X, Y, Xte, _ = problem
    with pytest.raises(ValueError, match="feature dimension mismatch"):
        xmc.predict(model, sp.csr_matrix((3, X.shape[1] + 1), dtype=np.float32))
    with pytest.raises(ValueError, match="beam_size and topk must be >= 1"):
        xmc.predict(model, Xte, beam_size=0)
    Y_empty = Y.tolil()
    Y_empty[3, :] = 0
    with pytest.raises(ValueError, match="rows have no label"):
        xmc.fit_tree_model(X, Y_empty.tocsr(), key=jax.random.key(0))
    with pytest.raises(ValueError, match="X has 600 rows but Y has 10"):
        xmc.fit_tree_model(X, Y[:10], key=jax.random.key(0))
    with pytest.raises(ValueError, match="nr_splits must be a power of two"):
        xmc.fit_tree_model(X, Y, key=jax.random.key(0), nr_splits=3)
