"""pad_batch / bucket_length: shapes, dtypes, masks, bucketing and errors."""

from __future__ import annotations

import numpy as np
import pytest

from robustml_jax import text


def test_pads_to_longest_with_mask():
    batch = text.pad_batch([[5, 6, 7], [8], []], pad_id=0)
    assert isinstance(batch, text.PaddedBatch)
    assert batch.tokens.dtype == np.int32 and batch.mask.dtype == bool
    np.testing.assert_array_equal(batch.tokens, [[5, 6, 7], [8, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(batch.mask, [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    tokens, mask = text.pad_batch([np.array([1, 2], np.int64)], max_len=4, pad_id=-1)
    np.testing.assert_array_equal(tokens, [[1, 2, -1, -1]])
    np.testing.assert_array_equal(mask.sum(1), [2])


@pytest.mark.parametrize(
    ("longest", "bucket", "max_len", "want"),
    [
        (5, "pow2", None, 8),
        (8, "pow2", None, 8),
        (9, "pow2", 12, 12),
        (33, 32, None, 64),
        (32, 32, None, 32),
        (0, None, None, 1),
        (5, 16, 10, 10),
    ],
)
def test_bucketing(longest, bucket, max_len, want):
    assert text.bucket_length(longest, bucket=bucket, max_len=max_len) == want
    if longest:
        batch = text.pad_batch([[1] * longest], bucket=bucket, max_len=max_len)
        assert batch.tokens.shape == (1, want)


def test_truncation_is_explicit():
    with pytest.raises(ValueError, match="5 tokens > max_len=3"):
        text.pad_batch([[1, 2, 3, 4, 5]], max_len=3)
    batch = text.pad_batch([[1, 2, 3, 4, 5], [9]], max_len=3, truncate=True)
    np.testing.assert_array_equal(batch.tokens, [[1, 2, 3], [9, 0, 0]])
    assert batch.mask.all(1).tolist() == [True, False]


def test_bad_inputs():
    with pytest.raises(ValueError, match="no sequences"):
        text.pad_batch([])
    with pytest.raises(TypeError, match="got a string"):
        text.pad_batch("abc")
    with pytest.raises(ValueError, match="expected 1-D"):
        text.pad_batch([[[1, 2]]])
    with pytest.raises(TypeError, match="integer ids"):
        text.pad_batch([[1.5, 2.0]])
    with pytest.raises(ValueError, match="bucket must be"):
        text.pad_batch([[1]], bucket="fibonacci")
    with pytest.raises(ValueError, match="max_len must be"):
        text.pad_batch([[1]], max_len=0)
