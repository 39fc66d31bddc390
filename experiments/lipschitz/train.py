"""Library side of the paper-9 experiment: train the paper's model families, then bound them.

Tasks (each in ``<workdir>/<task>/``, trained with the core train loop and evaluated point by
point with an orbax checkpoint after every point, so a killed run resumes without lost work):

- ``synthetic_w<W>_d<D>``: MLPs 16 -> W x D -> 10 on 16-d clustered synthetic data (the paper's
  LipMIP-style data; synthetic by design), width and depth sweeps; exact values by enumeration
  for the small ones.
- ``mnist_mlp`` (784-20-20-10) and ``mnist_cnn`` on MNIST-5k; ``cifar_cnn`` on a CIFAR-10 subset.
- ``monotone``: an MLP regressor on sklearn's diabetes data; per-feature derivative bounds
  certify local monotonicity (paper Sec. 5.4 uses UCI Adult, which is not available offline).

Methods per point: naive, interval, recurjac, ours, ours + BaB, sampled lower bound, exact.
"""

from __future__ import annotations

import functools
import math
import pathlib
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from robustml_jax import lipschitz
from robustml_jax.core import checkpoint, datasets, train
from robustml_jax.core.distributed import Runtime
from robustml_jax.core.results import atomic_write_text, save_figure

BOUND_METHODS = ("naive", "interval", "recurjac", "ours", "ours_bab")
ALL_METHODS = (*BOUND_METHODS, "sampled", "exact")


# ----------------------------------------------------------------------------- models and data


def mlp(hidden, num_out: int) -> nn.Sequential:
    items = []
    for w in hidden:
        items += [nn.Dense(w), nn.relu]
    return nn.Sequential([*items, nn.Dense(num_out)])


def cnn(features, hidden: int, num_out: int) -> nn.Sequential:
    """The paper's small CNNs: 4x4 convs with stride 2 (no padding), a dense layer, the head."""
    items = []
    for f in features:
        items += [nn.Conv(f, (4, 4), strides=(2, 2), padding="VALID"), nn.relu]
    return nn.Sequential(
        [*items, lipschitz.Flatten(), nn.Dense(hidden), nn.relu, nn.Dense(num_out)]
    )


def synthetic_data(key, *, dim: int, num_classes: int, clusters: int, n: int):
    """LipMIP-style clustered data: cluster centres in [0, 1]^dim, each with a random class."""
    k_c, k_l, k_a, k_x = jax.random.split(key, 4)
    centres = jax.random.uniform(k_c, (clusters, dim))
    labels = jax.random.randint(k_l, (clusters,), 0, num_classes)
    assign = jax.random.randint(k_a, (n,), 0, clusters)
    x = centres[assign] + 0.05 * jax.random.normal(k_x, (n, dim))
    return {"image": np.asarray(x, np.float32), "label": np.asarray(labels[assign], np.int32)}


def _image_data(name: str, split: str, limit: int, flat: bool):
    d = datasets.load(name, split)
    image = d["image"][:limit].astype(np.float32) / 255.0
    if flat:
        image = image.reshape(image.shape[0], -1)
    return {"image": image, "label": d["label"][:limit].astype(np.int32)}


