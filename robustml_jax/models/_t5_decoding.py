"""Jittable greedy and beam-search decoding for :class:`T5` with its key/value cache.

The loops are ``lax.while_loop``s over one decoder position per iteration; the decoder start
token is 0, as in t5x. Beam search follows t5x's ``decoding.beam_search`` (top 2K candidates
per step so K can finish at once, live/finished sets, brevity penalty ``((5 + len) / 6) **
alpha``, early stop once no live beam can beat the worst finished one) but returns beams
best-first. Shapes: B = batch, T_enc = encoder length, L = max_decode_len, K = beam_size,
V = vocab_size.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from robustml_jax.models._t5_model import T5, T5Config, check_tokens

# t5x's NEG_INF: large but finite, so NEG_INF - NEG_INF stays 0 rather than NaN.
NEG_INF = -1.0e7


class DecodeResult(NamedTuple):
    """Decoded token ids and their scores.

    Attributes:
      sequences: int32 ``[B, L]`` (greedy) or ``[B, K, L]`` (beam search, best beam first):
        generated ids without the start token; after EOS (included) come zeros.
      scores: float32 ``[B]`` (greedy: summed log-probabilities of the generated tokens up to
        EOS) or ``[B, K]`` (beam search: log-probability / brevity penalty of each finished
        beam; t5x's conventions for a row without any finished beam: the live log-probs; empty
        finished slots score about -1e7).
    """

    sequences: jax.Array
    scores: jax.Array


def brevity_penalty(alpha: float, length: jax.Array) -> jax.Array:
    """t5x's length normalisation ``((5 + length) / 6) ** alpha`` (Wu et al. 2016, eq. 14)."""
    return jnp.power((5.0 + length) / 6.0, alpha)


def _validate(params, encoder_input_tokens, config, max_decode_len, eos_id):
    if not isinstance(config, T5Config):
        raise ValueError(f"config must be a T5Config, got {type(config).__name__}")
    check_tokens(encoder_input_tokens, config, name="encoder_input_tokens")
    if not isinstance(max_decode_len, int | np.integer) or max_decode_len < 1:
        raise ValueError(f"max_decode_len must be a positive int, got {max_decode_len!r}")
    if isinstance(eos_id, int | np.integer) and not 0 < eos_id < config.vocab_size:
        raise ValueError(
            f"eos_id must be in [1, {config.vocab_size}) (0 is the start/pad id) or None, "
            f"got {eos_id}"
        )


def init_decode_cache(
    params: Any, encoder_input_tokens: jax.Array, *, config: T5Config, max_decode_len: int
) -> Any:
    """Encodes the inputs and returns the decoding cache for ``max_decode_len`` steps.

    Args:
      params: T5 parameters (t5x tree, unwrapped).
      encoder_input_tokens: int ``[B, T_enc]``.
      config: the model config.
      max_decode_len: L, cache length.

    Returns:
      The ``'cache'`` collection: per decoder layer zeroed self-attention keys/values ``[B, L,
      H, D]`` and cross-attention keys/values ``[B, T_enc, H, D]``, plus ``cache_index``.
    """
    _validate(params, encoder_input_tokens, config, max_decode_len, None)
    model = T5(config)
    encoded = model.apply({"params": params}, encoder_input_tokens, method=T5.encode)
    _, variables = model.apply(
        {"params": params}, encoded, max_decode_len, method=T5.init_cache, mutable=["cache"]
    )
    return variables["cache"]


def decode_step(
    params: Any,
    cache: Any,
    encoder_input_tokens: jax.Array,
    decoder_tokens: jax.Array,
    *,
    config: T5Config,
) -> tuple[jax.Array, Any]:
    """One cached decoder step.

    Args:
      params: T5 parameters.
      cache: from :func:`init_decode_cache` (or a previous step).
      encoder_input_tokens: int ``[B, T_enc]`` (padding mask of the cross-attention).
      decoder_tokens: int ``[B, 1]``, the token at the cache's current position.
      config: the model config.

    Returns:
      Next-token logits ``[B, V]`` and the updated cache.
    """
    logits, variables = T5(config).apply(
        {"params": params, "cache": cache},
        None,
        encoder_input_tokens,
        decoder_tokens,
        decode=True,
        method=T5.decode,
        mutable=["cache"],
    )
    return logits[:, 0], variables["cache"]


class _GreedyState(NamedTuple):
    index: jax.Array  # scalar int32: position being generated
    sequences: jax.Array  # [B, L]
    token: jax.Array  # [B, 1]: last token, fed at `index`
    ended: jax.Array  # [B] bool
    scores: jax.Array  # [B]
    cache: Any


