"""Paper 1's accuracy tables, registered with the core registry on import.

- ``openclip_results``: OpenCLIP zero-shot accuracies of 121 models on 38 datasets.
- ``cifar10_1_predictions``: predictions of the 30 CIFAR-10.1 models on CIFAR-10 (original
  order) and CIFAR-10.1 v4 / v6, with each set's labels.
"""

from __future__ import annotations

import csv
import json
import pathlib

import numpy as np

from robustml_jax.core import datasets

_OPENCLIP = (
    "https://raw.githubusercontent.com/mlfoundations/open_clip/"
    "89fb801f1e6087880e951fc8354b8a2077b79c6d/docs/openclip_results.csv"
)


def _load_openclip(root: pathlib.Path, split: str) -> dict:
    del split
    with open(root / "effrob" / "openclip_results.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"rows": rows}


def _load_cifar10_1_predictions(root: pathlib.Path, split: str) -> dict:
    """Predictions of the 30 CIFAR-10.1 models on one test set, with that set's labels.

    Returns ``{"models": list[str], "predictions": int32 [30, N], "label": int32 [N]}``.
    """
    d = root / "cifar10_1" / "model_predictions" / f"{split}_predictions"
    files = sorted(d.glob("*_predictions.json"))
    models = [f.name[: -len("_predictions.json")] for f in files]
    preds = np.array([json.loads(f.read_text()) for f in files], np.int32)
    if split == "original":
        label = np.load(root / "cifar10" / "cifar10_test_set_original_labels.npy")
    else:
        label = np.load(root / "cifar10_1" / "datasets" / f"cifar10.1_{split}_labels.npy")
    return {"models": models, "predictions": preds, "label": label.astype(np.int32)}


datasets.register(
    datasets.DatasetSpec(
        "openclip_results",
        "OpenCLIP zero-shot accuracies of 121 models on 38 datasets",
        ("effrob/openclip_results.csv",),
        _load_openclip,
        ("all",),
        datasets.data_hint("openclip_results"),
        remote=datasets.remote_files([("effrob/openclip_results.csv", _OPENCLIP)]),
    )
)
datasets.register(
    datasets.DatasetSpec(
        "cifar10_1_predictions",
        "Predictions of 30 published models on CIFAR-10 (original order), CIFAR-10.1 v4/v6",
        ("cifar10_1/model_predictions", "cifar10/cifar10_test_set_original_labels.npy"),
        _load_cifar10_1_predictions,
        ("original", "v4", "v6"),
        datasets.data_hint("cifar10_1_predictions"),
    )
)
