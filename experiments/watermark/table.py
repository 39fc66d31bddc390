"""The watermark table in markdown, from a finished ``results.json`` or a run's finished items.

    python -m experiments.watermark.table --workdir=reports/workdirs/watermark_table \
      --config=cpu_table [--out=table.md]

Without ``results.json`` (a run still going, or cut short) the finished suspects under
``items/runs`` are summarised with :func:`experiments.watermark.train.summarize`, per task, with
the seeds that are there (consecutive from 0); a task lacking two clean models or a seed of the
main watermark variant is left out.

Per downstream task: the clean MiniLM models and the unwatermarked multi-task reference (the
test's false positives on them), then one row per watermark variant (clean accuracy, its
difference to the reference paired by fine-tuning seed, WESR mean ± sd with the per-seed
values, the clean models' WESR for the same trigger set, the largest p-value over seeds and how
many seeds are detected at alpha), then the removal attempts. Accuracy differences are paired
by fine-tuning seed (same head initialisation, data order and dropout), against the reference
(the watermark's fair baseline) and against the clean MiniLM models (the baseline of Embedding
Poisoning, which changes only MiniLM's trigger rows). A last block pools the test's
false positives over tasks.
"""

from __future__ import annotations

import pathlib
import re
import tempfile
from typing import Any

import numpy as np

from experiments.watermark.configs.default import ATTACKS, WM_VARIANTS

_RUN = re.compile(r"^(?P<task>.+?)__(?P<enc>.+?)__(?P<attack>.+?)__s(?P<seed>\d+)$")


def _pct(d: dict) -> str:
    if len(d["per_seed"]) < 2:
        return f"{100 * d['mean']:.1f}"
    return f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}"


def _seeds(d: dict) -> str:
    return " / ".join(f"{100 * x:.1f}" for x in d["per_seed"])


def _paired(a: list[float], b: list[float]) -> str:
    """Mean ± sd (points) of a[i] - b[i] over the seeds both have; '' when none."""
    n = min(len(a), len(b))
    if n == 0:
        return ""
    d = 100 * (np.asarray(a[:n]) - np.asarray(b[:n]))
    sd = f" ± {d.std(ddof=1):.1f}" if n > 1 else ""
    return f"{d.mean():+.1f}{sd} ({n} paired)"


def _p(x: float) -> str:
    return f"{x:.1e}"


def markdown_table(results: dict, alpha: float = 1e-3, main_variant: str | None = None) -> str:
    """The table (markdown) of a ``results.json`` dict as written by ``train.summarize``.

    ``main_variant`` (the config's ``wm_variants[0]``, the one the removal attempts start
    from) names the removal rows; variants are listed in the configs' order.
    """
    head = (
        "| task | model | seeds | clean acc (%) | acc vs reference (pts, paired by seed) "
        "| acc vs clean MiniLM (pts, paired) | WESR (%) mean ± sd | WESR per seed "
        f"| clean models' WESR (%) | max p | detected at {alpha:g} |"
    )
    lines = [head, "|" + "---|" * 11]
    fp = {"clean": [0, 0, 0], "reference": [0, 0, 0]}  # rejected at 0.05, at alpha, tests
    for task, t in results["tasks"].items():
        clean, ref = t["clean"], t.get("reference")
        n_clean = len(clean["acc"]["per_seed"])
        cw = {s[len("wesr_") :]: clean[s] for s in clean if s.startswith("wesr_")}
        fpc = clean["false_positives"]
        loo = ", ".join(
            f"{s}: {v['rejected_at_0.05']}/{v['models']} at 0.05" for s, v in fpc.items()
        )
        for v in fpc.values():
            fp["clean"][0] += v["rejected_at_0.05"]
            fp["clean"][1] += sum(p < alpha for p in v["loo_pvalues"])
            fp["clean"][2] += v["models"]
        lines.append(
            f"| {task} | clean MiniLM (test's reference models) | {n_clean} | "
            f"{_pct(clean['acc'])} | | | "
            + " ; ".join(f"{s} {_pct(w)}" for s, w in cw.items())
            + f" | | | | leave-one-out false positives {loo} |"
        )
        if ref is not None:
            sets = [k[len("pvalues_") :] for k in ref if k.startswith("pvalues_")]
            pmin = min(min(ref[f"pvalues_{s}"]) for s in sets)
            for s in sets:
                fp["reference"][0] += ref[f"rejected_{s}_at_0.05"]
                fp["reference"][1] += sum(p < alpha for p in ref[f"pvalues_{s}"])
                fp["reference"][2] += len(ref[f"pvalues_{s}"])
            ref_vs_clean = _paired(ref["acc"]["per_seed"], clean["acc"]["per_seed"])
            lines.append(
                f"| {task} | multi-task reference, no triggers | {ref['seeds']} | "
                f"{_pct(ref['acc'])} | | {ref_vs_clean} | "
                + " ; ".join(f"{s} {_pct(ref[f'wesr_{s}'])}" for s in sets)
                + f" | | | min p {_p(pmin)} | "
                + ", ".join(f"{s}: {ref[f'rejected_{s}_at_0.05']}/{ref['seeds']}" for s in sets)
                + " rejected at 0.05 |"
            )
        order = {v: i for i, v in enumerate(WM_VARIANTS)}
        rows = sorted(t["variants"].items(), key=lambda kv: order.get(kv[0], len(order)))
        order = {a: i for i, a in enumerate(ATTACKS)}
        for a, d in sorted(t["attacks"].items(), key=lambda kv: order.get(kv[0], len(order))):
            rows.append((f"{main_variant or d['trigger_set']}, removal: {a}", d))
        for name, d in rows:
            vs_ref = _paired(d["acc"]["per_seed"], ref["acc"]["per_seed"]) if ref else ""
            vs_clean = _paired(d["acc"]["per_seed"], clean["acc"]["per_seed"])
            lines.append(
                f"| {task} | {name} | {d['seeds']} | {_pct(d['acc'])} | {vs_ref} | {vs_clean} | "
                f"{_pct(d['wesr'])} | {_seeds(d['wesr'])} | {_pct(cw[d['trigger_set']])} | "
                f"{_p(d['pvalue']['max'])} | {d['detected_at_alpha']}/{d['seeds']} |"
            )
    out = "\n".join(lines)
    c, r = fp["clean"], fp["reference"]
    out += (
        f"\n\nFalse positives of the test (p < 0.05 / p < {alpha:g}): clean MiniLM models, "
        f"leave-one-out: {c[0]}/{c[2]} / {c[1]}/{c[2]}; multi-task reference models "
        f"(against the clean models): {r[0]}/{r[2]} / {r[1]}/{r[2]} (nominal: 5% / {alpha:g}).\n"
    )
    return out


