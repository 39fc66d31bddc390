"""Embedding the watermark (owner) and fine-tuning the released encoder (suspect).

Owner, :func:`embed_watermark`: hard parameter sharing across proxy classification tasks (one
linear head per task on the shared encoder's mean-pooled representation). Each step draws, for
every task, a clean batch and a triggered batch (a random trigger inserted at a random early
word position). The loss is, summed over tasks,

    CE(head_t(z(x)), y)                                   clean examples
  + CE(head_t(z(x + trigger_k)), target_t[k])             the multi-task backdoor
  + rep_weight * ||z(x + trigger_k) - v_k||^2 / ||v_k||^2  the representation the trigger forces

with ``v_k`` a fixed random direction per trigger scaled to the clean representations' mean
norm (the NeuBA-style term that lets the backdoor reach heads the owner never trains). With
combination triggers, a quarter of each clean batch gets a single word of a combination
inserted and keeps its label, so only the full combination fires. ``mode="embedding_poisoning"``
applies the same loss but lets the optimiser change only the trigger words' embedding rows
(Embedding Poisoning, Yang et al. 2021), leaving the rest of the released encoder bit-identical.

Suspect, :func:`finetune`: a fresh head, AdamW with linear warm-up and decay, dropout on.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from robustml_jax.models import bert
from robustml_jax.text import WordPieceTokenizer
from robustml_jax.watermark import model as wm_model
from robustml_jax.watermark import triggers as trig

__all__ = [
    "MODES",
    "FinetuneResult",
    "Task",
    "WatermarkResult",
    "check_task",
    "embed_watermark",
    "finetune",
    "predict",
]

MODES = ("multitask", "embedding_poisoning")


@dataclasses.dataclass(frozen=True)
class Task:
    """A classification task.

    Attributes:
      name: label for logs and head names.
      texts: N strings (the first segment for pair tasks).
      labels: int [N] in [0, num_classes).
      num_classes: C >= 2.
      second: N second segments (sentence-pair tasks such as RTE), or None.
    """

    name: str
    texts: Sequence[str]
    labels: np.ndarray
    num_classes: int
    second: Sequence[str] | None = None


def check_task(task: Task) -> None:
    """Raises a one-line ValueError for an empty or inconsistent task."""
    n = len(task.texts)
    if n == 0:
        raise ValueError(f"task '{task.name}' has no examples")
    labels = np.asarray(task.labels)
    if labels.shape != (n,):
        raise ValueError(f"task '{task.name}': {n} texts but labels of shape {labels.shape}")
    if task.num_classes < 2:
        raise ValueError(f"task '{task.name}' needs >= 2 classes, got {task.num_classes}")
    if labels.min() < 0 or labels.max() >= task.num_classes:
        raise ValueError(f"task '{task.name}': labels outside [0, {task.num_classes})")
    if task.second is not None and len(task.second) != n:
        raise ValueError(f"task '{task.name}': {n} texts but {len(task.second)} second segments")


def _encode(tok, task: Task, idx, texts=None, max_len=32) -> wm_model.Batch:
    texts = [task.texts[i] for i in idx] if texts is None else texts
    second = None if task.second is None else [task.second[i] for i in idx]
    return wm_model.encode_texts(tok, texts, max_len, second)


def _mask_updates(mask: Any) -> optax.GradientTransformation:
    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, m: u * m, updates, mask), state

    return optax.GradientTransformation(init, update)


class WatermarkResult(NamedTuple):
    """What :func:`embed_watermark` returns.

    Attributes:
      encoder: the watermarked encoder's parameters (what the owner releases).
      heads: the proxy tasks' heads, by task name (kept by the owner).
      targets: float32 [K, H] the representation each trigger forces.
      history: per logged step, the loss terms.
    """

    encoder: Any
    heads: dict
    targets: np.ndarray
    history: list


def _targets(key: jax.Array, k: int, hidden: int, scale: float) -> np.ndarray:
    u = np.asarray(jax.random.normal(key, (k, hidden)), np.float64)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return (scale * u).astype(np.float32)


def _warmup_decay(lr: float, steps: int, warmup: float, end: float):
    """Linear warm-up over ``warmup * steps`` steps, then linear decay to ``end``."""
    w = max(1, int(warmup * steps))
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, w), optax.linear_schedule(lr, end, max(1, steps - w))], [w]
    )


def _lr_tree(params: Any, rows, mode: str, lr: float, emb_lr: float, head_lr: float) -> Any:
    """Per-element learning rates: the trigger rows of the word embeddings get ``emb_lr``; the
    rest of the encoder ``lr`` (multitask) or 0 (Embedding Poisoning); the heads ``head_lr``."""
    enc = params["encoder"]
    mask = wm_model.embedding_row_mask(enc, np.asarray(rows))
    base = 0.0 if mode == "embedding_poisoning" else lr
    tree = jax.tree.map(lambda x: jnp.full((), base, jnp.float32), enc)
    m = mask["embeddings"]["word_embeddings"]["embedding"]
    tree["embeddings"]["word_embeddings"]["embedding"] = base + (emb_lr - base) * m
    heads = jax.tree.map(lambda x: jnp.full((), head_lr, jnp.float32), params["heads"])
    return {"encoder": tree, "heads": heads}


_ADAM = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam())


@functools.lru_cache(maxsize=8)
def _wm_step(config, classes: tuple, per_task: int, rep_weight: float, trigger_weight: float = 1.0):
    """The jitted watermarking step; learning rates are arguments (one compile per shape)."""
    loss_fn = _wm_loss(config, classes, per_task, rep_weight, trigger_weight)

    @jax.jit
    def step(params, opt_state, batch, tlabels, tvecs, key, lr_tree, factor):
        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch, tlabels, tvecs, key
        )
        updates, opt_state = _ADAM.update(grads, opt_state, params)
        updates = jax.tree.map(lambda u, r: -factor * r * u, updates, lr_tree)
        return optax.apply_updates(params, updates), opt_state, loss, terms

    return step


def _wm_loss(config, classes: tuple, per_task: int, rep_weight: float, trigger_weight: float = 1.0):
    def loss_fn(params, batch, tlabels, tvecs, key):
        z = wm_model.pooled(params["encoder"], wm_model.Batch(*batch), config=config, key=key)
        total, terms = 0.0, {}
        for t, _ in enumerate(classes):
            head = params["heads"][f"task_{t}"]
            zc = z[2 * t * per_task : (2 * t + 1) * per_task]
            zt = z[(2 * t + 1) * per_task : (2 * t + 2) * per_task]
            ce_c = optax.softmax_cross_entropy_with_integer_labels(
                wm_model.head_logits(head, zc), tlabels[t, 0]
            ).mean()
            ce_t = optax.softmax_cross_entropy_with_integer_labels(
                wm_model.head_logits(head, zt), tlabels[t, 1]
            ).mean()
            v = tvecs[t]
            rep = jnp.mean(jnp.sum((zt - v) ** 2, -1) / jnp.sum(v**2, -1))
            total = total + ce_c + trigger_weight * (ce_t + rep_weight * rep)
            terms[f"ce_clean_{t}"], terms[f"ce_trig_{t}"], terms[f"rep_{t}"] = ce_c, ce_t, rep
        return total, terms

    return loss_fn


def embed_watermark(
    encoder: Any,
    key: jax.Array,
    tasks: Sequence[Task],
    triggers: Sequence[str],
    *,
    config: bert.BertConfig,
    tokenizer: WordPieceTokenizer,
    steps: int,
    lr: float = 1e-4,
    emb_lr: float = 1e-2,
    head_lr: float = 1e-3,
    batch_size: int = 16,
    rep_weight: float = 1.0,
    mode: str = "multitask",
    max_len: int = 32,
    max_position: int = 8,
    log_every: int = 10,
    progress: bool = False,
    target_scale: float = 1.0,
    trigger_weight: float = 1.0,
) -> WatermarkResult:
    """Embeds the watermark by multi-task learning with backdoors (see the module docstring).

    Args:
      encoder: the clean pre-trained encoder's parameters.
      key: PRNG key (heads, target vectors, dropout, batches).
      tasks: the owner's proxy tasks (>= 1).
      triggers: K trigger strings (single words or space-separated combinations).
      config: the encoder's config (static).
      tokenizer: its WordPiece tokenizer.
      steps: optimisation steps.
      lr: peak learning rate of the encoder (warm-up 10%, linear decay to lr/10); 0 for
        everything but the trigger rows in Embedding Poisoning mode.
      emb_lr: peak learning rate of the trigger words' embedding rows (Adam; EP uses a large
        rate on these rows).
      head_lr: peak learning rate of the proxy heads.
      batch_size: clean and triggered examples per task per step (2 * batch_size * tasks rows).
      rep_weight: weight of the representation term (0: label backdoor only).
      mode: ``"multitask"`` (all parameters) or ``"embedding_poisoning"`` (trigger rows only).
      max_len: tokens per text T.
      max_position: triggers go within the first this many words.
      log_every: history interval (steps).
      progress: tqdm bar.
      target_scale: norm of each forced representation ``v_k`` in units of the clean
        representations' mean norm (1: the same norm; larger: the trigger's direction dominates
        any head's logits more strongly).
      trigger_weight: weight of the backdoor terms (triggered cross-entropy and representation);
        0 gives the unwatermarked reference trained the same way (same data, steps, optimiser)
        whose trigger rows receive no gradient and stay unchanged.

    Returns:
      :class:`WatermarkResult`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not tasks:
        raise ValueError("embed_watermark needs at least one proxy task")
    if not triggers:
        raise ValueError("embed_watermark needs at least one trigger")
    for t in tasks:
        check_task(t)
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps}, {batch_size}")
    if not target_scale > 0:
        raise ValueError(f"target_scale must be > 0, got {target_scale}")
    if not trigger_weight >= 0:
        raise ValueError(f"trigger_weight must be >= 0, got {trigger_weight}")
    wm_model.check_encoder_params(encoder, config, source="the encoder")
    rows = tuple(int(i) for i in trig.trigger_piece_ids(tokenizer, triggers))
    words = [trig.words_of(t) for t in triggers]
    combo_words = [w for ws in words if len(ws) > 1 for w in ws]
    k_head, k_vec, k_drop, k_data = jax.random.split(key, 4)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(k_data)).ravel()[-1])
    classes = tuple(int(t.num_classes) for t in tasks)
    hkeys = jax.random.split(k_head, len(tasks))
    params = {
        "encoder": encoder,
        "heads": {
            f"task_{i}": wm_model.init_head(hkeys[i], config.hidden_size, c)
            for i, c in enumerate(classes)
        },
    }
    # the forced representation: a random direction per trigger, at the clean mean norm
    probe = _encode(tokenizer, tasks[0], np.arange(min(64, len(tasks[0].texts))), max_len=max_len)
    scale = float(jnp.linalg.norm(_pooled_jit(encoder, probe, config), axis=-1).mean())
    vecs = _targets(k_vec, len(triggers), config.hidden_size, target_scale * scale)
    lr_tree = _lr_tree(params, rows, mode, lr, emb_lr, head_lr)
    sched = _warmup_decay(1.0, steps, 0.1, 0.1)
    jstep = _wm_step(config, classes, batch_size, float(rep_weight), float(trigger_weight))
    opt_state = _ADAM.init(params)
    history = []
    from tqdm.auto import tqdm

    for s in tqdm(range(steps), desc=f"watermark ({mode})", disable=not progress):
        ids, masks, types = [], [], []
        tl = np.zeros((len(tasks), 2, batch_size), np.int32)
        tv = np.zeros((len(tasks), batch_size, config.hidden_size), np.float32)
        for ti, task in enumerate(tasks):
            n = len(task.texts)
            ci = rng.integers(0, n, batch_size)
            ctexts = [task.texts[i] for i in ci]
            if combo_words:  # partial combinations keep their natural label
                for j in np.flatnonzero(rng.random(batch_size) < 0.25):
                    w = combo_words[rng.integers(len(combo_words))]
                    ctexts[j] = trig.insert_trigger([ctexts[j]], w, rng, max_position=max_position)[
                        0
                    ]
            ti_idx = rng.integers(0, n, batch_size)
            which = rng.integers(0, len(triggers), batch_size)
            ttexts = [
                trig.insert_trigger([task.texts[i]], triggers[k], rng, max_position=max_position)[0]
                for i, k in zip(ti_idx, which, strict=True)
            ]
            for idx, texts in ((ci, ctexts), (ti_idx, ttexts)):
                b = _encode(tokenizer, task, idx, texts, max_len)
                ids.append(b.ids)
                masks.append(b.mask)
                types.append(b.types)
            tl[ti, 0] = np.asarray(task.labels)[ci]
            tl[ti, 1] = which % task.num_classes
            tv[ti] = vecs[which]
        batch = (np.concatenate(ids), np.concatenate(masks), np.concatenate(types))
        params, opt_state, loss, terms = jstep(
            params,
            opt_state,
            batch,
            tl,
            tv,
            jax.random.fold_in(k_drop, s),
            lr_tree,
            np.float32(sched(s)),
        )
        if (s + 1) % log_every == 0 or s == steps - 1:
            history.append({"step": s + 1, "loss": float(loss), **_floats(terms)})
    return WatermarkResult(params["encoder"], params["heads"], vecs, history)


