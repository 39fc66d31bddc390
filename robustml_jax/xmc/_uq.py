"""Ensemble uncertainty for tree-based XMC (paper 6: Jiang, Chang, Zhang, Hsieh, Yu, SIGIR 2023).

The paper is known from its abstract only (``../shared/PAPERS.md`` section 6); this is the
reconstruction documented there, labelled as such:

* Members: M tree models that differ in their randomness (clustering seed, optional
  bootstrap of the training instances).
* Label level: member m gives a Bernoulli probability p_m(l | x) (its path score). Per label:
  mean p_bar, variance, total entropy H(p_bar), aleatoric (expected) entropy E_m H(p_m) and
  epistemic uncertainty = their difference (the mutual information between the label and the
  member; Malinin & Gales style split for Bernoulli outputs).
* Instance level: the label-level quantities averaged over the K retrieved labels.
* Beam approximation: each member scores only the labels its beam returns; the others count as
  0. A path score is a product of factors in [0, 1], so an unreturned label of member m scores
  at most tau_m, the largest pruned path score of that member's search. Hence for every label
  |p_bar_exact - p_bar_approx| <= (1/M) sum_{m: l unreturned by m} tau_m (``bound``), and a
  label returned by no member has p_bar_exact <= mean_m tau_m; with the pooled labels that
  miss the top-K this gives ``tail_bound`` for every label outside the top-K. Under long-tail
  scores tau_m is small, which is the guarantee's content.

Shapes: M members, N instances, K labels kept, k labels per member, L labels.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from robustml_jax.xmc import _cluster, _data, _tree

__all__ = [
    "EnsembleOutput",
    "InstanceUncertainty",
    "LabelUncertainty",
    "OODSplit",
    "binary_entropy",
    "combine_members",
    "ensemble_exact",
    "ensemble_predict",
    "fit_member",
    "instance_uncertainty",
    "label_uncertainty",
    "ood_split",
]

_EPS = 1e-6


class EnsembleOutput(NamedTuple):
    """Ensemble prediction with label-level uncertainty, best label first.

    Attributes:
      labels: int32 [N, K] ranked by mean score (-1 = none).
      mean, var: [N, K] mean and variance of the member probabilities.
      total, aleatoric, epistemic: [N, K] H(mean), E_m H(p_m), and their difference.
      bound: [N, K] bound on |mean - exact mean| from the beam approximation (0 if exact).
      tail_bound: [N] bound on the exact mean score of every label not in ``labels``.
      member_scores: [M, N, K] each member's probability for the kept labels.
    """

    labels: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    total: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray
    bound: np.ndarray
    tail_bound: np.ndarray
    member_scores: np.ndarray


def binary_entropy(p: jax.Array) -> jax.Array:
    """Entropy (nats) of Bernoulli(p), elementwise."""
    p = jnp.clip(p, _EPS, 1.0 - _EPS)
    return -(p * jnp.log(p) + (1.0 - p) * jnp.log1p(-p))


class LabelUncertainty(NamedTuple):
    """Label-level uncertainty, each [...] (the member axis reduced).

    Attributes:
      mean, var: mean and variance of the member probabilities.
      total, aleatoric, epistemic: H(mean), E_m H(p_m), and their difference clamped at 0
        (the difference is >= 0 by Jensen; the clamp only removes float rounding).
    """

    mean: jax.Array
    var: jax.Array
    total: jax.Array
    aleatoric: jax.Array
    epistemic: jax.Array


def label_uncertainty(p: jax.Array) -> LabelUncertainty:
    """Label-level uncertainty from member probabilities ``p`` [M, ...] (reduced over axis 0)."""
    mean = jnp.mean(p, 0)
    total = binary_entropy(mean)
    alea = jnp.mean(binary_entropy(p), 0)
    return LabelUncertainty(
        mean=mean,
        var=jnp.var(p, 0),
        total=total,
        aleatoric=alea,
        epistemic=jnp.maximum(total - alea, 0.0),
    )


class InstanceUncertainty(NamedTuple):
    """Instance-level uncertainty, each float [N]; larger means more uncertain.

    Attributes:
      total, aleatoric, epistemic, var: label-level (Bernoulli) values averaged over the
        retrieved labels.
      one_minus_top: 1 - best mean score.
      cat_total, cat_epistemic: entropy and mutual information of the scores normalised over
        the retrieved labels (a categorical per member).
    """

    total: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray
    var: np.ndarray
    one_minus_top: np.ndarray
    cat_total: np.ndarray
    cat_epistemic: np.ndarray


def instance_uncertainty(out: EnsembleOutput) -> InstanceUncertainty:
    """Instance-level uncertainty from an ensemble prediction (host side, numpy).

    Args:
      out: an :class:`EnsembleOutput` for N instances.

    Returns:
      :class:`InstanceUncertainty`.
    """
    ok = out.labels >= 0
    cnt = np.maximum(ok.sum(1), 1)
    avg = lambda a: np.where(ok, a, 0.0).sum(1) / cnt
    # Over the retrieved labels as one categorical: q_m = p_m / sum_k p_m per member. A flat
    # score profile (typical out of distribution, where every score is small) has high entropy.
    ms = np.where(ok[None], np.asarray(out.member_scores, np.float64), 0.0) + _EPS * ok[None]
    q = ms / ms.sum(-1, keepdims=True)
    ent = lambda a: -(np.where(a > 0, a * np.log(np.maximum(a, 1e-300)), 0.0)).sum(-1)
    cat_total = ent(q.mean(0))
    cat_alea = ent(q).mean(0)
    return InstanceUncertainty(
        total=avg(out.total),
        aleatoric=avg(out.aleatoric),
        epistemic=avg(out.epistemic),
        var=avg(out.var),
        one_minus_top=1.0 - out.mean[:, 0],
        cat_total=cat_total,
        cat_epistemic=np.maximum(cat_total - cat_alea, 0.0),
    )


def combine_members(
    labels: jax.Array, scores: jax.Array, taus: jax.Array, *, topk: int
) -> EnsembleOutput:
    """Merges member top-k lists into the ensemble's ranked top-K. Pure and jittable.

    Args:
      labels: int32 [M, N, k] each member's labels (-1 = none).
      scores: float32 [M, N, k] their path scores.
      taus: float32 [M, N] each member's tail bound (largest pruned path score).
      topk: K, static.

    Returns:
      :class:`EnsembleOutput` of jax arrays.
    """

    def one(labels, scores, taus):
        m, k = labels.shape
        cand = labels.reshape(-1)
        eq = cand[:, None] == cand[None, :]
        earlier = jnp.any(jnp.tril(eq, -1), axis=1)
        keep = (cand >= 0) & ~earlier
        match = (cand[None, :, None] == labels[:, None, :]) & (labels[:, None, :] >= 0)
        p = jnp.sum(jnp.where(match, scores[:, None, :], 0.0), -1)  # [M, U]
        reached = jnp.any(match, -1)
        stats = label_uncertainty(p)
        key = jnp.where(keep, stats.mean, -jnp.inf)
        _, idx = jax.lax.top_k(key, topk)
        ok = jnp.isfinite(key[idx])
        bound = jnp.sum(jnp.where(reached, 0.0, taus[:, None]), 0) / m
        pick = lambda a: jnp.where(ok, a[idx], 0.0)
        # Pooled labels that did not make the top-K are bounded by their own mean + bound.
        dropped = keep & ~jnp.zeros(cand.shape, bool).at[idx].set(ok)
        tail = jnp.maximum(jnp.mean(taus), jnp.max(jnp.where(dropped, stats.mean + bound, 0.0)))
        return EnsembleOutput(
            jnp.where(ok, cand[idx], -1),
            *(pick(v) for v in stats),
            bound=pick(bound),
            tail_bound=tail,
            member_scores=jnp.where(ok[None, :], p[:, idx], 0.0),
        )

    out_axes = EnsembleOutput(*([0] * 8), member_scores=1)
    return jax.vmap(one, in_axes=(1, 1, 1), out_axes=out_axes)(labels, scores, taus)


_combine_jit = jax.jit(combine_members, static_argnames=("topk",))


def ensemble_predict(
    members: list[_tree.TreeModel],
    X,
    *,
    beam_size: int = 10,
    topk: int = 10,
    member_topk: int | None = None,
) -> EnsembleOutput:
    """Ensemble prediction with the beam approximation (host wrapper: one beam search per
    member, then the jitted :func:`combine_members`, compiled once per shape).

    Args:
      members: trained tree models on the same label space.
      X: CSR [N, D] queries.
      beam_size: each member's beam; topk: K labels kept.
      member_topk: labels each member returns (default ``topk``).

    Returns:
      :class:`EnsembleOutput` of numpy arrays.
    """
    if not members:
        raise ValueError("need at least one ensemble member")
    kk = member_topk or topk
    outs = [_tree.beam_search(m, X, beam_size=beam_size, topk=kk) for m in members]
    labels = jnp.asarray(np.stack([o.labels for o in outs]))
    scores = jnp.asarray(np.stack([o.scores for o in outs]))
    taus = jnp.asarray(np.stack([o.tail_bound for o in outs]))
    return EnsembleOutput(*(np.asarray(a) for a in _combine_jit(labels, scores, taus, topk=topk)))


def ensemble_exact(members: list[_tree.TreeModel], X, *, topk: int = 10, return_all: bool = False):
    """The reference: every member scores every label exactly (small label sets only).

    Args:
      members: trained tree models; X: CSR [N, D] queries; topk: K.

    Returns:
      :class:`EnsembleOutput` (bounds are 0); with ``return_all`` also the member scores of
      all labels, float32 [M, N, L].
    """
    p = np.stack([_tree.score_all_labels(m, X) for m in members])  # [M, N, L]
    stats = label_uncertainty(jnp.asarray(p))
    _, idx = jax.lax.top_k(stats.mean, topk)
    idx = np.asarray(idx)
    take = lambda a: np.take_along_axis(np.asarray(a), idx, axis=-1)
    out = EnsembleOutput(
        labels=idx.astype(np.int32),
        **{k: take(v) for k, v in stats._asdict().items()},
        bound=np.zeros(idx.shape, np.float32),
        tail_bound=np.zeros(idx.shape[0], np.float32),
        member_scores=np.take_along_axis(p, idx[None], axis=-1),
    )
    return (out, p) if return_all else out


def fit_member(X, Y, *, key: jax.Array, bootstrap: bool = False, **tree_kwargs):
    """One ensemble member: its own clustering seed and, optionally, a bootstrap sample.

    Args:
      X: CSR [N, D]; Y: CSR [N, L]; key: PRNG key (split into clustering and bootstrap keys).
      bootstrap: train on N rows drawn with replacement.
      **tree_kwargs: :func:`fit_tree_model` options.
    """
    k_tree, k_boot = jax.random.split(key)
    if bootstrap:
        n = X.shape[0]
        idx = np.asarray(jax.random.randint(k_boot, (n,), 0, n))
        X, Y = sp.csr_matrix(X)[idx], sp.csr_matrix(Y)[idx]
    return _tree.fit_tree_model(X, Y, key=k_tree, **tree_kwargs)


class OODSplit(NamedTuple):
    """A held-out-label OOD split (see :func:`ood_split`).

    Attributes:
      X_train: CSR [N', D] training rows without held-out labels.
      Y_train: CSR [N', L'] their labels on the kept label set.
      X_test: CSR [N_test', D] test rows that are purely in- or out-of-distribution.
      is_ood: bool [N_test'].
      held_out: int [G] held-out label ids; kept_labels: int [L'] the others (column order of
        ``Y_train``).
    """

    X_train: sp.csr_matrix
    Y_train: sp.csr_matrix
    X_test: sp.csr_matrix
    is_ood: np.ndarray
    held_out: np.ndarray
    kept_labels: np.ndarray


def ood_split(
    key: jax.Array, X_train, Y_train, X_test, Y_test, *, num_groups: int = 8, min_ood: int = 20
) -> OODSplit:
    """Holds out one group of similar labels for out-of-distribution detection.

    Labels are clustered (balanced PIFA 2-means, ``num_groups`` groups); the held-out group is
    the one with the most training instances whose labels all lie in it (chosen on training
    data only). Training keeps the instances with no held-out label, on the remaining labels.
    Test instances with no held-out label are in-distribution; those whose labels all lie in
    the group are OOD; mixed ones are dropped.

    Args:
      key: PRNG key of the label clustering.
      X_train: CSR [N, D]; Y_train: CSR [N, L]; X_test: CSR [N_test, D]; Y_test: CSR [N_test, L].
      num_groups: label groups (a power of two); min_ood: fewest OOD test rows accepted.

    Returns:
      :class:`OODSplit`.
    """
    Ytr = _data.check_labels(Y_train)
    Yte = _data.check_labels(Y_test, Ytr.shape[1], allow_empty=True, name="Y_test")
    depth = int(np.log2(num_groups))
    leaf = _cluster.balanced_kmeans(key, _cluster.pifa_embeddings(X_train, Ytr), depth)
    onehot = sp.csr_matrix(
        (np.ones(len(leaf), np.float32), (np.arange(len(leaf)), leaf)),
        shape=(len(leaf), num_groups),
    )
    per_group_tr = (Ytr @ onehot).toarray()
    n_lab_tr = Ytr.getnnz(1)
    pure = (per_group_tr == n_lab_tr[:, None]).sum(0)
    group = int(np.argmax(pure))
    held = leaf == group
    in_group_te = (Yte @ onehot).toarray()[:, group]
    n_lab_te = Yte.getnnz(1)
    ood = (n_lab_te > 0) & (in_group_te == n_lab_te)
    iid = in_group_te == 0
    if ood.sum() < min_ood:
        raise ValueError(f"only {int(ood.sum())} OOD test instances for the held-out group")
    keep_tr = (Ytr @ held.astype(np.float32)) == 0
    kept = np.flatnonzero(~held)
    Y_kept = Ytr[keep_tr][:, kept]
    nonempty = Y_kept.getnnz(1) > 0
    sel = np.flatnonzero(ood | iid)
    return OODSplit(
        X_train=sp.csr_matrix(X_train)[np.flatnonzero(keep_tr)[nonempty]],
        Y_train=Y_kept[nonempty],
        X_test=sp.csr_matrix(X_test)[sel],
        is_ood=ood[sel],
        held_out=np.flatnonzero(held),
        kept_labels=kept,
    )
