"""Label clustering of the tree model: PIFA embeddings and hierarchical balanced spherical
2-means (PECOS's ``hierarchicalkmeans`` indexer; Yu et al., PECOS, JMLR 2022).

Every node at a binary depth is split at the median of z . (c0 - c1), so siblings differ in
size by at most one label. Centroids are never dense: a node's centroid only matters on the
features of its own labels, so both halves' sums are kept per (node, feature) key, O(nnz(Z))
memory and work per iteration.

Shapes: N instances, D features, L labels, Z = nnz of the label embeddings, K (node, feature)
keys (padded), G nodes at one depth (padded).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from robustml_jax.xmc import _data

__all__ = ["balanced_kmeans", "level_depths", "pifa_embeddings", "split_depth"]


def pifa_embeddings(X: sp.csr_matrix, Y: sp.csr_matrix) -> sp.csr_matrix:
    """PIFA label embeddings Z = rownorm(rownorm(Y)^T X).

    Args:
      X: CSR [N, D] features.
      Y: CSR [N, L] binary labels.

    Returns:
      float32 CSR [L, D] with unit (or zero) rows.
    """
    Yn = _data.l2_normalize_rows(Y)
    return _data.l2_normalize_rows(sp.csr_matrix(Yn.T @ X))


def split_depth(
    key: jax.Array,
    node: jax.Array,
    zr: jax.Array,
    zv: jax.Array,
    kid: jax.Array,
    key_node: jax.Array,
    *,
    num_nodes: int,
    num_keys: int,
    num_labels: int,
    iters: int,
) -> jax.Array:
    """Splits every node at one binary depth into two balanced halves by spherical 2-means.

    Pure and jittable (:func:`balanced_kmeans` jits it once per padded shape).

    Args:
      key: PRNG key for the initial centroids (two distinct random labels per node).
      node: int32 [L] node of each label at this depth, in [0, num_nodes).
      zr: int32 [Z] row (label) of each embedding non-zero.
      zv: float32 [Z] value of each non-zero (rows of the embedding have unit norm).
      kid: int32 [Z] (node, feature) key of each non-zero, in [0, num_keys).
      key_node: int32 [K] node of each key.
      num_nodes: G, static; num_keys: K, static; num_labels: L, static.
      iters: Lloyd iterations, static.

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


_split_depth_jit = jax.jit(
    split_depth, static_argnames=("num_nodes", "num_keys", "num_labels", "iters")
)


def balanced_kmeans(key: jax.Array, Z: sp.csr_matrix, depth: int, *, iters: int = 20) -> np.ndarray:
    """Hierarchical balanced spherical 2-means to ``depth`` binary levels.

    A host loop over depths around the jitted :func:`split_depth`; keys and nodes are padded
    to fixed sizes so that every depth (and every ensemble member with the same label set)
    shares one compilation.

    Args:
      key: PRNG key (one subkey per depth by ``fold_in``).
      Z: label embeddings CSR [L, D] with unit rows.
      depth: number of binary splits; needs 2**depth <= L so every node keeps >= 2 labels
        before its split.
      iters: Lloyd iterations per depth.

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
    num_keys = _data.bucket_size(max(Z.nnz, 1))
    num_nodes = 2 ** max(depth - 1, 0)
    node = np.zeros(num_labels, np.int64)
    for t in range(depth):
        ukey, kid = np.unique(node[rows] * dim + cols, return_inverse=True)
        key_node = np.zeros(num_keys, np.int32)
        key_node[: len(ukey)] = ukey // dim
        half = _split_depth_jit(
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


def level_depths(depth: int, nr_splits: int) -> list[int]:
    """Binary depths of the B-ary cluster levels (root excluded), deepest last.

    Args:
      depth: binary depth of the leaf clusters.
      nr_splits: branching factor B, a power of two.
    """
    s = int(math.log2(nr_splits))
    return list(range(depth, 0, -s))[::-1]