def _train(model, data, input_shape, *, config, workdir, key, regression=False, desc="train"):
    """Trains ``model`` with the core loop (checkpointed); returns its params."""
    k_init, k_data, k_train = jax.random.split(key, 3)
    params = model.init(k_init, jnp.zeros((1, *input_shape)))["params"]
    tx = optax.adam(config.learning_rate)

    def loss_fn(params, batch, rng):
        del rng
        out = model.apply({"params": params}, batch["image"])
        if regression:
            return jnp.mean((out[:, 0] - batch["label"]) ** 2), {}
        loss = optax.softmax_cross_entropy_with_integer_labels(out, batch["label"]).mean()
        return loss, {"accuracy": jnp.mean(jnp.argmax(out, -1) == batch["label"])}

    batch = min(config.batch_size, len(data["label"]))
    loop = train.LoopConfig(
        num_steps=config.train_steps,
        log_every=max(config.train_steps // 4, 1),
        checkpoint_every=max(config.train_steps // 2, 1),
        progress=config.progress,
    )
    state, _ = train.train_loop(
        train.create_train_state(params, tx),
        loss_fn=loss_fn,
        tx=tx,
        batch_fn=train.epoch_batches(data, batch, k_data),
        key=k_train,
        workdir=workdir,
        config=loop,
        desc=desc,
    )
    return jax.device_get(state.params)


def _accuracy(model, params, data) -> float:
    out = model.apply({"params": params}, data["image"])
    return float(np.mean(np.argmax(out, -1) == data["label"]))


# ----------------------------------------------------------------------------- evaluation


def _bound_fns(eps: float, bab_steps: int, bab_batch: int, methods, c=None):
    fns = {}
    for m in [m for m in ("naive", "interval", "recurjac", "ours") if m in methods]:
        fns[m] = jax.jit(functools.partial(lipschitz.local_lipschitz_bound, eps=eps, c=c, method=m))
    if bab_steps > 0 and "ours_bab" in methods:
        fns["ours_bab"] = jax.jit(
            functools.partial(
                lipschitz.local_lipschitz_bound,
                eps=eps,
                c=c,
                method="ours",
                bab_steps=bab_steps,
                bab_batch=bab_batch,
            )
        )
    return fns


def evaluate_bounds(net, points, *, eps, config, key, workdir, exact=False, desc="bounds"):
    """Bounds of every method at every point; resumes from ``workdir/eval_ckpt``.

    Args:
      net: converted layers.
      points: [P, N_0].

    Returns:
      dict with "values" and "times" ([P, len(ALL_METHODS)], NaN where a method did not run).
    """
    from tqdm.auto import tqdm

    num = points.shape[0]
    state = {
        "values": np.full((num, len(ALL_METHODS)), np.nan),
        "times": np.full((num, len(ALL_METHODS)), np.nan),
    }
    ckpt = checkpoint.Checkpointer(workdir / "eval_ckpt", max_to_keep=1)
    start = 0
    if ckpt.latest_step() is not None:
        state = ckpt.restore(state)
        start = int(ckpt.latest_step())
    fns = _bound_fns(eps, config.bab_steps, config.bab_batch, config.methods)
    sampled = jax.jit(
        functools.partial(
            lipschitz.sampled_lower_bound,
            eps=eps,
            num_samples=config.samples,
            ascent_starts=config.ascent_starts,
            ascent_steps=config.ascent_steps,
        )
    )
    warmed = False
    for p in tqdm(range(start, num), desc=desc, disable=not config.progress, leave=False):
        x0 = jnp.asarray(points[p])
        values, times = state["values"].copy(), state["times"].copy()
        if not warmed:  # compile outside the timings
            for fn in fns.values():
                jax.block_until_ready(fn(net, x0))
            jax.block_until_ready(sampled(net, key, x0))
            warmed = True
        for name, fn in fns.items():
            t0 = time.perf_counter()
            values[p, ALL_METHODS.index(name)] = float(jax.block_until_ready(fn(net, x0)))
            times[p, ALL_METHODS.index(name)] = time.perf_counter() - t0
        t0 = time.perf_counter()
        values[p, ALL_METHODS.index("sampled")] = float(
            sampled(net, jax.random.fold_in(key, p), x0)
        )
        times[p, ALL_METHODS.index("sampled")] = time.perf_counter() - t0
        if exact:
            t0 = time.perf_counter()
            try:
                res = lipschitz.exact_lipschitz(
                    net, np.asarray(x0, np.float64), eps, time_limit_s=config.exact_time_limit_s
                )
                values[p, ALL_METHODS.index("exact")] = res["value"]
            except RuntimeError as e:
                logging.warning("exact value skipped: %s", e)
            times[p, ALL_METHODS.index("exact")] = time.perf_counter() - t0
        state = {"values": values, "times": times}
        ckpt.save(p + 1, state, force=True)
    ckpt.close()
    return state


def summarize(state) -> dict:
    """Per-method means, ordering and soundness checks for one task."""
    vals, times = np.asarray(state["values"]), np.asarray(state["times"])
    col = {m: vals[:, i] for i, m in enumerate(ALL_METHODS)}
    out = {}
    for i, m in enumerate(ALL_METHODS):
        if np.all(np.isnan(vals[:, i])):
            continue
        out[f"{m}_mean"] = float(np.nanmean(vals[:, i]))
        out[f"{m}_time_s"] = float(np.nanmean(times[:, i]))
    tol = 1e-4
    samp = col["sampled"]
    sound = [np.all(col[m] >= samp * (1 - tol) - tol) for m in BOUND_METHODS if m in _ran(col)]
    out["sound_vs_sampled"] = bool(np.all(sound))
    ordered = col["ours"] <= col["recurjac"] * (1 + tol) + tol
    ordered &= col["recurjac"] <= col["naive"] * (1 + tol) + tol
    if "ours_bab" in _ran(col):
        ordered &= col["ours_bab"] <= col["ours"] * (1 + tol) + tol
    out["ordering_holds"] = bool(np.all(ordered))
    if "exact" in _ran(col):
        ok = ~np.isnan(col["exact"])
        if ok.any():
            ex = col["exact"][ok]
            out["exact_points"] = int(ok.sum())
            out["gap_ours_pct"] = float(np.mean(col["ours"][ok] / ex - 1) * 100)
            if "ours_bab" in _ran(col):
                out["gap_ours_bab_pct"] = float(np.mean(col["ours_bab"][ok] / ex - 1) * 100)
            out["gap_recurjac_pct"] = float(np.mean(col["recurjac"][ok] / ex - 1) * 100)
            out["sound_vs_exact"] = bool(
                all(
                    np.all(col[m][ok] >= ex * (1 - tol) - tol)
                    for m in BOUND_METHODS
                    if m in _ran(col)
                )
            )
    return out


def _ran(col):
    return [m for m, v in col.items() if not np.all(np.isnan(v))]


# ----------------------------------------------------------------------------- tasks


def _points(data, num):
    x = np.asarray(data["image"][:num], np.float32)
    return x.reshape(x.shape[0], -1)


def run_synthetic(config, workdir: pathlib.Path, key) -> dict:
    sc = config.synthetic
    k_data, k_test = jax.random.split(jax.random.fold_in(key, 0))
    data = synthetic_data(
        k_data, dim=sc.dim, num_classes=sc.num_classes, clusters=sc.clusters, n=sc.num_train
    )
    test = synthetic_data(
        k_data, dim=sc.dim, num_classes=sc.num_classes, clusters=sc.clusters, n=sc.num_train + 64
    )
    test = {k: v[sc.num_train :] for k, v in test.items()}  # same clusters, unseen points
    del k_test
    out = {}
    archs = [(w, sc.depth) for w in sc.widths] + [(sc.depth_width, d) for d in sc.depths]
    for i, (w, d) in enumerate(dict.fromkeys(archs)):
        name = f"synthetic_w{w}_d{d}"
        task_dir = workdir / name
        model = mlp([w] * d, sc.num_classes)
        k_model = jax.random.fold_in(key, 100 + i)
        params = _train(
            model,
            data,
            (sc.dim,),
            config=config,
            workdir=task_dir / "train",
            key=k_model,
            desc=name,
        )
        net = lipschitz.from_flax(model, params, (sc.dim,))
        exact = w * d <= sc.exact_max_neurons
        state = evaluate_bounds(
            net,
            _points(test, config.num_points),
            eps=sc.eps,
            config=config,
            key=jax.random.fold_in(k_model, 1),
            workdir=task_dir,
            exact=exact,
            desc=name,
        )
        out[name] = {
            **summarize(state),
            "width": w,
            "depth": d,
            "test_accuracy": _accuracy(model, params, test),
        }
    return out


def run_images(config, workdir: pathlib.Path, key) -> dict:
    out = {}
    specs = []
    if config.mnist.enabled:
        train_d = _image_data("mnist_5k", "train", config.mnist.num_train, flat=False)
        test_d = _image_data("mnist_5k", "test", 500, flat=False)
        specs.append(("mnist_mlp", mlp(config.mnist.mlp_hidden, 10), train_d, test_d, (784,)))
        specs.append(
            (
                "mnist_cnn",
                cnn(config.mnist.cnn_features, config.mnist.cnn_hidden, 10),
                train_d,
                test_d,
                (28, 28, 1),
            )
        )
    if config.cifar.enabled:
        train_d = _image_data("cifar10", "train", config.cifar.num_train, flat=False)
        test_d = _image_data("cifar10", "test", 500, flat=False)
        specs.append(
            (
                "cifar_cnn",
                cnn(config.cifar.cnn_features, config.cifar.cnn_hidden, 10),
                train_d,
                test_d,
                (32, 32, 3),
            )
        )
    for i, (name, model, train_d, test_d, shape) in enumerate(specs):
        if name == "mnist_mlp":
            train_d = {**train_d, "image": train_d["image"].reshape(-1, 784)}
            test_d = {**test_d, "image": test_d["image"].reshape(-1, 784)}
        task = config.cifar if name.startswith("cifar") else config.mnist
        k_model = jax.random.fold_in(key, 200 + i)
        params = _train(
            model,
            train_d,
            shape,
            config=config,
            workdir=workdir / name / "train",
            key=k_model,
            desc=name,
        )
        net = lipschitz.from_flax(model, params, shape)
        sub = config.copy_and_resolve_references()
        sub.bab_steps = task.bab_steps if name.endswith("mlp") else task.cnn_bab_steps
        state = evaluate_bounds(
            net,
            _points(test_d, task.num_points),
            eps=task.eps,
            config=sub,
            key=jax.random.fold_in(k_model, 1),
            workdir=workdir / name,
            desc=name,
        )
        out[name] = {**summarize(state), "test_accuracy": _accuracy(model, params, test_d)}
    return out


def run_monotone(config, workdir: pathlib.Path, key) -> dict:
    """Local monotonicity certificates on sklearn's diabetes regression data."""
    from sklearn.datasets import load_diabetes

    mc = config.monotone
    d = load_diabetes()
    x = (d.data - d.data.mean(0)) / d.data.std(0)
    y = (d.target - d.target.mean()) / d.target.std()
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 3), len(y)))
    n_train = int(0.8 * len(y))
    train_d = {
        "image": x[perm[:n_train]].astype(np.float32),
        "label": y[perm[:n_train]].astype(np.float32),
    }
    test_x = x[perm[n_train:]].astype(np.float32)
    test_y = y[perm[n_train:]]
    model = mlp(mc.hidden, 1)
    params = _train(
        model,
        train_d,
        (x.shape[1],),
        config=config,
        workdir=workdir / "monotone" / "train",
        key=jax.random.fold_in(key, 4),
        regression=True,
        desc="monotone",
    )
    pred = np.asarray(model.apply({"params": params}, test_x))[:, 0]
    r2 = 1 - np.mean((pred - test_y) ** 2) / np.var(test_y)
    net = lipschitz.from_flax(model, params, (x.shape[1],))
    c = jnp.ones((1,))
    pts = jnp.asarray(test_x[: mc.num_points])
    bounds = jax.jit(
        jax.vmap(lambda x0: lipschitz.gradient_bounds(net, x0, mc.eps, c=c, method="ours"))
    )
    lo, up = (np.asarray(a) for a in bounds(pts))
    lo_rj, up_rj = (
        np.asarray(a)
        for a in jax.jit(
            jax.vmap(lambda x0: lipschitz.gradient_bounds(net, x0, mc.eps, c=c, method="recurjac"))
        )(pts)
    )
    # Sampled derivatives: a feature whose sampled derivative changes sign cannot be certified.
    k_s = jax.random.fold_in(key, 5)
    offs = jax.random.uniform(k_s, (mc.samples, x.shape[1]), minval=-mc.eps, maxval=mc.eps)
    grad = jax.vmap(jax.vmap(jax.grad(lambda v: lipschitz.forward(net, v)[0])))(
        pts[:, None, :] + offs[None]
    )
    g = np.asarray(grad)
    consistent = (g.min(1) >= 0) | (g.max(1) <= 0)  # [P, F]
    cert = (lo >= 0) | (up <= 0)
    cert_rj = (lo_rj >= 0) | (up_rj <= 0)
    # BaB on the pairs that sampling says could be monotone but the plain bound does not certify.
    cert_bab = cert.copy()
    todo = np.argwhere(consistent & ~cert)
    todo = todo[todo[:, 0] < mc.bab_points]  # BaB budget: the first bab_points test points
    if mc.bab_steps > 0 and len(todo):
        signs = np.where(g.min(1) >= 0, 1.0, -1.0)[todo[:, 0], todo[:, 1]]
        bab = jax.jit(
            jax.vmap(
                lambda x0, f, s: lipschitz.partial_derivative_bound(
                    net, x0, mc.eps, f, c=c, sign=s, bab_steps=mc.bab_steps, bab_batch=4
                )
            )
        )
        low = np.asarray(bab(pts[todo[:, 0]], jnp.asarray(todo[:, 1]), jnp.asarray(signs)))
        cert_bab[todo[:, 0], todo[:, 1]] = low >= 0
    names = list(d.feature_names)
    return {
        "monotone": {
            "test_r2": float(r2),
            "features": names,
            "certified_frac": cert.mean(0).tolist(),
            "certified_frac_recurjac": cert_rj.mean(0).tolist(),
            "certified_frac_bab": cert_bab.mean(0).tolist(),
            "certified_mean_bab": float(cert_bab.mean()),
            "bab_steps": mc.bab_steps,
            "bab_points": min(mc.bab_points, len(pts)),
            "sampled_consistent_frac": consistent.mean(0).tolist(),
            "certified_mean": float(cert.mean()),
            "certified_mean_recurjac": float(cert_rj.mean()),
            "sampled_consistent_mean": float(consistent.mean()),
            "sound": bool(np.all(lo <= g.min(1) + 1e-4) and np.all(up >= g.max(1) - 1e-4)),
            "bmi_certified_increasing_frac": float((lo[:, names.index("bmi")] >= 0).mean()),
            "eps": mc.eps,
        }
    }


