"""The RecurJac baseline follows the official rule, checked against a NumPy transliteration.

The official code (auto_LiRPA's ``BoundReluGrad.bound_backward`` with ``recurjac=True``, used by
the paper's ``--method recurjac``) bounds the gradient node ``y = relu'(z) * a`` as follows:
wherever the incoming gradient ``a`` has an unknown sign (``a_lo < 0 < a_up``) and the neuron is
not inactive, ``y`` is replaced by the constant interval ``[a_lo, a_up]``; everywhere else the
usual linear relaxation is used (``a`` itself for active neurons; ``relu(a)`` and ``-relu(-a)``
through their CROWN upper relaxations for unstable ones). The final l1 norm node is the same
for every method.

``transliterate`` below follows that code node by node on explicit float64 matrices: the
``(A, A_pos, A_neg, bias)`` split of ``BoundReluGrad``, then the ``relu`` / ``-relu(-.)``
nodes, then the linear layer. As in the JAX code, intermediate bounds are CROWN intersected
with interval bounds, and the objective is the min of the interval norm and the chord of
``|v|`` back-substituted. Pre-activation bounds are the JAX code's (shared input).
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from robustml_jax import lipschitz
from tests.lipschitz.nets import random_net


def _relu_upper(lo, up):
    """CROWN's upper line of relu on [lo, up]: slope, intercept (elementwise)."""
    unstable = (lo < 0) & (up > 0)
    slope = np.where(up <= 0, 0.0, np.where(lo >= 0, 1.0, up / np.where(unstable, up - lo, 1.0)))
    return slope, np.where(unstable, -slope * lo, 0.0)


def _relu_grad_backward(lam, a_lo, a_up, pre_lo, pre_up, recurjac):
    """Upper bound of lam . y, y = relu'(z) * a, as a linear function of a: (coef, bias [R])."""
    active = pre_lo > 0
    inactive = (pre_up < 0) & ~active
    unstable = ~active & ~inactive
    bias = np.zeros(lam.shape[0])
    if recurjac:
        upper_grad = ~inactive
        lower_interval, upper_interval = a_lo * upper_grad, a_up * upper_grad
        mask_unstable_grad = (a_lo < 0) & (a_up > 0)
        lam_unstable = lam * mask_unstable_grad
        bias = bias + (
            np.maximum(lam_unstable, 0) * upper_interval
            + np.minimum(lam_unstable, 0) * lower_interval
        ).sum(-1)
        lam = lam * ~mask_unstable_grad
    coef_a = lam * active
    a_pos = np.maximum(lam, 0) * unstable  # onto g_relu = relu(a)
    a_neg = np.minimum(lam, 0) * unstable  # onto g_relu_rev = -relu(-a)
    # relu(a) <= s a + t on [a_lo, a_up]; a_pos >= 0.
    s, t = _relu_upper(a_lo, a_up)
    coef_a = coef_a + a_pos * s
    bias = bias + (a_pos * t).sum(-1)
    # a_neg * (-relu(-a)) = (-a_neg) * relu(-a), and relu(-a) <= s2 (-a) + t2 on [-a_up, -a_lo].
    s2, t2 = _relu_upper(-a_up, -a_lo)
    coef_a = coef_a + a_neg * s2
    bias = bias + (-a_neg * t2).sum(-1)
    return coef_a, bias


