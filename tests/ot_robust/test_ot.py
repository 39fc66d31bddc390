"""The OT regulariser against a plain NumPy Sinkhorn, its label awareness, and its gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from robustml_jax import ot_robust


def _numpy_reg_ot(zc, yc, zp, sp, w, *, eps, lam, k):
    """Independent reference: cost, class-balanced masses, log-domain Sinkhorn for
    min <P, C> + eps KL(P | a b^T) (P = a b^T exp((f + g - C) / eps)), dual value f.a + g.b."""
    u = zc / np.linalg.norm(zc, axis=1, keepdims=True)
    v = zp / np.linalg.norm(zp, axis=1, keepdims=True)
    c = ((v[:, None] - u[None]) ** 2).sum(-1) + lam * (sp[:, None] != yc[None])
    b = np.full(len(yc), 1.0 / len(yc))
    mass = np.array([np.mean(yc == j) for j in range(k)])
    tot = np.array([w[sp == j].sum() for j in range(k)])
    a = np.maximum(w * mass[sp] / np.maximum(tot[sp], 1e-12), 1e-6 / len(sp))
    a = a / a.sum()
    f, g = np.zeros(len(a)), np.zeros(len(b))
    for _ in range(5000):
        f = -eps * logsumexp((g[None] - c) / eps, b=b[None], axis=1)
        g = -eps * logsumexp((f[:, None] - c) / eps, b=a[:, None], axis=0)
    return float(f @ a + g @ b), c


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_numpy_sinkhorn(seed, x64):
    rng = np.random.default_rng(seed)
    zc, zp = rng.normal(size=(6, 3)), rng.normal(size=(8, 3))
    yc, sp = rng.integers(0, 3, 6), rng.integers(0, 3, 8)
    w = rng.uniform(0.2, 1.0, 8)
    w[0] = 0.0
    ref, c = _numpy_reg_ot(zc, yc, zp, sp, w, eps=0.1, lam=2.0, k=3)
    np.testing.assert_allclose(
        ot_robust.label_aware_cost(
            jnp.asarray(zp), jnp.asarray(sp), jnp.asarray(zc), jnp.asarray(yc), label_cost=2.0
        ),
        c,
        rtol=1e-10,
    )
    got = ot_robust.ot_regulariser(
        jnp.asarray(zc),
        jnp.asarray(yc),
        jnp.asarray(zp),
        jnp.asarray(sp),
        jnp.asarray(w),
        epsilon=0.1,
        label_cost=2.0,
        num_classes=3,
        threshold=1e-9,
        max_iterations=5000,
    )
    np.testing.assert_allclose(float(got), ref, rtol=1e-5, atol=1e-6)


def _clusters():
    rng = np.random.default_rng(0)
    c0, c1 = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    zc = np.concatenate([c0 + 0.05 * rng.normal(size=(4, 3)), c1 + 0.05 * rng.normal(size=(4, 3))])
    yc = np.array([0] * 4 + [1] * 4)
    return jnp.asarray(zc, jnp.float32), jnp.asarray(yc)


def test_label_aware_value_and_pull_direction():
    """Perturbed points sitting on the class-0 cluster: cheap when labelled 0 (sensitivity
    examples), expensive when labelled 1 (invariance examples that became class 1), and the
    gradient pulls the latter towards the class-1 cluster. A regulariser that ignored labels
    would give the same value for both labellings."""
    zc, yc = _clusters()
    zp = zc[:4] + 0.01
    zp = jnp.concatenate([zp, zc[4:] + 0.01])
    same = ot_robust.ot_regulariser(zc, yc, zp, yc)
    swapped_labels = jnp.concatenate([jnp.ones(4, int), jnp.zeros(4, int)])
    swapped = ot_robust.ot_regulariser(zc, yc, zp, swapped_labels)
    assert float(swapped) > float(same) + 1.0  # ||c0 - c1||^2 = 2 on the unit sphere
    g = jax.grad(lambda z: ot_robust.ot_regulariser(zc, yc, z, swapped_labels))(zp)
    towards = zc[4:].mean(0) - zp[:4]  # class-0 points labelled 1 should move to class 1
    cos = jnp.sum(-g[:4] * towards, -1) / (
        jnp.linalg.norm(g[:4], axis=-1) * jnp.linalg.norm(towards, axis=-1)
    )
    assert float(cos.min()) > 0.5, cos


def test_gradient_matches_finite_differences(x64):
    rng = np.random.default_rng(3)
    zc, zp = jnp.asarray(rng.normal(size=(5, 3))), jnp.asarray(rng.normal(size=(6, 3)))
    yc, sp = jnp.asarray(rng.integers(0, 2, 5)), jnp.asarray(rng.integers(0, 2, 6))

    def f(z):
        return ot_robust.ot_regulariser(
            zc, yc, z, sp, epsilon=0.2, num_classes=2, threshold=1e-10, max_iterations=5000
        )

    g = jax.grad(f)(zp)
    d = jnp.asarray(rng.normal(size=zp.shape))
    h = 1e-5
    fd = (f(zp + h * d) - f(zp - h * d)) / (2 * h)
    np.testing.assert_allclose(float(jnp.sum(g * d)), float(fd), rtol=1e-4, atol=1e-7)


def test_class_balanced_weights_match_clean_masses():
    yc = jnp.array([0, 0, 0, 1, 2, 2])
    sp = jnp.array([0, 1, 1, 1, 2, 0, 2])
    a = ot_robust.class_balanced_weights(sp, yc, jnp.ones(7), num_classes=3)
    per = jax.ops.segment_sum(a, sp, num_segments=3)
    np.testing.assert_allclose(per, [0.5, 1 / 6, 1 / 3], atol=1e-5)


def test_bad_input():
    zc, yc = _clusters()
    with pytest.raises(ValueError, match="share E"):
        ot_robust.ot_regulariser(zc, yc, jnp.zeros((3, 2)), jnp.zeros(3, int))
    with pytest.raises(ValueError, match="labels must match"):
        ot_robust.ot_regulariser(zc, yc[:3], zc, yc)
    with pytest.raises(ValueError, match="epsilon"):
        ot_robust.ot_regulariser(zc, yc, zc, yc, epsilon=0.0)
