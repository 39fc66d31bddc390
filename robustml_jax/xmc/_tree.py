"""A tree-based linear XMC model in the style of PECOS XR-Linear, in JAX.

Pipeline (Yu et al., PECOS, JMLR 2022; settings in ``../shared/PAPERS.md`` section 6):

1. PIFA label embeddings and hierarchical balanced spherical 2-means (:mod:`._cluster`);
   binary depths are grouped into B-ary levels (B = ``nr_splits``, a power of two).
2. One linear ranker per level, trained on teacher-forced pairs by a vectorised Newton-CG
   (:mod:`._rankers`).
3. Beam search (:mod:`._beam`) with the rankers as node scorer: node scores are turned into
   probabilities by the post-processor (``l3-hinge``: exp(-max(1 - s, 0)^3); ``sigmoid``) and
   multiplied down the path.

For prediction a level's compact weights are looked up by bisection, or expanded to a dense
[P, D, B] tensor when that is small.

Shapes: N instances, D features, L labels; at level t: P parents, B children per parent, U
stored weight rows; R non-zeros of a padded query row, M queries, K = topk.
"""

from __future__ import annotations

import functools
import math
import weakref

import flax
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from robustml_jax.xmc import _beam, _cluster, _data, _rankers
from robustml_jax.xmc._beam import BeamOutput
from robustml_jax.xmc._rankers import Level

__all__ = [
    "BeamOutput",
    "Level",
    "TreeModel",
    "beam_search",
    "fit_tree_model",
    "predict",
    "score_all_labels",
    "tree_scorer",
]

_DENSE_LIMIT = 1 << 25  # floats; levels below this are expanded to dense [P, D, B] to predict
_SHARED_BUCKET_LIMIT = 1 << 21  # below this many non-zeros, cluster levels share one solver


@flax.struct.dataclass
class TreeModel:
    """A trained tree model.

    Attributes:
      levels: the rankers of each level, root first; the last level's children are leaf slots.
      slot_label: int32 [P_last * B_last] label id of each leaf slot (-1 = padding slot).
      num_features: D; num_labels: L; post: the post-processor (``l3-hinge`` or ``sigmoid``).
    """

    levels: tuple[Level, ...]
    slot_label: jax.Array
    num_features: int = flax.struct.field(pytree_node=False)
    num_labels: int = flax.struct.field(pytree_node=False)
    post: str = flax.struct.field(pytree_node=False, default="l3-hinge")

    @property
    def num_leaf_clusters(self) -> int:
        return self.levels[-1].num_parents


