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
from robustml_jax.core import metrics, paths, plotting
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
    return prepare_split(*load_split(spec), config)


def prepare_split(tr: dict, te: dict, config) -> dict:
    """:func:`prepare` on already-loaded ``{"X", "Y"}`` train and test splits (``config``
    supplies ``max_train`` / ``max_test``; 0 keeps all rows)."""
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


def train_members(
    X,
    Y,
    *,
    key,
    num: int,
    folder: pathlib.Path,
    config,
    desc: str,
    bootstrap: bool | None = None,
    feature_fraction: float | None = None,
    structure: bool = False,
):
    """Trains (or reloads) ``num`` members; member m uses ``fold_in(key, m)``.

    ``bootstrap`` / ``feature_fraction`` default to the config's; with ``structure`` member m
    uses ``diversity_leaf_sizes[m]`` and ``diversity_nr_splits[m]`` (cycled).

    Returns:
      (members, fit seconds of the members trained in this call).
    """
    items = xmc.model_items(folder)
    members, seconds = [], []

    def fit(m):
        kw = tree_kwargs(config)
        if structure:
            kw["max_leaf_size"] = config.diversity_leaf_sizes[m % len(config.diversity_leaf_sizes)]
            kw["nr_splits"] = config.diversity_nr_splits[m % len(config.diversity_nr_splits)]
        t0 = time.perf_counter()
        model = xmc.fit_member(
            X,
            Y,
            key=jax.random.fold_in(key, m),
            bootstrap=config.bootstrap if bootstrap is None else bootstrap,
            feature_fraction=(
                config.feature_fraction if feature_fraction is None else feature_fraction
            ),
            **kw,
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


def approximation_study(members, X, Y, inv_prop, *, beams, topk, k_sum) -> dict:
    """Beam-approximated ensemble vs exact all-label scoring, per beam size.

    Errors of the mean score are measured on a fixed label set, the exact ensemble's top-K
    labels of each instance (``mean_abs_err``), and over all labels (``max_abs_err``: mean over
    instances of the largest error); the beam bound is checked for every (instance, label).
    Every uncertainty score of :func:`xmc.uncertainty_scores` is compared with its exact value
    and its bound (``scores``: mean |error|, mean bound, violations).
    """
    exact, p_all = xmc.ensemble_exact(members, X, topk=topk, return_all=True)
    exact_inst = xmc.instance_uncertainty(exact)
    num_labels = members[0].num_labels
    res = {"exact": _ranking(exact.labels, Y, inv_prop), "beams": {}}
    for b in beams:
        k = min(topk, b * min(m.levels[-1].branching for m in members))
        errs = xmc.beam_approximation_errors(members, X, p_all, exact.labels, beam=b, topk=k)
        approx = xmc.ensemble_predict(members, X, beam_size=b, topk=k)
        inst = xmc.instance_uncertainty(approx)
        ks = min(k_sum, k)
        sc, bd = xmc.uncertainty_scores(approx, k=ks, num_labels=num_labels)
        ex = xmc.exact_uncertainty(p_all, approx.labels, k=ks)
        per_score = {}
        for n in sc._fields:
            err = np.abs(getattr(sc, n) - getattr(ex, n))
            per_score[n] = {
                "mean_abs_err": float(err.mean()),
                "mean_bound": float(getattr(bd, n).mean()),
                "violations": int((err > getattr(bd, n) + 1e-5).sum()),
            }
        res["beams"][str(b)] = {
            **errs,
            "top1_agreement": float(np.mean(approx.labels[:, 0] == exact.labels[:, 0])),
            "instance_total_abs_err": float(np.mean(np.abs(inst.total - exact_inst.total))),
            "P@1": _ranking(approx.labels, Y, inv_prop)["P@1"],
            "scores": per_score,
        }
    return res


def _scores(out, *, k_sum: int, num_labels: int, prefix: str = "") -> dict:
    sc, _ = xmc.uncertainty_scores(out, k=k_sum, num_labels=num_labels)
    return {prefix + n: v for n, v in sc._asdict().items()}


def misclassification_study(members, X, Y, *, beam, topk, k_sum, key, num_samples) -> dict:
    """Misclassification detection under the paired protocol.

    Every score is evaluated on the same predictions, the ensemble's top-1 labels (positive =
    wrong). The baseline is the single model's (member 0's) score of that same label; the
    ensemble's scores are those of :func:`xmc.uncertainty_scores` plus the Bernoulli mutual
    information of the predicted label (the earlier reconstruction, for reference).
    """
    truth = xmc.labels_to_padded(Y)
    num_labels = members[0].num_labels
    ens = xmc.ensemble_predict(members, X, beam_size=beam, topk=topk)
    single = xmc.beam_search(members[0], X, beam_size=beam, topk=topk)
    wrong = ~np.asarray(xmc.topk_hits(ens.labels[:, :1], truth))[:, 0]
    wrong_single = ~np.asarray(xmc.topk_hits(single.labels[:, :1], truth))[:, 0]
    scores = {
        "single_one_minus_score": 1.0 - ens.member_scores[0, :, 0],
        **_scores(ens, k_sum=k_sum, num_labels=num_labels),
        "bernoulli_mi": ens.epistemic[:, 0],
    }
    det = xmc.paired_detection(
        key, scores, wrong, baseline="single_one_minus_score", num_samples=num_samples
    )
    return {
        **det,
        "prediction": "ensemble top-1",
        "error_rate": float(wrong.mean()),
        "error_rate_single_own_top1": float(wrong_single.mean()),
        "calibration": {
            "ensemble_mean": xmc.calibration_errors(ens.mean, ens.labels, truth),
            "single": xmc.calibration_errors(single.scores, single.labels, truth),
        },
        "risk_coverage": {
            n: _curve(scores[n], wrong) for n in ("single_one_minus_score", "one_minus_mean")
        },
    }


def ood_study(members, X, is_ood, *, beam, topk, k_sum, key, num_samples) -> dict:
    """OOD detection under the paired protocol: every score on the same instances.

    The baseline is the single model's 1 - max score; the single model's other instance-level
    scores and the ensemble's scores are compared with it (plus the Bernoulli total entropy
    averaged over the retrieved labels, the earlier reconstruction, for reference).
    """
    num_labels = members[0].num_labels
    single = xmc.ensemble_predict(members[:1], X, beam_size=beam, topk=topk)
    ens = xmc.ensemble_predict(members, X, beam_size=beam, topk=topk)
    inst = ("one_minus_max", "neg_topk_sum", "cat_entropy")
    s_scores = _scores(single, k_sum=k_sum, num_labels=num_labels, prefix="single_")
    scores = {
        **{n: v for n, v in s_scores.items() if n.removeprefix("single_") in inst},
        **_scores(ens, k_sum=k_sum, num_labels=num_labels),
        "bernoulli_total": xmc.instance_uncertainty(ens).total,
    }
    det = xmc.paired_detection(
        key, scores, is_ood, baseline="single_one_minus_max", num_samples=num_samples
    )
    return {**det, "num_ood": int(is_ood.sum()), "num_id": int((~is_ood).sum())}


def _miscls(members, d, config, key) -> dict:
    """:func:`misclassification_study` on a prepared dataset's test split with the config's
    beam, top-k, k of the top-k sum and bootstrap size."""
    return misclassification_study(
        members,
        d["X_test"],
        d["Y_test"],
        beam=config.beam_size,
        topk=config.topk,
        k_sum=config.topk_sum,
        key=key,
        num_samples=config.bootstrap_samples,
    )


def _curve(uncertainty, error, points: int = 50) -> dict:
    rc = metrics.risk_coverage(np.asarray(uncertainty, np.float32), np.asarray(error, bool))
    idx = np.unique(np.linspace(0, len(error) - 1, points).astype(int))
    return {
        "coverage": np.asarray(rc.coverage)[idx].tolist(),
        "risk": np.asarray(rc.risk)[idx].tolist(),
    }


DIVERSITY = ("seeds", "bagging", "features", "structure")


def diversity_options(config, option: str) -> dict:
    """Per-option member settings: ``{"bootstrap", "feature_fraction", "structure"}``."""
    if option not in DIVERSITY:
        raise ValueError(f"unknown diversity option {option!r}; choose from {DIVERSITY}")
    return {
        "bootstrap": option == "bagging",
        "feature_fraction": config.diversity_feature_fraction if option == "features" else 1.0,
        "structure": option == "structure",
    }


def diversity_study(d, inv_prop, *, key, folder, config, base_members) -> dict:
    """Ensembles that differ only in how members are made diverse, on one dataset: ranking,
    member disagreement and paired misclassification detection (1 - mean vs the single
    model's score on the same top-1 predictions)."""
    out = {}
    for opt in ("seeds", *config.diversity):
        if opt == "seeds" and not config.bootstrap and config.feature_fraction == 1.0:
            members = base_members
        else:
            members, _ = train_members(
                d["X_train"],
                d["Y_train"],
                key=jax.random.fold_in(key, DIVERSITY.index(opt)),
                num=config.num_members,
                folder=folder / opt,
                config=config,
                desc=f"diversity: {opt}",
                **diversity_options(config, opt),
            )
        ens = xmc.ensemble_predict(
            members, d["X_test"], beam_size=config.beam_size, topk=config.topk
        )
        top1 = np.stack(
            [
                xmc.predict(m, d["X_test"], beam_size=config.beam_size, topk=1)[0][:, 0]
                for m in members
            ]
        )
        pairs = [(i, j) for i in range(len(members)) for j in range(i + 1, len(members))]
        mis = _miscls(members, d, config, jax.random.fold_in(key, 100 + DIVERSITY.index(opt)))
        out[opt] = {
            "ensemble": _ranking(ens.labels, d["Y_test"], inv_prop),
            "top1_disagreement": float(np.mean([np.mean(top1[i] != top1[j]) for i, j in pairs]))
            if pairs
            else 0.0,
            "miscls_auroc": mis["scores"]["one_minus_mean"]["auroc"],
            "miscls_auroc_diff": mis["scores"]["one_minus_mean"]["auroc_diff"],
            "miscls_std_auroc": mis["scores"]["member_std"]["auroc"],
            "ECE@1": mis["calibration"]["ensemble_mean"]["ECE@1"],
        }
    return out


# ----------------------------------------------------------------------------- plots


def _plots(name: str, res: dict, workdir: pathlib.Path) -> list[str]:
    out = []
    fig, ax = plotting.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
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
        for n, mark in (("one_minus_mean", "o"), ("neg_topk_sum", "s"), ("cat_entropy", "^")):
            sc = [res["approx"]["beams"][v]["scores"][n] for v in beams]
            (line,) = ax[1].plot(b, [max(v["mean_abs_err"], 1e-9) for v in sc], mark + "-", label=n)
            ax[1].plot(b, [max(v["mean_bound"], 1e-9) for v in sc], mark + "--", c=line.get_color())
        ax[1].set_yscale("log")
        ax[1].set_xlabel("beam size")
        ax[1].set_title("beam approx.: |error| (solid), bound (dashed)")
        ax[1].legend(fontsize=7)
    p = workdir / f"{name}_precision_approx.png"
    plotting.save(fig, p)
    out.append(p.name)
    det = [(k, res[k]) for k in ("miscls", "ood") if k in res]
    fig, axes = plotting.subplots(
        1, len(det) + 1, figsize=(4.6 * (len(det) + 1), 3.4), squeeze=False, layout="constrained"
    )
    for a, (kind, d) in zip(axes[0], det, strict=False):
        names = list(d["scores"])
        est = [d["scores"][n]["auroc"]["estimate"] for n in names]
        lo = [e - d["scores"][n]["auroc"]["low"] for e, n in zip(est, names, strict=True)]
        hi = [d["scores"][n]["auroc"]["high"] - e for e, n in zip(est, names, strict=True)]
        colors = ["grey" if n.startswith("single") else "C0" for n in names]
        a.barh(names, est, xerr=[lo, hi], color=colors)
        a.axvline(0.5, color="k", lw=0.5)
        a.set_xlim(0.0, 1.0)
        a.tick_params(axis="y", labelsize=7)
        a.set_title(f"{name}: {kind} AUROC (95% CI)")
    rc = res["miscls"]["risk_coverage"]
    a = axes[0][-1]
    for n, curve in rc.items():
        a.plot(curve["coverage"], curve["risk"], label=n)
    a.set_xlabel("coverage")
    a.set_ylabel("top-1 error among kept")
    a.set_title(f"{name}: risk-coverage (same predictions)")
    a.legend(fontsize=7)
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
        k_boot, k_div = jax.random.fold_in(key, 17), jax.random.fold_in(key, 23)
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
                k_sum=config.topk_sum,
            )
        res["miscls"] = _miscls(members, d, config, jax.random.fold_in(k_boot, 0))
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
            res["ood"] = ood_study(
                ood_members,
                split.X_test,
                split.is_ood,
                beam=config.beam_size,
                topk=config.topk,
                k_sum=config.topk_sum,
                key=jax.random.fold_in(k_boot, 1),
                num_samples=config.bootstrap_samples,
            )
            res["ood"]["held_out_labels"] = int(len(split.held_out))
        if spec in tuple(config.diversity_datasets) and config.diversity:
            res["diversity"] = diversity_study(
                d,
                inv_prop,
                key=k_div,
                folder=workdir / name / "diversity",
                config=config,
                base_members=members,
            )
        results["plots"] += _plots(name, res, workdir)
        results[name] = res
    return results
