"""Tokenizers (SentencePiece with T5 sentinels, WordPiece), padding and T5 span corruption.

    from robustml_jax import text
    tok = text.SentencePieceTokenizer(path_to_t5_vocab)   # vocab_size 32100, <extra_id_0> 32099
    ids = tok.encode(["The quick brown fox jumps over the lazy dog."])
    batch = text.pad_batch(ids, bucket="pow2")           # tokens int32 [1, 16], mask bool [1, 16]
    out = text.span_corruption(key, ids[0], sentinel_start=tok.sentinel_id(0))

All tokenizers follow :class:`Tokenizer`: ``encode(texts) -> list[list[int]]``, ``decode(ids)``,
``vocab_size``, ``pad_id``, ``eos_id``.
"""

from robustml_jax.text._padding import PaddedBatch, bucket_length, pad_batch
from robustml_jax.text._span_corruption import (
    SpanCorruption,
    random_spans_helper,
    random_spans_noise_mask,
    span_corruption,
    span_corruption_lengths,
)
from robustml_jax.text._tokenizers import (
    SentencePieceTokenizer,
    Tokenizer,
    WordPieceTokenizer,
    check_texts,
    train_sentencepiece,
)

__all__ = [
    "PaddedBatch",
    "SentencePieceTokenizer",
    "SpanCorruption",
    "Tokenizer",
    "WordPieceTokenizer",
    "bucket_length",
    "check_texts",
    "pad_batch",
    "random_spans_helper",
    "random_spans_noise_mask",
    "span_corruption",
    "span_corruption_lengths",
    "train_sentencepiece",
]
