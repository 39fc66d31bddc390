"""Beam-approximated ensemble uncertainty vs exact all-label scoring as the label count grows.

For L in 10k, 100k, 1M labels: an ensemble of M random tree models (binary cluster levels,
leaf clusters of 16 labels, sparse random rankers with per-node biases, so path scores are
long-tailed; no training, which does not change the cost of scoring), the same sparse queries.

* exact: every member scores every label (one sparse product per level on the host, the
  fastest exact method here) and the uncertainty scores are computed from all L scores;
* beam: :func:`xmc.ensemble_predict` (beam 10, top 10 per member) and
  :func:`xmc.uncertainty_scores`, warm (compiled) and cold (first call, compilation included).

Reported per L: time per query of both, the speed-up, and per score the mean |error| against
exact, the mean bound and the bound violations (must be 0)::

    python -m benchmarks.xmc_uq_scaling                      # 10k, 100k, 1M labels
    python -m benchmarks.xmc_uq_scaling --labels=10000,100000 --queries=64

Writes ``benchmarks/results/xmc_uq_scaling.json``.
"""

from __future__ import annotations

import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from absl import app, flags

from robustml_jax import xmc
from robustml_jax.core.results import write_results

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

_LABELS = flags.DEFINE_list("labels", ["10000", "100000", "1000000"], "Label counts.")
_MEMBERS = flags.DEFINE_integer("members", 3, "Ensemble members.")
_FEATURES = flags.DEFINE_integer("features", 2000, "Feature dimension.")
_QUERIES = flags.DEFINE_integer("queries", 32, "Queries scored exactly (and timed).")
_BEAM_QUERIES = flags.DEFINE_integer("beam_queries", 512, "Queries for the beam timing.")
_BEAM = flags.DEFINE_integer("beam", 10, "Beam size.")
_TOPK = flags.DEFINE_integer("topk", 10, "Labels kept per member and by the ensemble.")
_K_SUM = flags.DEFINE_integer("k_sum", 5, "k of the top-k sum score.")
_OUT = flags.DEFINE_string("out", str(RESULTS / "xmc_uq_scaling.json"), "Output JSON file.")

_LEAF = 16
_ROWS = (48, 16)  # stored feature rows per parent: cluster levels, leaf level


def random_tree(key, num_labels: int, num_features: int) -> xmc.TreeModel:
    """A random tree: binary cluster levels down to leaf clusters of 16 labels."""
    depth = max(1, int(np.ceil(np.log2(num_labels / _LEAF))))
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel()[-1])
    levels = []
    for t in range(depth + 1):
        parents, b = (2**t, 2) if t < depth else (2**depth, _LEAF)
        rows = _ROWS[0] if t < depth else _ROWS[1]
        # Distinct, sorted features per parent: cumulative sums of positive gaps (< D).
        gap = num_features // rows
        feat = np.cumsum(rng.integers(1, gap + 1, (parents, rows)), axis=1) - 1
        w = rng.normal(0, 2.0, (parents * rows, b)).astype(np.float32)
        valid = np.ones((parents, b), bool)
        if t == depth:  # leaf slots beyond L are padding
            valid.reshape(-1)[num_labels:] = False
        levels.append(
            xmc.Level(
                indptr=jnp.asarray(np.arange(parents + 1, dtype=np.int32) * rows),
                feat=jnp.asarray(feat.reshape(-1).astype(np.int32)),
                w=jnp.asarray(w),
                bias=jnp.asarray(rng.normal(0.0, 1.0, (parents, b)).astype(np.float32)),
                valid=jnp.asarray(valid),
            )
        )
    slots = 2**depth * _LEAF
    slot_label = np.where(np.arange(slots) < num_labels, np.arange(slots), -1).astype(np.int32)
    return xmc.TreeModel(
        levels=tuple(levels),
        slot_label=jnp.asarray(slot_label),
        num_features=num_features,
        num_labels=num_labels,
    )


def level_matrices(model: xmc.TreeModel) -> list:
    """Per level the rankers as a sparse [D, P * B] matrix, the biases and the valid mask
    (built once per model, outside the timed exact scoring)."""
    out = []
    for lv in model.levels:
        p, b = lv.bias.shape
        parent = np.repeat(np.arange(p), np.diff(np.asarray(lv.indptr)))
        cols = (parent[:, None] * b + np.arange(b)[None, :]).reshape(-1)
        W = sp.csr_matrix(
            (np.asarray(lv.w).reshape(-1), (np.repeat(np.asarray(lv.feat), b), cols)),
            shape=(model.num_features, p * b),
        )
        out.append((W, np.asarray(lv.bias).reshape(-1), np.asarray(lv.valid).reshape(-1)))
    return out


