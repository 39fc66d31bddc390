"""ELIAS: end-to-end learned cluster-to-label index for XMC (paper 7; Gupta et al., NeurIPS 2022).

The model (:class:`EliasNet`, Flax):

- an input encoder phi: a sparse bag-of-words encoder (embedding bag over padded feature
  ids/values, a residual GELU block, LayerNorm, dropout), optionally with frozen MiniLM
  sentence embeddings of the texts concatenated (``minilm_dim`` > 0);
- cluster scores ``s = clamp(alpha * softmax(W_C phi(x)), 0, 1)`` [B, C];
- a sparse cluster-to-label adjacency: per cluster row the label ids ``a_inds`` [C, kappa]
  (padding = L) and weights ``a_vals`` in [0, 1]; fixed 0/1 in ELIAS-1, learnable in ELIAS-2
  as ``clamp(beta * softmax(A_row), 0, 1)`` over the row's non-padding entries;
- per-label classifiers ``sigmoid(w_l . phi(x) + b_l)`` gathered only for shortlisted labels.

Search (:func:`shortlist`, pure and jittable): the top-b clusters (in training also the
parents of the positive labels, then b + 5 of those sampled proportionally to s), every label
their adjacency rows reach with path score ``s_c * a_cl``, each label's best path kept, the top
K by path score; the final score of a shortlisted label is path score x label score.

Training (:func:`fit_elias`): PIFA label centroids clustered by the shared balanced k-means
(paper 6); a short ELIAS-1 warm-up; re-clustering on [normalised learned embedding |
normalised BoW] centroids; ELIAS-1 with the 0/1 adjacency fixed; the approximate adjacency
(top kappa per row of (Y^T M)^T, M = each training point's top-b cluster scores); ELIAS-2 end
to end with learnable adjacency weights and weight averaging (SWA, the adjacency excluded).
Loss: BCE over the top-K final scores + lambda x BCE of the positives' path scores (1 as
target). AdamW with linear warm-up / decay and three parameter groups (encoder, per-label
weights and adjacency, the rest) through ``optax.multi_transform``; the model of the best
validation nDCG@5 is kept (evaluated every ``eval_every`` steps on a held-out part of the
training rows), so that neither tiny nor larger label sets over- or under-train.

Shapes: N instances, D features, L labels, C clusters, kappa adjacency entries per cluster,
B batch, R non-zeros per padded row, P positives per padded row, b clusters searched,
E = b * kappa expanded (cluster, label) paths, K shortlist size, d embedding size.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import pathlib
import shutil
import time
import uuid
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp
from flax import traverse_util

from robustml_jax.core import metrics
from robustml_jax.core.workitems import WorkItems
from robustml_jax.xmc import _cluster, _data

__all__ = [
    "EliasModel",
    "EliasNet",
    "Shortlist",
    "adjacency_from_clusters",
    "approx_adjacency",
    "default_num_clusters",
    "elias_config",
    "elias_items",
    "elias_loss",
    "fit_elias",
    "load_elias",
    "positive_paths",
    "predict_elias",
    "save_elias",
    "select_clusters",
    "shortlist",
]

_EPS = 1e-6


# ----------------------------------------------------------------------------- config


def default_num_clusters(num_labels: int, max_leaf: int = 100) -> int:
    """C = max(2^ceil(log2(L / max_leaf)), 2^round(log2(sqrt(L)))), at least 2 and at most
    L / 2 rounded down to a power of two: the paper's rule at scale, about sqrt(L) clusters
    (never a single one) on small label sets."""
    if num_labels < 2:
        raise ValueError(f"ELIAS needs at least 2 labels, got {num_labels}")
    paper = 2 ** max(0, math.ceil(math.log2(num_labels / max_leaf)))
    small = 2 ** round(math.log2(math.sqrt(num_labels)))
    cap = 2 ** int(math.floor(math.log2(num_labels)))  # balanced k-means: 2^depth <= L
    return int(max(2, min(max(paper, small), cap)))


_DEFAULTS = {
    # model
    "dim": 256,
    "num_clusters": None,  # None: default_num_clusters(L)
    "max_leaf": 100,
    "alpha": 10.0,
    "beta": None,  # None: 0.15 * kappa (the paper's 150 / 1000)
    "beam": None,  # None: min(20, max(2, C // 4))
    "kappa": None,  # None: min(1000, L, 4 * ceil(L / C))
    "K": 2000,  # shortlist size, capped by the reachable b * kappa unless given explicitly
    "dropout": 0.5,
    "loss_lambda": 0.05,
    "minilm_dim": 0,  # > 0: frozen sentence embeddings of that size are concatenated
    # training (per stage: warm-up ELIAS-1, ELIAS-1, ELIAS-2)
    "batch_size": 256,
    "epochs": (5, 20, 30),
    "min_steps": (30, 150, 150),
    "max_steps": (2000, 20000, 20000),
    "lr": 5e-3,
    "lr_wl": 5e-3,
    "lr_enc": 5e-3,  # the paper's lr_tf; a bag-of-words encoder trains at the main rate
    "weight_decay": 0.01,
    "warmup": 0.1,
    "swa_start": 0.5,  # fraction of stage-2 steps before averaging starts (None: no SWA)
    "swa_every": 10,
    "val_fraction": 0.1,
    "max_val": 4000,
    "eval_every": 50,
    "kmeans_iters": 20,
    "stage2_keep_wl": False,  # the official code re-initialises the label classifiers
    "stages": 2,
    "progress": False,
}


def elias_config(num_labels: int, **overrides) -> dict:
    """The full configuration for ``num_labels`` labels: defaults, ``overrides``, then the
    data-dependent values (C, b, kappa, beta, K) resolved.

    Raises:
      ValueError: an unknown key, C larger than L (or < 2), or an explicit K larger than the
        labels the search can reach (b x the largest cluster for ELIAS-1).
    """
    unknown = set(overrides) - set(_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown ELIAS config keys: {sorted(unknown)}")
    c = {**_DEFAULTS, **overrides}
    L = int(num_labels)
    if c["num_clusters"] is None:
        c["num_clusters"] = default_num_clusters(L, c["max_leaf"])
    C = int(c["num_clusters"])
    if C > L:
        raise ValueError(f"num_clusters={C} is larger than the number of labels L={L}")
    if C < 2 or C & (C - 1):
        raise ValueError(f"num_clusters must be a power of two >= 2, got {C}")
    if c["beam"] is None:
        c["beam"] = min(20, max(2, C // 4))
    c["beam"] = min(int(c["beam"]), C)
    if c["kappa"] is None:
        c["kappa"] = min(1000, L, 4 * math.ceil(L / C))
    c["kappa"] = max(int(c["kappa"]), math.ceil(L / C))
    if c["beta"] is None:
        c["beta"] = 0.15 * c["kappa"]
    reach1 = c["beam"] * math.ceil(L / C)  # ELIAS-1: b clusters of <= ceil(L / C) labels
    reach = min(L, reach1)
    if "K" in overrides and int(overrides["K"]) > reach:
        raise ValueError(
            f"shortlist size K={overrides['K']} is larger than the {reach} labels the search "
            f"reaches (beam {c['beam']} x cluster size {math.ceil(L / C)})"
        )
    c["K_max"] = int(c["K"])  # ELIAS-2 reaches b * kappa labels: its K is capped by that
    c["K"] = min(int(c["K"]), reach)
    for name in ("epochs", "min_steps", "max_steps"):
        c[name] = tuple(int(v) for v in c[name])
    c["num_labels"] = L
    return c


# ----------------------------------------------------------------------------- model


def _bow(cols: jax.Array, vals: jax.Array, table: jax.Array) -> jax.Array:
    """Embedding bag: sum_j vals[b, j] * table[cols[b, j]] -> [B, d]."""
    return jnp.einsum("br,brd->bd", vals, table[cols])


class EliasNet(nn.Module):
    """Encoder, cluster classifier W_C, per-label classifiers and (ELIAS-2) adjacency weights.

    Attributes:
      num_features: D; num_labels: L; num_clusters: C; kappa: adjacency entries per cluster.
      dim: d; dropout: on phi(x); alpha: cluster-score scale; beta: adjacency scale.
      learn_adjacency: ELIAS-2 (adjacency parameters ``A`` [C, kappa]).
      minilm_dim: size of frozen dense text embeddings concatenated to the BoW (0 = none).
    """

    num_features: int
    num_labels: int
    num_clusters: int
    kappa: int
    dim: int = 256
    dropout: float = 0.5
    alpha: float = 10.0
    beta: float = 150.0
    learn_adjacency: bool = False
    minilm_dim: int = 0

    def setup(self):
        d = self.dim
        self.embed = self.param(
            "embed", nn.initializers.normal(1.0), (self.num_features, d), jnp.float32
        )
        self.hidden = nn.Dense(d, name="hidden")
        self.out = nn.Dense(d, name="out")
        self.norm = nn.LayerNorm(name="norm")
        self.drop = nn.Dropout(self.dropout)
        if self.minilm_dim:
            self.text_proj = nn.Dense(d, name="text_proj")
        self.WC = nn.Dense(self.num_clusters, name="WC")
        # One extra row: the padding label L (never a real score).
        self.WL = self.param(
            "WL", nn.initializers.normal(1.0 / math.sqrt(d)), (self.num_labels + 1, d)
        )
        self.bL = self.param("bL", nn.initializers.zeros, (self.num_labels + 1,))
        if self.learn_adjacency:
            self.A = self.param("A", nn.initializers.uniform(1.0), (self.num_clusters, self.kappa))

    def encode(self, cols, vals, text=None, *, train: bool = False):
        """phi(x) [B, d] from padded BoW rows (cols int32 [B, R], vals float32 [B, R])."""
        h = _bow(cols, vals, self.embed)
        if self.minilm_dim:
            h = h + self.text_proj(text)
        h = self.norm(h + self.out(nn.gelu(self.hidden(h))))
        return self.drop(h, deterministic=not train)

    def cluster_scores(self, h):
        """clamp(alpha * softmax(W_C h), 0, 1) [B, C]."""
        return jnp.clip(self.alpha * jax.nn.softmax(self.WC(h), axis=-1), 0.0, 1.0)

    def adjacency(self, a_inds):
        """Adjacency weights [C, kappa] in [0, 1] (padding entries 0)."""
        valid = a_inds < self.num_labels
        if not self.learn_adjacency:
            return valid.astype(jnp.float32)
        logits = jnp.where(valid, self.A, -jnp.inf)
        w = jnp.clip(self.beta * jax.nn.softmax(logits, axis=-1), 0.0, 1.0)
        return jnp.where(valid, w, 0.0)

    def label_logits(self, h, labels):
        """w_l . h + b_l for labels int32 [B, K] (the padding label L allowed)."""
        return jnp.einsum("bd,bkd->bk", h, self.WL[labels]) + self.bL[labels]

    def __call__(self, cols, vals, text=None, *, train: bool = False):
        h = self.encode(cols, vals, text, train=train)
        _ = self.label_logits(h, jnp.zeros((h.shape[0], 1), jnp.int32))
        if self.learn_adjacency:
            _ = self.A
        return self.cluster_scores(h)


class Shortlist(NamedTuple):
    """The search result for a batch.

    Attributes:
      labels: int32 [B, K] shortlisted labels by path score, best first (L = none).
      path: float32 [B, K] their path scores (0 where none).
      valid: bool [B, K].
      sorted_labels: int32 [B, E] every expanded label, sorted by label (L = padding),
        each label's best path first (used to find the positives' path scores).
      sorted_path: float32 [B, E] their path scores (-1 for duplicates and padding).
      clusters: int32 [B, b'] the searched clusters.
    """

    labels: jax.Array
    path: jax.Array
    valid: jax.Array
    sorted_labels: jax.Array
    sorted_path: jax.Array
    clusters: jax.Array


def select_clusters(scores, *, beam, forced=None, key=None, extra: int = 5):
    """Clusters to search [B, b'] (pure, jittable).

    Inference (``forced`` None): the top-``beam`` clusters. Training: the union of the top
    ``beam`` and the ``forced`` clusters (bool [B, C], the parents of the positives); if it has
    more than ``beam + extra`` members, ``beam + extra`` of them sampled without replacement
    proportionally to the score (Gumbel top-k), and if fewer, the rest filled with clusters
    sampled the same way from outside the union.
    """
    C = scores.shape[-1]
    if forced is None:
        return jax.lax.top_k(scores, min(beam, C))[1]
    top = jax.lax.top_k(scores, min(beam, C))[1]
    member = forced | (
        jnp.zeros_like(forced).at[jnp.arange(scores.shape[0])[:, None], top].set(True)
    )
    g = jax.random.gumbel(key, scores.shape)
    prio = jnp.log(jnp.maximum(scores, 1e-20)) + g - jnp.where(member, 0.0, 1e4)
    return jax.lax.top_k(prio, min(beam + extra, C))[1]


def shortlist(scores, clusters, a_inds, a_vals, *, num_labels: int, K: int) -> Shortlist:
    """Labels reached through the adjacency from ``clusters``, best path per label, top K.

    Args:
      scores: float32 [B, C] cluster scores in [0, 1].
      clusters: int32 [B, b] clusters searched.
      a_inds: int32 [C, kappa] adjacency label ids (``num_labels`` = padding).
      a_vals: float32 [C, kappa] adjacency weights.
      num_labels: L, static; K: shortlist size, static (<= b * kappa).

    Returns:
      :class:`Shortlist`.
    """
    B, b = clusters.shape
    s = jnp.take_along_axis(scores, clusters, axis=1)  # [B, b]
    lab = a_inds[clusters].reshape(B, -1)  # [B, E]
    path = (s[:, :, None] * a_vals[clusters]).reshape(B, -1)
    path = jnp.where(lab < num_labels, path, -1.0)
    # Sort by label, best path first inside each label; keep the first of each label.
    order = jnp.lexsort((-path, lab), axis=-1)
    lab_s = jnp.take_along_axis(lab, order, 1)
    path_s = jnp.take_along_axis(path, order, 1)
    first = jnp.concatenate([jnp.ones((B, 1), bool), lab_s[:, 1:] != lab_s[:, :-1]], axis=1)
    path_s = jnp.where(first & (lab_s < num_labels), path_s, -1.0)
    top, idx = jax.lax.top_k(path_s, K)
    labels = jnp.take_along_axis(lab_s, idx, 1)
    valid = top >= 0
    return Shortlist(
        jnp.where(valid, labels, num_labels),
        jnp.where(valid, top, 0.0),
        valid,
        lab_s,
        path_s,
        clusters,
    )


def positive_paths(sl: Shortlist, positives, *, num_labels: int):
    """Best path score of each positive among the expanded labels (0 where not reached).

    Args:
      sl: a :class:`Shortlist`; positives: int32 [B, P] (-1 = padding).

    Returns:
      (path float32 [B, P], found bool [B, P]).
    """
    pos = jnp.where(positives >= 0, positives, num_labels + 1)
    idx = jax.vmap(jnp.searchsorted)(sl.sorted_labels, pos)
    idx = jnp.minimum(idx, sl.sorted_labels.shape[1] - 1)
    hit = jnp.take_along_axis(sl.sorted_labels, idx, 1) == pos
    p = jnp.take_along_axis(sl.sorted_path, idx, 1)
    found = hit & (p >= 0) & (positives >= 0)
    return jnp.where(found, p, 0.0), found


def _bce(p, t):
    p = jnp.clip(p, _EPS, 1.0 - _EPS)
    return -(t * jnp.log(p) + (1.0 - t) * jnp.log1p(-p))


def elias_loss(final, targets, pos_path, pos_found, *, loss_lambda: float):
    """BCE over the top-K final scores plus lambda x BCE(path score, 1) of the positives the
    search reached (as in the official ``ELIASLoss``: means over [B, K] and [B, P]).

    Args:
      final: float32 [B, K] path x label scores; targets: float32 [B, K] 0/1.
      pos_path: float32 [B, P] path scores of the positives; pos_found: bool [B, P].
    """
    cls = jnp.mean(_bce(final, targets))
    path = jnp.sum(jnp.where(pos_found, _bce(pos_path, 1.0), 0.0)) / pos_path.size
    return cls + loss_lambda * path


# ----------------------------------------------------------------------------- the model object


@dataclasses.dataclass
class EliasModel:
    """A fitted ELIAS model.

    Attributes:
      params: the :class:`EliasNet` parameters.
      a_inds: int32 [C, kappa] adjacency label ids (L = padding).
      config: the resolved configuration (:func:`elias_config`) plus ``num_features``.
      stage: 1 (fixed 0/1 adjacency) or 2 (learned adjacency).
      history: per-stage training records (steps, validation nDCG@5, seconds).
    """

    params: Any
    a_inds: np.ndarray
    config: dict
    stage: int
    history: list = dataclasses.field(default_factory=list)

    @property
    def num_labels(self) -> int:
        return int(self.config["num_labels"])

    @property
    def num_features(self) -> int:
        return int(self.config["num_features"])

    @property
    def num_clusters(self) -> int:
        return int(self.a_inds.shape[0])


def _net(config: dict, stage: int, kappa: int) -> EliasNet:
    return EliasNet(
        num_features=config["num_features"],
        num_labels=config["num_labels"],
        num_clusters=config["num_clusters"],
        kappa=kappa,
        dim=config["dim"],
        dropout=config["dropout"],
        alpha=config["alpha"],
        beta=config["beta"],
        learn_adjacency=stage == 2,
        minilm_dim=config["minilm_dim"],
    )


@functools.partial(jax.jit, static_argnames=("net", "beam", "K"))
def _predict_batch(net, params, a_inds, cols, vals, text, *, beam, K):
    h = net.apply({"params": params}, cols, vals, text, method=EliasNet.encode)
    s = net.apply({"params": params}, h, method=EliasNet.cluster_scores)
    a_vals = net.apply({"params": params}, a_inds, method=EliasNet.adjacency)
    sl = shortlist(s, select_clusters(s, beam=beam), a_inds, a_vals, num_labels=net.num_labels, K=K)
    logit = net.apply({"params": params}, h, sl.labels, method=EliasNet.label_logits)
    final = jnp.where(sl.valid, sl.path * jax.nn.sigmoid(logit), -1.0)
    top, idx = jax.lax.top_k(final, K)
    labels = jnp.take_along_axis(sl.labels, idx, 1)
    ok = top >= 0
    return jnp.where(ok, labels, -1), jnp.where(ok, top, 0.0)


def _text_of(config, texts, n, name="texts"):
    if not config["minilm_dim"]:
        return np.zeros((n, 1), np.float32)
    if texts is None:
        raise ValueError(f"this model was trained with MiniLM text embeddings; pass {name}=")
    emb = np.asarray(texts, np.float32)
    if emb.ndim != 2 or emb.shape != (n, config["minilm_dim"]):
        raise ValueError(
            f"{name} must be [{n}, {config['minilm_dim']}] embeddings, got {emb.shape}"
        )
    return emb


def _batches(n: int, bs: int):
    for i in range(0, n, bs):
        yield slice(i, min(i + bs, n))


def predict_elias(model: EliasModel, X, topk: int = 10, *, text_emb=None, batch_size=512):
    """Top-``topk`` labels and scores (path score x label score) of each row of ``X``.

    Args:
      model: an :class:`EliasModel`.
      X: scipy CSR [N, D] (rows l2-normalised like the training rows).
      topk: labels returned per row; where the search reaches fewer (topk > K) the rest are
        -1 with score 0.
      text_emb: float32 [N, minilm_dim] frozen text embeddings (models trained with them).
      batch_size: rows per jitted call (padded to a fixed size: one compilation).

    Returns:
      (labels int32 [N, topk] best first, -1 = none; scores float32 [N, topk]).
    """
    if int(topk) < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    X = _data.check_features(X, model.num_features)
    n = X.shape[0]
    text = _text_of(model.config, text_emb, n, "text_emb")
    cfg = model.config
    net = _net(cfg, model.stage, model.a_inds.shape[1])
    K = cfg["K"]
    longest = max(int(np.diff(X.indptr).max()) if n else 1, 1)
    width = 1 << (longest - 1).bit_length()
    bs = min(batch_size, max(8, 1 << (max(n, 1) - 1).bit_length()))
    labels = np.full((n, topk), -1, np.int32)
    scores = np.zeros((n, topk), np.float32)
    a_inds = jnp.asarray(model.a_inds)
    for sl_ in _batches(n, bs):
        cols, vals = _data.pad_rows(X[sl_], width)
        m = cols.shape[0]
        pad = bs - m
        cols = np.pad(cols, ((0, pad), (0, 0)))
        vals = np.pad(vals, ((0, pad), (0, 0)))
        tx = np.pad(text[sl_], ((0, pad), (0, 0)))
        lab, sc = _predict_batch(net, model.params, a_inds, cols, vals, tx, beam=cfg["beam"], K=K)
        k = min(topk, K)
        labels[sl_, :k] = np.asarray(lab)[:m, :k]
        scores[sl_, :k] = np.asarray(sc)[:m, :k]
    return labels, scores


# ----------------------------------------------------------------------------- adjacency


def adjacency_from_clusters(assign: np.ndarray, num_clusters: int, num_labels: int):
    """0/1 adjacency of a hard clustering as padded rows.

    Args:
      assign: int [L] cluster of each label.

    Returns:
      int32 [C, m] label ids per cluster (sorted, padded with L), m = the largest cluster.
    """
    assign = np.asarray(assign, np.int64)
    counts = np.bincount(assign, minlength=num_clusters)
    m = max(int(counts.max()), 1)
    order = np.argsort(assign, kind="stable")
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(num_labels) - start[assign[order]]
    out = np.full((num_clusters, m), num_labels, np.int32)
    out[assign[order], pos] = order
    return out


def approx_adjacency(Y: sp.csr_matrix, m_inds: np.ndarray, m_vals: np.ndarray, num_clusters, kappa):
    """The ELIAS-2 sparsity pattern: top ``kappa`` entries per row of (Y^T M)^T.

    Args:
      Y: CSR [N, L] training labels; m_inds / m_vals: [N, b] each training point's top-b
        clusters and their scores (M is N x C with those entries).
      num_clusters: C; kappa: entries kept per cluster row.

    Returns:
      (a_inds int32 [C, kappa] label ids, largest value first, padded with L where a row has
      fewer non-zeros; a_vals float32 [C, kappa] the values of (Y^T M)^T, 0 at padding).
    """
    N, L = Y.shape
    b = m_inds.shape[1]
    rows = np.repeat(np.arange(N), b)
    M = sp.csr_matrix(  # via COO: duplicates summed, indices canonical
        (np.asarray(m_vals, np.float32).ravel(), (rows, np.asarray(m_inds).ravel())),
        shape=(N, num_clusters),
    )
    CT = sp.csr_matrix((Y.T @ M).T)  # [C, L]
    CT.eliminate_zeros()
    inds = np.full((num_clusters, kappa), L, np.int32)
    vals = np.zeros((num_clusters, kappa), np.float32)
    for c in range(num_clusters):
        lo, hi = CT.indptr[c], CT.indptr[c + 1]
        cols, v = CT.indices[lo:hi], CT.data[lo:hi]
        order = np.lexsort((cols, -v))[:kappa]  # largest first, ties by label id
        inds[c, : len(order)] = cols[order]
        vals[c, : len(order)] = v[order]
    return inds, vals


# ----------------------------------------------------------------------------- training


def _groups(params) -> Any:
    flat = traverse_util.flatten_dict(params)
    enc = {"embed", "hidden", "out", "norm", "text_proj"}
    lab = {"WL", "bL", "A"}
    return traverse_util.unflatten_dict(
        {k: "enc" if k[0] in enc else "wl" if k[0] in lab else "rest" for k in flat}
    )


def _decay_mask(params) -> Any:
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict(
        {k: not (k[-1] in ("bias", "bL") or k[0] == "norm" or k[0] == "A") for k in flat}
    )


def _optimizer(lr_enc: float, lr_wl: float, lr: float, weight_decay: float):
    """AdamW per parameter group (encoder, per-label weights + adjacency, the rest) at the
    groups' peak rates; the warm-up / decay factor multiplies the updates (see
    :func:`lr_factor`), so stages of any length share one compiled step."""

    def adamw(rate):
        return optax.adamw(rate, weight_decay=weight_decay, mask=_decay_mask)

    return optax.multi_transform(
        {"enc": adamw(lr_enc), "wl": adamw(lr_wl), "rest": adamw(lr)}, _groups
    )


def lr_factor(t: int, steps: int, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` fraction of ``steps``, then linear decay to 0
    (the factor of step ``t``, 0-based)."""
    warm = max(1, int(warmup * steps))
    if t < warm:
        return t / warm
    return max(0.0, (steps - t) / max(1, steps - warm))


class _Data(NamedTuple):
    cols: np.ndarray  # [N, R]
    vals: np.ndarray  # [N, R]
    pos: np.ndarray  # [N, P] positives (-1 pad)
    text: np.ndarray  # [N, T]


def _prepare(X, Y, text) -> _Data:
    nnz = np.diff(X.indptr)
    cols, vals = _data.pad_rows(X, max(int(nnz.max()) if len(nnz) else 1, 1))
    return _Data(cols, vals, metrics.labels_to_padded(Y), text)


@functools.lru_cache(maxsize=8)
def _train_step_fn(net: EliasNet, L: int, K: int, beam: int, lam: float, opt_args: tuple):
    opt = _optimizer(*opt_args)

    def loss_fn(params, a_inds, parent, cols, vals, text, pos, key):
        k_drop, k_clu = jax.random.split(key)
        v = {"params": params}
        h = net.apply(
            v, cols, vals, text, train=True, method=EliasNet.encode, rngs={"dropout": k_drop}
        )
        s = net.apply(v, h, method=EliasNet.cluster_scores)
        B, C = s.shape
        par = jnp.where(pos >= 0, parent[jnp.maximum(pos, 0)], C)
        forced = jnp.zeros((B, C + 1), bool).at[jnp.arange(B)[:, None], par].set(True)[:, :C]
        clusters = select_clusters(s, beam=beam, forced=forced, key=k_clu)
        a_vals = net.apply(v, a_inds, method=EliasNet.adjacency)
        sl = shortlist(s, clusters, a_inds, a_vals, num_labels=L, K=K)
        logit = net.apply(v, h, sl.labels, method=EliasNet.label_logits)
        final = jnp.where(sl.valid, sl.path * jax.nn.sigmoid(logit), 0.0)
        targets = jnp.any(sl.labels[:, :, None] == pos[:, None, :], -1) & sl.valid
        pp, found = positive_paths(sl, pos, num_labels=L)
        return elias_loss(final, targets.astype(jnp.float32), pp, found, loss_lambda=lam)

    @jax.jit
    def step(params, opt_state, a_inds, parent, cols, vals, text, pos, key, factor):
        loss, g = jax.value_and_grad(loss_fn)(params, a_inds, parent, cols, vals, text, pos, key)
        upd, opt_state = opt.update(g, opt_state, params)
        upd = jax.tree.map(lambda u: u * factor, upd)
        return optax.apply_updates(params, upd), opt_state, loss

    return opt, step


def _parents(net, params, a_inds, L) -> np.ndarray:
    """Each label's parent: the cluster with its largest adjacency weight (C if none)."""
    a_vals = np.asarray(
        net.apply({"params": params}, jnp.asarray(a_inds), method=EliasNet.adjacency)
    )
    C = a_inds.shape[0]
    best = np.full(L + 1, -1.0, np.float32)
    parent = np.full(L + 1, C, np.int32)
    rows = np.repeat(np.arange(C), a_inds.shape[1])
    li, lv = a_inds.ravel(), a_vals.ravel()
    order = np.argsort(lv, kind="stable")  # ascending: the last write is the largest
    parent[li[order]] = rows[order]
    best[li[order]] = lv[order]
    parent[L] = C
    return parent[:L]


def _evaluate(model: EliasModel, X, Y, text) -> float:
    labels, _ = predict_elias(model, X, 5, text_emb=text if model.config["minilm_dim"] else None)
    inv = np.ones(model.num_labels, np.float32)
    r = metrics.ranking_metrics(labels, metrics.labels_to_padded(Y), inv, ks=(5,))
    return float(r["nDCG@5"])


def _data_sharding(batch_size: int):
    """A batch sharding over all devices when there are several and they divide the batch."""
    n = jax.device_count()
    if n < 2 or batch_size % n:
        return None
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))


