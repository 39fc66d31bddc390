"""Paper 8 (watermarking a PLM with multi-task backdoors) in the suite's report.

python -m experiments.watermark.report --workdir=/tmp/watermark_report --scale=small
"""

from __future__ import annotations

import pathlib

from experiments.watermark.configs.default import get_config
from experiments.watermark.train import train_and_evaluate
from robustml_jax.core import experiment
from robustml_jax.core.report import PaperReport, Row, report_main

SETS = ("rare", "common")


def _pct(d: dict) -> str:
    return f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}"


def run(workdir: pathlib.Path, scale: str) -> PaperReport:
    c = get_config(scale)
    res = experiment.run(train_and_evaluate, c, workdir)
    main_v = c.wm_variants[0]
    scale_txt = (
        f"{scale}: MiniLM-L6 (real weights), T={c.max_len}; watermark {c.wm_steps} steps on "
        f"{'+'.join(c.proxy_tasks)}; suspect fine-tunes {c.ft_steps} steps x {c.ft_batch} on "
        f"{c.ft_train} examples, lr {c.ft_lr:g}; {c.clean_seeds} clean seeds"
    )
    if c.model != "minilm":
        scale_txt = f"{scale}: tiny random BERT (pipeline check only)"
    rows, hits = [], []
    for task, t in res["tasks"].items():
        clean = t["clean"]
        rows.append(
            Row(
                f"{task}: clean accuracy (%), clean encoder",
                _pct(clean["acc"]),
                None,
                task,
                scale_txt,
                f"mean ± std over {len(clean['acc']['per_seed'])} fine-tuning seeds",
            )
        )
        ref = t.get("reference")
        if ref is not None:
            rows.append(
                Row(
                    f"{task}: unwatermarked multi-task reference: acc (%) / false positives",
                    f"{_pct(ref['acc'])} / "
                    + ", ".join(f"{k}: {ref[f'rejected_{k}_at_0.05']}/{ref['seeds']}" for k in SETS)
                    + " at 0.05",
                    None,
                    task,
                    scale_txt,
                    "same proxy training as the watermark with the backdoor terms weighted 0; "
                    "p-values against the clean-encoder models",
                )
            )
        for v, d in t["variants"].items():
            ok = d["wesr"]["mean"] >= 0.9 and d["pvalue"]["max"] < c.alpha
            hits.append((task, v, ok, d))
            rows.append(
                Row(
                    f"{task}: {v}: WESR (%) / clean acc (%) / max p",
                    f"{_pct(d['wesr'])} / {_pct(d['acc'])} / {d['pvalue']['max']:.1e}",
                    None,
                    task,
                    scale_txt,
                    f"{d['seeds']} seeds; acc minus clean {100 * d['acc_minus_clean']:+.1f} pts"
                    + (
                        f", minus reference {100 * d['acc_minus_reference']:+.1f} pts;"
                        if "acc_minus_reference" in d
                        else ";"
                    )
                    + f" clean models' WESR {_pct(clean['wesr_' + d['trigger_set']])}",
                )
            )
        for a, d in t["attacks"].items():
            rows.append(
                Row(
                    f"{task}: {main_v} after removal '{a}': WESR (%) / acc (%) / max p",
                    f"{_pct(d['wesr'])} / {_pct(d['acc'])} / {d['pvalue']['max']:.1e}",
                    None,
                    task,
                    scale_txt,
                    f"{d['seeds']} seed(s)",
                )
            )
        fp = clean["false_positives"]
        rows.append(
            Row(
                f"{task}: false positives of the test on clean models (leave-one-out)",
                ", ".join(
                    f"{s}: {v['rejected_at_0.05']}/{v['models']} at 0.05" for s, v in fp.items()
                ),
                None,
                task,
                scale_txt,
                "nominal level checked on simulated clean models in tests/watermark",
            )
        )
    good = [f"{t}/{v}" for t, v, ok, _ in hits if ok]
    sig = [f"{t}/{v}" for t, v, _, d in hits if d["pvalue"]["max"] < c.alpha]
    summary = (
        "The paper gives only an abstract (WESR > 90% after fine-tuning, no accuracy loss); "
        "this is a reconstruction. "
        + "; ".join(
            f"{t} {v}: WESR {_pct(d['wesr'])}%, accuracy {100 * d['acc_minus_clean']:+.1f} pts "
            f"vs clean, max p {d['pvalue']['max']:.1e}"
            for t, v, _, d in hits
        )
        + ". Target (WESR >= 90% and p < 1e-3 on every seed) met for: "
        + (", ".join(good) if good else "none")
        + f"; p < {c.alpha:g} on every seed (valid prediction t-test vs clean models) for: "
        + (", ".join(sig) if sig else "none")
        + "."
    )
    return PaperReport(rows=rows, plots=list(res["plots"]), summary=summary)


if __name__ == "__main__":
    report_main(run)
