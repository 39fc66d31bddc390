"""Local Lipschitz bounds: robustml_jax.lipschitz vs the official auto_LiRPA code, side by side.

Same weights, same points, same region (the l_inf ball intersected with the data range [0, 1],
as the official code does), same CPU, one point at a time: the bound on
``max_x ||d f_i / dx||_1`` maximised over the 10 classes, and the time per point.

auto_LiRPA (the paper's implementation: ``JacobianOP`` + ``GradNorm(norm=1)`` and
``compute_jacobian_bounds``, one call per class as in its ``examples/vision/jacobian.py``) runs
in its own virtual environment with CPU torch, created here on first use from the source tree
that the ``fetch`` tool brings (``github:Verified-Intelligence/auto_LiRPA``; not the PyPI
release)::

    python -m benchmarks.lipschitz_vs_autolirpa --model=mnist_mlp --points=10
    python -m benchmarks.lipschitz_vs_autolirpa --model=official_cnn --points=2

auto_LiRPA columns: ``crown`` (``optimize=False``) and ``alpha`` (``optimize=True``, its default:
CROWN-Optimized intermediate bounds, 20 iterations, lr 0.5, decay 0.98). Ours: ``crown`` and
``alpha`` forward bounds, and ours + BaB (auto_LiRPA itself has no Lipschitz BaB; the paper's
BaB lives in the alpha-beta-CROWN verifier, not in this repository). Times exclude compilation
(ours: one warm-up call; auto_LiRPA: the BoundedModule is built once, before timing) and are
measured as wall and process CPU time.

Writes ``benchmarks/results/lipschitz_vs_autolirpa_<model>.json``. If auto_LiRPA cannot be
installed or run, the JSON says why and holds our numbers only.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import _sidevenv
from robustml_jax import lipschitz
from robustml_jax.core.results import atomic_write_text, to_jsonable

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
MODELS = {
    "tiny": (
        "random-init MLP 4-24-16-3 on N(0, 1) points (exact values by enumeration)",
        lambda: lipschitz.mlp((24, 16), 3),
    ),
    "mnist_mlp": ("MNIST-5k MLP 784-20-20-10", lambda: lipschitz.mlp((20, 20), 10)),
    "mnist_mlp_wide": ("MNIST-5k MLP 784-64-64-10", lambda: lipschitz.mlp((64, 64), 10)),
    "official_cnn": (
        "MNIST-5k CNN conv8(4x4,s1)-conv8(4x4,s1)-fc100-fc10 (the paper's mnist_cnn_4layer)",
        lambda: lipschitz.cnn((8, 8), 100, 10, strides=(1, 1)),
    ),
}

_MODEL = flags.DEFINE_enum("model", "mnist_mlp", list(MODELS), "Which network.")
_POINTS = flags.DEFINE_integer("points", 10, "MNIST-5k test points.")
_EPS = flags.DEFINE_float("eps", 0.01, "l_inf radius (images in [0, 1]).")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 300, "Adam steps (lr 1e-3, batch 64).")
_BAB_STEPS = flags.DEFINE_integer("bab_steps", 20, "Our BaB iterations (0: skip BaB).")
_BAB_BATCH = flags.DEFINE_integer("bab_batch", 8, "Our BaB domains split per iteration.")
_LIRPA_ALPHA = flags.DEFINE_bool(
    "lirpa_alpha", True, "Also run auto_LiRPA's alpha (optimised) bounds (about 10x its CROWN)."
)
_VENV = flags.DEFINE_string("venv", "/work/.sidevenv-lirpa", "Virtual env with auto_LiRPA.")
_SOURCE = flags.DEFINE_string(
    "source",
    "/work/.mirror/Verified-Intelligence+auto_LiRPA/repo",
    "Git directory of the auto_LiRPA source (from the fetch tool).",
)
_OUT = flags.DEFINE_string("out", "", "Output JSON ('' = results/lipschitz_vs_autolirpa_<m>).")

# The auto_LiRPA side: rebuilds the same network in torch from an .npz, then times
# compute_jacobian_bounds per point and class.
_LIRPA_SCRIPT = r"""
import json, sys, time
import numpy as np, torch, torch.nn as nn
from auto_LiRPA import BoundedModule, BoundedTensor
from auto_LiRPA.perturbations import PerturbationLpNorm
from auto_LiRPA.jacobian import JacobianOP, GradNorm

