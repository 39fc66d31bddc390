"""Invariance attacks (Tramer et al. 2020, "Fundamental tradeoffs between invariance and
sensitivity to adversarial perturbations"), batched and jittable.

For each input ``x`` of class ``y`` and each allowed target class ``t``, the attack finds the
training image of class ``t`` nearest to ``x`` (l_2 in pixel space) after a small rotation and
shift from a grid of transforms, aligns it to ``x`` (the inverse transform of the neighbour),
and projects it onto the l_inf ball of radius ``eps`` around ``x`` and onto [0, 1]:
``x' = clip(T_g^{-1}(n), x - eps, x + eps)``. Among the allowed targets it keeps the one whose
projected image is closest (l_2) to its aligned neighbour, i.e. the one the ball lets the input
become most completely. A label oracle (:func:`nearest_neighbour_labels`, 1-NN on the training
set) measures how often the result really changed class.

Shapes: B = batch, H, W, C = image, N = training images, K = classes, G = transforms, D = H*W*C.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from robustml_jax.core.attacks import check_attack_inputs

__all__ = [
    "InvarianceResult",
    "affine_grid",
    "invariance_attack",
    "nearest_neighbour_labels",
    "transform_images",
]


class InvarianceResult(NamedTuple):
    """What :func:`invariance_attack` returns.

    Attributes:
      x_adv: [B, H, W, C] the invariance examples (inside the l_inf ball and [0, 1]).
      target: [B] int the target class chosen.
      neighbour: [B, H, W, C] the aligned nearest training image of the target class.
      neighbour_index: [B] int its index in the training set.
      transform: [B, 3] (shift_rows, shift_cols, angle in degrees) that aligned it.
    """

    x_adv: jax.Array
    target: jax.Array
    neighbour: jax.Array
    neighbour_index: jax.Array
    transform: jax.Array


def affine_grid(
    max_shift: int = 2, shift_step: int = 1, max_angle: float = 10.0, angle_step: float = 5.0
) -> np.ndarray:
    """The transform grid [G, 3] of (shift_rows, shift_cols, angle in degrees), identity
    included: shifts in ``[-max_shift, max_shift]`` and angles in ``[-max_angle, max_angle]``."""
    shifts = np.arange(-max_shift, max_shift + 1, shift_step, dtype=np.float32)
    angles = np.arange(-max_angle, max_angle + 1e-6, angle_step, dtype=np.float32)
    if angle_step <= 0 or max_angle == 0:
        angles = np.zeros(1, np.float32)
    g = np.stack(np.meshgrid(shifts, shifts, angles, indexing="ij"), -1).reshape(-1, 3)
    return g


def _rotation(deg):
    r = jnp.deg2rad(deg)
    c, s = jnp.cos(r), jnp.sin(r)
    return jnp.array([[c, -s], [s, c]])


def _sample(img, m, b):
    """out[p] = img[m @ p + b] (bilinear, zero outside) for one image [H, W, C]."""
    h, w, _ = img.shape
    rows, cols = jnp.meshgrid(jnp.arange(h, dtype=img.dtype), jnp.arange(w, dtype=img.dtype),
                              indexing="ij")  # fmt: skip
    p = jnp.stack([rows.ravel(), cols.ravel()])  # [2, H*W]
    q = m @ p + b[:, None]

    def chan(ch):
        return jax.scipy.ndimage.map_coordinates(ch, [q[0], q[1]], order=1, cval=0.0)

    return jax.vmap(chan, in_axes=-1, out_axes=-1)(img).reshape(h, w, -1)


def transform_images(x: jax.Array, transform: jax.Array, *, inverse: bool = False) -> jax.Array:
    """Rotates images about their centre and shifts them, one transform per image.

    ``T_g`` moves the content by (shift_rows, shift_cols) and rotates it by ``angle`` degrees;
    ``inverse=True`` applies ``T_g^{-1}``, so ``T_g^{-1}(T_g(x)) = x`` up to interpolation.

    Args:
      x: [B, H, W, C] images.
      transform: [B, 3] (shift_rows, shift_cols, angle in degrees).

    Returns:
      [B, H, W, C] transformed images (zero fill outside).
    """

    def one(img, g):
        h, w, _ = img.shape
        c = jnp.array([(h - 1) / 2.0, (w - 1) / 2.0], img.dtype)
        t = g[:2].astype(img.dtype)
        if inverse:  # T^-1(img)(p) = img(R(a)(p - c) + c + t)
            m = _rotation(g[2]).astype(img.dtype)
            b = -m @ c + c + t
        else:  # T(img)(p) = img(R(-a)(p - c - t) + c)
            m = _rotation(-g[2]).astype(img.dtype)
            b = -m @ (c + t) + c
        return _sample(img, m, b)

    return jax.vmap(one)(x, transform)


def _sq_dists(a, b, b_sq):
    """||a_i - b_j||^2 [B, N] for a [B, D], b [N, D] and b_sq [N]."""
    a_sq = jnp.sum(a * a, -1)
    return jnp.maximum(a_sq[:, None] + b_sq[None, :] - 2.0 * a @ b.T, 0.0)


def nearest_neighbour_labels(
    x: jax.Array, train_x: jax.Array, train_y: jax.Array, *, exclude: jax.Array | None = None
) -> jax.Array:
    """The 1-nearest-neighbour (l_2, pixels) label oracle of Tramer et al.

    Args:
      x: [B, ...] queries.
      train_x: [N, ...] training images (same image shape).
      train_y: [N] int labels.
      exclude: optional [B] int training indices to ignore per query (the query itself, when
        the queries are training images); -1 for none.

    Returns:
      [B] int labels of the nearest training images.
    """
    if x.shape[1:] != train_x.shape[1:]:
        raise ValueError(f"x images {x.shape[1:]} and train_x images {train_x.shape[1:]} differ")
    a = x.reshape(x.shape[0], -1)
    b = train_x.reshape(train_x.shape[0], -1)
    d = _sq_dists(a, b, jnp.sum(b * b, -1))
    if exclude is not None:
        d = jnp.where(jnp.arange(b.shape[0])[None, :] == exclude[:, None], jnp.inf, d)
    return train_y[jnp.argmin(d, -1)]


def invariance_attack(
    x: jax.Array,
    y: jax.Array,
    train_x: jax.Array,
    train_y: jax.Array,
    *,
    eps: float,
    transforms: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
    num_classes: int = 10,
    select: str = "oracle_margin",
) -> InvarianceResult:
    """Moves each input towards the nearest aligned training image of another class, within the
    l_inf ball (see the module docstring).

    Args:
      x: [B, H, W, C] inputs in [0, 1].
      y: [B] int their labels.
      train_x: [N, H, W, C] the training images searched for neighbours.
      train_y: [N] int their labels.
      eps: l_inf radius (>= 0).
      transforms: [G, 3] the grid of (shift_rows, shift_cols, angle) tried; default
        :func:`affine_grid` (shifts -2..2 pixels, angles -10..10 degrees in steps of 5).
      allowed: [K, K] bool, ``allowed[y, t]`` whether class ``y`` may be turned into ``t``;
        default every other class.
      num_classes: K.
      select: how the target class is chosen among the allowed ones: ``'oracle_margin'``
        (default) the one whose projected image the 1-NN oracle on ``train_x`` assigns to the
        target with the largest margin ``min_{c != t} d_c - d_t`` (``d_c``: l_2 distance to the
        nearest training image of class ``c``); ``'residual'`` the one whose projection is
        closest to its aligned neighbour (model- and oracle-free).

    Returns:
      An :class:`InvarianceResult`.
    """
    check_attack_inputs(x, y, eps=eps)
    if select not in ("oracle_margin", "residual"):
        raise ValueError(f"select must be 'oracle_margin' or 'residual', got {select!r}")
    if x.ndim != 4 or train_x.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"x must be [B, H, W, C] with train_x's image shape {train_x.shape[1:]}, got {x.shape}"
        )
    if train_y.shape != (train_x.shape[0],):
        raise ValueError(f"train_y must be [{train_x.shape[0]}], got shape {train_y.shape}")
    k = num_classes
    g = jnp.asarray(affine_grid() if transforms is None else transforms, x.dtype)
    allow = ~np.eye(k, dtype=bool) if allowed is None else np.asarray(allowed, bool)
    if allow.shape != (k, k):
        raise ValueError(f"allowed must be [{k}, {k}] booleans, got shape {allow.shape}")
    allow = jnp.asarray(allow & ~np.eye(k, dtype=bool))
    b, n = x.shape[0], train_x.shape[0]
    flat_train = train_x.reshape(n, -1)
    train_sq = jnp.sum(flat_train * flat_train, -1)
    class_mask = jnp.arange(k)[:, None] == train_y[None, :]  # [K, N]

    def per_transform(carry, gi):
        best_d, best_n, best_g = carry
        xg = transform_images(x, jnp.broadcast_to(gi, (b, 3)))
        d = _sq_dists(xg.reshape(b, -1), flat_train, train_sq)  # [B, N]
        dk = jnp.where(class_mask[None], d[:, None, :], jnp.inf)  # [B, K, N]
        nk = jnp.argmin(dk, -1)
        mk = jnp.min(dk, -1)
        better = mk < best_d
        return (
            jnp.where(better, mk, best_d),
            jnp.where(better, nk, best_n),
            jnp.where(better[..., None], gi, best_g),
        ), None

    init = (
        jnp.full((b, k), jnp.inf, x.dtype),
        jnp.zeros((b, k), jnp.int32),
        jnp.zeros((b, k, 3), x.dtype),
    )
    (_, nn_idx, nn_g), _ = jax.lax.scan(per_transform, init, g)
    # aligned neighbours and their projections for every class [B, K, H, W, C]
    nb = train_x[nn_idx.reshape(-1)]
    aligned = transform_images(nb, nn_g.reshape(-1, 3), inverse=True).reshape((b, k) + x.shape[1:])
    xe = x[:, None]
    cand = jnp.clip(jnp.clip(aligned, xe - eps, xe + eps), 0.0, 1.0)
    if select == "residual":
        score = -jnp.sum((cand - aligned) ** 2, axis=(2, 3, 4))  # [B, K]
    else:

        def margin(_, ck):  # ck [B, D]: every query's candidate for one target class
            d = _sq_dists(ck, flat_train, train_sq)  # [B, N]
            dmin = jnp.min(jnp.where(class_mask[None], d[:, None, :], jnp.inf), -1)  # [B, K]
            return None, dmin

        _, dmin = jax.lax.scan(margin, None, jnp.moveaxis(cand.reshape(b, k, -1), 1, 0))
        dmin = jnp.sqrt(jnp.moveaxis(dmin, 0, 1))  # [B, K (target), K (class)]
        own = jnp.diagonal(dmin, axis1=1, axis2=2)  # [B, K]
        others = jnp.min(jnp.where(jnp.eye(k, dtype=bool)[None], jnp.inf, dmin), -1)
        score = others - own
    score = jnp.where(allow[y], score, -jnp.inf)
    t = jnp.argmax(score, -1)
    rows = jnp.arange(b)
    return InvarianceResult(
        x_adv=cand[rows, t],
        target=t.astype(jnp.int32),
        neighbour=aligned[rows, t],
        neighbour_index=nn_idx[rows, t],
        transform=nn_g[rows, t],
    )
