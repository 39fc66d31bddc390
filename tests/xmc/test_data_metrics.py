"""XMC data loaders, bad-input errors, and metrics against plain numpy/sklearn references."""

from __future__ import annotations

import chex
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from robustml_jax import xmc
from robustml_jax.core import datasets


def test_xc_text_roundtrip(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text("3 5 4\n0,2 1:0.5 4:1.0\n 0:2.0\n3 2:1.5\n")
    d = xmc.load_xc_text(p)
    np.testing.assert_array_equal(
        d["X"].toarray(), [[0, 0.5, 0, 0, 1], [2, 0, 0, 0, 0], [0, 0, 1.5, 0, 0]]
    )
    np.testing.assert_array_equal(d["Y"].toarray(), [[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]])


@pytest.mark.parametrize(
    "body, match",
    [
        ("2 5 4\n0 1:0.5\n1 2:x\n", r"train.txt:3: malformed line"),
        ("2 5 4\n0 1:0.5\n7 2:1\n", r"train.txt:3: label index out of \[0, 4\)"),
        ("2 5 4\n0 9:0.5\n1 2:1\n", r"train.txt:2: feature index out of"),
        ("x y\n", r"train.txt:1: expected a header"),
    ],
)
def test_xc_text_bad_lines(tmp_path, body, match):
    p = tmp_path / "train.txt"
    p.write_text(body)
    with pytest.raises(ValueError, match=match):
        xmc.load_xc_text(p)


def test_pecos_npz(tmp_path):
    X = sp.random(6, 7, density=0.4, format="csr", random_state=0, dtype=np.float32)
    Y = sp.csr_matrix(np.eye(6, 3, dtype=np.float32))
    sp.save_npz(tmp_path / "X.trn.npz", X)
    sp.save_npz(tmp_path / "Y.trn.npz", Y)
    d = xmc.load_pecos_npz(tmp_path / "X.trn.npz", tmp_path / "Y.trn.npz")
    np.testing.assert_allclose(d["X"].toarray(), X.toarray())
    np.testing.assert_array_equal(d["Y"].toarray(), Y.toarray())


def test_malformed_arff_reports_line_number():
    text = "@relation r\n@attribute a numeric\n@attribute b {0,1}\n@data\n{0 1.0}\n{0 1.0, 1}\n"
    with pytest.raises(ValueError, match=r"<arff>:6: malformed entry"):
        datasets.parse_sparse_arff(text, 1)


def test_label_and_feature_checks():
    Y = sp.csr_matrix(np.array([[1, 0], [0, 0]], np.float32))
    with pytest.raises(ValueError, match="1 rows have no label"):
        xmc.check_labels(Y)
    with pytest.raises(ValueError, match="label index out of range"):
        xmc.check_labels(sp.csr_matrix(np.ones((2, 5))), 3)
    with pytest.raises(ValueError, match="feature dimension mismatch"):
        xmc.check_features(sp.csr_matrix(np.ones((2, 5))), 4)


def test_l2_normalize_and_pad_rows():
    X = sp.csr_matrix(np.array([[3.0, 0, 4.0], [0, 0, 0], [0, 2.0, 0]], np.float32))
    Xn = xmc.l2_normalize_rows(X)
    np.testing.assert_allclose(np.linalg.norm(Xn.toarray(), axis=1), [1, 0, 1], atol=1e-6)
    rows = xmc.pad_rows(Xn)
    dense = np.zeros((3, 3), np.float32)
    np.add.at(dense, (np.arange(3)[:, None].repeat(rows.cols.shape[1], 1), rows.cols), rows.vals)
    np.testing.assert_allclose(dense, Xn.toarray())


def test_synthetic_is_sparse_and_power_law():
    d = xmc.synthetic_xmc(jax.random.key(0), 2000, 200, 5000, 300, nnz_per_row=20)
    X, Y = d["train"]["X"], d["train"]["Y"]
    assert X.shape == (2000, 5000) and Y.shape == (2000, 300) and sp.isspmatrix_csr(X)
    assert X.nnz <= 2000 * 20 and (Y.getnnz(1) > 0).all()
    freq = np.asarray(Y.sum(0)).ravel()
    assert freq[:10].mean() > 5 * freq[-100:].mean()  # head labels dominate


# ----------------------------------------------------------------------------- metrics


def _ref_metrics(pred, Y, inv_prop, k):
    """Plain numpy loops (pyxclib definitions)."""
    n = len(pred)
    p = nd = r = 0.0
    num = den = 0.0
    for i in range(n):
        true = set(np.flatnonzero(Y[i]))
        hits = [int(pred[i, j] in true) for j in range(k)]
        p += sum(hits) / k
        dcg = sum(h / np.log2(j + 2) for j, h in enumerate(hits))
        idcg = sum(1 / np.log2(j + 2) for j in range(min(k, len(true))))
        nd += dcg / idcg if idcg > 0 else 0.0
        r += sum(hits) / max(len(true), 1)
        num += sum(h * inv_prop[pred[i, j]] for j, h in enumerate(hits))
        den += sum(sorted((inv_prop[t] for t in true), reverse=True)[:k])
    return {f"P@{k}": p / n, f"nDCG@{k}": nd / n, f"R@{k}": r / n, f"PSP@{k}": num / den}


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_ranking_metrics_match_numpy(seed):
    rng = np.random.default_rng(seed)
    n, num_labels = 12, 9
    Y = (rng.random((n, num_labels)) < 0.3).astype(np.float32)
    Y[0] = 0  # an instance without labels
    pred = np.stack([rng.permutation(num_labels)[:5] for _ in range(n)]).astype(np.int32)
    inv_prop = xmc.inverse_propensity(sp.csr_matrix(Y[1:]) + sp.csr_matrix(np.eye(11, 9)))
    got = xmc.ranking_metrics(
        pred, xmc.labels_to_padded(sp.csr_matrix(Y)), jnp.asarray(inv_prop), ks=(1, 3, 5)
    )
    for k in (1, 3, 5):
        ref = _ref_metrics(pred, Y, inv_prop, k)
        for name, v in ref.items():
            np.testing.assert_allclose(float(got[name]), v, rtol=1e-5, atol=1e-6)


def test_missing_predictions_are_misses_and_no_retrace():
    truth = jnp.asarray([[0, 1, -1], [2, -1, -1]], jnp.int32)
    inv = jnp.ones(3)
    f = jax.jit(chex.assert_max_traces(n=1)(lambda p: xmc.ranking_metrics(p, truth, inv)["P@1"]))
    assert float(f(jnp.asarray([[-1, 0, 1, 2, 2], [2, 0, 1, -1, -1]]))) == 0.5
    assert float(f(jnp.asarray([[0, 0, 1, 2, 2], [2, 0, 1, -1, -1]]))) == 1.0


def test_inverse_propensity_formula():
    Y = sp.csr_matrix(np.array([[1, 0], [1, 1], [1, 0], [1, 0]], np.float32))
    c = (np.log(4) - 1) * 2.5**0.55
    np.testing.assert_allclose(
        xmc.inverse_propensity(Y), [1 + c * 5.5**-0.55, 1 + c * 2.5**-0.55], rtol=1e-6
    )


@settings(max_examples=20, deadline=None)
@given(
    scores=hnp.arrays(np.float32, 40, elements=st.sampled_from([0.0, 0.1, 0.5, 0.7, 1.0])),
    labels=hnp.arrays(np.bool_, 40),
)
def test_auroc_and_ap_match_sklearn(scores, labels):
    if labels.all() or not labels.any():
        assert np.isnan(float(xmc.auroc(scores, labels)))
        return
    np.testing.assert_allclose(
        float(xmc.auroc(scores, labels)), roc_auc_score(labels, scores), rtol=1e-5
    )
    np.testing.assert_allclose(
        float(xmc.average_precision(scores, labels)),
        average_precision_score(labels, scores),
        rtol=1e-5,
    )
