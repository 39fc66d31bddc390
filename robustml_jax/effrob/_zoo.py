"""A model zoo on real sentiment data: many cheap classifiers trained at once with vmap.

Every model is a bag-of-n-grams classifier (linear, or a one-hidden-layer MLP) on hashed
features of Blitzer multi-domain reviews. Models differ in training distribution (domain A,
domain B, or an A/B mixture), training-set size, L2 strength, number of hashed features used
(model size) and training length (snapshots). All models of one architecture share a stacked
parameter pytree; one loss sums their independent per-model losses, so its gradient w.r.t. a
model's slice is that model's own gradient and one ``jit``-ed step (the shared
``core.train.train_loop``, checkpointed and resumable) trains them all.

Shapes: M = models, N = training pool, D = hashed features, H = hidden units.
"""

from __future__ import annotations

import dataclasses
import io
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from robustml_jax.core import datasets, train
from robustml_jax.core.checkpoint import Checkpointer
from robustml_jax.core.results import atomic_write_bytes
from robustml_jax.effrob._evaluate import batched_correct
from robustml_jax.effrob._features import hashed_ngrams
from robustml_jax.effrob._table import AccuracyTable

__all__ = [
    "BowClassifier",
    "ZooModel",
    "load_sentiment_sets",
    "mask_features",
    "model_grid",
    "train_zoo",
]


class BowClassifier(nn.Module):
    """Binary classifier on bag-of-n-gram features: one logit per example.

    Attributes:
      hidden: H; 0 gives logistic regression.
    """

    hidden: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.hidden:
            x = nn.relu(nn.Dense(self.hidden, name="hidden")(x))
        return nn.Dense(1, name="out")(x)[..., 0]


@dataclasses.dataclass(frozen=True)
class ZooModel:
    """One zoo member's recipe."""

    arch: str  # "linear" or "mlp<H>"
    mix: float  # fraction of training examples from domain A (1: A only, 0: B only)
    num_train: int
    l2: float
    feat_dim: int  # the model uses hashed features [0, feat_dim)

    def group(self, domains: Sequence[str]) -> str:
        if self.mix >= 1.0:
            return domains[0]
        if self.mix <= 0.0:
            return domains[1]
        return f"{domains[0]}+{domains[1]}"

    @property
    def name(self) -> str:
        return f"{self.arch}_mix{self.mix:g}_n{self.num_train}_l2{self.l2:g}_d{self.feat_dim}"


def _hidden(arch: str) -> int:
    if arch == "linear":
        return 0
    if arch.startswith("mlp") and arch[3:].isdigit():
        return int(arch[3:])
    raise ValueError(f"unknown zoo architecture '{arch}' (use 'linear' or 'mlp<H>')")


def model_grid(zoo_config) -> list[ZooModel]:
    """The cross product of the config's recipe axes."""
    return [
        ZooModel(a, float(m), int(n), float(l2), int(d))
        for a in zoo_config.archs
        for m in zoo_config.mixes
        for n in zoo_config.train_sizes
        for l2 in zoo_config.l2s
        for d in zoo_config.feat_dims
    ]


def _dedupe(d: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    seen: dict[str, int] = {}
    for i, t in enumerate(d["text"]):
        seen.setdefault(t, i)
    idx = np.array(sorted(seen.values()))
    return [d["text"][i] for i in idx], np.asarray(d["label"])[idx]


def load_sentiment_sets(config, key: jax.Array) -> dict[str, Any]:
    """Real text sets: for each ID domain a train pool and a held-out ID test split; OOD sets.

    Blitzer's ``test-labeled`` is ``train + dev`` of the domain, so each ID domain's 2,000
    labelled reviews (deduplicated) are split here: ``id_test_size`` for the ID test set, the
    rest for training. OOD sets: other Blitzer domains (all labelled reviews), SST-2 dev, MR
    (subsampled to ``mr_max`` rows).

    Returns:
      {"train": {domain: (texts, labels)}, "test": {set name: (texts, labels)}}.
    """
    train_sets, test_sets = {}, {}
    for i, dom in enumerate(config.id_domains):
        texts, labels = _dedupe(datasets.load(f"blitzer_{dom}", "test-labeled"))
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, i), len(texts)))
        te, tr = perm[: config.id_test_size], perm[config.id_test_size :]
        test_sets[dom] = ([texts[j] for j in te], labels[te])
        train_sets[dom] = ([texts[j] for j in tr], labels[tr])
    for name in config.ood_sets:
        if name == "sst2":
            d = datasets.load("sst2", "dev")
            test_sets[name] = (d["text"], np.asarray(d["label"]))
        elif name == "mr":
            d = datasets.load("mr", "all")
            perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 99), len(d["text"])))
            keep = np.sort(perm[: config.mr_max])
            test_sets[name] = ([d["text"][j] for j in keep], np.asarray(d["label"])[keep])
        else:
            test_sets[name] = _dedupe(datasets.load(f"blitzer_{name}", "test-labeled"))
    return {"train": train_sets, "test": test_sets}


