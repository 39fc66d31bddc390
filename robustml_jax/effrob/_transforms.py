"""Accuracy transforms (logit, probit) and input checks shared by the fit and the bootstrap.

Shapes: M = models, K = in-distribution (ID) test sets.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr, ndtri

__all__ = ["TRANSFORMS", "check_accuracies", "forward", "inverse"]

TRANSFORMS = ("logit", "probit")

# Exact 0 or 1 accuracies are moved this far inside (0, 1) so the transform stays finite. Half a
# correct example out of 10^6 is below the resolution of every test set we use.
CLIP_EPS = 1e-6


def _check_name(transform: str) -> None:
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform '{transform}'; choose one of: {', '.join(TRANSFORMS)}")


def forward(acc: jax.Array, transform: str = "logit") -> jax.Array:
    """Maps accuracies in (0, 1) to the real line: logit(p) = ln(p / (1 - p)) or probit = Phi^-1(p).

    Accuracies are clipped to [CLIP_EPS, 1 - CLIP_EPS] (see :func:`check_accuracies` for the
    warning that host-side callers get).
    """
    _check_name(transform)
    p = jnp.clip(acc, CLIP_EPS, 1.0 - CLIP_EPS)
    if transform == "logit":
        return jnp.log(p) - jnp.log1p(-p)
    return ndtri(p)


def inverse(z: jax.Array, transform: str = "logit") -> jax.Array:
    """The inverse of :func:`forward` (sigmoid or the standard normal CDF)."""
    _check_name(transform)
    if transform == "logit":
        return jax.nn.sigmoid(z)
    return ndtr(z)


def _is_traced(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def check_accuracies(acc, name: str, *, ndim: int) -> None:
    """Host-side checks on a concrete accuracy array; does nothing under tracing.

    Raises:
      ValueError: wrong rank, NaN/inf, or values outside [0, 1].
    Warns:
      UserWarning: when some accuracies are exactly 0 or 1 (they are clipped).
    """
    if _is_traced(acc):
        return
    a = np.asarray(acc, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[:5].tolist()
        raise ValueError(f"{name} contains NaN or infinite values (first at indices {bad})")
    if np.any((a < 0) | (a > 1)):
        lo, hi = float(a.min()), float(a.max())
        raise ValueError(
            f"{name} must be fractions in [0, 1] (got values in [{lo:.4g}, {hi:.4g}]; "
            "pass accuracies as fractions, not percentages)"
        )
    n_edge = int(np.sum((a == 0) | (a == 1)))
    if n_edge:
        warnings.warn(
            f"{name} has {n_edge} accuracies of exactly 0 or 1; clipped to "
            f"[{CLIP_EPS:g}, 1 - {CLIP_EPS:g}] before the transform",
            UserWarning,
            stacklevel=3,
        )
