"""Speed of the Lipschitz bounds on an MNIST CNN (paper 9): per-point time and vmap speed-up.

    python -m benchmarks.lipschitz_speed [--points=100] [--eps=0.01] [--train_steps=300]
    python -m benchmarks.lipschitz_speed --model=official --points=3 --methods=ours

Trains the CNN briefly on MNIST-5k with the core train loop (so that the ReLU stability pattern
is that of a trained net), then times, for a batch of test points, each bound method (max over
the 10 outputs) vmapped over the batch in chunks, and our bound in a Python loop over points
with the jitted single-point function. Compile time is excluded (one warm-up call each).

Models: ``small`` is the experiment's CNN (conv8-conv16, 4x4 stride 2, fc100: 1,852 hidden
ReLUs); ``official`` is the paper's MNIST CNN (``mnist_cnn_4layer`` of the official code:
conv8-conv8, 4x4 stride 1, fc100: 8,972 hidden ReLUs).

Writes ``benchmarks/results/lipschitz_speed.json`` (or ``--out``).
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import platform
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from robustml_jax import lipschitz
from robustml_jax.core.results import atomic_write_text, to_jsonable

OUT = pathlib.Path(__file__).resolve().parent / "results" / "lipschitz_speed.json"
MODELS = {
    "small": (
        "MNIST-5k CNN conv8(4x4,s2)-conv16(4x4,s2)-fc100-fc10",
        lambda: lipschitz.cnn((8, 16), 100, 10),
    ),
    "official": (
        "MNIST-5k CNN conv8(4x4,s1)-conv8(4x4,s1)-fc100-fc10 (the paper's mnist_cnn_4layer)",
        lambda: lipschitz.cnn((8, 8), 100, 10, strides=(1, 1)),
    ),
}

_POINTS = flags.DEFINE_integer("points", 100, "MNIST-5k test points.")
_EPS = flags.DEFINE_float("eps", 0.01, "l_inf radius.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 300, "Adam steps (lr 1e-3, batch 64).")
_CHUNK = flags.DEFINE_integer("chunk", 25, "Points per vmapped chunk.")
_MODEL = flags.DEFINE_enum("model", "small", list(MODELS), "Which CNN.")
_METHODS = flags.DEFINE_list("methods", ["naive", "recurjac", "ours"], "Bound methods to time.")
_LOOP = flags.DEFINE_bool("loop", True, "Also time ours in a Python loop over points.")
_FORWARD = flags.DEFINE_enum("forward", "crown", ["crown", "alpha"], "Forward bounds of ours.")
_SPARSE = flags.DEFINE_string(
    "sparse",
    "",
    "Also time ours with sparse intermediate rows: a fraction, or 'auto' (per hidden layer, the "
    "largest share over the points of neurons that interval arithmetic leaves not inactive, so "
    "the result must equal the dense one).",
)
_OUT = flags.DEFINE_string("out", str(OUT), "Where to write the JSON.")


def _time(fn, *args):
    """(wall seconds, CPU seconds of every thread of this process, output) of one call after a
    warm-up call; the CPU time tells a loaded machine's wall time apart from the work done."""
    jax.block_until_ready(fn(*args))  # compile
    t0, c0 = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0, time.process_time() - c0, out


def main(argv):
    del argv
    shape = (28, 28, 1)
    description, make_model = MODELS[_MODEL.value]
    model = make_model()
    data = lipschitz.image_data("mnist_5k", "train", limit=4000)
    with tempfile.TemporaryDirectory() as tmp:
        params = lipschitz.train_model(
            model,
            jax.random.key(0),
            data,
            input_shape=shape,
            learning_rate=1e-3,
            batch_size=64,
            num_steps=_TRAIN_STEPS.value,
            workdir=tmp,
        )
    net = lipschitz.from_flax(model, params, shape)
    test = lipschitz.image_data("mnist_5k", "test", limit=_POINTS.value, flat=True)
    xs = jnp.asarray(test["image"])
    eps = _EPS.value

    def batched(method, sparse=None):
        one = functools.partial(
            lipschitz.local_lipschitz_bound,
            eps=eps,
            method=method,
            forward=_FORWARD.value if method == "ours" else "crown",
            sparse=sparse,
        )
        return jax.jit(
            lambda net, xs: jax.lax.map(lambda x: one(net, x), xs, batch_size=_CHUNK.value)
        )

    res = {}
    for method in _METHODS.value:
        t, cpu, vals = _time(batched(method), net, xs)
        res[method] = {
            "batch_s": t,
            "per_point_s": t / len(xs),
            "cpu_per_point_s": cpu / len(xs),
            "mean_bound": float(vals.mean()),
            "values": vals,
        }
    if _SPARSE.value and "ours" in res:
        if _SPARSE.value == "auto":
            ibp = jax.jit(
                jax.vmap(
                    lambda x: [
                        jnp.mean(u > 0)
                        for u in lipschitz.preactivation_bounds(net, x, eps, forward="interval")[1]
                    ]
                )
            )(xs)
            # One fraction per hidden layer (rounded up to 1e-3).
            frac = tuple(min(1.0, float(np.ceil(float(jnp.max(f)) * 1000) / 1000)) for f in ibp)
        else:
            frac = float(_SPARSE.value)
        t, cpu, vals = _time(batched("ours", frac), net, xs)
        res["ours_sparse"] = {
            "fraction": frac,
            "batch_s": t,
            "per_point_s": t / len(xs),
            "cpu_per_point_s": cpu / len(xs),
            "mean_bound": float(vals.mean()),
            "max_abs_diff_vs_dense": float(
                jnp.max(jnp.abs(vals - jnp.asarray(res["ours"]["values"])))
            ),
            "cpu_speedup_vs_dense": res["ours"]["cpu_per_point_s"] / (cpu / len(xs)),
        }
    for r in res.values():
        r.pop("values", None)
    out = {
        "model": description,
        "forward": _FORWARD.value,
        "hidden_neurons": sum(layer.out_size for layer in net[:-1]),
        "points": len(xs),
        "eps": eps,
        "train_steps": _TRAIN_STEPS.value,
        "vmap_chunk": _CHUNK.value,
        "results": res,
        "devices": f"{jax.device_count()}x {jax.devices()[0].platform}",
        "machine": platform.processor() or platform.machine(),
        "load_average_1min": os.getloadavg()[0],
    }
    if _LOOP.value and "ours" in res:
        single = jax.jit(functools.partial(lipschitz.local_lipschitz_bound, eps=eps))
        jax.block_until_ready(single(net, xs[0]))
        t0 = time.perf_counter()
        loop_vals = [float(single(net, x)) for x in xs]
        loop_s = time.perf_counter() - t0
        res["ours_python_loop"] = {"total_s": loop_s, "per_point_s": loop_s / len(xs)}
        np.testing.assert_allclose(np.mean(loop_vals), res["ours"]["mean_bound"], rtol=1e-4)
        out["vmap_speedup_vs_loop"] = loop_s / res["ours"]["batch_s"]
    if "ours" in res and "naive" in res:
        out["ours_over_naive_time"] = res["ours"]["per_point_s"] / res["naive"]["per_point_s"]
        out["ours_over_naive_bound"] = res["ours"]["mean_bound"] / res["naive"]["mean_bound"]
    text = json.dumps(to_jsonable(out), indent=2) + "\n"
    atomic_write_text(_OUT.value, text)
    print(text)


if __name__ == "__main__":
    app.run(main)
