"""The pre-training / held-out episode sampler of the small reproduction (recipe v4): canonical
vs random label words, reserved words, balanced held-out queries, determinism."""

import numpy as np
import pytest

from robustml_jax import promot
from tests.smoke import require_data

require_data("sst2", "blitzer_books", "blitzer_dvd", "mr", "blitzer_electronics", "blitzer_kitchen")


@pytest.fixture(scope="module")
def sampler():
    return promot.EpisodeSampler(promot.small_tokenizer(), max_input_len=128)


def _demo_answers(prompt: str) -> list[str]:
    return [line.rsplit("answer:", 1)[1].split()[0] for line in prompt.split("\n")[:-1]]


def test_random_label_words_never_collide_with_reserved_words(sampler):
    reserved = {"true", "false", *promot.CANONICAL_SENTIMENT_WORDS}
    reserved |= {w for ws in promot.HELDOUT_LABEL_WORDS.values() for w in ws}
    assert not reserved & set(sampler.words)
    assert len(sampler.words) > 500


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_canonical_fraction_of_sentiment_episodes(fraction):
    s = promot.EpisodeSampler(promot.small_tokenizer(), canonical_fraction=fraction)
    texts, labels = s.sources["sst2"]
    rng = np.random.default_rng(3)
    canon, n = 0, 0
    for _ in range(300):
        prompt, answer = s.pretrain_episode(rng)
        if "answer:" not in prompt:  # string task
            continue
        shown = set(_demo_answers(prompt)) | {answer}
        is_canon = shown <= set(promot.CANONICAL_SENTIMENT_WORDS)
        # random-word episodes never show a canonical word
        assert is_canon or not shown & set(promot.CANONICAL_SENTIMENT_WORDS), prompt
        canon += is_canon
        n += 1
    # the domain task (10% of episodes, ~15% of the classify ones) always draws random words
    share = canon / n
    assert abs(share - fraction * 0.85) < 0.12, (share, fraction)


def test_sentiment_query_label_is_honoured(sampler):
    texts, labels = sampler.sources["sst2"]
    label_of: dict = {}
    for t, y in zip(texts, labels, strict=True):
        label_of.setdefault(sampler._short(t), set()).add(int(y))
    rng = np.random.default_rng(0)
    for k, want in [(3, 0), (3, 1), (0, 0), (0, 1), (1, 1), (2, 0)]:
        prompt, answer = sampler.sentiment_episode(
            rng, texts, labels, k, ("wolf", "lamp"), query_label=want
        )
        assert answer == ("wolf", "lamp")[want]
        query = prompt.split("\n")[-1].rsplit(" answer:", 1)[0]
        assert want in label_of[query]
        # the query is not also one of the demonstrations
        assert all(line.rsplit(" answer:", 1)[0] != query for line in prompt.split("\n")[:-1])


def test_heldout_sets_balanced_with_declared_words(sampler):
    sets = {s.name: s for s in sampler.heldout_sets(10, 4)}
    for name, words in promot.HELDOUT_LABEL_WORDS.items():
        st = sets[f"{name}_sentiment"]
        assert st.label_words == tuple(words)
        assert [st.targets.count(w) for w in words] == [5, 5]  # a constant answer scores 50%
        for p in st.prompts:
            assert set(_demo_answers(p)) <= set(words)
    # deterministic in (seed, k)
    again = {s.name: s for s in sampler.heldout_sets(10, 4)}
    assert again["mr_sentiment"].prompts == sets["mr_sentiment"].prompts


def test_bad_canonical_fraction():
    with pytest.raises(ValueError, match="canonical_fraction"):
        promot.EpisodeSampler(promot.small_tokenizer(), canonical_fraction=1.5)


def test_zero_shot_fraction_of_canonical_episodes():
    def single_line_share(zsf):
        s = promot.EpisodeSampler(
            promot.small_tokenizer(), canonical_fraction=1.0, zero_shot_fraction=zsf
        )
        rng = np.random.default_rng(5)
        lines = []
        for _ in range(200):
            prompt, answer = s.pretrain_episode(rng)
            if answer in promot.CANONICAL_SENTIMENT_WORDS:
                lines.append(prompt.count("\n") + 1)
        return np.mean(np.asarray(lines) == 1), len(lines)

    share1, n1 = single_line_share(1.0)
    assert share1 == 1.0 and n1 > 50
    share0, _ = single_line_share(0.0)
    assert share0 < 0.1  # k >= 1 (the budget may rarely drop every demonstration)
    share_half, _ = single_line_share(0.5)
    assert 0.3 < share_half < 0.7


def test_heldout_sets_several_shot_counts(sampler):
    """Several counts: each task once per count, suffixed, identical to the single-count sets;
    one count keeps the plain names; bad counts fail with a one-line error."""
    both = {s.name: s for s in sampler.heldout_sets(6, (0, 2))}
    plain = {s.name for s in sampler.heldout_sets(6, 2)}
    assert set(both) == {f"{n}_{k}shot" for n in plain for k in (0, 2)}
    for k in (0, 2):
        single = {s.name: s for s in sampler.heldout_sets(6, k)}
        for name, s in single.items():
            assert both[f"{name}_{k}shot"]._replace(name=name) == s
    zero = both["mr_sentiment_0shot"].prompts[0]
    two = both["mr_sentiment_2shot"].prompts[0]
    assert len(two) > len(zero)  # the demonstrations are there
    assert {s.name for s in sampler.heldout_sets(6, (2,))} == plain
    for bad in ((), (1, 1), (-1,)):
        with pytest.raises(ValueError, match="shots"):
            sampler.heldout_sets(6, bad)
