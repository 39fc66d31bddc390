"""Memory and runtime of one distillation gradient: ``unrolled`` vs ``tesla`` vs ``remat``.

For a ConvNet at CIFAR size (32x32x3, 10 classes) and N student steps, compiles
``jax.grad`` of :func:`robustml_jax.distill.trajectory_matching_loss` w.r.t. (images, syn_lr)
and reads XLA's compiled memory analysis (``temp_size_in_bytes``: the peak of the buffers the
computation allocates besides its arguments and outputs). With ``--runtime_steps`` it also
times the compiled gradient (median of ``--reps`` calls after a warm-up) and, on a GPU, reads
the device's measured peak memory. Nothing here needs data: images and parameters are random.

    python -m benchmarks.distill_memory --out=benchmarks/results/distill_memory.json
    python -m benchmarks.distill_memory --steps=10,80 --modes=unrolled,tesla --runtime_steps=0

Targets (issue 4): ``tesla`` temp memory grows <= 1.2x from N=10 to N=80; ``unrolled`` grows
about linearly; ``tesla`` runtime within 1.15x of ``unrolled`` at N=20.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from robustml_jax.distill import dsa_augment, trajectory_matching_loss
from robustml_jax.models.convnet import ConvNet


def _problem(width, depth, ipc, classes=10, size=32):
    model = ConvNet(num_classes=classes, width=width, depth=depth)
    keys = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(keys[0], (ipc * classes, size, size, 3))
    y = jax.nn.one_hot(jnp.arange(ipc * classes) % classes, classes)
    start = model.init(keys[1], x[:1])["params"]
    target = jax.tree.map(lambda a: a + 0.01 * jax.random.normal(keys[2], a.shape), start)
    return model, x, y, start, target, keys[3]


def _grad_fn(model, num_steps, batch, mode, dsa):
    def loss(x, lr, y, start, target, key):
        return trajectory_matching_loss(
            x,
            y,
            lr,
            key,
            start,
            target,
            apply_fn=lambda p, v: model.apply({"params": p}, v),
            num_steps=num_steps,
            batch_size=batch,
            gradient=mode,
            augment_fn=dsa_augment if dsa else None,
        )

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


_WIDTH = flags.DEFINE_integer("width", 128, "ConvNet width.")
_DEPTH = flags.DEFINE_integer("depth", 3, "ConvNet depth.")
_IPC = flags.DEFINE_integer("ipc", 10, "Synthetic images per class (10 classes).")
_BATCH = flags.DEFINE_integer("batch", 100, "Synthetic images per student step.")
_STEPS = flags.DEFINE_list("steps", ["10", "20", "40", "80"], "Student steps N to compile.")
_MODES = flags.DEFINE_list("modes", ["unrolled", "tesla", "remat"], "Gradient modes.")
_DSA = flags.DEFINE_bool("dsa", False, "DSA augmentation inside the student.")
_RUNTIME_STEPS = flags.DEFINE_integer("runtime_steps", 20, "N for the timing (0 = no timing).")
_RUNTIME_WIDTH = flags.DEFINE_integer("runtime_width", 0, "Width for the timing (0 = --width).")
_REPS = flags.DEFINE_integer("reps", 5, "Timed calls per mode.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/distill_memory.json", "Output JSON.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    steps = [int(s) for s in _STEPS.value]
    modes = list(_MODES.value)
    lr = jnp.float32(0.01)
    out = {
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.devices()[0].platform,
        "jax": jax.__version__,
        "model": f"ConvNet width {_WIDTH.value} depth {_DEPTH.value}, 32x32x3, 10 classes",
        "synthetic_images": _IPC.value * 10,
        "batch_syn": _BATCH.value,
        "dsa": _DSA.value,
        "memory": {},
    }
    model, x, y, start, target, key = _problem(_WIDTH.value, _DEPTH.value, _IPC.value)
    for mode in modes:
        out["memory"][mode] = {}
        for n in steps:
            t0 = time.perf_counter()
            compiled = (
                _grad_fn(model, n, _BATCH.value, mode, _DSA.value)
                .lower(x, lr, y, start, target, key)
                .compile()
            )
            mem = compiled.memory_analysis()
            out["memory"][mode][str(n)] = {
                "temp_bytes": int(mem.temp_size_in_bytes),
                "argument_bytes": int(mem.argument_size_in_bytes),
                "output_bytes": int(mem.output_size_in_bytes),
                "compile_s": time.perf_counter() - t0,
            }
            print(f"{mode:9s} N={n:3d} temp {mem.temp_size_in_bytes / 2**20:9.1f} MiB", flush=True)
    lo, hi = str(steps[0]), str(steps[-1])
    out["temp_growth"] = {
        m: out["memory"][m][hi]["temp_bytes"] / max(out["memory"][m][lo]["temp_bytes"], 1)
        for m in modes
    }
    if "unrolled" in modes and "tesla" in modes:
        out["unrolled_over_tesla_temp"] = {
            n: out["memory"]["unrolled"][str(n)]["temp_bytes"]
            / max(out["memory"]["tesla"][str(n)]["temp_bytes"], 1)
            for n in steps
        }
    if _RUNTIME_STEPS.value:
        width = _RUNTIME_WIDTH.value or _WIDTH.value
        model, x, y, start, target, key = _problem(width, _DEPTH.value, _IPC.value)
        timing = {"width": width, "num_steps": _RUNTIME_STEPS.value, "median_s": {}}
        for mode in modes:
            fn = _grad_fn(model, _RUNTIME_STEPS.value, _BATCH.value, mode, _DSA.value)
            jax.block_until_ready(fn(x, lr, y, start, target, key))
            times = []
            for _ in range(_REPS.value):
                t0 = time.perf_counter()
                jax.block_until_ready(fn(x, lr, y, start, target, key))
                times.append(time.perf_counter() - t0)
            timing["median_s"][mode] = statistics.median(times)
            print(
                f"{mode:9s} N={_RUNTIME_STEPS.value} {timing['median_s'][mode]:.4f} s", flush=True
            )
        if "unrolled" in modes:
            timing["ratio_to_unrolled"] = {
                m: timing["median_s"][m] / timing["median_s"]["unrolled"] for m in modes
            }
        out["runtime"] = timing
        if jax.devices()[0].platform == "gpu":
            out["runtime"]["note"] = "median wall time of the compiled gradient after a warm-up"
    path = pathlib.Path(_OUT.value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(
        json.dumps(
            {k: out[k] for k in ("temp_growth", "unrolled_over_tesla_temp") if k in out}, indent=1
        )
    )


if __name__ == "__main__":
    app.run(main)