def exact_scores(model: xmc.TreeModel, mats: list, X: sp.csr_matrix) -> np.ndarray:
    """Path scores of every label [N, L] by one sparse product per level (host, float32)."""
    logp = np.zeros((X.shape[0], 1), np.float32)
    for W, bias, valid in mats:
        s = np.asarray((X @ W).todense()) + bias
        post = np.where(valid, -(np.maximum(1.0 - s, 0.0) ** 3), -np.inf)
        logp = np.repeat(logp, W.shape[1] // logp.shape[1], axis=1) + post
    sl = np.asarray(model.slot_label)
    out = np.empty((X.shape[0], model.num_labels), np.float32)
    out[:, sl[sl >= 0]] = np.exp(logp[:, sl >= 0])
    return out


def one_size(num_labels: int) -> dict:
    key = jax.random.key(num_labels)
    members = [
        random_tree(jax.random.fold_in(key, m), num_labels, _FEATURES.value)
        for m in range(_MEMBERS.value)
    ]
    nq = _BEAM_QUERIES.value
    X = xmc.l2_normalize_rows(
        sp.random(nq, _FEATURES.value, density=32 / _FEATURES.value, format="csr", random_state=0)
    )
    Xe = X[: _QUERIES.value]
    mats = [level_matrices(m) for m in members]
    kw = {"beam_size": _BEAM.value, "topk": _TOPK.value}
    t0 = time.perf_counter()
    out = xmc.ensemble_predict(members, X, **kw)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = xmc.ensemble_predict(members, X, **kw)
    sc, bd = xmc.uncertainty_scores(out, k=_K_SUM.value, num_labels=num_labels)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    errs = {n: [] for n in sc._fields}
    viol = {n: 0 for n in sc._fields}
    exact_s = 0.0
    for i in range(0, Xe.shape[0], 4):  # 4 queries at a time: [M, 4, L] stays small
        t1 = time.perf_counter()
        chunk = Xe[i : i + 4]
        p = np.stack([exact_scores(m, w, chunk) for m, w in zip(members, mats, strict=True)])
        ex = xmc.exact_uncertainty(p, out.labels[i : i + 4], k=_K_SUM.value)
        exact_s += time.perf_counter() - t1
        for n in sc._fields:
            e = np.abs(getattr(sc, n)[i : i + 4] - getattr(ex, n))
            errs[n].append(e)
            viol[n] += int((e > getattr(bd, n)[i : i + 4] + 1e-5).sum())
    del t0
    ne = Xe.shape[0]
    return {
        "labels": num_labels,
        "members": len(members),
        "exact_ms_per_query": 1e3 * exact_s / ne,
        "beam_ms_per_query_warm": 1e3 * warm / nq,
        "beam_s_cold_total": cold,
        "speedup_warm": (exact_s / ne) / (warm / nq),
        "scores": {
            n: {
                "mean_abs_err": float(np.concatenate(errs[n]).mean()),
                "mean_bound": float(getattr(bd, n)[:ne].mean()),
                "violations": viol[n],
            }
            for n in sc._fields
        },
        "mean_score_tail_bound": float(out.tail_bound[:ne].mean()),
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    out = {
        "machine": f"{os.cpu_count()} CPU cores, jax {jax.__version__} on "
        f"{jax.devices()[0].platform}",
        "settings": {
            "members": _MEMBERS.value,
            "features": _FEATURES.value,
            "beam": _BEAM.value,
            "topk": _TOPK.value,
            "k_sum": _K_SUM.value,
            "exact_queries": _QUERIES.value,
            "beam_queries": _BEAM_QUERIES.value,
            "model": "random binary trees, leaf clusters of 16, l3-hinge, no training",
        },
        "sizes": [],
    }
    for n in _LABELS.value:
        r = one_size(int(n))
        print(r, flush=True)
        out["sizes"].append(r)
    path = pathlib.Path(_OUT.value)
    write_results(path.parent, out, name=path.name)


if __name__ == "__main__":
    app.run(main)
