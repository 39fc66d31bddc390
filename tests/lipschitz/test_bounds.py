"""Soundness, ordering, tightness and exactness of the Lipschitz bounds (paper 9).

References are independent of the bound code: gradient norms from ``jax.jacrev`` at sampled
points, the exact value from region enumeration (LPs), and explicit weight-matrix products.
"""

from __future__ import annotations

import functools

import chex
import flax.linen as nn
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax import lipschitz
from tests.lipschitz import nets

SIZES = (3, 5, 5, 2)  # one tiny architecture for every property test: one compile each


def random_net(key, sizes=SIZES, scale=1.0):
    return nets.random_net(key, sizes, scale)


@functools.partial(jax.jit, static_argnames=("method", "bab_steps"))
def bound(net, x0, eps, c=None, *, method="ours", bab_steps=0):
    return lipschitz.local_lipschitz_bound(
        net, x0, eps, c=c, method=method, bab_steps=bab_steps, bab_batch=4
    )


@jax.jit
def sampled(net, key, x0, eps, c=None):
    return lipschitz.sampled_lower_bound(
        net, key, x0, eps, c=c, num_samples=64, ascent_starts=4, ascent_steps=5
    )


def all_bounds(net, x0, eps, c=None):
    out = {m: float(bound(net, x0, eps, c, method=m)) for m in lipschitz.METHODS}
    out["bab"] = float(bound(net, x0, eps, c, bab_steps=6))
    return out


@hypothesis.settings(max_examples=8, deadline=None, derandomize=True)
@hypothesis.given(seed=st.integers(0, 2**30), eps=st.floats(0.0, 0.6))
def test_sound_and_ordered_against_exact(seed, eps):
    """Random nets, centres, radii and output directions c (c=None: the other tests)."""
    key = jax.random.key(seed)
    net = random_net(key)
    x0 = jax.random.normal(jax.random.fold_in(key, 7), (SIZES[0],))
    c = jax.random.normal(jax.random.fold_in(key, 8), (SIZES[-1],))
    b = all_bounds(net, x0, eps, c)
    exact = lipschitz.exact_lipschitz(
        net, np.asarray(x0), eps, c=None if c is None else np.asarray(c)
    )
    lower = float(sampled(net, jax.random.fold_in(key, 9), x0, eps, c))
    tol = 1e-4 * (1 + exact.value)
    assert lower <= exact.value + tol  # the reference itself is consistent
    for m in (*lipschitz.METHODS, "bab"):
        assert b[m] >= exact.value - tol, (m, b, exact)
    assert b["bab"] <= b["ours"] + tol
    assert b["ours"] <= b["recurjac"] + tol
    assert b["recurjac"] <= b["interval"] + tol
    assert b["interval"] <= b["naive"] + tol


def test_sound_on_thousands_of_random_nets():
    """2000 random nets and points in one vmapped call: every method >= sampled gradient norms."""
    num = 2000
    keys = jax.random.split(jax.random.key(0), num)
    nets = jax.vmap(random_net)(keys)
    x0 = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), (SIZES[0],)))(keys)
    eps = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 2), (), maxval=0.5))(keys)

    def probe(net, key, x0, eps):
        pts = x0 + eps * jax.random.uniform(key, (32, SIZES[0]), minval=-1.0, maxval=1.0)
        pts = jnp.concatenate([pts, x0 + eps * jax.random.rademacher(key, (32, SIZES[0]))])
        return jax.vmap(lambda x: lipschitz.gradient_norm(net, x))(pts).max()

    lower = jax.jit(jax.vmap(probe))(nets, keys, x0, eps)
    ours = jax.jit(jax.vmap(bound))(nets, x0, eps)
    recurjac = jax.jit(jax.vmap(functools.partial(bound, method="recurjac")))(nets, x0, eps)
    chex.assert_shape((ours, recurjac), (num,))
    assert bool(jnp.all(ours >= lower * (1 - 1e-5) - 1e-6))
    assert bool(jnp.all(ours <= recurjac * (1 + 1e-5) + 1e-6))
    # The bounds are not vacuous: ours is strictly tighter than recurjac on many nets.
    assert float(jnp.mean(ours < recurjac * 0.99)) > 0.2


@pytest.mark.parametrize("use_c", [False, True])
def test_eps_zero_equals_gradient_norm(x64, use_c):
    key = jax.random.key(3)
    net = random_net(key, sizes=(4, 6, 6, 3))
    x0 = jax.random.normal(jax.random.fold_in(key, 1), (4,))
    c = jnp.array([1.0, -2.0, 0.5]) if use_c else None
    want = float(lipschitz.gradient_norm(net, x0, c=c))
    # Independent reference: explicit product of weight matrices with the activation pattern.
    h, jac = x0, jnp.eye(4)
    for w, b in net[:-1]:
        z = h @ w + b
        jac = jac @ (w * (z > 0))
        h = jax.nn.relu(z)
    g = jac @ net[-1][0]
    ref = float(jnp.abs(g @ c).sum() if use_c else jnp.abs(g).sum(0).max())
    np.testing.assert_allclose(want, ref, rtol=1e-10)
    for method in ("ours", "recurjac"):
        got = float(bound(net, x0, 0.0, c, method=method))
        np.testing.assert_allclose(got, ref, rtol=1e-9, err_msg=method)