def greedy_decode(
    params: Any,
    encoder_input_tokens: jax.Array,
    *,
    config: T5Config,
    max_decode_len: int,
    eos_id: int | None = 1,
    use_cache: bool = True,
) -> DecodeResult:
    """Greedy (argmax) decoding; stops when every row has emitted ``eos_id`` or at L tokens.

    Jit with ``static_argnames=('config', 'max_decode_len', 'use_cache')`` (``eos_id`` may be
    static or traced; None must be static).

    Args:
      params: T5 parameters (t5x tree, unwrapped).
      encoder_input_tokens: int ``[B, T_enc]``, 0 = padding.
      config: the model config.
      max_decode_len: L, tokens to generate at most.
      eos_id: end-of-sequence id (T5: 1); None decodes all L positions.
      use_cache: use the key/value cache (one position per step); False re-runs the full
        decoder over all L positions every step (same result, for speed comparisons).

    Returns:
      ``DecodeResult(sequences [B, L], scores [B])``.
    """
    _validate(params, encoder_input_tokens, config, max_decode_len, eos_id)
    model = T5(config)
    batch = encoder_input_tokens.shape[0]
    length = int(max_decode_len)
    encoded = model.apply({"params": params}, encoder_input_tokens, method=T5.encode)
    cache = None
    if use_cache:
        _, variables = model.apply(
            {"params": params}, encoded, length, method=T5.init_cache, mutable=["cache"]
        )
        cache = variables["cache"]

    def next_logits(state: _GreedyState):
        if use_cache:
            return decode_step(
                params, state.cache, encoder_input_tokens, state.token, config=config
            )
        # Without a cache: the whole (causal) decoder on [0, y_0, ..., y_{L-2}].
        inputs = jnp.concatenate([jnp.zeros((batch, 1), jnp.int32), state.sequences[:, :-1]], 1)
        logits = model.apply(
            {"params": params}, encoded, encoder_input_tokens, inputs, method=T5.decode
        )
        return lax.dynamic_index_in_dim(logits, state.index, axis=1, keepdims=False), None

    def cond(state: _GreedyState):
        return (state.index < length) & ~jnp.all(state.ended)

    def body(state: _GreedyState):
        logits, new_cache = next_logits(state)
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
        token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        token_log_prob = jnp.take_along_axis(log_probs, token[:, None], axis=-1)[:, 0]
        token = jnp.where(state.ended, 0, token)
        scores = state.scores + jnp.where(state.ended, 0.0, token_log_prob)
        sequences = lax.dynamic_update_slice(state.sequences, token[:, None], (0, state.index))
        ended = state.ended if eos_id is None else state.ended | (token == eos_id)
        return _GreedyState(state.index + 1, sequences, token[:, None], ended, scores, new_cache)

    init = _GreedyState(
        index=jnp.zeros((), jnp.int32),
        sequences=jnp.zeros((batch, length), jnp.int32),
        token=jnp.zeros((batch, 1), jnp.int32),
        ended=jnp.zeros((batch,), bool),
        scores=jnp.zeros((batch,), jnp.float32),
        cache=cache,
    )
    final = lax.while_loop(cond, body, init)
    return DecodeResult(final.sequences, final.scores)


class _BeamState(NamedTuple):
    index: jax.Array  # scalar int32: live sequences hold tokens up to column `index`
    live_log_probs: jax.Array  # [B, K]
    live_seqs: jax.Array  # [B, K, L + 1], column 0 = start token 0
    finished_scores: jax.Array  # [B, K]
    finished_seqs: jax.Array  # [B, K, L + 1]
    finished_flags: jax.Array  # [B, K] bool
    cache: Any  # leaves [B * K, ...]


def _gather_beams(x: jax.Array, beam_indices: jax.Array) -> jax.Array:
    """``x [B, K_old, ...]``, ``beam_indices [B, K_new]`` -> ``[B, K_new, ...]``."""
    idx = beam_indices.reshape(*beam_indices.shape, *([1] * (x.ndim - 2)))
    return jnp.take_along_axis(x, idx, axis=1)


def _gather_cache(cache: Any, beam_indices: jax.Array, beam_size: int) -> Any:
    """Reorders the self-attention caches ``[B * K, ...]`` by parent beam.

    Cross-attention keys/values are identical across a row's beams and the index is a
    scalar, so they are left alone.
    """

    def gather(path, x):
        if x.ndim == 0 or not any(getattr(k, "key", None) == "self_attention" for k in path):
            return x
        split = x.reshape(-1, beam_size, *x.shape[1:])
        return _gather_beams(split, beam_indices).reshape(x.shape)

    return jax.tree_util.tree_map_with_path(gather, cache)


