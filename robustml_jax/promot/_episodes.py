"""Pre-training and evaluation episodes for the small from-scratch reproduction.

Pre-training mixes T5 span corruption with few-shot episodes. A share ``canonical_fraction`` of
the sentiment episodes answers with the fixed words ``negative`` / ``positive``
(:data:`CANONICAL_SENTIMENT_WORDS`: a skill the model can learn without reading its
demonstrations); the others, the domain task and the string tasks draw their label words at
random per episode (so the answer can only be read off the demonstrations). Held-out sources
(MR, Blitzer electronics/kitchen sentiment; the ``first_word`` string task) never enter
pre-training; MR and electronics are asked with the canonical words (a held-out domain in a
known format), kitchen with ``no`` / ``yes`` and ``first_word`` need in-context learning.
Everything here is host-side NumPy/SentencePiece; batches are a pure function of ``(seed,
step)``, so a killed pre-training run resumes with the same data.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np

from robustml_jax.promot import _data, _tasks
from robustml_jax.text import pad_batch, span_corruption

__all__ = [
    "CANONICAL_SENTIMENT_WORDS",
    "HELDOUT_LABEL_WORDS",
    "PRETRAIN_STRING_TASKS",
    "HELDOUT_STRING_TASKS",
    "EpisodeSampler",
    "EvalSet",
    "string_answer",
]

PRETRAIN_STRING_TASKS = ("copy", "last_word")
HELDOUT_STRING_TASKS = ("first_word",)
# label words of the pre-training sentiment episodes that do not draw theirs at random
CANONICAL_SENTIMENT_WORDS = ("negative", "positive")
# label words of the held-out sentiment sets (0 = negative review, 1 = positive)
HELDOUT_LABEL_WORDS = {
    "mr": CANONICAL_SENTIMENT_WORDS,
    "blitzer_electronics": CANONICAL_SENTIMENT_WORDS,
    "blitzer_kitchen": ("no", "yes"),
}


def string_answer(task: str, words: Sequence[str]) -> str:
    """The answer of a string task on a word list."""
    if task == "copy":
        return " ".join(words)
    if task == "last_word":
        return words[-1]
    if task == "first_word":
        return words[0]
    if task == "reverse":
        return " ".join(reversed(words))
    raise ValueError(f"unknown string task {task!r}")


class EvalSet(NamedTuple):
    """A fixed in-context evaluation set: prompts, target strings, template, chance level."""

    name: str
    prompts: list[str]
    targets: list[str]
    template: str
    chance: float
    label_words: tuple[str, ...]


class EpisodeSampler:
    """Builds pre-training batches and held-out in-context evaluation sets.

    Args:
      tokenizer: a :class:`SentencePieceTokenizer` (sentinels at the top).
      max_input_len: encoder budget T (prompts are shortened by dropping demonstrations).
      max_target_len: decoder budget L.
      seed: data seed.
      canonical_fraction: share of pre-training sentiment episodes answered with
        :data:`CANONICAL_SENTIMENT_WORDS` instead of random words, in ``[0, 1]``.
      zero_shot_fraction: share of those canonical episodes with no demonstration (plain
        classification: the sentiment signal a from-scratch model learns first).
    """

    def __init__(
        self,
        tokenizer,
        *,
        max_input_len: int = 128,
        max_target_len: int = 24,
        seed: int = 0,
        canonical_fraction: float = 0.7,
        zero_shot_fraction: float = 0.5,
    ):
        for name, v in (
            ("canonical_fraction", canonical_fraction),
            ("zero_shot_fraction", zero_shot_fraction),
        ):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        self.canonical_fraction = float(canonical_fraction)
        self.zero_shot_fraction = float(zero_shot_fraction)
        self.tok = tokenizer
        self.max_input_len = int(max_input_len)
        self.max_target_len = int(max_target_len)
        self.seed = int(seed)
        self.sources = {n: _data.load_sentiment(n, "train") for n in _data.PRETRAIN_SENTIMENT}
        counts = collections.Counter(
            w
            for t in self.sources["sst2"][0][:20000]
            for w in t.split()
            if re.fullmatch(r"[a-z]{3,9}", w)
        )
        ranked = [w for w, _ in counts.most_common(1200)][60:]
        # never a random label word: RTE's, the canonical and the held-out label words
        reserved = {"true", "false", *CANONICAL_SENTIMENT_WORDS}
        reserved |= {w for ws in HELDOUT_LABEL_WORDS.values() for w in ws}
        self.words = [w for w in ranked if w not in reserved]
        self.span_texts = [t for n in _data.PRETRAIN_SENTIMENT for t in self.sources[n][0][:6000]]

    # ------------------------------------------------------------------ episodes
    def _fit(self, template: str, demos, query) -> str:
        demos = list(demos)
        while True:
            text = _tasks.build_prompt(template, demos, query)
            if len(self.tok.encode([text])[0]) + 1 <= self.max_input_len or not demos:  # + EOS
                return text
            demos = demos[1:]

    def _short(self, text: str, n: int = 18) -> str:
        return " ".join(text.split()[:n])

    def sentiment_episode(
        self, rng, texts, labels, k: int, words: Sequence[str], query_label: int | None = None
    ):
        """k demonstrations and a query of a binary task answered with ``words[label]``
        (the query drawn from class ``query_label`` if given)."""
        idx = rng.choice(len(texts), size=k + 1, replace=False)
        if query_label is not None:
            pool = np.flatnonzero(np.asarray(labels) == query_label)
            q = int(pool[rng.integers(len(pool))])
            idx = np.asarray([*[int(i) for i in idx if i != q][:k], q], dtype=np.int64)
        demos = [({"text": self._short(texts[i])}, words[labels[i]]) for i in idx[:k]]
        q = idx[k]
        return self._fit("classify", demos, {"text": self._short(texts[q])}), words[labels[q]]

    def _random_words(self, rng, n: int) -> list[str]:
        return [self.words[i] for i in rng.choice(len(self.words), size=n, replace=False)]

    def string_episode(self, rng, task: str, k: int):
        demos = []
        for _ in range(k + 1):
            ws = self._random_words(rng, int(rng.integers(2, 6)))
            demos.append(({"text": " ".join(ws)}, string_answer(task, ws)))
        q, a = demos[-1]
        return self._fit("string", demos[:-1], q), a

    def pretrain_episode(self, rng):
        """One pre-training (input text, answer) few-shot episode."""
        kind = rng.choice(["sentiment", "domain", "copy", "last_word"], p=[0.6, 0.1, 0.1, 0.2])
        k = int(rng.integers(1, 5))
        if kind == "sentiment":
            name = _data.PRETRAIN_SENTIMENT[int(rng.integers(len(_data.PRETRAIN_SENTIMENT)))]
            texts, labels = self.sources[name]
            if rng.random() < self.canonical_fraction:
                k = 0 if rng.random() < self.zero_shot_fraction else k
                return self.sentiment_episode(rng, texts, labels, k, CANONICAL_SENTIMENT_WORDS)
            return self.sentiment_episode(rng, texts, labels, k, self._random_words(rng, 2))
        if kind == "domain":
            a, b = rng.choice(len(_data.PRETRAIN_SENTIMENT), size=2, replace=False)
            ta = self.sources[_data.PRETRAIN_SENTIMENT[a]][0]
            tb = self.sources[_data.PRETRAIN_SENTIMENT[b]][0]
            pick = rng.integers(0, 2, size=k + 1)
            texts = [
                ta[rng.integers(len(ta))] if p == 0 else tb[rng.integers(len(tb))] for p in pick
            ]
            return self.sentiment_episode(rng, texts, pick, k, self._random_words(rng, 2))
        return self.string_episode(rng, str(kind), k)

    # ------------------------------------------------------------------ batches
    def pretrain_batch(self, step: int, batch_size: int, span_fraction: float = 0.15) -> dict:
        """``{'inputs' int [B, T], 'targets' int [B, L]}`` for pre-training step ``step``
        (a share ``span_fraction`` of the rows are span corruption)."""
        rng = np.random.default_rng([self.seed, int(step)])
        n_span = int(round(batch_size * span_fraction))
        inputs, targets = [], []
        s0, s1 = self.tok.sentinel_id(0), self.tok.sentinel_id(1)
        for _ in range(batch_size - n_span):
            x, y = self.pretrain_episode(rng)
            inputs.append(self.tok.encode([x])[0][: self.max_input_len - 1] + [1])
            targets.append([s0] + self.tok.encode([y])[0][: self.max_target_len - 4] + [s1, 1])
        if n_span:
            chunk = 100
            rows = []
            for _ in range(n_span):
                ids: list[int] = []
                while len(ids) < chunk:
                    ids += self.tok.encode([self.span_texts[rng.integers(len(self.span_texts))]])[0]
                start = int(rng.integers(0, len(ids) - chunk + 1))
                rows.append(ids[start : start + chunk])
            key = jax.random.fold_in(jax.random.key(self.seed), int(step))
            sc = span_corruption(key, np.asarray(rows, np.int32), sentinel_start=s0, eos_id=1)
            inputs += [list(r) for r in np.asarray(sc.inputs)]
            targets += [list(r)[: self.max_target_len] for r in np.asarray(sc.targets)]
        order = rng.permutation(batch_size)
        enc = pad_batch([inputs[i] for i in order], max_len=self.max_input_len).tokens
        dec = pad_batch(
            [targets[i] for i in order], max_len=self.max_target_len, truncate=True
        ).tokens
        return {"inputs": enc, "targets": dec}

    # ------------------------------------------------------------------ evaluation
    def heldout_sets(self, n: int, k: int | Sequence[int], seed: int = 1) -> list[EvalSet]:
        """Held-out in-context tasks: sentiment on MR / electronics / kitchen with the label
        words of :data:`HELDOUT_LABEL_WORDS` (queries alternate between the two classes), and
        the ``first_word`` string task; ``n`` queries each, ``k`` demonstrations.

        ``k`` may be a sequence of shot counts: with two or more, every task is built once per
        count, named ``<task>_<k>shot`` (e.g. ``mr_sentiment_0shot``), in the order given; a
        single count keeps the plain names."""
        if not isinstance(k, (int, np.integer)):
            ks = tuple(int(v) for v in k)
            if not ks or min(ks) < 0 or len(set(ks)) != len(ks):
                raise ValueError(f"shots must be distinct non-negative integers, got {tuple(k)}")
            if len(ks) == 1:
                return self.heldout_sets(n, ks[0], seed)
            return [
                s._replace(name=f"{s.name}_{kk}shot")
                for kk in ks
                for s in self.heldout_sets(n, kk, seed)
            ]
        if k < 0:
            raise ValueError(f"shots must be a non-negative integer, got {k}")
        k = int(k)
        rng = np.random.default_rng([seed, k])
        out = []
        for name, words in HELDOUT_LABEL_WORDS.items():
            texts, labels = _data.load_sentiment(name, "eval")
            prompts, targets = [], []
            for i in range(n):  # balanced queries: a constant answer scores 50%
                p, a = self.sentiment_episode(rng, texts, labels, k, words, query_label=i % 2)
                prompts.append(p)
                targets.append(a)
            out.append(EvalSet(f"{name}_sentiment", prompts, targets, "classify", 0.5, words))
        for task in HELDOUT_STRING_TASKS:
            prompts, targets = [], []
            for _ in range(n):
                p, a = self.string_episode(rng, task, k)
                prompts.append(p)
                targets.append(a)
            out.append(EvalSet(task, prompts, targets, "string", 0.0, ()))
        return out
