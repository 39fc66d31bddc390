"""Task templates, k-shot prompts, the paper's output post-processing and metrics.

Templates follow the paper (App. B; PaLM-style): RTE ``"[premise] question: [hypothesis] Is it
true or false? answer:"`` -> True / False; QA ``"Q: [question] A:"``; translation
``"Translate [src] to [tgt]: [sentence]"``; summarization ``"Article: [article] One sentence
summary:"``. The reproduction adds a generic classification template ``"[text] answer:"`` (its
label words are given per episode) and a string template ``"input: [text] output:"``.

In-context prompts are the demonstrations (each its filled template, a space and the answer)
joined by newlines, then the query's template and the sentinel ``<extra_id_0>``, which a model
pre-trained with span corruption fills in. Post-processing (:func:`postprocess`) keeps the text
between ``<extra_id_0>`` and ``<extra_id_1>``, cuts it where the template's prefix appears again
(the model starting another example) and, for classification, keeps the first word.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "RTE_LABEL_WORDS",
    "TEMPLATES",
    "Template",
    "build_prompt",
    "exact_match",
    "format_example",
    "get_template",
    "label_word_share",
    "normalise_answer",
    "normalised_average",
    "postprocess",
    "score_outputs",
]


class Template(NamedTuple):
    """A task format.

    Attributes:
      pattern: ``str.format`` pattern over the example's fields.
      prefix: the text that starts a new example; the output is cut where it reappears.
      classification: whether outputs are read as one label word (accuracy) or compared as
        text (exact match).
    """

    pattern: str
    prefix: str
    classification: bool


TEMPLATES: dict[str, Template] = {
    "rte": Template(
        "{premise} question: {hypothesis} Is it true or false? answer:", "question:", True
    ),
    "cb": Template(
        "{premise} question: {hypothesis} true, false or neither? answer:", "question:", True
    ),
    "qa": Template("Q: {question} A:", "Q:", False),
    "translation": Template("Translate {src} to {tgt}: {text}", "Translate", False),
    "summarization": Template("Article: {text} One sentence summary:", "Article:", False),
    "classify": Template("{text} answer:", "answer:", True),
    "string": Template("input: {text} output:", "input:", False),
}

RTE_LABEL_WORDS = ("True", "False")  # label 0 = entailment -> "True"


def get_template(name: str) -> Template:
    """The template called ``name``; a one-line ValueError for an unknown one."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown task template {name!r}; known: {sorted(TEMPLATES)}")
    return TEMPLATES[name]


def format_example(template: str, fields: Mapping[str, str]) -> str:
    """The filled template of one example (no answer)."""
    t = get_template(template)
    try:
        return t.pattern.format(**fields)
    except KeyError as e:
        raise ValueError(f"template {template!r} needs field {e.args[0]!r}") from None


def build_prompt(
    template: str,
    demos: Sequence[tuple[Mapping[str, str], str]],
    query: Mapping[str, str],
    *,
    sentinel: bool = True,
) -> str:
    """A k-shot prompt: ``k`` demonstrations ``(fields, answer)`` and the query.

    Returns ``"<demo_1> <answer_1>\\n...\\n<query> <extra_id_0>"`` (no sentinel if
    ``sentinel`` is False, as for fine-tuning inputs).
    """
    lines = [f"{format_example(template, f)} {a}" for f, a in demos]
    q = format_example(template, query)
    lines.append(f"{q} <extra_id_0>" if sentinel else q)
    return "\n".join(lines)


def postprocess(output: str, template: str) -> str:
    """The paper's post-processing of one decoded output.

    Text after ``<extra_id_0>`` (from the start if absent) and before ``<extra_id_1>`` (or the
    end), cut at the template's prefix (a new example), stripped; for classification templates
    only the first word (the "first token" the paper reads).
    """
    t = get_template(template)
    text = output
    if "<extra_id_0>" in text:
        text = text.split("<extra_id_0>", 1)[1]
    text = text.split("<extra_id_1>", 1)[0]
    text = re.split(r"<extra_id_\d+>", text, maxsplit=1)[0]
    if t.prefix and t.prefix in text:
        text = text.split(t.prefix, 1)[0]
    text = text.strip()
    if t.classification:
        text = text.split()[0] if text.split() else ""
    return text


def normalise_answer(s: str) -> str:
    """SQuAD-style: lower case, no punctuation, no articles, single spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str, answers: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised answer."""
    answers = [answers] if isinstance(answers, str) else list(answers)
    p = normalise_answer(prediction)
    return float(any(p == normalise_answer(a) for a in answers))


def score_outputs(
    outputs: Sequence[str], targets: Sequence[str], template: str
) -> dict[str, float]:
    """Post-processes raw outputs and scores them.

    Classification: ``accuracy`` (the first word equals the target word exactly). Otherwise:
    ``exact_match``. Returns ``{metric: value in [0, 1], 'n': count}``.
    """
    if len(outputs) != len(targets):
        raise ValueError(f"{len(outputs)} outputs but {len(targets)} targets")
    if not outputs:
        raise ValueError("score_outputs got no outputs")
    t = get_template(template)
    preds = [postprocess(o, template) for o in outputs]
    if t.classification:
        return {
            "accuracy": float(np.mean([p == y for p, y in zip(preds, targets, strict=True)])),
            "n": len(preds),
        }
    return {
        "exact_match": float(
            np.mean([exact_match(p, y) for p, y in zip(preds, targets, strict=True)])
        ),
        "n": len(preds),
    }


def label_word_share(
    outputs: Sequence[str], label_words: Sequence[str], template: str = "classify"
) -> float:
    """Share of outputs (post-processed with ``template``) whose first word is a label word.

    The paper's format-specialisation symptom: after fine-tuning on RTE, outputs on other
    tasks become "True"/"False". Comparison is exact on the first word (punctuation kept).
    """
    if not outputs:
        raise ValueError("label_word_share got no outputs")
    words = set(label_words)
    hits = 0
    for o in outputs:
        p = postprocess(o, template).split()
        hits += bool(p) and p[0] in words
    return hits / len(outputs)


def normalised_average(
    scores: Mapping[str, float], chance: Mapping[str, float], high: float = 1.0
) -> float:
    """BIG-bench-style normalised average in percent: mean of ``100 (s - c) / (high - c)``.

    ``scores`` and ``chance`` are per task (chance: the random-guess score, 0 for generation).
    """
    if not scores:
        raise ValueError("normalised_average got no tasks")
    missing = set(scores) - set(chance)
    if missing:
        raise ValueError(f"no chance level for tasks {sorted(missing)}")
    vals = [100.0 * (scores[k] - chance[k]) / (high - chance[k]) for k in scores]
    return float(np.mean(vals))
