"""TESLA's approximate gradient vs the exact (``remat``) gradient at MTT's CIFAR-10 settings.

Issue 15's question, answered by measurement instead of extrapolation. Same experts, same
initial images, same sequence of (expert, start epoch, minibatch/DSA key) per iteration for both
modes (paired). For each gradient mode the distillation runs until it has spent ``--budget_s``
seconds of *process CPU time* in its compiled update steps (compile time excluded and reported
separately; CPU time rather than wall time because the 2-core machine is shared, so wall time
depends on other people's load; the wall time is recorded too). Along each run, every
``--probe_every`` iterations, both gradients are computed at the current images (outside the
budget) and their cosine, relative error and alpha-gradients recorded. At the end the distilled
set of each mode is evaluated by training ``--eval_models`` fresh ConvNets (the same seeds for
both modes and for the random-real baseline).

A second, cheaper table (``--probe_ipc10``) compares the two gradients at MTT's IPC-10 settings
(N = 30, all 100 images per step) at the real initial images for every expert and start epoch.

    nice -n 5 python -m benchmarks.distill_exact_vs_tesla \
      --out=benchmarks/results/distill_exact_vs_tesla.json --expert_dir=/tmp/distill_evt/experts

Defaults: CIFAR-10, ZCA, ConvNet width 16 (CPU-feasible), DSA, IPC 1 with TESLA's/MTT's CIFAR-10
IPC-1 settings (N = syn_steps 50, M = expert_epochs 2, max_start_epoch 5, lr_img 1000, lr_lr
1e-7, lr_teacher 0.01, all 10 images per step).
"""

from __future__ import annotations

import functools
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from jax.flatten_util import ravel_pytree

from robustml_jax import distill
from robustml_jax.core import metrics
from robustml_jax.core.results import atomic_write_text
from robustml_jax.models.convnet import ConvNet

_OUT = flags.DEFINE_string("out", "benchmarks/results/distill_exact_vs_tesla.json", "Output.")
_EXPERT_DIR = flags.DEFINE_string("expert_dir", "/tmp/distill_evt/experts", "Expert buffer.")
_WIDTH = flags.DEFINE_integer("width", 16, "ConvNet width.")
_EXPERTS = flags.DEFINE_integer("num_experts", 2, "Experts.")
_EXPERT_EPOCHS_TRAIN = flags.DEFINE_integer("expert_train_epochs", 6, "Epochs per expert.")
_IPC = flags.DEFINE_integer("ipc", 1, "Images per class.")
_N = flags.DEFINE_integer("syn_steps", 50, "Student steps N.")
_M = flags.DEFINE_integer("expert_epochs", 2, "Expert epochs matched M.")
_TMAX = flags.DEFINE_integer("max_start_epoch", 5, "Start epochs drawn from [0, T+).")
_BATCH = flags.DEFINE_integer("batch_syn", 0, "Images per student step (0 = all).")
_LR_IMG = flags.DEFINE_float("lr_img", 1000.0, "Image learning rate.")
_LR_LR = flags.DEFINE_float("lr_lr", 1e-7, "Learning rate of alpha.")
_LR_TEACHER = flags.DEFINE_float("lr_teacher", 0.01, "Initial alpha and expert lr.")
_BUDGET = flags.DEFINE_float("budget_s", 600.0, "CPU seconds of update steps per run.")
_PROBE_EVERY = flags.DEFINE_integer("probe_every", 10, "Gradient comparison every k steps.")
_MODES = flags.DEFINE_list("modes", ["tesla", "remat"], "Gradient modes to run.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Distillation seeds (iteration sampling).")
_EVAL_MODELS = flags.DEFINE_integer("eval_models", 5, "Evaluation networks (seeds).")
_EVAL_EPOCHS = flags.DEFINE_integer("eval_epochs", 500, "Evaluation epochs.")
_PROBE_IPC10 = flags.DEFINE_bool("probe_ipc10", True, "Also the IPC-10 (N=30) cosine table.")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", 0, "Training subset (0 = all; tests).")


