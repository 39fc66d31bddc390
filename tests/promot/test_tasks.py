"""Templates, k-shot prompts, the paper's post-processing and the metrics, on exact strings."""

import pytest

from robustml_jax import promot


def test_rte_template_and_prompt_exact():
    demo = ({"premise": "A dog runs.", "hypothesis": "An animal runs."}, "True")
    query = {"premise": "It rains.", "hypothesis": "It is dry."}
    text = promot.build_prompt("rte", [demo], query)
    assert text == (
        "A dog runs. question: An animal runs. Is it true or false? answer: True\n"
        "It rains. question: It is dry. Is it true or false? answer: <extra_id_0>"
    )
    assert promot.build_prompt("qa", [], {"question": "Who?"}, sentinel=False) == "Q: Who? A:"


def test_unknown_template_and_missing_field():
    with pytest.raises(ValueError, match="unknown task template 'nli'"):
        promot.format_example("nli", {"premise": "x"})
    with pytest.raises(ValueError, match="needs field 'hypothesis'"):
        promot.format_example("rte", {"premise": "x"})


@pytest.mark.parametrize(
    "raw, template, expected",
    [
        ("<extra_id_0> True <extra_id_1> junk", "rte", "True"),
        ("<extra_id_0> False, maybe <extra_id_1>", "rte", "False,"),
        ("True that is", "rte", "True"),  # no sentinel: from the start, first word
        ("<extra_id_0> Paris is big <extra_id_1>", "qa", "Paris is big"),
        ("<extra_id_0> Paris Q: who else A: Rome", "qa", "Paris"),  # cut at the next prefix
        ("<extra_id_0> a b <extra_id_2> c", "string", "a b"),
        ("<extra_id_0> <extra_id_1>", "classify", ""),
        ("<extra_id_0> great answer: bad", "classify", "great"),
    ],
)
def test_postprocess_exact(raw, template, expected):
    assert promot.postprocess(raw, template) == expected


def test_exact_match_and_scores():
    assert promot.exact_match("The Paris!", "paris") == 1.0
    assert promot.exact_match("Rome", ["paris", "london"]) == 0.0
    s = promot.score_outputs(
        ["<extra_id_0> True", "False", "<extra_id_0> yes"], ["True"] * 3, "rte"
    )
    assert s == {"accuracy": pytest.approx(1 / 3), "n": 3}
    s = promot.score_outputs(["<extra_id_0> a b <extra_id_1>", "a"], ["a b", "b"], "string")
    assert s["exact_match"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="2 outputs but 1 targets"):
        promot.score_outputs(["a", "b"], ["a"], "string")


def test_label_word_share_exact():
    outs = [
        "<extra_id_0> True <extra_id_1>",
        "False",
        "<extra_id_0> positive",
        "<extra_id_0> Truely",  # not a label word
        "",
    ]
    assert promot.label_word_share(outs, ("True", "False")) == pytest.approx(2 / 5)
    assert promot.label_word_share(["true"], ("True",)) == 0.0  # case-sensitive
    # string template: the first word of the post-processed output
    assert promot.label_word_share(["<extra_id_0> True story"], ("True",), "string") == 1.0


def test_normalised_average():
    got = promot.normalised_average({"a": 0.75, "b": 0.2}, {"a": 0.5, "b": 0.0})
    assert got == pytest.approx((50.0 + 20.0) / 2)
    assert promot.normalised_average({"a": 0.5}, {"a": 0.5}) == 0.0
    with pytest.raises(ValueError, match="no chance level"):
        promot.normalised_average({"a": 1.0}, {})
