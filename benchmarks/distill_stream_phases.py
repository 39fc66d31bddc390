"""Resident memory per phase of the streaming (ImageNet) distillation path, in this process.

Runs ``experiments/distill`` with the ``stream_cpu`` config on a store of ``N`` training images
(``benchmarks/distill_stream_rss.py`` builds them) while a thread samples ``/proc/self/status``
every 20 ms; the pipeline's phases (statistics, class index, expert training, random-real
evaluation, distillation, cross-architecture evaluation) are marked by wrapping the functions
that ``experiments/distill/train.py`` calls. Prints and writes, per phase, the largest VmRSS,
RssAnon (heap, anonymous) and RssFile (file pages mapped in, e.g. memory-mapped stores), and
the process's VmHWM. Run each size in a fresh process:

    nice -n 5 python benchmarks/distill_stream_phases.py 8000 /tmp/phases_8000.json
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile
import threading
import time

_KEYS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")


def _status() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in _KEYS:
                out[k] = int(v.split()[0]) / 1024  # MiB
    return out


def main(n: int, out_path: str, stream_dir: str = "/tmp/distill_stores") -> None:
    samples, marks, done = [], [], threading.Event()

    def sample():
        while not done.is_set():
            samples.append((time.time(), _status()))
            time.sleep(0.02)

    def mark(name):
        marks.append((time.time(), name))

    threading.Thread(target=sample, daemon=True).start()
    mark("imports")
    from experiments.distill import train as T
    from experiments.distill.configs import default
    from robustml_jax import distill
    from robustml_jax.core import experiment

    def wrap(owner, name, label):
        f = getattr(owner, name)

        def g(*a, **k):
            mark(label)
            r = f(*a, **k)
            mark(f"after {label}")
            return r

        setattr(owner, name, g)

    wrap(distill, "channel_stats", "statistics")
    wrap(distill.ImageStore, "class_index", "class index")
    wrap(distill, "train_experts", "experts")
    wrap(distill, "real_subset", "random-real subset + its evaluation")
    wrap(T, "cross_architecture", "cross-architecture")
    fit = T.train.fit

    def fit_marked(*a, **k):  # the expert loop and the distillation
        mark(f"fit: {k.get('desc', '')}")
        r = fit(*a, **k)
        mark(f"after fit: {k.get('desc', '')}")
        return r

    T.train.fit = fit_marked
    cfg = default.get_config("stream_cpu")
    cfg.train_examples, cfg.stream_dir = n, stream_dir
    with tempfile.TemporaryDirectory() as work:
        mark("start")
        experiment.run(T.train_and_evaluate, cfg, work)
    mark("end")
    time.sleep(0.1)
    done.set()
    rows = []
    for (t0, name), (t1, _) in zip(marks, marks[1:] + [(time.time(), "")], strict=True):
        sel = [s for t, s in samples if t0 <= t <= t1]
        if sel:
            row = {"phase": name, "wall_s": round(t1 - t0, 1)}
            row.update({f"max_{k}_mib": round(max(s[k] for s in sel), 1) for k in _KEYS[:3]})
            rows.append(row)
    res = {"train_images": n, "VmHWM_mib": _status()["VmHWM"], "phases": rows}
    pathlib.Path(out_path).write_text(json.dumps(res, indent=1) + "\n")
    for r in rows:
        print(r)
    print("VmHWM", res["VmHWM_mib"])


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], *sys.argv[3:])