def _train_stage(key, params, net, a_inds, cfg, tr: _Data, val, *, stage_idx, swa, desc):
    """One training stage; returns (params of the best validation nDCG@5, record)."""
    n = tr.cols.shape[0]
    bs = min(cfg["batch_size"], max(8, 1 << (n - 1).bit_length()))
    per_epoch = math.ceil(n / bs)
    steps = int(
        np.clip(
            cfg["epochs"][stage_idx] * per_epoch,
            cfg["min_steps"][stage_idx],
            cfg["max_steps"][stage_idx],
        )
    )
    cfg = {
        **cfg,
        "K_train": min(cfg["K"], (min(cfg["beam"] + 5, cfg["num_clusters"])) * a_inds.shape[1]),
    }
    opt, step = _train_step_fn(
        net,
        cfg["num_labels"],
        cfg["K_train"],
        cfg["beam"],
        float(cfg["loss_lambda"]),
        (cfg["lr_enc"], cfg["lr_wl"], cfg["lr"], cfg["weight_decay"]),
    )
    opt_state = opt.init(params)
    shard = _data_sharding(bs)
    stage = 2 if net.learn_adjacency else 1
    L = cfg["num_labels"]
    parent = jnp.asarray(_parents(net, params, a_inds, L))
    a_dev = jnp.asarray(a_inds)
    best, best_score, curve = params, -1.0, []
    swa_params, swa_n = None, 0
    swa_from = None if (not swa or cfg["swa_start"] is None) else int(cfg["swa_start"] * steps)
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**31 - 1)))
    perm = rng.permutation(n)
    t0 = time.perf_counter()
    eval_every = max(1, min(cfg["eval_every"], steps))
    for t in range(steps):
        idx = np.take(perm, np.arange(t * bs, (t + 1) * bs), mode="wrap")
        if (t + 1) * bs // n > t * bs // n:  # a new epoch starts inside this batch
            perm = rng.permutation(n)
            if stage == 2:
                parent = jnp.asarray(_parents(net, params, a_inds, L))
        batch = (tr.cols[idx], tr.vals[idx], tr.text[idx], tr.pos[idx])
        if shard is not None:
            batch = jax.device_put(batch, shard)
        params, opt_state, loss = step(
            params,
            opt_state,
            a_dev,
            parent,
            batch[0],
            batch[1],
            batch[2],
            batch[3],
            jax.random.fold_in(key, t),
            jnp.float32(lr_factor(t, steps, cfg["warmup"])),
        )
        if swa_from is not None and t >= swa_from and (t - swa_from) % cfg["swa_every"] == 0:
            swa_n += 1
            if swa_params is None:
                swa_params = params
            else:
                w = 1.0 / swa_n
                swa_params = jax.tree.map(lambda a, b, w=w: a + (b - a) * w, swa_params, params)
        if (t + 1) % eval_every == 0 or t == steps - 1:
            cur = params
            if swa_params is not None:  # SWA excludes the adjacency parameters
                cur = {**swa_params, **({"A": params["A"]} if "A" in params else {})}
            if val is None:
                best, score = cur, float("nan")
            else:
                m = EliasModel(cur, a_inds, cfg, stage)
                score = _evaluate(m, val[0], val[1], val[2])
                if score > best_score:
                    best, best_score = cur, score
            curve.append((t + 1, float(loss), score))
            if cfg["progress"]:
                print(
                    f"{desc} step {t + 1}/{steps} loss {float(loss):.4f} val nDCG@5 {score:.4f}",
                    flush=True,
                )
    rec = {
        "stage": desc,
        "steps": steps,
        "batch_size": bs,
        "best_val_ndcg5": best_score,
        "curve": curve,
        "seconds": time.perf_counter() - t0,
    }
    return best, rec


