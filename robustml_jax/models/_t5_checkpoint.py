"""Reading and writing t5x's legacy (pre-Orbax) checkpoint format without tensorstore.

A legacy t5x checkpoint directory (``checkpoint_<step>/``) holds:

* ``checkpoint``: a msgpack file written by ``flax.serialization``:
  ``{'version': 3, 'optimizer': {'target': <params>, 'state': {'step': ..., ...}}}``. Small
  leaves are inline ndarrays (msgpack ext type 1: ``(shape, dtype name, raw bytes)``); each
  large one is replaced by a tensorstore spec ``{'driver': 'zarr', 'kvstore': {'driver':
  'file', 'path': 'target.<dotted.path>'}, 'metadata': {...}}`` with a path relative to the
  checkpoint directory.
* one zarr v2 array per spec: ``target.<dotted.path>/.zarray`` (JSON: shape, chunks, dtype,
  compressor, order, fill_value) and chunk files named ``i.j...`` (C-order chunk grid), each
  gzip/zlib-compressed or raw bytes of a full chunk (edge chunks are padded, so cropped here).

The writer follows t5x's ``Checkpointer.save``: kernels and embeddings (the parameters t5x
partitions) go to zarr with t5x's chunk-shape rule (largest divisor chunks of at most 64 MiB),
gzip level 1 as tensorstore writes; norm scales and relative-position tables stay inline; all
is written into ``<name>.tmp-<random>`` beside the target and renamed into place at the end.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import os
import pathlib
import shutil
import tempfile
import zlib
from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np
from flax import serialization

VERSION = 3  # t5x's current legacy version: bfloat16 written natively, not as uint16.
_CHUNK_BYTES = 64 * 1024 * 1024  # t5x's _DESIRED_CHUNK_SIZE_BYTES
_ZARR_LEAF_NAMES = ("kernel", "embedding")


def _find_checkpoint_file(path: pathlib.Path) -> pathlib.Path:
    if path.is_file() and path.name == "checkpoint":
        return path
    if not path.exists():
        raise FileNotFoundError(f"no t5x checkpoint at {path}: the path does not exist")
    if not path.is_dir():
        raise FileNotFoundError(f"no t5x checkpoint at {path}: not a directory")
    file = path / "checkpoint"
    if not file.is_file():
        steps = sorted(p.name for p in path.glob("checkpoint_*") if (p / "checkpoint").is_file())
        hint = f"; it holds {', '.join(steps)}: pass one of those" if steps else ""
        raise FileNotFoundError(f"no msgpack 'checkpoint' file in t5x checkpoint dir {path}{hint}")
    return file


def _zarr_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        return np.dtype(ml_dtypes.bfloat16)
    if name in ("<u2", "uint16"):
        # Version-2 checkpoints stored bfloat16 bit patterns as uint16; t5x refuses them too.
        raise ValueError(
            "zarr dtype uint16 (a pre-version-3 bfloat16 encoding) is not supported; "
            "re-save the checkpoint with t5x >= 2021-06"
        )
    return np.dtype(name)


def _decompress(raw: bytes, compressor: Mapping | None, where: pathlib.Path) -> bytes:
    if compressor is None:
        return raw
    cid = compressor.get("id")
    if cid == "gzip":
        return gzip.decompress(raw)
    if cid == "zlib":
        return zlib.decompress(raw)
    raise ValueError(f"unsupported zarr compressor {cid!r} in {where} (only gzip, zlib, none)")


def read_zarr(array_dir: str | os.PathLike) -> np.ndarray:
    """Reads a zarr v2 array written by tensorstore (gzip, zlib or uncompressed chunks).

    Missing chunk files read as the fill value (0 for ``null``), as zarr specifies.

    Args:
      array_dir: the array's folder holding ``.zarray`` and its chunk files.

    Returns:
      The array in its stored dtype.
    """
    array_dir = pathlib.Path(array_dir)
    meta_file = array_dir / ".zarray"
    if not meta_file.is_file():
        raise FileNotFoundError(f"zarr array metadata {meta_file} is missing")
    meta = json.loads(meta_file.read_text())
    if meta.get("zarr_format", 2) != 2:
        raise ValueError(f"{meta_file}: only zarr format 2 is supported")
    if meta.get("filters"):
        raise ValueError(f"{meta_file}: zarr filters {meta['filters']} are not supported")
    dtype = _zarr_dtype(meta["dtype"])
    shape = tuple(int(s) for s in meta["shape"])
    chunks = tuple(int(c) for c in meta["chunks"])
    order = meta.get("order", "C")
    sep = meta.get("dimension_separator", ".")
    fill = meta.get("fill_value")
    out = np.full(shape, 0 if fill is None else fill, dtype=dtype)
    grid = [range(-(-s // c)) for s, c in zip(shape, chunks, strict=True)]
    chunk_bytes = int(np.prod(chunks)) * dtype.itemsize
    for idx in itertools.product(*grid):
        name = sep.join(str(i) for i in idx) if idx else "0"
        chunk_file = array_dir / name
        if not chunk_file.is_file():
            continue
        data = _decompress(chunk_file.read_bytes(), meta.get("compressor"), chunk_file)
        if len(data) != chunk_bytes:
            raise ValueError(
                f"zarr chunk {chunk_file} holds {len(data)} bytes, expected {chunk_bytes} "
                f"(chunk {chunks} of {dtype})"
            )
        block = np.frombuffer(data, dtype=dtype).reshape(chunks, order=order)
        region = tuple(
            slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunks, shape, strict=True)
        )
        out[region] = block[tuple(slice(0, r.stop - r.start) for r in region)]
    return out


def _is_ts_spec(node: Any) -> bool:
    return isinstance(node, Mapping) and "driver" in node and ("kvstore" in node or "path" in node)


def _spec_dir(spec: Mapping, ckpt_dir: pathlib.Path) -> pathlib.Path:
    kvstore = spec.get("kvstore")
    rel = kvstore.get("path") if isinstance(kvstore, Mapping) else spec.get("path")
    if not rel:
        raise ValueError(f"tensorstore spec without a path in {ckpt_dir}/checkpoint: {spec}")
    rel = str(rel).rstrip("/")
    # Specs are relative to the checkpoint dir; an absolute (e.g. gs://) one was made so by a
    # copy tool: keep the array's own folder name, as t5x's gcs->file rewrite does.
    return ckpt_dir / rel.rsplit("/", 1)[-1]


def _restore_leaf(node: Any, path: str, ckpt_dir: pathlib.Path) -> np.ndarray:
    if _is_ts_spec(node):
        if node.get("driver") != "zarr":
            raise ValueError(f"parameter '{path}': unsupported tensorstore driver {node['driver']}")
        array = read_zarr(_spec_dir(node, ckpt_dir))
        want = node.get("metadata", {}).get("shape")
        if want is not None and tuple(want) != array.shape:
            raise ValueError(
                f"parameter '{path}': zarr array has shape {array.shape} but the checkpoint "
                f"spec says {tuple(want)}"
            )
    else:
        array = np.asarray(node)
    if not np.issubdtype(array.dtype, np.floating) and array.dtype != ml_dtypes.bfloat16:
        raise ValueError(f"parameter '{path}' has non-float dtype {array.dtype}")
    return array.astype(np.float32)


def _restore_tree(node: Any, path: str, ckpt_dir: pathlib.Path) -> Any:
    if isinstance(node, Mapping) and not _is_ts_spec(node):
        return {
            k: _restore_tree(v, f"{path}/{k}" if path else k, ckpt_dir) for k, v in node.items()
        }
    return _restore_leaf(node, path, ckpt_dir)


def load_t5x_checkpoint(path: str | os.PathLike) -> dict:
    """Reads the parameters of a legacy t5x checkpoint (msgpack + zarr, no tensorstore).

    Args:
      path: a checkpoint directory such as ``.../checkpoint_3`` (or its ``checkpoint`` file).

    Returns:
      The tree t5x stores under ``optimizer/target`` (not wrapped), with t5x's names, as
      float32 NumPy arrays; float32 values are bit-exact, bfloat16 ones widened exactly.
      Optimizer state is not read.

    Raises:
      FileNotFoundError: ``path`` or its ``checkpoint`` file or a referenced array is missing.
      ValueError: the file is not a t5x checkpoint, or an array is corrupt or unsupported.
    """
    file = _find_checkpoint_file(pathlib.Path(path))
    try:
        contents = serialization.msgpack_restore(file.read_bytes())
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise ValueError(f"{file} is not a msgpack t5x checkpoint: {e}") from e
    if not isinstance(contents, Mapping):
        raise ValueError(f"{file} is not a t5x checkpoint (top level is {type(contents)})")
    version = contents.get("version", 0)
    state = contents if version == 0 else contents.get("optimizer")
    if not isinstance(state, Mapping) or "target" not in state:
        raise ValueError(f"{file} has no optimizer target (keys {sorted(contents)})")
    return _restore_tree(state["target"], "", file.parent)


# --- Writing. ---


def choose_chunk_shape(shape: tuple[int, ...], max_elements: int) -> list[int]:
    """t5x's chunk rule: shrink the largest dim to its next smaller divisor until it fits."""
    divisors = [[d for d in range(1, s + 1) if s % d == 0] for s in shape]
    while int(np.prod([d[-1] for d in divisors])) > max_elements:
        largest = max(range(len(shape)), key=lambda i: divisors[i][-1])
        divisors[largest].pop()
    return [d[-1] for d in divisors]


