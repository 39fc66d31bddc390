"""Fits, effective-robustness tables and plots for an :class:`AccuracyTable` (host side).

For every OOD test set, one fit per chosen ID combination (each ID set alone, and all together
when there are several), per-model ER, per-group mean ER, R^2 and MAE, with optional bootstrap
intervals. This is what the CLI and the experiments call.

Shapes: M = models, K = ID test sets, N = test examples.
"""

from __future__ import annotations

import csv
import io
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from robustml_jax.core import plotting
from robustml_jax.core.results import atomic_write_text, write_results
from robustml_jax.effrob import _bootstrap, _fit, _transforms
from robustml_jax.effrob._table import AccuracyTable

__all__ = ["analyze_table", "default_id_sets", "fit_name", "write_analysis"]


def default_id_sets(k: int) -> list[tuple[int, ...]]:
    """Each ID set alone, then all K together (when K > 1)."""
    sets = [(i,) for i in range(k)]
    return sets + [tuple(range(k))] if k > 1 else sets


def fit_name(table: AccuracyTable, id_set: Sequence[int]) -> str:
    kind = "single" if len(id_set) == 1 else "multi"
    return f"{kind}:" + "+".join(table.id_names[i] for i in id_set)


def analyze_table(
    table: AccuracyTable,
    *,
    id_sets: Sequence[Sequence[int]] | None = None,
    transform: str = "logit",
    key: jax.Array | None = None,
    num_bootstrap: int = 0,
    correct: Mapping[str, np.ndarray] | None = None,
    sizes: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Fits every (OOD set, ID combination) pair of ``table``.

    Args:
      table: the models' accuracies.
      id_sets: ID-column index tuples to fit on (default :func:`default_id_sets`).
      transform: "logit" or "probit".
      key, num_bootstrap: bootstrap replicates (0: none).
      correct: optional {test-set name: [M, N] 0/1 correctness}: exact example resampling.
      sizes: optional {test-set name: N}: binomial example resampling from the table alone.

    Returns:
      ``{"fits": {ood: {fit_name: summary}}, "er": {ood: {fit_name: [M] ER}}}``; summaries hold
      ``coef``, ``intercept``, ``r2``, ``mae_pp``, ``group_er_pp`` (mean ER per group, accuracy
      points) and, with a bootstrap, ``r2_ci`` and ``group_er_ci_pp``.
    """
    id_sets = [tuple(s) for s in (id_sets or default_id_sets(len(table.id_names)))]
    groups = table.group_names()
    gidx = np.array([groups.index(g) for g in table.groups])
    fits: dict[str, dict] = {}
    ers: dict[str, dict] = {}
    if num_bootstrap and key is None:
        raise ValueError("num_bootstrap > 0 needs a PRNG key")
    for j, ood in enumerate(table.ood_names):
        fits[ood], ers[ood] = {}, {}
        for s_i, id_set in enumerate(id_sets):
            name = fit_name(table, id_set)
            id_acc = table.id_acc[:, list(id_set)]
            ood_acc = table.ood_acc[:, j]
            fit = _fit.fit_effective_robustness(id_acc, ood_acc, transform=transform)
            er = np.asarray(_fit.effective_robustness(fit, id_acc, ood_acc), np.float64)
            summary: dict[str, Any] = {
                "id_sets": [table.id_names[i] for i in id_set],
                "coef": np.asarray(fit.coef).tolist(),
                "intercept": float(fit.intercept),
                "r2": float(fit.r2),
                "r2_adj": _adjusted_r2(float(fit.r2), table.num_models, len(id_set) + 1),
                "mae_pp": 100 * float(fit.mae),
                "group_er_pp": {g: 100 * float(er[gidx == i].mean()) for i, g in enumerate(groups)},
                "group_size": {g: int(np.sum(gidx == i)) for i, g in enumerate(groups)},
            }
            if num_bootstrap:
                bkey = jax.random.fold_in(jax.random.fold_in(key, j), s_i)
                bs = _run_bootstrap(
                    bkey, table, id_set, j, transform, num_bootstrap, correct, sizes
                )
                summary["r2_ci"] = [float(v) for v in _bootstrap.confidence_interval(bs.r2)]
                group_er = np.stack(
                    [np.asarray(bs.er)[:, gidx == i].mean(axis=1) for i in range(len(groups))],
                    axis=1,
                )
                lo, hi = _bootstrap.confidence_interval(group_er)
                summary["group_er_ci_pp"] = {
                    g: [100 * float(lo[i]), 100 * float(hi[i])] for i, g in enumerate(groups)
                }
            fits[ood][name] = summary
            ers[ood][name] = er
    return {"fits": fits, "er": ers, "transform": transform}


def _adjusted_r2(r2: float, m: int, p: int) -> float:
    """R^2 penalised for the number of fitted parameters p (in-sample R^2 never drops when a
    regressor is added, so single- vs multi-ID comparisons should also look at this)."""
    return 1.0 - (1.0 - r2) * (m - 1) / (m - p) if m > p else float("nan")


def _run_bootstrap(key, table, id_set, j, transform, num, correct, sizes):
    ood = table.ood_names[j]
    ids = [table.id_names[i] for i in id_set]
    if correct is not None and all(n in correct for n in (*ids, ood)):
        return _bootstrap.bootstrap_from_correct(
            key, [correct[n] for n in ids], correct[ood], num_samples=num, transform=transform
        )
    sizes = sizes or {}
    id_sizes = [sizes[n] for n in ids] if all(n in sizes for n in ids) else None
    return _bootstrap.bootstrap_from_accuracies(
        key,
        table.id_acc[:, list(id_set)],
        table.ood_acc[:, j],
        id_sizes=id_sizes,
        ood_size=sizes.get(ood),
        num_samples=num,
        transform=transform,
    )


def write_analysis(
    workdir: str | pathlib.Path, table: AccuracyTable, analysis: Mapping[str, Any], *, tag: str
) -> list[pathlib.Path]:
    """Writes ``<tag>_fits.json``, ``<tag>_er.csv`` and one plot per OOD set into ``workdir``.

    Returns:
      The plot paths.
    """
    workdir = pathlib.Path(workdir)
    write_results(workdir, {"fits": analysis["fits"]}, name=f"{tag}_fits.json")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = [(o, f) for o in analysis["er"] for f in analysis["er"][o]]
    w.writerow(
        ["model", "group", *table.id_names, *table.ood_names, *(f"ER_pp[{o}|{f}]" for o, f in cols)]
    )
    for i in range(table.num_models):
        accs = [f"{v:.4f}" for v in (*table.id_acc[i], *table.ood_acc[i])]
        er = [f"{100 * analysis['er'][o][f][i]:.3f}" for o, f in cols]
        w.writerow([table.names[i], table.groups[i], *accs, *er])
    atomic_write_text(workdir / f"{tag}_er.csv", buf.getvalue())
    plots = []
    for j, ood in enumerate(table.ood_names):
        fig = plot_fits(table, j, analysis["fits"][ood], analysis["transform"])
        plots.append(plotting.save(fig, workdir / f"{tag}_{_slug(ood)}.png"))
    return plots


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s).strip("_").lower()


def plot_fits(table: AccuracyTable, j: int, fits: Mapping[str, Any], transform: str):
    """One panel per single-ID fit (OOD vs ID on transformed axes, with the fitted line) and one
    predicted-vs-actual panel per multi-ID fit; points coloured by training group."""
    groups = table.group_names()
    colors = plotting.colormap("tab10" if len(groups) <= 10 else "tab20")
    names = list(fits)
    fig, axes = plotting.subplots(1, len(names), figsize=(4.6 * len(names), 4.2), squeeze=False)
    ood_acc = table.ood_acc[:, j]
    tf = lambda a: np.asarray(_transforms.forward(np.asarray(a, np.float32), transform))
    for ax, name in zip(axes[0], names, strict=True):
        f = fits[name]
        idx = [table.id_names.index(n) for n in f["id_sets"]]
        fit = _fit.EffRobFit(
            coef=np.asarray(f["coef"], np.float32),
            intercept=np.float32(f["intercept"]),
            r2=np.float32(f["r2"]),
            mae=np.float32(f["mae_pp"] / 100),
            transform=transform,
        )
        pred = np.asarray(fit.predict(table.id_acc[:, idx].astype(np.float32)))
        if len(idx) == 1:
            x = table.id_acc[:, idx[0]]
            xs = np.linspace(x.min(), x.max(), 100)
            ax.plot(tf(xs), tf(np.asarray(fit.predict(xs[:, None].astype(np.float32)))), "k-")
            ax.set_xlabel(f"{table.id_names[idx[0]]} accuracy ({transform} axis)")
        else:
            x = pred
            lim = np.array([min(pred.min(), ood_acc.min()), max(pred.max(), ood_acc.max())])
            ax.plot(tf(lim), tf(lim), "k-")
            ax.set_xlabel(f"predicted {table.ood_names[j]} accuracy ({transform} axis)")
        for g_i, g in enumerate(groups):
            m = np.array([gg == g for gg in table.groups])
            ax.scatter(tf(x[m]), tf(ood_acc[m]), s=14, color=colors(g_i), label=g, alpha=0.8)
        _accuracy_ticks(ax, transform)
        ax.set_ylabel(f"{table.ood_names[j]} accuracy ({transform} axis)")
        ax.set_title(f"{name}\nR$^2$={f['r2']:.3f}, MAE={f['mae_pp']:.2f} pp", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _accuracy_ticks(ax, transform: str) -> None:
    """Labels transformed axes with the accuracies (in %) they stand for."""
    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        cand = np.array([0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99])
        z = np.asarray(_transforms.forward(cand.astype(np.float32), transform))
        keep = (z >= lo) & (z <= hi)
        if keep.sum() >= 2:
            axis.set_ticks(z[keep])
            axis.set_ticklabels([f"{100 * c:g}" for c in cand[keep]])