def beam_search(
    params: Any,
    encoder_input_tokens: jax.Array,
    *,
    config: T5Config,
    max_decode_len: int,
    beam_size: int = 4,
    alpha: float = 0.6,
    eos_id: int = 1,
) -> DecodeResult:
    """Beam search with t5x's algorithm and brevity penalty, using the key/value cache.

    Jit with ``static_argnames=('config', 'max_decode_len', 'beam_size')``; ``alpha`` and
    ``eos_id`` may be static or traced.
    With ``beam_size=1, alpha=0`` it returns the greedy sequence and score.

    Args:
      params: T5 parameters (t5x tree, unwrapped).
      encoder_input_tokens: int ``[B, T_enc]``, 0 = padding.
      config: the model config.
      max_decode_len: L.
      beam_size: K.
      alpha: brevity-penalty exponent (>= 0; 0 ranks by raw log-probability).
      eos_id: end-of-sequence id (T5: 1).

    Returns:
      ``DecodeResult(sequences [B, K, L], scores [B, K])``, best beam first.
    """
    _validate(params, encoder_input_tokens, config, max_decode_len, eos_id)
    if not isinstance(beam_size, int | np.integer) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
    if not isinstance(alpha, jax.core.Tracer) and not alpha >= 0:
        raise ValueError(f"alpha must be >= 0 (the stopping bound assumes it), got {alpha}")
    model = T5(config)
    batch, k, length = encoder_input_tokens.shape[0], int(beam_size), int(max_decode_len)
    encoded = model.apply({"params": params}, encoder_input_tokens, method=T5.encode)
    _, variables = model.apply(
        {"params": params}, encoded, length, method=T5.init_cache, mutable=["cache"]
    )
    # One cache row per beam; cross-attention keys/values are computed once per input row.
    cache = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0) if x.ndim else x, variables["cache"])
    flat_inputs = jnp.repeat(encoder_input_tokens, k, axis=0)
    max_penalty = brevity_penalty(alpha, length)

    def cond(state: _BeamState):
        # The best a live beam can still reach: its log-prob (only falls) over the largest
        # brevity penalty. Stop when no row could improve its worst finished beam.
        best_live = state.live_log_probs[:, 0] / max_penalty
        worst_finished = jnp.where(
            state.finished_flags[:, -1], state.finished_scores[:, -1], NEG_INF
        )
        done = jnp.all(worst_finished > best_live)
        return (state.index < length) & ~done

    def body(state: _BeamState):
        tokens = lax.dynamic_index_in_dim(state.live_seqs, state.index, axis=2)  # [B, K, 1]
        logits, new_cache = decode_step(
            params, state.cache, flat_inputs, tokens.reshape(batch * k, 1), config=config
        )
        vocab = logits.shape[-1]
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(batch, k, vocab)
        candidates = (log_probs + state.live_log_probs[..., None]).reshape(batch, k * vocab)
        # 2K candidates, so K survive even if K of them end here.
        top_log_probs, top_flat = lax.top_k(candidates, 2 * k)
        top_beams, top_tokens = top_flat // vocab, top_flat % vocab
        top_seqs = lax.dynamic_update_slice(
            _gather_beams(state.live_seqs, top_beams),
            top_tokens[..., None].astype(jnp.int32),
            (0, 0, state.index + 1),
        )
        ended = top_tokens == eos_id

        live_candidates = top_log_probs + ended * NEG_INF
        live_log_probs, keep = lax.top_k(live_candidates, k)
        live_seqs = _gather_beams(top_seqs, keep)
        new_cache = _gather_cache(new_cache, jnp.take_along_axis(top_beams, keep, 1), k)

        new_scores = top_log_probs / brevity_penalty(alpha, state.index + 1) + ~ended * NEG_INF
        all_scores = jnp.concatenate([state.finished_scores, new_scores], 1)
        all_seqs = jnp.concatenate([state.finished_seqs, top_seqs], 1)
        all_flags = jnp.concatenate([state.finished_flags, ended], 1)
        finished_scores, best = lax.top_k(all_scores, k)
        return _BeamState(
            index=state.index + 1,
            live_log_probs=live_log_probs,
            live_seqs=live_seqs,
            finished_scores=finished_scores,
            finished_seqs=_gather_beams(all_seqs, best),
            finished_flags=jnp.take_along_axis(all_flags, best, 1),
            cache=new_cache,
        )

    first_live = jnp.where(jnp.arange(k) == 0, 0.0, NEG_INF).astype(jnp.float32)
    init = _BeamState(
        index=jnp.zeros((), jnp.int32),
        live_log_probs=jnp.tile(first_live, (batch, 1)),
        live_seqs=jnp.zeros((batch, k, length + 1), jnp.int32),
        finished_scores=jnp.full((batch, k), NEG_INF, jnp.float32),
        finished_seqs=jnp.zeros((batch, k, length + 1), jnp.int32),
        finished_flags=jnp.zeros((batch, k), bool),
        cache=cache,
    )
    final = lax.while_loop(cond, body, init)
    any_finished = jnp.any(final.finished_flags, axis=1)
    sequences = jnp.where(any_finished[:, None, None], final.finished_seqs, final.live_seqs)
    scores = jnp.where(any_finished[:, None], final.finished_scores, final.live_log_probs)
    return DecodeResult(sequences[:, :, 1:], scores)
