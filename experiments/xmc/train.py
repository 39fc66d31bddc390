"""Orchestration of the paper-6 experiment: ``train_and_evaluate(config, workdir, runtime)``.

Per dataset: train M tree members (each a ``WorkItems`` item saved atomically as it finishes,
so a killed run resumes at the next member), evaluate the single model and the ensemble
(P/nDCG/PSP/R@k), measure the beam approximation against exact all-label scoring for several
beam sizes, and run misclassification and OOD detection with the uncertainty scores against
the single-model score baseline.
"""

from __future__ import annotations

import pathlib
import time

import jax
import numpy as np
from tqdm import tqdm

from robustml_jax import xmc
from robustml_jax.core import paths, plotting
from robustml_jax.core.distributed import Runtime

_KS = (1, 3, 5)


# ----------------------------------------------------------------------------- data


def load_split(spec: str) -> tuple[dict, dict]:
    """Loads (train, test) for a registry name, ``pecos:<dir>`` or ``xc:<dir>``."""
    if ":" not in spec:
        return xmc.load_dataset(spec, "train"), xmc.load_dataset(spec, "test")
    kind, rel = spec.split(":", 1)
    root = pathlib.Path(rel)
    if not root.is_absolute():
        root = paths.data_dir() / root
    if kind == "pecos":
        x_dir = root / "tfidf-attnxml" if (root / "tfidf-attnxml").is_dir() else root
        tr = xmc.load_pecos_npz(x_dir / "X.trn.npz", root / "Y.trn.npz")
        te = xmc.load_pecos_npz(x_dir / "X.tst.npz", root / "Y.tst.npz")
        return tr, te
    if kind == "xc":
        return xmc.load_xc_text(root / "train.txt"), xmc.load_xc_text(root / "test.txt")
    raise ValueError(f"unknown dataset spec {spec!r} (name, pecos:<dir> or xc:<dir>)")


def prepare(spec: str, config) -> dict:
    """l2-normalised rows; training rows without labels are dropped (the tree needs a label)."""
    tr, te = load_split(spec)
    keep = np.flatnonzero(tr["Y"].getnnz(1) > 0)
    if config.max_train:
        keep = keep[: config.max_train]
    n_te = te["X"].shape[0] if not config.max_test else min(config.max_test, te["X"].shape[0])
    return {
        "X_train": xmc.l2_normalize_rows(tr["X"][keep]),
        "Y_train": xmc.check_labels(tr["Y"][keep]),
        "X_test": xmc.l2_normalize_rows(te["X"][:n_te]),
        "Y_test": xmc.check_labels(te["Y"][:n_te], tr["Y"].shape[1], allow_empty=True),
        "dropped_train_rows": int(tr["Y"].shape[0] - (tr["Y"].getnnz(1) > 0).sum()),
    }


def tree_kwargs(config) -> dict:
    """The :func:`xmc.fit_tree_model` options of a config."""
    return {
        "max_leaf_size": config.max_leaf_size,
        "nr_splits": config.nr_splits,
        "kmeans_iters": config.kmeans_iters,
        "loss": config.loss,
        "c": config.c,
        "newton_iters": config.newton_iters,
        "cg_iters": config.cg_iters,
        "threshold": config.threshold,
    }


def train_members(X, Y, *, key, num: int, folder: pathlib.Path, config, desc: str):
    """Trains (or reloads) ``num`` members; member m uses ``fold_in(key, m)``.

    Returns:
      (members, fit seconds of the members trained in this call).
    """
    items = xmc.model_items(folder)
    members, seconds = [], []

    def fit(m):
        t0 = time.perf_counter()
        model = xmc.fit_member(
            X,
            Y,
            key=jax.random.fold_in(key, m),
            bootstrap=config.bootstrap,
            **tree_kwargs(config),
        )
        seconds.append(time.perf_counter() - t0)
        return model

    for m in tqdm(range(num), desc=desc, disable=not config.progress):
        members.append(items.get(f"member_{m:02d}", lambda m=m: fit(m)))
    return members, seconds


# ----------------------------------------------------------------------------- evaluation


def _ranking(labels, Y_test, inv_prop) -> dict:
    r = xmc.ranking_metrics(labels, xmc.labels_to_padded(Y_test), inv_prop, ks=_KS)
    return {k: 100.0 * float(v) for k, v in r.items()}


