"""SentencePiece (trained here and T5's vocab) and WordPiece wrappers behind one interface."""

from __future__ import annotations

import itertools

import pytest

from robustml_jax import text
from robustml_jax.core import datasets

WORDS = (
    "the a movie film story actor plot scene good bad great boring funny sad long short "
    "director music camera light dark night day city river house friend family war love"
).split()


def _corpus(n: int = 400) -> list[str]:
    cycle = itertools.cycle(WORDS)
    return [" ".join(next(cycle) for _ in range(5 + i % 9)) + " ." for i in range(n)]


@pytest.fixture(scope="module")
def small_sp(tmp_path_factory):
    path = tmp_path_factory.mktemp("sp") / "small.model"
    text.train_sentencepiece(_corpus(), 48, path)
    return text.SentencePieceTokenizer(path, extra_ids=10)


@pytest.fixture(scope="module")
def t5_vocab():
    try:
        root = datasets.locate("t5x_tiny_checkpoint")
    except datasets.DatasetNotFoundError as e:
        pytest.skip(str(e))
    return text.SentencePieceTokenizer(root / "t5x_tiny_checkpoint" / "t5_vocab")


@pytest.fixture(scope="module")
def wordpiece():
    from robustml_jax.models import bert

    try:
        path = bert.minilm_dir() / "tokenizer.json"
    except datasets.DatasetNotFoundError as e:
        pytest.skip(str(e))
    return text.WordPieceTokenizer(path, max_len=256)


def test_trained_sentencepiece_round_trips(small_sp):
    assert isinstance(small_sp, text.Tokenizer)
    assert small_sp.num_pieces == 48 and small_sp.vocab_size == 58
    assert (small_sp.pad_id, small_sp.eos_id, small_sp.unk_id) == (0, 1, 2)
    sents = ["the movie was good .", "a long boring film about a river city"]
    ids = small_sp.encode(sents)
    assert all(isinstance(i, int) for seq in ids for i in seq)
    assert [small_sp.decode(s) for s in ids] == sents
    assert small_sp.encode([""]) == [[]]


def test_training_is_deterministic(tmp_path):
    a = text.train_sentencepiece(_corpus(), 40, tmp_path / "a.model")
    b = text.train_sentencepiece(_corpus(), 40, tmp_path / "b.model")
    assert a.read_bytes() == b.read_bytes()


def test_sentinels_count_down_from_the_top(small_sp):
    top = small_sp.vocab_size - 1
    assert small_sp.sentinel_id(0) == top and small_sp.sentinel_id(9) == top - 9
    ids = small_sp.encode(["the movie <extra_id_0> good <extra_id_3> ."])[0]
    assert top in ids and top - 3 in ids
    assert max(i for i in ids if i not in (top, top - 3)) < small_sp.num_pieces
    assert small_sp.decode(ids) == "the movie <extra_id_0> good <extra_id_3> ."
    assert small_sp.id_to_piece(top) == "<extra_id_0>"
    with pytest.raises(ValueError, match="only 10 sentinels"):
        small_sp.encode(["<extra_id_10>"])
    with pytest.raises(ValueError, match="outside"):
        small_sp.sentinel_id(10)


def test_t5_vocab_follows_t5(t5_vocab):
    assert t5_vocab.num_pieces == 32000 and t5_vocab.vocab_size == 32100
    assert (t5_vocab.pad_id, t5_vocab.eos_id, t5_vocab.unk_id) == (0, 1, 2)
    assert t5_vocab.sentinel_id(0) == 32099 and t5_vocab.sentinel_id(99) == 32000
    # Ids of T5's public vocabulary ("Hello" = 8774, "world" = 296).
    assert t5_vocab.encode(["Hello world"]) == [[8774, 296]]
    assert t5_vocab.encode(["Hello <extra_id_0> world"]) == [[8774, 32099, 296]]
    eos = text.SentencePieceTokenizer(t5_vocab.path, add_eos=True)
    assert eos.encode(["Hello world"]) == [[8774, 296, 1]]
    assert eos.decode([8774, 296, 1, 0, 0]) == "Hello world"


def test_wordpiece_ignores_the_shipped_128_truncation(wordpiece):
    assert isinstance(wordpiece, text.Tokenizer)
    assert wordpiece.vocab_size == 30522
    assert (wordpiece.pad_id, wordpiece.eos_id, wordpiece.cls_id) == (0, 102, 101)
    ids = wordpiece.encode(["Hello World!", ""])
    assert ids == [[101, 7592, 2088, 999, 102], [101, 102]]  # no fixed padding to 128
    assert wordpiece.decode(ids[0]) == "hello world!"
    long = wordpiece.encode([" ".join(["word"] * 500)])[0]
    assert len(long) == 256 and long[-1] == 102


def test_bad_inputs(small_sp, tmp_path):
    with pytest.raises(TypeError, match="single str"):
        small_sp.encode("not a list")
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        small_sp.encode(["ok", 5])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        small_sp.decode([small_sp.vocab_size])
    with pytest.raises(FileNotFoundError, match="no SentencePiece model"):
        text.SentencePieceTokenizer(tmp_path / "missing.model")
    (tmp_path / "junk.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a SentencePiece model"):
        text.SentencePieceTokenizer(tmp_path / "junk.model")
    with pytest.raises(ValueError, match="training failed"):
        text.train_sentencepiece(["tiny corpus"], 5000, tmp_path / "x.model")
    with pytest.raises(ValueError, match="non-empty"):
        text.train_sentencepiece(["", "  "], 50, tmp_path / "y.model")
