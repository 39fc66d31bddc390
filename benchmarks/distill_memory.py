"""Memory and runtime of one distillation gradient: ``unrolled`` vs ``tesla`` vs ``remat``.

For a ConvNet at CIFAR size (32x32x3, 10 classes) and N student steps, compiles
``jax.grad`` of :func:`robustml_jax.distill.trajectory_matching_loss` w.r.t. (images, syn_lr)
and reads XLA's compiled memory analysis (``temp_size_in_bytes``: the peak of the buffers the
computation allocates besides its arguments and outputs). With ``--runtime_steps`` it also
times the compiled gradient (median of ``--reps`` calls after a warm-up) and, on a GPU, reads
the device's measured peak memory. Nothing here needs data: images and parameters are random.

    python -m benchmarks.distill_memory --out=benchmarks/results/distill_memory.json

Targets (issue 4): ``tesla`` temp memory grows <= 1.2x from N=10 to N=80; ``unrolled`` grows
about linearly; ``tesla`` runtime within 1.15x of ``unrolled`` at N=20.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp

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
            start,
            target,
            key,
            apply_fn=lambda p, v: model.apply({"params": p}, v),
            num_steps=num_steps,
            batch_size=batch,
            gradient=mode,
            augment_fn=dsa_augment if dsa else None,
        )

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--batch", type=int, default=100, help="synthetic images per student step")
    p.add_argument("--steps", default="10,20,40,80")
    p.add_argument("--modes", default="unrolled,tesla,remat")
    p.add_argument("--dsa", action="store_true", help="DSA augmentation inside the student")
    p.add_argument("--runtime_steps", type=int, default=20, help="0 = skip the timing")
    p.add_argument("--runtime_width", type=int, default=0, help="width for timing (0 = --width)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/distill_memory.json")
    args = p.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",")]
    modes = args.modes.split(",")
    lr = jnp.float32(0.01)
    out = {
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.devices()[0].platform,
        "jax": jax.__version__,
        "model": f"ConvNet width {args.width} depth {args.depth}, 32x32x3, 10 classes",
        "synthetic_images": args.ipc * 10,
        "batch_syn": args.batch,
        "dsa": args.dsa,
        "memory": {},
    }
    model, x, y, start, target, key = _problem(args.width, args.depth, args.ipc)
    for mode in modes:
        out["memory"][mode] = {}
        for n in steps:
            t0 = time.perf_counter()
            compiled = (
                _grad_fn(model, n, args.batch, mode, args.dsa)
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
    if args.runtime_steps:
        width = args.runtime_width or args.width
        model, x, y, start, target, key = _problem(width, args.depth, args.ipc)
        timing = {"width": width, "num_steps": args.runtime_steps, "median_s": {}}
        for mode in modes:
            fn = _grad_fn(model, args.runtime_steps, args.batch, mode, args.dsa)
            jax.block_until_ready(fn(x, lr, y, start, target, key))
            times = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                jax.block_until_ready(fn(x, lr, y, start, target, key))
                times.append(time.perf_counter() - t0)
            timing["median_s"][mode] = statistics.median(times)
            print(f"{mode:9s} N={args.runtime_steps} {timing['median_s'][mode]:.4f} s", flush=True)
        if "unrolled" in modes:
            timing["ratio_to_unrolled"] = {
                m: timing["median_s"][m] / timing["median_s"]["unrolled"] for m in modes
            }
        out["runtime"] = timing
        if jax.devices()[0].platform == "gpu":
            out["runtime"]["note"] = "median wall time of the compiled gradient after a warm-up"
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(
        json.dumps(
            {k: out[k] for k in ("temp_growth", "unrolled_over_tesla_temp") if k in out}, indent=1
        )
    )


if __name__ == "__main__":
    main()
