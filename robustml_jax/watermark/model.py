"""The shared encoder with task heads, text batching, and the suspect's parameter surgery.

The encoder is :class:`robustml_jax.models.bert.BertEncoder` (all-MiniLM-L6-v2's weights by
default); a text's representation is the mean of its last hidden states over real tokens
(MiniLM's pooling, without the L2 normalisation) and each task has a linear head on it (hard
parameter sharing). Shapes: B = batch, T = tokens, H = hidden size, C = classes.
"""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from robustml_jax.core.errors import UserError
from robustml_jax.models import bert
from robustml_jax.text import WordPieceTokenizer, check_texts

__all__ = [
    "ArchitectureError",
    "Batch",
    "check_encoder_params",
    "embedding_row_mask",
    "encode_texts",
    "head_logits",
    "init_head",
    "load_encoder",
    "magnitude_prune",
    "piece_tokenizer",
    "pooled",
    "reinit_top_layer",
    "save_encoder",
]


class ArchitectureError(UserError, ValueError):
    """Parameters (or a checkpoint) that do not fit the expected encoder architecture."""


class Batch(NamedTuple):
    """Token ids ready for the encoder.

    Attributes:
      ids: int32 [B, T]; mask: int32 [B, T] (1 on real tokens); types: int32 [B, T] segment ids.
    """

    ids: np.ndarray
    mask: np.ndarray
    types: np.ndarray


@functools.cache
def piece_tokenizer(tokenizer_json: str) -> WordPieceTokenizer:
    """A WordPiece tokenizer without special tokens or truncation (cached per file)."""
    return WordPieceTokenizer(tokenizer_json, max_len=None, add_special_tokens=False)


def encode_texts(
    tokenizer: WordPieceTokenizer,
    texts: Sequence[str],
    max_len: int,
    second: Sequence[str] | None = None,
) -> Batch:
    """``[CLS] a [SEP]`` (or ``[CLS] a [SEP] b [SEP]`` for pairs) padded to exactly ``max_len``.

    Pairs are truncated longest-first (BERT's rule). ``tokenizer`` is any WordPiece tokenizer
    of the model; its special-token setting is ignored (pieces are taken without them).
    """
    texts = check_texts(texts, "encode_texts")
    if max_len < 3 + (second is not None):
        raise ValueError(f"max_len must be >= {3 + (second is not None)}, got {max_len}")
    pt = piece_tokenizer(str(tokenizer.path))
    a_ids = pt.encode(texts)
    b_ids = None
    if second is not None:
        second = check_texts(second, "encode_texts")
        if len(second) != len(texts):
            raise ValueError(f"{len(texts)} first segments but {len(second)} second segments")
        b_ids = pt.encode(second)
    n = len(texts)
    ids = np.full((n, max_len), tokenizer.pad_id, np.int32)
    mask = np.zeros((n, max_len), np.int32)
    types = np.zeros((n, max_len), np.int32)
    for i in range(n):
        a = list(a_ids[i])
        if b_ids is None:
            seq = [tokenizer.cls_id] + a[: max_len - 2] + [tokenizer.eos_id]
            typ = [0] * len(seq)
        else:
            b = list(b_ids[i])
            while len(a) + len(b) > max_len - 3:
                if len(a) >= len(b):
                    a.pop()
                else:
                    b.pop()
            seq = [tokenizer.cls_id] + a + [tokenizer.eos_id] + b + [tokenizer.eos_id]
            typ = [0] * (len(a) + 2) + [1] * (len(b) + 1)
        ids[i, : len(seq)] = seq
        mask[i, : len(seq)] = 1
        types[i, : len(seq)] = typ
    return Batch(ids, mask, types)


def pooled(
    params: Any,
    batch: Batch,
    *,
    config: bert.BertConfig,
    key: jax.Array | None = None,
) -> jax.Array:
    """Mean-pooled last hidden states [B, H]; dropout on when ``key`` is given (training)."""
    ids, mask, types = batch
    if key is None:
        h = bert.BertEncoder(config).apply({"params": params}, ids, mask, types)
    else:
        h = bert.BertEncoder(config).apply(
            {"params": params}, ids, mask, types, deterministic=False, rngs={"dropout": key}
        )
    return bert.mean_pool(h, mask)


def init_head(key: jax.Array, hidden: int, num_classes: int) -> dict:
    """A fresh linear head ``{"kernel": [H, C], "bias": [C]}`` (std 0.02 like BERT)."""
    if num_classes < 2:
        raise ValueError(f"a classification head needs >= 2 classes, got {num_classes}")
    return {
        "kernel": 0.02 * jax.random.normal(key, (hidden, num_classes), jnp.float32),
        "bias": jnp.zeros((num_classes,), jnp.float32),
    }