def approximation_study(members, X, Y, inv_prop, *, beams, topk) -> dict:
    """Beam-approximated ensemble vs exact all-label scoring, per beam size.

    Errors are measured on a fixed label set, the exact ensemble's top-K labels of each
    instance (``mean_abs_err``), and over all labels (``max_abs_err``: mean over instances of
    the largest error); the beam bound is checked for every (instance, label).
    """
    exact, p_all = xmc.ensemble_exact(members, X, topk=topk, return_all=True)
    exact_inst = xmc.instance_uncertainty(exact)
    res = {"exact": _ranking(exact.labels, Y, inv_prop), "beams": {}}
    max_beam = min(m.num_leaf_clusters for m in members)
    for b in beams:
        if b > max_beam:
            continue
        k = min(topk, b * min(m.levels[-1].branching for m in members))
        errs = xmc.beam_approximation_errors(members, X, p_all, exact.labels, beam=b, topk=k)
        approx = xmc.ensemble_predict(members, X, beam_size=b, topk=k)
        inst = xmc.instance_uncertainty(approx)
        res["beams"][str(b)] = {
            **errs,
            "top1_agreement": float(np.mean(approx.labels[:, 0] == exact.labels[:, 0])),
            "instance_total_abs_err": float(np.mean(np.abs(inst.total - exact_inst.total))),
            "P@1": _ranking(approx.labels, Y, inv_prop)["P@1"],
        }
    return res


def misclassification_study(members, X, Y, *, beam, topk, k) -> dict:
    """AUROC/AUPR of uncertainty for wrong top-k predictions (positive class = wrong)."""
    truth = xmc.labels_to_padded(Y)
    single = xmc.beam_search(members[0], X, beam_size=beam, topk=topk)
    wrong_s = ~np.asarray(xmc.topk_hits(single.labels[:, :k], truth))
    ens = xmc.ensemble_predict(members, X, beam_size=beam, topk=topk)
    wrong_e = ~np.asarray(xmc.topk_hits(ens.labels[:, :k], truth))
    sel = lambda a: a[:, :k]
    return {
        "single_model": xmc.detection_metrics(
            {"one_minus_score": 1.0 - sel(single.scores)}, wrong_s
        ),
        "ensemble": xmc.detection_metrics(
            {
                "one_minus_mean": 1.0 - sel(ens.mean),
                "total_entropy": sel(ens.total),
                "aleatoric": sel(ens.aleatoric),
                "epistemic": sel(ens.epistemic),
                "variance": sel(ens.var),
            },
            wrong_e,
        ),
        "error_rate_single": float(wrong_s.mean()),
        "error_rate_ensemble": float(wrong_e.mean()),
    }


def ood_study(members, X, is_ood, *, beam, topk) -> dict:
    single = xmc.ensemble_predict(members[:1], X, beam_size=beam, topk=topk)
    ens = xmc.ensemble_predict(members, X, beam_size=beam, topk=topk)
    s_inst, e_inst = xmc.instance_uncertainty(single), xmc.instance_uncertainty(ens)
    return {
        "single_model": xmc.detection_metrics(
            {
                "one_minus_top": s_inst.one_minus_top,
                "entropy": s_inst.total,
                "cat_entropy": s_inst.cat_total,
            },
            is_ood,
        ),
        "ensemble": xmc.detection_metrics(
            e_inst._asdict(),
            is_ood,
        ),
        "num_ood": int(is_ood.sum()),
        "num_id": int((~is_ood).sum()),
    }


# ----------------------------------------------------------------------------- plots


def _plots(name: str, res: dict, workdir: pathlib.Path) -> list[str]:
    out = []
    fig, ax = plotting.subplots(1, 2, figsize=(9, 3.2))
    ks = [f"P@{k}" for k in _KS]
    x = np.arange(len(ks))
    ax[0].bar(x - 0.2, [res["single"][k] for k in ks], 0.4, label="single")
    ax[0].bar(x + 0.2, [res["ensemble"][k] for k in ks], 0.4, label=f"ensemble (M={res['M']})")
    ax[0].set_xticks(x, ks)
    ax[0].set_title(f"{name}: precision")
    ax[0].set_ylim(0, 1.3 * max(res["ensemble"][k] for k in ks))
    ax[0].legend(loc="upper right", fontsize=8)
    if "approx" in res and res["approx"]["beams"]:
        beams = sorted(res["approx"]["beams"], key=int)
        b = [int(v) for v in beams]
        ax[1].plot(
            b, [res["approx"]["beams"][v]["mean_abs_err"] for v in beams], "o-", label="|err|"
        )
        ax[1].plot(
            b, [res["approx"]["beams"][v]["mean_bound"] for v in beams], "s--", label="bound"
        )
        ax[1].set_yscale("log")
        ax[1].set_xlabel("beam size")
        ax[1].set_title("beam approximation of the mean score")
        ax[1].legend()
    p = workdir / f"{name}_precision_approx.png"
    plotting.save(fig, p)
    out.append(p.name)
    det = [("miscls", res.get("miscls")), ("ood", res.get("ood"))]
    det = [(k, v) for k, v in det if v]
    if det:
        fig, axes = plotting.subplots(1, len(det), figsize=(4.5 * len(det), 3.2), squeeze=False)
        for a, (kind, d) in zip(axes[0], det, strict=True):
            names, vals = [], []
            for who in ("single_model", "ensemble"):
                for k, v in d[who].items():
                    names.append(f"{'S' if who == 'single_model' else 'E'}:{k}")
                    vals.append(v["auroc"])
            a.barh(names, vals, color=["grey" if n.startswith("S") else "C0" for n in names])
            a.axvline(0.5, color="k", lw=0.5)
            a.set_xlim(0.3, 1.0)
            a.set_title(f"{name}: {kind} AUROC")
        p = workdir / f"{name}_detection.png"
        plotting.save(fig, p)
        out.append(p.name)
    return out


