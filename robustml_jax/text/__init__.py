"""Tokenizers (SentencePiece with T5 sentinels, WordPiece), padding and T5 span corruption.

from robustml_jax import text
tok = text.SentencePieceTokenizer(path_to_t5_vocab)          # vocab_size 32100
batch = text.pad_batch(tok.encode(["Hello world"]), bucket="pow2")
out = text.span_corruption(key, batch.tokens[0, :8], sentinel_start=tok.sentinel_id(0))
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
