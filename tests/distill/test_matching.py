"""Tests of trajectory_matching_loss and its three gradients."""

import functools

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robustml_jax.core.losses import soft_cross_entropy
from robustml_jax.distill import (
    dsa_augment,
    minibatch_indices,
    student_trajectory,
    trajectory_matching_loss,
)

S, C, H = 6, 3, 5  # synthetic examples, classes, hidden units of the tiny MLP


def mlp_apply(params, x):
    h = jnp.tanh(x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"])
    return h @ params["w2"]


def make_problem(dtype=jnp.float32, seed=0, soft=False):
    ks = jax.random.split(jax.random.key(seed), 7)
    x = jax.random.normal(ks[0], (S, 2, 2, 1), dtype)
    if soft:
        y = jax.nn.softmax(jax.random.normal(ks[1], (S, C), dtype))
    else:
        y = jax.nn.one_hot(jnp.arange(S) % C, C, dtype=dtype)
    start = {
        "w1": jax.random.normal(ks[2], (4, H), dtype),
        "b1": 0.1 * jax.random.normal(ks[3], (H,), dtype),
        "w2": jax.random.normal(ks[4], (H, C), dtype),
    }
    target = jax.tree.map(
        lambda a, k: a + 0.3 * jax.random.normal(k, a.shape, dtype),
        start,
        dict(zip(start, jax.random.split(ks[5], 3), strict=True)),
    )
    return x, y, start, target, ks[6]


def loss_fn(mode, start, target, key, num_steps, batch_size=3, augment_fn=None):
    def f(x, lr, y):
        return trajectory_matching_loss(
            x,
            y,
            lr,
            key,
            start,
            target,
            apply_fn=mlp_apply,
            num_steps=num_steps,
            batch_size=batch_size,
            gradient=mode,
            augment_fn=augment_fn,
        )

    return f


@functools.cache
def _value_and_grad(mode, num_steps, batch_size, augment_fn, x64):
    del x64  # part of the cache key only: float32 and float64 compile separately

    def f(x, lr, y, start, target, key):
        return loss_fn(mode, start, target, key, num_steps, batch_size, augment_fn)(x, lr, y)

    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))


def grads(mode, x, y, lr, start, target, key, num_steps, batch_size=3, augment_fn=None):
    vg = _value_and_grad(mode, num_steps, batch_size, augment_fn, x.dtype == jnp.float64)
    return vg(x, lr, y, start, target, key)


def test_loss_is_one_without_steps_and_same_in_all_modes():
    x, y, start, target, key = make_problem()
    values = [
        grads(m, x, y, jnp.float32(0.0), start, target, key, 4)[0]
        for m in ("unrolled", "remat", "tesla")
    ]
    np.testing.assert_allclose(values, 1.0, rtol=1e-6)
    values = [
        grads(m, x, y, jnp.float32(0.2), start, target, key, 4)[0]
        for m in ("unrolled", "remat", "tesla")
    ]
    assert abs(values[0] - 1.0) > 1e-3  # the student moved
    np.testing.assert_allclose(values, values[0], rtol=1e-6)


def test_loss_matches_python_loop_reference():
    x, y, start, target, key = make_problem()
    lr, n, b = 0.3, 5, 2
    idx = np.asarray(
        minibatch_indices(jax.random.split(key)[0], num_examples=S, num_steps=n, batch_size=b)
    )
    theta = start
    for i in range(n):
        g = jax.grad(lambda p, i=i: soft_cross_entropy(mlp_apply(p, x[idx[i]]), y[idx[i]]))(theta)
        theta = jax.tree.map(lambda p, gi: p - lr * gi, theta, g)
    num = sum(jnp.sum((theta[k] - target[k]) ** 2) for k in theta)
    den = sum(jnp.sum((start[k] - target[k]) ** 2) for k in theta)
    ours = trajectory_matching_loss(
        x, y, lr, key, start, target, apply_fn=mlp_apply, num_steps=n, batch_size=b
    )
    np.testing.assert_allclose(ours, num / den, rtol=1e-5)


@pytest.mark.parametrize("soft", [False, True])
def test_unrolled_and_remat_agree_float32(soft):
    x, y, start, target, key = make_problem(soft=soft)
    _, g_u = grads("unrolled", x, y, jnp.float32(0.3), start, target, key, 4)
    _, g_r = grads("remat", x, y, jnp.float32(0.3), start, target, key, 4)
    chex.assert_trees_all_close(g_u, g_r, rtol=1e-5, atol=1e-7)
    chex.assert_tree_all_finite(g_u)


