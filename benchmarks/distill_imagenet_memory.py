"""Expected memory per device of one TESLA distillation gradient at ImageNet-1K scale.

For the ``imagenet_ipc{1,2,10,50}`` configs (ConvNetD4 width 128 at 64x64, 1000 classes,
N = 10, 100 images per student step, soft labels from the target expert computed in chunks of
``--label_chunk``),
compiles ``jax.grad`` of the loss w.r.t. (images, alpha) for abstract inputs (nothing is
allocated) and reads XLA's compile-time memory analysis: argument, output and temporary bytes
per device, on one device and with the synthetic set sharded over ``--devices`` host devices
(a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count``). The optimizer's two
buffers of the set's size (momentum of the images) come on top: 1x the set's bytes.

    python -m benchmarks.distill_imagenet_memory \
      --out=benchmarks/results/distill_imagenet_memory.json
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from absl import app, flags

_OUT = flags.DEFINE_string("out", "benchmarks/results/distill_imagenet_memory.json", "Output.")
_IPCS = flags.DEFINE_list("ipcs", ["1", "2", "10", "50"], "Images per class.")
_DEVICES = flags.DEFINE_integer("devices", 8, "Host devices for the sharded analysis (0 = skip).")
_MODES = flags.DEFINE_list("modes", ["tesla"], "Gradient modes.")
_WIDTH = flags.DEFINE_integer("width", 128, "ConvNetD4 width.")
_CHUNK = flags.DEFINE_integer("label_chunk", 100, "Images per chunk of the soft-label pass.")
_CHILD = flags.DEFINE_bool("child", False, "Internal: run the analysis in this process.")


def _analyse(ipcs, modes, width, devices, chunk):
    import jax

    from robustml_jax.core import sharding
    from robustml_jax.distill import gradient_memory
    from robustml_jax.models.convnet import ConvNet

    model = ConvNet(num_classes=1000, width=width, depth=4)
    params = jax.eval_shape(model.init, jax.random.key(0), jax.numpy.zeros((1, 64, 64, 3)))
    params = params["params"]
    mesh = sharding.data_mesh() if devices > 1 else None
    rows = []
    for mode in modes:
        for ipc in ipcs:
            m = gradient_memory(
                lambda p, x: model.apply({"params": p}, x), params,
                num_syn=1000 * ipc, image_shape=(64, 64, 3), num_classes=1000, num_steps=10,
                batch_size=100, gradient=mode, soft_labels=True, label_chunk=chunk, mesh=mesh,
            )  # fmt: skip
            m.update(ipc=ipc, gradient=mode, label_chunk=chunk)
            m["syn_set_bytes"] = 1000 * ipc * 64 * 64 * 3 * 4
            rows.append(m)
            print(json.dumps(m), flush=True)
    return rows


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    ipcs = [int(v) for v in _IPCS.value]
    if _CHILD.value:
        rows = _analyse(ipcs, _MODES.value, _WIDTH.value, _DEVICES.value, _CHUNK.value)
        print("RESULT " + json.dumps(rows))
        return
    out = {"model": f"ConvNetD4 width {_WIDTH.value}, 64x64, 1000 classes", "rows": []}
    for devices in [1] + ([_DEVICES.value] if _DEVICES.value > 1 else []):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
        cmd = [sys.executable, "-m", "benchmarks.distill_imagenet_memory", "--child",
               f"--devices={devices}", f"--ipcs={','.join(map(str, ipcs))}",
               f"--modes={','.join(_MODES.value)}", f"--width={_WIDTH.value}",
               f"--label_chunk={_CHUNK.value}"]  # fmt: skip
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")][-1]
        out["rows"] += json.loads(line[len("RESULT ") :])
        path = pathlib.Path(_OUT.value)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=1) + "\n")
    for r in out["rows"]:
        gib = {k: r[k] / 2**30 for k in ("total_bytes", "argument_bytes", "temp_bytes")}
        print(f"IPC {r['ipc']:>2} devices {r['devices']}: total {gib['total_bytes']:.2f} GiB "
              f"(args {gib['argument_bytes']:.2f}, temp {gib['temp_bytes']:.2f})")  # fmt: skip


if __name__ == "__main__":
    app.run(main)
