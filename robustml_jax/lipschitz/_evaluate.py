"""Evaluation of every bound at many points (resumable), its summaries, and monotonicity.

:func:`evaluate_bounds` is a host-side loop around jitted single-point bounds (it compiles
each method once per network and shape, outside the timings) plus the exact value from LPs;
:func:`certify_monotone` vmaps the partial-derivative bounds over points.

Shapes: P = points, M = len(ALL_METHODS), N_0 = input size, F = input features (N_0).
"""

from __future__ import annotations

import functools
import os
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from robustml_jax.core.workitems import WorkItems
from robustml_jax.lipschitz._bounds import (
    gradient_bounds,
    local_lipschitz_bound,
    partial_derivative_bound,
)
from robustml_jax.lipschitz._network import forward
from robustml_jax.lipschitz._reference import exact_lipschitz, sampled_lower_bound

__all__ = [
    "ALL_METHODS",
    "BOUND_METHODS",
    "BoundTable",
    "MonotoneCertificates",
    "bounds_table",
    "certify_monotone",
    "evaluate_bounds",
    "point_items",
    "summarize",
]

BOUND_METHODS = ("naive", "interval", "recurjac", "ours", "ours_alpha", "ours_bab")
ALL_METHODS = (*BOUND_METHODS, "sampled", "exact")
_TOL = 1e-4  # relative and absolute slack of the soundness and ordering checks (float32 bounds)


class BoundTable(NamedTuple):
    """Per-point values and seconds of every method (columns in :data:`ALL_METHODS` order).

    Attributes:
      values: float64 [P, M], NaN where a method did not run.
      times: float64 [P, M], seconds after compilation.
    """

    values: np.ndarray
    times: np.ndarray


def _save_item(folder: pathlib.Path, item: Mapping[str, np.ndarray]) -> None:
    folder.mkdir(parents=True)
    np.savez(folder / "item.npz", **item)


def _load_item(folder: pathlib.Path) -> dict[str, np.ndarray]:
    with np.load(folder / "item.npz") as f:
        return {k: f[k] for k in f.files}


def point_items(directory: str | os.PathLike) -> WorkItems:
    """The :class:`WorkItems` folder of :func:`evaluate_bounds` (one ``point_<p>`` per point)."""
    return WorkItems(directory, save=_save_item, load=_load_item)


def evaluate_bounds(
    net,
    key: jax.Array,
    points,
    *,
    eps: float,
    methods: Sequence[str] = BOUND_METHODS,
    bab_steps: int = 0,
    bab_batch: int = 4,
    samples: int = 256,
    ascent_starts: int = 8,
    ascent_steps: int = 10,
    exact: bool = False,
    exact_time_limit_s: float = 60.0,
    directory: str | os.PathLike | None = None,
    progress: bool = False,
    desc: str = "bounds",
) -> BoundTable:
    """Every method's bound at every point, timed after compilation.

    With ``directory``, each point is a work item (``<directory>/point_<p>``) saved as soon as
    it is done, so a killed run resumes at the first unfinished point.

    Args:
      net: converted layers (:func:`from_flax` / :func:`from_dense`).
      key: PRNG key of the sampled lower bound; point p uses ``fold_in(key, p)``.
      points: [P, N_0] ball centres.
      eps: l_inf radius.
      methods: which of :data:`BOUND_METHODS` to run ("ours_bab" only with ``bab_steps > 0``;
        "ours_alpha" is ours with alpha-CROWN forward bounds).
      bab_steps, bab_batch: branch-and-bound budget of "ours_bab".
      samples, ascent_starts, ascent_steps: the sampled lower bound's budget.
      exact: also compute the exact value (dense nets only; skipped with a warning when the
        enumeration exceeds ``exact_time_limit_s``).
      directory: where the per-point items live (None: keep nothing).
      progress: show a progress bar.

    Returns:
      :class:`BoundTable`.
    """
    from tqdm.auto import tqdm

    points = np.asarray(points)
    num = points.shape[0]
    fns = {}
    for m in [m for m in ("naive", "interval", "recurjac", "ours") if m in methods]:
        fns[m] = jax.jit(functools.partial(local_lipschitz_bound, eps=eps, method=m))
    if "ours_alpha" in methods:  # alpha-CROWN forward bounds (20 Adam steps per layer)
        fns["ours_alpha"] = jax.jit(
            functools.partial(local_lipschitz_bound, eps=eps, method="ours", forward="alpha")
        )
    if bab_steps > 0 and "ours_bab" in methods:
        fns["ours_bab"] = jax.jit(
            functools.partial(
                local_lipschitz_bound,
                eps=eps,
                method="ours",
                bab_steps=bab_steps,
                bab_batch=bab_batch,
            )
        )
    sampled = jax.jit(
        functools.partial(
            sampled_lower_bound,
            eps=eps,
            num_samples=samples,
            ascent_starts=ascent_starts,
            ascent_steps=ascent_steps,
        )
    )
    warmed = []

    def compute(p: int) -> dict[str, np.ndarray]:
        x0 = jnp.asarray(points[p])
        values = np.full((len(ALL_METHODS),), np.nan)
        times = np.full((len(ALL_METHODS),), np.nan)
        if not warmed:  # compile outside the timings
            for fn in fns.values():
                jax.block_until_ready(fn(net, x0))
            jax.block_until_ready(sampled(net, key, x0))
            warmed.append(True)
        for name, fn in fns.items():
            t0 = time.perf_counter()
            values[ALL_METHODS.index(name)] = float(jax.block_until_ready(fn(net, x0)))
            times[ALL_METHODS.index(name)] = time.perf_counter() - t0
        t0 = time.perf_counter()
        values[ALL_METHODS.index("sampled")] = float(sampled(net, jax.random.fold_in(key, p), x0))
        times[ALL_METHODS.index("sampled")] = time.perf_counter() - t0
        if exact:
            t0 = time.perf_counter()
            try:
                res = exact_lipschitz(
                    net, np.asarray(x0, np.float64), eps, time_limit_s=exact_time_limit_s
                )
                values[ALL_METHODS.index("exact")] = res.value
            except RuntimeError as e:
                logging.warning("exact value skipped: %s", e)
            times[ALL_METHODS.index("exact")] = time.perf_counter() - t0
        return {"values": values, "times": times}

    items = None if directory is None else point_items(directory)
    rows = []
    for p in tqdm(range(num), desc=desc, disable=not progress, leave=False):
        if items is None:
            rows.append(compute(p))
        else:
            rows.append(items.get(f"point_{p:05d}", functools.partial(compute, p)))
    if not rows:
        empty = np.zeros((0, len(ALL_METHODS)))
        return BoundTable(empty, empty.copy())
    return BoundTable(np.stack([r["values"] for r in rows]), np.stack([r["times"] for r in rows]))


