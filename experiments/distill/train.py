"""Orchestration of the distillation experiment: ``train_and_evaluate(config, workdir, runtime)``.

1. Experts: K ConvNets trained with plain SGD, every epoch saved (resumable work items, shared
   between runs through ``config.expert_dir``). Their test accuracy is the full-data baseline.
2. Baseline: a random real subset of ``ipc`` images per class, evaluated with the same protocol.
3. Distillation (MTT/TESLA): the synthetic images start from that subset; every iteration draws
   an expert k and a start epoch t, and the images, the step size alpha (and learned labels) take
   one SGD-with-momentum step on ``trajectory_matching_loss``. It runs in ``core.train.fit``
   (orbax checkpoints, resume, ``metrics.jsonl``), whose ``eval_fn`` trains fresh networks on
   the distilled set every ``eval_every`` iterations.
"""

from __future__ import annotations

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from experiments.distill.configs import default
from robustml_jax import distill
from robustml_jax.core import metrics, plotting, train
from robustml_jax.core.distributed import Runtime
from robustml_jax.core.results import MetricsLogger, atomic_write_text
from robustml_jax.core.workitems import WorkItems
from robustml_jax.distill import _datasets as distill_datasets
from robustml_jax.models.convnet import ConvNet


def _save_json(folder: pathlib.Path, value: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(value))


def _load_json(folder: pathlib.Path) -> dict:
    return json.loads((folder / "result.json").read_text())


def cross_architecture(config, syn, real, test, *, key, directory) -> dict:
    """MTT's cross-architecture evaluation: ``config.eval_archs`` networks trained on the
    distilled set ``syn = (x, y, alpha)`` (step size = the learned alpha) and on the random real
    subset ``real = (x, y)`` (lr_teacher), the same seeds for both, tested on ``test = (x, y)``;
    one resumable work item per architecture in ``directory``.

    Returns ``{arch: {"syn": [R] accuracies, "real": [R] accuracies}}``.
    """
    (x_syn, y_syn, lr_syn), (x_real, y_real), (x_test, y_test) = syn, real, test
    augment = (
        functools.partial(distill.dsa_augment, strategy=config.dsa_strategy)
        if config.dsa_strategy
        else None
    )
    num_classes = y_syn.shape[1]
    items = WorkItems(directory, save=_save_json, load=_load_json)
    out = {}
    for arch in [a for a in config.eval_archs.split(",") if a]:
        model = distill.make_model(
            arch, num_classes=num_classes, width=config.width,
            depth=config.depth or (4 if x_syn.shape[1] >= 64 else 3), norm=config.norm,
        )  # fmt: skip

        def init_fn(k, model=model):
            return model.init(k, jnp.zeros((1, *x_syn.shape[1:]), jnp.float32))["params"]

        def apply_fn(params, x, model=model):
            return model.apply({"params": params}, x)

        def compute(init_fn=init_fn, apply_fn=apply_fn):
            fit = jax.jit(
                functools.partial(
                    distill.train_networks, init_fn=init_fn, apply_fn=apply_fn,
                    num_epochs=config.eval_epochs, batch_size=config.eval_batch,
                    augment_fn=augment,
                )
            )  # fmt: skip
            keys = jax.random.split(key, config.eval_models)

            def acc(x, y, lr):
                p = fit(keys, jnp.asarray(x), y, jnp.float32(lr))
                return np.asarray(
                    metrics.stacked_accuracy(p, x_test, y_test, apply_fn=apply_fn)
                ).tolist()

            return {
                "syn": acc(x_syn, y_syn, lr_syn),
                "real": acc(x_real, y_real, config.lr_teacher),
            }

        out[arch] = items.get(arch, compute)
    return out


def _limit(key, d: dict, n: int) -> dict:
    if not n or n >= len(d["label"]):
        return d
    idx = np.sort(np.asarray(jax.random.permutation(key, len(d["label"])))[:n])
    return {k: v[idx] for k, v in d.items()}


def _streamed_data(config):
    """Train / test as :class:`robustml_jax.distill.StreamingImages` over chunked stores in
    ``config.stream_dir`` (built once: from TFDS for the TFDS-only datasets, else from the
    registry, resized to ``config.image_size``), normalised with streamed channel statistics;
    the train store's class index is built once and cached."""
    root = pathlib.Path(config.stream_dir)
    stores = {}
    for split, limit in (("train", config.train_examples), ("test", config.test_examples)):
        folder = root / f"{config.dataset}_{config.image_size or 'orig'}_{limit or 'all'}_{split}"
        if config.dataset in distill_datasets.TFDS_ONLY:
            tfds_name = distill_datasets.TFDS_ONLY[config.dataset][0]
            tfds_split = "validation" if split == "test" else split
            stores[split] = distill.store_from_tfds(tfds_name, tfds_split, folder)
        else:
            stores[split] = distill.store_from_registry(
                config.dataset, split, folder, image_size=config.image_size, num_examples=limit
            )
    mean, std = distill.channel_stats(stores["train"])
    x_train = distill.StreamingImages(stores["train"], mean, std)
    x_test = distill.StreamingImages(stores["test"], mean, std)
    return (
        x_train,
        np.asarray(stores["train"].labels),
        x_test,
        np.asarray(stores["test"].labels),
        stores["train"].class_index(),
    )


