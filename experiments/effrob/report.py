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
                    f"R2 95% CI {ci[0]:.3f}-{ci[1]:.3f} (exact example+model bootstrap)"
                    if ci
                    else "",
                )
            )

    if "zoo" in res:
        r = res["zoo"]
        plots += r["plots"]
        data = "Blitzer books/kitchen (ID), dvd/electronics/SST-2/MR (OOD), hashed n-grams"
        zscale = f"{scale}: {r['num_models']} models, groups {r['groups']}"
        held = 0
        for ood, cl in r["claim"].items():
            fits = r["fits"][ood]
            for name, f in fits.items():
                ci = f.get("group_er_ci_pp", {})
                rows.append(
                    Row(
                        f"zoo {ood}, {name}: mean ER per training group (pp) / R^2",
                        f"{_groups(f['group_er_pp'])} / R2 {f['r2']:.3f}",
                        None,
                        data,
                        zscale,
                        "95% CI: "
                        + ", ".join(f"{g} [{lo:+.1f}, {hi:+.1f}]" for g, (lo, hi) in ci.items())
                        if ci
                        else "",
                    )
                )
            abs_er = cl["mean_abs_group_er_pp"]
            holds = cl["claim_holds"]
            held += bool(holds)
            rows.append(
                Row(
                    f"zoo {ood}: mean |group ER| (pp), single-ID fits vs multi-ID",
                    ", ".join(f"{k} {v:.2f}" for k, v in abs_er.items()),
                    "shrinks under multi-ID",
                    data,
                    zscale,
                    "claim holds (smaller |ER| and higher adj. R^2 than every single fit): "
                    f"{holds}",
                )
            )
        n = len(r["claim"])
        summary.append(
            f"On our zoo of {r['num_models']} sentiment classifiers trained on books, kitchen and "
            f"mixtures, the multi-ID fit has smaller mean |group ER| and higher adjusted R^2 than "
            f"both single-ID fits on {held} of {n} OOD sets."
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
