"""Paper 9's experiment: train the paper's model families, then bound them at test points.

Tasks (each in ``<workdir>/<task>/``: the model trained with the core train loop under
``train/``, every test point a work item under ``points/``, so a killed run resumes without
lost work):

- ``synthetic_w<W>_d<D>``: MLPs 16 -> W x D -> 10 on 16-d clustered synthetic data (the paper's
  LipMIP-style data; synthetic by design), width and depth sweeps; exact values by enumeration
  for the small ones.
- ``mnist_mlp`` (784-20-20-10) and ``mnist_cnn`` on MNIST-5k; ``cifar_cnn`` on a CIFAR-10 subset.
- ``monotone``: an MLP regressor on sklearn's diabetes data; per-feature derivative bounds
  certify local monotonicity (paper Sec. 5.4 uses UCI Adult, which is not available offline).

Methods per point: naive, interval, recurjac, ours, ours + BaB, sampled lower bound, exact.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from robustml_jax import lipschitz
from robustml_jax.core import plotting
from robustml_jax.core.distributed import Runtime
from robustml_jax.core.results import MetricsLogger, atomic_write_text


def _train(model, data, input_shape, *, config, workdir, key, runtime, regression=False, desc):
    return lipschitz.train_model(
        model,
        key,
        data,
        input_shape=input_shape,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        num_steps=config.train_steps,
        workdir=workdir,
        regression=regression,
        progress=config.progress,
        mesh=runtime.mesh,
        desc=desc,
    )


def _evaluate(net, key, points, *, eps, config, bab_steps, task_dir, exact=False, desc):
    table = lipschitz.evaluate_bounds(
        net,
        key,
        points,
        eps=eps,
        methods=tuple(config.methods),
        bab_steps=bab_steps,
        bab_batch=config.bab_batch,
        samples=config.samples,
        ascent_starts=config.ascent_starts,
        ascent_steps=config.ascent_steps,
        exact=exact,
        exact_time_limit_s=config.exact_time_limit_s,
        directory=task_dir / "points",
        progress=config.progress,
        desc=desc,
    )
    return lipschitz.summarize(table)


def _accuracy(model, params, data) -> float:
    out = model.apply({"params": params}, data["image"])
    return float(np.mean(np.argmax(out, -1) == data["label"]))


def _points(data, num):
    x = np.asarray(data["image"][:num], np.float32)
    return x.reshape(x.shape[0], -1)


def run_synthetic(config, workdir: pathlib.Path, key, runtime: Runtime) -> dict:
    sc = config.synthetic
    k_data = jax.random.split(jax.random.fold_in(key, 0))[0]
    shape = {"dim": sc.dim, "num_classes": sc.num_classes, "clusters": sc.clusters}
    data = lipschitz.synthetic_data(k_data, **shape, n=sc.num_train)
    test = lipschitz.synthetic_data(k_data, **shape, n=sc.num_train + 64)
    test = {k: v[sc.num_train :] for k, v in test.items()}  # same clusters, unseen points
    out = {}
    archs = [(w, sc.depth) for w in sc.widths] + [(sc.depth_width, d) for d in sc.depths]
    for i, (w, d) in enumerate(dict.fromkeys(archs)):
        name = f"synthetic_w{w}_d{d}"
        model = lipschitz.mlp([w] * d, sc.num_classes)
        k_model = jax.random.fold_in(key, 100 + i)
        params = _train(
            model,
            data,
            (sc.dim,),
            config=config,
            workdir=workdir / name / "train",
            key=k_model,
            runtime=runtime,
            desc=name,
        )
        summary = _evaluate(
            lipschitz.from_flax(model, params, (sc.dim,)),
            jax.random.fold_in(k_model, 1),
            _points(test, config.num_points),
            eps=sc.eps,
            config=config,
            bab_steps=config.bab_steps,
            task_dir=workdir / name,
            exact=w * d <= sc.exact_max_neurons,
            desc=name,
        )
        out[name] = {
            **summary,
            "width": w,
            "depth": d,
            "test_accuracy": _accuracy(model, params, test),
        }
    return out


def run_images(config, workdir: pathlib.Path, key, runtime: Runtime) -> dict:
    specs = []  # (name, model, task config, flat input?, example shape, dataset)
    if config.mnist.enabled:
        m = config.mnist
        specs.append(("mnist_mlp", lipschitz.mlp(m.mlp_hidden, 10), m, True, (784,), "mnist_5k"))
        model = lipschitz.cnn(m.cnn_features, m.cnn_hidden, 10, strides=tuple(m.cnn_strides))
        specs.append(("mnist_cnn", model, m, False, (28, 28, 1), "mnist_5k"))
    if config.cifar.enabled:
        m = config.cifar
        kernel = tuple(m.get("cnn_kernel", (4, 4)))
        model = lipschitz.cnn(
            m.cnn_features, m.cnn_hidden, 10, strides=tuple(m.cnn_strides), kernel_size=kernel
        )
        specs.append(("cifar_cnn", model, m, False, (32, 32, 3), "cifar10"))
        if m.get("cnn6_features", ()):
            # The paper's 6-layer CIFAR CNN (cnn_6layer_stride1_padding0 of the official code).
            model = lipschitz.cnn(
                m.cnn6_features, m.cnn_hidden, 10, strides=tuple(m.cnn_strides), kernel_size=kernel
            )
            specs.append(("cifar_cnn6", model, m, False, (32, 32, 3), "cifar10"))
    out = {}
    for i, (name, model, task, flat, shape, dataset) in enumerate(specs):
        train_d = lipschitz.image_data(dataset, "train", limit=task.num_train, flat=flat)
        test_d = lipschitz.image_data(dataset, "test", limit=500, flat=flat)
        k_model = jax.random.fold_in(key, 200 + i)
        params = _train(
            model,
            train_d,
            shape,
            config=config,
            workdir=workdir / name / "train",
            key=k_model,
            runtime=runtime,
            desc=name,
        )
        summary = _evaluate(
            lipschitz.from_flax(model, params, shape),
            jax.random.fold_in(k_model, 1),
            _points(test_d, task.num_points),
            eps=task.eps,
            config=config,
            bab_steps=task.bab_steps if name.endswith("mlp") else task.cnn_bab_steps,
            task_dir=workdir / name,
            desc=name,
        )
        out[name] = {**summary, "test_accuracy": _accuracy(model, params, test_d)}
    return out


def run_monotone(config, workdir: pathlib.Path, key, runtime: Runtime) -> dict:
    """Local monotonicity certificates on sklearn's diabetes regression data."""
    mc = config.monotone
    data = lipschitz.diabetes_data(jax.random.fold_in(key, 3))
    num_features = data.test_x.shape[1]
    model = lipschitz.mlp(mc.hidden, 1)
    params = _train(
        model,
        data.train,
        (num_features,),
        config=config,
        workdir=workdir / "monotone" / "train",
        key=jax.random.fold_in(key, 4),
        runtime=runtime,
        regression=True,
        desc="monotone",
    )
    pred = np.asarray(model.apply({"params": params}, data.test_x))[:, 0]
    r2 = 1 - np.mean((pred - data.test_y) ** 2) / np.var(data.test_y)
    points = data.test_x[: mc.num_points]
    cert = lipschitz.certify_monotone(
        lipschitz.from_flax(model, params, (num_features,)),
        jax.random.fold_in(key, 5),
        points,
        eps=mc.eps,
        c=jnp.ones((1,)),
        samples=mc.samples,
        bab_steps=mc.bab_steps,
        bab_points=mc.bab_points,
    )
    names = data.features
    return {
        "monotone": {
            "test_r2": float(r2),
            "features": names,
            "certified_frac": cert.certified.mean(0).tolist(),
            "certified_frac_recurjac": cert.certified_recurjac.mean(0).tolist(),
            "certified_frac_bab": cert.certified_bab.mean(0).tolist(),
            "certified_mean_bab": float(cert.certified_bab.mean()),
            "bab_steps": mc.bab_steps,
            "bab_points": min(mc.bab_points, len(points)),
            "sampled_consistent_frac": cert.consistent.mean(0).tolist(),
            "certified_mean": float(cert.certified.mean()),
            "certified_mean_recurjac": float(cert.certified_recurjac.mean()),
            "sampled_consistent_mean": float(cert.consistent.mean()),
            "sound": cert.sound,
            "bmi_certified_increasing_frac": float((cert.lower[:, names.index("bmi")] >= 0).mean()),
            "eps": mc.eps,
        }
    }


