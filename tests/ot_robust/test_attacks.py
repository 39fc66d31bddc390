"""Sensitivity attacks (core.attacks, re-exported by ot_robust): the ball and the box, attack
strength ordering on a trained model, APGD's checkpoints, and bad input."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from robustml_jax import ot_robust
from robustml_jax.core import datasets


def _linear_apply(params, x):
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def _linear(shape, k=5, seed=0):
    d = int(np.prod(shape))
    w = jax.random.normal(jax.random.key(seed), (d, k)) * 3.0
    return {"w": w, "b": jnp.zeros((k,))}


@pytest.mark.parametrize(
    "norm,eps,shape", [("linf", 0.1, (28, 28, 1)), ("l2", 0.7, (8, 8, 3)), ("l2", 0.5, (10,))]
)
def test_pgd_and_apgd_stay_in_ball_and_box(norm, eps, shape):
    params = _linear(shape)
    key = jax.random.key(1)
    # many pixels at the box's edges so that the projection onto [0, 1] matters
    x = jnp.round(jax.random.uniform(jax.random.key(2), (6,) + shape) * 1.4 - 0.2).clip(0, 1)
    x = x.at[:3].set(jax.random.uniform(jax.random.key(3), (3,) + shape))
    y = jnp.arange(6) % 5
    pgd = jax.jit(
        functools.partial(
            ot_robust.pgd_attack,
            _linear_apply,
            eps=eps,
            step_size=eps / 3,
            num_steps=7,
            norm=norm,
            restarts=2,
        )
    )
    apgd = jax.jit(
        functools.partial(ot_robust.apgd_ce, _linear_apply, eps=eps, num_steps=12, norm=norm)
    )
    for x_adv in (
        pgd(params, key, x, y),
        apgd(params, key, x, y),
        ot_robust.fgsm(_linear_apply, params, x, y, eps=eps, norm=norm),
    ):
        chex.assert_shape(x_adv, x.shape)
        delta = (x_adv - x).reshape(6, -1)
        size = jnp.abs(delta).max(1) if norm == "linf" else jnp.linalg.norm(delta, axis=1)
        assert float(size.max()) <= eps * (1 + 1e-5)
        assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
        # the attack moved the points (a no-op attack would pass the ball checks)
        assert float(size.max()) > 0.5 * eps


def test_apgd_checkpoints_match_croce_and_hein():
    # p_j = 0, .22, .41, .57, .70, .80, .87, .93, .99 for N = 100
    np.testing.assert_array_equal(ot_robust.apgd_checkpoints(100), [22, 41, 57, 70, 80, 87, 93, 99])


@pytest.fixture(scope="module")
def trained_digits():
    """A small MLP trained on sklearn's 8x8 digits (always available with scikit-learn)."""
    d = datasets.load("digits", "all")
    x = jnp.asarray(d["image"] / 255.0, jnp.float32)
    y = jnp.asarray(d["label"])

    def apply_fn(p, v):
        h = jax.nn.relu(v.reshape(v.shape[0], -1) @ p["w1"] + p["b1"])
        return h @ p["w2"] + p["b2"]

    k1, k2 = jax.random.split(jax.random.key(0))
    params = {
        "w1": jax.random.normal(k1, (64, 64)) * 0.15,
        "b1": jnp.zeros(64),
        "w2": jax.random.normal(k2, (64, 10)) * 0.15,
        "b2": jnp.zeros(10),
    }
    tx = optax.adam(1e-2)
    opt = tx.init(params)

    @jax.jit
    def step(p, o):
        g = jax.grad(
            lambda q: optax.softmax_cross_entropy_with_integer_labels(apply_fn(q, x), y).mean()
        )(p)
        u, o = tx.update(g, o)
        return optax.apply_updates(p, u), o

    for _ in range(300):
        params, opt = step(params, opt)
    return apply_fn, params, x[:400], y[:400]


def _acc(apply_fn, params, x, y):
    return float(jnp.mean(jnp.argmax(apply_fn(params, x), -1) == y))


def test_pgd_stronger_than_fgsm_and_apgd_not_weaker_than_pgd(trained_digits):
    apply_fn, params, x, y = trained_digits
    assert _acc(apply_fn, params, x, y) > 0.95
    eps = 0.1
    key = jax.random.key(0)
    fgsm = _acc(apply_fn, params, ot_robust.fgsm(apply_fn, params, x, y, eps=eps), y)
    pgd = _acc(
        apply_fn,
        params,
        jax.jit(
            functools.partial(
                ot_robust.pgd_attack, apply_fn, eps=eps, step_size=eps / 8, num_steps=20
            )
        )(params, key, x, y),
        y,
    )
    apgd = _acc(
        apply_fn,
        params,
        jax.jit(functools.partial(ot_robust.apgd_ce, apply_fn, eps=eps, num_steps=40))(
            params, key, x, y
        ),
        y,
    )
    assert pgd < fgsm - 0.05, (pgd, fgsm)
    assert apgd <= pgd, (apgd, pgd)
    assert apgd < 0.9  # the attacks really attack


def test_restarts_never_weaker(trained_digits):
    apply_fn, params, x, y = trained_digits
    kw = dict(eps=0.05, step_size=0.02, num_steps=5)
    one = ot_robust.pgd_attack(apply_fn, params, jax.random.key(0), x, y, **kw)
    three = ot_robust.pgd_attack(apply_fn, params, jax.random.key(0), x, y, restarts=3, **kw)
    assert _acc(apply_fn, params, three, y) <= _acc(apply_fn, params, one, y)


def test_pgd_compiles_once_per_shape():
    params = _linear((4, 4, 1))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def f(p, k, x, y):
        return ot_robust.pgd_attack(_linear_apply, p, k, x, y, eps=0.1, step_size=0.05, num_steps=2)

    x = jax.random.uniform(jax.random.key(0), (3, 4, 4, 1))
    for s in range(3):
        f(params, jax.random.key(s), x, jnp.array([0, 1, 2]))


@pytest.mark.parametrize(
    "kwargs,x,y,match",
    [
        ({}, np.full((2, 4, 4, 1), 1.5, np.float32), np.array([0, 1]), r"x must lie in \[0, 1\]"),
        ({}, np.full((2, 4, 4, 1), -0.1, np.float32), np.array([0, 1]), r"x must lie in"),
        ({}, np.zeros((16,), np.float32), np.array([0]), r"batch of images \[B, \.\.\.\]"),
        ({}, np.zeros((2, 4, 4, 1), np.float32), np.array([0, 1, 2]), r"y must be labels \[B\]"),
        ({}, np.zeros((2, 4, 4, 1), np.float32), np.array([0.0, 1.0]), "integer labels"),
        ({"eps": -0.1}, np.zeros((2, 4, 4, 1), np.float32), np.array([0, 1]), "eps must be"),
        ({"num_steps": 0}, np.zeros((2, 4, 4, 1), np.float32), np.array([0, 1]), "num_steps"),
        ({"norm": "l1"}, np.zeros((2, 4, 4, 1), np.float32), np.array([0, 1]), "norm must be"),
    ],
)
def test_bad_input_gives_one_line_errors(kwargs, x, y, match):
    params = _linear((4, 4, 1))
    args = {"eps": 0.1, "step_size": 0.05, "num_steps": 3, **kwargs}
    with pytest.raises(ValueError, match=match) as e:
        ot_robust.pgd_attack(_linear_apply, params, jax.random.key(0), x, y, **args)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=match):
        a = {k: v for k, v in args.items() if k != "step_size"}
        ot_robust.apgd_ce(_linear_apply, params, jax.random.key(0), x, y, **a)
