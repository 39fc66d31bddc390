"""Soft prompts (Lester et al. 2021) on the shared Flax T5: init, I/O, loss and decoding.

A soft prompt is a float array ``[P, E]`` placed before the *embedded* encoder input
(google-research/prompt-tuning's ``prefix`` combine mode); the encoder self-attention and
the decoder's cross-attention masks get P ones in front, so every position attends to it.
Trainable parameters of all ProMoT stages are one tree ``{'model': t5_params, 'prompt': [P, E]}``
(``'prompt'`` absent for plain fine-tuning); which half trains is an optimizer mask.

Shapes: B = batch, T = encoder length, L = target length, P = prompt length, E = emb_dim,
V = vocab size.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from robustml_jax.models import t5

__all__ = [
    "PROMPT_INITS",
    "check_prompt",
    "init_prompt",
    "load_prompt",
    "prompted_greedy_decode",
    "save_prompt",
    "seq2seq_loss",
]

PROMPT_INITS = ("vocab", "class_labels", "uniform")


def init_prompt(
    key: jax.Array,
    length: int,
    embedding: jax.Array,
    *,
    method: str = "vocab",
    class_label_ids: Sequence[int] = (),
    vocab_sample_size: int = 5000,
    scale: float = 0.5,
) -> jax.Array:
    """A fresh soft prompt ``[P, E]`` (float32).

    Args:
      key: PRNG key.
      length: P >= 1.
      embedding: the model's token embedding ``[V, E]``.
      method: ``'vocab'``: rows of ``embedding`` for ids sampled uniformly (with replacement)
        from ``[3, min(V, vocab_sample_size))`` (Lester et al. sample the most common pieces;
        SentencePiece ids are roughly frequency-ordered); ``'class_labels'``: the embeddings of
        ``class_label_ids`` first (cycled if P is larger... only once; the rest sampled as
        ``'vocab'``); ``'uniform'``: U(-scale, scale) (prompt-tuning's gin default 0.5).
      class_label_ids: token ids of the class labels (``'class_labels'`` only).
      vocab_sample_size: how many leading ids ``'vocab'`` samples from.
      scale: half-width of the uniform init.
    """
    if not isinstance(length, int | np.integer) or length < 1:
        raise ValueError(f"prompt length must be a positive int, got {length!r}")
    embedding = jnp.asarray(embedding)
    if embedding.ndim != 2:
        raise ValueError(f"embedding must be [V, E], got shape {embedding.shape}")
    vocab, emb = embedding.shape
    if method == "uniform":
        return jax.random.uniform(key, (length, emb), jnp.float32, -scale, scale)
    hi = max(4, min(vocab, int(vocab_sample_size)))
    ids = jax.random.randint(key, (length,), 3, hi)
    if method == "class_labels":
        labels = [int(i) for i in class_label_ids]
        if not labels:
            raise ValueError("prompt init 'class_labels' needs class_label_ids")
        bad = [i for i in labels if not 0 <= i < vocab]
        if bad:
            raise ValueError(f"class_label_ids {bad} outside the vocabulary [0, {vocab})")
        labels = labels[:length]
        ids = ids.at[: len(labels)].set(jnp.asarray(labels, ids.dtype))
    elif method != "vocab":
        raise ValueError(f"unknown prompt init {method!r}; choose from {PROMPT_INITS}")
    return embedding[ids].astype(jnp.float32)


def check_prompt(prompt: Any, config: t5.T5Config) -> None:
    """Raises a one-line ValueError unless ``prompt`` is a float ``[P, E]`` for ``config``."""
    shape = tuple(getattr(prompt, "shape", ()))
    if len(shape) != 2 or shape[0] < 1:
        raise ValueError(f"a soft prompt must be [P, E] with P >= 1, got shape {shape}")
    if shape[1] != config.emb_dim:
        raise ValueError(
            f"the prompt has embedding size {shape[1]} but the model's emb_dim is "
            f"{config.emb_dim} (a prompt trained for another model size)"
        )
    if not jnp.issubdtype(prompt.dtype, jnp.floating):
        raise ValueError(f"a soft prompt must be float, got dtype {prompt.dtype}")


def save_prompt(path: str | os.PathLike, prompt: jax.Array) -> pathlib.Path:
    """Writes the prompt ``[P, E]`` as a ``.npy`` file (atomically)."""
    from robustml_jax.core.results import atomic_open

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        np.save(f, np.asarray(prompt, np.float32))
    return path


def load_prompt(path: str | os.PathLike, config: t5.T5Config) -> jax.Array:
    """Reads a prompt saved by :func:`save_prompt` and checks it against ``config``."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no prompt file at {path}")
    prompt = jnp.asarray(np.load(path))
    check_prompt(prompt, config)
    return prompt