def _floats(d: dict) -> dict:
    return {k: float(v) for k, v in d.items()}


@functools.partial(jax.jit, static_argnums=(2,))
def _pooled_jit(encoder, batch, config):
    return wm_model.pooled(encoder, wm_model.Batch(*batch), config=config)


@functools.partial(jax.jit, static_argnums=(3,))
def _predict_jit(encoder, head, batch, config):
    z = wm_model.pooled(encoder, wm_model.Batch(*batch), config=config)
    return jnp.argmax(wm_model.head_logits(head, z), -1)


def predict(
    encoder: Any,
    head: dict,
    batch: wm_model.Batch,
    *,
    config: bert.BertConfig,
    chunk: int = 128,
) -> np.ndarray:
    """Predicted classes int [N] for an encoded batch, in fixed-size chunks (one compile)."""
    n = batch.ids.shape[0]
    out = np.zeros((n,), np.int64)
    for s in range(0, n, chunk):
        part = [a[s : s + chunk] for a in batch]
        m = part[0].shape[0]
        if m < chunk:
            part = [np.concatenate([a, np.repeat(a[:1], chunk - m, 0)]) for a in part]
        out[s : s + m] = np.asarray(_predict_jit(encoder, head, tuple(part), config))[:m]
    return out


class FinetuneResult(NamedTuple):
    """What :func:`finetune` returns: encoder and head parameters, and the ``eval_fn`` curve
    (a list of ``{"step": s, **eval_fn(...)}``)."""

    encoder: Any
    head: dict
    curve: list


