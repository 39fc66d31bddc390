"""Paper 1 (effective robustness with multiple ID test sets) in the reproduction report.

python -m experiments.effrob.report --workdir=/tmp/effrob_report --scale=small
"""

from __future__ import annotations

import pathlib

from experiments.effrob import train
from experiments.effrob.configs.default import get_config
from robustml_jax.core import experiment
from robustml_jax.core.report import PaperReport, Row, report_main


def _pp(v: float) -> str:
    return f"{v:+.2f}"


def _ci(ci) -> str:
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else "(no interval)"


def _groups(er: dict[str, float]) -> str:
    return ", ".join(f"{g} {_pp(v)}" for g, v in er.items())


def run(workdir: pathlib.Path, scale: str) -> PaperReport:
    config = get_config(scale)
    res = experiment.run(train.train_and_evaluate, config, workdir)
    rows: list[Row] = []
    plots: list[str] = []
    summary: list[str] = []

    if "openclip" in res:
        r = res["openclip"]
        plots += r["plots"]
        data = f"openclip_results.csv ({r['num_models']} zero-shot CLIP models)"
        for ood, fits in r["fits"].items():
            ((name, f),) = fits.items()
            ci = f.get("r2_ci")
            rows.append(
                Row(
                    f"OpenCLIP {name} -> {ood}: R^2 (logit)",
                    round(f["r2"], 4),
                    None,
                    data,
                    scale,
                    f"95% CI {ci[0]:.3f}-{ci[1]:.3f}" if ci else "",
                )
            )
            rows.append(
                Row(
                    f"OpenCLIP {ood}: mean ER per pre-training set (pp)",
                    _groups(f["group_er_pp"]),
                    None,
                    data,
                    scale,
                    "single-ID fit over all CLIP models; no second ID set available",
                )
            )

    if "cifar10_1" in res:
        r = res["cifar10_1"]
        plots += r["plots"]
        for ood, fits in r["fits"].items():
            ((name, f),) = fits.items()
            ci = f.get("r2_ci")
            rows.append(
                Row(
                    f"CIFAR-10 -> {ood}: R^2 (logit), MAE (pp)",
                    f"R2 {f['r2']:.4f}, MAE {f['mae_pp']:.2f}",
                    None,
                    f"{r['num_models']} published CIFAR-10.1 models' predictions",
                    scale,
                    f"R2 95% CI {ci[0]:.3f}-{ci[1]:.3f} (models resampled, statistic recomputed)"
                    if ci
                    else "",
                )
            )

    if "zoo" in res:
        r = res["zoo"]
        plots += r["plots"]
        data = "Blitzer books/kitchen (ID), dvd/electronics/SST-2/MR (OOD), hashed n-grams"
        zscale = f"{scale}: {r['num_models']} models, groups {r['groups']}"
        counts = {"holds": 0, "one": 0, "same": 0, "worse": 0}
        worst_single, worst_multi = [], []
        for ood, cl in r["claim"].items():
            for name, f in r["fits"][ood].items():
                ci = f.get("group_er_ci_pp", {})
                rows.append(
                    Row(
                        f"zoo {ood}, {name}: mean ER per training group (pp) / R^2",
                        f"{_groups(f['group_er_pp'])} / R2 {f['r2']:.3f}",
                        None,
                        data,
                        zscale,
                        "95% CI (runs resampled within groups): "
                        + ", ".join(f"{g} [{lo:+.1f}, {hi:+.1f}]" for g, (lo, hi) in ci.items())
                        if ci
                        else "",
                    )
                )
            fits = cl["fits"]
            multi = next(f for f in fits if f.startswith("multi:"))
            singles = [f for f in fits if f.startswith("single:")]
            worst_single.append(max(fits[s]["max_abs_group_er_pp"] for s in singles))
            worst_multi.append(fits[multi]["max_abs_group_er_pp"])
            rows.append(
                Row(
                    f"zoo {ood}: cross-validated MAE (pp), leave-one-group-out / 5-fold, per fit",
                    ", ".join(
                        f"{k} {v['cv_mae_pp'].get('logo', float('nan')):.2f} / "
                        f"{v['cv_mae_pp'].get('kfold', float('nan')):.2f}"
                        for k, v in fits.items()
                    ),
                    "multi-ID lowest",
                    data,
                    zscale,
                    "held-out training groups / runs predicted by a fit that did not see them",
                )
            )
            verdicts = []
            for s, v in cl["vs_single"].items():
                better = v["cv"].startswith("better") + v["gap"].startswith("smaller")
                kind = "holds" if v["claim_holds"] else "one" if better else "same"
                counts[kind if v["multi_no_worse"] else "worse"] += 1
                verdicts.append(
                    f"vs {s}: CV error {_pp(v['cv_mae_reduction_pp'])} "
                    f"{_ci(v['cv_mae_reduction_ci_pp'])} ({v['cv']}), |group ER| gap "
                    f"{_pp(v['gap_reduction_pp'])} {_ci(v['gap_reduction_ci_pp'])} ({v['gap']})"
                )
            rows.append(
                Row(
                    f"zoo {ood}: multi-ID reduction of CV error and of mean |group ER| (pp, "
                    "paired 95% CI)",
                    "; ".join(verdicts),
                    "both > 0 where the single ID set misses a group's training data",
                    data,
                    zscale,
                    "claim holds"
                    if any(v["claim_holds"] for v in cl["vs_single"].values())
                    else "claim not shown",
                )
            )
        rows.append(
            Row(
                "zoo: largest |group ER| (pp), worst single-ID fit -> multi-ID, per OOD set",
                ", ".join(
                    f"{o} {a:.2f} -> {b:.2f}"
                    for o, a, b in zip(r["claim"], worst_single, worst_multi, strict=True)
                ),
                None,
                data,
                zscale,
            )
        )
        pairs = sum(counts.values())
        bootstrapped = any(
            v["cv_mae_reduction_ci_pp"] is not None
            for cl in r["claim"].values()
            for v in cl["vs_single"].values()
        )
        summary.append(
            f"On our zoo of {r['num_models']} bag-of-n-grams sentiment classifiers (snapshots of "
            f"training runs on books, kitchen and mixtures), the paper's claim is tested out of "
            f"sample: for each (OOD set, single ID set) pair, does the two-ID baseline "
            f"predict held-out training groups better (leave-one-group-out MAE) and shrink the "
            f"spurious ER gap between groups (mean |group ER|), "
            + (
                "by paired 95% bootstrap intervals (training runs resampled within groups)? "
                if bootstrapped
                else "by the point estimates (this config runs no bootstrap)? "
            )
            + f"Both reductions are above 0 in "
            f"{counts['holds']} of {pairs} pairs, one of the two in {counts['one']}, neither in "
            f"{counts['same']} (the two-ID baseline is no different), and the two-ID baseline "
            f"is {'significantly ' if bootstrapped else ''}worse on either in {counts['worse']}. "
            f"The largest |group ER| "
            f"under the worse single-ID fit ({', '.join(f'{v:.1f}' for v in worst_single)} pp "
            f"per OOD set) falls to {', '.join(f'{v:.1f}' for v in worst_multi)} pp under the "
            f"two-ID fit. "
            + (
                "So the claim holds as the paper states it: against a single ID set that does "
                "not cover some models' training data, the two-ID baseline removes spurious "
                "group ER and predicts held-out groups better; where the single ID set already "
                "matches the shift, it costs nothing measurable."
                if counts["worse"] == 0 and counts["holds"]
                else "The claim is not supported on every pair; see the rows for which."
            )
        )
    if "openclip" in res:
        summary.append(
            "The OpenCLIP and CIFAR-10.1 tables support only single-ID fits (no second ID "
            "accuracy is published), so they show the baseline fits and per-group ER, not the "
            "multi-ID correction."
        )
    return PaperReport(rows=rows, plots=plots, summary=" ".join(summary))


if __name__ == "__main__":
    report_main(run)