@jax.jit
def _bab_run(layers, x0):
    from robustml_jax.lipschitz import _bounds

    cs = jnp.eye(SIZES[-1])
    return lipschitz.branch_and_bound(
        lambda s: _bounds._domain_bound(layers, (x0 - 0.4, x0 + 0.4), cs, s, "ours", "crown"),
        num_neurons=sum(SIZES[1:-1]),
        steps=12,
        batch=4,
    )


def test_bab_is_sound_and_reaches_exact():
    """BaB on real nets: never below the exact value (a domain dropped wrongly, an unsound
    split or a wrong emptiness certificate would go below it) and within 10% of it."""
    gaps, gaps_nobab = [], []
    for seed in range(4):
        key = jax.random.key(100 + seed)
        net = random_net(key)
        x0 = jax.random.normal(jax.random.fold_in(key, 7), (SIZES[0],))
        res = _bab_run(lipschitz.as_network(net), x0)
        hist = np.asarray(res.history)
        np.testing.assert_allclose(hist[0], float(bound(net, x0, 0.4)), rtol=1e-5)
        exact = lipschitz.exact_lipschitz(net, np.asarray(x0), 0.4).value
        assert hist.min() >= exact - 1e-4
        gaps.append(hist[-1] / exact - 1)
        gaps_nobab.append(hist[0] / exact - 1)
    assert np.mean(gaps) < 0.10, gaps  # the tightness target
    assert np.mean(gaps) < np.mean(gaps_nobab)  # BaB did tighten


def test_vmap_over_x0_matches_loop_and_traces_once():
    key = jax.random.key(5)
    net = random_net(key)
    xs = jax.random.normal(key, (6, SIZES[0]))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def batched(net, xs):
        return jax.vmap(lambda x: lipschitz.local_lipschitz_bound(net, x, 0.2))(xs)

    got = batched(net, xs)
    batched(net, xs + 1.0)  # same shapes: no retrace
    want = jnp.stack([bound(net, x, 0.2) for x in xs])
    chex.assert_trees_all_close(got, want, rtol=1e-5)


def test_naive_is_product_of_matrix_inf_norms():
    net = random_net(jax.random.key(6), sizes=(4, 7, 3))
    want = (
        np.abs(np.asarray(net[0][0]).T).sum(1).max() * np.abs(np.asarray(net[1][0]).T).sum(1).max()
    )
    got = bound(net, jnp.zeros(4), 0.3, method="naive")
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_exact_matches_dense_grid_on_2d_input(x64):
    net = random_net(jax.random.key(8), sizes=(2, 6, 6, 2), scale=2.0)
    x0 = jnp.array([0.1, -0.2])
    eps = 0.5
    exact = lipschitz.exact_lipschitz(net, np.asarray(x0), eps)
    grid = jnp.stack(jnp.meshgrid(*[jnp.linspace(-eps, eps, 201)] * 2), -1).reshape(-1, 2) + x0
    seen = float(jax.vmap(lambda x: lipschitz.gradient_norm(net, x))(grid).max())
    assert exact.regions > 1
    assert seen <= exact.value + 1e-9
    np.testing.assert_allclose(seen, exact.value, rtol=1e-9)  # fine grid hits every region


@functools.partial(jax.jit, static_argnames=("method",))
def grad_bounds(net, x0, eps, c, *, method="ours"):
    """(lower, upper) partial-derivative bounds from the GradientBounds result."""
    res = lipschitz.gradient_bounds(net, x0, eps, c=c, method=method)
    assert isinstance(res, lipschitz.GradientBounds)
    return res.lower, res.upper


def test_gradient_bounds_contain_sampled_partials():
    key = jax.random.key(9)
    net = random_net(key)
    x0, eps, c = jnp.zeros(SIZES[0]), 0.3, jnp.array([1.0, -0.5])
    lo, up = grad_bounds(net, x0, eps, c)
    chex.assert_shape((lo, up), (SIZES[0],))
    pts = x0 + eps * jax.random.uniform(key, (512, SIZES[0]), minval=-1.0, maxval=1.0)
    g = jax.vmap(jax.grad(lambda x: lipschitz.forward(lipschitz.as_network(net), x) @ c))(pts)
    assert bool(jnp.all(g >= lo - 1e-5)) and bool(jnp.all(g <= up + 1e-5))
    lo_r, up_r = grad_bounds(net, x0, eps, c, method="recurjac")
    assert bool(jnp.all(lo >= lo_r - 1e-5)) and bool(jnp.all(up <= up_r + 1e-5))
    assert float(jnp.sum(up - lo)) < float(jnp.sum(up_r - lo_r))  # strictly tighter here