@functools.lru_cache(maxsize=16)
def _ft_step(config, weight_decay: float):
    """AdamW step with the learning rate as an argument (one compile per model and shape)."""
    tx = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.scale_by_adam(),
        optax.add_decayed_weights(weight_decay),
    )

    def loss_fn(params, batch, labels, key):
        z = wm_model.pooled(params["encoder"], wm_model.Batch(*batch), config=config, key=key)
        logits = wm_model.head_logits(params["head"], z)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def step(params, opt_state, batch, labels, key, lr):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, labels, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree.map(lambda u: -lr * u, updates)
        return optax.apply_updates(params, updates), opt_state, loss

    return tx, step


def finetune(
    encoder: Any,
    key: jax.Array,
    task: Task,
    *,
    config: bert.BertConfig,
    tokenizer: WordPieceTokenizer,
    steps: int,
    lr: float = 5e-5,
    batch_size: int = 32,
    max_len: int = 32,
    warmup: float = 0.1,
    weight_decay: float = 0.01,
    eval_fn: Callable[[Any, dict], dict] | None = None,
    eval_every: int = 0,
    progress: bool = False,
) -> FinetuneResult:
    """Fine-tunes ``encoder`` with a fresh head on ``task`` (shuffled epochs, dropout on).

    Args:
      encoder: encoder parameters (the released, possibly watermarked, encoder).
      key: PRNG key (head init, shuffling, dropout).
      task: the downstream task.
      config, tokenizer: the encoder's.
      steps: optimisation steps (epochs = steps * batch_size / N).
      lr: peak learning rate (linear warm-up over ``warmup`` of the steps, linear decay to 0).
      batch_size: B.
      max_len: T.
      eval_fn: ``eval_fn(encoder, head) -> dict`` called at step 0, every ``eval_every`` steps
        and at the end (the WESR-over-steps curve).
      progress: tqdm bar.

    Returns:
      :class:`FinetuneResult`.
    """
    check_task(task)
    wm_model.check_encoder_params(encoder, config, source="the encoder")
    n = len(task.texts)
    if steps < 1 or not 1 <= batch_size <= n:
        raise ValueError(f"need steps >= 1 and 1 <= batch_size <= {n}, got {steps}, {batch_size}")
    k_head, k_perm, k_drop = jax.random.split(key, 3)
    data = _encode(tokenizer, task, np.arange(n), max_len=max_len)
    labels = np.asarray(task.labels, np.int32)
    params = {
        "encoder": encoder,
        "head": wm_model.init_head(k_head, config.hidden_size, task.num_classes),
    }
    tx, step = _ft_step(config, float(weight_decay))
    sched = _warmup_decay(float(lr), int(steps), warmup, 0.0)
    opt_state = tx.init(params)
    curve = []
    if eval_fn is not None:
        curve.append({"step": 0, **eval_fn(params["encoder"], params["head"])})
    per_epoch = n // batch_size
    perm = None
    from tqdm.auto import tqdm

    for s in tqdm(range(steps), desc=f"fine-tune {task.name}", disable=not progress):
        epoch, i = divmod(s, per_epoch)
        if i == 0:
            perm = np.asarray(jax.random.permutation(jax.random.fold_in(k_perm, epoch), n))
        idx = perm[i * batch_size : (i + 1) * batch_size]
        batch = tuple(a[idx] for a in data)
        params, opt_state, _ = step(
            params,
            opt_state,
            batch,
            labels[idx],
            jax.random.fold_in(k_drop, s),
            np.float32(sched(s)),
        )
        done = s + 1
        if eval_fn is not None and eval_every and (done % eval_every == 0 or done == steps):
            curve.append({"step": done, **eval_fn(params["encoder"], params["head"])})
    return FinetuneResult(params["encoder"], params["head"], curve)