def _example_weights(models: Sequence[ZooModel], pool_domain: np.ndarray, key) -> np.ndarray:
    """[N, M] 0/1 membership of pool examples in each model's training set.

    Model m draws ``round(mix * num_train)`` examples of domain 0 and the rest of domain 1,
    without replacement, with key ``fold_in(key, m)``.
    """
    w = np.zeros((len(pool_domain), len(models)), np.float32)
    for m, spec in enumerate(models):
        k0, k1 = jax.random.split(jax.random.fold_in(key, m))
        n_a = round(spec.mix * spec.num_train)
        for dom, k, n in ((0, k0, n_a), (1, k1, spec.num_train - n_a)):
            idx = np.flatnonzero(pool_domain == dom)
            if n > len(idx):
                raise ValueError(
                    f"model {spec.name} wants {n} training examples of domain {dom}, "
                    f"the pool has {len(idx)}"
                )
            pick = np.asarray(jax.random.permutation(k, len(idx)))[:n]
            w[idx[pick], m] = 1.0
    return w


def mask_features(params, mask: jax.Array):
    """Zeroes the first layer's input rows outside ``mask`` ([D] 0/1): the model then uses only
    hashed features [0, feat_dim). Masking the kernel, not the input, keeps the vmapped forward
    pass a batched matmul instead of materialising an [M, N, D] masked input."""
    first = "hidden" if "hidden" in params else "out"
    layer = dict(params[first])
    layer["kernel"] = layer["kernel"] * mask[:, None]
    return {**params, first: layer}


def _make_loss(model: BowClassifier, masks: jax.Array, l2s: jax.Array):
    """Sum over models of (weighted mean logistic loss + l2 * ||kernels||^2)."""

    def per_model(params, mask, l2, x, y, w):
        params = mask_features(params, mask)
        logits = model.apply({"params": params}, x)
        nll = optax.sigmoid_binary_cross_entropy(logits, y.astype(logits.dtype))
        data = jnp.sum(w * nll) / jnp.maximum(jnp.sum(w), 1.0)
        reg = sum(jnp.sum(p**2) for _, p in _kernels(params))
        acc = jnp.sum(w * ((logits > 0) == (y == 1))) / jnp.maximum(jnp.sum(w), 1.0)
        return data + l2 * reg, (data, acc)

    def loss_fn(params, batch, rng):
        del rng  # full-batch, deterministic
        total, (data, acc) = jax.vmap(per_model, in_axes=(0, 0, 0, None, None, 1))(
            params, masks, l2s, batch["x"], batch["y"], batch["w"]
        )
        return jnp.sum(total), {"mean_data_loss": data.mean(), "mean_train_acc": acc.mean()}

    return loss_fn


def _kernels(params):
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return [(p, v) for p, v in flat if "kernel" in jax.tree_util.keystr(p)]


