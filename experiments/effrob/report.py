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
        pairs = held = 0
        worst_single, worst_multi, best = [], [], []
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
                        "95% CI: "
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
            b = max(singles, key=lambda s, fits=fits: fits[s]["r2"])
            best.append(f"{b.split(':', 1)[1]} for {ood} ({fits[b]['max_abs_group_er_pp']:.1f} pp)")
            verdicts = []
            for s, v in cl["vs_single"].items():
                pairs += 1
                held += v["claim_holds"]
                verdicts.append(f"vs {s}: {'holds' if v['claim_holds'] else 'does not hold'}")
            rows.append(
                Row(
                    f"zoo {ood}: mean |group ER| (pp) and adj. R^2, single-ID vs multi-ID fits",
                    ", ".join(
                        f"{k} {v['mean_abs_group_er_pp']:.2f} / {v['r2_adj']:.3f}"
                        for k, v in fits.items()
                    ),
                    "|ER| shrinks, R^2 rises under multi-ID",
                    data,
                    zscale,
                    "; ".join(verdicts),
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
        summary.append(
            f"On our zoo of {r['num_models']} bag-of-n-grams sentiment classifiers trained on "
            f"books, kitchen and books+kitchen mixtures, moving from a single-ID to the two-ID fit "
            f"both shrinks the mean |group ER| and raises adjusted R^2 in {held} of {pairs} "
            f"(OOD set, single ID set) pairs. The largest spurious group ER under the worse "
            f"single-ID fit ({', '.join(f'{v:.1f}' for v in worst_single)} pp per OOD set) drops "
            f"to {', '.join(f'{v:.1f}' for v in worst_multi)} pp under the two-ID fit. The "
            f"best-fitting single ID set per OOD set, with its largest |group ER|: "
            f"{'; '.join(best)}. The claim is about single-ID evaluation on an ID set that does "
            f"not cover some models' training data; where the single ID set is already the "
            f"right one for an OOD shift, the two-ID fit has little left to correct."
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
