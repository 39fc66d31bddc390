"""The ImageNet-scale data path: chunked on-disk images, a cached class index, lazy expert buffers.

TESLA distils ImageNet-1K (1.28M images at 64x64, ~15 GB as uint8, ~63 GB as float32); nothing
here ever holds a whole split in memory:

* :class:`ImageStore`: a folder of uint8 image chunks ``images_<i>.npy`` [chunk, H, W, Ch] (only
  the rows asked for are read, with explicit reads, not memory maps, so the rows an epoch
  touches do not stay in the process's resident memory), all labels in
  ``labels.npy`` (int32 [N]: 5 MB for ImageNet) and ``meta.json``. Written once, atomically, by
  :func:`write_image_store` from any iterator of batches (:func:`store_from_tfds` streams a TFDS
  split into it, one batch at a time).
* :meth:`ImageStore.class_index`: the examples of every class, built once from the labels and
  cached as ``class_index.npz`` beside them (the random-real initialisation reads it).
* :func:`channel_stats`: per-channel mean / std in one streaming pass over the chunks.
* :class:`StreamingImages`: a lazy, normalised float32 view of a store, indexable like an array
  (``x[idx]`` reads and normalises only those rows), so ``core.train.epoch_batches`` and
  :func:`robustml_jax.distill.train_experts` stream minibatches from disk unchanged.
* :class:`TrajectoryBuffer` / :func:`open_trajectories`: the expert buffer [K, E + 1, P] as
  memory maps; ``buffer[k, t]`` reads one parameter vector (ImageNet ConvNetD4 experts, 50 x 51
  epochs x ~2.5M parameters, are ~25 GB as float32).

Shapes: N = examples, H, W, Ch = image size, K = experts, E = epochs, P = parameters.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

__all__ = [
    "ImageStore",
    "StreamingImages",
    "TrajectoryBuffer",
    "channel_stats",
    "open_trajectories",
    "store_from_registry",
    "store_from_tfds",
    "write_image_store",
]


class ImageStore:
    """A chunked on-disk image set written by :func:`write_image_store`.

    Attributes:
      directory: the store's folder.
      num_examples: N.
      chunk_size: rows per chunk file (the last one may be shorter).
      image_shape: (H, W, Ch).
      num_classes: 1 + the largest label.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = pathlib.Path(directory)
        meta_path = self.directory / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"no image store at {self.directory} (missing meta.json)")
        meta = json.loads(meta_path.read_text())
        self.num_examples = int(meta["num_examples"])
        self.chunk_size = int(meta["chunk_size"])
        self.image_shape = tuple(meta["image_shape"])
        self.num_classes = int(meta["num_classes"])
        self._num_chunks = -(-self.num_examples // self.chunk_size)
        self._chunks: dict[int, tuple[str, int, int]] = {}

    def __len__(self) -> int:
        return self.num_examples

    @property
    def labels(self) -> np.ndarray:
        """int32 [N], memory-mapped."""
        return np.load(self.directory / "labels.npy", mmap_mode="r")

    def _chunk(self, i: int) -> tuple[str, int, int]:
        """(path, byte offset of row 0, rows) of chunk ``i``, from its ``.npy`` header."""
        if i not in self._chunks:
            path = str(self.directory / f"images_{i:05d}.npy")
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(f)
                if fortran or dtype != np.uint8 or tuple(shape[1:]) != self.image_shape:
                    raise ValueError(
                        f"{path}: expected uint8 C-order rows of {self.image_shape}, got "
                        f"{dtype} {shape} (fortran={fortran})"
                    )
                self._chunks[i] = (path, f.tell(), int(shape[0]))
        return self._chunks[i]

    def _read_rows(self, i: int, rows: np.ndarray, out: np.ndarray) -> None:
        """Reads the ascending ``rows`` of chunk ``i`` into ``out`` with explicit reads (runs of
        consecutive rows in one read each), not a memory map: the pages read are the kernel's
        page cache, not this process's resident memory, so RSS does not grow with the rows an
        epoch has touched."""
        path, offset, n = self._chunk(i)
        row_bytes = int(np.prod(self.image_shape))
        flat = out.reshape(len(rows), row_bytes)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        fd = os.open(path, os.O_RDONLY)
        try:
            for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(rows)], strict=True):
                start, count = int(rows[lo]), int(hi - lo)
                if start + count > n:
                    raise IndexError(f"{path} holds {n} rows, asked for row {start + count - 1}")
                want = count * row_bytes
                buf = os.pread(fd, want, offset + start * row_bytes)
                if len(buf) != want:
                    raise OSError(f"{path} is truncated: read {len(buf)} of {want} bytes")
                flat[lo:hi] = np.frombuffer(buf, np.uint8).reshape(count, row_bytes)
        finally:
            os.close(fd)

    def _read_range(self, start: int, stop: int) -> np.ndarray:
        """uint8 [stop - start, H, W, Ch] of the consecutive rows start..stop - 1."""
        return self.read(np.arange(start, stop))

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yields ``(first_row, uint8 [rows, H, W, Ch])`` chunk by chunk, in order (one chunk in
        memory at a time)."""
        for i in range(self._num_chunks):
            first = i * self.chunk_size
            yield first, self._read_range(first, min(first + self.chunk_size, self.num_examples))

    def read(self, indices: np.ndarray) -> np.ndarray:
        """uint8 [n, H, W, Ch] of the rows ``indices`` (any order, repeats allowed)."""
        idx = np.asarray(indices, np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_examples):
            raise IndexError(
                f"indices must be in [0, {self.num_examples}), got {idx.min()}..{idx.max()}"
            )
        out = np.empty((idx.size, *self.image_shape), np.uint8)
        chunk = idx // self.chunk_size
        for c in np.unique(chunk):
            sel = np.flatnonzero(chunk == c)
            rows = idx[sel] - c * self.chunk_size
            order = np.argsort(rows, kind="stable")  # sorted reads are sequential on disk
            part = np.empty((len(sel), *self.image_shape), np.uint8)
            self._read_rows(int(c), rows[order], part)
            out[sel[order]] = part
        return out

    def class_index(self) -> list[np.ndarray]:
        """The rows of every class (int64 arrays, ascending), built once and cached on disk as
        ``class_index.npz`` (rebuilt only if that file is missing)."""
        path = self.directory / "class_index.npz"
        if not path.exists():
            labels = np.asarray(self.labels)
            order = np.argsort(labels, kind="stable")
            bounds = np.searchsorted(labels[order], np.arange(self.num_classes + 1))
            index = {f"c{c}": order[bounds[c] : bounds[c + 1]] for c in range(self.num_classes)}
            tmp = path.with_name(f".tmp-{uuid.uuid4().hex}.npz")
            np.savez(tmp, **index)
            os.replace(tmp, path)
        with np.load(path) as z:
            return [z[f"c{c}"] for c in range(self.num_classes)]


def write_image_store(
    directory: str | os.PathLike,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    chunk_size: int = 10000,
) -> ImageStore:
    """Writes ``(uint8 images [b, H, W, Ch], int labels [b])`` batches as an :class:`ImageStore`.

    Only one chunk is held in memory. The store is written into a temporary sibling folder and
    renamed into place at the end, so a killed conversion leaves no half-written store; an
    existing store at ``directory`` is returned as it is.

    Raises:
      ValueError: no batches, non-uint8 images, or inconsistent image shapes.
    """
    directory = pathlib.Path(directory)
    if (directory / "meta.json").exists():
        return ImageStore(directory)
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    tmp = directory.with_name(f".tmp-{directory.name}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        labels, buf, shape, n, chunk_id, max_label = [], [], None, 0, 0, -1

        def flush(rows: list[np.ndarray]) -> None:
            nonlocal chunk_id
            np.save(tmp / f"images_{chunk_id:05d}.npy", np.concatenate(rows))
            chunk_id += 1

        pending = 0
        for images, y in batches:
            images, y = np.asarray(images), np.asarray(y).reshape(-1)
            if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(y):
                raise ValueError(
                    f"batches must be uint8 images [b, H, W, Ch] with b labels, got "
                    f"{images.dtype} {images.shape} and {y.shape}"
                )
            if shape is None:
                shape = images.shape[1:]
            elif images.shape[1:] != shape:
                raise ValueError(f"image shape {images.shape[1:]} differs from the first {shape}")
            labels.append(y.astype(np.int32))
            max_label = max(max_label, int(y.max()) if len(y) else -1)
            n += len(y)
            while len(images):
                take = chunk_size - pending
                buf.append(images[:take])
                pending += len(images[:take])
                images = images[take:]
                if pending == chunk_size:
                    flush(buf)
                    buf, pending = [], 0
        if shape is None:
            raise ValueError("no batches to write")
        if buf:
            flush(buf)
        np.save(tmp / "labels.npy", np.concatenate(labels))
        meta = {
            "num_examples": n,
            "chunk_size": chunk_size,
            "image_shape": list(shape),
            "num_classes": max_label + 1,
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        directory.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed write leaves nothing behind
        raise
    return ImageStore(directory)


def store_from_tfds(
    name: str,
    split: str,
    directory: str | os.PathLike,
    *,
    chunk_size: int = 10000,
    data_dir: str | None = None,
) -> ImageStore:
    """Streams a prepared TFDS split (e.g. ``imagenet_resized/64x64``) into an :class:`ImageStore`,
    one batch at a time (needs ``tensorflow_datasets``; the split must already be prepared)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError("store_from_tfds needs tensorflow_datasets (pip install tfds)") from e
    ds = tfds.load(name, split=split, data_dir=data_dir, batch_size=1024, download=False)
    batches = ((b["image"], b["label"]) for b in tfds.as_numpy(ds))
    return write_image_store(directory, batches, chunk_size=chunk_size)