def test_monotone_network_is_certified():
    """Non-negative weights make output 0 monotone in every input; flipping row 0 of W_1 makes
    it non-increasing in x_0. Both must be certified over a large ball."""
    net = [(jnp.abs(w), b) for w, b in random_net(jax.random.key(10))]
    x0, c = jnp.zeros(SIZES[0]), jnp.array([1.0, 0.0])
    lo, _ = grad_bounds(net, x0, 1.0, c)
    assert bool(jnp.all(lo >= 0))
    net[0] = (net[0][0].at[0, :].multiply(-1.0), net[0][1])
    lo, up = grad_bounds(net, x0, 1.0, c)
    assert float(up[0]) <= 0 and bool(jnp.all(lo[1:] >= 0))


def test_flax_cnn_converter_and_bounds():
    model = nn.Sequential(
        [
            nn.Conv(3, (3, 3), strides=(1, 1), padding="VALID"),
            nn.relu,
            lipschitz.AvgPool((2, 2)),
            nn.Conv(4, (2, 2), strides=(2, 2), padding="SAME"),
            nn.relu,
            lipschitz.Flatten(),
            nn.Dense(5),
            nn.relu,
            nn.Dense(3),
        ]
    )
    shape = (8, 8, 1)
    key = jax.random.key(11)
    params = model.init(key, jnp.zeros((1, *shape)))["params"]
    net = lipschitz.from_flax(model, params, shape)
    # Blocks between ReLUs: [conv], [avgpool, conv], [flatten, dense], [dense].
    assert [len(layer.ops) for layer in net] == [1, 2, 2, 1]
    x = jax.random.uniform(key, (2, *shape))
    chex.assert_trees_all_close(
        jax.vmap(lambda v: lipschitz.forward(net, v.reshape(-1)))(x),
        model.apply({"params": params}, x),
        rtol=1e-5,
        atol=1e-6,
    )
    x0 = x[0].reshape(-1)
    # Gradient of the Flax model itself (independent of the converter) at eps = 0.
    jac = jax.jacrev(lambda v: model.apply({"params": params}, v.reshape(1, *shape))[0])(x0)
    np.testing.assert_allclose(
        float(bound(net, x0, 0.0)), float(jnp.abs(jac).sum(-1).max()), rtol=1e-4
    )
    eps = 0.05
    b = {m: float(bound(net, x0, eps, method=m)) for m in ("ours", "recurjac", "naive")}
    pts = x0 + eps * jax.random.rademacher(key, (16, x0.shape[0]), x0.dtype)
    low = float(jax.jit(jax.vmap(lambda x: lipschitz.gradient_norm(net, x)))(pts).max())
    assert low <= b["ours"] <= b["recurjac"] * (1 + 1e-5) <= b["naive"] * (1 + 1e-5)


def test_conv_transpose_matches_dense_matrix():
    from robustml_jax.lipschitz import _network

    kernel = jax.random.normal(jax.random.key(12), (3, 3, 2, 4))
    layer = _network.Affine(
        weights=(kernel,),
        bias=jnp.zeros(5 * 5 * 4),
        ops=(("conv", (1, 1), "VALID"),),
        in_shape=(7, 7, 2),
    )
    mat = jax.jacfwd(functools.partial(_network.linear, layer))(jnp.zeros(7 * 7 * 2))  # [out, in]
    y = jax.random.normal(jax.random.key(13), (5 * 5 * 4,))
    chex.assert_trees_all_close(_network.linear_t(layer, y), mat.T @ y, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(
        _network.abs_linear_t(layer, jnp.abs(y)), jnp.abs(mat).T @ jnp.abs(y), rtol=1e-5, atol=1e-5
    )


@functools.partial(jax.jit, static_argnames=("bab_steps",))
def partial_bound(net, x0, feature, sign, c, *, bab_steps):
    return lipschitz.partial_derivative_bound(
        net, x0, 0.4, feature, c=c, sign=sign, bab_steps=bab_steps, bab_batch=4
    )


def test_partial_derivative_bab_is_sound_and_tightens():
    key = jax.random.key(14)
    net = random_net(key)
    x0, c = jnp.zeros(SIZES[0]), jnp.array([1.0, -1.0])
    pts = x0 + 0.4 * jax.random.uniform(key, (2048, SIZES[0]), minval=-1.0, maxval=1.0)
    g = jax.vmap(jax.grad(lambda x: lipschitz.forward(lipschitz.as_network(net), x) @ c))(pts)
    lo, up = grad_bounds(net, x0, 0.4, c)
    feats = jnp.arange(SIZES[0])
    for sign, plain in ((1.0, lo), (-1.0, -up)):
        signs = jnp.full((SIZES[0],), sign)
        b0 = jax.vmap(functools.partial(partial_bound, bab_steps=0), (None, None, 0, 0, None))(
            net, x0, feats, signs, c
        )
        b8 = jax.vmap(functools.partial(partial_bound, bab_steps=8), (None, None, 0, 0, None))(
            net, x0, feats, signs, c
        )
        chex.assert_trees_all_close(b0, plain, rtol=1e-5, atol=1e-6)
        assert bool(jnp.all(b8 >= b0 - 1e-6))
        assert bool(jnp.all(b8 <= (sign * g).min(0) + 1e-5))  # sound: below every sample
