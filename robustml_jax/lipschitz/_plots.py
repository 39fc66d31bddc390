"""Figures of the experiment's results (pyplot-free, from :mod:`robustml_jax.core.plotting`).

Each function takes the experiment's per-task summaries (:func:`summarize` output plus the
task's ``width`` / ``depth``) and returns a ``matplotlib.figure.Figure`` or None when there is
nothing to draw; the caller saves or shows it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from robustml_jax.core import plotting
from robustml_jax.lipschitz._evaluate import ALL_METHODS, BOUND_METHODS

__all__ = ["monotonicity_figure", "sweep_figure", "time_figure"]


def sweep_figure(results: Mapping[str, Mapping], sweep: str, fixed: str):
    """Mean bound of every method against the synthetic MLPs' hidden ``sweep`` ("width" or
    "depth"), over the largest group of tasks sharing ``fixed``; None with fewer than 2 tasks."""
    groups: dict = {}
    for name, v in results.items():
        if name.startswith("synthetic"):
            groups.setdefault(v[fixed], []).append(v)
    best = sorted(max(groups.values(), key=len, default=[]), key=lambda v: v[sweep])
    if len(best) < 2:
        return None
    fig, ax = plotting.subplots(figsize=(5, 3.5))
    for m in ALL_METHODS:
        xs = [v[sweep] for v in best if f"{m}_mean" in v]
        ys = [v[f"{m}_mean"] for v in best if f"{m}_mean" in v]
        if xs:
            ax.plot(xs, ys, marker="o", label=m)
    ax.set_yscale("log")
    ax.set_xlabel(f"hidden {sweep}")
    ax.set_ylabel("local Lipschitz bound (mean over points)")
    ax.set_title(f"synthetic 16-d MLPs: {sweep} sweep")
    ax.legend(fontsize=7)
    return fig


def time_figure(results: Mapping[str, Mapping]):
    """Seconds per point of every bound method on every task (log scale); None if no task."""
    tasks = [k for k in results if k != "monotone"]
    if not tasks:
        return None
    fig, ax = plotting.subplots(figsize=(7, 3.5))
    width = 0.8 / len(BOUND_METHODS)
    for j, m in enumerate(BOUND_METHODS):
        ys = [results[t].get(f"{m}_time_s", math.nan) for t in tasks]
        ax.bar(np.arange(len(tasks)) + j * width, ys, width, label=m)
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2)
    ax.set_xticklabels(tasks, rotation=30, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("seconds per point")
    ax.legend(fontsize=7)
    return fig


def monotonicity_figure(mono: Mapping):
    """Fraction of test points certified monotone per feature (RecurJac, ours, ours + BaB) next
    to the fraction where sampling sees no sign change.

    Args:
      mono: the experiment's ``monotone`` summary (``features``, ``certified_frac*``,
        ``sampled_consistent_frac``, ``eps``).
    """
    fig, ax = plotting.subplots(figsize=(6, 3.2))
    xs = np.arange(len(mono["features"]))
    w = 0.2
    ax.bar(xs - 1.5 * w, mono["certified_frac_recurjac"], w, label="recurjac (certified)")
    ax.bar(xs - 0.5 * w, mono["certified_frac"], w, label="ours (certified)")
    ax.bar(xs + 0.5 * w, mono["certified_frac_bab"], w, label="ours + BaB (certified)")
    ax.bar(xs + 1.5 * w, mono["sampled_consistent_frac"], w, label="sampled: no sign change")
    ax.set_xticks(xs)
    ax.set_xticklabels(mono["features"])
    ax.set_ylabel("fraction of test points")
    ax.set_title(f"local monotonicity, diabetes MLP, eps={mono['eps']}")
    ax.legend(fontsize=7)
    return fig