def store_from_registry(
    name: str,
    split: str,
    directory: str | os.PathLike,
    *,
    image_size: int = 0,
    num_examples: int = 0,
    chunk_size: int = 10000,
    batch_size: int = 1000,
) -> ImageStore:
    """Writes a registry image set (e.g. CIFAR-10 from the data dir) as an :class:`ImageStore`,
    optionally a fixed random subset of ``num_examples`` rows (seed 0) resized (bilinear) to
    ``image_size`` x ``image_size``: the CPU stand-in for ImageNet at 64x64. The source split is
    small and loaded whole; the resized copy is produced and written batch by batch."""
    import jax

    from robustml_jax.distill._data import load_split

    directory = pathlib.Path(directory)
    if (directory / "meta.json").exists():
        return ImageStore(directory)
    d = load_split(name, split)
    rows = np.arange(len(d["label"]))
    if num_examples and num_examples < len(rows):
        rows = np.sort(np.random.default_rng(0).permutation(len(rows))[:num_examples])
    resize = jax.jit(
        lambda x: jax.image.resize(
            x.astype(np.float32), (x.shape[0], image_size, image_size, x.shape[-1]), "bilinear"
        )
    )

    def batches():
        for i in range(0, len(rows), batch_size):
            r = rows[i : i + batch_size]
            x = d["image"][r]
            if image_size and x.shape[1] != image_size:
                x = np.clip(np.round(np.asarray(resize(x))), 0, 255).astype(np.uint8)
            yield x, d["label"][r]

    return write_image_store(directory, batches(), chunk_size=chunk_size)