def _plots(results: dict, workdir: pathlib.Path) -> list[str]:
    figures = {
        "synthetic_width_sweep.png": lipschitz.sweep_figure(results, "width", "depth"),
        "synthetic_depth_sweep.png": lipschitz.sweep_figure(results, "depth", "width"),
        "time_per_method.png": lipschitz.time_figure(results),
    }
    if "monotone" in results:
        figures["monotonicity.png"] = lipschitz.monotonicity_figure(results["monotone"])
    paths = []
    for name, fig in figures.items():
        if fig is not None:
            plotting.save(fig, workdir / name)
            paths.append(name)
    return paths


def _log_summaries(results: dict, workdir: pathlib.Path) -> None:
    """Each task's scalar summaries into ``<workdir>/metrics.jsonl`` and TensorBoard (one step
    per task, split = task name); a re-run rewrites them."""
    logger = MetricsLogger(workdir)
    logger.truncate_after(-1)
    for step, (name, summary) in enumerate(results.items()):
        scalars = {
            k: v
            for k, v in summary.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        logger.write(step, split=name, **scalars)
    logger.close()


def train_and_evaluate(config, workdir: pathlib.Path, runtime: Runtime) -> dict:
    """Runs every enabled task; returns their summaries (see the module docstring)."""
    workdir = pathlib.Path(workdir)
    key = jax.random.key(config.seed)
    results: dict = {}
    if config.synthetic.enabled:
        results.update(run_synthetic(config, workdir, jax.random.fold_in(key, 1), runtime))
    results.update(run_images(config, workdir, jax.random.fold_in(key, 2), runtime))
    if config.monotone.enabled:
        results.update(run_monotone(config, workdir, jax.random.fold_in(key, 3), runtime))
    _log_summaries(results, workdir)
    plots = _plots(results, workdir)
    atomic_write_text(workdir / "bounds_table.md", lipschitz.bounds_table(results))
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
