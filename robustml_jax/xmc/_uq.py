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
    "Uncertainty",
    "binary_entropy",
    "combine_members",
    "ensemble_exact",
    "exact_uncertainty",
    "ensemble_predict",
    "fit_member",
    "instance_uncertainty",
    "label_uncertainty",
    "ood_split",
    "uncertainty_scores",
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
      member_scores: [M, N, K] each member's probability for the kept labels (0 where the
        member's beam did not return the label).
      member_reached: bool [M, N, K] whether the member's beam returned the label.
      member_tail: [M, N] each member's tail bound tau_m (largest pruned path score).
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
    member_reached: np.ndarray
    member_tail: np.ndarray


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
            member_reached=reached[:, idx] & ok[None, :],
            member_tail=taus,
        )

    out_axes = EnsembleOutput(*([0] * 8), member_scores=1, member_reached=1, member_tail=1)
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
        member_reached=np.ones((len(members), *idx.shape), bool),
        member_tail=np.zeros((len(members), idx.shape[0]), np.float32),
    )
    return (out, p) if return_all else out


# ----------------------------------------------------------------------------- scores with bounds


class Uncertainty(NamedTuple):
    """Uncertainty scores of N instances, each float64 [N]; larger = more uncertain.

    Label level (about the predicted label y = ``labels[:, 0]``):
      one_minus_mean: 1 - pbar(y), pbar the member mean score.
      member_std: the members' spread std_m p_m(y) (population std).
    Instance level (no prediction needed, e.g. OOD):
      one_minus_max: 1 - max_l pbar(l) over every label.
      neg_topk_sum: -(sum of the k largest pbar(l) over every label).
      cat_entropy: entropy (nats) of the categorical pbar(l) / sum_R pbar over the retrieved
        labels R = ``labels[i]`` (the valid ones).
    """

    one_minus_mean: np.ndarray
    member_std: np.ndarray
    one_minus_max: np.ndarray
    neg_topk_sum: np.ndarray
    cat_entropy: np.ndarray


