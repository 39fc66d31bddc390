"""t5x legacy checkpoints: the real tiny t5x checkpoint, round trips, format and failures.

The reader is checked against an independent decode written here with msgpack + gzip +
NumPy only (the recipe of the data README), and written checkpoints are opened with
tensorstore's own zarr driver through the specs in their msgpack file, as t5x restores them.
"""

from __future__ import annotations

import gzip
import json
import math
import pathlib

import chex
import jax
import ml_dtypes
import msgpack
import numpy as np
import pytest

from robustml_jax.core import datasets
from robustml_jax.models import _t5_checkpoint, t5

TINY = t5.T5Config.t5_1_1_tiny()


@pytest.fixture(scope="module")
def tiny_dir() -> pathlib.Path:
    try:
        root = datasets.locate("t5x_tiny_checkpoint")
    except datasets.DatasetNotFoundError as e:
        pytest.skip(str(e))
    return root / "t5x_tiny_checkpoint"


@pytest.fixture(scope="module")
def ckpt_dir(tiny_dir) -> pathlib.Path:
    return tiny_dir / "test_t5_1_1_tiny" / "checkpoint_3"


@pytest.fixture(scope="module")
def tiny_params(ckpt_dir):
    return t5.load_t5x_checkpoint(ckpt_dir)


# --- Independent raw parse (msgpack + gzip + numpy). ---


def raw_parse(ckpt: pathlib.Path) -> tuple[dict, dict]:
    """({path: array}, {path: 'zarr' | 'inline'}) of optimizer/target, decoded by hand."""
    contents = msgpack.unpackb((ckpt / "checkpoint").read_bytes(), strict_map_key=False)
    assert contents["version"] == 3
    arrays, kinds = {}, {}

    def walk(node, path):
        if isinstance(node, dict) and "driver" not in node:
            for k, v in node.items():
                walk(v, f"{path}/{k}" if path else k)
        elif isinstance(node, dict):
            assert node["driver"] == "zarr"
            d = ckpt / node["kvstore"]["path"]
            meta = json.loads((d / ".zarray").read_text())
            assert meta["compressor"]["id"] == "gzip" and meta["order"] == "C"
            shape, chunks = meta["shape"], meta["chunks"]
            full = np.zeros(
                [math.ceil(s / c) * c for s, c in zip(shape, chunks, strict=True)], meta["dtype"]
            )
            for f in d.iterdir():
                if f.name == ".zarray":
                    continue
                idx = [int(i) for i in f.name.split(".")]
                block = np.frombuffer(gzip.decompress(f.read_bytes()), meta["dtype"])
                sl = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, chunks, strict=True))
                full[sl] = block.reshape(chunks)
            arrays[path] = full[tuple(slice(0, s) for s in shape)]
            kinds[path] = "zarr"
        else:
            assert isinstance(node, msgpack.ExtType) and node.code == 1
            shape, dtype, buf = msgpack.unpackb(node.data)
            arrays[path] = np.frombuffer(buf, dtype).reshape(shape)
            kinds[path] = "inline"

    walk(contents["optimizer"]["target"], "")
    return arrays, kinds


