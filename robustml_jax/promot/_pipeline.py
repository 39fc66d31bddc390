"""ProMoT's two stages and the baselines, on the shared trainer with frozen parameter subsets.

Every method trains the tree ``{'model': t5_params, 'prompt': [P, E] or [K, P, E]}`` with
:func:`core.train.fit`; :func:`core.train.freeze` masks which half an optimizer may change:

=====================  ==========================================  ==========================
method                 stage 1 (prompt, model frozen)              stage 2 (model)
=====================  ==========================================  ==========================
finetune               --                                          model, no prompt
prompt_tuning          prompt                                      --
promot                 prompt                                      model, prompt frozen
promot_1shot           prompt, inputs with a 1-shot example        model, prompt frozen
multitask_promot       one prompt per task (RTE, SST-2)            model on the mixture
multitask_finetune     --                                          model on the mixture
joint                  --                                          prompt and model together
fixed_random_prompt    -- (uniform random prompt)                  model, prompt frozen
=====================  ==========================================  ==========================

Each stage keeps the parameters of its best evaluation on the target task's validation set
(RTE dev accuracy; the stage-1 winner is what stage 2 starts from). At inference the prompt is
attached for the fine-tuned task only; other tasks are run on the bare model.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from robustml_jax.core import train
from robustml_jax.core.results import atomic_write_bytes
from robustml_jax.models import t5
from robustml_jax.promot import _prompt
from robustml_jax.text import pad_batch

__all__ = [
    "METHODS",
    "FinetuneConfig",
    "KeepBest",
    "check_budget",
    "encode_texts",
    "prompt_trainable",
    "model_trainable",
    "run_method",
    "task_loss",
]

METHODS = (
    "finetune",
    "prompt_tuning",
    "promot",
    "promot_1shot",
    "multitask_promot",
    "multitask_finetune",
    "joint",
    "fixed_random_prompt",
)


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of the fine-tuning stages (paper values in brackets).

    Attributes:
      prompt_length: P [100].
      prompt_init: ``'vocab'``, ``'class_labels'`` or ``'uniform'``.
      prompt_lr: stage-1 Adafactor learning rate [0.2].
      model_lr: stage-2 Adafactor learning rate [1e-3].
      prompt_steps: stage-1 steps [5000].
      model_steps: stage-2 steps [1000].
      batch_size: [64].
      label_smoothing: [0.1].
      eval_every: evaluate (and keep the best) every this many steps [stage 1: 1000, 2: 100].
      max_input_len: encoder budget T including the prompt.
      max_target_len: decoder length.
    """

    prompt_length: int = 100
    prompt_init: str = "vocab"
    prompt_lr: float = 0.2
    model_lr: float = 1e-3
    prompt_steps: int = 5000
    model_steps: int = 1000
    batch_size: int = 64
    label_smoothing: float = 0.1
    eval_every: int = 100
    max_input_len: int = 512
    max_target_len: int = 8


def check_budget(prompt_length: int, max_input_len: int) -> int:
    """Tokens left for the text; a one-line ValueError if the prompt fills the budget."""
    if prompt_length >= max_input_len:
        raise ValueError(
            f"prompt length {prompt_length} leaves no room within the input budget of "
            f"{max_input_len} tokens"
        )
    return max_input_len - prompt_length


def encode_texts(tok, texts: Sequence[str], max_len: int, *, truncate: str = "error") -> np.ndarray:
    """Token ids ``[N, max_len]`` (EOS appended, 0-padded).

    ``truncate``: ``'error'`` (a one-line ValueError naming the first text over budget),
    or ``'left'`` (drop leading tokens, keeping the question at the end).
    """
    rows = []
    for i, ids in enumerate(tok.encode(list(texts))):
        ids = list(ids) + [1]
        if len(ids) > max_len:
            if truncate == "error":
                raise ValueError(
                    f"text {i} has {len(ids)} tokens, more than the input budget of {max_len}"
                )
            ids = ids[len(ids) - max_len :]
        rows.append(ids)
    return pad_batch(rows, max_len=max_len).tokens


def prompt_trainable(params: Mapping) -> dict:
    """Mask training only the prompt."""
    return {"model": jax.tree.map(lambda _: False, params["model"]), "prompt": True}


