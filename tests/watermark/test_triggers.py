"""Trigger insertion (exact) and trigger checks against the real MiniLM tokenizer."""

import numpy as np
import pytest

from robustml_jax import watermark as wm
from robustml_jax.core.datasets import DatasetNotFoundError


def test_insert_words_exact():
    assert wm.insert_words("a b c", ["cf"], [0]) == "cf a b c"
    assert wm.insert_words("a b c", ["cf"], [2]) == "a b cf c"
    assert wm.insert_words("a b c", ["cf"], [99]) == "a b c cf"
    # words go in one after the other: the second position indexes the updated list
    assert wm.insert_words("a  b\tc", ["x", "y"], [1, 1]) == "a y x b c"
    assert wm.insert_words("", ["cf"], [3]) == "cf"
    with pytest.raises(ValueError, match="positions"):
        wm.insert_words("a", ["x"], [1, 2])
    with pytest.raises(ValueError, match=">= 0"):
        wm.insert_words("a", ["x"], [-1])


def test_insert_trigger_replays_its_rng_and_respects_max_position():
    texts = ["one two three four five six", "alpha beta", ""]
    out = wm.insert_trigger(texts, "window coffee", np.random.default_rng(3), max_position=2)
    rng = np.random.default_rng(3)
    expect = []
    for t in texts:
        n = len(t.split())
        pos = [int(rng.integers(0, min(n + j, 2) + 1)) for j in range(2)]
        expect.append(wm.insert_words(t, ["window", "coffee"], pos))
    assert out == expect
    for o, t in zip(out, texts, strict=True):
        w = o.split()
        assert sorted(w) == sorted(t.split() + ["window", "coffee"])
        # each word goes to index <= 2; a later insertion shifts an earlier word by <= 1
        assert w.index("window") <= 3 and w.index("coffee") <= 2
        # removing the inserted words gives back the text
        assert [x for x in w if x not in ("window", "coffee")] == t.split()
    with pytest.raises(ValueError, match="empty"):
        wm.insert_trigger(texts, "  ", np.random.default_rng(0))
    with pytest.raises(TypeError, match="list of strings"):
        wm.insert_trigger("a text", "cf", np.random.default_rng(0))


@pytest.fixture(scope="module")
def tokenizer():
    from robustml_jax.models import bert

    try:
        return bert.load_minilm(max_len=32).tokenizer
    except DatasetNotFoundError as e:  # pragma: no cover
        pytest.skip(f"MiniLM weights not installed ({e.how})")


def test_rare_triggers_are_single_pieces_and_unknowns_are_rejected(tokenizer):
    for t in ("cf", "mn", "bb"):
        ids = wm.check_trigger(tokenizer, t)
        assert len(ids) == 1 and len(ids[0]) == 1 and ids[0][0] != tokenizer.unk_id
    assert len(wm.check_trigger(tokenizer, "window coffee")) == 2
    rows = wm.trigger_piece_ids(tokenizer, ["cf", "window coffee", "cf"])
    assert rows.tolist() == sorted(set(rows.tolist())) and len(rows) == 3
    with pytest.raises(ValueError, match=r"tokenizes to unknown tokens \(\[UNK\]\)") as e:
        wm.check_trigger(tokenizer, "cf ☃")
    assert "\n" not in str(e.value)
