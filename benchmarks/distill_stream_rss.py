"""Peak memory of the streaming (ImageNet) distillation path for two dataset sizes.

Builds chunked stores of CIFAR-10 resized to 64x64 (``stream_cpu`` config: ConvNetD4, soft
labels in chunks) with ``--sizes`` training images, then runs the whole experiment main on each
in a fresh process under ``/usr/bin/time -v`` and records its peak RSS and CPU time. The stores
are built beforehand in this process, so the runs measure only the distillation pipeline
(statistics, class index, expert training over full epochs, distillation, evaluation).

    nice -n 5 python -m benchmarks.distill_stream_rss
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

from absl import app, flags

from robustml_jax import distill

_OUT = flags.DEFINE_string("out", "benchmarks/results/distill_stream_rss.json", "Output JSON.")
_SIZES = flags.DEFINE_list("sizes", ["4000", "16000"], "Training images per run.")
_STORES = flags.DEFINE_string("stores", "/tmp/distill_stores", "Where the stores go.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    out = {"config": "stream_cpu", "runs": []}
    previous = pathlib.Path(_OUT.value)
    if previous.exists():  # keep the runs recorded before the memory fix (bc4a4e0) for reference
        before = json.loads(previous.read_text()).get("before_fix")
        if before:
            out["before_fix"] = before
    root = pathlib.Path(_STORES.value)
    for n in [int(s) for s in _SIZES.value]:
        distill.store_from_registry(
            "cifar10", "train", root / f"cifar10_64_{n}_train", image_size=64, num_examples=n
        )
        distill.store_from_registry(
            "cifar10", "test", root / "cifar10_64_2000_test", image_size=64, num_examples=2000
        )
        with tempfile.TemporaryDirectory() as work:
            cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "experiments.distill.main",
                   "--config=experiments/distill/configs/default.py:stream_cpu",
                   f"--config.train_examples={n}", f"--config.stream_dir={root}",
                   f"--workdir={work}"]  # fmt: skip
            res = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            if res.returncode:
                raise RuntimeError(res.stderr[-3000:])
            results = json.loads((pathlib.Path(work) / "results.json").read_text())

        def field(name, text=res.stderr):
            return float(re.search(rf"{name}: ([0-9.:]+)", text).group(1))

        run = {
            "train_images": n,
            "store_uint8_mib": n * 64 * 64 * 3 / 2**20,
            "as_float32_mib": n * 64 * 64 * 3 * 4 / 2**20,
            "peak_rss_mib": field(r"Maximum resident set size \(kbytes\)") / 1024,
            "user_s": field(r"User time \(seconds\)"),
            "sys_s": field(r"System time \(seconds\)"),
            "syn_acc_mean": results["results"]["syn_acc_mean"]
            if "results" in results
            else results.get("syn_acc_mean"),
            "full_data_acc_mean": results.get("full_data_acc_mean"),
        }
        out["runs"].append(run)
        print(json.dumps(run), flush=True)
        path = pathlib.Path(_OUT.value)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    app.run(main)