# ----------------------------------------------------------------------------- training


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
    """Trains an XR-Linear-style tree model (host-side pipeline around jitted solvers).

    Args:
      X: scipy CSR [N, D], rows l2-normalised by the caller.
      Y: scipy CSR [N, L] binary labels; every row needs at least one label.
      key: PRNG key (clustering).
      max_leaf_size: largest leaf cluster; depth = max(1, ceil(log2(L / max_leaf_size))).
      nr_splits: branching factor B of the cluster levels (a power of two).
      kmeans_iters: Lloyd iterations per binary depth.
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
    dim = X.shape[1]
    num_labels = Y.shape[1]
    if num_labels < 2:
        raise ValueError(f"need at least 2 labels, got {num_labels}")
    depth = max(1, math.ceil(math.log2(num_labels / max_leaf_size)))
    depth = min(depth, int(math.floor(math.log2(num_labels))))
    leaf = _cluster.balanced_kmeans(key, _cluster.pifa_embeddings(X, Y), depth, iters=kmeans_iters)
    # Leaf slots: labels of leaf k occupy slots k*B_last + 0..size_k-1.
    order = np.lexsort((np.arange(num_labels), leaf))
    sizes = np.bincount(leaf, minlength=2**depth)
    b_last = int(sizes.max())
    start = np.cumsum(sizes) - sizes
    slot = np.empty(num_labels, np.int64)
    slot[order] = leaf[order] * b_last + (np.arange(num_labels) - start[leaf[order]])
    slot_label = -np.ones(2**depth * b_last, np.int32)
    slot_label[slot] = np.arange(num_labels)

    Yb = Y.tocsc()
    problems, parents = [], []
    prev_nodes = np.zeros(num_labels, np.int64)  # root
    prev_count = 1
    for dep in [*_cluster.level_depths(depth, nr_splits), None]:
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
        q_inst, q_par, y = _rankers.make_pairs(
            (Yb @ a_par).tocsr(), (Yb @ a_child).tocsr(), count // prev_count
        )
        problems.append(_rankers.level_problem(X, q_inst, q_par, y, valid))
        parents.append(prev_count)
        prev_nodes, prev_count = nodes, count
    buckets = [tuple(_data.bucket_size(n) for n in p.sizes) for p in problems]
    inner = buckets[:-1]
    if inner and max(b[1] for b in inner) <= _SHARED_BUCKET_LIMIT:
        shared = tuple(max(b[i] for b in inner) for i in range(3))
        buckets = [shared] * len(inner) + buckets[-1:]
    levels = []
    for t, problem in enumerate(problems):
        last = t == len(problems) - 1
        levels.append(
            _rankers.solve_level(
                problem,
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
        problems[t] = None  # free host memory as we go
    return TreeModel(
        levels=tuple(levels),
        slot_label=jnp.asarray(slot_label),
        num_features=dim,
        num_labels=num_labels,
        post="l3-hinge" if loss == "squared-hinge" else "sigmoid",
    )


# ----------------------------------------------------------------------------- the scorer


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


_PREPARED: dict = {}  # id(model) -> (weakref to the model, dense_limit, tables, modes)


def _prepare(model: TreeModel, dense_limit: int):
    """Per level: a dense [P, D, B] tensor when it is small, else the compact level; and the
    static lookup mode (0 = dense, else the number of bisection steps).

    Cached per live model (the tables are rebuilt only for a new model or limit), so repeated
    predictions with one model do not rebuild its dense tables on every call.
    """
    hit = _PREPARED.get(id(model))
    if hit is not None and hit[0]() is model and hit[1] == dense_limit:
        return hit[2], hit[3]
    tables, modes = _prepare_uncached(model, dense_limit)
    try:
        ref = weakref.ref(model, lambda _, k=id(model): _PREPARED.pop(k, None))
    except TypeError:  # not weak-referenceable: do not cache
        return tables, modes
    _PREPARED[id(model)] = (ref, dense_limit, tables, modes)
    return tables, modes


def _prepare_uncached(model: TreeModel, dense_limit: int):
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


def tree_scorer(tables, biases, valids, *, modes, post) -> _beam.ScoreFn:
    """The tree model's node scorer for :mod:`._beam`; ``query`` is ``(cols [R], vals [R])``.

    Args:
      tables: per level a dense float32 [P, D, B] tensor (mode 0) or the compact :class:`Level`.
      biases: per level float32 [P, B]; valids: per level bool [P, B].
      modes: per level 0 (dense) or the bisection steps of the compact lookup, static.
      post: the post-processor, static.
    """

    def score(t, parents, query):
        cols, vals = query
        mode = modes[t]
        table = tables[t]
        g = (
            table[parents[:, None], cols[None, :]]
            if mode == 0
            else _lookup(table, parents, cols, mode)
        )
        s = jnp.einsum("r,brk->bk", vals, g) + biases[t][parents]
        return jnp.where(valids[t][parents], _log_post(s, post), -jnp.inf)

    return score


# ----------------------------------------------------------------------------- prediction


@functools.partial(jax.jit, static_argnames=("modes", "beam", "topk", "post"))
def _beam_batch(tables, biases, valids, slot_label, cols, vals, *, modes, beam, topk, post):
    score = tree_scorer(tables, biases, valids, modes=modes, post=post)
    branching = tuple(b.shape[1] for b in biases)

    def one(cols, vals):
        r = _beam.beam_search_slots(score, (cols, vals), branching=branching, beam=beam, topk=topk)
        ok = jnp.isfinite(r.log_scores)
        labels = jnp.where(ok, slot_label[r.slots], -1)
        return labels, jnp.where(ok, jnp.exp(r.log_scores), 0.0), jnp.exp(r.log_tail)

    return jax.vmap(one)(cols, vals)


def _check_beam(beam: int, topk: int):
    if beam < 1 or topk < 1:
        raise ValueError(f"beam_size and topk must be >= 1, got {beam}, {topk}")


def beam_search(
    model: TreeModel,
    X,
    *,
    beam_size: int = 10,
    topk: int = 10,
    batch_size: int = 1024,
    dense_limit: int = _DENSE_LIMIT,
) -> BeamOutput:
    """Batched beam search over the tree (host wrapper; compiles once per model shape, beam
    and topk: the last batch is padded to the batch size).

    Args:
      model: a trained :class:`TreeModel`.
      X: scipy CSR [M, D] queries (rows l2-normalised like the training data).
      beam_size: beam width; wider than a level searches that whole level (as PECOS does), so
        a beam of at least the number of leaf clusters is exact.
      topk: K labels returned; where fewer labels are reachable the rest are -1 (score 0).
      batch_size: queries per device call.
      dense_limit: levels with at most this many weights are expanded to dense tables.

    Returns:
      :class:`BeamOutput` with numpy arrays labels int32 [M, K], scores float32 [M, K],
      tail_bound float32 [M].
    """
    X = _data.check_features(X, model.num_features)
    _check_beam(beam_size, topk)
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
      (labels int32 [M, K], scores float32 [M, K]); label -1 marks an empty slot.
    """
    out = beam_search(model, X, beam_size=beam_size, topk=topk)
    return out.labels, out.scores


@functools.partial(jax.jit, static_argnames=("post",))
def _all_scores_batch(tables, biases, valids, slot, cols, vals, *, post):
    score = tree_scorer(tables, biases, valids, modes=(0,) * len(tables), post=post)
    num_parents = tuple(b.shape[0] for b in biases)

    def one(cols, vals):
        return jnp.exp(_beam.all_paths(score, (cols, vals), num_parents=num_parents)[slot])

    return jax.vmap(one)(cols, vals)


def score_all_labels(model: TreeModel, X, *, batch_size: int = 256) -> np.ndarray:
    """Exact path scores of every label (no beam), for small label sets (dense tables).

    Args:
      model: a trained :class:`TreeModel`.
      X: scipy CSR [M, D] queries.

    Returns:
      float32 [M, L].
    """
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
