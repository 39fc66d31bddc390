"""Soft prompts: the masks extend correctly (a prompt made of token embeddings equals those
tokens in front of the input), decoding with a prompt, initialisation, I/O and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax import promot
from robustml_jax.models import t5

CFG = t5.T5Config.t5_1_1_tiny(vocab_size=64, emb_dim=8, head_dim=4, mlp_dim=16)


@pytest.fixture(scope="module")
def params():
    return t5.init_params(jax.random.key(0), CFG)


def _apply(params, enc, dec, prefix=None):
    return t5.T5(CFG).apply({"params": params}, enc, dec, dec, prefix_embeddings=prefix)


def test_prefix_of_embeddings_equals_prepended_tokens(params):
    """Prompt positions are attended by the encoder and by the decoder's cross-attention."""
    ids = jnp.array([5, 9, 17], jnp.int32)
    enc = jnp.array([[3, 4, 5, 1, 0, 0], [7, 8, 1, 0, 0, 0]], jnp.int32)
    dec = jnp.array([[0, 11, 12], [0, 13, 0]], jnp.int32)
    prefix = params["token_embedder"]["embedding"][ids]
    got = _apply(params, enc, dec, prefix)
    want = _apply(params, jnp.concatenate([jnp.tile(ids, (2, 1)), enc], 1), dec)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Per-row prompts [B, P, E] are honoured row by row.
    per_row = jnp.stack([prefix, prefix[::-1]])
    got_rows = _apply(params, enc, dec, per_row)
    want1 = _apply(params, jnp.concatenate([ids[::-1][None], enc[1:]], 1), dec[1:])
    np.testing.assert_allclose(got_rows[1:], want1, rtol=1e-5, atol=1e-5)
    # The prompt changes the output (it is not masked away).
    assert not np.allclose(got, _apply(params, enc, dec))


def test_padding_after_the_input_stays_masked(params):
    prefix = jax.random.normal(jax.random.key(1), (4, CFG.emb_dim))
    enc = jnp.array([[3, 4, 5, 1]], jnp.int32)
    dec = jnp.array([[6, 11]], jnp.int32)  # no padding target: every query row is live
    a = _apply(params, enc, dec, prefix)
    b = _apply(params, jnp.pad(enc, ((0, 0), (0, 5))), dec, prefix)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_prompted_decode_equals_decode_of_prepended_tokens(params):
    ids = jnp.array([5, 9], jnp.int32)
    enc = jnp.array([[3, 4, 5, 1, 0], [7, 8, 1, 0, 0]], jnp.int32)
    prefix = params["token_embedder"]["embedding"][ids]
    got = promot.prompted_greedy_decode(params, prefix, enc, config=CFG, max_decode_len=5)
    want = t5.greedy_decode(
        params, jnp.concatenate([jnp.tile(ids, (2, 1)), enc], 1), config=CFG, max_decode_len=5
    ).sequences
    np.testing.assert_array_equal(got, want)
    plain = promot.prompted_greedy_decode(params, None, enc, config=CFG, max_decode_len=5)
    np.testing.assert_array_equal(
        plain, t5.greedy_decode(params, enc, config=CFG, max_decode_len=5).sequences
    )


def test_init_methods(params):
    emb = params["token_embedder"]["embedding"]
    p = promot.init_prompt(jax.random.key(0), 6, emb, method="vocab", vocab_sample_size=40)
    assert p.shape == (6, CFG.emb_dim)
    rows = np.asarray(emb)
    for v in np.asarray(p):  # every row is an embedding row of an id in [3, 40)
        match = np.where(np.all(np.isclose(rows, v), axis=1))[0]
        assert match.size and 3 <= match[0] < 40
    p = promot.init_prompt(jax.random.key(0), 5, emb, method="class_labels", class_label_ids=[7, 8])
    np.testing.assert_array_equal(p[:2], emb[jnp.array([7, 8])])
    p = promot.init_prompt(jax.random.key(0), 50, emb, method="uniform", scale=0.5)
    assert float(jnp.abs(p).max()) <= 0.5
    with pytest.raises(ValueError, match="unknown prompt init 'zeros'"):
        promot.init_prompt(jax.random.key(0), 2, emb, method="zeros")
    with pytest.raises(ValueError, match="needs class_label_ids"):
        promot.init_prompt(jax.random.key(0), 2, emb, method="class_labels")
    with pytest.raises(ValueError, match="positive int"):
        promot.init_prompt(jax.random.key(0), 0, emb)


def test_prompt_io_and_wrong_embedding_size(tmp_path):
    prompt = jnp.arange(16.0).reshape(2, 8)
    path = promot.save_prompt(tmp_path / "p.npy", prompt)
    np.testing.assert_array_equal(promot.load_prompt(path, CFG), prompt)
    promot.save_prompt(tmp_path / "q.npy", jnp.zeros((2, 6)))
    with pytest.raises(ValueError, match="embedding size 6 but the model's emb_dim is 8"):
        promot.load_prompt(tmp_path / "q.npy", CFG)
    with pytest.raises(FileNotFoundError, match="no prompt file"):
        promot.load_prompt(tmp_path / "missing.npy", CFG)


def test_bad_prefix_shape_is_one_line(params):
    enc = jnp.array([[3, 1]], jnp.int32)
    with pytest.raises(ValueError, match=r"prefix_embeddings must be \[P, 8\]"):
        _apply(params, enc, enc, jnp.zeros((2, 5)))


def test_prompt_longer_than_budget():
    with pytest.raises(
        ValueError, match="prompt length 128 leaves no room within the input budget of 128"
    ):
        promot.check_budget(128, 128)
    assert promot.check_budget(20, 128) == 108


def test_text_over_budget_is_one_line():
    class Tok:
        def encode(self, texts):
            return [[5] * len(t) for t in texts]

    with pytest.raises(ValueError, match="text 1 has 7 tokens, more than the input budget of 4"):
        promot.encode_texts(Tok(), ["ab", "abcdef"], 4)
    out = promot.encode_texts(Tok(), ["abcdef"], 4, truncate="left")
    np.testing.assert_array_equal(out, [[5, 5, 5, 1]])


def test_checkpoint_of_another_size_names_parameter():
    small = t5.init_params(jax.random.key(0), CFG)
    other = t5.T5Config.t5_1_1_tiny(vocab_size=64)
    with pytest.raises(
        ValueError, match=r"parameter 'decoder/decoder_norm/scale' has shape \(8,\)"
    ):
        t5.check_params(small, other)
