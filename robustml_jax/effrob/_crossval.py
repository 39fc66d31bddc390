"""Out-of-sample quality of effective-robustness baselines: cross-validated predictions.

In-sample R^2 of nested least-squares fits can only rise when an ID set is added, so it cannot
show that a multi-ID baseline predicts OOD accuracy better than a single-ID one. Here every
model's OOD accuracy is predicted by a fit that did not see it (nor its fold): k-fold over
models, or leave-one-group-out (the held-out fold is a whole training group, the case the paper
is about: a single-ID baseline fitted on other training distributions mispredicts it).

All folds are fitted at once: a fold's fit is the weighted least-squares fit with weight 0 on
its held-out models, vmapped over folds.

Shapes: M = models, K = ID test sets, F = folds.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from robustml_jax.effrob import _fit, _transforms

__all__ = ["kfold_assignment", "out_of_fold_predictions"]


def kfold_assignment(key: jax.Array, num_models: int, num_folds: int) -> np.ndarray:
    """A random, balanced assignment of M models to F folds: int [M] in 0..F-1."""
    if not 2 <= num_folds <= num_models:
        raise ValueError(f"num_folds must be in [2, {num_models}], got {num_folds}")
    perm = np.asarray(jax.random.permutation(key, num_models))
    folds = np.empty(num_models, np.int32)
    folds[perm] = np.arange(num_models) % num_folds
    return folds


@functools.partial(jax.jit, static_argnames=("num_folds", "transform"))
def _oof(id_acc, ood_acc, folds, *, num_folds, transform):
    def one(f):
        w = (folds != f).astype(ood_acc.dtype)
        return _fit._fit_core(id_acc, ood_acc, w, transform).predict_transformed(id_acc)

    z = jax.vmap(one)(jnp.arange(num_folds))  # [F, M]
    return _transforms.inverse(jnp.take_along_axis(z, folds[None, :], axis=0)[0], transform)


def out_of_fold_predictions(
    id_acc: jax.Array, ood_acc: jax.Array, folds: np.ndarray, *, transform: str = "logit"
) -> jax.Array:
    """Each model's OOD accuracy predicted by the baseline fitted without its fold.

    Args:
      id_acc: [M, K] (or [M]) ID accuracies (fractions).
      ood_acc: [M] OOD accuracies.
      folds: int [M] fold of each model (0..F-1, e.g. :func:`kfold_assignment` or group ids).
      transform: "logit" or "probit".

    Returns:
      [M] predicted OOD accuracies (fractions); ``ood_acc - prediction`` is the out-of-fold ER.

    Raises:
      ValueError: a fold leaves fewer than K + 1 models to fit, or shapes disagree.
    """
    _transforms._check_name(transform)
    id_acc = _fit._as_2d(jnp.asarray(id_acc, jnp.float32))
    ood_acc = jnp.asarray(ood_acc, jnp.float32)
    _transforms.check_accuracies(id_acc, "id_acc", ndim=2)
    _transforms.check_accuracies(ood_acc, "ood_acc", ndim=1)
    folds = np.asarray(folds)
    m, k = id_acc.shape
    if folds.shape != (m,) or ood_acc.shape != (m,):
        raise ValueError(
            f"id_acc has {m} rows; ood_acc {tuple(ood_acc.shape)} and folds {folds.shape} "
            "must be [M]"
        )
    num_folds = int(folds.max()) + 1
    left = m - np.bincount(folds, minlength=num_folds)
    if folds.min() < 0 or left.min() < k + 1:
        raise ValueError(
            f"every fold must leave at least {k + 1} models to fit (folds use ids 0..F-1); "
            f"the smallest leaves {int(left.min())}"
        )
    return _oof(
        id_acc, ood_acc, jnp.asarray(folds, jnp.int32), num_folds=num_folds, transform=transform
    )
