"""ELIAS inference cost vs label count at a fixed shortlist, against dense all-label scoring.

For L in 10k, 100k, 1M labels: a random ELIAS-2 model (C = 2^ceil(log2(L / 100)) clusters,
kappa adjacency entries per cluster, beam b, shortlist K, embedding d; no training, which does
not change the cost) and the same sparse queries.

* elias: :func:`xmc.predict_elias` (top-b clusters, b * kappa paths, best path per label,
  top K, per-label classifiers on the K only), warm; compilation timed separately;
* dense: the same encoder, then every label's classifier (``h @ W_L^T``) and top-k, jitted.

Reported per L: time per 1k queries (wall and process CPU seconds, the machine is shared),
compile seconds, the ratio dense / elias, and the bytes of the sparse adjacency (label ids +
weights, C x kappa) against a dense C x L one::

    python -m benchmarks.elias_scaling                      # 10k, 100k, 1M labels
    python -m benchmarks.elias_scaling --labels=10000 --queries=256

Writes ``benchmarks/results/elias_scaling.json``.
"""

from __future__ import annotations

import pathlib
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from robustml_jax import xmc
from robustml_jax.core.results import write_results
from robustml_jax.xmc import _elias

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

_LABELS = flags.DEFINE_list("labels", ["10000", "100000", "1000000"], "Label counts.")
_FEATURES = flags.DEFINE_integer("features", 2000, "Feature dimension.")
_QUERIES = flags.DEFINE_integer("queries", 1024, "Queries timed.")
_DIM = flags.DEFINE_integer("dim", 64, "Embedding size d.")
_BEAM = flags.DEFINE_integer("beam", 10, "Clusters searched b.")
_KAPPA = flags.DEFINE_integer("kappa", 100, "Adjacency entries per cluster.")
_K = flags.DEFINE_integer("K", 500, "Shortlist size.")
_TOPK = flags.DEFINE_integer("topk", 10, "Labels returned.")
_OUT = flags.DEFINE_string("out", str(RESULTS / "elias_scaling.json"), "Output JSON file.")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def random_model(key, num_labels: int, num_features: int) -> xmc.EliasModel:
    """A random ELIAS-2 model; every label sits in at least one cluster."""
    C = 2 ** int(np.ceil(np.log2(num_labels / 100)))
    kappa = _KAPPA.value
    rng = np.random.default_rng(0)
    a = rng.integers(0, num_labels, (C, kappa)).astype(np.int32)
    perm = rng.permutation(num_labels)
    per = -(-num_labels // C)  # <= 100 <= kappa: the first `per` slots hold a partition
    idx = np.arange(num_labels)
    a[idx // per, idx % per] = perm
    cfg = xmc.elias_config(
        num_labels, num_clusters=C, beam=_BEAM.value, kappa=kappa, K=_K.value, dim=_DIM.value
    )
    cfg["num_features"] = num_features
    cfg["K"] = _K.value
    net = _elias._net(cfg, 2, kappa)
    dummy = (jnp.zeros((1, 1), jnp.int32), jnp.zeros((1, 1)), jnp.zeros((1, 1)))
    params = net.init({"params": key}, *dummy)["params"]
    return xmc.EliasModel(params, a, cfg, 2)


def _dense_fn(model):
    net = _elias._net(model.config, 2, model.a_inds.shape[1])
    topk = _TOPK.value

    @jax.jit
    def f(params, cols, vals):
        h = net.apply({"params": params}, cols, vals, None, method=_elias.EliasNet.encode)
        logits = h @ params["WL"][:-1].T + params["bL"][:-1]
        return jax.lax.top_k(logits, topk)

    return f


def bench(num_labels: int) -> dict:
    key = jax.random.key(0)
    model = random_model(key, num_labels, _FEATURES.value)
    q = xmc.synthetic_xmc(jax.random.key(1), _QUERIES.value, 8, _FEATURES.value, 50)
    X = q["train"]["X"]
    t0, c0 = time.perf_counter(), _cpu()
    xmc.predict_elias(model, X[:8], _TOPK.value)
    e_compile = time.perf_counter() - t0
    xmc.predict_elias(model, X, _TOPK.value)  # all batch shapes compiled
    t0, c0 = time.perf_counter(), _cpu()
    xmc.predict_elias(model, X, _TOPK.value)
    e_wall, e_cpu = time.perf_counter() - t0, _cpu() - c0
    f = _dense_fn(model)
    cols, vals = xmc.pad_rows(X)
    bs = 256
    t0 = time.perf_counter()
    jax.block_until_ready(f(model.params, cols[:bs], vals[:bs]))
    d_compile = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), _cpu()
    for i in range(0, X.shape[0] - bs + 1, bs):
        jax.block_until_ready(f(model.params, cols[i : i + bs], vals[i : i + bs]))
    d_wall, d_cpu = time.perf_counter() - t0, _cpu() - c0
    n = (X.shape[0] // bs) * bs
    C, kappa = model.a_inds.shape
    per1k = 1000.0 / X.shape[0]
    return {
        "num_labels": num_labels,
        "num_clusters": int(C),
        "beam": model.config["beam"],
        "kappa": int(kappa),
        "K": model.config["K"],
        "elias_ms_per_1k": 1000 * e_wall * per1k,
        "elias_cpu_s_per_1k": e_cpu * per1k,
        "elias_compile_s": e_compile,
        "dense_ms_per_1k": 1000 * d_wall * 1000.0 / n,
        "dense_cpu_s_per_1k": d_cpu * 1000.0 / n,
        "dense_compile_s": d_compile,
        "dense_over_elias_cpu": (d_cpu * 1000.0 / n) / max(e_cpu * per1k, 1e-9),
        "adjacency_sparse_bytes": int(C * kappa * 8),
        "adjacency_dense_bytes": int(C * num_labels * 4),
    }


def main(argv):
    del argv
    rows = []
    for v in _LABELS.value:
        r = bench(int(v))
        print(r, flush=True)
        rows.append(r)
    base = rows[0]["elias_cpu_s_per_1k"]
    out = {
        "rows": rows,
        "elias_cpu_growth_vs_smallest": [r["elias_cpu_s_per_1k"] / base for r in rows],
        "worst_elias_cpu_growth": max(r["elias_cpu_s_per_1k"] / base for r in rows),
        "devices": f"{jax.device_count()}x {jax.devices()[0].platform}",
        "note": "shared 2-core CPU; CPU seconds are the load-robust measure",
    }
    write_results(pathlib.Path(_OUT.value).parent, out, name=pathlib.Path(_OUT.value).name)
    print(out["elias_cpu_growth_vs_smallest"])


if __name__ == "__main__":
    app.run(main)