def _entropy_rows(v: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Entropy of each row of ``v`` [N, K] normalised over its ``ok`` entries (0 log 0 = 0)."""
    v = np.where(ok, v, 0.0)
    tot = v.sum(1, keepdims=True)
    q = np.where(
        tot > 0, v / np.where(tot > 0, tot, 1.0), np.where(ok, 1.0, 0.0) / ok.sum(1)[:, None]
    )
    return -np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0).sum(1)


def _topk_sum(v: np.ndarray, k: int) -> np.ndarray:
    return -np.sort(-v, axis=1)[:, :k].sum(1)


def uncertainty_scores(
    out: EnsembleOutput, *, k: int, num_labels: int
) -> tuple[Uncertainty, Uncertainty]:
    """The scores of :class:`Uncertainty` from a beam-approximated ensemble, and their bounds.

    Beam approximation: member m's score of a label its beam did not return counts as 0.

    Bounds (our derivation). A path score is a product of factors in [0, 1] along the path, so
    every label member m's beam did not return scores at most tau_m (``member_tail``), the
    largest path score the search pruned. With e_m(l) = tau_m [m did not return l] and
    delta(l) = mean_m e_m(l) (``bound``), for every label l and member m:

        phat_m(l) <= p_m(l) <= phat_m(l) + e_m(l),   phatbar(l) <= pbar(l) <= phatbar(l) + delta(l),

    and every label outside the kept list has pbar(l) <= ``tail_bound`` (the mean of tau_m for
    labels no member returned; a pooled label that missed the list is itself bounded by
    phatbar + delta). Hence, writing A for the approximation and E for the exact value:

    * one_minus_mean: E in [A - delta(y), A], so |E - A| <= delta(y).
    * member_std: std(p) = |C p| / sqrt(M) with C the centring projection (non-expansive), so
      |std(p) - std(phat)| <= |p - phat| / sqrt(M) <= sqrt(mean_m e_m(y)^2).
    * one_minus_max and neg_topk_sum: S_k(v) = sum of the k largest entries is monotone in v,
      and the kept list is a subset of all labels, so S_k(phatbar_kept) <= S_k(pbar) <=
      S_k(u) with u = (phatbar + delta on the kept labels, ``tail_bound`` for each of the
      L - K others); the bound is S_k(u) - S_k(phatbar_kept) (k = 1 for the max).
    * cat_entropy (over the same retrieved set R of K' labels): with v = pbar_R, vhat =
      phatbar_R, 0 <= v - vhat, D = sum(v - vhat) <= Delta = sum_R delta, the total variation
      T = 0.5 |v / S - vhat / Shat|_1 <= D / S <= Delta / (Shat + Delta); by the sharp
      Fannes-Audenaert inequality |H(q) - H(qhat)| <= T log(K' - 1) + h(T) (h the binary
      entropy), increasing in T up to T = 1 - 1/K' where it equals log K', so the bound is
      that function at min(Delta / (Shat + Delta), 1 - 1/K').

    The bounds hold for any score distribution; they are small when the pruned mass tau_m is
    small, which is what a long-tailed label distribution gives a wide enough beam.

    Args:
      out: an :class:`EnsembleOutput` (from :func:`ensemble_predict`) for N instances.
      k: labels summed by ``neg_topk_sum`` (<= K, the labels kept).
      num_labels: L, the size of the label space.

    Returns:
      (scores, bounds): two :class:`Uncertainty`; ``bounds`` bounds |exact - approximate| of
      each score, per instance.
    """
    K = out.labels.shape[1]
    if not 1 <= k <= K:
        raise ValueError(f"k must be in [1, {K}] (the labels kept), got {k}")
    ok = out.labels >= 0
    mean = np.where(ok, np.asarray(out.mean, np.float64), 0.0)
    delta = np.where(ok, np.asarray(out.bound, np.float64), 0.0)
    tail = np.asarray(out.tail_bound, np.float64)
    p_top = np.asarray(out.member_scores[:, :, 0], np.float64)  # [M, N]
    e_top = np.where(out.member_reached[:, :, 0], 0.0, np.asarray(out.member_tail, np.float64))
    scores = Uncertainty(
        one_minus_mean=1.0 - mean[:, 0],
        member_std=p_top.std(0),
        one_minus_max=1.0 - mean.max(1),
        neg_topk_sum=-_topk_sum(mean, k),
        cat_entropy=_entropy_rows(mean, ok),
    )
    others = max(num_labels - K, 0)
    upper = np.where(ok, mean + delta, 0.0)
    if others:
        upper = np.concatenate([upper, np.repeat(tail[:, None], min(others, k), 1)], 1)
    count = np.maximum(ok.sum(1), 1)
    big_delta = delta.sum(1)
    s_hat = mean.sum(1)
    t_up = np.where(big_delta > 0, big_delta / np.maximum(s_hat + big_delta, 1e-300), 0.0)
    t = np.minimum(t_up, 1.0 - 1.0 / count)
    h_t = -np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0)), 0.0) - np.where(
        t < 1, (1 - t) * np.log1p(-np.minimum(t, 1 - 1e-16)), 0.0
    )
    cat_bound = np.where(count > 1, t * np.log(np.maximum(count - 1, 1)) + h_t, 0.0)
    bounds = Uncertainty(
        one_minus_mean=delta[:, 0],
        member_std=np.sqrt((e_top**2).mean(0)),
        one_minus_max=upper.max(1) - mean.max(1),
        neg_topk_sum=_topk_sum(upper, k) - _topk_sum(mean, k),
        cat_entropy=cat_bound,
    )
    return scores, bounds


def exact_uncertainty(p_all: np.ndarray, labels: np.ndarray, *, k: int) -> Uncertainty:
    """The scores of :class:`Uncertainty` from exact all-label member scores.

    Args:
      p_all: float [M, N, L] every member's score of every label.
      labels: int [N, K] the prediction (``labels[:, 0]``) and retrieved set (valid entries)
        the label-level and categorical scores refer to.
      k: labels summed by ``neg_topk_sum``.

    Returns:
      :class:`Uncertainty` (float64).
    """
    p_all = np.asarray(p_all, np.float64)
    labels = np.asarray(labels)
    ok = labels >= 0
    mean_all = p_all.mean(0)  # [N, L]
    rows = np.arange(labels.shape[0])
    y = np.maximum(labels[:, 0], 0)
    kept = np.where(ok, np.take_along_axis(mean_all, np.maximum(labels, 0), 1), 0.0)
    return Uncertainty(
        one_minus_mean=1.0 - mean_all[rows, y],
        member_std=p_all[:, rows, y].std(0),
        one_minus_max=1.0 - mean_all.max(1),
        neg_topk_sum=-_topk_sum(mean_all, k),
        cat_entropy=_entropy_rows(kept, ok),
    )


def fit_member(
    X,
    Y,
    *,
    key: jax.Array,
    bootstrap: bool = False,
    feature_fraction: float = 1.0,
    **tree_kwargs,
):
    """One ensemble member: its own clustering seed and, optionally, a bootstrap sample of the
    instances and a random subset of the features (diversity options).

    Args:
      X: CSR [N, D]; Y: CSR [N, L]; key: PRNG key (split into clustering, bootstrap and
        feature keys).
      bootstrap: train on N rows drawn with replacement (bagging).
      feature_fraction: train on a random fraction of the features (the others are zeroed,
        so the member's weights on them are 0); 1 keeps all.
      **tree_kwargs: :func:`fit_tree_model` options.
    """
    if not 0.0 < feature_fraction <= 1.0:
        raise ValueError(f"feature_fraction must be in (0, 1], got {feature_fraction}")
    k_tree, k_boot = jax.random.split(key)
    if bootstrap:
        n = X.shape[0]
        idx = np.asarray(jax.random.randint(k_boot, (n,), 0, n))
        X, Y = sp.csr_matrix(X)[idx], sp.csr_matrix(Y)[idx]
    if feature_fraction < 1.0:
        keep = np.asarray(
            jax.random.uniform(jax.random.fold_in(key, 7), (X.shape[1],)) < feature_fraction
        )
        X = sp.csr_matrix(sp.csr_matrix(X) @ sp.diags(keep.astype(np.float32)))
        X.eliminate_zeros()
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
