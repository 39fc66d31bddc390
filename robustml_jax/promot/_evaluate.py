"""The in-context evaluation harness and the format-specialisation probes of one run.

:class:`Evaluator` decodes batches with jitted greedy decoding (with or without a soft prompt),
post-processes outputs as the paper does, and returns per-task metrics, the normalised average,
the share of held-out outputs that are the fine-tuned task's label words, and per-group
cosines between the RTE gradient and the label-shuffled (format) gradient.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import numpy as np

from robustml_jax.models import t5
from robustml_jax.promot import _prompt, _specialisation, _tasks
from robustml_jax.promot._pipeline import check_budget, encode_texts

__all__ = ["Evaluator", "decode_texts"]


@functools.lru_cache(maxsize=8)
def _decoder(config: t5.T5Config, max_decode_len: int, with_prompt: bool):
    if with_prompt:
        return jax.jit(
            lambda p, prompt, x: _prompt.prompted_greedy_decode(
                p, prompt, x, config=config, max_decode_len=max_decode_len
            )
        )
    return jax.jit(
        lambda p, x: _prompt.prompted_greedy_decode(
            p, None, x, config=config, max_decode_len=max_decode_len
        )
    )


def decode_texts(
    tok,
    params,
    tokens: np.ndarray,
    *,
    config: t5.T5Config,
    prompt=None,
    max_decode_len: int = 8,
    batch_size: int = 64,
) -> list[str]:
    """Greedy outputs (as text, sentinels kept) of ``tokens [N, T]``, in fixed-size batches
    (the last one padded) so one compiled program serves every batch."""
    fn = _decoder(config, int(max_decode_len), prompt is not None)
    out: list[str] = []
    n = len(tokens)
    for i in range(0, n, batch_size):
        chunk = tokens[i : i + batch_size]
        pad = batch_size - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
        seqs = np.asarray(fn(params, prompt, chunk) if prompt is not None else fn(params, chunk))
        out += [tok.decode([int(t) for t in row if t > 1]) for row in seqs[: batch_size - pad]]
    return out


class Evaluator:
    """Evaluates a run's parameters on RTE dev and the held-out in-context sets.

    Args:
      tok: the tokenizer.
      config: model config.
      rte_dev: ``(texts, label_words)`` of RTE dev in the fine-tuning format.
      rte_dev_1shot: the same with the 1-shot example prepended (or None).
      heldout: :class:`EvalSet` list (k-shot prompts, evaluated without the prompt).
      grad_batch: ``{'inputs', 'targets'}`` RTE training rows for the gradient cosines, or None.
      max_input_len: encoder budget T (including a prompt of ``prompt_length``).
      prompt_length: P.
      fine_tuned_label_words: the label words whose leakage is measured (RTE: True/False).
    """

    def __init__(
        self,
        tok,
        config,
        *,
        rte_dev,
        rte_dev_1shot,
        heldout,
        grad_batch,
        max_input_len: int,
        prompt_length: int,
        fine_tuned_label_words: Sequence[str] = _tasks.RTE_LABEL_WORDS,
    ):
        self.tok, self.config = tok, config
        self.label_words = tuple(fine_tuned_label_words)
        text_budget = check_budget(prompt_length, max_input_len)
        self.rte = {
            False: (encode_texts(tok, rte_dev[0], max_input_len, truncate="left"), rte_dev[1]),
            True: (encode_texts(tok, rte_dev[0], text_budget, truncate="left"), rte_dev[1]),
        }
        if rte_dev_1shot is not None:
            self.rte_1shot = (
                encode_texts(tok, rte_dev_1shot[0], text_budget, truncate="left"),
                rte_dev_1shot[1],
            )
        self.heldout = [(s, encode_texts(tok, s.prompts, max_input_len)) for s in heldout]
        self.grad_batch = grad_batch
        self._grad_fn = None

    def rte_accuracy(self, model_params, prompt=None, one_shot: bool = False) -> float:
        tokens, targets = self.rte_1shot if one_shot else self.rte[prompt is not None]
        outs = decode_texts(
            self.tok, model_params, tokens, config=self.config, prompt=prompt, max_decode_len=4
        )
        return _tasks.score_outputs(outs, targets, "rte")["accuracy"]

    def heldout_metrics(self, model_params) -> dict[str, float]:
        """Per-task scores, ``norm_avg`` and ``label_share`` (share of held-out outputs whose
        first word is a fine-tuned label word), all without a prompt."""
        out, scores, chance, shares = {}, {}, {}, []
        for s, tokens in self.heldout:
            outs = decode_texts(
                self.tok, model_params, tokens, config=self.config, max_decode_len=8
            )
            m = _tasks.score_outputs(outs, s.targets, s.template)
            scores[s.name] = m.get("accuracy", m.get("exact_match"))
            chance[s.name] = s.chance
            share = _tasks.label_word_share(outs, self.label_words, s.template)
            out[f"{s.name}"] = scores[s.name]
            out[f"{s.name}_label_share"] = share
            shares.append(share)
        out["norm_avg"] = _tasks.normalised_average(scores, chance)
        out["label_share"] = float(np.mean(shares))
        return out

    def grad_cosines(self, params: Mapping) -> dict[str, float]:
        if self.grad_batch is None:
            return {}
        if self._grad_fn is None:

            def loss(model, prompt, batch):
                p = {"model": model} if prompt is None else {"model": model, "prompt": prompt}
                return _prompt.seq2seq_loss(p, batch, jax.random.key(0), config=self.config)

            self._grad_fn = jax.jit(
                lambda m, pr, b, k: _specialisation.group_cosines(
                    jax.grad(lambda mm: loss(mm, pr, b)[0])(m),
                    jax.grad(lambda mm: loss(mm, pr, _shuffle(b, k))[0])(m),
                )
            )
        prompt = params.get("prompt")
        if prompt is not None and prompt.ndim == 3:
            prompt = prompt[0]
        cos = self._grad_fn(params["model"], prompt, self.grad_batch, jax.random.key(7))
        return {f"cos_{k}": float(v) for k, v in cos.items()}

    def make_eval(self, kind: str):
        """``eval_fn(params) -> metrics`` for :func:`run_method` (``kind``: ``prompt``,
        ``model``, with ``_1shot`` for the 1-shot inputs)."""
        one_shot = kind.endswith("_1shot")

        def eval_fn(params):
            prompt = params.get("prompt")
            if prompt is not None and prompt.ndim == 3:
                prompt = prompt[0]  # task 0 is RTE in the mixture
            m = {"rte_accuracy": self.rte_accuracy(params["model"], prompt, one_shot)}
            if kind.startswith("model"):
                m.update(self.heldout_metrics(params["model"]))
                m.update(self.grad_cosines(params))
            return m

        return eval_fn


def _shuffle(batch, key):
    perm = jax.random.permutation(key, batch["targets"].shape[0])
    return {**batch, "targets": batch["targets"][perm]}
