"""Format-specialisation measurements: per-group gradient cosines.

The paper (Sec. 3) compares the full fine-tuning gradient on RTE with the *format gradient*,
the gradient of the same loss on RTE with shuffled labels (which carries only the output
format), per parameter group (MLP, attention Q, K, V); a cosine near 1 means the step mostly
learns the format. Label-word leakage is :func:`robustml_jax.promot.label_word_share`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "GROUPS",
    "format_gradient_cosines",
    "group_cosines",
    "param_group",
    "shuffled_labels_batch",
]

GROUPS = ("mlp", "query", "key", "value", "out", "embedding", "other")


def param_group(path: str) -> str:
    """The group of a t5x parameter path (``encoder/layers_0/mlp/wi_0/kernel`` -> ``mlp``)."""
    parts = path.split("/")
    if "mlp" in parts:
        return "mlp"
    for name in ("query", "key", "value", "out"):
        if name in parts and any(p.endswith("attention") for p in parts):
            return name
    if parts[0] == "token_embedder" or "logits_dense" in parts:
        return "embedding"
    return "other"


def _flat(tree) -> dict[str, jax.Array]:
    return {
        "/".join(str(getattr(k, "key", k)) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def group_cosines(grad_a: Mapping, grad_b: Mapping) -> dict[str, jax.Array]:
    """Cosine between two gradient trees over each group's concatenated leaves (jittable).

    Returns ``{group: cosine}`` for the groups present, plus ``'all'`` over every leaf. A zero
    gradient gives cosine 0.
    """
    fa, fb = _flat(grad_a), _flat(grad_b)
    if set(fa) != set(fb):
        raise ValueError("the two gradient trees have different parameters")
    sums: dict[str, list] = {}
    for path in sorted(fa):
        a = fa[path].astype(jnp.float32).ravel()
        b = fb[path].astype(jnp.float32).ravel()
        terms = (jnp.vdot(a, b), jnp.vdot(a, a), jnp.vdot(b, b))
        for g in (param_group(path), "all"):
            acc = sums.setdefault(g, [0.0, 0.0, 0.0])
            for i in range(3):
                acc[i] = acc[i] + terms[i]
    out = {}
    for g, (ab, aa, bb) in sums.items():
        denom = jnp.sqrt(aa) * jnp.sqrt(bb)
        out[g] = jnp.where(denom > 0, ab / jnp.where(denom > 0, denom, 1.0), 0.0)
    return out


def shuffled_labels_batch(batch: Mapping, key: jax.Array) -> dict:
    """The same batch with its ``targets`` rows permuted (RTE with shuffled labels)."""
    perm = np.asarray(jax.random.permutation(key, len(batch["targets"])))
    return {**batch, "targets": np.asarray(batch["targets"])[perm]}


def format_gradient_cosines(
    loss_fn: Callable, params, batch: Mapping, key: jax.Array
) -> dict[str, float]:
    """Per-group cosine between the gradient on ``batch`` and on its label-shuffled copy.

    ``loss_fn(params, batch) -> (loss, aux)``; gradients are taken w.r.t. all of ``params``
    (pass the model half only to leave a prompt out).
    """
    grad = jax.grad(lambda p, b: loss_fn(p, b)[0])
    g_full = grad(params, batch)
    g_fmt = grad(params, shuffled_labels_batch(batch, key))
    return {k: float(v) for k, v in group_cosines(g_full, g_fmt).items()}