def _kmeans(key, Z, C, iters) -> np.ndarray:
    depth = int(round(math.log2(C)))
    return _cluster.balanced_kmeans(key, Z, depth, iters=iters)


def _embeddings(model: EliasModel, X, text, batch=1024) -> np.ndarray:
    net = _net(model.config, model.stage, model.a_inds.shape[1])
    tr = _prepare(X, sp.csr_matrix((X.shape[0], 1)), text)
    out = []
    enc = jax.jit(lambda p, c, v, t: net.apply({"params": p}, c, v, t, method=EliasNet.encode))
    for s in _batches(X.shape[0], batch):
        out.append(np.asarray(enc(model.params, tr.cols[s], tr.vals[s], tr.text[s])))
    return np.concatenate(out)


def _top_clusters(model: EliasModel, X, text, batch=1024):
    net = _net(model.config, model.stage, model.a_inds.shape[1])
    tr = _prepare(X, sp.csr_matrix((X.shape[0], 1)), text)
    beam = model.config["beam"]

    @jax.jit
    def f(p, c, v, t):
        h = net.apply({"params": p}, c, v, t, method=EliasNet.encode)
        s = net.apply({"params": p}, h, method=EliasNet.cluster_scores)
        return jax.lax.top_k(s, beam)

    vals, inds = [], []
    for s in _batches(X.shape[0], batch):
        v, i = f(model.params, tr.cols[s], tr.vals[s], tr.text[s])
        vals.append(np.asarray(v))
        inds.append(np.asarray(i))
    return np.concatenate(inds), np.concatenate(vals)


