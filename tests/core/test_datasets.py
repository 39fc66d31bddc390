"""Dataset registry and loaders on the real data (package data and the data dir)."""

from __future__ import annotations

import numpy as np
import pytest

from robustml_jax.core import datasets, paths


def _need(name):
    present, looked = datasets.status(name)
    if not present:
        pytest.skip(f"{name} not present (looked in {looked})")


def test_registry_lists_the_issue_datasets():
    names = set(datasets.list_datasets())
    for n in (
        "mnist_5k",
        "digits",
        "fashion_mnist",
        "cifar10",
        "sst2",
        "rte",
        "mr",
        "bibtex",
        "delicious",
        "go_sgf",
        "blitzer_books",
        "openclip_results",
    ):
        assert n in names


def test_unknown_dataset_and_split_errors():
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        datasets.load("nope")
    with pytest.raises(ValueError, match="has no split 'val'"):
        datasets.load("mnist_5k", "val")


def test_missing_dataset_names_dataset_places_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTML_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(datasets.DatasetNotFoundError) as e:
        datasets.load("sst2", "dev", source="local")
    msg = str(e.value)
    assert "'sst2'" in msg and str(tmp_path / "empty") in msg and "fetch sst2" in msg
    assert "\n" not in msg


def test_data_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTML_DATA_DIR", str(tmp_path))
    assert paths.data_dir() == tmp_path


def test_mnist5k_stratified_split():
    _need("mnist_5k")
    tr, te, al = (datasets.load("mnist_5k", s) for s in ("train", "test", "all"))
    assert tr["image"].shape == (4000, 28, 28, 1) and tr["image"].dtype == np.uint8
    assert te["image"].shape == (1000, 28, 28, 1)
    assert np.bincount(te["label"]).tolist() == [100] * 10
    assert al["image"].shape[0] == 5000 and al["image"].max() == 255


def test_digits_scaled_to_uint8():
    d = datasets.load("digits", "all")
    assert d["image"].shape == (1797, 8, 8, 1) and d["image"].max() == 255


def test_fashion_mnist_from_debian():
    _need("fashion_mnist")
    d = datasets.load("fashion_mnist", "test")
    assert d["image"].shape == (10000, 28, 28, 1)
    assert np.bincount(d["label"]).tolist() == [1000] * 10


def test_text_loaders_counts():
    _need("sst2")
    dev = datasets.load("sst2", "dev")
    assert len(dev["text"]) == 872 and int(dev["label"].sum()) == 444
    test = datasets.load("sst2", "test-labeled")  # CRLF file: no stray '\r'
    assert len(test["text"]) == 1821 and not any(t.endswith("\r") for t in test["text"])
    rte = datasets.load("rte", "dev")
    assert len(rte["premise"]) == 277 and int((rte["label"] == 0).sum()) == 146
    assert len(datasets.load("rte", "test")["premise"]) == 3000  # QUOTE_NONE parsing
    mr = datasets.load("mr")
    assert len(mr["text"]) == 10662
    books = datasets.load("blitzer_books", "train")  # multi-line quoted fields
    assert len(books["text"]) == 1700 and int(books["label"].sum()) == 850


def test_mulan_arff_bibtex():
    _need("bibtex")
    d = datasets.load("bibtex", "train")
    assert d["X"].shape == (4880, 1836) and d["Y"].shape == (4880, 159)
    assert len(d["label_names"]) == 159
    np.testing.assert_allclose(d["Y"].sum() / 4880, 2.380, atol=1e-3)


def test_arff_parser_reports_line_number():
    text = (
        "@relation r\n@attribute a {0,1}\n@attribute b {0,1}\n@attribute l {0,1}\n"
        "@data\n{0 1,2 1}\n{0 1, 7}\n"
    )
    with pytest.raises(ValueError, match=r"<arff>:7: malformed entry"):
        datasets.parse_sparse_arff(text, 1)
    bad_idx = text.replace("{0 1, 7}", "{9 1}")
    with pytest.raises(ValueError, match=r":7: attribute index 9 out of"):
        datasets.parse_sparse_arff(bad_idx, 1)
    ok = datasets.parse_sparse_arff(text.replace("{0 1, 7}", "{1 1}"), 1)
    assert ok["X"].toarray().tolist() == [[1, 0], [0, 1]] and ok["Y"].toarray().tolist() == [
        [1],
        [0],
    ]


def test_cifar10_test_order_paths():
    names = datasets.cifar10_test_paths(np.array([3, 8, 8, 0, 3]))
    assert names == [
        "test/cat/0000.jpg",
        "test/ship/0000.jpg",
        "test/ship/0001.jpg",
        "test/airplane/0000.jpg",
        "test/cat/0001.jpg",
    ]


@pytest.mark.slow
def test_cifar10_decodes_60k(cache_dir):
    _need("cifar10")
    te = datasets.load("cifar10", "test")
    assert (
        te["image"].shape == (10000, 32, 32, 3) and np.bincount(te["label"]).tolist() == [1000] * 10
    )
    again = datasets.load("cifar10", "test")  # from the cache
    np.testing.assert_array_equal(again["image"], te["image"])


def test_cache_roundtrip_and_torn_cache(cache_dir, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x")
    calls = []

    def build():
        calls.append(1)
        return {"a": np.arange(3)}

    out = datasets._cached([src], "t", build)
    out2 = datasets._cached([src], "t", build)
    assert len(calls) == 1 and out2["a"].tolist() == [0, 1, 2] == out["a"].tolist()
    for f in cache_dir.glob("t-*.npz"):
        f.write_bytes(b"garbage")
    assert datasets._cached([src], "t", build)["a"].tolist() == [0, 1, 2] and len(calls) == 2


def test_go_and_openclip_and_predictions():
    _need("go_sgf")
    adv = datasets.load("go_sgf", "adversarial")
    assert len(adv["sgf"]) == 69 and adv["sgf"][0].startswith(b"(;")
    rows = datasets.load("openclip_results")["rows"]
    assert len(rows) == 121 and "ImageNet 1k" in rows[0]
    p = datasets.load("cifar10_1_predictions", "v6")
    assert p["predictions"].shape == (30, 2000) and p["label"].shape == (2000,)


def test_tfds_path_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=7):
        d = datasets.load("fashion_mnist", "test", source="tfds")
    assert d["image"].shape == (7, 28, 28, 1) and d["label"].shape == (7,)
