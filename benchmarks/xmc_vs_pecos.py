"""Tree model speed and quality: robustml_jax.xmc vs PECOS XR-Linear (libpecos).

Same synthetic data (power-law labels, sparse TF-IDF-like rows), same machine, one run each:
train time and the time to predict the test queries (4k by default) at beam 10, plus P@k; then
P@1/3/5 of both on Bibtex and Delicious (l2-normalised rows, max_leaf_size 16, nr_splits 2,
beam 10). libpecos needs older numpy/scipy than jax, so it runs in its own virtual environment,
created here on first use::

    python -m benchmarks.xmc_vs_pecos                       # 20k x 50k x 5k, 4k queries
    python -m benchmarks.xmc_vs_pecos --train=5000 --features=20000 --labels=2000 --test=2000
    python -m benchmarks.xmc_vs_pecos --compilation_cache=/tmp/jax_cache   # twice: cold start

Times are reported separately: ``train_s``, ``predict_s`` (warm: compiled, second call) and
``predict_cold_s`` (first call in the process, compilation included).

Writes ``benchmarks/results/xmc_vs_pecos.json``. If libpecos cannot be installed (no wheel for
this Python, no package index), the JSON says so and holds our numbers only.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import tempfile
import time

import jax
import numpy as np
import scipy.sparse as sp
from absl import app, flags

from benchmarks import _sidevenv
from robustml_jax import xmc
from robustml_jax.core.results import write_results

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

_TRAIN = flags.DEFINE_integer("train", 20_000, "Synthetic training instances.")
_TEST = flags.DEFINE_integer("test", 4_000, "Synthetic test queries.")
_FEATURES = flags.DEFINE_integer("features", 50_000, "Synthetic feature dimension.")
_LABELS = flags.DEFINE_integer("labels", 5_000, "Synthetic label count.")
_NNZ = flags.DEFINE_integer("nnz", 64, "Non-zeros per synthetic row.")
_BEAM = flags.DEFINE_integer("beam", 10, "Beam size.")
_TOPK = flags.DEFINE_integer("topk", 10, "Labels predicted per query.")
_VENV = flags.DEFINE_string("venv", "/tmp/pecos_venv", "Virtual environment for libpecos.")
_SKIP_REAL = flags.DEFINE_bool("skip_real", False, "Skip Bibtex/Delicious.")
_OUT = flags.DEFINE_string("out", str(RESULTS / "xmc_vs_pecos.json"), "Output JSON file.")
_CACHE = flags.DEFINE_string(
    "compilation_cache",
    "",
    "JAX persistent compilation cache folder ('' = off). A second run with the same folder "
    "loads the compiled solvers and beam searches instead of compiling them (cold start).",
)

_PECOS_SCRIPT = r"""
import json, sys, time
import numpy as np, scipy.sparse as sp
from pecos.xmc import Indexer, LabelEmbeddingFactory
from pecos.xmc.xlinear.model import XLinearModel

d = np.load(sys.argv[1])
mat = lambda p: sp.csr_matrix((d[p + "_data"], d[p + "_ind"], d[p + "_ptr"]),
                              shape=tuple(d[p + "_shape"]))
Xtr, Ytr, Xte = mat("xtr"), mat("ytr"), mat("xte")
for m in (Xtr, Ytr, Xte):
    m.sort_indices()
leaf, splits, beam, topk = (int(a) for a in sys.argv[3:7])
t0 = time.perf_counter()
Z = LabelEmbeddingFactory.create(Ytr, Xtr, method="pifa")
C = Indexer.gen(Z, indexer_type="hierarchicalkmeans", max_leaf_size=leaf, nr_splits=splits, seed=0)
model = XLinearModel.train(Xtr, Ytr, C=C)
train_s = time.perf_counter() - t0
t0 = time.perf_counter()
P = model.predict(Xte, beam_size=beam, only_topk=topk)
predict_s = time.perf_counter() - t0
P = P.tocsr()
pred = -np.ones((Xte.shape[0], topk), np.int64)
for i in range(Xte.shape[0]):
    row = slice(P.indptr[i], P.indptr[i + 1])
    order = np.argsort(-P.data[row], kind="stable")
    lab = P.indices[row][order][:topk]
    pred[i, : len(lab)] = lab
