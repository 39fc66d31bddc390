"""Speed of the Lipschitz bounds on the MNIST CNN (paper 9): per-point time and vmap speed-up.

    python -m benchmarks.lipschitz_speed [--points=100] [--eps=0.01] [--train_steps=300]

Trains the experiment's MNIST-5k CNN briefly with the core train loop (so that the ReLU
stability pattern is that of a trained net), then times, for a batch of test points:
the naive bound, our bound and RecurJac's (max over the 10 outputs) vmapped over the batch, and
our bound in a Python loop over points with the jitted single-point function. Compile time is
excluded (one warm-up call each). Writes ``benchmarks/results/lipschitz_speed.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import platform
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.lipschitz.configs.default import get_config
from experiments.lipschitz.train import _image_data, _train, cnn
from robustml_jax import lipschitz
from robustml_jax.core.results import atomic_write_text, to_jsonable

OUT = pathlib.Path(__file__).resolve().parent / "results" / "lipschitz_speed.json"


def _time(fn, *args, repeats=1):
    jax.block_until_ready(fn(*args))  # compile
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = jax.block_until_ready(fn(*args))
    return (time.perf_counter() - t0) / repeats, out


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--eps", type=float, default=0.01)
    parser.add_argument("--train_steps", type=int, default=300)
    parser.add_argument("--chunk", type=int, default=25, help="points per vmapped chunk")
    args = parser.parse_args(argv)

    config = get_config("small")
    config.train_steps = args.train_steps
    config.progress = False
    shape = (28, 28, 1)
    model = cnn(config.mnist.cnn_features, config.mnist.cnn_hidden, 10)
    data = _image_data("mnist_5k", "train", config.mnist.num_train, flat=False)
    with tempfile.TemporaryDirectory() as tmp:
        params = _train(
            model, data, shape, config=config, workdir=pathlib.Path(tmp), key=jax.random.key(0)
        )
    net = lipschitz.from_flax(model, params, shape)
    test = _image_data("mnist_5k", "test", args.points, flat=True)
    xs = jnp.asarray(test["image"])

    def batched(method):
        one = functools.partial(lipschitz.local_lipschitz_bound, eps=args.eps, method=method)
        return jax.jit(
            lambda net, xs: jax.lax.map(lambda x: one(net, x), xs, batch_size=args.chunk)
        )

    res = {}
    for method in ("naive", "recurjac", "ours"):
        t, vals = _time(batched(method), net, xs)
        res[method] = {"batch_s": t, "per_point_s": t / len(xs), "mean_bound": float(vals.mean())}
    single = jax.jit(functools.partial(lipschitz.local_lipschitz_bound, eps=args.eps))
    jax.block_until_ready(single(net, xs[0]))
    t0 = time.perf_counter()
    loop_vals = [float(single(net, x)) for x in xs]
    loop_s = time.perf_counter() - t0
    res["ours_python_loop"] = {"total_s": loop_s, "per_point_s": loop_s / len(xs)}
    np.testing.assert_allclose(np.mean(loop_vals), res["ours"]["mean_bound"], rtol=1e-4)
    out = {
        "model": "MNIST-5k CNN conv8(4x4,s2)-conv16(4x4,s2)-fc100-fc10",
        "points": len(xs),
        "eps": args.eps,
        "train_steps": args.train_steps,
        "vmap_chunk": args.chunk,
        "results": res,
        "ours_over_naive_time": res["ours"]["per_point_s"] / res["naive"]["per_point_s"],
        "vmap_speedup_vs_loop": loop_s / res["ours"]["batch_s"],
        "ours_over_naive_bound": res["ours"]["mean_bound"] / res["naive"]["mean_bound"],
        "devices": f"{jax.device_count()}x {jax.devices()[0].platform}",
        "machine": platform.processor() or platform.machine(),
    }
    atomic_write_text(OUT, json.dumps(to_jsonable(out), indent=2) + "\n")
    print(json.dumps(to_jsonable(out), indent=2))


if __name__ == "__main__":
    main()
