"""The rule language: parsing, printing, errors, and printed rules parsing back."""

import jax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robustml_jax import optsearch
from robustml_jax.optsearch import OPS, Rule, parse_rule


@pytest.mark.parametrize(
    "text",
    [
        "g",
        "mul(sign_g, add(one, sign_m1))",
        "div(m1, add(sqrt(m2), one))",
        "sub(g, mul(w_0p01, cosine_decay))",
        "scale(m1, c0p9)",
        "drop5(clip3(pow(g, two)))",
    ],
)
def test_round_trip(text):
    rule = parse_rule(text)
    assert str(rule) == text
    assert parse_rule(str(rule)) == rule


def test_whitespace_is_flexible_and_printing_is_canonical():
    assert str(parse_rule("  add( g ,m1 ) ")) == "add(g, m1)"


def test_formula():
    assert parse_rule("mul(sign_g, add(one, sign_m1))").formula == "sign(g) * (1 + sign(m1))"
    assert parse_rule("div(m1, sqrt(m2))").formula == "m1 / sqrt|m2|"
    assert parse_rule("g").formula == "g"


@pytest.mark.parametrize(
    "text, word",
    [
        ("frob(g)", "'frob'"),
        ("add(g)", "'add' takes 2 arguments, got 1"),
        ("sign(g, m1)", "'sign' takes 1 argument, got 2"),
        ("mul(g, zz9)", "'zz9'"),
        ("add", "'add' takes 2 arguments, got 0"),
        ("g(m1)", "operand 'g' takes no arguments"),
        ("add(g, m1", "missing ')'"),
        ("add(g, m1))", "unexpected ')'"),
        ("", "empty"),
        ("add(g, c0p9)", "must be of type atom"),
        ("c0p9", "scalar factor"),
        ("add(g; m1)", "unexpected character ';'"),
    ],
)
def test_errors_name_the_offending_word(text, word):
    with pytest.raises(ValueError, match=word.replace("(", r"\(").replace(")", r"\)")) as e:
        parse_rule(text)
    assert "\n" not in str(e.value)


def test_unknown_operator_vs_operand():
    with pytest.raises(ValueError, match="unknown operator 'frob'"):
        parse_rule("frob(g)")
    with pytest.raises(ValueError, match="unknown operand 'zz9'"):
        parse_rule("mul(g, zz9)")


def test_rule_is_hashable_and_sized():
    r = parse_rule("add(g, mul(g, m1))")
    assert r.size == 5
    assert {r: 1}[parse_rule("add(g, mul(g, m1))")] == 1
    assert optsearch.rule_ops(r) == {"add", "g", "mul", "m1"}


def test_every_word_parses():
    for name, op in OPS.items():
        args = ", ".join("c0p9" if t == "const" else "g" for t in op.arg_types)
        text = f"{name}({args})" if op.arg_types else name
        if op.out_type == "atom":
            assert str(parse_rule(text)) == text


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), space=st.sampled_from(sorted(optsearch.SPACES)))
def test_every_sampled_rule_parses_back(seed, space):
    rule = optsearch.sample_rule(
        jax.random.key(seed), space=optsearch.get_space(space), max_depth=10
    )
    assert isinstance(rule, Rule) and optsearch.is_complete(rule)
    assert rule.size <= 10
    assert parse_rule(str(rule)) == rule
