"""Bootstrap confidence intervals for effective-robustness fits, vmapped over replicates.

Each replicate resamples the models (with replacement: bootstrap counts become least-squares
weights, so every replicate has the same shapes and the replicates vmap) and the test examples of
every test set (the same example draw for all models, which keeps the correlation between models
that share a test set). ER is then evaluated for every original model under the replicate's fit
and resampled accuracies, so per-model and per-group intervals come out of one set of samples.

Shapes: B = bootstrap replicates, M = models, K = ID test sets, N_k = examples in test set k.
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
]


class BootstrapResult(NamedTuple):
    """Bootstrap samples (leading axis B).

    Attributes:
      coef: [B, K] slopes.
      intercept: [B] intercepts.
      r2: [B] R^2 over the resampled models.
      mae: [B] MAE (fraction) over the resampled models.
      er: [B, M] effective robustness (fraction) of every original model.
    """

    coef: jax.Array
    intercept: jax.Array
    r2: jax.Array
    mae: jax.Array
    er: jax.Array


def _model_weights(key, m: int, resample: bool, dtype):
    if not resample:
        return jnp.ones((m,), dtype)
    idx = jax.random.randint(key, (m,), 0, m)
    return jnp.bincount(idx, length=m).astype(dtype)


def _replicate(id_acc, ood_acc, w, transform) -> tuple:
    fit = _fit._fit_core(id_acc, ood_acc, w, transform)
    er = ood_acc - _transforms.inverse(fit.predict_transformed(id_acc), transform)
    return fit.coef, fit.intercept, fit.r2, fit.mae, er


def bootstrap_from_correct(
    key: jax.Array,
    id_correct: Sequence[jax.Array],
    ood_correct: jax.Array,
    *,
    num_samples: int = 1000,
    transform: str = "logit",
    resample_models: bool = True,
    resample_examples: bool = True,
    batch_size: int = 100,
) -> BootstrapResult:
    """Nonparametric bootstrap from per-example correctness.

    Args:
      key: PRNG key; replicate b uses ``fold_in(key, b)``.
      id_correct: K arrays [M, N_k] of 0/1 correctness on the ID test sets.
      ood_correct: [M, N] 0/1 correctness on the OOD test set.
      num_samples: B.
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
    # Pad every set to one power-of-two length so that calls with different test-set sizes share
    # one compiled function; padded columns never receive a bootstrap count.
    sizes = np.array([c.shape[1] for c in sets], np.int32)
    n_pad = 1 << int(np.ceil(np.log2(sizes.max())))
    stacked = np.zeros((len(sets), m, n_pad), np.float32)
    for i, c in enumerate(sets):
        stacked[i, :, : c.shape[1]] = c
    return BootstrapResult(
        *_boot_correct(
            key,
            jnp.asarray(stacked),
            jnp.asarray(sizes),
            num_samples=num_samples,
            transform=transform,
            resample_models=resample_models,
            resample_examples=resample_examples,
            batch_size=min(batch_size, num_samples),
        )
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "num_samples",
        "transform",
        "resample_models",
        "resample_examples",
        "batch_size",
    ),
)
def _boot_correct(
    key, stacked, sizes, *, num_samples, transform, resample_models, resample_examples, batch_size
):
    """stacked: [K + 1, M, N_pad] correctness (OOD last); sizes: [K + 1] true lengths."""
    num_sets, m, n_pad = stacked.shape
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
        keys = jax.random.split(k_sets, num_sets)
        accs = jax.vmap(set_acc)(keys, stacked, sizes)  # [K + 1, M]
        w = _model_weights(k_model, m, resample_models, stacked.dtype)
        return _replicate(accs[:-1].T, accs[-1], w, transform)

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
    id_acc = jnp.asarray(id_acc, jnp.float32)
    ood_acc = jnp.asarray(ood_acc, jnp.float32)

    return BootstrapResult(
        *_boot_acc(
            key,
            id_acc,
            ood_acc,
            jnp.asarray(id_sizes if id_sizes is not None else [1] * k, jnp.float32),
            jnp.asarray(ood_size if ood_size is not None else 1, jnp.float32),
            resample_id=id_sizes is not None,
            resample_ood=ood_size is not None,
            num_samples=num_samples,
            transform=transform,
            resample_models=resample_models,
        )
    )


@functools.partial(
    jax.jit,
    static_argnames=("resample_id", "resample_ood", "num_samples", "transform", "resample_models"),
)
def _boot_acc(
    key,
    id_acc,
    ood_acc,
    id_n,
    ood_n,
    *,
    resample_id,
    resample_ood,
    num_samples,
    transform,
    resample_models,
):
    m, k = id_acc.shape

    def resample(key, acc, n, on):
        if not on:
            return acc
        return jax.random.binomial(key, n, acc).astype(acc.dtype) / n

    def one(b):
        k_model, k_ood, k_id = jax.random.split(jax.random.fold_in(key, b), 3)
        ids = resample(k_id, id_acc, id_n[None, :], resample_id)
        ood = resample(k_ood, ood_acc, ood_n, resample_ood)
        w = _model_weights(k_model, m, resample_models, id_acc.dtype)
        return _replicate(ids, ood, w, transform)

    return jax.lax.map(one, jnp.arange(num_samples), batch_size=min(num_samples, 200))


def confidence_interval(samples: jax.Array, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0 of ``samples`` ([B, ...] -> two [...] arrays)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    s = np.asarray(samples)
    lo, hi = np.nanpercentile(s, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return lo, hi