def head_logits(head: dict, z: jax.Array) -> jax.Array:
    """Logits [B, C] of a linear head on representations ``z`` [B, H]."""
    return z @ head["kernel"] + head["bias"]


def _expected_shapes(config: bert.BertConfig) -> dict:
    tree = jax.eval_shape(
        lambda: bert.BertEncoder(config).init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
    )["params"]
    return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(tree).items()}


def check_encoder_params(params: Any, config: bert.BertConfig, *, source: str = "params") -> None:
    """Raises a one-line :class:`ArchitectureError` if ``params`` is not a ``config`` encoder."""
    if not isinstance(params, dict):
        raise ArchitectureError(f"{source} is not a parameter tree (got {type(params).__name__})")
    got = {k: tuple(np.shape(v)) for k, v in traverse_util.flatten_dict(params).items()}
    want = _expected_shapes(config)
    if got != want:
        missing = sorted(want.keys() - got.keys())
        extra = sorted(got.keys() - want.keys())
        if missing:
            what = f"lacks {'/'.join(missing[0])}"
        elif extra:
            what = f"has an unexpected {'/'.join(extra[0])}"
        else:
            k = sorted(k for k in want if got[k] != want[k])[0]
            what = f"has {'/'.join(k)} of shape {got[k]}, expected {want[k]}"
        raise ArchitectureError(
            f"{source} is not a BERT encoder with {config.num_layers} layers, hidden "
            f"{config.hidden_size}, vocab {config.vocab_size}: it {what}"
        )


def save_encoder(path: str | pathlib.Path, params: Any) -> None:
    """Saves encoder parameters into the new folder ``path`` (orbax)."""
    from robustml_jax.core.workitems import save_pytree

    save_pytree(pathlib.Path(path), params)


def load_encoder(path: str | pathlib.Path, config: bert.BertConfig) -> Any:
    """Loads encoder parameters saved by :func:`save_encoder`, checking the architecture."""
    from robustml_jax.core.workitems import load_pytree

    path = pathlib.Path(path)
    if not (path / "item").exists():
        raise FileNotFoundError(f"no encoder checkpoint at {path}")
    params = load_pytree(path)
    check_encoder_params(params, config, source=f"checkpoint {path}")
    return jax.tree.map(jnp.asarray, params)


def embedding_row_mask(params: Any, rows: np.ndarray) -> Any:
    """A 0/1 tree like ``params``: 1 only on the word-embedding rows ``rows`` (Embedding
    Poisoning trains nothing else)."""
    emb = params["embeddings"]["word_embeddings"]["embedding"]
    rows = np.asarray(rows, np.int64)
    if rows.size == 0:
        raise ValueError("embedding_row_mask needs at least one row")
    if rows.min() < 0 or rows.max() >= emb.shape[0]:
        raise ValueError(f"rows must be in [0, {emb.shape[0]}), got {rows.min()}..{rows.max()}")
    mask = jax.tree.map(lambda x: jnp.zeros((), x.dtype), params)
    m = np.zeros((emb.shape[0], 1), np.float32)
    m[rows] = 1.0
    mask["embeddings"]["word_embeddings"]["embedding"] = jnp.asarray(m)
    return mask


def magnitude_prune(params: Any, fraction: float, *, include_embeddings: bool = False) -> Any:
    """Zeroes the ``fraction`` smallest-magnitude entries of every dense kernel (per tensor).

    Args:
      params: encoder parameters.
      fraction: in [0, 1).
      include_embeddings: also prune the embedding tables (by default only the transformer
        layers' ``kernel`` matrices, as in magnitude pruning of BERT).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    flat = traverse_util.flatten_dict(params)
    out = {}
    for k, v in flat.items():
        prune = k[-1] == "kernel" or (include_embeddings and k[-1] == "embedding")
        if prune and fraction > 0:
            a = np.asarray(v)
            thr = np.quantile(np.abs(a), fraction)
            v = jnp.asarray(np.where(np.abs(a) <= thr, 0.0, a).astype(a.dtype))
        out[k] = v
    return traverse_util.unflatten_dict(out)


def reinit_top_layer(params: Any, key: jax.Array, config: bert.BertConfig) -> Any:
    """``params`` with the top transformer layer replaced by a fresh BERT initialisation."""
    fresh = bert.BertEncoder(config).init(key, jnp.zeros((1, 2), jnp.int32))["params"]
    top = f"layer_{config.num_layers - 1}"
    out = jax.tree.map(lambda x: x, params)
    out["encoder"] = dict(out["encoder"])
    out["encoder"][top] = fresh["encoder"][top]
    return out
