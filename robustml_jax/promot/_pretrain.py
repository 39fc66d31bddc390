"""Pre-training the small from-scratch T5 of the CPU reproduction (cached, resumable).

Span corruption plus few-shot episodes with per-episode random label words
(:class:`EpisodeSampler`), Adam with T5's inverse-square-root schedule (independent of the
total step count, so a run can be extended), trained with the shared :func:`core.train.fit`
(orbax checkpoints; a killed run resumes). The result is written once with
:func:`t5.save_t5x_checkpoint` to ``<workdir>/t5x/checkpoint_<steps>``.
"""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import optax

from robustml_jax.core import train
from robustml_jax.models import t5
from robustml_jax.promot import _prompt

__all__ = [
    "PRETRAIN_CACHE_NAME",
    "export_latest",
    "pretrain",
    "pretrained_checkpoint",
    "small_t5_config",
]

# ``<cache dir>/promot/<PRETRAIN_CACHE_NAME>``: the cached model of the current recipe. The
# name changes with the recipe (v6: canonical sentiment words, half of them zero-shot; 15% span
# corruption; peak lr 5e-4 after 500 warm-up steps; tied logits; batch 32), so an older cached
# model is never loaded for a newer recipe.
PRETRAIN_CACHE_NAME = "pretrain_v6"


def small_t5_config(
    *,
    vocab_size: int = 4096,
    emb_dim: int = 128,
    num_layers: int = 2,
    mlp_dim: int = 384,
    num_heads: int = 4,
    dropout_rate: float = 0.0,
    logits_via_embedding: bool = True,
) -> t5.T5Config:
    """The reproduction's T5.1.1-style model (gated GELU, 32 buckets).

    The output layer is tied to the embedding by default (original T5): from scratch, tied
    logits learn to copy a word of the input several times faster (``NOTES.md``).
    """
    return t5.T5Config(
        vocab_size=vocab_size,
        emb_dim=emb_dim,
        num_heads=num_heads,
        head_dim=emb_dim // num_heads,
        mlp_dim=mlp_dim,
        num_encoder_layers=num_layers,
        num_decoder_layers=num_layers,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        dropout_rate=dropout_rate,
        logits_via_embedding=logits_via_embedding,
    )


def rsqrt_schedule(peak: float, warmup: int):
    """``peak * min(1, step / warmup) * sqrt(warmup / max(step, warmup))``."""

    def fn(step):
        s = jnp.maximum(step.astype(jnp.float32), 1.0)
        return peak * jnp.minimum(1.0, s / warmup) * jnp.sqrt(warmup / jnp.maximum(s, warmup))

    return fn


def pretrained_checkpoint(workdir: str | pathlib.Path) -> pathlib.Path | None:
    """The newest exported t5x checkpoint under ``<workdir>/t5x``, or None."""
    d = pathlib.Path(workdir) / "t5x"
    found = (
        sorted(d.glob("checkpoint_*"), key=lambda p: int(p.name.split("_")[1]))
        if d.exists()
        else []
    )
    return found[-1] if found else None


def _optimizer(learning_rate: float, warmup: int) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(rsqrt_schedule(learning_rate, warmup), weight_decay=0.01),
    )


def export_latest(
    workdir: str | pathlib.Path,
    *,
    config: t5.T5Config,
    learning_rate: float = 5e-4,
    warmup: int = 500,
    seed: int = 0,
) -> pathlib.Path:
    """Exports the newest orbax checkpoint of an (unfinished) pre-training run as t5x.

    For stopping a long pre-training early: the t5x checkpoint is named after the step
    reached, and :func:`pretrain` with ``num_steps`` equal to that step returns it.
    """
    from robustml_jax.core import checkpoint as ckpt_lib

    workdir = pathlib.Path(workdir)
    ck = ckpt_lib.Checkpointer(workdir / "train" / "checkpoints")
    step = ck.latest_step()
    if step is None:
        raise FileNotFoundError(f"no pre-training checkpoint under {workdir / 'train'}")
    params = {"model": t5.init_params(jax.random.key(seed), config)}
    state = ck.restore(train.create_train_state(params, _optimizer(learning_rate, warmup)))
    ck.close()
    out = workdir / "t5x" / f"checkpoint_{step}"
    if not out.exists():
        t5.save_t5x_checkpoint(out, jax.device_get(state.params["model"]), step=int(step))
    return out


def pretrain(
    workdir: str | pathlib.Path,
    sampler,
    *,
    config: t5.T5Config,
    num_steps: int,
    batch_size: int = 32,
    learning_rate: float = 5e-4,
    warmup: int = 500,
    seed: int = 0,
    checkpoint_every: int = 100,
    progress: bool = True,
) -> pathlib.Path:
    """Pre-trains (or resumes) and exports the t5x checkpoint; returns its path.

    If ``<workdir>/t5x/checkpoint_<num_steps>`` exists, nothing is trained.
    """
    workdir = pathlib.Path(workdir)
    out = workdir / "t5x" / f"checkpoint_{num_steps}"
    if out.exists():
        return out
    params = {"model": t5.init_params(jax.random.key(seed), config)}
    tx = _optimizer(learning_rate, warmup)
    loss_fn = functools.partial(_prompt.seq2seq_loss, config=config)
    state, _ = train.fit(
        params,
        tx=tx,
        loss_fn=loss_fn,
        batch_fn=lambda step: sampler.pretrain_batch(step, batch_size),
        key=jax.random.key(seed + 1),
        workdir=workdir / "train",
        num_steps=num_steps,
        log_every=20,
        checkpoint_every=checkpoint_every,
        max_to_keep=2,
        progress=progress,
        desc="pretrain",
    )
    return t5.save_t5x_checkpoint(out, jax.device_get(state.params["model"]), step=num_steps)
