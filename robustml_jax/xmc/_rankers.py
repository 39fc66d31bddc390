"""Level rankers of the tree model: one linear one-vs-rest ranker per child node, trained on
teacher-forced pairs and solved for a whole level at once by a vectorised Newton-CG.

Each child j of parent p solves liblinear's primal (bias = a regularised feature of value 1)

    min_w 0.5 |w|^2 + 0.5 b^2 + C sum_q loss(y_qj s_qj),    s_qj = w . x_q + b,

over the pairs q = (instance, positive parent p) (PECOS's teacher-forced negatives: the
children of the positive parents). All children of a level share one Newton-CG whose scalars
(CG alpha/beta, line-search step) are per child, i.e. ``[P, B]`` arrays.

Weights are stored compactly: a child's weight vector lies in the span of its training
instances, so a level keeps only the (parent, feature) rows that occur in its pairs, as a
CSR-by-parent matrix of B-vectors (:class:`Level`).

Shapes: N instances, D features; at one level: P parents, B children per parent, Q (instance,
positive parent) pairs, E = the pairs' expanded non-zeros, U stored weight rows.
"""

from __future__ import annotations

from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

__all__ = ["Level", "LevelProblem", "level_problem", "make_pairs", "newton_cg", "solve_level"]


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


class LevelProblem(NamedTuple):
    """The training problem of one level on the host (numpy), before padding.

    Attributes:
      row: int32 [E] stored weight row of each expanded non-zero.
      parent_of_row: int32 [U] parent of each stored weight row.
      ukey: int64 [U] key parent * D + feature of each stored row (sorted).
      q_par: int32 [Q] parent of each pair.
      seg: int32 [E] pair of each expanded non-zero (sorted).
      vals: float32 [E] feature value of each expanded non-zero.
      y: float32 [Q, B] +1/-1 targets.
      mask: float32 [Q, B] 1 for real (pair, child) terms.
      valid: bool [P, B] existing children.
    """

    row: np.ndarray
    parent_of_row: np.ndarray
    ukey: np.ndarray
    q_par: np.ndarray
    seg: np.ndarray
    vals: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    valid: np.ndarray

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(Q, E, U)."""
        return len(self.q_par), len(self.seg), len(self.ukey)


def make_pairs(
    Ypar: sp.csr_matrix, Ychild: sp.csr_matrix, branching: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Teacher-forced training pairs of one level (host side).

    Args:
      Ypar: binary CSR [N, P] positive parents.
      Ychild: binary CSR [N, P * B] positive children.
      branching: B.

    Returns:
      (pair instance int64 [Q], pair parent int64 [Q], targets float32 [Q, B] in {+1, -1}).
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


def level_problem(
    X: sp.csr_matrix, q_inst: np.ndarray, q_par: np.ndarray, y: np.ndarray, valid: np.ndarray
) -> LevelProblem:
    """Expanded non-zeros of one level's pairs and their compact weight rows (host side).

    Args:
      X: CSR [N, D]; q_inst, q_par: int [Q]; y: float32 [Q, B]; valid: bool [P, B].
    """
    nnz = np.diff(X.indptr)
    counts = nnz[q_inst]
    seg = np.repeat(np.arange(len(q_inst)), counts)
    offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    pos = X.indptr[q_inst][seg] + offs
    feat, vals = X.indices[pos].astype(np.int64), X.data[pos]
    ukey, row = np.unique(q_par[seg] * X.shape[1] + feat, return_inverse=True)
    return LevelProblem(
        row=row.astype(np.int32),
        parent_of_row=(ukey // X.shape[1]).astype(np.int32),
        ukey=ukey,
        q_par=q_par.astype(np.int32),
        seg=seg.astype(np.int32),
        vals=vals.astype(np.float32),
        y=y,
        mask=valid[q_par].astype(np.float32),
        valid=valid,
    )


def newton_cg(
    row: jax.Array,
    parent_of_row: jax.Array,
    pair_parent: jax.Array,
    seg: jax.Array,
    vals: jax.Array,
    y: jax.Array,
    mask: jax.Array,
    c_pos: jax.Array,
    *,
    num_parents: int,
    num_rows: int,
    newton_iters: int,
    cg_iters: int,
    loss: str,
) -> tuple[jax.Array, jax.Array]:
    """Jointly solves all one-vs-rest problems of one level by vectorised Newton-CG.

    Pure and jittable (:func:`solve_level` jits it once per padded shape).

    Args:
      row: int32 [E] stored weight row of each expanded non-zero.
      parent_of_row: int32 [U] parent of each stored weight row.
      pair_parent: int32 [Q] parent of each pair.
      seg: int32 [E] pair of each expanded non-zero (sorted).
      vals: float32 [E] feature value of each expanded non-zero.
      y: float32 [Q, B] +1/-1 targets.
      mask: float32 [Q, B] 1 for real (pair, child) terms.
      c_pos: scalar C.
      num_parents: P, static; num_rows: U, static.
      newton_iters, cg_iters: iterations, static.
      loss: ``"squared-hinge"`` or ``"logistic"``, static.

    Returns:
      (w float32 [U, B], bias float32 [P, B]).
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


