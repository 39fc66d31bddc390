"""T5 span corruption: noise fraction, span count, sentinels and exact reconstruction."""

from __future__ import annotations

import functools

import chex
import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from hypothesis import given, settings

from robustml_jax import text

SENTINEL = 32099  # T5's <extra_id_0>


def reconstruct(inputs, targets, sentinel_start, num_spans):
    """Puts each target span back in place of its sentinel (the inverse T5 relies on)."""
    sentinels = {sentinel_start - k for k in range(num_spans)}
    spans, current = {}, None
    for t in map(int, targets):
        if t in sentinels:
            current = t
            spans[current] = []
        else:
            spans[current].append(t)
    out = []
    for t in map(int, inputs):
        out.extend(spans[t] if t in sentinels else [t])
    return out


def _runs(mask) -> int:
    mask = np.asarray(mask, int)
    return int(np.sum(np.diff(np.concatenate([[0], mask])) == 1))


def _expected_counts(length, density, mean_span):
    noise = min(max(round(length * density), 1), length - 1)
    return noise, max(round(noise / mean_span), 1)


@functools.cache
def _corrupt(density: float, mean_span: float):
    """One jitted transform per config (shapes then retrace only when L changes)."""
    return jax.jit(
        functools.partial(
            text.span_corruption,
            sentinel_start=SENTINEL,
            noise_density=density,
            mean_noise_span_length=mean_span,
        )
    )


def check_properties(key, tokens, density, mean_span):
    """Checks T5's invariants on every row of a corrupted batch tokens [B, L]."""
    b, length = tokens.shape
    out = _corrupt(density, mean_span)(key, tokens)
    num_noise, num_spans = _expected_counts(length, density, mean_span)
    li, lt = text.span_corruption_lengths(
        length, noise_density=density, mean_noise_span_length=mean_span
    )
    assert (li, lt) == (length - num_noise + num_spans, num_noise + num_spans)
    chex.assert_shape([out.inputs, out.targets, out.noise_mask], [(b, li), (b, lt), (b, length)])
    for row in range(b):
        mask = np.asarray(out.noise_mask[row])
        inputs, targets = np.asarray(out.inputs[row]), np.asarray(out.targets[row])
        # Noise fraction and span count are T5's, exactly.
        assert mask.sum() == num_noise
        assert _runs(mask) == num_spans
        assert not mask[0] and mask[-1]
        # Sentinels count down from the top, once per span in each of inputs / targets.
        expected = SENTINEL - np.arange(num_spans)
        np.testing.assert_array_equal(inputs[inputs >= 32000], expected)
        np.testing.assert_array_equal(targets[targets >= 32000], expected)
        assert targets[0] == SENTINEL
        np.testing.assert_array_equal(inputs[inputs < 32000], tokens[row][~mask])
        np.testing.assert_array_equal(targets[targets < 32000], tokens[row][mask])
        # Interleaving inputs and targets gives back the original.
        assert reconstruct(inputs, targets, SENTINEL, num_spans) == tokens[row].tolist()


@pytest.mark.parametrize(
    ("length", "density", "mean_span"),
    [(2, 0.15, 3.0), (4, 0.5, 1.0), (37, 0.15, 3.0), (100, 0.3, 2.0), (128, 0.5, 8.0)],
)
def test_properties_across_configs(length, density, mean_span):
    tokens = np.random.default_rng(length).integers(3, 32000, (8, length))
    check_properties(jax.random.key(length), tokens, density, mean_span)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_properties_random_keys_and_tokens(seed):
    # The shape and config of one case above, so that this reuses its compiled transform.
    tokens = np.random.default_rng(seed).integers(3, 32000, (8, 37))
    check_properties(jax.random.key(seed), tokens, 0.15, 3.0)


def test_jitted_batch_with_eos_compiles_once():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def fn(key, tokens):
        return text.span_corruption(key, tokens, sentinel_start=SENTINEL, eos_id=1)

    tokens = np.arange(3, 3 + 4 * 100).reshape(4, 100)
    a = fn(jax.random.key(0), tokens)
    b = fn(jax.random.key(1), tokens)  # same shape: no retrace
    li, lt = text.span_corruption_lengths(100, add_eos=True)
    chex.assert_shape(a.inputs, (4, li))
    chex.assert_shape(a.targets, (4, lt))
    chex.assert_shape(a.noise_mask, (4, 100))
    assert a.inputs.dtype == np.int32
    assert (np.asarray(a.inputs[:, -1]) == 1).all() and (np.asarray(a.targets[:, -1]) == 1).all()
    # Rows get their own keys, and a different key gives a different mask.
    assert len({np.asarray(m).tobytes() for m in a.noise_mask}) > 1
    assert not np.array_equal(a.noise_mask, b.noise_mask)
    np.testing.assert_array_equal(fn(jax.random.key(0), tokens).inputs, a.inputs)
    for row in range(4):
        _, spans = _expected_counts(100, 0.15, 3.0)
        rec = reconstruct(a.inputs[row, :-1], a.targets[row, :-1], SENTINEL, spans)
        assert rec == tokens[row].tolist()


def test_span_lengths_are_random_with_the_right_mean():
    masks = jax.jit(
        jax.vmap(
            lambda k: text.random_spans_noise_mask(
                k, 512, noise_density=0.15, mean_noise_span_length=3.0
            )
        )
    )(jax.random.split(jax.random.key(0), 64))
    masks = np.asarray(masks)
    assert (masks.sum(1) == 77).all()
    assert np.mean([m.sum() / _runs(m) for m in masks]) == pytest.approx(77 / 26)
    first_noise = masks.argmax(1)
    assert len(set(first_noise.tolist())) > 10  # span placement varies with the key


def test_random_spans_helper_matches_t5():
    assert text.random_spans_helper(512) == (568, 114)  # T5's pre-training setting
    li, lt = text.span_corruption_lengths(568, add_eos=True)
    assert (li, lt) == (512, 114)
    tokens_length, targets_length = text.random_spans_helper(512, noise_density=0.5)
    assert targets_length <= 512
    assert text.span_corruption_lengths(tokens_length, noise_density=0.5, add_eos=True)[0] <= 512


def test_bad_inputs():
    key = jax.random.key(0)
    toks = np.arange(10)
    with pytest.raises(ValueError, match="noise_density must be in"):
        text.span_corruption(key, toks, sentinel_start=SENTINEL, noise_density=0.0)
    with pytest.raises(ValueError, match="mean_noise_span_length"):
        text.span_corruption(key, toks, sentinel_start=SENTINEL, mean_noise_span_length=0.5)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        text.span_corruption(key, np.arange(1), sentinel_start=SENTINEL)
    with pytest.raises(ValueError, match="too high"):
        text.span_corruption(
            key, toks, sentinel_start=SENTINEL, noise_density=0.9, mean_noise_span_length=1.0
        )
    with pytest.raises(ValueError, match=r"\[L\] or \[B, L\]"):
        text.span_corruption(key, np.int32(3), sentinel_start=SENTINEL)
    with pytest.raises(TypeError, match="integer ids"):
        text.span_corruption(key, np.ones(10), sentinel_start=SENTINEL)
    with pytest.raises(ValueError, match="no room"):
        text.span_corruption(key, np.arange(100), sentinel_start=2)
