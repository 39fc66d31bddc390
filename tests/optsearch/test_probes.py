"""Probe hashing and ENOS's semantic / descent tests."""

import jax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robustml_jax import optsearch
from robustml_jax.optsearch import rule_fingerprint as fp


@pytest.mark.parametrize(
    "a, b",
    [
        ("add(g, m1)", "add(m1, g)"),
        ("mul(g, two)", "add(g, g)"),
        ("mul(sign_g, m2)", "mul(m2, sign_g)"),
        ("g2", "mul(g, g)"),
        ("sign_g", "sign(g)"),
        ("neg(neg(m1))", "m1"),
        ("add(add(g, m1), m2)", "add(g, add(m1, m2))"),
        ("add(g, noise)", "g"),  # noise is off when hashing
        ("drop5(g)", "g"),  # dropout is off when hashing
    ],
)
def test_equivalent_forms_hash_the_same(a, b):
    assert fp(a) == fp(b)
    assert hash(fp(a)) == hash(fp(b))


@pytest.mark.parametrize(
    "a, b",
    [
        ("g", "m1"),
        ("g", "sign_g"),
        ("m1", "sign_m1"),
        ("g", "mul(g, two)"),
        ("m2", "m3"),
        ("g", "g_prev"),
        ("adam", "rmsprop"),
        ("mul(g, linear_decay)", "mul(g, cosine_decay)"),
        ("w", "w_0p1"),
    ],
)
def test_different_rules_hash_differently(a, b):
    assert fp(a) != fp(b)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_fingerprint_is_deterministic_and_commutation_invariant(seed):
    space = optsearch.get_space("gnn_v1")
    a = optsearch.sample_rule(jax.random.key(seed), space=space, max_depth=5)
    b = optsearch.sample_rule(jax.random.key(seed + 1), space=space, max_depth=5)
    assert fp(a) == fp(str(a))
    assert fp(f"add({a}, {b})") == fp(f"add({b}, {a})")
    assert fp(f"mul({a}, {b})") == fp(f"mul({b}, {a})")


def test_semantic_test():
    for good in ["g", "m1", "div(m1, sqrt(m2))", "mul(add(one, mul(sign_g, sign_m1)), g)"]:
        assert optsearch.semantic_valid(good), good
    # ENOS's probe sets m1 = g, so AddSign's sign form is >= 0 there: rejected, as in ENOS
    assert not optsearch.semantic_valid("mul(sign_g, add(one, sign_m1))")
    assert not optsearch.semantic_valid("add(noise, noise)")  # noise is not an input
    assert not optsearch.semantic_valid("one")  # no input
    assert not optsearch.semantic_valid("mul(two, linear_decay)")  # step counters only
    assert not optsearch.semantic_valid("g2")  # one sign only
    assert not optsearch.semantic_valid("exp(g)")  # positive only
    assert not optsearch.semantic_valid("div(one, sub(g, g))")  # non-finite


def test_descent_test():
    assert optsearch.descent_score("g") == pytest.approx(1.0, abs=1e-6)
    assert optsearch.descent_score("neg(g)") == pytest.approx(-1.0, abs=1e-6)
    assert optsearch.descent_valid("mul(sign_g, add(one, sign_m1))")  # passes this one
    assert optsearch.descent_valid("adam")
    assert not optsearch.descent_valid("neg(m1)")
    assert not optsearch.descent_valid("noise")  # about orthogonal to the gradient
    assert not optsearch.descent_valid("sub(g, g)")  # zero output: NaN cosine
