"""Library side of the effrob experiment: ``train_and_evaluate(config, workdir, runtime)``.

Runs the tasks named in ``config.tasks`` (each in ``workdir/<task>``) and returns their fits,
per-group effective robustness and, for the zoo, whether the paper's claim holds per OOD set.
"""

from __future__ import annotations

import pathlib
import zlib
from typing import Any

import jax
import numpy as np

from experiments.effrob.configs.default import TASKS
from robustml_jax.core import datasets
from robustml_jax.core.distributed import Runtime
from robustml_jax.core.errors import ConfigError
from robustml_jax.effrob import (
    AccuracyTable,
    analyze_table,
    read_accuracy_csv,
    table_to_csv,
    train_zoo,
    write_analysis,
)


def openclip_group(pretrained: str) -> str:
    """Pre-training data source of an OpenCLIP ``pretrained`` tag."""
    p = pretrained.lower()
    for prefix, group in (
        ("openai", "OpenAI WIT"),
        ("webli", "WebLI"),
        ("datacomp", "DataComp"),
        ("commonpool", "CommonPool"),
        ("metaclip", "MetaCLIP"),
        ("dfn", "DFN"),
        ("yfcc15m", "YFCC-15M"),
        ("cc12m", "CC-12M"),
        ("merged2b", "Merged-2B (LAION+COYO)"),
    ):
        if p.startswith(prefix):
            return group
    if "laion" in p:
        return "LAION"
    return "other"


def openclip_table(config) -> AccuracyTable:
    rows = datasets.load("openclip_results")["rows"]
    oods = [c.strip() for c in config.openclip.ood_columns.split(",")]
    cols = [config.openclip.id_column, *oods]
    missing = [c for c in cols if c not in rows[0]]
    if missing:
        raise ValueError(f"openclip_results.csv lacks column(s) {missing}")
    return AccuracyTable(
        names=tuple(f"{r['name']}/{r['pretrained']}" for r in rows),
        groups=tuple(openclip_group(r["pretrained"]) for r in rows),
        id_names=(config.openclip.id_column,),
        id_acc=np.array([[float(r[config.openclip.id_column])] for r in rows]),
        ood_names=tuple(oods),
        ood_acc=np.array([[float(r[c]) for c in oods] for r in rows]),
    )


def cifar10_1_table(config) -> tuple[AccuracyTable, dict[str, np.ndarray]]:
    """The 30 published CIFAR-10.1 models; correctness from their released predictions."""
    orig = datasets.load("cifar10_1_predictions", "original")
    correct = {"CIFAR-10": orig["predictions"] == orig["label"][None, :]}
    oods = [s.strip() for s in config.cifar10_1.ood_splits.split(",")]
    for split in oods:
        d = datasets.load("cifar10_1_predictions", split)
        if d["models"] != orig["models"]:
            raise ValueError(f"model lists differ between CIFAR-10 and CIFAR-10.1 {split}")
        correct[f"CIFAR-10.1 {split}"] = d["predictions"] == d["label"][None, :]
    ood_names = [f"CIFAR-10.1 {s}" for s in oods]
    table = AccuracyTable(
        names=tuple(orig["models"]),
        groups=tuple("CIFAR-10 (standard training)" for _ in orig["models"]),
        id_names=("CIFAR-10",),
        id_acc=correct["CIFAR-10"].mean(axis=1)[:, None],
        ood_names=tuple(ood_names),
        ood_acc=np.stack([correct[n].mean(axis=1) for n in ood_names], axis=1),
    )
    return table, correct


def sentence_encoder(features: str):
    """``embed_fn(texts) -> [N, D]`` for ``config.zoo.features`` (None for hashed n-grams).

    "minilm": frozen MiniLM sentence embeddings from the shared text stack
    (``robustml_jax.models.bert.embed_sentences``), a hook until that function lands.
    """
    if features == "hashed":
        return None
    try:
        from robustml_jax.models.bert import embed_sentences
    except ImportError as e:
        raise ConfigError(
            "config.zoo.features='minilm' needs robustml_jax.models.bert.embed_sentences "
            f"(the shared MiniLM encoder), which this checkout lacks ({e})"
        ) from None
    return embed_sentences