def flat(tree) -> dict:
    return {
        "/".join(str(k.key) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def assert_bit_exact(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.shape == y.shape and x.dtype == y.dtype, k
        np.testing.assert_array_equal(x.view(np.uint32), y.view(np.uint32), err_msg=k)


# --- The real tiny checkpoint. ---


def test_tiny_checkpoint_names_shapes_dtypes(tiny_params, ckpt_dir):
    got = flat(tiny_params)
    assert {k: v.shape for k, v in got.items()} == t5.param_shapes(TINY)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in got.values())
    t5.check_params(tiny_params, TINY)
    # 257,792 parameters in zarr arrays plus 64 inline (data README).
    assert sum(v.size for v in got.values()) == 257_792 + 64
    assert got["encoder/relpos_bias/rel_embedding"].shape == (2, 4)
    assert got["decoder/logits_dense/kernel"].shape == (4, 32128)


def test_tiny_checkpoint_values_bit_exact(tiny_params, ckpt_dir, tiny_dir):
    raw, _ = raw_parse(ckpt_dir)
    assert_bit_exact(flat(tiny_params), raw)
    golden = np.load(tiny_dir / "tiny_embeddings_32128x4.npy")
    assert_bit_exact({"e": tiny_params["token_embedder"]["embedding"]}, {"e": golden})


def test_model_runs_on_tiny_checkpoint(tiny_params):
    enc = np.array([[30355, 15, 1566, 12, 2968, 10, 466, 19, 207, 5, 1], [8, 9, 1] + [0] * 8])
    dec = np.array([[0, 1566, 12], [0, 5, 0]], np.int32)
    logits = jax.jit(t5.T5(TINY).apply)({"params": tiny_params}, enc.astype(np.int32), dec)
    chex.assert_shape(logits, (2, 3, 32128))
    chex.assert_tree_all_finite(logits)


# --- Writing. ---


def test_save_load_round_trip_is_bit_exact_and_t5x_format(tiny_params, ckpt_dir, tmp_path):
    out = t5.save_t5x_checkpoint(tmp_path / "checkpoint_3", tiny_params, step=3)
    assert out == tmp_path / "checkpoint_3" and (out / "checkpoint").is_file()
    assert_bit_exact(flat(t5.load_t5x_checkpoint(out)), flat(tiny_params))
    # Parsed by hand exactly like the original; the same leaves are zarr / inline as t5x's.
    raw, kinds = raw_parse(out)
    orig_raw, orig_kinds = raw_parse(ckpt_dir)
    assert kinds == orig_kinds
    assert_bit_exact(raw, orig_raw)
    contents = msgpack.unpackb((out / "checkpoint").read_bytes())
    step = msgpack.unpackb(contents["optimizer"]["state"]["step"].data)
    assert step[:2] == [[], "int32"] and np.frombuffer(step[2], np.int32)[0] == 3
    spec = contents["optimizer"]["target"]["token_embedder"]["embedding"]
    assert spec["kvstore"] == {"driver": "file", "path": "target.token_embedder.embedding"}
    assert spec["metadata"]["compressor"] == {"id": "gzip", "level": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_3"]  # no temp left
    # Where t5x's chunk rule gives the same chunks, the zarr metadata is byte-identical.
    name = "target.decoder.layers_1.mlp.wo.kernel/.zarray"
    assert (out / name).read_bytes() == (ckpt_dir / name).read_bytes()


def test_written_arrays_open_with_tensorstore(tiny_params, tmp_path):
    ts = pytest.importorskip("tensorstore")
    params = {
        "token_embedder": {"embedding": tiny_params["token_embedder"]["embedding"]},
        "half": {
            "kernel": np.arange(24, dtype=np.float32).reshape(4, 6).astype(ml_dtypes.bfloat16)
        },
    }
    # Small chunks: the embedding spans 16 chunk files; t5x's divisor rule keeps them whole.
    out = t5.save_t5x_checkpoint(tmp_path / "ck", params, chunk_bytes=32128)
    assert len(list((out / "target.token_embedder.embedding").iterdir())) == 1 + 16
    assert json.loads((out / "target.half.kernel" / ".zarray").read_text())["dtype"] == "bfloat16"
    target = msgpack.unpackb((out / "checkpoint").read_bytes())["optimizer"]["target"]
    for path, want in flat(params).items():
        spec = target
        for k in path.split("/"):
            spec = spec[k]
        spec["kvstore"]["path"] = str(out / spec["kvstore"]["path"])  # as t5x does on restore
        got = ts.open(spec, open=True).result().read().result()
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    loaded = t5.load_t5x_checkpoint(out)
    assert loaded["half"]["kernel"].dtype == np.float32
    np.testing.assert_array_equal(loaded["half"]["kernel"], np.arange(24).reshape(4, 6))
    assert_bit_exact(
        {"e": loaded["token_embedder"]["embedding"]}, {"e": params["token_embedder"]["embedding"]}
    )


def test_save_is_atomic(tiny_params, tmp_path, monkeypatch):
    calls = []
    real = _t5_checkpoint._write_zarr

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt("killed mid-save")
        return real(*args, **kwargs)

    monkeypatch.setattr(_t5_checkpoint, "_write_zarr", dying)
    with pytest.raises(KeyboardInterrupt):
        t5.save_t5x_checkpoint(tmp_path / "checkpoint_9", tiny_params)
    assert list(tmp_path.iterdir()) == []  # neither a partial checkpoint nor its temp dir
    monkeypatch.setattr(_t5_checkpoint, "_write_zarr", real)

    first = t5.save_t5x_checkpoint(tmp_path / "checkpoint_9", tiny_params)
    with pytest.raises(FileExistsError, match="checkpoint_9 exists"):
        t5.save_t5x_checkpoint(first, tiny_params)
    zeros = jax.tree.map(np.zeros_like, tiny_params)
    t5.save_t5x_checkpoint(first, zeros, overwrite=True)
    assert not t5.load_t5x_checkpoint(first)["encoder"]["encoder_norm"]["scale"].any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_9"]


def test_chunk_shape_rule():
    assert t5.choose_chunk_shape((32128, 4), 1 << 24) == [32128, 4]
    assert t5.choose_chunk_shape((32128, 4), 32128) == [8032, 4]  # 32128 = 2^7 * 251
    assert t5.choose_chunk_shape((12, 10), 20) == [4, 5]
    assert t5.choose_chunk_shape((7,), 3) == [1]


def test_reads_raw_and_zlib_chunks_with_ragged_edges(tmp_path):
    a = np.arange(35, dtype="<f4").reshape(5, 7)
    for compressor, enc in (
        (None, lambda b: b),
        ({"id": "zlib", "level": 1}, __import__("zlib").compress),
    ):
        d = tmp_path / str(compressor is None)
        d.mkdir()
        meta = {"chunks": [2, 4], "compressor": compressor, "dtype": "<f4", "fill_value": None,
                "filters": None, "order": "C", "shape": [5, 7], "zarr_format": 2}  # fmt: skip
        (d / ".zarray").write_text(json.dumps(meta))
        for i in range(3):
            for j in range(2):
                block = np.zeros((2, 4), "<f4")
                part = a[2 * i : 2 * i + 2, 4 * j : 4 * j + 4]
                block[: part.shape[0], : part.shape[1]] = part
                if (i, j) != (1, 1):  # a missing chunk reads as the fill value 0
                    (d / f"{i}.{j}").write_bytes(enc(block.tobytes()))
        want = a.copy()
        want[2:4, 4:7] = 0
        np.testing.assert_array_equal(t5.read_zarr(d), want)


# --- Failures. ---


def test_missing_or_broken_checkpoints(tmp_path, ckpt_dir):
    with pytest.raises(FileNotFoundError, match=f"no t5x checkpoint at {tmp_path / 'nope'}"):
        t5.load_t5x_checkpoint(tmp_path / "nope")
    (tmp_path / "run" / "checkpoint_3").mkdir(parents=True)
    (tmp_path / "run" / "checkpoint_3" / "checkpoint").write_bytes(b"")
    with pytest.raises(
        FileNotFoundError, match=r"no msgpack 'checkpoint' file .*checkpoint_3: pass"
    ):
        t5.load_t5x_checkpoint(tmp_path / "run")
    (tmp_path / "run" / "checkpoint_3" / "checkpoint").write_bytes(b"\xc1garbage")
    with pytest.raises(ValueError, match="is not a msgpack t5x checkpoint"):
        t5.load_t5x_checkpoint(tmp_path / "run" / "checkpoint_3")
    # A checkpoint whose zarr folder was not copied.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "checkpoint").write_bytes((ckpt_dir / "checkpoint").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"zarr array metadata .*broken/target\..*\.zarray"):
        t5.load_t5x_checkpoint(broken)
