"""Orchestration of paper 4's experiment: ``train_and_evaluate(config, workdir, runtime)``.

1. Data: the training subset, a fixed permutation of the test split (first ``eval_limit``
   evaluated), floats in [0, 1].
2. Invariance partners of the training images (work item ``inv_train``): our invariance attack
   at the training radius against the training pool, with the 1-NN oracle (the image itself
   excluded) deciding which ones really changed class (their weight in the OT regulariser).
3. Our invariance examples on test images at each radius of ``inv_eps`` (work item per radius).
4. For each method and seed: training through ``core.train.fit`` in ``runs/<method>_s<seed>``
   (orbax checkpoints, resumes), then evaluation saved as the work item
   ``evals/<method>_s<seed>``. Every method uses the same initialisation and batch order for a
   given seed, so comparisons are paired.
5. Aggregation: mean and std over seeds per method and metric, paired differences
   ``ot_inv - pgd_at`` per seed, the attack checks, and plots.
"""

from __future__ import annotations

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from robustml_jax import ot_robust
from robustml_jax.core import datasets, plotting
from robustml_jax.core import train as core_train
from robustml_jax.core.distributed import Runtime
from robustml_jax.core.workitems import WorkItems

EVAL_BATCH = 250


def _json_items(directory: pathlib.Path) -> WorkItems:
    def save(folder, value):
        folder.mkdir(parents=True)
        (folder / "item.json").write_text(json.dumps(value))

    return WorkItems(directory, save=save, load=lambda f: json.loads((f / "item.json").read_text()))


def _npz_items(directory: pathlib.Path) -> WorkItems:
    def save(folder, value):
        folder.mkdir(parents=True)
        np.savez(folder / "item.npz", **{k: np.asarray(v) for k, v in value.items()})

    def load(folder):
        with np.load(folder / "item.npz") as f:
            return {k: f[k] for k in f.files}

    return WorkItems(directory, save=save, load=load)


def load_data(config) -> dict:
    """Train / evaluation arrays (float32 images in [0, 1], int32 labels)."""
    tr = datasets.load(config.dataset, "train")
    te = datasets.load(config.dataset, "test")
    n = len(tr["label"])
    idx = np.arange(n)
    if config.train_limit and config.train_limit < n:
        idx = np.sort(
            np.asarray(jax.random.permutation(jax.random.key(1), n))[: config.train_limit]
        )
    perm = np.asarray(jax.random.permutation(jax.random.key(2), len(te["label"])))
    return {
        "train_x": tr["image"][idx].astype(np.float32) / 255.0,
        "train_y": tr["label"][idx].astype(np.int32),
        "test_x": te["image"][perm].astype(np.float32) / 255.0,
        "test_y": te["label"][perm].astype(np.int32),
    }


def invariance_examples(x, y, pool_x, pool_y, *, eps, config, exclude_self: bool, chunk=100):
    """Our invariance attack over ``x`` in chunks, with the 1-NN oracle's verdict."""
    transforms = ot_robust.affine_grid(
        max_shift=config.inv_max_shift,
        shift_step=config.inv_shift_step,
        max_angle=config.inv_max_angle,
        angle_step=config.inv_angle_step,
    )
    attack = jax.jit(
        functools.partial(
            ot_robust.invariance_attack, eps=eps, transforms=transforms, select=config.inv_select
        )
    )
    oracle = jax.jit(ot_robust.nearest_neighbour_labels)
    px, py = jnp.asarray(pool_x), jnp.asarray(pool_y)
    out = {"x_adv": [], "target": [], "oracle": []}
    for s in range(0, len(y), chunk):
        xb, yb = jnp.asarray(x[s : s + chunk]), jnp.asarray(y[s : s + chunk])
        r = attack(xb, yb, px, py)
        excl = jnp.arange(s, s + len(yb)) if exclude_self else None
        out["x_adv"].append(np.asarray(r.x_adv))
        out["target"].append(np.asarray(r.target))
        out["oracle"].append(np.asarray(oracle(r.x_adv, px, py, exclude=excl)))
    return {k: np.concatenate(v) for k, v in out.items()}