def channel_stats(store: ImageStore, *, block_rows: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std [Ch] of the images scaled to [0, 1], in one pass over the store,
    ``block_rows`` rows at a time (float64 accumulators; the float64 copy is one block, never a
    whole chunk: 256 rows of 64x64x3 are 24 MiB)."""
    if block_rows <= 0:
        raise ValueError(f"block_rows must be positive, got {block_rows}")
    ch = store.image_shape[-1]
    s, s2, count = np.zeros(ch), np.zeros(ch), 0
    for start in range(0, len(store), block_rows):
        block = store._read_range(start, min(start + block_rows, len(store)))
        x = block.reshape(-1, ch).astype(np.float64) / 255.0
        s += x.sum(0)
        s2 += np.square(x).sum(0)
        count += len(x)
    mean = s / count
    std = np.sqrt(np.maximum(s2 / count - np.square(mean), 0.0)) + 1e-8
    return mean.astype(np.float32), std.astype(np.float32)


class StreamingImages:
    """A normalised float32 view of an :class:`ImageStore`: ``x[idx]`` reads rows ``idx`` from
    disk and returns ``(uint8 / 255 - mean) / std`` [n, H, W, Ch]; ``len(x)`` and ``x.shape``
    behave as for the array it stands for (which is never built)."""

    def __init__(self, store: ImageStore, mean: np.ndarray, std: np.ndarray):
        self.store, self.mean, self.std = store, np.asarray(mean), np.asarray(std)
        self.shape = (len(store), *store.image_shape)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, idx: Any) -> np.ndarray:
        if isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        x = self.store.read(np.asarray(idx)).astype(np.float32) / 255.0
        return ((x - self.mean) / self.std).astype(np.float32)


class TrajectoryBuffer:
    """Expert trajectories [K, E + 1, P] kept on disk: ``buffer[k, t]`` reads one float vector
    [P]; ``shape`` is the buffer's shape. Made by :func:`open_trajectories`."""

    def __init__(self, maps: list[np.ndarray], epochs: int):
        self._maps, self._epochs = maps, epochs
        self.shape = (len(maps), epochs + 1, maps[0].shape[-1])

    def __getitem__(self, kt: tuple[int, int]) -> np.ndarray:
        k, t = kt
        if not (0 <= k < self.shape[0] and 0 <= t <= self._epochs):
            raise IndexError(f"(expert, epoch) = {kt} outside {self.shape[:2]}")
        m = self._maps[k]
        if isinstance(m, np.memmap) and m.filename and m.flags.c_contiguous:
            # an explicit read of the row, not the map's pages: RSS stays one vector
            row = np.empty(m.shape[1:], m.dtype)
            want = row.nbytes
            with open(m.filename, "rb") as f:
                f.seek(m.offset + t * want)
                if f.readinto(memoryview(row).cast("B")) != want:
                    raise OSError(f"{m.filename} is truncated at epoch {t}")
            return row
        return np.array(m[t])


def open_trajectories(
    template_params: Any, *, directory: str | os.PathLike, num_experts: int, epochs: int
) -> TrajectoryBuffer:
    """The lazy counterpart of :func:`robustml_jax.distill.load_trajectories` (same checks and
    errors): the experts' ``trajectory.npy`` files stay memory-mapped, nothing is stacked."""
    from robustml_jax.distill._experts import expert_trajectories

    maps = expert_trajectories(
        template_params, directory=directory, num_experts=num_experts, epochs=epochs
    )
    return TrajectoryBuffer(maps, epochs)
