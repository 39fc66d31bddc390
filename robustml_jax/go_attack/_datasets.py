"""Paper 3's Go game records, registered with the core registry on import."""

from __future__ import annotations

import pathlib
import tarfile

from robustml_jax.core import datasets


def _load_go(root: pathlib.Path, split: str) -> dict:
    """Go records as raw SGF bytes: ``{"name": list[str], "sgf": list[bytes]}``."""
    base = root / "go"
    if split == "alphago":
        names, sgfs = [], []
        with tarfile.open(base / "alphago_sgf.tar.gz") as tf:
            for m in sorted(tf.getmembers(), key=lambda m: m.name):
                if m.isfile() and m.name.endswith(".sgf"):
                    names.append(m.name)
                    sgfs.append(tf.extractfile(m).read())
        return {"name": names, "sgf": sgfs}
    sub = {"natural": "dataset", "adversarial": "examples"}[split]
    files = sorted((base / "adversarial_example_of_Go" / sub).rglob("*.sgf"))
    return {
        "name": [str(f.relative_to(base)) for f in files],
        "sgf": [f.read_bytes() for f in files],
    }


datasets.register(
    datasets.DatasetSpec(
        "go_sgf",
        "Go game records (19x19): GoAttack natural games and adversarial examples, AlphaGo",
        ("go/adversarial_example_of_Go/dataset", "go/alphago_sgf.tar.gz"),
        _load_go,
        ("natural", "adversarial", "alphago"),
        datasets.data_hint("go_sgf"),
    )
)