def _zarr_dtype_name(dtype: np.dtype) -> str:
    return "bfloat16" if dtype == ml_dtypes.bfloat16 else dtype.str


def _write_zarr(array_dir: pathlib.Path, array: np.ndarray, chunk_bytes: int) -> dict:
    chunks = choose_chunk_shape(array.shape, max(1, chunk_bytes // array.dtype.itemsize))
    meta = {
        "chunks": chunks,
        "compressor": {"id": "gzip", "level": 1},
        "dtype": _zarr_dtype_name(array.dtype),
        "fill_value": None,
        "filters": None,
        "order": "C",
        "shape": list(array.shape),
        "zarr_format": 2,
    }
    array_dir.mkdir()
    _write_file(array_dir / ".zarray", json.dumps(meta, separators=(",", ":")).encode())
    grid = [range(s // c) for s, c in zip(array.shape, chunks, strict=True)]
    for idx in itertools.product(*grid):
        region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, chunks, strict=True))
        block = np.ascontiguousarray(array[region])
        name = ".".join(str(i) for i in idx) if idx else "0"
        _write_file(array_dir / name, gzip.compress(block.tobytes(), compresslevel=1, mtime=0))
    return {k: meta[k] for k in ("chunks", "compressor", "dtype", "shape")}


def _write_file(path: pathlib.Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: pathlib.Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _as_array(leaf: Any, path: str) -> np.ndarray:
    array = np.asarray(leaf)
    if not (np.issubdtype(array.dtype, np.floating) or array.dtype == ml_dtypes.bfloat16):
        raise ValueError(f"parameter '{path}' must be a float array, got dtype {array.dtype}")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array


def save_t5x_checkpoint(
    path: str | os.PathLike,
    params: Mapping,
    *,
    step: int = 0,
    overwrite: bool = False,
    chunk_bytes: int = _CHUNK_BYTES,
) -> pathlib.Path:
    """Writes ``params`` as a legacy t5x checkpoint directory, atomically.

    Everything goes into a temporary directory beside ``path`` that is renamed onto ``path``
    only when complete (a killed writer leaves at most a ``.<name>.tmp-*`` folder, never a
    partial ``path``). The optimizer state holds only ``step`` (no Adafactor slots), so t5x can
    restore it for inference or as a fresh fine-tuning start.

    Args:
      path: the checkpoint directory to create, e.g. ``.../checkpoint_1000``.
      params: nested dicts of float arrays (t5x names, unwrapped), e.g. from
        :func:`load_t5x_checkpoint` or ``init_params``; each leaf keeps its dtype.
      step: written to ``optimizer/state/step``.
      overwrite: replace an existing ``path`` (the old one is removed after the rename).
      chunk_bytes: zarr chunk size limit (t5x: 64 MiB).

    Returns:
      ``path`` as a ``pathlib.Path``.
    """
    path = pathlib.Path(path)
    if not isinstance(params, Mapping) or not params:
        raise ValueError("params must be a non-empty nested dict of arrays")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:

        def write(node: Any, keys: tuple[str, ...]) -> Any:
            if isinstance(node, Mapping):
                return {str(k): write(v, (*keys, str(k))) for k, v in node.items()}
            array = _as_array(node, "/".join(keys))
            if keys[-1] in _ZARR_LEAF_NAMES and array.ndim >= 1 and array.size:
                name = ".".join(("target", *keys))
                meta = _write_zarr(tmp / name, array, chunk_bytes)
                return {
                    "driver": "zarr",
                    "dtype": "bfloat16" if array.dtype == ml_dtypes.bfloat16 else array.dtype.name,
                    "kvstore": {"driver": "file", "path": name},
                    "metadata": meta,
                }
            return array

        target = write(params, ())
        state = {"step": np.asarray(step, np.int32)}
        blob = serialization.msgpack_serialize(
            {"version": VERSION, "optimizer": {"state": state, "target": target}}
        )
        _write_file(tmp / "checkpoint", blob)
        _fsync_dir(tmp)
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
            os.rename(path, old)
        os.rename(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