def model_trainable(params: Mapping) -> dict:
    """Mask training the model only (prompt, if any, frozen)."""
    out = {"model": jax.tree.map(lambda _: True, params["model"])}
    if "prompt" in params:
        out["prompt"] = False
    return out


def _all_trainable(params: Mapping) -> dict:
    return jax.tree.map(lambda _: True, params)


def task_loss(params, batch, rng, *, config: t5.T5Config, label_smoothing: float, dropout: bool):
    """:func:`seq2seq_loss` choosing each row's prompt by ``batch['task']`` for [K, P, E]."""
    view = dict(params)
    prompt = params.get("prompt")
    if prompt is not None and prompt.ndim == 3:
        view["prompt"] = prompt[batch["task"]]
    inner = {"inputs": batch["inputs"], "targets": batch["targets"]}
    return _prompt.seq2seq_loss(
        view, inner, rng, config=config, label_smoothing=label_smoothing, dropout=dropout
    )


def _adafactor(lr: float, *, parameter_scale: bool) -> optax.GradientTransformation:
    # t5x / prompt-tuning: decay rate 0.8, no momentum; prompts without parameter scaling.
    return optax.adafactor(lr, decay_rate=0.8, multiply_by_parameter_scale=parameter_scale)


class KeepBest:
    """Keeps the parameters of the best evaluation (by ``metric``, higher is better, ties to
    the later one) on disk.

    Wraps an ``eval_fn(params) -> metrics`` for :func:`core.train.fit`; the best parameters are
    written to ``path`` (flax msgpack, atomically) so a resumed run still knows them.
    """

    def __init__(self, path: pathlib.Path, eval_fn: Callable, metric: str, like: Any):
        self.path, self.eval_fn, self.metric = pathlib.Path(path), eval_fn, metric
        self.history: list[dict] = []
        self.best_score, self.best_params = -np.inf, None
        if self.path.exists():
            blob = flax.serialization.msgpack_restore(self.path.read_bytes())
            self.best_score = float(blob["score"])
            self.best_params = flax.serialization.from_state_dict(like, blob["params"])

    def __call__(self, params) -> dict:
        metrics = self.eval_fn(params)
        self.history.append(metrics)
        score = float(metrics[self.metric])
        # Ties go to the later evaluation: with accuracy 0 everywhere (a stage that has not
        # learnt the output format yet) the trained parameters, not the initial ones, win.
        if score >= self.best_score:
            self.best_score = score
            self.best_params = jax.device_get(params)
            blob = {"score": score, "params": flax.serialization.to_state_dict(self.best_params)}
            atomic_write_bytes(self.path, flax.serialization.msgpack_serialize(blob))
        return metrics


def run_stage(
    workdir: pathlib.Path,
    params: Mapping,
    *,
    trainable: Callable,
    lr: float,
    parameter_scale: bool,
    steps: int,
    data: Mapping[str, np.ndarray],
    config: t5.T5Config,
    cfg: FinetuneConfig,
    eval_fn: Callable,
    key: jax.Array,
    desc: str,
    metric: str = "rte_accuracy",
) -> tuple[Any, list[dict]]:
    """One stage: ``steps`` of frozen-subset Adafactor, keep-best on ``metric``.

    Returns the best parameters (or the initial ones if no evaluation beat them) and the
    evaluation history (step 0 first).
    """
    workdir = pathlib.Path(workdir)
    tx = train.freeze(_adafactor(lr, parameter_scale=parameter_scale), trainable)
    keep = KeepBest(workdir / "best.msgpack", eval_fn, metric, params)
    step0 = workdir / "eval_step0.json"
    if not step0.exists():
        first = dict(keep(params))  # step 0: the starting point competes too
        atomic_write_bytes(step0, json.dumps({**first, "step": 0}).encode())
    loss = functools.partial(
        task_loss,
        config=config,
        label_smoothing=cfg.label_smoothing,
        dropout=config.dropout_rate > 0,
    )
    batch_key, step_key = jax.random.split(key)
    train.fit(
        params,
        tx=tx,
        loss_fn=loss,
        batch_fn=train.epoch_batches(
            dict(data), min(cfg.batch_size, len(data["inputs"])), batch_key
        ),
        key=step_key,
        workdir=workdir,
        num_steps=steps,
        eval_fn=keep,
        eval_every=cfg.eval_every,
        checkpoint_every=steps,
        log_every=max(1, cfg.eval_every),
        max_to_keep=1,
        progress=False,
        desc=desc,
    )
    # The evaluation history from the files (complete after a resume): step 0, then the
    # trainer's eval rows.
    history = [json.loads(step0.read_text())]
    with open(workdir / "metrics.jsonl") as f:
        for line in f:
            row = json.loads(line)
            if row.get("split") == "eval":
                history.append({k: v for k, v in row.items() if k != "split"})
    best = keep.best_params if keep.best_params is not None else params
    return best, history