def _accuracy(apply_fn, params, x, y) -> float:
    f = jax.jit(lambda p, xb: jnp.argmax(apply_fn(p, xb), -1))
    pred = np.concatenate(
        [
            np.asarray(f(params, jnp.asarray(x[s : s + EVAL_BATCH])))
            for s in range(0, len(y), EVAL_BATCH)
        ]
    )
    return float(np.mean(pred == y))


@functools.cache
def _attack_fns(model, eps, pgd_steps, apgd_steps):
    apply_fn = model.apply
    pgd = jax.jit(
        functools.partial(
            ot_robust.pgd_attack, apply_fn, eps=eps, step_size=2.5 * eps / pgd_steps,
            num_steps=pgd_steps,
        )
    )  # fmt: skip
    apgd = jax.jit(functools.partial(ot_robust.apgd_ce, apply_fn, eps=eps, num_steps=apgd_steps))
    fgsm = jax.jit(functools.partial(ot_robust.fgsm, apply_fn, eps=eps))
    return pgd, apgd, fgsm


def evaluate(model, params, key, data, inv, tramer, config) -> dict:
    """Clean, PGD, APGD and FGSM accuracies; invariance agreement (Tramer's human labels and our
    attack's oracle-confirmed targets)."""
    x, y = data["test_x"][: config.eval_limit], data["test_y"][: config.eval_limit]
    out = {"clean": _accuracy(model.apply, params, x, y)}
    for i, eps in enumerate(config.eval_eps):
        pgd, apgd, fgsm = _attack_fns(model, float(eps), config.pgd_steps, config.apgd_steps)
        advs = {"pgd": [], "apgd": [], "fgsm": []}
        for s in range(0, len(y), EVAL_BATCH):
            xb, yb = jnp.asarray(x[s : s + EVAL_BATCH]), jnp.asarray(y[s : s + EVAL_BATCH])
            k = jax.random.fold_in(jax.random.fold_in(key, i), s)
            advs["pgd"].append(np.asarray(pgd(params, k, xb, yb)))
            advs["apgd"].append(np.asarray(apgd(params, k, xb, yb)))
            advs["fgsm"].append(np.asarray(fgsm(params, xb, yb)))
        for name, v in advs.items():
            out[f"{name}@{eps:g}"] = _accuracy(model.apply, params, np.concatenate(v), y)
    for eps, d in inv.items():  # our invariance examples: agreement with the oracle's target
        keep = d["oracle"] == d["target"]
        out[f"inv_ours@{eps}"] = (
            _accuracy(model.apply, params, d["x_adv"][keep], d["target"][keep])
            if keep.any()
            else float("nan")
        )
        out[f"inv_ours_source@{eps}"] = (
            _accuracy(model.apply, params, d["x_adv"][keep], d["source"][keep])
            if keep.any()
            else float("nan")
        )
    for split, d in tramer.items():
        out[f"tramer_{split}"] = _accuracy(model.apply, params, d["adversarial"], d["human_label"])
        if split == "linf_eps03":
            out["tramer_clean"] = _accuracy(model.apply, params, d["clean"], d["label"])
    return out


def _summary(values: list[float]) -> dict:
    v = np.asarray(values, np.float64)
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
            "per_seed": v.tolist()}  # fmt: skip


