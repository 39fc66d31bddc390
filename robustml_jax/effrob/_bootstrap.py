"""Bootstrap confidence intervals for effective-robustness fits, vmapped over replicates.

Each replicate resamples the models and the test examples of every test set, refits the
baseline and recomputes every statistic *on the resampled models* (the textbook bootstrap):

- Models are resampled with replacement, as bootstrap counts that become least-squares weights
  (fixed shapes, so replicates run under one ``jit``). With ``clusters`` whole clusters are
  resampled (a cluster bootstrap): snapshots of one training run are not independent models.
  With ``strata`` clusters are resampled within strata (e.g. training groups of a designed zoo,
  whose sizes are fixed by design, not drawn).
- Examples: from per-example correctness, one draw per test set shared by all models (keeps the
  correlation between models that share a test set); from a table, Binomial(n, acc) / n.
  A test set's draw depends only on the replicate and the set's id (``set_ids``), so the fits
  of one OOD set on different ID combinations see the same resample when given the same key:
  their replicates are paired, and differences between them get intervals.
- Statistics per replicate: the fit, R^2 and MAE over the resampled models, every original
  model's ER under the replicate's fit and accuracies (``er``; group statistics average it with
  the replicate's model counts ``weights``, see :func:`group_means`), and out-of-fold MAE for
  given fold schemes (``cv_mae``).

Shapes: B = bootstrap replicates, M = models, K = ID test sets, N_k = examples in test set k,
C = clusters, V = fold schemes, G = groups.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from robustml_jax.effrob import _fit, _transforms

__all__ = [
    "BootstrapResult",
    "bootstrap_from_accuracies",
    "bootstrap_from_correct",
    "confidence_interval",
    "group_means",
    "point_statistics",
]


class BootstrapResult(NamedTuple):
    """Bootstrap samples (leading axis B).

    Attributes:
      coef: [B, K] slopes.
      intercept: [B] intercepts.
      r2: [B] R^2 over the resampled models.
      mae: [B] MAE (fraction) over the resampled models.
      er: [B, M] effective robustness (fraction) of every original model under the replicate's
        fit and resampled accuracies.
      weights: [B, M] each model's count in the replicate's resample (its cluster's count).
      cv_mae: [B, V] out-of-fold MAE (fraction) over the resampled models, per fold scheme.
    """

    coef: jax.Array
    intercept: jax.Array
    r2: jax.Array
    mae: jax.Array
    er: jax.Array
    weights: jax.Array
    cv_mae: jax.Array


class _Design(NamedTuple):
    """How models are resampled: clusters [M] (0..C-1), and per cluster its stratum's member
    table row ``members[stratum]`` ([S, C_max] cluster ids) and size ``sizes[stratum]``."""

    clusters: jax.Array
    members: jax.Array
    cluster_members: jax.Array  # [C] row of members for each cluster's stratum
    cluster_sizes: jax.Array  # [C] clusters in each cluster's stratum


def _model_weights(key, design: _Design, num_clusters: int, resample: bool, dtype):
    """[M] bootstrap counts: within each stratum, as many clusters as it has are drawn with
    replacement; each model gets its cluster's count."""
    if not resample:
        return jnp.ones(design.clusters.shape, dtype)
    u = jax.random.randint(key, (num_clusters,), 0, design.cluster_sizes)
    idx = design.members[design.cluster_members, u]
    return jnp.bincount(idx, length=num_clusters).astype(dtype)[design.clusters]


def _replicate(id_acc, ood_acc, w, fit_mask, folds, num_folds, transform):
    """Every statistic of one (re)sample: the fit on the models with ``w * fit_mask`` weight,
    ER of all models, out-of-fold MAE over the fitted models per fold scheme."""
    fw = w * fit_mask
    fit = _fit._fit_core(id_acc, ood_acc, fw, transform)
    er = ood_acc - _transforms.inverse(fit.predict_transformed(id_acc), transform)

    def scheme(f_of_model):
        def one(f):
            held_in = fw * (f_of_model != f).astype(w.dtype)
            return _fit._fit_core(id_acc, ood_acc, held_in, transform).predict_transformed(id_acc)

        z = jax.vmap(one)(jnp.arange(num_folds))  # [F, M]
        pred = _transforms.inverse(jnp.take_along_axis(z, f_of_model[None], axis=0)[0], transform)
        return jnp.sum(fw * jnp.abs(ood_acc - pred)) / jnp.sum(fw)

    # A placeholder column when there are no fold schemes (lax.map cannot batch empty outputs);
    # the host wrappers drop it.
    cv = jax.vmap(scheme)(folds) if folds.shape[0] else jnp.zeros((1,), w.dtype)
    return fit.coef, fit.intercept, fit.r2, fit.mae, er, w, cv


def _prepare_groups(m, clusters, strata, folds):
    if clusters is None:
        clusters = np.arange(m)
    clusters = np.asarray(clusters)
    if clusters.shape != (m,):
        raise ValueError(f"clusters must be [M={m}] ids, got shape {clusters.shape}")
    _, clusters = np.unique(clusters, return_inverse=True)
    num_clusters = int(clusters.max()) + 1
    strata = np.zeros(m, np.int64) if strata is None else np.asarray(strata)
    if strata.shape != (m,):
        raise ValueError(f"strata must be [M={m}] ids, got shape {strata.shape}")
    _, strata = np.unique(strata, return_inverse=True)
    cluster_stratum = np.zeros(num_clusters, np.int64)
    cluster_stratum[clusters] = strata
    if np.any(cluster_stratum[clusters] != strata):
        raise ValueError("every cluster must lie within one stratum")
    rows = [np.flatnonzero(cluster_stratum == s) for s in range(int(strata.max()) + 1)]
    members = np.zeros((len(rows), max(len(r) for r in rows)), np.int32)
    for i, r in enumerate(rows):
        members[i, : len(r)] = r
    design = _Design(
        clusters=jnp.asarray(clusters, jnp.int32),
        members=jnp.asarray(members),
        cluster_members=jnp.asarray(cluster_stratum, jnp.int32),
        cluster_sizes=jnp.asarray([len(rows[s]) for s in cluster_stratum], jnp.int32),
    )
    folds = np.zeros((0, m), np.int32) if folds is None else np.asarray(folds, np.int32)
    if folds.ndim == 1:
        folds = folds[None]
    if folds.ndim != 2 or folds.shape[1] != m or (folds.size and folds.min() < 0):
        raise ValueError(f"folds must be [V, M={m}] non-negative fold ids, got {folds.shape}")
    num_folds = int(folds.max()) + 1 if folds.size else 1
    return design, num_clusters, jnp.asarray(folds), num_folds


def _result(out, num_schemes: int) -> BootstrapResult:
    *head, cv = out
    return BootstrapResult(*head, cv[:, :num_schemes])


def bootstrap_from_correct(
    key: jax.Array,
    id_correct: Sequence[jax.Array],
    ood_correct: jax.Array,
    *,
    num_samples: int = 1000,
    transform: str = "logit",
    resample_models: bool = True,
    resample_examples: bool = True,
    clusters: np.ndarray | None = None,
    strata: np.ndarray | None = None,
    fit_mask: np.ndarray | None = None,
    set_ids: Sequence[int] | None = None,
    folds: np.ndarray | None = None,
    batch_size: int = 100,
) -> BootstrapResult:
    """Nonparametric bootstrap from per-example correctness.

    Args:
      key: PRNG key; replicate b uses ``fold_in(key, b)``.
      id_correct: K arrays [M, N_k] of 0/1 correctness on the ID test sets.
      ood_correct: [M, N] 0/1 correctness on the OOD test set.
      num_samples: B.
      clusters: optional [M] cluster ids (e.g. training runs): whole clusters are resampled.
      strata: optional [M] stratum ids (e.g. training groups, when the zoo was designed with
        fixed group sizes): clusters are resampled within their stratum, so every replicate
        keeps the design's group composition. Each cluster must lie in one stratum.
      fit_mask: optional [M] 0/1: fit the baseline on these models only (e.g. Taori et al.'s
        baseline of standard ImageNet models) and score all; R^2, MAE and ``cv_mae`` are over
        the fitted models.
      set_ids: K + 1 ids of the test sets (ID sets, then OOD) that key their example draws;
        give the same ids (and key) to fits that share test sets to pair their replicates.
        Default ``0..K``.
      folds: optional [V, M] (or [M]) fold ids of V cross-validation schemes for ``cv_mae``.
      batch_size: replicates evaluated at once (bounds memory at ``batch_size * N`` counts).

    Returns:
      A :class:`BootstrapResult`.
    """
    sets = [np.asarray(c, np.float32) for c in (*id_correct, ood_correct)]
    m = sets[0].shape[0]
    if any(s.ndim != 2 or s.shape[0] != m for s in sets):
        raise ValueError(
            f"every correctness matrix must be [M={m}, N]; got {[tuple(s.shape) for s in sets]}"
        )
    if m < len(id_correct) + 1:
        raise ValueError(f"fewer models ({m}) than parameters to fit ({len(id_correct) + 1})")
    set_ids = _set_ids(set_ids, len(sets))
    design, num_clusters, folds, num_folds = _prepare_groups(m, clusters, strata, folds)
    # Pad every set to one power-of-two length so that calls with different test-set sizes share
    # one compiled function; padded columns never receive a bootstrap count.
    sizes = np.array([c.shape[1] for c in sets], np.int32)
    n_pad = 1 << int(np.ceil(np.log2(sizes.max())))
    stacked = np.zeros((len(sets), m, n_pad), np.float32)
    for i, c in enumerate(sets):
        stacked[i, :, : c.shape[1]] = c
    return _result(
        _boot_correct(
            key,
            jnp.asarray(stacked),
            jnp.asarray(sizes),
            set_ids,
            design,
            _fit_mask(fit_mask, m),
            folds,
            num_samples=num_samples,
            transform=transform,
            resample_models=resample_models,
            resample_examples=resample_examples,
            batch_size=min(batch_size, num_samples),
            num_clusters=num_clusters,
            num_folds=num_folds,
        ),
        folds.shape[0],
    )


@functools.partial(jax.jit, static_argnames=("num_folds", "transform"))
def _point(id_acc, ood_acc, fit_mask, folds, *, num_folds, transform):
    ones = jnp.ones_like(ood_acc)
    return _replicate(id_acc, ood_acc, ones, fit_mask, folds, num_folds, transform)


def point_statistics(
    id_acc: jax.Array,
    ood_acc: jax.Array,
    *,
    transform: str = "logit",
    fit_mask: np.ndarray | None = None,
    folds: np.ndarray | None = None,
) -> BootstrapResult:
    """The statistics the bootstrap resamples, on the data itself (leading axis B = 1).

    Args:
      id_acc: [M, K]; ood_acc: [M].
      fit_mask: optional [M] 0/1: the baseline is fitted on these models only (all are scored).
      folds: optional [V, M] fold ids for ``cv_mae``.
    """
    id_acc = _fit._as_2d(jnp.asarray(id_acc, jnp.float32))
    m = id_acc.shape[0]
    _, _, folds, num_folds = _prepare_groups(m, None, None, folds)
    out = _point(
        id_acc,
        jnp.asarray(ood_acc, jnp.float32),
        _fit_mask(fit_mask, m),
        folds,
        num_folds=num_folds,
        transform=transform,
    )
    return _result(jax.tree.map(lambda x: x[None], out), folds.shape[0])


def _fit_mask(fit_mask, m):
    if fit_mask is None:
        return jnp.ones((m,), jnp.float32)
    fit_mask = np.asarray(fit_mask, np.float32)
    if fit_mask.shape != (m,) or fit_mask.sum() < 2:
        raise ValueError(f"fit_mask must be [M={m}] 0/1 selecting at least 2 models")
    return jnp.asarray(fit_mask)


def _set_ids(set_ids, n):
    ids = np.arange(n) if set_ids is None else np.asarray(set_ids)
    if ids.shape != (n,):
        raise ValueError(f"set_ids must hold {n} ids (ID sets, then OOD), got {ids.shape}")
    return jnp.asarray(ids, jnp.int32)


@functools.partial(
    jax.jit,
    static_argnames=(
        "num_samples",
        "transform",
        "resample_models",
        "resample_examples",
        "batch_size",
        "num_clusters",
        "num_folds",
    ),
)
def _boot_correct(
    key,
    stacked,
    sizes,
    set_ids,
    design,
    fit_mask,
    folds,
    *,
    num_samples,
    transform,
    resample_models,
    resample_examples,
    batch_size,
    num_clusters,
    num_folds,
):
    """stacked: [K + 1, M, N_pad] correctness (OOD last); sizes: [K + 1] true lengths."""
    n_pad = stacked.shape[2]
    pos = jnp.arange(n_pad)

    def set_acc(k, c, n):
        nf = n.astype(c.dtype)
        if not resample_examples:
            return c.sum(axis=1) / nf
        # n draws with replacement from [0, n): the first n of n_pad draws count.
        idx = jax.random.randint(k, (n_pad,), 0, n)
        counts = jnp.zeros((n_pad,), c.dtype).at[idx].add((pos < n).astype(c.dtype))
        return c @ counts / nf

    def one(b):
        k_model, k_sets = jax.random.split(jax.random.fold_in(key, b))
        keys = jax.vmap(lambda i: jax.random.fold_in(k_sets, i))(set_ids)
        accs = jax.vmap(set_acc)(keys, stacked, sizes)  # [K + 1, M]
        w = _model_weights(k_model, design, num_clusters, resample_models, stacked.dtype)
        return _replicate(accs[:-1].T, accs[-1], w, fit_mask, folds, num_folds, transform)

    return jax.lax.map(one, jnp.arange(num_samples), batch_size=batch_size)


def bootstrap_from_accuracies(
    key: jax.Array,
    id_acc: jax.Array,
    ood_acc: jax.Array,
    *,
    id_sizes: Sequence[int] | None = None,
    ood_size: int | None = None,
    num_samples: int = 1000,
    transform: str = "logit",
    resample_models: bool = True,
    clusters: np.ndarray | None = None,
    strata: np.ndarray | None = None,
    fit_mask: np.ndarray | None = None,
    set_ids: Sequence[int] | None = None,
    folds: np.ndarray | None = None,
) -> BootstrapResult:
    """Bootstrap from an accuracy table (no per-example data).

    Models are resampled as in :func:`bootstrap_from_correct`. When test-set sizes are given,
    examples are resampled parametrically: a model's accuracy on a bootstrap resample of a test
    set of n examples is exactly Binomial(n, acc) / n, drawn independently per model (the
    correlation between models that share examples is not known from a table and is ignored).

    Args:
      id_acc: [M, K]; ood_acc: [M].
      id_sizes: K test-set sizes, or None to keep accuracies fixed (models resampled only).
      ood_size: OOD test-set size, or None.
      clusters, strata, fit_mask, set_ids, folds: as in :func:`bootstrap_from_correct`.
    """
    id_acc = _fit._as_2d(id_acc)
    _transforms.check_accuracies(id_acc, "id_acc", ndim=2)
    _transforms.check_accuracies(ood_acc, "ood_acc", ndim=1)
    m, k = id_acc.shape
    if np.shape(ood_acc)[0] != m:
        raise ValueError(f"id_acc has {m} rows (models) but ood_acc has {np.shape(ood_acc)[0]}")
    if m < k + 1:
        raise ValueError(f"fewer models ({m}) than parameters to fit ({k + 1})")
    if id_sizes is not None and len(id_sizes) != k:
        raise ValueError(f"id_sizes has {len(id_sizes)} entries for {k} ID test sets")
    design, num_clusters, folds, num_folds = _prepare_groups(m, clusters, strata, folds)
    return _result(
        _boot_acc(
            key,
            jnp.asarray(id_acc, jnp.float32),
            jnp.asarray(ood_acc, jnp.float32),
            jnp.asarray(id_sizes if id_sizes is not None else [1] * k, jnp.float32),
            jnp.asarray(ood_size if ood_size is not None else 1, jnp.float32),
            _set_ids(set_ids, k + 1),
            design,
            _fit_mask(fit_mask, m),
            folds,
            resample_id=id_sizes is not None,
            resample_ood=ood_size is not None,
            num_samples=num_samples,
            transform=transform,
            resample_models=resample_models,
            num_clusters=num_clusters,
            num_folds=num_folds,
        ),
        folds.shape[0],
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "resample_id",
        "resample_ood",
        "num_samples",
        "transform",
        "resample_models",
        "num_clusters",
        "num_folds",
    ),
)
def _boot_acc(
    key,
    id_acc,
    ood_acc,
    id_n,
    ood_n,
    set_ids,
    design,
    fit_mask,
    folds,
    *,
    resample_id,
    resample_ood,
    num_samples,
    transform,
    resample_models,
    num_clusters,
    num_folds,
):
    def resample(key, acc, n, on):
        if not on:
            return acc
        return jax.random.binomial(key, n, acc).astype(acc.dtype) / n

    def one(b):
        k_model, k_sets = jax.random.split(jax.random.fold_in(key, b))
        keys = jax.vmap(lambda i: jax.random.fold_in(k_sets, i))(set_ids)
        ids = jax.vmap(lambda kk, a, n: resample(kk, a, n, resample_id), in_axes=(0, 1, 0))(
            keys[:-1], id_acc, id_n
        ).T
        ood = resample(keys[-1], ood_acc, ood_n, resample_ood)
        w = _model_weights(k_model, design, num_clusters, resample_models, id_acc.dtype)
        return _replicate(ids, ood, w, fit_mask, folds, num_folds, transform)

    return jax.lax.map(one, jnp.arange(num_samples), batch_size=min(num_samples, 200))


def group_means(values: jax.Array, weights: jax.Array, groups: np.ndarray) -> np.ndarray:
    """Per-replicate weighted group means: the statistic recomputed on each resample.

    Args:
      values: [B, M] per-model values (e.g. ``BootstrapResult.er``).
      weights: [B, M] the replicates' model counts (``BootstrapResult.weights``).
      groups: int [M] group ids 0..G-1.

    Returns:
      [B, G]; NaN where a replicate drew no model of a group.
    """
    values, weights = np.asarray(values, np.float64), np.asarray(weights, np.float64)
    onehot = np.asarray(groups)[:, None] == np.arange(int(np.max(groups)) + 1)[None, :]
    num = (values * weights) @ onehot
    den = weights @ onehot
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def confidence_interval(samples: jax.Array, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0 of ``samples`` ([B, ...] -> two [...] arrays)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    s = np.asarray(samples)
    lo, hi = np.nanpercentile(s, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return lo, hi