def _logits(params: Mapping, inputs, targets, *, config, rng, dropout: bool):
    prompt = params.get("prompt")
    dec_in = jnp.concatenate([jnp.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)
    return t5.T5(config).apply(
        {"params": params["model"]},
        inputs,
        dec_in,
        targets,
        enable_dropout=dropout,
        prefix_embeddings=prompt,
        rngs={"dropout": rng} if dropout else None,
    )


def seq2seq_loss(
    params: Mapping,
    batch: Mapping[str, jax.Array],
    rng: jax.Array,
    *,
    config: t5.T5Config,
    label_smoothing: float = 0.0,
    dropout: bool = False,
) -> tuple[jax.Array, dict]:
    """Token-level cross-entropy of the targets (mean over non-pad target tokens).

    Args:
      params: ``{'model': t5_params, 'prompt': [P, E]}`` (``'prompt'`` optional).
      batch: ``inputs`` int ``[B, T]`` and ``targets`` int ``[B, L]`` (0 = padding; targets end
        with EOS).
      rng: dropout key.
      config: the model config (its ``dropout_rate`` applies when ``dropout``).
      label_smoothing: eps, t5x-style smoothing of the one-hot target over V classes.
      dropout: enable dropout.

    Returns:
      ``(loss, {'token_accuracy', 'sequence_accuracy'})``.
    """
    inputs, targets = batch["inputs"], batch["targets"]
    logits = _logits(params, inputs, targets, config=config, rng=rng, dropout=dropout)
    onehot = jax.nn.one_hot(targets, logits.shape[-1], dtype=jnp.float32)
    if label_smoothing:
        onehot = optax.smooth_labels(onehot, label_smoothing)
    ce = optax.softmax_cross_entropy(logits.astype(jnp.float32), onehot)
    w = (targets > 0).astype(jnp.float32)
    loss = jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)
    correct = (jnp.argmax(logits, -1) == targets) | (targets == 0)
    tok_acc = jnp.sum((jnp.argmax(logits, -1) == targets) * w) / jnp.maximum(jnp.sum(w), 1.0)
    return loss, {"token_accuracy": tok_acc, "sequence_accuracy": jnp.mean(jnp.all(correct, 1))}


def prompted_greedy_decode(
    params: Mapping,
    prompt: jax.Array | None,
    encoder_input_tokens: jax.Array,
    *,
    config: t5.T5Config,
    max_decode_len: int,
    eos_id: int = 1,
) -> jax.Array:
    """Greedy decoding with an optional soft prompt (pure; jit with ``config`` and
    ``max_decode_len`` static).

    Uses the shared T5's cache (:func:`t5.decode_step`); with ``prompt`` None it is
    :func:`t5.greedy_decode`'s result.

    Args:
      params: T5 parameters (unwrapped).
      prompt: ``[P, E]`` or None.
      encoder_input_tokens: int ``[B, T]``, 0 = padding.
      config: model config.
      max_decode_len: L.
      eos_id: T5's EOS (1).

    Returns:
      int32 ``[B, L]`` generated ids (zeros after EOS).
    """
    if prompt is None:
        return t5.greedy_decode(
            params, encoder_input_tokens, config=config, max_decode_len=max_decode_len
        ).sequences
    check_prompt(prompt, config)
    model = t5.T5(config)
    encoded = model.apply(
        {"params": params}, encoder_input_tokens, prefix_embeddings=prompt, method=t5.T5.encode
    )
    mask_tokens = t5.prefixed_mask_tokens(encoder_input_tokens, prompt)
    _, variables = model.apply(
        {"params": params}, encoded, max_decode_len, method=t5.T5.init_cache, mutable=["cache"]
    )
    batch = encoder_input_tokens.shape[0]

    def body(i, carry):
        cache, token, seqs, ended = carry
        logits, cache = t5.decode_step(params, cache, mask_tokens, token, config=config)
        nxt = jnp.where(ended, 0, jnp.argmax(logits, -1).astype(jnp.int32))
        seqs = seqs.at[:, i].set(nxt)
        return cache, nxt[:, None], seqs, ended | (nxt == eos_id)

    init = (
        variables["cache"],
        jnp.zeros((batch, 1), jnp.int32),
        jnp.zeros((batch, max_decode_len), jnp.int32),
        jnp.zeros((batch,), bool),
    )
    return jax.lax.fori_loop(0, max_decode_len, body, init)[2]
