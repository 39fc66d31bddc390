"""Report entry point for paper 7: ``python -m experiments.elias.report --workdir=DIR``."""

from __future__ import annotations

import pathlib

import numpy as np

from experiments.elias import train
from experiments.elias.configs.default import get_config
from robustml_jax.core import experiment
from robustml_jax.core.report import PaperReport, Row, report_main

# PECOS XR-Linear on l2-normalised rows, max_leaf_size 16, nr_splits 2, beam 10 (BUILD_NOTES;
# the ELIAS paper reports no Bibtex/Delicious values).
PECOS = {
    "bibtex": {"P@1": 62.19, "P@3": 38.37, "P@5": 27.92},
    "delicious": {"P@1": 65.15, "P@3": 59.02, "P@5": 53.95},
}
KEYS = ("P@1", "P@3", "P@5", "nDCG@5", "PSP@5", "R@10", "R@20", "R@100")


def _ms(v: dict) -> str:
    return f"{v['mean']:.2f} ± {v['std']:.2f}"


def _diff(d: list) -> str:
    d = np.asarray(d, float)
    return f"{d.mean():+.2f} (per seed {', '.join(f'{x:+.2f}' for x in d)})"


def run(workdir: pathlib.Path, scale: str) -> PaperReport:
    config = get_config(scale)
    res = experiment.run(train.train_and_evaluate, config, workdir)
    rows: list[Row] = []
    verdicts = []
    for spec in config.datasets:
        name = spec.split(":")[-1].rstrip("/").split("/")[-1]
        if spec.startswith("synthetic:"):
            name = f"synthetic{name}"
        r = res[name]
        s = r["summary"]
        e2 = r["per_seed"][0]["elias2"]
        sc = (
            f"{r['num_train']} train / {r['num_test']} test, L={r['num_labels']}, "
            f"{len(r['seeds'])} seeds; C={e2['num_clusters']}, b={e2['beam']}, "
            f"kappa={e2['kappa']}, K={e2['K']}"
        )
        for k in ("P@1", "P@3", "P@5"):
            rows.append(
                Row(
                    f"{name} ELIAS-2 {k} (%)",
                    _ms(s["elias2"][k]),
                    PECOS.get(name, {}).get(k),
                    name,
                    sc,
                    "paper column: PECOS XR-Linear (BUILD_NOTES); mean ± std over seeds",
                )
            )
        for model in ("elias1", "tree"):
            if model in s:
                rows.append(
                    Row(
                        f"{name} {model} P@1/P@3/P@5/nDCG@5/PSP@5 (%)",
                        " / ".join(f"{s[model][k]['mean']:.2f}" for k in KEYS[:5]),
                        None,
                        name,
                        sc,
                        "tree = paper 6's XR-Linear-style model, same split"
                        if model == "tree"
                        else "ELIAS-1: fixed 0/1 adjacency",
                    )
                )
        rows.append(
            Row(
                f"{name} ELIAS-2 nDCG@5 / PSP@5 / R@10 / R@20 / R@100 (%)",
                " / ".join(_ms(s["elias2"][k]) for k in KEYS[3:]),
                None,
                name,
                sc,
            )
        )
        if "elias2_minus_tree" in s:
            d = s["elias2_minus_tree"]
            for k in ("P@1", "P@5", "R@100"):
                rows.append(
                    Row(
                        f"{name} ELIAS-2 minus tree {k} (points, paired by seed)",
                        _diff(d[k]),
                        "+2.5 (P@1), +4 (R@100) on large data" if k != "P@5" else None,
                        name,
                        sc,
                    )
                )
            better = np.mean(d["P@1"]) > 0 and min(d["P@1"]) > 0
            word = "better on every seed" if better else "not better"
            verdicts.append(
                f"{name}: ELIAS-2 P@1 {s['elias2']['P@1']['mean']:.1f} vs tree "
                f"{s['tree']['P@1']['mean']:.1f} ({word}), R@100 "
                f"{s['elias2']['R@100']['mean']:.1f} vs {s['tree']['R@100']['mean']:.1f}"
            )
        d = s["elias2_minus_elias1"]
        rows.append(
            Row(
                f"{name} ELIAS-2 minus ELIAS-1 P@1 / R@100 (points, paired)",
                f"{np.mean(d['P@1']):+.2f} / {np.mean(d['R@100']):+.2f}",
                None,
                name,
                sc,
                "the learned adjacency vs the fixed clustering",
            )
        )
        t = {m: s[m]["predict_ms_per_1k"] for m in ("elias2", "tree") if m in s}
        rows.append(
            Row(
                f"{name} predict time per 1k queries (ms, compile excluded)",
                ", ".join(f"{m} {v:.0f}" for m, v in t.items()),
                None,
                name,
                sc,
                "shared 2-core CPU under load: wall times are indicative",
            )
        )
    summary = (
        f"At '{scale}' scale ELIAS (bag-of-words encoder, both stages, SWA) is compared with "
        "paper 6's tree model on the same split and seeds, and with PECOS XR-Linear's published "
        "P@k. " + "; ".join(verdicts) + ". The paper's gains (+2.5% P@1, +4% R@100) are on "
        "131K-3M labels with transformer encoders; on these small sets with a few hundred to "
        "a few thousand training rows and short CPU schedules, ELIAS with a bag-of-words "
        "encoder is below the linear tree on P@k, nDCG@k and PSP@k; its learned adjacency "
        "reaches more labels than ELIAS-1's clusters (R@100), and where the tree's beam limits "
        "recall (Delicious) ELIAS-2 has the higher R@100."
    )
    return PaperReport(rows=rows, plots=list(res.get("plots", [])), summary=summary)


if __name__ == "__main__":
    report_main(run)
