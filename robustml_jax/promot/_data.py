"""Text sources of the ProMoT reproduction: RTE, sentiment sets and a small SentencePiece vocab.

Pre-training sources and held-out evaluation sources are kept apart by name
(:data:`PRETRAIN_SENTIMENT`, :data:`HELDOUT_SENTIMENT`); RTE is the fine-tuning task only.
"""

from __future__ import annotations

import hashlib
import pathlib
import re

import numpy as np

from robustml_jax.core import datasets, paths
from robustml_jax.text import SentencePieceTokenizer, train_sentencepiece

__all__ = [
    "HELDOUT_SENTIMENT",
    "PRETRAIN_SENTIMENT",
    "clean_review",
    "load_rte",
    "load_sentiment",
    "small_tokenizer",
]

# Sentiment sources used in pre-training episodes and span corruption ...
PRETRAIN_SENTIMENT = ("sst2", "blitzer_books", "blitzer_dvd")
# ... and the held-out ones, only ever seen in in-context evaluation.
HELDOUT_SENTIMENT = ("mr", "blitzer_electronics", "blitzer_kitchen")


def clean_review(text: str, max_words: int = 40) -> str:
    """One line, at most ``max_words`` words (Blitzer reviews hold a title, a newline, a TAB)."""
    words = re.sub(r"\s+", " ", text).strip().split(" ")
    return " ".join(words[:max_words])


def load_sentiment(name: str, split: str = "train") -> tuple[list[str], np.ndarray]:
    """``(texts, labels int [N])`` of a sentiment source (1 = positive).

    ``name``: ``sst2``, ``mr`` or ``blitzer_<domain>``. ``split``: ``train`` or ``eval``; MR
    has no split, so its deterministic half (even/odd rows) stands in for each.
    """
    if name == "mr":
        d = datasets.load("mr", "all")
        idx = np.arange(len(d["text"]))
        idx = idx[idx % 2 == (0 if split == "train" else 1)]
    elif name == "sst2":
        d = datasets.load("sst2", "train_full" if split == "train" else "dev")
        idx = np.arange(len(d["text"]))
    elif name.startswith("blitzer_"):
        d = datasets.load(name, "train" if split == "train" else "dev")
        idx = np.arange(len(d["text"]))
    else:
        raise ValueError(f"unknown sentiment source {name!r}; use sst2, mr or blitzer_<domain>")
    texts = [clean_review(d["text"][i]) for i in idx]
    return texts, np.asarray(d["label"])[idx].astype(np.int32)


def load_rte(split: str) -> dict:
    """GLUE RTE ``{'premise', 'hypothesis', 'label'}`` (label 0 = entailment); ``train``/``dev``."""
    if split not in ("train", "dev"):
        raise ValueError(f"RTE split must be 'train' or 'dev' (test has no labels), got {split!r}")
    return datasets.load("rte", split)


def _corpus() -> list[str]:
    out: list[str] = []
    for name in PRETRAIN_SENTIMENT + HELDOUT_SENTIMENT:
        out += load_sentiment(name, "train")[0][:4000]
    rte = load_rte("train")
    out += rte["premise"] + rte["hypothesis"]
    out += ["True", "False", "Q: A: answer: question: Is it true or false? input: output:"]
    return out


def small_tokenizer(num_pieces: int = 3996, cache: str | pathlib.Path | None = None):
    """A SentencePiece vocabulary trained on the data dir's text (cached), with 100 sentinels.

    Returns a :class:`SentencePieceTokenizer` of ``num_pieces + 100`` ids (4096 by default),
    T5's special ids (pad 0, EOS 1, unk 2) and ``<extra_id_0>`` at the top.
    """
    folder = pathlib.Path(cache) if cache is not None else paths.cache_dir() / "promot"
    path = folder / f"spm_{num_pieces}.model"
    if not path.exists():
        texts = _corpus()
        digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:8]
        del digest
        train_sentencepiece(texts, num_pieces, path)
    return SentencePieceTokenizer(path, extra_ids=100)
