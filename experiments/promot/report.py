"""Paper 5 (ProMoT) in the suite's report: RTE accuracy and held-out in-context accuracy after
fine-tuning on RTE with each method, and the format-specialisation probes.

python -m experiments.promot.report --workdir=/tmp/promot_report --scale=small
"""

from __future__ import annotations

import pathlib

from experiments.promot.configs.default import get_config
from experiments.promot.train import train_and_evaluate
from robustml_jax.core import experiment
from robustml_jax.core.report import PaperReport, Row, report_main
from robustml_jax.promot import HELDOUT_LABEL_WORDS

# mT5-XXL after RTE (the paper's Table 1/2): RTE accuracy and 1-shot normalised average.
PAPER = {
    "finetune": ("92.06", "15.43"),
    "prompt_tuning": ("91.34", None),
    "promot": ("92.78", "20.10"),
    "promot_1shot": (None, "22.26"),
}


def _ms(d: dict, scale: float = 100.0, digits: int = 1) -> str:
    n = len(d["values"])
    sd = f" ± {scale * d['std']:.{digits}f}" if n > 1 else ""
    return f"{scale * d['mean']:.{digits}f}{sd} (n={n})"


def run(workdir: pathlib.Path, scale: str) -> PaperReport:
    c = get_config(scale)
    res = experiment.run(train_and_evaluate, c, workdir)
    pre, methods = res["pretrained"], res["methods"]
    scale_txt = (
        f"{scale}: {res['model']}; prompt length {c.prompt_length}, prompt {c.prompt_steps} "
        f"steps (Adafactor lr {c.prompt_lr}), model {c.model_steps} steps (lr {c.model_lr}), "
        f"batch {c.batch_size}, dropout {c.dropout}, label smoothing {c.label_smoothing}; "
        f"held-out: {c.num_heldout} queries x {len(res['heldout_tasks'])} tasks "
        f"({'/'.join(str(k) for k in c.shots)}-shot)"
    )
    data = "GLUE RTE (train / dev); held-out: MR, Blitzer electronics + kitchen, first_word"
    rows = [
        Row(
            "held-out in-context norm. avg (%), pre-trained model",
            f"{pre['norm_avg']:.1f}",
            "17.52 (mT5-XXL, 1-shot)",
            data,
            scale_txt,
            f"label-word (True/False) share {100 * pre['label_share']:.1f}%",
        )
    ]
    for method, d in methods.items():
        paper = PAPER.get(method, (None, None))
        rows.append(
            Row(
                f"{method}: RTE dev accuracy (%)", _ms(d["rte_accuracy"]), paper[0], data, scale_txt
            )
        )
        rows.append(
            Row(
                f"{method}: held-out in-context norm. avg (%) / True-False share (%)",
                f"{_ms(d['norm_avg'], 1.0)} / {_ms(d['label_share'])}",
                paper[1],
                data,
                scale_txt,
                "mean ± std over seeds; held-out tasks run without the prompt",
            )
        )
    # per held-out task: the pre-trained model, then each method (accuracy / exact match, %)
    for task in res["heldout_tasks"]:
        after = "; ".join(
            f"{m} {_ms(d[task])}" for m, d in methods.items() if task in d and m != "prompt_tuning"
        )
        rows.append(
            Row(
                f"held-out {task}: score (%) pre-trained -> after RTE",
                f"{100 * pre[task]:.1f} -> {after}",
                None,
                data,
                scale_txt,
                "held-out label words: "
                + ", ".join(f"{k}: {'/'.join(v)}" for k, v in HELDOUT_LABEL_WORDS.items()),
            )
        )
    for method, d in res["paired_vs_finetune"].items():
        per_task = ", ".join(f"{t} {_ms(d[t])}" for t in res["heldout_tasks"] if t in d)
        rows.append(
            Row(
                f"{method} minus finetune (paired by seed): RTE acc / norm. avg / label share",
                f"{_ms(d['rte_accuracy'])} / {_ms(d['norm_avg'], 1.0)} / {_ms(d['label_share'])}",
                None,
                data,
                scale_txt,
                f"per held-out task: {per_task}" if per_task else "",
            )
        )
    curve = res["finetune_curve_seed0"]
    if curve:
        first, last = curve[0], curve[-1]
        nan = float("nan")
        cos = ", ".join(
            f"{g} {first.get('cos_' + g, nan):.2f}->{last.get('cos_' + g, nan):.2f}"
            for g in ("mlp", "query", "key", "value")
        )
        rows.append(
            Row(
                "vanilla fine-tuning, cosine(full grad, format grad) first -> last eval",
                cos,
                "MLP 0.98->0.10, Q 0.96->0.08, K 0.99->0.05, V 0.99->0.20 (steps 0->400)",
                "GLUE RTE train, labels shuffled for the format gradient",
                scale_txt,
                f"steps {first['step']} -> {last['step']}",
            )
        )
    ft, pm = methods.get("finetune"), methods.get("promot")
    if ft and pm:
        summary = (
            f"Small from-scratch T5 on CPU (not mT5-XXL). Pre-trained: held-out norm. avg "
            f"{pre['norm_avg']:.1f}, True/False share {100 * pre['label_share']:.1f}%. After RTE, "
            f"vanilla fine-tuning: RTE {_ms(ft['rte_accuracy'])}, held-out norm. avg "
            f"{_ms(ft['norm_avg'], 1.0)}, True/False share {_ms(ft['label_share'])}; ProMoT: RTE "
            f"{_ms(pm['rte_accuracy'])}, norm. avg {_ms(pm['norm_avg'], 1.0)}, share "
            f"{_ms(pm['label_share'])}. "
            + (
                "Vanilla fine-tuning leaks the RTE label words into other tasks more than "
                "ProMoT does, the paper's format-specialisation picture"
                if ft["label_share"]["mean"] > pm["label_share"]["mean"] + 0.05
                else "At this scale ProMoT does not reduce the label-word leakage clearly"
            )
            + "; RTE accuracy of a model this small stays near chance (the paper: 92%)."
        )
    else:
        summary = "finetune and promot were not both run at this scale."
    return PaperReport(rows=rows, plots=list(res["plots"]), summary=summary)


if __name__ == "__main__":
    report_main(run)