def _savez(path: pathlib.Path, arrays: Mapping[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def train_zoo(
    config, workdir: pathlib.Path, key: jax.Array, *, mesh=None, progress: bool = True
) -> tuple[AccuracyTable, dict[str, np.ndarray]]:
    """Trains (or resumes) the zoo and evaluates every snapshot on every test set.

    Each architecture trains in ``workdir/<arch>`` with the shared train loop; training runs in
    phases ending at each of ``config.snapshots`` steps, and every phase's per-example
    correctness is saved (``snapshot_<steps>.npz``) before the next starts, so a killed run
    resumes from the last checkpoint and no finished phase is recomputed. A snapshot file lost
    after training moved on is rebuilt from the checkpoint at exactly its step (snapshot steps
    should be multiples of ``checkpoint_every`` and within ``max_to_keep`` of the end).

    Returns:
      The accuracy table (ID sets = ``config.id_domains``, OOD = ``config.ood_sets``) and the
      per-example correctness {set name: bool [M, N]} for bootstrapping.
    """
    workdir = pathlib.Path(workdir)
    data_key, weight_key, init_key, train_key = jax.random.split(key, 4)
    sets = load_sentiment_sets(config, data_key)
    doms = list(config.id_domains)
    feats = {n: hashed_ngrams(t, dim=config.hash_dim) for n, (t, _) in sets["test"].items()}
    test = {n: (feats[n], sets["test"][n][1]) for n in sets["test"]}
    pool_x = np.concatenate([hashed_ngrams(sets["train"][d][0], dim=config.hash_dim) for d in doms])
    pool_y = np.concatenate([sets["train"][d][1] for d in doms]).astype(np.int32)
    pool_dom = np.concatenate([np.full(len(sets["train"][d][1]), i) for i, d in enumerate(doms)])
    # Pad the pool to a multiple of 8 rows (weight 0 in every model) so it splits over devices.
    pad = (-len(pool_y)) % 8
    pool_x = np.concatenate([pool_x, np.zeros((pad, pool_x.shape[1]), pool_x.dtype)])
    pool_y = np.concatenate([pool_y, np.zeros(pad, pool_y.dtype)])
    pool_dom = np.concatenate([pool_dom, np.full(pad, -1)])
    logging.info(
        "zoo: train pool %d, test sets %s", len(pool_y), {n: len(v[1]) for n, v in test.items()}
    )

    names, groups, correct_parts = [], [], []
    for a_i, arch in enumerate(config.archs):
        specs = [s for s in model_grid(config) if s.arch == arch]
        hidden = _hidden(arch)
        model = BowClassifier(hidden=hidden)
        keys = jax.random.split(jax.random.fold_in(init_key, a_i), len(specs))
        x0 = jnp.zeros((1, config.hash_dim), jnp.float32)
        params = jax.vmap(lambda k, model=model, x0=x0: model.init(k, x0)["params"])(keys)
        masks = jnp.asarray(
            np.arange(config.hash_dim)[None, :] < np.array([s.feat_dim for s in specs])[:, None],
            jnp.float32,
        )
        l2s = jnp.asarray([s.l2 for s in specs], jnp.float32)
        w = _example_weights(specs, pool_dom, jax.random.fold_in(weight_key, a_i))
        batch = {"x": pool_x, "y": pool_y, "w": w}
        tx = optax.adam(config.learning_rate)
        state = train.create_train_state(params, tx)
        loss_fn = _make_loss(model, masks, l2s)
        arch_dir = workdir / arch

        def apply_fn(pm, x, model=model):
            return model.apply({"params": mask_features(pm[0], pm[1])}, x)

        for steps in config.snapshots:
            snap = arch_dir / f"snapshot_{steps}.npz"
            ckpt_dir = arch_dir / "checkpoints"
            done = []
            if not snap.exists() and ckpt_dir.exists():
                ckpt = Checkpointer(ckpt_dir)
                done = ckpt.all_steps()
                ckpt.close()
            if done and max(done) > steps:
                # Training went past this snapshot (its file was lost): evaluate the checkpoint
                # saved at exactly this step, never a later one.
                if steps not in done:
                    raise RuntimeError(
                        f"{snap} is missing and training in {arch_dir} is past step {steps} "
                        f"with no checkpoint at that step (have {done}); delete {arch_dir} to "
                        "retrain this architecture"
                    )
                ckpt = Checkpointer(ckpt_dir)
                restored = ckpt.restore(state, step=int(steps))
                ckpt.close()
                corr = batched_correct(apply_fn, (restored.params, masks), test, mesh=mesh)
                _savez(snap, {n: np.packbits(c, axis=1) for n, c in corr.items()})
            if not snap.exists():
                loop = train.LoopConfig(
                    num_steps=int(steps),
                    log_every=config.log_every,
                    checkpoint_every=config.checkpoint_every,
                    progress=progress,
                )
                state, _ = train.train_loop(
                    state,
                    loss_fn=loss_fn,
                    tx=tx,
                    batch_fn=lambda step, batch=batch: batch,
                    key=jax.random.fold_in(train_key, a_i),
                    workdir=arch_dir,
                    config=loop,
                    mesh=mesh,
                    desc=f"zoo {arch} to step {steps}",
                )
                corr = batched_correct(apply_fn, (state.params, masks), test, mesh=mesh)
                _savez(snap, {n: np.packbits(c, axis=1) for n, c in corr.items()})
            z = np.load(snap)
            corr = {
                n: np.unpackbits(z[n], axis=1, count=len(test[n][1])).astype(bool) for n in test
            }
            correct_parts.append(corr)
            names += [f"{s.name}@{steps}" for s in specs]
            groups += [s.group(doms) for s in specs]
    correct = {n: np.concatenate([c[n] for c in correct_parts]) for n in test}
    acc = {n: c.mean(axis=1) for n, c in correct.items()}
    table = AccuracyTable(
        names=tuple(names),
        groups=tuple(groups),
        id_names=tuple(doms),
        id_acc=np.stack([acc[d] for d in doms], axis=1),
        ood_names=tuple(config.ood_sets),
        ood_acc=np.stack([acc[o] for o in config.ood_sets], axis=1),
    )
    return table, correct