torch.set_default_dtype(torch.float32)
d = np.load(sys.argv[1])
eps = float(sys.argv[3])
lo_range, hi_range = float(sys.argv[4]), float(sys.argv[5])
layers = []
for i in range(int(d["num_items"])):
    kind = str(d[f"kind_{i}"])
    if kind == "dense":
        w, b = d[f"w_{i}"], d[f"b_{i}"]
        lin = nn.Linear(w.shape[0], w.shape[1])
        lin.weight.data = torch.tensor(w.T.copy()); lin.bias.data = torch.tensor(b)
        layers.append(lin)
    elif kind == "conv":
        w, b, s = d[f"w_{i}"], d[f"b_{i}"], int(d[f"s_{i}"])
        conv = nn.Conv2d(w.shape[2], w.shape[3], w.shape[:2], stride=s)
        conv.weight.data = torch.tensor(w.transpose(3, 2, 0, 1).copy())
        conv.bias.data = torch.tensor(b)
        layers.append(conv)
    elif kind == "relu":
        layers.append(nn.ReLU())
    elif kind == "flatten":
        layers.append(nn.Flatten())
model_ori = nn.Sequential(*layers).eval()
xs = torch.tensor(d["x_nchw"])
n_out = int(d["num_out"])

class LocalLipschitzWrapper(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.grad_norm = GradNorm(norm=1)
    def forward(self, x, mask):
        y = self.model(x).matmul(mask)
        return self.grad_norm(JacobianOP.apply(y, x))

mask = torch.zeros(n_out, 1)
mask[0, 0] = 1
t0 = time.perf_counter()
model = BoundedModule(LocalLipschitzWrapper(model_ori), (BoundedTensor(xs[:1]), mask),
                      device="cpu")
build_s = time.perf_counter() - t0
# Sanity: the graph computes the true gradient l1 norm at the centre.
x0 = xs[:1].clone().requires_grad_(True)
g = torch.autograd.grad(model_ori(x0)[0, 0], x0)[0].abs().sum()
check = float(model(xs[:1], mask).view(-1)[0]), float(g)
out = {"build_s": build_s, "centre_check": check, "torch": torch.__version__,
       "threads": torch.get_num_threads()}
for optimize in (False, True)[: int(sys.argv[6])]:
    vals, wall, cpu = [], [], []
    for p in range(xs.shape[0]):
        x0 = xs[p:p + 1]
        ptb = PerturbationLpNorm(norm=np.inf, eps=eps, x_L=(x0 - eps).clamp(min=lo_range),
                                 x_U=(x0 + eps).clamp(max=hi_range))
        x = BoundedTensor(x0, ptb)
        t0, c0 = time.perf_counter(), time.process_time()
        best = -np.inf
        for i in range(n_out):
            mask.zero_()
            mask[i, 0] = 1
            ub = model.compute_jacobian_bounds((x, mask), optimize=optimize, bound_lower=False)[1]
            best = max(best, float(ub.max()))
        wall.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
        vals.append(best)
    out["alpha" if optimize else "crown"] = {"bounds": vals, "wall_s": wall, "cpu_s": cpu}
json.dump(out, open(sys.argv[2], "w"))
"""


def ensure_lirpa_venv(venv: pathlib.Path, source: pathlib.Path) -> tuple[pathlib.Path | None, str]:
    """A venv with CPU torch and auto_LiRPA installed from ``source`` (``--no-deps``)."""
    check = "import torch, auto_LiRPA"
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", check], capture_output=True).returncode == 0:
        return py, "existing venv"
    if not source.exists():
        return None, f"no auto_LiRPA source at {source} (bring it with the fetch tool)"
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            [
                "git",
                f"--git-dir={source}",
                "archive",
                "HEAD",
                "auto_LiRPA",
                "setup.py",
                "README.md",
            ],
            capture_output=True,
        )
        if archive.returncode != 0:
            return None, f"git archive failed: {archive.stderr.decode()[-300:]}"
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        # torch first (the configured index); auto_LiRPA pins torch < 2.9 in setup.py, so it
        # goes in with --no-deps (its Jacobian code runs on newer torch).
        return _sidevenv.ensure_venv(
            venv,
            check=check,
            plans=[
                [
                    ["torch", "numpy"],
                    ["--no-deps", tmp],
                    ["packaging", "appdirs", "pyyaml", "tqdm"],
                ]
            ],
            base_python=sys.executable,
        )


def _export(model, params, shape, xs_flat) -> dict:
    """The network as plain arrays for the torch side (NCHW inputs, CHW flatten order)."""
    p = params.get("params", params)
    arrays, i, cur = {}, 0, tuple(shape)
    for k, item in enumerate(model.layers):
        name = f"layers_{k}"
        if item is jax.nn.relu or getattr(item, "__name__", "") == "relu":
            arrays[f"kind_{i}"] = "relu"
        elif isinstance(item, lipschitz.Flatten):
            arrays[f"kind_{i}"] = "flatten"
        elif type(item).__name__ == "Conv":
            w = np.asarray(p[name]["kernel"])
            arrays.update({f"kind_{i}": "conv", f"w_{i}": w, f"b_{i}": np.asarray(p[name]["bias"])})
            arrays[f"s_{i}"] = int(item.strides[0] if item.strides else 1)
            if str(item.padding).upper() != "VALID":
                raise ValueError("only VALID convolutions are exported")
            s = arrays[f"s_{i}"]
            cur = ((cur[0] - w.shape[0]) // s + 1, (cur[1] - w.shape[1]) // s + 1, w.shape[3])
        elif type(item).__name__ == "Dense":
            w = np.asarray(p[name]["kernel"])
            if len(cur) == 3:  # first Dense after a flatten: rows from HWC to torch's CHW order
                h, wd, ch = cur
                w = w.reshape(h, wd, ch, -1).transpose(2, 0, 1, 3).reshape(h * wd * ch, -1)
                cur = (w.shape[1],)
            arrays.update(
                {f"kind_{i}": "dense", f"w_{i}": w, f"b_{i}": np.asarray(p[name]["bias"])}
            )
            cur = (w.shape[1],)
        else:
            raise ValueError(f"cannot export {type(item).__name__}")
        i += 1
    arrays["num_items"] = i
    x = np.asarray(xs_flat).reshape((-1, *shape))
    if len(shape) == 3:
        x = x.transpose(0, 3, 1, 2)
    arrays["x_nchw"] = np.ascontiguousarray(x, np.float32)
    return arrays


def _ours(net, xs, eps, data_range, **kw):
    """Per-point bounds and times (jitted single-point function, one warm-up call)."""
    lo, hi = data_range
    fn = jax.jit(
        functools.partial(lipschitz.local_lipschitz_bound, eps=eps, x_min=lo, x_max=hi, **kw)
    )
    t0 = time.perf_counter()
    jax.block_until_ready(fn(net, xs[0]))
    compile_s = time.perf_counter() - t0
    vals, wall, cpu = [], [], []
    for x in xs:
        t0, c0 = time.perf_counter(), time.process_time()
        vals.append(float(jax.block_until_ready(fn(net, x))))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"bounds": vals, "wall_s": wall, "cpu_s": cpu, "first_call_s": compile_s}


def _summary(r):
    return {
        "mean_bound": float(np.mean(r["bounds"])),
        "wall_per_point_s": float(np.mean(r["wall_s"])),
        "cpu_per_point_s": float(np.mean(r["cpu_s"])),
    }


def main(argv):
    del argv
    description, make_model = MODELS[_MODEL.value]
    model = make_model()
    eps = _EPS.value
    if _MODEL.value == "tiny":
        shape, data_range = (4,), (None, None)
        params = model.init(jax.random.key(0), jnp.zeros((1, 4)))
        xs = jax.random.normal(jax.random.key(1), (_POINTS.value, 4))
    else:
        flat = _MODEL.value.startswith("mnist_mlp")
        shape, data_range = ((784,) if flat else (28, 28, 1)), (0.0, 1.0)
        data = lipschitz.image_data("mnist_5k", "train", limit=4000, flat=flat)
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
        test = lipschitz.image_data("mnist_5k", "test", limit=_POINTS.value, flat=True)
        xs = jnp.asarray(test["image"])
    net = lipschitz.from_flax(model, params, shape)
    out = {
        "model": description,
        "hidden_neurons": sum(layer.out_size for layer in net[:-1]),
        "points": len(xs),
        "eps": eps,
        "region": "the ball" if data_range[0] is None else "[max(x0 - eps, 0), min(x0 + eps, 1)]",
        "train_steps": _TRAIN_STEPS.value,
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1min_start": os.getloadavg()[0],
    }
    ours = {
        "crown": _ours(net, xs, eps, data_range),
        "alpha": _ours(net, xs, eps, data_range, forward="alpha"),
    }
    if _BAB_STEPS.value:
        ours["alpha_bab"] = _ours(
            net,
            xs,
            eps,
            data_range,
            forward="alpha",
            bab_steps=_BAB_STEPS.value,
            bab_batch=_BAB_BATCH.value,
        )
    if _MODEL.value == "tiny":
        dense = [(layer.weights[0], layer.bias) for layer in net]
        out["exact"] = []
        for x in xs:
            try:
                res = lipschitz.exact_lipschitz(
                    dense, np.asarray(x, np.float64), eps, time_limit_s=600
                )
                out["exact"].append(res.value)
            except RuntimeError as e:  # too many regions for the time limit
                out["exact"].append(f"gave up: {e}")
    py, note = ensure_lirpa_venv(pathlib.Path(_VENV.value), pathlib.Path(_SOURCE.value))
    lirpa = None
    if py is not None:
        with tempfile.TemporaryDirectory() as tmp:
            np.savez(
                f"{tmp}/net.npz",
                **_export(model, params, shape, np.asarray(xs)),
                num_out=net[-1].out_size,
            )
            (pathlib.Path(tmp) / "side.py").write_text(_LIRPA_SCRIPT)
            r = subprocess.run(
                [str(py), f"{tmp}/side.py", f"{tmp}/net.npz", f"{tmp}/out.json", str(eps)]
                + [str(-1e9 if data_range[0] is None else data_range[0])]
                + [str(1e9 if data_range[1] is None else data_range[1])]
                + [str(2 if _LIRPA_ALPHA.value else 1)],
                capture_output=True,
                text=True,
            )
            if r.returncode == 0:
                lirpa = json.loads((pathlib.Path(tmp) / "out.json").read_text())
            else:
                note = f"auto_LiRPA run failed: {r.stderr[-1500:]}"
    out["autolirpa_status"] = note
    out["ours"] = {k: {**_summary(v), "per_point": v} for k, v in ours.items()}
    if lirpa is not None:
        out["autolirpa"] = {
            k: ({**_summary(v), "per_point": v} if isinstance(v, dict) else v)
            for k, v in lirpa.items()
        }
        for k in [k for k in ("crown", "alpha") if k in lirpa]:
            a, o = np.array(lirpa[k]["bounds"]), np.array(ours[k]["bounds"])
            out[f"{k}_ours_over_autolirpa_bound"] = {
                "mean": float(np.mean(o / a)),
                "max": float(np.max(o / a)),
            }
            out[f"{k}_autolirpa_over_ours_cpu_time"] = float(
                np.mean(lirpa[k]["cpu_s"]) / np.mean(ours[k]["cpu_s"])
            )
            out[f"{k}_autolirpa_over_ours_wall_time"] = float(
                np.mean(lirpa[k]["wall_s"]) / np.mean(ours[k]["wall_s"])
            )
    out["load_average_1min_end"] = os.getloadavg()[0]
    text = json.dumps(to_jsonable(out), indent=2) + "\n"
    path = _OUT.value or str(RESULTS / f"lipschitz_vs_autolirpa_{_MODEL.value}.json")
    atomic_write_text(path, text)
    print(text)


if __name__ == "__main__":
    app.run(main)
