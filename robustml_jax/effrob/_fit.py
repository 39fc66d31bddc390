"""Effective robustness from single- or multi-ID linear fits in transformed-accuracy space.

Shi et al. 2023 ("Effective Robustness against Natural Distribution Shifts for Models with
Different Training Data", arXiv 2302.01381), Sec. 3: the baseline predicts a model's OOD
accuracy from its accuracies on K in-distribution (ID) test sets,

    T(acc_ood) ~ b0 + sum_k b_k T(acc_id_k),      T = logit (or probit),

fitted by least squares across a set of models. Effective robustness (ER) is
``acc_ood - T^-1(b0 + sum_k b_k T(acc_id_k))``: a difference of fractions. K = 1 is the classic
single-ID evaluation of Taori et al. 2020.

Shapes: M = models, K = ID test sets, P = K + 1 fitted parameters.
"""

from __future__ import annotations

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np

from robustml_jax.effrob import _transforms

__all__ = ["EffRobFit", "effective_robustness", "fit_effective_robustness", "weighted_lstsq"]


@flax.struct.dataclass
class EffRobFit:
    """A fitted baseline.

    Attributes:
      coef: [K] slopes b_1..b_K in transformed space.
      intercept: [] b0 in transformed space.
      r2: [] coefficient of determination of the fit, in transformed space (what least squares
        maximises), over the fitted models.
      mae: [] mean absolute error of the predicted OOD accuracy over the fitted models, as a
        fraction (multiply by 100 for accuracy points).
      transform: "logit" or "probit" (static).
    """

    coef: jax.Array
    intercept: jax.Array
    r2: jax.Array
    mae: jax.Array
    transform: str = flax.struct.field(pytree_node=False, default="logit")

    @property
    def num_id(self) -> int:
        return int(self.coef.shape[-1])

    def predict_transformed(self, id_acc: jax.Array) -> jax.Array:
        """[M, K] ID accuracies -> [M] predicted OOD accuracy in transformed space."""
        z = _transforms.forward(_as_2d(id_acc), self.transform)
        return z @ self.coef + self.intercept

    def predict(self, id_acc: jax.Array) -> jax.Array:
        """[M, K] ID accuracies (fractions) -> [M] predicted OOD accuracy (fractions)."""
        if not _transforms._is_traced(id_acc):
            _transforms.check_accuracies(_as_2d(id_acc), "id_acc", ndim=2)
            k = np.shape(_as_2d(id_acc))[1]
            if k != self.num_id:
                raise ValueError(f"fit has {self.num_id} ID test set(s) but id_acc has {k}")
        return _transforms.inverse(self.predict_transformed(id_acc), self.transform)


def _as_2d(id_acc):
    id_acc = jnp.asarray(id_acc)
    return id_acc[:, None] if id_acc.ndim == 1 else id_acc


def weighted_lstsq(x: jax.Array, y: jax.Array, w: jax.Array) -> jax.Array:
    """Solves min_beta sum_m w_m (y_m - [1, x_m] . beta)^2 (pure; jittable, vmappable).

    Uses an SVD-based solver, so rank-deficient problems (e.g. a bootstrap resample holding
    fewer distinct models than parameters) return the minimum-norm solution instead of NaN.

    Args:
      x: [M, K] regressors.
      y: [M] targets.
      w: [M] non-negative weights (bootstrap counts; ones for plain least squares).

    Returns:
      [K + 1] parameters: intercept first, then the K slopes.
    """
    design = jnp.concatenate([jnp.ones_like(y)[:, None], x], axis=1)
    sw = jnp.sqrt(w)
    beta, *_ = jnp.linalg.lstsq(design * sw[:, None], y * sw)
    return beta


@functools.partial(jax.jit, static_argnames="transform")
def _fit_core(id_acc, ood_acc, w, transform: str) -> EffRobFit:
    x = _transforms.forward(id_acc, transform)
    y = _transforms.forward(ood_acc, transform)
    beta = weighted_lstsq(x, y, w)
    intercept, coef = beta[0], beta[1:]
    y_hat = x @ coef + intercept
    wsum = jnp.sum(w)
    y_bar = jnp.sum(w * y) / wsum
    ss_res = jnp.sum(w * (y - y_hat) ** 2)
    ss_tot = jnp.sum(w * (y - y_bar) ** 2)
    r2 = 1.0 - ss_res / ss_tot
    mae = jnp.sum(w * jnp.abs(ood_acc - _transforms.inverse(y_hat, transform))) / wsum
    return EffRobFit(coef=coef, intercept=intercept, r2=r2, mae=mae, transform=transform)


def fit_effective_robustness(
    id_acc: jax.Array,
    ood_acc: jax.Array,
    *,
    transform: str = "logit",
    weights: jax.Array | None = None,
) -> EffRobFit:
    """Fits the (multi-)ID baseline of Shi et al. 2023, Sec. 3, by least squares over models.

    Args:
      id_acc: [M, K] accuracies (fractions) of M models on K ID test sets; [M] means K = 1.
      ood_acc: [M] the same models' accuracies on one OOD test set.
      transform: "logit" (the paper's) or "probit".
      weights: optional [M] non-negative model weights (e.g. bootstrap counts).

    Returns:
      An :class:`EffRobFit` whose ``predict(id_acc)`` gives predicted OOD accuracy.

    Raises:
      ValueError: on NaN, values outside [0, 1], mismatched row counts, or fewer models than
        the K + 1 parameters. Exact 0 or 1 is clipped with a warning.
    """
    _transforms._check_name(transform)
    id_acc = _as_2d(id_acc)
    ood_acc = jnp.asarray(ood_acc)
    if not (_transforms._is_traced(id_acc) or _transforms._is_traced(ood_acc)):
        _transforms.check_accuracies(id_acc, "id_acc", ndim=2)
        _transforms.check_accuracies(ood_acc, "ood_acc", ndim=1)
        m, k = id_acc.shape
        if ood_acc.shape[0] != m:
            raise ValueError(
                f"id_acc has {m} rows (models) but ood_acc has {ood_acc.shape[0]}; "
                "both need one row per model"
            )
        if m < k + 1:
            raise ValueError(
                f"fewer models ({m}) than parameters to fit ({k + 1} = {k} slope(s) + intercept)"
            )
        if weights is not None and not _transforms._is_traced(weights):
            w = np.asarray(weights, np.float64)
            if w.shape != (m,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise ValueError(
                    f"weights must be {m} finite non-negative numbers with a positive sum, "
                    f"got shape {w.shape}"
                )
    dtype = jnp.result_type(id_acc.dtype, ood_acc.dtype, jnp.float32)
    id_acc, ood_acc = id_acc.astype(dtype), ood_acc.astype(dtype)
    w = jnp.ones_like(ood_acc) if weights is None else jnp.asarray(weights, dtype)
    return _fit_core(id_acc, ood_acc, w, transform)


def effective_robustness(fit: EffRobFit, id_acc: jax.Array, ood_acc: jax.Array) -> jax.Array:
    """ER = acc_ood - predicted acc_ood, per model, as a fraction ([M, K], [M] -> [M])."""
    id_acc = _as_2d(id_acc)
    ood_acc = jnp.asarray(ood_acc)
    if not _transforms._is_traced(ood_acc):
        _transforms.check_accuracies(ood_acc, "ood_acc", ndim=1)
        if np.shape(id_acc)[0] != ood_acc.shape[0]:
            raise ValueError(
                f"id_acc has {np.shape(id_acc)[0]} rows (models) but ood_acc has {ood_acc.shape[0]}"
            )
    return ood_acc - fit.predict(id_acc)