def train_and_evaluate(config, workdir: pathlib.Path, runtime: Runtime) -> dict:
    default.validate(config)  # also when called without the main (report, notebook)
    workdir = pathlib.Path(workdir)
    last_target = config.max_start_epoch - 1 + config.expert_epochs
    root = jax.random.key(config.seed)
    k_data, k_zca, k_model, k_expert, k_init, k_eval, k_sample, k_train = jax.random.split(root, 8)

    # ---- data
    class_index = None
    if config.stream_dir:  # ImageNet path: chunked stores on disk, nothing loaded whole
        x_train, y_train, x_test, y_test, class_index = _streamed_data(config)
    else:
        raw_train = _limit(
            jax.random.fold_in(k_data, 0),
            distill.load_split(config.dataset, "train"),
            config.train_examples,
        )
        raw_test = _limit(
            jax.random.fold_in(k_data, 1),
            distill.load_split(config.dataset, "test"),
            config.test_examples,
        )
        pre = distill.fit_preprocessor(
            raw_train["image"], zca=config.zca, zca_fit_examples=config.zca_fit_examples, key=k_zca
        )
        x_train, y_train = pre(raw_train["image"]), raw_train["label"]
        x_test, y_test = pre(raw_test["image"]), raw_test["label"]
    num_classes = int(y_train.max()) + 1

    # ---- model
    depth = config.depth or (4 if x_train.shape[1] >= 64 else 3)  # ConvNetD4 for 64x64
    model = ConvNet(num_classes=num_classes, width=config.width, depth=depth, norm=config.norm)

    def init_fn(key):
        return model.init(key, jnp.zeros((1, *x_train.shape[1:]), jnp.float32))["params"]

    def apply_fn(params, x):
        return model.apply({"params": params}, x)

    augment = (
        functools.partial(distill.dsa_augment, strategy=config.dsa_strategy)
        if config.dsa_strategy
        else None
    )
    _, unravel = ravel_pytree(init_fn(k_model))

    def test_acc(params_r):
        return metrics.stacked_accuracy(params_r, x_test, y_test, apply_fn=apply_fn)

    # ---- 1. experts (full-data baseline)
    expert_root = pathlib.Path(config.expert_dir) if config.expert_dir else workdir / "experts"
    expert_metrics = distill.train_experts(
        k_expert,
        {"image": x_train, "label": y_train},
        directory=expert_root,
        init_fn=init_fn,
        apply_fn=apply_fn,
        num_experts=config.num_experts,
        num_epochs=config.expert_train_epochs,
        lr=config.lr_teacher,
        batch_size=config.expert_batch,
        num_classes=num_classes,
        augment_fn=augment,
        eval_fn=lambda p: {"test_accuracy": float(test_acc(jax.tree.map(lambda a: a[None], p))[0])},
        mesh=runtime.mesh,
        progress=config.progress,
    )
    full_acc = np.array([m["test_accuracy"] for m in expert_metrics])
    buffer = distill.open_trajectories(  # memory-mapped: rows are read when an iteration uses them
        init_fn(k_model), directory=expert_root, num_experts=config.num_experts, epochs=last_target
    )

    # ---- 2. random real subset (also the initialisation of the synthetic images)
    ipc = config.ipc
    init_idx = distill.real_subset(
        k_init, y_train, per_class=ipc, num_classes=num_classes, class_index=class_index
    )
    x0, labels = x_train[init_idx], y_train[init_idx]
    onehot = jax.nn.one_hot(labels, num_classes)
    fit_nets = jax.jit(
        functools.partial(
            distill.train_networks,
            init_fn=init_fn,
            apply_fn=apply_fn,
            num_epochs=config.eval_epochs,
            batch_size=config.eval_batch,
            augment_fn=augment,
        )
    )
    eval_keys = jax.random.split(k_eval, config.eval_models)
    real_acc = test_acc(
        fit_nets(eval_keys, jnp.asarray(x0), onehot, jnp.float32(config.lr_teacher))
    )

    # ---- 3. distillation
    num_syn = len(init_idx)
    batch_syn = config.batch_syn or num_syn
    params = {"x": jnp.asarray(x0), "lr": jnp.asarray(config.lr_teacher, jnp.float32)}
    rates = {"x": config.lr_img, "lr": config.lr_lr}
    if config.label_mode == "learned":
        params["y"] = distill.init_label_logits(
            labels, num_classes=num_classes, scale=config.label_init_scale
        )
        rates["y"] = config.lr_label
    tx = optax.multi_transform(
        {k: optax.sgd(r, momentum=config.syn_momentum) for k, r in rates.items()},
        {k: k for k in params},
    )
    sla_eval_params = unravel(jnp.asarray(buffer[0, last_target]))

    def syn_labels(params, target_params):
        if config.label_mode == "sla":
            return distill.soft_label_assignment(
                target_params,
                params["x"],
                apply_fn=apply_fn,
                temperature=config.sla_temperature,
                chunk_size=config.sla_chunk,
            )
        if config.label_mode == "learned":
            return distill.learned_labels(params["y"])
        return onehot

    ndev = runtime.mesh.devices.size

    def batch_fn(step):
        kk, kt = jax.random.split(jax.random.fold_in(k_sample, step))
        k = int(jax.random.randint(kk, (), 0, config.num_experts))
        t = int(jax.random.randint(kt, (), 0, config.max_start_epoch))
        rows = lambda v: np.broadcast_to(v, (ndev, *np.shape(v))).copy()
        return {
            "start": rows(buffer[k, t]),
            "target": rows(buffer[k, t + config.expert_epochs]),
            "start_epoch": rows(np.float32(t)),
        }

    syn_shard = (
        distill.synthetic_sharding(runtime.mesh, x0.ndim)
        if config.shard_syn and ndev > 1 and len(init_idx) % ndev == 0
        else None
    )

    def loss_fn(params, batch, rng):
        start, target = unravel(batch["start"][0]), unravel(batch["target"][0])
        x = params["x"]
        if syn_shard is not None:  # the set's rows (and their gradient) split over devices
            x = jax.lax.with_sharding_constraint(x, syn_shard)
        loss = distill.trajectory_matching_loss(
            x,
            syn_labels(params, target),
            params["lr"],
            rng,
            start,
            target,
            apply_fn=apply_fn,
            num_steps=config.syn_steps,
            batch_size=batch_syn,
            gradient=config.gradient,
            augment_fn=augment,
        )
        return loss, {"syn_lr": params["lr"], "start_epoch": batch["start_epoch"][0]}

    def eval_fn(params):
        y_eval = syn_labels(params, sla_eval_params)
        acc = test_acc(fit_nets(eval_keys, params["x"], y_eval, params["lr"]))
        x = np.asarray(params["x"])
        np.save(workdir / "syn_images.npy", x)
        np.save(workdir / "syn_labels.npy", np.asarray(y_eval))  # [S, C], what evaluation used
        title = f"distilled ({config.dataset}, IPC {ipc})"
        plotting.save(
            distill.image_grid(x, per_class=ipc, num_classes=num_classes, title=title),
            workdir / "syn_images.png",
        )
        return {
            "syn_acc_mean": float(acc.mean()),
            "syn_acc_std": float(acc.std()),
            "syn_lr": float(params["lr"]),
        }

    distill_dir = workdir / "distill"
    state, final = train.fit(
        params,
        tx=tx,
        loss_fn=loss_fn,
        batch_fn=batch_fn,
        key=k_train,
        workdir=distill_dir,
        num_steps=config.iterations,
        eval_fn=eval_fn,
        mesh=runtime.mesh,
        desc="distill",
        log_every=config.log_every,
        eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
        progress=config.progress,
    )
    cross = cross_architecture(
        config,
        (state.params["x"], syn_labels(state.params, sla_eval_params), state.params["lr"]),
        (x0, onehot),
        (x_test, y_test),
        key=jax.random.fold_in(k_eval, 1),
        directory=workdir / "cross_arch",
    )
    real_grid = distill.image_grid(
        np.asarray(x0), per_class=ipc, num_classes=num_classes, title="random real init"
    )
    plotting.save(real_grid, workdir / "real_init.png")
    baselines = {"random real": float(real_acc.mean()), "full data": float(full_acc.mean())}
    records = MetricsLogger(distill_dir).read()
    plotting.save(distill.curves(records, baselines), workdir / "curves.png")
    train_recs = [r for r in records if r.get("split") == "train"]
    results = {
        "dataset": config.dataset,
        "ipc": ipc,
        "gradient": config.gradient,
        "label_mode": config.label_mode,
        "syn_acc_mean": final["syn_acc_mean"],
        "syn_acc_std": final["syn_acc_std"],
        "random_real_acc_mean": float(real_acc.mean()),
        "random_real_acc_std": float(real_acc.std()),
        "full_data_acc_mean": float(full_acc.mean()),
        "full_data_acc_std": float(full_acc.std()),
        "syn_lr": final["syn_lr"],
        "matching_loss_first": train_recs[0]["loss"] if train_recs else None,
        "matching_loss_last": train_recs[-1]["loss"] if train_recs else None,
        "iterations": int(state.step),
        "num_params": int(buffer.shape[-1]),
        "distill_time_s": final["train_time_s"],
        "cross_arch": {
            arch: {
                "syn_acc_mean": float(np.mean(v["syn"])),
                "syn_acc_std": float(np.std(v["syn"])),
                "random_real_acc_mean": float(np.mean(v["real"])),
                "random_real_acc_std": float(np.std(v["real"])),
            }
            for arch, v in cross.items()
        },
        "plots": ["syn_images.png", "real_init.png", "curves.png"],
    }
    atomic_write_text(
        workdir / "baselines.json",
        json.dumps({"random_real": real_acc.tolist(), "full_data": full_acc.tolist()}, indent=2),
    )
    return results
