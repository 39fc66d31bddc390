"""Evaluation of XMC uncertainty: the paired detection protocol, calibration, and the beam
approximation against exact all-label scoring.

Paired protocol: every uncertainty score is evaluated on the same instances and, for
misclassification, on the same predictions (one error set), so that differences between
scores are differences of the scores, not of the predictions. Each metric gets a percentile
interval from one paired bootstrap (the same resampled instances for every score), and every
score's difference to a baseline score gets the interval of the difference.

Shapes: N instances (or scored items), S scores, M members, L labels, K labels kept.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from robustml_jax.core import metrics
from robustml_jax.xmc import _tree

__all__ = [
    "DETECTION_METRICS",
    "beam_approximation_errors",
    "calibration_errors",
    "detection_metrics",
    "paired_detection",
]

DETECTION_METRICS = ("auroc", "aupr", "fpr95", "aurc")
"""AUROC, AUPR (positive = error / OOD), FPR at 95% TPR and the area under the risk-coverage
curve (risk = fraction of positives among the instances kept, least uncertain first); higher is
better for the first two, lower for the last two."""


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


@functools.lru_cache(maxsize=16)
def _paired_metric(baseline: int, tpr: float):
    def one(s, pos):
        return {
            "auroc": metrics.auroc(s, pos),
            "aupr": metrics.average_precision(s, pos),
            "fpr95": metrics.fpr_at_tpr(s, pos, tpr=tpr),
            "aurc": metrics.risk_coverage(s, pos).aurc,
        }

    def fn(scores, pos):
        per = jax.vmap(one, in_axes=(1, None))(scores, pos)  # each [S]
        diffs = {f"{k}_diff": v - v[baseline] for k, v in per.items()}
        return {**per, **diffs}

    return fn


def paired_detection(
    key: jax.Array,
    scores: Mapping[str, np.ndarray],
    positive: np.ndarray,
    *,
    baseline: str,
    num_samples: int = 1000,
    confidence: float = 0.95,
    tpr: float = 0.95,
) -> dict:
    """Detection metrics of several scores on the same instances, with paired-bootstrap
    intervals of each metric and of each score's difference to ``baseline``.

    Args:
      key: PRNG key of the bootstrap.
      scores: name -> float [N], higher = more likely positive (more uncertain).
      positive: bool [N] (a wrong prediction, an OOD instance).
      baseline: the name of the reference score (e.g. the single model's).
      num_samples: bootstrap replicates; confidence: two-sided level; tpr: for FPR@TPR.

    Returns:
      ``{name: {metric: {"estimate", "low", "high"}, metric + "_diff": {...}}}`` for every
      metric of :data:`DETECTION_METRICS` (the difference is score minus baseline), plus
      ``"baseline"``, ``"num_positive"``, ``"num"``.
    """
    names = list(scores)
    if baseline not in scores:
        raise ValueError(f"baseline {baseline!r} is not one of the scores {names}")
    pos = np.asarray(positive, bool).ravel()
    mat = np.stack([np.asarray(scores[n], np.float32).ravel() for n in names], 1)  # [N, S]
    if mat.shape[0] != pos.shape[0]:
        raise ValueError(f"scores have {mat.shape[0]} rows, positive has {pos.shape[0]}")
    fn = _paired_metric(names.index(baseline), float(tpr))
    iv = metrics.bootstrap_interval(
        key, fn, jnp.asarray(mat), jnp.asarray(pos), num_samples=num_samples, confidence=confidence
    )
    out: dict = {}
    for i, n in enumerate(names):
        out[n] = {
            m: {
                "estimate": float(iv.estimate[m][i]),
                "low": float(iv.low[m][i]),
                "high": float(iv.high[m][i]),
            }
            for m in iv.estimate
        }
    return {"scores": out, "baseline": baseline, "num_positive": int(pos.sum()), "num": len(pos)}


def calibration_errors(
    scores: np.ndarray, labels: np.ndarray, truth: np.ndarray, *, ks=(1, 5), num_bins: int = 15
) -> dict:
    """Expected calibration error of predicted label scores as probabilities of relevance.

    Args:
      scores: float [N, K] scores of the predicted labels (best first).
      labels: int [N, K] predicted labels (-1 = none).
      truth: int [N, T] true labels padded with -1.
      ks: ECE over the (instance, label) pairs of the top-k, for each k.

    Returns:
      ``{"ECE@k": float}``.
    """
    hits = np.asarray(metrics.topk_hits(jnp.asarray(labels), jnp.asarray(truth)))
    out = {}
    for k in ks:
        ok = labels[:, :k] >= 0
        conf = np.asarray(scores[:, :k], np.float32)[ok]
        out[f"ECE@{k}"] = float(
            metrics.expected_calibration_error(conf, hits[:, :k][ok], num_bins=num_bins)
        )
    return out