def check_stage1(stage1: EliasModel, num_features: int, num_labels: int, config: dict) -> None:
    """Raises a one-line ValueError when ``stage1`` cannot start ELIAS-2 for this data/config."""
    if not isinstance(stage1, EliasModel) or stage1.stage != 1:
        raise ValueError("stage1 must be an ELIAS-1 EliasModel (stage 1)")
    c = stage1.config
    for name, want in (
        ("num_features", num_features),
        ("num_labels", num_labels),
        ("num_clusters", config["num_clusters"]),
        ("dim", config["dim"]),
        ("minilm_dim", config["minilm_dim"]),
    ):
        if int(c[name]) != int(want):
            raise ValueError(
                f"inconsistent stage-1 checkpoint: its {name} is {c[name]}, stage 2 needs {want}"
            )


def fit_elias(
    X, Y, key, *, stage1: EliasModel | None = None, text_emb=None, **config
) -> EliasModel:
    """Fits ELIAS (ELIAS-1, then ELIAS-2 unless ``stages=1``).

    Args:
      X: scipy CSR float32 [N, D], rows l2-normalised (TF-IDF / bag of words).
      Y: scipy CSR float32 0/1 [N, L]; rows without a label are dropped.
      key: PRNG key.
      stage1: an ELIAS-1 model to start ELIAS-2 from (skips stage 1; must match the data and
        config: one-line error otherwise).
      text_emb: float32 [N, minilm_dim] frozen MiniLM sentence embeddings of the texts (with
        ``minilm_dim`` set; e.g. from :func:`robustml_jax.models.bert.embed_sentences`).
      **config: overrides of the defaults (see :func:`elias_config`).

    Returns:
      An :class:`EliasModel`.
    """
    X = _data.check_features(X)
    if not sp.issparse(Y):
        raise ValueError(f"Y must be a scipy sparse matrix [N, L], got {type(Y).__name__}")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but Y has {Y.shape[0]}")
    Y = _data.check_labels(Y, allow_empty=True)
    keep = np.flatnonzero(Y.getnnz(1) > 0)
    if len(keep) < 2:
        raise ValueError(f"need at least 2 labelled training rows, got {len(keep)}")
    cfg = elias_config(Y.shape[1], **config)
    cfg["num_features"] = int(X.shape[1])
    text = _text_of(cfg, text_emb, X.shape[0], "text_emb")
    X, Y, text = X[keep], Y[keep], text[keep]
    L, C = cfg["num_labels"], cfg["num_clusters"]
    if stage1 is not None:
        check_stage1(stage1, X.shape[1], L, cfg)
    k_split, k_c0, k_w, k_c1, k_s1, k_s2, k_init = jax.random.split(key, 7)
    # Validation split (best-checkpoint selection).
    n = X.shape[0]
    n_val = min(cfg["max_val"], int(round(cfg["val_fraction"] * n))) if n >= 20 else 0
    perm = np.asarray(jax.random.permutation(k_split, n))
    tr_idx, val_idx = np.sort(perm[n_val:]), np.sort(perm[:n_val])
    Xtr, Ytr = X[tr_idx], Y[tr_idx]
    val = (X[val_idx], Y[val_idx], text[val_idx]) if n_val else None
    tr = _prepare(Xtr, Ytr, text[tr_idx])
    history: list = []
    dummy = (
        jnp.zeros((1, 1), jnp.int32),
        jnp.zeros((1, 1)),
        jnp.zeros((1, max(cfg["minilm_dim"], 1))),
    )

    if stage1 is None:
        # (1) initial clustering of PIFA centroids (shared balanced k-means of paper 6).
        Z = _cluster.pifa_embeddings(_data.l2_normalize_rows(Xtr), Ytr)
        assign = _kmeans(k_c0, Z, C, cfg["kmeans_iters"])
        a1 = adjacency_from_clusters(assign, C, L)
        net1 = _net(cfg, 1, a1.shape[1])
        params = net1.init({"params": k_init}, *dummy)["params"]
        # (2) ELIAS-1 warm-up.
        params, rec = _train_stage(
            k_w, params, net1, a1, cfg, tr, val, stage_idx=0, swa=False, desc="warmup"
        )
        history.append(rec)
        # (3) re-cluster on [normalised learned embedding | normalised BoW] centroids.
        emb = _embeddings(EliasModel(params, a1, cfg, 1), Xtr, text[tr_idx])
        feats = sp.hstack(
            [
                sp.csr_matrix(_data.l2_normalize_rows(sp.csr_matrix(emb))),
                _data.l2_normalize_rows(Xtr),
            ]
        ).tocsr()
        Z = _data.l2_normalize_rows(sp.csr_matrix(Ytr.T @ feats))
        assign = _kmeans(k_c1, Z, C, cfg["kmeans_iters"])
        a1 = adjacency_from_clusters(assign, C, L)
        # The cluster classifier's meaning changed: re-initialise it.
        fresh = net1.init({"params": jax.random.fold_in(k_init, 1)}, *dummy)["params"]
        params = {**params, "WC": fresh["WC"]}
        # (4) ELIAS-1.
        params, rec = _train_stage(
            k_s1, params, net1, a1, cfg, tr, val, stage_idx=1, swa=False, desc="elias1"
        )
        history.append(rec)
        stage1 = EliasModel(params, a1, cfg, 1, history)
        if cfg["stages"] == 1:
            return stage1
    else:
        history = list(stage1.history)
    # (5) approximate adjacency from the stage-1 model.
    m_inds, m_vals = _top_clusters(stage1, Xtr, text[tr_idx])
    a2, _ = approx_adjacency(Ytr, m_inds, m_vals, C, cfg["kappa"])
    net2 = _net(cfg, 2, a2.shape[1])
    init2 = net2.init({"params": jax.random.fold_in(k_init, 2)}, *dummy)["params"]
    keep_names = {"embed", "hidden", "out", "norm", "text_proj", "WC"}
    if cfg["stage2_keep_wl"]:
        keep_names |= {"WL", "bL"}
    params = {k: (stage1.params[k] if k in keep_names else v) for k, v in init2.items()}
    cfg2 = {**cfg, "K": min(cfg["K_max"], L, cfg["beam"] * a2.shape[1])}
    # (6) ELIAS-2 end to end, SWA.
    params, rec = _train_stage(
        k_s2, params, net2, a2, cfg2, tr, val, stage_idx=2, swa=True, desc="elias2"
    )
    history.append(rec)
    return EliasModel(params, a2, cfg2, 2, history)