def task_datasets(config, task: str) -> list[str]:
    """The registered datasets ``task`` reads under ``config``."""
    if task == "openclip":
        return ["openclip_results"]
    if task == "cifar10_1":
        return ["cifar10_1_predictions"]
    if task == "zoo":
        z = config.zoo
        return [s if s in ("sst2", "mr") else f"blitzer_{s}" for s in (*z.id_domains, *z.ood_sets)]
    return []


def missing_datasets(config, task: str) -> list[str]:
    """How-to-get messages of the datasets ``task`` needs that are absent (empty: all there)."""
    out = []
    for name in task_datasets(config, task):
        try:
            datasets.locate(name)
        except datasets.DatasetNotFoundError as e:
            out.append(str(e))
    return out


def _direction(est: float, ci: list[float] | None, words: tuple[str, str, str]) -> str:
    """words = (positive, unclear, negative): by the 95% interval, else by the sign."""
    if ci is None:
        return (words[0] if est > 0 else words[2]) + " (no interval)"
    if ci[0] > 0:
        return words[0]
    if ci[1] < 0:
        return words[2]
    return words[1]


def claim_summary(analysis: dict[str, Any]) -> dict[str, Any]:
    """The paper's claim, per OOD set, against each single-ID fit, from out-of-sample error and
    paired intervals.

    Per (OOD set, single-ID fit) pair: the multi-ID fit's reduction of the cross-validated MAE
    (leave-one-group-out when there are two or more training groups, else k-fold) and of the
    mean |group ER| (the spurious ER gap between training groups), each with its paired 95%
    interval. ``cv`` / ``gap`` say whether the interval lies above 0 ("better" / "smaller"),
    below ("worse" / "larger") or covers 0; the claim holds for the pair when the multi-ID
    baseline predicts held-out models better *and* shrinks the gap.
    """
    out = {}
    for ood, fits in analysis["fits"].items():
        per_fit = {
            f: {
                "mean_abs_group_er_pp": s["mean_abs_group_er_pp"],
                "mean_abs_group_er_ci_pp": s.get("mean_abs_group_er_ci_pp"),
                "max_abs_group_er_pp": float(np.max(np.abs(list(s["group_er_pp"].values())))),
                "r2": s["r2"],
                "r2_adj": s["r2_adj"],
                "cv_mae_pp": s["cv_mae_pp"],
                "cv_mae_ci_pp": s.get("cv_mae_ci_pp"),
            }
            for f, s in fits.items()
        }
        vs_single = {}
        for f, c in analysis["compare"][ood].items():
            scheme = "logo" if "logo" in c["cv_mae_reduction_pp"] else "kfold"
            cv_est = c["cv_mae_reduction_pp"][scheme]
            cv_ci = c.get("cv_mae_reduction_ci_pp", {}).get(scheme)
            gap_est = c["mean_abs_group_er_reduction_pp"]
            gap_ci = c.get("mean_abs_group_er_reduction_ci_pp")
            cv = _direction(cv_est, cv_ci, ("better", "no different", "worse"))
            gap = _direction(gap_est, gap_ci, ("smaller", "no different", "larger"))
            vs_single[f] = {
                "cv_scheme": scheme,
                "cv_mae_reduction_pp": cv_est,
                "cv_mae_reduction_ci_pp": cv_ci,
                "gap_reduction_pp": gap_est,
                "gap_reduction_ci_pp": gap_ci,
                "cv": cv,
                "gap": gap,
                "claim_holds": cv.startswith("better") and gap.startswith("smaller"),
                "multi_no_worse": not cv.startswith("worse") and not gap.startswith("larger"),
            }
        out[ood] = {"fits": per_fit, "vs_single": vs_single}
    return out


def _names(s: str) -> list[str]:
    return [t.strip() for t in s.split(",") if t.strip()]


