"""Watermark extraction: WESR on a suspect model the owner does not control, and the test.

The suspect is the released encoder fine-tuned by someone else with a fresh head on a task the
owner never saw, so the owner cannot name a target *label*. The watermark forces triggered
inputs to one representation, which any head maps to one class; the owner's target behaviour is
therefore "the trigger flips predictions to a fixed class":

1. probe texts X (from the suspect's task; black-box queries), split into a calibration half
   and an evaluation half (by index parity);
2. ``c*`` = the most frequent prediction on the triggered calibration half (ties: lowest id);
3. WESR = among evaluation texts whose clean prediction is not ``c*``, the share whose triggered
   prediction is ``c*`` (a flip rate to the fixed class). Texts already predicted ``c*`` carry no
   information and are excluded, so a model that ignores the trigger scores ~0, not the
   class prior.

The test: H0 "the suspect is a clean model" (fine-tuned from the unwatermarked encoder). The
statistic is the suspect's WESR; clean models' WESRs vary between fine-tuning runs (more than
binomial noise), so a binomial test against their pooled flip rate is anti-conservative. We
use the one-sided prediction t-test: with ``r_1..r_m`` the clean reference models' WESRs and
``g = arcsin(sqrt(r))`` (variance-stabilising), ``t = (g - mean(g_i)) / (s * sqrt(1 + 1/m))`` is
Student-t with m - 1 degrees of freedom under H0 when the g's are normal, whatever their
between-model spread; ``s`` is floored at the binomial sampling s.d. ``1 / (2 sqrt(n))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats

__all__ = [
    "FlipStats",
    "binomial_pvalue",
    "choose_target",
    "flip_stats",
    "watermark_pvalue",
    "wesr",
]


def _preds(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D predicted class ids, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class ids, got dtype {a.dtype}")
    return a.astype(np.int64)


def choose_target(trig_pred: np.ndarray, num_classes: int) -> int:
    """The most frequent class among triggered predictions (ties: the lowest id)."""
    p = _preds(trig_pred, "trig_pred")
    if p.size == 0:
        raise ValueError("choose_target needs at least one prediction")
    if p.min() < 0 or p.max() >= num_classes:
        raise ValueError(f"predictions must be in [0, {num_classes})")
    return int(np.argmax(np.bincount(p, minlength=num_classes)))


def wesr(clean_pred: np.ndarray, trig_pred: np.ndarray, target: int) -> tuple[int, int]:
    """Flips to ``target``: (#{clean != target and trig == target}, #{clean != target}).

    WESR is their ratio (NaN when no input is eligible).
    """
    c = _preds(clean_pred, "clean_pred")
    t = _preds(trig_pred, "trig_pred")
    if c.shape != t.shape:
        raise ValueError(f"clean_pred {c.shape} and trig_pred {t.shape} differ in shape")
    eligible = c != target
    return int(np.sum(eligible & (t == target))), int(np.sum(eligible))


class FlipStats(NamedTuple):
    """WESR of one trigger on one suspect.

    Attributes:
      target: the class ``c*`` chosen on the calibration half.
      flips: evaluation texts flipped to ``c*``.
      eligible: evaluation texts whose clean prediction is not ``c*``.
      rate: flips / eligible (NaN if none eligible).
    """

    target: int
    flips: int
    eligible: int
    rate: float


def flip_stats(clean_pred: np.ndarray, trig_pred: np.ndarray, num_classes: int) -> FlipStats:
    """WESR with the target class chosen on the even-indexed half, measured on the odd half."""
    c = _preds(clean_pred, "clean_pred")
    t = _preds(trig_pred, "trig_pred")
    if c.shape != t.shape:
        raise ValueError(f"clean_pred {c.shape} and trig_pred {t.shape} differ in shape")
    if c.size < 2:
        raise ValueError("flip_stats needs at least 2 probe texts (calibration + evaluation)")
    target = choose_target(t[0::2], num_classes)
    k, n = wesr(c[1::2], t[1::2], target)
    return FlipStats(target, k, n, k / n if n else float("nan"))


def _g(r) -> np.ndarray:
    return np.arcsin(np.sqrt(np.clip(np.asarray(r, np.float64), 0.0, 1.0)))


def watermark_pvalue(suspect_rate: float, clean_rates: Sequence[float], n: int) -> float:
    """One-sided p-value of H0 "clean" from the prediction t-test (see the module docstring).

    Args:
      suspect_rate: the suspect's WESR in [0, 1].
      clean_rates: m >= 2 clean reference models' WESRs measured the same way.
      n: eligible probe texts per rate (sets the binomial floor on the spread).

    Returns:
      P(T_{m-1} >= t).
    """
    r = np.asarray(clean_rates, np.float64)
    if r.ndim != 1 or r.size < 2:
        raise ValueError(f"need >= 2 clean reference rates, got {r.size}")
    if not (np.all(np.isfinite(r)) and np.isfinite(suspect_rate)):
        raise ValueError("rates must be finite (no eligible probe texts?)")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    g = _g(r)
    m = g.size
    s = max(float(np.std(g, ddof=1)), 0.5 / np.sqrt(n))
    t = (float(_g(suspect_rate)) - g.mean()) / (s * np.sqrt(1.0 + 1.0 / m))
    return float(stats.t.sf(t, df=m - 1))


def binomial_pvalue(flips: int, eligible: int, p0: float) -> float:
    """P(Binomial(eligible, p0) >= flips): the naive test against a pooled clean flip rate.

    Kept for comparison only: it ignores between-model variation and is anti-conservative.
    """
    if eligible < 1:
        raise ValueError("binomial_pvalue needs eligible >= 1")
    return float(stats.binom.sf(flips - 1, eligible, min(max(p0, 0.0), 1.0)))
