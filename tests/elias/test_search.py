"""ELIAS search, adjacency and loss against NumPy references on tiny cases, and bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from robustml_jax import xmc


def _np_shortlist(scores, clusters, a_inds, a_vals, L, K):
    """Reference: every (cluster, label) path, each label's best path, top K by path."""
    out_l, out_p = [], []
    for i in range(scores.shape[0]):
        best = {}
        for c in clusters[i]:
            for j in range(a_inds.shape[1]):
                lab = int(a_inds[c, j])
                if lab >= L:
                    continue
                p = float(scores[i, c] * a_vals[c, j])
                best[lab] = max(best.get(lab, -1.0), p)
        items = sorted(best.items(), key=lambda kv: -kv[1])[:K]
        out_l.append([k for k, _ in items] + [L] * (K - len(items)))
        out_p.append([v for _, v in items] + [0.0] * (K - len(items)))
    return np.array(out_l), np.array(out_p)


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    B, C, L, kappa = 5, 4, 9, 4
    scores = rng.uniform(0.05, 1.0, (B, C)).astype(np.float32)
    # Labels appear in several clusters; L = padding.
    a_inds = np.array([[0, 1, 2, 9], [2, 3, 4, 5], [5, 6, 0, 9], [7, 8, 1, 3]], np.int32)
    a_vals = rng.uniform(0.1, 1.0, (C, kappa)).astype(np.float32) * (a_inds < L)
    return scores, a_inds, a_vals, L


def test_shortlist_matches_numpy_reference(tiny):
    scores, a_inds, a_vals, L = tiny
    clusters = np.asarray(xmc.select_clusters(jnp.asarray(scores), beam=2))
    ref_top2 = np.argsort(-scores, 1)[:, :2]
    np.testing.assert_array_equal(np.sort(clusters, 1), np.sort(ref_top2, 1))
    K = 5
    sl = xmc.shortlist(
        jnp.asarray(scores), jnp.asarray(clusters), a_inds, a_vals, num_labels=L, K=K
    )
    ref_l, ref_p = _np_shortlist(scores, clusters, a_inds, a_vals, L, K)
    np.testing.assert_array_equal(np.asarray(sl.labels), ref_l)
    np.testing.assert_allclose(np.asarray(sl.path), ref_p, rtol=1e-6)
    assert np.all(np.asarray(sl.valid) == (ref_l < L))


def test_training_clusters_include_parents_of_positives(tiny):
    scores, *_ = tiny
    B, C = scores.shape
    forced = np.zeros((B, C), bool)
    worst = np.argmin(scores, 1)
    forced[np.arange(B), worst] = True
    got = np.asarray(
        xmc.select_clusters(
            jnp.asarray(scores), beam=1, forced=jnp.asarray(forced), key=jax.random.key(0), extra=1
        )
    )
    assert got.shape == (B, 2)
    for i in range(B):  # the union {top-1, parent} has exactly 2 = beam + extra members
        assert set(got[i]) == {int(np.argmax(scores[i])), int(worst[i])}


def test_positive_paths_are_best_paths(tiny):
    scores, a_inds, a_vals, L = tiny
    clusters = jnp.asarray([[0, 1, 2, 3]] * scores.shape[0])
    sl = xmc.shortlist(jnp.asarray(scores), clusters, a_inds, a_vals, num_labels=L, K=8)
    pos = jnp.asarray([[0, 2, -1]] * scores.shape[0])
    p, found = xmc.positive_paths(sl, pos, num_labels=L)
    for i in range(scores.shape[0]):
        for j, lab in enumerate((0, 2)):
            ref = max(
                scores[i, c] * a_vals[c, k]
                for c in range(4)
                for k in range(4)
                if a_inds[c, k] == lab
            )
            assert bool(found[i, j]) and abs(float(p[i, j]) - ref) < 1e-6
        assert not bool(found[i, 2]) and float(p[i, 2]) == 0.0


def test_approx_adjacency_top_kappa_exact():
    rng = np.random.default_rng(1)
    N, L, C, b, kappa = 40, 12, 4, 2, 5
    Y = sp.csr_matrix((rng.uniform(size=(N, L)) < 0.25).astype(np.float32))
    m_inds = np.stack([rng.choice(C, b, replace=False) for _ in range(N)])
    m_vals = rng.uniform(0.1, 1.0, (N, b)).astype(np.float32)
    inds, vals = xmc.approx_adjacency(Y, m_inds, m_vals, C, kappa)
    M = np.zeros((N, C), np.float32)
    M[np.arange(N)[:, None], m_inds] = m_vals
    dense = (Y.toarray().T @ M).T  # [C, L]
    for c in range(C):
        nz = np.flatnonzero(dense[c] > 0)
        order = nz[np.lexsort((nz, -dense[c, nz]))][:kappa]
        np.testing.assert_array_equal(inds[c, : len(order)], order)
        np.testing.assert_allclose(vals[c, : len(order)], dense[c, order], rtol=1e-5)
        assert np.all(inds[c, len(order) :] == L)


def test_adjacency_from_clusters_is_the_partition():
    assign = np.array([1, 0, 1, 2, 2, 2, 0])
    a = xmc.adjacency_from_clusters(assign, 4, 7)
    assert a.shape == (4, 3)
    for c in range(4):
        assert sorted(x for x in a[c] if x < 7) == list(np.flatnonzero(assign == c))


