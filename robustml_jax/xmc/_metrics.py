"""XMC ranking metrics on top-k predictions (P@k, nDCG@k, PSP@k, R@k) and detection metrics.

Definitions follow pyxclib (``xclib/evaluation/xc_metrics.py``): P@k divides by k, missing
predictions (label id -1) are misses, PSP@k is the ratio of dataset totals (propensity-weighted
hits over the best achievable), propensities from Jain, Prabhu and Varma (KDD 2016).

Shapes: M instances, K predictions per instance, T padded true labels per instance, L labels.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

__all__ = [
    "auroc",
    "average_precision",
    "inverse_propensity",
    "labels_to_padded",
    "ranking_metrics",
    "topk_hits",
]


def inverse_propensity(Y_train: sp.spmatrix, a: float = 0.55, b: float = 1.5) -> np.ndarray:
    """Inverse propensities 1/p_l = 1 + C (N_l + B)^-A, C = (ln N - 1)(B + 1)^A. Returns [L]."""
    Y = sp.csr_matrix(Y_train)
    n = Y.shape[0]
    freq = np.asarray((Y > 0).sum(axis=0)).ravel().astype(np.float64)
    c = (np.log(n) - 1.0) * (b + 1.0) ** a
    return (1.0 + c * (freq + b) ** (-a)).astype(np.float32)


def labels_to_padded(Y: sp.spmatrix, width: int | None = None) -> np.ndarray:
    """True label lists of a CSR [M, L] as int32 [M, T] padded with -1."""
    Y = sp.csr_matrix(Y)
    cnt = np.diff(Y.indptr)
    t = max(int(cnt.max()) if len(cnt) else 1, 1) if width is None else width
    out = np.full((Y.shape[0], t), -1, np.int32)
    pos = np.arange(Y.nnz) - np.repeat(Y.indptr[:-1], cnt)
    out[np.repeat(np.arange(Y.shape[0]), cnt), pos] = Y.indices
    return out


def topk_hits(pred: jax.Array, truth: jax.Array) -> jax.Array:
    """Whether each prediction is a true label.

    Args:
      pred: int [M, K] predicted label ids (-1 = none).
      truth: int [M, T] true label ids padded with -1.

    Returns:
      bool [M, K].
    """
    eq = (pred[:, :, None] == truth[:, None, :]) & (truth[:, None, :] >= 0)
    return jnp.any(eq, axis=-1) & (pred >= 0)


@functools.partial(jax.jit, static_argnames=("ks",))
def ranking_metrics(
    pred: jax.Array, truth: jax.Array, inv_prop: jax.Array, *, ks: tuple[int, ...] = (1, 3, 5)
) -> dict:
    """P@k, nDCG@k, PSP@k and R@k (in [0, 1]) for each k in ``ks``.

    Args:
      pred: int [M, K] top-K predictions, best first (-1 = none), K >= max(ks).
      truth: int [M, T] true labels padded with -1.
      inv_prop: float [L] inverse propensities (only PSP uses them).
    """
    hits = topk_hits(pred, truth).astype(jnp.float32)
    n_true = jnp.sum(truth >= 0, axis=1)
    disc = 1.0 / jnp.log2(jnp.arange(pred.shape[1], dtype=jnp.float32) + 2.0)
    w_pred = jnp.where(pred >= 0, inv_prop[jnp.maximum(pred, 0)], 0.0) * hits
    w_true = jnp.where(truth >= 0, inv_prop[jnp.maximum(truth, 0)], 0.0)
    w_true_sorted = -jnp.sort(-w_true, axis=1)
    out = {}
    for k in ks:
        h = hits[:, :k]
        out[f"P@{k}"] = jnp.mean(jnp.sum(h, 1) / k)
        dcg = jnp.sum(h * disc[:k], 1)
        ideal = jnp.cumsum(disc[:k])[jnp.clip(jnp.minimum(n_true, k) - 1, 0, k - 1)]
        out[f"nDCG@{k}"] = jnp.mean(jnp.where(n_true > 0, dcg / ideal, 0.0))
        best = jnp.sum(w_true_sorted[:, :k], 1)
        out[f"PSP@{k}"] = jnp.sum(w_pred[:, :k]) / jnp.maximum(jnp.sum(best), 1e-12)
        out[f"R@{k}"] = jnp.mean(jnp.sum(h, 1) / jnp.maximum(n_true, 1))
    return out


@jax.jit
def auroc(scores: jax.Array, positive: jax.Array) -> jax.Array:
    """Area under the ROC curve of ``scores`` [N] for ``positive`` [N] (ties get half credit).

    Mann-Whitney form with average ranks; returns nan when a class is empty.
    """
    s = jnp.sort(scores)
    rank = 0.5 * (
        jnp.searchsorted(s, scores, side="left") + jnp.searchsorted(s, scores, side="right") + 1
    )
    pos = positive.astype(jnp.float32)
    n_pos = jnp.sum(pos)
    n_neg = scores.shape[0] - n_pos
    u = jnp.sum(rank * pos) - n_pos * (n_pos + 1) / 2
    return jnp.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), jnp.nan)


@jax.jit
def average_precision(scores: jax.Array, positive: jax.Array) -> jax.Array:
    """Average precision (area under the PR curve, sklearn's step definition) of ``scores``."""
    order = jnp.argsort(-scores)
    s = -scores[order]
    pos = positive[order].astype(jnp.float32)
    tp = jnp.cumsum(pos)
    end = jnp.searchsorted(s, s, side="right")  # tied scores share one threshold
    prec_at_end = tp[end - 1] / end
    n_pos = jnp.sum(pos)
    return jnp.where(n_pos > 0, jnp.sum(pos * prec_at_end) / n_pos, jnp.nan)
