"""ProMoT (Wang et al., ICLR 2024): prompt tuning, then model tuning with the soft prompt
attached, on the suite's Flax T5.

Pieces:

- soft prompts (:func:`init_prompt`, :func:`save_prompt` / :func:`load_prompt`,
  :func:`seq2seq_loss`, :func:`prompted_greedy_decode`): a ``[P, E]`` array before the
  embedded encoder input (``prefix_embeddings`` of :class:`robustml_jax.models.t5.T5`);
- the pipeline (:func:`run_method`, :data:`METHODS`, :class:`FinetuneConfig`): ProMoT and its
  baselines on :func:`core.train.fit` with :func:`core.train.freeze` masks, keep-best;
- the in-context harness (:func:`build_prompt`, :func:`postprocess`, :func:`score_outputs`,
  :func:`normalised_average`, :class:`Evaluator`) and format-specialisation probes
  (:func:`label_word_share`, :func:`group_cosines`);
- the small from-scratch reproduction (:class:`EpisodeSampler`, :func:`pretrain`,
  :func:`small_tokenizer`).
"""

from robustml_jax.promot._data import (
    HELDOUT_SENTIMENT,
    PRETRAIN_SENTIMENT,
    load_rte,
    load_sentiment,
    small_tokenizer,
)
from robustml_jax.promot._episodes import (
    CANONICAL_SENTIMENT_WORDS,
    HELDOUT_LABEL_WORDS,
    HELDOUT_STRING_TASKS,
    PRETRAIN_STRING_TASKS,
    EpisodeSampler,
    EvalSet,
    string_answer,
)
from robustml_jax.promot._evaluate import Evaluator, decode_texts
from robustml_jax.promot._pipeline import (
    METHODS,
    FinetuneConfig,
    KeepBest,
    check_budget,
    encode_texts,
    model_trainable,
    prompt_trainable,
    run_method,
    task_loss,
)
from robustml_jax.promot._pretrain import (
    PRETRAIN_CACHE_NAME,
    export_latest,
    pretrain,
    pretrained_checkpoint,
    small_t5_config,
)
from robustml_jax.promot._prompt import (
    PROMPT_INITS,
    check_prompt,
    init_prompt,
    load_prompt,
    prompted_greedy_decode,
    save_prompt,
    seq2seq_loss,
)
from robustml_jax.promot._specialisation import (
    GROUPS,
    format_gradient_cosines,
    group_cosines,
    param_group,
    shuffled_labels_batch,
)
from robustml_jax.promot._tasks import (
    RTE_LABEL_WORDS,
    TEMPLATES,
    Template,
    build_prompt,
    exact_match,
    format_example,
    get_template,
    label_word_share,
    normalise_answer,
    normalised_average,
    postprocess,
    score_outputs,
)

__all__ = [
    "GROUPS",
    "HELDOUT_SENTIMENT",
    "CANONICAL_SENTIMENT_WORDS",
    "HELDOUT_LABEL_WORDS",
    "HELDOUT_STRING_TASKS",
    "PRETRAIN_CACHE_NAME",
    "METHODS",
    "PRETRAIN_SENTIMENT",
    "PRETRAIN_STRING_TASKS",
    "PROMPT_INITS",
    "RTE_LABEL_WORDS",
    "TEMPLATES",
    "EpisodeSampler",
    "EvalSet",
    "Evaluator",
    "FinetuneConfig",
    "KeepBest",
    "Template",
    "build_prompt",
    "check_budget",
    "check_prompt",
    "decode_texts",
    "encode_texts",
    "exact_match",
    "export_latest",
    "format_example",
    "format_gradient_cosines",
    "get_template",
    "group_cosines",
    "init_prompt",
    "label_word_share",
    "load_prompt",
    "load_rte",
    "load_sentiment",
    "model_trainable",
    "normalise_answer",
    "normalised_average",
    "param_group",
    "postprocess",
    "pretrain",
    "pretrained_checkpoint",
    "prompt_trainable",
    "prompted_greedy_decode",
    "run_method",
    "save_prompt",
    "score_outputs",
    "seq2seq_loss",
    "shuffled_labels_batch",
    "small_t5_config",
    "small_tokenizer",
    "string_answer",
    "task_loss",
]
