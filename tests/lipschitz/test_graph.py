"""Residual Add and tanh / sigmoid layers (``graph_network``, ``graph_lipschitz_bound``).

Checks that can fail: the derivative range of each activation over an interval must contain
the finite-difference slopes (NumPy, float64) on a fine grid of it, including intervals around
0 where a range taken from the two ends only would be too small; the linear relaxations must
contain the activation on the grid; the bound on a one-neuron tanh net must reach the true
peak gradient; on residual tanh / sigmoid nets every bound must cover the gradient norms
(and partial derivatives) found by sampling and gradient ascent, the forward pass must agree
with a NumPy re-implementation (finite differences of that give the same gradients), and the
bound must converge to the gradient norm at x0 as eps -> 0; on ReLU chains the graph bound
must equal ``local_lipschitz_bound`` and on residual ReLU nets it must be >= the exact value
(enumerated on an equivalent chain net).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax import lipschitz
from tests.lipschitz.nets import random_net

_NP_ACT = {
    "tanh": np.tanh,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "relu": lambda z: np.maximum(z, 0.0),
}


def _intervals(n=60, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 3, n), rng.normal(0, 3, n)
    lo, up = np.minimum(a, b), np.maximum(a, b)
    lo[:10], up[:10] = -rng.uniform(0.01, 2, 10), rng.uniform(0.01, 2, 10)  # around 0
    lo[10:12], up[10:12] = 1.3, 1.3 + 1e-6  # (almost) a point
    return lo.astype(np.float32), up.astype(np.float32)


@jax.jit
def _ranges_and_lines(lo, up):
    return {
        kind: (
            lipschitz.activation_derivative_range(kind, lo, up),
            lipschitz.activation_relaxation(kind, lo, up),
        )
        for kind in ("tanh", "sigmoid", "relu")
    }


def test_derivative_range_and_relaxation_contain_the_activation():
    lo, up = _intervals()
    out = _ranges_and_lines(lo, up)
    t = np.linspace(0, 1, 2001)[:, None]
    z = lo.astype(np.float64) + t * (up.astype(np.float64) - lo)  # [2001, n]
    h = 1e-6
    for kind, ((d_lo, d_up), lines) in out.items():
        d_lo, d_up = np.asarray(d_lo), np.asarray(d_up)
        su, tu, sl, tl = map(np.asarray, lines)
        f = _NP_ACT[kind]
        slope = (f(z + h) - f(z - h)) / (2 * h)  # finite differences, float64
        if kind == "relu":
            slope = np.where(np.abs(z) < 2 * h, 0.5, slope)  # any value in [0, 1] is Clarke
        assert np.all(slope >= d_lo - 1e-6), (kind, np.min(slope - d_lo))
        assert np.all(slope <= d_up + 1e-6), (kind, np.max(slope - d_up))
        # The range is attained (not just any superset): the peak near 0 is included.
        assert np.all(d_up <= slope.max(0) + 1e-3) and np.all(d_lo >= slope.min(0) - 1e-3)
        val = f(z)
        assert np.all(val <= su * z + tu + 1e-6), (kind, np.max(val - su * z - tu))
        assert np.all(val >= sl * z + tl - 1e-6), (kind, np.min(val - sl * z - tl))
        if kind != "relu":  # the parallel lines touch the function (up to the margin)
            gap = (su * z + tu - val).min(0)
            assert np.all(gap < 1e-3), (kind, gap.max())


def _residual_net(key, n0=3, width=6, act=("tanh", "sigmoid"), k=2, scale=1.5):
    (w1, b1), (w2, b2), (w3, b3) = random_net(key, (n0, width, n0, k), scale=scale)
    spec = [
        ("dense", w1, b1),  # 1
        (act[0],),  # 2
        ("dense", w2, b2),  # 3
        ("add", 3, 0),  # 4: residual
        (act[1],),  # 5
        ("dense", w3, b3),  # 6
    ]
    return lipschitz.graph_network(n0, spec), [
        np.asarray(a, np.float64) for a in (w1, b1, w2, b2, w3, b3)
    ]


def _np_forward(params, acts, x):
    w1, b1, w2, b2, w3, b3 = params
    h = _NP_ACT[acts[0]](x @ w1 + b1)
    r = _NP_ACT[acts[1]](h @ w2 + b2 + x)
    return r @ w3 + b3


@functools.partial(jax.jit, static_argnames=("method",))
def _graph_bounds(net, x0, eps, c, method="ours"):
    lip = lipschitz.graph_lipschitz_bound(net, x0, eps, method=method)
    _, lo, up = lipschitz.graph_gradient_bounds(net, x0, eps, c=c, method=method)
    return lip, lo, up


def _sampled_grads(net, x0, eps, c, key, n=1500, ascent=30):
    """Gradients of c.f at uniform samples, vertices and after sign-gradient ascent on ||.||_1."""
    grad = jax.grad(lambda x: c @ lipschitz.graph_forward(net, x))
    k1, k2 = jax.random.split(key)
    u = x0 + eps * jax.random.uniform(k1, (n, x0.shape[0]), minval=-1, maxval=1)
    v = x0 + eps * jnp.sign(jax.random.normal(k2, (64, x0.shape[0])))
    xs = jnp.concatenate([u, v])[:256]

    def norm(x):
        return jnp.abs(grad(x)).sum()

    def step(x, _):
        x = jnp.clip(x + 0.1 * eps * jnp.sign(jax.grad(norm)(x)), x0 - eps, x0 + eps)
        return x, grad(x)

    _, path = jax.lax.scan(jax.vmap(step), xs, None, length=ascent)
    return jnp.concatenate([jax.vmap(grad)(jnp.concatenate([u, v])), path.reshape(-1, x0.shape[0])])


@jax.jit
def _quick(net, one, x0):
    c = jnp.asarray([1.0, -0.5])
    grad = jax.grad(lambda x: c @ lipschitz.graph_forward(net, x))
    xs = x0 + 0.5 * jax.random.uniform(jax.random.key(0), (256, 3), minval=-1, maxval=1)
    peak = lipschitz.graph_lipschitz_bound(one, jnp.asarray([0.01]), 0.5)
    return lipschitz.graph_gradient_bounds(net, x0, 0.5, c=c), jax.vmap(grad)(xs), peak


def test_quick_residual_tanh_sigmoid():
    """CI-sized: a residual tanh / sigmoid net covers sampled gradients; the tanh peak is found.

    One tanh neuron f = tanh(4 x) on [-0.49, 0.51]: the slope peaks at 4 (x = 0) although both
    ends have slope 4 (1 - tanh(2)^2) ~ 0.28, so a derivative range taken from the ends only
    would give a bound near 1.1.
    """
    net, _ = _residual_net(jax.random.key(0))
    one = lipschitz.graph_network(1, [("dense", jnp.full((1, 1), 4.0), jnp.zeros(1)), ("tanh",)])
    (lip, lo, up), grads, peak = _quick(net, one, jnp.asarray([0.3, -0.2, 0.1]))
    tol = 1e-5 * (1 + float(lip))
    assert float(jnp.abs(grads).sum(-1).max()) <= float(lip) + tol
    assert np.all(np.asarray(grads) >= np.asarray(lo) - tol)
    assert np.all(np.asarray(grads) <= np.asarray(up) + tol)
    assert float(lip) <= 2.5 * float(jnp.abs(grads).sum(-1).max())  # not vacuous (3.81 vs 1.96)
    assert 4.0 - 1e-4 <= float(peak) <= 4.0 * (1 + 1e-4)


@pytest.mark.slow
def test_residual_smooth_net_is_sound_and_tight():
    """Residual tanh / sigmoid net: NumPy forward and differences, sampling, eps -> 0."""
    key = jax.random.key(0)
    net, params = _residual_net(key)
    x0 = jnp.asarray([0.3, -0.2, 0.1], jnp.float32)
    # The graph's forward pass is the NumPy net; its jax gradient matches NumPy differences.
    xn = np.asarray(x0, np.float64)
    np.testing.assert_allclose(
        lipschitz.graph_forward(net, x0), _np_forward(params, ("tanh", "sigmoid"), xn), rtol=1e-5
    )
    c = jnp.asarray([1.0, -0.5])
    fd = [
        (
            c
            @ (
                _np_forward(params, ("tanh", "sigmoid"), xn + 1e-6 * e)
                - _np_forward(params, ("tanh", "sigmoid"), xn - 1e-6 * e)
            )
        )
        / 2e-6
        for e in np.eye(3)
    ]
    g = jax.grad(lambda x: c @ lipschitz.graph_forward(net, x))(x0)
    np.testing.assert_allclose(g, np.asarray(fd), rtol=1e-4, atol=1e-5)
    eps = 0.5
    lip, lo, up = _graph_bounds(net, x0, eps, c)
    grads = _sampled_grads(net, x0, eps, c, jax.random.key(1))
    tol = 1e-5 * (1 + float(lip))
    assert (
        float(jnp.abs(grads).sum(-1).max())
        <= float(lipschitz.graph_lipschitz_bound(net, x0, eps, c=c)) + tol
    )
    assert np.all(np.asarray(grads) >= np.asarray(lo) - tol)
    assert np.all(np.asarray(grads) <= np.asarray(up) + tol)
    ilip, ilo, iup = _graph_bounds(net, x0, eps, c, method="interval")
    assert float(lip) <= float(ilip) + tol and np.all(lo >= ilo - tol) and np.all(up <= iup + tol)
    # eps -> 0: the bounds close on the gradient at x0.
    lip0, lo0, up0 = _graph_bounds(net, x0, 1e-4, c)
    np.testing.assert_allclose(lo0, g, atol=2e-3)
    np.testing.assert_allclose(up0, g, atol=2e-3)
    # One tanh neuron f = tanh(4 x) on [-0.49, 0.51]: the slope peaks at 4 (x = 0) although
    # both ends of the interval have slope 4 (1 - tanh(2)^2) ~ 0.28: a derivative range taken
    # from the ends would give a bound near 0.28 x 4 (~1.1).
    one = lipschitz.graph_network(1, [("dense", jnp.ones((1, 1)) * 4.0, jnp.zeros(1)), ("tanh",)])
    b = float(lipschitz.graph_lipschitz_bound(one, jnp.asarray([0.01]), 0.5))
    assert 4.0 - 1e-4 <= b <= 4.0 * (1 + 1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("acts", [("tanh", "tanh"), ("sigmoid", "tanh"), ("tanh", "relu")])
def test_residual_nets_cover_sampled_gradients(acts):
    for seed in range(4):
        key = jax.random.key(seed)
        net, _ = _residual_net(key, n0=4, width=10, act=acts, k=3, scale=2.0)
        x0 = jax.random.normal(jax.random.fold_in(key, 7), (4,))
        for eps in (0.05, 0.3, 1.0):
            for c in jnp.eye(3):
                lip, lo, up = _graph_bounds(net, x0, eps, c)
                grads = _sampled_grads(net, x0, eps, c, jax.random.fold_in(key, 9))
                tol = 1e-5 * (1 + float(lip))
                best = float(jnp.abs(grads).sum(-1).max())
                assert best <= float(lip) + tol, (acts, seed, eps, best, float(lip))
                assert np.all(np.asarray(grads) >= np.asarray(lo) - tol)
                assert np.all(np.asarray(grads) <= np.asarray(up) + tol)


@pytest.mark.slow
def test_relu_chain_graph_equals_chain_bounds():
    for seed, sizes in enumerate([(4, 12, 10, 3), (3, 8, 8, 8, 2)]):
        net = random_net(jax.random.key(seed), sizes)
        x0 = jax.random.normal(jax.random.key(100 + seed), (sizes[0],))
        graph = lipschitz.chain_graph(lipschitz.from_dense(net))
        for eps in (0.05, 0.5):
            for method in ("ours", "interval"):
                a = lipschitz.local_lipschitz_bound(net, x0, eps, method=method)
                b = lipschitz.graph_lipschitz_bound(graph, x0, eps, method=method)
                np.testing.assert_allclose(float(b), float(a), rtol=1e-5)


def _residual_relu_as_chain(params):
    """x -> relu(W1 x + b1) -> W2 . + b2 + x -> relu -> W3 . + b3 as a chain ReLU net.

    The skip travels through the first ReLU layer as relu(x) - relu(-x) = x.
    """
    w1, b1, w2, b2, w3, b3 = params
    n0 = w1.shape[0]
    eye = np.eye(n0)
    first = (np.concatenate([w1, eye, -eye], 1), np.concatenate([b1, np.zeros(2 * n0)]))
    second = (np.concatenate([w2, eye, -eye], 0), b2)
    return [first, second, (w3, b3)]


@pytest.mark.slow
def test_residual_relu_net_bound_is_above_the_exact_value():
    for seed in range(3):
        key = jax.random.key(seed)
        net, params = _residual_net(key, n0=3, width=8, act=("relu", "relu"), k=2)
        chain = _residual_relu_as_chain(params)
        x0 = np.asarray(jax.random.normal(jax.random.fold_in(key, 3), (3,)), np.float64)
        np.testing.assert_allclose(
            lipschitz.forward(lipschitz.from_dense(chain), jnp.asarray(x0, jnp.float32)),
            lipschitz.graph_forward(net, jnp.asarray(x0, jnp.float32)),
            rtol=1e-5,
            atol=1e-6,
        )
        for eps in (0.1, 0.5):
            exact = lipschitz.exact_lipschitz(chain, x0, eps, time_limit_s=120).value
            bound = float(lipschitz.graph_lipschitz_bound(net, jnp.asarray(x0, jnp.float32), eps))
            assert exact - 1e-4 * (1 + exact) <= bound, (seed, eps, exact, bound)
            assert bound <= 3.0 * exact + 1e-3, (seed, eps, exact, bound)  # not vacuous


def test_graph_errors():
    w = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="unknown kind"):
        lipschitz.graph_network(2, [("softplus",)])
    with pytest.raises(ValueError, match="takes 2 inputs"):
        lipschitz.graph_network(2, [("dense", w, jnp.zeros(3)), ("dense", w, jnp.zeros(3))])
    with pytest.raises(ValueError, match="add of nodes"):
        lipschitz.graph_network(2, [("dense", w, jnp.zeros(3)), ("add", 1, 0)])
    with pytest.raises(ValueError, match="earlier node"):
        lipschitz.graph_network(2, [("add", 0, 1)])
    net = lipschitz.graph_network(2, [("dense", w, jnp.zeros(3)), ("tanh",)])
    with pytest.raises(ValueError, match="takes 2 inputs"):
        lipschitz.graph_lipschitz_bound(net, jnp.zeros(3), 0.1)
    with pytest.raises(ValueError, match="method must be"):
        lipschitz.graph_lipschitz_bound(net, jnp.zeros(2), 0.1, method="recurjac")
