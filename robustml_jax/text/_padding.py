"""Padding token sequences into dense batches, with optional length bucketing.

Shapes: B = sequences, T = padded length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["PaddedBatch", "bucket_length", "pad_batch"]


class PaddedBatch(NamedTuple):
    """A dense batch of token sequences.

    Attributes:
      tokens: int32 [B, T], ``pad_id`` after each sequence's end.
      mask: bool [B, T], True on real tokens.
    """

    tokens: np.ndarray
    mask: np.ndarray


def bucket_length(length: int, *, bucket: str | int | None, max_len: int | None = None) -> int:
    """The padded length for a longest sequence of ``length`` tokens.

    Bucketing keeps the number of distinct shapes (hence of ``jit`` compilations) small.

    Args:
      length: the longest sequence's length (>= 0).
      bucket: None (exactly ``length``), ``"pow2"`` (next power of two) or an int k (next
        multiple of k).
      max_len: cap on the result (a sequence longer than this must have been truncated).

    Returns:
      The padded length T >= 1.
    """
    length = max(int(length), 1)
    if bucket is None:
        t = length
    elif bucket == "pow2":
        t = 1 << (length - 1).bit_length()
    elif isinstance(bucket, int | np.integer) and not isinstance(bucket, bool) and bucket > 0:
        t = -(-length // int(bucket)) * int(bucket)
    else:
        raise ValueError(f"bucket must be None, 'pow2' or a positive int, got {bucket!r}")
    return t if max_len is None else min(t, int(max_len))


def pad_batch(
    seqs: Sequence[Sequence[int]],
    *,
    max_len: int | None = None,
    pad_id: int = 0,
    bucket: str | int | None = None,
    truncate: bool = False,
) -> PaddedBatch:
    """Pads (and optionally truncates) token sequences into a dense batch.

    Args:
      seqs: B sequences of token ids (lists or 1-D arrays).
      max_len: the padded length T when ``bucket`` is None; with a bucket, a cap on T. None:
        T is the longest sequence's length (bucketed).
      pad_id: the id written after each sequence's end.
      bucket: None, ``"pow2"`` or an int multiple (see :func:`bucket_length`).
      truncate: cut sequences longer than ``max_len`` instead of raising.

    Returns:
      ``PaddedBatch(tokens int32 [B, T], mask bool [B, T])``.
    """
    if isinstance(seqs, str | bytes):
        raise TypeError("pad_batch expects a list of token-id sequences, got a string")
    seqs = [np.asarray(s) for s in seqs]
    if not seqs:
        raise ValueError("pad_batch got no sequences")
    for i, s in enumerate(seqs):
        if s.ndim != 1:
            raise ValueError(f"pad_batch: sequence {i} has shape {s.shape}, expected 1-D ids")
        if s.size and not np.issubdtype(s.dtype, np.integer):
            raise TypeError(f"pad_batch: sequence {i} has dtype {s.dtype}, expected integer ids")
    if max_len is not None and int(max_len) < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    longest = max(s.size for s in seqs)
    if max_len is not None and longest > max_len and not truncate:
        raise ValueError(
            f"pad_batch: a sequence has {longest} tokens > max_len={max_len} "
            "(pass truncate=True to cut it)"
        )
    if bucket is None and max_len is not None:
        t = int(max_len)
    else:
        t = bucket_length(longest, bucket=bucket, max_len=max_len)
    tokens = np.full((len(seqs), t), pad_id, np.int32)
    mask = np.zeros((len(seqs), t), bool)
    for i, s in enumerate(seqs):
        n = min(s.size, t)
        tokens[i, :n] = s[:n]
        mask[i, :n] = True
    return PaddedBatch(tokens, mask)