def run_method(
    method: str,
    workdir: str | pathlib.Path,
    pretrained: Mapping,
    *,
    config: t5.T5Config,
    cfg: FinetuneConfig,
    data: Mapping[str, Mapping[str, np.ndarray]],
    make_eval: Callable[[str], Callable],
    key: jax.Array,
) -> dict:
    """Runs one method end to end; returns ``{'params', 'history'}``.

    Args:
      method: one of :data:`METHODS`.
      workdir: this run's folder (stage sub-folders, checkpoints, best parameters).
      pretrained: T5 parameters to start from.
      config: model config (``dropout_rate`` is used in training).
      cfg: :class:`FinetuneConfig`.
      data: ``{'rte': {...}, 'rte_1shot': {...}, 'mixture': {...}}`` arrays with ``inputs``,
        ``targets`` and ``task`` rows (the mixture's task ids index the prompts).
      make_eval: ``make_eval(kind) -> eval_fn(params)`` with kind ``'prompt'`` (stage 1),
        ``'model'`` (stages that change the model) or ``'1shot'`` variants.
      key: PRNG key.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    workdir = pathlib.Path(workdir)
    k_prompt, k1, k2 = jax.random.split(key, 3)
    emb = pretrained["token_embedder"]["embedding"]
    one_shot = method == "promot_1shot"
    multi = method.startswith("multitask")
    if multi and "mixture" not in data:
        raise ValueError(f"method {method!r} needs data['mixture'] (RTE plus a second task)")
    train_data = data["rte_1shot"] if one_shot else data["mixture"] if multi else data["rte"]
    suffix = "_1shot" if one_shot else ""
    history: list[dict] = []
    params: dict = {"model": pretrained}
    if method in ("prompt_tuning", "promot", "promot_1shot", "multitask_promot", "joint"):
        if multi:
            keys = jax.random.split(k_prompt, 2)
            params["prompt"] = jnp.stack(
                [
                    _prompt.init_prompt(k, cfg.prompt_length, emb, method=cfg.prompt_init)
                    for k in keys
                ]
            )
        else:
            params["prompt"] = _prompt.init_prompt(
                k_prompt, cfg.prompt_length, emb, method=cfg.prompt_init
            )
    elif method == "fixed_random_prompt":
        params["prompt"] = _prompt.init_prompt(k_prompt, cfg.prompt_length, emb, method="uniform")
    stages = []
    if method in ("prompt_tuning", "promot", "promot_1shot", "multitask_promot"):
        # Stage 1: the soft prompt only, without Adafactor's parameter scaling.
        stages.append((1, prompt_trainable, cfg.prompt_lr, False, cfg.prompt_steps, k1, "prompt"))
    if method != "prompt_tuning":
        # Stage 2: the model (with the stage-1 prompt attached and frozen), or both for "joint".
        trainable = _all_trainable if method == "joint" else model_trainable
        stages.append((2, trainable, cfg.model_lr, True, cfg.model_steps, k2, "model"))
    for stage, trainable, lr, scale, steps, key, what in stages:
        params, h = run_stage(
            workdir / f"stage{stage}",
            params,
            trainable=trainable,
            lr=lr,
            parameter_scale=scale,
            steps=steps,
            data=train_data,
            config=config,
            cfg=cfg,
            eval_fn=make_eval(what + suffix),
            key=key,
            desc=f"{method}/{what}",
        )
        history += [{**x, "stage": stage} for x in h]
    return {"params": params, "history": history}