def test_unrolled_and_remat_agree_float64(x64):
    x, y, start, target, key = make_problem(jnp.float64)
    _, g_u = grads("unrolled", x, y, jnp.float64(0.3), start, target, key, 6)
    _, g_r = grads("remat", x, y, jnp.float64(0.3), start, target, key, 6)
    chex.assert_trees_all_close(g_u, g_r, rtol=1e-12, atol=1e-14)


def _fd(f, args, argnum, direction, eps=1e-6):
    plus = list(args)
    minus = list(args)
    plus[argnum] = args[argnum] + eps * direction
    minus[argnum] = args[argnum] - eps * direction
    return (f(*plus) - f(*minus)) / (2 * eps)


@pytest.mark.parametrize("mode", ["unrolled", "remat"])
def test_exact_modes_match_finite_differences(x64, mode):
    x, y, start, target, key = make_problem(jnp.float64, soft=True)
    lr = jnp.float64(0.4)
    f = loss_fn(mode, start, target, key, 6)
    _, (gx, glr, gy) = grads(mode, x, y, lr, start, target, key, 6)
    dirs = jax.random.split(jax.random.key(9), 2)
    vx = jax.random.normal(dirs[0], x.shape, jnp.float64)
    vy = jax.random.normal(dirs[1], y.shape, jnp.float64)
    args = (x, lr, y)
    np.testing.assert_allclose(jnp.vdot(gx, vx), _fd(f, args, 0, vx), rtol=1e-6)
    np.testing.assert_allclose(glr, _fd(f, args, 1, 1.0), rtol=1e-6)
    np.testing.assert_allclose(jnp.vdot(gy, vy), _fd(f, args, 2, vy), rtol=1e-6)


def _frozen_surrogate(x, lr, y, traj, start_flat, target_flat, unravel, idx):
    """TESLA's objective with the student trajectory held fixed at ``traj`` [N + 1, P]."""
    gsum = 0.0
    for i in range(idx.shape[0]):
        g = jax.grad(
            lambda p, i=i: soft_cross_entropy(mlp_apply(unravel(p), x[idx[i]]), y[idx[i]])
        )(traj[i])
        gsum = gsum + g
    final = start_flat - lr * gsum
    return jnp.sum((final - target_flat) ** 2) / jnp.sum((start_flat - target_flat) ** 2)