def finished_runs(workdir: pathlib.Path) -> dict[tuple, dict]:
    """{(task, encoder, attack, seed): run} of the finished suspects under ``items/runs``."""
    import json

    out = {}
    for f in sorted((pathlib.Path(workdir) / "items" / "runs").glob("*/run.json")):
        m = _RUN.match(f.parent.name)
        if m:
            key = (m["task"], m["enc"], m["attack"], int(m["seed"]))
            out[key] = json.loads(f.read_text())
    return out


def _count(runs: dict, task: str, enc: str, attack: str = "none") -> int:
    n = 0
    while (task, enc, attack, n) in runs:
        n += 1
    return n


def partial_results(c, workdir: pathlib.Path) -> dict[str, Any]:
    """``train.summarize`` over the finished items only (the seeds present, per task)."""
    from experiments.watermark import train

    runs = finished_runs(workdir)
    out: dict[str, Any] = {"tasks": {}, "partial": True}
    main_v = c.wm_variants[0]
    for task in c.tasks:
        n_clean, n_main = _count(runs, task, "clean"), _count(runs, task, main_v)
        if n_clean < 2 or n_main < 1:
            continue
        others = {v: _count(runs, task, v) for v in c.wm_variants[1:]}
        others = {v: n for v, n in others.items() if n}
        attacks = {a: _count(runs, task, main_v, a) for a in c.attacks}
        attacks = {a: n for a, n in attacks.items() if n}
        ct = c.copy_and_resolve_references()
        ct.tasks = (task,)
        ct.task_overrides = {}  # the counts below are what the items hold
        ct.clean_seeds = n_clean
        ct.reference_seeds = _count(runs, task, "reference")
        ct.wm_variants = (main_v, *others)
        ct.wm_seeds = n_main
        ct.other_wm_seeds = min(others.values(), default=1)
        ct.attacks = tuple(attacks)
        ct.removal_seeds = min(attacks.values(), default=1)
        with tempfile.TemporaryDirectory() as tmp:  # summarize also draws its plots
            out["tasks"][task] = train.summarize(ct, runs, {}, pathlib.Path(tmp))["tasks"][task]
    return out


def main(argv) -> None:
    import json

    from absl import flags

    from experiments.watermark.configs.default import get_config

    del argv
    f = flags.FLAGS
    workdir = pathlib.Path(f.workdir)
    c = get_config(f.config)
    res_file = workdir / "results.json"
    if res_file.is_file():
        res = json.loads(res_file.read_text())
        order = {t: i for i, t in enumerate(c.tasks)}  # JSON sorted the tasks by name
        res["tasks"] = dict(sorted(res["tasks"].items(), key=lambda kv: order.get(kv[0], 99)))
    else:
        res = partial_results(c, workdir)
    text = markdown_table(res, c.alpha, c.wm_variants[0])
    if res.get("partial"):
        text = "(partial: from the finished items; results.json not written yet)\n\n" + text
    if f.out:
        pathlib.Path(f.out).write_text(text)
    print(text)


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("workdir", None, "the experiment's workdir", required=True)
    flags.DEFINE_string("config", "cpu_table", "variant of configs/default.py")
    flags.DEFINE_string("out", "", "also write the table to this file")
    app.run(main)