def csv_sizes(spec: str, columns: list[str]) -> dict[str, int] | None:
    """``"600"`` (every column) or ``"books=600,dvd=1954"`` -> {column: test-set size}."""
    if not spec.strip():
        return None
    try:
        if "=" not in spec:
            return {c: int(spec) for c in columns}
        pairs = [p.split("=") for p in _names(spec)]
        sizes = {k.strip(): int(v) for k, v in pairs}
    except ValueError:
        raise ConfigError(
            f"config.csv.sizes={spec!r}: must be one size or column=size pairs"
        ) from None
    unknown = sorted(set(sizes) - set(columns))
    if unknown or min(sizes.values()) <= 0:
        raise ConfigError(
            f"config.csv.sizes={spec!r}: positive sizes of the columns {columns} (got {unknown})"
        )
    return sizes


def _analyze(config, table, workdir, key, *, tag, correct=None, sizes=None, fit_groups=None):
    analysis = analyze_table(
        table,
        transform=config.transform,
        key=key,
        num_bootstrap=config.num_bootstrap,
        correct=correct,
        sizes=sizes,
        fit_groups=fit_groups,
        num_folds=config.num_folds,
    )
    plots = write_analysis(workdir, table, analysis, tag=tag)
    return analysis, [str(p) for p in plots]


def run_task(task: str, config, workdir: pathlib.Path, key, runtime: Runtime) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    correct = sizes = fit_groups = None
    if task == "openclip":
        table = openclip_table(config)
        sizes = config.openclip.sizes.to_dict()
    elif task == "cifar10_1":
        table, correct = cifar10_1_table(config)
    elif task == "zoo":
        z = config.zoo
        sequences = ("id_domains", "ood_sets", "archs", "mixes", "train_sizes", "l2s")
        table, correct = train_zoo(
            key,
            workdir=workdir / "train",
            **{name: tuple(z[name]) for name in (*sequences, "feat_dims", "snapshots")},
            id_test_size=z.id_test_size,
            mr_max=z.mr_max,
            hash_dim=z.hash_dim,
            learning_rate=z.learning_rate,
            log_every=z.log_every,
            features=z.features,
            embed_fn=sentence_encoder(z.features),
            mesh=runtime.mesh,
            progress=config.progress,
        )
    elif task == "csv":
        if not config.csv.path:
            raise ConfigError("task 'csv' needs --config.csv.path (and id_columns, ood_columns)")
        table = read_accuracy_csv(
            config.csv.path,
            id_columns=config.csv.id_columns,
            ood_columns=config.csv.ood_columns,
            group_column=config.csv.group_column or None,
            name_column=config.csv.name_column or None,
            cluster_column=config.csv.cluster_column or None,
            scale=config.csv.scale,
        )
        sizes = csv_sizes(config.csv.sizes, [*table.id_names, *table.ood_names])
        fit_groups = _names(config.csv.fit_groups) or None
    else:
        raise ConfigError(f"unknown task '{task}'; choose from {', '.join(TASKS)}")
    table_to_csv(table, workdir / "accuracies.csv")
    analysis, plots = _analyze(
        config, table, workdir, key, tag=task, correct=correct, sizes=sizes, fit_groups=fit_groups
    )
    out: dict[str, Any] = {
        "num_models": table.num_models,
        "groups": {g: int(sum(x == g for x in table.groups)) for g in table.group_names()},
        "fits": analysis["fits"],
        "plots": [str(pathlib.Path(p).relative_to(workdir.parent)) for p in plots],
    }
    if len(table.id_names) > 1:
        out["claim"] = claim_summary(analysis)
    return out


def train_and_evaluate(config, workdir: pathlib.Path, runtime: Runtime) -> dict:
    workdir = pathlib.Path(workdir)
    tasks = [t.strip() for t in config.tasks.split(",") if t.strip()]
    if not tasks:
        raise ConfigError("config.tasks is empty; choose from " + ", ".join(TASKS))
    key = jax.random.key(config.seed)
    return {
        task: run_task(
            task,
            config,
            workdir / task,
            jax.random.fold_in(key, zlib.crc32(task.encode())),
            runtime,
        )
        for task in tasks
    }