def _cos(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _rel(a, b):  # ||a - b|| / ||b||, b exact
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    out_path = pathlib.Path(_OUT.value)
    out = json.loads(out_path.read_text()) if out_path.exists() else {}
    out.setdefault("runs", {})
    root = jax.random.key(0)
    k_data, k_zca, k_model, k_expert, k_init, k_eval = jax.random.split(root, 6)

    raw_train = distill.load_split("cifar10", "train")
    if _TRAIN_EXAMPLES.value:
        keep = np.random.default_rng(0).permutation(len(raw_train["label"]))
        raw_train = {k: v[np.sort(keep[: _TRAIN_EXAMPLES.value])] for k, v in raw_train.items()}
    raw_test = distill.load_split("cifar10", "test")
    pre = distill.fit_preprocessor(raw_train["image"], zca=True, zca_fit_examples=10000, key=k_zca)
    x_train, y_train = pre(raw_train["image"]), raw_train["label"]
    x_test, y_test = pre(raw_test["image"]), raw_test["label"]
    model = ConvNet(num_classes=10, width=_WIDTH.value, depth=3)

    def init_fn(key):
        return model.init(key, jnp.zeros((1, 32, 32, 3)))["params"]

    def apply_fn(params, x):
        return model.apply({"params": params}, x)

    augment = distill.dsa_augment
    t0 = time.time()
    experts = distill.train_experts(
        k_expert,
        {"image": x_train, "label": y_train},
        directory=_EXPERT_DIR.value,
        init_fn=init_fn,
        apply_fn=apply_fn,
        num_experts=_EXPERTS.value,
        num_epochs=_EXPERT_EPOCHS_TRAIN.value,
        lr=_LR_TEACHER.value,
        batch_size=256,
        num_classes=10,
        augment_fn=augment,
        eval_fn=lambda p: {
            "test_accuracy": float(
                metrics.stacked_accuracy(
                    jax.tree.map(lambda a: a[None], p), x_test, y_test, apply_fn=apply_fn
                )[0]
            )
        },
        progress=False,
    )
    del x_train  # only the subset is needed from here on
    out["experts"] = {
        "num": _EXPERTS.value,
        "epochs": _EXPERT_EPOCHS_TRAIN.value,
        "test_accuracy": [m["test_accuracy"] for m in experts],
        "seconds_this_call": time.time() - t0,
    }
    buffer = distill.load_trajectories(
        init_fn(k_model),
        directory=_EXPERT_DIR.value,
        num_experts=_EXPERTS.value,
        epochs=_EXPERT_EPOCHS_TRAIN.value,
    )
    _, unravel = ravel_pytree(init_fn(k_model))
    sub10 = distill.real_subset(k_init, y_train, per_class=10, num_classes=10)
    x_all, y_sub = pre(raw_train["image"][sub10]), y_train[sub10]

    def grad_fn(mode, n, batch, y):
        def loss(params, start, target, key):
            return distill.trajectory_matching_loss(
                params["x"], y, params["lr"], key, unravel(start), unravel(target),
                apply_fn=apply_fn, num_steps=n, batch_size=batch, gradient=mode,
                augment_fn=augment,
            )  # fmt: skip

        return jax.jit(jax.value_and_grad(loss))

    def compare(fns, params, start, target, key):
        (l_t, g_t), (l_e, g_e) = (fns[m](params, start, target, key) for m in ("tesla", "remat"))
        return {
            "loss": float(l_e),
            "loss_tesla": float(l_t),
            "cosine_x": _cos(g_t["x"], g_e["x"]),
            "rel_err_x": _rel(g_t["x"], g_e["x"]),
            "norm_ratio_x": float(np.linalg.norm(g_t["x"]) / np.linalg.norm(g_e["x"])),
            "grad_lr_exact": float(g_e["lr"]),
            "grad_lr_tesla": float(g_t["lr"]),
        }

    # ---- IPC 10 probe: MTT's CIFAR-10 IPC-10 settings (N = 30, M = 2, 100 images per step)
    if _PROBE_IPC10.value and "ipc10_probe" not in out:
        y10 = jax.nn.one_hot(y_sub, 10)
        fns10 = {m: grad_fn(m, 30, 100, y10) for m in ("tesla", "remat")}
        params10 = {"x": jnp.asarray(x_all), "lr": jnp.float32(_LR_TEACHER.value)}
        rows = []
        for k in range(_EXPERTS.value):
            for t in range(0, _EXPERT_EPOCHS_TRAIN.value - _M.value + 1, 2):
                row = compare(
                    fns10, params10, buffer[k, t], buffer[k, t + _M.value], jax.random.key(100 + t)
                )
                rows.append({"expert": k, "start_epoch": t, **row})
                print("ipc10", json.dumps(rows[-1]), flush=True)
        out["ipc10_probe"] = {"syn_steps": 30, "batch_syn": 100, "syn_lr": 0.01, "rows": rows}
        atomic_write_text(out_path, json.dumps(out, indent=1) + "\n")

    # ---- IPC 1: equal-CPU-time distillation with each gradient
    ipc = _IPC.value
    idx = distill.real_subset(k_init, y_train, per_class=ipc, num_classes=10)
    x0 = jnp.asarray(pre(raw_train["image"][idx]))
    y = jax.nn.one_hot(y_train[idx], 10)
    batch = _BATCH.value or len(idx)
    fns = {m: grad_fn(m, _N.value, batch, y) for m in ("tesla", "remat")}
    rates = {"x": _LR_IMG.value, "lr": _LR_LR.value}
    tx = optax.multi_transform(
        {k: optax.sgd(r, momentum=0.5) for k, r in rates.items()}, {k: k for k in rates}
    )
    fit_nets = jax.jit(
        functools.partial(
            distill.train_networks, init_fn=init_fn, apply_fn=apply_fn,
            num_epochs=_EVAL_EPOCHS.value, batch_size=256, augment_fn=augment,
        )
    )  # fmt: skip
    eval_keys = jax.random.split(k_eval, _EVAL_MODELS.value)

    def evaluate(x, lr):
        acc = metrics.stacked_accuracy(
            fit_nets(eval_keys, x, y, lr), x_test, y_test, apply_fn=apply_fn
        )
        return [float(a) for a in np.asarray(acc)]

    if "random_real" not in out:
        out["random_real"] = evaluate(x0, jnp.float32(_LR_TEACHER.value))
        atomic_write_text(out_path, json.dumps(out, indent=1) + "\n")
    out["settings"] = {
        "dataset": "cifar10 (ZCA, DSA)", "width": _WIDTH.value, "ipc": ipc,
        "syn_steps": _N.value, "expert_epochs": _M.value, "max_start_epoch": _TMAX.value,
        "batch_syn": batch, "lr_img": _LR_IMG.value, "lr_lr": _LR_LR.value,
        "lr_teacher": _LR_TEACHER.value, "budget_cpu_s": _BUDGET.value,
        "eval_models": _EVAL_MODELS.value, "eval_epochs": _EVAL_EPOCHS.value,
        "device": str(jax.devices()[0].device_kind),
    }  # fmt: skip

    for seed in [int(s) for s in _SEEDS.value]:
        k_sample = jax.random.fold_in(jax.random.key(1000), seed)
        for mode in _MODES.value:
            name = f"{mode}_seed{seed}"
            if name in out["runs"]:
                continue

            def update(params, opt_state, start, target, key, mode=mode):
                loss, g = fns[mode](params, start, target, key)
                upd, opt_state = tx.update(g, opt_state, params)
                return optax.apply_updates(params, upd), opt_state, loss

            params = {"x": x0, "lr": jnp.float32(_LR_TEACHER.value)}
            opt_state = tx.init(params)
            step = jax.jit(update)

            def draw(i, k_sample=k_sample):
                kk, kt, km = jax.random.split(jax.random.fold_in(k_sample, i), 3)
                k = int(jax.random.randint(kk, (), 0, _EXPERTS.value))
                t = int(jax.random.randint(kt, (), 0, _TMAX.value))
                return jnp.asarray(buffer[k, t]), jnp.asarray(buffer[k, t + _M.value]), km

            c0 = time.perf_counter()
            compiled = step.lower(params, opt_state, *draw(0)).compile()
            compile_s = time.perf_counter() - c0
            for m in ("tesla", "remat"):  # compile the probes outside the budget
                fns[m].lower(params, *draw(0)).compile()
            cpu = wall = 0.0
            losses, probes, i = [], [], 0
            while cpu < _BUDGET.value:
                start, target, key = draw(i)
                if i % _PROBE_EVERY.value == 0:
                    probes.append({"iteration": i, **compare(fns, params, start, target, key)})
                c, w = time.process_time(), time.perf_counter()
                params, opt_state, loss = compiled(params, opt_state, start, target, key)
                loss = float(loss)  # blocks
                cpu += time.process_time() - c
                wall += time.perf_counter() - w
                losses.append(loss)
                i += 1
                if i % 20 == 0:
                    print(
                        f"{name} it {i} cpu {cpu:.0f}s loss {np.mean(losses[-20:]):.4f}", flush=True
                    )
            acc = evaluate(params["x"], params["lr"])
            out["runs"][name] = {
                "mode": mode,
                "seed": seed,
                "iterations": i,
                "cpu_s": cpu,
                "wall_s": wall,
                "compile_s": compile_s,
                "cpu_s_per_iteration": cpu / i,
                "syn_lr": float(params["lr"]),
                "loss": losses,
                "probes": probes,
                "eval_acc": acc,
                "eval_acc_mean": float(np.mean(acc)),
                "eval_acc_std": float(np.std(acc)),
            }
            print(
                name,
                {k: v for k, v in out["runs"][name].items() if k not in ("loss", "probes")},
                flush=True,
            )
            atomic_write_text(out_path, json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    app.run(main)
