"""The XMC datasets of papers 6 and 7, registered with the core registry on import.

Mulan's Bibtex and Delicious (sparse ARFF + label XML) from the suite's data folder.
"""

from __future__ import annotations

import pathlib
import re

from robustml_jax.core import datasets

_MULAN = (
    "https://raw.githubusercontent.com/tsoumakas/mulan/43f6389095ad71984264db4387a8074b22bc7d4a"
    "/data/multi-label"
)


def _mulan_loader(name: str):
    def loader(root: pathlib.Path, split: str) -> dict:
        d = root / "xmc" / name
        xml = (d / f"{name}.xml").read_text(encoding="utf-8")
        label_names = re.findall(r'<label\s+name="([^"]*)"', xml)
        arff = d / f"{name}-{split}.arff"
        out = datasets.parse_sparse_arff(
            arff.read_text(encoding="utf-8"), len(label_names), source=str(arff)
        )
        out["label_names"] = label_names
        return out

    return loader


for _name in ("bibtex", "delicious"):
    datasets.register(
        datasets.DatasetSpec(
            _name,
            f"Mulan {_name} multi-label (sparse ARFF)",
            (f"xmc/{_name}/{_name}-train.arff", f"xmc/{_name}/{_name}.xml"),
            _mulan_loader(_name),
            ("train", "test"),
            datasets.data_hint(_name),
            remote=datasets.remote_files(
                [
                    (f"xmc/{_name}/{f}", f"{_MULAN}/{_name}/{f}")
                    for f in (f"{_name}-train.arff", f"{_name}-test.arff", f"{_name}.xml")
                ]
            ),
        )
    )
