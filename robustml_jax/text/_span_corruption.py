"""T5's span-corruption pre-training objective (Raffel et al., 2020, Sec. 3.1.4 and 3.3.4).

A random ``noise_density`` fraction of the tokens, in spans of mean length
``mean_noise_span_length``, is dropped from the inputs; each dropped span is replaced by one
sentinel id, and the targets list the dropped spans, each after its sentinel::

    tokens   The  quick brown fox  jumps over the  lazy dog
    inputs   The  <X>         fox  jumps <Y>       lazy dog
    targets  <X>  quick brown <Y>  over the  <Z>

Sentinel ids count *down* from ``sentinel_start`` (T5: ``<extra_id_0>`` = ``vocab_size - 1``).
As in T5's ``random_spans_noise_mask``, the counts are fixed by the length alone
(``round(L * noise_density)`` noise tokens in ``round(noise / mean_span)`` spans), the sequence
starts with a non-noise span and ends with a noise span; the span lengths are uniformly random
compositions. Since the counts are static, inputs and targets have static lengths and the
whole transform is jittable.

Shapes: L = tokens, Li = input length, Lt = target length, B = batch.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "SpanCorruption",
    "random_spans_helper",
    "random_spans_noise_mask",
    "span_corruption",
    "span_corruption_lengths",
]


class SpanCorruption(NamedTuple):
    """Result of :func:`span_corruption`.

    Attributes:
      inputs: int32 [Li] or [B, Li]: kept tokens, one sentinel per noise span (+ EOS).
      targets: int32 [Lt] or [B, Lt]: each noise span after its sentinel (+ EOS).
      noise_mask: bool [L] or [B, L]: which tokens were dropped from the inputs.
    """

    inputs: jax.Array
    targets: jax.Array
    noise_mask: jax.Array


def _check_config(noise_density: float, mean_noise_span_length: float) -> None:
    if not 0.0 < noise_density < 1.0:
        raise ValueError(f"noise_density must be in (0, 1), got {noise_density}")
    if not mean_noise_span_length >= 1.0:
        raise ValueError(f"mean_noise_span_length must be >= 1, got {mean_noise_span_length}")


def _counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) for a sequence of ``length`` tokens, as T5 counts them."""
    _check_config(noise_density, mean_noise_span_length)
    if length < 2:
        raise ValueError(f"span corruption needs at least 2 tokens, got {length}")
    num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
    if length - num_noise < num_spans:
        raise ValueError(
            f"{num_spans} noise spans need {num_spans} non-noise tokens between them but "
            f"only {length - num_noise} of {length} are left (noise_density={noise_density} "
            "is too high for this mean_noise_span_length)"
        )
    return num_noise, num_spans


def span_corruption_lengths(
    length: int,
    *,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    add_eos: bool = False,
) -> tuple[int, int]:
    """The (inputs, targets) lengths :func:`span_corruption` produces from ``length`` tokens.

    Args:
      length: L, the number of tokens before corruption.
      noise_density: fraction of tokens dropped.
      mean_noise_span_length: mean length of a dropped span.
      add_eos: count one appended EOS in each.

    Returns:
      ``(Li, Lt)`` = ``(L - noise + spans, noise + spans)`` (+1 each with EOS).
    """
    num_noise, num_spans = _counts(int(length), noise_density, mean_noise_span_length)
    extra = int(add_eos)
    return length - num_noise + num_spans + extra, num_noise + num_spans + extra


def random_spans_helper(
    inputs_length: int, *, noise_density: float = 0.15, mean_noise_span_length: float = 3.0
) -> tuple[int, int]:
    """How many raw tokens to corrupt so the inputs, EOS included, fill ``inputs_length``.

    T5 splits its token stream into chunks of this raw length so that no example needs padding
    (T5's ``random_spans_helper``; with ``noise_density=0.5`` it shortens the chunk by one
    when the targets would come out longer than the inputs).

    Args:
      inputs_length: the model's input length (T5: 512).
      noise_density, mean_noise_span_length: as in :func:`span_corruption`.

    Returns:
      ``(tokens_length, targets_length)``, the latter EOS included (T5 defaults: (568, 114)).
    """
    if inputs_length < 3:
        raise ValueError(f"inputs_length must be >= 3, got {inputs_length}")

    def lengths(n: int) -> tuple[int, int]:
        return span_corruption_lengths(
            n,
            noise_density=noise_density,
            mean_noise_span_length=mean_noise_span_length,
            add_eos=True,
        )

    tokens_length = 2
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    inputs, targets = lengths(tokens_length)
    if noise_density == 0.5 and targets > inputs:
        tokens_length -= 1
        targets -= 1
    return tokens_length, targets