def test_loss_matches_numpy_and_uses_path_scores(tiny):
    scores, a_inds, a_vals, L = tiny
    clusters = jnp.asarray([[0, 1]] * scores.shape[0])
    pos = jnp.asarray([[0, 4], [2, -1], [5, 6], [1, -1], [3, 0]])
    logits = jnp.linspace(-1, 1, 4)

    @jax.jit
    def loss(s, lam):
        sl = xmc.shortlist(s, clusters, a_inds, a_vals, num_labels=L, K=4)
        final = jnp.where(sl.valid, sl.path * jax.nn.sigmoid(logits), 0.0)
        t = (jnp.any(sl.labels[:, :, None] == pos[:, None, :], -1) & sl.valid).astype(jnp.float32)
        pp, found = xmc.positive_paths(sl, pos, num_labels=L)
        return xmc.elias_loss(final, t, pp, found, loss_lambda=lam), (final, t, pp, found)

    s = jnp.asarray(scores)
    val, (final, t, pp, found) = loss(s, 0.5)
    f = np.clip(np.asarray(final), 1e-6, 1 - 1e-6)
    ref_cls = -np.mean(t * np.log(f) + (1 - t) * np.log(1 - f))
    q = np.clip(np.asarray(pp), 1e-6, 1)
    ref_path = np.sum(np.where(found, -np.log(q), 0.0)) / pp.size
    assert abs(float(val) - (ref_cls + 0.5 * ref_path)) < 1e-5
    assert ref_path > 0 and np.asarray(found).any()
    # Same label scores, different cluster scores: the loss must change, and its gradient
    # with respect to the cluster scores must not vanish (a loss on label scores alone fails).
    val2, _ = loss(s * 0.5, 0.5)
    assert abs(float(val2) - float(val)) > 1e-3
    g = jax.grad(lambda s: loss(s, 0.5)[0])(s)
    assert float(jnp.abs(g).sum()) > 1e-3
    g_path_only = jax.grad(lambda s: loss(s, 1.0)[0] - loss(s, 0.0)[0])(s)
    assert float(jnp.abs(g_path_only).sum()) > 1e-3


# ----------------------------------------------------------------------------- bad input


def _toy(n=30, L=12, seed=0):
    d = xmc.synthetic_xmc(jax.random.key(seed), n, 10, 64, L, nnz_per_row=6, labels_per_row=2.0)
    return d["train"]["X"], d["train"]["Y"]


def test_bad_input_cluster_count_larger_than_labels():
    with pytest.raises(ValueError, match="num_clusters=16 is larger than the number of labels"):
        xmc.elias_config(10, num_clusters=16)
    X, Y = _toy()
    with pytest.raises(ValueError, match="larger than the number of labels"):
        xmc.fit_elias(X, Y, jax.random.key(0), num_clusters=32)


def test_bad_input_shortlist_larger_than_reachable():
    with pytest.raises(ValueError, match=r"shortlist size K=50 is larger than the 14 labels"):
        xmc.elias_config(100, num_clusters=16, beam=2, K=50)


def test_bad_input_row_mismatch():
    X, Y = _toy()
    with pytest.raises(ValueError, match="X has 29 rows but Y has 30"):
        xmc.fit_elias(X[:29], Y, jax.random.key(0))


def test_bad_input_inconsistent_stage_checkpoints(tmp_path):
    cfg = xmc.elias_config(12, num_clusters=4)
    params = {"WC": {}}
    m1 = xmc.EliasModel(params, np.zeros((4, 3), np.int32), {**cfg, "num_features": 64}, 1)
    X, Y = _toy()
    with pytest.raises(ValueError, match="inconsistent stage-1 checkpoint: its num_clusters"):
        xmc.fit_elias(X, Y, jax.random.key(0), stage1=m1, num_clusters=2)
    with pytest.raises(ValueError, match="inconsistent stage-1 checkpoint: its num_features"):
        xmc.fit_elias(X[:, :32], Y, jax.random.key(0), stage1=m1, num_clusters=4)
    m2 = xmc.EliasModel(params, m1.a_inds, m1.config, 2)
    with pytest.raises(ValueError, match="stage1 must be an ELIAS-1 EliasModel"):
        xmc.fit_elias(X, Y, jax.random.key(0), stage1=m2)
    with pytest.raises(FileNotFoundError, match="not an ELIAS model folder"):
        xmc.load_elias(tmp_path)


def test_minilm_option_encoder_and_missing_text_error():
    net = xmc.EliasNet(num_features=20, num_labels=6, num_clusters=2, kappa=3, dim=8, minilm_dim=5)
    cols = jnp.zeros((2, 4), jnp.int32)
    vals = jnp.ones((2, 4))
    text = jnp.ones((2, 5))
    params = net.init({"params": jax.random.key(0)}, cols, vals, text)["params"]
    h = net.apply({"params": params}, cols, vals, text, method=xmc.EliasNet.encode)
    h2 = net.apply({"params": params}, cols, vals, 2 * text, method=xmc.EliasNet.encode)
    assert h.shape == (2, 8) and float(jnp.abs(h - h2).max()) > 1e-4  # the text is used
    cfg = {**xmc.elias_config(6, num_clusters=2), "num_features": 20, "minilm_dim": 5}
    model = xmc.EliasModel(params, np.zeros((2, 3), np.int32), cfg, 1)
    X = sp.csr_matrix(np.eye(2, 20, dtype=np.float32))
    with pytest.raises(ValueError, match="trained with MiniLM text embeddings; pass text_emb="):
        xmc.predict_elias(model, X, 2)
