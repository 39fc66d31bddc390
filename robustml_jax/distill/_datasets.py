"""The distillation ``full`` config's TFDS-only datasets, registered with the core registry.

CIFAR-100, Tiny-ImageNet and ImageNet-1K at 64x64 are never shipped in the data dir: they load
from an already prepared TFDS copy (or ``source="tfds"`` on a machine with internet). The core
registry imports this module on the first lookup of a dataset name.
"""

from __future__ import annotations

import pathlib

from robustml_jax.core import datasets

__all__ = ["TFDS_ONLY"]

# name -> (TFDS builder, image size).
TFDS_ONLY = {
    "cifar100": ("cifar100", 32),
    "tiny_imagenet": ("tiny_imagenet", 64),
    "imagenet64": ("imagenet_resized/64x64", 64),
}


def _tfds_only_loader(root: pathlib.Path, split: str) -> dict:
    del root, split
    raise datasets.DatasetNotFoundError("tfds-only", [], "load it through TFDS")


for _name, (_tfds_name, _) in TFDS_ONLY.items():
    datasets.register(
        datasets.DatasetSpec(
            _name,
            f"{_tfds_name} through TFDS only (distillation `full` config)",
            (f"tfds_only/{_name}",),  # never shipped in the data dir: always TFDS
            _tfds_only_loader,
            ("train", "test", "validation"),
            f'prepare it with TFDS on a machine with internet: python -c "import '
            f"tensorflow_datasets as t; t.builder('{_tfds_name}').download_and_prepare()\"",
            tfds_name=_tfds_name,
        )
    )
