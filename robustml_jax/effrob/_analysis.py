"""Fits, effective-robustness tables and plots for an :class:`AccuracyTable` (host side).

For every OOD test set, one fit per chosen ID combination (each ID set alone, and all together
when there are several): per-model ER, per-group mean ER, R^2, MAE and cross-validated error,
the multi-ID fit's paired reductions against each single-ID fit, with optional bootstrap
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
from robustml_jax.effrob import _bootstrap, _crossval, _fit, _plot3d, _transforms
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
    clusters: Sequence[Any] | None = None,
    fit_groups: Sequence[str] | None = None,
    num_folds: int = 5,
) -> dict[str, Any]:
    """Fits every (OOD set, ID combination) pair of ``table`` and tests single- vs multi-ID.

    For each OOD set the models with an accuracy on it (blank = NaN cells drop the model for
    that OOD set only) and on every ID set are used. Per fit: coefficients, R^2, adjusted R^2,
    MAE, per-model and per-group ER, mean |group ER|, and the cross-validated MAE of the
    baseline's predictions (``cv_mae_pp``: ``logo`` = leave one training group out, ``kfold`` =
    ``num_folds`` folds of whole clusters). Per single-ID fit, ``compare`` holds the multi-ID
    fit's reduction of the cross-validated error and of the mean |group ER| (single minus
    multi: positive = the multi-ID baseline is better).

    Bootstrap (``num_bootstrap`` > 0): every fit of one OOD set uses the same key and test-set
    ids, so replicates are paired across fits and every reduction gets an interval. Group-level
    statistics, R^2 and CV errors resample clusters (default: models) within their training
    group and recompute each statistic on the resample; per-model ER intervals also resample
    the test examples (from ``correct``, or binomially from ``sizes``), since a model's own ER
    carries its test-set noise.

    Args:
      table: the models' accuracies (NaN = not measured).
      id_sets: ID-column index tuples to fit on (default :func:`default_id_sets`).
      transform: "logit" or "probit".
      key, num_bootstrap: bootstrap replicates (0: none).
      correct: optional {test-set name: [M, N] 0/1 correctness}: exact example resampling.
      sizes: optional {test-set name: N}: binomial example resampling from the table alone.
      clusters: optional M cluster labels (e.g. training runs of zoo snapshots); default the
        table's ``clusters``.
      fit_groups: fit the baselines on the models of these groups only and score all models
        (Taori et al.'s protocol); R^2, MAE and CV errors are over the fitted models.
      num_folds: k of the k-fold CV.

    Returns:
      ``{"fits": {ood: {fit_name: summary}}, "compare": {ood: {single_fit: reductions}},
      "er": {ood: {fit_name: [M] ER (NaN where not scored)}}, "er_ci": {ood: {fit_name:
      ([M], [M])}} (with a bootstrap), "transform": transform}``.
    """
    id_sets = [tuple(s) for s in (id_sets or default_id_sets(len(table.id_names)))]
    if num_bootstrap and key is None:
        raise ValueError("num_bootstrap > 0 needs a PRNG key")
    if key is None:
        key = jax.random.key(0)
    groups = table.group_names()
    gidx = np.array([groups.index(g) for g in table.groups])
    if clusters is None:
        clusters = table.clusters
    cl = np.arange(table.num_models) if clusters is None else np.asarray(clusters)
    if cl.shape != (table.num_models,):
        raise ValueError(f"clusters must have one label per model ({table.num_models})")
    fit_mask = np.ones(table.num_models, bool)
    if fit_groups:
        unknown = sorted(set(fit_groups) - set(groups))
        if unknown:
            raise ValueError(f"fit_groups {unknown} are not groups of the table: {groups}")
        fit_mask = np.isin(np.asarray(table.groups), list(fit_groups))
    id_ok = np.all(np.isfinite(table.id_acc), axis=1)
    out: dict[str, Any] = {"fits": {}, "compare": {}, "er": {}, "er_ci": {}}
    out["transform"] = transform
    for j, ood in enumerate(table.ood_names):
        rows = id_ok & np.isfinite(table.ood_acc[:, j])
        res = _analyze_ood(
            table,
            j,
            rows,
            id_sets,
            gidx,
            cl,
            fit_mask,
            transform=transform,
            key=jax.random.fold_in(key, j),
            num_bootstrap=num_bootstrap,
            correct=correct,
            sizes=sizes,
            num_folds=num_folds,
        )
        out["fits"][ood], out["compare"][ood], out["er"][ood], out["er_ci"][ood] = res
    return out


def _folds(key, gidx, clusters, fit_mask, num_folds):
    """[V, M] fold schemes over the fitted models: leave-one-group-out (when the fitted models
    span two or more groups) and k folds of whole clusters; names of the schemes."""
    schemes, names = [], []
    fit_groups = np.unique(gidx[fit_mask])
    if len(fit_groups) >= 2:
        schemes.append(gidx)
        names.append("logo")
    _, cl = np.unique(clusters, return_inverse=True)
    fitted = np.unique(cl[fit_mask])
    k = min(num_folds, len(fitted))
    if k >= 2:
        per_cluster = np.zeros(cl.max() + 1, np.int32)
        per_cluster[fitted] = _crossval.kfold_assignment(key, len(fitted), k)
        schemes.append(per_cluster[cl])
        names.append("kfold")
    return (np.stack(schemes) if schemes else None), names


def _analyze_ood(
    table,
    j,
    rows,
    id_sets,
    gidx,
    clusters,
    fit_mask,
    *,
    transform,
    key,
    num_bootstrap,
    correct,
    sizes,
    num_folds,
):
    m_all = table.num_models
    g_rows, cl_rows, fit_rows = gidx[rows], clusters[rows], fit_mask[rows]
    num_groups = int(gidx.max()) + 1
    group_names = table.group_names()
    folds, scheme_names = _folds(jax.random.fold_in(key, 1), g_rows, cl_rows, fit_rows, num_folds)
    fits, ers, er_cis, reps = {}, {}, {}, {}
    ood_acc = table.ood_acc[rows, j]
    for id_set in id_sets:
        name = fit_name(table, id_set)
        id_acc = table.id_acc[rows][:, list(id_set)]
        pt = _bootstrap.point_statistics(
            id_acc, ood_acc, transform=transform, fit_mask=fit_rows, folds=folds
        )
        er = np.asarray(pt.er[0], np.float64)
        group_er = _bootstrap.group_means(pt.er, pt.weights, g_rows)[0]
        present = [g for g in range(num_groups) if np.any(g_rows == g)]
        n_fit = int(fit_rows.sum())
        summary: dict[str, Any] = {
            "id_sets": [table.id_names[i] for i in id_set],
            "coef": np.asarray(pt.coef[0]).tolist(),
            "intercept": float(pt.intercept[0]),
            "r2": float(pt.r2[0]),
            "r2_adj": _adjusted_r2(float(pt.r2[0]), n_fit, len(id_set) + 1),
            "mae_pp": 100 * float(pt.mae[0]),
            "num_models": int(rows.sum()),
            "num_fit": n_fit,
            "group_er_pp": {group_names[g]: 100 * float(group_er[g]) for g in present},
            "group_size": {group_names[g]: int(np.sum(g_rows == g)) for g in present},
            "mean_abs_group_er_pp": 100 * float(np.mean(np.abs(group_er[present]))),
            "cv_mae_pp": {
                s: 100 * float(v) for s, v in zip(scheme_names, pt.cv_mae[0], strict=True)
            },
        }
        full_er = np.full(m_all, np.nan)
        full_er[rows] = er
        ers[name] = full_er
        if num_bootstrap:
            common = dict(
                num_samples=num_bootstrap,
                transform=transform,
                clusters=cl_rows,
                strata=g_rows,
                fit_mask=fit_rows,
                set_ids=[*id_set, len(table.id_names) + j],
            )
            bs = _run_bootstrap(
                key, table, rows, id_set, j, correct, None, folds=folds, examples=False, **common
            )
            g_reps = _bootstrap.group_means(bs.er, bs.weights, g_rows)[:, present]
            reps[name] = {
                "mean_abs_group_er": np.mean(np.abs(g_reps), axis=1),
                "cv_mae": np.asarray(bs.cv_mae),
            }
            summary["r2_ci"] = _ci(bs.r2)
            lo, hi = _bootstrap.confidence_interval(g_reps)
            summary["group_er_ci_pp"] = {
                group_names[g]: [100 * float(lo[i]), 100 * float(hi[i])]
                for i, g in enumerate(present)
            }
            summary["mean_abs_group_er_ci_pp"] = _ci(100 * reps[name]["mean_abs_group_er"])
            summary["cv_mae_ci_pp"] = {
                s: _ci(100 * reps[name]["cv_mae"][:, v]) for v, s in enumerate(scheme_names)
            }
            # Per-model ER: the model is given; its fit and its own test noise vary (without
            # per-example data or test-set sizes, only the fit's noise is known).
            names = [*(table.id_names[i] for i in id_set), table.ood_names[j]]
            has_examples = (correct is not None and all(n in correct for n in names)) or (
                sizes is not None and any(n in sizes for n in names)
            )
            bs_m = bs
            if has_examples:
                bs_m = _run_bootstrap(
                    jax.random.fold_in(key, 2),
                    table,
                    rows,
                    id_set,
                    j,
                    correct,
                    sizes,
                    folds=None,
                    examples=True,
                    **common,
                )
            lo, hi = _bootstrap.confidence_interval(bs_m.er)
            full_lo, full_hi = np.full(m_all, np.nan), np.full(m_all, np.nan)
            full_lo[rows], full_hi[rows] = lo, hi
            er_cis[name] = (full_lo, full_hi)
        fits[name] = summary
    compare = {}
    multi = [f for f in fits if f.startswith("multi:")]
    if multi:
        mname = multi[-1]
        for f in fits:
            if not f.startswith("single:"):
                continue
            c: dict[str, Any] = {
                "multi": mname,
                "mean_abs_group_er_reduction_pp": fits[f]["mean_abs_group_er_pp"]
                - fits[mname]["mean_abs_group_er_pp"],
                "cv_mae_reduction_pp": {
                    s: fits[f]["cv_mae_pp"][s] - fits[mname]["cv_mae_pp"][s] for s in scheme_names
                },
            }
            if num_bootstrap:
                d = reps[f]["mean_abs_group_er"] - reps[mname]["mean_abs_group_er"]
                c["mean_abs_group_er_reduction_ci_pp"] = _ci(100 * d)
                c["cv_mae_reduction_ci_pp"] = {
                    s: _ci(100 * (reps[f]["cv_mae"][:, v] - reps[mname]["cv_mae"][:, v]))
                    for v, s in enumerate(scheme_names)
                }
            compare[f] = c
    return fits, compare, ers, er_cis


def _ci(samples) -> list[float]:
    lo, hi = _bootstrap.confidence_interval(np.asarray(samples, np.float64))
    return [float(lo), float(hi)]


def _adjusted_r2(r2: float, m: int, p: int) -> float:
    """R^2 penalised for the number of fitted parameters p (in-sample R^2 never drops when a
    regressor is added, so single- vs multi-ID comparisons should also look at this)."""
    return 1.0 - (1.0 - r2) * (m - 1) / (m - p) if m > p else float("nan")


def _run_bootstrap(key, table, rows, id_set, j, correct, sizes, *, folds, examples, **common):
    ood = table.ood_names[j]
    ids = [table.id_names[i] for i in id_set]
    if correct is not None and all(n in correct for n in (*ids, ood)):
        return _bootstrap.bootstrap_from_correct(
            key,
            [np.asarray(correct[n])[rows] for n in ids],
            np.asarray(correct[ood])[rows],
            resample_examples=examples,
            folds=folds,
            **common,
        )
    sizes = (sizes or {}) if examples else {}
    id_sizes = [sizes[n] for n in ids] if all(n in sizes for n in ids) else None
    return _bootstrap.bootstrap_from_accuracies(
        key,
        table.id_acc[rows][:, list(id_set)],
        table.ood_acc[rows, j],
        id_sizes=id_sizes,
        ood_size=sizes.get(ood),
        folds=folds,
        **common,
    )


def write_analysis(
    workdir: str | pathlib.Path, table: AccuracyTable, analysis: Mapping[str, Any], *, tag: str
) -> list[pathlib.Path]:
    """Writes ``<tag>_fits.json``, ``<tag>_er.csv`` and one plot per OOD set into ``workdir``.

    The CSV has one row per model: its accuracies (blank where not measured), and per (OOD
    set, fit) its ER in accuracy points with, after a bootstrap, the 95% interval. Each fit on
    two ID sets also gets the fitted plane in 3-D: ``<tag>_<ood>_<fit>_3d.png`` and, next to
    it, a self-contained ``.html`` page to rotate it.

    Returns:
      The plot paths.
    """
    workdir = pathlib.Path(workdir)
    write_results(
        workdir, {"fits": analysis["fits"], "compare": analysis["compare"]}, name=f"{tag}_fits.json"
    )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = [(o, f) for o in analysis["er"] for f in analysis["er"][o]]
    header = ["model", "group", *table.id_names, *table.ood_names]
    for o, f in cols:
        header.append(f"ER_pp[{o}|{f}]")
        if analysis["er_ci"].get(o, {}).get(f) is not None:
            header += [f"ER_pp_low[{o}|{f}]", f"ER_pp_high[{o}|{f}]"]
    w.writerow(header)
    cell = lambda v, fmt: "" if not np.isfinite(v) else format(v, fmt)
    for i in range(table.num_models):
        row = [table.names[i], table.groups[i]]
        row += [cell(v, ".4f") for v in (*table.id_acc[i], *table.ood_acc[i])]
        for o, f in cols:
            row.append(cell(100 * analysis["er"][o][f][i], ".3f"))
            ci = analysis["er_ci"].get(o, {}).get(f)
            if ci is not None:
                row += [cell(100 * ci[0][i], ".3f"), cell(100 * ci[1][i], ".3f")]
        w.writerow(row)
    atomic_write_text(workdir / f"{tag}_er.csv", buf.getvalue())
    plots = []
    for j, ood in enumerate(table.ood_names):
        rows = np.all(np.isfinite(table.id_acc), axis=1) & np.isfinite(table.ood_acc[:, j])
        fig = plot_fits(table.select(rows), j, analysis["fits"][ood], analysis["transform"])
        plots.append(plotting.save(fig, workdir / f"{tag}_{_slug(ood)}.png"))
        for name, fit in analysis["fits"][ood].items():
            if len(fit["id_sets"]) != 2:
                continue
            stem = workdir / f"{tag}_{_slug(ood)}_{_slug(name)}_3d"
            plots.append(
                plotting.save(
                    _plot3d.plane_figure(table, j, fit, analysis["transform"]),
                    stem.with_suffix(".png"),
                )
            )
            page = _plot3d.plane_html(table, j, fit, analysis["transform"])
            atomic_write_text(stem.with_suffix(".html"), page)
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
