"""A tree-based linear XMC model in the style of PECOS XR-Linear, in JAX.

Pipeline (Yu et al., PECOS, JMLR 2022; settings in ``../shared/PAPERS.md`` section 6):

1. PIFA label embeddings Z = rownorm(rownorm(Y)^T X)                       [L, D], sparse.
2. Hierarchical balanced spherical 2-means on Z, one jitted call per binary depth: every node
   is split at the median of z . (c0 - c1), so siblings differ in size by at most one.
   Binary depths are grouped into B-ary levels (B = ``nr_splits``, a power of two).
3. One linear ranker per level: each child node gets a one-vs-rest squared-hinge (or logistic)
   linear model trained only on the instances that have a positive label under its parent
   (teacher-forced negatives: the children of the positive parents). The per-node problems are
   solved jointly by a vectorised Newton-CG whose scalars are per node (``[P, B]`` arrays).
4. Beam search, jitted and batched: at every level the children of the beam are scored, node
   scores are turned into probabilities by the post-processor (``l3-hinge``:
   exp(-max(1 - s, 0)^3); ``sigmoid``) and multiplied down the path; ``lax.top_k`` keeps the
   beam. It also returns the largest pruned path score, the bound on every unreached label's
   score used by the ensemble (a path score never exceeds that of its ancestors).

Weights are stored compactly: level t keeps only the (parent, feature) rows that occur in its
training pairs (a child's weight vector lies in the span of its training instances), as a
CSR-by-parent matrix of B-vectors. For prediction the rows are looked up by bisection, or
expanded to a dense [P, D, B] tensor when that is small.

Shapes: N instances, D features, L labels; at level t: P parents, B children per parent,
Q (instance, positive parent) pairs, E = sum of the pairs' non-zeros, U stored weight rows,
R non-zeros of a padded query row, M queries.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from robustml_jax.xmc import _data

__all__ = [
    "BeamOutput",
    "Level",
    "TreeModel",
    "balanced_kmeans",
    "beam_search",
    "fit_tree_model",
    "load_model",
    "pifa_embeddings",
    "predict",
    "save_model",
    "score_all_labels",
]

_DENSE_LIMIT = 1 << 25  # floats; levels below this are expanded to dense [P, D, B] to predict


@flax.struct.dataclass
class Level:
    """One level of rankers: the B children of each of P parents.

    Attributes:
      indptr: int32 [P + 1] row ranges of each parent's stored features.
      feat: int32 [U] feature id of each stored row (sorted within a parent).
      w: float32 [U, B] weights of the parent's children on that feature.
      bias: float32 [P, B] bias of each child.
      valid: bool [P, B] whether the child exists (only padded leaf slots are False).
    """

    indptr: jax.Array
    feat: jax.Array
    w: jax.Array
    bias: jax.Array
    valid: jax.Array

    @property
    def num_parents(self) -> int:
        return self.bias.shape[0]

    @property
    def branching(self) -> int:
        return self.bias.shape[1]


@flax.struct.dataclass
class TreeModel:
    """A trained tree model. ``slot_label`` [P_last * B_last] maps leaf slots to label ids."""

    levels: tuple[Level, ...]
    slot_label: jax.Array
    num_features: int = flax.struct.field(pytree_node=False)
    num_labels: int = flax.struct.field(pytree_node=False)
    post: str = flax.struct.field(pytree_node=False, default="l3-hinge")

    @property
    def num_leaf_clusters(self) -> int:
        return self.levels[-1].num_parents


class BeamOutput(NamedTuple):
    """Top-k labels [M, K] (-1 = none), their path scores [M, K] in [0, 1], and ``tail_bound``
    [M]: the largest path score of anything pruned, which bounds every unreturned label."""

    labels: jax.Array
    scores: jax.Array
    tail_bound: jax.Array


# ----------------------------------------------------------------------------- clustering


def pifa_embeddings(X: sp.csr_matrix, Y: sp.csr_matrix) -> sp.csr_matrix:
    """PIFA label embeddings Z = rownorm(rownorm(Y)^T X): float32 CSR [L, D]."""
    Yn = _data.l2_normalize_rows(Y)
    return _data.l2_normalize_rows(sp.csr_matrix(Yn.T @ X))


@functools.partial(jax.jit, static_argnames=("num_nodes", "num_keys", "num_labels", "iters"))
def _split_depth(key, node, zr, zv, kid, key_node, *, num_nodes, num_keys, num_labels, iters):
    """Splits every node at one binary depth into two balanced halves by spherical 2-means.

    Centroids are never dense: a node's centroid only matters on the features of its own
    labels, so both halves' sums are kept per (node, feature) key (``kid``), O(nnz(Z)) memory.

    Args:
      key: PRNG key for the initial centroids (two distinct random labels per node).
      node: int32 [L] node of each label at this depth, in [0, num_nodes).
      zr, zv: [nnz(Z)] row and value of the (row-normalised) embeddings' non-zeros.
      kid: int32 [nnz(Z)] (node, feature) key of each non-zero, in [0, num_keys).
      key_node: int32 [num_keys] node of each key.

    Returns:
      int32 [L]: which half (0 or 1) each label goes to.
    """
    n = num_labels
    size = jax.ops.segment_sum(jnp.ones(n, jnp.int32), node, num_nodes)
    start = jnp.cumsum(size) - size
    n_left = (size + 1) // 2

    def assign_by(score):
        order = jnp.lexsort((-score, node))
        pos = jnp.arange(n) - start[node[order]]
        half = (pos >= n_left[node[order]]).astype(jnp.int32)
        return jnp.zeros(n, jnp.int32).at[order].set(half)

    def score_of(w0, w1):
        # w0, w1: [L] weight of each label in half 0 / 1 (0 or 1).
        s0 = jax.ops.segment_sum(zv * w0[zr], kid, num_keys)
        s1 = jax.ops.segment_sum(zv * w1[zr], kid, num_keys)
        n0 = jnp.sqrt(jax.ops.segment_sum(s0 * s0, key_node, num_nodes))
        n1 = jnp.sqrt(jax.ops.segment_sum(s1 * s1, key_node, num_nodes))
        diff = s0 / jnp.maximum(n0, 1e-12)[key_node] - s1 / jnp.maximum(n1, 1e-12)[key_node]
        return jax.ops.segment_sum(zv * diff[kid], zr, n, indices_are_sorted=True)

    # Initial centroids: the first two labels of each node in a random order.
    u = jax.random.uniform(key, (n,))
    order = jnp.lexsort((u, node))
    pos = jnp.zeros(n, jnp.int32).at[order].set(jnp.arange(n) - start[node[order]])
    score = score_of((pos == 0).astype(jnp.float32), (pos == 1).astype(jnp.float32))

    def body(_, score):
        half = assign_by(score).astype(jnp.float32)
        return score_of(1.0 - half, half)

    return assign_by(jax.lax.fori_loop(0, iters, body, score))


def balanced_kmeans(key: jax.Array, Z: sp.csr_matrix, depth: int, *, iters: int = 20) -> np.ndarray:
    """Hierarchical balanced spherical 2-means to ``depth`` binary levels.

    Args:
      key: PRNG key (one subkey per depth by ``fold_in``).
      Z: label embeddings CSR [L, D] with unit rows.
      depth: number of binary splits; needs 2**depth <= L so every node keeps >= 2 labels
        before its split.

    Returns:
      int32 [L] leaf id of each label in [0, 2**depth); label i descends from node
      ``leaf >> (depth - t)`` at depth t.
    """
    Z = sp.csr_matrix(Z, dtype=np.float32)
    num_labels, dim = Z.shape
    if 2**depth > num_labels:
        raise ValueError(f"depth {depth} needs at least {2**depth} labels, got {num_labels}")
    rows = np.repeat(np.arange(num_labels), np.diff(Z.indptr))
    zr, zv = jnp.asarray(rows.astype(np.int32)), jnp.asarray(Z.data)
    cols = Z.indices.astype(np.int64)
    # Keys and nodes padded to fixed sizes so that every depth shares one compilation.
    num_keys = _bucket(max(Z.nnz, 1))
    num_nodes = 2 ** max(depth - 1, 0)
    node = np.zeros(num_labels, np.int64)
    for t in range(depth):
        ukey, kid = np.unique(node[rows] * dim + cols, return_inverse=True)
        key_node = np.zeros(num_keys, np.int32)
        key_node[: len(ukey)] = ukey // dim
        half = _split_depth(
            jax.random.fold_in(key, t),
            jnp.asarray(node.astype(np.int32)),
            zr,
            zv,
            jnp.asarray(kid.astype(np.int32)),
            jnp.asarray(key_node),
            num_nodes=num_nodes,
            num_keys=num_keys,
            num_labels=num_labels,
            iters=iters,
        )
        node = 2 * node + np.asarray(half)
    return node.astype(np.int32)


def _level_depths(depth: int, nr_splits: int) -> list[int]:
    """Binary depths of the B-ary cluster levels (root excluded), deepest last."""
    s = int(math.log2(nr_splits))
    out = list(range(depth, 0, -s))[::-1]
    return out


# ----------------------------------------------------------------------------- ranker training


def _bucket(n: int) -> int:
    """Rounds a size up so that members and levels share compiled solvers: a power of two up
    to 2^18 (compilation dominates there), above that a multiple of a quarter octave (at most
    25% padding where the arithmetic dominates)."""
    n = max(int(n), 1)
    if n <= 1 << 18:
        return max(256, 1 << (n - 1).bit_length())
    step = 1 << ((n - 1).bit_length() - 3)
    return -(-n // step) * step


@functools.partial(
    jax.jit,
    static_argnames=("num_parents", "num_rows", "newton_iters", "cg_iters", "loss"),
)
def _solve_level(
    row,
    parent_of_row,
    pair_parent,
    seg,
    vals,
    y,
    mask,
    c_pos,
    *,
    num_parents,
    num_rows,
    newton_iters,
    cg_iters,
    loss,
):
    """Jointly solves all one-vs-rest problems of one level by vectorised Newton-CG.

    Each child node j of parent p solves min_w 0.5 |w|^2 + 0.5 b^2 + C sum_q loss(y_qj s_qj),
    s_qj = w . x_q + b, over the pairs q routed to p (liblinear's objective with bias 1).

    Args:
      row: int32 [E] stored weight row of each expanded non-zero.
      parent_of_row: int32 [U] parent of each stored weight row.
      pair_parent: int32 [Q] parent of each pair.
      seg: int32 [E] pair of each expanded non-zero (sorted).
      vals: float32 [E] feature value of each expanded non-zero.
      y: float32 [Q, B] +1/-1 targets; mask: float32 [Q, B] 1 for real (pair, child) terms.
      c_pos: scalar C.

    Returns:
      (w [U, B], bias [P, B]).
    """
    num_pairs, b_width = y.shape

    def fwd(w, b):
        g = w[row] * vals[:, None]
        return jax.ops.segment_sum(g, seg, num_pairs, indices_are_sorted=True) + b[pair_parent]

    def bwd(r):
        gw = jax.ops.segment_sum(vals[:, None] * r[seg], row, num_rows)
        gb = jax.ops.segment_sum(r, pair_parent, num_parents)
        return gw, gb

    def pdot(a, b):  # per-child inner products [P, B]: weight rows summed per parent + bias
        return jax.ops.segment_sum(a[0] * b[0], parent_of_row, num_parents) + a[1] * b[1]

    def axpy(a, x, y):  # y + a x with per-child scalars a [P, B]
        return (y[0] + a[parent_of_row] * x[0], y[1] + a * x[1])

    def loss_terms(s):
        m = y * s
        if loss == "squared-hinge":
            h = jnp.maximum(1.0 - m, 0.0)
            return c_pos * h * h * mask, -2.0 * c_pos * y * h * mask, 2.0 * c_pos * (h > 0) * mask
        sig = jax.nn.sigmoid(-m)
        val = c_pos * jnp.logaddexp(0.0, -m) * mask
        return val, -c_pos * y * sig * mask, c_pos * sig * (1.0 - sig) * mask

    def newton(_, carry):
        w, b, s = carry
        _, ds, h = loss_terms(s)
        gw, gb = bwd(ds)
        g = (w + gw, b + gb)

        def hvp(v):
            rw, rb = bwd(h * fwd(*v))
            return (v[0] + rw, v[1] + rb)

        def cg(_, st):
            d, r, p, rr = st
            hp = hvp(p)
            php = pdot(p, hp)
            alpha = jnp.where(rr > 1e-20, rr / jnp.maximum(php, 1e-20), 0.0)
            d = axpy(alpha, p, d)
            r = axpy(-alpha, hp, r)
            rr_new = pdot(r, r)
            beta = jnp.where(rr > 1e-20, rr_new / jnp.maximum(rr, 1e-20), 0.0)
            p = axpy(beta, p, r)
            return d, r, p, rr_new

        r0 = (-g[0], -g[1])
        zero = (jnp.zeros_like(w), jnp.zeros_like(b))
        d, _, _, _ = jax.lax.fori_loop(0, cg_iters, cg, (zero, r0, r0, pdot(r0, r0)))
        # Exact-enough line search per child on a grid of step sizes: the objective along d is
        # cheap once the direction's scores sd are known.
        sd = fwd(*d)
        ww, wd, dd = pdot((w, b), (w, b)), pdot((w, b), d), pdot(d, d)
        steps = jnp.array([0.0, 1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 1.5], jnp.float32)

        def obj(a):
            lv, _, _ = loss_terms(s + a * sd)
            per = jax.ops.segment_sum(lv, pair_parent, num_parents)
            return 0.5 * (ww + 2 * a * wd + a * a * dd) + per

        objs = jax.vmap(obj)(steps)  # [S, P, B]
        a = steps[jnp.argmin(objs, axis=0)]  # [P, B]
        w, b = axpy(a, d, (w, b))
        s = s + a[pair_parent] * sd
        return w, b, s

    w0 = jnp.zeros((num_rows, b_width), jnp.float32)
    b0 = jnp.zeros((num_parents, b_width), jnp.float32)
    s0 = jnp.zeros((num_pairs, b_width), jnp.float32)
    w, b, _ = jax.lax.fori_loop(0, newton_iters, newton, (w0, b0, s0))
    return w, b


def _make_pairs(X, Ypar, Ychild, branching):
    """Teacher-forced training pairs of one level (host side).

    Args:
      X: CSR [N, D]; Ypar: binary CSR [N, P] positive parents; Ychild: binary CSR [N, P*B].

    Returns:
      pair instance [Q], pair parent [Q], targets [Q, B] in {+1, -1}.
    """
    Ypar = sp.csr_matrix(Ypar)
    Ypar.sum_duplicates()
    q_inst = np.repeat(np.arange(Ypar.shape[0]), np.diff(Ypar.indptr)).astype(np.int64)
    q_par = Ypar.indices.astype(np.int64)
    num_par = Ypar.shape[1]
    key = q_inst * num_par + q_par  # CSR order: sorted
    Ychild = sp.csr_matrix(Ychild)
    Ychild.sum_duplicates()
    c_inst = np.repeat(np.arange(Ychild.shape[0]), np.diff(Ychild.indptr)).astype(np.int64)
    c_node = Ychild.indices.astype(np.int64)
    q_of_child = np.searchsorted(key, c_inst * num_par + c_node // branching)
    y = -np.ones((len(key), branching), np.float32)
    y[q_of_child, c_node % branching] = 1.0
    return q_inst, q_par, y


def _level_arrays(X, q_inst, q_par, y, valid) -> dict:
    """Expanded non-zeros of one level's pairs and their compact weight rows (host side)."""
    nnz = np.diff(X.indptr)
    counts = nnz[q_inst]
    seg = np.repeat(np.arange(len(q_inst)), counts)
    offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    pos = X.indptr[q_inst][seg] + offs
    feat, vals = X.indices[pos].astype(np.int64), X.data[pos]
    ukey, row = np.unique(q_par[seg] * X.shape[1] + feat, return_inverse=True)
    return {
        "row": row.astype(np.int32),
        "parent_of_row": (ukey // X.shape[1]).astype(np.int32),
        "ukey": ukey,
        "q_par": q_par.astype(np.int32),
        "seg": seg.astype(np.int32),
        "vals": vals.astype(np.float32),
        "y": y,
        "mask": valid[q_par].astype(np.float32),
        "valid": valid,
        "sizes": (len(q_inst), len(seg), len(ukey)),
    }


def _pad(a, n, v=0):
    return np.concatenate([a, np.full((n - len(a),) + a.shape[1:], v, a.dtype)])


def _solve_arrays(
    arr, dim, *, buckets, num_parents, pad_parents, c_pos, newton_iters, cg_iters, loss, threshold
) -> Level:
    """Solves one level (inputs padded to ``buckets``) and compacts its weights."""
    qn, en, un = buckets
    num_rows = arr["sizes"][2]
    # Padding pairs have mask 0; padding non-zeros have value 0.
    w, b = _solve_level(
        jnp.asarray(_pad(arr["row"], en, 0)),
        jnp.asarray(_pad(arr["parent_of_row"], un)),
        jnp.asarray(_pad(arr["q_par"], qn)),
        jnp.asarray(_pad(arr["seg"], en, qn - 1)),
        jnp.asarray(_pad(arr["vals"], en)),
        jnp.asarray(_pad(arr["y"], qn, -1.0)),
        jnp.asarray(_pad(arr["mask"], qn)),
        jnp.float32(c_pos),
        num_parents=max(num_parents, pad_parents),
        num_rows=un,
        newton_iters=newton_iters,
        cg_iters=cg_iters,
        loss=loss,
    )
    valid = arr["valid"]
    w = np.asarray(w)[:num_rows]
    b = np.asarray(b)[:num_parents] * valid
    w = np.where(np.abs(w) < threshold, 0.0, w).astype(np.float32)
    keep = np.any(w != 0, axis=1)
    ukey, w = arr["ukey"][keep], w[keep]
    parent = ukey // dim
    indptr = np.concatenate([[0], np.cumsum(np.bincount(parent, minlength=num_parents))])
    return Level(
        indptr=jnp.asarray(indptr.astype(np.int32)),
        feat=jnp.asarray((ukey % dim).astype(np.int32)),
        w=jnp.asarray(w),
        bias=jnp.asarray(b.astype(np.float32)),
        valid=jnp.asarray(valid),
    )


_SHARED_BUCKET_LIMIT = 1 << 21  # below this many non-zeros, cluster levels share one solver


def fit_tree_model(
    X,
    Y,
    *,
    key: jax.Array,
    max_leaf_size: int = 16,
    nr_splits: int = 2,
    kmeans_iters: int = 20,
    loss: str = "squared-hinge",
    c: float = 1.0,
    newton_iters: int = 3,
    cg_iters: int = 5,
    threshold: float = 0.1,
) -> TreeModel:
    """Trains an XR-Linear-style tree model.

    Args:
      X: scipy CSR [N, D], rows l2-normalised by the caller.
      Y: scipy CSR [N, L] binary labels; every row needs at least one label.
      key: PRNG key (clustering).
      max_leaf_size: largest leaf cluster; depth = max(1, ceil(log2(L / max_leaf_size))).
      nr_splits: branching factor B of the cluster levels (a power of two).
      loss: ``"squared-hinge"`` (post-processor l3-hinge) or ``"logistic"`` (sigmoid).
      c: the loss weight C; newton_iters, cg_iters: solver iterations per level (3 x 5 is
        about as loose as PECOS's dual coordinate descent at eps 0.1; 6 x 10 moves P@k on
        Bibtex/Delicious by < 0.5 points).
      threshold: weights with |w| below it are dropped (PECOS default 0.1).

    Returns:
      A :class:`TreeModel`.
    """
    X = _data.check_features(X)
    Y = _data.check_labels(Y)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    if nr_splits < 2 or nr_splits & (nr_splits - 1):
        raise ValueError(f"nr_splits must be a power of two >= 2, got {nr_splits}")
    if max_leaf_size < 2:
        raise ValueError(f"max_leaf_size must be >= 2, got {max_leaf_size}")
    if loss not in ("squared-hinge", "logistic"):
        raise ValueError(f"unknown loss {loss!r} (squared-hinge or logistic)")
    n, dim = X.shape
    num_labels = Y.shape[1]
    if num_labels < 2:
        raise ValueError(f"need at least 2 labels, got {num_labels}")
    depth = max(1, math.ceil(math.log2(num_labels / max_leaf_size)))
    depth = min(depth, int(math.floor(math.log2(num_labels))))
    leaf = balanced_kmeans(key, pifa_embeddings(X, Y), depth, iters=kmeans_iters)
    # Leaf slots: labels of leaf k occupy slots k*B_last + 0..size_k-1.
    order = np.lexsort((np.arange(num_labels), leaf))
    sizes = np.bincount(leaf, minlength=2**depth)
    b_last = int(sizes.max())
    start = np.cumsum(sizes) - sizes
    slot = np.empty(num_labels, np.int64)
    slot[order] = leaf[order] * b_last + (np.arange(num_labels) - start[leaf[order]])
    slot_label = -np.ones(2**depth * b_last, np.int32)
    slot_label[slot] = np.arange(num_labels)

    depths = _level_depths(depth, nr_splits)
    Yb = Y.tocsc()
    arrays, parents = [], []
    prev_nodes = np.zeros(num_labels, np.int64)  # root
    prev_count = 1
    for dep in [*depths, None]:
        if dep is None:  # label level
            nodes, count = slot, 2**depth * b_last
            valid = (slot_label >= 0).reshape(prev_count, b_last)
        else:
            nodes, count = leaf >> (depth - dep), 2**dep
            valid = np.ones((prev_count, count // prev_count), bool)
        a_par = sp.csr_matrix(
            (np.ones(num_labels, np.float32), (np.arange(num_labels), prev_nodes)),
            shape=(num_labels, prev_count),
        )
        a_child = sp.csr_matrix(
            (np.ones(num_labels, np.float32), (np.arange(num_labels), nodes)),
            shape=(num_labels, count),
        )
        q_inst, q_par, y = _make_pairs(
            X, (Yb @ a_par).tocsr(), (Yb @ a_child).tocsr(), count // prev_count
        )
        arrays.append(_level_arrays(X, q_inst, q_par, y, valid))
        parents.append(prev_count)
        prev_nodes, prev_count = nodes, count
    buckets = [tuple(_bucket(n) for n in a["sizes"]) for a in arrays]
    inner = buckets[:-1]
    if inner and max(b[1] for b in inner) <= _SHARED_BUCKET_LIMIT:
        shared = tuple(max(b[i] for b in inner) for i in range(3))
        buckets = [shared] * len(inner) + buckets[-1:]
    levels = []
    for t, arr in enumerate(arrays):
        last = t == len(arrays) - 1
        levels.append(
            _solve_arrays(
                arr,
                dim,
                buckets=buckets[t],
                num_parents=parents[t],
                pad_parents=0 if last else 2 ** max(depth - 1, 0),
                c_pos=c,
                newton_iters=newton_iters,
                cg_iters=cg_iters,
                loss=loss,
                threshold=threshold,
            )
        )
        arrays[t] = None  # free host memory as we go
    return TreeModel(
        levels=tuple(levels),
        slot_label=jnp.asarray(slot_label),
        num_features=dim,
        num_labels=num_labels,
        post="l3-hinge" if loss == "squared-hinge" else "sigmoid",
    )


# ----------------------------------------------------------------------------- prediction


def _log_post(s, post):
    if post == "l3-hinge":
        return -(jnp.maximum(1.0 - s, 0.0) ** 3)
    return jax.nn.log_sigmoid(s)


def _dense_weights(level: Level, num_features: int) -> jax.Array:
    """The level's weights as a dense float32 [P, D, B] tensor."""
    p = np.repeat(np.arange(level.num_parents), np.diff(np.asarray(level.indptr)))
    out = jnp.zeros((level.num_parents, num_features, level.branching), jnp.float32)
    return out.at[jnp.asarray(p), level.feat].set(level.w)


def _lookup(level: Level, parents, cols, steps: int):
    """Weights [b, R, B] of the children of ``parents`` [b] on features ``cols`` [R].

    Lower-bound bisection in each parent's sorted feature list (``steps`` halvings cover the
    longest list); features a parent never saw have weight 0.
    """
    start = level.indptr[parents][:, None] + jnp.zeros_like(cols)[None, :]
    end = level.indptr[parents + 1][:, None] + jnp.zeros_like(cols)[None, :]
    lo, hi = start, end
    last = max(level.feat.shape[0] - 1, 0)
    for _ in range(steps):
        mid = (lo + hi) // 2
        right = (level.feat[jnp.minimum(mid, last)] < cols[None, :]) & (lo < hi)
        lo, hi = jnp.where(right, mid + 1, lo), jnp.where(right | (lo >= hi), hi, mid)
    found = (lo < end) & (level.feat[jnp.minimum(lo, last)] == cols[None, :])
    return jnp.where(found[..., None], level.w[jnp.minimum(lo, last)], 0.0)


def _prepare(model: TreeModel, dense_limit: int):
    """Per level: a dense [P, D, B] tensor when it is small, else the compact level."""
    tables, modes = [], []
    for lv in model.levels:
        if lv.num_parents * model.num_features * lv.branching <= dense_limit:
            tables.append(_dense_weights(lv, model.num_features))
            modes.append(0)
        else:
            longest = int(np.max(np.diff(np.asarray(lv.indptr)), initial=0))
            tables.append(lv)
            modes.append(max(1, math.ceil(math.log2(longest + 1))) if longest else 1)
    return tuple(tables), tuple(modes)


def _node_scores(table, mode, bias, parents, cols, vals):
    """Scores [b, B] of the children of ``parents`` [b] for one query (cols/vals [R])."""
    g = table[parents[:, None], cols[None, :]] if mode == 0 else _lookup(table, parents, cols, mode)
    return jnp.einsum("r,brk->bk", vals, g) + bias[parents]


@functools.partial(jax.jit, static_argnames=("modes", "beam", "topk", "post"))
def _beam_batch(tables, biases, valids, slot_label, cols, vals, *, modes, beam, topk, post):
    def one(cols, vals):
        parents = jnp.zeros((1,), jnp.int32)
        logp = jnp.zeros((1,), jnp.float32)
        pruned = jnp.float32(-jnp.inf)
        last = len(tables) - 1
        for t, (table, mode, bias, valid) in enumerate(
            zip(tables, modes, biases, valids, strict=True)
        ):
            nb = bias.shape[1]
            s = _node_scores(table, mode, bias, parents, cols, vals)
            lp = jnp.where(valid[parents], logp[:, None] + _log_post(s, post), -jnp.inf)
            child = (parents[:, None] * nb + jnp.arange(nb)[None, :]).reshape(-1)
            flat = lp.reshape(-1)
            k = topk if t == last else min(beam, flat.shape[0])
            kk = min(k + 1, flat.shape[0])
            top, idx = jax.lax.top_k(flat, kk)
            if kk > k:
                pruned = jnp.maximum(pruned, top[k])
            parents, logp = child[idx[:k]], top[:k]
        ok = jnp.isfinite(logp)
        labels = jnp.where(ok, slot_label[parents], -1)
        return labels, jnp.where(ok, jnp.exp(logp), 0.0), jnp.exp(pruned)

    return jax.vmap(one)(cols, vals)


def _check_beam(model: TreeModel, beam: int, topk: int):
    if beam < 1 or topk < 1:
        raise ValueError(f"beam_size and topk must be >= 1, got {beam}, {topk}")
    if beam > model.num_leaf_clusters:
        raise ValueError(
            f"beam_size {beam} is larger than the tree allows: it has only "
            f"{model.num_leaf_clusters} leaf clusters (use beam_size <= {model.num_leaf_clusters})"
        )
    reach = beam * model.levels[-1].branching
    if topk > min(reach, model.num_labels):
        raise ValueError(
            f"topk {topk} exceeds the {min(reach, model.num_labels)} labels a beam of {beam} "
            "can reach"
        )


def beam_search(
    model: TreeModel,
    X,
    *,
    beam_size: int = 10,
    topk: int = 10,
    batch_size: int = 1024,
    dense_limit: int = _DENSE_LIMIT,
) -> BeamOutput:
    """Batched beam search over the tree (see the module docstring).

    Args:
      model: a trained :class:`TreeModel`.
      X: scipy CSR [M, D] queries (rows l2-normalised like the training data).

    Returns:
      :class:`BeamOutput` with numpy arrays labels [M, topk], scores [M, topk], tail_bound [M].
    """
    X = _data.check_features(X, model.num_features)
    _check_beam(model, beam_size, topk)
    tables, modes = _prepare(model, dense_limit)
    biases = tuple(lv.bias for lv in model.levels)
    valids = tuple(lv.valid for lv in model.levels)
    rows = _data.pad_rows(X)
    m = X.shape[0]
    bs = max(1, min(batch_size, m))
    outs = []
    for i in range(0, m, bs):
        c, v = rows.cols[i : i + bs], rows.vals[i : i + bs]
        n = c.shape[0]
        if n < bs:  # same shapes for the last batch: no retrace
            c = np.concatenate([c, np.zeros((bs - n, c.shape[1]), c.dtype)])
            v = np.concatenate([v, np.zeros((bs - n, v.shape[1]), v.dtype)])
        lab, sc, tb = _beam_batch(
            tables,
            biases,
            valids,
            model.slot_label,
            jnp.asarray(c),
            jnp.asarray(v),
            modes=modes,
            beam=beam_size,
            topk=topk,
            post=model.post,
        )
        outs.append((np.asarray(lab)[:n], np.asarray(sc)[:n], np.asarray(tb)[:n]))
    return BeamOutput(*(np.concatenate(z) for z in zip(*outs, strict=True)))


def predict(model: TreeModel, X, *, beam_size: int = 10, topk: int = 10):
    """Top-k labels and scores by beam search.

    Args:
      model: from :func:`fit_tree_model`.
      X: scipy CSR [M, D], rows l2-normalised by the caller.

    Returns:
      (labels int32 [M, topk], scores float32 [M, topk]); label -1 marks an empty slot.
    """
    out = beam_search(model, X, beam_size=beam_size, topk=topk)
    return out.labels, out.scores


@functools.partial(jax.jit, static_argnames=("post",))
def _all_scores_batch(tables, biases, valids, slot, cols, vals, *, post):
    def one(cols, vals):
        logp = jnp.zeros((1,), jnp.float32)
        for table, bias, valid in zip(tables, biases, valids, strict=True):
            parents = jnp.arange(bias.shape[0])
            s = _node_scores(table, 0, bias, parents, cols, vals)
            logp = jnp.where(valid, logp[:, None] + _log_post(s, post), -jnp.inf).reshape(-1)
        return jnp.exp(logp[slot])

    return jax.vmap(one)(cols, vals)


def score_all_labels(model: TreeModel, X, *, batch_size: int = 256) -> np.ndarray:
    """Exact path scores of every label (no beam): float32 [M, L]. For small label sets."""
    X = _data.check_features(X, model.num_features)
    tables, _ = _prepare(model, dense_limit=1 << 62)
    biases = tuple(lv.bias for lv in model.levels)
    valids = tuple(lv.valid for lv in model.levels)
    sl = np.asarray(model.slot_label)
    slot = np.zeros(model.num_labels, np.int32)
    slot[sl[sl >= 0]] = np.flatnonzero(sl >= 0)
    rows = _data.pad_rows(X)
    out = []
    for i in range(0, X.shape[0], batch_size):
        c, v = rows.cols[i : i + batch_size], rows.vals[i : i + batch_size]
        out.append(
            np.asarray(
                _all_scores_batch(
                    tables,
                    biases,
                    valids,
                    jnp.asarray(slot),
                    jnp.asarray(c),
                    jnp.asarray(v),
                    post=model.post,
                )
            )
        )
    return np.concatenate(out) if out else np.zeros((0, model.num_labels), np.float32)


# ----------------------------------------------------------------------------- save / load


def save_model(model: TreeModel, path: str | pathlib.Path) -> pathlib.Path:
    """Saves ``model`` with orbax into the new folder ``path`` (plus ``meta.json``)."""
    import orbax.checkpoint as ocp

    path = pathlib.Path(path).absolute()
    tree = {
        "levels": {f"{i:03d}": dataclass_dict(lv) for i, lv in enumerate(model.levels)},
        "slot_label": np.asarray(model.slot_label),
    }
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(path / "arrays", tree)
    ckptr.wait_until_finished()
    meta = {"num_features": model.num_features, "num_labels": model.num_labels, "post": model.post}
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def dataclass_dict(lv: Level) -> dict:
    return {k: np.asarray(getattr(lv, k)) for k in ("indptr", "feat", "w", "bias", "valid")}


def load_model(path: str | pathlib.Path) -> TreeModel:
    """Loads a model written by :func:`save_model`."""
    import orbax.checkpoint as ocp

    path = pathlib.Path(path).absolute()
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"no saved tree model in {path} (meta.json missing)")
    meta = json.loads(meta_file.read_text())
    tree = ocp.StandardCheckpointer().restore(path / "arrays")
    levels = tuple(
        Level(**{k: jnp.asarray(v) for k, v in tree["levels"][name].items()})
        for name in sorted(tree["levels"])
    )
    return TreeModel(
        levels=levels,
        slot_label=jnp.asarray(tree["slot_label"]),
        num_features=int(meta["num_features"]),
        num_labels=int(meta["num_labels"]),
        post=meta["post"],
    )