# ----------------------------------------------------------------------------- plots


def _plots(results: dict, workdir: pathlib.Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    syn = {k: v for k, v in results.items() if k.startswith("synthetic")}
    methods = (*BOUND_METHODS, "sampled", "exact")
    for sweep, fixed in (("width", "depth"), ("depth", "width")):
        groups: dict = {}
        for v in syn.values():
            groups.setdefault(v[fixed], []).append(v)
        best = sorted(max(groups.values(), key=len, default=[]), key=lambda v: v[sweep])
        if len(best) < 2:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for m in methods:
            xs = [v[sweep] for v in best if f"{m}_mean" in v]
            ys = [v[f"{m}_mean"] for v in best if f"{m}_mean" in v]
            if xs:
                ax.plot(xs, ys, marker="o", label=m)
        ax.set_yscale("log")
        ax.set_xlabel(f"hidden {sweep}")
        ax.set_ylabel("local Lipschitz bound (mean over points)")
        ax.set_title(f"synthetic 16-d MLPs: {sweep} sweep")
        ax.legend(fontsize=7)
        name = f"synthetic_{sweep}_sweep.png"
        save_figure(fig, workdir / name)
        paths.append(name)
    tasks = [k for k in results if k != "monotone"]
    if tasks:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        width = 0.8 / len(BOUND_METHODS)
        for j, m in enumerate(BOUND_METHODS):
            ys = [results[t].get(f"{m}_time_s", math.nan) for t in tasks]
            ax.bar(np.arange(len(tasks)) + j * width, ys, width, label=m)
        ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2)
        ax.set_xticklabels(tasks, rotation=30, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("seconds per point")
        ax.legend(fontsize=7)
        save_figure(fig, workdir / "time_per_method.png")
        paths.append("time_per_method.png")
    if "monotone" in results:
        mono = results["monotone"]
        fig, ax = plt.subplots(figsize=(6, 3.2))
        xs = np.arange(len(mono["features"]))
        w = 0.2
        ax.bar(xs - 1.5 * w, mono["certified_frac_recurjac"], w, label="recurjac (certified)")
        ax.bar(xs - 0.5 * w, mono["certified_frac"], w, label="ours (certified)")
        ax.bar(xs + 0.5 * w, mono["certified_frac_bab"], w, label="ours + BaB (certified)")
        ax.bar(xs + 1.5 * w, mono["sampled_consistent_frac"], w, label="sampled: no sign change")
        ax.set_xticks(xs)
        ax.set_xticklabels(mono["features"])
        ax.set_ylabel("fraction of test points")
        ax.set_title(f"local monotonicity, diabetes MLP, eps={mono['eps']}")
        ax.legend(fontsize=7)
        save_figure(fig, workdir / "monotonicity.png")
        paths.append("monotonicity.png")
    return paths


def _table(results: dict) -> str:
    cols = [*BOUND_METHODS, "sampled", "exact"]
    lines = ["| task | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for t, v in results.items():
        if t == "monotone":
            continue
        cells = []
        for m in cols:
            if f"{m}_mean" in v:
                cells.append(f"{v[f'{m}_mean']:.4g} ({v[f'{m}_time_s'] * 1e3:.0f} ms)")
            else:
                cells.append("-")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def train_and_evaluate(config, workdir: pathlib.Path, runtime: Runtime) -> dict:
    """Runs every enabled task; returns their summaries (see the module docstring)."""
    del runtime  # single-process evaluation: bounds are per point
    workdir = pathlib.Path(workdir)
    key = jax.random.key(config.seed)
    results: dict = {}
    if config.synthetic.enabled:
        results.update(run_synthetic(config, workdir, jax.random.fold_in(key, 1)))
    results.update(run_images(config, workdir, jax.random.fold_in(key, 2)))
    if config.monotone.enabled:
        results.update(run_monotone(config, workdir, jax.random.fold_in(key, 3)))
    plots = _plots(results, workdir)
    atomic_write_text(workdir / "bounds_table.md", _table(results))
    tasks = [v for k, v in results.items() if k != "monotone"]
    gaps = [v["gap_ours_bab_pct"] for v in tasks if "gap_ours_bab_pct" in v]
    gaps_nobab = [v["gap_ours_pct"] for v in tasks if "gap_ours_pct" in v]
    return {
        "tasks": results,
        "plots": plots,
        "all_sound": bool(all(v["sound_vs_sampled"] for v in tasks)),
        "all_ordered": bool(all(v["ordering_holds"] for v in tasks)),
        "mean_gap_ours_bab_pct": float(np.mean(gaps)) if gaps else None,
        "mean_gap_ours_pct": float(np.mean(gaps_nobab)) if gaps_nobab else None,
    }