def train_and_evaluate(config, workdir: pathlib.Path, runtime: Runtime | None = None) -> dict:
    del runtime
    workdir = pathlib.Path(workdir)
    data = load_data(config)
    pool_n = config.inv_pool or len(data["train_y"])
    pool_x, pool_y = data["train_x"][:pool_n], data["train_y"][:pool_n]
    arrays = _npz_items(workdir / "arrays")
    logging.info("invariance partners of %d training images", len(data["train_y"]))
    inv_train = arrays.get(
        "inv_train",
        lambda: invariance_examples(
            data["train_x"], data["train_y"], pool_x, pool_y, eps=config.eps, config=config,
            exclude_self=True,
        ),
    )  # fmt: skip
    inv_train_rate = float(np.mean(inv_train["oracle"] == inv_train["target"]))
    n_inv = min(config.inv_eval_limit, len(data["test_y"]))
    inv = {}
    for eps in config.inv_eps:
        d = arrays.get(
            f"inv_test_eps{eps:g}",
            lambda eps=eps: invariance_examples(
                data["test_x"][:n_inv], data["test_y"][:n_inv], pool_x, pool_y, eps=eps,
                config=config, exclude_self=False,
            ),
        )  # fmt: skip
        d["source"] = data["test_y"][:n_inv]
        inv[f"{eps:g}"] = d
    tramer = {}
    if config.tramer and config.dataset == "mnist_5k":
        for split in ("linf_eps03", "linf_eps04", "l0"):
            tramer[split] = datasets.load("mnist_invariance", split)

    model = ot_robust.EmbedCNN(features=tuple(config.features), embed_dim=config.embed_dim)
    train_data = {
        "image": data["train_x"],
        "label": data["train_y"],
        "inv_image": inv_train["x_adv"].astype(np.float32),
        "inv_label": inv_train["target"].astype(np.int32),
        "inv_weight": (inv_train["oracle"] == inv_train["target"]).astype(np.float32),
    }
    steps_per_epoch = len(data["train_y"]) // config.batch_size
    num_steps = steps_per_epoch * config.num_epochs
    ramp = max(1, int(config.eps_warmup * num_steps))
    evals = _json_items(workdir / "evals")
    per_run: dict[str, dict[str, dict]] = {}
    # methods outer, seeds inner: a run cut short still has every seed of the first methods
    for method in config.methods:
        for seed in range(config.num_seeds):
            key = jax.random.fold_in(jax.random.key(config.seed), seed)
            k_init, k_batch, k_train, k_eval = jax.random.split(key, 4)
            batches = core_train.epoch_batches(train_data, config.batch_size, k_batch)

            def batch_fn(step, batches=batches):
                b = batches(step)
                e = config.eps * min(1.0, (step + 1) / ramp)
                return {**b, "eps": np.full((config.batch_size,), e, np.float32)}

            name = f"{method}_s{seed}"

            def run(method=method, name=name, k_init=k_init, k_train=k_train, k_eval=k_eval,
                    batch_fn=batch_fn):  # fmt: skip
                params = model.init(k_init, data["train_x"][:1])
                dcfg = ot_robust.DefenceConfig(
                    method=method, num_steps=config.train_pgd_steps,
                    trades_beta=config.trades_beta, ot_weight=config.ot_weight,
                    ot_epsilon=config.ot_epsilon, label_cost=config.label_cost,
                )  # fmt: skip
                state, _ = core_train.fit(
                    params, tx=optax.adam(config.learning_rate),
                    loss_fn=ot_robust.make_loss_fn(model, dcfg), batch_fn=batch_fn,
                    key=k_train, workdir=workdir / "runs" / name, num_steps=num_steps,
                    log_every=max(1, steps_per_epoch), checkpoint_every=steps_per_epoch,
                    max_to_keep=1, progress=config.progress, desc=name,
                )  # fmt: skip
                logging.info("evaluating %s", name)
                return evaluate(model, state.params, k_eval, data, inv, tramer, config)

            per_run.setdefault(method, {})[name] = evals.get(name, run)
            logging.info("%s: %s", name, per_run[method][name])

    metric_names = list(next(iter(next(iter(per_run.values())).values())))
    table = {
        m: {k: _summary([r[k] for r in runs.values()]) for k in metric_names}
        for m, runs in per_run.items()
    }
    paired = {}
    if "ot_inv" in per_run and "pgd_at" in per_run:
        for ref in ("pgd_at", "ot_sens", "trades"):
            if ref not in per_run:
                continue
            paired[f"ot_inv-{ref}"] = {}
            for k in metric_names:
                diffs = [
                    per_run["ot_inv"][f"ot_inv_s{s}"][k] - per_run[ref][f"{ref}_s{s}"][k]
                    for s in range(config.num_seeds)
                ]
                paired[f"ot_inv-{ref}"][k] = {
                    **_summary(diffs), "wins": int(sum(d > 0 for d in diffs)),
                    "losses": int(sum(d < 0 for d in diffs)),
                }  # fmt: skip
    checks = _attack_checks(per_run, config)
    plots = _plots(workdir, table, config, inv, data)
    return {
        "dataset": config.dataset,
        "num_train": len(data["train_y"]),
        "num_eval": int(min(config.eval_limit, len(data["test_y"]))),
        "num_steps": num_steps,
        "inv_train_oracle_rate": inv_train_rate,
        "inv_test_oracle_rate": {
            e: float(np.mean(d["oracle"] == d["target"])) for e, d in inv.items()
        },
        "table": table,
        "paired": paired,
        "per_run": per_run,
        "attack_checks": checks,
        "plots": plots,
    }