def _ran(col: Mapping[str, np.ndarray]) -> list[str]:
    return [m for m, v in col.items() if not np.all(np.isnan(v))]


def summarize(table: BoundTable) -> dict:
    """Per-method means and seconds, and the soundness / ordering / exactness checks of a task.

    Keys: ``<method>_mean``, ``<method>_time_s`` (methods that ran); ``sound_vs_sampled``
    (every bound >= the sampled lower bound); ``ordering_holds`` (ours <= recurjac <= naive,
    ours_bab <= ours and ours_alpha <= ours at every point); with exact values:
    ``exact_points``, ``gap_ours_pct``, ``gap_ours_bab_pct``, ``gap_ours_alpha_pct``,
    ``gap_recurjac_pct`` (mean % above exact) and ``sound_vs_exact``.
    """
    vals, times = np.asarray(table.values), np.asarray(table.times)
    col = {m: vals[:, i] for i, m in enumerate(ALL_METHODS)}
    out = {}
    for i, m in enumerate(ALL_METHODS):
        if np.all(np.isnan(vals[:, i])):
            continue
        out[f"{m}_mean"] = float(np.nanmean(vals[:, i]))
        out[f"{m}_time_s"] = float(np.nanmean(times[:, i]))
    tol = _TOL
    samp = col["sampled"]
    sound = [np.all(col[m] >= samp * (1 - tol) - tol) for m in BOUND_METHODS if m in _ran(col)]
    out["sound_vs_sampled"] = bool(np.all(sound))
    ordered = col["ours"] <= col["recurjac"] * (1 + tol) + tol
    ordered &= col["recurjac"] <= col["naive"] * (1 + tol) + tol
    if "ours_bab" in _ran(col):
        ordered &= col["ours_bab"] <= col["ours"] * (1 + tol) + tol
    if "ours_alpha" in _ran(col):
        ordered &= col["ours_alpha"] <= col["ours"] * (1 + tol) + tol
    out["ordering_holds"] = bool(np.all(ordered))
    if "exact" in _ran(col):
        ok = ~np.isnan(col["exact"])
        if ok.any():
            ex = col["exact"][ok]
            out["exact_points"] = int(ok.sum())
            out["gap_ours_pct"] = float(np.mean(col["ours"][ok] / ex - 1) * 100)
            if "ours_bab" in _ran(col):
                out["gap_ours_bab_pct"] = float(np.mean(col["ours_bab"][ok] / ex - 1) * 100)
            if "ours_alpha" in _ran(col):
                out["gap_ours_alpha_pct"] = float(np.mean(col["ours_alpha"][ok] / ex - 1) * 100)
            out["gap_recurjac_pct"] = float(np.mean(col["recurjac"][ok] / ex - 1) * 100)
            out["sound_vs_exact"] = bool(
                all(
                    np.all(col[m][ok] >= ex * (1 - tol) - tol)
                    for m in BOUND_METHODS
                    if m in _ran(col)
                )
            )
    return out