def transliterate(ws, c, pre_lo, pre_up, *, recurjac=True):
    """Bounds on every a_k and v, and the Lipschitz bound, of one direction c (float64).

    Args:
      ws: weights W_k [N_{k-1}, N_k] (z_k = h_{k-1} W_k + b_k), k = 0..L-1.
      c: [K].
      pre_lo, pre_up: pre-activation bounds of the L-1 hidden layers.
    """
    last = len(ws) - 1
    a_lo, a_up = [None] * last, [None] * last

    def upper(i, lam):
        """Upper bound of lam . g_i (lam [R, N_i]) by back-substitution down to g_{L-1} = c."""
        bias = np.zeros(lam.shape[0])
        for j in range(i, last):
            lam, b = _relu_grad_backward(lam, a_lo[j], a_up[j], pre_lo[j], pre_up[j], recurjac)
            bias = bias + b
            lam = lam @ ws[j + 1]  # a_j = W_{j+1} g_{j+1}
        return lam @ c + bias

    def g_interval(j, lo, up):
        act = pre_lo[j] > 0
        ina = (pre_up[j] < 0) & ~act
        g_lo = np.where(act, lo, np.where(ina, 0.0, np.minimum(lo, 0)))
        g_up = np.where(act, up, np.where(ina, 0.0, np.maximum(up, 0)))
        return g_lo, g_up

    def interval(w, g_lo, g_up):
        mid, rad = (g_lo + g_up) / 2, (g_up - g_lo) / 2
        return w @ mid - np.abs(w) @ rad, w @ mid + np.abs(w) @ rad

    g_lo, g_up = c, c
    for i in range(last - 1, -1, -1):
        lo, up = interval(ws[i + 1], g_lo, g_up)
        n = ws[i].shape[1]
        rows = np.concatenate([np.eye(n), -np.eye(n)]) @ ws[i + 1]  # +-a_i over g_{i+1}
        ub = upper(i + 1, rows)
        a_lo[i], a_up[i] = np.maximum(lo, -ub[n:]), np.minimum(up, ub[:n])
        g_lo, g_up = g_interval(i, a_lo[i], a_up[i])
    v_lo, v_up = interval(ws[0], g_lo, g_up)
    n0 = ws[0].shape[0]
    ub = upper(0, np.concatenate([np.eye(n0), -np.eye(n0)]) @ ws[0])
    v_lo, v_up = np.maximum(v_lo, -ub[n0:]), np.minimum(v_up, ub[:n0])
    lip = np.maximum(np.abs(v_lo), np.abs(v_up)).sum()
    width = v_up - v_lo
    s = np.where(
        width > 1e-12, (np.abs(v_up) - np.abs(v_lo)) / np.where(width > 1e-12, width, 1), 0
    )
    t = np.abs(v_lo) - s * v_lo
    chord = upper(0, (s @ ws[0])[None])[0] + t.sum()
    return min(lip, chord), v_lo, v_up


@functools.partial(jax.jit, static_argnames=("method",))
def _jax_bounds(net, x0, eps, c, *, method):
    res = lipschitz.gradient_bounds(net, x0, eps, c=c, method=method)
    lowers, uppers = lipschitz.preactivation_bounds(net, x0, eps)
    lip = lipschitz.local_lipschitz_bound(net, x0, eps, c=c, method=method)
    return res, lowers, uppers, lip


ARCHS = [
    pytest.param((3, 6, 2), id="3-6-2", marks=pytest.mark.slow),
    pytest.param((3, 5, 5, 2), id="3-5-5-2", marks=pytest.mark.slow),
    pytest.param((4, 8, 6, 5, 3), id="4-8-6-5-3"),
    pytest.param((2, 12, 10, 4), id="2-12-10-4", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("sizes", ARCHS)
def test_recurjac_matches_the_official_rule(x64, sizes):
    """Every partial-derivative bound and the Lipschitz bound equal the transliteration's, for
    RecurJac and (the same code path without the interval rule) ours."""
    looser = 0
    for seed in range(5):
        key = jax.random.key(seed)
        net = random_net(key, sizes)
        x0 = jax.random.normal(jax.random.fold_in(key, 1), (sizes[0],))
        c = jax.random.normal(jax.random.fold_in(key, 2), (sizes[-1],))
        eps = 0.1 + 0.2 * seed
        ws = [np.asarray(w, np.float64) for w, _ in net]
        value = {}
        for method, recurjac in (("recurjac", True), ("ours", False)):
            res, lowers, uppers, got = _jax_bounds(net, x0, eps, c, method=method)
            pre_lo = [np.asarray(x) for x in lowers]
            pre_up = [np.asarray(x) for x in uppers]
            want, v_lo, v_up = transliterate(ws, np.asarray(c), pre_lo, pre_up, recurjac=recurjac)
            np.testing.assert_allclose(np.asarray(res.lower), v_lo, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(np.asarray(res.upper), v_up, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(float(got), want, rtol=1e-9, err_msg=method)
            value[method] = want
        looser += value["recurjac"] > value["ours"] * (1 + 1e-6)
    if len(sizes) > 3:  # with one hidden layer the incoming gradient W c is a constant
        assert looser > 0  # the interval rule was exercised, not only the shared linear path
