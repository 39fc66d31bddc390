"""The pre-training / held-out episode sampler of the small reproduction: every episode's
answer can be read off its prompt, string tasks, budget fitting, determinism, held-out split."""

import numpy as np
import pytest

from robustml_jax import promot
from robustml_jax.promot import _episodes
from tests.smoke import require_data

require_data("sst2", "blitzer_books", "blitzer_dvd", "mr", "blitzer_electronics")


@pytest.fixture(scope="module")
def sampler():
    return promot.EpisodeSampler(promot.small_tokenizer(), max_input_len=128)


def _demo_answers(prompt: str, template_sep: str) -> list[str]:
    """The answer word of each demonstration line (every line but the query)."""
    return [line.rsplit(template_sep, 1)[1].split()[0] for line in prompt.split("\n")[:-1]]


def test_string_answers_exact():
    ws = ["a", "b", "c", "d"]
    assert promot.string_answer("copy", ws) == "a b c d"
    assert promot.string_answer("first_word", ws) == "a"
    assert promot.string_answer("second_word", ws) == "b"
    assert promot.string_answer("last_word", ws) == "d"
    assert promot.string_answer("last_two", ws) == "c d"
    assert promot.string_answer("reverse", ws) == "d c b a"
    with pytest.raises(ValueError, match="unknown string task"):
        promot.string_answer("middle", ws)
    assert not set(promot.HELDOUT_STRING_TASKS) & set(promot.PRETRAIN_STRING_TASKS)


def test_sentiment_episodes_show_both_label_words(sampler):
    rng = np.random.default_rng(0)
    texts, labels = promot.load_sentiment("sst2", "train")
    for _ in range(40):
        k = int(rng.integers(2, 5))
        prompt, answer = sampler.sentiment_episode(rng, texts, labels, k, ["wolf", "lamp"])
        shown = _demo_answers(prompt, "answer:")
        assert {"wolf", "lamp"} <= set(shown), prompt  # both words visible ...
        assert answer in ("wolf", "lamp")  # ... and the answer is one of them
        assert prompt.endswith("<extra_id_0>")


def test_heldout_sets_are_balanced_and_answerable(sampler):
    sets = sampler.heldout_sets(16, 4)
    by_name = {s.name: s for s in sets}
    assert set(by_name) == {
        "mr_sentiment",
        "blitzer_electronics_sentiment",
        "blitzer_kitchen_sentiment",
        "first_word",
    }
    for s in sets:
        assert len(s.prompts) == len(s.targets) == 16
        if s.template == "classify":
            for p, t in zip(s.prompts, s.targets, strict=True):
                assert set(s.label_words) <= set(_demo_answers(p, "answer:"))
                assert t in s.label_words
            # both classes are queried (a constant answer cannot score 100%)
            assert len(set(s.targets)) == 2
    fw = by_name["first_word"]
    for p, t in zip(fw.prompts, fw.targets, strict=True):
        assert p.split("\n")[-1].split("input: ", 1)[1].split()[0] == t


def test_fit_keeps_every_label_word(sampler):
    long = " ".join(["word"] * 30)
    demos = [({"text": long}, "wolf")] * 4 + [({"text": long}, "lamp")]
    prompt = sampler._fit("classify", demos, {"text": "short query"})
    assert len(sampler.tok.encode([prompt])[0]) + 1 <= sampler.max_input_len
    assert {"wolf", "lamp"} <= set(_demo_answers(prompt, "answer:"))


def test_pretrain_batch_is_a_function_of_the_step(sampler):
    a = sampler.pretrain_batch(3, 8, span_fraction=0.25)
    b = sampler.pretrain_batch(3, 8, span_fraction=0.25)
    c = sampler.pretrain_batch(4, 8, span_fraction=0.25)
    assert a["inputs"].shape == (8, 128) and a["targets"].shape == (8, sampler.max_target_len)
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
    np.testing.assert_array_equal(a["targets"], b["targets"])
    assert not np.array_equal(a["inputs"], c["inputs"])
    # every row ends in EOS (id 1) within the budget; episode targets open with sentinel 0
    assert (a["inputs"] == 1).any(axis=1).all()
    assert (a["targets"][:, 0] == sampler.tok.sentinel_id(0)).all()


def test_pretraining_never_sees_heldout_sources():
    assert not set(_episodes._data.PRETRAIN_SENTIMENT) & set(_episodes._data.HELDOUT_SENTIMENT)