_newton_cg_jit = jax.jit(
    newton_cg, static_argnames=("num_parents", "num_rows", "newton_iters", "cg_iters", "loss")
)


def _pad(a, n, v=0):
    return np.concatenate([a, np.full((n - len(a),) + a.shape[1:], v, a.dtype)])


def solve_level(
    problem: LevelProblem,
    num_features: int,
    *,
    buckets: tuple[int, int, int],
    num_parents: int,
    pad_parents: int = 0,
    c_pos: float = 1.0,
    newton_iters: int = 3,
    cg_iters: int = 5,
    loss: str = "squared-hinge",
    threshold: float = 0.1,
) -> Level:
    """Solves one level and compacts its weights (host wrapper around :func:`newton_cg`).

    Inputs are padded to ``buckets`` = (Q, E, U) sizes and the parent count to
    ``max(num_parents, pad_parents)``: the jitted solver compiles once per padded shape, so
    levels and ensemble members with the same buckets share one compilation.

    Args:
      problem: from :func:`level_problem`.
      num_features: D.
      buckets: padded (Q, E, U), each >= the problem's size.
      num_parents: P of this level.
      threshold: weights with |w| below it are dropped (PECOS default 0.1).

    Returns:
      The level's :class:`Level`.
    """
    qn, en, un = buckets
    num_rows = problem.sizes[2]
    # Padding pairs have mask 0; padding non-zeros have value 0.
    w, b = _newton_cg_jit(
        jnp.asarray(_pad(problem.row, en, 0)),
        jnp.asarray(_pad(problem.parent_of_row, un)),
        jnp.asarray(_pad(problem.q_par, qn)),
        jnp.asarray(_pad(problem.seg, en, qn - 1)),
        jnp.asarray(_pad(problem.vals, en)),
        jnp.asarray(_pad(problem.y, qn, -1.0)),
        jnp.asarray(_pad(problem.mask, qn)),
        jnp.float32(c_pos),
        num_parents=max(num_parents, pad_parents),
        num_rows=un,
        newton_iters=newton_iters,
        cg_iters=cg_iters,
        loss=loss,
    )
    valid = problem.valid
    w = np.asarray(w)[:num_rows]
    b = np.asarray(b)[:num_parents] * valid
    w = np.where(np.abs(w) < threshold, 0.0, w).astype(np.float32)
    keep = np.any(w != 0, axis=1)
    ukey, w = problem.ukey[keep], w[keep]
    parent = ukey // num_features
    indptr = np.concatenate([[0], np.cumsum(np.bincount(parent, minlength=num_parents))])
    return Level(
        indptr=jnp.asarray(indptr.astype(np.int32)),
        feat=jnp.asarray((ukey % num_features).astype(np.int32)),
        w=jnp.asarray(w),
        bias=jnp.asarray(b.astype(np.float32)),
        valid=jnp.asarray(valid),
    )