# ----------------------------------------------------------------------------- main entry


def train_and_evaluate(config, workdir: pathlib.Path, runtime: Runtime) -> dict:
    del runtime  # host-side sparse pipeline; one process
    workdir = pathlib.Path(workdir)
    root = jax.random.key(config.seed)
    results: dict = {"plots": []}
    for di, spec in enumerate(config.datasets):
        name = spec.split(":")[-1].rstrip("/").split("/")[-1]
        key = jax.random.fold_in(root, di)
        k_members, k_ood, k_ood_members = jax.random.split(key, 3)
        d = prepare(spec, config)
        inv_prop = xmc.inverse_propensity(d["Y_train"])
        members, secs = train_members(
            d["X_train"],
            d["Y_train"],
            key=k_members,
            num=config.num_members,
            folder=workdir / name / "members",
            config=config,
            desc=f"{name} members",
        )
        t0 = time.perf_counter()
        single = xmc.beam_search(
            members[0], d["X_test"], beam_size=config.beam_size, topk=config.topk
        )
        predict_s = time.perf_counter() - t0
        ens = xmc.ensemble_predict(
            members, d["X_test"], beam_size=config.beam_size, topk=config.topk
        )
        res = {
            "M": config.num_members,
            "num_train": int(d["X_train"].shape[0]),
            "num_test": int(d["X_test"].shape[0]),
            "num_labels": int(d["Y_train"].shape[1]),
            "dropped_train_rows": d["dropped_train_rows"],
            "fit_seconds_per_member": float(np.mean(secs)) if secs else None,
            "predict_seconds_single": predict_s,
            "single": _ranking(single.labels, d["Y_test"], inv_prop),
            "ensemble": _ranking(ens.labels, d["Y_test"], inv_prop),
            "members": [
                _ranking(
                    xmc.predict(m, d["X_test"], beam_size=config.beam_size, topk=config.topk)[0],
                    d["Y_test"],
                    inv_prop,
                )
                for m in members
            ],
        }
        if d["Y_train"].shape[1] <= config.exact_max_labels:
            n = min(config.exact_max_test, d["X_test"].shape[0])
            res["approx"] = approximation_study(
                members,
                d["X_test"][:n],
                d["Y_test"][:n],
                inv_prop,
                beams=tuple(config.approx_beams),
                topk=config.topk,
            )
        res["miscls"] = misclassification_study(
            members,
            d["X_test"],
            d["Y_test"],
            beam=config.beam_size,
            topk=config.topk,
            k=config.detect_topk,
        )
        if spec in tuple(config.ood_datasets):
            split = xmc.ood_split(
                k_ood,
                d["X_train"],
                d["Y_train"],
                d["X_test"],
                d["Y_test"],
                num_groups=config.ood_groups,
            )
            ood_members, _ = train_members(
                split.X_train,
                split.Y_train,
                key=k_ood_members,
                num=config.ood_members,
                folder=workdir / name / "ood_members",
                config=config,
                desc=f"{name} OOD members",
            )
            beam = min(config.beam_size, min(m.num_leaf_clusters for m in ood_members))
            res["ood"] = ood_study(
                ood_members, split.X_test, split.is_ood, beam=beam, topk=config.topk
            )
            res["ood"]["held_out_labels"] = int(len(split.held_out))
        results["plots"] += _plots(name, res, workdir)
        results[name] = res
    return results
