"""Hashed bag-of-n-grams text features (host side, deterministic across runs and machines).

Shapes: N = texts, D = hashed feature dimension.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np

__all__ = ["hashed_ngrams", "tokenize"]

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?]")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (apostrophe suffixes kept: "don't") plus '!' and '?'."""
    return _TOKEN.findall(text.lower())


def hashed_ngrams(texts: Sequence[str], *, dim: int = 4096, max_n: int = 2) -> np.ndarray:
    """Signed feature hashing of 1..max_n-grams, log(1 + count) weighted, rows L2-normalised.

    crc32 (not Python's salted ``hash``) picks the bucket and the sign, so features are the same
    in every process. The sign halves the bias from hash collisions (Weinberger et al. 2009).

    Returns:
      float32 [N, D].
    """
    if dim <= 0 or dim & (dim - 1):
        raise ValueError(f"dim must be a positive power of two, got {dim}")
    out = np.zeros((len(texts), dim), np.float32)
    for i, text in enumerate(texts):
        toks = tokenize(text)
        grams = list(toks)
        for n in range(2, max_n + 1):
            grams += [" ".join(toks[j : j + n]) for j in range(len(toks) - n + 1)]
        if not grams:
            continue
        h = np.fromiter((zlib.crc32(g.encode()) for g in grams), np.uint64, len(grams))
        bucket = (h % dim).astype(np.int64)
        sign = np.where((h >> np.uint64(31)) & np.uint64(1), -1.0, 1.0).astype(np.float32)
        np.add.at(out[i], bucket, sign)
    out = np.sign(out) * np.log1p(np.abs(out))
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norm, 1e-12)
