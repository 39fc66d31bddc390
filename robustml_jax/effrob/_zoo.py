"""A model zoo on real sentiment data: many cheap classifiers trained at once with vmap.

Every model is a bag-of-n-grams classifier (linear, or a one-hidden-layer MLP) on hashed
features of Blitzer multi-domain reviews. Models differ in training distribution (domain A,
domain B, or an A/B mixture), training-set size, L2 strength, number of hashed features used
(model size) and training length (snapshots). All models of one architecture are trained
together by the shared scan trainer (``core.train.train_many``: full-batch Adam inside one
``lax.scan``, vmapped over the models), each model with its own training-set weights, feature
mask and L2 strength as per-model hyper-parameters.

Each (architecture, snapshot) is one resumable work item (``core.workitems.WorkItems``): the
models are trained from their initial parameters to the snapshot's step count and their
per-example correctness on every test set is saved, so a killed run keeps every finished item.

Shapes: M = models, N = training pool, D = hashed features, H = hidden units, S = steps.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec

from robustml_jax.core import datasets, metrics, sharding, train
from robustml_jax.core.results import MetricsLogger
from robustml_jax.core.workitems import WorkItems
from robustml_jax.effrob._features import hashed_ngrams
from robustml_jax.effrob._table import AccuracyTable

__all__ = [
    "BowClassifier",
    "ZooModel",
    "load_sentiment_sets",
    "mask_features",
    "model_grid",
    "train_zoo",
    "train_zoo_models",
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


def model_grid(
    *,
    archs: Sequence[str],
    mixes: Sequence[float],
    train_sizes: Sequence[int],
    l2s: Sequence[float],
    feat_dims: Sequence[int],
) -> list[ZooModel]:
    """The cross product of the recipe axes (architecture outermost)."""
    return [
        ZooModel(a, float(m), int(n), float(l2), int(d))
        for a in archs
        for m in mixes
        for n in train_sizes
        for l2 in l2s
        for d in feat_dims
    ]


def _dedupe(d: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    seen: dict[str, int] = {}
    for i, t in enumerate(d["text"]):
        seen.setdefault(t, i)
    idx = np.array(sorted(seen.values()))
    return [d["text"][i] for i in idx], np.asarray(d["label"])[idx]


def load_sentiment_sets(
    key: jax.Array,
    *,
    id_domains: Sequence[str],
    ood_sets: Sequence[str],
    id_test_size: int,
    mr_max: int,
) -> dict[str, Any]:
    """Real text sets: for each ID domain a train pool and a held-out ID test split; OOD sets.

    Blitzer's ``test-labeled`` is ``train + dev`` of the domain, so each ID domain's 2,000
    labelled reviews (deduplicated) are split here: ``id_test_size`` for the ID test set, the
    rest for training. OOD sets: other Blitzer domains (all labelled reviews), SST-2 dev, MR
    (subsampled to ``mr_max`` rows).

    Returns:
      {"train": {domain: (texts, labels)}, "test": {set name: (texts, labels)}}.
    """
    train_sets, test_sets = {}, {}
    for i, dom in enumerate(id_domains):
        texts, labels = _dedupe(datasets.load(f"blitzer_{dom}", "test-labeled"))
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, i), len(texts)))
        te, tr = perm[:id_test_size], perm[id_test_size:]
        test_sets[dom] = ([texts[j] for j in te], labels[te])
        train_sets[dom] = ([texts[j] for j in tr], labels[tr])
    for name in ood_sets:
        if name == "sst2":
            d = datasets.load("sst2", "dev")
            test_sets[name] = (d["text"], np.asarray(d["label"]))
        elif name == "mr":
            d = datasets.load("mr", "all")
            perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 99), len(d["text"])))
            keep = np.sort(perm[:mr_max])
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


def _kernels(params):
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return [(p, v) for p, v in flat if "kernel" in jax.tree_util.keystr(p)]


def model_loss(params, x: jax.Array, y: jax.Array, *, hidden: int, mask, l2, weights):
    """One zoo model's objective: weighted mean logistic loss + ``l2`` * ||kernels||^2.

    Args:
      params: one model's parameters.
      x: [N, D] features; y: int [N] labels in {0, 1}.
      hidden: H (static).
      mask: [D] 0/1 features the model may use; l2: []; weights: [N] 0/1 training-set
        membership.
    """
    params = mask_features(params, mask)
    logits = BowClassifier(hidden=hidden).apply({"params": params}, x)
    nll = optax.sigmoid_binary_cross_entropy(logits, y.astype(logits.dtype))
    data = jnp.sum(weights * nll) / jnp.maximum(jnp.sum(weights), 1.0)
    return data + l2 * sum(jnp.sum(p**2) for _, p in _kernels(params))


def train_zoo_models(
    keys: jax.Array,
    hparams: Mapping[str, Any],
    x: jax.Array,
    y: jax.Array,
    *,
    hidden: int,
    learning_rate: float,
    num_steps: int,
) -> tuple[Any, jax.Array]:
    """Trains M zoo models of one architecture with full-batch Adam (pure; the caller jits).

    ``core.train.train_many`` lifted with ``vmap``: the models start from the given parameters
    (so every snapshot of a model starts from the same point) and see the whole pool every step.

    Args:
      keys: [M] PRNG keys (the objective is deterministic; kept for the trainer's interface).
      hparams: {"init": params [M, ...], "mask": [M, D], "l2": [M], "weights": [M, N]}.
      x: [N, D] pooled training features; y: int [N] labels.
      hidden: H; learning_rate: Adam's step size; num_steps: S (all static).

    Returns:
      (trained params [M, ...], training losses [M, S]).
    """

    def loss_fn(params, step_input, key, hp):
        del step_input, key  # full-batch and deterministic
        return model_loss(
            params, x, y, hidden=hidden, mask=hp["mask"], l2=hp["l2"], weights=hp["weights"]
        )

    return train.train_many(
        keys,
        hparams,
        lift="vmap",
        init_fn=lambda key, hp: hp["init"],
        loss_fn=loss_fn,
        make_tx=lambda hp: optax.adam(learning_rate),
        num_steps=num_steps,
    )


_train_jit = jax.jit(train_zoo_models, static_argnames=("hidden", "learning_rate", "num_steps"))


@functools.lru_cache(maxsize=8)
def _masked_apply(hidden: int):
    """``apply_fn((params, mask), x)`` of one masked model (cached: one compile per arch)."""
    model = BowClassifier(hidden=hidden)
    return lambda pm, x: model.apply({"params": mask_features(pm[0], pm[1])}, x)


def _save_item(folder: pathlib.Path, item: Mapping[str, np.ndarray]) -> None:
    folder.mkdir(parents=True)
    np.savez_compressed(folder / "item.npz", **item)


def _load_item(folder: pathlib.Path) -> dict[str, np.ndarray]:
    with np.load(folder / "item.npz") as z:
        return dict(z)


def train_zoo(
    key: jax.Array,
    *,
    workdir: str | pathlib.Path,
    id_domains: Sequence[str],
    ood_sets: Sequence[str],
    id_test_size: int,
    mr_max: int,
    hash_dim: int,
    archs: Sequence[str],
    mixes: Sequence[float],
    train_sizes: Sequence[int],
    l2s: Sequence[float],
    feat_dims: Sequence[int],
    snapshots: Sequence[int],
    learning_rate: float,
    log_every: int = 10,
    features: str = "hashed",
    embed_fn: Callable[[list[str]], np.ndarray] | None = None,
    mesh=None,
    progress: bool = True,
) -> tuple[AccuracyTable, dict[str, np.ndarray]]:
    """Trains (or resumes) the zoo and evaluates every snapshot on every test set.

    Work items ``workdir/snapshots/<arch>_step<S>`` hold the packed per-example correctness of
    that architecture's models after S steps; complete items are loaded, missing ones trained
    from the initial parameters and saved atomically. The longest snapshot's mean training loss
    goes to ``workdir/<arch>/metrics.jsonl`` (and TensorBoard) every ``log_every`` steps.

    Args:
      key: PRNG key of the zoo (data split, training-set draws, initialisation).
      workdir: folder of the work items and training logs.
      id_domains: the two Blitzer domains models are trained on (ID test sets).
      ood_sets: OOD test sets (Blitzer domains, "sst2", "mr").
      id_test_size: ID test examples per domain; mr_max: MR examples kept.
      hash_dim: D, hashed n-gram features (``features="hashed"``).
      archs, mixes, train_sizes, l2s, feat_dims: the recipe grid (:func:`model_grid`).
      snapshots: step counts at which every model is evaluated.
      learning_rate: Adam's step size.
      features: "hashed" (signed hashed 1-2-grams) or the name of ``embed_fn``'s features
        (e.g. "minilm"); model size ``feat_dims`` then masks the first embedding dimensions.
      embed_fn: ``embed_fn(texts) -> float [N, D]`` sentence embeddings (e.g. frozen MiniLM)
        for ``features != "hashed"``; cached on disk as work items under
        ``workdir/features``, keyed by the texts, so a re-run does not re-encode.
      mesh: devices; the model axis is sharded over them when it divides (default: all).
      progress: show a progress bar over work items.

    Returns:
      The accuracy table (ID sets = ``id_domains``, OOD = ``ood_sets``; model names
      ``<recipe>@<steps>``, clusters = recipes: a training run's snapshots are one cluster) and
      the per-example correctness {set name: bool [M, N]}.
    """
    workdir = pathlib.Path(workdir)
    data_key, weight_key, init_key, train_key = jax.random.split(key, 4)
    sets = load_sentiment_sets(
        data_key, id_domains=id_domains, ood_sets=ood_sets, id_test_size=id_test_size, mr_max=mr_max
    )
    doms = list(id_domains)
    featurize = _featurizer(features, hash_dim, embed_fn, workdir / "features")
    test = {n: (featurize(n, t), y) for n, (t, y) in sets["test"].items()}
    pool_x = np.concatenate([featurize(f"train_{d}", sets["train"][d][0]) for d in doms])
    dim = pool_x.shape[1]
    if max(feat_dims) > dim:
        raise ValueError(f"feat_dims {tuple(feat_dims)} exceed the {dim} {features} features")
    pool_y = np.concatenate([sets["train"][d][1] for d in doms]).astype(np.int32)
    pool_dom = np.concatenate([np.full(len(sets["train"][d][1]), i) for i, d in enumerate(doms)])
    logging.info(
        "zoo: train pool %d, test sets %s", len(pool_y), {n: len(v[1]) for n, v in test.items()}
    )
    grid = model_grid(
        archs=archs, mixes=mixes, train_sizes=train_sizes, l2s=l2s, feat_dims=feat_dims
    )
    mesh = mesh if mesh is not None else sharding.data_mesh()
    items = WorkItems(workdir / "snapshots", save=_save_item, load=_load_item)
    todo = [(a_i, arch, int(s)) for a_i, arch in enumerate(archs) for s in snapshots]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="zoo items", leave=False)

    names, groups, runs, parts = [], [], [], []
    longest = max(int(s) for s in snapshots)
    for a_i, arch in enumerate(archs):
        specs = [s for s in grid if s.arch == arch]
        hidden = _hidden(arch)
        model = BowClassifier(hidden=hidden)
        init_keys = jax.random.split(jax.random.fold_in(init_key, a_i), len(specs))
        x0 = jnp.zeros((1, dim), jnp.float32)
        masks = np.arange(dim)[None, :] < np.array([s.feat_dim for s in specs])[:, None]
        hparams = {
            "init": jax.vmap(lambda k, model=model, x0=x0: model.init(k, x0)["params"])(init_keys),
            "mask": jnp.asarray(masks, jnp.float32),
            "l2": jnp.asarray([s.l2 for s in specs], jnp.float32),
            "weights": jnp.asarray(
                _example_weights(specs, pool_dom, jax.random.fold_in(weight_key, a_i)).T
            ),
        }
        keys = jax.random.split(jax.random.fold_in(train_key, a_i), len(specs))
        if mesh.devices.size > 1 and len(specs) % mesh.devices.size == 0:
            by_model = NamedSharding(mesh, PartitionSpec(sharding.DATA_AXIS))
            hparams, keys = jax.device_put((hparams, keys), by_model)

        def compute(steps, hidden=hidden, hparams=hparams, keys=keys):
            params, losses = _train_jit(
                keys,
                hparams,
                jnp.asarray(pool_x),
                jnp.asarray(pool_y),
                hidden=hidden,
                learning_rate=float(learning_rate),
                num_steps=steps,
            )
            corr = metrics.stacked_correct(
                (params, hparams["mask"]), test, apply_fn=_masked_apply(hidden), mesh=mesh
            )
            packed = {f"correct/{n}": np.packbits(c, axis=1) for n, c in corr.items()}
            return {**packed, "loss": np.asarray(losses).mean(axis=0)}

        for steps in snapshots:
            steps = int(steps)
            item = items.get(f"{arch}_step{steps}", functools.partial(compute, steps))
            if steps == longest:
                _log_losses(workdir / arch, item["loss"], log_every)
            parts.append(
                {
                    n: np.unpackbits(item[f"correct/{n}"], axis=1, count=len(test[n][1])).astype(
                        bool
                    )
                    for n in test
                }
            )
            names += [f"{s.name}@{steps}" for s in specs]
            groups += [s.group(doms) for s in specs]
            runs += [s.name for s in specs]
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    correct = {n: np.concatenate([c[n] for c in parts]) for n in test}
    acc = {n: c.mean(axis=1) for n, c in correct.items()}
    table = AccuracyTable(
        names=tuple(names),
        groups=tuple(groups),
        id_names=tuple(doms),
        id_acc=np.stack([acc[d] for d in doms], axis=1),
        ood_names=tuple(ood_sets),
        ood_acc=np.stack([acc[o] for o in ood_sets], axis=1),
        clusters=tuple(runs),
    )
    return table, correct


def _featurizer(features: str, hash_dim: int, embed_fn, cache_dir: pathlib.Path):
    """``featurize(set_name, texts) -> float [N, D]`` for the chosen features."""
    if features == "hashed":
        return lambda name, texts: hashed_ngrams(texts, dim=hash_dim)
    if embed_fn is None:
        raise ValueError(f"features={features!r} needs an embed_fn (sentence encoder)")
    items = WorkItems(cache_dir, save=_save_item, load=_load_item)

    def featurize(name, texts):
        digest = zlib.crc32("\n".join(texts).encode()) & 0xFFFFFFFF
        item = items.get(
            f"{features}_{name}_{len(texts)}_{digest:08x}",
            lambda: {"x": np.asarray(embed_fn(list(texts)), np.float32)},
        )
        return item["x"]

    return featurize


def _log_losses(folder: pathlib.Path, losses: np.ndarray, every: int) -> None:
    """Writes a mean training-loss curve [S] to ``folder/metrics.jsonl`` (rewritten each run)."""
    logger = MetricsLogger(folder)
    logger.truncate_after(-1)
    for step in range(every, len(losses) + 1, every):
        logger.write(step, split="train", loss=float(losses[step - 1]))
    logger.close()