def bounds_table(results: Mapping[str, Mapping]) -> str:
    """Markdown table of the mean bound (and ms per point) of every method for every task.

    Args:
      results: task name -> :func:`summarize` output; a ``"monotone"`` entry is skipped.
    """
    cols = list(ALL_METHODS)
    lines = ["| task | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for t, v in results.items():
        if t == "monotone":
            continue
        cells = []
        for m in cols:
            if f"{m}_mean" in v:
                cells.append(f"{v[f'{m}_mean']:.4g} ({v[f'{m}_time_s'] * 1e3:.0f} ms)")
            else:
                cells.append("-")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


class MonotoneCertificates(NamedTuple):
    """Local monotonicity of ``c . f`` in each input feature at P points (paper Sec. 5.4).

    Attributes:
      lower, upper: [P, F] our bounds on each partial derivative over the ball.
      certified: bool [P, F], ours proves a constant sign (lower >= 0 or upper <= 0).
      certified_recurjac: bool [P, F], the same with RecurJac's bounds.
      certified_bab: bool [P, F], ours, then BaB on the pairs that sampling leaves possible
        (only at the first ``bab_points`` points).
      consistent: bool [P, F], no sign change among the sampled derivatives (an upper limit on
        what any sound method can certify).
      sound: bool, every sampled derivative lies within [lower, upper].
    """

    lower: np.ndarray
    upper: np.ndarray
    certified: np.ndarray
    certified_recurjac: np.ndarray
    certified_bab: np.ndarray
    consistent: np.ndarray
    sound: bool


def certify_monotone(
    net,
    key: jax.Array,
    points,
    *,
    eps: float,
    c,
    samples: int,
    bab_steps: int = 0,
    bab_points: int = 0,
    bab_batch: int = 4,
) -> MonotoneCertificates:
    """Certifies local monotonicity of ``c . f`` in every feature on l_inf balls around points.

    Args:
      net: converted layers.
      key: PRNG key of the sampled derivatives (one set of ``samples`` offsets for all points).
      points: [P, F] ball centres.
      eps: radius.
      c: [K] output direction.
      samples: sampled points per ball.
      bab_steps, bab_batch: branch-and-bound budget per (point, feature) pair.
      bab_points: BaB runs only at the first ``bab_points`` points.
    """
    pts = jnp.asarray(points)
    c = jnp.asarray(c)

    def bounds(method):
        def one(x0):
            res = gradient_bounds(net, x0, eps, c=c, method=method)
            return res.lower, res.upper

        return tuple(np.asarray(a) for a in jax.jit(jax.vmap(one))(pts))

    lo, up = bounds("ours")
    lo_rj, up_rj = bounds("recurjac")
    offs = jax.random.uniform(key, (samples, pts.shape[1]), minval=-eps, maxval=eps)
    grad = jax.vmap(jax.vmap(jax.grad(lambda v: forward(net, v) @ c)))(pts[:, None, :] + offs[None])
    g = np.asarray(grad)
    consistent = (g.min(1) >= 0) | (g.max(1) <= 0)
    cert = (lo >= 0) | (up <= 0)
    cert_rj = (lo_rj >= 0) | (up_rj <= 0)
    cert_bab = cert.copy()
    todo = np.argwhere(consistent & ~cert)
    todo = todo[todo[:, 0] < bab_points]
    if bab_steps > 0 and len(todo):
        signs = np.where(g.min(1) >= 0, 1.0, -1.0)[todo[:, 0], todo[:, 1]]
        bab = jax.jit(
            jax.vmap(
                lambda x0, f, s: partial_derivative_bound(
                    net, x0, eps, f, c=c, sign=s, bab_steps=bab_steps, bab_batch=bab_batch
                )
            )
        )
        low = np.asarray(bab(pts[todo[:, 0]], jnp.asarray(todo[:, 1]), jnp.asarray(signs)))
        cert_bab[todo[:, 0], todo[:, 1]] = low >= 0
    sound = bool(np.all(lo <= g.min(1) + 1e-4) and np.all(up >= g.max(1) - 1e-4))
    return MonotoneCertificates(lo, up, cert, cert_rj, cert_bab, consistent, sound)
