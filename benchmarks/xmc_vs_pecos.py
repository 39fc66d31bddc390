"""Tree model speed and quality: robustml_jax.xmc vs PECOS XR-Linear (libpecos).

Same synthetic data (power-law labels, sparse TF-IDF-like rows), same machine, one run each:
train time and the time to predict the test queries (4k by default) at beam 10, plus P@k; then
P@1/3/5 of both on Bibtex and Delicious (l2-normalised rows, max_leaf_size 16, nr_splits 2,
beam 10). libpecos needs older numpy/scipy than jax, so it runs in its own virtual environment,
created here on first use::

    python -m benchmarks.xmc_vs_pecos                       # 20k x 50k x 5k, 4k queries
    python -m benchmarks.xmc_vs_pecos --train 5000 --features 20000 --labels 2000 --test 2000

Writes ``benchmarks/results/xmc_vs_pecos.json``. If libpecos cannot be installed (no wheel for
this Python, no package index), the JSON says so and holds our numbers only.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import scipy.sparse as sp

from robustml_jax import xmc
from robustml_jax.core.results import write_results

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

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
    py = venv / "bin" / "python"
    check = [str(py), "-c", "import pecos.xmc.xlinear"]
    if py.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return py, "existing venv"
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "libpecos", "-d", tmp],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            return None, f"no libpecos wheel for this Python: {r.stderr.strip()[-300:]}"
    base = "/usr/bin/python3" if pathlib.Path("/usr/bin/python3").exists() else sys.executable
    steps = [
        [base, "-m", "venv", str(venv)],
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "libpecos"],
        [str(py), "-m", "pip", "install", "-q", "numpy<2", "scipy<1.14", "scikit-learn"],
    ]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            return None, f"{' '.join(cmd[:4])} failed: {r.stderr.strip()[-300:]}"
    if subprocess.run(check, capture_output=True).returncode != 0:
        return None, "libpecos installed but does not import"
    return py, "created"


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


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=20_000)
    ap.add_argument("--test", type=int, default=4_000)
    ap.add_argument("--features", type=int, default=50_000)
    ap.add_argument("--labels", type=int, default=5_000)
    ap.add_argument("--nnz", type=int, default=64)
    ap.add_argument("--noise-frac", type=float, default=0.75)
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--topk", type=int, default=10)
    ap.add_argument("--venv", default="/tmp/pecos_venv")
    ap.add_argument("--skip-real", action="store_true", help="skip Bibtex/Delicious")
    ap.add_argument("--out", default=str(RESULTS / "xmc_vs_pecos.json"))
    args = ap.parse_args(argv)
    kw = {"leaf": 16, "splits": 2, "beam": args.beam, "topk": args.topk}

    py, venv_note = ensure_pecos_venv(pathlib.Path(args.venv))
    out = {
        "machine": f"{os.cpu_count()} CPU cores, jax {jax.__version__} on "
        f"{jax.devices()[0].platform}",
        "pecos": venv_note if py else f"NOT RUN: {venv_note}",
        "settings": {**kw, "rows": "l2-normalised"},
    }
    data = xmc.synthetic_xmc(
        jax.random.key(0), args.train, args.test, args.features, args.labels, nnz_per_row=args.nnz
    )
    Xtr, Ytr = data["train"]["X"], data["train"]["Y"]
    Xte, Yte = data["test"]["X"], data["test"]["Y"]
    syn = {
        "shape": f"{args.train} train x {args.features} features x {args.labels} labels, "
        f"{args.test} queries, {args.nnz} nnz/row"
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
    if not args.skip_real:
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
    write_results(pathlib.Path(args.out).parent, out, name=pathlib.Path(args.out).name)


if __name__ == "__main__":
    main()
