"""Evaluation of XMC uncertainty: detection metrics of named scores and the beam
approximation against exact all-label scoring.

Shapes: N instances (or scored items), M members, L labels, K labels kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from robustml_jax.core import metrics
from robustml_jax.xmc import _tree

__all__ = ["beam_approximation_errors", "detection_metrics"]


def detection_metrics(scores: Mapping[str, np.ndarray], positive: np.ndarray) -> dict:
    """AUROC and AUPR of each named score for one detection task.

    Args:
      scores: name -> float [N] (or any shape, flattened) where higher means "positive".
      positive: bool [N] (same shape as each score).

    Returns:
      ``{name: {"auroc": float, "aupr": float}}`` in the order of ``scores``.
    """
    pos = np.asarray(positive, bool).ravel()
    out = {}
    for name, s in scores.items():
        s = np.asarray(s, np.float32).ravel()
        if s.shape != pos.shape:
            raise ValueError(f"score {name!r} has {s.size} entries, positive has {pos.size}")
        out[name] = {
            "auroc": float(metrics.auroc(s, pos)),
            "aupr": float(metrics.average_precision(s, pos)),
        }
    return out


def beam_approximation_errors(
    members: Sequence[_tree.TreeModel],
    X,
    p_all: np.ndarray,
    exact_labels: np.ndarray,
    *,
    beam: int,
    topk: int,
) -> dict:
    """Error of the beam-approximated ensemble mean score against exact scoring, and its bound.

    Each member's unreturned labels count as 0; the bound of a label is the mean over members
    that did not return it of their tail bound (see :mod:`._uq`).

    Args:
      members: the ensemble; X: CSR [N, D] queries.
      p_all: float [M, N, L] exact member scores of every label.
      exact_labels: int [N, K'] the exact ensemble's top labels (where errors are averaged).
      beam: beam width; topk: labels each member returns.

    Returns:
      ``{"mean_abs_err", "max_abs_err", "mean_bound", "bound_violations", "labels_checked"}``:
      mean error on ``exact_labels``, mean over instances of the largest error over all
      labels, mean bound on ``exact_labels``, the (instance, label) pairs whose error exceeds
      the bound (+1e-5), and how many pairs were checked.
    """
    mean_all = p_all.mean(0)
    approx_p = np.zeros_like(p_all)
    bound = np.zeros_like(mean_all)
    for i, m in enumerate(members):
        out = _tree.beam_search(m, X, beam_size=beam, topk=topk)
        got = np.zeros(mean_all.shape, bool)
        rows, cols = np.nonzero(out.labels >= 0)
        got[rows, out.labels[rows, cols]] = True
        approx_p[i][rows, out.labels[rows, cols]] = out.scores[rows, cols]
        bound += np.where(got, 0.0, out.tail_bound[:, None]) / len(members)
    diff = np.abs(approx_p.mean(0) - mean_all)
    on_top = np.take_along_axis(diff, exact_labels, 1)
    return {
        "mean_abs_err": float(on_top.mean()),
        "max_abs_err": float(diff.max(1).mean()),
        "mean_bound": float(np.take_along_axis(bound, exact_labels, 1).mean()),
        "bound_violations": int((diff > bound + 1e-5).sum()),
        "labels_checked": int(diff.size),
    }