def test_tesla_matches_first_order_gradient_and_finite_differences(x64):
    """TESLA = the gradient of L with theta_i frozen inside each g_i (Eqs. 5-7), checked by
    an explicit Jacobian contraction and by finite differences of the frozen-trajectory loss."""
    from jax.flatten_util import ravel_pytree

    x, y, start, target, key = make_problem(jnp.float64, soft=True)
    lr, n, b = jnp.float64(0.4), 6, 3
    _, (gx, glr, gy) = grads("tesla", x, y, lr, start, target, key, n, batch_size=b)
    start_flat, unravel = ravel_pytree(start)
    target_flat, _ = ravel_pytree(target)
    traj = student_trajectory(x, y, lr, key, start, apply_fn=mlp_apply, num_steps=n, batch_size=b)
    idx = np.asarray(
        minibatch_indices(jax.random.split(key)[0], num_examples=S, num_steps=n, batch_size=b)
    )

    # Hand-derived: dL/dX = sum_i (2/D) (-lr) (theta_N - target)^T dg_i/dX, dg_i/dX explicit.
    d = jnp.sum((start_flat - target_flat) ** 2)
    resid = traj[-1] - target_flat
    ref_x = jnp.zeros_like(x)
    gsum = jnp.zeros_like(start_flat)
    for i in range(n):

        def g_i(xx, i=i):
            return jax.grad(
                lambda p: soft_cross_entropy(mlp_apply(unravel(p), xx[idx[i]]), y[idx[i]])
            )(traj[i])

        jac = jax.jacobian(g_i)(x)  # [P, S, 2, 2, 1]
        ref_x = ref_x + jnp.tensordot(-2 * lr * resid / d, jac, axes=1)
        gsum = gsum + g_i(x)
    np.testing.assert_allclose(gx, ref_x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(glr, -2 * jnp.vdot(resid, gsum) / d, rtol=1e-9)

    f = lambda xx, ll, yy: _frozen_surrogate(
        xx, ll, yy, traj, start_flat, target_flat, unravel, idx
    )
    np.testing.assert_allclose(
        f(x, lr, y), grads("tesla", x, y, lr, start, target, key, n, batch_size=b)[0], rtol=1e-12
    )
    vx = jax.random.normal(jax.random.key(3), x.shape, jnp.float64)
    vy = jax.random.normal(jax.random.key(4), y.shape, jnp.float64)
    np.testing.assert_allclose(jnp.vdot(gx, vx), _fd(f, (x, lr, y), 0, vx), rtol=1e-6)
    np.testing.assert_allclose(glr, _fd(f, (x, lr, y), 1, 1.0), rtol=1e-6)
    np.testing.assert_allclose(jnp.vdot(gy, vy), _fd(f, (x, lr, y), 2, vy), rtol=1e-6)


def test_tesla_is_exact_for_one_step_and_not_beyond(x64):
    x, y, start, target, key = make_problem(jnp.float64)
    lr = jnp.float64(0.4)
    _, g_t = grads("tesla", x, y, lr, start, target, key, 1)
    _, g_u = grads("unrolled", x, y, lr, start, target, key, 1)
    chex.assert_trees_all_close(g_t, g_u, rtol=1e-10, atol=1e-13)
    # With several steps the dropped cross-step terms show (documented in NOTES.md).
    _, g_t = grads("tesla", x, y, lr, start, target, key, 6)
    _, g_u = grads("unrolled", x, y, lr, start, target, key, 6)
    rel = jnp.linalg.norm(g_t[0] - g_u[0]) / jnp.linalg.norm(g_u[0])
    assert rel > 1e-3
    assert abs(g_t[1] - g_u[1]) / abs(g_u[1]) > 1e-3


def test_tesla_gradient_for_start_and_target_params(x64):
    """The parameter cotangents: exact for the target, first order (identity) for the start."""
    x, y, start, target, key = make_problem(jnp.float64)

    def f(s, t, mode):
        return trajectory_matching_loss(
            x, y, 0.2, key, s, t, apply_fn=mlp_apply, num_steps=1, batch_size=3, gradient=mode
        )

    gt_t = jax.grad(f, argnums=1)(start, target, "tesla")
    gt_u = jax.grad(f, argnums=1)(start, target, "unrolled")
    chex.assert_trees_all_close(gt_t, gt_u, rtol=1e-10)
    chex.assert_tree_all_finite(jax.grad(f)(start, target, "tesla"))


def _cutout_flip(key, x):
    return dsa_augment(key, x, strategy="cutout_flip")


@pytest.mark.parametrize(
    "augment_fn", [_cutout_flip, pytest.param(dsa_augment, marks=pytest.mark.slow)]
)
def test_modes_with_dsa_augmentation(augment_fn):
    """With DSA in the student's steps: all modes agree for N = 1, and give finite nonzero
    gradients for N > 1 (the same key gives the same augmentations in every mode)."""
    _, y, start, _, key = make_problem()
    x = jax.random.normal(jax.random.key(5), (S, 6, 6, 1))
    params = {
        "w1": jax.random.normal(jax.random.key(6), (36, H)) * 0.1,
        "b1": start["b1"],
        "w2": start["w2"],
    }
    tgt = jax.tree.map(lambda a: a * 1.1, params)
    lr = jnp.float32(0.2)
    one = {
        m: grads(m, x, y, lr, params, tgt, key, 1, augment_fn=augment_fn)[1]
        for m in ("unrolled", "remat", "tesla")
    }
    chex.assert_trees_all_close(one["remat"], one["unrolled"], rtol=1e-4, atol=1e-7)
    chex.assert_trees_all_close(one["tesla"], one["unrolled"], rtol=1e-4, atol=1e-7)
    g3 = grads("tesla", x, y, lr, params, tgt, key, 3, augment_fn=augment_fn)[1]
    chex.assert_tree_all_finite(g3)
    assert float(jnp.abs(g3[0]).sum()) > 0


def test_tesla_gradient_temp_memory_is_flat_in_num_steps():
    """XLA's compiled memory analysis (deterministic): the temp memory of the tesla gradient does
    not grow with N, while the unrolled one's grows about linearly (so the measurement sees
    growth where there is some)."""
    x = jax.random.normal(jax.random.key(0), (20, 8, 8, 1))
    y = jax.nn.one_hot(jnp.arange(20) % C, C)
    params = {"w1": jnp.zeros((64, 32)), "b1": jnp.zeros(32), "w2": jnp.zeros((32, C))}

    def temp_bytes(mode, n):
        target = jax.tree.map(lambda a: a + 0.1, params)
        f = loss_fn(mode, params, target, jax.random.key(1), n, batch_size=10)
        grad = jax.jit(jax.grad(f, argnums=(0, 1)))
        mem = grad.lower(x, jnp.float32(0.1), y).compile().memory_analysis()
        return mem.temp_size_in_bytes

    tesla = [temp_bytes("tesla", n) for n in (4, 32)]
    unrolled = [temp_bytes("unrolled", n) for n in (4, 32)]
    assert tesla[1] <= 1.05 * tesla[0], tesla
    assert unrolled[1] > 3 * unrolled[0], unrolled


def test_no_retrace_on_new_values():
    x, y, start, target, key = make_problem()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def g(x, lr, y, start, target, key):
        return jax.grad(trajectory_matching_loss, argnums=(0, 2))(
            x,
            y,
            lr,
            key,
            start,
            target,
            apply_fn=mlp_apply,
            num_steps=3,
            batch_size=2,
            gradient="tesla",
        )

    g(x, 0.1, y, start, target, key)
    g(x + 1.0, 0.2, y, target, start, jax.random.key(7))


@hypothesis.settings(deadline=None, max_examples=8)
@hypothesis.given(num_examples=st.integers(1, 12), num_steps=st.integers(1, 9), data=st.data())
def test_minibatch_indices_properties(num_examples, num_steps, data):
    batch = data.draw(st.integers(1, num_examples))
    idx = np.asarray(
        minibatch_indices(
            jax.random.key(0), num_examples=num_examples, num_steps=num_steps, batch_size=batch
        )
    )
    chex.assert_shape(idx, (num_steps, batch))
    assert idx.min() >= 0 and idx.max() < num_examples
    per_pass = num_examples // batch
    for start in range(0, num_steps, per_pass):
        chunk = idx[start : start + per_pass].ravel()
        assert len(set(chunk.tolist())) == len(chunk)  # no repeats within a pass
    again = np.asarray(
        minibatch_indices(
            jax.random.key(0), num_examples=num_examples, num_steps=num_steps, batch_size=batch
        )
    )
    np.testing.assert_array_equal(idx, again)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_steps": 0}, "num_steps must be a positive int"),
        ({"batch_size": S + 1}, "batch_size must be an int in"),
        ({"batch_size": 0}, "batch_size must be an int in"),
        ({"gradient": "exact"}, "gradient must be one of"),
    ],
)
def test_bad_arguments(kwargs, match):
    x, y, start, target, key = make_problem()
    args = {"apply_fn": mlp_apply, "num_steps": 2, "batch_size": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        trajectory_matching_loss(x, y, 0.1, key, start, target, **args)


def test_bad_shapes():
    x, y, start, target, key = make_problem()
    kw = {"apply_fn": mlp_apply, "num_steps": 2, "batch_size": 2}
    with pytest.raises(ValueError, match="same number of examples"):
        trajectory_matching_loss(x[:-1], y, 0.1, key, start, target, **kw)
    with pytest.raises(ValueError, match="syn_y has C=4 classes"):
        trajectory_matching_loss(x, jnp.ones((S, C + 1)) / 4, 0.1, key, start, target, **kw)
    with pytest.raises(ValueError, match="syn_y must be"):
        trajectory_matching_loss(x, jnp.arange(S), 0.1, key, start, target, **kw)
    with pytest.raises(ValueError, match="apply_fn.*fails on synthetic images of shape"):
        trajectory_matching_loss(jnp.ones((S, 3, 3, 1)), y, 0.1, key, start, target, **kw)
    bad_target = {**target, "extra": jnp.zeros(2)}
    with pytest.raises(ValueError, match="same tree structure"):
        trajectory_matching_loss(x, y, 0.1, key, start, bad_target, **kw)
    with pytest.raises(ValueError, match="syn_lr must be a scalar"):
        trajectory_matching_loss(x, y, jnp.ones(2), key, start, target, **kw)