np.save(sys.argv[2], pred)
print(json.dumps({"train_s": train_s, "predict_s": predict_s}))
"""


def ensure_pecos_venv(venv: pathlib.Path) -> tuple[pathlib.Path | None, str]:
    """Creates ``venv`` with libpecos (no torch: ``--no-deps`` plus numpy<2, scipy<1.14)."""
    return _sidevenv.ensure_venv(
        venv,
        check="import pecos.xmc.xlinear",
        plans=[[["--no-deps", "libpecos"], ["numpy<2", "scipy<1.14", "scikit-learn"]]],
    )


def run_pecos(py, Xtr, Ytr, Xte, *, leaf, splits, beam, topk) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {}
        for p, m in (("xtr", Xtr), ("ytr", Ytr), ("xte", Xte)):
            m = sp.csr_matrix(m, dtype=np.float32)
            arrays.update(
                {
                    f"{p}_data": m.data,
                    f"{p}_ind": m.indices,
                    f"{p}_ptr": m.indptr,
                    f"{p}_shape": np.array(m.shape),
                }
            )
        np.savez(f"{tmp}/in.npz", **arrays)
        script = pathlib.Path(tmp) / "run.py"
        script.write_text(_PECOS_SCRIPT)
        r = subprocess.run(
            [
                str(py),
                str(script),
                f"{tmp}/in.npz",
                f"{tmp}/pred.npy",
                str(leaf),
                str(splits),
                str(beam),
                str(topk),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": ""},
        )
        if r.returncode != 0:
            raise RuntimeError(f"PECOS run failed: {r.stderr[-2000:]}")
        out = json.loads(r.stdout.strip().splitlines()[-1])
        out["pred"] = np.load(f"{tmp}/pred.npy")
        return out


def run_ours(Xtr, Ytr, Xte, *, leaf, splits, beam, topk, seed=0) -> dict:
    t0 = time.perf_counter()
    model = xmc.fit_tree_model(
        Xtr, Ytr, key=jax.random.key(seed), max_leaf_size=leaf, nr_splits=splits
    )
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels, _ = xmc.predict(model, Xte, beam_size=beam, topk=topk)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels, _ = xmc.predict(model, Xte, beam_size=beam, topk=topk)
    warm = time.perf_counter() - t0
    return {"train_s": train_s, "predict_s": warm, "predict_cold_s": cold, "pred": labels}


def precision(pred, Ytr, Yte) -> dict:
    r = xmc.ranking_metrics(
        np.asarray(pred, np.int32),
        xmc.labels_to_padded(Yte),
        xmc.inverse_propensity(Ytr),
        ks=(1, 3, 5),
    )
    return {k: round(100 * float(r[k]), 2) for k in ("P@1", "P@3", "P@5")}


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    kw = {"leaf": 16, "splits": 2, "beam": _BEAM.value, "topk": _TOPK.value}
    cache_note = "off"
    if _CACHE.value:
        cache = pathlib.Path(_CACHE.value)
        cache_note = f"{cache} ({'warm' if cache.is_dir() and any(cache.iterdir()) else 'empty'})"
        jax.config.update("jax_compilation_cache_dir", str(cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

    py, venv_note = ensure_pecos_venv(pathlib.Path(_VENV.value))
    out = {
        "machine": f"{os.cpu_count()} CPU cores, jax {jax.__version__} on "
        f"{jax.devices()[0].platform}",
        "pecos": venv_note if py else f"NOT RUN: {venv_note}",
        "settings": {**kw, "rows": "l2-normalised"},
        "compilation_cache": cache_note,
    }
    data = xmc.synthetic_xmc(
        jax.random.key(0),
        _TRAIN.value,
        _TEST.value,
        _FEATURES.value,
        _LABELS.value,
        nnz_per_row=_NNZ.value,
    )
    Xtr, Ytr = data["train"]["X"], data["train"]["Y"]
    Xte, Yte = data["test"]["X"], data["test"]["Y"]
    syn = {
        "shape": f"{_TRAIN.value} train x {_FEATURES.value} features x {_LABELS.value} labels, "
        f"{_TEST.value} queries, {_NNZ.value} nnz/row"
    }
    ours = run_ours(Xtr, Ytr, Xte, **kw)
    syn["ours"] = {k: v for k, v in ours.items() if k != "pred"}
    syn["ours"]["P@k"] = precision(ours["pred"], Ytr, Yte)
    if py:
        pe = run_pecos(py, Xtr, Ytr, Xte, **kw)
        syn["pecos"] = {k: v for k, v in pe.items() if k != "pred"}
        syn["pecos"]["P@k"] = precision(pe["pred"], Ytr, Yte)
        syn["ratio_train_ours_over_pecos"] = ours["train_s"] / pe["train_s"]
        syn["ratio_predict_ours_over_pecos"] = ours["predict_s"] / pe["predict_s"]
    out["synthetic"] = syn
    print(json.dumps(syn, indent=1), flush=True)
    if not _SKIP_REAL.value:
        for name in ("bibtex", "delicious"):
            tr, te = xmc.load_dataset(name, "train"), xmc.load_dataset(name, "test")
            keep = tr["Y"].getnnz(1) > 0
            Xtr, Ytr = xmc.l2_normalize_rows(tr["X"][keep]), tr["Y"][keep]
            Xte, Yte = xmc.l2_normalize_rows(te["X"]), te["Y"]
            res = {"ours": run_ours(Xtr, Ytr, Xte, **kw)}
            if py:
                res["pecos"] = run_pecos(py, Xtr, Ytr, Xte, **kw)
            for who in list(res):
                pred = res[who].pop("pred")
                res[who]["P@k"] = precision(pred, Ytr, Yte)
            out[name] = res
            print(name, json.dumps(res), flush=True)
    out_path = pathlib.Path(_OUT.value)
    write_results(out_path.parent, out, name=out_path.name)


if __name__ == "__main__":
    app.run(main)
