"""Metrics every paper shares: detection, selective prediction, ranking, stacked accuracy, and
bootstrap intervals.

- Detection (scores where *higher means positive*): :func:`auroc`, :func:`average_precision`,
  :func:`fpr_at_tpr`; selective prediction: :func:`risk_coverage`; calibration:
  :func:`expected_calibration_error`.
- XMC ranking on top-k predictions (P@k, nDCG@k, PSP@k, R@k). Definitions follow pyxclib
  (``xclib/evaluation/xc_metrics.py``): P@k divides by k, missing predictions (label id -1) are
  misses, PSP@k is the ratio of dataset totals (propensity-weighted hits over the best
  achievable), propensities from Jain, Prabhu and Varma (KDD 2016).
- :func:`stacked_accuracy`: accuracy of R models whose parameters are stacked on a leading axis
  (models mapped one after another: convolutions); :func:`stacked_correct`: per-example
  correctness of R stacked dense models on several test sets in one jitted, sharded call.
- :func:`bootstrap_interval`: percentile intervals of any metric over resampled rows (paired:
  one set of resampled indices serves every array, so differences of metrics get intervals).

Shapes: N scored examples, M instances, K predictions per instance, T padded true labels per
instance, L labels, R stacked models, B bootstrap replicates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

__all__ = [
    "Interval",
    "RiskCoverage",
    "auroc",
    "average_precision",
    "bootstrap_interval",
    "expected_calibration_error",
    "fpr_at_tpr",
    "inverse_propensity",
    "labels_to_padded",
    "ranking_metrics",
    "risk_coverage",
    "stacked_accuracy",
    "stacked_correct",
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


@functools.partial(jax.jit, static_argnames=("tpr",))
def fpr_at_tpr(scores: jax.Array, positive: jax.Array, *, tpr: float = 0.95) -> jax.Array:
    """False-positive rate at the smallest threshold whose true-positive rate reaches ``tpr``.

    FPR@95 of the OOD literature: the fraction of negatives scored at or above the threshold that
    flags ``tpr`` of the positives. Returns nan when a class is empty.

    Args:
      scores: float [N], higher = more likely positive.
      positive: bool [N].
    """
    pos = positive.astype(bool)
    n_pos = jnp.sum(pos)
    n_neg = scores.shape[0] - n_pos
    # Threshold: the ceil(tpr * n_pos)-th largest positive score.
    pos_sorted = -jnp.sort(-jnp.where(pos, scores, -jnp.inf))
    k = jnp.clip(jnp.ceil(tpr * n_pos).astype(jnp.int32) - 1, 0, scores.shape[0] - 1)
    thr = pos_sorted[k]
    fp = jnp.sum((~pos) & (scores >= thr))
    return jnp.where((n_pos > 0) & (n_neg > 0), fp / jnp.maximum(n_neg, 1), jnp.nan)


class RiskCoverage(NamedTuple):
    """The risk-coverage curve of selective prediction (examples kept by confidence).

    Attributes:
      coverage: float [N], fraction kept, (i + 1) / N.
      risk: float [N], error rate among the i + 1 most confident examples.
      aurc: scalar, area under the curve (mean of ``risk``); lower is better.
    """

    coverage: jax.Array
    risk: jax.Array
    aurc: jax.Array


@jax.jit
def risk_coverage(uncertainty: jax.Array, error: jax.Array) -> RiskCoverage:
    """Risk-coverage curve: keep the least uncertain examples first (ties in input order).

    Args:
      uncertainty: float [N], higher = less confident.
      error: bool [N], whether the prediction on the example is wrong.
    """
    order = jnp.argsort(uncertainty, stable=True)
    err = error[order].astype(jnp.float32)
    n = jnp.arange(1, err.shape[0] + 1, dtype=jnp.float32)
    risk = jnp.cumsum(err) / n
    return RiskCoverage(coverage=n / err.shape[0], risk=risk, aurc=jnp.mean(risk))


def stacked_accuracy(
    params: Any,
    x: np.ndarray,
    labels: np.ndarray,
    *,
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    chunk: int = 1000,
) -> np.ndarray:
    """Test accuracy of each of R models whose parameters are stacked on a leading axis.

    Examples go through in chunks of ``chunk`` (numpy on the host, so a large test set never
    sits on the device whole); the models are mapped with ``lax.map``, not vmapped: vmapping a
    convolution over R kernels makes a grouped convolution that XLA's CPU backend runs an order
    of magnitude slower than R plain ones.

    Args:
      params: pytree whose leaves have a leading axis R.
      x: inputs [T, ...].
      labels: int [T].
      apply_fn: ``apply_fn(params_r, x [B, ...]) -> logits [B, C]`` for one model, or [B] for a
        binary logit (positive predicts class 1).
      chunk: examples per device call.

    Returns:
      float [R] accuracies.
    """
    labels = np.asarray(labels)
    if len(x) != len(labels):
        raise ValueError(f"x has {len(x)} rows but labels has {len(labels)}")
    predict = _stacked_predict(apply_fn)
    correct = 0
    for i in range(0, len(labels), chunk):
        pred = np.asarray(predict(params, jnp.asarray(x[i : i + chunk])))
        correct = correct + (pred == labels[None, i : i + chunk]).sum(axis=1)
    return correct / len(labels)


@functools.lru_cache(maxsize=32)
def _stacked_predict(apply_fn):
    def one(p, xb):
        logits = apply_fn(p, xb)
        if logits.ndim == 1:
            return (logits > 0).astype(jnp.int32)
        return jnp.argmax(logits, -1).astype(jnp.int32)

    return jax.jit(lambda ps, xb: jax.lax.map(lambda p: one(p, xb), ps))


class Interval(NamedTuple):
    """A point estimate with a percentile bootstrap interval (numpy; ``low``/``high`` float)."""

    estimate: Any
    low: Any
    high: Any


def bootstrap_interval(
    key: jax.Array,
    metric_fn: Callable[..., Any],
    *arrays: Any,
    num_samples: int = 1000,
    confidence: float = 0.95,
    groups: Any = None,
) -> Interval:
    """Percentile bootstrap interval of ``metric_fn(*arrays)`` over resampled rows.

    One set of resampled row indices serves every array (paired bootstrap), so a metric that
    returns a difference (e.g. AUROC of score A minus AUROC of score B on the same examples) gets
    an interval of the difference. With ``groups``, whole groups are resampled (a cluster
    bootstrap: rows of one group, e.g. snapshots of one training run, are not independent).
    The metric is recomputed on every replicate (vmapped; ``metric_fn`` must be jittable).

    Args:
      key: PRNG key.
      metric_fn: ``metric_fn(*arrays) -> scalar or pytree of scalars``.
      *arrays: arrays with the same leading size N.
      num_samples: B replicates.
      confidence: two-sided level, e.g. 0.95.
      groups: optional int [N] group ids (0..G-1, every id present).

    Returns:
      :class:`Interval` with the full-data estimate and the percentile bounds (same pytree
      structure as the metric's output).
    """
    if not arrays:
        raise ValueError("bootstrap_interval needs at least one array")
    n = len(arrays[0])
    for i, a in enumerate(arrays):
        if len(a) != n:
            raise ValueError(f"array {i} has {len(a)} rows, array 0 has {n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")
    arrays = tuple(jnp.asarray(a) for a in arrays)
    keys = jax.random.split(key, num_samples)
    if groups is None:
        reps = _replicates_iid(metric_fn)(keys, arrays)
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups must have shape ({n},), got {groups.shape}")
        num_groups = int(groups.max()) + 1
        if set(np.unique(groups).tolist()) != set(range(num_groups)):
            raise ValueError("groups must use every id 0..G-1")
        members = [np.flatnonzero(groups == g) for g in range(num_groups)]
        sizes = {len(m) for m in members}
        if len(sizes) == 1:
            reps = _replicates_cluster(metric_fn)(keys, arrays, jnp.asarray(np.stack(members)))
        else:  # unequal clusters: each replicate has its own size, so loop on the host
            metric = jax.jit(metric_fn)
            outs = []
            for k in keys:
                pick = np.asarray(jax.random.randint(k, (num_groups,), 0, num_groups))
                idx = np.concatenate([members[g] for g in pick])
                outs.append(metric(*(a[idx] for a in arrays)))
            reps = jax.tree.map(lambda *xs: jnp.stack(xs), *outs)
    reps = jax.tree.map(np.asarray, reps)
    est = jax.tree.map(np.asarray, metric_fn(*arrays))
    alpha = (1.0 - confidence) / 2.0
    low = jax.tree.map(lambda r: np.nanquantile(r, alpha, axis=0), reps)
    high = jax.tree.map(lambda r: np.nanquantile(r, 1.0 - alpha, axis=0), reps)
    return Interval(estimate=est, low=low, high=high)


@functools.lru_cache(maxsize=64)
def _replicates_iid(metric_fn):
    def one(k, arrays):
        idx = jax.random.randint(k, (arrays[0].shape[0],), 0, arrays[0].shape[0])
        return metric_fn(*(a[idx] for a in arrays))

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


@functools.lru_cache(maxsize=64)
def _replicates_cluster(metric_fn):
    def one(k, arrays, table):
        pick = jax.random.randint(k, (table.shape[0],), 0, table.shape[0])
        idx = table[pick].reshape(-1)
        return metric_fn(*(a[idx] for a in arrays))

    return jax.jit(jax.vmap(one, in_axes=(0, None, None)))


# ----------------------------------------------------------------------------- stacked correctness


def stacked_correct(
    params: Any,
    test_sets: Any,
    *,
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    chunk: int = 2048,
    mesh: Any = None,
) -> dict[str, np.ndarray]:
    """Per-example correctness of R stacked models on several test sets, in one jitted call.

    The per-model ``apply_fn`` is lifted with ``jax.vmap`` over the stacked parameter axis (for
    dense models; :func:`stacked_accuracy` maps convolutions instead). All test sets are
    concatenated, padded to a multiple of ``chunk`` and scanned chunk by chunk (``lax.map``)
    inside one ``jit``, so memory stays at ``R * chunk * C`` logits. With several devices the
    model axis is sharded when R divides by the device count, else the example axis is.

    Args:
      params: pytree whose leaves have a leading axis R.
      test_sets: {name: (x [N_s, ...], y int [N_s])}, all with the same feature shape.
      apply_fn: ``apply_fn(params_r, x [B, ...]) -> logits [B, C]`` for ONE model, or [B] for
        a binary logit (positive predicts class 1).
      chunk: B, examples per step of the scan.
      mesh: devices to shard over (default: all).

    Returns:
      {name: bool [R, N_s]}.
    """
    from jax.sharding import NamedSharding, PartitionSpec

    from robustml_jax.core import sharding

    names = list(test_sets)
    if not names:
        raise ValueError("test_sets is empty")
    sizes = [len(test_sets[nm][1]) for nm in names]
    n = sum(sizes)
    chunk = max(1, min(chunk, n))
    num_chunks = -(-n // chunk)
    # One host copy: every set written into a zero-padded [S * B, ...] buffer.
    first = np.asarray(test_sets[names[0]][0])
    x = np.zeros((num_chunks * chunk, *first.shape[1:]), first.dtype)
    y = np.zeros((num_chunks * chunk,), np.int32)
    start = 0
    for nm, size in zip(names, sizes, strict=True):
        if len(test_sets[nm][0]) != size:
            raise ValueError(f"test set {nm!r}: {len(test_sets[nm][0])} inputs, {size} labels")
        x[start : start + size] = test_sets[nm][0]
        y[start : start + size] = test_sets[nm][1]
        start += size
    x = x.reshape(num_chunks, chunk, *x.shape[1:])
    y = y.reshape(num_chunks, chunk)

    mesh = mesh if mesh is not None else sharding.data_mesh()
    num_models = jax.tree.leaves(params)[0].shape[0]
    ndev = mesh.devices.size
    if ndev > 1 and num_models % ndev == 0:
        params = jax.device_put(params, NamedSharding(mesh, PartitionSpec(sharding.DATA_AXIS)))
    elif ndev > 1 and chunk % ndev == 0:
        spec = NamedSharding(mesh, PartitionSpec(None, sharding.DATA_AXIS))
        x, y = jax.device_put(x, spec), jax.device_put(y, spec)
    out = np.asarray(_stacked_correct_scan(apply_fn)(params, x, y))  # [S, R, B]
    out = np.moveaxis(out, 1, 0).reshape(num_models, -1)[:, :n]
    bounds = np.cumsum([0, *sizes])
    return {nm: out[:, bounds[i] : bounds[i + 1]] for i, nm in enumerate(names)}


@functools.lru_cache(maxsize=32)
def _stacked_correct_scan(apply_fn):
    """The jitted chunk scan for one ``apply_fn`` (cached, so repeated calls do not recompile)."""

    def correct(ps, xb, yb):
        logits = jax.vmap(apply_fn, in_axes=(0, None))(ps, xb)  # [R, B, C] or [R, B]
        if logits.ndim == 2:
            pred = (logits > 0).astype(jnp.int32)
        else:
            pred = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return pred == yb[None, :]

    return jax.jit(lambda ps, x, y: jax.lax.map(lambda xy: correct(ps, *xy), (x, y)))


@functools.partial(jax.jit, static_argnames=("num_bins",))
def expected_calibration_error(
    confidence: jax.Array, correct: jax.Array, *, num_bins: int = 15
) -> jax.Array:
    """Expected calibration error of probabilities ``confidence`` [N] for outcomes ``correct`` [N].

    Equal-width bins on [0, 1] (a confidence of exactly 1 goes to the last bin);
    ECE = sum_b (n_b / N) |mean(correct in b) - mean(confidence in b)| (Guo et al., 2017).
    Works for any binary event, e.g. "the top-1 label is right" or "a scored label is true".

    Args:
      confidence: float [N] in [0, 1].
      correct: bool [N].
      num_bins: number of bins, static.

    Returns:
      scalar in [0, 1].
    """
    conf = jnp.clip(confidence.astype(jnp.float32), 0.0, 1.0)
    b = jnp.minimum((conf * num_bins).astype(jnp.int32), num_bins - 1)
    acc = jax.ops.segment_sum(correct.astype(jnp.float32), b, num_bins)
    cs = jax.ops.segment_sum(conf, b, num_bins)
    return jnp.sum(jnp.abs(acc - cs)) / conf.shape[0]
