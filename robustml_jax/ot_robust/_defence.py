"""The defences compared in one harness: standard training, PGD adversarial training (Madry et
al. 2018), TRADES (Zhang et al. 2019), and the OT metric-learning defence (paper 4, our
formulation in NOTES.md) with sensitivity perturbations only (``ot_sens``, an ablation) or with
sensitivity and invariance perturbations (``ot_inv``, the method).

:func:`make_loss_fn` returns a t5x-style ``loss_fn(params, batch, rng) -> (loss, metrics)`` for
``core.train``. A batch holds ``image`` [B, H, W, C] in [0, 1], ``label`` [B], ``eps`` [B] (the
attack radius of the step, constant over rows: a schedule that ramps up), and for ``ot_inv``
``inv_image`` [B, H, W, C] / ``inv_label`` [B] / ``inv_weight`` [B] (invariance examples of the
batch's images, their new class, and whether the label oracle agrees with it).

Shapes: B = batch, H, W, C = image, K = classes, E = embedding size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from robustml_jax.core.attacks import pgd_ascent
from robustml_jax.ot_robust._ot import ot_regulariser

__all__ = ["METHODS", "DefenceConfig", "EmbedCNN", "make_loss_fn"]

METHODS = ("standard", "pgd_at", "trades", "ot_sens", "ot_inv")


class EmbedCNN(nn.Module):
    """Conv(3x3)-ReLU-AvgPool blocks, a dense embedding layer (the learned metric's space), and a
    linear classifier on the embedding.

    Attributes:
      num_classes: K.
      features: channels of each conv block.
      embed_dim: E.
    """

    num_classes: int = 10
    features: Sequence[int] = (8, 16)
    embed_dim: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, return_embedding: bool = False):
        """Images [B, H, W, C] -> logits [B, K] (and the embedding [B, E] if asked)."""
        if x.ndim != 4:
            raise ValueError(f"EmbedCNN expects images [B, H, W, C], got shape {x.shape}")
        h = x
        for f in self.features:
            h = nn.relu(nn.Conv(f, (3, 3))(h))
            h = nn.avg_pool(h, (2, 2), strides=(2, 2))
        z = nn.relu(nn.Dense(self.embed_dim)(h.reshape(h.shape[0], -1)))
        logits = nn.Dense(self.num_classes)(z)
        return (logits, z) if return_embedding else logits


@dataclasses.dataclass(frozen=True)
class DefenceConfig:
    """Static settings of the training losses.

    Attributes:
      method: one of :data:`METHODS`.
      num_steps: PGD steps of the inner maximisation (step size ``2.5 eps / num_steps``).
      trades_beta: TRADES' weight of the KL term.
      ot_weight: ``gamma``, the weight of the OT regulariser.
      ot_epsilon: Sinkhorn's entropic regularisation.
      label_cost: the ground cost's cross-label penalty ``lambda``.
      num_classes: K.
    """

    method: str = "pgd_at"
    num_steps: int = 5
    trades_beta: float = 6.0
    ot_weight: float = 1.0
    ot_epsilon: float = 0.05
    label_cost: float = 4.0
    num_classes: int = 10


def _ce(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def make_loss_fn(model: nn.Module, config: DefenceConfig):
    """``loss_fn(params, batch, rng) -> (loss, metrics)`` for ``config.method``.

    - ``standard``: ``CE(f(x), y)``.
    - ``pgd_at``: ``CE(f(x_s), y)`` with ``x_s`` PGD on the CE in the l_inf ball.
    - ``trades``: ``CE(f(x), y) + beta KL(p(x) || p(x_t))`` with ``x_t`` PGD on the KL.
    - ``ot_sens``: ``CE(f(x_s), y) + gamma OT_eps(clean, {(x_s, y)})``.
    - ``ot_inv``: ``CE(f(x_s), y) + gamma OT_eps(clean, {(x_s, y)} u {(x_v, t)})`` with the
      invariance examples ``x_v`` weighted by ``inv_weight``.
    """
    if config.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {config.method!r}")

    def logits_fn(params, x):
        return model.apply(params, x)

    def loss_fn(params, batch, rng):
        x, y = batch["image"], batch["label"]
        if config.method == "standard":
            logits = logits_fn(params, x)
            loss = jnp.mean(_ce(logits, y))
            return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}
        eps = batch["eps"][0]
        step = 2.5 * eps / config.num_steps
        params_sg = jax.lax.stop_gradient(params)
        k_start = jax.random.fold_in(rng, 0)
        if config.method == "trades":
            p_clean = jax.nn.softmax(logits_fn(params_sg, x))

            def kl(v):
                logq = jax.nn.log_softmax(logits_fn(params_sg, v))
                return jnp.sum(p_clean * (jnp.log(p_clean + 1e-12) - logq), -1)

            x0 = x + 0.001 * jax.random.normal(k_start, x.shape, x.dtype)
            x_t = pgd_ascent(kl, x, x0, eps=eps, step_size=step, num_steps=config.num_steps)
            x_t = jax.lax.stop_gradient(x_t)
            logits = logits_fn(params, x)
            logp = jax.nn.log_softmax(logits)
            logq = jax.nn.log_softmax(logits_fn(params, x_t))
            robust = jnp.sum(jnp.exp(logp) * (logp - logq), -1)
            ce = _ce(logits, y)
            loss = jnp.mean(ce) + config.trades_beta * jnp.mean(robust)
            return loss, {
                "accuracy": jnp.mean(jnp.argmax(logits, -1) == y),
                "kl": jnp.mean(robust),
            }
        x0 = x + jax.random.uniform(k_start, x.shape, x.dtype, -1.0, 1.0) * eps
        x_s = pgd_ascent(
            lambda v: _ce(logits_fn(params_sg, v), y),
            x, x0, eps=eps, step_size=step, num_steps=config.num_steps,
        )  # fmt: skip
        x_s = jax.lax.stop_gradient(x_s)
        if config.method == "pgd_at":
            logits = logits_fn(params, x_s)
            loss = jnp.mean(_ce(logits, y))
            return loss, {"adv_accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}
        # OT metric learning: embed clean and perturbed points with the same network
        b = x.shape[0]
        if config.method == "ot_inv":
            xs = jnp.concatenate([x, x_s, batch["inv_image"]])
        else:
            xs = jnp.concatenate([x, x_s])
        logits_all, z_all = model.apply(params, xs, return_embedding=True)
        logits_s = logits_all[b : 2 * b]
        ce = jnp.mean(_ce(logits_s, y))
        if config.method == "ot_inv":
            s_pert = jnp.concatenate([y, batch["inv_label"]])
            w = jnp.concatenate([jnp.ones((b,)), batch["inv_weight"].astype(jnp.float32)])
        else:
            s_pert, w = y, None
        reg = ot_regulariser(
            z_all[:b], y, z_all[b:], s_pert, w,
            epsilon=config.ot_epsilon, label_cost=config.label_cost,
            num_classes=config.num_classes,
        )  # fmt: skip
        loss = ce + config.ot_weight * reg
        metrics = {"adv_accuracy": jnp.mean(jnp.argmax(logits_s, -1) == y), "ot": reg}
        if config.method == "ot_inv":
            logits_v = logits_all[2 * b :]
            hit = (jnp.argmax(logits_v, -1) == batch["inv_label"]) * batch["inv_weight"]
            metrics["inv_target_rate"] = jnp.sum(hit) / jnp.maximum(jnp.sum(batch["inv_weight"]), 1)
        return loss, metrics

    return loss_fn
