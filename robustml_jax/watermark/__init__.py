"""Paper 8: watermarking a pre-trained language model with multi-task backdoors.

The owner embeds a black-box watermark into a sentence encoder (all-MiniLM-L6-v2) by
multi-task learning with backdoors (:func:`embed_watermark`); a suspect fine-tunes the released
encoder on its own tasks (:func:`finetune`, plus removal attempts: :func:`magnitude_prune`,
:func:`reinit_top_layer`); the owner extracts the watermark from the suspect's predictions
(:func:`flip_stats`: WESR) and tests it against clean models (:func:`watermark_pvalue`).
"""

from robustml_jax.watermark.detection import (
    FlipStats,
    binomial_pvalue,
    choose_target,
    flip_stats,
    watermark_pvalue,
    wesr,
)
from robustml_jax.watermark.model import (
    ArchitectureError,
    Batch,
    check_encoder_params,
    embedding_row_mask,
    encode_texts,
    head_logits,
    init_head,
    load_encoder,
    magnitude_prune,
    pooled,
    reinit_top_layer,
    save_encoder,
)
from robustml_jax.watermark.training import (
    MODES,
    FinetuneResult,
    Task,
    WatermarkResult,
    check_task,
    embed_watermark,
    finetune,
    predict,
)
from robustml_jax.watermark.triggers import (
    check_trigger,
    insert_trigger,
    insert_words,
    trigger_piece_ids,
    words_of,
)

__all__ = [
    "MODES",
    "ArchitectureError",
    "Batch",
    "FinetuneResult",
    "FlipStats",
    "Task",
    "WatermarkResult",
    "binomial_pvalue",
    "check_encoder_params",
    "check_task",
    "check_trigger",
    "choose_target",
    "embed_watermark",
    "embedding_row_mask",
    "encode_texts",
    "finetune",
    "flip_stats",
    "head_logits",
    "init_head",
    "insert_trigger",
    "insert_words",
    "load_encoder",
    "magnitude_prune",
    "pooled",
    "predict",
    "reinit_top_layer",
    "save_encoder",
    "trigger_piece_ids",
    "watermark_pvalue",
    "wesr",
    "words_of",
]
