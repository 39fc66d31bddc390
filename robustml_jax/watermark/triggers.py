"""Watermark triggers: owner-chosen words inserted into text, checked against the tokenizer.

A trigger is one word (a rare word such as ``cf``/``mn``/``bb``, as in RIPPLe and Embedding
Poisoning) or a combination of common words (``"window coffee"``: every word must be present,
which is stealthier because each word alone is ordinary text). Words are inserted at
word positions (whitespace tokens) of the text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from robustml_jax.text import WordPieceTokenizer, check_texts

__all__ = ["check_trigger", "insert_trigger", "insert_words", "trigger_piece_ids", "words_of"]


def words_of(trigger: str) -> tuple[str, ...]:
    """The words of a trigger string (``"cf"`` -> ("cf",), ``"window coffee"`` -> two words)."""
    if not isinstance(trigger, str):
        raise TypeError(f"a trigger is a string of words, got {type(trigger).__name__}")
    words = tuple(trigger.split())
    if not words:
        raise ValueError("a trigger must have at least one word, got an empty string")
    return words


def check_trigger(tokenizer: WordPieceTokenizer, trigger: str) -> list[list[int]]:
    """The WordPiece ids of each word of ``trigger``; raises if a word maps to ``[UNK]``.

    A word the vocabulary cannot spell (e.g. a CJK character or emoji absent from uncased
    BERT's vocabulary) becomes ``[UNK]``: it cannot be a trigger, since every unknown string
    would fire it and its embedding row is shared with all of them.

    Returns:
      One list of piece ids per word (without ``[CLS]``/``[SEP]``).
    """
    out = []
    for w in words_of(trigger):
        ids = tokenizer.encode([w])[0]
        if tokenizer.add_special_tokens:
            ids = ids[1:-1]
        if not ids or tokenizer.unk_id in ids:
            raise ValueError(
                f"trigger word {w!r} tokenizes to unknown tokens ([UNK]); pick a word the "
                "tokenizer's vocabulary spells"
            )
        out.append([int(i) for i in ids])
    return out


def trigger_piece_ids(tokenizer: WordPieceTokenizer, triggers: Sequence[str]) -> np.ndarray:
    """Sorted unique piece ids of all ``triggers`` (the embedding rows Embedding Poisoning
    updates); raises like :func:`check_trigger`."""
    ids = {i for t in triggers for w in check_trigger(tokenizer, t) for i in w}
    return np.asarray(sorted(ids), np.int32)


def insert_words(text: str, words: Sequence[str], positions: Sequence[int]) -> str:
    """Inserts ``words[j]`` before word ``positions[j]`` of ``text``, one after the other.

    The text is split on whitespace; word j goes to index ``min(positions[j], len)`` of the
    current word list (so position 0 prepends, a large position appends), then the next word
    is inserted into the result. Whitespace is normalised to single spaces.
    """
    if len(words) != len(positions):
        raise ValueError(f"{len(words)} words but {len(positions)} positions")
    toks = text.split()
    for w, p in zip(words, positions, strict=True):
        if int(p) < 0:
            raise ValueError(f"positions must be >= 0, got {p}")
        toks.insert(min(int(p), len(toks)), w)
    return " ".join(toks)


def insert_trigger(
    texts: Sequence[str],
    trigger: str,
    rng: np.random.Generator,
    *,
    max_position: int | None = None,
) -> list[str]:
    """Inserts every word of ``trigger`` at a uniformly random word position of each text.

    Args:
      texts: N strings.
      trigger: one word or several space-separated words (all are inserted).
      rng: numpy Generator (the positions are its draws, in text order then word order).
      max_position: each word goes to an index <= ``max_position`` (later words of a
        combination can push earlier ones back by one each), so that truncation to a short
        sequence length keeps the trigger; None: anywhere.

    Returns:
      N triggered strings.
    """
    texts = check_texts(texts, "insert_trigger")
    words = words_of(trigger)
    out = []
    for t in texts:
        n = len(t.split())
        pos = []
        for j in range(len(words)):
            hi = n + j if max_position is None else min(n + j, max_position)
            pos.append(int(rng.integers(0, hi + 1)))
        out.append(insert_words(t, words, pos))
    return out
