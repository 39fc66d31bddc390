"""How close is TESLA's gradient to the exact trajectory-matching gradient?

On real images (MNIST-5k, 10 per class) and a real expert segment (a ConvNet trained with SGD
for two epochs; start = epoch 1, target = epoch 2), compares ``gradient="tesla"`` with the exact
``"unrolled"`` gradient for N student steps and step size alpha: the cosine and the relative
error ||g_tesla - g_exact|| / ||g_exact|| of the image gradient, and the ratio of the two
alpha-gradients.

    python -m benchmarks.distill_gradient_error --out=benchmarks/results/distill_gradient_error.json
"""

from __future__ import annotations

import json
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax.flatten_util import ravel_pytree

from robustml_jax.distill import (
    fit_preprocessor,
    load_split,
    load_trajectories,
    real_subset,
    train_experts,
    trajectory_matching_loss,
)
from robustml_jax.models.convnet import ConvNet

_WIDTH = flags.DEFINE_integer("width", 32, "ConvNet width.")
_STEPS = flags.DEFINE_list("steps", ["1", "2", "5", "10", "20", "40"], "Student steps N.")
_LRS = flags.DEFINE_list("lrs", ["0.001", "0.01", "0.03", "0.1"], "Student step sizes alpha.")
_IPC = flags.DEFINE_integer("ipc", 10, "Real images per class in the synthetic set.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/distill_gradient_error.json", "Output JSON.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    raw = load_split("mnist_5k", "train")
    pre = fit_preprocessor(raw["image"], zca=False)
    x_all, y_all = pre(raw["image"]), raw["label"]
    model = ConvNet(num_classes=10, width=_WIDTH.value, depth=3)

    def init_fn(k):
        return model.init(k, x_all[:1])["params"]

    def apply_fn(params, x):
        return model.apply({"params": params}, x)

    key = jax.random.key(0)
    with tempfile.TemporaryDirectory() as d:
        train_experts(
            key,
            {"image": x_all, "label": y_all},
            directory=d,
            init_fn=init_fn,
            apply_fn=apply_fn,
            num_experts=1,
            num_epochs=2,
            lr=0.01,
            batch_size=256,
            num_classes=10,
            progress=False,
        )
        buf = load_trajectories(init_fn(key), directory=d, num_experts=1, epochs=2)
    _, unravel = ravel_pytree(init_fn(key))
    start, target = unravel(buf[0, 1]), unravel(buf[0, 2])
    idx = real_subset(jax.random.key(1), y_all, per_class=_IPC.value, num_classes=10)
    x, y = jnp.asarray(x_all[idx]), jax.nn.one_hot(y_all[idx], 10)
    out = {
        "device": str(jax.devices()[0].device_kind),
        "width": _WIDTH.value,
        "ipc": _IPC.value,
        "data": "mnist_5k, expert epoch 1 -> 2",
        "rows": [],
    }
    for n in [int(s) for s in _STEPS.value]:
        fns = {}
        for mode in ("unrolled", "tesla"):

            def loss(x, lr, mode=mode, n=n):
                return trajectory_matching_loss(
                    x,
                    y,
                    lr,
                    jax.random.key(2),
                    start,
                    target,
                    apply_fn=apply_fn,
                    num_steps=n,
                    batch_size=len(idx),
                    gradient=mode,
                )

            fns[mode] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
        for lr in [float(s) for s in _LRS.value]:
            (v, (gx_u, gl_u)) = fns["unrolled"](x, jnp.float32(lr))
            (_, (gx_t, gl_t)) = fns["tesla"](x, jnp.float32(lr))
            gx_u, gx_t = np.asarray(gx_u, np.float64).ravel(), np.asarray(gx_t, np.float64).ravel()
            row = {
                "num_steps": n,
                "syn_lr": lr,
                "loss": float(v),
                "cosine_x": float(gx_u @ gx_t / (np.linalg.norm(gx_u) * np.linalg.norm(gx_t))),
                "rel_err_x": float(np.linalg.norm(gx_t - gx_u) / np.linalg.norm(gx_u)),
                "norm_ratio_x": float(np.linalg.norm(gx_t) / np.linalg.norm(gx_u)),
                "grad_lr_exact": float(gl_u),
                "grad_lr_tesla": float(gl_t),
            }
            out["rows"].append(row)
            print(json.dumps(row), flush=True)
            path = pathlib.Path(_OUT.value)  # written after every row: partial runs count
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    app.run(main)