# ----------------------------------------------------------------------------- save / load


def _write(model: EliasModel, folder: pathlib.Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    flat = traverse_util.flatten_dict(jax.device_get(model.params), sep="/")
    arrays = {"p/" + k: np.asarray(v) for k, v in flat.items()}
    np.savez(folder / "arrays.npz", a_inds=model.a_inds, **arrays)
    meta = {"config": model.config, "stage": model.stage, "history": model.history}
    (folder / "meta.json").write_text(json.dumps(meta, default=_jsonable))


def save_elias(model: EliasModel, path: str | os.PathLike) -> pathlib.Path:
    """Saves ``model`` into the new folder ``path`` atomically (``arrays.npz`` + ``meta.json``,
    written into a temporary sibling and renamed into place)."""
    path = pathlib.Path(path).absolute()
    if path.exists():
        raise FileExistsError(f"{path} exists; save an ELIAS model into a new folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        _write(model, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


def elias_items(directory: str | os.PathLike) -> WorkItems:
    """A :class:`WorkItems` folder of ELIAS models (fit once, saved atomically, reloaded)."""
    return WorkItems(directory, save=lambda folder, m: _write(m, folder), load=load_elias)


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(type(o).__name__)


def load_elias(path: str | os.PathLike) -> EliasModel:
    """Loads what :func:`save_elias` saved (one-line error for a missing or partial folder)."""
    path = pathlib.Path(path)
    if not (path / "meta.json").is_file() or not (path / "arrays.npz").is_file():
        raise FileNotFoundError(f"{path}: not an ELIAS model folder (meta.json + arrays.npz)")
    meta = json.loads((path / "meta.json").read_text())
    cfg = meta["config"]
    for k in ("epochs", "min_steps", "max_steps"):
        cfg[k] = tuple(cfg[k])
    with np.load(path / "arrays.npz") as z:
        a_inds = z["a_inds"]
        flat = {k[2:]: jnp.asarray(z[k]) for k in z.files if k.startswith("p/")}
    params = traverse_util.unflatten_dict(flat, sep="/")
    return EliasModel(params, a_inds, cfg, int(meta["stage"]), meta.get("history", []))
