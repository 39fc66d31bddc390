"""Orchestration of the paper-7 experiment: ``train_and_evaluate(config, workdir, runtime)``.

Per dataset and seed, on the same train/test split: ELIAS-1 and ELIAS-2 (each a ``WorkItems``
item saved atomically, so a killed run resumes at the next stage) and paper 6's tree model
(its own ``WorkItems`` folder). Each is evaluated with P/nDCG/PSP@1/3/5 and R@10/20/100 on
the test split, and the per-seed differences ELIAS-2 minus tree are reported (paired).
"""

from __future__ import annotations

import pathlib
import time

import jax
import numpy as np

from experiments.xmc import train as xmc_train
from experiments.xmc.train import load_split
from robustml_jax import xmc
from robustml_jax.core import plotting
from robustml_jax.core.distributed import Runtime

KS = (1, 3, 5, 10, 20, 100)
MODELS = ("elias1", "elias2", "tree")


def prepare(spec: str, config) -> dict:
    """l2-normalised rows, labelled training rows only (paper 6's preparation); ``synthetic:L``
    gives a power-law synthetic problem with L labels."""
    if spec.startswith("synthetic:"):
        L = int(spec.split(":", 1)[1])
        d = xmc.synthetic_xmc(
            jax.random.key(1234),
            config.synthetic_train,
            config.synthetic_test,
            max(4096, L // 8),
            L,
            nnz_per_row=24,
            labels_per_row=3.0,
            power=0.5,
        )
        tr, te = d["train"], d["test"]
    else:
        tr, te = load_split(spec)
    return xmc_train.prepare_split(tr, te, config)


def dataset_overrides(config, name: str) -> dict:
    """The config's per-dataset overrides for ``name`` (``seeds`` and fit_elias keys)."""
    o = config.get("dataset_overrides") or {}
    return dict(o.get(name, {}))


def elias_kwargs(config, name: str = "") -> dict:
    """The :func:`xmc.fit_elias` options of a config for dataset ``name`` (None = library
    default)."""
    kw = {k: v for k, v in config.elias.to_dict().items() if v is not None}
    kw.update({k: v for k, v in dataset_overrides(config, name).items() if k != "seeds"})
    for k in ("epochs", "min_steps", "max_steps"):
        kw[k] = tuple(kw[k])
    kw["progress"] = bool(config.progress)
    return kw


def _ranking(labels, Y_test, inv_prop) -> dict:
    r = xmc.ranking_metrics(labels, xmc.labels_to_padded(Y_test), inv_prop, ks=KS)
    return {k: 100.0 * float(v) for k, v in r.items()}


def _timed_predict(fn, X) -> tuple:
    """Predicts twice: the first call includes compilation; the second is the steady time."""
    t0 = time.perf_counter()
    fn(X[:8])
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = fn(X)
    run_s = time.perf_counter() - t0
    return out, compile_s, 1000.0 * run_s / max(X.shape[0], 1)


def run_seed(d, inv_prop, *, seed: int, folder: pathlib.Path, config) -> dict:
    key = jax.random.key(seed)
    items = xmc.elias_items(folder / "elias")
    kw = elias_kwargs(config, folder.name)
    fit_s = {}

    def fit1():
        t0 = time.perf_counter()
        m = xmc.fit_elias(d["X_train"], d["Y_train"], key, stages=1, **kw)
        fit_s["elias1"] = time.perf_counter() - t0
        return m

    m1 = items.get(f"elias1_seed{seed}", fit1)

    def fit2():
        t0 = time.perf_counter()
        m = xmc.fit_elias(d["X_train"], d["Y_train"], key, stage1=m1, **kw)
        fit_s["elias2"] = time.perf_counter() - t0
        return m

    m2 = items.get(f"elias2_seed{seed}", fit2)
    out: dict = {}
    for name, m in (("elias1", m1), ("elias2", m2)):
        (labels, _), comp, per1k = _timed_predict(
            lambda X, m=m: xmc.predict_elias(m, X, config.topk), d["X_test"]
        )
        out[name] = {
            **_ranking(labels, d["Y_test"], inv_prop),
            "predict_compile_s": comp,
            "predict_ms_per_1k": per1k,
            "fit_s": fit_s.get(name),
            "num_clusters": m.num_clusters,
            "beam": m.config["beam"],
            "kappa": int(m.a_inds.shape[1]),
            "K": m.config["K"],
            "history": [
                {k: v for k, v in h.items() if k != "curve"} | {"curve": h["curve"]}
                for h in m.history
            ],
        }
    if d["Y_train"].shape[1] <= config.tree_max_labels:
        tree_items = xmc.model_items(folder / "tree")
        t0 = time.perf_counter()
        tree = tree_items.get(
            f"tree_seed{seed}",
            lambda: xmc.fit_tree_model(d["X_train"], d["Y_train"], key=key, **config.tree),
        )
        tree_fit = time.perf_counter() - t0
        (labels, _), comp, per1k = _timed_predict(
            lambda X: xmc.predict(tree, X, beam_size=config.tree_beam, topk=config.topk),
            d["X_test"],
        )
        out["tree"] = {
            **_ranking(labels, d["Y_test"], inv_prop),
            "predict_compile_s": comp,
            "predict_ms_per_1k": per1k,
            "fit_s": tree_fit,
        }
    return out


def summarise(per_seed: list[dict]) -> dict:
    """Mean and std over seeds of every metric; paired per-seed differences ELIAS-2 - tree."""
    out: dict = {}
    for model in MODELS:
        runs = [r[model] for r in per_seed if model in r]
        if not runs:
            continue
        metrics = [k for k, v in runs[0].items() if isinstance(v, float) and "@" in k]
        out[model] = {
            k: {
                "mean": float(np.mean([r[k] for r in runs])),
                "std": float(np.std([r[k] for r in runs], ddof=1)) if len(runs) > 1 else 0.0,
                "per_seed": [r[k] for r in runs],
            }
            for k in metrics
        }
        for k in ("predict_ms_per_1k", "fit_s"):
            vals = [r[k] for r in runs if r.get(k) is not None]
            out[model][k] = float(np.mean(vals)) if vals else None
    for a, b in (("elias2", "tree"), ("elias2", "elias1")):
        if a in out and b in out:
            out[f"{a}_minus_{b}"] = {
                k: [
                    x - y for x, y in zip(out[a][k]["per_seed"], out[b][k]["per_seed"], strict=True)
                ]
                for k in out[a]
                if isinstance(out[a][k], dict) and k in out[b]
            }
    return out


def _plot(name: str, summ: dict, workdir: pathlib.Path) -> str:
    keys = ["P@1", "P@3", "P@5", "nDCG@5", "PSP@5", "R@10", "R@20", "R@100"]
    fig, ax = plotting.subplots(1, 1, figsize=(8, 3.2), layout="constrained")
    models = [m for m in MODELS if m in summ]
    x = np.arange(len(keys))
    w = 0.8 / len(models)
    for i, m in enumerate(models):
        ax.bar(
            x + (i - (len(models) - 1) / 2) * w,
            [summ[m][k]["mean"] for k in keys],
            w,
            yerr=[summ[m][k]["std"] for k in keys],
            label=m,
        )
    ax.set_xticks(x, keys)
    ax.set_ylabel("%")
    ax.set_title(f"{name}: ELIAS vs tree (mean, std over seeds)")
    ax.legend(fontsize=8)
    p = workdir / f"{name}_elias_vs_tree.png"
    plotting.save(fig, p)
    return p.name


def train_and_evaluate(config, workdir: pathlib.Path, runtime: Runtime) -> dict:
    del runtime  # one process; fit_elias shards batches over local devices itself
    workdir = pathlib.Path(workdir).absolute()  # orbax (the tree items) needs absolute paths
    results: dict = {"plots": []}
    for spec in config.datasets:
        name = spec.split(":")[-1].rstrip("/").split("/")[-1]
        if spec.startswith("synthetic:"):
            name = f"synthetic{name}"
        d = prepare(spec, config)
        inv_prop = xmc.inverse_propensity(d["Y_train"])
        per_seed = []
        seeds = dataset_overrides(config, name).get("seeds", config.seeds)
        for seed in seeds:
            per_seed.append(
                run_seed(d, inv_prop, seed=int(seed), folder=workdir / name, config=config)
            )
        summ = summarise(per_seed)
        results[name] = {
            "num_train": int(d["X_train"].shape[0]),
            "num_test": int(d["X_test"].shape[0]),
            "num_labels": int(d["Y_train"].shape[1]),
            "seeds": list(seeds),
            "elias_config": {k: v for k, v in elias_kwargs(config, name).items()},
            "per_seed": per_seed,
            "summary": summ,
        }
        results["plots"].append(_plot(name, summ, workdir))
    return results