def _random_composition(key: jax.Array, num_items: int, num_segments: int) -> jax.Array:
    """Uniformly random split of ``num_items`` into ``num_segments`` positive parts [S]."""
    starts = jnp.arange(num_items - 1) < num_segments - 1
    starts = jax.random.permutation(key, starts)
    segment_id = jnp.cumsum(jnp.concatenate([jnp.zeros((1,), bool), starts]))
    return jax.ops.segment_sum(
        jnp.ones((num_items,), jnp.int32), segment_id, num_segments=num_segments
    )


def random_spans_noise_mask(
    key: jax.Array,
    length: int,
    *,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
) -> jax.Array:
    """T5's noise mask: alternating non-noise / noise spans of random lengths.

    Args:
      key: PRNG key.
      length: L (static).
      noise_density, mean_noise_span_length: as in :func:`span_corruption`.

    Returns:
      bool [L]: exactly ``round(L * noise_density)`` (clipped to [1, L - 1]) True entries in
      ``max(round(noise / mean_span), 1)`` runs; entry 0 is False and entry L - 1 is True.
    """
    num_noise, num_spans = _counts(int(length), noise_density, mean_noise_span_length)
    k_noise, k_keep = jax.random.split(key)
    noise_lengths = _random_composition(k_noise, num_noise, num_spans)
    keep_lengths = _random_composition(k_keep, length - num_noise, num_spans)
    interleaved = jnp.stack([keep_lengths, noise_lengths], axis=1).reshape(-1)
    span_starts = jnp.cumsum(interleaved)[:-1]
    span_start = jnp.zeros((length,), jnp.int32).at[span_starts].add(1)
    return jnp.cumsum(span_start) % 2 == 1


def _collapse_runs(tokens: jax.Array, mask: jax.Array, sentinel_start: int, out_len: int):
    """Replaces each run of ``mask`` by one sentinel (counting down) and drops the rest."""
    prev = jnp.concatenate([jnp.zeros((1,), bool), mask[:-1]])
    first = mask & ~prev
    run_index = jnp.cumsum(first) - 1
    replaced = jnp.where(first, sentinel_start - run_index, tokens)
    keep = ~(mask & prev)
    dest = jnp.where(keep, jnp.cumsum(keep) - 1, out_len)
    return jnp.zeros((out_len,), jnp.int32).at[dest].set(replaced, mode="drop")


def span_corruption(
    key: jax.Array,
    tokens: jax.Array,
    *,
    sentinel_start: int,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    eos_id: int | None = None,
) -> SpanCorruption:
    """T5 span corruption of unpadded token sequences (Raffel et al., 2020, Sec. 3.1.4).

    ``tokens`` must be real tokens only (no padding, no EOS): chunk a token stream into pieces
    of :func:`random_spans_helper`'s length first, as T5 does. Token ids must lie below the
    sentinels used (``sentinel_start - spans + 1``); this is not checked under ``jit``.

    Args:
      key: PRNG key (split per row for a batch).
      tokens: int [L] or [B, L].
      sentinel_start: the id of the first sentinel (T5: ``vocab_size - 1``, ``<extra_id_0>``);
        span k gets ``sentinel_start - k``.
      noise_density: fraction of tokens dropped from the inputs.
      mean_noise_span_length: mean length of a dropped span.
      eos_id: if given, appended to both inputs and targets.

    Returns:
      ``SpanCorruption(inputs [.., Li], targets [.., Lt], noise_mask [.., L])`` with the
      lengths of :func:`span_corruption_lengths`.
    """
    tokens = jnp.asarray(tokens)
    if tokens.ndim not in (1, 2):
        raise ValueError(f"tokens must be [L] or [B, L], got shape {tokens.shape}")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise TypeError(f"tokens must be integer ids, got dtype {tokens.dtype}")
    length = tokens.shape[-1]
    num_noise, num_spans = _counts(length, noise_density, mean_noise_span_length)
    if int(sentinel_start) - num_spans + 1 < 0:
        raise ValueError(
            f"sentinel_start={sentinel_start} leaves no room for {num_spans} sentinels"
        )
    if tokens.ndim == 2:
        keys = jax.random.split(key, tokens.shape[0])
        return jax.vmap(
            lambda k, t: span_corruption(
                k,
                t,
                sentinel_start=sentinel_start,
                noise_density=noise_density,
                mean_noise_span_length=mean_noise_span_length,
                eos_id=eos_id,
            )
        )(keys, tokens)
    tokens = tokens.astype(jnp.int32)
    mask = random_spans_noise_mask(
        key,
        length,
        noise_density=noise_density,
        mean_noise_span_length=mean_noise_span_length,
    )
    inputs = _collapse_runs(tokens, mask, sentinel_start, length - num_noise + num_spans)
    targets = _collapse_runs(tokens, ~mask, sentinel_start, num_noise + num_spans)
    if eos_id is not None:
        eos = jnp.full((1,), eos_id, jnp.int32)
        inputs = jnp.concatenate([inputs, eos])
        targets = jnp.concatenate([targets, eos])
    return SpanCorruption(inputs, targets, mask)