def _attack_checks(per_run, config) -> dict:
    """APGD never above PGD, PGD never above FGSM (per model and radius)."""
    apgd_le_pgd, pgd_le_fgsm, n = 0, 0, 0
    for runs in per_run.values():
        for r in runs.values():
            for eps in config.eval_eps:
                n += 1
                apgd_le_pgd += r[f"apgd@{eps:g}"] <= r[f"pgd@{eps:g}"]
                pgd_le_fgsm += r[f"pgd@{eps:g}"] <= r[f"fgsm@{eps:g}"]
    return {"apgd_le_pgd": int(apgd_le_pgd), "pgd_le_fgsm": int(pgd_le_fgsm), "cases": n}


def _plots(workdir, table, config, inv, data) -> list[str]:
    out = []
    fig, ax = plotting.subplots(1, 2, figsize=(10, 3.8))
    eps = list(config.eval_eps)
    for m, t in table.items():
        for attack, style in (("pgd", "--"), ("apgd", "-")):
            ys = [t["clean"]["mean"]] + [t[f"{attack}@{e:g}"]["mean"] for e in eps]
            ax[0].plot([0.0] + eps, ys, style, marker="o", label=f"{m} {attack}")
    ax[0].set_xlabel("l_inf eps")
    ax[0].set_ylabel("accuracy (mean over seeds)")
    ax[0].set_title(f"sensitivity robustness ({config.dataset})")
    ax[0].legend(fontsize=6)
    names = [k for k in next(iter(table.values())) if k.startswith(("tramer_l", "inv_ours@"))]
    width = 0.8 / max(1, len(table))
    for i, (m, t) in enumerate(table.items()):
        xs = np.arange(len(names)) + i * width
        ax[1].bar(xs, [t[k]["mean"] for k in names], width,
                  yerr=[t[k]["std"] for k in names], label=m)  # fmt: skip
    ax[1].set_xticks(np.arange(len(names)) + 0.4 - width / 2)
    ax[1].set_xticklabels(names, rotation=20, fontsize=7)
    ax[1].set_ylabel("agreement with the human / oracle label")
    ax[1].set_title("invariance robustness")
    ax[1].legend(fontsize=6)
    plotting.save(fig, workdir / "robustness.png")
    out.append("robustness.png")
    if inv:
        d = next(iter(inv.values()))
        e = next(iter(inv))
        fig, ax = plotting.subplots(2, 8, figsize=(10, 3))
        for j in range(8):
            ax[0, j].imshow(data["test_x"][j, ..., 0], cmap="gray", vmin=0, vmax=1)
            ax[0, j].set_title(f"y={data['test_y'][j]}", fontsize=7)
            ax[1, j].imshow(d["x_adv"][j, ..., 0], cmap="gray", vmin=0, vmax=1)
            ax[1, j].set_title(f"t={d['target'][j]} nn={d['oracle'][j]}", fontsize=7)
            ax[0, j].axis("off")
            ax[1, j].axis("off")
        fig.suptitle(f"our invariance attack, l_inf eps {e}")
        plotting.save(fig, workdir / "invariance_examples.png")
        out.append("invariance_examples.png")
    return out
