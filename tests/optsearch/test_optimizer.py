"""Semantics of operands and operators against NumPy, and rules against optax's own optimizers."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from robustml_jax import optsearch
from robustml_jax.optsearch import Context, parse_rule, rule_to_optax

STEPS = 4


def _grads(seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "a": rng.normal(size=(3,)).astype(np.float32),
            "b": rng.normal(size=(2, 2)).astype(np.float32),
        }
        for _ in range(STEPS)
    ]


def _flat(tree):
    return np.concatenate([np.ravel(tree["a"]), np.ravel(tree["b"])])


def _run(tx, grads, params=None):
    params = params or {"a": np.ones(3, np.float32), "b": np.ones((2, 2), np.float32)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    outs = []
    for g in grads:
        u, state = update(g, state, params)
        outs.append(_flat(u))
        params = optax.apply_updates(params, u)
    return outs


def _reference_stats(gs):
    """NumPy reference of ENOS's statistics (m3 with g^3, not ENOS's g^2 bug)."""
    out, m1 = [], None
    am = av = rv = 0.0
    prev = np.zeros_like(gs[0])
    for t, g in enumerate(gs, start=1):
        if t == 1:
            m1, m2, m3 = g.copy(), g**2, g**3
        else:
            m1 = 0.9 * m1 + g
            m2 = 0.999 * m2 + 0.001 * g**2
            m3 = 0.999 * m3 + 0.001 * g**3
        am = 0.9 * am + 0.1 * g
        av = 0.999 * av + 0.001 * g**2
        rv = 0.99 * rv + 0.01 * g**2
        adam = 3e-3 * (am / (1 - 0.9**t)) / (np.sqrt(av) / np.sqrt(1 - 0.999**t) + 1e-8)
        rms = 3e-2 * g / (np.sqrt(rv) + 1e-8)
        out.append(dict(m1=m1, m2=m2, m3=m3, adam=adam, rmsprop=rms, g_prev=prev, g=g))
        prev = g
    return out


@pytest.mark.parametrize("operand", ["g", "g_prev", "m1", "m2", "m3", "adam", "rmsprop"])
def test_statistics_match_numpy(operand):
    grads = _grads()
    ref = _reference_stats([_flat(g) for g in grads])
    got = _run(rule_to_optax(operand, 1.0), grads)
    for t in range(STEPS):
        np.testing.assert_allclose(-got[t], ref[t][operand], rtol=2e-5, atol=1e-7)


def test_m1_is_a_sum_and_m2_starts_at_g_squared():
    # constant gradient 1: m1 = 1, 1.9, 2.71 (a sum, no dampening); m2 stays 1 (= g^2 at t=1)
    grads = [{"a": np.ones(3, np.float32), "b": np.ones((2, 2), np.float32)}] * 3
    m1 = _run(rule_to_optax("m1", 1.0), grads)
    np.testing.assert_allclose([-u[0] for u in m1], [1.0, 1.9, 2.71], rtol=1e-6)
    m2 = _run(rule_to_optax("m2", 1.0), grads)
    np.testing.assert_allclose([-u[0] for u in m2], [1.0, 1.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize(
    "name, fn",
    [
        ("linear_decay", lambda t, T: 1 - t / T),
        ("cosine_decay", lambda t, T: 0.5 * (1 + math.cos(math.pi * t / T))),
        ("restart_decay", lambda t, T: 0.5 * (1 + math.cos(math.pi * ((20 * t) % T) / T))),
        ("linear_decay_min", lambda t, T: 1 - t / T + 0.01),
        ("cosine_decay_min", lambda t, T: 0.5 * (1 + math.cos(math.pi * t / T)) + 0.03),
    ],
)
def test_decays_count_from_one(name, fn):
    T = 7
    got = _run(rule_to_optax(name, 1.0, total_steps=T), _grads())
    for k in range(STEPS):
        np.testing.assert_allclose(-got[k], fn(k + 1, T), rtol=1e-5, atol=1e-6)


def _ctx(x, y=None, deterministic=False):
    x = jnp.asarray(x, jnp.float32)
    y = x if y is None else jnp.asarray(y, jnp.float32)
    return Context(x, y, x, x, x, x, x, x, jnp.float32(3.0), jnp.float32(10.0), deterministic)


def _eval(text, ctx, key=0):
    return np.asarray(optsearch.evaluate_rule(parse_rule(text), jax.random.key(key), ctx))


def test_elementwise_operators():
    x = np.array([-2.0, -0.5, 0.0, 0.25, 3.0], np.float32)
    y = np.array([0.5, 2.0, 0.0, -1.0, 1.0], np.float32)
    c = _ctx(x, y)
    np.testing.assert_allclose(_eval("div(g, g_prev)", c), x / (y + 1e-8), rtol=1e-6)
    assert _eval("div(one, g_prev)", c)[2] == pytest.approx(1e8, rel=1e-6)  # no abs on y
    assert _eval("div(one, neg(one))", c)[0] == pytest.approx(1 / (-1 + 1e-8), rel=1e-6)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(_eval("log(g)", c), np.log(np.abs(x)), rtol=1e-6)
    np.testing.assert_allclose(_eval("sqrt(g)", c), np.sqrt(np.abs(x)), rtol=1e-6)
    np.testing.assert_array_equal(_eval("sign(g)", c), np.sign(x))
    assert _eval("sign(g)", c)[2] == 0.0 and _eval("sign_g", c)[2] == 0.0  # sign(0) = 0
    np.testing.assert_allclose(_eval("exp(g)", c), np.exp(x), rtol=1e-6)
    np.testing.assert_allclose(_eval("neg(g)", c), -x)
    np.testing.assert_allclose(_eval("sub(g, g_prev)", c), x - y)
    np.testing.assert_allclose(_eval("pow(g_prev, two)", c), y**2, rtol=1e-6)
    for name, lim in [("clip3", 1e-3), ("clip4", 1e-4), ("clip5", 1e-5)]:
        np.testing.assert_allclose(_eval(f"{name}(g)", c), np.clip(x, -lim, lim))
    np.testing.assert_allclose(_eval("mul(w_0p1, w_0p001)", c), 1e-4 * x * x, rtol=1e-6)
    np.testing.assert_allclose(_eval("scale(g, c0p99)", c), 0.99 * x, rtol=1e-6)


@pytest.mark.parametrize("name, p", [("drop1", 0.1), ("drop3", 0.3), ("drop5", 0.5)])
def test_dropout_scales_kept_entries(name, p):
    c = _ctx(np.ones(20000))
    out = _eval(f"{name}(g)", c)
    kept = out != 0
    np.testing.assert_allclose(out[kept], 1 / (1 - p), rtol=1e-6)
    assert abs(1 - kept.mean() - p) < 0.02
    np.testing.assert_array_equal(_eval(f"{name}(g)", _ctx(np.ones(5), deterministic=True)), 1.0)


def test_noise_scales():
    c = _ctx(np.zeros(20000))
    assert np.std(_eval("noise", c)) == pytest.approx(0.01, rel=0.05)
    assert np.std(_eval("annealed_noise", c)) == pytest.approx((1 + 3.0) ** -0.55, rel=0.05)
    assert np.all(_eval("noise", _ctx(np.zeros(4), deterministic=True)) == 0)


def test_sgd_and_momentum_equal_optax():
    grads = _grads(1)
    for text, ref in [("g", optax.sgd(0.1)), ("m1", optax.sgd(0.1, momentum=0.9))]:
        for a, b in zip(_run(rule_to_optax(text, 0.1), grads), _run(ref, grads), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_addsign_and_adam_operand_equal_their_optax_forms():
    grads = _grads(2)
    pairs = [
        ("mul(add(one, mul(sign_g, sign_m1)), g)", optsearch.addsign(0.1)),
        ("mul(exp(mul(sign_g, sign_m1)), g)", optsearch.powsign(0.1)),
        ("adam", optax.adam(0.1 * 3e-3)),
        ("sign_g", optax.sign_sgd(0.1)),
    ]
    for text, ref in pairs:
        for a, b in zip(_run(rule_to_optax(text, 0.1), grads), _run(ref, grads), strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)


def _run_eager(tx, grads, params=None):
    params = params or {"a": np.ones(3, np.float32), "b": np.ones((2, 2), np.float32)}
    state = tx.init(params)
    outs = []
    for g in grads:
        u, state = tx.update(g, state, params)
        outs.append(_flat(u))
        params = optax.apply_updates(params, u)
    return outs


def _check_interpreter(rules, vocabulary, max_nodes=10):
    grads = _grads(3)
    key = jax.random.key(5)

    @jax.jit
    def interpreted(program):
        tx = optsearch.program_to_optax(
            program, 0.01, total_steps=10, key=key, vocabulary=vocabulary
        )
        params = {"a": jnp.ones(3), "b": jnp.ones((2, 2))}
        state, outs = tx.init(params), []
        for g in grads:
            u, state = tx.update(g, state, params)
            outs.append(jnp.concatenate([u["a"].ravel(), u["b"].ravel()]))
            params = optax.apply_updates(params, u)
        return jnp.stack(outs)

    for text in rules:
        baked = rule_to_optax(text, 0.01, total_steps=10, key=key)
        with np.errstate(all="ignore"):
            want = np.stack(_run_eager(baked, grads))
            prog = optsearch.encode_rule(text, max_nodes=max_nodes, vocabulary=vocabulary)
            got = np.asarray(interpreted(prog))
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=text)


def test_interpreter_equals_baked_rule():
    rules = ["mul(sign_g, add(one, sign_m1))", "add(g, drop3(noise))", "sub(m1, restart_decay)"]
    vocab = ("g", "m1", "sign_g", "sign_m1", "one", "noise", "restart_decay")
    _check_interpreter(rules, vocab + ("add", "sub", "mul", "drop3"), max_nodes=6)


@pytest.mark.slow
def test_interpreter_equals_baked_rule_on_sampled_rules():
    space = optsearch.get_space("conv")
    rules = [str(optsearch.sample_rule(jax.random.key(s), space=space)) for s in range(8)]
    _check_interpreter(rules, space.ops)


def test_interpreter_compiles_once_for_many_rules():
    vocab = ("g", "two", "neg", "mul")

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(program, g):
        tx = optsearch.program_to_optax(
            program, 0.1, total_steps=5, key=jax.random.key(0), vocabulary=vocab
        )
        params = {"w": jnp.ones(3)}
        return tx.update({"w": g}, tx.init(params), params)[0]["w"]

    g = jnp.array([1.0, -2.0, 0.5])
    for text in ["g", "neg(neg(g))", "mul(two, g)"]:
        out = step(optsearch.encode_rule(text, max_nodes=3, vocabulary=vocab), g)
        np.testing.assert_allclose(out, -0.1 * (2 * g if "two" in text else g), rtol=1e-6)


def test_missing_total_steps_or_key():
    with pytest.raises(ValueError, match="'linear_decay'.*total_steps"):
        rule_to_optax("mul(g, linear_decay)", 0.1)
    with pytest.raises(ValueError, match="'noise'.*key"):
        rule_to_optax("add(g, noise)", 0.1)
    with pytest.raises(ValueError, match="more than max_nodes"):
        optsearch.encode_rule("add(g, add(g, add(g, add(g, add(g, g)))))", max_nodes=5)
